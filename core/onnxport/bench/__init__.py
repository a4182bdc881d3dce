"""`onnxport bench`: latency, throughput, load time and memory of a model, on demand.

Every row (a target's model, a bare .onnx under one provider, or the source framework)
is measured in a fresh child process (`python -m onnxport.bench`), so that its memory
is that of a process that loads and runs only this model, and no row inherits another's
thread pools, caches or allocations. The child loads the model through the runner a
plugin registered (`host.get("runner", name).open(...)`), as verification does; this
module imports no framework.

What a row reports:

- cold ms: from the first load step to a ready session in the fresh process, including
  importing the runtime (or framework) and building the source model;
- load ms: opening the model again in the same process (session creation only);
- p50/p90/p99 ms: per-run latency over `runs` timed runs after `warmup` untimed ones,
  at the chosen batch size and thread count;
- items/s: batch x runs / the total time of the timed runs;
- peak RSS: the child's high-water resident memory (VmHWM in /proc/self/status), and
  how much of it came after the child started loading (the rest is Python, numpy and
  onnxport).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from onnxport.errors import BadInput
from onnxport.host import PluginHost
from onnxport.flow.inputs import random_inputs
from onnxport.artifact.modelinfo import TensorInfo, read_model_info
from onnxport.records import InputSpec, LoadRequest, RunOptions

CHILD_TIMEOUT_S = 900


@dataclass
class BenchSettings:
    batch: int | None = None  # None: 1 for a dynamic batch, the fixed size otherwise
    threads: int | None = None  # None: every CPU this process may use
    warmup: int = 10
    runs: int = 100
    seed: int = 0
    inputs: tuple[InputSpec, ...] = ()  # full shapes for free axes of a bare .onnx

    def resolved_threads(self) -> int:
        return self.threads or available_cpus()


@dataclass
class BenchCase:
    """One row: what to load, with which runner and how."""

    label: str  # the target's name, the provider, or "source"
    kind: str  # "onnx" or "source"
    runner: str
    model: str  # an .onnx path, or the source as the user would type it
    providers: tuple[str, ...] = ()
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    graph_optimization_level: str = "all"
    backend: str | None = None  # source rows: the backend that loads it
    weights: str | None = None
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    dynamic_batch: bool = True
    load_options: Mapping[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None


@dataclass
class BenchResult:
    label: str
    kind: str
    runner: str
    model: str
    requested_providers: list[str]
    ran_on: list[str]
    threads: int
    batch: int
    warmup: int
    runs: int
    cold_ms: float | None = None
    load_ms: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p90 p99 mean min max
    throughput: float | None = None  # items (batch rows) per second
    peak_rss_bytes: int | None = None
    start_rss_bytes: int | None = None  # before loading anything of the model
    size_bytes: int | None = None
    error: str = ""

    @property
    def model_rss_bytes(self) -> int | None:
        if self.peak_rss_bytes is None or self.start_rss_bytes is None:
            return None
        return self.peak_rss_bytes - self.start_rss_bytes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model_rss_bytes"] = self.model_rss_bytes
        return data


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- planning


def plan(path: Path, host: PluginHost, *, targets: Sequence[str] = (),
         providers: Sequence[str] = (), source: str | None = None,
         with_source: bool = False, weights: Path | None = None,
         trust_code: bool = False) -> tuple[list[BenchCase], list[TensorInfo], dict[str, Sequence[int]],
                    Mapping[str, tuple[float, float]], bool]:
    """The rows to measure, and what their inputs look like: (cases, input infos, example
    shapes, input ranges, dynamic batch)."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if path.is_file():
        if path.suffix != ".onnx":
            raise BadInput(f"{path} is not an .onnx file or an artifact directory",
                           "give a model.onnx, or the --output directory of a conversion "
                           "(its source can be added with --source)")
        if targets:
            raise BadInput("--target applies to an artifact directory, not a bare .onnx "
                           "file", "choose providers with --providers")
        info = read_model_info(path)
        dynamic = bool(info.inputs) and all(t.shape and not isinstance(t.shape[0], int)
                                            for t in info.inputs)
        cases = [BenchCase(label=_provider_label(p), kind="onnx", runner="onnxruntime",
                           model=str(path), providers=(p,), size_bytes=info.size_bytes)
                 for p in (providers or ("CPUExecutionProvider",))]
        if source is not None:
            cases.append(_source_case(source, None, weights, [t.name for t in info.inputs],
                                      [t.name for t in info.outputs], dynamic, {}))
        elif with_source:
            raise BadInput("--with-source needs an artifact directory, whose manifest "
                           "records the source", "give the source with --source")
        return cases, list(info.inputs), {}, {}, dynamic
    from onnxport.artifact.reading import open_artifact
    from onnxport.flow.reverify import recorded_settings

    artifact = open_artifact(path)
    chosen = [t for t in artifact.targets if not targets or t.name in targets]
    if not chosen:
        raise BadInput(f"{path} has no target {', '.join(targets)}",
                       "it has: " + ", ".join(t.name for t in artifact.targets))
    cases = []
    for entry in chosen:
        manifest = entry.manifest
        recorded = manifest["target"]
        model = entry.model
        size = sum(f["bytes"] for f in manifest.get("files", [])) or None
        for provider_set in ([(p,) for p in providers] if providers else
                             [tuple(recorded.get("providers") or ())]):
            cases.append(BenchCase(
                label=recorded["name"] + (f" {_provider_label(provider_set[0])}"
                                          if providers and len(providers) > 1 else ""),
                kind="onnx" if model.suffix == ".onnx" else manifest.get("model_format", "model"),
                runner=manifest.get("runner") or recorded.get("runner", "onnxruntime"),
                model=str(model), providers=provider_set,
                graph_optimization_level=recorded.get("graph_optimization_level", "all"),
                size_bytes=size))
    first = chosen[0].manifest
    interface = first["interface"]
    dynamic = bool(interface["dynamic_batch"])
    if source is not None or with_source:
        from onnxport.flow.reverify import recorded_origin

        recorded_source = first["source"]
        if source is None and not trust_code:
            raise BadInput("--with-source runs the source the artifact's manifest names "
                           f"({recorded_source.get('origin')!r}), and onnxport runs no code "
                           "because an artifact names it",
                           "name it with --source, or add --trust-code for an artifact "
                           "you made yourself")
        origin = source or recorded_origin(first)
        recorded_weights = (recorded_source.get("weights") or {}).get("path")
        if source is not None:
            recorded_weights = None
        cases.append(_source_case(
            origin, recorded_source.get("backend"),
            weights or (Path(recorded_weights) if recorded_weights else None),
            interface["inputs"], interface["outputs"], dynamic,
            recorded_source.get("load_options") or {}))
    infos, shapes = _recorded_inputs(first, dynamic)
    settings = recorded_settings(artifact, {})
    return cases, infos, shapes, dict(settings.input_ranges), dynamic


