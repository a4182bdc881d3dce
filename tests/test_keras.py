"""Keras 3 through tf2onnx, end to end: the autopilot .keras file (LSTM + BatchNorm, a
custom loss) from the CLI into an environment without TensorFlow, every kind of Keras
model with the user's names, SavedModel directories, every bad input of the issue, and
the promise that TensorFlow is imported only for Keras sources.

Real TensorFlow, Keras, tf2onnx and onnxruntime throughout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import onnxport
from onnxport.errors import ExitCode, ExportFailed

from conftest import (ROOT, ZOO, assert_untouched, factory, onnxport_without_frameworks,
                      zoo_module)

KERAS_MODELS = ROOT / "tests" / "keras_models.py"


def keras_factory(name: str) -> str:
    return f"{KERAS_MODELS}:{name}"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Real files of each kind, good and broken, made with Keras and TensorFlow."""
    import tensorflow as tf

    import keras_models as models

    root = tmp_path_factory.mktemp("keras")
    autopilot = zoo_module("autopilot_keras").save(root, epochs=0)  # compiled, untrained
    models.with_custom_layer().save(root / "custom.keras")
    models.with_lambda().save(root / "lambda.keras")
    unnamed, example = models.unnamed_sequential()
    unnamed(example)
    unnamed.save(root / "unnamed.keras")
    models.functional().export(str(root / "exported"), verbose=False)
    tf.saved_model.save(tf.Module(), str(root / "no_signature"))
    (root / "notes.keras").write_text("these are notes, not a model\n")
    data = autopilot.read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(root / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "a zip, but not a Keras model")
    (root / "legacy.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    return root


def onnx_model(out: Path):
    import onnx

    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    return manifest, onnx.load(str(out / "cpu" / manifest["model"]))


def interface(model) -> tuple[list[str], list[str]]:
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output]


# ----------------------------------------------------------------------------- autopilot


@pytest.fixture(scope="module")
def runtime_only(tmp_path_factory) -> Path:
    """A real Python environment with onnxruntime and numpy, and no TensorFlow: links to
    the installed packages, used with `python -S` so site-packages is not on the path."""
    import numpy
    import onnxruntime

    root = tmp_path_factory.mktemp("runtime_only")
    for module in (numpy, onnxruntime):
        package = Path(module.__file__).parent
        (root / package.name).symlink_to(package)
        libs = package.with_name(package.name + ".libs")
        if libs.exists():
            (root / libs.name).symlink_to(libs)
    return root


RUN_ONNX = """
import importlib.util, json, sys
sys.path[:0] = [{root!r}]
assert importlib.util.find_spec("tensorflow") is None, "tensorflow is importable"
assert importlib.util.find_spec("keras") is None, "keras is importable"
import numpy as np, onnxruntime as ort
session = ort.InferenceSession({model!r}, providers=["CPUExecutionProvider"])
sensors = np.load({inputs!r})
(rudder,) = session.run(["rudder"], {{"sensors": sensors}})
print(json.dumps({{"rudder": rudder.tolist(), "tensorflow": "tensorflow" in sys.modules}}))
"""


def test_autopilot_keras_file_converts_verifies_and_runs_without_tensorflow(
        cli, files, tmp_path, runtime_only):
    import keras

    out = tmp_path / "autopilot"
    source = files / "autopilot_keras.keras"
    result = cli("convert", source, "-o", out, "--latency-runs", "3")
    assert result.code == 0, result.err
    assert "PASS" in result.out
    manifest, model = onnx_model(out)
    assert interface(model) == (["sensors"], ["rudder"])
    assert manifest["source"]["backend"] == "keras"
    assert manifest["source"]["exporter"] == "tf2onnx"
    verification = manifest["verification"]
    assert verification["passed"]
    assert [b["label"] for b in verification["batches"]] == ["batch 1", "batch 3"]
    assert verification["max_abs"] <= 1e-5
    # the LSTMs are ONNX LSTM ops: no unrolled loop, no TensorFlow op left
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("LSTM") == 2
    assert not {"Loop", "Scan", "CudnnRNNV3"} & set(ops)
    assert {node.domain for node in model.graph.node} <= {""}
    assert model.producer_name == "tf2onnx"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 20, 25]

    # the artifact runs where only onnxruntime and numpy are installed
    sensors = np.random.default_rng(7).uniform(-1, 1, (4, 20, 25)).astype(np.float32)
    np.save(tmp_path / "sensors.npy", sensors)
    code = RUN_ONNX.format(root=str(runtime_only),
                           model=str(out / "cpu" / manifest["model"]),
                           inputs=str(tmp_path / "sensors.npy"))
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tensorflow"] is False
    expected = keras.saving.load_model(source, compile=False)(sensors, training=False)
    np.testing.assert_allclose(np.array(answer["rudder"]), np.asarray(expected), atol=1e-5)


