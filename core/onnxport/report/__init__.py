"""The report of a conversion, in one place: built as report.json for machines
(`build`), rendered from that JSON alone as report.html and report.md for people
(`html`, `markdown`), and summarised on the terminal (`terminal`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxport.artifact.reading import REPORT
from onnxport.artifact.writing import write_json
from onnxport.report.build import REPORT_FORMAT, build_report
from onnxport.report.html import render_html
from onnxport.report.markdown import render_markdown

__all__ = ["REPORT_FORMAT", "REPORT_HTML", "REPORT_MD", "build_report", "write_reports"]

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def write_reports(directory: Path, report: dict[str, Any]) -> None:
    write_json(directory / REPORT, report)
    stored = json.loads((directory / REPORT).read_text())  # render what was written
    (directory / REPORT_HTML).write_text(render_html(stored))
    (directory / REPORT_MD).write_text(render_markdown(stored))
