"""The core's own commands: a plugin like any other, registered through the same hook.

The host loads this module as the plugin `core` (as pytest loads its own default
plugins), so `onnxport plugins` lists it, and a plugin that adds a command of the same
name is refused by the same rule as two plugins clashing.
"""

from __future__ import annotations

from onnxport.cli import (bench, convert, diagnose, fleet, inspect, listing, publishing,
                          verify)
from onnxport.host import hookimpl


@hookimpl(tryfirst=True)  # the core's names are taken first: a clash names the plugin
def onnxport_register_commands(cli):
    for command in (convert.COMMAND, verify.COMMAND, inspect.COMMAND, listing.PLUGINS,
                    listing.TARGETS, publishing.PUBLISH, publishing.PULL, bench.COMMAND,
                    diagnose.COMMAND, fleet.COMMAND):
        cli.add(command)
