"""The engine every training callback shares: save the weights, convert in a worker
process (in the foreground, or on a background thread so training goes on), keep the
status file, log to the active MLflow run, publish. Framework-free: each framework's
module hands it two functions, one that saves the checkpoint and one that writes what
the worker loads.

Never breaks training: whatever goes wrong (the weights cannot be written, the example
inputs do not fit, the exporter fails or aborts its process, the time runs out), the
failure is recorded in the status, logged as one warning, and not raised, unless the
user asked for `strict=True`.

One export attempt, in order:

1. (training thread) the checkpoint is written, atomically: the trained weights are
   safe before anything else happens;
2. (training thread) what the worker will load is written to a directory of its own,
   `DIR/.onnx-sources/ID/` (the checkpoint hard-linked, plus for some routes a pickled
   module, example inputs and a two-line factory), so a later checkpoint can never
   change the files a running conversion reads;
3. (training thread, or the background thread) `convert_in_worker`: the conversion runs
   in a child process with a time limit; its artifact replaces the previous one only
   when it verifies (the flow stages it beside and swaps it in);
4. publish, log to MLflow, write the status, prune source directories nothing refers to.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from onnxport.errors import BadInput, ExitCode, OnnxportError
from onnxport.training.destinations import (active_mlflow_run, log_to_mlflow,
                                             publish_artifact)
from onnxport.training.files import check_writable
from onnxport.training.status import (STATUS_FILE, on_disk, status_document, utc_now,
                                      write_status)

LOG = logging.getLogger("onnxport.training")
SOURCES = ".onnx-sources"  # inside the directory: what each attempt's worker reads
ARTIFACT = "onnx"  # the artifact directory's default name, inside the directory
DEFAULT_TIMEOUT = 1800.0  # as onnxport convert's --timeout

# build_request keywords the callback owns: the rest are the user's convert options
_OWNED = {"output": "the artifact is DIR/onnx (artifact= moves it)",
          "weights": "the callback saves the weights itself",
          "overwrite": "an export replaces the callback's own previous artifact",
          "made_by": "the callback records the training moment",
          "trust_code": "trust_code= is a keyword of the callback itself"}


class ExportError(RuntimeError):
    """Raised for a failed export only with `strict=True`; `status` is the status."""

    def __init__(self, status: Mapping[str, Any]):
        super().__init__(status.get("error") or "the ONNX export failed")
        self.status = dict(status)


@dataclass
class SourceSpec:
    """What one attempt converts: a model file or a factory, its weights, and options
    for build_request that the route adds (custom_objects for Keras)."""

    model: str
    weights: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # for the worker process


@dataclass
class ExportSettings:
    """A callback's options, checked when the callback is made (before training)."""

    directory: Path
    name: str = "model"
    artifact: Path | None = None
    monitor: str | None = None
    mode: str = "min"
    background: bool = False
    timeout: float | None = DEFAULT_TIMEOUT
    strict: bool = False
    publish: tuple[str, ...] = ()
    publish_options: dict[str, Any] = field(default_factory=dict)
    log_to_mlflow: bool = True
    trust_code: bool = False
    convert_options: dict[str, Any] = field(default_factory=dict)

    @property
    def artifact_dir(self) -> Path:
        return self.artifact if self.artifact is not None else self.directory / ARTIFACT

    @property
    def status_path(self) -> Path:
        return self.directory / STATUS_FILE

    @property
    def sources(self) -> Path:
        return self.directory / SOURCES


