"""Export after training (onnxport.training): real short training runs in a plain
PyTorch loop, Keras, PyTorch Lightning and the Hugging Face Trainer, each ending with a
verified artifact and a status file; then the same runs with a model that cannot be
exported, a conversion process that aborts or hangs, example inputs that do not fit and
an output that cannot be written: training finishes every time, the weights are saved,
the status says what happened, and nothing half-written is left as an artifact.

The models that misbehave do so only in the conversion process (`in_conversion_worker`),
as an exporter's native abort would: training itself runs normally. The model classes
are built on first use (the module's `__getattr__`), so the conversion process that
unpickles one imports only the framework it needs.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST = {"exporter": "torchscript", "latency_runs": 0}  # a tiny model needs no dynamo


# --------------------------------------------------------------------------- models


def in_conversion_worker() -> bool:
    """True inside onnxport's worker process (`python -m onnxport.flow.worker`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == "onnxport.flow.worker"


def _torch_models() -> dict:
    import torch
    from torch import nn

    class Steering(nn.Module):
        """6 sensor values -> a rudder command in [-1, 1]."""

        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))

        def forward(self, sensors):
            return torch.tanh(self.net(sensors))

    class Erfinv(Steering):
        """torch.special.erfinv: no ONNX operator and no translation in either exporter
        (trains fine: erfinv has a gradient)."""

        def forward(self, sensors):
            return torch.special.erfinv(torch.tanh(self.net(sensors)).clamp(-0.9, 0.9))

    class AbortsInConversion(Steering):
        """A native abort while the exporter runs it, as keras#19108's LLVM abort."""

        def forward(self, sensors):
            if in_conversion_worker():
                os.abort()
            return super().forward(sensors)

    class HangsInConversion(Steering):
        def forward(self, sensors):
            if in_conversion_worker():
                time.sleep(3600)
            return super().forward(sensors)

    class BreaksWhenFlagged(Steering):
        """Exports fine until `broken` is set (a buffer, saved with the model); then its
        conversion aborts: a later, better checkpoint whose export fails."""

        def __init__(self):
            super().__init__()
            self.register_buffer("broken", torch.zeros(()))

        def forward(self, sensors):
            if in_conversion_worker() and bool(self.broken):
                os.abort()
            return super().forward(sensors)

    return {c.__name__: c for c in (Steering, Erfinv, AbortsInConversion,
                                    HangsInConversion, BreaksWhenFlagged)}


def _lightning_models() -> dict:
    import lightning.pytorch as pl
    import torch

    class LitSteering(pl.LightningModule):
        def __init__(self, abort: bool = False):
            super().__init__()
            self.abort = abort
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(),
                                           torch.nn.Linear(16, 1))

        def forward(self, sensors):
            if self.abort and in_conversion_worker():
                os.abort()
            return torch.tanh(self.net(sensors))

        def training_step(self, batch, index):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, index):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    class LitErfinv(LitSteering):
        def forward(self, sensors):
            return torch.special.erfinv(torch.tanh(self.net(sensors)).clamp(-0.9, 0.9))

    return {"LitSteering": LitSteering, "LitErfinv": LitErfinv}


def _keras_models() -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    @keras.saving.register_keras_serializable(package="onnxport_tests")
    class LogGamma(keras.layers.Layer):
        """TensorFlow's Lgamma, which tf2onnx 1.17 cannot convert to ONNX."""

        def call(self, x):
            import tensorflow as tf

            return tf.math.lgamma(x * x + 1.0)

    @keras.saving.register_keras_serializable(package="onnxport_tests")
    class AbortsInConversion(keras.layers.Layer):
        def call(self, x):
            if in_conversion_worker():
                os.abort()
            return x

    return {"LogGamma": LogGamma, "KerasAborts": AbortsInConversion}


def _transformers_models() -> dict:
    import torch
    import transformers

    class AbortingBert(transformers.BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            if in_conversion_worker():
                os.abort()
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   labels=labels, **kwargs)

    class ErfinvBert(transformers.BertForSequenceClassification):
        """Logits through torch.special.erfinv: no exporter translates it."""

        def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
            output = super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                     labels=labels, **kwargs)
            output.logits = torch.special.erfinv(torch.tanh(output.logits) * 0.9)
            return output

    return {"AbortingBert": AbortingBert, "ErfinvBert": ErfinvBert}


