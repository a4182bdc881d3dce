"""The models the server knows (its models file, in the fleet file format) and how a
client's request becomes a job: the conversion request every executor runs.

Only the models file names factories, weights, data and config files: a client names a
model and chooses settings (`bodies.ClientOptions`), so a request can never make the
server import or run code it was not configured with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxport.errors import BadInput, OnnxportError
from onnxport.fleet.file import FleetModel, read_fleet
from onnxport.flow.building import build_request, request_to_json
from onnxport.host import PluginHost

from .problems import ApiError
from .settings import Settings


class Catalog:
    def __init__(self, settings: Settings, host: PluginHost):
        self.settings = settings
        self.host = host
        self.models: dict[str, FleetModel] = {}
        if settings.models is not None:
            fleet = read_fleet(Path(settings.models))
            self.models = {m.name: m for m in fleet.models}

    def model(self, name: str) -> FleetModel:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none (the server has no models file)"
            raise ApiError(404, "unknown_model", f"the server has no model {name!r}",
                           f"models: {known}; or upload a file to POST /v1/uploads")
        return model

    def defaults(self, name: str) -> dict[str, Any]:
        """What a client may see of a named model: no paths."""
        model = self.model(name)
        return {"name": model.name,
                "targets": list(model.options.get("targets") or ["cpu"]),
                "quantize": model.options.get("quantize"),
                "timeout": model.timeout or self.settings.timeout}

    # ------------------------------------------------------------------ jobs

    def output_for(self, job_id: str, name: str) -> tuple[Path, tuple[str, ...]]:
        """Where a job's worker writes, and the URIs it publishes to."""
        if self.settings.store_is_uri:
            return (self.settings.jobs_dir / job_id / "out" / name).absolute(), \
                (self.settings.store,)
        return self.settings.store_dir / name / job_id, ()

    def named_job(self, job_id: str, name: str, options: dict[str, Any]
                  ) -> tuple[dict[str, Any], Path]:
        model = self.model(name)
        merged = {**model.options, **options}
        return self._job(job_id, model.source, model.name, merged, model.timeout,
                         {"kind": "named"})

    def upload_job(self, job_id: str, path: Path, name: str, options: dict[str, Any]
                   ) -> tuple[dict[str, Any], Path]:
        return self._job(job_id, str(path), name, options, None, {"kind": "upload",
                                                                  "file": path.name})

    def _job(self, job_id: str, source: str, name: str, options: dict[str, Any],
             timeout: float | None, made_by: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        output, publish = self.output_for(job_id, name)
        try:
            request = build_request(source, output=output, name=name, overwrite=True,
                                    made_by={"serve": {"job": job_id, "model": name,
                                                       **made_by}}, **options)
            self._check_targets(request)
        except ApiError:
            raise
        except OnnxportError as exc:
            raise ApiError(422, "bad_request", exc.message, exc.hint) from None
        return {"request": request_to_json(request),
                "timeout": timeout if timeout is not None else (self.settings.timeout or
                                                                 None),
                "publish": list(publish)}, output

    def _check_targets(self, request) -> None:
        from onnxport.flow.config import configured

        try:
            view = configured(self.host.view(enable=request.enable), request.config)
        except BadInput as exc:
            raise ApiError(500, "server_config", exc.message, exc.hint) from None
        known = view.registrations("target")
        unknown = [t for t in request.targets if t not in known]
        if unknown:
            raise ApiError(422, "unknown_target", f"unknown target {unknown[0]!r}",
                           "targets: " + ", ".join(sorted(known)))

    def target_names(self) -> list[str]:
        return sorted(self.host.registrations("target"))
