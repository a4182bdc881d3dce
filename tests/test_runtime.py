"""The deployment runtime (onnxport.runtime): real artifacts converted here, run with
onnxruntime, compared with onnxruntime itself; every bad input and every damaged artifact;
streaming; and a fresh virtual environment holding only `onnxport[runtime]`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnxport
from onnxport.runtime import (ArtifactError, ArtifactNotFound, InferenceModel, InputError,
                              IntegrityError, RunFailed, StreamingWindow)

from conftest import ROOT, factory, run_process, zoo_module

# Modules `import onnxport.runtime` must not bring in (top-level names).
FORBIDDEN = ("torch", "tensorflow", "keras", "onnx", "onnxscript", "tf2onnx", "pluggy",
             "onnxport_torch", "onnxport_keras", "onnxport_providers", "onnxport_tflite")
FORBIDDEN_ONNXPORT = ("onnxport.host", "onnxport.records", "onnxport.cli", "onnxport.api",
                      "onnxport.flow.pipeline", "onnxport.flow.verification")
# Distributions the runtime install must not hold.
HEAVY = {"torch", "tensorflow", "tensorflow-cpu", "keras", "onnx", "onnxscript", "tf2onnx",
         "tensorboard", "jax"}
IMPORT_PROBE = (
    "import json, sys; import onnxport.runtime; "
    "print(json.dumps(sorted(m for m in sys.modules)))")


def forbidden_in(modules: list[str]) -> list[str]:
    return sorted(m for m in modules
                  if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN_ONNXPORT)


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    """The PyTorch autopilot, converted once (dynamo, dynamic batch, target cpu)."""
    out = tmp_path_factory.mktemp("runtime") / "autopilot"
    onnxport.convert(f"{ROOT}/examples/zoo/autopilot_torch.py:build", output=out,
                     latency_runs=0)
    return out


def keras_backend_missing() -> str | None:
    """Why the keras backend cannot convert here, or None if it can."""
    from onnxport.host import PluginHost

    entry = PluginHost().registrations("backend").get("keras")
    if entry is None:
        return ("the keras backend is not installed (no 'keras' plugin in the onnxport "
                "entry point group)")
    if entry.missing:
        return (f"the keras backend is not installed: {', '.join(entry.missing)} missing "
                "(pip install 'onnxport[keras]')")
    return None


@pytest.fixture(scope="session")
def keras_artifact(tmp_path_factory) -> Path:
    """The Keras autopilot, converted by the real CLI in its own process (TensorFlow stays
    out of this one). Skipped only when the keras backend is not installed."""
    reason = keras_backend_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("runtime-keras") / "autopilot"
    result = run_process("convert", factory("autopilot_keras"), "-o", out,
                         "--latency-runs", "0")
    assert result.code == 0, result.err
    return out


@pytest.fixture(scope="module")
def model(artifact) -> InferenceModel:
    return InferenceModel(artifact)


@pytest.fixture(scope="module")
def session(artifact) -> ort.InferenceSession:
    """onnxruntime itself on the same file: the reference."""
    return ort.InferenceSession(str(next((artifact / "cpu").glob("*.onnx"))),
                                providers=["CPUExecutionProvider"])


def windows(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 20, 25)).astype(np.float32)


def copy_target(artifact: Path, to: Path) -> Path:
    """A copy of the artifact's cpu target directory, to damage."""
    shutil.copytree(artifact / "cpu", to)
    return to


def edit_manifest(directory: Path, **target) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["target"].update(target)
    path.write_text(json.dumps(manifest))


# ------------------------------------------------------------------------- loading


def test_loads_the_artifact_its_target_directory_and_its_model_file(artifact):
    onnx_file = next((artifact / "cpu").glob("*.onnx"))
    for path in (artifact, str(artifact), artifact / "cpu", artifact / "cpu" / "manifest.json",
                 onnx_file):
        loaded = InferenceModel(path)
        assert loaded.path == onnx_file
        assert loaded.target == "cpu"
        assert loaded.manifest["interface"]["inputs"] == ["sensors"]
        assert loaded.checked == [onnx_file.name]  # sha256 checked by default
        assert loaded.providers == ["CPUExecutionProvider"]
        assert loaded.requested_providers == ["CPUExecutionProvider"]
        assert loaded.fallback == ""
    assert [(s.name, str(s), s.batched) for s in loaded.inputs] == [
        ("sensors", "float32[batch, 20, 25]", True)]
    assert [(s.name, str(s)) for s in loaded.outputs] == [("rudder", "float32[batch, 1]")]
    assert loaded.input_names == ["sensors"] and loaded.output_names == ["rudder"]
    assert "sensors float32[batch, 20, 25] -> rudder float32[batch, 1]" in repr(loaded)