def test_the_custom_loss_is_needed_by_keras_not_by_the_conversion(cli, files, tmp_path):
    source = files / "autopilot_keras.keras"
    # in a fresh process, plain Keras cannot load the file without autopilot_loss ...
    check = ("import keras\n"
             f"try:\n    keras.models.load_model({str(source)!r})\n"
             "except Exception as exc:\n    print('FAILED', exc)\n"
             "else:\n    print('LOADED')")
    plain = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert "FAILED" in plain.stdout and "autopilot_loss" in plain.stdout, plain.stdout
    # ... onnxport loads it for inference (compile=False) and takes the object if given
    out = tmp_path / "with-loss"
    result = cli("convert", source, "-o", out, "--latency-runs", "0", "--custom-object",
                 f"{ZOO / 'autopilot_keras.py'}:autopilot_loss")
    assert result.code == 0, result.err
    manifest, _ = onnx_model(out)
    assert manifest["source"]["load_options"]["custom_objects"] == [
        f"{ZOO / 'autopilot_keras.py'}:autopilot_loss"]
    again = cli("verify", out, "--trust-code")  # the .keras file the manifest names
    assert again.code == 0 and "cpu: PASS" in again.out, again.err + again.out


@pytest.mark.parametrize("source, inputs, outputs", [
    (factory("autopilot_keras"), ["sensors"], ["rudder"]),
    (factory("planner_keras"), ["costmap_input", "robot_state_input",
                                "goal_relative_input", "costmap_metadata_input"],
     ["output", "collision_risk"]),
    (keras_factory("sequential"), ["features"], ["score"]),
    (keras_factory("subclassed"), ["signal", "context"], ["mean", "log_var"]),
], ids=["autopilot_keras", "planner_keras", "sequential", "subclassed"])
def test_factories_convert_from_the_cli(cli, tmp_path, source, inputs, outputs):
    out = tmp_path / "out"
    result = cli("convert", source, "-o", out, "--latency-runs", "0")
    assert result.code == 0, result.err
    manifest, model = onnx_model(out)
    assert interface(model) == (inputs, outputs)
    assert manifest["verification"]["max_abs"] <= 1e-5
    assert [b["label"] for b in manifest["verification"]["batches"]] == [
        "batch 1", "batch 3"]
    assert all(isinstance(t["shape"][0], str) for t in
               manifest["onnx"]["inputs"] + manifest["onnx"]["outputs"])


# ----------------------------------------------------------------------------- model kinds


@pytest.mark.parametrize("name, inputs, outputs", [
    ("sequential", ["features"], ["score"]),
    ("functional", ["left", "right"], ["probs", "score"]),
    ("functional_dict", ["image", "meta"], ["zeta", "alpha"]),  # the dicts' own order
    ("subclassed", ["signal", "context"], ["mean", "log_var"]),
    ("subclassed_tensor", ["waveform"], ["output"]),  # call(self, waveform)
    ("unnamed_sequential", ["inputs"], ["dense_1"]),
])
def test_every_kind_of_keras_model_keeps_the_users_names(tmp_path, name, inputs, outputs):
    import keras_models as models

    made = getattr(models, name)()
    model, example = made if isinstance(made, tuple) else (made, None)
    if name == "unnamed_sequential":
        outputs = [model.layers[-1].name]  # Keras' own name for the last layer
    result = onnxport.convert(model, example, output=tmp_path / name, latency_runs=0)
    assert result.passed
    assert (result.loaded.input_names, result.loaded.output_names) == (inputs, outputs)
    _, onnx = onnx_model(tmp_path / name)
    assert interface(onnx) == (inputs, outputs)
    verification = result.artifacts[0].verification
    assert verification.max_abs <= 1e-5
    assert [b.label for b in verification.batches] == ["batch 1", "batch 3"]


