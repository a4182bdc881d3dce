"""The HTTP API (FastAPI): routes only. Jobs live in `jobs`, run in `dispatch`, uploads
arrive through `uploads`, artifacts leave through `archive`.

Versioned under /v1; OpenAPI at /openapi.json and /docs; /healthz, /readyz and /metrics
beside it; /api/models/{name}/export-onnx is the wake-word builder's call, mapped onto
the v1 submit. Every error is `{"error": {"code", "message", "hint"}}`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, \
    StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from onnxport import __version__
from onnxport.artifact.names import NAME, safe_name
from onnxport.errors import OnnxportError

from . import archive, metrics, tokens, uploads
from .bodies import ConversionBody, UploadBody, client_options, parse
from .catalog import Catalog
from .db import Database
from .dispatch import Dispatcher
from .jobs import FINAL, IdempotencyConflict, JobStore, NewJob, NotCancellable, \
    QueueFull, new_id
from .problems import ApiError, too_large, unknown_job
from .settings import Settings

JOB_ID = r"^[0-9a-f]{32}$"
IDEMPOTENCY_KEY = 200


@dataclass
class Service:
    """Everything a route needs, made once by `server.build_service`."""

    settings: Settings
    db: Database
    store: JobStore
    catalog: Catalog
    dispatcher: Dispatcher
    host: Any
    counters: metrics.Counters = field(default_factory=metrics.Counters)
    stopping: bool = False
    started: float = field(default_factory=time.time)

    # ------------------------------------------------------------------ auth

    def authorize(self, header: str | None, scope: str) -> str:
        if not tokens.required(self.db):
            return "anonymous"
        challenge = {"WWW-Authenticate": 'Bearer realm="onnxport"'}
        if not header:
            raise ApiError(401, "unauthorized", "this server requires a bearer token",
                           "send Authorization: Bearer TOKEN (onnxport token create)",
                           headers=challenge)
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "the Authorization header is not "
                           "'Bearer TOKEN'", "send Authorization: Bearer TOKEN",
                           headers=challenge)
        info = tokens.check(self.db, token.strip())
        if info is None:
            raise ApiError(401, "unauthorized", "the token is not valid (unknown or "
                           "revoked)", "ask for a new one (onnxport token create)",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in info.scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope "
                           f"(it has: {', '.join(info.scopes)})",
                           f"create a token with --scope {scope}")
        return info.id

    # ------------------------------------------------------------------ submitting

    def submit(self, *, model: str, kind: str, body: dict, build, principal: str,
               key: str | None, extra_hash: str = "", job_id: str | None = None
               ) -> tuple[dict, bool]:
        self.check_open()
        job_id = job_id or new_id()
        job, output = build(job_id)
        digest = hashlib.sha256(json.dumps([model, kind, body, extra_hash],
                                           sort_keys=True).encode()).hexdigest()
        new = NewJob(id=job_id, model=model, kind=kind, body=body, job=job,
                     output=str(output), principal=principal, idem_key=key,
                     idem_hash=digest if key else None)
        try:
            row, created = self.store.submit(new, self.settings.queue_size,
                                             self.dispatcher.slots)
        except QueueFull as full:
            raise self.queue_full(full) from None
        except IdempotencyConflict as conflict:
            self.counters.count("conflict")
            raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used "
                           f"for a different request (job {conflict.job_id})",
                           "use a new key for a new request") from None
        self.counters.count("accepted" if created else "replayed")
        if created:
            self.dispatcher.wake()
        return row, created

    def check_open(self) -> None:
        """Refuse a submission early: the server is stopping, or the queue is full."""
        if self.stopping:
            raise ApiError(503, "stopping", "the server is shutting down",
                           "submit again in a moment", headers={"Retry-After": "5"})
        queued = self.store.queued_count()
        if queued >= self.settings.queue_size:
            raise self.queue_full(QueueFull(queued, self.store.retry_after(
                queued, self.dispatcher.slots)))

    def queue_full(self, full: QueueFull) -> ApiError:
        self.counters.count("queue_full")
        return ApiError(429, "queue_full", f"the queue is full ({full.queued} jobs wait)",
                        f"retry after {full.retry_after} s",
                        headers={"Retry-After": str(full.retry_after)})

    def job(self, job_id: str) -> dict:
        job = self.store.get(job_id) if _valid_id(job_id) else None
        if job is None:
            raise unknown_job(job_id)
        return job

    # ------------------------------------------------------------------ artifacts

    def artifact_root(self, job: dict) -> Path:
        if job["state"] != "passed":
            raise ApiError(409, "no_artifact", f"job {job['id']} is {job['state']}: only "
                           "a passed job has an artifact",
                           "wait until it has passed" if job["state"] not in FINAL else
                           "its error says why; read report.json")
        location = job.get("location") or job["output"]
        if "://" not in location:
            return Path(location)
        cache = self.settings.state / "cache" / job["id"] / safe_name(job["model"])
        if not cache.is_dir():
            from onnxport.artifact.publishing import pull

            try:
                pull(location, cache, self.host)
            except OnnxportError as exc:
                raise ApiError(502, "store_unavailable", f"the artifact cannot be "
                               f"fetched from the store: {exc.message}", exc.hint) from None
        return cache


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).isoformat(
        timespec="milliseconds")


def job_view(job: dict, events: list[dict] | None = None) -> dict:
    base = f"/v1/jobs/{job['id']}"
    links = {"self": base, "cancel": f"{base}/cancel"}
    if job["state"] == "passed":
        links.update(artifact=f"{base}/artifact", report_html=f"{base}/report.html",
                     report_json=f"{base}/report.json")
    elif job["state"] == "failed" and (job.get("outcome") or {}).get("report"):
        links["report_json"] = f"{base}/report.json"
    view = {"id": job["id"], "model": job["model"], "kind": job["kind"],
            "state": job["state"], "attempts": job["attempts"],
            "cancel_requested": job["cancel_requested"],
            "created": _iso(job["created"]), "started": _iso(job["started"]),
            "finished": _iso(job["finished"]),
            "seconds": round((job["finished"] or time.time()) - job["started"], 3)
            if job["started"] else None,
            "request": job["body"], "result": job.get("summary"),
            "error": job.get("error"), "links": links}
    if events is not None:
        view["stages"] = [{**e, "at": _iso(e["at"])} for e in events]
        open_stages = {}
        for event in events:
            key = (event["stage"], event["target"])
            if event["status"] == "started":
                open_stages[key] = event
            else:
                open_stages.pop(key, None)
        view["current_stage"] = (None if job["state"] != "running" or not open_stages
                                 else list(open_stages.values())[-1]["stage"])
    return view


def _inline_schema(model) -> dict:
    """A pydantic model's JSON schema with its $defs inlined (for openapi_extra)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read no further than `limit` bytes ({} when empty)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large("request body", limit)
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large("request body", limit)
    if not data.strip():
        return {}
    try:
        return json.loads(bytes(data))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON ({exc})",
                       "send a JSON object, e.g. {\"targets\": [\"cpu\"]}") from None


