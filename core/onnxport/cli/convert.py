"""`onnxport convert`: options in, one `build_request`, the flow, the summary out."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import traceback
from pathlib import Path

from onnxport.cli import EXIT_CODES, plugin_options
from onnxport.cli.parsing import (ints, names, parse_key_values, parse_pass_options,
                                  parse_tolerance, redact)
from onnxport.errors import BadInput, ExitCode, VerificationFailed, error_for
from onnxport.records import Command

SOURCE_HELP = ("SOURCE is a model file (.pt2 ExportedProgram, .keras, a SavedModel "
               "directory, .pt/.pth with --trust-code) or a factory package.module:function "
               "or path/file.py:function that returns the model, (model, example_inputs) or "
               "(model, example_inputs, output_names).")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="the model to convert (see below)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                   help="artifact directory to create (refused if it holds files, "
                   "unless --overwrite)")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="weights for the factory's model: a PyTorch state_dict or "
                   "checkpoint (torch.load(weights_only=True): no code runs) or a Keras "
                   ".weights.h5 file")
    p.add_argument("--trust-code", action="store_true",
                   help="allow model files whose loading EXECUTES CODE from the file "
                   "(pickled PyTorch models, Keras safe_mode off for Lambda layers); "
                   "use it only for files you made yourself or fully trust")
    p.add_argument("--custom-object", action="append", default=[],
                   metavar="MODULE:NAME",
                   help="a class or function a Keras file needs to load, e.g. "
                   "my_project.losses:autopilot_loss or path/file.py:MyLayer (repeatable)")
    p.add_argument("--name", metavar="NAME", help="model name for the file and manifest "
                   "(default: from the source)")
    p.add_argument("--backend", metavar="NAME",
                   help="force a backend instead of picking by source")
    p.add_argument("--enable", action="append", default=[], metavar="NAME",
                   help="turn on a backend, pass or target that is disabled by default "
                   "(e.g. tflite; `onnxport plugins` says why each is off)")
    p.add_argument("--exporter", metavar="NAME",
                   help="auto (default): the backend's exporters in turn (torch: dynamo, "
                   "then torchscript) until one exports a model that verifies, and the "
                   "report says why the others did not; or one exporter alone")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset to produce "
                   "(default: the exporter's)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="an input's example shape, e.g. sensors:2x20x25 (repeatable); "
                   "NAME must be an argument of the model's forward()")
    p.add_argument("--input-names", metavar="A,B", help="rename the ONNX inputs, in order")
    p.add_argument("--output-names", metavar="A,B", help="name the ONNX outputs, in order")
    p.add_argument("--static-batch", action="store_true",
                   help="keep the example's batch size fixed instead of a dynamic axis")
    p.add_argument("--dynamic", action="append", default=[],
                   metavar="NAME:AXIS[=AXIS_NAME]",
                   help="an axis beyond the batch that varies, e.g. "
                   "input_ids:1=sequence (repeatable; inputs sharing an AXIS_NAME vary "
                   "together); exported symbolic and verified at two sizes")
    p.add_argument("--external-data", action="store_true", default=None,
                   help="keep weights in a .data file beside the model (automatic "
                   "above 2 GB, the protobuf limit)")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="deployment target (repeatable; default: cpu; `onnxport targets` "
                   "lists them)")
    p.add_argument("--quantize", choices=("off", "on", "auto"),
                   help="INT8 dynamic quantization for every target: off, on (fail if "
                   "the INT8 budget is not met), auto (keep INT8 only if it meets the "
                   "budget and is faster here); default: each target's own")
    p.add_argument("--optimize", choices=("fast", "thorough"), default="fast",
                   help="how many candidates each target tries: fast (the first export "
                   "route that verifies; each pass's own settings) or thorough (every "
                   "route; each pass's variants too: static and per-channel INT8, fused "
                   "layer norms); the fastest that verifies ships")
    p.add_argument("--calibration-data", type=Path, metavar="FILE.npz|DIR",
                   help="real inputs for static INT8 (one array per input name; a "
                   "directory: every .npz in it): makes static QDQ INT8 a candidate")
    p.add_argument("--pass-option", action="append", default=[], metavar="PASS.KEY=VALUE",
                   help="set one option of a pass for every target, e.g. "
                   "quantize.weight_type=QUInt8 (repeatable; VALUE is parsed as TOML)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="targets config (default: ./onnxport.toml, else [tool.onnxport] "
                   "in ./pyproject.toml)")
    v = p.add_argument_group("verification")
    v.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the random inputs (0)")
    v.add_argument("--data", type=Path, metavar="FILE.npz",
                   help="verify on this data: one array per input name")
    v.add_argument("--input-range", action="append", default=[], metavar="[NAME=]LOW,HIGH",
                   help="range of the uniform random inputs (default -1,1; ints 0,10)")
    v.add_argument("--batch-sizes", metavar="N,M", help="batch sizes to verify a dynamic "
                   "batch at (default 1,3)")
    v.add_argument("--atol", type=float, metavar="X", help="absolute tolerance for every "
                   "output (default: the target's, 1e-5)")
    v.add_argument("--rtol", type=float, metavar="X", help="relative tolerance for every "
                   "output (default: the target's, 1e-4)")
    v.add_argument("--tolerance", action="append", default=[],
                   metavar="OUTPUT:atol=X,rtol=Y",
                   help="tolerance for one output (repeatable); also min_cosine=, "
                   "min_argmax_agreement=")
    v.add_argument("--classifier", action="append", default=[], metavar="OUTPUT",
                   help="declare an output a classifier: its argmax agreement is "
                   "checked against the budget's floor (repeatable)")
    v.add_argument("--allow-nonfinite", action="store_true",
                   help="NaN/inf in the source's outputs are expected: pass where the "
                   "candidate has them in the same places (the report says so)")
    v.add_argument("--latency-budget", metavar="MS[@BATCH]",
                   help="a real-time budget: the shipped model's p99 at that batch (default "
                   "1) must fit in MS milliseconds; the report says whether it does, and "
                   "on which machine (a target may set its own)")
    v.add_argument("--require-budget", action="store_true",
                   help="fail the run (exit 3) when a target misses its latency budget")
    v.add_argument("--latency-runs", type=int, default=20, metavar="N",
                   help="timed runs per model for the latency figures (0 skips)")
    v.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads for every runner")
    o = p.add_argument_group("output")
    o.add_argument("--overwrite", action="store_true",
                   help="replace an existing artifact directory")
    o.add_argument("--keep-failed", action="store_true",
                   help="keep a candidate that failed verification in DIR.failed")
    o.add_argument("--diagnose", action="store_true",
                   help="when verification fails, locate the first node whose output "
                   "diverges (keeps the failed candidate in DIR.failed, as --keep-failed)")
    o.add_argument("--json", action="store_true", help="print report.json instead of "
                   "the table")
    r = p.add_argument_group("running")
    r.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="stop a conversion that has not finished after this long, and "
                   "say in which stage (default 1800; 0: no limit)")
    r.add_argument("--in-process", action="store_true",
                   help="convert in this process instead of a worker process: a crash "
                   "or hang in the model's code then takes onnxport down, and --timeout "
                   "does not apply (--diagnose always runs here)")
    o.add_argument("--publish", action="append", default=[], metavar="URI",
                   help="after a passing conversion, publish the artifact to URI "
                   "(s3://bucket/prefix, mlflow://model-name, file:///dir; repeatable)")
    add_publish_options(o)


def add_publish_options(group) -> None:
    """The publishing options every publisher shares; a publisher adds its own through
    `onnxport_add_options`."""
    group.add_argument("--force", action="store_true",
                       help="publish again although the same artifact (sha256) is there")
    group.add_argument("--publish-option", action="append", default=[],
                       metavar="KEY=VALUE", help="a publisher setting (repeatable)")


def publish_options(args) -> dict:
    """What `--force`, `--publish-option` and the publishers' own options set."""
    return {"force": args.force, **plugin_options(args),
            **parse_key_values(args.publish_option, "--publish-option")}


