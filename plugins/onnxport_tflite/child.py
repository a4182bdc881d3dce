"""The TFLite converter's own process: run as a script by onnxport, never imported.

    python -X faulthandler child.py convert SAVED_MODEL_DIR OUTPUT.tflite
    python -X faulthandler child.py probe CASE

The converter can abort the whole process from C++ (an LLVM error, a segmentation
fault) where no `except` can catch it; here that only ends this process, and the parent
turns the exit status and the tail of stderr into an error message. A Python exception
from the converter is printed as one JSON line after MARKER (exit status 3), so the
parent can quote the converter's own words. `probe` builds one of the tiny models of
`onnxport probe tflite` in this process, converts it the way the bug reports did
(`from_keras_model`, or `tf.saved_model.save` then `from_saved_model`), runs it in the
interpreter and prints one JSON line with what happened.

This file imports only the standard library, numpy and TensorFlow/Keras.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

MARKER = "onnxport-tflite-error: "
CONVERTER_ERROR = 3

os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # this process only: no CudnnRNN in traces
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def convert(saved_model: str, output: str) -> int:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["serving_default"])
    try:
        data = converter.convert()
    except Exception as exc:  # a converter error with a message: hand it over whole
        print(MARKER + json.dumps({"type": type(exc).__name__, "message": str(exc)}),
              file=sys.stderr, flush=True)
        return CONVERTER_ERROR
    with open(output, "wb") as handle:
        handle.write(data)
    return 0


# ----------------------------------------------------------------------------- probes


def _dense_bn():
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(8,), name="features")
    h = keras.layers.Dense(16, activation="relu")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(x, keras.layers.Dense(2, name="logits")(h))
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.moving_mean.assign(rng.normal(0, 0.5, 16).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, 16).astype("float32"))
    return model, rng.standard_normal((3, 8)).astype("float32")


def _lstm():
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    x = keras.Input(shape=(10, 6), name="sensors")
    h = keras.layers.LSTM(8)(x)
    h = keras.layers.BatchNormalization()(h)
    model = keras.Model(x, keras.layers.Dense(1, activation="tanh", name="rudder")(h))
    return model, np.random.default_rng(1).standard_normal((3, 10, 6)).astype("float32")


PROBES = {
    # case: (model, how it is converted)
    "dense_bn": (_dense_bn, "from_keras_model"),
    "dense_bn_saved_model": (_dense_bn, "tf.saved_model.save"),
    "lstm": (_lstm, "from_keras_model"),
}


def probe(case: str) -> int:
    import tempfile

    import numpy as np
    import tensorflow as tf

    build, how = PROBES[case]
    model, sample = build()
    expected = np.asarray(model(sample, training=False))
    report: dict = {"case": case, "how": how, "tensorflow": tf.__version__}
    try:
        if how == "from_keras_model":
            data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        else:
            with tempfile.TemporaryDirectory() as directory:
                tf.saved_model.save(model, directory)
                data = tf.lite.TFLiteConverter.from_saved_model(directory).convert()
    except Exception as exc:
        report.update(converted=False, error_type=type(exc).__name__, error=str(exc))
        print(json.dumps(report), flush=True)
        return 0
    report.update(converted=True, bytes=len(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        interpreter = tf.lite.Interpreter(model_content=data)
    report["interpreter_warning"] = next(
        (" ".join(str(w.message).split()) for w in caught
         if "deprecated" in str(w.message).lower()), "")
    runner = interpreter.get_signature_runner()
    (key,) = runner.get_input_details()
    outputs = runner(**{key: sample})
    actual = np.asarray(next(iter(outputs.values())))
    difference = np.abs(actual.astype("float64") - expected)
    report["max_abs"] = (float("nan") if not np.all(np.isfinite(actual))
                         else float(difference.max()))
    print(json.dumps(report), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "convert":
        return convert(argv[1], argv[2])
    if len(argv) == 2 and argv[0] == "probe" and argv[1] in PROBES:
        return probe(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