def test_a_bare_onnx_file_runs_without_a_manifest(artifact, model, tmp_path):
    bare = tmp_path / "autopilot.onnx"
    shutil.copy(model.path, bare)
    loaded = InferenceModel(bare)
    assert loaded.manifest is None and loaded.target is None and loaded.checked == []
    x = windows(2)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_the_session_gets_the_targets_options_and_the_threads(artifact, tmp_path):
    loaded = InferenceModel(artifact, threads=1)
    options = loaded.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    target = copy_target(artifact, tmp_path / "cpu")
    edit_manifest(target, graph_optimization_level="basic")
    loaded = InferenceModel(target)
    assert loaded.graph_optimization_level == "basic"
    assert (loaded.session.get_session_options().graph_optimization_level
            == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)
    loaded = InferenceModel(target, graph_optimization_level="disable")
    assert (loaded.session.get_session_options().graph_optimization_level
            == ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


def test_several_targets_need_a_choice_and_unavailable_providers_fall_back(artifact,
                                                                          tmp_path):
    out = tmp_path / "out"
    copy_target(artifact, out / "cpu")
    copy_target(artifact, out / "arm64")
    edit_manifest(out / "arm64", name="arm64",
                  providers=["XnnpackExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ArtifactError, match=re.escape(
            f"{out} holds 2 targets (arm64, cpu): choose one with target=")):
        InferenceModel(out)
    with pytest.raises(ArtifactError, match=re.escape(f"{out} has no target 'rpi4': its "
                                                      "targets are: arm64, cpu")):
        InferenceModel(out, target="rpi4")
    assert InferenceModel(out, target="cpu").target == "cpu"

    arm = InferenceModel(out, target="arm64")
    assert arm.requested_providers[0] == "XnnpackExecutionProvider"
    assert arm.providers == arm.session.get_providers()
    if "XnnpackExecutionProvider" not in ort.get_available_providers():
        assert arm.providers == ["CPUExecutionProvider"]
        assert arm.fallback == ("asked XnnpackExecutionProvider, running on "
                                "CPUExecutionProvider: XnnpackExecutionProvider is not "
                                "available in this onnxruntime build")
        edit_manifest(out / "arm64", allow_fallback=False)
        with pytest.raises(ArtifactError, match="target 'arm64' requires "
                                                "XnnpackExecutionProvider, which this "
                                                "onnxruntime build does not have"):
            InferenceModel(out / "arm64")
    with pytest.raises(ArtifactError, match="unknown execution provider 'CPUProvider'"):
        InferenceModel(out / "cpu", providers=["CPUProvider"])


# ------------------------------------------------------------------------- predict


def test_every_form_of_predict_matches_onnxruntime(model, session):
    x = windows(3)
    (expected,) = session.run(None, {"sensors": x})
    assert expected.shape == (3, 1)

    np.testing.assert_array_equal(model.predict(x), expected)  # one array
    np.testing.assert_array_equal(model.predict({"sensors": x}), expected)  # a dict
    np.testing.assert_array_equal(model.predict(sensors=x), expected)  # keywords
    np.testing.assert_array_equal(model(x), expected)
    np.testing.assert_array_equal(model.predict(x[:1]), expected[:1])  # batch of one
    for i in range(3):  # one sample: the batch axis is added, and taken off the output
        one = model.predict(x[i])
        assert one.shape == (1,) and one.dtype == np.float32
        np.testing.assert_array_equal(one, expected[i])
    # float64 (numpy's default) and nested lists are cast to the model's float32
    np.testing.assert_array_equal(model.predict(x.astype(np.float64)), expected)
    np.testing.assert_array_equal(model.predict(x[0].tolist()), expected[0])
    # a non-contiguous view is fine
    transposed = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    np.testing.assert_array_equal(model.predict(transposed), expected)


def test_a_batch_frozen_at_one_still_takes_one_sample(cli, tmp_path):
    out = tmp_path / "static"
    result = cli("convert", factory("autopilot_torch", "make_model"), "--input",
                 "sensors:1x20x25", "--static-batch", "--output-names", "rudder",
                 "--latency-runs", "0", "-o", out)
    assert result.code == 0, result.err
    loaded = InferenceModel(out)
    assert str(loaded.inputs[0]) == "float32[1, 20, 25]" and loaded.inputs[0].batched
    x = windows(1)
    (expected,) = ort.InferenceSession(str(loaded.path)).run(None, {"sensors": x})
    np.testing.assert_array_equal(loaded.predict(x[0]), expected[0])
    np.testing.assert_array_equal(loaded.predict(x), expected)
    with pytest.raises(InputError, match=re.escape(
            "input 'sensors' expects float32[1, 20, 25], got float32[2, 20, 25]: pass one "
            "sample as [20, 25] or a batch as [1, 20, 25]")):
        loaded.predict(windows(2))


@pytest.fixture(scope="module")
def two_io(tmp_path_factory) -> Path:
    """A bare .onnx with two inputs and two outputs (TorchScript exporter, dynamic batch)."""
    import torch

    class TwoInTwoOut(torch.nn.Module):
        def forward(self, image, state):
            pooled = image.mean(dim=(2, 3))
            return pooled + state[:, :3], (state * 2).sum(dim=1, keepdim=True)

    path = tmp_path_factory.mktemp("two_io") / "two_io.onnx"
    batch = {0: "batch"}
    torch.onnx.export(TwoInTwoOut(), (torch.rand(2, 3, 8, 8), torch.rand(2, 4)), str(path),
                      input_names=["image", "state"], output_names=["mix", "total"],
                      dynamic_axes={"image": batch, "state": batch, "mix": batch,
                                    "total": batch}, dynamo=False, opset_version=17)
    return path


def test_several_inputs_and_outputs_by_name(two_io):
    loaded = InferenceModel(two_io)
    image = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    state = np.random.default_rng(1).random((2, 4), dtype=np.float32)
    reference = ort.InferenceSession(str(two_io))
    mix, total = reference.run(None, {"image": image, "state": state})

    out = loaded.predict({"image": image, "state": state})
    assert list(out) == ["mix", "total"]
    np.testing.assert_array_equal(out["mix"], mix)
    np.testing.assert_array_equal(out["total"], total)
    one = loaded.predict(image=image[1], state=state[1])  # one sample of each
    assert one["mix"].shape == (3,) and one["total"].shape == (1,)
    np.testing.assert_allclose(one["mix"], mix[1], rtol=1e-6)

    with pytest.raises(InputError, match=re.escape(
            "two_io.onnx has 2 inputs (image, state), so it takes a dict by input name")):
        loaded.predict(image)
    with pytest.raises(InputError, match=re.escape(
            "'image' was given as one sample (no batch axis) but 'state' with a batch "
            "axis: give every input with its batch axis or none of them")):
        loaded.predict(image=image[0], state=state)
    with pytest.raises(InputError, match=re.escape(
            "inputs 'image' and 'state' disagree on 'batch': 2 vs 1")):
        loaded.predict(image=image, state=state[:1])
    with pytest.raises(InputError, match=re.escape(
            "two_io.onnx needs 'state', which was not given: its inputs are: image "
            "float32[batch, 3, 8, 8], state float32[batch, 4]")):
        loaded.predict(image=image)


def test_a_failure_inside_onnxruntime_is_reported_with_the_inputs(tmp_path):
    import torch

    class Regroup(torch.nn.Module):
        def forward(self, x):
            return x.reshape(-1, 4)  # only fits batches whose element count divides by 4

    path = tmp_path / "regroup.onnx"
    torch.onnx.export(Regroup(), (torch.rand(2, 6),), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}}, dynamo=False,
                      opset_version=17)
    loaded = InferenceModel(path)
    assert loaded.predict(np.ones((2, 6), np.float32)).shape == (3, 4)
    with pytest.raises(RunFailed, match=re.escape(
            "onnxruntime failed running regroup.onnx on x float32[1, 6]: ")) as raised:
        loaded.predict(np.ones((1, 6), np.float32))
    assert isinstance(raised.value, RuntimeError) and raised.value.__cause__ is not None


