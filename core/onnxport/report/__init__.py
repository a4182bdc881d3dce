"""Writing a run's report in its three forms: JSON for machines, HTML and Markdown for
people. The HTML and Markdown are rendered from the JSON alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxport.artifact.writing import REPORT, write_json
from onnxport.report.html import render_html
from onnxport.report.markdown import render_markdown

REPORT_HTML = "report.html"
REPORT_MD = "report.md"


def write_reports(directory: Path, report: dict[str, Any]) -> None:
    write_json(directory / REPORT, report)
    stored = json.loads((directory / REPORT).read_text())  # render what was written
    (directory / REPORT_HTML).write_text(render_html(stored))
    (directory / REPORT_MD).write_text(render_markdown(stored))
