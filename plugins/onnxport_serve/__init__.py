"""Built-in plugin: conversion as a service.

- `onnxport serve`: an HTTP API (FastAPI on uvicorn) that converts the models of a
  models file by name, or uploaded .onnx/.keras files, as jobs kept in SQLite and run
  by an executor plugin (`local` worker processes, or `ray`);
- `onnxport submit`: its client on the command line (`onnxport_serve.client` from
  Python);
- `onnxport token`: the bearer tokens it checks.

In the workers of a server, this plugin's stage hooks record each stage as it finishes
(`events.py`); everywhere else they do nothing. Importing this module imports neither
FastAPI nor uvicorn: the commands import them when they run.
"""

from __future__ import annotations

from onnxport.host import hookimpl


@hookimpl
def onnxport_register_commands(cli):
    from .commands import SERVE, SUBMIT, TOKEN

    for command in (SERVE, SUBMIT, TOKEN):
        cli.add(command)


@hookimpl
def onnxport_stage_started(event):
    from .events import record

    record(event)


@hookimpl
def onnxport_stage_finished(event):
    from .events import record

    record(event)
