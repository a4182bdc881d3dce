"""`onnxport diagnose` and `convert --diagnose` locate the first node whose output
diverges, for a failure a pass introduced (compared with the ONNX model the pass started
from) and for one the export introduced (compared with the torch model, layer by layer).
Every model here fails for a real reason; see tests/broken_models.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import onnxport
from onnxport.cli import main
from onnxport.diagnose import diagnose_conversion
from onnxport.errors import ExitCode, VerificationFailed
from onnxport.host import PluginHost, hookimpl
from onnxport.records import Pass, PassOutcome, Target

from conftest import ROOT, CliResult

MODELS = ROOT / "tests" / "models.py"
BROKEN = ROOT / "tests" / "broken_models.py"


def scopes_of(model_path: Path, node_name: str) -> list[str]:
    """The module paths the dynamo exporter recorded on a node."""
    import onnx

    node = next(n for n in onnx.load(str(model_path)).graph.node if n.name == node_name)
    meta = {p.key: p.value for p in node.metadata_props}
    return ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])[:-1]


def run_cli(capsys, host, *args) -> CliResult:
    code = main([str(a) for a in args], host=host)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


# ----------------------------------------------------------------------------- passes


def scale_one_weight(context):
    """A broken pass: scales one layer's weight matrix (b, the second Linear of
    TwoHeads), as an optimiser with a bug in one rewrite would."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(context.input_path))
    for index, init in enumerate(model.graph.initializer):
        if init.name == "b.weight":
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    onnx.save(model, str(context.output_path))
    return PassOutcome(applied=True, path=context.output_path)


def rename_and_scale(context):
    """The same bug in a pass that also renames every intermediate tensor (as a
    simplifier does), keeping node names."""
    import onnx

    scale_one_weight(context)
    model = onnx.load(str(context.output_path))
    outputs = {o.name for o in model.graph.output}
    renamed = {o: f"{o}__opt" for n in model.graph.node for o in n.output
               if o and o not in outputs}
    for node in model.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
        node.output[:] = [renamed.get(o, o) for o in node.output]
    del model.graph.value_info[:]
    onnx.save(model, str(context.output_path))
    return PassOutcome(applied=True, path=context.output_path)


