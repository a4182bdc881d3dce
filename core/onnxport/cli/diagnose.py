"""`onnxport diagnose`: the first node whose output diverges, and why."""

from __future__ import annotations

import json
from pathlib import Path

from onnxport.errors import BadInput, ExitCode
from onnxport.records import Command

JSON_FORMAT = "onnxport-diagnose/1"


def configure(p) -> None:
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--reference", type=Path, metavar="MODEL.onnx",
                   help="compare with this ONNX model (the one a pass started from)")
    p.add_argument("--source", metavar="SOURCE",
                   help="compare with this source (a factory or model file)")
    p.add_argument("--weights", type=Path, metavar="FILE", help="weights for the source")
    p.add_argument("--trust-code", action="store_true",
                   help="for an artifact: run the source its manifest names (only for "
                   "artifacts you made yourself or fully trust)")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="diagnose only this target of the artifact (repeatable)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="batch size of the inputs for a bare .onnx (default 1)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random inputs for a bare .onnx (0)")
    p.add_argument("--data", type=Path, metavar="FILE.npz",
                   help="inputs for a bare .onnx: one array per input name")
    p.add_argument("--atol", type=float, metavar="X", help="absolute tolerance for every tensor "
                   "(default: the failing output's budget)")
    p.add_argument("--rtol", type=float, metavar="X", help="relative tolerance for every tensor")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads for every runner")
    p.add_argument("--all", action="store_true", help="list every compared tensor")
    p.add_argument("--json", action="store_true", help="print JSON")



def run(args) -> int:
    from onnxport.diagnose import diagnose_artifact, diagnose_files

    path: Path = args.model
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if path.is_file():
        if args.target:
            raise BadInput("--target applies to an artifact directory, not a bare .onnx")
        diagnoses = [diagnose_files(
            path, args.host, reference=args.reference, source=args.source,
            weights=args.weights, batch=args.batch, seed=args.seed, data=args.data,
            atol=args.atol, rtol=args.rtol, threads=args.threads)]
    else:
        if args.reference is not None:
            raise BadInput("--reference applies to a bare .onnx file",
                           "for an artifact, the model before the failing pass is the "
                           "reference")
        diagnoses = diagnose_artifact(path, args.host, source=args.source,
                                      weights=args.weights, targets=tuple(args.target),
                                      atol=args.atol, rtol=args.rtol, threads=args.threads,
                                      trust_code=args.trust_code)
    _print_diagnoses(diagnoses, args.json, getattr(args, "all", False))
    located = any(d.first is not None or d.outputs_diverge or d.problem for d in diagnoses)
    return ExitCode.VERIFICATION_FAILED if located else ExitCode.OK


def _print_diagnoses(diagnoses, as_json: bool, show_all: bool = False) -> None:
    from onnxport.diagnose import diagnosis_text

    if as_json:
        print(json.dumps({"format": JSON_FORMAT,
                          "diagnoses": [d.to_dict() for d in diagnoses]}, indent=2))
    else:
        print("\n\n".join(diagnosis_text(d, show_all) for d in diagnoses))


COMMAND = Command(
    name="diagnose", help="locate the first node whose output diverges",
    description="Find where a model goes wrong: the first node (in topological order) "
    "whose output is out of tolerance, with its op type, its inputs' shapes and the "
    "error. For an artifact (or the DIR.failed a failed conversion kept), a target "
    "whose pass failed is compared with the model the pass started from, any other "
    "with the source framework, layer by layer. For a bare .onnx, give --reference "
    "(the model a pass started from) or --source (the model it was exported from).",
    epilog="exit codes: 0 nothing diverges, 3 a divergence was located, 2 bad input",
    configure=configure, run=run)
