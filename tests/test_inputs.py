"""Input specs and the data verification feeds."""

import numpy as np
import pytest

from onnxport.errors import BadInput
from onnxport.flow.inputs import load_npz, parse_input_spec, parse_range, random_inputs
from onnxport.artifact.modelinfo import TensorInfo

INFOS = [TensorInfo("sensors", ["batch", 20, 25], "float32"),
         TensorInfo("ids", ["batch", "seq"], "int64")]


def test_input_spec_parsing():
    spec = parse_input_spec("sensors:2x20x25")
    assert (spec.name, spec.shape, spec.dtype) == ("sensors", (2, 20, 25), "float32")
    assert parse_input_spec("ids:1,16:int64").dtype == "int64"
    with pytest.raises(BadInput, match="NAME:SHAPE"):
        parse_input_spec("sensors")
    with pytest.raises(BadInput, match="unknown dtype"):
        parse_input_spec("x:1x2:float99")


def test_ranges():
    assert parse_range("-1,1") == ("*", (-1.0, 1.0))
    assert parse_range("costmap_input=0,1") == ("costmap_input", (0.0, 1.0))
    with pytest.raises(BadInput):
        parse_range("1,0")


def test_random_inputs_are_seeded_and_shaped():
    examples = {"ids": (2, 7)}
    a = random_inputs(INFOS, 3, 0, examples, {"sensors": (0.0, 0.5)})
    b = random_inputs(INFOS, 3, 0, examples, {"sensors": (0.0, 0.5)})
    assert a["sensors"].shape == (3, 20, 25) and a["ids"].shape == (3, 7)
    assert a["ids"].dtype == np.int64
    assert 0.0 <= a["sensors"].min() and a["sensors"].max() <= 0.5
    np.testing.assert_array_equal(a["sensors"], b["sensors"])
    c = random_inputs(INFOS, 3, 1, examples, {})
    assert not np.array_equal(a["sensors"], c["sensors"])


def test_npz_must_hold_every_input(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, sensors=np.zeros((2, 20, 25), np.float32))
    with pytest.raises(BadInput, match="no array for input.*ids"):
        load_npz(path, INFOS)
    np.savez(path, sensors=np.zeros((2, 20, 25)), ids=np.zeros((2, 4)))
    data = load_npz(path, INFOS)
    assert data["sensors"].dtype == np.float32 and data["ids"].dtype == np.int64