def _source_case(source: str, backend: str | None, weights: Path | None,
                 inputs: Sequence[str], outputs: Sequence[str], dynamic: bool,
                 load_options: Mapping[str, Any]) -> BenchCase:
    return BenchCase(label="source", kind="source", runner="", model=str(source),
                     backend=backend, weights=str(weights) if weights else None,
                     input_names=tuple(inputs), output_names=tuple(outputs),
                     dynamic_batch=dynamic, load_options=dict(load_options))


def _recorded_inputs(manifest: Mapping[str, Any], dynamic: bool
                     ) -> tuple[list[TensorInfo], dict[str, Sequence[int]]]:
    """The inputs as verification saw them: names, dtypes, and the sizes of the
    non-batch axes (from the first recorded batch)."""
    batches = (manifest.get("verification") or {}).get("batches") or []
    if batches:
        described = batches[0]["inputs"]
        infos = [TensorInfo(n, (["batch"] + list(d["shape"][1:])) if dynamic
                            else list(d["shape"]), d["dtype"]) for n, d in described.items()]
        return infos, {n: d["shape"] for n, d in described.items()}
    onnx = manifest.get("onnx") or {}
    infos = [TensorInfo(t["name"], list(t["shape"]), t["dtype"])
             for t in onnx.get("inputs", [])]
    return infos, {}


def _provider_label(provider: str) -> str:
    return provider.replace("ExecutionProvider", "") or provider


def make_feeds(infos: Sequence[TensorInfo], shapes: Mapping[str, Sequence[int]],
               ranges: Mapping[str, tuple[float, float]], dynamic: bool,
               settings: BenchSettings) -> tuple[dict[str, np.ndarray], int]:
    """Seeded inputs at the chosen batch size, and that batch size."""
    specs = {s.name: s for s in settings.inputs}
    unknown = [n for n in specs if n not in {i.name for i in infos}]
    if unknown:
        raise BadInput(f"--input {unknown[0]} is not an input of the model",
                       "its inputs: " + ", ".join(i.name for i in infos))
    fixed = None
    if not dynamic:
        fixed = next((int(i.shape[0]) for i in infos
                      if i.shape and isinstance(i.shape[0], int)), None)
        if fixed is None:
            fixed = next((int(s[0]) for s in shapes.values() if s), None)
        if settings.batch is not None and fixed is not None and settings.batch != fixed:
            raise BadInput(f"--batch {settings.batch}: the model's batch is fixed at {fixed}",
                           "leave --batch out, or convert with a dynamic batch")
    batch = settings.batch or fixed or 1
    if batch < 1:
        raise BadInput("--batch starts at 1")
    plain = [i for i in infos if i.name not in specs]
    feeds = random_inputs(plain, batch if dynamic else None, settings.seed, shapes, ranges)
    for name, spec in specs.items():
        info = TensorInfo(name, list(spec.shape), spec.dtype)
        feeds.update(random_inputs([info], None, settings.seed, {}, ranges))
    ordered = {i.name: feeds[i.name] for i in infos}
    return ordered, batch


