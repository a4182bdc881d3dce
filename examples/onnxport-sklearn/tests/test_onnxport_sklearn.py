"""End-to-end tests of the onnxport-sklearn plugin: real fitted models (fixed seeds)
converted through `onnxport.convert` and the `onnxport` command, the ONNX files run in
onnxruntime at other batch sizes than the example's, and the conformance kit.

Needs the plugin installed (`pip install -e examples/onnxport-sklearn`): the CLI finds it
through its entry point. The factories live in sklearn_zoo.py beside this file.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import onnxport
import onnxport_sklearn
import sklearn_zoo
from onnxport.errors import BadInput, ExitCode, ExportFailed
from onnxport.records import Source
from onnxport.testing import check_backend

HERE = Path(__file__).resolve().parent
FAST = {"latency_runs": 0}  # latency figures are not what these tests check


def _run_onnx(path: Path, X: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X.astype(np.float32)})))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ONNXPORT_PLUGINS", "ONNXPORT_ENABLE", "ONNXPORT_TRACE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "onnxport", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- Python API


def test_pipeline_converts_verifies_and_runs_at_another_batch(tmp_path):
    model, X = sklearn_zoo.logistic_pipeline()  # 4 example rows
    result = onnxport.convert(model, X, output=tmp_path / "out", **FAST)

    assert result.passed and result.report["status"] == "passed"
    assert result.exported.exporter == "skl2onnx"
    worst = result.artifacts[0].verification.worst_by_output()
    assert worst["label"].max_abs == 0  # labels match exactly
    assert worst["probabilities"].max_abs < 1e-5
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "passed"
    assert report["source"]["backend"] == "sklearn"

    graph = onnx.load(str(result.model_path)).graph
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in graph.input] == ["batch"]
    assert [o.name for o in graph.output] == ["label", "probabilities"]
    data, _ = sklearn_zoo.classification_data()
    rows = data[100:107]  # 7 real rows: neither the example's 4 nor verification's 1, 3
    got = _run_onnx(result.model_path, rows)
    assert got["label"].dtype == np.int64 and got["probabilities"].dtype == np.float32
    np.testing.assert_array_equal(got["label"], model.predict(rows))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(rows), atol=1e-5)


@pytest.mark.parametrize("factory", ["forest_classifier", "boosting_regressor"])
def test_tree_ensembles_match_scikit_learn(tmp_path, factory):
    made = getattr(sklearn_zoo, factory)()
    model, X = made if isinstance(made, tuple) else (made, None)  # forest: no example
    result = onnxport.convert(model, X, output=tmp_path / "out", **FAST)

    assert result.passed, result.artifacts[0].verification.problem
    rows = np.random.default_rng(1).normal(size=(5, model.n_features_in_)).astype(
        np.float32)
    got = _run_onnx(result.model_path, rows)
    if factory == "forest_classifier":
        np.testing.assert_array_equal(got["label"], model.predict(rows))
        np.testing.assert_allclose(got["probabilities"], model.predict_proba(rows),
                                   atol=1e-5)
    else:  # shaped as predict returns it, not skl2onnx's [N, 1]
        assert got["variable"].shape == (5,)
        np.testing.assert_allclose(got["variable"], model.predict(rows), rtol=1e-4)


def test_string_labels_are_exported_as_indices_into_the_classes(tmp_path):
    data, y = sklearn_zoo.classification_data()
    names = np.array(["cat", "dog", "eel"])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(
        data, names[y])
    result = onnxport.convert(model, data[:2], output=tmp_path / "out", **FAST)

    assert result.passed
    metadata = {p.key: p.value for p in onnx.load(str(result.model_path)).metadata_props}
    classes = json.loads(metadata["onnxport.sklearn.classes"])
    assert classes == ["cat", "dog", "eel"]
    rows = data[:9]
    labels = _run_onnx(result.model_path, rows)["label"]
    np.testing.assert_array_equal(np.array(classes)[labels], model.predict(rows))


def test_names_opset_and_static_batch_are_respected(tmp_path):
    model, X = sklearn_zoo.logistic_pipeline()
    result = onnxport.convert(model, X, output=tmp_path / "out", opset=15,
                              input_names=["features"], output_names=["cls", "proba"],
                              dynamic_batch=False, **FAST)

    assert result.passed
    model_proto = onnx.load(str(result.model_path))
    ai_onnx = {o.domain: o.version for o in model_proto.opset_import}[""]
    assert ai_onnx <= 15
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model_proto.graph.input, *model_proto.graph.output]}
    assert shapes == {"features": [4, 8], "cls": [4], "proba": [4, 3]}


def test_an_opset_past_skl2onnx_is_refused_before_loading(tmp_path):
    model, X = sklearn_zoo.logistic_pipeline()
    with pytest.raises(BadInput) as caught:
        onnxport.convert(model, X, output=tmp_path / "out", opset=40)
    assert "skl2onnx" in caught.value.message
    assert caught.value.hint.startswith("choose an opset from 9 to ")
    assert not (tmp_path / "out").exists()


def test_an_unfitted_model_is_refused_with_a_hint(tmp_path):
    model = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(BadInput) as caught:
        onnxport.convert(model, np.zeros((2, 8)), output=tmp_path / "out")
    assert "not fitted" in caught.value.message
    assert "fit it first" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_an_estimator_skl2onnx_cannot_convert_fails_naming_it(tmp_path):
    data, y = sklearn_zoo.classification_data()
    model = make_pipeline(StandardScaler(), IsotonicRegression()).fit(data[:, :1], y)
    with pytest.raises(ExportFailed) as caught:
        onnxport.convert(model, data[:2, :1], output=tmp_path / "out")
    assert "no converter for IsotonicRegression" in caught.value.message
    assert caught.value.exit_code == ExitCode.EXPORT_FAILED
    assert "update_registered_converter" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_a_trusted_joblib_file_converts(tmp_path):
    model, _ = sklearn_zoo.logistic_pipeline()
    joblib.dump(model, tmp_path / "model.joblib")
    with pytest.raises(BadInput, match="execute code"):
        onnxport.convert(tmp_path / "model.joblib", output=tmp_path / "refused")
    result = onnxport.convert(tmp_path / "model.joblib", output=tmp_path / "out",
                              trust_code=True, **FAST)
    assert result.passed
    assert result.loaded.description == "Pipeline(StandardScaler, LogisticRegression)"
    # checking the artifact again loads the pickle again: the opt-in is asked again
    files_only = _cli("verify", "out", cwd=tmp_path)  # runs nothing the artifact names
    assert files_only.returncode == ExitCode.OK
    assert "numerics were not checked again" in files_only.stdout
    refused = _cli("verify", "out", "--source", "model.joblib", cwd=tmp_path)
    assert refused.returncode == ExitCode.BAD_INPUT and "--trust-code" in refused.stderr
    assert _cli("verify", "out", "--trust-code", cwd=tmp_path).returncode == ExitCode.OK


def test_can_load_claims_only_scikit_learn_sources(tmp_path):
    from sklearn.utils import Bunch

    model, _ = sklearn_zoo.logistic_pipeline()
    (tmp_path / "model.pkl").write_bytes(b"not read by can_load")
    (tmp_path / "notes.txt").write_text("hello")
    claims = onnxport_sklearn.can_load
    assert claims(Source(kind="object", value=model, origin="pipeline"))
    assert claims(Source(kind="path", value=tmp_path / "model.pkl", origin="model.pkl"))
    for foreign in (np.zeros((2, 3)), Bunch(a=1), object(), "text"):
        assert not claims(Source(kind="object", value=foreign, origin="foreign"))
    assert not claims(Source(kind="path", value=tmp_path / "notes.txt", origin="notes"))


def test_importing_and_registering_the_plugin_imports_no_framework():
    code = (
        "import sys\n"
        "from onnxport.host import PluginHost\n"
        "from onnxport.records import Source\n"
        "import onnxport_sklearn\n"
        "host = PluginHost(load_entry_points=False)\n"
        "host.register(onnxport_sklearn, 'sklearn')\n"
        "backend = host.get('backend', 'sklearn')\n"
        "assert not backend.can_load(Source(kind='object', value=[1], origin='x'))\n"
        "heavy = sorted(m for m in ('sklearn', 'skl2onnx', 'onnx', 'onnxruntime', 'torch')"
        " if m in sys.modules)\n"
        "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- conformance


def test_the_conformance_kit_passes(tmp_path):
    unfitted = make_pipeline(StandardScaler(), LogisticRegression())
    report = check_backend(onnxport_sklearn, sklearn_zoo.logistic_pipeline(),
                           work_dir=tmp_path, bad_inputs=[unfitted], **FAST)
    assert report.ok, str(report)
    assert {"load", "export", "invalid-model", "verification", "bad-input",
            "can-load", "runner"} <= set(report.passed), str(report)


# --------------------------------------------------------------------------- command line


def test_cli_converts_a_factory(tmp_path):
    done = _cli("convert", "sklearn_zoo:logistic_pipeline", "-o", "out",
                "--latency-runs", "0", cwd=tmp_path)

    assert done.returncode == ExitCode.OK, done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "passed"
    assert report["source"]["origin"] == "sklearn_zoo:logistic_pipeline"
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert manifest["interface"]["outputs"] == ["label", "probabilities"]
    model, _ = sklearn_zoo.logistic_pipeline()
    rows = sklearn_zoo.classification_data()[0][:6]
    got = _run_onnx(tmp_path / "out" / "cpu" / manifest["model"], rows)
    np.testing.assert_array_equal(got["label"], model.predict(rows))


def test_quantizing_a_tree_ensemble_writes_nothing_outside_the_output(tmp_path):
    """onnxruntime's shape inference drops sym_shape_infer_temp.onnx into the current
    directory for tree ensembles; the quantize pass must keep it in its work dir."""
    done = _cli("convert", "sklearn_zoo:forest_classifier", "-o", "out", "--target",
                "x86-avx2", "--latency-runs", "0", cwd=tmp_path)

    assert done.returncode == ExitCode.OK, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_cli_refuses_a_pickle_without_trust_code(tmp_path):
    model, _ = sklearn_zoo.logistic_pipeline()
    joblib.dump(model, tmp_path / "model.pkl")
    done = _cli("convert", "model.pkl", "-o", "out", cwd=tmp_path)

    assert done.returncode == ExitCode.BAD_INPUT, done.stderr
    message = done.stderr.strip()
    assert "\n" not in message, message
    assert "execute code" in message and "--trust-code" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pkl"]  # nothing written


def test_cli_plugins_json_lists_the_plugin_with_its_version(tmp_path):
    done = _cli("plugins", "--json", cwd=tmp_path)

    assert done.returncode == ExitCode.OK, done.stderr
    listing = json.loads(done.stdout)
    plugin = next(p for p in listing["plugins"] if p["name"] == "sklearn")
    assert plugin["version"] == importlib.metadata.version("onnxport-sklearn") == "0.1.0"
    assert not plugin["builtin"] and plugin["enabled"]
    assert plugin["provides"] == ["backend sklearn", "runner sklearn"]
    backend = next(b for b in listing["backends"] if b["name"] == "sklearn")
    assert backend["enabled"] and backend["plugin"] == "sklearn"


# ------------------------------------------------------------------------- without skl2onnx

_HIDE_SKL2ONNX = ("import sys; sys.modules['skl2onnx'] = None  # find_spec: not installed\n"
                  "from onnxport.cli import main\n"
                  "sys.exit(main(sys.argv[1:]))\n")


def test_without_skl2onnx_the_backend_is_disabled_with_the_install_command(tmp_path):
    done = subprocess.run([sys.executable, "-c", _HIDE_SKL2ONNX, "plugins", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == ExitCode.OK, done.stderr
    backend = next(b for b in json.loads(done.stdout)["backends"]
                   if b["name"] == "sklearn")
    assert not backend["enabled"]
    assert backend["reason"] == ("needs skl2onnx, which is not installed: "
                                 "pip install 'onnxport-sklearn'")


def test_without_skl2onnx_converting_says_how_to_install_it(tmp_path):
    model, _ = sklearn_zoo.logistic_pipeline()
    joblib.dump(model, tmp_path / "model.pkl")
    # --in-process: skl2onnx is hidden in this process only, a worker would have it
    done = subprocess.run([sys.executable, "-c", _HIDE_SKL2ONNX, "convert", "model.pkl",
                           "-o", "out", "--trust-code", "--in-process"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == ExitCode.MISSING_DEPENDENCY, done.stderr
    assert "pip install 'onnxport-sklearn'" in done.stderr
