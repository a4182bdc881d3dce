"""The conformance kit (`onnxport.testing`): every built-in plugin passes it, and each
rule it promises to enforce is shown catching a deliberately broken plugin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import onnxport_localdir
import onnxport_onnxsim
import onnxport_providers
import onnxport_quantize
import onnxport_tflite
import onnxport_torch
from onnxport.errors import BadInput
from onnxport.host import hookimpl
from onnxport.records import (Backend, ExportResult, LoadedModel, Pass, PassOutcome,
                              Runner, Target)
from onnxport.testing import (ConformanceError, check_backend, check_pass, check_plugin,
                              fresh_host)

from models import two_heads


# --------------------------------------------------------------------------- built-ins


def test_torch_backend_conforms(tmp_path):
    report = check_backend(onnxport_torch, two_heads(), name="torch", work_dir=tmp_path)
    assert report.ok, report
    assert {"registration", "can-load", "load", "export", "invalid-model", "runner",
            "verification", "bad-input"} <= set(report.passed)
    # the kit really converted: one verified cpu artifact
    assert report.result.passed and [a.target.name for a in report.result.artifacts] == ["cpu"]


@pytest.mark.parametrize("plugin, pass_name", [(onnxport_onnxsim, "simplify"),
                                               (onnxport_quantize, "quantize")])
def test_builtin_passes_conform(plugin, pass_name, tmp_path):
    report = check_pass(plugin, name=plugin.__name__.removeprefix("onnxport_"),
                        work_dir=tmp_path)
    assert report.ok, report
    assert {"pass-outcome", "invalid-model", "verification", "bad-input"} <= set(report.passed)


@pytest.mark.parametrize("plugin", [onnxport_providers, onnxport_tflite, onnxport_localdir])
def test_builtin_registrations_conform(plugin):
    report = check_plugin(plugin, name=plugin.__name__.removeprefix("onnxport_"))
    assert report.ok, report
    assert "disabled-reason" in report.passed


def test_keras_backend_conforms(tmp_path):
    pytest.importorskip("tensorflow")
    import onnxport_keras
    from keras_models import sequential

    model = sequential()
    sample = (model, (np.zeros((2, *model.input_shape[1:]), np.float32),))
    report = check_backend(onnxport_keras, sample, name="keras", work_dir=tmp_path)
    assert report.ok, report
    assert "verification" in report.passed


# --------------------------------------------------------------------------- broken plugins


def _write_relu(path: Path, broken: bool = False) -> None:
    """A valid y = relu(x) model, or one whose node reads a tensor nobody defines."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["undefined" if broken else "x"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


class NumpyRelu:
    """A source 'framework' the tests own: an object with a numpy relu."""

    def __call__(self, x):
        return np.maximum(x, 0)


def _load(request):
    if not isinstance(request.source.value, NumpyRelu):
        raise BadInput(f"{request.source.origin} is not a NumpyRelu")
    if request.input_names and len(request.input_names) != 1:
        raise BadInput("NumpyRelu has one input")
    return LoadedModel(backend="relu", framework="numpy", framework_version=np.__version__,
                       model=request.source.value, input_names=["x"], output_names=["y"],
                       example_inputs={"x": np.ones((2, 4), np.float32)},
                       description="relu")


def _export(loaded, request):
    _write_relu(request.output_path)
    return ExportResult(path=request.output_path, exporter="hand-written", opset=17)


class NumpySession:
    input_names, output_names, providers = ["x"], ["y"], ["numpy"]

    def __init__(self, loaded, options):
        self.model = loaded.model

    def run(self, feeds):
        return {"y": self.model(feeds["x"])}

    def close(self):
        pass


def _relu_backend(**changes) -> Backend:
    fields = dict(name="relu", description="numpy relu", accepts="NumpyRelu objects",
                  can_load=lambda source: isinstance(source.value, NumpyRelu),
                  load=_load, export=_export, runner="numpy-relu")
    fields.update(changes)
    return Backend(**fields)


class ReluPlugin:
    """A complete third-party backend plugin: the backend and its source runner.
    `changes` break the backend in one way per test."""

    def __init__(self, **changes):
        self.changes = changes

    @hookimpl
    def onnxport_register_backends(self, register):
        register(_relu_backend(**self.changes))

    @hookimpl
    def onnxport_register_runners(self, register):
        register(Runner(name="numpy-relu", description="runs NumpyRelu",
                        open=NumpySession))


