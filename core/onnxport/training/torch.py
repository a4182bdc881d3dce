"""Export after training from a plain PyTorch loop, and what the Lightning and Hugging
Face callbacks share: saving a model's weights, taking example inputs from training,
and the two routes to a source a worker process can load.

    from onnxport.training.torch import ExportOnnx

    with ExportOnnx(model, "runs/autopilot", trust_code=True):  # the one added line
        for epoch in range(epochs):
            ...                                                  # the training loop

Leaving the block without an exception saves `runs/autopilot/model.pt` (the state_dict),
then converts and verifies the model into `runs/autopilot/onnx/`, and writes
`runs/autopilot/onnx-status.json`. `export_onnx(model, directory, ...)` does the same
in one call after any training code.

The worker process needs a source it can load on its own; there are two routes:

- `factory="package.module:build"` (a function returning the model and example inputs,
  as for `onnxport convert`): the worker builds the model and loads the saved
  state_dict into it. Nothing is pickled.
- `trust_code=True`: the model object itself is saved with `torch.save(model)` and the
  worker unpickles it, with the example inputs (given, or the first batch the model
  saw in training) saved beside it. Unpickling runs code named in the file; the file is
  the one this process just wrote from your own model, and `trust_code=True` is your
  statement that you accept that. The model's class must be importable by the worker:
  from a module, or from the training script itself when that script guards its
  training code with `if __name__ == "__main__":` (as multiprocessing requires).
"""

from __future__ import annotations

import inspect
import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from onnxport.errors import BadInput
from onnxport.training.exporting import (DEFAULT_TIMEOUT, ExportError, ExportHandle,
                                         ExportSettings, Exporter, SourceSpec,
                                         make_settings)
from onnxport.training.files import atomic_save, link_into

__all__ = ["ExportOnnx", "export_onnx", "ExportError", "load_saved", "InputRecorder"]

EXAMPLE_ROWS = 2  # rows of a training batch kept as example inputs (>= 2: dynamic batch)
LABEL_NAMES = ("labels", "label", "label_ids")  # never model inputs for the export
SOURCE_PY = '''"""Written by onnxport.training: the factory this directory's export ran.

    onnxport convert {path}:build -o OUT
"""
from pathlib import Path

from {module} import {function}


def build():
    return {function}(Path(__file__).resolve().parent)
'''


# --------------------------------------------------------------------------- weights


def unwrap(model: Any) -> Any:
    """The module itself, out of DataParallel, DistributedDataParallel, torch.compile."""
    while True:
        if isinstance(model, (torch.nn.DataParallel,
                              torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_state_dict(model: torch.nn.Module, path: Path, *, epoch: int | None = None,
                    step: int | None = None) -> Path:
    """`{"state_dict": ..., "epoch": ..., "step": ...}`, written atomically; what
    `onnxport convert FACTORY --weights PATH` and `torch.load(weights_only=True)` read."""
    state = {"state_dict": unwrap(model).state_dict(), "epoch": epoch, "step": step}
    return atomic_save(path, lambda temporary: torch.save(state, temporary))


# --------------------------------------------------------------------------- inputs


class InputRecorder:
    """Takes the example inputs from the first call of the model during training (a
    forward pre-hook, removed after that call): the tensors the model was really given,
    by name where they were passed by name, cut to the first rows. Labels are left
    out, as are arguments that are not tensors."""

    def __init__(self, ignore: Iterable[str] = ()):
        self.ignore = set(LABEL_NAMES) | set(ignore)
        self.captured: Any = None
        self.problem: str | None = None
        self._handle = None

    def attach(self, module: torch.nn.Module) -> "InputRecorder":
        if self._handle is None and self.captured is None:
            self._handle = unwrap(module).register_forward_pre_hook(self._hook,
                                                                    with_kwargs=True)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module, args, kwargs):
        try:
            self.captured = example_from_call(module, args, kwargs, self.ignore)
        except BadInput as exc:
            self.problem = exc.one_line()
        self.detach()
        return None


def example_from_call(module: torch.nn.Module, args: tuple, kwargs: dict,
                      ignore: Iterable[str] = LABEL_NAMES) -> Any:
    """A forward() call's arguments as example inputs: a tuple when all were passed by
    position, else a dict by forward()'s argument names."""
    ignore = set(ignore)
    if not kwargs:
        if not args or not all(isinstance(a, torch.Tensor) for a in args):
            raise BadInput(f"{type(module).__name__} was called with arguments that are "
                           "not all tensors; onnxport cannot take example inputs from it",
                           "give example_inputs= (a tensor, tuple or dict of tensors)")
        return tuple(_rows(list(args)))
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = dict(kwargs)
    named: dict[str, Any] = {}
    parameters = inspect.signature(module.forward).parameters
    for key, value in bound.items():
        if key in parameters and parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[key] = value
    tensors = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)
               and v.dim() >= 1 and k not in ignore}
    if not tensors:
        raise BadInput(f"{type(module).__name__} was called with no tensor inputs",
                       "give example_inputs=")
    return dict(zip(tensors, _rows(list(tensors.values()))))


