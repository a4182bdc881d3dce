"""Autopilot (PyTorch): sensor window -> rudder command, after seed 001 (the PyTorch port).

Stresses a 2-layer LSTM under both exporters (TorchScript opset 14 and dynamo), a
dynamic batch, and loading weights from a state_dict checkpoint.
"""

import torch
from torch import nn

INPUTS = {"sensors": ("batch", 20, 25)}
OUTPUTS = ["rudder"]


class Autopilot(nn.Module):
    """LSTM(25 -> 64, 2 layers) -> last step -> MLP -> tanh rudder in [-1, 1]."""

    def __init__(self, n_features: int = 25, hidden: int = 64):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, sensors):
        seq, _ = self.lstm(sensors)
        return torch.tanh(self.head(seq[:, -1, :]))


def make_model() -> Autopilot:
    """The model with seeded (untrained) weights, in eval mode."""
    torch.manual_seed(0)
    return Autopilot().eval()


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
