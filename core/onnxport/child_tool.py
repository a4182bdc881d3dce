"""Running a pass's third-party tool (onnxsim, onnxruntime's optimizer, ...) in a child
process, so that its native abort, segfault or hang is that pass's failure with a
reason, never the conversion's crash.

The protocol: the parent writes a JSON request into the pass's work directory and runs
`python -m MODULE REQUEST.json`; the child does the work and prints one line
`ONNXPORT-RESULT {json}` (`send_answer`). Anything else the parent sees as an exit code,
a signal or a timeout, reported with the tail of the child's stderr. A third-party pass
plugin can use it the same way the built-in ones do.

A tool whose imports are slow can be started ahead (`prestart`): the child imports
while the conversion loads and exports the model on the other core, then waits on its
stdin for the request's path; `run_tool` hands the request to it instead of starting a
new interpreter. A child nobody hands work to ends when its parent does (its stdin
closes).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["MARKER", "WARM_FLAG", "ToolRun", "run_tool", "prestart", "read_request",
           "send_answer", "crash_reason", "stderr_tail"]

MARKER = "ONNXPORT-RESULT "
WARM_FLAG = "--warm"  # a child started ahead: its request's path comes on stdin
TAIL = 400  # characters of the child's stderr quoted in a reason

_started_ahead: dict[str, subprocess.Popen] = {}


@dataclass(frozen=True)
class ToolRun:
    """What the child said (`answer`), or why there is no answer (`failure`); `stdout`
    is the tool's own printing, for a detail the answer does not carry."""

    answer: dict[str, Any] | None
    failure: str = ""
    stdout: str = ""


def run_tool(module: str, request: Mapping[str, Any], work: Path, *, tool: str,
             timeout: float, timeout_hint: str, env: Mapping[str, str] | None = None
             ) -> ToolRun:
    """Run `python -m module` on `request` in `work` (its cwd). `tool` names it in the
    reasons ("onnxsim"); `timeout_hint` says how to give it more time. A child started
    ahead for `module` (and no `env` of this call's own) takes the request instead."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    request_file = (work / f"{module.rsplit('.', 1)[0]}-request.json").resolve()
    request_file.write_text(json.dumps(dict(request)))
    process, handed = _started_ahead.pop(module, None), None
    if process is not None and process.poll() is None and not env:
        handed = f"{request_file}\n"
    else:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(request_file)], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})})
    try:
        stdout, stderr = process.communicate(handed, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return ToolRun(None, f"{tool} did not finish within {timeout:g} s and was "
                             f"stopped ({timeout_hint})")
    if process.returncode != 0:
        return ToolRun(None, crash_reason(tool, process.returncode, stderr))
    line = next((l for l in reversed(stdout.splitlines()) if l.startswith(MARKER)), None)
    if line is None:
        return ToolRun(None, f"{tool}'s process ended without a result: "
                             + stderr_tail(stderr))
    return ToolRun(json.loads(line[len(MARKER):]), stdout=stdout)


def prestart(module: str) -> None:
    """Start `python -m module --warm` now, unless one is already waiting: its imports
    then overlap the conversion's own work instead of following it."""
    waiting = _started_ahead.get(module)
    if waiting is not None and waiting.poll() is None:
        return
    if not _started_ahead:
        atexit.register(_let_waiting_children_go)
    _started_ahead[module] = subprocess.Popen(
        [sys.executable, "-m", module, WARM_FLAG], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def _let_waiting_children_go() -> None:
    """At exit: close what the children started ahead still wait on, so they end now."""
    for process in _started_ahead.values():
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def read_request(argv: list[str]) -> dict[str, Any]:
    """In the child: the request, from the file named on the command line or, in a child
    started ahead, from the path its parent writes on stdin (the child then works in
    that file's directory). No path at all (the parent ended) exits quietly."""
    if argv and argv[0] == WARM_FLAG:
        line = sys.stdin.readline().strip()
        if not line:
            raise SystemExit(0)
        path = Path(line)
        os.chdir(path.parent)
    else:
        path = Path(argv[0])
    return json.loads(path.read_text())


def send_answer(answer: Mapping[str, Any]) -> None:
    """In the child: the one result line the parent reads (after the tool's own output)."""
    sys.stdout.flush()
    print(MARKER + json.dumps(dict(answer)), flush=True)


def crash_reason(tool: str, code: int, stderr: str) -> str:
    """'onnxsim crashed (SIGABRT): ...' for a signal, 'onnxsim failed: ...' otherwise."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{tool} crashed ({name}): {stderr_tail(stderr)}"
    return f"{tool} failed: {stderr_tail(stderr)}"


def stderr_tail(stderr: str) -> str:
    """What the child's stderr says went wrong: a native abort's message and Python's
    'Fatal Python error' line, else the exception line of a traceback, else its last
    lines; trimmed."""
    lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
    if not lines:
        return "no error output"
    fatal = next((i for i, l in enumerate(lines) if l.startswith("Fatal Python error")),
                 None)
    if fatal is not None:
        text = " | ".join(lines[max(0, fatal - 2):fatal + 1])
    elif "Traceback (most recent" in stderr:
        text = lines[-1]
    else:
        text = " | ".join(lines[-3:])
    return text if len(text) <= TAIL else text[:TAIL - 3] + "..."
