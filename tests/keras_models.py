"""Small Keras 3 models for the Keras and TFLite tests: every kind of model, every input
and output structure, and the bad ones (custom objects, Lambda, unsupported ops, a layer
that crashes the TFLite converter). Each factory builds its model with a fixed seed."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def sequential() -> keras.Sequential:
    """A Sequential model whose user named its input `features` and its head `score`."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input(shape=(6,), name="features"),
        layers.Dense(16, activation="relu", name="hidden"),
        layers.Dense(1, name="score"),
    ], name="scorer")


def functional():
    """Two named inputs, two outputs returned as a list: names from the layers."""
    keras.utils.set_random_seed(0)
    left = keras.Input(shape=(4,), name="left")
    right = keras.Input(shape=(3,), name="right")
    x = layers.Concatenate()([left, right])
    x = layers.Dense(8, activation="relu")(x)
    probs = layers.Dense(3, activation="softmax", name="probs")(x)
    score = layers.Dense(1, name="score")(x)
    return keras.Model([left, right], [probs, score], name="two_heads")


def functional_dict():
    """Inputs and outputs as dicts: the ONNX names are the dicts' keys."""
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(8, 8, 2), name="image")
    meta = keras.Input(shape=(5,), name="meta")
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(image)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Concatenate()([x, meta])
    return keras.Model({"image": image, "meta": meta},
                       {"zeta": layers.Dense(2)(x), "alpha": layers.Dense(1)(x)},
                       name="dict_model")


class Residual(keras.Model):
    """A subclassed model taking a dict and returning a dict."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encode = layers.Dense(8, activation="tanh")
        self.mean = layers.Dense(2)
        self.log_var = layers.Dense(2)

    def call(self, inputs, training=False):
        h = self.encode(keras.ops.concatenate([inputs["signal"], inputs["context"]], -1))
        return {"mean": self.mean(h), "log_var": self.log_var(h) + inputs["context"][:, :2]}


def subclassed():
    keras.utils.set_random_seed(0)
    rng = _rng()
    example = {"signal": rng.standard_normal((2, 5)).astype("float32"),
               "context": rng.standard_normal((2, 3)).astype("float32")}
    return Residual(name="residual"), example


class Doubler(keras.Model):
    """A subclassed model with one tensor input named by call()'s argument."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(3)

    def call(self, waveform):
        return self.dense(waveform) * 2.0


def subclassed_tensor():
    keras.utils.set_random_seed(0)
    return Doubler(name="doubler"), _rng().standard_normal((2, 7)).astype("float32")


class Scale(layers.Layer):
    """A custom layer NOT registered with Keras: loading a file that uses it needs it
    given as a custom object."""

    def __init__(self, factor: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def with_custom_layer():
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(4,), name="x")
    return keras.Model(x, Scale(3.0, name="scaled")(layers.Dense(4)(x)), name="custom")


def with_lambda():
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(4,), name="x")
    y = layers.Lambda(lambda t: t * 3.0 + 1.0, name="affine")(layers.Dense(4)(x))
    return keras.Model(x, y, name="lambda_model")


class LogGamma(layers.Layer):
    """Uses TensorFlow's Lgamma, which tf2onnx 1.17 cannot convert to ONNX."""

    def call(self, x):
        import tensorflow as tf

        return tf.math.lgamma(x * x + 1.0)


def unsupported_op():
    x = keras.Input(shape=(4,), name="x")
    return keras.Model(x, LogGamma(name="lgamma")(x), name="lgamma_model")


def dense_bn():
    """Dense + BatchNormalization: the smallest model keras-team/keras#19108 was
    reported on (with non-trivial BatchNorm statistics)."""
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(8,), name="features")
    h = layers.Dense(16, activation="relu", name="dense")(x)
    h = layers.BatchNormalization(name="bn")(h)
    model = keras.Model(x, layers.Dense(2, name="logits")(h), name="dense_bn")
    bn = model.get_layer("bn")
    rng = _rng(1)
    bn.moving_mean.assign(rng.normal(0, 0.5, 16).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 16).astype("float32"))
    return model


def lstm():
    """An LSTM + BatchNormalization model: TFLite's builtin ops fail on it."""
    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(10, 6), name="sensors")
    h = layers.LSTM(8, name="lstm")(x)
    h = layers.BatchNormalization(name="bn")(h)
    return keras.Model(x, layers.Dense(1, activation="tanh", name="rudder")(h),
                       name="small_lstm")


def converter_crash():
    """A layer whose tf.function claims to implement TFLite's fused `LSTMCellSimple`
    composite but does not: it runs correctly in Keras and ONNX, and the TFLite converter
    (TF 2.21) dies with a segmentation fault while fusing it."""
    import tensorflow as tf

    @tf.function(experimental_implements="LSTMCellSimple")
    def not_an_lstm_cell(x):
        return tf.math.sin(tf.math.exp(x)) * 2.0

    class FakeFused(layers.Layer):
        def call(self, x):
            return not_an_lstm_cell(x)

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(10,), name="features")
    return keras.Model(x, layers.Dense(4, name="score")(FakeFused(name="fused")(x)),
                       name="crashes_tflite")


def unnamed_sequential():
    """A Sequential model without an Input layer, built by the example: Keras names its
    tensors with a process-wide counter (keras_tensor_N), which must not leak."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)])
    return model, _rng().standard_normal((2, 3)).astype("float32")
