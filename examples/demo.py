"""`make demo`: convert every bundled reference model from the command line, exactly as
the README documents, then print one line per artifact from its report.json."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZOO = "examples/zoo"

# (artifact directory, extra arguments): one documented command per reference model.
CONVERSIONS = [
    ("autopilot-torch", [f"{ZOO}/autopilot_torch.py:build"]),
    ("autopilot-torch-ts14", [f"{ZOO}/autopilot_torch.py:build", "--exporter",
                              "torchscript", "--opset", "14"]),
    ("planner", [f"{ZOO}/planner.py:build"]),
    ("wakeword", [f"{ZOO}/wakeword.py:build"]),
    ("localization", [f"{ZOO}/localization.py:build"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    onnxport = [str(Path(sys.executable).with_name("onnxport"))]
    failures = 0
    for name, arguments in CONVERSIONS:
        command = [*onnxport, "convert", *arguments, "-o", str(args.output / name),
                   "--overwrite"]
        print(f"\n$ {shlex.join(['onnxport', *command[1:]])}", flush=True)
        failures += subprocess.call(command, cwd=ROOT) != 0
    print("\n$ python examples/autopilot_training.py", flush=True)
    failures += subprocess.call([sys.executable, "examples/autopilot_training.py",
                                 "--output", str(args.output / "autopilot-training")],
                                cwd=ROOT) != 0
    print("\n" + overview(args.output if args.output.is_absolute() else ROOT / args.output))
    print(f"\n{len(CONVERSIONS) + 1 - failures} of {len(CONVERSIONS) + 1} demo steps "
          f"succeeded; artifacts in {args.output}/")
    return 1 if failures else 0


def overview(root: Path) -> str:
    rows = [("artifact", "exporter", "opset", "status", "max|err|", "torch ms", "onnx ms",
             "size KB")]
    for report_path in sorted(root.rglob("report.json")):
        report = json.loads(report_path.read_text())
        for target in report["targets"].values():
            stage = target["stages"][-1]
            verification = stage["verification"]
            latency = verification["latency_ms"]
            rows.append((str(report_path.parent.relative_to(root)),
                         report["export"]["exporter"], str(report["export"]["opset"]),
                         target["status"], f"{verification['max_abs']:.1e}",
                         f"{latency.get('source', 0):.3f}", f"{latency.get('onnx', 0):.3f}",
                         f"{stage['size_bytes'] / 1000:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in rows)


if __name__ == "__main__":
    raise SystemExit(main())
