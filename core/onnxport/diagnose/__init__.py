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
found through the registered backend record (see `capture_hook`).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from onnxport.errors import BadInput
from onnxport.host import PluginHost
from onnxport.flow.inputs import describe_inputs, load_npz, random_inputs
from onnxport.flow.metrics import OutputComparison, compare_output
from onnxport.artifact.modelinfo import TensorInfo, import_onnx, read_model_info
from onnxport.records import (Intermediate, LoadedModel, LoadRequest, PassContext, RunOptions,
                      Target, Tolerance)



CaptureFunction = Callable[[LoadedModel, Mapping[str, np.ndarray], Path],
                           Sequence[Intermediate]]


@dataclass
class NodeInfo:
    name: str
    op_type: str
    inputs: list[tuple[str, list[int] | None, str]]  # name, runtime shape, dtype
    outputs: list[str]

    def inputs_text(self) -> str:
        return "; ".join(f"{name}: {dtype}{shape if shape is not None else '[?]'}"
                         for name, shape, dtype in self.inputs) or "none"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "outputs": self.outputs,
                "inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in self.inputs]}


@dataclass
class Finding:
    """One compared tensor: where it comes from and how far apart the two models are."""

    tensor: str  # its name in the failing model
    reference_tensor: str  # its name in the reference (the same unless renamed)
    node: NodeInfo  # the layer to change: the reference's node (pass), the ONNX node (export)
    comparison: OutputComparison
    matched_by: str = "name"  # "name", "node" (renamed output of a same-named node), "output"
    candidate_node: NodeInfo | None = None  # pass: the failing model's node, if different
    scope: str | None = None  # export: the source layer's path
    description: str = ""  # export: the source layer's class
    layer_nodes: list[str] = field(default_factory=list)  # export: the layer's own nodes
    reshaped: bool = False  # compared after a reshape (same values, other layout)

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    def to_dict(self) -> dict[str, Any]:
        data = {"tensor": self.tensor, "reference_tensor": self.reference_tensor,
                "matched_by": self.matched_by, "passed": self.passed,
                "node": self.node.to_dict(), "comparison": self.comparison.to_dict(),
                "reshaped": self.reshaped}
        if self.candidate_node is not None:
            data["candidate_node"] = self.candidate_node.to_dict()
        if self.scope is not None:
            data.update(scope=self.scope, description=self.description,
                        layer_nodes=self.layer_nodes)
        return data


@dataclass
class Diagnosis:
    kind: str  # "pass" or "export"
    stage: str  # "export" or the pass's name
    target: str | None
    candidate: str  # the failing model
    reference: str  # what it was compared with, in words
    label: str  # the inputs: "batch 1", "data"
    inputs: dict[str, dict]
    tolerance: Tolerance
    findings: list[Finding]  # in topological order
    outputs_diverge: bool  # the failing model's outputs are out of tolerance on these inputs
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problem: str = ""  # set when there was nothing to compare numerically
    kept: str | None = None  # where a reproduced failing model was written, if kept
    other_exporters: list[str] = field(default_factory=list)  # export: what else to try

    @property
    def first(self) -> Finding | None:
        return next((f for f in self.findings if not f.passed), None)

    def to_dict(self) -> dict[str, Any]:
        first = self.first
        return _strict({
            "kind": self.kind, "stage": self.stage, "target": self.target,
            "candidate": self.candidate, "reference": self.reference,
            "inputs": {"label": self.label, "tensors": self.inputs},
            "tolerance": self.tolerance.__dict__,
            "outputs_diverge": self.outputs_diverge, "counts": self.counts,
            "first_divergence": first.to_dict() if first else None,
            "findings": [f.to_dict() for f in self.findings],
            "notes": self.notes, "problem": self.problem, "kept": self.kept,
            "other_exporters": self.other_exporters,
        })


# ----------------------------------------------------------------------------- the graph


