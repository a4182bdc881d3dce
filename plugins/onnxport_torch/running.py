"""The source-framework runner: the nn.Module itself, on the verification inputs."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from onnxport.records import LoadedModel, RunOptions

from .binding import binding_of, call
from .outputs import flatten_outputs


class TorchSession:
    def __init__(self, loaded: LoadedModel, options: RunOptions):
        model = loaded.model
        if isinstance(model, torch.export.ExportedProgram):
            model = model.module()
        else:
            model.eval()
        if options.threads:
            torch.set_num_threads(options.threads)
        self.model = model
        self.input_names = list(loaded.input_names)
        # a dict of example inputs is passed by name, under forward()'s argument names
        self.binding, self.arguments = binding_of(loaded)
        self.output_names = list(loaded.output_names)
        self.providers = [f"torch {torch.__version__} cpu"]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.inference_mode():
            outputs = flatten_outputs(call(self.model, args, self.arguments,
                                           self.binding))
        return {name: t.detach().cpu().numpy() for name, t in zip(self.output_names, outputs)}

    def close(self) -> None:
        self.model = None
