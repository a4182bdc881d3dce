"""The `tflite` runner: a .tflite file in the LiteRT interpreter (ai_edge_litert) when it
is installed, else TensorFlow's deprecated tf.lite.Interpreter, through the file's
serving signature (which resizes inputs to each batch), answering by the user's names."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from onnxport.records import RunOptions

from .names import read_names


def interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        import ai_edge_litert

        return Interpreter, f"LiteRT {getattr(ai_edge_litert, '__version__', '')}".strip()
    except ImportError:
        from onnxport_keras.tfenv import import_tensorflow

        tf = import_tensorflow("the tflite runner")
        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"


class TFLiteSession:
    def __init__(self, path: Path, options: RunOptions):
        from onnxport_keras.tfenv import quiet_native_stderr

        cls, label = interpreter_class()
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = cls(model_path=str(path), num_threads=options.threads)
            names = read_names(path)
            signatures = self.interpreter.get_signature_list()
            if names is None:  # a file onnxport did not write: its signature's own keys
                key = next(iter(signatures))
                names = {"signature": key,
                         "inputs": [[k, k] for k in signatures[key]["inputs"]],
                         "outputs": [[k, k] for k in signatures[key]["outputs"]]}
            self.runner = self.interpreter.get_signature_runner(names["signature"])
        self.inputs = [tuple(pair) for pair in names["inputs"]]
        self.outputs = [tuple(pair) for pair in names["outputs"]]
        self.input_names = [name for name, _ in self.inputs]
        self.output_names = [name for name, _ in self.outputs]
        self.providers = [f"{label} interpreter (CPU)"]
        self._first_run = True

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        arguments = {key: np.ascontiguousarray(feeds[name]) for name, key in self.inputs}
        if self._first_run:  # the interpreter announces its XNNPACK delegate on stderr
            from onnxport_keras.tfenv import quiet_native_stderr

            with quiet_native_stderr():
                result = self.runner(**arguments)
            self._first_run = False
        else:
            result = self.runner(**arguments)
        return {name: np.asarray(result[key]) for name, key in self.outputs}

    def close(self) -> None:
        self.runner = None
        self.interpreter = None
