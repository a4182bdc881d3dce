"""The request bodies the API accepts, as pydantic models: every field typed and
bounded, unknown fields refused. A client chooses targets, the quantize mode and a few
verification settings; never a path, a factory, a plugin to enable or code to trust:
those come only from the server's own models file."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
InputText = Annotated[str, StringConstraints(
    max_length=200, pattern=r"^[A-Za-z0-9_.:/-]+:[0-9,x]+(:[a-z0-9]+)?$")]


class ClientOptions(BaseModel):
    """Conversion settings a client may choose (names as in `onnxport.convert`)."""

    model_config = ConfigDict(extra="forbid")

    exporter: Word | None = Field(None, description="the backend's exporter, e.g. "
                                  "dynamo, torchscript, auto")
    opset: int | None = Field(None, ge=7, le=30)
    atol: float | None = Field(None, ge=0, le=1e6)
    rtol: float | None = Field(None, ge=0, le=1e6)
    batch_sizes: list[Annotated[int, Field(ge=1, le=256)]] | None = Field(
        None, min_length=1, max_length=4, description="batch sizes verified")
    latency_runs: int | None = Field(None, ge=0, le=1000)
    seed: int | None = Field(None, ge=0, le=2**31)
    classifiers: list[Word] | None = Field(None, max_length=32)
    allow_nonfinite: bool | None = None
    dynamic_batch: bool | None = None
    inputs: list[InputText] | None = Field(None, max_length=32, description=
                                           "NAME:SHAPE[:DTYPE], e.g. x:1,4:float32")


class ConversionBody(BaseModel):
    """POST /v1/models/{name}/conversions: all fields optional (the models file's
    values are the defaults)."""

    model_config = ConfigDict(extra="forbid")

    targets: list[Word] | None = Field(None, min_length=1, max_length=16,
                                       description="deployment targets, e.g. cpu, rpi4")
    quantize: Literal["off", "on", "auto"] | None = None
    options: ClientOptions = Field(default_factory=ClientOptions)


class UploadBody(ConversionBody):
    """The `request` part of POST /v1/uploads: the same, and the artifact's name."""

    name: Name | None = Field(None, description="the artifact's name (default: the "
                              "file's name without its suffix)")


def parse(model: type[BaseModel], data: Any):
    """`data` as `model`, or an ApiError 422 that names the field and what is allowed."""
    from .problems import ApiError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            level = model
            for part in first["loc"][:-1]:
                field = level.model_fields.get(str(part))
                level = field.annotation if field is not None else level
            allowed = ", ".join(getattr(level, "model_fields", {}))
            raise ApiError(422, "unknown_field", f"unknown field {where!r}",
                           f"allowed here: {allowed}") from None
        raise ApiError(422, "invalid_field", f"{where}: {first['msg']}",
                       f"{len(exc.errors())} problem(s); see /docs for the schema") \
            from None


def client_options(body: ConversionBody) -> dict[str, Any]:
    """The body as `build_request` keywords."""
    options = {k: v for k, v in body.options.model_dump().items() if v is not None}
    if "inputs" in options:
        from onnxport.flow.inputs import parse_input_spec

        options["inputs"] = [parse_input_spec(text) for text in options["inputs"]]
    if body.targets:
        options["targets"] = list(body.targets)
    if body.quantize:
        options["quantize"] = body.quantize
    return options
