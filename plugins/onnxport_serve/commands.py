"""`onnxport serve`, `onnxport submit` and `onnxport token`: the Command records this
plugin registers. Nothing here imports FastAPI or uvicorn at module level: `onnxport
--help` stays fast and framework-free."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from onnxport.errors import BadInput, ExitCode
from onnxport.records import Command

DEFAULT_STATE = "onnxport-serve"
DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_VARIABLE = "ONNXPORT_TOKEN"
SERVER_VARIABLE = "ONNXPORT_SERVER"

# --------------------------------------------------------------------------- serve


def configure_serve(p) -> None:
    p.add_argument("--models", type=Path, metavar="FILE",
                   help="the models the server converts by name, in the fleet file "
                   "format ([defaults] and [[models]] with name, source, weights, targets "
                   "...): the only place a factory can come from")
    p.add_argument("--store", metavar="DIR|URI", default=None,
                   help="where artifacts go: a directory (default: STATE/artifacts) or a "
                   "publisher URI such as s3://bucket/prefix or file:///srv/models")
    p.add_argument("--state", type=Path, default=Path(DEFAULT_STATE), metavar="DIR",
                   help=f"the job database (jobs.db, SQLite) and each job's directory "
                   f"(default ./{DEFAULT_STATE})")
    p.add_argument("--host", dest="bind", default="127.0.0.1", metavar="ADDRESS",
                   help="the address to bind (default 127.0.0.1; another address needs a "
                   "token: onnxport token create)")
    p.add_argument("--port", type=int, default=8000, metavar="N", help="the port (default 8000)")
    p.add_argument("--executor", default="local", metavar="NAME",
                   help="where conversions run: local (worker processes here, the "
                   "default) or ray")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="the Ray cluster for --executor ray (default: RAY_ADDRESS, else "
                   "Ray started here)")
    p.add_argument("--jobs", type=int, metavar="N", help="conversions at once (default: "
                   "what the machine's memory and cores allow; for ray, the cluster's "
                   "CPUs)")
    p.add_argument("--queue-size", type=int, default=64, metavar="N",
                   help="queued jobs before a submission gets 429 (default 64)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="stop one conversion after this long (default 1800; a model's own "
                   "timeout wins; 0: no limit)")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="times a job interrupted by a server crash runs again (default 1)")
    p.add_argument("--max-upload-mb", type=float, default=256.0, metavar="MB",
                   help="the largest model file accepted (default 256)")
    p.add_argument("--max-body-kb", type=float, default=64.0, metavar="KB",
                   help="the largest JSON body accepted (default 64)")
    p.add_argument("--drain", type=float, default=30.0, metavar="SECONDS",
                   help="on SIGTERM, how long running jobs get to finish before they "
                   "are stopped and requeued (default 30)")


def run_serve(args) -> int:
    from .server import serve
    from .settings import MIB, Settings

    state = Path(args.state).absolute()
    settings = Settings(
        state=state, store=args.store or str(state / "artifacts"), models=args.models,
        host=args.bind, port=args.port, executor=args.executor,
        ray_address=args.ray_address, jobs=args.jobs, queue_size=args.queue_size,
        timeout=args.timeout, retries=args.retries,
        max_upload_bytes=int(args.max_upload_mb * MIB),
        max_body_bytes=int(args.max_body_kb * 1024), drain=args.drain)
    _check_imports()
    return serve(settings, args.host)  # args.host: the plugin host main() made


def _check_imports() -> None:
    from onnxport.errors import MissingDependency

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"),
                            ("python_multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependency(package, "serve", "onnxport serve") from None


SERVE = Command(
    name="serve", help="run the conversion service (HTTP API, job queue)",
    description="Run onnxport as a service: an HTTP API (FastAPI on uvicorn, versioned "
    "under /v1, OpenAPI at /docs) that converts the models of a models file by name, or "
    "uploaded .onnx/.keras files, as jobs kept in SQLite and run by an executor plugin "
    "(worker processes here, or a Ray cluster). Binds 127.0.0.1 unless told otherwise; "
    "any other address needs a token (onnxport token create). See docs/serve.md.",
    epilog="stops on SIGTERM or Ctrl-C: requests in flight finish, running jobs get "
    "--drain seconds, the rest are requeued for the next start",
    configure=configure_serve, run=run_serve)

# --------------------------------------------------------------------------- token


def configure_token(p) -> None:
    p.add_argument("action", choices=("create", "list", "revoke"),
                   help="create a token (printed once), list them, or revoke one")
    p.add_argument("id", nargs="?", metavar="ID", help="the token to revoke (revoke)")
    p.add_argument("--state", type=Path, default=Path(DEFAULT_STATE), metavar="DIR",
                   help=f"the server's state directory, where jobs.db is (default "
                   f"./{DEFAULT_STATE})")
    p.add_argument("--scope", action="append", default=[], choices=("read", "submit"),
                   help="what the token may do (create; repeatable): read (jobs, "
                   "models, artifacts, reports, metrics), submit (submit and cancel)")
    p.add_argument("--name", default="", metavar="TEXT",
                   help="a note saying whose token it is (create)")
    p.add_argument("--json", action="store_true", help="print JSON")


def run_token(args) -> int:
    import dataclasses

    from . import tokens
    from .db import DB_FILE, Database

    db = Database(Path(args.state) / DB_FILE)
    if args.action == "create":
        token, info = tokens.create(db, args.scope, args.name)
        if args.json:
            print(json.dumps({"token": token, **dataclasses.asdict(info)}))
        else:
            print(token)
            print(f"token {info.id} ({', '.join(info.scopes)}) created: it is shown "
                  "this once and stored only as its sha256", file=sys.stderr)
        return 0
    if args.action == "revoke":
        if not args.id:
            raise BadInput("onnxport token revoke needs the token's ID",
                           "onnxport token list shows them")
        info = tokens.revoke(db, args.id)
        print(f"revoked {info.id}", file=sys.stderr)
        return 0
    rows = tokens.listed(db)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows]))
        return 0
    print(f"{'id':<12} {'scopes':<12} {'state':<8} name")
    for row in rows:
        print(f"{row.id:<12} {','.join(row.scopes):<12} "
              f"{'revoked' if row.revoked else 'live':<8} {row.name}")
    return 0


TOKEN = Command(
    name="token", help="create, list or revoke the service's bearer tokens",
    description="Manage the bearer tokens of `onnxport serve` (kept in its state "
    "directory's jobs.db as sha256 hashes). Once a token exists, the server asks every "
    "request for one; a server bound to an address other machines reach refuses to start "
    "without one.",
    configure=configure_token, run=run_token)

# --------------------------------------------------------------------------- submit


def configure_submit(p) -> None:
    p.add_argument("model", nargs="?", metavar="NAME",
                   help="a model of the server's models file")
    p.add_argument("--upload", type=Path, metavar="FILE",
                   help="convert this .onnx or .keras file instead of a named model")
    p.add_argument("--name", metavar="NAME", help="the artifact's name (--upload)")
    p.add_argument("--server", default=None, metavar="URL",
                   help=f"the service (default: {SERVER_VARIABLE}, else {DEFAULT_URL})")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help=f"the bearer token (default: {TOKEN_VARIABLE})")
    p.add_argument("--target", action="append", default=[], metavar="TARGET",
                   help="a deployment target (repeatable; default: the model's)")
    p.add_argument("--quantize", choices=("off", "on", "auto"),
                   help="the INT8 mode of every target")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="a conversion option as JSON, e.g. latency_runs=0 or "
                   "batch_sizes=[1,4] (repeatable; see docs/serve.md)")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="submitting again with the same key gives the same job")
    p.add_argument("--wait", action="store_true",
                   help="wait for the job to end, showing its stages")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="download the artifact into DIR/NAME when it passed (implies "
                   "--wait)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop waiting after this long (the job goes on)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")


def run_submit(args) -> int:
    from .client import ServeClient, ServeError

    if bool(args.model) == bool(args.upload):
        raise BadInput("give a model NAME or --upload FILE (one of them)")
    options = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise BadInput(f"--option {text!r} is not KEY=JSON", "e.g. latency_runs=0")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    client = ServeClient(args.server or os.environ.get(SERVER_VARIABLE, DEFAULT_URL),
                         token=args.token or os.environ.get(TOKEN_VARIABLE))
    try:
        if args.upload:
            if not args.upload.is_file():
                raise BadInput(f"--upload {args.upload} does not exist")
            job = client.upload(args.upload, name=args.name, targets=args.target or None,
                                quantize=args.quantize, options=options,
                                idempotency_key=args.idempotency_key)
        else:
            job = client.submit(args.model, targets=args.target or None,
                                quantize=args.quantize, options=options,
                                idempotency_key=args.idempotency_key)
        if not args.quiet:
            print(f"job {job['id']}: {job['state']} ({job['model']})", file=sys.stderr)
        if args.wait or args.output:
            job = client.wait(job["id"], timeout=args.timeout,
                              on_update=None if args.quiet else _Progress())
        path = None
        if args.output and job["state"] == "passed":
            path = client.download(job["id"], args.output)
    except ServeError as exc:
        raise BadInput(f"{client.url}: HTTP {exc.status} {exc.code}: {exc.message}",
                       exc.hint) from None
    except TimeoutError as exc:
        raise BadInput(str(exc), "it goes on in the server: onnxport submit is only "
                       "the client") from None
    if args.json:
        print(json.dumps(job, indent=2))
    else:
        print(_line(job) + (f"\nwrote {path}" if path else ""))
    return _exit_code(job)


def _line(job: dict) -> str:
    if job["state"] == "passed":
        targets = (job.get("result") or {}).get("targets") or {}
        sizes = ", ".join(f"{t} {i.get('size_bytes')} bytes" for t, i in targets.items())
        return f"job {job['id']}: passed ({sizes})"
    if job.get("error"):
        return f"job {job['id']}: {job['state']}: {job['error'].get('message')}"
    return f"job {job['id']}: {job['state']}"


def _exit_code(job: dict) -> int:
    if job["state"] in ("queued", "running", "passed"):
        return ExitCode.OK
    code = (job.get("error") or {}).get("exit_code")
    return int(code) if code else int(ExitCode.CRASHED if job["state"] == "interrupted"
                                      else ExitCode.INTERNAL)


class _Progress:
    """One line on stderr per new stage event and state."""

    def __init__(self):
        self.shown = 0
        self.state = None

    def __call__(self, job: dict) -> None:
        stages = job.get("stages") or []
        for event in stages[self.shown:]:
            where = f" [{event['target']}]" if event.get("target") else ""
            took = f" {event['seconds']:.1f} s" if event.get("seconds") else ""
            print(f"  {event['stage']}{where}: {event['status']}{took}", file=sys.stderr,
                  flush=True)
        self.shown = len(stages)
        if job["state"] != self.state:
            self.state = job["state"]
            print(f"  job {job['id'][:8]}: {job['state']}", file=sys.stderr, flush=True)


SUBMIT = Command(
    name="submit", help="submit a conversion to onnxport serve, wait, download",
    description="The client of `onnxport serve`: convert a model the server knows by "
    "name (or upload a .onnx/.keras file), optionally wait with its stages shown, and "
    "download the verified artifact.",
    epilog="exit codes: 0 submitted (or passed, with --wait); else the job's exit code "
    "(see `onnxport --help`); 2 when the server refuses the request",
    configure=configure_submit, run=run_submit)
