"""Fleets: many models in one command, on worker processes here or on a real Ray head
started on 127.0.0.1. A model that fails export, one that aborts its process, one that
hangs past its timeout and one whose source is missing fail alone; the others pass;
an unchanged fleet is skipped; one changed weights file reconverts exactly its model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from onnxport.errors import ExitCode

from conftest import ROOT, run_process
from servers import RayHead, ray_head  # noqa: F401  (a fixture)

HOSTILE = ROOT / "tests" / "hostile_models.py"
BROKEN = ROOT / "tests" / "broken_models.py"
ZOO = ROOT / "examples" / "zoo"


def _fleet(directory: Path, *, hang: bool = True) -> Path:
    """A fleet of two good models (one with a weights file), and the four failures."""
    import torch

    from conftest import zoo_module

    model = zoo_module("autopilot_torch").build()[0]
    torch.save(model.state_dict(), directory / "autopilot.pt")
    text = f'''
[defaults]
latency_runs = 0
batch_sizes = [1]

[[models]]
name = "tiny"
source = "{HOSTILE}:tiny"

[[models]]
name = "autopilot"
source = "{ZOO / 'autopilot_torch.py'}:build"
weights = "autopilot.pt"
targets = ["cpu", "rpi4"]

[[models]]
name = "no-export"
source = "{BROKEN}:erfc"
exporter = "torchscript"

[[models]]
name = "aborts"
source = "{HOSTILE}:aborts_in_forward"

[[models]]
name = "missing"
source = "gone.py:build"
'''
    if hang:
        text += f'''
[[models]]
name = "hangs"
source = "{HOSTILE}:hangs_in_factory"
timeout = 8
'''
    path = directory / "fleet.toml"
    path.write_text(text)
    return path


def _rows(out: Path) -> dict[str, dict]:
    data = json.loads((out / "fleet.json").read_text())
    return {m["name"]: m for m in data["models"]}


def _check_first_run(result, out: Path, hang: bool = True) -> None:
    assert result.code != 0, result.err
    rows = _rows(out)
    assert {n: r["state"] for n, r in rows.items()} == {
        "tiny": "passed", "autopilot": "passed", "no-export": "failed", "aborts": "failed",
        "missing": "failed", **({"hangs": "failed"} if hang else {})}
    causes = {n: r["outcome"] for n, r in rows.items()}
    assert causes["no-export"]["exit_code"] == ExitCode.EXPORT_FAILED
    assert causes["aborts"]["exit_code"] == ExitCode.CRASHED
    assert "SIGABRT" in causes["aborts"]["message"]
    assert causes["missing"]["exit_code"] == ExitCode.BAD_INPUT
    assert "gone.py does not exist" in causes["missing"]["message"]
    if hang:
        assert causes["hangs"]["exit_code"] == ExitCode.TIMEOUT
        assert "within 8 s (it was in stage load)" in causes["hangs"]["message"]
    assert (out / "tiny" / "cpu" / "manifest.json").is_file()
    assert sorted(p.name for p in (out / "autopilot").iterdir()) == [
        "cpu", "report.html", "report.json", "report.md", "rpi4"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no debris
    page = (out / "index.html").read_text()
    assert "href='autopilot/report.html'" in page and "SIGABRT" in page
    flat = json.loads((out / "fleet.json").read_text())["rows"]
    autopilot = [e for row in flat for e in row if e["model"] == "autopilot"]
    assert {e["target"] for e in autopilot} == {"cpu", "rpi4"}
    assert all(e["shipped"] and e["size_bytes"] and e["max_abs"] is not None
               for e in autopilot)


def test_a_local_fleet_isolates_failures_and_skips_what_is_unchanged(tmp_path):
    fleet, out = _fleet(tmp_path), tmp_path / "out"
    first = run_process("fleet", fleet, "-o", out, "--jobs", "2")
    _check_first_run(first, out)
    assert "[6/6]" in first.err and "passed" in first.out

    again = run_process("fleet", fleet, "-o", out, "--only", "tiny", "--only", "autopilot")
    assert again.code == 0, again.err
    assert "0 passed, 0 failed, 2 skipped (unchanged)" in again.out

    import torch

    weights = tmp_path / "autopilot.pt"
    state = torch.load(weights)
    state[next(iter(state))] += 0.01
    torch.save(state, weights)
    changed = run_process("fleet", fleet, "-o", out, "--only", "tiny", "--only",
                          "autopilot")
    assert changed.code == 0, changed.err
    rows = _rows(out)
    assert (rows["autopilot"]["state"], rows["tiny"]["state"]) == ("passed", "skipped")
    forced = run_process("fleet", fleet, "-o", out, "--only", "tiny", "--force")
    assert forced.code == 0 and _rows(out)["tiny"]["state"] == "passed"


def test_a_fleet_on_a_real_ray_cluster(tmp_path, ray_head):
    fleet, out = _fleet(tmp_path), tmp_path / "out"
    result = run_process("fleet", fleet, "-o", out, "--executor", "ray",
                         "--ray-address", ray_head.address, env=RayHead.ENV)
    _check_first_run(result, out)
    assert "with the ray executor" in result.out


@pytest.mark.parametrize("text, words", [
    ("[[models]\nname = 'x'", "is not valid TOML"),
    ("[[models]]\nname = 'x'\nsource = 'a.py:b'\nexportr = 'dynamo'",
     "model x: unknown key 'exportr': known keys:"),
    ("[[models]]\nname = 'x'\nsource = 'a.py:b'\n[[models]]\nname = 'x'\nsource = 'c.py:d'",
     "two models are named 'x' (#1 and #2)"),
    ("[[models]]\nname = '../x'\nsource = 'a.py:b'", "is not a safe name"),
    ("[defaults]\ntargets = ['cpu']", "no models"),
])
def test_a_bad_fleet_file_is_one_line_and_converts_nothing(tmp_path, text, words):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(text)
    result = run_process("fleet", fleet, "-o", tmp_path / "out")
    assert result.code == ExitCode.BAD_INPUT and words in result.err, result.err
    assert not (tmp_path / "out").exists()


def test_a_destination_that_cannot_be_written_or_a_silent_cluster(tmp_path):
    fleet = _fleet(tmp_path, hang=False)
    (tmp_path / "a-file").write_text("")
    blocked = run_process("fleet", fleet, "-o", tmp_path / "a-file" / "out")
    assert blocked.code == ExitCode.BAD_INPUT and "cannot be written" in blocked.err
    silent = run_process("fleet", fleet, "-o", tmp_path / "out", "--executor", "ray",
                         "--ray-address", "127.0.0.1:9", env=RayHead.ENV)
    assert silent.code == ExitCode.BAD_INPUT
    assert "the Ray cluster at 127.0.0.1:9 does not answer" in silent.err
    assert not (tmp_path / "out").exists()


def test_without_ray_the_executor_says_what_to_install(tmp_path):
    import subprocess

    fleet = _fleet(tmp_path, hang=False)
    code = ("import sys; sys.modules['ray'] = None\n"
            "from onnxport.cli import main\nsys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "fleet", str(fleet), "-o",
                           str(tmp_path / "out"), "--executor", "ray"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == ExitCode.MISSING_DEPENDENCY, done.stderr
    assert "pip install 'onnxport[ray]'" in done.stderr


def test_a_third_party_executor_is_a_plugin_like_the_builtins(tmp_path):
    """An executor written the way the built-ins are: registered through
    onnxport_register_executors, running each job with run_job, reporting through
    update."""
    from onnxport.fleet.file import read_fleet
    from onnxport.fleet.running import run_fleet
    from onnxport.flow.worker import run_job
    from onnxport.host import PluginHost, hookimpl
    from onnxport.records import Executor, JobUpdate

    seen = []

    class OneByOne:
        @hookimpl
        def onnxport_register_executors(self, register):
            def run(jobs, options, update):
                for job in jobs:
                    seen.append((job.key, job.timeout))
                    update(JobUpdate(job.key, "running"))
                    update(JobUpdate(job.key, "finished", run_job(job)))

            register(Executor(name="one-by-one", description="a job at a time", run=run))

    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[defaults]\nlatency_runs = 0\n\n[[models]]\nname = "tiny"\n'
                     f'source = "{HOSTILE}:tiny"\ntimeout = 300\n')
    host = PluginHost(selection="torch,providers,local")
    with host.registered(OneByOne(), "one-by-one"):
        result = run_fleet(read_fleet(fleet), str(tmp_path / "out"), host,
                           executor="one-by-one")
    assert result.passed and seen == [("tiny", 300)]
    assert (tmp_path / "out" / "tiny" / "cpu" / "manifest.json").is_file()