class _Graph:
    """An ONNX model's top-level nodes and initializers, and a copy with every
    intermediate tensor made a graph output."""

    def __init__(self, path: Path):
        onnx = import_onnx()
        self.path = Path(path)
        try:
            self.model = onnx.load(str(path))
        except Exception as exc:
            raise BadInput(f"{path} is not a readable ONNX model "
                           f"({type(exc).__name__}: {exc})") from exc
        graph = self.model.graph
        self.nodes = list(graph.node)
        self.inputs = [i.name for i in graph.input]
        self.outputs = [o.name for o in graph.output]
        self.initializers = {i.name: (list(i.dims), _elem_dtype(i.data_type))
                             for i in graph.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.tensors = [o for n in self.nodes for o in n.output if o]

    def exposed(self, directory: Path) -> tuple[Path, int]:
        """Save a copy whose outputs are every tensor a node produces; return its path
        and how many tensors got their type from shape inference."""
        onnx = import_onnx()
        from onnx import helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        types: dict[str, Any] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            types = {v.name: v.type for v in inferred.graph.value_info}
        except Exception:  # a model shape inference cannot read still runs
            pass
        existing = set(self.outputs)
        typed = 0
        for name in self.tensors:
            if name in existing:
                continue
            existing.add(name)
            value = helper.make_empty_tensor_value_info(name)
            known = types.get(name)
            if known is not None and known.HasField("tensor_type") and \
                    known.tensor_type.elem_type:
                # the element type only: symbolic shapes from inference are not needed
                value.type.tensor_type.elem_type = known.tensor_type.elem_type
                typed += 1
            model.graph.output.append(value)
        Path(directory).mkdir(parents=True, exist_ok=True)
        path = Path(directory) / f"exposed-{self.path.stem}.onnx"
        size = sum(i.ByteSize() for i in model.graph.initializer)
        if size > 1_800_000_000:
            onnx.save_model(model, str(path), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=path.name + ".data")
        else:
            onnx.save_model(model, str(path))
        return path, typed

    def node_info(self, node, values: Mapping[str, np.ndarray]) -> NodeInfo:
        return NodeInfo(node.name or f"({node.op_type})", node.op_type,
                        [self._describe(name, values) for name in node.input if name],
                        [o for o in node.output if o])

    def layer_inputs(self, node_names: Sequence[str], values: Mapping[str, np.ndarray]
                     ) -> list[tuple[str, list[int] | None, str]]:
        """What enters a layer made of these nodes: activations first, then its weights
        (scalar constants left out)."""
        names = set(node_names)
        members = [n for n in self.nodes if n.name in names]
        made = {o for n in members for o in n.output}
        entering: list[str] = []
        for node in members:
            for name in node.input:
                if name and name not in made and name not in entering:
                    entering.append(name)
        described = [self._describe(name, values) for name in entering]
        activations = [d for d in described if d[0] not in self.initializers
                       and d[1] != []] or \
            [d for d in described if d[0] not in self.initializers]
        weights = [d for d in described if d[0] in self.initializers and d[1]]
        return activations + weights

    def _describe(self, name: str, values: Mapping[str, np.ndarray]
                  ) -> tuple[str, list[int] | None, str]:
        if name in values:
            array = np.asarray(values[name])
            return name, list(array.shape), str(array.dtype)
        if name in self.initializers:
            dims, dtype = self.initializers[name]
            return name, dims, dtype
        return name, None, "?"


def _elem_dtype(code: int) -> str:
    from onnxport.artifact.modelinfo import _DTYPES

    return _DTYPES.get(code, f"type{code}")


def _run(path: Path, runner, options: RunOptions, feeds: Mapping[str, np.ndarray]
         ) -> dict[str, np.ndarray]:
    session = runner.open(path, options)
    try:
        return {k: np.asarray(v) for k, v in session.run(feeds).items()}
    finally:
        session.close()


def _is_float(array: np.ndarray) -> bool:
    return np.asarray(array).dtype.kind == "f"


# ----------------------------------------------------------------------------- pass case


def compare_onnx_models(candidate: Path, reference: Path, feeds: Mapping[str, np.ndarray],
                        tolerance: Tolerance, runner, options: RunOptions,
                        work_dir: Path) -> tuple[list[Finding], dict[str, int], list[str]]:
    """Every float tensor of `reference` that `candidate` also has, compared in the
    reference's topological order (ONNX keeps graph nodes topologically sorted)."""
    ref, cand = _Graph(reference), _Graph(candidate)
    ref_path, _ = ref.exposed(work_dir / "reference")
    cand_path, _ = cand.exposed(work_dir / "candidate")
    ref_values = {**feeds, **_run(ref_path, runner, options, feeds)}
    cand_values = {**feeds, **_run(cand_path, runner, options, feeds)}
    pairs = _match_tensors(ref, cand)
    findings: list[Finding] = []
    skipped = 0
    for node in ref.nodes:
        for name in node.output:
            if not name or name not in pairs:
                continue
            other, how = pairs[name]
            expected, actual = ref_values.get(name), cand_values.get(other)
            if expected is None or actual is None or not _is_float(expected) or \
                    not _is_float(actual):
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


def _match_tensors(ref: _Graph, cand: _Graph) -> dict[str, tuple[str, str]]:
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


# ----------------------------------------------------------------------------- export case


def compare_with_source(candidate: Path, loaded: LoadedModel,
                        capture: CaptureFunction | None, source_outputs: Callable[[], dict],
                        feeds: Mapping[str, np.ndarray], tolerance: Tolerance, runner,
                        options: RunOptions, work_dir: Path
                        ) -> tuple[list[Finding], dict[str, int], list[str]]:
    """The source's layers, in the order they ran, against the ONNX tensors that hold the
    same values; without a capture function, only the graph outputs."""
    cand = _Graph(candidate)
    path, _ = cand.exposed(work_dir / "candidate")
    values = {**feeds, **_run(path, runner, options, feeds)}
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
                  and _is_float(values[t]) == _is_float(value)]
    for tensor in candidates:
        if tuple(values[tensor].shape) == tuple(np.shape(value)):
            return tensor, False
    for tensor in candidates:
        if values[tensor].size == np.size(value) and np.size(value) > 1:
            return tensor, True
    return None, False


