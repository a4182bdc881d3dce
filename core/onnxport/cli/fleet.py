"""`onnxport fleet`: many models times many targets in one command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from onnxport.cli import plugin_options
from onnxport.errors import ExitCode
from onnxport.records import Command


def configure(p) -> None:
    p.add_argument("fleet", type=Path, metavar="FLEET.toml",
                   help="the fleet file: [defaults] and one [[models]] table per model")
    p.add_argument("-o", "--output", required=True, metavar="DIR|URI",
                   help="where the artifacts go: a directory (one per model, and the "
                   "fleet report), or a publisher URI such as s3://bucket/prefix")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="where the conversions run: local (worker processes here, the "
                   "default) or ray; `onnxport plugins` lists the executors")
    p.add_argument("--jobs", type=int, metavar="N", help="conversions at once (default: "
                   "what this machine's memory and cores allow)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="convert only this model of the file (repeatable)")
    p.add_argument("--force", action="store_true",
                   help="convert models whose last verified artifact is unchanged too")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="stop one conversion after this long (default 1800; a model's "
                   "own timeout key wins; 0: no limit)")
    p.add_argument("--report", type=Path, metavar="DIR",
                   help="where fleet.json, fleet.md and index.html go (default: the "
                   "output directory; for a URI output, ./fleet-report)")
    p.add_argument("--json", action="store_true",
                   help="print fleet.json instead of the table")


def run(args) -> int:
    from onnxport.errors import BadInput
    from onnxport.fleet.file import read_fleet
    from onnxport.fleet.report import fleet_json, fleet_table, summary_line, \
        write_fleet_report
    from onnxport.fleet.running import models_named, run_fleet

    if args.jobs is not None and args.jobs < 1:
        raise BadInput(f"--jobs {args.jobs}: must be at least 1")
    if args.timeout < 0:
        raise BadInput(f"--timeout {args.timeout}: must be a number of seconds >= 0")
    fleet = read_fleet(args.fleet)
    if args.only:
        fleet = models_named(fleet, args.only)
    progress = _Progress(len(fleet.models), quiet=args.quiet)
    result = run_fleet(fleet, args.output, args.host, executor=args.executor,
                       jobs=args.jobs, address=plugin_options(args).get("ray_address"),
                       force=args.force, default_timeout=args.timeout or None,
                       on_update=progress)
    report_dir = args.report or (Path(args.output) if "://" not in args.output
                                 else Path("fleet-report"))
    write_fleet_report(result, report_dir)
    if args.json:
        print(json.dumps(fleet_json(result), indent=2, default=str))
    else:
        print(fleet_table(result))
        print(f"\n{summary_line(result)}\nreport: {report_dir / 'index.html'}")
    failed = [r for r in result.rows if r.state == "failed"]
    return ExitCode.OK if not failed else int(failed[0].outcome.exit_code
                                             if failed[0].outcome else ExitCode.INTERNAL)


class _Progress:
    """One line on stderr each time a model starts, finishes or is skipped."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.quiet = quiet
        self.finished = 0

    def __call__(self, row) -> None:
        if self.quiet or row.state == "queued":
            return
        if row.state != "running":
            self.finished += 1
        took = f" in {row.outcome.seconds:.1f} s" if row.outcome and row.outcome.seconds \
            else ""
        why = (f": {row.outcome.one_line()}" if row.state == "failed" and row.outcome
               else "")
        print(f"  [{self.finished}/{self.total}] {row.name}: {row.state}{took}{why}",
              file=sys.stderr, flush=True)


COMMAND = Command(
    name="fleet", help="convert many models, each for its targets, in one command",
    description="Convert every model a fleet file lists, each exactly as `onnxport "
    "convert` would and in a worker process of its own, on this machine or a Ray "
    "cluster. A model whose inputs, settings and onnxport/plugin versions are unchanged "
    "since its last verified artifact is skipped. One failing model never stops the "
    "others; the exit code is 0 only when every model passed or was skipped.",
    epilog="exit codes: 0 every model passed (or was skipped), else the exit code of the "
    "first model that failed (see `onnxport --help`); 2 for a bad fleet file",
    configure=configure, run=run)
