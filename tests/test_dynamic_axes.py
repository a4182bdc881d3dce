"""Dynamic axes beyond the batch (`--dynamic NAME:AXIS[=AXIS_NAME]`): a time axis is
exported symbolic by both torch exporters, verified at two sizes (the same size for
inputs sharing the axis name), recorded so that `verify` and `diagnose` make the same
inputs again; an exporter that freezes the axis is caught, and a declaration that does
not fit the model is bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxport
from onnxport.errors import BadInput, ExitCode

FRAMES = 12  # the example's time axis: verified at 12 and 6


def _frames_and_mask(time: int = FRAMES):
    import torch

    generator = torch.Generator().manual_seed(0)
    return {"frames": torch.randn(2, time, 4, generator=generator),
            "mask": torch.ones(2, time, dtype=torch.long)}


def timeseries():
    """A sequence model whose every layer follows the time axis: a 1-D convolution over
    time, a masked mean over time, a linear head."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, frames, mask):
            hidden = torch.relu(self.conv(frames.transpose(1, 2))).transpose(1, 2)
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1)
            return self.head(pooled)

    torch.manual_seed(0)
    return Encoder().eval(), _frames_and_mask(), ["scores"]


def fixed_length():
    """The same model with the example's length written into a reshape: it runs only
    at 12 frames, whatever an exporter is told."""
    import torch

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
            self.head = torch.nn.Linear(8 * FRAMES, 3)

        def forward(self, frames, mask):
            hidden = self.conv(frames.transpose(1, 2)) * mask.unsqueeze(1)
            return self.head(hidden.reshape(frames.shape[0], 8 * FRAMES))

    torch.manual_seed(0)
    return Fixed().eval(), _frames_and_mask(), ["scores"]


def traced_length():
    """A model that is dynamic in PyTorch but turns the length into a Python number:
    the TorchScript tracer writes 12 into the graph (dynamo keeps it symbolic)."""
    import torch

    model, inputs, outputs = timeseries()

    class Positions(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, frames, mask):
            steps = int(frames.shape[1])
            ramp = torch.arange(steps, dtype=frames.dtype).reshape(1, steps, 1) / steps
            return self.inner(frames + ramp, mask)

    return Positions(model).eval(), inputs, outputs


def _inputs_of(model_path) -> dict[str, list]:
    from onnxport.artifact.modelinfo import read_model_info

    return {t.name: t.shape for t in read_model_info(model_path).inputs}


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_a_time_axis_is_exported_symbolic_and_verified_at_two_sizes(cli, tmp_path,
                                                                     exporter):
    out = tmp_path / exporter
    done = cli("convert", f"{__file__}:timeseries", "-o", out, "--exporter", exporter,
               "--dynamic", "frames:1=time", "--dynamic", "mask:1=time",
               "--latency-runs", "0")
    assert done.code == 0, done.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    shapes = _inputs_of(out / "cpu" / manifest["model"])
    assert shapes["frames"][:2] == ["batch", "time"] and shapes["frames"][2] == 4
    assert shapes["mask"] == ["batch", "time"]
    batches = manifest["verification"]["batches"]
    assert [b["label"] for b in batches] == ["batch 1, time 12", "batch 3, time 6"]
    assert [b["inputs"]["frames"]["shape"] for b in batches] == [[1, 12, 4], [3, 6, 4]]
    assert [b["inputs"]["mask"]["shape"] for b in batches] == [[1, 12], [3, 6]]
    assert batches[1]["inputs"]["mask"]["min"] == 1  # a mask of ones stays ones
    checks = {c["name"]: c for c in manifest["verification"]["checks"]}
    assert checks["dynamic axes"]["passed"], checks["dynamic axes"]
    settings = json.loads((out / "report.json").read_text())["verification_settings"]
    assert settings["dynamic_axes"] == {"frames": {"1": "time"}, "mask": {"1": "time"}}
    assert settings["axis_sizes"] == {"time": [12, 6]}