def run(args) -> int:
    from onnxport.cli.progress import progress_observers
    from onnxport.flow.building import build_request
    from onnxport.flow.inputs import dynamic_axes_from, parse_input_spec, parse_range

    request = build_request(
        args.source, output=args.output, weights=args.weights, name=args.name,
        backend=args.backend, exporter=args.exporter, opset=args.opset,
        inputs=[parse_input_spec(s) for s in args.input],
        input_names=names(args.input_names), output_names=names(args.output_names),
        dynamic_batch=not args.static_batch,
        dynamic_axes=dynamic_axes_from(args.dynamic), external_data=args.external_data,
        targets=args.target or ("cpu",), quantize=args.quantize, optimize=args.optimize,
        calibration_data=args.calibration_data,
        pass_options=parse_pass_options(args.pass_option), config=args.config,
        enable=args.enable, trust_code=args.trust_code, overwrite=args.overwrite,
        keep_failed=args.keep_failed or args.diagnose,
        custom_objects=args.custom_object or None, backend_options=plugin_options(args),
        seed=args.seed, data=args.data,
        batch_sizes=ints(args.batch_sizes, "--batch-sizes"),
        input_ranges=dict(parse_range(r) for r in args.input_range),
        atol=args.atol, rtol=args.rtol,
        output_tolerances=dict(parse_tolerance(t) for t in args.tolerance),
        latency_runs=args.latency_runs, threads=args.threads,
        classifiers=args.classifier, allow_nonfinite=args.allow_nonfinite,
        latency_budget=args.latency_budget, require_budget=args.require_budget,
        made_by={"command": shlex.join(["onnxport", *map(redact, args.argv)]),
                 "cwd": str(Path.cwd())})
    if args.timeout is not None and args.timeout < 0:
        raise BadInput(f"--timeout {args.timeout}: must be a number of seconds >= 0")
    observers = progress_observers(args)
    if args.in_process or args.diagnose or args.embedded:
        output = _convert_here(args, request, observers)
    else:
        output = _convert_in_worker(args, request, observers)
    for uri in args.publish:
        from onnxport.cli.publishing import print_published, publish_to

        print_published(publish_to(args, output, uri, observers))
    return ExitCode.OK