_BUILDERS = {name: builder for builder, names in (
    (_torch_models, ("Steering", "Erfinv", "AbortsInConversion", "HangsInConversion",
                     "BreaksWhenFlagged")),
    (_lightning_models, ("LitSteering", "LitErfinv")),
    (_keras_models, ("LogGamma", "KerasAborts")),
    (_transformers_models, ("AbortingBert", "ErfinvBert"))) for name in names}


def __getattr__(name: str):
    """Model classes, built with their framework on first use and kept as this module's
    attributes, so pickle finds them here in the training and conversion processes."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise AttributeError(name)
    for key, cls in builder().items():
        cls.__module__, cls.__qualname__ = __name__, key
        globals()[key] = cls
    return globals()[name]


def model(name: str):
    return getattr(sys.modules[__name__], name)()


def steering_factory():
    """A factory as a user writes one: the model and its example inputs."""
    import torch

    return model("Steering").eval(), {"sensors": torch.zeros(2, 6)}, ["rudder"]


# --------------------------------------------------------------------------- training


def sensor_data(rows: int = 64, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 6, generator=generator)
    return x, torch.tanh(x[:, :1] - 0.5 * x[:, 1:2])


def train_steps(net, steps: int = 8, after_each=None) -> list[float]:
    """A few SGD steps of a plain PyTorch loop; `after_each(step, loss)` is called."""
    import torch

    x, y = sensor_data()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for step in range(steps):
        batch = slice((step * 16) % 64, (step * 16) % 64 + 16)
        loss = torch.nn.functional.mse_loss(net(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if after_each is not None:
            after_each(step, loss.item())
    return losses


# --------------------------------------------------------------------------- checks


def read_status(directory: Path) -> dict:
    return json.loads((directory / "onnx-status.json").read_text())


def assert_verified(directory: Path, status: dict, target: str = "cpu") -> Path:
    """A verified artifact at DIR/onnx, and a status that says so (seed 003's shape)."""
    assert status == read_status(directory)
    assert status["state"] == "passed" and status["has_onnx"] is True, status
    model_path = Path(status["onnx_path"])
    assert model_path.is_file() and model_path.parent.parent == directory / "onnx"
    manifest = json.loads((model_path.parent / "manifest.json").read_text())
    assert status["onnx_size_bytes"] == sum(f["bytes"] for f in manifest["files"]) > 0
    assert status["targets"][target]["status"] == "passed"
    assert status["targets"][target]["max_abs"] < 1e-4
    assert status["error"] is None and status["exit_code"] == 0 and status["cause"] == ""
    assert status["seconds"] > 0 and status["updated"].endswith("Z")
    assert manifest["verification"]["passed"] is True
    return model_path


def assert_failed_cleanly(directory: Path, status: dict, *, exit_code: int, cause: str,
                          says: str) -> None:
    """Training went on, the failure is in the status, no artifact and no leftovers."""
    assert status == read_status(directory)
    assert status["state"] == "failed" and status["has_onnx"] is False, status
    assert status["onnx_size_bytes"] is None and status["artifact"] is None
    assert status["exit_code"] == exit_code, status
    assert status["cause"] == cause, status
    assert says.lower() in status["error"].lower(), status["error"]
    assert not (directory / "onnx").exists()
    leftovers = [p.name for p in directory.iterdir()
                 if p.name.startswith((".onnx", "onnx.")) or ".tmp" in p.name]
    assert not leftovers, leftovers


def ort_run(model_path: Path, feeds: dict) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# --------------------------------------------------------------------------- importing


def test_importing_onnxport_imports_no_framework():
    code = ("import sys, onnxport, onnxport.training, onnxport.training.status, "
            "onnxport.training.exporting\n"
            "heavy = {'torch', 'tensorflow', 'keras', 'lightning', 'transformers', "
            "'mlflow', 'onnx', 'onnxruntime'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_options_are_checked_before_training(tmp_path):
    from onnxport.errors import BadInput
    from onnxport.training.torch import ExportOnnx

    net = model("Steering")
    with pytest.raises(TypeError, match="unexpected keyword argument 'quantise'"):
        ExportOnnx(net, tmp_path, trust_code=True, quantise="on")
    with pytest.raises(TypeError, match="does not take output="):
        ExportOnnx(net, tmp_path, trust_code=True, output=tmp_path / "x")
    with pytest.raises(BadInput, match="needs a way for the conversion process"):
        ExportOnnx(net, tmp_path)  # neither a factory nor trust_code
    with pytest.raises(BadInput, match="--opset"):
        ExportOnnx(net, tmp_path, trust_code=True, opset=0)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- plain loop


def test_plain_loop_exports_the_trained_model_after_the_with_block(tmp_path):
    import torch

    from onnxport.training.torch import ExportOnnx

    net = model("Steering")
    registry = tmp_path.parent / f"{tmp_path.name}-registry"
    with ExportOnnx(net, tmp_path, trust_code=True, output_names=["rudder"],
                    publish=[f"file://{registry}"], **FAST) as export:
        losses = train_steps(net)
    assert losses[-1] < losses[0]
    model_path = assert_verified(tmp_path, export.status)
    # published once verified, as `onnxport publish` does: DIR/NAME/vYYYYMMDD_HHMMSS/
    (published,) = export.status["published"]
    (version,) = (registry / "model").iterdir()
    assert (version / "cpu" / "model.onnx").read_bytes() == model_path.read_bytes()
    assert str(registry) in published
    assert model_path.name == "model.onnx"
    # the weights came first: a state_dict that loads without running code
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, value in net.state_dict().items():
        assert torch.equal(saved["state_dict"][key], value)
    # the ONNX model is the trained model, with the batch the training used as input
    x, _ = sensor_data()
    with torch.no_grad():
        expected = net.eval()(x[:5]).numpy()
    (got,) = ort_run(model_path, {"sensors": x[:5].numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-5)
    attempt = export.status["attempt"]
    assert attempt["trigger"] == "end" and export.status["exported_from"] == attempt
    assert export.status["checkpoint"] == str(tmp_path / "model.pt")


def test_factory_route_and_the_active_mlflow_run(tmp_path, monkeypatch):
    """export_onnx after training, the model rebuilt by the user's factory with the saved
    state_dict (nothing pickled); inside an MLflow run, artifact and status are logged
    to it."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from onnxport.training.torch import export_onnx

    net = model("Steering")
    train_steps(net)
    # mlflow.set_tracking_uri is process-wide (a module global and MLFLOW_TRACKING_URI);
    # both are set through monkeypatch so that the tests after this one see neither.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", uri)
    experiment = mlflow.create_experiment("training", artifact_location=str(
        tmp_path / "mlflow-artifacts"))
    with mlflow.start_run(experiment_id=experiment) as run:
        status = export_onnx(net, tmp_path / "run",
                             factory=f"{__name__}:steering_factory", **FAST)
    model_path = assert_verified(tmp_path / "run", status)
    manifest = json.loads((model_path.parent / "manifest.json").read_text())
    assert manifest["source"]["origin"] == f"{__name__}:steering_factory"
    assert manifest["interface"]["outputs"] == ["rudder"]
    assert manifest["made_by"]["training"]["trigger"] == "call"
    assert status["mlflow_run_id"] == run.info.run_id
    client = MlflowClient()
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"onnx", "onnx-status.json"} <= logged
    inside = {a.path for a in client.list_artifacts(run.info.run_id, "onnx/cpu")}
    assert "onnx/cpu/model.onnx" in inside
    # the trained weights, not the factory's: the ONNX output is the trained model's
    import torch

    x, _ = sensor_data()
    with torch.no_grad():
        expected = net.eval()(x[:3]).numpy()
    np.testing.assert_allclose(ort_run(model_path, {"sensors": x[:3].numpy()})[0],
                               expected, atol=1e-5)


FAILURES = {
    # model, the status' exit code and cause, words the error holds
    "unsupported-op": ("Erfinv", 4, "export_failed", "erfinv"),
    "aborting-exporter": ("AbortsInConversion", 9, "signal", "SIGABRT"),
}


@pytest.mark.parametrize("case", FAILURES)
def test_plain_loop_failures_leave_training_and_weights(tmp_path, case, caplog):
    import torch

    from onnxport.training.torch import ExportOnnx

    name, code, cause, says = FAILURES[case]
    net = model(name)
    with caplog.at_level(logging.WARNING, logger="onnxport.training"):
        with ExportOnnx(net, tmp_path, trust_code=True, **FAST) as export:
            losses = train_steps(net)
        after_training = True  # reached: nothing was raised
    assert after_training and len(losses) == 8
    assert_failed_cleanly(tmp_path, export.status, exit_code=code, cause=cause, says=says)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path / "model.pt") in warnings[0].getMessage()


def test_example_inputs_that_do_not_fit_are_explained(tmp_path):
    import torch

    from onnxport.training.torch import export_onnx

    net = model("Steering")
    train_steps(net)
    status = export_onnx(net, tmp_path, example_inputs=torch.zeros(2, 5),
                         trust_code=True, **FAST)
    assert_failed_cleanly(tmp_path, status, exit_code=2, cause="bad_input",
                          says="rejects the example inputs")
    assert "[2, 5]" in status["error"]


def test_a_hanging_conversion_is_stopped_by_its_timeout(tmp_path):
    from onnxport.training.torch import ExportOnnx

    net = model("HangsInConversion")
    started = time.monotonic()
    with ExportOnnx(net, tmp_path, trust_code=True, timeout=10, **FAST) as export:
        train_steps(net)
    assert time.monotonic() - started < 60
    assert_failed_cleanly(tmp_path, export.status, exit_code=8, cause="timeout",
                          says="did not finish within 10 s")


def test_an_output_that_cannot_be_written(tmp_path, caplog):
    import torch

    from onnxport.training.torch import ExportOnnx

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # the artifact's place is below a file: the conversion refuses it, weights are safe
    net = model("Steering")
    with ExportOnnx(net, tmp_path / "run", trust_code=True,
                    artifact=blocker / "onnx", **FAST) as export:
        train_steps(net)
    status = export.status
    assert status["state"] == "failed" and status["has_onnx"] is False
    assert status["exit_code"] == 7 and status["cause"] == "environment"
    assert str(blocker) in status["error"] and status["stage"] == "prepare"
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert read_status(tmp_path / "run") == status
    # the directory itself cannot be written: nothing can be saved, training still ends
    with caplog.at_level(logging.WARNING, logger="onnxport.training"):
        with ExportOnnx(net, blocker / "run", trust_code=True, **FAST) as export:
            train_steps(net, steps=2)
    status = export.status
    assert status["state"] == "failed" and status["stage"] == "save weights"
    assert status["exit_code"] == 7 and status["cause"] == "environment"
    assert status["checkpoint"] is None
    assert any("status could not be written" in note for note in status["notes"])
    assert "could not be saved" in caplog.text
    assert blocker.read_text() == "not a directory"


def test_strict_raises_after_saving_the_weights(tmp_path):
    from onnxport.training.torch import ExportError, ExportOnnx

    net = model("Steering")
    with pytest.raises(ExportError, match="no example inputs") as raised:
        with ExportOnnx(net, tmp_path, trust_code=True, strict=True, **FAST):
            pass  # no training: the model was never called, no example inputs
    assert raised.value.status["stage"] == "prepare"
    assert (tmp_path / "model.pt").is_file()
    assert read_status(tmp_path)["state"] == "failed"


def test_best_checkpoints_in_the_background_replace_only_verified_exports(tmp_path):
    """monitor: export at each new best; a best whose export fails keeps the previous
    artifact, and the status says both. In the background, training does not wait."""
    import torch

    from onnxport.training.torch import ExportOnnx

    net = model("BreaksWhenFlagged")
    export = ExportOnnx(net, tmp_path, trust_code=True, monitor="val_loss",
                        background=True, **FAST)
    with export:
        train_steps(net, steps=2)
        started = time.monotonic()
        assert export.observe(0.5, epoch=1) is True
        assert time.monotonic() - started < 5  # the conversion runs meanwhile
        assert export.observe(0.7, epoch=2) is False  # not better: nothing happens
        first = export.wait()
        assert_verified(tmp_path, first)
        onnx_bytes = Path(first["onnx_path"]).read_bytes()
        with torch.no_grad():
            net.broken.fill_(1.0)
        train_steps(net, steps=2)
        assert export.observe(0.3, epoch=3) is True
    second = export.wait()
    assert second["state"] == "failed" and second["cause"] == "signal"
    assert second["attempt"]["epoch"] == 3 and second["attempt"]["value"] == 0.3
    # the verified export of epoch 1 is still there, and the status says so
    assert second["has_onnx"] is True
    assert second["exported_from"]["epoch"] == 1
    assert Path(second["onnx_path"]).read_bytes() == onnx_bytes
    # the checkpoint holds the newest best (saved before its export failed)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["epoch"] == 3 and float(saved["state_dict"]["broken"]) == 1.0
    # the source of the artifact on disk is kept, the failed one's is gone
    sources = list((tmp_path / ".onnx-sources").iterdir())
    assert [s.name for s in sources] == [first["attempt"]["id"]]


# --------------------------------------------------------------------------- Keras


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return pytest.importorskip("keras")


def keras_steering(keras, extra=None):
    keras.utils.set_random_seed(0)
    sensors = keras.Input(shape=(6,), name="sensors")
    hidden = keras.layers.Dense(16, activation="tanh", name="hidden")(sensors)
    if extra is not None:
        hidden = extra(hidden)
    rudder = keras.layers.Dense(1, activation="tanh", name="rudder")(hidden)
    model = keras.Model(sensors, rudder, name="steering")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def keras_data():
    x, y = sensor_data()
    return x.numpy(), y.numpy()


def test_keras_fit_ends_with_a_verified_artifact(tmp_path, keras):
    from onnxport.training.keras import ExportOnnx

    model = keras_steering(keras)
    x, y = keras_data()
    callback = ExportOnnx(tmp_path, example_inputs={"sensors": x[:8]})
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    model_path = assert_verified(tmp_path, callback.status)
    assert (tmp_path / "model.keras").is_file()
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x[:4], verbose=0),
                               model.predict(x[:4], verbose=0), atol=1e-6)
    (got,) = ort_run(model_path, {"sensors": x[:4]})
    np.testing.assert_allclose(got, model.predict(x[:4], verbose=0), atol=1e-5)
    report = json.loads((tmp_path / "onnx" / "report.json").read_text())
    assert any(b["label"] == "data" for b in
               report["targets"]["cpu"]["stages"][0]["verification"]["batches"])
    assert callback.status["attempt"]["epoch"] == 2
    assert callback.status["attempt"]["step"] == 8


def test_keras_model_with_an_unsupported_op_still_trains(tmp_path, keras, caplog):
    from onnxport.training.keras import ExportOnnx

    log_gamma = getattr(sys.modules[__name__], "LogGamma")
    model = keras_steering(keras, extra=log_gamma(name="lgamma"))
    x, y = keras_data()
    callback = ExportOnnx(tmp_path, custom_objects=[log_gamma])
    with caplog.at_level(logging.WARNING, logger="onnxport.training"):
        history = model.fit(x, y, epochs=1, batch_size=16, verbose=0,
                            callbacks=[callback])
    assert len(history.history["loss"]) == 1
    assert_failed_cleanly(tmp_path, callback.status, exit_code=4, cause="export_failed",
                          says="lgamma")
    assert (tmp_path / "model.keras").is_file()
    assert "onnx-status.json" in caplog.text


@pytest.mark.slow
def test_keras_aborting_conversion_still_trains(tmp_path, keras):
    from onnxport.training.keras import ExportOnnx

    aborts = getattr(sys.modules[__name__], "KerasAborts")
    model = keras_steering(keras, extra=aborts(name="aborts"))
    x, y = keras_data()
    callback = ExportOnnx(tmp_path, custom_objects=[f"{__name__}:KerasAborts"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[callback])
    assert_failed_cleanly(tmp_path, callback.status, exit_code=9, cause="signal",
                          says="SIGABRT")


# --------------------------------------------------------------------------- Lightning


def lightning_fit(tmp_path, callbacks, module_name: str = "LitSteering", epochs: int = 2,
                  **module_options):
    pl = pytest.importorskip("lightning.pytorch")
    import torch

    x, y = sensor_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=16)
    module = getattr(sys.modules[__name__], module_name)(**module_options)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=list(callbacks), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    return trainer, module


def test_lightning_exports_each_best_in_the_background(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    import torch

    from onnxport.training.lightning import ExportOnnx

    class Losses(pl.Callback):  # what the monitored metric was, epoch by epoch
        values: list[float] = []

        def on_validation_end(self, trainer, module):
            self.values.append(float(trainer.callback_metrics["val_loss"]))

    callback = ExportOnnx(tmp_path, trust_code=True, monitor="val_loss",
                          background=True, **FAST)
    trainer, module = lightning_fit(tmp_path, [Losses(), callback], epochs=2)
    assert trainer.current_epoch == 2
    status = callback.wait()
    assert_verified(tmp_path, status)
    best = min(Losses.values)
    assert status["attempt"]["trigger"] == "best"
    assert status["attempt"]["monitor"] == "val_loss"
    assert status["attempt"]["value"] == pytest.approx(best)
    assert status["attempt"]["epoch"] == Losses.values.index(best) + 1
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["epoch"] == status["attempt"]["epoch"]
    # the artifact is the best epoch's model: the checkpoint's weights, exported
    net = getattr(sys.modules[__name__], "LitSteering")()
    net.load_state_dict(saved["state_dict"])
    x, _ = sensor_data()
    with torch.no_grad():
        expected = net.eval()(x[:4]).numpy()
    (got,) = ort_run(Path(status["onnx_path"]), {"sensors": x[:4].numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_lightning_aborting_conversion_still_trains(tmp_path):
    pytest.importorskip("lightning")
    from onnxport.training.lightning import ExportOnnx

    callback = ExportOnnx(tmp_path, trust_code=True, **FAST)
    trainer, _ = lightning_fit(tmp_path, [callback], epochs=1, abort=True)
    assert trainer.state.finished
    assert_failed_cleanly(tmp_path, callback.status, exit_code=9, cause="signal",
                          says="SIGABRT")
    assert (tmp_path / "model.pt").is_file()


@pytest.mark.slow
def test_lightning_unsupported_op_still_trains(tmp_path):
    pytest.importorskip("lightning")
    from onnxport.training.lightning import ExportOnnx

    callback = ExportOnnx(tmp_path, trust_code=True, **FAST)
    trainer, _ = lightning_fit(tmp_path, [callback], "LitErfinv", epochs=1)
    assert trainer.state.finished
    assert_failed_cleanly(tmp_path, callback.status, exit_code=4, cause="export_failed",
                          says="erfinv")


# --------------------------------------------------------------------------- transformers


class _Tokens:
    """A tiny token-classification data set (the label is whether token 0 is > 50)."""

    def __init__(self, rows: int = 32, length: int = 12):
        import torch

        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, 100, (rows, length), generator=generator)
        self.labels = (self.ids[:, 0] > 50).long()

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        import torch

        return {"input_ids": self.ids[index],
                "attention_mask": torch.ones_like(self.ids[index]),
                "labels": self.labels[index]}


def hf_train(tmp_path, callback, model_class=None, steps: int = 3):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    import torch

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64, num_labels=2)
    model = (model_class or transformers.BertForSequenceClassification)(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=steps,
        per_device_train_batch_size=8, report_to="none", save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens(),
                                   callbacks=[callback])
    result = trainer.train()
    return trainer, result


def test_hugging_face_trainer_ends_with_a_verified_artifact(tmp_path):
    pytest.importorskip("transformers")
    from onnxport.training.transformers import ExportOnnx

    callback = ExportOnnx(tmp_path, **FAST)
    trainer, result = hf_train(tmp_path, callback)
    assert result.global_step == 3
    model_path = assert_verified(tmp_path, callback.status)
    # the trained model saved first, as transformers saves it (no pickle)
    assert (tmp_path / "model" / "config.json").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    manifest = json.loads((model_path.parent / "manifest.json").read_text())
    # the example inputs were the first training batch, without its labels
    assert manifest["interface"]["inputs"] == ["input_ids", "attention_mask"]
    assert manifest["interface"]["outputs"] == ["logits"]
    import torch

    batch = _Tokens()[0]
    feeds = {"input_ids": batch["input_ids"][None].numpy(),
             "attention_mask": batch["attention_mask"][None].numpy()}
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    np.testing.assert_allclose(ort_run(model_path, feeds)[0], expected.logits.numpy(),
                               atol=1e-4)


HF_FAILURES = {"aborting-exporter": ("AbortingBert", 9, "signal", "SIGABRT"),
               "unsupported-op": ("ErfinvBert", 4, "export_failed", "erfinv")}


@pytest.mark.slow
@pytest.mark.parametrize("case", HF_FAILURES)
def test_hugging_face_failing_conversion_still_trains(tmp_path, case):
    pytest.importorskip("transformers")
    from onnxport.training.transformers import ExportOnnx

    name, code, cause, says = HF_FAILURES[case]
    callback = ExportOnnx(tmp_path, trust_code=True, **FAST)
    _, result = hf_train(tmp_path, callback, getattr(sys.modules[__name__], name))
    assert result.global_step == 3
    assert_failed_cleanly(tmp_path, callback.status, exit_code=code, cause=cause,
                          says=says)
    assert (tmp_path / "model" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- the example


@pytest.mark.slow
def test_the_autopilot_training_example_uses_the_callback(tmp_path):
    example = ROOT / "examples" / "autopilot_training.py"
    done = subprocess.run([sys.executable, str(example), "--output", str(tmp_path),
                           "--steps", "20"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    status = read_status(tmp_path / "after-training")
    assert status["has_onnx"] and status["state"] == "passed"
