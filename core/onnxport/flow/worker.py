"""One conversion in a worker process of its own: the unit every executor runs.

A native abort, an out-of-memory kill, a hang or `os._exit` in the model's code ends
the worker, never the caller: it becomes the conversion's failure with its cause, a
`ConversionOutcome` the CLI prints and a fleet or a service records. The worker

- receives the request as JSON on stdin (`building.request_to_json`: a source named by
  path or factory, so nothing is pickled);
- runs exactly the flow `onnxport convert` runs in-process (`pipeline.run_conversion`),
  with the installed plugins;
- sends its stage events and its outcome as JSON lines on a pipe of their own, while
  anything the model's code prints goes to stderr: the caller's stdout stays clean.

The caller waits with a time limit; past it, the worker's whole process group is
killed. Either way, what the worker left beside the output (a staging directory) is
cleaned up by `committing.recover` under the output's lock.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from onnxport.artifact.committing import OutputLock, recover
from onnxport.artifact.writing import strict_json
from onnxport.conversion import ConversionRequest
from onnxport.errors import ExitCode, OnnxportError
from onnxport.flow.building import request_from_json, request_to_json
from onnxport.host import hookimpl
from onnxport.records import ConversionOutcome, Job, StageEvent

DEFAULT_TIMEOUT = 1800.0  # seconds; a large export takes minutes, a hang forever
DEBUG_VARIABLE = "ONNXPORT_DEBUG"  # set for the worker: tracebacks on its stderr
LOG_LEVEL_VARIABLE = "ONNXPORT_LOG_LEVEL"  # the caller's -q/-v, for the plugins' logging


def convert_in_worker(request: ConversionRequest, *, timeout: float | None = DEFAULT_TIMEOUT,
                      observers: Iterable[Any] = (), debug: bool = False,
                      env: Mapping[str, str] | None = None) -> ConversionOutcome:
    """Run `request` in a new worker process and wait for it (at most `timeout` seconds;
    None or 0: no limit). `observers` get the worker's stage events as they happen;
    `debug` makes the worker print tracebacks on stderr."""
    payload = json.dumps(request_to_json(request))
    observers = list(observers)
    read_end, write_end = os.pipe()
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            [*_interpreter(), "-m", "onnxport.flow.worker", str(write_end)],
            stdin=subprocess.PIPE, stdout=2, pass_fds=(write_end,),
            start_new_session=True,
            env={**(os.environ if env is None else env), **_same_imports(),
                 **({DEBUG_VARIABLE: "1"} if debug else {}), **_log_level()})
    finally:
        os.close(write_end)
    try:
        process.stdin.write(payload.encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    stage: str | None = None
    outcome: ConversionOutcome | None = None
    deadline = started + timeout if timeout else None
    try:
        with os.fdopen(read_end, "rb") as pipe:
            for message in _messages(pipe, deadline):
                if "event" in message:
                    event = StageEvent(**message["event"])
                    if event.status == "started":
                        stage = event.stage + (f" [{event.target}]" if event.target else "")
                    _notify(observers, event)
                elif "outcome" in message:
                    outcome = ConversionOutcome(**message["outcome"])
    except BaseException:  # Ctrl-C, or an observer that raised: the worker stops too
        _kill(process)
        process.wait()
        _clean_up_after(request.output)
        raise
    timed_out = deadline is not None and time.monotonic() >= deadline
    if outcome is None and timed_out and process.poll() is None:
        _kill(process)
        outcome = ConversionOutcome(
            passed=False, exit_code=ExitCode.TIMEOUT, cause="timeout", stage=stage,
            message=f"the conversion did not finish within {timeout:g} s"
                    + (f" (it was in stage {stage})" if stage else ""),
            hint="a hang in the model's code or the exporter: run it alone to see where, "
                 "or give it longer with --timeout")
    returncode, peak = _reap(process)
    if outcome is None:
        outcome = _died(returncode, stage)
    outcome.seconds = time.monotonic() - started
    outcome.peak_rss_bytes = peak
    if outcome.cause:
        _clean_up_after(request.output)
    return outcome


def run_job(job: Job) -> ConversionOutcome:
    """What every executor runs for a job: the conversion in a worker process, then,
    for a job with `publish` URIs, the artifact published there and its local copy
    removed (on a machine that shares no disk with the caller)."""
    request = request_from_json(job.request)
    outcome = convert_in_worker(request, timeout=job.timeout)
    if outcome.passed and job.publish:
        from onnxport.artifact.publishing import publish
        from onnxport.host import default_host

        try:
            for uri in job.publish:
                outcome.published.append(publish(Path(outcome.output), uri,
                                                  default_host(), {}).uri)
        except OnnxportError as exc:
            outcome.passed, outcome.exit_code = False, exc.exit_code
            outcome.message = f"converted, but publishing failed: {exc.message}"
            outcome.hint = exc.hint
        finally:
            shutil.rmtree(outcome.output, ignore_errors=True)
    return outcome


def _reap(process: subprocess.Popen) -> tuple[int, int | None]:
    """Wait for the worker; its exit status and its peak resident memory in bytes."""
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:  # already reaped
        return process.wait(), None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024  # Linux reports KiB


def _interpreter() -> list[str]:
    """This Python, with the flags that shape what it imports (`-S`: no site-packages)."""
    return [sys.executable, *(["-S"] if sys.flags.no_site else []),
            *(["-s"] if sys.flags.no_user_site else [])]


def _log_level() -> dict[str, str]:
    """The level this process shows onnxport's logging at, if it chose one (the CLI's
    -q/-v): the worker shows the plugins' records the same way."""
    level = logging.getLogger("onnxport").level
    return {LOG_LEVEL_VARIABLE: str(level)} if level != logging.NOTSET else {}