def _convert_in_worker(args, request, observers) -> Path:
    """The default: a worker process converts, so nothing the model's code does (a
    crash, a hang, os._exit, a print) can take this process down or muddle its output."""
    from onnxport.flow.worker import convert_in_worker

    outcome = convert_in_worker(request, timeout=args.timeout or None,
                                observers=observers, debug=args.debug)
    if outcome.report is not None:
        _print(outcome.report, outcome.output, args)
    if not outcome.passed:
        raise error_for(outcome.exit_code, outcome.message, outcome.hint)
    return Path(outcome.output)


def _convert_here(args, request, observers) -> Path:
    """In this process: for --diagnose (it needs the loaded source), --in-process, and
    a program that hands main() its own host (plugins registered at run time)."""
    from contextlib import redirect_stdout

    from onnxport.flow.pipeline import run_conversion

    try:
        with redirect_stdout(sys.stderr):  # what the model's code prints is not output
            result = run_conversion(request, args.host, observers)
    except VerificationFailed as exc:
        if exc.result is not None and args.diagnose:
            _print_diagnosed(args, exc.result)
        elif exc.result is not None:
            _print(exc.result.report, exc.result.output, args)
        raise
    _print(result.report, result.output, args)
    return result.output


def _print(report: dict, output, args) -> None:
    from onnxport.report.terminal import conversion_summary

    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(conversion_summary(report, output, warnings=not args.quiet))


def _print_diagnosed(args, result) -> None:
    """`convert --diagnose` after a failed verification: the summary, then where each
    failed target goes wrong (also written to DIR.failed/diagnosis.json)."""
    from onnxport.diagnose import diagnose_conversion, diagnosis_text
    from onnxport.report.terminal import conversion_summary

    diagnoses = []
    try:
        keep = result.output / "diagnose" if result.output is not None else None
        diagnoses = diagnose_conversion(result, args.host, threads=args.threads, keep=keep)
    except Exception as exc:  # the verification failure stays the error to report
        if args.debug:
            traceback.print_exc()
        print(f"onnxport: diagnosis failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    data = [d.to_dict() for d in diagnoses]
    if result.output is not None and data:
        from onnxport.artifact.writing import write_json

        write_json(result.output / "diagnosis.json", data)
        from onnxport.report.html import rewrite_html

        rewrite_html(result.output)
    if args.json:
        print(json.dumps({**result.report, "diagnosis": data}, indent=2, default=str))
        return
    print(conversion_summary(result.report, result.output, warnings=not args.quiet))
    for diagnosis in diagnoses:
        print("\n" + diagnosis_text(diagnosis))


COMMAND = Command(
    name="convert", help="convert a model to verified ONNX",
    description="Convert SOURCE to ONNX, verify it against the source framework, and "
    "write the artifact to --output only if verification passes.",
    epilog=SOURCE_HELP + "\n\n" + EXIT_CODES, configure=configure, run=run)