# ----------------------------------------------------------------------------- hooks


def capture_hook(host: PluginHost, backend_name: str) -> CaptureFunction | None:
    """The backend's function that captures the source's intermediate values, if any."""
    return host.get("backend", backend_name).capture_intermediates


# ----------------------------------------------------------------------------- inputs


def recorded_feeds(batch: Mapping[str, Any], settings, dynamic_batch: bool
                   ) -> dict[str, np.ndarray]:
    """The exact inputs verification used for one recorded batch (same seed, shapes,
    ranges, or the same rows of the user's data)."""
    label = batch["label"]
    described = batch["inputs"]
    infos = [TensorInfo(name, (["batch"] + list(d["shape"][1:])) if dynamic_batch
                        else list(d["shape"]), d["dtype"]) for name, d in described.items()]
    if label.startswith("data"):
        if settings.data is None:
            raise BadInput("the conversion verified on user data (--data) that was not "
                           "recorded", "pass --data FILE.npz")
        data = load_npz(settings.data, infos)
        return {k: v[:1] for k, v in data.items()} if label == "data[:1]" else data
    rows = next(iter(described.values()))["shape"][0] if described else None
    return random_inputs(infos, rows if dynamic_batch else None, settings.seed,
                         {n: d["shape"] for n, d in described.items()},
                         settings.input_ranges)


def model_feeds(path: Path, batch: int, seed: int, data: Path | None,
                example_shapes: Mapping[str, Sequence[int]] | None = None
                ) -> dict[str, np.ndarray]:
    """Seeded inputs for a bare ONNX file: its declared shapes, `batch` on a free first
    axis, the source's example sizes on other free axes."""
    infos = read_model_info(path).inputs
    if data is not None:
        return load_npz(data, infos)
    return random_inputs(infos, batch, seed, example_shapes or {}, {})


def _tolerance(value: Mapping[str, Any]) -> Tolerance:
    fields = {}
    for key, raw in value.items():
        if key in Tolerance.__dataclass_fields__:
            fields[key] = float(raw) if isinstance(raw, str) else raw
    return Tolerance(**fields)


def _overridden(tolerance: Tolerance, atol: float | None, rtol: float | None) -> Tolerance:
    if atol is None and rtol is None:
        return tolerance
    return Tolerance(atol=tolerance.atol if atol is None else atol,
                     rtol=tolerance.rtol if rtol is None else rtol)


# ----------------------------------------------------------------------------- drivers


@dataclass
class _Failing:
    """The stage to diagnose for one target, read from a manifest or a live result."""

    target: str
    stage: str  # "export" or a pass name
    model: Path  # the model in the artifact directory
    batch: dict[str, Any] | None  # the recorded batch to reproduce
    tolerance: Tolerance
    problem: str
    providers: tuple[str, ...]
    graph_optimization_level: str
    runner: str
    target_record: Target | None = None
    pass_options: Mapping[str, Any] = field(default_factory=dict)
    exporter: str | None = None  # the exporter that made the model, when known