BAD_INPUTS = {
    "wrong input name": (
        lambda x: {"sensor": x}, {},
        "autopilot_torch.onnx has no input 'sensor' (did you mean 'sensors'?) and needs "
        "'sensors', which was not given: its inputs are: sensors float32[batch, 20, 25]"),
    "an extra input": (
        lambda x: {"sensors": x, "wind": x}, {},
        "autopilot_torch.onnx has no input 'wind': its inputs are: sensors "
        "float32[batch, 20, 25]"),
    "wrong shape": (
        lambda x: x[0, :, :24].astype(np.float64), {},
        "input 'sensors' expects float32[batch, 20, 25], got float64[20, 24]: pass one "
        "sample as [20, 25] or a batch as [n, 20, 25]"),
    "wrong rank": (
        lambda x: x[None], {},
        "input 'sensors' expects float32[batch, 20, 25], got float32[1, 2, 20, 25]"),
    "window too short": (
        lambda x: x[:, :19], {},
        "input 'sensors' expects float32[batch, 20, 25], got float32[2, 19, 25]"),
    "integers for a float input": (
        lambda x: (x * 100).astype(np.int64), {},
        "input 'sensors' expects float32[batch, 20, 25], got int64[2, 20, 25]: convert it "
        "with .astype(numpy.float32); integers are not cast to float automatically"),
    "float64 with cast=False": (
        lambda x: x.astype(np.float64), {"cast": False},
        "input 'sensors' expects float32[batch, 20, 25], got float64[2, 20, 25]: convert "
        "it with .astype(numpy.float32)"),
    "strings": (
        lambda x: np.full((20, 25), "0.5"), {},
        "input 'sensors' expects float32[batch, 20, 25], got str[20, 25]"),
    "nothing": (lambda x: None, {}, "no input given: sensors expects float32[batch, 20, 25]"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error_before_running(artifact, case):
    make, options, message = BAD_INPUTS[case]
    loaded = InferenceModel(artifact, **options)
    with pytest.raises(InputError) as raised:
        loaded.predict(make(windows(2)))
    assert str(raised.value).startswith(message), str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, onnxport.OnnxportError)


# ------------------------------------------------------------------------- damaged artifacts


def tamper_a_weight(model_file: Path) -> None:
    """Change the first weight of the autopilot's output layer, keeping the size."""
    head = zoo_module("autopilot_torch").make_model().head[2].weight.detach().numpy()
    data = bytearray(model_file.read_bytes())
    at = bytes(data).find(head.astype(np.float32).tobytes())
    assert at > 0, "the output layer's weights are not stored verbatim"
    data[at:at + 4] = np.float32(5.0).tobytes()
    model_file.write_bytes(bytes(data))


def test_a_tampered_weight_is_refused_by_the_default_check(artifact, model, tmp_path):
    target = copy_target(artifact, tmp_path / "cpu")
    model_file = target / model.path.name
    tamper_a_weight(model_file)
    with pytest.raises(IntegrityError, match=re.escape(
            "autopilot_torch.onnx has sha256 ")) as raised:
        InferenceModel(target)
    assert ("but the manifest says " + model.manifest["files"][0]["sha256"][:16] + "... "
            "(modified or corrupted); refusing to load it") in str(raised.value)
    # What the check prevents: unchecked, the tampered model loads and answers differently.
    unchecked = InferenceModel(target, verify_checksum=False)
    x = windows(4)
    assert not np.allclose(unchecked.predict(x), model.predict(x), atol=1e-3)


def test_a_truncated_model_is_refused(artifact, model, tmp_path):
    target = copy_target(artifact, tmp_path / "cpu")
    model_file = target / model.path.name
    size = model_file.stat().st_size
    model_file.write_bytes(model_file.read_bytes()[: size // 2])
    with pytest.raises(IntegrityError, match=re.escape(
            f"autopilot_torch.onnx is {size // 2} bytes but the manifest says {size} "
            "(truncated); refusing to load it: copy the artifact again (check the copy "
            "finished) or convert again")):
        InferenceModel(target)
    with pytest.raises(ArtifactError, match=re.escape(
            f"{model_file} could not be loaded by onnxruntime {ort.__version__}: ")) as raised:
        InferenceModel(target, verify_checksum=False)
    assert str(raised.value).endswith("the file may be truncated or corrupt: load it with "
                                      "verify_checksum=True to compare it with its "
                                      "manifest, or convert again")


def test_a_corrupt_bare_model_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "autopilot.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe" * 50)
    with pytest.raises(ArtifactError, match=re.escape(
            f"{junk} could not be loaded by onnxruntime {ort.__version__}: ")) as raised:
        InferenceModel(junk)
    assert str(raised.value).endswith("the file may be truncated, corrupt or not an ONNX "
                                      "model: convert it again")
    assert raised.value.__cause__ is not None  # onnxruntime's own error is kept


def test_missing_and_wrong_paths_are_clear_errors(artifact, model, tmp_path):
    missing = tmp_path / "nowhere" / "autopilot"
    with pytest.raises(ArtifactNotFound, match=re.escape(
            f"no onnxport artifact or model at {missing} ({missing.parent} does not exist "
            "either): pass the directory `onnxport convert -o` wrote")):
        InferenceModel(missing)
    with pytest.raises(FileNotFoundError):  # ArtifactNotFound is one
        InferenceModel(tmp_path / "autopilot.onnx")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match=re.escape(
            f"{empty} is not an onnxport artifact: no manifest.json in it or in a target "
            "directory under it")):
        InferenceModel(empty)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    with pytest.raises(ArtifactError, match=re.escape(
            f"{notes} is not an .onnx file or an artifact directory")):
        InferenceModel(notes)

    target = copy_target(artifact, tmp_path / "cpu")
    (target / model.path.name).unlink()
    with pytest.raises(IntegrityError, match=re.escape(
            f"{target / model.path.name} is missing (the manifest lists it): copy the "
            "whole target directory")):
        InferenceModel(target)
    (target / "manifest.json").write_text("{ not json")
    with pytest.raises(ArtifactError, match=re.escape(
            f"{target / 'manifest.json'} is not a readable manifest")):
        InferenceModel(target)


def test_a_manifest_pointing_outside_its_directory_is_refused(artifact, tmp_path):
    target = copy_target(artifact, tmp_path / "cpu")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"].append({"path": "../../etc/passwd", "bytes": 1, "sha256": "0"})
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="names a file outside its directory: "
                                             "'../../etc/passwd'"):
        InferenceModel(target)


