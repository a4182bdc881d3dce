"""The deployment runtime: run an onnxport artifact with onnxruntime and numpy only.

    from onnxport.runtime import InferenceModel

    autopilot = InferenceModel("out/autopilot")      # artifact dir, target dir or .onnx
    rudder = autopilot.predict(sensor_window)        # [20, 25] -> [1]; [n, 20, 25] -> [n, 1]

    stream = autopilot.stream()                      # one frame [25] at a time
    for frame in sensor_frames:
        command = stream.push(frame)                 # None until 20 frames are in

Importing this module imports numpy and onnxruntime and nothing heavier: no torch, no
TensorFlow, no onnx, no pluggy and no plugin (a test checks `sys.modules`). It reads the
artifact's manifest.json to choose the model file, the execution providers, the graph
optimisation level and the sha256 of every file, and checks every input against the
model before onnxruntime sees it. The user guide is docs/runtime.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import onnxruntime as ort

from onnxport.errors import BadInput, OnnxportError

__all__ = ["InferenceModel", "StreamingWindow", "TensorSpec", "ArtifactError",
           "ArtifactNotFound", "IntegrityError", "InputError", "RunFailed"]

MANIFEST = "manifest.json"
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
           "all": "ORT_ENABLE_ALL"}
_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int8)": "int8", "tensor(int16)": "int16", "tensor(int32)": "int32",
    "tensor(int64)": "int64", "tensor(uint8)": "uint8", "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32", "tensor(uint64)": "uint64", "tensor(bool)": "bool",
    "tensor(string)": "object",
}
_PLAN_CACHE = 64  # (shape, dtype) combinations remembered as already checked, per input

PathLike = Union[str, "os.PathLike[str]"]
Dim = Union[int, str, None]


# --------------------------------------------------------------------------- errors


class _Explained:
    """str(error) is the whole sentence: what went wrong, then what to do."""

    def __str__(self) -> str:
        return self.one_line()


class ArtifactError(_Explained, BadInput):
    """The path does not lead to a model this runtime can load."""


class ArtifactNotFound(ArtifactError, FileNotFoundError):
    """There is nothing at the path (or the manifest names a file that is not there)."""


class IntegrityError(ArtifactError):
    """A file differs from the size or sha256 its manifest recorded: refused unloaded."""


class InputError(_Explained, BadInput, ValueError):
    """predict() or push() got inputs that do not fit the model: names, shape or dtype."""


class RunFailed(_Explained, OnnxportError, RuntimeError):
    """onnxruntime raised while running inputs that passed the checks."""


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the model, as the model itself declares it.

    `shape` holds ints for fixed dimensions and names (str) for symbolic ones such as
    "batch"; None for a dimension without a name, or for the whole shape if unknown.
    `dtype` is the numpy dtype (None for a type numpy has no equivalent of).
    `batched` says the first axis is the batch axis, so one sample may be given without it:
    a symbolic first axis, or one fixed at 1 in a model whose batch is static (the
    manifest says so, or there is no manifest).
    """

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype | None
    type: str
    batched: bool

    @property
    def sample_shape(self) -> tuple[Dim, ...] | None:
        """The shape of one sample: `shape` without the batch axis."""
        return self.shape[1:] if self.batched and self.shape else None

    def __str__(self) -> str:
        return _describe(self.dtype.name if self.dtype is not None else self.type,
                         self.shape)


def _describe(dtype: str, shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return f"{dtype}[?]"
    return f"{dtype}[{', '.join('?' if d is None else str(d) for d in shape)}]"


def _given(array: np.ndarray) -> str:
    kind = array.dtype.kind
    name = {"U": "str", "S": "bytes", "O": "object"}.get(kind, array.dtype.name)
    return _describe(name, array.shape)


def _spec(arg: Any, batch_axis_frozen: bool) -> TensorSpec:
    shape = arg.shape
    shape = None if shape is None else tuple(
        d if isinstance(d, (int, str)) or d is None else None for d in shape)
    name = _ORT_TYPES.get(arg.type)
    dtype = np.dtype(name) if name else None
    batched = bool(shape) and (not isinstance(shape[0], int)
                               or (shape[0] == 1 and batch_axis_frozen))
    return TensorSpec(arg.name, shape, dtype, arg.type, batched)


# --------------------------------------------------------------------------- locating


@dataclass
class _Located:
    model: Path
    manifest: dict | None
    directory: Path | None  # the target directory holding manifest.json


def _read_manifest(path: Path) -> dict:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{path} is not a readable manifest ({error})",
                            "the artifact is damaged: copy it again or convert again") \
            from error
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise ArtifactError(f"{path} is not an onnxport manifest (it names no model file)",
                            "pass the .onnx file itself, or an onnxport artifact directory")
    return data


