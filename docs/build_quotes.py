"""Regenerate the console outputs the documentation quotes, by running their commands.

A quoted output is a ```console block whose first line is `$ COMMAND`. Each one listed
in QUOTES is produced by running COMMAND (the installed `onnxport`, in a scratch copy of
the files it needs, so relative paths read as in the docs) and keeping the part the
page shows; nothing is pasted by hand.

    python docs/build_quotes.py            # rewrite the quoted blocks in place
    python docs/build_quotes.py --check    # exit 1 if a block differs from a fresh run
                                           # (numbers and column widths aside: timings vary)
    python docs/build_quotes.py --screenshot   # also docs/images/report.png (Chromium)

tests/test_readme_tour.py checks that every quoted block is one this script makes and has
the shape it makes (fast), and runs `--check` (slow).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ELLIPSIS = "..."


# --------------------------------------------------------------------------- what to keep


def whole(lines: list[str]) -> list[str]:
    return lines


def from_line(start: str, table_rows: int | None = None,
              until_blank: bool = False) -> Callable[[list[str]], list[str]]:
    """The output from the first line starting with `start`, preceded by `...`; then
    either up to the first blank line, or up to `table_rows` rows of the compared-tensor
    table (and `  ...` when it has more)."""

    def keep(lines: list[str]) -> list[str]:
        first = next(i for i, line in enumerate(lines) if line.startswith(start))
        kept = [ELLIPSIS]
        for index in range(first, len(lines)):
            line = lines[index]
            if until_blank and not line.strip():
                break
            kept.append(line)
            if table_rows is not None and (line.startswith("every compared tensor")
                                           or line.startswith("compared tensors around")):
                rows = lines[index + 1:index + 2 + table_rows]  # the header and the rows
                kept += rows
                rest = [r for r in lines[index + 2 + table_rows:] if r.startswith("  ")]
                if rest:
                    kept.append("  " + ELLIPSIS)
                break
        return kept

    return keep


@dataclass
class Quote:
    doc: str  # the page, relative to the repository
    command: str  # as the page shows it after `$ `
    keep: Callable[[list[str]], list[str]] = whole
    needs: tuple[str, ...] = ("examples",)  # files and folders copied for the run
    markers: tuple[str, ...] = ()  # lines (prefixes) the quote always has: its shape
    exit_codes: tuple[int, ...] = (0,)
    env: dict[str, str] = field(default_factory=dict)


QUOTES = [
    Quote("README.md",
          "onnxport convert examples/zoo/autopilot_torch.py:build -o out/autopilot "
          "--exporter torchscript --opset 14",
          markers=("autopilot_torch: torch ", "target  stage ", "cpu     export    PASS",
                   "target  output ", "wrote out/autopilot")),
    Quote("docs/diagnose.md",
          "onnxport convert tests/broken_models.py:sensitive_mlp -o out/mlp --quantize on "
          "--diagnose",
          keep=from_line("diagnosis:", table_rows=7), needs=("tests/broken_models.py",),
          exit_codes=(3,),
          markers=(ELLIPSIS, "diagnosis: target cpu, stage quantize", "first divergence: ",
                   "  what to do: this layer does not survive INT8", "every compared tensor:",
                   "  node ")),
    Quote("docs/diagnose.md",
          "onnxport convert tests/broken_models.py:softplus_head -o out/softplus "
          "--exporter torchscript --diagnose",
          keep=from_line("first divergence:", until_blank=True),
          needs=("tests/broken_models.py",), exit_codes=(3,),
          markers=(ELLIPSIS, "first divergence: layer 'head.1' (torch.nn.Softplus)",
                   "  what to do: ")),
]


# --------------------------------------------------------------------------- blocks


BLOCK = re.compile(r"```console\n\$ (?P<command>[^\n]*)\n(?P<output>.*?)```", re.S)


def quoted_blocks(text: str) -> list[tuple[str, str]]:
    """(command, output) of every ```console block that starts with `$ `."""
    return [(m.group("command"), m.group("output")) for m in BLOCK.finditer(text)]


def replace_block(text: str, command: str, output: str) -> str:
    def swap(match: re.Match) -> str:
        if match.group("command") != command:
            return match.group(0)
        return f"```console\n$ {command}\n{output}```"

    return BLOCK.sub(swap, text)


# --------------------------------------------------------------------------- running


def run(quote: Quote) -> str:
    """The quote's output, as the page shows it (ending with a newline)."""
    with tempfile.TemporaryDirectory(prefix="onnxport-quotes-") as scratch:
        work = Path(scratch)
        for need in quote.needs:
            source = ROOT / need
            if source.is_dir():
                shutil.copytree(source, work / need, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.egg-info", "out", "build"))
            else:
                (work / need).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, work / need)
        words = quote.command.split()
        if words[0] == "onnxport":
            words[0] = str(BIN / "onnxport")
        done = subprocess.run(words, cwd=work, capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "100", **quote.env},
                              timeout=1800)
        if done.returncode not in quote.exit_codes:
            raise SystemExit(f"{quote.command} exited {done.returncode}, not "
                             f"{quote.exit_codes}:\n{done.stderr}")
        text = done.stdout.replace(f"{work}/", "").replace(str(work), ".")
    lines = [line.rstrip() for line in text.rstrip("\n").splitlines()]
    return "\n".join(quote.keep(lines)) + "\n"


def normalized(text: str) -> str:
    """A quote with its numbers and column widths taken out: what must not drift."""
    text = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    text = re.sub(r"\d{4}-\d\d-\d\dTN", "DATE", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines())


def shape_problems(quote: Quote, output: str) -> list[str]:
    """What the quoted output lacks of the shape this script gives it."""
    lines = output.splitlines()
    return [f"{quote.doc}: `$ {quote.command}` has no line starting with {marker!r}"
            for marker in quote.markers
            if not any(line.startswith(marker) for line in lines)]


# --------------------------------------------------------------------------- screenshot


def screenshot(out: Path = ROOT / "docs" / "images" / "report.png") -> Path:
    """docs/images/report.png: report.html of the planner for four targets, as a
    browser shows it (the x86-avx2 target's details opened), by headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="onnxport-shot-") as scratch:
        work = Path(scratch)
        shutil.copytree(ROOT / "examples", work / "examples",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        subprocess.run([str(BIN / "onnxport"), "convert", "examples/zoo/planner.py:build",
                        "-o", "out/planner", "--target", "cpu", "--target", "x86-avx2",
                        "--target", "cuda", "--target", "rpi4", "-q"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        page = (work / "out" / "planner" / "report.html").read_text()
        opened = work / "shown.html"
        opened.write_text(page.replace("<details id='target-x86-avx2'>",
                                       "<details open id='target-x86-avx2'>", 1))
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={work / 'profile'}", "--hide-scrollbars",
                        "--window-size=1100,1900", f"--screenshot={out}",
                        opened.as_uri()], check=True, capture_output=True, timeout=120)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with a fresh run instead of rewriting (numbers aside)")
    parser.add_argument("--screenshot", action="store_true",
                        help="also regenerate docs/images/report.png with Chromium")
    args = parser.parse_args(argv)
    failures = 0
    for quote in QUOTES:
        path = ROOT / quote.doc
        text = path.read_text()
        blocks = dict(quoted_blocks(text))
        if quote.command not in blocks:
            print(f"{quote.doc}: no ```console block starts with `$ {quote.command}`")
            failures += 1
            continue
        fresh = run(quote)
        if args.check:
            if normalized(fresh) != normalized(blocks[quote.command]):
                failures += 1
                print(f"{quote.doc}: `$ {quote.command}` differs from a fresh run:")
                print("".join(difflib.unified_diff(
                    blocks[quote.command].splitlines(True), fresh.splitlines(True),
                    "quoted", "fresh")))
            continue
        path.write_text(replace_block(text, quote.command, fresh))
        print(f"{quote.doc}: `$ {quote.command}`: {len(fresh.splitlines())} lines")
    if args.screenshot and not args.check:
        print(f"wrote {screenshot().relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
