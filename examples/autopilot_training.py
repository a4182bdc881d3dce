"""The autopilot project's two export flows (shared/seeds/001), with onnxport.

1. Export straight after training, from the Python API, with the TorchScript exporter at
   opset 14 as the seed did for its LSTM.
2. Export later from the saved checkpoint, as a deployment job would:
       onnxport convert examples/zoo/autopilot_torch.py:build --weights CKPT -o DIR

Training is short and on synthetic data (a steering rule the LSTM learns), so the script
runs in seconds on a CPU: `python examples/autopilot_training.py --output OUT`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import onnxport

ZOO = Path(__file__).resolve().parent / "zoo"
sys.path.insert(0, str(ZOO))
import autopilot_torch  # noqa: E402  (the reference model lives beside this script)


def synthetic_batch(generator: torch.Generator, batch: int = 64):
    """Sensor windows and the rudder a simple rule would command (heading error, damped)."""
    sensors = torch.randn(batch, 20, 25, generator=generator)
    heading_error = sensors[:, -5:, 0].mean(dim=1)
    yaw_rate = sensors[:, -1, 1]
    rudder = torch.tanh(1.5 * heading_error - 0.5 * yaw_rate).unsqueeze(1)
    return sensors, rudder


def train(steps: int = 150) -> torch.nn.Module:
    model = autopilot_torch.make_model().train()
    generator = torch.Generator().manual_seed(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        sensors, rudder = synthetic_batch(generator)
        loss = torch.nn.functional.mse_loss(model(sensors), rudder)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("autopilot-out"))
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    model = train(args.steps)
    checkpoint = args.output / "autopilot.pt"
    torch.save({"epoch": args.steps, "model_state_dict": model.state_dict()}, checkpoint)
    print(f"saved checkpoint {checkpoint}")

    # Flow 1: right after training, from Python.
    example = {"sensors": torch.randn(2, 20, 25)}
    result = onnxport.convert(model, example, output=args.output / "after-training",
                              output_names=["rudder"], exporter="torchscript", opset=14,
                              overwrite=True)
    print(f"after training: {result.model_path}  max abs error "
          f"{result.artifacts[0].verification.max_abs:.1e}")

    # Flow 2: later, from the checkpoint (what the CLI command in the docstring does).
    later = onnxport.convert(f"{ZOO / 'autopilot_torch.py'}:build", weights=checkpoint,
                             output=args.output / "from-checkpoint", overwrite=True)
    print(f"from checkpoint: {later.model_path}  max abs error "
          f"{later.artifacts[0].verification.max_abs:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
