"""When an output counts as equal to the source's: the one rule, in one place.

- the rule itself (`compare_output`): per element |onnx - source| <= atol + rtol *
  |source|, NaN and infinities only where the source has them, plus the optional bounds
  of the `Tolerance` (cosine, argmax agreement of declared classifiers, max abs error as a
  share of the source's range), computed in float64 so the check adds no error;
- which budget a stage is held to (`budget_for`);
- how budgets and verification settings are written to report.json / manifest.json and
  read back (`to_json`, `from_json`, `settings_to_json`, `settings_from_json`), so that
  `onnxport verify`, `diagnose` and the conformance kit apply the same budgets the
  conversion did.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from onnxport.conversion import OutputComparison, VerificationSettings
from onnxport.errors import BadInput
from onnxport.records import Tolerance

_FIELDS = {f.name for f in dataclasses.fields(Tolerance)}

_REL_FLOOR = float(np.finfo(np.float32).eps)  # below this |source| counts as zero for max_rel


def compare_output(name: str, actual, expected, tolerance: Tolerance,
                   classifier: bool = False, allow_nonfinite: bool = False
                   ) -> OutputComparison:
    """Compare one output; the argmax floor applies only to declared classifiers.

    NaN and infinities must appear exactly where the source has them; and where the
    source itself has any, the comparison proves nothing about those elements, so it
    fails unless the user says they are expected (`allow_nonfinite`)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    base = dict(name=name, shape=list(actual.shape), expected_shape=list(expected.shape),
                tolerance=tolerance)
    if actual.shape != expected.shape:
        nan = float("nan")
        return OutputComparison(
            **base, max_abs=nan, mean_abs=nan, max_rel=nan, cosine=nan,
            argmax_agreement=None, classifier=classifier, mismatched=int(expected.size),
            elements=int(expected.size),
            passed=False,
            problem=f"shape {list(actual.shape)} where the source gives "
                    f"{list(expected.shape)}")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
        finite = np.isfinite(diff)
        same_special = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
        close = np.isclose(a, e, rtol=tolerance.rtol, atol=tolerance.atol, equal_nan=True)
    mismatched = int(np.count_nonzero(~close))
    checked = np.where(finite, diff, 0.0)
    max_abs = float(checked.max()) if a.size else 0.0
    mean_abs = float(checked.mean()) if a.size else 0.0
    rel = checked / np.maximum(np.abs(np.where(finite, e, 0.0)), _REL_FLOOR)
    max_rel = float(rel.max()) if a.size else 0.0
    cosine = _cosine(np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(e), e, 0.0))
    agreement = _argmax_agreement(a, e)

    problems = []
    bad_special = int(np.count_nonzero(~finite & ~same_special))
    source_special = int(np.count_nonzero(~np.isfinite(e)))
    if bad_special:
        problems.append(f"{bad_special} NaN/inf values where the source has others or "
                        "finite ones")
    elif source_special and not allow_nonfinite:
        problems.append(f"the source's output has {source_special} NaN/inf values "
                        f"(of {e.size}); equal NaN/inf prove nothing: fix the model or its "
                        "inputs, or pass --allow-nonfinite if they are expected")
    if mismatched:
        problems.append(f"{mismatched} of {a.size} values differ by more than "
                        f"atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x |source| "
                        f"(max abs {max_abs:.3g})")
    if tolerance.min_cosine is not None and cosine < tolerance.min_cosine:
        problems.append(f"cosine similarity {cosine:.6f} is below {tolerance.min_cosine}")
    if tolerance.max_abs_of_range is not None and a.size:
        finite_e = e[np.isfinite(e)]
        span = float(finite_e.max() - finite_e.min()) if finite_e.size else 0.0
        bound = tolerance.max_abs_of_range * (span or float(np.abs(finite_e).max(initial=0)))
        if max_abs > bound:
            problems.append(f"max abs {max_abs:.3g} is above {tolerance.max_abs_of_range:g} "
                            f"x the source's range {span:.3g}")
    if (classifier and tolerance.min_argmax_agreement is not None
            and agreement is not None and agreement < tolerance.min_argmax_agreement):
        problems.append(f"argmax agrees on {agreement:.1%}, below "
                        f"{tolerance.min_argmax_agreement:.1%}")
    return OutputComparison(
        **base, histogram=error_histogram(checked),
        max_abs=max_abs, mean_abs=mean_abs, max_rel=max_rel, cosine=cosine,
        argmax_agreement=agreement, classifier=classifier, mismatched=mismatched,
        elements=int(a.size), nonfinite=source_special,
        passed=not problems, problem="; ".join(problems))


def error_histogram(diff: np.ndarray) -> dict:
    """Counts of |error| per decade from 1e-12 to 1e2, exact zeros counted apart: small
    enough for the report, enough to see where a model's error sits."""
    edges = [10.0 ** k for k in range(-12, 3)]
    flat = diff.ravel()
    counts, _ = np.histogram(np.clip(flat[flat > 0], edges[0], edges[-1]), bins=edges)
    return {"edges": edges, "counts": [int(c) for c in counts],
            "zeros": int(np.count_nonzero(flat == 0))}


def _cosine(a: np.ndarray, e: np.ndarray) -> float:
    na, ne = np.linalg.norm(a), np.linalg.norm(e)
    if na == 0 and ne == 0:
        return 1.0
    if na == 0 or ne == 0:
        return 0.0
    return float(np.dot(a.ravel(), e.ravel()) / (na * ne))