def test_names_are_stable_from_run_to_run(cli, files, tmp_path):
    # a model whose layers Keras named itself (a process-wide counter in memory); its
    # .keras file keeps the names, so every conversion of the file gives the same ones
    seen = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        assert cli("convert", files / "unnamed.keras", "-o", out,
                   "--latency-runs", "0").code == 0
        seen.append(interface(onnx_model(out)[1]))
    import keras

    saved = keras.saving.load_model(files / "unnamed.keras", compile=False)
    assert seen[0] == seen[1] == (["input_layer"], [saved.layers[-1].name])


def test_renames_and_a_static_batch(tmp_path):
    import keras_models as models

    result = onnxport.convert(models.functional(), output=tmp_path / "static",
                              input_names=["a", "b"], output_names=["p", "s"],
                              dynamic_batch=False, latency_runs=0)
    assert result.passed
    _, model = onnx_model(tmp_path / "static")
    assert interface(model) == (["a", "b"], ["p", "s"])
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


def test_exported_saved_model_directory_converts(cli, files, tmp_path):
    out = tmp_path / "saved"
    result = cli("convert", files / "exported", "-o", out, "--latency-runs", "0")
    assert result.code == 0, result.err
    manifest, model = onnx_model(out)
    # a SavedModel's names are its serving signature's: the Input names, output_N
    assert interface(model) == (["left", "right"], ["output_0", "output_1"])
    assert manifest["source"]["details"]["signature"] == "serving_default"
    assert manifest["verification"]["max_abs"] <= 1e-5


# ----------------------------------------------------------------------------- bad input