def test_verify_and_diagnose_make_the_same_inputs_again(tmp_path):
    from onnxport.conversion import VerificationSettings
    from onnxport.diagnose.feeds import recorded_feeds
    from onnxport.tolerance import settings_from_json

    out = tmp_path / "out"
    result = onnxport.convert(f"{__file__}:timeseries", output=out, exporter="dynamo",
                              dynamic_axes={"frames": {1: "time"}, "mask": {-1: "time"}},
                              latency_runs=0)
    recorded = result.artifacts[0].verification.batches
    assert [b.label for b in recorded] == ["batch 1, time 12", "batch 3, time 6"]

    (check,) = onnxport.verify(out, source=f"{__file__}:timeseries")
    assert check.passed, check.verification.problem
    assert [b.label for b in check.verification.batches] == [b.label for b in recorded]
    assert [b.inputs for b in check.verification.batches] == [b.inputs for b in recorded]

    report = json.loads((out / "report.json").read_text())
    settings = VerificationSettings(**settings_from_json(report["verification_settings"]))
    assert settings.dynamic_axes == {"frames": {1: "time"}, "mask": {1: "time"}}
    for batch in report["targets"]["cpu"]["stages"][0]["verification"]["batches"]:
        feeds = recorded_feeds(batch, settings, dynamic_batch=True)
        for name, described in batch["inputs"].items():
            assert list(feeds[name].shape) == described["shape"]
            assert float(feeds[name].min()) == pytest.approx(described["min"])
            assert float(feeds[name].max()) == pytest.approx(described["max"])


def test_the_dynamo_exporter_freezing_the_axis_is_caught(cli, tmp_path):
    out = tmp_path / "frozen"
    done = cli("convert", f"{__file__}:fixed_length", "-o", out, "--exporter", "dynamo",
               "--dynamic", "frames:1=time", "--dynamic", "mask:1=time",
               "--latency-runs", "0")
    assert done.code == ExitCode.VERIFICATION_FAILED, done.err
    text = " ".join(done.err.split())
    assert "the exporter froze the dynamic axes frames axis 1 (time, fixed at 12)" in text
    assert not out.exists()


def test_the_torchscript_exporter_freezing_the_axis_fails_at_the_second_size(cli,
                                                                             tmp_path):
    out = tmp_path / "frozen"
    done = cli("convert", f"{__file__}:traced_length", "-o", out, "--exporter",
               "torchscript", "--dynamic", "frames:1=time", "--dynamic", "mask:1=time",
               "--latency-runs", "0")
    assert done.code == ExitCode.VERIFICATION_FAILED, done.err
    assert "run: batch 3, time 6:" in " ".join(done.err.split())
    assert not out.exists()


def test_a_model_that_is_not_dynamic_itself_is_bad_input(cli, tmp_path):
    out = tmp_path / "fixed"
    done = cli("convert", f"{__file__}:fixed_length", "-o", out, "--exporter",
               "torchscript", "--dynamic", "frames:1=time", "--dynamic", "mask:1=time",
               "--latency-runs", "0")
    assert done.code == ExitCode.BAD_INPUT, done.err
    text = " ".join(done.err.split())
    assert "the source model itself fails on the verification inputs at batch 3, " \
           "time 6" in text
    assert not out.exists()


@pytest.mark.parametrize("declared, says", [
    (["--dynamic", "frame:1=time"], "the model has no input 'frame'"),
    (["--dynamic", "frames:3=time"], "dynamic axis frames:3: input frames has 3 axes"),
    (["--dynamic", "mask:0=rows"], "axis 0 is the batch"),
    (["--dynamic", "frames"], "is not NAME:AXIS[=AXIS_NAME]"),
    (["--dynamic", "frames:1=two words"], "is not a name"),
])
def test_a_declaration_that_does_not_fit_is_bad_input(cli, tmp_path, declared, says):
    out = tmp_path / "out"
    done = cli("convert", f"{__file__}:timeseries", "-o", out, *declared,
               "--latency-runs", "0")
    assert done.code == ExitCode.BAD_INPUT, done.err
    assert says in " ".join(done.err.split())
    assert not out.exists()


