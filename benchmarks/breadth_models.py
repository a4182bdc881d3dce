"""Real architectures nobody in this project wrote, for `zoo_breadth.py`.

Every builder is a zero-argument factory in the form onnxport's factories use: it
returns `(model, example_inputs)` (a dict whose keys are the input names, or one
array/tensor). Everything is built in code with fixed seeds and random (untrained)
weights; nothing is downloaded (`HF_HUB_OFFLINE=1` is set before transformers is
imported, and only `*Config` objects are used).

    onnxport convert benchmarks/breadth_models.py:bert_seqcls -o out/bert --json

Sources, by family:

- `timm` (PyTorch Image Models): ResNet18, MobileNetV3-small, EfficientNet-B0,
  ConvNeXt-atto, ViT-tiny, all with `timm.create_model(name, pretrained=False,
  num_classes=10)` at a 64x64 input. timm 1.0.31 imports `torchvision` at import
  time (`timm/layers/create_norm.py`: `from torchvision.ops.misc import
  FrozenBatchNorm2d`; `timm/data/transforms.py`), and torchvision must not be installed
  beside this torch. `_import_timm()` therefore puts an inert stand-in for the
  `torchvision` package in place only while timm is imported, and removes it again
  (none of these five models calls torchvision; a model that did would fail loudly).
- plain `torch.nn`: a small 3D-conv video classifier (R(2+1)D-like stem).
- Hugging Face `transformers` from tiny configs: BERT, DistilBERT, RoBERTa (sequence
  classification), GPT-2 (LM head), T5 encoder, CLIP text model, AST and Wav2Vec2
  (audio classification), ViT (image classification), Whisper (audio classification:
  the Whisper encoder plus a head). Token ids are inside the vocabulary and avoid the
  special ids, `attention_mask` is ones, `token_type_ids` zeros, in the order the model's
  tokenizer returns them (BERT's returns input_ids, token_type_ids, attention_mask).
- `keras.applications` with `weights=None` at a small input size: MobileNetV2,
  EfficientNetB0, EfficientNetV2B0, ConvNeXtTiny, ResNet50; and three hand-written
  Keras models that stress other paths: Masking + LSTM, a registered custom layer, and
  a subclassed model whose `call(self, x)` takes one tensor.

`MODELS` lists them: name -> (framework, family, builder).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 2        # example batch: >= 2 so a dynamic batch can be traced
IMAGE = 64       # image side for the CNNs and ViTs
SEQ = 16         # token sequence length
VOCAB = 1000     # tiny vocabularies


# ============================================================================ timm


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return f"<torchvision stand-in {cls.__name__}.{name}>"


def _unavailable(self, *args, **kwargs):
    raise RuntimeError("torchvision is not installed (benchmarks/breadth_models.py put an "
                       "inert stand-in in place only so that timm imports)")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _StubMeta(name, (), {"__module__": self.__name__,
                                           "__init__": _unavailable})
        setattr(self, name, placeholder)
        return placeholder


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def _import_timm():
    """`import timm` without torchvision installed (see the module docstring)."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:  # a real one: use it
        import timm
        return timm
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    try:
        import timm
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules
                     if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # torch.onnx asks find_spec("torchvision") later
    return timm


def _timm_model(name: str, **kwargs):
    import torch

    timm = _import_timm()
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=gen)
    return model, {"x": x}


def timm_resnet18():
    return _timm_model("resnet18")


def timm_mobilenetv3_small():
    return _timm_model("mobilenetv3_small_100")


def timm_efficientnet_b0():
    return _timm_model("efficientnet_b0")


def timm_convnext_atto():
    return _timm_model("convnext_atto")


def timm_vit_tiny():
    return _timm_model("vit_tiny_patch16_224", img_size=IMAGE)


# ============================================================================ torch.nn


