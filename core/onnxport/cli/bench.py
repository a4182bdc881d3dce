"""`onnxport bench`: latency, throughput, load time and memory, each in a fresh process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from onnxport.cli.parsing import names
from onnxport.errors import BadInput, ExitCode
from onnxport.records import Command


def configure(p) -> None:
    p.add_argument("model", type=Path, metavar="MODEL.onnx|DIR")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="bench only this target of the artifact (repeatable; default: all)")
    p.add_argument("--providers", metavar="A,B",
                   help="execution providers, each benched as its own row (default: the "
                   "target's, or CPUExecutionProvider for a bare .onnx)")
    p.add_argument("--batch", type=int, metavar="N", help="batch size of the inputs (default 1, or the "
                   "model's fixed batch)")
    p.add_argument("--threads", type=int, metavar="N", help="intra-op threads for every row (default: "
                   "every CPU this process may use)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed runs first (10)")
    p.add_argument("--runs", type=int, default=100, metavar="N", help="timed runs (100)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random inputs (0)")
    p.add_argument("--input", action="append", default=[], metavar="NAME:SHAPE[:DTYPE]",
                   help="the full shape of an input whose axes the model leaves free "
                   "(repeatable)")
    p.add_argument("--source", metavar="SOURCE", help="also bench this source (a factory or model file) "
                   "in its framework's runner")
    p.add_argument("--with-source", action="store_true",
                   help="also bench the source the artifact's manifest records (runs "
                   "code the artifact names: needs --trust-code)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow --with-source to run the manifest's source (only for "
                   "artifacts you made yourself or fully trust)")
    p.add_argument("--weights", type=Path, metavar="FILE", help="weights for the source (default: the "
                   "manifest's)")
    p.add_argument("--budget", metavar="MS",
                   help="a real-time budget: each row's p99 must fit in MS milliseconds "
                   "(exit 3 if one does not); measure it on the device itself")
    p.add_argument("--json", action="store_true", help="print JSON")



def run(args) -> int:
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
        providers=names(args.providers) or (), source=args.source,
        with_source=args.with_source, weights=args.weights,
        trust_code=args.trust_code)
    budget = None
    if args.budget is not None:
        from onnxport.flow.budget import parse_budget

        budget = parse_budget(args.budget)[0]
    feeds, batch = make_feeds(infos, shapes, ranges, dynamic, settings)
    results = run_bench(cases, feeds, batch, settings, args.host)
    verdicts = {r.label: (r.latency_ms or {}).get("p99", float("inf")) <= budget
                for r in results if not r.error} if budget is not None else {}
    if args.json:
        data = bench_json(results, settings, batch)
        if budget is not None:
            data["budget"] = {"p99_ms": budget, "met": verdicts}
        print(json.dumps(data, indent=2))
    else:
        print(bench_table(results, settings, batch))
        for label, met in verdicts.items():
            print(f"{label}: p99 budget {budget:g} ms at batch {batch}: "
                  f"{'met' if met else 'MISSED'}")
    failed = [r for r in results if r.error]
    if failed:
        print(f"onnxport: error: {failed[0].label} could not be measured: "
              f"{failed[0].error}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    missed = [label for label, met in verdicts.items() if not met]
    if missed:
        print(f"onnxport: error: {missed[0]} misses the {budget:g} ms p99 budget at batch "
              f"{batch}", file=sys.stderr)
        return ExitCode.VERIFICATION_FAILED
    return ExitCode.OK


COMMAND = Command(
    name="bench", help="measure latency, throughput, load time and memory of a model",
    description="Measure each target of an artifact (or a bare .onnx under each "
    "provider, and optionally the source framework), each in a fresh process: "
    "latency p50/p90/p99 after warm-up, throughput at the batch size, load time and "
    "peak resident memory. A table for people, --json for machines.",
    configure=configure, run=run)
