"""The source-framework runner: the Keras model (training=False) or the SavedModel's
serving signature, eagerly, on the verification inputs."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from onnxport.records import LoadedModel, RunOptions

from .calling import call_flat
from .tfenv import import_keras, import_tensorflow


class KerasSession:
    def __init__(self, loaded: LoadedModel, options: RunOptions):
        tf = import_tensorflow()
        keras = import_keras()
        if options.threads:
            set_threads(tf, options.threads)
        self.tf = tf
        self.loaded = loaded
        self.input_names = list(loaded.input_names)
        self.output_names = list(loaded.output_names)
        self.providers = [f"keras {keras.__version__} / tensorflow {tf.__version__} cpu"]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        tensors = [self.tf.convert_to_tensor(np.ascontiguousarray(feeds[name]))
                   for name in self.input_names]
        with self.tf.device("/cpu:0"):
            outputs = call_flat(self.loaded, tensors)
        return {name: np.asarray(t) for name, t in zip(self.output_names, outputs)}

    def close(self) -> None:
        self.loaded = None


def set_threads(tf, threads: int) -> bool:
    """TensorFlow takes thread counts only before it runs its first op; later calls are
    refused, and the session keeps TensorFlow's own choice."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return True
    except RuntimeError:
        return False