def make_settings(directory: str | Path, *, name: str | None = None,
                  artifact: str | Path | None = None, monitor: str | None = None,
                  mode: str = "min", background: bool = False,
                  timeout: float | None = DEFAULT_TIMEOUT, strict: bool = False,
                  publish: Iterable[str] | str = (),
                  publish_options: Mapping[str, Any] | None = None,
                  log_to_mlflow: bool = True, trust_code: bool = False,
                  convert_options: Mapping[str, Any] | None = None,
                  caller: str = "ExportOnnx") -> ExportSettings:
    """Check a callback's options now, so a typo fails before training, not after it:
    every convert option must be one of `onnxport.convert`'s and make a valid request."""
    from onnxport.flow.building import build_request

    if mode not in ("min", "max"):
        raise BadInput(f"{caller}: mode={mode!r} must be 'min' or 'max'")
    if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
        raise BadInput(f"{caller}: timeout={timeout!r} must be a number of seconds > 0, "
                       "or None for no limit")
    options = dict(convert_options or {})
    allowed = {p.name for p in inspect.signature(build_request).parameters.values()
               if p.kind is p.KEYWORD_ONLY}
    for key in options:
        if key in _OWNED:
            raise TypeError(f"{caller}() does not take {key}=: {_OWNED[key]}")
        if key not in allowed:
            known = ", ".join(sorted(allowed - set(_OWNED)))
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}; "
                            f"convert options: {known}")
    settings = ExportSettings(
        directory=Path(directory).absolute(),
        name=name or "model",
        artifact=Path(artifact).absolute() if artifact is not None else None,
        monitor=monitor,
        mode=mode, background=background, timeout=timeout, strict=strict,
        publish=(publish,) if isinstance(publish, str) else tuple(publish),
        publish_options=dict(publish_options or {}), log_to_mlflow=log_to_mlflow,
        trust_code=trust_code, convert_options=options)
    build_request("onnxport.training.exporting:placeholder", output=settings.artifact_dir,
                  overwrite=True, name=settings.name, **_for_request(options))
    return settings


def _for_request(options: Mapping[str, Any]) -> dict[str, Any]:
    """The convert options as build_request takes them (custom_objects as references a
    worker process can import: see `references`)."""
    options = dict(options)
    if options.get("custom_objects"):
        options["custom_objects"] = references(options["custom_objects"])
    return options


def references(objects: Any) -> list[str]:
    """Custom objects (a dict name -> object, a list of objects or `module:name`
    strings) as `module:name` strings; an object defined in the training script itself
    (`__main__`) is named by the script's path, `path/to/train.py:name`."""
    if isinstance(objects, str):
        objects = [objects]
    items = objects.items() if isinstance(objects, Mapping) else \
        [(getattr(o, "__name__", None), o) for o in objects]
    named = []
    for key, obj in items:
        if isinstance(obj, str):
            named.append(obj)
            continue
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None) or key
        if module == "__main__":
            module = getattr(sys.modules["__main__"], "__file__", None)
        if not module or not qualname or "." in qualname or "<" in qualname:
            raise BadInput(f"custom object {key or obj!r} cannot be named for the "
                           "conversion process (defined inside a function?)",
                           "define it at the top level of a module, or give it as "
                           "'module:name'")
        named.append(f"{module}:{qualname}")
    return named


def placeholder():  # the factory make_settings checks options with; never called
    raise RuntimeError("onnxport.training.exporting:placeholder is not a model")


# --------------------------------------------------------------------------- attempts