def _rows(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The first EXAMPLE_ROWS rows of each tensor (when they share a batch axis), on
    the CPU, detached from the graph."""
    sizes = {t.shape[0] if t.dim() else None for t in tensors}
    cut = len(sizes) == 1 and None not in sizes
    return [(t[:EXAMPLE_ROWS] if cut else t).detach().to("cpu").clone() for t in tensors]


def as_example(example: Any) -> Any:
    """Example inputs a user gave (tensor, tuple/list, dict; numpy arrays too) as CPU
    tensors in the same structure."""
    def tensor(value: Any, name: str) -> torch.Tensor:
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise BadInput(f"example input {name} is a {type(value).__name__}, not a "
                           "tensor")
        return value.detach().to("cpu").clone()

    if isinstance(example, Mapping):
        return {str(k): tensor(v, repr(k)) for k, v in example.items()}
    if isinstance(example, (tuple, list)):
        return tuple(tensor(v, str(i)) for i, v in enumerate(example))
    return tensor(example, "0")


def save_inputs(example: Any, path: Path) -> dict[str, Any]:
    """Example inputs to an .npz (no pickles), and how to rebuild their structure."""
    if isinstance(example, Mapping):
        kind, names, values = "dict", list(example), list(example.values())
    else:
        values = list(example) if isinstance(example, (tuple, list)) else [example]
        kind = "tuple" if isinstance(example, (tuple, list)) else "tensor"
        names = [f"input_{i}" for i in range(len(values))]
    arrays, dtypes = {}, {}
    for name, value in zip(names, values):
        dtypes[name] = str(value.dtype).removeprefix("torch.")
        if value.dtype == torch.bfloat16:
            value = value.float()
        arrays[name] = value.numpy()
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return {"kind": kind, "names": names, "dtypes": dtypes, "file": Path(path).name}


def load_inputs(directory: Path, spec: Mapping[str, Any]) -> Any:
    with np.load(Path(directory) / spec["file"], allow_pickle=False) as archive:
        tensors = [torch.from_numpy(archive[name].copy()).to(getattr(torch, spec["dtypes"]
                                                                    [name]))
                   for name in spec["names"]]
    if spec["kind"] == "dict":
        return dict(zip(spec["names"], tensors))
    return tuple(tensors) if spec["kind"] == "tuple" else tensors[0]


# --------------------------------------------------------------------------- sources


def write_factory_source(factory: str, checkpoint: Path, directory: Path) -> SourceSpec:
    """The factory route: the user's factory, with this attempt's copy of the weights."""
    return SourceSpec(model=factory, weights=link_into(checkpoint, directory))


def write_pickled_source(model: torch.nn.Module, example: Any, directory: Path,
                         output_names: Iterable[str] | None = None) -> SourceSpec:
    """The trust_code route: the module pickled, its example inputs, and a factory
    (`source.py:build`) that loads both (`load_saved`)."""
    torch.save(unwrap(model), directory / "module.pt")
    meta = {"inputs": save_inputs(example, directory / "inputs.npz"),
            "main": _main_file(),
            "output_names": list(output_names) if output_names is not None else None}
    return _write_factory_file(directory, meta, "onnxport.training.torch", "load_saved")


def _write_factory_file(directory: Path, meta: Mapping[str, Any], module: str,
                        function: str) -> SourceSpec:
    (directory / "source.json").write_text(json.dumps(meta, indent=2) + "\n")
    source = directory / "source.py"
    source.write_text(SOURCE_PY.format(path=source, module=module, function=function))
    return SourceSpec(model=f"{source}:build")


def load_saved(directory: str | Path):
    """What a `source.py` written by the trust_code route returns: the unpickled module
    and its example inputs (and output names, when given). Runs in the worker."""
    directory = Path(directory)
    meta = json.loads((directory / "source.json").read_text())
    model = torch.load(directory / "module.pt", map_location="cpu", weights_only=False,
                       pickle_module=_pickle_module(meta.get("main")))
    example = load_inputs(directory, meta["inputs"])
    names = meta.get("output_names")
    return (model, example, names) if names else (model, example)


def _main_file() -> str | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return str(Path(path).resolve()) if path else None


def _pickle_module(main_file: str | None) -> types.ModuleType:
    """`pickle`, but classes pickled from the training script (`__main__`) are found by
    importing that script under another name, as multiprocessing's spawn does."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if module == "__main__" and main_file:
                return getattr(_import_main(main_file), name)
            return super().find_class(module, name)

    module = types.ModuleType("onnxport_training_pickle")
    module.__dict__.update({k: v for k, v in vars(pickle).items()
                            if not k.startswith("__")})
    module.Unpickler = Unpickler
    return module


def _import_main(path: str) -> types.ModuleType:
    name = "__mp_main__"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == path:
        return module
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    code = compile(Path(path).read_text(), path, "exec")
    exec(code, module.__dict__)  # the user's own training script, guarded by __main__
    return module


# --------------------------------------------------------------------------- the route


class TorchRoute:
    """How one torch model is saved and handed to the worker, for every torch-based
    callback: the checkpoint `DIR/NAME.pt`, then the factory or the trust_code route."""

    def __init__(self, settings: ExportSettings, *, factory: str | None,
                 example_inputs: Any, output_names: Iterable[str] | None,
                 caller: str, ignore_inputs: Iterable[str] = ()):
        self.settings = settings
        self.factory = factory
        self.example = as_example(example_inputs) if example_inputs is not None else None
        self.output_names = output_names
        self.recorder = InputRecorder(ignore_inputs)
        self.caller = caller

    @staticmethod
    def check(caller: str, factory: str | None, trust_code: bool) -> None:
        if factory is None and not trust_code:
            raise BadInput(
                f"{caller} needs a way for the conversion process to rebuild the model",
                "give factory='package.module:build' (a function returning the model "
                "and example inputs; the saved state_dict is loaded into it), or "
                "trust_code=True to pickle the model itself (docs/training.md)")
        if factory is not None:
            module, sep, function = factory.rpartition(":")
            if not sep or not module or not function.isidentifier():
                raise BadInput(f"{caller}: factory={factory!r} is not "
                               "package.module:function or path/file.py:function")

    @property
    def checkpoint(self) -> Path:
        return self.settings.directory / f"{self.settings.name}.pt"

    def wants_inputs(self) -> bool:
        return self.factory is None and self.example is None

    def saver(self, model, epoch: int | None = None, step: int | None = None):
        return lambda: save_state_dict(model, self.checkpoint, epoch=epoch, step=step)

    def writer(self, model):
        def write(directory: Path) -> SourceSpec:
            self.recorder.detach()  # a hook must not be pickled with the model
            if self.factory is not None:
                return write_factory_source(self.factory, self.checkpoint, directory)
            return write_pickled_source(model, self.example_inputs(model), directory,
                                        self.output_names)
        return write

    def example_inputs(self, model) -> Any:
        if self.example is not None:
            return self.example
        own = getattr(unwrap(model), "example_input_array", None)  # Lightning's own
        if own is not None:
            return as_example(own)
        if self.recorder.captured is not None:
            return self.recorder.captured
        raise BadInput(
            f"{self.caller} has no example inputs for {type(unwrap(model)).__name__}"
            + (f": {self.recorder.problem}" if self.recorder.problem else
               ": none were given, and the model was not called while the export "
               "watched training"),
            "give example_inputs= (e.g. one batch of inputs), or factory=")


# --------------------------------------------------------------------------- plain loops


class ExportOnnx(ExportHandle):
    """Export a model trained in a plain PyTorch loop: a context manager around the
    loop (or call `export()` yourself). Options: see docs/training.md; every keyword
    `onnxport.convert` takes (targets, quantize, atol, exporter, ...) is passed on."""

    def __init__(self, model: torch.nn.Module, directory: str | Path, *,
                 example_inputs: Any = None, factory: str | None = None,
                 trust_code: bool = False, name: str | None = None,
                 artifact: str | Path | None = None, monitor: str | None = None,
                 mode: str = "min", background: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT, strict: bool = False,
                 publish: Iterable[str] | str = (),
                 publish_options: Mapping[str, Any] | None = None,
                 log_to_mlflow: bool = True, **convert_options: Any):
        caller = "onnxport.training.torch.ExportOnnx"
        TorchRoute.check(caller, factory, trust_code)
        settings = make_settings(
            directory, name=name, artifact=artifact, monitor=monitor, mode=mode,
            background=background, timeout=timeout, strict=strict, publish=publish,
            publish_options=publish_options, log_to_mlflow=log_to_mlflow,
            trust_code=trust_code, convert_options=convert_options, caller=caller)
        self.model = model
        self.route = TorchRoute(settings, factory=factory, example_inputs=example_inputs,
                                output_names=convert_options.get("output_names"),
                                caller=caller)
        self.exporter = Exporter(settings, caller)
        self._monitored = False

    def __enter__(self) -> "ExportOnnx":
        if self.route.wants_inputs():
            self.route.recorder.attach(self.model)
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        self.route.recorder.detach()
        if kind is None:
            if not (self.exporter.settings.monitor and self._monitored):
                self.export(trigger="end")
            self.exporter.finish()
        return False

    def observe(self, value: Any, *, epoch: int | None = None,
                step: int | None = None) -> bool:
        """The monitored metric's new value (`monitor=` names it): save and export when
        it is the best so far. Returns whether it was; without `monitor=`, nothing
        happens (the export waits for the end of training)."""
        if not self.exporter.settings.monitor:
            return False
        self._monitored = True
        return self.exporter.observe(value, self.route.saver(self.model, epoch, step),
                                     self.route.writer(self.model), epoch=epoch,
                                     step=step)

    def export(self, *, epoch: int | None = None, step: int | None = None,
               trigger: str = "call") -> dict[str, Any] | None:
        """Save the weights and export now; the status (None while in the background)."""
        return self.exporter.export(self.route.saver(self.model, epoch, step),
                                    self.route.writer(self.model), trigger=trigger,
                                    epoch=epoch, step=step)


def export_onnx(model: torch.nn.Module, directory: str | Path, *,
                example_inputs: Any = None, factory: str | None = None,
                trust_code: bool = False, **options: Any) -> dict[str, Any]:
    """After training: save the weights, export and verify, return the status (the
    dict also written to DIR/onnx-status.json). A failed export is recorded, logged and
    not raised unless strict=True; options that are wrong raise, after the weights are
    saved."""
    try:
        export = ExportOnnx(model, directory, example_inputs=example_inputs,
                            factory=factory, trust_code=trust_code, **options)
    except (BadInput, TypeError):
        save_state_dict(model, Path(directory) / f"{options.get('name') or 'model'}.pt")
        raise
    export.export(trigger="call")
    return export.wait()
