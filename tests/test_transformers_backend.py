"""The transformers backend: a `save_pretrained` directory converts with
`onnxport convert DIR -o OUT --task TASK` and default options, with example inputs made
from the config, Optimum's input and output names, and the sequence axis of text models
dynamic and verified at two lengths. Models are tiny, built from configs with random
weights and saved into temporary directories; nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import onnxport
from onnxport.errors import BadInput, ExitCode

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tiny(kind: str):
    import torch
    import transformers as hf

    torch.manual_seed(0)
    if kind == "bert":
        return hf.BertForSequenceClassification(hf.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
            num_labels=3))
    if kind == "bert-base":
        return hf.BertModel(hf.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64))
    if kind == "distilbert":
        return hf.DistilBertModel(hf.DistilBertConfig(
            vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
            max_position_embeddings=64))
    if kind == "ast":  # as the wake-word seed model: AST on 64 frames of 32 mel bins
        return hf.ASTForAudioClassification(hf.ASTConfig(
            num_labels=5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_mel_bins=32, max_length=64))
    if kind == "vit":
        return hf.ViTForImageClassification(hf.ViTConfig(
            num_labels=10, image_size=32, patch_size=8, hidden_size=32,
            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    raise ValueError(kind)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """save_pretrained directories of tiny models, by kind."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("hf")
    made = {}
    for kind in ("bert", "bert-base", "distilbert", "ast", "vit"):
        _tiny(kind).save_pretrained(root / kind)
        made[kind] = root / kind
    yield made
    logging.enable_progress_bar()


def _interface(path) -> tuple[dict[str, list], dict[str, list]]:
    from onnxport.artifact.modelinfo import read_model_info

    info = read_model_info(path)
    return ({t.name: t.shape for t in info.inputs}, {t.name: t.shape for t in info.outputs})


CASES = {  # kind: (task, inputs, outputs, verified at)
    "bert": ("text-classification", ["input_ids", "attention_mask", "token_type_ids"],
             ["logits"], ["batch 1, sequence 16", "batch 3, sequence 8"]),
    "distilbert": ("feature-extraction", ["input_ids", "attention_mask"],
                   ["last_hidden_state"], ["batch 1, sequence 16", "batch 3, sequence 8"]),
    "ast": ("audio-classification", ["input_values"], ["logits"], ["batch 1", "batch 3"]),
    "vit": ("image-classification", ["pixel_values"], ["logits"], ["batch 1", "batch 3"]),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_a_saved_model_converts_with_default_options(cli, saved, tmp_path, kind):
    task, inputs, outputs, labels = CASES[kind]
    out = tmp_path / kind
    done = cli("convert", saved[kind], "-o", out, "--task", task)
    assert done.code == 0, done.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    source = manifest["source"]
    assert source["backend"] == "transformers" and source["framework"] == "torch"
    assert source["details"]["task"] == task
    assert source["details"]["model_class"] == type(_tiny(kind)).__name__
    got_in, got_out = _interface(out / "cpu" / manifest["model"])
    assert list(got_in) == inputs and list(got_out) == outputs
    assert all(shape[0] == "batch" for shape in [*got_in.values(), *got_out.values()])
    verification = manifest["verification"]
    assert verification["passed"]
    assert [b["label"] for b in verification["batches"]] == labels
    if kind in ("bert", "distilbert"):  # text: the sequence axis varies
        assert all(shape[:2] == ["batch", "sequence"] for shape in got_in.values())
        lengths = [{d["shape"][1] for d in b["inputs"].values()}
                   for b in verification["batches"]]
        assert lengths == [{16}, {8}]  # every text input at the same length
        first = verification["batches"][1]["inputs"]
        assert first["attention_mask"]["min"] == first["attention_mask"]["max"] == 1
        assert first["input_ids"]["max"] < 100  # inside the vocabulary
        if "token_type_ids" in first:
            assert first["token_type_ids"]["max"] == 0
        if kind == "distilbert":
            assert got_out["last_hidden_state"][:2] == ["batch", "sequence"]
        checks = {c["name"]: c for c in verification["checks"]}
        assert checks["dynamic axes"]["passed"]
    else:
        assert all(isinstance(d, int) for shape in got_in.values() for d in shape[1:])


def test_the_task_comes_from_the_saved_class_when_not_given(saved, tmp_path):
    result = onnxport.convert(saved["vit"], output=tmp_path / "vit", latency_runs=0)
    assert result.loaded.details["task"] == "image-classification"
    assert result.loaded.backend == "transformers"


def test_an_unknown_model_type_is_bad_input(cli, tmp_path):
    directory = tmp_path / "mystery"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"model_type": "no-such-model",
                                                       "hidden_size": 8}))
    out = tmp_path / "out"
    done = cli("convert", directory, "-o", out, "--task", "text-classification")
    assert done.code == ExitCode.BAD_INPUT, done.err
    text = " ".join(done.err.split())
    assert "model_type 'no-such-model' is not a model type transformers" in text
    assert not out.exists()


def test_a_task_the_model_does_not_support_is_bad_input(cli, saved, tmp_path):
    out = tmp_path / "out"
    done = cli("convert", saved["vit"], "-o", out, "--task", "text-classification")
    assert done.code == ExitCode.BAD_INPUT, done.err
    text = " ".join(done.err.split())
    assert "a vit model does not support the task text-classification" in text
    assert "tasks it supports: feature-extraction, image-classification" in text
    assert not out.exists()


def test_a_task_whose_head_the_directory_lacks_is_bad_input(cli, saved, tmp_path):
    """A base BertModel saved, converted as a classifier: the head would be random."""
    out = tmp_path / "out"
    done = cli("convert", saved["bert-base"], "-o", out, "--task", "text-classification")
    assert done.code == ExitCode.BAD_INPUT, done.err
    text = " ".join(done.err.split())
    assert "has no trained weights for classifier" in text
    assert "pick the task the model was saved for (its class: BertModel)" in text
    assert not out.exists()


def test_a_hub_id_offline_is_a_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from onnxport_transformers import HubModel

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BadInput, match="offline mode is on") as caught:
        onnxport.convert(HubModel("prajjwal1/bert-tiny"), output=tmp_path / "out",
                         backend_options={"task": "feature-extraction"})
    assert "save_pretrained" in caught.value.hint


def test_can_load_reads_config_json_without_importing_transformers(saved, tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from onnxport.records import Source\n"
        "from onnxport_transformers.detect import can_load\n"
        "def src(p): return Source(kind='path', value=Path(p), origin=str(p))\n"
        f"print(can_load(src({str(saved['bert'])!r})), can_load(src({str(tmp_path)!r})),\n"
        "      'transformers' in sys.modules, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "False"]


def test_verify_reloads_with_the_task_the_conversion_was_given(cli, saved, tmp_path):
    """A classifier's directory converted for feature extraction: checking it again must
    load the same task, not the one config.json's class would pick."""
    out = tmp_path / "features"
    done = cli("convert", saved["bert"], "-o", out, "--task", "feature-extraction",
               "--latency-runs", "0")
    assert done.code == 0, done.err
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    assert manifest["source"]["load_options"] == {"task": "feature-extraction"}
    again = cli("verify", out, "--source", saved["bert"])
    assert again.code == 0, again.err + again.out
