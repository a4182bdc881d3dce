"""The autopilot at sea: a converted autopilot fed one sensor frame at a time.

This is the Raspberry Pi side. It needs only the runtime install (onnxruntime and numpy,
no torch, no TensorFlow):

    pip install 'onnxport[runtime]'

On the development machine, convert the autopilot once and copy the directory over:

    onnxport convert examples/zoo/autopilot_torch.py:build -o out/autopilot

Then, on the boat:

    python examples/autopilot_runtime.py out/autopilot [--frames 60] [--hz 0]

The sensors here are synthetic: a boat whose heading oscillates around its course
(a slow yaw of +-12 degrees, period 8 s) with sensor noise, sampled at 10 Hz as 25
features. The autopilot needs a window of 20 frames (2 s) before its first command; from
then on every new frame gives a rudder command in [-1, 1]. The reference model has
seeded, untrained weights, so the commands show the plumbing, not seamanship.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from onnxport.runtime import InferenceModel

FEATURES = 25
RATE_HZ = 10.0


def sensor_frames(count: int, seed: int = 0):
    """Yield (time s, heading error deg, frame float32[25]) at RATE_HZ."""
    rng = np.random.default_rng(seed)
    for step in range(count):
        t = step / RATE_HZ
        error = 12.0 * math.sin(2 * math.pi * t / 8.0) + rng.normal(0.0, 0.8)  # degrees
        rate = 12.0 * 2 * math.pi / 8.0 * math.cos(2 * math.pi * t / 8.0)  # deg/s
        roll = 4.0 * math.sin(2 * math.pi * t / 3.1)  # waves
        frame = np.empty(FEATURES, dtype=np.float32)
        frame[0] = error / 180.0  # heading error, normalised
        frame[1] = rate / 30.0  # yaw rate
        frame[2] = roll / 45.0
        frame[3] = 0.5 * math.sin(2 * math.pi * t / 5.3) / 45.0  # pitch
        frame[4] = 0.6 + 0.05 * math.sin(t / 7.0)  # boat speed, scaled
        frame[5] = math.cos(math.radians(40.0 + 5 * math.sin(t / 11.0)))  # apparent wind
        frame[6] = math.sin(math.radians(40.0 + 5 * math.sin(t / 11.0)))
        frame[7:] = 0.1 * np.sin(t * np.arange(1, FEATURES - 6) / 4.0)  # other channels
        frame += rng.normal(0.0, 0.01, FEATURES).astype(np.float32)  # sensor noise
        yield t, error, frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("artifact", help="the converted autopilot: the directory "
                                         "`onnxport convert -o` wrote, or an .onnx file")
    parser.add_argument("--frames", type=int, default=40, help="sensor frames to run")
    parser.add_argument("--hz", type=float, default=0.0,
                        help="pace the loop at this rate (0: as fast as possible)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime intra-op threads (1 suits a small model on a Pi)")
    args = parser.parse_args(argv)

    autopilot = InferenceModel(args.artifact, threads=args.threads)
    stream = autopilot.stream()
    print(f"autopilot: {autopilot.path.name} on {', '.join(autopilot.providers)}; "
          f"window {stream.size} frames of {stream.frame_shape[0]} features")

    started = time.perf_counter()
    for step, (t, error, frame) in enumerate(sensor_frames(args.frames)):
        rudder = stream.push(frame)
        if rudder is None:
            if step == 0:
                print(f"filling the window ({stream.size} frames)...")
        else:
            command = float(rudder[0])
            side = "port" if command < 0 else "starboard"
            print(f"t={t:5.1f}s  heading error {error:+6.1f} deg  rudder {command:+.4f} "
                  f"({side})")
        if args.hz:
            time.sleep(max(0.0, started + (step + 1) / args.hz - time.perf_counter()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
