"""Autopilot (Keras 3): sensor window -> rudder command, after seed 000 (the original).

Stresses a 2-layer LSTM with BatchNormalization (CPU kernels only: no CudnnRNN), and a
.keras file saved with a custom loss, `autopilot_loss`, registered with Keras: plain
`keras.models.load_model` needs it as a custom object (onnxport loads for inference,
without the loss, so it converts with or without `--custom-object`).

    python examples/zoo/autopilot_keras.py --save DIR   # writes DIR/autopilot_keras.keras
    onnxport convert DIR/autopilot_keras.keras -o out/autopilot-keras
    onnxport convert examples/zoo/autopilot_keras.py:build -o out/autopilot-keras
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

INPUTS = {"sensors": ("batch", 20, 25)}
OUTPUTS = ["rudder"]
FILE_NAME = "autopilot_keras.keras"


@keras.saving.register_keras_serializable(package="autopilot")
def autopilot_loss(y_true, y_pred):
    """Mean squared error plus a small penalty on hard rudder (smooth steering)."""
    error = keras.ops.mean(keras.ops.square(y_true - y_pred))
    return error + 0.01 * keras.ops.mean(keras.ops.square(y_pred))


def make_model() -> keras.Model:
    """BatchNorm(features) -> LSTM(64, sequences) -> LSTM(64) -> BatchNorm -> Dense(32)
    -> Dense(1, tanh) named `rudder`; seeded, with non-trivial BatchNorm statistics."""
    keras.utils.set_random_seed(0)
    sensors = keras.Input(shape=(20, 25), name="sensors")
    x = keras.layers.BatchNormalization(name="bn_feature")(sensors)
    x = keras.layers.LSTM(64, return_sequences=True, name="lstm_1")(x)
    x = keras.layers.LSTM(64, name="lstm_2")(x)
    x = keras.layers.BatchNormalization(name="bn_state")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    rudder = keras.layers.Dense(1, activation="tanh", name="rudder")(x)
    model = keras.Model(sensors, rudder, name="autopilot_lstm")
    rng = np.random.default_rng(0)
    for name in ("bn_feature", "bn_state"):  # as if trained: BatchNorm must really apply
        layer = model.get_layer(name)
        size = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.3, size).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, size).astype("float32"))
        layer.gamma.assign(rng.uniform(0.8, 1.2, size).astype("float32"))
        layer.beta.assign(rng.normal(0, 0.1, size).astype("float32"))
    return model


def example_inputs(batch: int = 2) -> dict[str, np.ndarray]:
    """Seeded sensor windows, by input name."""
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal([batch if d == "batch" else d for d in shape])
            .astype("float32") for name, shape in INPUTS.items()}


def build() -> keras.Model:
    """The seeded model (what `onnxport convert autopilot_keras.py:build` converts); its
    declared input `sensors` is all onnxport needs to trace it."""
    return make_model()


def save(path: str | Path, epochs: int = 1) -> Path:
    """Compile with `autopilot_loss`, train `epochs` on seeded synthetic data (so the file
    holds optimizer state and updated BatchNorm statistics, as a trained model's does; 0
    skips it), and write the .keras file. `path` is a .keras file or a directory."""
    path = Path(path)
    if path.suffix != ".keras":
        path = path / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=autopilot_loss)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 20, 25)).astype("float32")
    y = np.tanh(x[:, -1, :3].sum(axis=1, keepdims=True)).astype("float32")
    if epochs:
        model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    model.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="DIR", required=True,
                        help=f"directory (or .keras path) to write {FILE_NAME} to")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(save(args.save, args.epochs))


if __name__ == "__main__":
    main()
