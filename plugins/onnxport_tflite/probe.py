"""`onnxport probe tflite`: do the known TFLite failures still happen here?

Each probe builds a tiny Keras model in a child process of its own (child.py), converts
it the way the failure was reported, runs the result in the TFLite interpreter and
compares it with Keras; a crash ends only that child. The table says, for this
environment, whether each failure still occurs, so users see the day it is fixed. The
command reports findings and exits 0 whatever they are; ONNXPORT_TFLITE_TIMEOUT bounds
each probe's seconds (default 900).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

@dataclass(frozen=True)
class Probe:
    case: str  # child.py probe CASE
    failure: str  # the known failure, as users know it
    model: str


PROBES = [
    Probe("dense_bn", "keras-team/keras#19108: converter aborts on Keras 3 models",
          "Dense+BatchNorm, from_keras_model"),
    Probe("dense_bn_saved_model", "keras-team/keras#19108 via tf.saved_model.save",
          "Dense+BatchNorm, from_saved_model"),
    Probe("lstm", "LSTM fails on TensorListReserve (builtin ops)",
          "LSTM+BatchNorm, from_keras_model"),
]


def configure(parser) -> None:
    parser.add_argument("what", choices=["tflite"],
                        help="what to probe: tflite (the TFLite converter and interpreter)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from .converting import DEFAULT_TIMEOUT, TIMEOUT_VARIABLE

    findings = probe_all(float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT))
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        print(render(findings))
    return 0


def probe_all(timeout: float = 900.0) -> dict[str, Any]:
    """Run every probe, in parallel child processes, and interpret the results."""
    from .converting import CHILD, child_environment, converter_failure

    started = time.perf_counter()
    processes = [(probe, subprocess.Popen(
        [sys.executable, "-X", "faulthandler", str(CHILD), "probe", probe.case],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_environment())) for probe in PROBES]
    rows = []
    for probe, process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            rows.append(_row(probe, "unknown", f"did not finish in {timeout:.0f} s"))
            continue
        report = _last_json(out)
        if process.returncode != 0 or report is None:
            failure = converter_failure(process.returncode, err)
            rows.append(_row(probe, "yes", failure.message))
            continue
        rows.append(_interpret(probe, report))
    deprecation = _deprecation(rows)
    return {"environment": _environment(), "probes": rows, "deprecation": deprecation,
            "seconds": round(time.perf_counter() - started, 1)}


def _interpret(probe: Probe, report: dict[str, Any]) -> dict[str, Any]:
    if not report.get("converted"):
        from .converting import converter_message

        lines = (report.get("error") or "").strip().splitlines() or [""]
        message = (converter_message(report.get("error", ""))
                   or f"{report.get('error_type')}: {lines[0][:200]}")
        row = _row(probe, "yes", f"conversion failed: {message}")
    else:
        max_abs = report.get("max_abs")
        wrong = max_abs is None or not math.isfinite(max_abs) or max_abs > 1e-4
        size = f"{report.get('bytes', 0) / 1024:.1f} KB"
        if wrong:
            row = _row(probe, "yes (silently)",
                       f"converted ({size}), but its outputs differ from Keras "
                       f"(max abs error {max_abs})")
        else:
            row = _row(probe, "no", f"converted ({size}); outputs match Keras "
                                    f"(max abs error {max_abs:.1e})")
    row["interpreter_warning"] = report.get("interpreter_warning", "")
    return row


def _row(probe: Probe, occurs: str, detail: str) -> dict[str, Any]:
    return {"case": probe.case, "failure": probe.failure, "model": probe.model,
            "still_occurs": occurs, "detail": detail}


def _deprecation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    warning = next((r.get("interpreter_warning") for r in rows
                    if r.get("interpreter_warning")), "")
    litert = importlib.util.find_spec("ai_edge_litert") is not None
    return {"tf_lite_interpreter_warns": bool(warning), "warning": warning,
            "ai_edge_litert_installed": litert}


def _environment() -> dict[str, str]:
    from onnxport.flow.environment import package_version

    return {"python": sys.version.split()[0],
            "tensorflow": package_version("tensorflow") or
            package_version("tensorflow-cpu") or "not installed",
            "keras": package_version("keras") or "not installed",
            "ai_edge_litert": package_version("ai-edge-litert") or "not installed"}


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def render(findings: dict[str, Any]) -> str:
    env = findings["environment"]
    lines = [f"TFLite probe: tensorflow {env['tensorflow']}, keras {env['keras']}, "
             f"Python {env['python']} (each probe in its own process, "
             f"{findings['seconds']} s)", ""]
    rows = [("known failure", "model", "still occurs?", "what happened")] + [
        (r["failure"], r["model"], r["still_occurs"], r["detail"])
        for r in findings["probes"]]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths))
                     + "  " + row[3])
    deprecation = findings["deprecation"]
    lines.append("")
    lines.append("tf.lite deprecated in favour of LiteRT: " + (
        "yes, tf.lite.Interpreter warns it is scheduled for deletion"
        if deprecation["tf_lite_interpreter_warns"] else
        "tf.lite.Interpreter gave no deprecation warning") + "; ai_edge_litert (LiteRT) "
        + ("is installed and is what the tflite runner uses" if
           deprecation["ai_edge_litert_installed"] else
           "is not installed, so the tflite runner uses tf.lite.Interpreter"))
    lines.append("The tflite backend stays off by default; turn it on for one run with "
                 "--enable tflite (or ONNXPORT_ENABLE=tflite) and --backend tflite.")
    return "\n".join(lines)
