"""Models that break in the ways real models break, for the diagnosis and export-error
tests: each one fails for a reason a user would meet, not because a test forced it."""

import torch
from torch import nn

# ----------------------------------------------------------------------------- diagnosis


class SensitiveMLP(nn.Module):
    """An MLP whose middle layer has one outlier weight, on an input channel that is
    always zero (fc1's channel 0 is a dead ReLU, so that weight never mattered in
    training and nothing kept it small). Per-tensor INT8 gives the whole of fc2's matrix
    a scale of 40/127, so every other weight rounds to zero or one step: fc2 is the layer
    INT8 breaks; fc1 and fc3 quantize fine."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 4)
        with torch.no_grad():
            self.fc1.bias[0] = -20.0  # a dead channel: relu(fc1(x))[..., 0] is always 0
            self.fc2.weight[3, 0] = 40.0

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def sensitive_mlp():
    return SensitiveMLP().eval(), {"x": torch.rand(2, 8, 16) * 2 - 1}, ["y"]


class SoftplusHead(nn.Module):
    """`nn.Softplus(threshold=1.0)` returns x itself where x > 1. ONNX Softplus has no
    threshold (onnx/onnx#5226) and the TorchScript exporter drops it, so the exported
    `head.1` computes log(1 + e^x) there: off by up to 0.31 at x = 1. The dynamo exporter
    keeps the threshold (Softplus, Greater, Where)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16))
        self.head = nn.Sequential(nn.Linear(16, 8), nn.Softplus(threshold=1.0))
        self.out = nn.Linear(8, 2)

    def forward(self, features):
        return self.out(self.head(self.encoder(features) * 3))


def softplus_head():
    return SoftplusHead().eval(), {"features": torch.rand(2, 6) * 2 - 1}, ["action"]


class GeluBlock(nn.Module):
    """Three blocks with an exact GELU each; the tests export it with a deliberately
    wrong translation of aten.gelu (the tanh approximation), as a custom translation
    table or an exporter bug would, and diagnosis must name the first GELU layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Linear(12, 24)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(24, 24), nn.GELU())
                                      for _ in range(3)])
        self.head = nn.Linear(24, 3)
        with torch.no_grad():  # trained-looking gains, so an error carries to the output
            for block in self.blocks:
                block[0].weight.mul_(3.0)
            self.head.weight.mul_(3.0)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x) * 2))


def gelu_block():
    return GeluBlock().eval(), {"x": torch.rand(2, 12) * 2 - 1}, ["logits"]


# ----------------------------------------------------------------------------- export errors


class Erfinv(nn.Module):
    """torch.special.erfinv: no ONNX operator and no translation in either exporter."""

    def forward(self, p):
        return torch.special.erfinv(p.clamp(-0.99, 0.99)) * 2


def erfinv():
    return Erfinv(), {"p": torch.rand(2, 5) * 2 - 1}


class Erfc(nn.Module):
    """torch.special.erfc: the TorchScript exporter has no translation, dynamo has one."""

    def forward(self, x):
        return torch.special.erfc(x)


def erfc():
    return Erfc(), {"x": torch.rand(2, 5)}


class RandomisedReLU(nn.Module):
    """nn.RReLU (a fixed slope in eval mode): the dynamo exporter has no translation for
    aten::rrelu_with_noise, the TorchScript exporter has one from opset 9."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 5)
        self.act = nn.RReLU()

    def forward(self, x):
        return self.act(self.fc(x))


def randomised_relu():
    torch.manual_seed(0)
    return RandomisedReLU().eval(), {"x": torch.rand(2, 5)}


class CausalMask(nn.Module):
    """torch.triu: ONNX has it (Trilu) from opset 14 only."""

    def forward(self, scores):
        return torch.triu(scores)


def causal_mask():
    return CausalMask(), {"scores": torch.rand(2, 4, 4)}


class CourseBroken(nn.Module):
    """The planner course module's exercise 6, as written: a Python list, len(), and a
    branch on x.sum()."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 10)

    def forward(self, x):
        results = []
        for i in range(3):
            results.append(self.fc(x))
        output_size = len(results)  # noqa: F841 (the course's code)
        if x.sum() > 0:
            return torch.stack(results).sum(dim=0)
        else:
            return x


def course_broken():
    torch.manual_seed(0)
    return CourseBroken().eval(), {"x": torch.rand(2, 10)}


class Doubling(nn.Module):
    """A while loop whose trip count depends on the input's values."""

    def forward(self, x):
        while x.abs().sum() < 100:
            x = x * 2
        return x


def doubling():
    return Doubling(), {"x": torch.rand(2, 4)}


class StatefulLSTM(nn.Module):
    """An LSTM whose initial state is a buffer made for batch 1 in __init__ (as code that
    only ever ran one sequence at a time does): the batch size is baked into the model."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.register_buffer("h0", torch.zeros(1, 1, 16))
        self.register_buffer("c0", torch.zeros(1, 1, 16))
        self.head = nn.Linear(16, 1)

    def forward(self, sensors):
        out, _ = self.lstm(sensors, (self.h0, self.c0))
        return self.head(out[:, -1])


def stateful_lstm():
    return StatefulLSTM().eval(), {"sensors": torch.rand(1, 5, 8)}, ["rudder"]


class TwoInputs(nn.Module):
    def forward(self, costmap, robot_state):
        return costmap.flatten(1).sum(1, keepdim=True) + robot_state.sum(1, keepdim=True)


def two_inputs():
    return TwoInputs(), {"costmap": torch.rand(2, 1, 5, 5), "robot_state": torch.rand(2, 9)}
