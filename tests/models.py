"""Small models that fail in the ways real users' models fail, for the tests."""

import torch
from torch import nn


class Branchy(nn.Module):
    """A Python branch on tensor values: TorchScript bakes in the branch it traced,
    dynamo refuses to trace it."""

    def forward(self, x):
        if x.mean() > 10:
            return x * 2
        return x - 1


def branchy():
    return Branchy(), {"x": torch.full((2, 4), 20.0)}, ["y"]


class FixedBatch(nn.Module):
    """Turns the batch size into a Python int: eager follows the input, but a tracer
    records the example's batch as a constant (the classic lost batch dimension)."""

    def forward(self, x):
        batch = int(x.shape[0])
        return x.reshape(batch, -1).sum(dim=1, keepdim=True)


def fixed_batch():
    return FixedBatch(), {"x": torch.ones(2, 3, 4)}, ["total"]


class TwoHeads(nn.Module):
    """Two named inputs, two outputs: the Python API's naming paths."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, left, right):
        mixed = self.a(left) + self.b(right)
        return mixed.softmax(dim=-1), mixed.sum(dim=-1, keepdim=True)


def two_heads():
    return TwoHeads(), {"left": torch.randn(2, 4), "right": torch.randn(2, 5)}, \
        ["probs", "score"]
