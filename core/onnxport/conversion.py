"""The records of one conversion: what was asked (`ConversionRequest`) and what came
out (`ConversionResult`, one `TargetArtifact` per target, one `StageResult` per step,
each with its `Verification`).

The flow fills them in, the artifact and the report are written from them, and the
Python API returns them. Plain dataclasses: nothing here imports a framework or onnx.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from onnxport.records import (ExportResult, InputSpec, LoadedModel, Source, Target,
                              Tolerance)

if TYPE_CHECKING:
    from onnxport.artifact.modelinfo import ModelInfo

# --------------------------------------------------------------------------- request


@dataclass
class VerificationSettings:
    """What to feed and how strict to be; every field has a documented default."""

    seed: int = 0
    batch_sizes: tuple[int, ...] | None = None  # None: (1, 3) if dynamic
    input_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    data: Path | None = None  # an .npz with one array per input
    tolerance: Tolerance | None = None  # None: the target's
    output_tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    latency_runs: int = 20
    threads: int | None = None
    classifiers: frozenset[str] = frozenset()  # outputs whose argmax floor applies
    allow_nonfinite: bool = False  # NaN/inf in the source's outputs are expected
    # axes beyond the batch that vary, by input: {"input_ids": {1: "sequence"}}; each is
    # checked symbolic in the ONNX graph and the inputs are made at two of its sizes
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    # the sizes each named axis is verified at: {"sequence": (16, 8)}; empty: the
    # example's size, then half of it (one more below 4), set once the model is loaded
    axis_sizes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class ConversionRequest:
    """Everything one conversion needs, whoever asks for it (the CLI, the Python API, a
    fleet, the service): built by `onnxport.flow.building.build_request`."""

    source: Source
    output: Path
    name: str | None = None
    backend: str | None = None
    exporter: str | None = None
    opset: int | None = None
    inputs: tuple[InputSpec, ...] = ()
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    dynamic_batch: bool = True
    # axes beyond the batch the user declared variable: {"input_ids": {1: "sequence"}}
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    external_data: bool | None = None
    targets: tuple[str, ...] = ("cpu",)
    pass_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # by pass
    optimize: str = "fast"  # how many candidates to try: "fast" or "thorough"
    latency_budget: tuple[float, int] | None = None  # (p99 ms, batch) for every target
    require_budget: bool = False  # a missed latency budget fails the run
    calibration_data: Path | None = None  # an .npz (or a directory of them) for INT8
    config: Path | None = None  # the targets config file this request uses, if any
    enable: tuple[str, ...] = ()  # records off by default that this request turns on
    trust_code: bool = False
    overwrite: bool = False
    keep_failed: bool = False
    verification: VerificationSettings = field(default_factory=VerificationSettings)
    backend_options: dict[str, Any] = field(default_factory=dict)
    made_by: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- verification


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class OutputComparison:
    """One output of a candidate against the source's, at one batch."""

    name: str
    shape: list[int]
    expected_shape: list[int]
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    argmax_agreement: float | None  # only for [..., classes>=2] outputs
    classifier: bool  # declared a classifier: its argmax floor applies
    mismatched: int  # elements outside atol + rtol * |source|
    elements: int
    tolerance: Tolerance
    passed: bool
    problem: str = ""  # why it failed, in words
    histogram: dict | None = None  # |error| counts in decades: {"edges": [...], "counts": [...]}
    nonfinite: int = 0  # NaN/inf values in the source's output (allowed only on request)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchResult:
    label: str  # "batch 1", "batch 3", or "data" for user data
    inputs: dict[str, dict]
    outputs: list[OutputComparison]

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)


@dataclass
class Verification:
    passed: bool
    checks: list[Check]
    batches: list[BatchResult]
    latency_ms: dict[str, Any]
    providers: list[str]
    problem: str = ""

    @property
    def max_abs(self) -> float | None:
        values = [o.max_abs for b in self.batches for o in b.outputs]
        return max(values) if values else None

    def worst_by_output(self) -> dict[str, OutputComparison]:
        """Each output's comparison at its worst batch: a failing one before a passing
        one, then the largest max abs error (NaN, a wrong shape, counts as largest)."""
        worst: dict[str, OutputComparison] = {}
        for batch in self.batches:
            for out in batch.outputs:
                current = worst.get(out.name)
                if current is None or _severity(out) > _severity(current):
                    worst[out.name] = out
        return worst

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "problem": self.problem,
            "max_abs": self.max_abs,
            "checks": [asdict(c) for c in self.checks],
            "batches": [{"label": b.label, "passed": b.passed, "inputs": b.inputs,
                         "outputs": [o.to_dict() for o in b.outputs]} for b in self.batches],
            "latency_ms": self.latency_ms,
            "providers": self.providers,
        }


