"""The user's names in a .tflite file.

TFLite signature keys must be valid TensorFlow names and come back sorted, so the file
keeps its own record, in a metadata entry: the signature, and for each input and output
(in the model's order) the user's name and the signature key it travels under.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

METADATA_KEY = "onnxport.io"
_VALID = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")


def signature_keys(names: list[str], kind: str) -> list[str]:
    """Each name itself if TensorFlow accepts it as a signature key, else kind_N."""
    keys: list[str] = []
    for i, name in enumerate(names):
        key = name if _VALID.match(name) and name not in keys else f"{kind}_{i}"
        keys.append(key)
    return keys


def read_names(path: Path) -> dict | None:
    """{"signature", "inputs": [[name, key], ...], "outputs": [...]} or None."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(Path(path).read_bytes())
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_KEY:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode())
    return None
