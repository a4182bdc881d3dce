"""Built-in plugin: Hugging Face transformers models from a `save_pretrained` directory.

`onnxport convert DIR -o OUT --task text-classification` loads the model class the
task and `config.json` call for (never code from the directory), makes example inputs
from the config, names the ONNX inputs and outputs the way Optimum does (`input_ids`,
`attention_mask`, `token_type_ids`, `pixel_values`, `input_values`; `logits`,
`last_hidden_state`), keeps the batch and the sequence axes dynamic where the model
allows, and exports and runs the model through the torch backend's functions, TorchScript
exporter first (EXPORTERS).

Importing this module does not import transformers or torch; `load` does.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Backend, Option, Requirements

from onnxport_torch import EXPORTERS as TORCH_EXPORTERS, OPSETS, capture, export

from .detect import HubModel, can_load
from .tasks import TASKS

__all__ = ["HubModel", "TASKS"]

# TorchScript first: onnxruntime's transformer optimizer (the fuse pass) matches the
# attention the TorchScript exporter writes and not the dynamo exporter's, and fused
# Attention is what makes a transformer fast on CPU (a tiny BERT: batch 1 at 0.55x of
# the unfused export; docs/targets.md). Optimum and Olive export transformers the same
# way. The exporter is deprecated upstream: where it fails or its model does not
# verify, the dynamo route follows, as for any torch model.
EXPORTERS = ("torchscript", *(e for e in TORCH_EXPORTERS if e != "torchscript"))

REQUIRES = Requirements(modules=("transformers", "torch", "onnx", "onnxscript"),
                        extra="transformers")


def _load(request):
    from .loading import load

    return load(request)


def _export(loaded, request):
    result = export(loaded, request)
    if result.exporter == "torchscript":
        from .loading import name_sequence_outputs

        name_sequence_outputs(result.path, loaded)
    return result


@hookimpl
def onnxport_register_backends(register):
    register(Backend(
        name="transformers",
        description="Hugging Face transformers models: the class a task calls for, "
                    "example inputs from the config, Optimum's input and output names, "
                    "exported with torch.onnx",
        accepts="a save_pretrained directory (config.json with a model_type), or "
                "onnxport_transformers.HubModel('org/name') where the network allows",
        can_load=can_load,
        load=_load,
        export=_export,
        runner="torch",
        exporters=EXPORTERS,
        opsets=OPSETS,
        capture_intermediates=capture,
        requires=REQUIRES,
    ))


@hookimpl
def onnxport_add_options(options):
    options.add(Option(
        flags=("--task",), commands=("convert",), choices=tuple(TASKS), metavar="TASK",
        help="transformers backend: what the model is for, which picks its class and "
             "outputs: " + ", ".join(TASKS) + " (default: from config.json's "
             "architectures)"))