def _severity(out: OutputComparison) -> tuple[bool, float]:
    error = math.inf if math.isnan(out.max_abs) else out.max_abs
    return (not out.passed, error)


# --------------------------------------------------------------------------- result


@dataclass
class Candidate:
    """One complete model a target could ship: a chain of stages from an export, its
    figures once timed side by side, and why it shipped or lost."""

    name: str  # e.g. "dynamo > simplify > quantize"
    stages: list["StageResult"]
    latency_ms: dict[int, dict[str, float]] = field(default_factory=dict)  # by batch
    verdict: str = ""  # "shipped", "lost", "not eligible"
    reason: str = ""  # why, with the figures
    cause: str = ""  # why, in a few words ("slower", "within noise, larger", ...)

    @property
    def final(self) -> "StageResult":
        return self.stages[-1]

    def to_json(self) -> dict[str, Any]:
        final = self.final
        verification = final.verification
        return {"name": self.name, "stages": [s.stage for s in self.stages],
                "verdict": self.verdict, "reason": self.reason, "cause": self.cause,
                "size_bytes": final.info.size_bytes if final.info else None,
                "max_abs": verification.max_abs if verification else None,
                "passed": bool(verification and verification.passed),
                "latency_ms": {str(b): v for b, v in self.latency_ms.items()}}


@dataclass
class StageResult:
    """One step of a target's pipeline: the export, then each pass.

    `status` is "ok" (its model went on), "skipped" (the pass did not apply or had
    nothing to do), "rejected" (an optional pass whose model failed verification or
    raised: the previous model went on) or "failed" (a required pass: the target fails).
    """

    stage: str
    status: str
    path: Path | None = None
    info: ModelInfo | None = None
    verification: Verification | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    warnings: list[str] = field(default_factory=list)  # the pass's own notes


@dataclass
class TargetArtifact:
    target: Target
    directory: Path
    model_path: Path
    stages: list[StageResult]
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    runner: str = "onnxruntime"  # what ran the shipped model in verification
    requested: str = ""  # the target name the user gave (e.g. "auto")
    candidates: list[Candidate] = field(default_factory=list)  # when there were several
    exported: ExportResult | None = None  # the export its model came from
    budget: dict[str, Any] | None = None  # the real-time budget's check, if one was set
    budget_required: bool = False  # a missed budget fails this target

    @property
    def final(self) -> StageResult:
        """The stage whose model was shipped, or the one that failed the target."""
        failed = [s for s in self.stages if s.status == "failed"]
        return failed[0] if failed else [s for s in self.stages if s.status == "ok"][-1]

    @property
    def verification(self) -> Verification:
        return self.final.verification

    @property
    def passed(self) -> bool:
        over = self.budget_required and self.budget is not None and not self.budget["met"]
        return self.final.status == "ok" and self.verification.passed and not over

    @property
    def problem(self) -> str:
        """Why the target failed, in words."""
        if self.verification is not None and self.verification.problem:
            return self.verification.problem
        if self.budget is not None and not self.budget["met"]:
            b = self.budget
            return (f"p99 {b['p99_ms']:.3g} ms at batch {b['batch']} is over the latency "
                    f"budget of {b['budget_ms']:g} ms (--require-budget)")
        return self.final.reason


@dataclass
class ConversionResult:
    """What a conversion produced; `output` is None when nothing was written."""

    name: str
    passed: bool
    output: Path | None
    loaded: LoadedModel
    exported: ExportResult
    artifacts: list[TargetArtifact]
    report: dict[str, Any]
    timings: dict[str, float]

    @property
    def model_path(self) -> Path:
        """The model file of the first target (the only one, in the common case)."""
        return self.artifacts[0].model_path

    def artifact(self, target: str) -> TargetArtifact:
        return next(a for a in self.artifacts if a.target.name == target)
