"""Loading a Hugging Face model for a task, with example inputs made from its config.

The model class comes from the task's transformers mapping and `config.json`'s
`model_type` (never from code in the directory: `trust_remote_code` stays off). The
model is wrapped so that it returns the task's outputs by Optimum's names, and then
loaded by the torch backend's own `load` (example checks, dry run, binding by name, a
batch of 2 to trace), so export and the source runner are the torch backend's. The
attention is loaded as plain ops (ATTENTION), so the fuse pass can fuse it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from pathlib import Path
from typing import Any, Iterator

import torch

from onnxport.errors import BadInput, MissingDependency
from onnxport.records import LoadedModel, LoadRequest, Source

from .detect import HubModel, read_config
from .tasks import TASKS, Task

BATCH = 2  # the example batch: torch.export specialises a batch of 1
SEQUENCE = 16  # example tokens, at most the model's maximum length
WAVEFORM = 3200  # example samples of raw audio (0.2 s at 16 kHz)
SEQUENCE_AXIS = "sequence"
TOKEN_OUTPUTS = ("last_hidden_state",)  # one row per input token
# Attention as plain ops: what onnxruntime's optimizer fuses into its Attention kernel.
# "sdpa" (transformers' default) is a PyTorch kernel choice that exports as a pattern
# the optimizer does not match; both compute the same function.
ATTENTION = "eager"


def load(request: LoadRequest) -> LoadedModel:
    transformers = _import_transformers()
    source = request.source
    where, config = _config(source, transformers)
    task = _task(request.options.get("task"), config, where)
    model_class = _model_class(task, config, where, transformers)
    with _quiet(transformers):
        model = _from_pretrained(model_class, source, where)
    if source.weights is not None:
        from onnxport_torch.loading import apply_weights

        apply_weights(model, Path(source.weights))
    model.eval()
    examples, inferred = example_inputs(model, config, torch)
    names = list(examples)
    if request.input_names is not None and len(request.input_names) == len(names):
        renamed = dict(zip(names, request.input_names))
        inferred = {renamed[n]: axes for n, axes in inferred.items()}
    axes = {name: dict(per_input) for name, per_input in inferred.items()}
    for name, per_input in (request.dynamic_axes or {}).items():  # the user's win
        axes.setdefault(name, {}).update(per_input)
    wrapped = NamedOutputs(model, task.outputs).eval()
    loaded = _torch_load(dataclasses.replace(
        request, dynamic_axes=axes,
        source=Source(kind="object", value=wrapped, origin=source.origin,
                      example_inputs=examples, output_names=source.output_names)))
    loaded.backend = "transformers"
    loaded.description = f"{type(model).__name__} ({task.name})"
    loaded.details.update({
        "task": task.name, "model_class": type(model).__name__,
        "model_type": config.model_type, "auto_class": task.auto_class,
        "transformers": transformers.__version__})
    return loaded


def name_sequence_outputs(path: Path, loaded: LoadedModel) -> None:
    """The TorchScript exporter names an output's dynamic axes itself
    ('LayerNormalizationlast_hidden_state_dim_1'); a text model's per-token output
    shares its inputs' sequence axis, so it gets their name, as on the dynamo route."""
    if "input_ids" not in loaded.input_names or \
            loaded.dynamic_axes.get("input_ids", {}).get(1) != SEQUENCE_AXIS:
        return
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # weights stay where they are
    renamed = False
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if output.name in TOKEN_OUTPUTS and len(dims) > 1 and dims[1].dim_param:
            dims[1].dim_param, renamed = SEQUENCE_AXIS, True
    if renamed:
        onnx.save(model, str(path))


def _torch_load(request: LoadRequest) -> LoadedModel:
    from onnxport_torch.loading import load as torch_load

    return torch_load(request)


# ----------------------------------------------------------------------------- the model


def _import_transformers():
    try:
        import transformers
    except ModuleNotFoundError as exc:
        raise MissingDependency("transformers", "transformers",
                                "the transformers backend") from exc
    return transformers


