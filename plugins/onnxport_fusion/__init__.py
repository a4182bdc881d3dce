"""Built-in plugin: the `fuse` pass, onnxruntime's offline transformer optimizer.

`onnxruntime.transformers.optimizer.optimize_model` rewrites transformer subgraphs into
onnxruntime's fused contrib ops: Attention, EmbedLayerNormalization,
SkipLayerNormalization, BiasGelu / FastGelu, LayerNormalization. The session optimizer
that loads the model later recovers SkipLayerNormalization on its own but never the
fused Attention: that needs this pass, and the model type.

- The graph is read first (detect.py): no attention block and no layer norm -> skipped
  with the reason. The model type is the target's `fuse.model_type`, else detected:
  gpt2 for a causal mask, vit for a Conv patch embedding, bert otherwise. num_heads and
  hidden_size are the options', else read from the head-splitting Reshape (current
  Hugging Face exports reshape to (batch, seq, -1, head_size), where onnxruntime's own
  detection finds nothing and fuses no Attention), else 0 (left to the optimizer).
- It runs in a child process with a time limit (fuse.timeout), whose current and
  temporary directory are inside the pass's work directory: nothing is written where the
  user runs onnxport, a crash or hang becomes a reason, and onnxruntime.transformers'
  sys.path additions stay out of this process.
- BERT fusion uses the raw attention mask, not onnxruntime's default mask index (which
  assumes right padding: measured here, a left-padded batch then differs by 1e-2).
- The result is kept only when the interface is unchanged (names, element types, ranks,
  symbolic dimensions) and the op histogram shows fused ops; settings record the model
  type, heads, hidden size and the fused op counts, e.g. {"Attention": 2,
  "SkipLayerNormalization": 4}.

opt_level is 0: only the Python fusions run, no onnxruntime graph optimisation first.
Measured on tiny BERT, GPT-2 and ViT exports (TorchScript, opset 17; eager and sdpa
attention), levels 0 and 1 fuse exactly the same ops; level 1 only folds constants
(BERT 57 -> 37 nodes), which the session optimizer (level 99 at load time) does anyway:
after it, both are the same 36-node graph, and they run equally fast.
Level 1 would also import torch inside onnxruntime's optimizer (an ONNX-only install has
none) and create an extra onnxruntime session.

Layer norms are left to the session by default (norms "keep"): onnxruntime's
SkipLayerNormalization and EmbedLayerNormalization kernels measured slower than the
Add + LayerNormalization they replace (benchmarks/fusion_norms.py; options.NORMS).
`--optimize thorough` also tries norms "fuse" (what Optimum -O2 and Olive ship) as a
candidate of its own.

Options, target.options["fuse"]: mode ("auto" | "off"), model_type, norms ("keep" |
"fuse"), num_heads, hidden_size, timeout (seconds). Importing this module imports
neither onnx nor onnxruntime.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.pass_modes import mode_of
from onnxport.records import Pass, Requirements, Target

from .options import FuseOptions


def mode(target: Target) -> str:
    """The fuse mode a target asks for; "auto" unless it says otherwise."""
    return mode_of(target, "fuse", FuseOptions.mode)


def variants(target: Target, level: str, calibrated: bool) -> list[dict]:
    """The fused candidates to try: the target's settings, then (thorough) the other
    layer-norm setting."""
    if level != "thorough":
        return [{}]
    norms = target.options.get("fuse", {}).get("norms", FuseOptions.norms)
    return [{}, {"norms": "fuse" if norms == "keep" else "keep"}]


def _run(context):
    from .fusing import fuse

    return fuse(context)


@hookimpl
def onnxport_register_passes(register):
    register(Pass(
        options=FuseOptions,
        alternative=True,
        variants=variants,
        name="fuse",
        description="onnxruntime's transformer optimizer: Attention and BiasGelu/"
                    "FastGelu fusions, SkipLayerNormalization and "
                    "EmbedLayerNormalization with norms=fuse; model type (bert, gpt2, "
                    "vit) and heads detected from the graph; skipped with the reason for "
                    "non-transformers, when nothing fuses or the interface would change",
        run=_run,
        applies=lambda target: mode(target) != "off",
        optional=True,
        requires=Requirements(modules=("onnxruntime", "onnx"), extra="onnx"),
    ))
