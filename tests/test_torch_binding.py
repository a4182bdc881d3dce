"""A dict of example inputs binds by NAME, in the source and in the ONNX model.

When forward() takes **kwargs (nearly every Hugging Face model), passing a dict's values
by position hands each tensor to whichever parameter sits at that position: BERT's
tokenizer order (input_ids, token_type_ids, attention_mask) feeds the mask to
token_type_ids, and GPT-2's attention_mask lands on its `cache` parameter. Verification
cannot see such a fault (source and ONNX get the same wrong binding), so these tests
feed the ONNX model by name with the values the source got under the same names.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import onnxport

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

EXPORTERS = ("dynamo", "torchscript")


class Tokens(torch.nn.Module):
    """forward(input_ids, token_type_ids, attention_mask, **kwargs), each input used
    differently: ids and types through embeddings of different sizes, the mask as a
    multiplicative weight per position."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ids = torch.nn.Embedding(50, 8)
        self.types = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, input_ids=None, token_type_ids=None, attention_mask=None, **kwargs):
        hidden = self.ids(input_ids) + 3.0 * self.types(token_type_ids)
        weight = attention_mask.to(hidden.dtype).unsqueeze(-1) + 0.5
        return self.head((hidden * weight).sum(dim=1))


class Gapped(torch.nn.Module):
    """A closed signature whose dict skips an argument: by position `y` would land on
    `mask`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x, mask=None, y=None):
        out = self.fc(x)
        if mask is not None:
            out = out * 100.0
        return out + 2.0 * y


def ort_run(path, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def graph_inputs(path) -> list[str]:
    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def numpy_of(example: dict) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in example.items()}


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dict_in_non_signature_order_binds_by_name(tmp_path, exporter):
    gen = torch.Generator().manual_seed(1)
    # not forward()'s order, and no two inputs interchangeable
    example = {"attention_mask": torch.randint(0, 2, (2, 6), generator=gen),
               "input_ids": torch.randint(0, 50, (2, 6), generator=gen),
               "token_type_ids": torch.randint(0, 10, (2, 6), generator=gen)}
    model = Tokens().eval()
    result = onnxport.convert(model, example, output=tmp_path / "out", exporter=exporter,
                              latency_runs=0)
    assert result.passed
    # forward() takes **kwargs: the ONNX inputs are in the dict's order, named by its keys
    assert result.loaded.input_names == list(example)
    assert graph_inputs(result.model_path) == list(example)
    assert result.loaded.details["binding"] == "keyword"

    with torch.no_grad():
        expected = model(**example).numpy()
    (got,) = ort_run(result.model_path, numpy_of(example))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)

    # what the positional binding computed: the dict's values in forward()'s slots
    with torch.no_grad():
        positional = model(*example.values()).numpy()
    assert not np.allclose(got, positional, atol=1e-3)


def test_dict_that_skips_an_argument_binds_by_name(tmp_path):
    example = {"x": torch.randn(2, 4), "y": torch.randn(2, 2)}
    model = Gapped().eval()
    result = onnxport.convert(model, example, output=tmp_path / "out", latency_runs=0)
    assert result.passed and result.loaded.input_names == ["x", "y"]
    with torch.no_grad():
        expected = model(**example).numpy()
    (got,) = ort_run(result.model_path, numpy_of(example))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_tuple_inputs_stay_positional(tmp_path):
    model = Gapped().eval()
    x, mask, y = torch.randn(2, 4), torch.ones(2, 2), torch.randn(2, 2)
    result = onnxport.convert(model, (x, mask, y), output=tmp_path / "out",
                              latency_runs=0)
    assert result.passed
    assert result.loaded.input_names == ["x", "mask", "y"]
    assert result.loaded.details["binding"] == "positional"
    with torch.no_grad():
        expected = model(x, mask, y).numpy()
    (got,) = ort_run(result.model_path, {"x": x.numpy(), "mask": mask.numpy(),
                                         "y": y.numpy()})
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)


def test_key_forward_does_not_take_is_refused(tmp_path):
    from onnxport.errors import BadInput

    with pytest.raises(BadInput, match=r"'z' is not an argument of Gapped\.forward\(x, "
                                       r"mask, y\)"):
        onnxport.convert(Gapped(), {"x": torch.randn(2, 4), "z": torch.randn(2, 2)},
                         output=tmp_path / "out", latency_runs=0)


# --------------------------------------------------------------------------- transformers


SEQ = 12
TEXT_RANGES = {"input_ids": (5, 100), "token_type_ids": (0, 2), "attention_mask": (1, 2)}


def tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64, type_vocab_size=2,
                                     num_labels=3)
    model = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():  # random init (std 0.02) makes the segments barely matter
        model.bert.embeddings.token_type_embeddings.weight.normal_(0.0, 1.0)
        model.classifier.weight.normal_(0.0, 1.0)
    return model


def token_inputs(*names: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    token_types = torch.zeros(2, SEQ, dtype=torch.long)
    token_types[:, SEQ // 2:] = 1  # a second segment, as for a sentence pair
    made = {"input_ids": torch.randint(5, 100, (2, SEQ), generator=gen),
            "token_type_ids": token_types,
            "attention_mask": torch.ones(2, SEQ, dtype=torch.long)}
    return {n: made[n] for n in names}


def test_bert_token_type_ids_feed_the_token_type_embedding(tmp_path):
    model = tiny_bert()
    # BertTokenizer's order; forward() is (input_ids, attention_mask, token_type_ids, ...)
    example = token_inputs("input_ids", "token_type_ids", "attention_mask")
    result = onnxport.convert(model, example, output=tmp_path / "bert",
                              input_ranges=TEXT_RANGES, latency_runs=0)
    assert result.passed
    assert graph_inputs(result.model_path) == list(example)

    feeds = numpy_of(example)
    with torch.no_grad():
        expected = model(**example).logits.numpy()
    (correct,) = ort_run(result.model_path, feeds)
    np.testing.assert_allclose(correct, expected, atol=1e-4, rtol=0)

    # the swap the positional binding made: the mask into token_type_ids and back
    swapped = {**feeds, "token_type_ids": feeds["attention_mask"],
               "attention_mask": feeds["token_type_ids"]}
    (wrong,) = ort_run(result.model_path, swapped)
    assert np.abs(wrong - correct).max() > 1e-3
    # and token_type_ids alone changes the result: it reaches the token-type embedding
    (all_first,) = ort_run(result.model_path, {**feeds, "token_type_ids":
                                               np.zeros_like(feeds["token_type_ids"])})
    assert np.abs(all_first - correct).max() > 1e-3
    with torch.no_grad():
        torch_first = model(**{**example, "token_type_ids": torch.zeros(2, SEQ,
                                                                       dtype=torch.long)})
    np.testing.assert_allclose(all_first, torch_first.logits.numpy(), atol=1e-4, rtol=0)


def tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2,
                                     n_positions=64, bos_token_id=0, eos_token_id=0,
                                     use_cache=False)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_gpt2_attention_mask_is_not_its_cache(tmp_path, exporter):
    """forward(input_ids, cache, attention_mask, ..., logits_to_keep=0, **kwargs): by
    position the mask became the cache (the dry run failed); the TorchScript exporter's
    own kwargs= would also trace logits_to_keep as an input and keep one position."""
    model = tiny_gpt2()
    example = token_inputs("input_ids", "attention_mask")
    result = onnxport.convert(model, example, output=tmp_path / exporter,
                              exporter=exporter, input_ranges=TEXT_RANGES, latency_runs=0)
    assert result.passed
    assert graph_inputs(result.model_path) == ["input_ids", "attention_mask"]
    with torch.no_grad():
        expected = model(**example).logits.numpy()
    (got,) = ort_run(result.model_path, numpy_of(example))
    assert got.shape == expected.shape == (2, SEQ, 100)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert "forward" not in vars(model)  # the export's by-name forward() is gone again
