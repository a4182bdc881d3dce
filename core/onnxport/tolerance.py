"""How one output of a candidate model is compared with the source framework's.

The pass rule lives in `records.Tolerance`; this module computes the figures and applies
it. Statistics are computed in float64 so the comparison adds no error of its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from onnxport.records import Tolerance

_REL_FLOOR = float(np.finfo(np.float32).eps)  # below this |source| counts as zero for max_rel


@dataclass
class OutputComparison:
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

    def to_dict(self) -> dict:
        return asdict(self)


def compare_output(name: str, actual, expected, tolerance: Tolerance,
                   classifier: bool = False) -> OutputComparison:
    """Compare one output; the argmax floor applies only to declared classifiers."""
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
    if bad_special:
        problems.append(f"{bad_special} NaN/inf values that the source does not have")
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
        elements=int(a.size),
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