def _targets(directory: Path) -> dict[str, Path]:
    found = {}
    for child in sorted(directory.iterdir()):
        if child.is_dir() and (child / MANIFEST).is_file():
            found[child.name] = child
    return found


def _locate(path: PathLike, target: str | None) -> _Located:
    path = Path(os.fspath(path))
    if not path.exists():
        where = (f"{path.parent} does not exist either" if not path.parent.exists()
                 else f"{path.parent} exists")
        raise ArtifactNotFound(
            f"no onnxport artifact or model at {path} ({where})",
            "pass the directory `onnxport convert -o` wrote, one of its target directories, "
            "or an .onnx file")
    if path.is_file():
        if path.name == MANIFEST:
            return _from_target_dir(path.parent, target)
        if path.suffix != ".onnx":
            raise ArtifactError(f"{path} is not an .onnx file or an artifact directory",
                                "this runtime runs ONNX models")
        beside = path.parent / MANIFEST
        if beside.is_file():  # a model inside a target directory: use its manifest
            manifest = _read_manifest(beside)
            if manifest.get("model") == path.name:
                return _Located(path, manifest, path.parent)
        return _Located(path, None, None)
    if (path / MANIFEST).is_file():
        return _from_target_dir(path, target)
    targets = _targets(path)
    if not targets:
        models = sorted(p.name for p in path.glob("*.onnx"))
        hint = (f"pass the model file itself, e.g. {path / models[0]}" if models else
                "pass the directory `onnxport convert -o` wrote, or an .onnx file")
        raise ArtifactError(f"{path} is not an onnxport artifact: no {MANIFEST} in it "
                            "or in a target directory under it", hint)
    if target is None:
        if len(targets) > 1:
            raise ArtifactError(
                f"{path} holds {len(targets)} targets ({', '.join(targets)})",
                "choose one with target=, e.g. InferenceModel(path, "
                f"target={next(iter(targets))!r})")
        target = next(iter(targets))
    if target not in targets:
        raise ArtifactError(f"{path} has no target {target!r}",
                            "its targets are: " + ", ".join(targets))
    return _from_target_dir(targets[target], None)


def _from_target_dir(directory: Path, target: str | None) -> _Located:
    manifest = _read_manifest(directory / MANIFEST)
    name = (manifest.get("target") or {}).get("name", directory.name)
    if target is not None and target not in (name, directory.name):
        raise ArtifactError(f"{directory} is target {name!r}, not {target!r}",
                            "leave target= out or pass the artifact directory above it")
    model = directory / manifest["model"]
    if model.suffix != ".onnx":
        raise ArtifactError(f"target {name!r} in {directory} holds a "
                            f"{model.suffix.lstrip('.') or 'non-ONNX'} model ({model.name})",
                            "this runtime runs ONNX models: convert for an ONNX target")
    return _Located(model, manifest, directory)


# --------------------------------------------------------------------------- integrity


_SMALL_FILE = 16 << 20  # bytes: below this, hash without loading OpenSSL


_builtin_sha256: Any = None  # found on first use: a failed import costs a sys.path scan


