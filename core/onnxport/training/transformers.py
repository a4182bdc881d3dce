"""Export after `trainer.train()`: a Hugging Face `transformers.TrainerCallback`.

    from onnxport.training.transformers import ExportOnnx

    trainer = Trainer(model=model, args=args, train_dataset=train,
                      callbacks=[ExportOnnx("runs/intent")])

At the end of training a transformers model is saved with `save_pretrained` to
`runs/intent/model/` (config and safetensors weights, the trained model first), then
converted and verified in a worker process into `runs/intent/onnx/`, and
`runs/intent/onnx-status.json` says how it went. With `monitor="eval_loss"` it exports
at each evaluation that improves it instead, replacing the previous export only when
the new one verifies.

The worker rebuilds the model from the saved directory with its transformers class
(`from_pretrained`: no pickle, no remote code), and feeds it the example inputs: the
first training batch the model was called with (labels left out), or
`example_inputs=`. A model class of your own goes through `factory=` or
`trust_code=True`, as in `onnxport.training.torch`. Only the main process exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import transformers
from transformers import TrainerCallback

from onnxport.errors import BadInput
from onnxport.training.exporting import (DEFAULT_TIMEOUT, LOG, ExportError, ExportHandle,
                                         Exporter, SourceSpec, make_settings)
from onnxport.training.files import link_into, replace_directory
from onnxport.training.torch import (TorchRoute, _write_factory_file, save_inputs,
                                     load_inputs, unwrap)

__all__ = ["ExportOnnx", "ExportError", "load_pretrained"]


class PretrainedRoute(TorchRoute):
    """A transformers model: the checkpoint is a save_pretrained directory, and unless
    `factory=` or `trust_code=True` says otherwise, the worker rebuilds the model with
    its transformers class. Any other module is saved and sent as in
    `onnxport.training.torch`."""

    def __init__(self, *args: Any, trust_code: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.trust_code = trust_code
        self.pretrained = True  # what the last model saved was

    @property
    def checkpoint(self) -> Path:
        name = self.settings.name
        return self.settings.directory / (name if self.pretrained else f"{name}.pt")

    def saver(self, model, epoch: int | None = None, step: int | None = None):
        module = unwrap(model)
        self.pretrained = isinstance(module, transformers.PreTrainedModel)
        if not self.pretrained:
            return super().saver(module, epoch, step)
        return lambda: replace_directory(self.checkpoint,
                                         lambda path: module.save_pretrained(str(path)))

    def writer(self, model):
        module = unwrap(model)
        if self.factory is None and not self.trust_code and not _own_class(module):
            def refuse(directory: Path) -> SourceSpec:
                raise BadInput(
                    f"{type(module).__name__} is not a transformers class, so the "
                    "conversion process cannot rebuild it from the saved directory",
                    "give factory='package.module:build' or trust_code=True")
            return refuse
        if not isinstance(module, transformers.PreTrainedModel) or self.trust_code:
            return super().writer(model)
        if self.factory is not None:
            def write_state(directory: Path) -> SourceSpec:
                import torch

                weights = directory / "weights.pt"  # the factory's model takes these
                torch.save({"state_dict": module.state_dict()}, weights)
                return SourceSpec(model=self.factory, weights=weights)
            return write_state

        def write(directory: Path) -> SourceSpec:
            self.recorder.detach()
            saved = link_into(self.checkpoint, directory)
            meta = {"class": type(module).__name__, "model": saved.name,
                    "inputs": save_inputs(self.example_inputs(model),
                                          directory / "inputs.npz"),
                    "output_names": list(self.output_names)
                    if self.output_names is not None else None}
            return _write_factory_file(directory, meta, "onnxport.training.transformers",
                                       "load_pretrained")
        return write


def _own_class(module) -> bool:
    """Whether transformers itself has the model's class (so from_pretrained rebuilds
    it without running any code from the saved directory)."""
    return getattr(transformers, type(module).__name__, None) is type(module)


def load_pretrained(directory: str | Path):
    """What a `source.py` written for a transformers model returns: the model rebuilt
    from its save_pretrained directory by its transformers class, and the example
    inputs saved beside it. Runs in the worker."""
    directory = Path(directory)
    meta = json.loads((directory / "source.json").read_text())
    model_class = getattr(transformers, meta["class"])
    model = model_class.from_pretrained(str(directory / meta["model"]))
    example = load_inputs(directory, meta["inputs"])
    names = meta.get("output_names")
    return (model, example, names) if names else (model, example)


class ExportOnnx(ExportHandle, TrainerCallback):
    """A `transformers.TrainerCallback` that saves the trained model and exports it to
    verified ONNX. Every keyword `onnxport.convert` takes (targets, quantize, atol,
    exporter, opset, ...) is passed on; the others are described in docs/training.md."""

    def __init__(self, directory: str | Path, *, example_inputs: Any = None,
                 factory: str | None = None, trust_code: bool = False,
                 name: str | None = None, artifact: str | Path | None = None,
                 monitor: str | None = None, mode: str = "min", background: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT, strict: bool = False,
                 publish: Iterable[str] | str = (),
                 publish_options: Mapping[str, Any] | None = None,
                 log_to_mlflow: bool = True, **convert_options: Any):
        caller = "onnxport.training.transformers.ExportOnnx"
        if factory is not None:
            TorchRoute.check(caller, factory, trust_code)
        settings = make_settings(
            directory, name=name, artifact=artifact, monitor=monitor, mode=mode,
            background=background, timeout=timeout, strict=strict, publish=publish,
            publish_options=publish_options, log_to_mlflow=log_to_mlflow,
            trust_code=trust_code, convert_options=convert_options, caller=caller)
        self.route = PretrainedRoute(settings, factory=factory,
                                     example_inputs=example_inputs,
                                     output_names=convert_options.get("output_names"),
                                     caller=caller, trust_code=trust_code)
        self.exporter = Exporter(settings, caller)
        self._warned_monitor = False

    # ----------------------------------------------------------------- Trainer events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self.route.wants_inputs():
            self.route.recorder.ignore |= set(getattr(args, "label_names", None) or ())
            self.route.recorder.attach(model)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        monitor = self.exporter.settings.monitor
        if not monitor or model is None or not state.is_world_process_zero:
            return
        metrics = metrics or {}
        value = metrics.get(monitor, metrics.get(f"eval_{monitor}"))
        if value is None:
            if not self._warned_monitor:
                self._warned_monitor = True
                LOG.warning("onnxport: monitor=%r is not among the evaluation metrics "
                            "(%s); the model is exported at the end of training instead",
                            monitor, ", ".join(sorted(metrics)))
            return
        epoch = None if state.epoch is None else float(state.epoch)
        self.exporter.observe(value, self.route.saver(model, epoch, state.global_step),
                              self.route.writer(model), epoch=epoch,
                              step=state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.route.recorder.detach()
        if model is None or not state.is_world_process_zero:
            return
        if not self.exporter.settings.monitor or not self.exporter.exported:
            epoch = None if state.epoch is None else float(state.epoch)
            self.exporter.export(self.route.saver(model, epoch, state.global_step),
                                 self.route.writer(model), trigger="end", epoch=epoch,
                                 step=state.global_step)
        self.exporter.finish()

    # ----------------------------------------------------------------- direct use

    @property
    def checkpoint(self) -> Path:
        return self.route.checkpoint
