"""The deployment runtime: run an onnxport artifact with onnxruntime and numpy only.

    from onnxport.runtime import InferenceModel

    autopilot = InferenceModel("out/autopilot")      # artifact dir, target dir or .onnx
    rudder = autopilot.predict(sensor_window)        # [20, 25] -> [1]; [n, 20, 25] -> [n, 1]

    stream = autopilot.stream()                      # one frame [25] at a time
    for frame in sensor_frames:
        command = stream.push(frame)                 # None until 20 frames are in

Importing this module imports numpy and onnxruntime and nothing heavier: no torch, no
TensorFlow, no onnx, no pluggy and no plugin (a test checks `sys.modules`). It reads the
artifact's manifest.json to choose the model file, the execution providers, the graph
optimisation level and the sha256 of every file, and checks every input against the
model before onnxruntime sees it. The user guide is docs/runtime.md.
"""

from __future__ import annotations

from onnxport.artifact.reading import check_integrity
from onnxport.runtime.errors import (ArtifactError, ArtifactNotFound, InputError,
                                     IntegrityError, RunFailed)
from onnxport.runtime.model import InferenceModel
from onnxport.runtime.specs import TensorSpec
from onnxport.runtime.streaming import StreamingWindow

__all__ = ["InferenceModel", "StreamingWindow", "TensorSpec", "ArtifactError",
           "ArtifactNotFound", "IntegrityError", "InputError", "RunFailed",
           "check_integrity"]
