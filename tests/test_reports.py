"""report.html and report.md: written by every conversion, rendered from report.json,
self-contained, with a real plot for every output and stage."""

from __future__ import annotations

import base64
import json
import re

import pytest

import onnxport
from onnxport.errors import VerificationFailed

from conftest import ROOT, factory

MODELS = ROOT / "tests" / "models.py"


@pytest.fixture(scope="module")
def localization_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "localization"
    onnxport.convert(factory("localization"), output=out, targets=["cpu", "cuda"],
                     latency_runs=10)
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in
            re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_html_report_has_every_section_and_a_plot_per_output_and_stage(localization_run):
    page = (localization_run / "report.html").read_text()
    report = json.loads((localization_run / "report.json").read_text())
    for section in ("id='summary'", "id='target-cpu'", "id='target-cuda'", "id='inputs'",
                    "id='environment'", "Latency", "PASSED"):
        assert section in page, section
    verified = [(name, stage) for name, target in report["targets"].items()
                for stage in target["stages"] if stage["verification"]]
    histograms = sum(len(stage["verification"]["batches"][0]["outputs"])
                     for _, stage in verified)
    latency_plots = len(report["targets"])
    images = _images(page)
    assert len(images) == histograms + latency_plots
    assert all(image.startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    for name in ("positions", "uncertainties"):
        assert f"|error| of {name}" in page
    assert "asked CUDAExecutionProvider, ran CPUExecutionProvider" in page
    assert "mel_spectrogram" in page and "Seed 0" in page  # the inputs used
    assert report["machine"]["cpu"] in page and report["versions"]["onnxruntime"] in page


def test_html_report_needs_no_network(localization_run):
    page = (localization_run / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "<script" not in page and "@import" not in page


def test_markdown_report_is_a_pasteable_table(localization_run):
    text = (localization_run / "report.md").read_text()
    report = json.loads((localization_run / "report.json").read_text())
    assert text.startswith("### onnxport: `localization` PASSED")
    for name, target in report["targets"].items():
        for stage in target["stages"]:
            assert re.search(rf"^\| {name} \| {stage['stage']} \| ", text, re.M)
    assert "| cpu | uncertainties |" in text
    assert "asked CUDAExecutionProvider" in text


def test_report_json_is_strict_json(localization_run):
    text = (localization_run / "report.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))


def test_a_failed_run_keeps_a_report_saying_where(tmp_path):
    with pytest.raises(VerificationFailed):
        onnxport.convert(f"{MODELS}:branchy", output=tmp_path / "out",
                         exporter="torchscript", keep_failed=True, latency_runs=0)
    kept = tmp_path / "out.failed"
    page = (kept / "report.html").read_text()
    assert "FAILED" in page and "values differ by more than" in page
    assert "| cpu | export | FAIL |" in (kept / "report.md").read_text()
