"""The typed records that cross the hook boundary between the core and plugins.

Plugins build `Backend`, `Runner`, `Target` and `Pass` records and hand them to the
core through the `register` callables of the registration hooks; the core hands
plugins `Source`, `LoadRequest`, `ExportRequest` and `PassContext` records. Nothing
here imports a framework or onnx: these are plain dataclasses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """What the user asked to convert, before any backend has looked at it.

    `kind` is "object" (a Python object: a model, or whatever a factory returned) or
    "path" (a file or directory on disk); a request may also hold a "factory" not yet
    called, which the core calls before any backend sees the source. `origin` is how the
    user named it (a path, a `module:function` factory, or a repr for objects) and goes
    into the manifest. A factory's `(model, example_inputs,
    output_names)` arrive unpacked in `value`, `example_inputs` and `output_names`.
    """

    kind: str
    value: Any
    origin: str
    weights: Path | None = None
    example_inputs: Any = None  # as the user gave them: tensors, arrays, a tuple or a dict
    output_names: tuple[str, ...] | None = None

    @property
    def path(self) -> Path | None:
        return Path(self.value) if self.kind == "path" else None


@dataclass(frozen=True)
class InputSpec:
    """A user's statement about one model input: `--input NAME:SHAPE[:DTYPE]`."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class LoadRequest:
    """Everything a backend's `load` needs besides the source itself.

    `dynamic_axes` are the axes beyond the batch the user declared variable, by input
    name: `{"input_ids": {1: "sequence"}}` (`--dynamic input_ids:1=sequence`). An axis
    name shared by several inputs means they vary together. The backend checks them
    against its inputs (an unknown input or an axis past the rank is `BadInput`),
    keeps them, plus any it infers, in `LoadedModel.dynamic_axes`, and traces with an
    example of at least 2 on each; a backend that cannot keep an axis variable refuses
    with `BadInput` naming it.
    """

    source: Source
    inputs: tuple[InputSpec, ...] = ()
    input_names: tuple[str, ...] | None = None  # renames, positional
    output_names: tuple[str, ...] | None = None
    example_batch: int = 2
    dynamic_batch: bool = True
    trust_code: bool = False  # opt-in to loading that runs code from the file
    options: Mapping[str, Any] = field(default_factory=dict)
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A source model a backend has loaded and can export and run.

    `input_names` and `output_names` are final: the ONNX graph will carry exactly these,
    in this order, and the source runner answers by them. `example_inputs` holds one
    numpy array per input (the shapes the export traces with). `dynamic_axes` are the
    axes beyond the batch the export keeps symbolic and verification varies, by input
    name (`{"input_ids": {1: "sequence"}}`): the user's (`LoadRequest.dynamic_axes`),
    checked, plus those the backend inferred from the model.
    """

    backend: str
    framework: str
    framework_version: str
    model: Any
    input_names: list[str]
    output_names: list[str]
    example_inputs: dict[str, Any]
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportRequest:
    """How to export: the backend fills in defaults it documents for None fields.

    `dynamic_axes` are the axes beyond the batch the user declared variable (as in
    `LoadRequest`); the export keeps these and the loaded model's own
    `LoadedModel.dynamic_axes` symbolic, each named as declared, or refuses with
    `BadInput` naming the ones it cannot keep.
    """

    output_path: Path
    opset: int | None = None
    exporter: str | None = None  # a backend-specific variant, e.g. "dynamo"
    dynamic_batch: bool = True
    external_data: bool | None = None  # None: only when the model would pass 2 GB
    options: Mapping[str, Any] = field(default_factory=dict)
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)


@dataclass
class ExportResult:
    """What a backend's `export` wrote: the main file plus any side files it needs."""

    path: Path
    exporter: str
    opset: int  # 0 for formats without opsets
    files: list[Path] = field(default_factory=list)  # side files (external data), if any
    format: str = "onnx"  # "onnx", or e.g. "tflite" for a backend that writes another
    runner: str | None = None  # runs this format; None: the target's (ONNX) runner
    warnings: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- runners


class RunSession(Protocol):
    """An open model that maps input arrays by name to output arrays by name."""

    input_names: list[str]
    output_names: list[str]
    providers: list[str]  # what really executes, e.g. ["CPUExecutionProvider"]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    """How to run: providers in priority order (ONNX runners) and thread count.

    `spin_wait=False` asks idle threads to sleep instead of spinning for the next call:
    verification times the model interleaved with the source framework in one process,
    where a spinning pool starves the other runtime's threads (100x slower on 2 cores)."""

    providers: tuple[str, ...] = ()
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    threads: int | None = None
    graph_optimization_level: str = "all"
    spin_wait: bool = True


# --------------------------------------------------------------------------- registrations


@dataclass(frozen=True)
class Requirements:
    """What a plugin needs before it can work, checked without importing anything.

    `modules` are import names looked up with `importlib.util.find_spec`; `extra` is the
    onnxport extra that installs them (built-ins), `install` the command that does for a
    third-party plugin (e.g. "pip install 'onnxport-sklearn'"). A missing module
    disables the record with a reason that says how to install it.
    """

    modules: tuple[str, ...] = ()
    extra: str | None = None
    install: str | None = None


@dataclass
class Intermediate:
    """A value the source framework computed inside the model, and where the same value
    is in the ONNX graph: what a backend's `capture_intermediates` returns, for
    `onnxport diagnose` to find the first layer whose export changed the numerics.

    `values` are the layer's outputs as the source computed them (flattened, in order);
    `tensors` the candidate ONNX tensors that leave the layer's scope, in graph order
    (the core pairs them with `values` by shape once the ONNX model has run); `nodes`
    the ONNX nodes that belong to this layer itself, not to a sub-layer.
    """

    scope: str  # the layer's path in the source model; "" is the whole model
    description: str  # what it is, e.g. its class
    values: list[Any]  # numpy arrays
    tensors: list[str]
    nodes: list[str] = field(default_factory=list)
    call: int = 0  # which call, for a layer used more than once


@dataclass(frozen=True)
class Backend:
    """A converter from one framework's models to ONNX.

    `can_load(source)` must be cheap and must not import the framework (look at
    suffixes and type names); the core asks every enabled backend in turn and uses the
    first that says yes. `load` and `export` may import the framework.
    `capture_intermediates(loaded, feeds, onnx_path)`, optional, runs the source on the
    feeds and returns each layer's outputs with the ONNX tensors that hold the same
    values (a list of `Intermediate`, in run order), for `onnxport diagnose`.
    """

    name: str
    description: str
    accepts: str  # for people: what sources it loads, e.g. "nn.Module, .pt2"
    can_load: Callable[[Source], bool]
    load: Callable[[LoadRequest], LoadedModel]
    export: Callable[[LoadedModel, ExportRequest], ExportResult]
    runner: str  # the Runner that executes the source model for verification
    exporters: tuple[str, ...] = ()  # variants; the first is the default
    opsets: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # per exporter
    capture_intermediates: Callable[[LoadedModel, Mapping[str, Any], Path],
                                    list[Intermediate]] | None = None
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""


@dataclass(frozen=True)
class Runner:
    """Executes a model for verification and benchmarking.

    `open(model, options)` receives a `LoadedModel` (source runners) or the path of an
    .onnx file (ONNX runners) and returns a `RunSession`.
    """

    name: str
    description: str
    open: Callable[[Any, RunOptions], RunSession]
    # For runners with execution providers: () -> (available here, all known names)
    provider_info: Callable[[], tuple[list[str], list[str]]] | None = None
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""


@dataclass(frozen=True)
class Tolerance:
    """When an output counts as equal to the source's.

    The rule, per element: |onnx - source| <= atol + rtol * |source| (numpy.isclose
    with the source as reference), NaN only where the source has NaN, same shape. The
    optional bounds are checked too when set: cosine similarity over the whole output,
    argmax agreement over the last axis (only for outputs declared classifiers), and the
    max abs error as a share of the source output's range. An INT8 budget sets atol to
    infinity and relies on these bounds instead.
    """

    atol: float = 1e-5
    rtol: float = 1e-4
    min_cosine: float | None = None
    min_argmax_agreement: float | None = None
    max_abs_of_range: float | None = None  # max |error| <= this x (max - min of source)


@dataclass(frozen=True)
class Target:
    """A place a model will run: how to post-process and run it there.

    `providers` are onnxruntime execution providers in priority order;
    `allow_fallback` says whether running on a later one (CPU) is a warning or an error.
    `passes` names the passes to apply, in order; `options` holds each pass's settings
    by pass name. `tolerance` is the fp32 budget every stage is held to unless the user
    overrides it; `quantized_tolerance` the budget of a quantized stage. `resolve`, if
    set, picks a concrete target at run time (e.g. `auto` from the CPU's features) and
    returns its name and the reason. `latency_batches` are the batch sizes the target's
    deployment runs at: when several candidate models verify, they are timed side by
    side at these and the fastest ships (`prefer = "size"`: the smallest).
    `latency_budget` is a real-time budget, (p99 milliseconds, batch size): the report
    says whether the shipped model meets it, and on which machine that was measured.
    `machine` and `cpu_flags` describe the device (`aarch64`, `("avx512_vnni",)`): when
    the converting machine differs, the report says that its timings, and any choice
    made by them, were measured elsewhere.
    """

    name: str
    description: str
    runner: str = "onnxruntime"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    allow_fallback: bool = True
    passes: tuple[str, ...] = ()
    opset_min: int | None = None
    opset_max: int | None = None
    graph_optimization_level: str = "all"
    tolerance: Tolerance = Tolerance()
    quantized_tolerance: Tolerance = Tolerance(
        atol=float("inf"), rtol=0.0, min_cosine=0.99, min_argmax_agreement=0.98,
        max_abs_of_range=0.05)
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # by pass
    latency_batches: tuple[int, ...] = (1,)  # batch sizes candidates are timed at
    prefer: str = "speed"  # among candidates within the budget: "speed" or "size"
    latency_budget: tuple[float, int] | None = None  # (p99 ms, at batch): real time
    machine: str | None = None  # the device's architecture ("aarch64"); None: any
    cpu_flags: tuple[str, ...] = ()  # CPU features the device has that matter here
    resolve: Callable[[], tuple[str, str]] | None = None
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""


@dataclass
class PassContext:
    """What a pass gets: the model to transform and where to write the result.
    `calibration_data` is the user's calibration set (`--calibration-data`: an .npz, or
    a directory of them, one array per input name), for passes that calibrate."""

    input_path: Path
    output_path: Path
    target: Target
    options: Mapping[str, Any]
    work_dir: Path
    calibration_data: Path | None = None


@dataclass
class PassOutcome:
    """What a pass did. `applied=False` keeps the previous model (with `reason`).

    `tolerance` replaces the target's fp32 budget when the new model is verified (an
    INT8 model gets the target's `quantized_tolerance`); `optional`, when set, replaces
    the pass's own `optional` for this run (quantize is required in mode "on", optional
    in mode "auto").
    """

    applied: bool
    path: Path | None = None
    reason: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tolerance: Tolerance | None = None
    optional: bool | None = None


@dataclass(frozen=True)
class Pass:
    """A post-processing step on an ONNX file, applied per target.

    `optional` passes that fail (raise, or produce a model that fails verification)
    keep the previous model and record a warning; a required pass that fails fails the
    run. `accept(previous_path, candidate_path, context)`, if set, is asked after the
    candidate passed verification whether to keep it, and returns (keep, reason): for
    example INT8 kept only when it measures faster than fp32 on this machine.
    `options`, if set, is the dataclass schema of the pass's settings (see
    `onnxport.options`): the core checks each target's settings for the pass against it
    before any work, so a misspelt key fails at once, naming the known ones.

    An `alternative` pass (INT8, fusion, fp16) makes a model that competes with the one
    it started from instead of replacing it: both stay candidates, and the core ships the
    fastest candidate that verifies (timed side by side at the target's batch sizes),
    unless the run requires the pass (`PassOutcome.optional = False`, e.g. INT8 mode
    "on"). `variants(target, level, calibrated)`, if set, returns the option sets to try
    as separate candidates (each overlaid on the target's options) at an `--optimize`
    level ("fast" or "thorough"); `calibrated` says the user gave calibration data.
    """

    name: str
    description: str
    run: Callable[[PassContext], PassOutcome]
    applies: Callable[[Target], bool] = lambda target: True
    optional: bool = False
    accept: Callable[[Path, Path, PassContext], tuple[bool, str]] | None = None
    options: type | None = None
    alternative: bool = False
    variants: Callable[[Target, str, bool], list[Mapping[str, Any]]] | None = None
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""


# --------------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class PublishRequest:
    """Publish one artifact directory (checked against its manifests first) to `uri`.

    `name` has passed the core's name rule (no `/`, no `..`: safe as a path or key).
    `files` are the artifact's files to publish, as relative POSIX paths, every one a
    regular file inside `artifact` (never a link): publish these, not whatever else the
    directory holds. `options` carries the user's settings: `force` (publish again
    although the same sha256 is there), the options the publisher's plugin added to the
    command line, and any `--publish-option KEY=VALUE` (as strings).
    """

    artifact: Path
    uri: str
    name: str
    manifests: list[dict[str, Any]]
    options: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()


@dataclass
class PublishResult:
    """Where the artifact now is (a URI `onnxport pull` accepts) and what was done."""

    uri: str
    created: bool = True  # False: an identical artifact was already there
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Publisher:
    """A place artifacts are published to and pulled from, chosen by URI scheme.

    `publish(request)` uploads or registers; `pull(uri, destination)` fetches a published
    artifact into the empty directory `destination` (the core then checks every file
    against its manifest's sha256).
    """

    name: str
    description: str
    schemes: tuple[str, ...]
    publish: Callable[[PublishRequest], PublishResult]
    pull: Callable[[str, Path], None] | None = None
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""


# --------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class StageEvent:
    """A step of a conversion, a publish or a pull starting or finishing, for observers.

    `status` is "started", then "ok", "failed", "skipped" or "warning".
    """

    stage: str  # "load", "export", "verify", a pass name, "publish", "pull"
    target: str | None
    status: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Command:
    """A CLI subcommand: `configure(parser)` adds its arguments to its argparse parser,
    `run(args) -> exit code` does the work. The core's own commands are records like
    this one, registered through the same hook. `description` is the longer text of
    `onnxport NAME --help` (default: `help`), `epilog` what follows the options."""

    name: str
    help: str
    configure: Callable[[Any], None]
    run: Callable[[Any], int]
    description: str = ""
    epilog: str = ""


class CommandRegistry(Protocol):
    def add(self, command: Command) -> None: ...


@dataclass(frozen=True)
class Option:
    """A command-line option a plugin adds to commands (`onnxport_add_options`).

    `flags` as argparse takes them (`("--create-bucket",)`); `commands` names the
    commands that get it. `type` is `bool` for a flag that takes no value, else what the
    value is converted to (`str`, `int`, `float`, `Path`); `repeat` collects every use
    into a list; `choices` limits the values; `metavar` names the value in help.

    The value reaches the plugin under `dest` (default: the long flag without its
    dashes, `-` as `_`), only when the user gave the option: in `PublishRequest.options`
    for publishers, and in `LoadRequest.options` / `ExportRequest.options` for backends.
    """

    flags: tuple[str, ...]
    help: str
    commands: tuple[str, ...]
    type: type = str
    default: Any = None
    metavar: str | None = None
    choices: tuple[Any, ...] | None = None
    repeat: bool = False
    dest: str | None = None

    @property
    def key(self) -> str:
        """Where the value is found in the options a plugin receives."""
        if self.dest:
            return self.dest
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")


class OptionRegistry(Protocol):
    def add(self, option: Option) -> None: ...


# --------------------------------------------------------------------------- executors


@dataclass
class ConversionOutcome:
    """What a conversion that ran in a worker process came to, as plain data: what a
    fleet row, a service job and a training callback record.

    `cause` says how it ended: "" (it finished: passed, or failed with an onnxport
    error), "timeout" (killed after `timeout` seconds, in `stage`), "signal" (the process
    died: a native abort, an out-of-memory kill), or "exit" (user code ended the process
    without a result: `os._exit`, `sys.exit` from a thread).
    """

    passed: bool
    exit_code: int
    output: str | None = None  # the artifact (or DIR.failed) directory, when written
    name: str | None = None
    message: str = ""  # what went wrong, one line
    hint: str | None = None  # what to do
    cause: str = ""
    stage: str | None = None  # the last stage that started
    seconds: float = 0.0
    report: dict[str, Any] | None = None  # report.json, when the run got that far
    published: list[str] = field(default_factory=list)  # URIs the artifact went to
    peak_rss_bytes: int | None = None  # the worker process's peak resident memory

    def one_line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Job:
    """One conversion for an executor to run.

    `request` is the conversion request as JSON (`onnxport.flow.building.
    request_to_json`), so it can travel to another process or machine; `timeout` bounds
    the conversion (seconds, None: no limit); `publish` lists publisher URIs the worker
    publishes the artifact to before it removes its local copy (workers on other
    machines share no disk). An executor runs a job with `onnxport.flow.worker.run_job`,
    which converts in a worker process of its own.
    """

    key: str  # the job's name, unique in one run (a fleet's model name)
    request: Mapping[str, Any]
    timeout: float | None = None
    publish: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobUpdate:
    """What an executor reports: a job started ("running"), or ended ("finished", with
    its outcome)."""

    key: str
    state: str
    outcome: ConversionOutcome | None = None


@dataclass(frozen=True)
class ExecutorOptions:
    """How the user wants jobs run: `jobs` at once (None: the executor's default),
    `address` of a cluster (None: the executor's default), other `options` by name."""

    jobs: int | None = None
    address: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Executor:
    """Where conversions run: `run(jobs, options, update)` runs every job, calls
    `update(JobUpdate(...))` as each starts and ends (from any thread), and returns when
    all have ended. A job's failure is its outcome, never an exception; raise only when
    the executor itself cannot work (an unreachable cluster: `BadInput` with what to do).
    """

    name: str
    description: str
    run: Callable[[Sequence[Job], ExecutorOptions, Callable[[JobUpdate], None]], None]
    requires: Requirements = Requirements()
    enabled: bool = True
    disabled_reason: str = ""