def _failing_from_manifest(directory: Path, manifest: dict[str, Any],
                           host: PluginHost) -> _Failing:
    verification = manifest.get("verification") or {}
    failed_pass = next((p for p in manifest.get("passes", []) if p["status"] == "failed"),
                       None)
    batch, tolerance = _worst_batch(verification.get("batches") or [])
    recorded = manifest["target"]
    target_record = None
    if failed_pass is not None:
        target_record = _target_record(host, recorded)
    applied = [p["name"] for p in manifest.get("passes", []) if p["status"] == "ok"]
    stage = (failed_pass["name"] if failed_pass else
             "export" if not verification.get("passed", False) or not applied else "shipped")
    return _Failing(
        target=recorded["name"], stage=stage,
        model=directory / manifest["model"], batch=batch, tolerance=tolerance,
        problem=verification.get("problem", ""),
        providers=tuple(recorded.get("providers") or ("CPUExecutionProvider",)),
        graph_optimization_level=recorded.get("graph_optimization_level", "all"),
        runner=recorded.get("runner", "onnxruntime"), target_record=target_record,
        pass_options=dict((recorded.get("options") or {}).get(
            failed_pass["name"], {})) if failed_pass else {},
        exporter=(manifest.get("source") or {}).get("exporter"))


def _worst_batch(batches: list[dict[str, Any]]) -> tuple[dict | None, Tolerance]:
    """The first batch that failed (else the first), and the budget of its first
    failing output (else of its first output)."""
    if not batches:
        return None, Tolerance()
    batch = next((b for b in batches if not b.get("passed", True)), batches[0])
    outputs = batch.get("outputs") or []
    output = next((o for o in outputs if not o.get("passed", True)),
                  outputs[0] if outputs else None)
    return batch, _tolerance(output["tolerance"]) if output else Tolerance()


def _target_record(host: PluginHost, recorded: dict[str, Any]) -> Target:
    from dataclasses import replace

    try:
        base = host.get("target", recorded["name"])
    except Exception:
        base = Target(name=recorded["name"], description=recorded.get("description", ""))
    return replace(base, providers=tuple(recorded.get("providers") or base.providers),
                   options={k: dict(v) for k, v in (recorded.get("options") or {}).items()})


def reproduce_pass(host: PluginHost, pass_name: str, target: Target,
                   options: Mapping[str, Any], input_path: Path, work_dir: Path) -> Path:
    """Run the failing pass again on the model it started from (passes are
    deterministic), so the failing model can be compared with its input."""
    entry = host.registrations("pass").get(pass_name)
    if entry is None:
        raise BadInput(f"the pass '{pass_name}' that failed is not installed here, so its "
                       "model cannot be made again",
                       "install the plugin that provides it, or compare two models with "
                       "onnxport diagnose FAILING.onnx --reference MODEL.onnx")
    output = Path(work_dir) / pass_name / Path(input_path).name
    output.parent.mkdir(parents=True, exist_ok=True)
    outcome = entry.record.run(PassContext(input_path=Path(input_path), output_path=output,
                                           target=target, options=dict(options),
                                           work_dir=output.parent))
    if not outcome.applied:
        raise BadInput(f"the pass '{pass_name}' did not apply when run again "
                       f"({outcome.reason or 'nothing to do'})")
    return Path(outcome.path or output)


def diagnose_pass(host: PluginHost, failing: _Failing, settings, dynamic_batch: bool,
                  work_dir: Path, candidate: Path | None = None, feeds=None,
                  keep: Path | None = None) -> Diagnosis:
    """Case a: the model a pass made against the model it started from."""
    work_dir = Path(work_dir)
    reference = failing.model
    kept = None
    reproduced = candidate is None
    if candidate is None:
        candidate = reproduce_pass(host, failing.stage, failing.target_record,
                                   failing.pass_options, reference, work_dir / "passes")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            kept_path = keep / f"{failing.target}-{failing.stage}-{reference.name}"
            kept_path.write_bytes(Path(candidate).read_bytes())
            kept = str(kept_path)
    if feeds is None:
        feeds = recorded_feeds(failing.batch, settings, dynamic_batch)
    runner = host.get("runner", failing.runner)
    options = RunOptions(providers=failing.providers, threads=settings.threads,
                         graph_optimization_level=failing.graph_optimization_level)
    findings, counts, notes = compare_onnx_models(
        Path(candidate), reference, feeds, failing.tolerance, runner, options, work_dir)
    outputs = set(_Graph(reference).outputs)
    diverge = any(not f.passed for f in findings if f.reference_tensor in outputs)
    _note_unreproduced(failing, findings, diverge, notes)
    made_again = f"{failing.stage} run again on the model before it"
    return Diagnosis(
        kind="pass", stage=failing.stage, target=failing.target,
        candidate=kept or (made_again if reproduced else str(candidate)),
        reference=f"the model before {failing.stage} ({reference})",
        label=failing.batch["label"] if failing.batch else "inputs",
        inputs=describe_inputs(feeds), tolerance=failing.tolerance, findings=findings,
        outputs_diverge=diverge, counts=counts, notes=notes, kept=kept)


