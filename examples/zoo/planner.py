"""Planner: costmap + robot state -> 60-value action plan, after seed 002's robot-planner course module.

Stresses four exactly-named inputs concatenated after a 3-layer Conv2d encoder and a
policy MLP head (must fit a 50-100 ms budget on the robot).
"""

import torch
from torch import nn

INPUTS = {
    "costmap_input": ("batch", 1, 50, 50),
    "robot_state_input": ("batch", 9),
    "goal_relative_input": ("batch", 3),
    "costmap_metadata_input": ("batch", 2),
}
OUTPUTS = ["output"]


class Planner(nn.Module):
    """Conv encoder on the costmap, concatenated with the vector inputs, then an MLP."""

    def __init__(self, n_out: int = 60):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),   # 50 -> 25
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 25 -> 13
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),  # 13 -> 7
            nn.Flatten(),
        )
        self.policy = nn.Sequential(
            nn.Linear(32 * 7 * 7 + 9 + 3 + 2, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU(),
            nn.Linear(128, n_out),
        )

    def forward(self, costmap_input, robot_state_input, goal_relative_input,
                costmap_metadata_input):
        features = torch.cat(
            [self.encoder(costmap_input), robot_state_input, goal_relative_input,
             costmap_metadata_input], dim=1)
        return self.policy(features)


def make_model() -> Planner:
    """The model with seeded (untrained) weights, in eval mode."""
    torch.manual_seed(0)
    return Planner().eval()


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


def calibration_set(rows: int = 64, seed: int = 1):
    """Inputs like the robot's for static INT8 calibration: costmaps of free space (0)
    with obstacles (1), robot state and goal in their usual ranges. Built in code, so
    nothing is downloaded; a real deployment calibrates on logged inputs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    costmap = (rng.random((rows, 1, 50, 50)) < 0.15).astype(np.float32)
    return {
        "costmap_input": costmap,
        "robot_state_input": rng.uniform(-1, 1, (rows, 9)).astype(np.float32),
        "goal_relative_input": rng.uniform(-5, 5, (rows, 3)).astype(np.float32),
        "costmap_metadata_input": rng.uniform(0, 1, (rows, 2)).astype(np.float32),
    }


if __name__ == "__main__":
    import argparse

    import numpy as np

    parser = argparse.ArgumentParser(description="write the planner's calibration set")
    parser.add_argument("--calibration", required=True, metavar="FILE.npz")
    args = parser.parse_args()
    np.savez(args.calibration, **calibration_set())
    print(f"wrote {args.calibration}")
