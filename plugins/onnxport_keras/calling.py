"""How to call a loaded source on a flat list of tensors and get a flat list back.

A `LoadedModel` of this backend records its calling convention in `details`, as plain
JSON (it goes into the manifest): for a Keras model, the structure its inputs take
("tensor", "list", "dict" with `input_keys`, or "arguments": passed by name to call()'s
arguments `input_keys`) and the structure of its result ("tensor", "list" or "dict" with
`output_keys`); for a SavedModel, the signature and its keys. The
exporter's tf.function, the keras runner and the TFLite backend all call through here,
so they feed and read the model identically.
"""

from __future__ import annotations

from typing import Any, Sequence

from onnxport.records import LoadedModel

SAVED_MODEL = "saved_model"
KERAS = "keras"
ARGUMENTS = "arguments"  # model(x=..., y=...): a dict whose keys are call()'s arguments


def call_flat(loaded: LoadedModel, tensors: Sequence[Any]) -> list[Any]:
    details = loaded.details
    if details["source_kind"] == SAVED_MODEL:
        signature = loaded.model.signatures[details["signature"]]
        result = signature(**dict(zip(details["input_keys"], tensors)))
        return [result[key] for key in details["output_keys"]]
    result = call_keras(loaded.model, details["input_structure"], details["input_keys"],
                        tensors)
    return flatten_result(result, details["output_structure"], details["output_keys"])


def call_keras(model, structure: str, keys: Sequence[str], tensors: Sequence[Any]):
    """`model(..., training=False)` with the inputs in the structure the model takes."""
    if structure == ARGUMENTS:
        return model(**dict(zip(keys, tensors)), training=False)
    if structure == "tensor":
        inputs: Any = tensors[0]
    elif structure == "dict":
        inputs = dict(zip(keys, tensors))
    else:
        inputs = list(tensors)
    return model(inputs, training=False)


def flatten_result(result: Any, structure: str, keys: Sequence[str] | None) -> list[Any]:
    if structure == "dict":
        return [result[key] for key in keys]
    if structure == "tensor":
        return [result]
    import keras

    return list(keras.tree.flatten(result))


def result_structure(result: Any) -> tuple[str, list[str] | None]:
    """("dict", keys) for a flat dict of tensors, ("tensor", None) for one tensor,
    ("list", None) for anything else (flattened by keras.tree)."""
    import keras

    if isinstance(result, dict) and all(not isinstance(v, (dict, list, tuple))
                                        for v in result.values()):
        return "dict", [str(k) for k in result]
    if not isinstance(result, (dict, list, tuple)) and len(keras.tree.flatten(result)) == 1:
        return "tensor", None
    return "list", None
