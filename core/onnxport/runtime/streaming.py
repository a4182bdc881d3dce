"""`StreamingWindow`: feed a sequence model one frame at a time."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxport.runtime.errors import InputError
from onnxport.runtime.model import InferenceModel
from onnxport.runtime.specs import describe, given_text


class StreamingWindow:
    """Feed a sequence model one frame at a time, as a sensor loop produces them.

    For an input [batch, window, *frame] (the autopilot: [batch, 20, 25]), `push(frame)`
    takes one frame ([25]) and returns None until `window` frames have been pushed, then
    the model's prediction on the last `window` frames (oldest first) at every push,
    without the batch axis, exactly as `model.predict(last_frames)` would. `reset()`
    forgets every frame (e.g. after a sensor dropout). Each push copies one frame into a
    buffer of twice the window (and the window once every `window` pushes), never a
    window per push.
    """

    def __init__(self, model: InferenceModel, window: int | None = None, *,
                 input: str | None = None):
        if input is None:
            if len(model.inputs) != 1:
                raise InputError(
                    f"{model.path.name} has {len(model.inputs)} inputs; streaming feeds "
                    "one sequence input", "name it with input=, if the others are fixed "
                    "this helper does not fit: call predict() with a window instead")
            spec = model.inputs[0]
        else:
            if input not in model._by_name or len(model.inputs) != 1:
                raise InputError(f"cannot stream input {input!r}",
                                 "streaming needs a model with that single input; its "
                                 f"inputs are: {', '.join(model.input_names)}")
            spec = model._by_name[input]
        shape = spec.shape
        if not spec.batched or shape is None or len(shape) < 3:
            raise InputError(f"input {spec.name!r} is {spec}: not a batch of sequences "
                             "[batch, window, *frame]", "streaming needs a sequence model")
        frame = shape[2:]
        if not all(isinstance(d, int) for d in frame):
            raise InputError(f"input {spec.name!r} is {spec}: its frame shape is not fixed",
                             "streaming needs a fixed frame size")
        if window is None:
            if not isinstance(shape[1], int):
                raise InputError(f"input {spec.name!r} is {spec}: its window length "
                                 f"{shape[1]!r} is not fixed", "pass stream(window=N)")
            window = shape[1]
        window = int(window)
        if window < 1 or (isinstance(shape[1], int) and shape[1] != window):
            raise InputError(f"input {spec.name!r} is {spec}: it takes windows of "
                             f"{shape[1]} frames, not {window}",
                             f"use stream() or stream(window={shape[1]})")
        self.model = model
        self.spec = spec
        self.size = window
        self.frame_shape: tuple[int, ...] = tuple(frame)  # type: ignore[arg-type]
        self._dtype = spec.dtype if spec.dtype is not None else np.dtype("float32")
        # Frames are appended; when the buffer is full the last window-1 frames move to
        # its start (once per `window` pushes), so the window is always one contiguous
        # slice and a push writes one frame.
        self._buffer = np.zeros((2 * window, *self.frame_shape), dtype=self._dtype)
        self._end = 0  # one past the newest frame
        self.count = 0  # frames pushed since the start or the last reset()

    @property
    def ready(self) -> bool:
        """True once the window is full (push() returns predictions)."""
        return self.count >= self.size

    @property
    def window(self) -> np.ndarray | None:
        """A copy of the current window [window, *frame], oldest first; None until full."""
        if not self.ready:
            return None
        return self._buffer[self._end - self.size:self._end].copy()

    def reset(self) -> None:
        """Forget every frame: push() returns None again until the window refills."""
        self._end = 0
        self.count = 0

    def push(self, frame: Any) -> Any:
        """Add one frame; return None while filling, then the prediction (see class)."""
        if type(frame) is not np.ndarray:
            frame = np.asarray(frame)
        if frame.shape != self.frame_shape or frame.dtype is not self._dtype:
            self._check(frame)
        buffer, end, size = self._buffer, self._end, self.size
        if end == len(buffer):
            buffer[:size - 1] = buffer[end - size + 1:end]
            end = size - 1
        buffer[end] = frame
        end += 1
        self._end = end
        self.count += 1
        if self.count < size:
            return None
        model = self.model
        return model._unbatch(model._execute({self.spec.name: buffer[None, end - size:end]}))

    def _check(self, frame: np.ndarray) -> None:
        spec = self.spec
        expects = describe(self._dtype.name, self.frame_shape)
        if frame.shape != self.frame_shape:
            raise InputError(f"stream of {spec.name!r} expects one frame {expects}, got "
                             f"{given_text(frame)}", "push one frame at a time")
        given, want = frame.dtype, self._dtype
        if given == want:
            return
        if not (self.model._cast and ((given.kind == "f" and want.kind == "f") or (
                given.kind in "iu" and want.kind in "iu"
                and np.can_cast(given, want, "safe")))):
            raise InputError(f"stream of {spec.name!r} expects one frame {expects}, got "
                             f"{given_text(frame)}", f"convert it with .astype(numpy."
                                                 f"{want.name})")