class ExportHandle:
    """What every callback offers its user directly: wait for a background export, read
    the last status. Mixed into each framework's callback class beside its own base."""

    exporter: "Exporter"

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for a background export; the last status."""
        return self.exporter.wait(timeout)

    @property
    def status(self) -> dict[str, Any] | None:
        return self.exporter.status


@dataclass
class Attempt:
    """One export: when training asked for it, and what it converts."""

    id: str
    trigger: str  # "end" of training, a new "best" of the monitored metric, a "call"
    epoch: int | None = None
    step: int | None = None
    value: float | None = None
    checkpoint: Path | None = None
    source_dir: Path | None = None
    request: Any = None  # the ConversionRequest
    mlflow: tuple[str, str] | None = None  # (tracking URI, run id) active at the trigger
    env: dict[str, str] = field(default_factory=dict)
    started: str = field(default_factory=utc_now)

    def describe(self, monitor: str | None) -> dict[str, Any]:
        return {"id": self.id, "trigger": self.trigger, "epoch": self.epoch,
                "step": self.step, "monitor": monitor if self.value is not None else None,
                "value": self.value,
                "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "source": None if self.source_dir is None else str(self.source_dir),
                "started": self.started}


class Exporter:
    """The exports of one training run into one directory. Callbacks call `export`
    (end of training, or a direct call) and `observe` (a monitored metric's value);
    `wait` blocks until background exports are done and returns the last status."""

    def __init__(self, settings: ExportSettings, caller: str):
        self.settings = settings
        self.caller = caller
        self.best: float | None = None
        self.exported = 0  # attempts started
        self.status: dict[str, Any] | None = None  # the last one, written or not
        self._strict_failure: dict[str, Any] | None = None
        self._pending: Attempt | None = None
        self._running: Attempt | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._counter = 0
        self._status_lock = threading.Lock()

    # ----------------------------------------------------------------- the triggers

    def improves(self, value: Any) -> bool:
        """Whether `value` of the monitored metric beats the best seen so far."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
        if value != value:  # NaN never improves
            return False
        return self.best is None or (value < self.best if self.settings.mode == "min"
                                     else value > self.best)

    def observe(self, value: Any, save: Callable[[], Path],
                write_source: Callable[[Path], SourceSpec], *, epoch: int | None = None,
                step: int | None = None) -> bool:
        """A new value of the monitored metric: export when it is a new best."""
        if not self.improves(value):
            return False
        self.best = float(value)
        self.export(save, write_source, trigger="best", epoch=epoch, step=step,
                    value=self.best)
        return True

    def export(self, save: Callable[[], Path], write_source: Callable[[Path], SourceSpec],
               *, trigger: str, epoch: int | None = None, step: int | None = None,
               value: float | None = None) -> dict[str, Any] | None:
        """Save the weights and export them (now, or on the background thread). In the
        foreground, returns the status; in the background, None (see `wait`)."""
        self._counter += 1
        self.exported += 1
        attempt = Attempt(id=f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-"
                             f"{self._counter}", trigger=trigger, epoch=epoch, step=step,
                          value=value, mlflow=active_mlflow_run()
                          if self.settings.log_to_mlflow else None)
        try:
            attempt.checkpoint = Path(save())
        except Exception as exc:
            return self._failed_before(attempt, exc, "save weights",
                                       "the trained weights could not be saved")
        try:
            check_writable(self.settings.artifact_dir)
            attempt.source_dir = self._new_source_dir(attempt.id)
            spec = write_source(attempt.source_dir)
            attempt.request = self._request(spec, attempt)
            attempt.env = dict(spec.env)
        except Exception as exc:
            self._remove_source(attempt.source_dir)
            return self._failed_before(attempt, exc, "prepare",
                                       "the export could not be prepared")
        if not self.settings.background:
            return self._run(attempt)
        with self._lock:
            superseded, self._pending = self._pending, attempt
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name=
                                                "onnxport-export", daemon=False)
                self._thread.start()
        if superseded is not None:  # a newer best arrived before it started
            LOG.info("onnxport: export %s superseded by %s before it started",
                     superseded.id, attempt.id)
            self._remove_source(superseded.source_dir)
        return None

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for background exports (at most `timeout` s); the last status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._thread is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._lock.wait(left)
        return self.status

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None

    def finish(self) -> dict[str, Any] | None:
        """At the end of training: with strict=True, wait for background exports and
        raise the first failure (a foreground failure has raised already); otherwise
        return at once (the process still waits for a background export before it
        exits)."""
        if self.settings.strict:
            self.wait()
            self._raise_strict_failure()
        return self.status

    def _raise_strict_failure(self) -> None:
        failure, self._strict_failure = self._strict_failure, None
        if failure is not None:
            raise ExportError(failure)

    # ----------------------------------------------------------------- one attempt

    def _request(self, spec: SourceSpec, attempt: Attempt):
        from onnxport.flow.building import build_request

        options = _for_request({**self.settings.convert_options, **spec.options})
        return build_request(
            spec.model, output=self.settings.artifact_dir, weights=spec.weights,
            name=self.settings.name, overwrite=True, trust_code=self.settings.trust_code,
            made_by={"call": self.caller,
                     "training": attempt.describe(self.settings.monitor)},
            **{k: v for k, v in options.items() if k != "name"})

    def _drain(self) -> None:
        """The background thread: run pending attempts, newest first, one at a time."""
        while True:
            with self._lock:
                attempt, self._pending = self._pending, None
                if attempt is None:
                    self._thread = None
                    self._lock.notify_all()
                    return
                self._running = attempt
            try:
                self._run(attempt)
            except BaseException:  # never leave waiters hanging
                LOG.exception("onnxport: the background export %s failed", attempt.id)
            finally:
                with self._lock:
                    self._running = None

    def _run(self, attempt: Attempt) -> dict[str, Any]:
        from onnxport.flow.worker import convert_in_worker

        settings = self.settings
        self._write(self._document("exporting", attempt))
        try:
            outcome = convert_in_worker(attempt.request, timeout=settings.timeout,
                                        env={**os.environ, **attempt.env}
                                        if attempt.env else None)
        except Exception as exc:  # the worker could not be started or talked to
            return self._failed_before(attempt, exc, "start",
                                       "the conversion process could not be run")
        published: list[str] = []
        if outcome.passed:
            for uri in settings.publish:
                try:
                    published.append(publish_artifact(Path(outcome.output), uri,
                                              settings.publish_options))
                except Exception as exc:
                    outcome.passed = False
                    outcome.exit_code = getattr(exc, "exit_code", ExitCode.INTERNAL)
                    outcome.message = f"converted, but publishing to {uri} failed: " + \
                        (exc.one_line() if isinstance(exc, OnnxportError) else
                         f"{type(exc).__name__}: {exc}")
                    outcome.hint = None
                    outcome.cause = "publish"
                    break
        document = self._document("passed" if outcome.passed else "failed", attempt,
                                  outcome=outcome, published=published)
        return self._finish(attempt, document)

    def _finish(self, attempt: Attempt, document: dict[str, Any]) -> dict[str, Any]:
        self._prune(finished=attempt)
        if attempt.mlflow is not None:
            document["mlflow_run_id"] = attempt.mlflow[1]
        self._write(document)
        if attempt.mlflow is not None:
            problem = log_to_mlflow(attempt.mlflow, self.settings.artifact_dir,
                                     self.settings.status_path, document)
            if problem:
                document["notes"].append(problem)
                self._write(document)
        if document["state"] == "failed":
            self._warn(document)
            if self.settings.strict:
                self._strict_failure = self._strict_failure or document
                if not self.settings.background:
                    self._raise_strict_failure()
        return document

    def _failed_before(self, attempt: Attempt, exc: Exception, stage: str,
                       what: str) -> dict[str, Any]:
        """A failure in the training process, before a worker could start."""
        if isinstance(exc, OnnxportError):
            error, code = exc.one_line(), exc.exit_code
        elif isinstance(exc, OSError):
            error, code = f"{what}: {exc}", ExitCode.ENVIRONMENT
        else:
            error, code = f"{what}: {type(exc).__name__}: {exc}", ExitCode.INTERNAL
        return self._finish(attempt, self._document("failed", attempt, error=error,
                                                    exit_code=code, stage=stage))

    def _document(self, state: str, attempt: Attempt, **details: Any) -> dict[str, Any]:
        return status_document(
            state=state, artifact=self.settings.artifact_dir,
            targets_requested=tuple(self.settings.convert_options.get("targets") or
                                    ("cpu",)),
            checkpoint=attempt.checkpoint,
            attempt=attempt.describe(self.settings.monitor),
            **details)

    def _write(self, document: dict[str, Any]) -> None:
        with self._status_lock:
            self.status = document
            try:
                self.settings.directory.mkdir(parents=True, exist_ok=True)
                write_status(self.settings.status_path, document)
            except OSError as exc:
                note = (f"the status could not be written to "
                        f"{self.settings.status_path}: {exc}")
                if note not in document["notes"]:
                    document["notes"].append(note)

    def _warn(self, document: Mapping[str, Any]) -> None:
        where = document.get("checkpoint")
        kept = (f"the trained weights are in {where}" if where else
                "the trained weights could not be saved")
        previous = f"; the previous ONNX export stays in {document['artifact']}" \
            if document.get("has_onnx") else ""
        LOG.warning("onnxport: the ONNX export (%s) failed, training goes on: %s "
                    "[cause %s, exit code %s]; %s%s; status: %s",
                    document["attempt"]["trigger"], document.get("error"),
                    document.get("cause"), document.get("exit_code"), kept, previous,
                    self.settings.status_path)

    # ----------------------------------------------------------------- source dirs

    def _new_source_dir(self, attempt_id: str) -> Path:
        path = self.settings.sources / attempt_id
        path.mkdir(parents=True)
        return path

    def _remove_source(self, path: Path | None) -> None:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def _prune(self, finished: Attempt) -> None:
        """Remove the source directories nothing refers to: keep the one the artifact
        on disk was made from (its manifest names it) and those of queued attempts."""
        root = self.settings.sources
        if not root.is_dir():
            return
        keep = set()
        made_from = (on_disk(self.settings.artifact_dir).get("exported_from") or {})
        if isinstance(made_from, dict) and made_from.get("source"):
            keep.add(Path(made_from["source"]).name)
        with self._lock:
            for attempt in (self._pending, self._running):
                if attempt is not None and attempt is not finished and \
                        attempt.source_dir is not None:
                    keep.add(attempt.source_dir.name)
        for child in root.iterdir():
            if child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
        try:
            root.rmdir()  # only when empty
        except OSError:
            pass


# --------------------------------------------------------------------------- helpers