def _argmax_agreement(a: np.ndarray, e: np.ndarray) -> float | None:
    if a.ndim < 2 or a.shape[-1] < 2 or a.size == 0:
        return None
    return float(np.mean(np.argmax(a, axis=-1) == np.argmax(e, axis=-1)))


# --------------------------------------------------------------------------- which budget


def budget_for(output: str, *, target: Tolerance, settings: VerificationSettings,
               stage_budget: Tolerance | None = None) -> Tolerance:
    """The budget one output of one stage is held to.

    A stage whose pass declares its own budget (an INT8 model: the target's
    `quantized_tolerance`) is held to it, since no fp32 budget can hold 8-bit weights.
    Every other stage: the user's budget for this output (`--tolerance NAME:...`), else
    the user's budget for every output (`--atol`/`--rtol`), else the target's.
    """
    if stage_budget is not None:
        return stage_budget
    return settings.output_tolerances.get(output) or settings.tolerance or target


def with_overrides(tolerance: Tolerance, atol: float | None = None,
                   rtol: float | None = None) -> Tolerance:
    """`tolerance` with the user's --atol / --rtol in place of its own, when given."""
    changes = {k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None}
    for key, value in changes.items():
        if not math.isfinite(value) or value < 0:
            raise BadInput(f"--{key} {value}: must be a finite number >= 0")
    return dataclasses.replace(tolerance, **changes) if changes else tolerance


# --------------------------------------------------------------------------- JSON


def to_json(tolerance: Tolerance) -> dict[str, Any]:
    """As report.json and manifest.json hold it (infinity as written by write_json)."""
    return dataclasses.asdict(tolerance)


def from_json(fields: Any, where: str = "the report") -> Tolerance:
    """A budget read back from JSON, where infinity is the string "inf"; a wrong field
    or value is the artifact's fault, said in one line."""
    if not isinstance(fields, Mapping) or set(fields) - _FIELDS:
        raise BadInput(f"{where}: a tolerance must be an object with fields "
                       f"{', '.join(sorted(_FIELDS))}, not {fields!r}")
    values: dict[str, Any] = {}
    for key, value in fields.items():
        try:
            values[key] = None if value is None else float(value)
        except (TypeError, ValueError):
            raise BadInput(f"{where}: tolerance field {key} must be a number, not "
                           f"{value!r}") from None
    return Tolerance(**values)


def settings_to_json(settings: VerificationSettings) -> dict[str, Any]:
    return {
        "seed": settings.seed,
        "batch_sizes": settings.batch_sizes,
        "input_ranges": dict(settings.input_ranges),
        "data": None if settings.data is None else str(settings.data),
        "tolerance": None if settings.tolerance is None else to_json(settings.tolerance),
        "output_tolerances": {k: to_json(v) for k, v in settings.output_tolerances.items()},
        "latency_runs": settings.latency_runs,
        "classifiers": sorted(settings.classifiers),
        "allow_nonfinite": settings.allow_nonfinite,
        "dynamic_axes": {name: {str(axis): label for axis, label in axes.items()}
                         for name, axes in settings.dynamic_axes.items()},
        "axis_sizes": {label: list(sizes) for label, sizes in settings.axis_sizes.items()},
        "rule": "|onnx - source| <= atol + rtol * |source| for every element of every "
                "output, at every batch checked",
    }


def settings_from_json(recorded: Mapping[str, Any], where: str = "the report"
                       ) -> dict[str, Any]:
    """The fields of the `VerificationSettings` a conversion recorded, for re-checking."""
    try:
        values: dict[str, Any] = {
            "seed": int(recorded.get("seed", 0)),
            "batch_sizes": tuple(int(b) for b in recorded["batch_sizes"])
            if recorded.get("batch_sizes") else None,
            "input_ranges": {str(k): (float(v[0]), float(v[1]))
                             for k, v in (recorded.get("input_ranges") or {}).items()},
            "tolerance": from_json(recorded["tolerance"], where)
            if recorded.get("tolerance") else None,
            "output_tolerances": {str(k): from_json(v, where) for k, v in
                                  (recorded.get("output_tolerances") or {}).items()},
            "latency_runs": int(recorded.get("latency_runs", 20)),
            "classifiers": frozenset(str(c) for c in recorded.get("classifiers") or ()),
            "allow_nonfinite": bool(recorded.get("allow_nonfinite", False)),
            "dynamic_axes": {str(name): {int(axis): str(label)
                                         for axis, label in axes.items()}
                             for name, axes in (recorded.get("dynamic_axes") or {}).items()},
            "axis_sizes": {str(label): tuple(int(s) for s in sizes)
                           for label, sizes in (recorded.get("axis_sizes") or {}).items()},
        }
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise BadInput(f"{where}: verification_settings are not what onnxport writes "
                       f"({type(exc).__name__}: {exc})") from None
    if recorded.get("data"):
        values["data"] = Path(str(recorded["data"]))
    return values


def recorded_budgets(verification: Mapping[str, Any], where: str = "the manifest"
                     ) -> dict[str, Tolerance]:
    """The budget each output of a shipped model was held to (fp32 or INT8), from the
    verification its manifest recorded."""
    batches = verification.get("batches") or []
    outputs = batches[0].get("outputs", []) if batches else []
    return {str(out["name"]): from_json(out["tolerance"], where) for out in outputs}