def video_r2plus1d():
    """A small video classifier in plain torch.nn: (2+1)D factorised 3D convolutions,
    BatchNorm3d, max pooling over space and time, global average pooling."""
    import torch
    from torch import nn

    def conv2plus1d(cin, cout, stride=1):
        mid = (cin + cout) // 2
        return nn.Sequential(
            nn.Conv3d(cin, mid, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                      bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0),
                      bias=False),
            nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

    class VideoNet(nn.Module):
        def __init__(self, classes=5):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv3d(3, 16, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3),
                          bias=False),
                nn.BatchNorm3d(16), nn.ReLU(inplace=True),
                nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)))
            self.layer1 = conv2plus1d(16, 32)
            self.layer2 = conv2plus1d(32, 64, stride=2)
            self.pool = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(64, classes)

        def forward(self, clip):  # [batch, 3, frames, height, width]
            x = self.layer2(self.layer1(self.stem(clip)))
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(0)
    model = VideoNet().eval()
    # untrained BatchNorm has mean 0 / var 1: give it statistics like a trained one
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    clip = torch.randn(BATCH, 3, 8, IMAGE // 2, IMAGE // 2,
                       generator=torch.Generator().manual_seed(0))
    return model, {"clip": clip}


# ============================================================================ transformers


def _hf(model_class: str, config_class: str, **config):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = getattr(transformers, config_class)(**config)
    return getattr(transformers, model_class)(cfg).eval()


def _token_ids(low: int = 5, high: int = VOCAB, seq: int = SEQ):
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randint(low, high, (BATCH, seq), generator=gen, dtype=torch.long)


def _text_inputs(*names: str, seq: int = SEQ, low: int = 5):
    """Tokenizer-like inputs, in the order given (that of the model's tokenizer)."""
    import torch

    made = {"input_ids": _token_ids(low=low, seq=seq),
            "token_type_ids": torch.zeros(BATCH, seq, dtype=torch.long),
            "attention_mask": torch.ones(BATCH, seq, dtype=torch.long)}
    return {n: made[n] for n in names}


_TINY_BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)


def bert_seqcls():
    model = _hf("BertForSequenceClassification", "BertConfig", num_labels=3, **_TINY_BERT)
    # BertTokenizer returns input_ids, token_type_ids, attention_mask (in that order)
    return model, _text_inputs("input_ids", "token_type_ids", "attention_mask")


def distilbert_seqcls():
    model = _hf("DistilBertForSequenceClassification", "DistilBertConfig", num_labels=3,
                vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                max_position_embeddings=64)
    return model, _text_inputs("input_ids", "attention_mask")


def roberta_seqcls():
    model = _hf("RobertaForSequenceClassification", "RobertaConfig", num_labels=3,
                **{**_TINY_BERT, "max_position_embeddings": 64 + 2})
    # RobertaTokenizer returns input_ids, attention_mask; ids avoid <s>=0 <pad>=1 </s>=2
    return model, _text_inputs("input_ids", "attention_mask")


def gpt2_lm():
    model = _hf("GPT2LMHeadModel", "GPT2Config", vocab_size=VOCAB, n_embd=32, n_layer=2,
                n_head=2, n_positions=64, use_cache=False)
    return model, _text_inputs("input_ids", "attention_mask")


def t5_encoder():
    model = _hf("T5EncoderModel", "T5Config", vocab_size=VOCAB, d_model=32, d_kv=16,
                d_ff=64, num_layers=2, num_heads=2)
    return model, _text_inputs("input_ids", "attention_mask")


def clip_text():
    model = _hf("CLIPTextModel", "CLIPTextConfig", vocab_size=VOCAB, hidden_size=32,
                intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=SEQ, bos_token_id=VOCAB - 2,
                eos_token_id=VOCAB - 1, pad_token_id=VOCAB - 1)
    inputs = _text_inputs("input_ids", "attention_mask")
    ids = _token_ids(low=5, high=VOCAB - 2)
    ids[:, 0] = VOCAB - 2   # <|startoftext|>
    ids[:, -1] = VOCAB - 1  # <|endoftext|>: CLIP pools the hidden state at the eos token
    inputs["input_ids"] = ids
    return model, inputs


def ast_audio():
    model = _hf("ASTForAudioClassification", "ASTConfig", num_labels=5, hidden_size=32,
                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                num_mel_bins=32, max_length=64)
    import torch

    gen = torch.Generator().manual_seed(0)
    # [batch, time frames, mel bins], normalised log-mel like the feature extractor's
    return model, {"input_values": torch.randn(BATCH, 64, 32, generator=gen) * 0.5}


