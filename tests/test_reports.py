"""report.html and report.md: written by every conversion, rendered from report.json,
self-contained. report.html answers first (what failed and why, which model shipped for
each target), then the details, collapsed; its plots are inline SVG drawn without any
plotting library, only where they inform."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import onnxport
from onnxport.errors import ExitCode, VerificationFailed
from onnxport.report import svg
from onnxport.report.html import render_html, rewrite_html

from conftest import ROOT, factory

MODELS = ROOT / "tests" / "models.py"
BROKEN = ROOT / "tests" / "broken_models.py"


@pytest.fixture(scope="module")
def planner_run(tmp_path_factory):
    """The planner (four inputs, an output of 120 values a row) for two targets, one of
    them without its hardware here."""
    out = tmp_path_factory.mktemp("report") / "planner"
    onnxport.convert(factory("planner"), output=out, targets=["cpu", "cuda"],
                     latency_runs=10)
    return out


def _svgs(page: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", page, re.S)


def _position(page: str, marker: str) -> int:
    assert marker in page, marker
    return page.index(marker)


def test_html_report_answers_first_then_details_collapsed(planner_run):
    page = (planner_run / "report.html").read_text()
    report = json.loads((planner_run / "report.json").read_text())
    assert "PASSED" in page and "What failed" not in page
    # which model shipped for each target, marked, before any detail
    for name, target in report["targets"].items():
        row = re.search(rf"<tr><td><b>{name}</b></td>.*?</tr>", page, re.S).group(0)
        assert "&#10003; shipped" in row and target["model"] in row
    assert _position(page, "id='summary'") < _position(page, "id='details'")
    # the details are there, collapsed by default
    for section in ("id='target-cpu'", "id='target-cuda'", "id='inputs'",
                    "id='environment'"):
        assert f"<details {section}>" in page, section
    assert "<details open" not in page
    assert "asked CUDAExecutionProvider, ran CPUExecutionProvider" in page
    assert "costmap_metadata_input" in page and "Seed 0" in page  # the inputs used
    assert report["machine"]["cpu"] in page and report["versions"]["onnxruntime"] in page
    assert len(page.encode()) < 300_000


def test_plots_are_inline_svg_where_they_inform(planner_run):
    page = (planner_run / "report.html").read_text()
    report = json.loads((planner_run / "report.json").read_text())
    assert "data:image/png" not in page and "matplotlib" not in page
    expected = 0
    for target in report["targets"].values():
        for stage in target["stages"]:
            v = stage["verification"]
            if not v:
                continue
            for output in v["batches"][0]["outputs"]:
                merged = {"edges": output["histogram"]["edges"],
                          "counts": [sum(b["outputs"][i]["histogram"]["counts"][k]
                                         for b in v["batches"]
                                         for i, o in enumerate(b["outputs"])
                                         if o["name"] == output["name"])
                                     for k in range(len(output["histogram"]["counts"]))],
                          "zeros": sum(o["histogram"]["zeros"] for b in v["batches"]
                                       for o in b["outputs"] if o["name"] == output["name"])}
                expected += svg.histogram_informs(merged)
    assert expected, "the planner's output should have informative histograms"
    plots = _svgs(page)
    latency = [p for p in plots if "ms per call" in p]
    assert len(latency) == len(report["targets"])  # one box plot per target
    assert len(plots) - len(latency) == expected
    for plot in plots:
        assert plot.startswith("<svg xmlns='http://www.w3.org/2000/svg'")
        assert "<rect" in plot and "<title>" in plot
    assert "|error| of output vs the source" in page


def test_no_plot_that_would_not_inform(tmp_path):
    """two_heads: `score` has one value per row (4 in all), `probs` equals the source
    exactly, and --latency-runs 0 records no samples: no plot at all, words instead."""
    out = tmp_path / "two"
    onnxport.convert(f"{MODELS}:two_heads", output=out, latency_runs=0)
    page = (out / "report.html").read_text()
    assert _svgs(page) == []
    assert "|error| of <code>score</code>: 4 values" in page
    assert "|error| of <code>probs</code>: all 12 values equal the source" in page
    assert "No latency distribution" in page


def test_plots_need_no_plotting_library(planner_run):
    """The page is drawn in a process where matplotlib cannot be imported."""
    code = (
        "import sys, json\n"
        "sys.modules['matplotlib'] = None\n"
        "from onnxport.report.html import render_html\n"
        f"page = render_html(json.load(open({str(planner_run / 'report.json')!r})))\n"
        "assert '<svg' in page\n"
        "print(len(page))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    source = (ROOT / "core" / "onnxport" / "report" / "html.py").read_text()
    assert "matplotlib" not in source


# What the quantize pass writes when INT8 verified but did not pay off here (mode auto).
SLOWER = ("INT8 0.0159 ms vs fp32 0.0148 ms at batch 1, 1 thread: slower here, kept fp32")


def test_a_deliberate_fp32_is_a_decision_not_a_rejection(planner_run):
    """A rejected quantize stage whose INT8 model verified but was slower: the page
    shows the decision, not an amber REJECTED, and does not repeat it as a warning."""
    report = json.loads((planner_run / "report.json").read_text())
    target = report["targets"]["cpu"]
    target["stages"] = [s for s in target["stages"] if s["stage"] != "quantize"]
    shipped = [s for s in target["stages"] if s["status"] == "ok"][-1]
    int8 = json.loads(json.dumps(shipped))
    int8.update(stage="quantize", status="rejected", reason=SLOWER)
    target["stages"].append(int8)
    target["warnings"].append(f"quantize: {SLOWER}; kept the previous model")
    page = render_html(report)
    assert "REJECTED" not in page
    assert ("<span class='badge decision'>kept fp32</span> quantize: INT8 0.0159 ms vs "
            "fp32 0.0148 ms at batch 1, 1 thread: slower here<") in page
    assert "kept the previous model" not in page
    row = re.search(r"<tr><td><b>cpu</b></td>.*?</tr>", page, re.S).group(0)
    assert f"from {shipped['stage']}" in row and "kept fp32" in row
    # a rejection that is a failure (INT8 outside its budget) stays one
    int8.update(reason="its model failed verification (cosine 0.9 is below 0.99)")
    int8["verification"] = {**int8["verification"], "passed": False}
    assert "REJECTED" in render_html(report)


def test_markdown_report_is_a_pasteable_table(planner_run):
    text = (planner_run / "report.md").read_text()
    report = json.loads((planner_run / "report.json").read_text())
    assert text.startswith("### onnxport: `planner` PASSED")
    for name, target in report["targets"].items():
        for stage in target["stages"]:
            assert re.search(rf"^\| {name} \| {stage['stage']} \| ", text, re.M)
    assert "| cpu | output |" in text
    assert "asked CUDAExecutionProvider" in text


def test_html_report_needs_no_network(planner_run):
    page = (planner_run / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "<script" not in page and "@import" not in page


def test_report_json_is_strict_json(planner_run):
    text = (planner_run / "report.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))


def test_a_failed_run_says_what_failed_first(tmp_path):
    with pytest.raises(VerificationFailed):
        onnxport.convert(f"{MODELS}:branchy", output=tmp_path / "out",
                         exporter="torchscript", keep_failed=True, latency_runs=0)
    kept = tmp_path / "out.failed"
    page = (kept / "report.html").read_text()
    assert "FAILED" in page and "values differ by more than" in page
    failure = _position(page, "id='failures'")
    assert failure < _position(page, "id='summary'") < _position(page, "id='details'")
    assert "onnxport diagnose" in page  # no diagnosis yet: how to get one
    assert "nothing shipped" in page
    assert "| cpu | export | FAIL |" in (kept / "report.md").read_text()


@pytest.fixture(scope="module")
def diagnosed_run(tmp_path_factory):
    """`convert --diagnose` on a model whose INT8 breaks one layer (the CLI, in this
    process, as --diagnose always runs)."""
    from onnxport.cli import main
    from onnxport.host import default_host

    out = tmp_path_factory.mktemp("diagnosed") / "mlp"
    code = main(["convert", f"{BROKEN}:sensitive_mlp", "-o", str(out), "--quantize", "on",
                 "--diagnose", "--latency-runs", "0", "-q"], host=default_host())
    assert code == ExitCode.VERIFICATION_FAILED
    return out.with_name("mlp.failed")


def test_convert_diagnose_puts_the_diagnosis_in_the_page(diagnosed_run):
    page = (diagnosed_run / "report.html").read_text()
    assert "Where it goes wrong (--diagnose)" in page


def test_the_diagnosis_beside_the_report_is_rendered(diagnosed_run, capsys):
    capsys.readouterr()
    assert (diagnosed_run / "diagnosis.json").is_file()
    page = rewrite_html(diagnosed_run).read_text()
    assert "Where it goes wrong (--diagnose)" in page
    assert "First divergence: node Gemm_4 (Gemm)" in page
    assert "<b>What to do:</b> this layer does not survive INT8: leave node Gemm_4 out" \
        in page
    failure = _position(page, "id='failures'")
    assert failure < _position(page, "Where it goes wrong") < _position(page, "id='summary'")
    # the failing stage comes before the passing ones in the target's details
    details = page[_position(page, "id='target-cpu'"):]
    assert _position(details, "<h3>quantize") < _position(details, "<h3>export")
    # the same page from the JSON alone, without the diagnosis: how to get one
    report = json.loads((diagnosed_run / "report.json").read_text())
    assert "onnxport diagnose" in render_html(report)
