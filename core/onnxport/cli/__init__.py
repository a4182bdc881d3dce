"""The `onnxport` command line.

Every failure the user can act on is one line on stderr and a documented exit code;
`--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from onnxport import __version__
from onnxport.errors import BadInput, ExitCode, OnnxportError, VerificationFailed
from onnxport.records import Command, Tolerance

EXIT_CODES = """exit codes:
  0  success
  1  internal error (a bug: please report it with --debug output)
  2  bad input: source, options, data or output directory
  3  verification failed: the model does not match its source
  4  export failed: the framework's exporter could not produce a model
  5  missing dependency: install the extra the message names
  6  plugin error: a plugin is broken, clashes with another, or raised"""


def main(argv: Sequence[str] | None = None, host=None) -> int:
    """Run the command line; `host` defaults to the plugins installed in this environment."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if host is None:
            from onnxport.host import default_host

            host = default_host()
        parser = build_parser(host)
        args = parser.parse_args(argv)
        if not hasattr(args, "handler"):
            parser.print_help()
            return ExitCode.OK
        args.argv = argv
        args.host = host
        return int(args.handler(args))
    except OnnxportError as exc:
        if debug:
            traceback.print_exc()
        print(f"onnxport: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("onnxport: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"onnxport: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback and please report it)", file=sys.stderr)
        return int(ExitCode.INTERNAL)


class _CommandRegistry:
    def __init__(self, subparsers: Any, taken: set[str]):
        self.subparsers = subparsers
        self.taken = taken

    def add(self, command: Command) -> None:
        if command.name in self.taken:
            from onnxport.errors import PluginError
            raise PluginError(f"a plugin adds the command '{command.name}', which "
                              "already exists")
        self.taken.add(command.name)
        parser = self.subparsers.add_parser(command.name, help=command.help,
                                            description=command.help)
        command.configure(parser)
        parser.set_defaults(handler=command.run)


