"""The autopilot project's two export flows (shared/seeds/000 and 001), with onnxport.

1. Export straight after training, with the training callback: one line around the
   PyTorch loop (the TorchScript exporter at opset 14, as the seed did for its LSTM), or
   one callback in Keras' `model.fit` (`--framework keras`, seed 000). The weights are
   saved first (OUT/after-training/autopilot.pt or .keras); the status is in
   OUT/after-training/onnx-status.json.
2. Export later from the saved checkpoint, as a deployment job would:
       onnxport convert examples/zoo/autopilot_torch.py:build --weights CKPT -o DIR

Training is short and on synthetic data (a steering rule the LSTM learns), so the script
runs in seconds on a CPU: `python examples/autopilot_training.py --output OUT`.
`--export background` converts while the script goes on, `--every-best` exports at
each new best validation loss instead of at the end, `--export off` trains only
(benchmarks/training_overhead.py compares the three).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ZOO = Path(__file__).resolve().parent / "zoo"
sys.path.insert(0, str(ZOO))
FACTORY = f"{ZOO / 'autopilot_torch.py'}:build"


def synthetic_batch(generator, batch: int = 64):
    """Sensor windows and the rudder a simple rule would command (heading error, damped)."""
    import torch

    sensors = torch.randn(batch, 20, 25, generator=generator)
    heading_error = sensors[:, -5:, 0].mean(dim=1)
    yaw_rate = sensors[:, -1, 1]
    rudder = torch.tanh(1.5 * heading_error - 0.5 * yaw_rate).unsqueeze(1)
    return sensors, rudder


def train(model, steps: int = 150, export=None, eval_every: int = 50):
    """The seed's loop; every `eval_every` steps the validation loss goes to `export`
    (which exports on a new best when it monitors val_loss)."""
    import torch

    generator = torch.Generator().manual_seed(1)
    validation = synthetic_batch(torch.Generator().manual_seed(99), batch=256)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        sensors, rudder = synthetic_batch(generator)
        loss = torch.nn.functional.mse_loss(model(sensors), rudder)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if (step + 1) % eval_every == 0 or step == steps - 1:
            with torch.no_grad():
                val_loss = torch.nn.functional.mse_loss(model(validation[0]),
                                                        validation[1]).item()
            print(f"step {step + 1:4d}  loss {loss.item():.4f}  val_loss {val_loss:.4f}")
            if export is not None:
                export.observe(val_loss, epoch=(step + 1 + eval_every - 1) // eval_every,
                               step=step + 1)
    return model.eval()


def torch_flow(args) -> dict:
    import autopilot_torch

    from onnxport.training.torch import ExportOnnx

    model = autopilot_torch.make_model().train()
    timing = {}
    started = time.perf_counter()
    if args.export == "off":
        train(model, args.steps)
        timing["training_s"] = time.perf_counter() - started
        return timing
    # Flow 1: the one added line. The factory rebuilds the model in the conversion's
    # process and the saved state_dict is loaded into it (nothing is pickled).
    with ExportOnnx(model, args.output / "after-training", factory=FACTORY,
                    name="autopilot", exporter="torchscript", opset=14,
                    monitor="val_loss" if args.every_best else None,
                    background=args.export == "background") as export:
        train(model, args.steps, export)
    timing["training_s"] = time.perf_counter() - started
    status = export.wait()  # at once in the foreground; the background export's end
    timing["export_done_s"] = time.perf_counter() - started
    timing["exports"] = export.exporter.exported
    report(status)
    return timing


def keras_flow(args) -> dict:
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import autopilot_keras
    import keras
    import numpy as np

    from onnxport.training.keras import ExportOnnx

    model = autopilot_keras.make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=autopilot_keras.autopilot_loss)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 20, 25)).astype("float32")
    y = np.tanh(x[:, -5:, 0].mean(axis=1, keepdims=True) * 1.5).astype("float32")
    callbacks = []
    if args.export != "off":
        # seed 000: "the training script now automatically exports both formats"
        callbacks.append(ExportOnnx(args.output / "after-training", name="autopilot",
                                    monitor="val_loss" if args.every_best else None,
                                    background=args.export == "background"))
    started = time.perf_counter()
    model.fit(x, y, validation_split=0.25, epochs=max(1, args.steps // 50), batch_size=64,
              verbose=0, callbacks=callbacks)
    timing = {"training_s": time.perf_counter() - started}
    if callbacks:
        status = callbacks[0].wait()
        timing["export_done_s"] = time.perf_counter() - started
        timing["exports"] = callbacks[0].exporter.exported
        report(status)
    return timing


def report(status: dict | None) -> None:
    if status is None:
        return
    if status["has_onnx"]:
        cpu = status["targets"].get("cpu", {})
        print(f"after training: {status['onnx_path']}  {status['onnx_size_bytes']} "
              f"bytes  max abs error {cpu.get('max_abs', float('nan')):.1e}  "
              f"({status['state']})")
    if status["state"] != "passed":
        print(f"after training: the export failed: {status['error']} (the weights are in "
              f"{status['checkpoint']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("autopilot-out"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--framework", choices=("torch", "keras"), default="torch")
    parser.add_argument("--export", choices=("foreground", "background", "off"),
                        default="foreground")
    parser.add_argument("--every-best", action="store_true",
                        help="export at each new best val_loss, not once at the end")
    parser.add_argument("--no-checkpoint-flow", action="store_true",
                        help="skip flow 2 (the export from the checkpoint)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    timing = (keras_flow if args.framework == "keras" else torch_flow)(args)
    failed = False
    if args.export != "off":
        status = json.loads((args.output / "after-training" / "onnx-status.json")
                            .read_text())
        failed = status["state"] != "passed"
    print("timing " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                  for k, v in timing.items()}))

    if args.framework == "torch" and args.export != "off" and not args.no_checkpoint_flow:
        # Flow 2: later, from the checkpoint the callback saved first (what the CLI
        # command in the docstring does).
        import onnxport

        checkpoint = args.output / "after-training" / "autopilot.pt"
        later = onnxport.convert(FACTORY, weights=checkpoint,
                                 output=args.output / "from-checkpoint", overwrite=True)
        print(f"from checkpoint: {later.model_path}  max abs error "
              f"{later.artifacts[0].verification.max_abs:.1e}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
