"""`onnxport inspect`: what an ONNX model (or each model of an artifact) holds."""

from __future__ import annotations

import json
from pathlib import Path

from onnxport.errors import BadInput, ExitCode
from onnxport.records import Command

JSON_FORMAT = "onnxport-inspect/1"


def configure(p) -> None:
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--json", action="store_true",
                   help=f"print JSON: {{\"format\": \"{JSON_FORMAT}\", \"models\": [...]}}")


def run(args) -> int:
    from onnxport.artifact.modelinfo import read_model_info
    from onnxport.artifact.reading import open_artifact
    from onnxport.report.terminal import model_summary

    path: Path = args.model
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if path.is_dir():
        paths = [entry.model for entry in open_artifact(path).targets]
    else:
        paths = [path]
    infos = [read_model_info(p) for p in paths]
    if args.json:
        print(json.dumps({"format": JSON_FORMAT, "models": [i.to_dict() for i in infos]},
                         indent=2))
    else:
        print("\n\n".join(model_summary(i) for i in infos))
    return ExitCode.OK


COMMAND = Command(
    name="inspect", help="show an ONNX model's interface and contents",
    description="Print inputs, outputs, opset, IR version, producer, op histogram, "
    "parameter count and size of an .onnx file (or of each model in an artifact "
    "directory).", configure=configure, run=run)
