"""The README's "A 30-second tour" runs as written, and the console outputs the docs quote
are the ones docs/build_quotes.py makes.

- `test_every_tour_command_runs_as_written` (slow): every command of the tour's shell
  blocks, in order, in a scratch copy of the files they need (examples/, the broken
  models), with the real S3 and MLflow servers of tests/servers.py behind the standard
  variables; each must exit as the README says (0, or 3 where it says a diagnosis
  exits 3). The lines skipped are listed below with the reason.
- `test_quoted_outputs_have_the_shape_the_script_makes` (fast): every quoted console
  output of the README and docs/diagnose.md is one the script regenerates, with its
  shape.
- `test_quoted_outputs_match_a_fresh_run` (slow): `build_quotes.py --check`.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, ROOT
from servers import mlflow_env, mlflow_server, s3_env, s3_server  # noqa: F401 (fixtures)

# Lines of the tour that are not run, and why.
SKIPPED = {
    "pip install -e examples/onnxport-sklearn":
        "installs a package into the environment; `make setup` has installed it",
    "pip install -e examples/onnxport-fp16":
        "installs a package into the environment; `make setup` has installed it",
    "onnxport view out/autopilot":
        "serves until Ctrl-C; tests/test_view.py starts, fetches and stops it",
}
# Lines that start a server: run in the background until the tour ends, the next line
# waiting until it answers at this address.
BACKGROUND = {
    "onnxport serve --models examples/fleet.toml": "http://127.0.0.1:8000/readyz",
}
# Lines that exit with another code than 0, as the README says.
EXIT_CODES = {
    "onnxport convert tests/broken_models.py:sensitive_mlp -o out/mlp --quantize on "
    "--diagnose": 3,
    "onnxport diagnose out/mlp.failed": 3,
}
NEEDS = ("examples", "tests/broken_models.py")  # what the tour's commands read


def _builder():
    spec = importlib.util.spec_from_file_location("build_quotes",
                                                  ROOT / "docs" / "build_quotes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_quotes", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tour_commands() -> list[str]:
    """The commands of the tour's ```sh and ```console blocks, continuation lines
    joined, comments dropped (a console block's `$ ` lines only)."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## A 30-second tour")
    section = readme[start:readme.index("\n## ", start + 1)]
    commands = []
    for kind, body in re.findall(r"```(sh|console)\n(.*?)```", section, re.S):
        lines = body.splitlines()
        if kind == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        joined = "\n".join(lines).replace("\\\n", " ")
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def test_the_tour_names_no_placeholder():
    commands = tour_commands()
    assert len(commands) >= 15
    for command in commands:
        words = shlex.split(command)
        assert words[0] in ("onnxport", "python", "pip"), command
        for word in words:  # every file a command reads is in the repository
            path = word.split(":")[0]
            if path.endswith(".py") and not path.startswith("out/"):
                assert (ROOT / path).is_file(), f"{command}: {path} does not exist"
    assert set(SKIPPED) <= set(commands), set(SKIPPED) - set(commands)
    assert set(BACKGROUND) <= set(commands), set(BACKGROUND) - set(commands)
    assert set(EXIT_CODES) <= set(commands), set(EXIT_CODES) - set(commands)


@pytest.mark.slow
def test_every_tour_command_runs_as_written(tmp_path, s3_env, mlflow_env):
    for need in NEEDS:
        source = ROOT / need
        if source.is_dir():
            shutil.copytree(source, tmp_path / need, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info"))
        else:
            (tmp_path / need).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp_path / need)
    servers = []
    try:
        for command in tour_commands():
            if command in SKIPPED:
                continue
            words = shlex.split(command)
            executable = {"onnxport": str(BIN / "onnxport"),
                          "python": sys.executable}[words[0]]
            if command in BACKGROUND:
                servers.append(subprocess.Popen([executable, *words[1:]], cwd=tmp_path,
                                                stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL))
                _wait_until_it_answers(BACKGROUND[command], servers[-1])
                continue
            done = subprocess.run([executable, *words[1:]], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=1800)
            expected = EXIT_CODES.get(command, 0)
            assert done.returncode == expected, (f"`{command}` exited {done.returncode}, "
                                                 f"not {expected}:\n{done.stderr[-3000:]}")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
    assert (tmp_path / "out" / "fleet" / "index.html").is_file()
    assert (tmp_path / "out" / "submitted" / "planner" / "report.json").is_file()
    assert (tmp_path / "deployed" / "localization").is_dir()
    assert (tmp_path / "out" / "ckpt" / "report.html").is_file()


def _wait_until_it_answers(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {seconds:.0f} s")


def test_quoted_outputs_have_the_shape_the_script_makes():
    builder = _builder()
    made = {(q.doc, q.command): q for q in builder.QUOTES}
    quoted = {}
    for doc in ("README.md", "docs/diagnose.md"):
        for command, output in builder.quoted_blocks((ROOT / doc).read_text()):
            if command.startswith("onnxport "):
                quoted[(doc, command)] = output
    assert set(quoted) == set(made), "a quoted output no script makes, or one missing"
    for key, output in quoted.items():
        assert builder.shape_problems(made[key], output) == []
    tour = tour_commands()
    assert all(q.command in tour for q in builder.QUOTES if q.doc == "README.md")


@pytest.mark.slow
def test_quoted_outputs_match_a_fresh_run():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "build_quotes.py"),
                           "--check"], capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
