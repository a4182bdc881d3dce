"""The convert table's speedup: source and ONNX timed interleaved, the spread kept, and
a figure the spread makes unreliable marked as such in every report."""
from __future__ import annotations

import json
import time

from onnxport.flow.verification import NOISY_SPREAD, interleaved_latency
from onnxport.report.formatting import NOISY_MARK, speedup_text
from onnxport.report.markdown import render_markdown
from onnxport.report.terminal import conversion_summary
from conftest import factory


class Sleeper:
    """A session whose calls take a known time: the machine's noise is the one fault a
    test cannot cause on demand, so the durations are given instead."""

    def __init__(self, log: list[str], name: str, durations_ms):
        self.log, self.name, self.durations = log, name, iter(durations_ms)

    def run(self, feeds):
        self.log.append(self.name)
        time.sleep(next(self.durations) / 1000)
        return {}


def test_source_and_onnx_alternate_and_the_speedup_is_their_paired_ratio():
    log: list[str] = []
    source = Sleeper(log, "source", [6.0] * 13)
    onnx = Sleeper(log, "onnx", [2.0] * 13)
    latency = interleaved_latency(source, onnx, {}, runs=10)
    timed = log[6:]  # after three warm-up rounds
    assert timed[:4] == ["source", "onnx", "onnx", "source"]
    assert latency["interleaved"] and latency["runs"] == 10
    assert len(latency["source_samples"]) == len(latency["onnx_samples"]) == 10
    assert 2.0 < latency["speedup"] < 3.6  # 3x by the clock, less sleep's overshoot
    low, high = latency["speedup_p10_p90"]
    assert low <= latency["speedup"] <= high
    assert not latency["noisy"], latency
    assert speedup_text(latency) == f"{latency['speedup']:.1f}x"


def test_a_busy_burst_on_one_side_marks_the_speedup_noisy():
    log: list[str] = []
    bursts = [5.0, 5.0, 5.0] + [5.0, 40.0] * 5  # every other source run hit by load
    latency = interleaved_latency(Sleeper(log, "source", bursts),
                                  Sleeper(log, "onnx", [5.0] * 13), {}, runs=10)
    low, high = latency["speedup_p10_p90"]
    assert high - low > NOISY_SPREAD * latency["speedup"]
    assert latency["noisy"] and speedup_text(latency).endswith(NOISY_MARK)


def test_every_text_report_marks_and_explains_a_noisy_speedup(cli, tmp_path):
    out = tmp_path / "mlp"
    result = cli("convert", factory("autopilot_torch"), "-o", out, "--latency-runs", "5")
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    figures = [s["verification"]["latency_ms"] for s in report["targets"]["cpu"]["stages"]
               if (s.get("verification") or {}).get("latency_ms")]
    latency = figures[0]
    assert latency["interleaved"] and latency["speedup"] > 0
    for noisy in (False, True):  # whatever this busy machine measured, every row alike
        for figure in figures:
            figure["noisy"] = noisy
        for text in (conversion_summary(report, out), render_markdown(report)):
            assert (speedup_text(latency) in text) and (
                ("interleaved runs spread too widely" in text) == noisy)