def _sha256(path: Path, size: int) -> str:
    """The file's sha256. Small files (a typical edge model) use Python's built-in sha256,
    so the check does not map OpenSSL's libcrypto into the process (about 4 MB resident,
    for a hash that takes a millisecond or two either way); large ones use hashlib, about
    three times faster where the CPU has SHA instructions."""
    global _builtin_sha256
    new = None
    if size <= _SMALL_FILE:
        if _builtin_sha256 is None:
            import importlib

            _builtin_sha256 = False
            for module in ("_sha2", "_sha256"):  # Python 3.12+, 3.10-3.11
                try:
                    _builtin_sha256 = importlib.import_module(module).sha256
                    break
                except (ImportError, AttributeError):
                    continue
        new = _builtin_sha256 or None
    if new is None:
        import hashlib

        new = hashlib.sha256
    digest = new()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_integrity(directory: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Compare every file the manifest lists with its recorded size and sha256.

    Returns the paths checked; raises IntegrityError at the first difference (size first,
    so a truncated file says so), or if the manifest does not list the model itself.
    """
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise IntegrityError(f"{directory / MANIFEST} lists no files with their sha256",
                             "nothing to check against: load with verify_checksum=False "
                             "if you trust the files")
    root = directory.resolve()
    checked = []
    for entry in files:
        if not isinstance(entry, dict):
            raise IntegrityError(f"{directory / MANIFEST} has a malformed files entry: "
                                 f"{entry!r}", "the artifact is damaged: convert again")
        relative = str(entry.get("path", ""))
        path = (directory / relative)
        if not relative or os.path.isabs(relative) or root not in path.resolve().parents:
            raise IntegrityError(f"{directory / MANIFEST} lists a file outside its "
                                 f"directory: {relative!r}", "refusing to load it")
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (the manifest lists it)",
                                 "copy the whole target directory, not only some files")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "modified"
            raise IntegrityError(
                f"{path.name} is {size} bytes but the manifest says {entry['bytes']} "
                f"({what}); refusing to load it",
                "copy the artifact again (check the copy finished) or convert again")
        digest = _sha256(path, size)
        if digest != entry.get("sha256"):
            raise IntegrityError(
                f"{path.name} has sha256 {digest[:16]}... but the manifest says "
                f"{str(entry.get('sha256'))[:16]}... (modified or corrupted); refusing to "
                "load it", "copy the artifact again or convert again")
        checked.append(relative)
    if manifest["model"] not in checked:
        raise IntegrityError(f"{directory / MANIFEST} does not list its model "
                             f"{manifest['model']} among its files", "refusing to load it")
    return checked


# --------------------------------------------------------------------------- the model


Providers = Sequence[Union[str, tuple[str, Mapping[str, Any]]]]


class InferenceModel:
    """An onnxport artifact (or a bare .onnx file) ready to run with onnxruntime.

    path: the directory `onnxport convert -o` wrote (with several targets, choose one
      with `target=`), a target directory holding manifest.json, or an .onnx file (its
      manifest is used if it sits beside one that names it).
    providers: execution providers in priority order (names, or (name, options) pairs);
      default: the target's. Those this onnxruntime lacks are dropped, CPU is kept as the
      last resort; `.providers` says what really runs.
    threads: intra-op threads (default: onnxruntime's, one per physical core).
    verify_checksum: compare every file with the sha256 and size in the manifest before
      loading (default True: it costs about a millisecond per MB, once, and a model
      damaged by an interrupted copy or a failing SD card otherwise runs and returns
      wrong numbers; a bare .onnx file without a manifest has nothing to check).
    cast: cast float arrays of another precision (float64, float16) to the model's float
      type, and integers to a wider integer type of the model (default True). Other
      mismatches (an integer array for a float input, which usually means unnormalised
      data) are always an InputError. With cast=False dtypes must match exactly.
    graph_optimization_level: "disable", "basic", "extended" or "all" (default: the
      target's, else "all").
    """

    def __init__(self, path: PathLike, *, target: str | None = None,
                 providers: Providers | None = None, threads: int | None = None,
                 verify_checksum: bool = True, cast: bool = True,
                 graph_optimization_level: str | None = None):
        located = _locate(path, target)
        self.path: Path = located.model
        self.directory: Path | None = located.directory
        self.manifest: dict | None = located.manifest
        self._cast = cast
        target_info = (self.manifest or {}).get("target") or {}
        self.target: str | None = target_info.get("name") if self.manifest else None

        self.checked: list[str] = []
        if verify_checksum and self.manifest is not None:
            self.checked = check_integrity(self.directory, self.manifest)
        if not self.path.is_file():
            raise ArtifactNotFound(f"{self.path} is missing (the manifest names it)",
                                   "copy the whole target directory")

        asked, wanted = self._wanted_providers(providers, target_info)
        level = graph_optimization_level or target_info.get("graph_optimization_level",
                                                            "all")
        if level not in _LEVELS or not hasattr(ort.GraphOptimizationLevel, _LEVELS[level]):
            raise ArtifactError(f"unknown graph optimisation level {level!r}",
                                "choose one of: disable, basic, extended, all")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   _LEVELS[level])
        if threads:
            options.intra_op_num_threads = int(threads)
        self.graph_optimization_level = level
        self.threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=[name for name, _ in wanted],
                provider_options=[dict(opts) for _, opts in wanted])
        except Exception as error:  # onnxruntime's own exception types
            raise self._load_error(error) from error

        self.requested_providers: list[str] = asked
        self.providers: list[str] = list(self.session.get_providers())
        preferred = (asked or ["CPUExecutionProvider"])[0]
        self.fallback = "" if preferred in self.providers else (
            f"asked {preferred}, running on {self.providers[0]}: {preferred} is not "
            "available in this onnxruntime build")

        # A first axis fixed at 1 is a frozen batch axis when the manifest says the batch is
        # static, or when there is no manifest to say otherwise (an input [1, 60] can only
        # take a sample [60] one way).
        frozen = self.manifest is None or not (self.manifest.get("interface") or {}).get(
            "dynamic_batch", True)
        self.inputs = [_spec(a, frozen) for a in self.session.get_inputs()]
        self.outputs = [_spec(a, frozen) for a in self.session.get_outputs()]
        self.input_names = [s.name for s in self.inputs]
        self.output_names = [s.name for s in self.outputs]
        self._by_name = {s.name: s for s in self.inputs}
        self._plans: dict[tuple, tuple] = {}
        self._single = self.inputs[0] if len(self.inputs) == 1 else None
        self._strip = [s.batched or s.shape is None for s in self.outputs]
        self._run = self.session.run

    @property
    def cast(self) -> bool:
        """Whether float arrays of another precision are cast (set when loading)."""
        return self._cast

    # -- loading helpers

    @staticmethod
    def _wanted_providers(providers: Providers | None,
                          target_info: Mapping[str, Any]
                          ) -> tuple[list[str], list[tuple[str, dict]]]:
        """The providers asked for, and those to open the session with (available ones,
        CPU last)."""
        if providers is None:
            names = list(target_info.get("providers") or ["CPUExecutionProvider"])
            options = target_info.get("provider_options") or {}
            asked = [(n, dict(options.get(n, {}))) for n in names]
            strict = target_info.get("allow_fallback", True) is False
        else:
            asked = [(p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
                     for p in providers]
            strict = False
        known = set(ort.get_all_providers())
        unknown = [n for n, _ in asked if n not in known]
        if unknown:
            raise ArtifactError(f"unknown execution provider {unknown[0]!r}",
                                "known providers: " + ", ".join(sorted(known)))
        available = ort.get_available_providers()
        missing = [n for n, _ in asked if n not in available]
        if missing and strict:
            raise ArtifactError(
                f"target {target_info.get('name')!r} requires {', '.join(missing)}, which "
                f"this onnxruntime build does not have (it has {', '.join(available)})",
                "install the onnxruntime build with that provider, or pass providers= "
                "to run elsewhere")
        wanted = [(n, o) for n, o in asked if n in available]
        if "CPUExecutionProvider" not in [n for n, _ in wanted]:
            wanted.append(("CPUExecutionProvider", {}))
        return [n for n, _ in asked], wanted

    def _load_error(self, error: Exception) -> ArtifactError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else \
            type(error).__name__
        message = f"{self.path} could not be loaded by onnxruntime {ort.__version__}: {reason}"
        if self.checked:
            opset = ((self.manifest or {}).get("onnx") or {}).get("opset")
            return ArtifactError(message, "the file matches its manifest, so it is this "
                                 "onnxruntime that cannot run it" +
                                 (f" (the model uses opset {opset}: an older onnxruntime "
                                  "may need upgrading, or convert with a lower --opset)"
                                  if opset else ""))
        if self.manifest is not None:
            return ArtifactError(message, "the file may be truncated or corrupt: load it "
                                 "with verify_checksum=True to compare it with its "
                                 "manifest, or convert again")
        return ArtifactError(message, "the file may be truncated, corrupt or not an ONNX "
                             "model: convert it again")

    # -- running

    def predict(self, inputs: Any = None, /, **named: Any) -> Any:
        """Run the model.

        inputs: a dict by input name (or keyword arguments), or a single array for a
          single-input model. An input given without its batch axis (one sample, e.g.
          [20, 25] for [batch, 20, 25]) is run as a batch of one, and the outputs come
          back without the batch axis too (give all inputs with it or all without).
        Returns a dict by output name, or a single array for a single-output model.
        Raises InputError, before running anything, for unknown or missing names, a
        shape or a dtype the model does not take.
        """
        if named:
            if inputs is not None:
                raise InputError("pass the inputs as one dict or as keywords, not both")
            inputs = named
        single = self._single
        if single is not None:  # the fast path: one input, given as an array or a dict
            array = inputs
            if type(inputs) is dict and len(inputs) == 1:
                array = inputs.get(single.name)
            if type(array) is np.ndarray:
                plan = self._plans.get((array.shape, array.dtype))
                if plan is None:
                    plan = self._plan(single, array)
                if plan[0] is not None:
                    array = array.astype(plan[0])
                if plan[1]:
                    return self._unbatch(self._execute({single.name: array[None]}))
                outputs = self._execute({single.name: array})
                return outputs[0] if len(outputs) == 1 else dict(zip(self.output_names,
                                                                     outputs))
        feeds, unbatched = self._feeds(inputs)
        outputs = self._execute(feeds)
        if unbatched:
            return self._unbatch(outputs)
        return outputs[0] if len(outputs) == 1 else dict(zip(self.output_names, outputs))

    __call__ = predict

    def stream(self, window: int | None = None, *, input: str | None = None
               ) -> StreamingWindow:
        """A sliding window over single frames for a sequence model; see StreamingWindow."""
        return StreamingWindow(self, window, input=input)

    def _execute(self, feeds: dict[str, np.ndarray]) -> list:
        try:
            return self._run(self.output_names, feeds)
        except Exception as error:
            given = ", ".join(f"{k} {_given(v)}" for k, v in feeds.items())
            reason = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            raise RunFailed(f"onnxruntime failed running {self.path.name} on {given}: "
                            f"{reason}") from error

    def _unbatch(self, outputs: list) -> Any:
        if len(outputs) == 1:
            out = outputs[0]
            if self._strip[0] and out.ndim and out.shape[0] == 1:
                return out[0]
            return out
        return {name: out[0] if strip and getattr(out, "ndim", 0) and out.shape[0] == 1
                else out for name, out, strip in zip(self.output_names, outputs,
                                                     self._strip)}

    def _feeds(self, inputs: Any) -> tuple[dict[str, np.ndarray], bool]:
        if not isinstance(inputs, Mapping):
            if self._single is None:
                raise InputError(
                    f"{self.path.name} has {len(self.inputs)} inputs "
                    f"({', '.join(self.input_names)}), so it takes a dict by input name",
                    "e.g. model.predict({" + ", ".join(f"{n!r}: ..." for n in
                                                       self.input_names[:2]) + "})")
            if inputs is None:
                raise InputError(f"no input given: {self._single.name} expects "
                                 f"{self._single}")
            inputs = {self._single.name: inputs}
        if inputs.keys() != self._by_name.keys():
            self._check_names(inputs)
        feeds = {}
        batched = unbatched = 0
        plans = self._plans
        for spec in self.inputs:
            name = spec.name
            value = inputs[name]
            if type(value) is not np.ndarray:
                try:
                    value = np.asarray(value)
                except (ValueError, TypeError) as error:
                    raise InputError(f"input {name!r} expects {spec}, got a "
                                     f"{type(value).__name__} that is not an array "
                                     f"({error})") from error
            plan = plans.get((value.shape, value.dtype) if self._single else
                             (name, value.shape, value.dtype))
            if plan is None:
                plan = self._plan(spec, value)
            if plan[0] is not None:
                value = value.astype(plan[0])
            if plan[1]:
                value = value[None]
                unbatched += 1
            elif spec.batched:
                batched += 1
            feeds[name] = value
        if unbatched and batched:
            self._mixed(feeds, inputs)
        if len(feeds) > 1:
            self._check_shared_dims(feeds)
        return feeds, unbatched > 0

    def _mixed(self, feeds: Mapping[str, np.ndarray], given: Mapping[str, Any]) -> None:
        without = [s.name for s in self.inputs
                   if s.batched and feeds[s.name].ndim != np.ndim(given[s.name])]
        with_ = [s.name for s in self.inputs if s.batched and s.name not in without]
        raise InputError(
            f"{', '.join(map(repr, without))} {'was' if len(without) == 1 else 'were'} "
            f"given as one sample (no batch axis) but {', '.join(map(repr, with_))} with "
            "a batch axis", "give every input with its batch axis or none of them")

    def _check_names(self, inputs: Mapping[str, Any]) -> None:
        unknown = [k for k in inputs if k not in self._by_name]
        missing = [n for n in self.input_names if n not in inputs]
        if not unknown and not missing:
            return
        expected = ", ".join(f"{s.name} {s}" for s in self.inputs)
        parts = []
        if unknown:
            import difflib

            for name in unknown:
                close = difflib.get_close_matches(str(name), self.input_names, n=1)
                parts.append(f"has no input {name!r}" +
                             (f" (did you mean {close[0]!r}?)" if close else ""))
        if missing:
            parts.append(f"needs {', '.join(map(repr, missing))}, which "
                         f"{'was' if len(missing) == 1 else 'were'} not given")
        raise InputError(f"{self.path.name} {' and '.join(parts)}",
                         f"its inputs are: {expected}")

    def _plan(self, spec: TensorSpec, value: np.ndarray) -> tuple:
        """Check one input's shape and dtype; return (dtype to cast to or None, unbatched)."""
        unbatched = False
        if spec.shape is not None:
            shape = spec.shape
            if spec.batched and value.ndim == len(shape) - 1:
                shape, unbatched = shape[1:], True
            if value.ndim != len(shape) or any(
                    isinstance(want, int) and want != got
                    for want, got in zip(shape, value.shape)):
                hint = None
                if spec.batched:
                    batch = spec.shape[0] if isinstance(spec.shape[0], int) else "n"
                    hint = (f"pass one sample as {_describe('', spec.sample_shape)} or "
                            f"a batch as {_describe('', (batch,) + spec.sample_shape)}")
                raise InputError(f"input {spec.name!r} expects {spec}, got {_given(value)}",
                                 hint)
        cast = None
        if spec.dtype is not None and value.dtype != spec.dtype:
            given, want = value.dtype, spec.dtype
            if want.kind == "O" and given.kind in "UO":
                pass  # strings
            elif self._cast and (
                    (given.kind == "f" and want.kind == "f")
                    or (given.kind in "iu" and want.kind in "iu"
                        and np.can_cast(given, want, "safe"))):
                cast = want
            else:
                if self._cast and want.kind == "f" and given.kind in "iub":
                    hint = (f"convert it with .astype(numpy.{want.name}); integers are not "
                            "cast to float automatically (they are often unnormalised data)")
                else:
                    hint = f"convert it with .astype(numpy.{want.name})"
                raise InputError(f"input {spec.name!r} expects {spec}, got {_given(value)}",
                                 hint)
        plan = (cast, unbatched)
        if len(self._plans) >= _PLAN_CACHE:
            self._plans.clear()
        key = (value.shape, value.dtype)
        self._plans[key if self._single else (spec.name, *key)] = plan
        return plan

    def _check_shared_dims(self, feeds: Mapping[str, np.ndarray]) -> None:
        seen: dict[str, tuple[str, int]] = {}
        for spec in self.inputs:
            for dim, size in zip(spec.shape or (), feeds[spec.name].shape):
                if not isinstance(dim, str):
                    continue
                if dim in seen and seen[dim][1] != size:
                    other, other_size = seen[dim]
                    raise InputError(f"inputs {other!r} and {spec.name!r} disagree on "
                                     f"{dim!r}: {other_size} vs {size}",
                                     "every input must have the same batch size")
                seen.setdefault(dim, (spec.name, size))

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name} {s}" for s in self.inputs)
        outs = ", ".join(f"{s.name} {s}" for s in self.outputs)
        where = f"target {self.target}, " if self.target else ""
        return (f"<InferenceModel {self.path.name} ({where}{', '.join(self.providers)}): "
                f"{ins} -> {outs}>")


# --------------------------------------------------------------------------- streaming


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
        expects = _describe(self._dtype.name, self.frame_shape)
        if frame.shape != self.frame_shape:
            raise InputError(f"stream of {spec.name!r} expects one frame {expects}, got "
                             f"{_given(frame)}", "push one frame at a time")
        given, want = frame.dtype, self._dtype
        if given == want:
            return
        if not (self.model._cast and ((given.kind == "f" and want.kind == "f") or (
                given.kind in "iu" and want.kind in "iu"
                and np.can_cast(given, want, "safe")))):
            raise InputError(f"stream of {spec.name!r} expects one frame {expects}, got "
                             f"{_given(frame)}", f"convert it with .astype(numpy."
                                                 f"{want.name})")
