"""Export after `trainer.fit`: a PyTorch Lightning callback.

    from onnxport.training.lightning import ExportOnnx

    trainer = Trainer(max_epochs=10, callbacks=[ExportOnnx("runs/autopilot",
                                                           trust_code=True)])

At the end of training the LightningModule's weights are saved as
`runs/autopilot/model.pt` (a state_dict), then the model is converted and verified in a
worker process into `runs/autopilot/onnx/`, and `runs/autopilot/onnx-status.json` says
how it went. With `monitor="val_loss"` it exports at each new best of that logged metric
instead, replacing the previous export only when the new one verifies.

The example inputs are `example_inputs=`, else the module's own `example_input_array`,
else the first batch the module's forward() was called with. How the worker rebuilds
the model (`factory=` or `trust_code=True`): see `onnxport.training.torch`. Only the
global rank 0 process exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from lightning.pytorch.callbacks import Callback

from onnxport.training.exporting import (DEFAULT_TIMEOUT, LOG, ExportError, ExportHandle,
                                         Exporter, make_settings)
from onnxport.training.torch import TorchRoute

__all__ = ["ExportOnnx", "ExportError"]


class ExportOnnx(ExportHandle, Callback):
    """A `lightning.pytorch.callbacks.Callback` that saves the trained weights and
    exports the model to verified ONNX. Every keyword `onnxport.convert` takes
    (targets, quantize, atol, exporter, opset, ...) is passed on; the others are
    described in docs/training.md."""

    def __init__(self, directory: str | Path, *, example_inputs: Any = None,
                 factory: str | None = None, trust_code: bool = False,
                 name: str | None = None, artifact: str | Path | None = None,
                 monitor: str | None = None, mode: str = "min", background: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT, strict: bool = False,
                 publish: Iterable[str] | str = (),
                 publish_options: Mapping[str, Any] | None = None,
                 log_to_mlflow: bool = True, **convert_options: Any):
        super().__init__()
        caller = "onnxport.training.lightning.ExportOnnx"
        TorchRoute.check(caller, factory, trust_code)
        settings = make_settings(
            directory, name=name, artifact=artifact, monitor=monitor, mode=mode,
            background=background, timeout=timeout, strict=strict, publish=publish,
            publish_options=publish_options, log_to_mlflow=log_to_mlflow,
            trust_code=trust_code, convert_options=convert_options, caller=caller)
        self.route = TorchRoute(settings, factory=factory, example_inputs=example_inputs,
                                output_names=convert_options.get("output_names"),
                                caller=caller)
        self.exporter = Exporter(settings, caller)
        self._warned_monitor = False

    # ----------------------------------------------------------------- Lightning hooks

    def on_train_start(self, trainer, pl_module) -> None:
        if self.route.wants_inputs() and getattr(pl_module, "example_input_array",
                                                 None) is None:
            self.route.recorder.attach(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.route.recorder.detach()
        if not trainer.is_global_zero:
            return
        if not self.exporter.settings.monitor or not self.exporter.exported:
            self.exporter.export(self.route.saver(pl_module, trainer.current_epoch,
                                                  trainer.global_step),
                                 self.route.writer(pl_module), trigger="end",
                                 epoch=trainer.current_epoch, step=trainer.global_step)
        self.exporter.finish()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.route.recorder.detach()

    # ----------------------------------------------------------------- direct use

    @property
    def checkpoint(self) -> Path:
        return self.route.checkpoint

    def _check(self, trainer, pl_module) -> None:
        monitor = self.exporter.settings.monitor
        if not monitor or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(monitor)
        if value is None:
            if not self._warned_monitor and trainer.callback_metrics:
                self._warned_monitor = True
                LOG.warning("onnxport: monitor=%r is not among the logged metrics (%s); "
                            "the model is exported at the end of training instead",
                            monitor, ", ".join(sorted(trainer.callback_metrics)))
            return
        value = float(value)
        epoch, step = trainer.current_epoch + 1, trainer.global_step  # epochs completed
        self.exporter.observe(value, self.route.saver(pl_module, epoch, step),
                              self.route.writer(pl_module), epoch=epoch, step=step)