def test_inputs_sharing_an_axis_name_must_agree_on_its_size():
    from onnxport.flow.inputs import checked_dynamic_axes

    with pytest.raises(BadInput, match="vary together, but their example sizes differ"):
        checked_dynamic_axes({"a": {1: "time"}, "b": {1: "time"}},
                             {"a": (2, 12, 4), "b": (2, 10)}, dynamic_batch=True)


def test_the_declaration_travels_with_the_request_in_every_form(tmp_path):
    """The Python API and a fleet file (TOML: string keys) give the same request, and it
    survives the JSON a worker process receives."""
    from onnxport.flow.building import build_request, request_from_json, request_to_json

    from_api = build_request(f"{__file__}:timeseries", output=tmp_path / "a",
                             dynamic_axes={"frames": {1: "time"}})
    from_toml = build_request(f"{__file__}:timeseries", output=tmp_path / "a",
                              dynamic_axes={"frames": {"1": "time"}})
    assert from_api.dynamic_axes == from_toml.dynamic_axes == {"frames": {1: "time"}}
    assert from_api.verification.dynamic_axes == {"frames": {1: "time"}}
    again = request_from_json(json.loads(json.dumps(request_to_json(from_api))))
    assert again.dynamic_axes == {"frames": {1: "time"}}
    assert again.verification.dynamic_axes == {"frames": {1: "time"}}
    with pytest.raises(BadInput, match="is not a whole number"):
        build_request(f"{__file__}:timeseries", output=tmp_path / "a",
                      dynamic_axes={"frames": {"one": "time"}})


def test_a_fleet_file_takes_dynamic_axes_by_the_same_keyword(tmp_path):
    from onnxport.fleet.file import read_fleet

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[[models]]\nname = "ts"\nsource = "{__file__}:timeseries"\n'
                     '[models.dynamic_axes]\nframes = {1 = "time"}\nmask = {1 = "time"}\n')
    (model,) = read_fleet(fleet).models
    assert model.options["dynamic_axes"] == {"frames": {"1": "time"},
                                             "mask": {"1": "time"}}


def test_random_inputs_take_named_sizes():
    from onnxport.artifact.modelinfo import TensorInfo
    from onnxport.flow.inputs import random_inputs

    info = [TensorInfo("x", ["batch", "time", 4], "float32")]
    small = random_inputs(info, 3, 0, {"x": (2, 12, 4)}, {}, {"time": 6})
    assert small["x"].shape == (3, 6, 4)
    assert np.array_equal(small["x"], random_inputs(info, 3, 0, {"x": (2, 12, 4)}, {},
                                                    {"time": 6})["x"])
    assert random_inputs(info, 3, 0, {"x": (2, 12, 4)}, {})["x"].shape == (3, 12, 4)


def keras_timeseries():
    """A Keras LSTM over a time axis the model leaves open (Input shape (None, 8))."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(None, 8), name="frames")
    outputs = layers.Dense(3, name="scores")(layers.LSTM(16, name="lstm")(inputs))
    frames = np.random.default_rng(0).uniform(-1, 1, (2, 20, 8)).astype("float32")
    return keras.Model(inputs, outputs, name="lstm"), {"frames": frames}


def test_the_keras_backend_traces_a_dynamic_axis_as_none(cli, tmp_path):
    out = tmp_path / "keras"
    done = cli("convert", f"{__file__}:keras_timeseries", "-o", out,
               "--dynamic", "frames:1=time", "--latency-runs", "0")
    assert done.code == 0, done.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    assert _inputs_of(out / "cpu" / manifest["model"])["frames"] == ["batch", "time", 8]
    assert [b["label"] for b in manifest["verification"]["batches"]] == [
        "batch 1, time 20", "batch 3, time 10"]