def int8(context):
    """Dynamic INT8 of every MatMul/Gemm, per tensor, held to the target's INT8 budget.
    7-bit weights, so that no layer saturates on an x86 CPU without VNNI: only fc2's
    outlier breaks, on every machine."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(context.input_path), str(context.output_path),
                     op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                     reduce_range=True)
    return PassOutcome(applied=True, path=context.output_path,
                       tolerance=context.target.quantized_tolerance)


class BrokenPasses:
    @hookimpl
    def onnxport_register_passes(self, register):
        register(Pass(name="scale-b", description="scales b.weight", run=scale_one_weight))
        register(Pass(name="rename-scale-b", description="renames, scales b.weight",
                      run=rename_and_scale))
        register(Pass(name="int8", description="per-tensor dynamic INT8", run=int8))

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name="edge", description="a broken optimiser", passes=("scale-b",)))
        register(Target(name="edge-renamed", description="renames too",
                        passes=("rename-scale-b",)))
        register(Target(name="edge-int8", description="INT8", passes=("int8",)))


@pytest.fixture
def host():
    host = PluginHost()
    with host.registered(BrokenPasses(), "broken-passes"):
        yield host


def test_a_pass_that_breaks_one_layer_is_diagnosed_to_its_node(host, tmp_path, capsys):
    with pytest.raises(VerificationFailed) as failure:
        onnxport.convert(f"{MODELS}:two_heads", output=tmp_path / "out", targets=["edge"],
                         latency_runs=0, host=host, keep_failed=True)
    result = failure.value.result
    (diagnosis,) = diagnose_conversion(result, host)
    assert diagnosis.kind == "pass" and diagnosis.stage == "scale-b"
    first = diagnosis.first
    assert first is not None and first.node.op_type == "Gemm"
    assert "b.weight" in [name for name, _, _ in first.node.inputs]
    assert [shape for name, shape, _ in first.node.inputs if name == "b.weight"] == [[3, 5]]
    assert all(f.passed for f in diagnosis.findings[:diagnosis.findings.index(first)])
    assert diagnosis.outputs_diverge and diagnosis.counts["renamed"] == 0
    assert "a.weight" in [n for f in diagnosis.findings if f.passed
                          for n, _, _ in f.node.inputs]  # the first layer was compared

    # The kept DIR.failed diagnosed again from the command line: the pass is run again
    # on the model it started from, which the failed candidate keeps.
    kept = tmp_path / "out.failed"
    done = run_cli(capsys, host, "diagnose", kept)
    assert done.code == ExitCode.VERIFICATION_FAILED, done.err
    assert f"first divergence: node {first.node.name} (Gemm)" in done.out
    assert "b.weight: float32[3, 5]" in done.out
    assert "keep node" in done.out and "FIRST" in done.out


def test_renamed_tensors_are_matched_through_their_nodes(host, tmp_path):
    with pytest.raises(VerificationFailed) as failure:
        onnxport.convert(f"{MODELS}:two_heads", output=tmp_path / "out",
                         targets=["edge-renamed"], latency_runs=0, host=host,
                         keep_failed=True)
    (diagnosis,) = diagnose_conversion(failure.value.result, host)
    first = diagnosis.first
    assert "b.weight" in [name for name, _, _ in first.node.inputs]
    assert first.matched_by == "node" and first.tensor == f"{first.reference_tensor}__opt"
    assert diagnosis.counts["renamed"] >= 2
    assert diagnosis.counts["only_in_reference"] == 0


def test_int8_on_a_sensitive_layer_is_diagnosed_to_that_layer(host, tmp_path, capsys):
    out = tmp_path / "mlp"
    done = run_cli(capsys, host, "convert", f"{BROKEN}:sensitive_mlp", "-o", out,
                   "--target", "edge-int8", "--latency-runs", "0", "--diagnose")
    assert done.code == ExitCode.VERIFICATION_FAILED
    assert "cosine similarity" in done.err  # the INT8 budget failed
    kept = tmp_path / "mlp.failed"
    data = json.loads((kept / "diagnosis.json").read_text())
    (diagnosis,) = data
    first = diagnosis["first_divergence"]
    assert diagnosis["stage"] == "int8" and first["node"]["op_type"] == "MatMul"
    # the node INT8 broke is fc2's MatMul (the exporter recorded the module on the node):
    # fc1 before it quantized within budget.
    fp32 = kept / "edge-int8" / "sensitive_mlp.onnx"
    assert scopes_of(fp32, first["node"]["name"]) == ["", "fc2"]
    passed = [f["node"]["name"] for f in diagnosis["findings"] if f["passed"]]
    assert any("fc1" in scopes_of(fp32, name) for name in passed)
    assert first["candidate_node"]["op_type"] != "MatMul"  # it became integer ops
    assert (kept / "diagnose").is_dir() and diagnosis["kept"]
    assert f"first divergence: node {first['node']['name']} (MatMul)" in done.out
    assert f"nodes_to_exclude=['{first['node']['name']}']" in done.out


# ----------------------------------------------------------------------------- export


def test_a_layer_the_exporter_translates_wrongly_is_diagnosed(cli, tmp_path):
    # TorchScript drops nn.Softplus's threshold (ONNX Softplus has none): head.1 is off.
    out = tmp_path / "sp"
    done = cli("convert", f"{BROKEN}:softplus_head", "-o", out, "--exporter", "torchscript",
               "--latency-runs", "0", "--diagnose")
    assert done.code == ExitCode.VERIFICATION_FAILED
    assert "first divergence: layer 'head.1' (torch.nn.Softplus), ONNX node " \
           "/head/head.1/Softplus (Softplus)" in done.out
    assert "export with --exporter dynamo" in done.out
    for line in done.out[done.out.index("diagnosis: "):].splitlines():
        assert len(line) <= 100 or " " not in line.strip(), line  # a long path aside

    # again from the kept directory: the source the manifest names runs only when asked
    refused = cli("diagnose", tmp_path / "sp.failed")
    assert refused.code == ExitCode.BAD_INPUT and "--trust-code" in refused.err
    again = cli("diagnose", tmp_path / "sp.failed", "--json", "--trust-code")
    assert again.code == ExitCode.VERIFICATION_FAILED
    (data,) = json.loads(again.out)["diagnoses"]
    first = data["first_divergence"]
    assert data["kind"] == "export" and first["scope"] == "head.1"
    assert first["node"]["inputs"][0]["shape"] == [1, 8]
    before = data["findings"][:[f["scope"] for f in data["findings"]].index("head.1")]
    assert [f["scope"] for f in before] == ["encoder.0", "encoder.1", "encoder.2",
                                           "encoder", "head.0"]
    assert all(f["passed"] for f in before)

    # the dynamo exporter keeps the threshold: nothing diverges
    assert cli("convert", f"{BROKEN}:softplus_head", "-o", tmp_path / "ok",
               "--latency-runs", "0").code == 0
    clean = cli("diagnose", tmp_path / "ok", "--json", "--trust-code")
    assert clean.code == ExitCode.OK
    assert json.loads(clean.out)["diagnoses"][0]["first_divergence"] is None


def tanh_gelu(x, approximate: str = "none"):
    """A deliberately wrong translation of aten.gelu: the tanh approximation where the
    model asked for the exact (erf) form; off by up to ~2e-4."""
    from onnxscript import opset18 as op

    inner = op.Mul(op.Add(x, op.Mul(op.Mul(op.Mul(x, x), x), 0.044715)), 0.7978845608)
    return op.Mul(op.Mul(x, 0.5), op.Add(op.Tanh(inner), 1.0))


def test_the_dynamo_exporters_node_scopes_lead_to_the_layer(cli, tmp_path):
    import torch

    from broken_models import gelu_block

    model, inputs, names = gelu_block()
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    program = torch.onnx.export(
        model, (inputs["x"],), dynamo=True, input_names=["x"], output_names=names,
        dynamic_shapes=({0: batch},), verbose=False,
        custom_translation_table={torch.ops.aten.gelu.default: tanh_gelu})
    path = tmp_path / "gelu.onnx"
    program.save(str(path))

    done = cli("diagnose", path, "--source", f"{BROKEN}:gelu_block", "--json")
    assert done.code == ExitCode.VERIFICATION_FAILED, done.err
    (data,) = json.loads(done.out)["diagnoses"]
    first = data["first_divergence"]
    assert first["scope"] == "blocks.0.1" and first["description"] == "torch.nn.GELU"
    assert "blocks.0.1" in scopes_of(path, first["node"]["name"])
    scopes = [f["scope"] for f in data["findings"]]
    before = data["findings"][:scopes.index("blocks.0.1")]
    assert [f["scope"] for f in before] == ["stem", "blocks.0.0"]
    assert all(f["passed"] for f in before) and data["outputs_diverge"]
    assert len(first["layer_nodes"]) > 1  # the whole tanh formula belongs to the layer
    assert first["node"]["inputs"][0]["shape"] == [1, 24]  # what enters the layer

    text = cli("diagnose", path, "--source", f"{BROKEN}:gelu_block", "--batch", "2")
    assert "first divergence: layer 'blocks.0.1' (torch.nn.GELU)" in text.out
    assert "batch 2 (seed 0): x float32[2, 12]" in text.out


def test_what_diagnose_cannot_compare_is_said(cli, tmp_path):
    model = tmp_path / "m.onnx"
    assert cli("convert", f"{MODELS}:two_heads", "-o", tmp_path / "a",
               "--latency-runs", "0").code == 0
    model.write_bytes((tmp_path / "a" / "cpu" / "two_heads.onnx").read_bytes())
    alone = cli("diagnose", model)
    assert alone.code == ExitCode.BAD_INPUT and "--reference" in alone.err
    same = cli("diagnose", model, "--reference", model)
    assert same.code == ExitCode.OK and "no compared tensor diverges" in same.out
    assert cli("diagnose", tmp_path / "a", "--target", "gpu").code == ExitCode.BAD_INPUT
    # a frozen batch fails a structural check: there are no numbers to trace
    frozen = cli("convert", f"{MODELS}:fixed_batch", "-o", tmp_path / "fb", "--diagnose",
                 "--exporter", "dynamo",
                 "--latency-runs", "0")
    assert frozen.code == ExitCode.VERIFICATION_FAILED
    assert "failed a check before any output was compared" in frozen.out
    assert "froze the batch dimension" in frozen.out