def diagnose_export(host: PluginHost, failing: _Failing, loaded: LoadedModel, settings,
                    dynamic_batch: bool, work_dir: Path, feeds=None) -> Diagnosis:
    """Case b: the exported model against the source framework, layer by layer."""
    if feeds is None:
        feeds = recorded_feeds(failing.batch, settings, dynamic_batch)
    capture = capture_hook(host, loaded.backend)
    runner = host.get("runner", failing.runner)
    options = RunOptions(providers=failing.providers, threads=settings.threads,
                         graph_optimization_level=failing.graph_optimization_level)

    def source_outputs() -> dict:
        backend = host.get("backend", loaded.backend)
        session = host.get("runner", backend.runner).open(
            loaded, RunOptions(threads=settings.threads))
        try:
            return session.run(feeds)
        finally:
            session.close()

    findings, counts, notes = compare_with_source(
        failing.model, loaded, capture, source_outputs, feeds, failing.tolerance, runner,
        options, Path(work_dir))
    backend = host.get("backend", loaded.backend)
    others = [e for e in backend.exporters if e != failing.exporter] \
        if failing.exporter else []
    root = [f for f in findings if f.scope == ""]
    diverge = any(not f.passed for f in root) if root else any(
        not f.passed for f in findings)
    _note_unreproduced(failing, findings, diverge, notes)
    return Diagnosis(
        kind="export", stage=failing.stage if failing.stage == "shipped" else "export",
        target=failing.target, candidate=str(failing.model),
        reference=f"the {loaded.framework} source ({loaded.description}), layer by layer",
        label=failing.batch["label"] if failing.batch else "inputs",
        inputs=describe_inputs(feeds), tolerance=failing.tolerance, findings=findings,
        outputs_diverge=diverge, counts=counts, notes=notes, other_exporters=others)


def _note_unreproduced(failing: _Failing, findings: list[Finding], diverge: bool,
                       notes: list[str]) -> None:
    if failing.problem and not diverge and all(f.passed for f in findings):
        notes.append("verification failed, but with every tensor exposed nothing diverges "
                     "on these inputs: the failure may come from an onnxruntime graph "
                     "optimisation that exposing tensors prevents, or show only at "
                     "another batch")


def diagnose_artifact(path: Path, host: PluginHost, *, source: Any = None,
                      weights: Path | None = None, targets: Sequence[str] = (),
                      atol: float | None = None, rtol: float | None = None,
                      threads: int | None = None) -> list[Diagnosis]:
    """`onnxport diagnose DIR`: each target of an artifact (or of a kept `DIR.failed`).
    A target whose pass failed is diagnosed against the model the pass started from;
    any other target against the source."""
    from onnxport.flow.reverify import _settings, find_manifests

    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path} does not exist")
    manifest_paths = find_manifests(path)
    manifests = [json.loads(p.read_text()) for p in manifest_paths]
    chosen = [(p, m) for p, m in zip(manifest_paths, manifests)
              if not targets or m["target"]["name"] in targets]
    if not chosen:
        known = ", ".join(m["target"]["name"] for m in manifests)
        raise BadInput(f"{path} has no target {', '.join(targets)}", f"it has: {known}")
    settings = _settings(manifest_paths[0], {"threads": threads})
    loaded = None
    results = []
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        for index, (manifest_path, manifest) in enumerate(chosen):
            failing = _failing_from_manifest(manifest_path.parent, manifest, host)
            failing.tolerance = _overridden(failing.tolerance, atol, rtol)
            dynamic = bool(manifest["interface"]["dynamic_batch"])
            work = Path(tmp) / str(index)
            if failing.batch is None:
                results.append(_nothing_to_compare(failing))
                continue
            if failing.stage not in ("export", "shipped"):
                results.append(diagnose_pass(host, failing, settings, dynamic, work))
                continue
            if loaded is None:
                loaded = load_recorded_source(manifest, host, source, weights)
            results.append(diagnose_export(host, failing, loaded, settings, dynamic, work))
    return results


def _nothing_to_compare(failing: _Failing) -> Diagnosis:
    return Diagnosis(
        kind="none", stage=failing.stage, target=failing.target,
        candidate=str(failing.model), reference="", label="", inputs={},
        tolerance=failing.tolerance, findings=[], outputs_diverge=False,
        problem=(f"the model failed a check before any output was compared "
                 f"({failing.problem}); there are no numbers to trace"))