# ------------------------------------------------------------------------- streaming


def test_streaming_waits_for_the_window_then_predicts_at_every_frame(model):
    frames = np.random.default_rng(3).standard_normal((45, 25)).astype(np.float32)
    stream = model.stream()
    assert isinstance(stream, StreamingWindow)
    assert (stream.size, stream.frame_shape) == (20, (25,))
    for i in range(19):
        assert stream.push(frames[i]) is None
        assert not stream.ready and stream.window is None
    for i in range(19, 45):
        got = stream.push(frames[i])
        assert stream.ready and stream.count == i + 1
        np.testing.assert_array_equal(stream.window, frames[i - 19:i + 1])
        np.testing.assert_array_equal(got, model.predict(frames[i - 19:i + 1]))
        assert got.shape == (1,)

    stream.reset()
    assert stream.count == 0 and stream.push(frames[0]) is None
    for i in range(1, 20):
        got = stream.push(frames[i].astype(np.float64))  # float64 frames are cast
    np.testing.assert_array_equal(got, model.predict(frames[:20]))


def test_streaming_errors(model, two_io):
    stream = model.stream(window=20)
    with pytest.raises(InputError, match=re.escape(
            "stream of 'sensors' expects one frame float32[25], got float64[20, 25]: push "
            "one frame at a time")):
        stream.push(np.zeros((20, 25)))
    with pytest.raises(InputError, match=re.escape(
            "stream of 'sensors' expects one frame float32[25], got int64[25]")):
        stream.push(np.zeros(25, dtype=np.int64))
    assert stream.count == 0
    with pytest.raises(InputError, match=re.escape(
            "input 'sensors' is float32[batch, 20, 25]: it takes windows of 20 frames, "
            "not 10")):
        model.stream(window=10)
    with pytest.raises(InputError, match="two_io.onnx has 2 inputs; streaming feeds one "
                                         "sequence input"):
        InferenceModel(two_io).stream()


