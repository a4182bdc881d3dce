"""The one verification stage every produced model goes through.

A candidate passes when it is a valid ONNX model (full checker), has exactly the
interface the user asked for (input and output names, a dynamic batch axis if asked,
every declared dynamic axis symbolic), opens in its target's runner, and every output
matches the *source framework's* output on the same inputs within tolerance, at every
batch size checked (two when the batch axis is dynamic, so a batch frozen by the
exporter is caught) and at two sizes of every dynamic axis. Latency is measured on the
way, for the report; it never decides.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from onnxport.errors import BadInput
from onnxport.flow.inputs import (axis_sizes_for, checked_dynamic_axes,
                                  describe_inputs, load_npz, random_inputs)
from onnxport.artifact.modelinfo import TensorInfo, import_onnx, read_model_info
from onnxport.conversion import (BatchResult, Check, Verification,
                                 VerificationSettings)
from onnxport.records import RunOptions, RunSession, Runner, Tolerance
from onnxport.tolerance import compare_output

DEFAULT_DYNAMIC_BATCHES = (1, 3)


class Reference:
    """The source framework's outputs, computed once per batch and shared by every
    candidate of the run, so each stage's error is measured against the same answers.

    The inputs are described from the source model's example inputs (names, dtypes,
    the sizes of non-batch axes), so they do not depend on any candidate's format.
    The dynamic axes (`settings.dynamic_axes`) are made at two sizes each
    (`settings.axis_sizes`, else the example's and `inputs.other_size` of it), the same
    size for every input that shares an axis name; the sizes change together with the
    batch: the first inputs are the example's sizes at the first batch, the second the
    other sizes at the second batch.
    """

    def __init__(self, session: RunSession, input_names: list[str],
                 example_inputs: Mapping[str, Any], dynamic_batch: bool,
                 settings: VerificationSettings):
        self.session = session
        self.settings = settings
        self.example_shapes = {k: tuple(np.shape(v)) for k, v in example_inputs.items()}
        empty = [k for k, shape in self.example_shapes.items() if 0 in shape]
        if empty:
            raise BadInput(f"the example input {empty[0]} has a zero-size axis (shape "
                           f"{list(self.example_shapes[empty[0]])}), so there is nothing "
                           "to verify", "give example inputs with at least one element "
                           "on every axis")
        self.dynamic_axes = checked_dynamic_axes(
            settings.dynamic_axes,
            {name: self.example_shapes[name] for name in input_names
             if name in self.example_shapes}, dynamic_batch)
        found = axis_sizes_for(self.dynamic_axes, self.example_shapes)
        self.axis_sizes = {label: tuple(int(n) for n in settings.axis_sizes.get(label)
                                        or found[label]) for label in found}
        self.inputs_info = []
        for name in input_names:
            dims: list[int | str] = list(np.shape(example_inputs[name]))
            dims = (["batch"] + dims[1:]) if dynamic_batch else dims
            for axis, label in self.dynamic_axes.get(name, {}).items():
                dims[axis] = label
            self.inputs_info.append(
                TensorInfo(name, dims, str(np.asarray(example_inputs[name]).dtype)))
        self._inputs: dict[str, dict[str, np.ndarray]] = {}
        self._outputs: dict[str, dict[str, np.ndarray]] = {}
        self._build_inputs(dynamic_batch)

    def _build_inputs(self, dynamic_batch: bool) -> None:
        s = self.settings
        if s.data is not None:
            data = load_npz(s.data, self.inputs_info)
            self._inputs["data"] = data
            first = next(iter(data.values()))
            if dynamic_batch and first.ndim and first.shape[0] > 1:
                self._inputs["data[:1]"] = {k: v[:1] for k, v in data.items()}
            return
        batches: tuple[int | None, ...]
        if dynamic_batch:
            batches = s.batch_sizes or DEFAULT_DYNAMIC_BATCHES
        else:
            batches = (None,)
        cases = max([len(batches), *(len(p) for p in self.axis_sizes.values())])
        for case in range(cases):
            batch = batches[min(case, len(batches) - 1)]
            sizes = {name: int(pair[min(case, len(pair) - 1)])
                     for name, pair in self.axis_sizes.items()}
            feeds = random_inputs(self.inputs_info, batch, s.seed, self.example_shapes,
                                  s.input_ranges, sizes)
            label = self._label(feeds, dynamic_batch, sizes)
            self._inputs[label] = feeds

    @staticmethod
    def _label(feeds: Mapping[str, np.ndarray], dynamic_batch: bool,
               sizes: Mapping[str, int]) -> str:
        """`batch 3`, or with dynamic axes `batch 3, sequence 8` (`sequence 8` when the
        batch is static)."""
        first = next(iter(feeds.values()), None)
        parts = []
        if first is not None and first.ndim and (dynamic_batch or not sizes):
            parts.append(f"batch {first.shape[0]}")
        parts += [f"{name} {size}" for name, size in sizes.items()]
        return ", ".join(parts) or "batch"

    @property
    def labels(self) -> list[str]:
        return list(self._inputs)

    def inputs(self, label: str) -> dict[str, np.ndarray]:
        return self._inputs[label]

    def outputs(self, label: str) -> dict[str, np.ndarray]:
        if label not in self._outputs:
            try:
                self._outputs[label] = self.session.run(self._inputs[label])
            except Exception as exc:
                if not self.axis_sizes:
                    raise
                declared = ", ".join(f"{n}:{axis}={label}"
                                     for n, p in self.dynamic_axes.items()
                                     for axis, label in p.items())
                raise BadInput(
                    f"the source model itself fails on the verification inputs at {label} "
                    f"({_first_line(exc)}), so its dynamic axes ({declared}) cannot vary "
                    "that way", "declare only axes the model accepts at any size, or fix "
                    "the size the model expects") from exc
        return self._outputs[label]

    def proves_little(self, outputs: list[str],
                      budget_of: Callable[[str], Tolerance]) -> list[str]:
        """Warnings for outputs a passing verification says little about: the same for
        every verification input (a saturated softmax, an untrained model), or smaller
        than the tolerance's absolute term, so no difference could show."""
        notes = []
        for name in outputs:
            rows = [np.asarray(self.outputs(label)[name], dtype=np.float64)
                    for label in self.labels]
            rows = [r.reshape(1, -1) if r.ndim == 0 else r.reshape(r.shape[0], -1)
                    for r in rows if r.size]
            if not rows or len({r.shape[1] for r in rows}) != 1:
                continue
            values = np.concatenate(rows)
            if not np.isfinite(values).all():
                continue
            budget = budget_of(name)
            scale = float(np.abs(values).max())
            spread = float((values.max(axis=0) - values.min(axis=0)).max())
            if values.shape[0] >= 2 and spread <= budget.atol + budget.rtol * scale:
                notes.append(f"output {name} is the same for every verification input (it "
                             f"varies by at most {spread:.2g}): matching it proves little; "
                             "verify with real inputs (--data) or a trained checkpoint")
            elif scale <= budget.atol:
                notes.append(f"output {name} is at most {scale:.2g}, within the tolerance's "
                             f"absolute term (atol {budget.atol:g}): no difference could "
                             "show; verify with real inputs (--data) or a trained checkpoint")
        return notes



#: A speedup whose paired runs spread (p10 to p90) wider than this share of it is marked
#: noisy: the machine was busy, and the figure is not to be trusted.
NOISY_SPREAD = 1.0


def interleaved_latency(source: RunSession, candidate: RunSession,
                        feeds: Mapping[str, Any], runs: int, warmup: int = 3
                        ) -> dict[str, Any]:
    """Time the source and the candidate in alternating runs (which goes first flips each
    round), so a burst of load on a shared machine hits both; the speedup is the median
    of the per-round ratios, with their spread."""
    for _ in range(warmup):
        source.run(feeds)
        candidate.run(feeds)
    source_ms, onnx_ms = [], []
    for round_ in range(runs):
        pair = [(source, source_ms), (candidate, onnx_ms)]
        for session, samples in (pair if round_ % 2 == 0 else pair[::-1]):
            started = time.perf_counter()
            session.run(feeds)
            samples.append((time.perf_counter() - started) * 1000)
    ratios = sorted(s / o for s, o in zip(source_ms, onnx_ms) if o > 0)
    speedup = statistics.median(ratios) if ratios else None
    low, high = (_quantile(ratios, 0.1), _quantile(ratios, 0.9)) if ratios else (None, None)
    return {
        "runs": runs,
        "interleaved": True,
        "source": statistics.median(source_ms),
        "onnx": statistics.median(onnx_ms),
        "speedup": speedup,
        "speedup_p10_p90": [low, high],
        "noisy": bool(speedup and len(ratios) >= 2 and (high - low) > NOISY_SPREAD * speedup),
        "source_samples": [round(t, 5) for t in source_ms],
        "onnx_samples": [round(t, 5) for t in onnx_ms],
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def verify_candidate(
    path: Path,
    reference: Reference,
    runner: Runner,
    run_options: RunOptions,
    expected_inputs: list[str],
    expected_outputs: list[str],
    dynamic_batch: bool,
    tolerance_for: Callable[[str], Tolerance],
) -> Verification:
    """Run every structural and numerical check on one candidate model.

    ONNX files get the full structural checks; other formats (a .tflite file) are
    checked through their runner: it must open them and answer by the expected names.
    """
    checks: list[Check] = []
    is_onnx = Path(path).suffix == ".onnx"
    if is_onnx:
        _structural_checks(path, expected_inputs, expected_outputs, dynamic_batch,
                           checks, reference.dynamic_axes)
    if not all(c.passed for c in checks):
        return _failed(checks)
    try:
        session = runner.open(path, run_options)
    except Exception as exc:
        checks.append(Check("session", False,
                            f"{runner.name} cannot open the model: {_first_line(exc)}"))
        return _failed(checks)
    checks.append(Check("session", True, f"opened with {', '.join(session.providers)}"))
    if not is_onnx:
        names_ok = (list(session.input_names) == list(expected_inputs)
                    and list(session.output_names) == list(expected_outputs))
        checks.append(Check("names", names_ok,
                            f"inputs {session.input_names}, outputs {session.output_names}"
                            + ("" if names_ok else f"; expected {list(expected_inputs)} "
                               f"and {list(expected_outputs)}")))
        if not names_ok:
            session.close()
            return _failed(checks)
    try:
        batches = []
        for label in reference.labels:
            feeds = reference.inputs(label)
            expected = reference.outputs(label)
            try:
                actual = session.run(feeds)
            except Exception as exc:
                checks.append(Check("run", False, f"{label}: {_first_line(exc)}"))
                return _failed(checks, batches)
            batches.append(BatchResult(
                label=label, inputs=describe_inputs(feeds),
                outputs=[compare_output(name, actual.get(name), expected[name],
                                        tolerance_for(name),
                                        name in reference.settings.classifiers,
                                        reference.settings.allow_nonfinite)
                         for name in expected_outputs]))
        latency = {}
        if reference.settings.latency_runs > 0:
            latency = {"inputs": reference.labels[0], **interleaved_latency(
                reference.session, session, reference.inputs(reference.labels[0]),
                reference.settings.latency_runs)}
        providers = list(session.providers)
    finally:
        session.close()
    failing = [f"{b.label} {o.name}: {o.problem}" for b in batches for o in b.outputs
               if not o.passed]
    return Verification(passed=not failing, checks=checks, batches=batches,
                        latency_ms=latency, providers=providers,
                        problem=failing[0] if failing else "")


def _structural_checks(path: Path, expected_inputs: list[str], expected_outputs: list[str],
                       dynamic_batch: bool, checks: list[Check],
                       dynamic_axes: Mapping[str, Mapping[int, str]] | None = None) -> None:
    onnx = import_onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
        checks.append(Check("onnx.checker", True, "full check passed"))
    except Exception as exc:
        checks.append(Check("onnx.checker", False, _first_line(exc)))
        return
    info = read_model_info(path)
    missing = [f for f in info.external_data if not (path.parent / f).is_file()]
    checks.append(Check("files", not missing,
                        f"missing external data: {', '.join(missing)}" if missing else
                        ("self-contained" if not info.external_data else
                         f"external data beside it: {', '.join(info.external_data)}")))
    got_in = [t.name for t in info.inputs]
    got_out = [t.name for t in info.outputs]
    names_ok = got_in == list(expected_inputs) and got_out == list(expected_outputs)
    checks.append(Check(
        "names", names_ok,
        f"inputs {got_in}, outputs {got_out}" if names_ok else
        f"expected inputs {list(expected_inputs)} and outputs {list(expected_outputs)}, "
        f"the model has inputs {got_in} and outputs {got_out}"))
    if dynamic_batch:
        fixed = [f"{t.name} (batch fixed at {t.shape[0]})" for t in info.inputs + info.outputs
                 if t.shape and isinstance(t.shape[0], int)]
        checks.append(Check(
            "dynamic batch", not fixed,
            "the first axis of every input and output is symbolic" if not fixed else
            "the exporter froze the batch dimension of " + ", ".join(fixed) +
            "; keep the batch a tensor dimension in the model (x.shape[0] used directly, "
            "not int(...) or a constant; -1 in reshape), or convert with --static-batch"))
    if dynamic_axes:
        by_name = {t.name: t for t in info.inputs}
        frozen = []
        for name, per_input in dynamic_axes.items():
            shape = by_name[name].shape if name in by_name else None
            for axis, label in per_input.items():
                if shape is None:
                    continue  # the names check says the input is missing
                if axis >= len(shape):
                    frozen.append(f"{name} axis {axis} ({label}: the input has rank "
                                  f"{len(shape)})")
                elif isinstance(shape[axis], int):
                    frozen.append(f"{name} axis {axis} ({label}, fixed at {shape[axis]})")
        declared = ", ".join(f"{n}:{a}={label}" for n, p in dynamic_axes.items()
                             for a, label in p.items())
        checks.append(Check(
            "dynamic axes", not frozen,
            f"symbolic: {declared}" if not frozen else
            "the exporter froze the dynamic axes " + ", ".join(frozen) +
            "; keep those sizes tensor dimensions in the model (x.shape[1] used directly, "
            "not int(...) or a constant; -1 in reshape), or leave them out of --dynamic"))


def _failed(checks: list[Check], batches: list[BatchResult] | None = None) -> Verification:
    problem = next(f"{c.name}: {c.detail}" for c in checks if not c.passed)
    return Verification(passed=False, checks=checks, batches=batches or [], latency_ms={},
                        providers=[], problem=problem)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()