def build_parser(host) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxport",
        description="Convert PyTorch and Keras models to verified, deployment-ready ONNX.",
        epilog=EXIT_CODES + "\n\nenvironment: ONNXPORT_PLUGINS restricts the plugins "
        "loaded (empty: built-ins only); ONNXPORT_ENABLE=a,b turns on records that are off "
        "by default; ONNXPORT_TRACE=1 logs every hook call.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"onnxport {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and the exporters' original errors")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_convert(sub)
    _add_verify(sub)
    _add_inspect(sub)
    _add_plugins(sub)
    _add_targets(sub)
    _add_publish(sub)
    _add_pull(sub)
    _add_bench(sub)
    _add_diagnose(sub)
    host.call("onnxport_register_commands", cli=_CommandRegistry(
        sub, {"convert", "verify", "inspect", "plugins", "targets", "publish", "pull",
              "bench", "diagnose"}))
    return parser


# ----------------------------------------------------------------------------- convert


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert a model to verified ONNX",
        description="Convert SOURCE to ONNX, verify it against the source framework, and "
        "write the artifact to --output only if verification passes.",
        epilog="SOURCE is a model file (.pt2 ExportedProgram, .pt/.pth with "
        "--trust-code) or a factory package.module:function or path/file.py:function "
        "that returns the model, (model, example_inputs) or (model, example_inputs, "
        "output_names).\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE")
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
    p.add_argument("--name", help="model name for the file and manifest "
                   "(default: from the source)")
    p.add_argument("--backend", help="force a backend instead of picking by source")
    p.add_argument("--enable", action="append", default=[], metavar="NAME",
                   help="turn on a backend, pass or target that is disabled by default "
                   "(e.g. tflite; `onnxport plugins` says why each is off)")
    p.add_argument("--exporter", help="exporter variant of the backend, e.g. dynamo "
                   "(default) or torchscript for torch")
    p.add_argument("--opset", type=int, help="ONNX opset to produce (default: the "
                   "exporter's)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="an input's example shape, e.g. sensors:2x20x25 (repeatable); "
                   "NAME must be an argument of the model's forward()")
    p.add_argument("--input-names", metavar="A,B", help="rename the ONNX inputs, in order")
    p.add_argument("--output-names", metavar="A,B", help="name the ONNX outputs, in order")
    p.add_argument("--static-batch", action="store_true",
                   help="keep the example's batch size fixed instead of a dynamic axis")
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
    p.add_argument("--pass-option", action="append", default=[], metavar="PASS.KEY=VALUE",
                   help="set one option of a pass for every target, e.g. "
                   "quantize.weight_type=QUInt8 (repeatable; VALUE is parsed as TOML)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="targets config (default: ./onnxport.toml, else [tool.onnxport] "
                   "in ./pyproject.toml)")
    v = p.add_argument_group("verification")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs (0)")
    v.add_argument("--data", type=Path, metavar="FILE.npz",
                   help="verify on this data: one array per input name")
    v.add_argument("--input-range", action="append", default=[], metavar="[NAME=]LOW,HIGH",
                   help="range of the uniform random inputs (default -1,1; ints 0,10)")
    v.add_argument("--batch-sizes", metavar="N,M", help="batch sizes to verify a dynamic "
                   "batch at (default 1,3)")
    v.add_argument("--atol", type=float, help="absolute tolerance for every output "
                   "(default: the target's, 1e-5)")
    v.add_argument("--rtol", type=float, help="relative tolerance for every output "
                   "(default: the target's, 1e-4)")
    v.add_argument("--tolerance", action="append", default=[],
                   metavar="OUTPUT:atol=X,rtol=Y",
                   help="tolerance for one output (repeatable); also min_cosine=, "
                   "min_argmax_agreement=")
    v.add_argument("--classifier", action="append", default=[], metavar="OUTPUT",
                   help="declare an output a classifier: its argmax agreement is "
                   "checked against the budget's floor (repeatable)")
    v.add_argument("--latency-runs", type=int, default=20,
                   help="timed runs per model for the latency figures (0 skips)")
    v.add_argument("--threads", type=int, help="intra-op threads for every runner")
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
    o.add_argument("--publish", action="append", default=[], metavar="URI",
                   help="after a passing conversion, publish the artifact to URI "
                   "(s3://bucket/prefix, mlflow://model-name, file:///dir; repeatable)")
    _add_publish_options(o)
    p.set_defaults(handler=_run_convert)


def _run_convert(args) -> int:
    from onnxport.flow.inputs import parse_input_spec, parse_range
    from onnxport.flow.pipeline import ConversionRequest, run_conversion
    from onnxport.cli.progress import TerminalProgress
    from onnxport.flow.sources import source_from_text
    from onnxport.flow.verification import VerificationSettings

    if args.weights is not None and not args.weights.is_file():
        raise BadInput(f"--weights {args.weights} does not exist")
    tolerance = None
    if args.atol is not None or args.rtol is not None:
        default = Tolerance()
        tolerance = Tolerance(atol=default.atol if args.atol is None else args.atol,
                              rtol=default.rtol if args.rtol is None else args.rtol)
    request_kwargs = dict(
        output=args.output,
        name=args.name,
        backend=args.backend,
        exporter=args.exporter,
        opset=args.opset,
        inputs=tuple(parse_input_spec(s) for s in args.input),
        input_names=_names(args.input_names),
        output_names=_names(args.output_names),
        dynamic_batch=not args.static_batch,
        external_data=args.external_data,
        targets=tuple(args.target) or ("cpu",),
        pass_options=parse_pass_options(args.pass_option, args.quantize),
        config=args.config,
        trust_code=args.trust_code,
        overwrite=args.overwrite,
        keep_failed=args.keep_failed or args.diagnose,
        backend_options={"custom_objects": args.custom_object} if args.custom_object
        else {},
        verification=VerificationSettings(
            seed=args.seed,
            batch_sizes=_ints(args.batch_sizes, "--batch-sizes"),
            input_ranges=dict(parse_range(r) for r in args.input_range),
            data=args.data,
            tolerance=tolerance,
            output_tolerances=dict(parse_tolerance(t) for t in args.tolerance),
            latency_runs=args.latency_runs,
            threads=args.threads,
            classifiers=frozenset(args.classifier),
        ),
        made_by={"command": shlex.join(["onnxport", *map(redact, args.argv)]),
                 "cwd": str(Path.cwd())},
    )
    from onnxport.artifact.writing import check_output_dir

    check_output_dir(args.output, args.overwrite)  # before running any user code
    for name in args.enable:
        args.host.enable(name)
    source = source_from_text(args.source, args.weights)
    progress = TerminalProgress.attach(args.host)
    try:
        result = run_conversion(ConversionRequest(source=source, **request_kwargs),
                                args.host)
    except VerificationFailed as exc:
        if exc.result is not None and args.diagnose:
            progress.detach()
            _print_diagnosed(args, exc.result)
        elif exc.result is not None:
            _print_result(exc.result, args.json)
        raise
    finally:
        progress.detach()
    _print_result(result, args.json)
    for uri in args.publish:
        _print_published(uri, _publish(args, result.output, uri))
    return ExitCode.OK


def _print_result(result, as_json: bool) -> None:
    from onnxport.report.terminal import conversion_summary

    if as_json:
        print(json.dumps(result.report, indent=2, default=str))
    else:
        print(conversion_summary(result))


_CREDENTIALS_IN_URI = re.compile(r"(?<=://)[^/@\s]+@")


def redact(argument: str) -> str:
    """A command-line word as it may be written down: no user:password@ in URIs."""
    return _CREDENTIALS_IN_URI.sub("***@", argument)


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    output, sep, spec = text.partition(":")
    fields: dict[str, float] = {}
    try:
        for part in spec.split(","):
            key, _, value = part.partition("=")
            if key.strip() not in Tolerance.__dataclass_fields__:
                raise ValueError(key)
            fields[key.strip()] = float(value)
    except ValueError as exc:
        raise BadInput(f"--tolerance {text!r} is not OUTPUT:atol=X,rtol=Y",
                       "keys: " + ", ".join(Tolerance.__dataclass_fields__)) from exc
    if not sep or not output:
        raise BadInput(f"--tolerance {text!r} names no output",
                       "write it like uncertainties:atol=1e-4,rtol=0")
    base = Tolerance()
    return output, Tolerance(**{**base.__dict__, **fields})


def parse_pass_options(items: list[str], quantize: str | None) -> dict[str, dict[str, Any]]:
    """`PASS.KEY=VALUE` items (VALUE read as TOML, else as a string) and --quantize."""
    from onnxport.flow.config import tomllib

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        pass_name, dot, option = key.strip().partition(".")
        if not sep or not dot or not pass_name or not option:
            raise BadInput(f"--pass-option {item!r} is not PASS.KEY=VALUE",
                           "write it like quantize.weight_type=QUInt8")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        options.setdefault(pass_name, {})[option] = value
    if quantize is not None:
        options.setdefault("quantize", {})["mode"] = quantize
    return options


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def _ints(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise BadInput(f"{flag} {text!r} is not a comma-separated list of integers") \
            from exc
    if any(v < 1 for v in values):
        raise BadInput(f"{flag} {text!r}: batch sizes start at 1")
    return values


# ----------------------------------------------------------------------------- verify


def _add_verify(sub) -> None:
    p = sub.add_parser(
        "verify", help="check an existing artifact again against its source",
        description="Check every file of an artifact against its manifest's sha256, then "
        "re-run the numerical verification against the source recorded in the manifest "
        "(or --source), with the settings the conversion used.")
    p.add_argument("artifact", type=Path, metavar="DIR")
    p.add_argument("--source", help="the source to compare with (default: the manifest's)")
    p.add_argument("--weights", type=Path, help="weights for the source (default: the "
                   "manifest's)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow loading a source that executes code from its file, as "
                   "convert --trust-code did (a pickle); only for files you trust")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_verify)


def _run_verify(args) -> int:
    from onnxport.api import verify
    from onnxport.report.terminal import artifact_check_summary

    checks = verify(args.artifact, args.source, weights=args.weights, host=args.host,
                    trust_code=args.trust_code)
    if args.json:
        print(json.dumps([{
            "target": c.target, "passed": c.passed, "directory": str(c.directory),
            "integrity_problems": c.integrity_problems,
            "verification": c.verification.to_dict() if c.verification else None,
        } for c in checks], indent=2, default=str))
    else:
        print(artifact_check_summary(checks))
    if all(c.passed for c in checks):
        return ExitCode.OK
    failing = next(c for c in checks if not c.passed)
    reason = ("files do not match the manifest" if failing.integrity_problems
              else failing.verification.problem)
    print(f"onnxport: error: verification failed for target {failing.target}: {reason}",
          file=sys.stderr)
    return ExitCode.VERIFICATION_FAILED


# ----------------------------------------------------------------------------- inspect


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="show an ONNX model's interface and contents",
                       description="Print inputs, outputs, opset, IR version, producer, "
                       "op histogram, parameter count and size of an .onnx file (or of "
                       "each model in an artifact directory).")
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_inspect)


