"""Localization: 3-channel spectrogram -> position + uncertainty, after seed 004's Heimdall LocalizationNet.

Stresses two outputs with different tolerances (unbounded positions, clamped
uncertainties) from a small ConvNeXt-style backbone.
"""

import torch
from torch import nn
from torch.nn import functional as F

INPUTS = {"mel_spectrogram": ("batch", 3, 128, 32)}
OUTPUTS = ["positions", "uncertainties"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of an NCHW tensor (permute, normalise, permute back)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> Linear 4x -> GELU -> Linear -> layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)              # NCHW -> NHWC
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class LocalizationNet(nn.Module):
    """Patchify stem -> 3 ConvNeXt stages (32/64/128 ch) -> global pool -> two heads."""

    def __init__(self, dims=(32, 64, 128), depths=(2, 2, 2)):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0])]  # 128x32 -> 32x8
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:  # downsample 2x between stages
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.backbone = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1])
        self.position_head = nn.Sequential(nn.Linear(dims[-1], 64), nn.GELU(), nn.Linear(64, 2))
        self.uncertainty_head = nn.Sequential(nn.Linear(dims[-1], 64), nn.GELU(),
                                              nn.Linear(64, 2))
        # Start near softplus(x) = 1 so that part of the outputs hit the upper clamp.
        nn.init.constant_(self.uncertainty_head[2].bias, 0.55)

    def forward(self, mel_spectrogram):
        features = self.norm(self.backbone(mel_spectrogram).mean(dim=(2, 3)))
        positions = self.position_head(features)
        uncertainties = torch.clamp(F.softplus(self.uncertainty_head(features)), 0.01, 1.0)
        return positions, uncertainties


def make_model() -> LocalizationNet:
    """The model with seeded (untrained) weights, in eval mode."""
    torch.manual_seed(0)
    return LocalizationNet().eval()


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