def _config(source: Source, transformers) -> tuple[str, Any]:
    """Where the model is (for messages), and its config, read without running code."""
    if isinstance(source.value, HubModel):
        hub = source.value
        _check_online(hub)
        try:
            with _quiet(transformers):
                config = transformers.AutoConfig.from_pretrained(
                    hub.id, revision=hub.revision, trust_remote_code=False)
        except Exception as exc:
            raise _hub_error(hub, exc) from exc
        return hub.id, config
    directory = Path(source.value)
    data = read_config(directory)
    if data is None:
        raise BadInput(f"{directory} has no readable config.json",
                       "save the model with model.save_pretrained(directory)")
    model_type = data.get("model_type")
    known = transformers.CONFIG_MAPPING
    if model_type not in known:
        custom = " (its auto_map names custom code, which onnxport does not run)" \
            if data.get("auto_map") else ""
        raise BadInput(f"{directory}/config.json: model_type {model_type!r} is not a model "
                       f"type transformers {transformers.__version__} knows{custom}",
                       "save the model from a transformers model class with "
                       "save_pretrained, or upgrade transformers if the type is newer")
    try:
        with _quiet(transformers):
            config = transformers.AutoConfig.from_pretrained(str(directory),
                                                             trust_remote_code=False)
    except Exception as exc:
        raise BadInput(f"{directory}/config.json is not a valid {model_type} config: "
                       f"{type(exc).__name__}: {_first_line(exc)}") from exc
    return str(directory), config


def _check_online(hub: HubModel) -> None:
    try:
        from huggingface_hub import constants
        offline = bool(constants.HF_HUB_OFFLINE)
    except Exception:  # an old or absent huggingface_hub: let from_pretrained say
        offline = False
    if offline:
        raise BadInput(f"cannot download {hub.id} from the Hugging Face Hub: offline mode "
                       "is on (HF_HUB_OFFLINE)",
                       "save the model with save_pretrained where the network allows and "
                       "convert that directory, or unset HF_HUB_OFFLINE")


def _hub_error(hub: HubModel, exc: Exception) -> BadInput:
    return BadInput(f"cannot load {hub.id} from the Hugging Face Hub: "
                    f"{type(exc).__name__}: {_first_line(exc)}",
                    "check the id and the network, or convert a save_pretrained directory")


def _task(asked: str | None, config, where: str) -> Task:
    """The task asked for, else the one `architectures` in config.json names."""
    if asked is not None:
        if asked not in TASKS:
            raise BadInput(f"unknown task {asked!r}", "tasks: " + ", ".join(TASKS))
        return TASKS[asked]
    from transformers.models.auto import modeling_auto

    for architecture in getattr(config, "architectures", None) or ():
        for task in TASKS.values():
            if architecture in _class_names(getattr(modeling_auto, task.mapping)):
                return task
    named = ", ".join(getattr(config, "architectures", None) or ()) or "none"
    raise BadInput(f"{where}: the task cannot be told from config.json (architectures: "
                   f"{named})", "pass --task " + "|".join(TASKS))


def _class_names(mapping) -> set[str]:
    """Every class name a transformers mapping holds (a value may be a tuple)."""
    names: set[str] = set()
    for value in mapping.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _model_class(task: Task, config, where: str, transformers):
    from transformers.models.auto import modeling_auto

    mapping = getattr(modeling_auto, task.mapping)
    names = mapping.get(config.model_type)
    if not names:
        supported = [t.name for t in TASKS.values()
                     if getattr(modeling_auto, t.mapping).get(config.model_type)]
        raise BadInput(f"{where}: a {config.model_type} model does not support the task "
                       f"{task.name} (transformers has no {task.auto_class} class for it)",
                       "tasks it supports: " + (", ".join(supported) or "none of "
                                                + ", ".join(TASKS)))
    name = names if isinstance(names, str) else names[0]
    architectures = getattr(config, "architectures", None) or ()
    for candidate in ([names] if isinstance(names, str) else names):
        if candidate in architectures:  # the class the model was saved from
            name = candidate
    model_class = getattr(transformers, name, None)
    if model_class is None:
        raise BadInput(f"transformers {transformers.__version__} has no class {name} "
                       f"for {config.model_type} models here (a missing dependency?)")
    return model_class


def _from_pretrained(model_class, source: Source, where: str):
    hub = source.value if isinstance(source.value, HubModel) else None
    where_from = hub.id if hub else str(source.value)
    try:
        try:
            model, info = model_class.from_pretrained(
                where_from, revision=hub.revision if hub else None,
                trust_remote_code=False, output_loading_info=True,
                attn_implementation=ATTENTION)
        except ValueError as exc:
            if ATTENTION not in str(exc):
                raise
            model, info = model_class.from_pretrained(  # a model without eager attention
                where_from, revision=hub.revision if hub else None,
                trust_remote_code=False, output_loading_info=True)
    except Exception as exc:
        if hub is not None:
            raise _hub_error(hub, exc) from exc
        raise BadInput(f"{where}: {model_class.__name__} cannot load the weights there: "
                       f"{type(exc).__name__}: {_first_line(exc)}",
                       "save the model with model.save_pretrained(directory)") from exc
    missing = sorted(info.get("missing_keys") or ())
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k)
                        for k in info.get("mismatched_keys") or ())
    if missing or mismatched:
        shown = ", ".join((missing + mismatched)[:4])
        more = len(missing) + len(mismatched) - 4
        saved = ", ".join(getattr(model.config, "architectures", None) or ()) or "unknown"
        raise BadInput(
            f"{where} has no trained weights for {shown}"
            + (f" (+{more} more)" if more > 0 else "") + f" of {model_class.__name__}: "
            "they would be random, and the model's outputs meaningless",
            f"pick the task the model was saved for (its class: {saved}), or save the "
            "trained model with save_pretrained")
    return model


