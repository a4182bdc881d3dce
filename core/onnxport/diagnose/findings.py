"""What a diagnosis found: the compared tensors, the first that diverges, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onnxport.artifact.writing import strict_json
from onnxport.conversion import OutputComparison
from onnxport.records import Tolerance


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
        return strict_json({
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