# ----------------------------------------------------------------------------- running


def run_bench(cases: Sequence[BenchCase], feeds: Mapping[str, np.ndarray], batch: int,
              settings: BenchSettings, host: PluginHost,
              enabled: Sequence[str] = ()) -> list[BenchResult]:
    """Measure every case, each in its own fresh child process, one after the other."""
    for case in cases:
        if case.kind != "source":
            runner = host.get("runner", case.runner)  # raises: unknown, missing, disabled
            _check_providers(runner, case.providers)
    threads = settings.resolved_threads()
    results = []
    with tempfile.TemporaryDirectory(prefix="onnxport-bench-") as tmp:
        feeds_path = Path(tmp) / "inputs.npz"
        np.savez(feeds_path, **feeds)
        for case in cases:
            results.append(_run_child(case, feeds_path, batch, threads, settings,
                                      sorted(set(enabled) | host.enabled_by_user)))
    return results


def _check_providers(runner, providers: Sequence[str]) -> None:
    if runner.provider_info is None or not providers:
        return
    _available, known = runner.provider_info()
    unknown = [p for p in providers if p not in known]
    if unknown:
        raise BadInput(f"unknown execution provider {unknown[0]}",
                       "known to this onnxruntime: " + ", ".join(known))


def _run_child(case: BenchCase, feeds_path: Path, batch: int, threads: int,
               settings: BenchSettings, enabled: Sequence[str]) -> BenchResult:
    spec = {"case": asdict(case), "feeds": str(feeds_path), "threads": threads,
            "warmup": settings.warmup, "runs": settings.runs, "enable": list(enabled)}
    result = BenchResult(label=case.label, kind=case.kind, runner=case.runner,
                         model=case.model, requested_providers=list(case.providers),
                         ran_on=[], threads=threads, batch=batch, warmup=settings.warmup,
                         runs=settings.runs, size_bytes=case.size_bytes)
    try:
        done = subprocess.run([sys.executable, "-m", "onnxport.bench"], input=json.dumps(spec),
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                              cwd=os.getcwd())
    except subprocess.TimeoutExpired:
        result.error = f"did not finish within {CHILD_TIMEOUT_S} s"
        return result
    answer = next((line for line in reversed(done.stdout.splitlines())
                   if line.startswith("{")), None)
    if done.returncode != 0 or answer is None:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        result.error = (lines[-1] if lines else f"the child process exited with "
                        f"{done.returncode}")[:300]
        return result
    measured = json.loads(answer)
    for key, value in measured.items():
        if hasattr(result, key):
            setattr(result, key, value)
    return result


def child_main() -> int:
    """In the child: load the case, time it, print one JSON line."""
    spec = json.loads(sys.stdin.read())
    case = BenchCase(**{**spec["case"], "providers": tuple(spec["case"]["providers"]),
                        "input_names": tuple(spec["case"]["input_names"]),
                        "output_names": tuple(spec["case"]["output_names"])})
    with np.load(spec["feeds"], allow_pickle=False) as archive:
        feeds = {name: archive[name] for name in archive.files}
    start_rss = _memory().get("VmRSS")
    from onnxport.errors import OnnxportError
    from onnxport.host import default_host

    try:
        host = default_host().view(enable=spec["enable"])
        options = RunOptions(providers=case.providers,
                             provider_options=case.provider_options,
                             threads=spec["threads"],
                             graph_optimization_level=case.graph_optimization_level)
        started = time.perf_counter()
        opener = _opener(case, host, options)
        session = opener()
        cold = (time.perf_counter() - started) * 1000
        session.close()
        started = time.perf_counter()
        session = opener()
        load = (time.perf_counter() - started) * 1000
        for _ in range(spec["warmup"]):
            session.run(feeds)
        times = []
        total_started = time.perf_counter()
        for _ in range(spec["runs"]):
            run_started = time.perf_counter()
            session.run(feeds)
            times.append((time.perf_counter() - run_started) * 1000)
        total = time.perf_counter() - total_started
        ran_on = list(session.providers)
        runner_name = getattr(opener, "runner", case.runner)
        session.close()
    except OnnxportError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 1
    memory = _memory()
    rows = next(iter(feeds.values())).shape[0] if feeds else 1
    print(json.dumps({
        "cold_ms": cold, "load_ms": load, "latency_ms": _percentiles(times),
        "throughput": rows * len(times) / total if total > 0 and times else None,
        "peak_rss_bytes": memory.get("VmHWM"), "start_rss_bytes": start_rss,
        "ran_on": ran_on, "runner": runner_name,
    }))
    return 0


