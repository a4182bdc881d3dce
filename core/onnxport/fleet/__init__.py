"""Fleets: many models times many targets in one command, on this machine or a cluster.

`file` reads the fleet file, `keys` decides what is unchanged, `running` plans the jobs
and hands them to an executor plugin, `report` writes the fleet's one page.
"""