def load_recorded_source(manifest: dict[str, Any], host: PluginHost, source: Any,
                         weights: Path | None) -> LoadedModel:
    """The source a manifest records (or `source`), loaded by the backend it names, with
    the interface the conversion settled (as `onnxport verify` does)."""
    from onnxport.flow.reverify import _recorded_options
    from onnxport.flow.sources import pick_backend, source_from_object, source_from_text

    recorded = manifest["source"]
    weights_path = Path(weights) if weights else (
        Path(recorded["weights"]["path"]) if recorded.get("weights") else None)
    if source is None:
        origin = recorded["origin"]
        if recorded["kind"] == "object" and origin.startswith("<"):
            raise BadInput(f"the model was made from a Python object ({origin}), which "
                           "cannot be loaded again by name",
                           "pass the source: --source module:function")
        source = origin
    src = (source_from_text(str(source), weights_path) if isinstance(source, (str, Path))
           else source_from_object(source, origin=repr(type(source)), weights=weights_path))
    backend = pick_backend(host, src, recorded.get("backend"))
    interface = manifest["interface"]
    return backend.load(LoadRequest(
        source=src, input_names=tuple(interface["inputs"]),
        output_names=tuple(interface["outputs"]),
        dynamic_batch=bool(interface["dynamic_batch"]),
        options=_recorded_options(manifest)))


def diagnose_files(candidate: Path, host: PluginHost, *, reference: Path | None = None,
                   source: Any = None, weights: Path | None = None, batch: int = 1,
                   seed: int = 0, data: Path | None = None, atol: float | None = None,
                   rtol: float | None = None, threads: int | None = None,
                   providers: Sequence[str] = ()) -> Diagnosis:
    """`onnxport diagnose MODEL.onnx --reference REF.onnx` (a pass) or `--source SOURCE`
    (the export), on seeded inputs."""
    from onnxport.flow.sources import pick_backend, source_from_object, source_from_text

    candidate = Path(candidate)
    if not candidate.is_file():
        raise BadInput(f"{candidate} does not exist")
    tolerance = _overridden(Tolerance(), atol, rtol)
    settings = _Settings(threads)
    failing = _Failing(target=None, stage="", model=candidate, batch=None,
                       tolerance=tolerance, problem="",
                       providers=tuple(providers) or ("CPUExecutionProvider",),
                       graph_optimization_level="all", runner="onnxruntime")
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        if reference is not None:
            if not Path(reference).is_file():
                raise BadInput(f"--reference {reference} does not exist")
            feeds = model_feeds(Path(reference), batch, seed, data)
            failing.model, failing.stage = Path(reference), "pass"
            result = diagnose_pass(host, failing, settings, True, Path(tmp),
                                   candidate=candidate, feeds=feeds)
            result.label = _label(feeds, data, seed)
            result.reference = f"{reference} (the model before the pass)"
            return result
        if source is None:
            raise BadInput("diagnose needs something to compare the model with",
                           "give --reference MODEL.onnx (the model a pass started from) "
                           "or --source SOURCE (the model it was exported from)")
        info = read_model_info(candidate)
        dynamic = bool(info.inputs) and all(t.shape and not isinstance(t.shape[0], int)
                                            for t in info.inputs)
        src = (source_from_text(str(source), weights) if isinstance(source, (str, Path))
               else source_from_object(source, origin=repr(type(source)), weights=weights))
        backend = pick_backend(host, src)
        loaded = backend.load(LoadRequest(
            source=src, input_names=tuple(t.name for t in info.inputs),
            output_names=tuple(t.name for t in info.outputs), dynamic_batch=dynamic))
        shapes = {k: np.shape(v) for k, v in loaded.example_inputs.items()}
        feeds = model_feeds(candidate, batch, seed, data, shapes)
        failing.stage = "export"
        result = diagnose_export(host, failing, loaded, settings, dynamic, Path(tmp),
                                 feeds=feeds)
        result.label = _label(feeds, data, seed)
        return result


@dataclass
class _Settings:
    threads: int | None = None


def _label(feeds: Mapping[str, np.ndarray], data: Path | None, seed: int) -> str:
    if data is not None:
        return f"data {data}"
    first = next(iter(feeds.values()), None)
    rows = first.shape[0] if first is not None and first.ndim else 1
    return f"batch {rows} (seed {seed})"