class NamedOutputs(torch.nn.Module):
    """A transformers model as an nn.Module that takes its inputs by name and returns
    the task's outputs by name (a dict, in Optimum's order), not a ModelOutput.

    forward() names every input it may be given (in Optimum's order) rather than taking
    **kwargs: torch.export cannot match dynamic shapes to inputs **kwargs collects."""

    def __init__(self, model, outputs: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.outputs = tuple(outputs)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                pixel_values=None, input_values=None, input_features=None):
        given = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids, "pixel_values": pixel_values,
                 "input_values": input_values, "input_features": input_features}
        inputs = {name: value for name, value in given.items() if value is not None}
        result = self.model(**inputs, return_dict=True)
        missing = [name for name in self.outputs if result.get(name) is None]
        if missing:
            raise ValueError(f"{type(self.model).__name__} returned no "
                             f"{', '.join(missing)} (it returned "
                             f"{', '.join(result.keys())})")
        return {name: result[name] for name in self.outputs}


# ----------------------------------------------------------------------------- inputs


def example_inputs(model, config, torch) -> tuple[dict[str, Any], dict[str, dict[int, str]]]:
    """Inputs a tokenizer, feature extractor or image processor would make, from the
    config alone, by Optimum's names and in its order; and the axes beyond the batch
    the model lets vary (the sequence of text and of raw audio)."""
    generator = torch.Generator().manual_seed(0)
    main = getattr(model, "main_input_name", "input_ids")
    parameters = inspect.signature(model.forward).parameters
    if main == "input_ids":
        vocab = int(getattr(config, "vocab_size", 0) or 0)
        if vocab < 2:
            raise BadInput(f"the {config.model_type} config has no vocab_size, so there is "
                           "no telling which token ids are valid",
                           "pass --input input_ids:2x16:int64 (ids 0..9)")
        longest = _max_length(config)
        length = SEQUENCE if longest is None else max(2, min(SEQUENCE, longest - 2))
        low = 5 if vocab > 10 else 0  # leave the usual special ids out
        ids = torch.randint(low, vocab, (BATCH, length), generator=generator)
        inputs = {"input_ids": ids}
        if "attention_mask" in parameters:
            inputs["attention_mask"] = torch.ones_like(ids)
        if "token_type_ids" in parameters and \
                int(getattr(config, "type_vocab_size", 0) or 0) >= 2:
            inputs["token_type_ids"] = torch.zeros_like(ids)
        return inputs, {name: {1: SEQUENCE_AXIS} for name in inputs}
    if main == "pixel_values":
        channels = int(getattr(config, "num_channels", 3) or 3)
        height, width = _image_size(config)
        pixels = torch.rand(BATCH, channels, height, width, generator=generator) * 2 - 1
        return {"pixel_values": pixels}, {}
    if main == "input_values":
        bins, frames = getattr(config, "num_mel_bins", None), getattr(config,
                                                                      "max_length", None)
        if bins and frames:  # a spectrogram of a fixed length (AST)
            values = torch.randn(BATCH, int(frames), int(bins), generator=generator) * 0.5
            return {"input_values": values}, {}
        waveform = torch.randn(BATCH, WAVEFORM, generator=generator)  # normalised audio
        return {"input_values": waveform}, {"input_values": {1: SEQUENCE_AXIS}}
    if main == "input_features" and getattr(config, "max_source_positions", None) and \
            getattr(config, "num_mel_bins", None):  # Whisper: 2 frames per position
        features = torch.randn(BATCH, int(config.num_mel_bins),
                               2 * int(config.max_source_positions),
                               generator=generator) * 0.5
        return {"input_features": features}, {}
    raise BadInput(f"onnxport cannot make example inputs for {type(model).__name__} "
                   f"(its main input is {main})",
                   f"pass --input {main}:SHAPE[:DTYPE] for each input it needs")


def _max_length(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _image_size(config) -> tuple[int, int]:
    size = getattr(config, "image_size", 224)
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    if isinstance(size, dict):
        return int(size.get("height", 224)), int(size.get("width", 224))
    return int(size), int(size)


@contextlib.contextmanager
def _quiet(transformers) -> Iterator[None]:
    """transformers' load reports and progress bars, off while loading, as they were
    after."""
    logging = transformers.utils.logging
    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[:limit - 3] + "..."
