"""Export after `model.fit`: a Keras 3 callback.

    from onnxport.training.keras import ExportOnnx

    model.fit(x, y, epochs=10, callbacks=[ExportOnnx("runs/autopilot")])

At the end of training the model is saved as `runs/autopilot/model.keras` (the trained
model, first), then converted and verified in a worker process into
`runs/autopilot/onnx/`, and `runs/autopilot/onnx-status.json` says how it went. With
`monitor="val_loss"` it exports at each new best instead, replacing the previous export
only when the new one verifies. A Keras model declares its inputs, so no example inputs
are needed; `example_inputs=` (a batch, by input name) adds a verification on that real
data. The worker loads the .keras file in safe mode: give custom layers as
`custom_objects=` (objects or "module:name"), and `trust_code=True` only for a model
with Lambda layers you wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import keras
import numpy as np

from onnxport.errors import BadInput
from onnxport.training.exporting import (DEFAULT_TIMEOUT, LOG, ExportError, ExportHandle,
                                         Exporter, SourceSpec, make_settings)
from onnxport.training.files import atomic_save, link_into

__all__ = ["ExportOnnx", "ExportError"]


class ExportOnnx(ExportHandle, keras.callbacks.Callback):
    """A `keras.callbacks.Callback` that saves the trained model and exports it to
    verified ONNX. Every keyword `onnxport.convert` takes (targets, quantize, atol,
    rtol, opset, ...) is passed on; the others are described in docs/training.md."""

    def __init__(self, directory: str | Path, *, example_inputs: Any = None,
                 custom_objects: Any = None, trust_code: bool = False,
                 name: str | None = None, artifact: str | Path | None = None,
                 monitor: str | None = None, mode: str = "min", background: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT, strict: bool = False,
                 publish: Iterable[str] | str = (),
                 publish_options: Mapping[str, Any] | None = None,
                 log_to_mlflow: bool = True, **convert_options: Any):
        super().__init__()
        caller = "onnxport.training.keras.ExportOnnx"
        if example_inputs is not None and convert_options.get("data") is not None:
            raise BadInput(f"{caller}: give example_inputs= or data=, not both")
        if custom_objects:
            convert_options["custom_objects"] = custom_objects
        settings = make_settings(
            directory, name=name, artifact=artifact, monitor=monitor, mode=mode,
            background=background, timeout=timeout, strict=strict, publish=publish,
            publish_options=publish_options, log_to_mlflow=log_to_mlflow,
            trust_code=trust_code, convert_options=convert_options, caller=caller)
        self.exporter = Exporter(settings, caller)
        self.example_inputs = example_inputs
        self._warned_monitor = False
        self._epochs_done: int | None = None

    # ----------------------------------------------------------------- Keras hooks

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epochs_done = epoch + 1
        monitor = self.exporter.settings.monitor
        if not monitor:
            return
        value = (logs or {}).get(monitor)
        if value is None:
            self._warn_missing(monitor, logs)
            return
        self.exporter.observe(value, self._saver(), self._writer(), epoch=epoch + 1,
                              step=self._step())

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self.exporter.settings.monitor or not self.exporter.exported:
            self.export(trigger="end")
        self.exporter.finish()

    # ----------------------------------------------------------------- direct use

    def export(self, *, trigger: str = "call") -> dict[str, Any] | None:
        """Save and export the model now (the status; None while in the background)."""
        return self.exporter.export(self._saver(), self._writer(), trigger=trigger,
                                    epoch=self._epoch(), step=self._step())

    # ----------------------------------------------------------------- saving

    @property
    def checkpoint(self) -> Path:
        return self.exporter.settings.directory / f"{self.exporter.settings.name}.keras"

    def _saver(self):
        model = self.model
        return lambda: atomic_save(self.checkpoint, lambda path: model.save(str(path)),
                                   suffix=".keras")

    def _writer(self):
        model = self.model

        def write(directory: Path) -> SourceSpec:
            source = link_into(self.checkpoint, directory)
            options: dict[str, Any] = {}
            if self.example_inputs is not None:
                options["data"] = _save_data(model, self.example_inputs,
                                             directory / "data.npz")
            return SourceSpec(model=str(source), options=options,
                              env={"KERAS_BACKEND": "tensorflow"})
        return write

    def _step(self) -> int | None:
        try:
            return int(self.model.optimizer.iterations)
        except Exception:
            return None

    def _epoch(self) -> int | None:
        return self._epochs_done

    def _warn_missing(self, monitor: str, logs: Mapping[str, Any] | None) -> None:
        if not self._warned_monitor:
            self._warned_monitor = True
            LOG.warning("onnxport: monitor=%r is not among the metrics Keras reports "
                        "(%s); the model is exported at the end of training instead",
                        monitor, ", ".join(sorted(logs or {})) or "none")


def _save_data(model, example: Any, path: Path) -> Path:
    """A batch of real inputs, by the model's input names, for verification (`data=`)."""
    names = [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]
    if isinstance(example, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in example.items()}
    elif isinstance(example, (tuple, list)):
        if len(example) != len(names) or None in names:
            raise BadInput(f"{len(example)} example inputs for a model with inputs "
                           f"{names}", "give example_inputs= as a dict by input name")
        arrays = {n: np.asarray(v) for n, v in zip(names, example)}
    else:
        if len(names) != 1 or names[0] is None:
            raise BadInput(f"one example input for a model with inputs {names}",
                           "give example_inputs= as a dict by input name")
        arrays = {names[0]: np.asarray(example)}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path