def diagnose_conversion(result, host: PluginHost, *, atol: float | None = None,
                        rtol: float | None = None, threads: int | None = None,
                        keep: Path | None = None) -> list[Diagnosis]:
    """`onnxport convert --diagnose`: each failed target of a conversion that just
    failed, with the source model still loaded. The failing stage's input model must be
    on disk (the conversion keeps the failed candidate)."""
    from onnxport.flow.reverify import _settings

    diagnoses = []
    with tempfile.TemporaryDirectory(prefix="onnxport-diagnose-") as tmp:
        for index, artifact in enumerate(a for a in result.artifacts if not a.passed):
            stage = artifact.final
            verification = stage.verification
            batches = [{"label": b.label, "passed": b.passed, "inputs": b.inputs,
                        "outputs": [o.to_dict() for o in b.outputs]}
                       for b in (verification.batches if verification else [])]
            batch, tolerance = _worst_batch(batches)
            target = artifact.target
            failing = _Failing(
                target=target.name, stage=stage.stage, model=artifact.model_path,
                batch=batch, tolerance=_overridden(tolerance, atol, rtol),
                problem=verification.problem if verification else stage.reason,
                providers=tuple(target.providers),
                graph_optimization_level=target.graph_optimization_level,
                runner=artifact.runner, target_record=target,
                pass_options=dict(target.options.get(stage.stage, {})),
                exporter=result.exported.exporter)
            if batch is None:
                diagnoses.append(_nothing_to_compare(failing))
                continue
            settings = _settings(artifact.directory / "manifest.json", {"threads": threads})
            dynamic = bool(artifact.manifest["interface"]["dynamic_batch"])
            work = Path(tmp) / str(index)
            if stage.stage == "export":
                diagnoses.append(diagnose_export(host, failing, result.loaded, settings,
                                                 dynamic, work))
            else:
                diagnoses.append(diagnose_pass(host, failing, settings, dynamic, work,
                                               keep=keep))
    return diagnoses


# ----------------------------------------------------------------------------- text


def diagnosis_text(diagnosis: Diagnosis, show_all: bool = False) -> str:
    from onnxport.report.formatting import budget_text

    where = f"target {diagnosis.target}, " if diagnosis.target else ""
    what = ("a post-processing pass" if diagnosis.kind == "pass" else
            "the model as shipped, after its passes" if diagnosis.stage == "shipped" else
            "the export" if diagnosis.kind == "export" else diagnosis.stage)
    stage = diagnosis.stage
    lines = [f"diagnosis: {where}stage {stage} ({what})"]
    if diagnosis.problem:
        return "\n".join(lines + [f"  {diagnosis.problem}"])
    c = diagnosis.counts
    lines.append(f"  model      {diagnosis.candidate}")
    lines.append(f"  against    {diagnosis.reference}")
    lines.append(f"  inputs     {diagnosis.label}: " + ", ".join(
        f"{n} {d['dtype']}{d['shape']}" for n, d in diagnosis.inputs.items()))
    if diagnosis.kind == "pass":
        lines.append(f"  compared   {c.get('compared', 0)} float tensors in topological "
                     f"order ({c.get('matched', 0)} of {c.get('reference_tensors', 0)} "
                     f"matched, {c.get('renamed', 0)} of them renamed)")
    else:
        lines.append(f"  compared   {c.get('compared', 0)} layer outputs in the order the "
                     f"source ran them ({c.get('layers', 0)} layers found in the ONNX "
                     "graph)")
    whose = "the failing output's" if diagnosis.outputs_diverge else "the output's"
    lines.append(f"  tolerance  {budget_text(diagnosis.tolerance)} ({whose} budget, applied "
                 "to every tensor)")
    first = diagnosis.first
    lines.append("")
    if first is None:
        lines.append("no compared tensor diverges beyond tolerance"
                     + (": the outputs do diverge, so the error arises in tensors that "
                        "could not be compared (see the notes)" if diagnosis.outputs_diverge
                        else " on these inputs"))
    else:
        lines += _first_text(diagnosis, first)
    if diagnosis.notes:
        lines += ["", "notes:"] + [f"  {n}" for n in diagnosis.notes]
    lines += [""] + _findings_table(diagnosis, show_all).splitlines()
    if diagnosis.kept:
        lines += ["", f"the failing model made again is kept in {diagnosis.kept}"]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 100) -> str:
    """Long lines wrapped under their value column, so the text fits 100 columns."""
    import re
    import textwrap

    if len(line) <= width or line.startswith("  " * 2 + " "):
        return line
    match = re.match(r"^(  \S+ +)(?=\S)", line)
    indent = 13 if match and len(match.group(1)) == 13 else 4
    return textwrap.fill(line, width, subsequent_indent=" " * indent,
                         break_on_hyphens=False, break_long_words=False)