def _run_inspect(args) -> int:
    from onnxport.artifact.modelinfo import read_model_info
    from onnxport.flow.reverify import find_manifests
    from onnxport.report.terminal import model_summary

    path: Path = args.model
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    if path.is_dir():
        paths = [m.parent / json.loads(m.read_text())["model"]
                 for m in find_manifests(path)]
    else:
        paths = [path]
    infos = [read_model_info(p) for p in paths]
    if args.json:
        data = [i.to_dict() for i in infos]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        print("\n\n".join(model_summary(i) for i in infos))
    return ExitCode.OK


# ----------------------------------------------------------------------------- plugins


def _add_plugins(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins and what they provide",
                       description="List every loaded plugin with its version and hooks, "
                       "then every backend, runner, target and pass with its state.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_plugins)


def _run_plugins(args) -> int:
    from onnxport.cli.plugin_listing import plugin_listing, plugin_table

    listing = plugin_listing(args.host)
    print(json.dumps(listing, indent=2) if args.json else plugin_table(listing))
    return ExitCode.OK


# ----------------------------------------------------------------------------- targets


def _add_targets(sub) -> None:
    p = sub.add_parser("targets", help="list deployment targets and what each does",
                       description="List every deployment target (built-in, from plugins "
                       "and from the config file) with its providers, passes, INT8 mode "
                       "and budget, and what `auto` picks on this machine.")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="targets config (default: ./onnxport.toml, else [tool.onnxport] "
                   "in ./pyproject.toml)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_targets)


def _run_targets(args) -> int:
    from onnxport.flow.config import apply_config, find_config
    from onnxport.cli.target_listing import target_listing, target_table

    found = find_config(args.config)
    if found is not None:
        apply_config(args.host, *found)
    listing = target_listing(args.host)
    print(json.dumps(listing, indent=2) if args.json else target_table(listing))
    return ExitCode.OK


# ----------------------------------------------------------------------------- publish


def _add_publish_options(group) -> None:
    group.add_argument("--create-bucket", action="store_true",
                       help="S3: create the bucket if it does not exist")
    group.add_argument("--run-id", help="MLflow: link the model version to this training "
                       "run")
    group.add_argument("--alias", help="MLflow: set this alias on the new version (e.g. "
                       "staging)")
    group.add_argument("--force", action="store_true",
                       help="publish again although the same artifact (sha256) is there")
    group.add_argument("--publish-option", action="append", default=[],
                       metavar="KEY=VALUE", help="another publisher setting (repeatable)")


def _add_publish(sub) -> None:
    p = sub.add_parser("publish", help="publish an artifact to object storage or a registry",
                       description="Check an artifact's files against its manifests, then "
                       "publish it: s3://bucket/prefix (S3-compatible storage, versioned "
                       "as prefix/NAME/vYYYYMMDD_HHMMSS/), mlflow://REGISTERED-MODEL (a new "
                       "model version), or file:///dir.")
    p.add_argument("artifact", type=Path, metavar="DIR")
    p.add_argument("--to", required=True, action="append", metavar="URI",
                   help="where to publish (repeatable)")
    _add_publish_options(p)
    p.set_defaults(handler=_run_publish)


def _run_publish(args) -> int:
    for uri in args.to:
        _print_published(uri, _publish(args, args.artifact, uri))
    return ExitCode.OK


def _publish(args, artifact: Path, uri: str):
    from onnxport.artifact.publishing import publish

    options: dict[str, Any] = {"create_bucket": args.create_bucket, "run_id": args.run_id,
                               "alias": args.alias, "force": args.force}
    for item in args.publish_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--publish-option {item!r} is not KEY=VALUE")
        options[key.strip()] = value
    return publish(artifact, uri, args.host, options)


def _print_published(uri: str, result) -> None:
    state = "published" if result.created else "already published"
    print(f"{state}: {result.uri}")


def _add_pull(sub) -> None:
    p = sub.add_parser("pull", help="fetch a published artifact and check it",
                       description="Fetch a published artifact by URI (as `onnxport "
                       "publish` printed it) into DIR, and check every file against its "
                       "manifest's sha256 before DIR appears.")
    p.add_argument("uri", metavar="URI")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.set_defaults(handler=_run_pull)


def _run_pull(args) -> int:
    from onnxport.artifact.publishing import pull

    path = pull(args.uri, args.output, args.host, overwrite=args.overwrite)
    print(f"pulled {args.uri} into {path}")
    return ExitCode.OK


# ----------------------------------------------------------------------------- bench


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure latency, throughput, load time and memory of a model",
        description="Measure each target of an artifact (or a bare .onnx under each "
        "provider, and optionally the source framework), each in a fresh process: "
        "latency p50/p90/p99 after warm-up, throughput at the batch size, load time and "
        "peak resident memory. A table for people, --json for machines.")
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="bench only this target of the artifact (repeatable; default: all)")
    p.add_argument("--providers", metavar="A,B",
                   help="execution providers, each benched as its own row (default: the "
                   "target's, or CPUExecutionProvider for a bare .onnx)")
    p.add_argument("--batch", type=int, help="batch size of the inputs (default 1, or the "
                   "model's fixed batch)")
    p.add_argument("--threads", type=int, help="intra-op threads for every row (default: "
                   "every CPU this process may use)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (10)")
    p.add_argument("--runs", type=int, default=100, help="timed runs (100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (0)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="the full shape of an input whose axes the model leaves free "
                   "(repeatable)")
    p.add_argument("--source", help="also bench this source (a factory or model file) "
                   "in its framework's runner")
    p.add_argument("--with-source", action="store_true",
                   help="also bench the source the artifact's manifest records")
    p.add_argument("--weights", type=Path, help="weights for the source (default: the "
                   "manifest's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    from onnxport.bench import BenchSettings, bench_json, bench_table, make_feeds, plan, run_bench
    from onnxport.flow.inputs import parse_input_spec

    for flag, value, low in (("--warmup", args.warmup, 0), ("--runs", args.runs, 1),
                             ("--threads", args.threads, 1), ("--batch", args.batch, 1)):
        if value is not None and value < low:
            raise BadInput(f"{flag} {value}: must be at least {low}")
    settings = BenchSettings(batch=args.batch, threads=args.threads, warmup=args.warmup,
                             runs=args.runs, seed=args.seed,
                             inputs=tuple(parse_input_spec(s) for s in args.input))
    cases, infos, shapes, ranges, dynamic = plan(
        args.model, args.host, targets=tuple(args.target),
        providers=_names(args.providers) or (), source=args.source,
        with_source=args.with_source, weights=args.weights)
    feeds, batch = make_feeds(infos, shapes, ranges, dynamic, settings)
    results = run_bench(cases, feeds, batch, settings, args.host)
    if args.json:
        print(json.dumps(bench_json(results, settings, batch), indent=2))
    else:
        print(bench_table(results, settings, batch))
    failed = [r for r in results if r.error]
    if failed:
        print(f"onnxport: error: {failed[0].label} could not be measured: "
              f"{failed[0].error}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK


# ----------------------------------------------------------------------------- diagnose


def _add_diagnose(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="locate the first node whose output diverges",
        description="Find where a model goes wrong: the first node (in topological order) "
        "whose output is out of tolerance, with its op type, its inputs' shapes and the "
        "error. For an artifact (or the DIR.failed a failed conversion kept), a target "
        "whose pass failed is compared with the model the pass started from, any other "
        "with the source framework, layer by layer. For a bare .onnx, give --reference "
        "(the model a pass started from) or --source (the model it was exported from).",
        epilog="exit codes: 0 nothing diverges, 3 a divergence was located, 2 bad input")
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--reference", type=Path, metavar="MODEL.onnx",
                   help="compare with this ONNX model (the one a pass started from)")
    p.add_argument("--source", help="compare with this source (a factory or model file; "
                   "default for an artifact: the manifest's)")
    p.add_argument("--weights", type=Path, help="weights for the source (default: the "
                   "manifest's)")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="diagnose only this target of the artifact (repeatable)")
    p.add_argument("--batch", type=int, default=1,
                   help="batch size of the inputs for a bare .onnx (default 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random inputs for a bare .onnx (0)")
    p.add_argument("--data", type=Path, metavar="FILE.npz",
                   help="inputs for a bare .onnx: one array per input name")
    p.add_argument("--atol", type=float, help="absolute tolerance for every tensor "
                   "(default: the failing output's budget)")
    p.add_argument("--rtol", type=float, help="relative tolerance for every tensor")
    p.add_argument("--threads", type=int, help="intra-op threads for every runner")
    p.add_argument("--all", action="store_true", help="list every compared tensor")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_run_diagnose)


def _run_diagnose(args) -> int:
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
                                      atol=args.atol, rtol=args.rtol, threads=args.threads)
    _print_diagnoses(diagnoses, args.json, getattr(args, "all", False))
    located = any(d.first is not None or d.outputs_diverge or d.problem for d in diagnoses)
    return ExitCode.VERIFICATION_FAILED if located else ExitCode.OK


def _print_diagnoses(diagnoses, as_json: bool, show_all: bool = False) -> None:
    from onnxport.diagnose import diagnosis_text

    if as_json:
        data = [d.to_dict() for d in diagnoses]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        print("\n\n".join(diagnosis_text(d, show_all) for d in diagnoses))


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
        if "--debug" in args.argv:
            traceback.print_exc()
        print(f"onnxport: diagnosis failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    data = [d.to_dict() for d in diagnoses]
    if result.output is not None and data:
        from onnxport.artifact.writing import write_json

        write_json(result.output / "diagnosis.json", data)
    if args.json:
        print(json.dumps({**result.report, "diagnosis": data}, indent=2, default=str))
        return
    print(conversion_summary(result))
    for diagnosis in diagnoses:
        print("\n" + diagnosis_text(diagnosis))
