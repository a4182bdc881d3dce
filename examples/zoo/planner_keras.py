"""Planner (Keras 3 Functional): costmap + robot state -> 60-value plan and a collision
risk, the Keras twin of planner.py (seed 002's robot-planner course module).

Stresses four exactly-named inputs and two named outputs through one Functional model.
`costmap_input` keeps the reference layout [batch, 1, 50, 50] (channels first, as in
planner.py and the deployment code); a Permute layer moves the channel last for Keras'
Conv2D, which runs channels-last on the CPU. `output` is the [batch, 60] plan; the extra
output `collision_risk` [batch, 1] (a sigmoid head on the policy features) exercises
the multi-output path.

    onnxport convert examples/zoo/planner_keras.py:build -o out/planner-keras
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

INPUTS = {
    "costmap_input": ("batch", 1, 50, 50),
    "robot_state_input": ("batch", 9),
    "goal_relative_input": ("batch", 3),
    "costmap_metadata_input": ("batch", 2),
}
OUTPUTS = ["output", "collision_risk"]


def make_model(n_out: int = 60) -> keras.Model:
    """Conv encoder on the costmap, concatenated with the vector inputs, then an MLP."""
    keras.utils.set_random_seed(0)
    inputs = {name: keras.Input(shape=shape[1:], name=name)
              for name, shape in INPUTS.items()}
    x = layers.Permute((2, 3, 1), name="channels_last")(inputs["costmap_input"])
    x = layers.Conv2D(16, 5, strides=2, padding="same", activation="relu",
                      name="conv1")(x)                                  # 50 -> 25
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                      name="conv2")(x)                                  # 25 -> 13
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu",
                      name="conv3")(x)                                  # 13 -> 7
    x = layers.Flatten(name="flatten")(x)
    features = layers.Concatenate(name="features")(
        [x, inputs["robot_state_input"], inputs["goal_relative_input"],
         inputs["costmap_metadata_input"]])
    h = layers.Dense(256, activation="relu", name="policy_1")(features)
    h = layers.Dense(128, activation="relu", name="policy_2")(h)
    plan = layers.Dense(n_out, name="output")(h)
    risk = layers.Dense(1, activation="sigmoid", name="collision_risk")(h)
    return keras.Model(inputs=list(inputs.values()), outputs=[plan, risk],
                       name="planner")


def build() -> keras.Model:
    """The seeded model (what `onnxport convert planner_keras.py:build` converts)."""
    return make_model()


def example_inputs(batch: int = 2) -> dict[str, np.ndarray]:
    """Seeded inputs, by input name; deterministic across calls."""
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal([batch if d == "batch" else d for d in shape])
            .astype("float32") for name, shape in INPUTS.items()}
