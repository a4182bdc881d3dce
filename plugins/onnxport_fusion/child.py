"""The child process that runs onnxruntime's transformer optimizer:
`python -m onnxport_fusion.child REQUEST.json`.

It fuses one file into another and prints one line `ONNXPORT-RESULT {json}` on stdout:
{"ok": true, "messages": [...]} or {"ok": false, "unknown_model_type": ..., "known": [...]}.
Anything else (a Python exception, a native abort, a hang) is seen by the parent as an
exit code, a signal or a timeout, with the tail of stderr.

It runs in its own process because importing `onnxruntime.transformers` appends two of
onnxruntime's folders to `sys.path` (whose modules are named `metrics`, `benchmark`,
`float16`, ...) and takes about 2 s, and because the optimizer's symbolic shape
inference writes `sym_shape_infer_temp.onnx` into the current directory for models over
2 GB: the parent starts this process with the pass's work directory as its current
directory and temporary directory. It imports nothing from onnxport.
"""

from __future__ import annotations

import json
import logging
import sys

from onnxport.child_tool import send_answer

_MESSAGES = 20  # optimizer warnings passed back, at most


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip().splitlines()
        if text and text[0] not in self.messages and len(self.messages) < _MESSAGES:
            self.messages.append(text[0][:300])


def main(argv: list[str]) -> int:
    with open(argv[0]) as handle:
        request = json.load(handle)
    collect = _Collect()  # the optimizer's warnings; its INFO chatter stays out
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().addHandler(collect)

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    model_type = request["model_type"]
    if model_type not in MODEL_TYPES:
        send_answer({"ok": False, "unknown_model_type": model_type,
                 "known": sorted(MODEL_TYPES)})
        return 0
    options = FusionOptions(model_type)
    # BERT's default mask format (MaskIndexEnd) turns the attention mask into a length
    # and assumes right padding: a left-padded batch gives different results. The raw
    # mask keeps the model's semantics for every mask.
    if model_type == "bert":
        options.use_raw_attention_mask(True)
    if request.get("norms", "keep") == "keep":  # see options.NORMS
        options.enable_skip_layer_norm = False
        options.enable_bias_skip_layer_norm = False
        options.enable_embed_layer_norm = False
    optimizer = optimize_model(
        request["input"], model_type=model_type, num_heads=request["num_heads"],
        hidden_size=request["hidden_size"], optimization_options=options,
        opt_level=request["opt_level"], use_gpu=False)
    optimizer.save_model_to_file(request["output"],
                                 use_external_data_format=request["external_data"])
    send_answer({"ok": True, "messages": collect.messages})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
