"""The status file a training callback keeps beside the checkpoint: what a UI, a script
or a person reads to know whether a verified ONNX model exists, and why not.

It has the wake-word builder's shape (`{"has_onnx": ..., "onnx_size_bytes": ...}`,
shared/seeds/003) and more: where the artifact and its model are, what each target's
verification found, and for a failure, the cause and onnxport's exit code. The
`has_onnx` group describes the artifact on disk; the rest describes the last attempt
(which may have failed while an earlier verified artifact stayed in place).
It is written atomically (a temporary file renamed over it), so a reader never sees
half a file. Plain JSON values only; no framework is imported here.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from onnxport.artifact.reading import ArtifactError, open_artifact
from onnxport.artifact.writing import strict_json
from onnxport.errors import ExitCode

STATUS_FORMAT = "onnxport-training-status/1"
STATUS_FILE = "onnx-status.json"

# state: "exporting" (an attempt is under way), "passed", "failed"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def on_disk(artifact: Path, preferred: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `has_onnx` group for the artifact directory as it is now: whether a verified
    artifact is there, the size of its model files (of the first of `preferred` targets
    it holds), its path, and which training moment it was exported from."""
    empty = {"has_onnx": False, "onnx_size_bytes": None, "onnx_path": None,
             "artifact": None, "exported_from": None}
    try:
        opened = open_artifact(Path(artifact))
    except (ArtifactError, OSError):
        return empty
    by_name = {t.name: t for t in opened.targets}
    name = next((n for n in preferred if n in by_name), sorted(by_name)[0])
    entry = by_name[name]
    try:
        model = entry.model
        size = sum(int(f["bytes"]) for f in entry.manifest.get("files", []))
    except (ArtifactError, KeyError, TypeError, ValueError):
        return empty
    made_by = entry.manifest.get("made_by") or {}
    return {"has_onnx": model.is_file(), "onnx_size_bytes": size,
            "onnx_path": str(model), "artifact": str(Path(artifact)),
            "exported_from": made_by.get("training") if isinstance(made_by, dict)
            else None}


def target_summaries(report: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per target of a conversion's report.json: passed or failed, the stage that
    shipped (or failed), its worst error, model size and, for a failure, the problem."""
    summaries: dict[str, dict[str, Any]] = {}
    for name, target in ((report or {}).get("targets") or {}).items():
        stages = target.get("stages") or []
        failed = [s for s in stages if s.get("status") == "failed"]
        shipped = [s for s in stages if s.get("status") == "ok"]
        stage = failed[0] if failed else (shipped[-1] if shipped else {})
        verification = stage.get("verification") or {}
        summary = {"status": target.get("status"),
                   "shipped" if not failed else "failed_stage": stage.get("stage"),
                   "max_abs": verification.get("max_abs"),
                   "size_bytes": stage.get("size_bytes"),
                   "model": target.get("model"),
                   "ran_on": (verification.get("providers") or [None])[0]}
        if failed:
            summary["problem"] = verification.get("problem") or stage.get("reason") or ""
        summaries[name] = summary
    return summaries


def status_document(*, state: str, artifact: Path, targets_requested: tuple[str, ...],
                    checkpoint: Path | None, attempt: Mapping[str, Any],
                    outcome: Any = None, error: str | None = None,
                    exit_code: int = 0, cause: str = "", stage: str | None = None,
                    seconds: float | None = None, published: list[str] | None = None,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """The status as a dict. `outcome` is the worker's `ConversionOutcome` when the
    conversion ran; `error`/`exit_code`/`cause` describe a failure before it could."""
    document: dict[str, Any] = {"format": STATUS_FORMAT, "state": state}
    document.update(on_disk(artifact, targets_requested))
    report = None
    if outcome is not None:
        report = outcome.report
        exit_code = int(outcome.exit_code)
        if not outcome.passed:
            error = outcome.one_line()
            cause = outcome.cause or _cause_of(exit_code)
            stage = outcome.stage
        seconds = outcome.seconds
    elif error is not None and not cause:
        cause = _cause_of(exit_code)
    document.update({
        "targets": target_summaries(report),
        "error": error,
        "exit_code": exit_code,
        "cause": cause,
        "stage": stage,
        "seconds": None if seconds is None else round(float(seconds), 3),
        "peak_rss_bytes": getattr(outcome, "peak_rss_bytes", None),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "attempt": dict(attempt),
        "published": list(published or []),
        "notes": list(notes or []),
        "updated": utc_now(),
    })
    return document


def _cause_of(exit_code: int) -> str:
    """A failure's cause in one word, from onnxport's exit code (e.g. export_failed)."""
    try:
        return ExitCode(exit_code).name.lower()
    except ValueError:
        return "failed"


def write_status(path: Path, document: Mapping[str, Any]) -> None:
    """Write the status atomically: a temporary file beside it, renamed over it."""
    path = Path(path)
    text = json.dumps(strict_json(dict(document)), indent=2, allow_nan=False) + "\n"
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                     dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_status(path: str | Path) -> dict[str, Any]:
    """A status file written by a training callback (the path of the file, or of the
    directory given to the callback)."""
    path = Path(path)
    if path.is_dir():
        path = path / STATUS_FILE
    return json.loads(path.read_text())