def _key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > IDEMPOTENCY_KEY or not value.isprintable():
        raise ApiError(400, "bad_idempotency_key", "Idempotency-Key must be 1 to "
                       f"{IDEMPOTENCY_KEY} printable characters")
    return value


def _accepted(row: dict, created: bool, extra: dict | None = None) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{row['id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse({**job_view(row, []), **(extra or {})}, status_code=202,
                        headers=headers)


# --------------------------------------------------------------------------- the app


def create_app(service: Service) -> FastAPI:
    settings = service.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(service.dispatcher.start)
        yield
        service.stopping = True
        result = await run_in_threadpool(service.dispatcher.stop, settings.drain)
        import logging

        logging.getLogger("onnxport.serve").warning(
            "stopped; %d running job(s) requeued", result["requeued"])

    app = FastAPI(title="onnxport serve", version=__version__, lifespan=lifespan,
                  description="Conversion as a service: PyTorch and Keras models to "
                  "verified ONNX. See docs/serve.md.")

    def need(scope: str):
        def check(authorization: str | None = Header(None, include_in_schema=False)):
            return service.authorize(authorization, scope)

        return Depends(check)

    # ------------------------------------------------------------------ errors

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        hint = "the API is under /v1; see /docs" if exc.status_code == 404 else None
        return JSONResponse({"error": {"code": codes.get(exc.status_code, "http_error"),
                                       "message": str(exc.detail), "hint": hint}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return JSONResponse({"error": {"code": "invalid_parameter",
                                       "message": f"{where}: {first.get('msg')}",
                                       "hint": "see /docs"}}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        import logging

        logging.getLogger("onnxport.serve").exception("internal error")
        return JSONResponse({"error": {"code": "internal", "message":
                                       f"internal error: {type(exc).__name__}",
                                       "hint": "the server log has the traceback"}},
                            status_code=500)

    # ------------------------------------------------------------------ health

    @app.get("/healthz", tags=["health"])
    def healthz():
        """The process serves HTTP."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz():
        """The process takes jobs: its dispatcher runs and its database answers."""
        try:
            service.store.queued_count()
        except Exception as exc:
            raise ApiError(503, "not_ready", f"the job database does not answer ({exc})")
        if service.stopping or not service.dispatcher.alive:
            raise ApiError(503, "not_ready", "the server is stopping",
                           headers={"Retry-After": "5"})
        return {"status": "ready", "executor": settings.executor,
                "slots": service.dispatcher.slots,
                "auth": "tokens" if tokens.required(service.db) else "none"}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def prometheus(principal: str = need("read")):
        """Prometheus text format: jobs by state, job durations, submissions."""
        text = metrics.render(service.store, service.counters,
                              queue_limit=settings.queue_size,
                              slots=service.dispatcher.slots,
                              running_here=service.dispatcher.running_count(),
                              ready=service.dispatcher.alive and not service.stopping)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # ------------------------------------------------------------------ models

    @app.get("/v1/models", tags=["models"])
    def models(principal: str = need("read")):
        """The models of the server's models file, with their defaults."""
        return {"models": [service.catalog.defaults(n)
                           for n in sorted(service.catalog.models)],
                "targets": service.catalog.target_names()}

    def model_view(name: str) -> dict:
        configured = name in service.catalog.models
        if not configured and not (NAME.match(name) and service.store.known_model(name)):
            service.catalog.model(name)  # the 404
        latest: dict[str, dict] = {}
        for job in service.store.latest_passed(name):
            for target, info in ((job.get("summary") or {}).get("targets") or {}).items():
                if target not in latest and info.get("status") == "passed":
                    base = f"/v1/jobs/{job['id']}"
                    latest[target] = {"job": job["id"], "finished": _iso(job["finished"]),
                                      "size_bytes": info.get("size_bytes"),
                                      "stage": info.get("stage"),
                                      "max_abs": info.get("max_abs"),
                                      "artifact": f"{base}/artifact",
                                      "report_html": f"{base}/report.html"}
        defaults = service.catalog.defaults(name) if configured else None
        first = next((t for t in (defaults or {}).get("targets", []) if t in latest),
                     next(iter(latest), None))
        counts = {s: len(service.store.listed(state=s, model=name, limit=10000))
                  for s in ("queued", "running")}
        return {"name": name, "configured": configured, "defaults": defaults,
                "has_onnx": bool(latest),
                "onnx_size_bytes": latest[first]["size_bytes"] if first else None,
                "onnx_target": first, "latest": latest, "jobs": counts}

    @app.get("/v1/models/{name}", tags=["models"])
    def model(name: str, principal: str = need("read")):
        """A model's latest verified artifact per target, and the seed's status fields
        (has_onnx, onnx_size_bytes: of its first default target)."""
        return model_view(name)

    async def submit_named(name: str, request: Request, principal: str,
                           key: str | None, extra=None) -> JSONResponse:
        data = await read_json(request, settings.max_body_bytes)
        body = parse(ConversionBody, data)
        service.catalog.model(name)
        options = client_options(body)

        def build(job_id):
            return service.catalog.named_job(job_id, name, options)

        row, created = await run_in_threadpool(
            lambda: service.submit(model=name, kind="named", body=body.model_dump(
                exclude_none=True), build=build, principal=principal, key=key))
        return _accepted(row, created, extra(row) if extra else None)

    @app.post("/v1/models/{name}/conversions", tags=["jobs"], status_code=202,
              openapi_extra={"requestBody": {"required": False, "content": {
                  "application/json": {"schema": _inline_schema(ConversionBody)}}}})
    async def convert_named(name: str, request: Request, principal: str = need("submit"),
                            idempotency_key: str | None = Header(None)):
        """Convert a model of the server's models file. 202 with the job and its
        Location; the same Idempotency-Key and body give the same job again."""
        return await submit_named(name, request, principal, _key(idempotency_key))

    @app.post("/v1/uploads", tags=["jobs"], status_code=202, openapi_extra={
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": ".onnx or .keras (Keras 3, built-in layers only)"},
                "request": {"type": "string", "description": "JSON: "
                            + json.dumps(_inline_schema(UploadBody)["properties"])}}}}}}})
    async def upload(request: Request, principal: str = need("submit"),
                     idempotency_key: str | None = Header(None)):
        """Convert an uploaded model file (multipart/form-data: `file`, and `request`
        as JSON). Only formats that load without running code: see docs/serve.md."""
        key = _key(idempotency_key)
        await run_in_threadpool(service.check_open)  # before a byte is stored
        job_id = new_id()
        job_dir = settings.jobs_dir / job_id
        try:
            received = await uploads.receive(request, job_dir / "upload",
                                             settings.max_upload_bytes)
            try:
                data = json.loads(received.fields.get("request") or "{}")
            except ValueError as exc:
                raise ApiError(400, "malformed_json", f"the 'request' part is not valid "
                               f"JSON ({exc})", "send -F 'request={\"targets\":[\"cpu\"]}'"
                               ) from None
            body = parse(UploadBody, data)
            await run_in_threadpool(uploads.check_format, received.path,
                                    settings.max_upload_bytes)
            name = body.name or safe_name(received.path.stem)
            options = client_options(body)

            def build(job_id_: str):
                return service.catalog.upload_job(job_id_, received.path, name, options)

            row, created = await run_in_threadpool(lambda: service.submit(
                model=name, kind="upload", body={**body.model_dump(exclude_none=True),
                                                 "file": received.path.name},
                build=build, principal=principal, key=key, extra_hash=received.sha256,
                job_id=job_id))
        except BaseException:
            uploads.discard(job_dir)
            raise
        if not created:
            uploads.discard(job_dir)
        return _accepted(row, created)

    # ------------------------------------------------------------------ jobs

    @app.get("/v1/jobs", tags=["jobs"])
    def jobs(state: str | None = Query(None, pattern="^(queued|running|passed|failed|"
                                        "cancelled|interrupted)$"),
             model: str | None = Query(None, max_length=128),
             limit: int = Query(50, ge=1, le=1000), principal: str = need("read")):
        """The latest jobs, newest first."""
        return {"jobs": [job_view(j) for j in service.store.listed(
            state=state, model=model, limit=limit)]}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def job(job_id: str, principal: str = need("read")):
        """A job: its state, stages as they finish, result or error."""
        found = service.job(job_id)
        return job_view(found, service.store.events(job_id))

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: str, principal: str = need("submit")):
        """Cancel a queued job (at once) or a running one (its worker is stopped)."""
        service.job(job_id)
        try:
            state = service.store.cancel(job_id)
        except NotCancellable as exc:
            raise ApiError(409, "not_cancellable", f"job {job_id} has ended ({exc.state})",
                           "only a queued or running job can be cancelled") from None
        if state == "running":
            service.dispatcher.wake()
        found = service.job(job_id)
        return JSONResponse(job_view(found, service.store.events(job_id)),
                            status_code=200 if state == "cancelled" else 202)

    @app.get("/v1/jobs/{job_id}/artifact", tags=["artifacts"])
    def artifact(job_id: str, principal: str = need("read")):
        """The artifact as a streamed .tar.gz (NAME/report.json, NAME/TARGET/...)."""
        found = service.job(job_id)
        root = service.artifact_root(found)
        try:
            files = archive.archive_files(root)
        except OnnxportError as exc:
            raise ApiError(500, "artifact_damaged", f"the stored artifact of job "
                           f"{job_id} does not pass its check: {exc.message}",
                           "convert it again") from None
        name = safe_name(found["model"])
        return StreamingResponse(archive.stream(root, name, files),
                                 media_type="application/gzip", headers={
                                     "Content-Disposition": f'attachment; filename='
                                     f'"{name}-{job_id[:8]}.tar.gz"'})

    @app.get("/v1/jobs/{job_id}/report.json", tags=["artifacts"])
    def report_json(job_id: str, principal: str = need("read")):
        """The conversion's report.json (also for a job that failed verification)."""
        found = service.job(job_id)
        if found["state"] == "passed":
            from onnxport.artifact.reading import REPORT, read_json as read_report

            return read_report(service.artifact_root(found) / REPORT, "report")
        report = (found.get("outcome") or {}).get("report")
        if report is None:
            raise ApiError(404, "no_report", f"job {job_id} ({found['state']}) has no "
                           "report", "a report exists once a conversion got as far as "
                           "verifying; the job's error says what happened")
        return report

    @app.get("/v1/jobs/{job_id}/report.html", tags=["artifacts"])
    def report_html(job_id: str, principal: str = need("read")):
        """The conversion's report.html (a passed job's)."""
        found = service.job(job_id)
        path = service.artifact_root(found) / "report.html"
        if not path.is_file() or path.is_symlink():
            raise ApiError(404, "no_report", f"job {job_id} has no report.html")
        return FileResponse(path, media_type="text/html", headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                       "img-src data:"})

    # ------------------------------------------------------------------ the seed's API

    @app.post("/api/models/{name}/export-onnx", tags=["compatibility"], status_code=202)
    async def export_onnx(name: str, request: Request, principal: str = need("submit"),
                          idempotency_key: str | None = Header(None)):
        """The wake-word builder's call: the same as POST /v1/models/{name}/conversions
        (an empty body converts with the models file's defaults)."""
        return await submit_named(name, request, principal, _key(idempotency_key),
                                  extra=lambda row: {"job_id": row["id"],
                                                     "status_url": f"/v1/jobs/{row['id']}",
                                                     "model_url": f"/api/models/{name}"})

    @app.get("/api/models/{name}", tags=["compatibility"])
    def seed_status(name: str, principal: str = need("read")):
        """The wake-word builder's status fields: has_onnx, onnx_size_bytes."""
        view = model_view(name)
        return {"name": name, "has_onnx": view["has_onnx"],
                "onnx_size_bytes": view["onnx_size_bytes"],
                "onnx_target": view["onnx_target"],
                "download_url": view["latest"][view["onnx_target"]]["artifact"]
                if view["onnx_target"] else None}

    return app
