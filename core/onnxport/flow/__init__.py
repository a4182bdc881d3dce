"""The flow of one conversion: from a request to verified models.

Sources are loaded, exported once, post-processed per target, and every candidate goes
through the one verification stage against the source framework. Nothing here imports a
framework; backends and runners do that inside their plugins.
"""