SAMPLE = (NumpyRelu(), (np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4),))


def test_a_well_behaved_third_party_backend_conforms(tmp_path):
    report = check_backend(ReluPlugin(), SAMPLE, work_dir=tmp_path)
    assert report.ok, report
    assert "verification" in report.passed and report.result.passed


def test_duplicate_names_are_caught():
    class TwoOfOne:
        @hookimpl
        def onnxport_register_backends(self, register):
            register(_relu_backend())
            register(_relu_backend())

    class ClashesWithBuiltin:
        @hookimpl
        def onnxport_register_targets(self, register):
            register(Target(name="cpu", description="my own cpu"))

    twice = check_plugin(TwoOfOne(), name="twice")
    assert twice.rules() == {"duplicate-name"}
    assert "backend 'relu' is registered twice by this plugin" in str(twice)
    clash = check_plugin(ClashesWithBuiltin(), name="clash")
    assert clash.rules() == {"duplicate-name"}
    assert "target 'cpu' is already registered by installed plugin 'providers'" in str(clash)


def test_a_backend_claiming_a_source_it_cannot_load_is_caught(tmp_path):
    report = check_backend(ReluPlugin(can_load=lambda source: True), SAMPLE,
                           work_dir=tmp_path)
    assert "claims-unloadable" in report.rules()
    assert "claims the text file not-a-model.txt but cannot load it" in str(report)


def test_an_export_that_writes_an_invalid_model_is_caught(tmp_path):
    def export_broken(loaded, request):
        _write_relu(request.output_path, broken=True)
        return ExportResult(path=request.output_path, exporter="hand-written", opset=17)

    report = check_backend(ReluPlugin(export=export_broken), SAMPLE, work_dir=tmp_path)
    assert report.rules() == {"invalid-model"}
    assert "exported an invalid ONNX model" in str(report) and "undefined" in str(report)


def test_a_pass_that_writes_an_invalid_model_is_caught(tmp_path):
    def corrupting(context):
        _write_relu(context.output_path, broken=True)
        return PassOutcome(applied=True, path=context.output_path)

    report = check_pass(Pass(name="corrupting", description="breaks models",
                             run=corrupting), work_dir=tmp_path)
    assert "invalid-model" in report.rules()


def test_a_disabled_record_without_a_reason_is_caught():
    report = check_plugin(_relu_backend(enabled=False))
    assert report.rules() == {"disabled-reason"}
    assert "as disabled without a reason" in str(report)
    # with a reason it is fine
    assert check_plugin(_relu_backend(enabled=False, disabled_reason="experimental; "
                                      "enable with --enable relu")).ok


def test_errors_raised_without_the_plugins_name_are_caught(tmp_path):
    def load_bare(request):
        raise ValueError("bad tensor")

    report = check_backend(ReluPlugin(load=load_bare), SAMPLE, work_dir=tmp_path)
    assert "unnamed-error" in report.rules()
    assert "load raised a bare ValueError" in str(report)

    def run_bare(context):
        Path(context.input_path).read_bytes().decode("ascii")  # bare UnicodeDecodeError
        return PassOutcome(applied=False, reason="nothing to do")

    passes = check_pass(Pass(name="fragile", description="d", run=run_bare),
                        work_dir=tmp_path / "pass")
    assert "unnamed-error" in passes.rules()


def test_a_hook_that_raises_is_reported_not_propagated():
    class Exploding:
        @hookimpl
        def onnxport_register_targets(self, register):
            raise RuntimeError("boom")

    report = check_plugin(Exploding(), name="exploding")
    assert report.rules() == {"unnamed-error"}
    assert "onnxport_register_targets raised a bare RuntimeError: boom" in str(report)


def test_raise_for_problems_lists_every_rule():
    report = check_plugin(_relu_backend(enabled=False, name="Bad Name"))
    with pytest.raises(ConformanceError) as caught:
        report.raise_for_problems()
    assert "[name]" in str(caught.value) and "'Bad Name'" in str(caught.value)


# --------------------------------------------------------------------------- fixtures


def test_fresh_host_holds_only_the_selected_builtins(onnxport_host):
    assert set(onnxport_host.infos) == {"core", "providers"}  # core: the commands
    assert set(fresh_host(None).infos) == {"core"}
    with onnxport_host.registered(ReluPlugin(), "relu-plugin"):
        assert onnxport_host.get("backend", "relu").name == "relu"
    assert "relu" not in onnxport_host.registrations("backend")
