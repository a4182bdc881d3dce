"""The two comparisons of diagnose, tensor by tensor in the order the model computes:

- a model a pass made against the ONNX model the pass started from (tensors matched by
  name, by the node that produces them, or by graph output position);
- an exported model against the source framework, layer by layer, through the
  backend's `capture_intermediates`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from onnxport.diagnose.findings import Finding, NodeInfo
from onnxport.diagnose.graph import Graph, is_float, run_model
from onnxport.host import PluginHost
from onnxport.records import Intermediate, LoadedModel, RunOptions, Tolerance
from onnxport.tolerance import compare_output

CaptureFunction = Callable[[LoadedModel, Mapping[str, np.ndarray], Path],
                           Sequence[Intermediate]]


def compare_onnx_models(candidate: Path, reference: Path, feeds: Mapping[str, np.ndarray],
                        tolerance: Tolerance, runner, options: RunOptions,
                        work_dir: Path) -> tuple[list[Finding], dict[str, int], list[str]]:
    """Every float tensor of `reference` that `candidate` also has, compared in the
    reference's topological order (ONNX keeps graph nodes topologically sorted)."""
    ref, cand = Graph(reference), Graph(candidate)
    ref_path, _ = ref.exposed(work_dir / "reference")
    cand_path, _ = cand.exposed(work_dir / "candidate")
    ref_values = {**feeds, **run_model(ref_path, runner, options, feeds)}
    cand_values = {**feeds, **run_model(cand_path, runner, options, feeds)}
    pairs = _match_tensors(ref, cand)
    findings: list[Finding] = []
    skipped = 0
    for node in ref.nodes:
        for name in node.output:
            if not name or name not in pairs:
                continue
            other, how = pairs[name]
            expected, actual = ref_values.get(name), cand_values.get(other)
            if expected is None or actual is None or not is_float(expected) or \
                    not is_float(actual):
                skipped += 1
                continue
            cand_node = cand.producer.get(other)
            findings.append(Finding(
                tensor=other, reference_tensor=name, matched_by=how,
                node=ref.node_info(node, ref_values),
                candidate_node=(cand.node_info(cand_node, cand_values)
                                if cand_node is not None and
                                (cand_node.name != node.name or
                                 cand_node.op_type != node.op_type) else None),
                comparison=compare_output(other, actual, expected, tolerance)))
    renamed = sum(1 for _, how in pairs.values() if how != "name")
    counts = {"reference_tensors": len(ref.tensors), "candidate_tensors": len(cand.tensors),
              "matched": len(pairs), "renamed": renamed, "compared": len(findings),
              "not_float": skipped,
              "only_in_reference": len([t for t in ref.tensors if t not in pairs]),
              "reference_nodes": len(ref.nodes), "candidate_nodes": len(cand.nodes)}
    notes = []
    if counts["only_in_reference"]:
        notes.append(f"{counts['only_in_reference']} tensor(s) of the reference have no "
                     "counterpart in the failing model (removed or renamed by the pass) "
                     "and were not compared")
    return findings, counts, notes


def _match_tensors(ref: Graph, cand: Graph) -> dict[str, tuple[str, str]]:
    """reference tensor -> (candidate tensor, how it was matched)."""
    cand_tensors = set(cand.tensors)
    cand_nodes = {n.name: n for n in cand.nodes if n.name}
    pairs: dict[str, tuple[str, str]] = {}
    taken: set[str] = set()
    for node in ref.nodes:
        twin = cand_nodes.get(node.name) if node.name else None
        for index, name in enumerate(node.output):
            if not name:
                continue
            if name in cand_tensors:
                pairs[name] = (name, "name")
            elif twin is not None and twin.op_type == node.op_type and \
                    len(twin.output) == len(node.output) and twin.output[index] and \
                    twin.output[index] not in ref.producer:
                pairs[name] = (twin.output[index], "node")
            else:
                continue
            taken.add(pairs[name][0])
    for ref_out, cand_out in zip(ref.outputs, cand.outputs):
        if ref_out not in pairs and cand_out not in taken and ref_out in ref.producer:
            pairs[ref_out] = (cand_out, "output")
    return pairs


def compare_with_source(candidate: Path, loaded: LoadedModel,
                        capture: CaptureFunction | None, source_outputs: Callable[[], dict],
                        feeds: Mapping[str, np.ndarray], tolerance: Tolerance, runner,
                        options: RunOptions, work_dir: Path
                        ) -> tuple[list[Finding], dict[str, int], list[str]]:
    """The source's layers, in the order they ran, against the ONNX tensors that hold the
    same values; without a capture function, only the graph outputs."""
    cand = Graph(candidate)
    path, _ = cand.exposed(work_dir / "candidate")
    values = {**feeds, **run_model(path, runner, options, feeds)}
    notes: list[str] = []
    layers: Sequence[Intermediate] = ()
    if capture is not None:
        layers = capture(loaded, feeds, Path(candidate))
        if not layers:
            notes.append(f"the ONNX nodes carry no scope the {loaded.backend} backend "
                         "can map to the source's layers (a pass such as simplify removes "
                         "the exporter's metadata): compared the outputs only; the export "
                         "stage's own model (kept in DIR.failed when it fails) has them")
    else:
        notes.append(f"the {loaded.backend} backend cannot capture the source's "
                     "intermediate values: compared the outputs only")
    if not layers:
        expected = source_outputs()
        layers = [Intermediate(scope="", description=loaded.description,
                               values=[np.asarray(expected[n]) for n in loaded.output_names],
                               tensors=list(loaded.output_names))]
    findings: list[Finding] = []
    unpaired = 0
    for layer in layers:
        used: set[str] = set()
        for value in layer.values:
            tensor, reshaped = _pair(value, layer.tensors, values, used)
            if tensor is None:
                unpaired += 1
                continue
            used.add(tensor)
            actual = values[tensor]
            if reshaped:
                actual = actual.reshape(value.shape)
            node = cand.producer.get(tensor)
            info = (cand.node_info(node, values) if node is not None else
                    NodeInfo(tensor, "(graph input)", [], [tensor]))
            if layer.nodes:
                info.inputs = cand.layer_inputs(layer.nodes, values) or info.inputs
            findings.append(Finding(
                tensor=tensor, reference_tensor=layer.scope or "(model)", matched_by="scope",
                node=info, comparison=compare_output(tensor, actual, value, tolerance),
                scope=layer.scope, description=layer.description,
                layer_nodes=list(layer.nodes), reshaped=reshaped))
    counts = {"layers": len(layers), "compared": len(findings), "unpaired": unpaired,
              "candidate_nodes": len(cand.nodes)}
    if unpaired:
        notes.append(f"{unpaired} layer output(s) have no ONNX tensor of the same shape "
                     "in their scope (folded, fused or returned unused) and were not "
                     "compared")
    return findings, counts, notes


def _pair(value: np.ndarray, tensors: Sequence[str], values: Mapping[str, np.ndarray],
          used: set[str]) -> tuple[str | None, bool]:
    candidates = [t for t in tensors if t not in used and t in values
                  and is_float(values[t]) == is_float(value)]
    for tensor in candidates:
        if tuple(values[tensor].shape) == tuple(np.shape(value)):
            return tensor, False
    for tensor in candidates:
        if values[tensor].size == np.size(value) and np.size(value) > 1:
            return tensor, True
    return None, False


def capture_hook(host: PluginHost, backend_name: str) -> CaptureFunction | None:
    """The backend's function that captures the source's intermediate values, if any."""
    return host.get("backend", backend_name).capture_intermediates
