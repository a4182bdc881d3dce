"""`make demo`: convert every bundled reference model from the command line, exactly as
the README documents (several targets, Keras, INT8 where it pays off), then print one
line per target artifact from its report.json. Each artifact has report.html beside it."""

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
    ("autopilot-torch", [f"{ZOO}/autopilot_torch.py:build", "--target", "cpu",
                         "--target", "rpi4", "--target", "x86-avx2", "--target", "cuda"]),
    ("autopilot-torch-ts14", [f"{ZOO}/autopilot_torch.py:build", "--exporter",
                              "torchscript", "--opset", "14"]),
    ("autopilot-keras", ["{models}/autopilot_keras.keras"]),
    ("planner", [f"{ZOO}/planner.py:build", "--target", "auto"]),
    ("planner-keras", [f"{ZOO}/planner_keras.py:build"]),
    ("wakeword", [f"{ZOO}/wakeword.py:build", "--classifier", "logits", "--target",
                  "x86-avx2"]),
    ("localization", [f"{ZOO}/localization.py:build"]),
]

# The autopilot trained briefly and exported by the training callback, in each framework.
TRAINING = ["torch", "keras"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo-out"))
    args = parser.parse_args()
    onnxport = [str(Path(sys.executable).with_name("onnxport"))]
    models = args.output / "models"
    print(f"\n$ python examples/zoo/autopilot_keras.py --save {models}", flush=True)
    failures = subprocess.call([sys.executable, f"{ZOO}/autopilot_keras.py", "--save",
                                str(models)], cwd=ROOT) != 0
    for name, arguments in CONVERSIONS:
        arguments = [a.format(models=models) for a in arguments]
        command = [*onnxport, "convert", *arguments, "-o", str(args.output / name),
                   "--overwrite"]
        print(f"\n$ {shlex.join(['onnxport', *command[1:]])}", flush=True)
        failures += subprocess.call(command, cwd=ROOT) != 0
    # Export straight after training, with the training callbacks (docs/training.md).
    for framework in TRAINING:
        print(f"\n$ python examples/autopilot_training.py --framework {framework}",
              flush=True)
        failures += subprocess.call(
            [sys.executable, "examples/autopilot_training.py", "--framework", framework,
             "--output", str(args.output / f"autopilot-training-{framework}")],
            cwd=ROOT) != 0
    print("\n" + overview(args.output if args.output.is_absolute() else ROOT / args.output))
    steps = len(CONVERSIONS) + 1 + len(TRAINING)
    print(f"\n{steps - failures} of {steps} demo steps succeeded; artifacts in "
          f"{args.output}/")
    return 1 if failures else 0


def overview(root: Path) -> str:
    rows = [("artifact", "target", "exporter", "status", "shipped", "max|err|", "src ms",
             "onnx ms", "size KB")]
    for report_path in sorted(root.rglob("report.json")):
        report = json.loads(report_path.read_text())
        for target_name, target in report["targets"].items():
            shipped = next(s for s in reversed(target["stages"]) if s["status"] == "ok")
            verification = shipped["verification"]
            latency = verification["latency_ms"]
            rows.append((str(report_path.parent.relative_to(root)), target_name,
                         report["export"]["exporter"], target["status"], shipped["stage"],
                         f"{float(verification['max_abs']):.1e}",
                         f"{latency.get('source', 0):.3f}", f"{latency.get('onnx', 0):.3f}",
                         f"{shipped['size_bytes'] / 1000:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in rows)


if __name__ == "__main__":
    raise SystemExit(main())
