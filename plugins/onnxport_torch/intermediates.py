"""What every nn.Module of the source computed, and which ONNX tensors hold the same values.

`onnxport diagnose` compares a model exported from torch with the torch model layer by
layer. The torch side comes from forward hooks on every submodule (their outputs, in the
order the calls finish, which is a topological order). The ONNX side comes from where
the exporter says each node came from:

- the dynamo exporter writes the module path of every node in its metadata,
  `pkg.torch.onnx.name_scopes` (e.g. `['', 'encoder', 'encoder.fc', 'linear']`: the
  module paths, then the FX node);
- the TorchScript exporter names nodes after their scope (`/encoder/fc/Gemm`, and
  `/shared_1/Gemm` for the second call of a module).

A module's outputs in ONNX are the tensors its nodes produce that leave its scope (used by
a node outside it, or a graph output). Pairing them with the hook values by shape is left
to the core, after the ONNX model has run.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from onnxport.records import Intermediate
from onnxport.records import LoadedModel

from .binding import binding_of, call

NAME_SCOPES = "pkg.torch.onnx.name_scopes"
CLASS_HIERARCHY = "pkg.torch.onnx.class_hierarchy"
_CALL_SUFFIX = re.compile(r"^(?P<name>.+)_(?P<call>\d+)$")


def capture_intermediates(loaded: LoadedModel, feeds: Mapping[str, Any],
                          model_path: Path) -> list[Intermediate]:
    """Run the source model on `feeds` with a hook on every module; return, in the order
    the module calls finished, each call's outputs and the ONNX tensors that leave the
    same module scope in the model at `model_path`."""
    import onnx

    module = _module_of(loaded.model)
    if module is None:
        return []
    names = {name for name, _ in module.named_modules()}
    calls = _run_with_hooks(module, loaded, feeds)
    graph = onnx.load(str(model_path), load_external_data=False).graph
    scopes = _node_scopes(graph, names)
    if not any(scopes):
        return []
    calls_per_module: dict[str, int] = defaultdict(int)
    for name, _, _ in calls:
        calls_per_module[name] += 1
    found = []
    seen: dict[str, int] = defaultdict(int)
    for name, description, values in calls:
        call = seen[name]
        seen[name] += 1
        members = _members(scopes, name, call, calls_per_module[name])
        if not members:
            continue
        found.append(Intermediate(
            scope=name, description=description, values=values, call=call,
            tensors=_leaving(graph, members),
            nodes=[graph.node[i].name for i in members
                   if scopes[i] and scopes[i][-1][0] == name]))
    return found


def _module_of(model) -> torch.nn.Module | None:
    if isinstance(model, torch.nn.Module):
        return model
    if isinstance(model, torch.export.ExportedProgram):
        try:  # restores the submodules (and their paths) of the exported model
            return torch.export.unflatten(model)
        except Exception:
            return None
    return None


def _run_with_hooks(module: torch.nn.Module, loaded: LoadedModel,
                    feeds: Mapping[str, Any]) -> list[tuple[str, str, list[np.ndarray]]]:
    calls: list[tuple[str, str, list[np.ndarray]]] = []

    def hook_for(name: str):
        def hook(mod, args, output):
            values = [t.detach().cpu().numpy().copy() for t in _tensors(output)]
            calls.append((name, _class_name(type(mod)), values))
        return hook

    handles = [sub.register_forward_hook(hook_for(name))
               for name, sub in module.named_modules()]
    was_training = module.training
    module.eval()
    try:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in loaded.input_names]
        binding, arguments = binding_of(loaded)
        with torch.inference_mode():
            call(module, args, arguments, binding)
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return calls


def _class_name(cls: type) -> str:
    """torch.nn.Softplus for torch's own layers, module.Class for the user's."""
    if getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _node_scopes(graph, module_names: set[str]) -> list[list[tuple[str, int]]]:
    """For each node, the (module path, call) pairs it lies in, outermost first; []
    for a node the exporter left no scope on."""
    scopes = []
    for node in graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if NAME_SCOPES in meta:
            scopes.append(_dynamo_scopes(meta[NAME_SCOPES], module_names))
        elif node.name.startswith("/"):
            scopes.append(_torchscript_scopes(node.name, module_names))
        else:
            scopes.append([])
    return scopes


def _dynamo_scopes(text: str, module_names: set[str]) -> list[tuple[str, int]]:
    try:
        entries = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return []
    # the last entry is the FX node; the ones before it are module paths ("" the root).
    # Repeated calls of one module share its path: call -1 means "not told apart".
    return [(entry, -1) for entry in entries[:-1] if entry in module_names]


def _torchscript_scopes(node_name: str, module_names: set[str]) -> list[tuple[str, int]]:
    parts = node_name.strip("/").split("/")[:-1]  # the last part is the op
    path, scopes = "", [("", 0)]
    for part in parts:
        call = 0
        candidate = _join(path, part)
        if candidate not in module_names:
            match = _CALL_SUFFIX.match(part)
            if match and _join(path, match["name"]) in module_names:
                candidate, call = _join(path, match["name"]), int(match["call"])
            else:
                return scopes  # a scope the module tree does not know: stop here
        path = candidate
        scopes.append((path, call))
    return scopes


def _join(path: str, part: str) -> str:
    if path and part.startswith(path + "."):  # containers' children carry full paths
        return part
    return f"{path}.{part}" if path else part


def _members(scopes: list[list[tuple[str, int]]], name: str, call: int,
             calls: int) -> list[int]:
    """Indices of the nodes of one call of module `name`."""
    exact = [i for i, s in enumerate(scopes) if (name, call) in s]
    if exact:
        return exact
    shared = [i for i, s in enumerate(scopes) if (name, -1) in s]
    if calls == 1:
        return shared
    # dynamo does not tell the calls of a shared module apart: when they made the same
    # number of nodes each, they are consecutive runs of that size, in graph order.
    if shared and len(shared) % calls == 0:
        size = len(shared) // calls
        return shared[call * size:(call + 1) * size]
    return []


def _leaving(graph, members: list[int]) -> list[str]:
    """Tensors produced inside `members` that a node outside uses, or that the graph
    returns, in graph order."""
    inside = set(members)
    outputs = {o.name for o in graph.output}
    used_outside: set[str] = set()
    for index, node in enumerate(graph.node):
        if index not in inside:
            used_outside.update(node.input)
    return [name for index in members for name in graph.node[index].output
            if name and (name in used_outside or name in outputs)]