def wav2vec2_audio():
    model = _hf("Wav2Vec2ForSequenceClassification", "Wav2Vec2Config", num_labels=4,
                vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64, conv_dim=(32, 32, 32), conv_stride=(5, 2, 2),
                conv_kernel=(10, 3, 3), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, classifier_proj_size=16,
                apply_spec_augment=False)
    import torch

    gen = torch.Generator().manual_seed(0)
    # 0.1 s of 16 kHz audio, zero mean unit variance like Wav2Vec2FeatureExtractor's
    return model, {"input_values": torch.randn(BATCH, 1600, generator=gen)}


def vit_image():
    model = _hf("ViTForImageClassification", "ViTConfig", num_labels=10,
                image_size=IMAGE // 2, patch_size=8, hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64)
    import torch

    gen = torch.Generator().manual_seed(0)
    return model, {"pixel_values": torch.randn(BATCH, 3, IMAGE // 2, IMAGE // 2,
                                               generator=gen)}


def whisper_audio():
    model = _hf("WhisperForAudioClassification", "WhisperConfig", num_labels=5,
                vocab_size=VOCAB, num_mel_bins=16, d_model=32, encoder_layers=2,
                encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                decoder_attention_heads=2, decoder_ffn_dim=64, max_source_positions=32,
                max_target_positions=32, classifier_proj_size=16,
                pad_token_id=VOCAB - 1, bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1,
                decoder_start_token_id=VOCAB - 2, begin_suppress_tokens=None)
    import torch

    gen = torch.Generator().manual_seed(0)
    # [batch, mel bins, 2 * max_source_positions frames] (the encoder insists on it)
    return model, {"input_features": torch.randn(BATCH, 16, 64, generator=gen) * 0.5}


# ============================================================================ Keras


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _images(side: int = IMAGE, low: float = 0.0, high: float = 255.0):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.uniform(low, high, (BATCH, side, side, 3)).astype("float32")


def keras_mobilenetv2():
    keras = _keras()
    model = keras.applications.MobileNetV2(input_shape=(IMAGE, IMAGE, 3), weights=None,
                                           classes=10)
    # MobileNetV2 expects inputs already scaled to [-1, 1] (preprocess_input)
    return model, _images(low=-1.0, high=1.0)


def keras_efficientnetb0():
    keras = _keras()
    model = keras.applications.EfficientNetB0(input_shape=(IMAGE, IMAGE, 3), weights=None,
                                              classes=10)
    return model, _images()  # include_preprocessing: raw [0, 255] pixels


def keras_efficientnetv2b0():
    keras = _keras()
    model = keras.applications.EfficientNetV2B0(input_shape=(IMAGE, IMAGE, 3),
                                                weights=None, classes=10)
    return model, _images()


def keras_convnext_tiny():
    keras = _keras()
    model = keras.applications.ConvNeXtTiny(input_shape=(IMAGE, IMAGE, 3), weights=None,
                                            classes=10)
    return model, _images()


def keras_resnet50():
    keras = _keras()
    model = keras.applications.ResNet50(input_shape=(IMAGE, IMAGE, 3), weights=None,
                                        classes=10)
    return model, _images(low=-120.0, high=150.0)  # caffe-style mean-subtracted BGR


def keras_masking_lstm():
    """Padded sequences: Masking(0) -> LSTM -> Dense, with zero padding in the example."""
    keras = _keras()
    import numpy as np
    from keras import layers

    inputs = keras.Input(shape=(20, 8), name="frames")
    x = layers.Masking(mask_value=0.0, name="mask")(inputs)
    x = layers.LSTM(16, name="lstm")(x)
    outputs = layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="masked_lstm")
    rng = np.random.default_rng(0)
    frames = rng.uniform(-1, 1, (BATCH, 20, 8)).astype("float32")
    frames[0, 14:] = 0.0  # the first sequence has 14 steps, then padding
    frames[1, 9:] = 0.0
    return model, {"frames": frames}


_CUSTOM_LAYER = None