# ------------------------------------------------------------------------- the install


def test_import_brings_only_numpy_and_onnxruntime():
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    modules = json.loads(done.stdout)
    assert "onnxruntime" in modules and "numpy" in modules
    assert forbidden_in(modules) == []
    assert {m for m in modules if m.startswith("onnxport")} == {
        "onnxport", "onnxport.errors", "onnxport.artifact", "onnxport.artifact.reading",
        *(f"onnxport.runtime{part}" for part in ("", ".errors", ".locating", ".model",
                                                  ".specs", ".streaming"))}


PROBE = """
import json, sys
import numpy as np
from onnxport.runtime import InferenceModel
import onnxport
model = InferenceModel(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x))
stream = model.stream()
pushed = [stream.push(frame) for frame in x[0]]
print(json.dumps({"onnxport": onnxport.__file__, "providers": model.providers,
                  "stream": pushed[-1].tolist(), "none": sum(p is None for p in pushed),
                  "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with only `pip install <repo>[runtime]`.

    The source is copied first (the build writes into its tree), and the dependencies
    are pinned to this environment's versions so pip takes them from its cache or index.
    """
    root = tmp_path_factory.mktemp("runtime_venv")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("core", "plugins"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pins = root / "pins.txt"
    pins.write_text("".join(f"{name}=={importlib.metadata.version(name)}\n"
                            for name in ("numpy", "onnxruntime", "pluggy")))
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           f"{source}[runtime]", "-c", str(pins)],
                          capture_output=True, text=True, timeout=900, env=clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def run_in(python: Path | list, *args, cwd: Path, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    command = [str(p) for p in (python if isinstance(python, list) else [python])]
    done = subprocess.run([*command, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env or clean_env())
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def runtime_only(tmp_path_factory) -> Path:
    """The same without pip: `python -S` (no site-packages, where torch, TensorFlow and
    onnx live) with a path of links to numpy, onnxruntime and core/onnxport only."""
    import numpy

    root = tmp_path_factory.mktemp("runtime_only")
    for package in (Path(numpy.__file__).parent, Path(ort.__file__).parent):
        (root / package.name).symlink_to(package)
        libs = package.with_name(package.name + ".libs")
        if libs.exists():
            (root / libs.name).symlink_to(libs)
    (root / "onnxport").symlink_to(ROOT / "core" / "onnxport")
    return root


def test_the_runtime_install_holds_no_framework(runtime_venv):
    done = run_in(runtime_venv, "-m", "pip", "list", "--format=json", cwd=runtime_venv.parent)
    installed = {p["name"].lower() for p in json.loads(done.stdout)}
    assert {"onnxport", "onnxruntime", "numpy"} <= installed
    assert installed & HEAVY == set()


def check_the_autopilot(python: Path | list, env: dict, converted: Path, tmp_path: Path,
                        onnxport_from: Path) -> None:
    """The converted autopilot loads, predicts as onnxruntime does, streams, imports
    nothing forbidden, and the example script runs, all in that environment."""
    x = windows(3, seed=7)
    np.save(tmp_path / "x.npy", x)
    (expected,) = ort.InferenceSession(str(next((converted / "cpu").glob("*.onnx")))).run(
        None, {"sensors": x})

    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    done = run_in(python, probe, converted, tmp_path / "x.npy", tmp_path / "y.npy",
                  cwd=tmp_path, env=env)
    report = json.loads(done.stdout)
    assert report["onnxport"].startswith(str(onnxport_from))
    assert report["providers"] == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert report["none"] == 19
    np.testing.assert_allclose(report["stream"], expected[0], rtol=1e-6)
    assert forbidden_in(report["modules"]) == []

    example = run_in(python, ROOT / "examples" / "autopilot_runtime.py", converted,
                     "--frames", "24", cwd=tmp_path, env=env)
    lines = example.stdout.splitlines()
    assert lines[0].startswith("autopilot: autopilot_") and "CPUExecutionProvider" in lines[0]
    commands = [float(m.group(1)) for m in re.finditer(r"rudder ([-+]\d\.\d+)",
                                                      example.stdout)]
    assert len(commands) == 5 and all(-1 <= c <= 1 for c in commands)


@pytest.mark.parametrize("which", ["torch", "keras"])
def test_the_autopilot_runs_in_the_runtime_install(runtime_venv, which, request, tmp_path):
    converted = request.getfixturevalue("artifact" if which == "torch" else "keras_artifact")
    check_the_autopilot(runtime_venv, clean_env(), converted, tmp_path,
                        onnxport_from=runtime_venv.parent.parent)  # the venv, not this repo


@pytest.mark.parametrize("which", ["torch", "keras"])
def test_the_autopilot_runs_with_only_numpy_and_onnxruntime_on_the_path(
        runtime_only, which, request, tmp_path):
    converted = request.getfixturevalue("artifact" if which == "torch" else "keras_artifact")
    python = [sys.executable, "-S"]
    env = clean_env(PYTHONPATH=str(runtime_only))
    missing = run_in(python, "-c", "import importlib.util as u; print([m for m in "
                     "('torch', 'tensorflow', 'onnx', 'pluggy') if u.find_spec(m)])",
                     cwd=tmp_path, env=env)
    assert missing.stdout.strip() == "[]", "the environment must really lack them"
    check_the_autopilot(python, env, converted, tmp_path, onnxport_from=runtime_only)