def _opener(case: BenchCase, host: PluginHost, options: RunOptions):
    """A function that loads the case and returns an open session (called twice: cold,
    then warm)."""
    if case.kind != "source":
        runner = host.get("runner", case.runner)

        def open_model():
            return runner.open(Path(case.model), options)

        open_model.runner = runner.name
        return open_model
    from onnxport.flow.sources import pick_backend, source_from_text

    weights = Path(case.weights) if case.weights else None
    state: dict[str, Any] = {}

    def open_source():
        if "source" not in state:  # the factory builds the model once (cold start)
            state["source"] = source_from_text(case.model, weights)
            state["backend"] = pick_backend(host, state["source"], case.backend)
        backend = state["backend"]
        loaded = backend.load(LoadRequest(
            source=state["source"], input_names=case.input_names or None,
            output_names=case.output_names or None, dynamic_batch=case.dynamic_batch,
            options=case.load_options))
        open_source.runner = backend.runner
        return host.get("runner", backend.runner).open(
            loaded, RunOptions(threads=options.threads))

    open_source.runner = "source"
    return open_source


def _percentiles(times: Sequence[float]) -> dict[str, float]:
    if not times:
        return {}
    p50, p90, p99 = np.percentile(np.asarray(times), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99),
            "mean": statistics.fmean(times), "min": min(times), "max": max(times)}


def _memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (Linux); {} elsewhere."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return found


# ----------------------------------------------------------------------------- output


def bench_table(results: Sequence[BenchResult], settings: BenchSettings,
                batch: int) -> str:
    from onnxport.flow.environment import machine
    from onnxport.report.formatting import human_bytes, table

    threads = settings.resolved_threads()
    how = ("set with --threads" if settings.threads else
           "all CPUs this process may use; --threads sets it")
    env = machine()
    head = [f"bench: batch {batch}, {threads} intra-op thread(s) ({how}),",
            f"  {settings.warmup} warm-up + {settings.runs} timed runs on seeded inputs "
            f"(seed {settings.seed}), each row in a fresh process",
            f"  on {env['cpu']}, {env['cpu_count']} CPUs"]
    rows = []
    for r in results:
        if r.kind == "source":
            ran = r.ran_on[0].split()[0] if r.ran_on else r.runner or "-"
        else:
            ran = "/".join(_provider_label(p) for p in r.ran_on) or "-"
        lat = r.latency_ms or {}
        rows.append([
            r.label, ran, _num(r.cold_ms), _num(r.load_ms),
            _num(lat.get("p50")), _num(lat.get("p90")), _num(lat.get("p99")),
            "-" if r.throughput is None else f"{r.throughput:,.0f}",
            human_bytes(r.peak_rss_bytes), human_bytes(r.model_rss_bytes),
            human_bytes(r.size_bytes) if r.size_bytes else "-"])
    header = ["model", "ran on", "cold", "load", "p50", "p90", "p99", "items/s",
              "peak RSS", "+loading", "size"]
    parts = head + ["", table(header, rows)]
    errors = [f"{r.label}: {r.error}" for r in results if r.error]
    notes = [f"{r.label}: asked for {', '.join(r.requested_providers)}, ran on "
             f"{', '.join(r.ran_on)}" for r in results
             if r.kind != "source" and r.ran_on and r.requested_providers
             and r.requested_providers[0] not in r.ran_on]
    if notes or errors:
        parts += [""] + [f"note: {n}" for n in notes] + [f"failed: {e}" for e in errors]
    parts += ["", "times in ms. cold: the first load in a fresh process, imports included; "
              "load: opening it",
              "again; items/s: batch rows per second; +loading: peak RSS minus the RSS "
              "before loading"]
    return "\n".join(parts)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def bench_json(results: Sequence[BenchResult], settings: BenchSettings, batch: int
               ) -> dict[str, Any]:
    from onnxport.flow.environment import machine, versions

    return {"format": "onnxport-bench/1",
            "settings": {"batch": batch, "threads": settings.resolved_threads(),
                         "threads_set": settings.threads is not None,
                         "warmup": settings.warmup, "runs": settings.runs,
                         "seed": settings.seed},
            "machine": machine(), "versions": versions(),
            "results": [r.to_dict() for r in results]}
