"""Wakeword: AST features -> wake/no-wake logits, after seed 003's WakeBuilder classifier.

Stresses attention pooling, squeeze-excitation and a temporal conv block in a classifier
(argmax agreement matters) whose weights sit almost all in Linear layers, so INT8
dynamic quantization shrinks it ~4x (~2.4 MB -> ~0.6 MB).
"""

import torch
from torch import nn

INPUTS = {"input_values": ("batch", 1024, 128)}
OUTPUTS = ["logits"]


class SqueezeExcite(nn.Module):
    """Channel gating: mean over time -> bottleneck MLP -> sigmoid scale. x: [b, t, c]."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, x):
        s = x.mean(dim=1, keepdim=True)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s


class TemporalConvBlock(nn.Module):
    """Depthwise Conv1d over time + pointwise (Linear) MLP, with a residual. x: [b, t, c]."""

    def __init__(self, channels: int, hidden: int, kernel: int = 5, dilation: int = 1):
        super().__init__()
        self.dwconv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel // 2),
                                dilation=dilation, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.pw1 = nn.Linear(channels, hidden)
        self.pw2 = nn.Linear(hidden, channels)

    def forward(self, x):
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        y = self.pw2(torch.relu(self.pw1(self.norm(y))))
        return x + y


class AttentionPooling(nn.Module):
    """Self-attention pooling over time: softmax(score(h)) weighted sum of values. -> [b, c]."""

    def __init__(self, channels: int, attn_hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(channels, attn_hidden), nn.Tanh(),
                                   nn.Linear(attn_hidden, 1))
        self.value = nn.Linear(channels, channels)

    def forward(self, x):
        weights = torch.softmax(self.score(x), dim=1)        # [b, t, 1]
        return (weights * self.value(x)).sum(dim=1)         # [b, c]


class WakeWord(nn.Module):
    """Frame projection -> SE -> 2 temporal conv blocks -> attention pooling -> FC 256-128-2."""

    def __init__(self, n_mels: int = 128, dim: int = 256, hidden: int = 384):
        super().__init__()
        self.proj = nn.Linear(n_mels, dim)
        self.se = SqueezeExcite(dim)
        self.tcn = nn.Sequential(TemporalConvBlock(dim, hidden, dilation=1),
                                 TemporalConvBlock(dim, hidden, dilation=2))
        self.pool = AttentionPooling(dim)
        self.classifier = nn.Sequential(nn.Linear(dim, 128), nn.ReLU(), nn.Linear(128, 2))

    def forward(self, input_values):
        x = torch.relu(self.proj(input_values))             # [b, 1024, 256]
        x = self.tcn(self.se(x))
        return self.classifier(self.pool(x))


def make_model() -> WakeWord:
    """The model with seeded (untrained) weights, in eval mode."""
    torch.manual_seed(0)
    return WakeWord().eval()


def build(batch: int = 2):
    """Return (model, example_inputs, OUTPUTS); deterministic across calls."""
    model = make_model()
    gen = torch.Generator().manual_seed(0)
    inputs = {
        name: torch.randn(*(batch if d == "batch" else d for d in shape),
                          generator=gen, dtype=torch.float32)
        for name, shape in INPUTS.items()
    }
    return model, inputs, OUTPUTS
