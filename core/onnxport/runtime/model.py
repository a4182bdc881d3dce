"""`InferenceModel`: one artifact (or .onnx file) open in onnxruntime, with every input
checked against the model before onnxruntime sees it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np
import onnxruntime as ort

from onnxport.artifact.reading import check_integrity
from onnxport.runtime.errors import ArtifactError, ArtifactNotFound, InputError, RunFailed
from onnxport.runtime.locating import PathLike, locate
from onnxport.runtime.specs import TensorSpec, describe, given_text, spec_of

if TYPE_CHECKING:
    from onnxport.runtime.streaming import StreamingWindow

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "layout": "ORT_ENABLE_LAYOUT",
           "all": "ORT_ENABLE_ALL"}
_PLAN_CACHE = 64  # (shape, dtype) combinations remembered as already checked, per input


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
        located = locate(path, target)
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
        self.inputs = [spec_of(a, frozen) for a in self.session.get_inputs()]
        self.outputs = [spec_of(a, frozen) for a in self.session.get_outputs()]
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
               ) -> "StreamingWindow":
        """A sliding window over single frames for a sequence model; see StreamingWindow."""
        from onnxport.runtime.streaming import StreamingWindow

        return StreamingWindow(self, window, input=input)

    def _execute(self, feeds: dict[str, np.ndarray]) -> list:
        try:
            return self._run(self.output_names, feeds)
        except Exception as error:
            given = ", ".join(f"{k} {given_text(v)}" for k, v in feeds.items())
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
                    hint = (f"pass one sample as {describe('', spec.sample_shape)} or "
                            f"a batch as {describe('', (batch,) + spec.sample_shape)}")
                raise InputError(f"input {spec.name!r} expects {spec}, got {given_text(value)}",
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
                raise InputError(f"input {spec.name!r} expects {spec}, got {given_text(value)}",
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