def _first_text(diagnosis: Diagnosis, first: Finding) -> list[str]:
    node = first.node
    comparison = first.comparison
    lines = []
    if diagnosis.kind == "export":
        layer = f"'{first.scope}'" if first.scope else "the model's own forward()"
        lines.append(f"first divergence: layer {layer} ({first.description}), ONNX node "
                     f"{node.name} ({node.op_type})")
    else:
        lines.append(f"first divergence: node {node.name} ({node.op_type})")
    lines.append(f"  inputs     {node.inputs_text()}")
    lines.append(f"  output     {first.tensor}"
                 + (f" (was {first.reference_tensor})"
                    if diagnosis.kind == "pass" and first.tensor != first.reference_tensor
                    else "") + f": {comparison.problem}")
    lines.append(f"  error      max abs {comparison.max_abs:.3g}, mean abs "
                 f"{comparison.mean_abs:.3g}, cosine {comparison.cosine:.6f}")
    if diagnosis.kind == "pass":
        lines.append("  every tensor before it matches, so this node is where the pass "
                     "changed the numerics")
        if first.candidate_node is not None:
            cn = first.candidate_node
            lines.append(f"  after the pass the tensor comes from {cn.name} ({cn.op_type})")
        if _is_quantization(diagnosis, first):
            lines.append(f"  what to do: this layer does not survive INT8: leave node "
                         f"{node.name} out of quantization (onnxruntime quantize_dynamic("
                         f"nodes_to_exclude=['{node.name}'])), try per-channel weights "
                         "(--pass-option quantize.per_channel=true), or keep this target "
                         "fp32 (--quantize off)")
        else:
            lines.append(f"  what to do: keep node {node.name} out of {diagnosis.stage} (or "
                         "fix the pass for this op), or give this target a looser budget "
                         "if the error is acceptable")
    else:
        if first.layer_nodes:
            lines.append(f"  its nodes  {', '.join(first.layer_nodes[:8])}"
                         + (" ..." if len(first.layer_nodes) > 8 else ""))
        lines.append("  every layer that ran before it matches, so the ONNX translation of "
                     "this layer changes its numerics")
        other = (f"--exporter {diagnosis.other_exporters[0]}" if diagnosis.other_exporters
                 else "another exporter")
        lines.append(f"  what to do: write layer {first.scope or '(the model)'} with other "
                     f"ops, or export with {other}; check that layer in Netron by the node "
                     "names above")
    return lines


def _is_quantization(diagnosis: Diagnosis, finding: Finding) -> bool:
    stage = diagnosis.stage.lower()
    if "quant" in stage or "int8" in stage:
        return True
    node = finding.candidate_node
    return node is not None and (
        any(key in node.op_type for key in ("Integer", "Quant", "QLinear"))
        or "quant" in node.name.lower())


def _findings_table(diagnosis: Diagnosis, show_all: bool) -> str:
    from onnxport.report.formatting import table

    findings = diagnosis.findings
    first = diagnosis.first
    if not findings:
        return "no tensors were compared"
    if show_all or len(findings) <= 12:
        shown = findings
        head = "every compared tensor:"
    else:
        at = findings.index(first) if first is not None else len(findings) - 1
        shown = findings[max(0, at - 4):at + 4]
        head = (f"compared tensors around the first divergence ({len(shown)} of "
                f"{len(findings)}; --all shows every one):")
    rows = []
    for f in shown:
        layer = (f.scope or "(model)") if diagnosis.kind == "export" else f.node.name
        status = ("ok" if f.passed else
                  "FIRST" if f is first else "diverges")
        c = f.comparison
        rows.append([layer, f.node.op_type, _short(f.tensor, 34),
                     "-" if math.isnan(c.max_abs) else f"{c.max_abs:.2e}",
                     "-" if math.isnan(c.cosine) else f"{c.cosine:.6f}", status])
    header = ["layer" if diagnosis.kind == "export" else "node", "op", "tensor",
              "max abs", "cosine", "status"]
    return head + "\n" + "\n".join("  " + line for line in table(header, rows).splitlines())


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _strict(value: Any) -> Any:
    """JSON without NaN/inf literals: they become "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _strict(value.item())
    return value
