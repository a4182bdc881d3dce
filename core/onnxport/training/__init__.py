"""Export straight after training: one line added to a training script.

One module per framework, each importing its framework (so `import onnxport` and
`import onnxport.training` import none):

    from onnxport.training.keras import ExportOnnx         # model.fit(callbacks=[...])
    from onnxport.training.lightning import ExportOnnx     # Trainer(callbacks=[...])
    from onnxport.training.transformers import ExportOnnx  # Trainer(callbacks=[...])
    from onnxport.training.torch import ExportOnnx, export_onnx  # a plain loop

Each saves the trained weights first, then converts and verifies the model in a worker
process (a crash there cannot end training), in the foreground or in the background,
with a time limit, and writes `DIR/onnx-status.json`. A failed export is recorded and
logged, never raised unless `strict=True`. docs/training.md is the guide.
"""

from __future__ import annotations

from onnxport.training.status import STATUS_FILE, read_status

__all__ = ["read_status", "STATUS_FILE"]