CASES = {
    "not a zip": (["{root}/notes.keras"], ExitCode.BAD_INPUT,
                  "notes.keras is not a Keras .keras file: it is not a zip archive "
                  "(truncated or corrupt?)"),
    "truncated": (["{root}/truncated.keras"], ExitCode.BAD_INPUT,
                  "truncated.keras is not a Keras .keras file: it is not a zip archive"),
    "zip without config": (["{root}/other.keras"], ExitCode.BAD_INPUT,
                           "other.keras is a zip archive but not a Keras .keras file "
                           "(it has no config.json)"),
    "custom object missing": (["{root}/custom.keras"], ExitCode.BAD_INPUT,
                              "custom.keras uses the custom class 'Scale', which was not "
                              "given: pass --custom-object MODULE:Scale"),
    "lambda under safe mode": (["{root}/lambda.keras"], ExitCode.BAD_INPUT,
                               "Keras safe mode refuses: if you made the file yourself or "
                               "fully trust it, pass --trust-code"),
    "no serving signature": (["{root}/no_signature"], ExitCode.BAD_INPUT,
                             "no_signature is a SavedModel without a 'serving_default' "
                             "signature (it has no signatures): export the Keras model "
                             "with model.export(path)"),
    "legacy h5": (["{root}/legacy.h5"], ExitCode.BAD_INPUT,
                  "legacy.h5 is a legacy HDF5 Keras file"),
    "opset above tf2onnx": (["{root}/autopilot_keras.keras", "--opset", "19"],
                            ExitCode.BAD_INPUT,
                            "opset 19 cannot be produced by the keras backend's tf2onnx "
                            "exporter: choose an opset from 14 to 18"),
    "wrong input name": (["{root}/autopilot_keras.keras", "--input", "sensor:2x20x25"],
                         ExitCode.BAD_INPUT, "input 'sensor' is not an input of "
                                             "Functional 'autopilot_lstm'"),
    "custom object not found": (["{root}/custom.keras", "--custom-object",
                                 "tests/keras_models.py:Nope"], ExitCode.BAD_INPUT,
                                "--custom-object tests/keras_models.py:Nope: "
                                "tests/keras_models.py has no 'Nope'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line(cli, files, tmp_path, case, monkeypatch):
    monkeypatch.chdir(ROOT)
    args, code, message = CASES[case]
    out = tmp_path / "out"
    result = cli("convert", *[a.format(root=files) for a in args], "-o", out)
    assert result.code == code, result.err
    assert message in result.err
    assert result.err.startswith("onnxport: error: ") and result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert_untouched(out)


def test_given_the_custom_object_it_converts(cli, files, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "custom"
    result = cli("convert", files / "custom.keras", "-o", out, "--latency-runs", "0",
                 "--custom-object", "tests/keras_models.py:Scale")
    assert result.code == 0, result.err
    assert interface(onnx_model(out)[1]) == (["x"], ["scaled"])
    # from Python, as a dict name -> object; the manifest records where it came from
    import keras_models as models

    result = onnxport.convert(files / "custom.keras", output=tmp_path / "api",
                              custom_objects={"Scale": models.Scale}, latency_runs=0)
    assert result.passed
    manifest, _ = onnx_model(tmp_path / "api")
    assert manifest["source"]["load_options"]["custom_objects"] == ["keras_models:Scale"]


def test_trust_code_turns_safe_mode_off(cli, files, tmp_path):
    out = tmp_path / "lambda"
    result = cli("convert", files / "lambda.keras", "-o", out, "--latency-runs", "0",
                 "--trust-code")
    assert result.code == 0, result.err
    manifest, model = onnx_model(out)
    assert interface(model) == (["x"], ["affine"])
    assert manifest["source"]["details"]["safe_mode"] is False


def test_unsupported_tensorflow_ops_are_named(tmp_path):
    import keras_models as models

    with pytest.raises(ExportFailed) as failure:
        onnxport.convert(models.unsupported_op(), output=tmp_path / "out")
    assert "tf2onnx has no ONNX conversion at opset 17 for the TensorFlow op(s) Lgamma" \
        in failure.value.one_line()
    assert_untouched(tmp_path / "out")


# ----------------------------------------------------------------------------- TensorFlow


@pytest.fixture(scope="module")
def tensorflowless(tmp_path_factory) -> Path:
    """A real Python environment that has onnxport, its plugins, pluggy and numpy, and
    no TensorFlow (nor Keras, tf2onnx, torch): links used with `python -S`."""
    return onnxport_without_frameworks(tmp_path_factory.mktemp("tensorflowless"))


def _run_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.path[:0] = [{str(root)!r}]\n"
            "import importlib.util\n"
            "assert importlib.util.find_spec('tensorflow') is None\n"
            "from onnxport.cli import main\n"
            f"raise SystemExit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                          text=True, cwd=ROOT)


def test_tensorflow_not_installed_says_which_extra(tensorflowless, files, tmp_path):
    listing = _run_in(tensorflowless, "plugins")
    assert listing.returncode == 0, listing.stderr
    keras_row = next(line for line in listing.stdout.splitlines()
                     if line.split()[:2] == ["backend", "keras"])
    assert "DISABLED: needs tensorflow" in keras_row
    assert "pip install 'onnxport[keras]'" in keras_row

    out = tmp_path / "out"
    done = _run_in(tensorflowless, "convert", str(files / "autopilot_keras.keras"),
                   "-o", str(out))
    assert done.returncode == ExitCode.MISSING_DEPENDENCY, done.stderr
    assert done.stderr.strip() == (
        "onnxport: error: tensorflow is not installed, and the keras backend needs it: "
        "pip install 'onnxport[keras]'")
    assert_untouched(out)


def test_a_torch_conversion_never_imports_tensorflow(tmp_path):
    code = ("import sys\nfrom onnxport.cli import main\n"
            f"code = main(['convert', {factory('autopilot_torch')!r}, '-o', "
            f"{str(tmp_path / 'torch')!r}, '--latency-runs', '0', '--exporter', "
            "'torchscript', '--opset', '14'])\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
            "print('CODE', code, 'HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert "CODE 0 HEAVY []" in done.stdout, done.stdout + done.stderr


def test_the_numpy2_alias_for_tf2onnx_lives_only_during_a_conversion():
    from onnxport_keras.tfenv import numpy2_aliases

    assert not hasattr(np, "product")  # removed in numpy 2; tf2onnx 1.17 still calls it
    with numpy2_aliases():
        assert np.product is np.prod
    assert not hasattr(np, "product")
