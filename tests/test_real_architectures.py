"""Real architectures with default options: the verification inputs mean something
(integer inputs keep to their examples' values), an export route that fails gives way to
the next one, a verification that proves little says so, and failures name their real
cause. Models are built in code from tiny configs with random weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxport
from onnxport.errors import BadInput

from conftest import ROOT

HOSTILE = ROOT / "tests" / "hostile_models.py"


def tiny_bert():
    """A BERT classifier given the inputs in tokenizer order, an attention mask of
    ones and token types of zeros: random 0..9 integers break it three ways (ids past a
    type vocabulary of 2, fully masked rows, ids past the vocabulary)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, type_vocab_size=2,
                        max_position_embeddings=64, num_labels=3)
    model = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 100, (2, 12))
    return model, {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                   "attention_mask": torch.ones_like(ids)}, ["logits"]


def constant_head():
    """A model whose output does not depend on its input: any candidate 'matches'."""
    import torch

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor([0.25, -1.0]))

        def forward(self, x):
            return x[:, :2] * 0.0 + self.bias

    return Constant().eval(), {"x": torch.randn(2, 4)}, ["y"]


def test_a_transformer_converts_with_default_options(tmp_path):
    result = onnxport.convert(f"{__file__}:tiny_bert", output=tmp_path / "bert",
                              latency_runs=0)
    assert result.passed and result.name == "tiny_bert"  # the factory's own name
    settings = json.loads((tmp_path / "bert" / "report.json").read_text())[
        "verification_settings"]["input_ranges"]
    assert settings["attention_mask"] == [1.0, 2.0]  # all ones in the example: ones
    assert settings["token_type_ids"] == [0.0, 1.0]
    low, high = settings["input_ids"]
    assert low >= 5 and high <= 100
    batch = result.artifacts[0].verification.batches[1]
    assert batch.inputs["attention_mask"]["min"] == 1.0
    import onnxruntime as ort

    session = ort.InferenceSession(str(result.model_path))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "token_type_ids",
                                                      "attention_mask"]


def test_a_verification_that_proves_little_says_so(tmp_path, cli):
    done = cli("convert", f"{__file__}:constant_head", "-o", tmp_path / "out",
               "--latency-runs", "0")
    assert done.code == 0, done.err
    text = " ".join(done.out.split())
    assert "output y is the same for every verification input" in text
    assert "verify with real inputs (--data) or a trained checkpoint" in text
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert any("proves little" in w for w in manifest["warnings"])


def test_a_factory_whose_own_import_fails_reports_that_error(tmp_path):
    factory = tmp_path / "factory.py"
    factory.write_text("def build():\n    raise ModuleNotFoundError('the config says "
                       "backbone=resnet9000, which this code does not have')\n")
    with pytest.raises(BadInput) as caught:
        onnxport.convert(f"{factory}:build", output=tmp_path / "out")
    assert "raised ModuleNotFoundError: the config says backbone=resnet9000" in \
        caught.value.one_line()
    assert "needs module None" not in caught.value.one_line()


def test_every_factory_of_a_module_gets_its_own_name(tmp_path):
    first = onnxport.convert(f"{HOSTILE}:tiny", output=tmp_path / "a", latency_runs=0)
    other = onnxport.convert(f"{HOSTILE}:prints_in_forward", output=tmp_path / "b",
                             latency_runs=0)
    assert (first.name, other.name) == ("tiny", "prints_in_forward")
    zoo = ROOT / "examples" / "zoo" / "autopilot_torch.py"
    assert onnxport.convert(f"{zoo}:build", output=tmp_path / "c",
                            latency_runs=0).name == "autopilot_torch"  # build: the module


def test_integer_ranges_come_from_the_examples():
    from onnxport.conversion import VerificationSettings
    from onnxport.flow.inputs import example_ranges, with_example_ranges

    examples = {"ids": np.array([[3, 7], [9, 4]]), "mask": np.ones((2, 2), np.int64),
                "x": np.zeros((2, 2), np.float32)}
    assert example_ranges(examples) == {"ids": (3.0, 10.0), "mask": (1.0, 2.0)}
    mine = VerificationSettings(input_ranges={"ids": (0, 50), "*": (-2, 2)})
    assert with_example_ranges(mine, examples).input_ranges == {
        "ids": (0, 50), "*": (-2, 2), "mask": (1.0, 2.0)}
