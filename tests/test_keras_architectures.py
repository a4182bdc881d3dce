"""Real Keras architectures that tf2onnx's `from_function` path broke on:

- keras.applications EfficientNetB0 / EfficientNetV2B0: the `Normalization` layer's mean
  and variance are constants the traced function captures, and `from_function` made them
  ONNX graph inputs (`.../normalization_1/Sub/y:0`);
- exact GELU (`keras.activations.gelu(x, approximate=False)`, Keras 3's default) lowers
  to `Erfc`, which tf2onnx cannot convert at any opset;
- ConvNeXt: GELU again, and its depthwise 7x7 is a Conv2D with groups, which Keras 3
  runs as an XLA-compiled nested function (`StatefulPartitionedCall` in the graph);
- a subclassed model whose `call(self, x)` takes one tensor, given `{"x": array}`.

Random weights, small inputs, nothing downloaded. Every model goes through onnxport's
default conversion (verification against Keras at two batch sizes included); the ONNX
model is then also run here on the example by name and compared with Keras.
"""

from __future__ import annotations

import numpy as np
import pytest

import onnxport

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

BATCH = 2


def images(side: int, low: float = 0.0, high: float = 255.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(low, high, (BATCH, side, side, 3)).astype("float32")


def graph_inputs(path) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def ops_of(path) -> set[str]:
    model = onnx.load(str(path), load_external_data=False)
    return {n.op_type for n in model.graph.node}


def onnx_outputs(path, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("application", ["EfficientNetB0", "EfficientNetV2B0"])
def test_efficientnet_normalization_constants_are_not_inputs(tmp_path, application):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, application)(
        input_shape=(64, 64, 3), weights=None, classes=10)
    x = images(64)  # include_preprocessing: raw [0, 255] pixels
    # default conversion and verification options (no latency figures: not needed here)
    result = onnxport.convert(model, x, output=tmp_path / "out", latency_runs=0)
    assert result.passed
    assert graph_inputs(result.model_path) == result.loaded.input_names
    assert len(result.loaded.input_names) == 1
    (name,) = result.loaded.input_names
    (got,) = onnx_outputs(result.model_path, {name: x})
    expected = np.asarray(model(x, training=False))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)


def gelu_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(16,), name="features")
    x = keras.layers.Dense(32, name="hidden")(inputs)
    x = keras.layers.Lambda(lambda t: keras.activations.gelu(t, approximate=False),
                            name="exact_gelu")(x)
    x = keras.layers.Dense(8, activation="gelu", name="dense_gelu")(x)  # the default
    outputs = keras.layers.Dense(3, name="scores")(x)
    return keras.Model(inputs, outputs, name="gelu_mlp")


def test_exact_gelu_converts_through_erfc(tmp_path):
    model = gelu_model()
    rng = np.random.default_rng(0)
    # a wide range: the tails are where erfc and 1 - erf differ most
    x = (rng.standard_normal((BATCH, 16)) * 4).astype("float32")
    result = onnxport.convert(model, {"features": x}, output=tmp_path / "out",
                              latency_runs=0, input_ranges={"*": (-6.0, 6.0)})
    assert result.passed
    ops = ops_of(result.model_path)
    assert "Erf" in ops and "Erfc" not in ops
    (got,) = onnx_outputs(result.model_path, {"features": x})
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-5,
                               rtol=1e-4)


def test_grouped_conv2d_xla_call_is_inlined(tmp_path):
    """Conv2D with groups (ConvNeXt's depthwise conv, in small): Keras 3 runs it as a
    tf.function(jit_compile=True), which the graph keeps as a StatefulPartitionedCall."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(12, 12, 8), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8, name="depthwise")(inputs)
    x = keras.layers.Conv2D(16, 1, groups=2, name="grouped")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, outputs, name="grouped_convs")
    x = np.random.default_rng(0).standard_normal((BATCH, 12, 12, 8)).astype("float32")
    result = onnxport.convert(model, x, output=tmp_path / "out", latency_runs=0)
    assert result.passed
    proto = onnx.load(str(result.model_path))
    groups = sorted(a.i for n in proto.graph.node if n.op_type == "Conv"
                    for a in n.attribute if a.name == "group")
    assert groups == [2, 8]
    (got,) = onnx_outputs(result.model_path, {"image": x})
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-5,
                               rtol=1e-4)


@pytest.mark.slow
def test_convnext_tiny_converts(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None,
                                            classes=10)
    x = images(32)
    result = onnxport.convert(model, x, output=tmp_path / "out")  # default options
    assert result.passed
    assert len(graph_inputs(result.model_path)) == 1
    assert not {"Erfc", "StatefulPartitionedCall"} & ops_of(result.model_path)


class Tagger(keras.Model):
    """A subclassed model whose call() takes one tensor, `x`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv1D(8, 3, padding="same", activation="relu")
        self.pool = keras.layers.GlobalAveragePooling1D()
        self.head = keras.layers.Dense(4)

    def call(self, x, training=False):
        return self.head(self.pool(self.conv(x)))


class TwoArguments(keras.Model):
    """call(self, signal, context): a dict of both is passed by name, in any order."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encode = keras.layers.Dense(6, activation="tanh")
        self.mix = keras.layers.Dense(2)

    def call(self, signal, context=None, training=False):
        return self.mix(self.encode(signal)) * 3.0 + context[:, :2]


def test_subclassed_call_x_given_a_dict_binds_x(tmp_path):
    keras.utils.set_random_seed(0)
    model = Tagger(name="tagger")
    x = np.random.default_rng(0).standard_normal((BATCH, 20, 5)).astype("float32")
    model(x)  # built, as a user's model is before export
    result = onnxport.convert(model, {"x": x}, output=tmp_path / "out", latency_runs=0)
    assert result.passed
    assert graph_inputs(result.model_path) == ["x"]
    (got,) = onnx_outputs(result.model_path, {"x": x})
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-5,
                               rtol=1e-4)


def test_subclassed_dict_of_call_arguments_binds_by_name(tmp_path):
    keras.utils.set_random_seed(0)
    model = TwoArguments(name="two")
    rng = np.random.default_rng(0)
    example = {"context": rng.standard_normal((BATCH, 3)).astype("float32"),
               "signal": rng.standard_normal((BATCH, 5)).astype("float32")}
    result = onnxport.convert(model, example, output=tmp_path / "out", latency_runs=0)
    assert result.passed
    assert graph_inputs(result.model_path) == ["context", "signal"]  # the dict's order
    (got,) = onnx_outputs(result.model_path, example)
    expected = model(signal=example["signal"], context=example["context"])
    np.testing.assert_allclose(got, np.asarray(expected), atol=1e-5, rtol=1e-4)


def test_a_function_call_left_in_the_graph_names_the_layer():
    """If TensorFlow ever keeps a nested call, the error names the layer and the cause
    instead of "replace them in the model"."""
    from collections import Counter
    from types import SimpleNamespace

    from onnx import helper
    from onnxport_keras.exporting import _unsupported

    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.Conv2D(4, 3, groups=4, name="dw")(inputs)
    model = keras.Model(inputs, outputs, name="net")
    call = helper.make_node("StatefulPartitionedCall", ["a"], ["b"],
                            name="net_1/dw_1/StatefulPartitionedCall")
    proto = helper.make_model(helper.make_graph([call], "g", [], []))
    error = _unsupported(Counter({"StatefulPartitionedCall": 1}), 17, proto,
                         SimpleNamespace(model=model))
    text = error.one_line()
    assert "StatefulPartitionedCall in dw (Conv2D, groups=4)" in text
    assert "XLA-compiled" in text and "DepthwiseConv2D" in text