def _custom_layer_class():
    """A registered custom layer (defined on first use, so that torch rows importing
    this file never import TensorFlow)."""
    global _CUSTOM_LAYER
    if _CUSTOM_LAYER is not None:
        return _CUSTOM_LAYER
    keras = _keras()

    @keras.saving.register_keras_serializable(package="breadth")
    class GatedResidual(keras.layers.Layer):
        """y = x + sigmoid(x W_g + b_g) * tanh(x W + b), with a learned scale."""

        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            dim = input_shape[-1]
            self.kernel = self.add_weight(shape=(dim, self.units), name="kernel",
                                          initializer="glorot_uniform")
            self.gate = self.add_weight(shape=(dim, self.units), name="gate",
                                        initializer="glorot_uniform")
            self.bias = self.add_weight(shape=(self.units,), name="bias",
                                        initializer="zeros")
            self.scale = self.add_weight(shape=(), name="scale", initializer="ones")

        def call(self, x):
            ops = keras.ops
            value = ops.tanh(ops.matmul(x, self.kernel) + self.bias)
            gate = ops.sigmoid(ops.matmul(x, self.gate))
            return x + self.scale * gate * value

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    _CUSTOM_LAYER = GatedResidual
    return GatedResidual


def keras_custom_layer():
    GatedResidual = _custom_layer_class()
    keras = _keras()
    import numpy as np
    from keras import layers

    inputs = keras.Input(shape=(24,), name="features")
    x = layers.Dense(32, activation="relu", name="embed")(inputs)
    x = GatedResidual(32, name="gated_1")(x)
    x = layers.LayerNormalization(name="norm")(x)
    x = GatedResidual(32, name="gated_2")(x)
    outputs = layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, outputs, name="gated_mlp")
    rng = np.random.default_rng(0)
    return model, {"features": rng.standard_normal((BATCH, 24)).astype("float32")}


def keras_subclassed():
    """A subclassed model: call(self, x) takes one tensor (a 1D-conv audio tagger)."""
    keras = _keras()
    import numpy as np
    from keras import layers

    class AudioTagger(keras.Model):
        def __init__(self, classes=6, **kwargs):
            super().__init__(**kwargs)
            self.conv1 = layers.Conv1D(16, 5, padding="same", activation="relu")
            self.norm = layers.BatchNormalization()
            self.conv2 = layers.Conv1D(32, 3, strides=2, padding="same",
                                       activation="relu")
            self.pool = layers.GlobalAveragePooling1D()
            self.drop = layers.Dropout(0.2)
            self.head = layers.Dense(classes)

        def call(self, x, training=False):
            x = self.norm(self.conv1(x), training=training)
            x = self.pool(self.conv2(x))
            return self.head(self.drop(x, training=training))

    model = AudioTagger(name="audio_tagger")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 50, 12)).astype("float32")
    model(x)  # build the weights, as any user does before exporting
    return model, x


# ============================================================================ registry

MODELS = {
    "timm_resnet18": ("torch", "timm", timm_resnet18),
    "timm_mobilenetv3_small": ("torch", "timm", timm_mobilenetv3_small),
    "timm_efficientnet_b0": ("torch", "timm", timm_efficientnet_b0),
    "timm_convnext_atto": ("torch", "timm", timm_convnext_atto),
    "timm_vit_tiny": ("torch", "timm", timm_vit_tiny),
    "video_r2plus1d": ("torch", "torch.nn", video_r2plus1d),
    "bert_seqcls": ("torch", "transformers", bert_seqcls),
    "distilbert_seqcls": ("torch", "transformers", distilbert_seqcls),
    "roberta_seqcls": ("torch", "transformers", roberta_seqcls),
    "gpt2_lm": ("torch", "transformers", gpt2_lm),
    "t5_encoder": ("torch", "transformers", t5_encoder),
    "clip_text": ("torch", "transformers", clip_text),
    "ast_audio": ("torch", "transformers", ast_audio),
    "wav2vec2_audio": ("torch", "transformers", wav2vec2_audio),
    "vit_image": ("torch", "transformers", vit_image),
    "whisper_audio": ("torch", "transformers", whisper_audio),
    "keras_mobilenetv2": ("keras", "keras.applications", keras_mobilenetv2),
    "keras_efficientnetb0": ("keras", "keras.applications", keras_efficientnetb0),
    "keras_efficientnetv2b0": ("keras", "keras.applications", keras_efficientnetv2b0),
    "keras_convnext_tiny": ("keras", "keras.applications", keras_convnext_tiny),
    "keras_resnet50": ("keras", "keras.applications", keras_resnet50),
    "keras_masking_lstm": ("keras", "keras", keras_masking_lstm),
    "keras_custom_layer": ("keras", "keras", keras_custom_layer),
    "keras_subclassed": ("keras", "keras", keras_subclassed),
}
