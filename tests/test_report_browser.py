"""report.html in a real browser: headless Chromium (Debian's `chromium`) lays the page
out, a probe script measures it in a copy of the page (the page itself has no script),
and --dump-dom hands the measurements back. Skipped when Chromium is not installed.

What a person sees first: the failure and its diagnosis above the shipped models, the
shipped model of each target marked within the first screen, every <details> closed
(its plots take no room), and the SVG plots drawn by the browser once a section opens.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import onnxport
from onnxport.errors import ExitCode
from onnxport.report.html import rewrite_html

from conftest import ROOT, factory

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
    "the browser checks of report.html are skipped")

# The flags that work on this kind of machine (as root, no network, no GPU).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1200,900"]

PROBE = """
<script>
(function () {
  const top = (el) => el ? el.getBoundingClientRect().top + window.scrollY : null;
  const details = [...document.querySelectorAll('details')];
  const closedPlotsVisible = [...document.querySelectorAll('details svg')]
      .map((s) => s.checkVisibility());
  const closedHeights = details.map((d) => d.getBoundingClientRect().height);
  const shipped = [...document.querySelectorAll('#summary + table .badge.shipped')]
      .map((b) => top(b));
  const result = {
    open: details.filter((d) => d.open).length,
    details: details.length,
    closedPlotsVisible: closedPlotsVisible,
    closedHeights: closedHeights,
    failures: top(document.getElementById('failures')),
    diagnosis: top([...document.querySelectorAll('h3')]
        .find((h) => h.textContent.startsWith('Where it goes wrong')) || null),
    summary: top(document.getElementById('summary')),
    detailsTop: top(document.getElementById('details')),
    shipped: shipped,
    viewport: window.innerHeight,
    bytes: document.documentElement.outerHTML.length,
  };
  details.forEach((d) => { d.open = true; });
  result.plots = [...document.querySelectorAll('svg')].map((s) => {
    const box = s.getBBox();
    return {width: box.width, height: box.height,
            bars: s.querySelectorAll('rect').length,
            svgNamespace: s.namespaceURI === 'http://www.w3.org/2000/svg'};
  });
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
</script>
"""


def _measure(page: Path, tmp_path: Path) -> dict:
    """Load a copy of `page` with the probe in headless Chromium; its measurements."""
    probed = tmp_path / f"probe-{page.parent.name}.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", done.stdout, re.S)
    assert found, f"the probe did not run: {done.stdout[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


def _screenshot(page: Path, tmp_path: Path) -> bytes:
    shot = tmp_path / f"{page.parent.name}.png"
    done = subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return shot.read_bytes()


@pytest.fixture(scope="module")
def planner(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "planner"
    onnxport.convert(factory("planner"), output=out,
                     targets=["cpu", "x86-avx2", "cuda", "rpi4"], latency_runs=20)
    return out


def test_a_passing_run_shows_each_shipped_model_first_and_details_closed(planner,
                                                                         tmp_path):
    page = planner / "report.html"
    assert page.stat().st_size < 300_000
    seen = _measure(page, tmp_path)
    assert seen["details"] >= 6 and seen["open"] == 0
    # closed: a summary line each, the plots inside not drawn
    assert seen["closedPlotsVisible"] and not any(seen["closedPlotsVisible"])
    assert all(height < 60 for height in seen["closedHeights"]), seen["closedHeights"]
    assert seen["failures"] is None
    assert len(seen["shipped"]) == 4  # one mark per target, all within the first screen
    assert all(top < seen["viewport"] for top in seen["shipped"])
    assert seen["summary"] < seen["detailsTop"]
    plots = seen["plots"]
    assert len(plots) >= 4 + 4  # a latency box plot per target, histograms
    assert all(p["svgNamespace"] and p["width"] > 100 and p["height"] > 50 for p in plots)
    assert all(p["bars"] >= 2 for p in plots)
    assert _screenshot(page, tmp_path).startswith(b"\x89PNG\r\n\x1a\n")


def test_a_failed_run_shows_what_failed_and_where_first(tmp_path, capsys):
    from onnxport.cli import main
    from onnxport.host import default_host

    out = tmp_path / "mlp"
    code = main(["convert", f"{ROOT / 'tests' / 'broken_models.py'}:sensitive_mlp", "-o",
                 str(out), "--quantize", "on", "--diagnose", "-q"], host=default_host())
    assert code == ExitCode.VERIFICATION_FAILED
    capsys.readouterr()
    page = rewrite_html(out.with_name("mlp.failed"))  # with diagnosis.json
    seen = _measure(page, tmp_path)
    assert seen["open"] == 0
    assert seen["failures"] is not None and seen["diagnosis"] is not None
    assert seen["failures"] < seen["diagnosis"] < seen["summary"] < seen["detailsTop"]
    assert seen["diagnosis"] < seen["viewport"]  # where it goes wrong: on the first screen
