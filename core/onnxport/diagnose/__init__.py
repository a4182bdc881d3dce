"""Where a conversion goes wrong: the first node whose output diverges beyond tolerance.

Verification compares a model's outputs; this compares what happens inside it, on the
same inputs verification used, and walks the graph in topological order to the first
tensor that is out of tolerance. Two comparisons, for the two ways a model goes wrong:

- a post-processing pass (INT8, a simplifier, an optimiser): the failing model against
  the ONNX model the pass started from. Every intermediate tensor of both is made a
  graph output (types from onnx shape inference), both run in the target's runner, and
  tensors are matched by name (passes keep most names; a renamed tensor is matched
  through the node that produces it, graph outputs by position).
- the export: the ONNX model against the source framework. The backend reports what
  each layer of the source computed and which ONNX tensors hold the same values (for
  torch: forward hooks on every module, and the module scope the exporter records on
  every node); the layers are compared in the order they ran.

The core imports no framework: the source is run by the backend's capture function,
found through the registered backend record. The rooms: `findings` (the records),
`graph` (exposing every tensor), `compare` (the two comparisons), `feeds` (the inputs),
`drivers` (artifact, files, a failed conversion), `text` (the terminal's words).
"""

from onnxport.diagnose.drivers import (diagnose_artifact, diagnose_conversion,
                                       diagnose_files)
from onnxport.diagnose.findings import Diagnosis, Finding, NodeInfo
from onnxport.diagnose.text import diagnosis_text

__all__ = ["Diagnosis", "Finding", "NodeInfo", "diagnose_artifact", "diagnose_conversion",
           "diagnose_files", "diagnosis_text"]
