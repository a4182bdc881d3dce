"""Benchmark the `fuse` pass's layer-norm setting: why `norms = "keep"` is the default.

onnxruntime's transformer optimizer can also fuse Add + LayerNormalization into
SkipLayerNormalization and the embeddings into EmbedLayerNormalization (what Optimum -O2
and Olive ship). This script builds BERT sequence classifiers from configs (random
weights, seed 0, eager attention: the implementation the Attention fusion matches),
exports each with `torch.onnx.export` (TorchScript, opset 17, dynamic batch), runs the
`fuse` pass on it with `norms = "keep"` and with `norms = "fuse"`, and times the three
models side by side: onnxruntime CPU, one thread, ORT_ENABLE_ALL, one call per model and
batch per round in a rotating order, after a warm-up; the table gives each median
relative to the plain export at the same batch (lower is faster), the geometric mean
over batch 1 and 8 (what an `x86-avx2` target ships on), and the worst absolute
difference from the plain export. Inputs are real padding masks (sequence lengths drawn
between a quarter of the length and the whole).

    .venv/bin/python benchmarks/fusion_norms.py [--rounds N] [--sizes tiny,mid]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import onnxport_fusion
from onnxport.records import PassContext, Target

SIZES = {  # name: (hidden, layers, heads, sequence length)
    "tiny": (64, 2, 2, 32),
    "mid": (256, 4, 4, 64),
}
BATCHES = (1, 8)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_bert(size: str, path: Path) -> int:
    from transformers import BertConfig, BertForSequenceClassification

    hidden, layers, heads, seq = SIZES[size]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=1000, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=4 * hidden,
        max_position_embeddings=max(64, seq), attn_implementation="eager")).eval()

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    example = (torch.randint(0, 1000, (2, seq)), torch.ones(2, seq, dtype=torch.int64),
               torch.zeros(2, seq, dtype=torch.int64))
    torch.onnx.export(Logits(model), example, str(path), dynamo=False, opset_version=17,
                      input_names=list(INPUTS), output_names=["logits"],
                      dynamic_axes={n: {0: "batch"} for n in [*INPUTS, "logits"]})
    return seq


def fuse(source: Path, norms: str, work: Path) -> Path:
    records = []
    onnxport_fusion.onnxport_register_passes(records.append)
    out = work / f"fused-{norms}.onnx"
    outcome = records[0].run(PassContext(
        input_path=source, output_path=out, target=Target(name="cpu", description="x"),
        options={"norms": norms}, work_dir=work / f"work-{norms}"))
    if not outcome.applied:
        raise SystemExit(f"fuse (norms={norms}) did not apply: {outcome.reason}")
    print(f"  norms={norms}: fused {outcome.settings['fused']}", file=sys.stderr)
    return out


def feeds(batch: int, seq: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    lengths = rng.integers(seq // 4, seq + 1, batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, 1000, (batch, seq)).astype(np.int64) * mask
    return {"input_ids": ids, "attention_mask": mask,
            "token_type_ids": np.zeros((batch, seq), np.int64)}


def measure(models: dict[str, Path], seq: int, rounds: int) -> dict[str, dict]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {name: ort.InferenceSession(str(p), options,
                                           providers=["CPUExecutionProvider"])
                for name, p in models.items()}
    rng = np.random.default_rng(0)
    data = {b: feeds(b, seq, rng) for b in BATCHES}
    calls = [(name, b) for name in sessions for b in BATCHES]
    for name, b in calls * 20:
        sessions[name].run(None, data[b])
    samples: dict[tuple[str, int], list[float]] = {call: [] for call in calls}
    for round_ in range(rounds):
        shift = round_ % len(calls)
        for name, b in calls[shift:] + calls[:shift]:
            started = time.perf_counter()
            sessions[name].run(None, data[b])
            samples[(name, b)].append(time.perf_counter() - started)
    plain = {b: sessions["plain"].run(None, data[b])[0] for b in BATCHES}
    result = {}
    for name, session in sessions.items():
        ratios = [statistics.median(samples[(name, b)])
                  / statistics.median(samples[("plain", b)]) for b in BATCHES]
        error = max(float(np.abs(session.run(None, data[b])[0] - plain[b]).max())
                    for b in BATCHES)
        result[name] = {"ratios": ratios, "geo": math.prod(ratios) ** (1 / len(ratios)),
                        "ms": [statistics.median(samples[(name, b)]) * 1e3
                               for b in BATCHES], "error": error}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--sizes", default=",".join(SIZES))
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, CPU provider, 1 thread, {args.rounds} rounds\n")
    print("| model | fuse | b1 ms | b1 vs plain | b8 ms | b8 vs plain | geomean | "
          "max abs diff |")
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            print(f"{size}: exporting and fusing", file=sys.stderr)
            seq = export_bert(size, work / "plain.onnx")
            models = {"plain": work / "plain.onnx",
                      "norms=keep": fuse(work / "plain.onnx", "keep", work),
                      "norms=fuse": fuse(work / "plain.onnx", "fuse", work)}
            hidden, layers, heads, _ = SIZES[size]
            label = f"BERT {size} (hidden {hidden}, {layers} layers, seq {seq})"
            for name, row in measure(models, seq, args.rounds).items():
                print(f"| {label} | {name} | {row['ms'][0]:.3f} | {row['ratios'][0]:.2f}x "
                      f"| {row['ms'][1]:.3f} | {row['ratios'][1]:.2f}x | "
                      f"{row['geo']:.2f}x | {row['error']:.1e} |")
                label = ""
    return 0


if __name__ == "__main__":
    sys.exit(main())
