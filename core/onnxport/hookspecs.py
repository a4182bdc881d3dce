"""The plugin contract of onnxport: every hook a plugin can implement.

A plugin is a module (or object) with functions named after these specs and marked
with `onnxport.hookimpl`. Built-in plugins and third-party ones are found the same way,
through the `onnxport` entry point group::

    [project.entry-points.onnxport]
    myplugin = "onnxport_myplugin"

Registration hooks receive a `register` callable and call it once per record. The core,
not the plugin, owns naming: it remembers which plugin registered each record, refuses a
second record with the same name (naming both plugins), and leaves out a record whose
`requires` are not installed, with the reason. No hook here uses `firstresult`: every
implementation is called, in pluggy's order (last registered first, `tryfirst` /
`trylast` respected). An exception raised from a hook is reported to the user with the
plugin's name and the hook's name.

Plugin modules are imported for every command, including `onnxport --help`: keep their
top level free of framework imports and import torch or tensorflow inside the functions
that need them.
"""

from __future__ import annotations

from typing import Callable

import pluggy

from onnxport.records import (Backend, CommandRegistry, Executor, OptionRegistry, Pass,
                              Publisher, Runner, StageEvent, Target)

hookspec = pluggy.HookspecMarker("onnxport")


@hookspec
def onnxport_register_backends(register: Callable[[Backend], None]) -> None:
    """Register the converters this plugin provides, one `Backend` per call of `register`.

    A backend turns a source model (an in-memory object or a file) into an ONNX file.
    The core picks the first enabled backend whose `can_load(source)` is true, so
    `can_load` must be cheap and must not import the framework. Return nothing.

    Example::

        @hookimpl
        def onnxport_register_backends(register):
            register(Backend(name="torch", description="PyTorch via torch.onnx",
                             accepts="nn.Module, .pt2", can_load=can_load, load=load,
                             export=export, runner="torch"))
    """


@hookspec
def onnxport_register_runners(register: Callable[[Runner], None]) -> None:
    """Register executors that run models for verification and benchmarks.

    A backend names the runner of its source framework (`Backend.runner`); a target
    names the runner of its ONNX models (`Target.runner`). `Runner.open` receives a
    `LoadedModel` or an .onnx path and returns a `RunSession`. Return nothing.

    Example::

        @hookimpl
        def onnxport_register_runners(register):
            register(Runner(name="onnxruntime", description="ONNX Runtime",
                            open=open_session))
    """


@hookspec
def onnxport_register_targets(register: Callable[[Target], None]) -> None:
    """Register deployment targets: where a model will run and how to prepare it there.

    A `Target` names its runner, execution providers in priority order, the passes to
    apply, opset bounds and the accuracy budget. Users pick targets with `--target`.
    Return nothing.

    Example::

        @hookimpl
        def onnxport_register_targets(register):
            register(Target(name="cpu", description="any x86-64 or ARM64 CPU"))
    """


@hookspec
def onnxport_register_passes(register: Callable[[Pass], None]) -> None:
    """Register post-processing passes that transform an ONNX file for a target.

    A pass reads `PassContext.input_path`, writes `PassContext.output_path`, and returns
    a `PassOutcome`; it runs on a per-target copy, and its result goes through the same
    verification as the exported model. Return nothing.

    Example::

        @hookimpl
        def onnxport_register_passes(register):
            register(Pass(name="fp16", description="convert weights to float16",
                          run=to_fp16, applies=lambda t: "CUDAExecutionProvider" in t.providers))
    """


@hookspec
def onnxport_register_publishers(register: Callable[[Publisher], None]) -> None:
    """Register places artifacts are published to and pulled from, by URI scheme.

    `onnxport publish DIR --to URI` picks the publisher whose `schemes` include the URI's
    scheme (`s3`, `mlflow`, `file`). The core checks the artifact's files against its
    manifests before `publish` is called and after `pull` has fetched them. Return
    nothing.

    Example::

        @hookimpl
        def onnxport_register_publishers(register):
            register(Publisher(name="s3", description="S3-compatible object storage",
                               schemes=("s3",), publish=upload, pull=download))
    """


@hookspec
def onnxport_register_executors(register: Callable[[Executor], None]) -> None:
    """Register where conversions can run, one `Executor` per call of `register`.

    `onnxport fleet --executor NAME` (and the service) hand an executor `Job`s; it runs
    each with `onnxport.flow.worker.run_job` (a worker process per conversion) wherever
    it likes: a local process pool, a cluster. It reports each job's start and outcome
    through `update`, and returns when every job has ended. Return nothing.

    Example::

        @hookimpl
        def onnxport_register_executors(register):
            register(Executor(name="slurm", description="one batch job per conversion",
                              run=submit_and_wait, requires=Requirements(modules=("pyslurm",))))
    """


@hookspec
def onnxport_register_commands(cli: CommandRegistry) -> None:
    """Add subcommands to the `onnxport` command line with `cli.add(Command(...))`.

    `Command.configure(parser)` receives the subcommand's argparse parser;
    `Command.run(args)` does the work and returns the exit code. A name that an
    existing command already has is refused. Return nothing.

    Example::

        @hookimpl
        def onnxport_register_commands(cli):
            cli.add(Command(name="hello", help="say hello",
                            configure=lambda p: None, run=lambda args: print("hi") or 0))
    """


@hookspec
def onnxport_add_options(options: OptionRegistry) -> None:
    """Add options to onnxport's commands with `options.add(Option(...))`, after every
    command is registered (in the spirit of pytest's `pytest_addoption`).

    An option names the commands it applies to, its type, default and help, and shows
    in their `--help`. A flag an option of the command already has, or a command that
    does not exist, is refused naming this plugin. The value reaches the plugin in the
    options of its requests (see `Option`). Return nothing.

    Example::

        @hookimpl
        def onnxport_add_options(options):
            options.add(Option(flags=("--create-bucket",), type=bool,
                               commands=("convert", "publish"),
                               help="S3: create the bucket if it does not exist"))
    """


@hookspec
def onnxport_stage_started(event: StageEvent) -> None:
    """Called when a stage of a conversion starts (load, export, a pass, verify).

    For observers: progress displays, logs, registries. `event.target` is None for
    stages shared by all targets (load, export). The return value is ignored; an
    exception fails the conversion and names this plugin.

    Example::

        @hookimpl
        def onnxport_stage_started(event):
            log.info("%s started for %s", event.stage, event.target or "all targets")
    """


@hookspec
def onnxport_stage_finished(event: StageEvent) -> None:
    """Called when a stage of a conversion ends, with its status and duration.

    `event.status` is "ok", "warning", "skipped" or "failed"; `event.seconds` the wall
    time; `event.detail` a one-line summary (e.g. the worst error). The return value is
    ignored.

    Example::

        @hookimpl
        def onnxport_stage_finished(event):
            metrics.observe(f"onnxport_{event.stage}_seconds", event.seconds)
    """