def _same_imports() -> dict[str, str]:
    """The worker imports what this process imports: the same onnxport, plugins and
    frameworks, whatever path this process was started with."""
    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _messages(pipe, deadline: float | None):
    """The JSON lines the worker writes, until it closes the pipe or time runs out."""
    buffer = b""
    fd = pipe.fileno()
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return  # out of time
        chunk = os.read(fd, 65536)
        if not chunk:
            return  # the worker closed the pipe: it finished or died
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def _notify(observers: list[Any], event: StageEvent) -> None:
    hook = "onnxport_stage_started" if event.status == "started" else \
        "onnxport_stage_finished"
    for observer in observers:
        method = getattr(observer, hook, None)
        if method is not None:
            method(event=event)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the worker and anything it started
    except (ProcessLookupError, PermissionError):
        process.kill()


def _died(returncode: int, stage: str | None) -> ConversionOutcome:
    where = f" in stage {stage}" if stage else ""
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() \
            else f"signal {-returncode}"
        why = {"SIGKILL": "killed from outside: an out-of-memory kill looks like this",
               "SIGABRT": "a native abort in a framework or exporter",
               "SIGSEGV": "a native crash in a framework or exporter"}.get(name, "")
        return ConversionOutcome(
            passed=False, exit_code=ExitCode.CRASHED, cause="signal", stage=stage,
            message=f"the conversion process died of {name}{where}"
                    + (f" ({why})" if why else ""),
            hint="the model's code or its framework crashed: run the conversion alone "
                 "with --debug to see the native error")
    return ConversionOutcome(
        passed=False, exit_code=ExitCode.CRASHED, cause="exit", stage=stage,
        message=f"the conversion process ended with exit code {returncode}{where} "
                "without a result (os._exit or sys.exit in the model's code)",
        hint="a model, its factory and its forward() must not exit the process")


def _clean_up_after(output: Path) -> None:
    """Recover the output a killed worker may have left half-written."""
    try:
        with OutputLock(output):
            recover(Path(output))
    except (OnnxportError, OSError):
        pass  # another run owns it now: it recovers on its own


# --------------------------------------------------------------------------- the worker


class _Relay:
    """In the worker: stage events to the caller, one JSON line each."""

    def __init__(self, stream):
        self.stream = stream

    @hookimpl
    def onnxport_stage_started(self, event: StageEvent) -> None:
        self.send({"event": asdict(event)})

    @hookimpl
    def onnxport_stage_finished(self, event: StageEvent) -> None:
        self.send({"event": asdict(event)})

    def send(self, message: dict[str, Any]) -> None:
        self.stream.write(json.dumps(strict_json(message)) + "\n")
        self.stream.flush()


def worker_main(result_fd: int) -> int:
    """The worker process: read the request, convert, send the outcome."""
    from onnxport.errors import VerificationFailed, environment_problem
    from onnxport.flow.pipeline import run_conversion
    from onnxport.host import default_host

    _die_with_the_caller()
    if os.environ.get(LOG_LEVEL_VARIABLE, "").isdigit():
        from onnxport.cli import configure_logging

        configure_logging(int(os.environ[LOG_LEVEL_VARIABLE]))
    relay = _Relay(os.fdopen(result_fd, "w", buffering=1))
    try:
        request = request_from_json(json.loads(sys.stdin.read()))
    except (ValueError, KeyError, TypeError) as exc:
        relay.send({"outcome": asdict(ConversionOutcome(
            passed=False, exit_code=ExitCode.BAD_INPUT,
            message=f"the worker received a request it cannot read ({exc})"))})
        return 0
    try:
        result = run_conversion(request, default_host(), observers=[relay])
        outcome = ConversionOutcome(passed=True, exit_code=ExitCode.OK,
                                    output=str(result.output), name=result.name,
                                    report=result.report)
    except VerificationFailed as exc:
        result = exc.result
        outcome = ConversionOutcome(
            passed=False, exit_code=exc.exit_code, message=exc.message, hint=exc.hint,
            name=result.name if result else None,
            output=str(result.output) if result and result.output else None,
            report=result.report if result else None)
    except OnnxportError as exc:
        if os.environ.get(DEBUG_VARIABLE):
            import traceback

            traceback.print_exc()
        outcome = ConversionOutcome(passed=False, exit_code=exc.exit_code,
                                    message=exc.message, hint=exc.hint)
    except Exception as exc:  # the machine (a full disk...), else a bug: say which
        if os.environ.get(DEBUG_VARIABLE):
            import traceback

            traceback.print_exc()
        problem = environment_problem(exc)
        outcome = ConversionOutcome(
            passed=False, exit_code=ExitCode.INTERNAL,
            message=f"internal error: {type(exc).__name__}: {exc}",
            hint="run with --debug for the traceback and please report it") \
            if problem is None else ConversionOutcome(
                passed=False, exit_code=problem.exit_code, message=problem.message,
                hint=problem.hint)
    relay.send({"outcome": outcome.to_json()})
    return 0


def _die_with_the_caller() -> None:
    """A worker whose caller is killed stops too (Linux), instead of finishing a
    conversion nobody waits for."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the caller died before the line above
        os._exit(ExitCode.CRASHED)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise SystemExit("usage: python -m onnxport.flow.worker RESULT_FD (onnxport runs "
                         "it; the request comes on stdin)")
    sys.exit(worker_main(int(sys.argv[1])))
