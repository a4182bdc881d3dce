"""The command line's conventions: global options wherever a user types them, -q/-v,
named metavars, one JSON shape per command with its format version, and the real-time
budget answered per target (failing the run only when asked)."""

from __future__ import annotations

import argparse
import json

import pytest

from onnxport.errors import ExitCode
from onnxport.host import default_host

from conftest import ROOT, run_process

TWO_HEADS = f"{ROOT / 'tests' / 'models.py'}:two_heads"
FAST = ("--latency-runs", "0", "--batch-sizes", "1")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("conventions") / "two_heads"
    done = run_process("convert", TWO_HEADS, "-o", out, *FAST)
    assert done.code == 0, done.err
    return out


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(found.choices)


@pytest.mark.parametrize("where", ["before", "after"])
def test_global_options_work_before_or_after_the_command(cli, artifact, where):
    args = ["--debug", "inspect", artifact] if where == "before" else \
        ["inspect", artifact, "--debug"]
    done = cli(*args)
    assert done.code == 0, done.err
    assert "two_heads.onnx" in done.out


def test_quiet_drops_warnings_and_verbose_shows_the_plugins_logging(cli, tmp_path):
    missed = ("--latency-budget", "0.00001")  # a warning every run has
    normal = cli("convert", TWO_HEADS, "-o", tmp_path / "n", *missed, *FAST)
    quiet = cli("convert", TWO_HEADS, "-o", tmp_path / "q", "-q", *missed, *FAST)
    assert normal.code == quiet.code == 0, quiet.err
    assert "warnings:" in normal.out + normal.err
    assert "warnings:" not in quiet.out + quiet.err
    assert "cpu     export    PASS" in quiet.out  # the results stay

    plain = run_process("convert", TWO_HEADS, "-o", tmp_path / "p", *FAST)
    loud = run_process("convert", TWO_HEADS, "-o", tmp_path / "v", "-v", *FAST)
    assert plain.code == loud.code == 0, loud.err
    logged = [l for l in loud.err.splitlines() if l not in plain.err.splitlines()]
    assert "onnxport: onnxport.flow: export started" in logged, loud.err
    assert any(l.startswith("onnxport: onnxport.flow: verify (cpu) ok in ") for l in logged)


def test_every_option_that_takes_a_value_names_its_metavar():
    from onnxport.cli import build_parser

    unnamed = []
    for name, command in _subcommands(build_parser(default_host())).items():
        for action in command._actions:
            takes_value = action.nargs != 0 and action.option_strings
            if takes_value and action.metavar is None and action.choices is None:
                unnamed.append(f"{name} {action.option_strings[0]}")
            if not action.option_strings and action.choices is None:
                assert action.metavar, (name, action.dest)  # SOURCE, DIR: not "source"
    assert not unnamed, f"options without a metavar (help shows DEST): {unnamed}"


@pytest.mark.parametrize("args, fmt, listed", [
    (("inspect", "{artifact}", "--json"), "onnxport-inspect/1", "models"),
    (("inspect", "{artifact}/cpu/two_heads.onnx", "--json"), "onnxport-inspect/1", "models"),
    (("verify", "{artifact}", "--json"), "onnxport-verify/1", "targets"),
    (("plugins", "--json"), "onnxport-plugins/1", "backends"),
    (("targets", "--json"), "onnxport-targets/1", "targets"),
    (("convert", TWO_HEADS, "-o", "{tmp}/j", "--json", *FAST), "onnxport-report/1",
     "targets"),
])
def test_json_has_one_shape_per_command_with_its_format(cli, artifact, tmp_path, args, fmt,
                                                        listed):
    done = cli(*(a.format(artifact=artifact, tmp=tmp_path) for a in args))
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert data["format"] == fmt
    assert listed in data


def test_a_latency_budget_is_answered_and_fails_the_run_only_when_required(cli, tmp_path):
    missed = cli("convert", TWO_HEADS, "-o", tmp_path / "missed", "--latency-budget",
                 "0.00001@2", *FAST)
    assert missed.code == 0, missed.err
    text = " ".join(missed.out.split())
    assert "latency budget 1e-05 ms p99 at batch 2: MISSED" in text
    report = json.loads((tmp_path / "missed" / "report.json").read_text())
    answer = report["targets"]["cpu"]["latency_budget"]
    assert answer["met"] is False and answer["batch"] == 2 and answer["machine"]
    assert answer["p99_ms"] >= answer["p50_ms"] > 0

    met = cli("convert", TWO_HEADS, "-o", tmp_path / "met", "--latency-budget", "1000",
              *FAST)
    assert met.code == 0 and "MISSED" not in met.out
    assert json.loads((tmp_path / "met" / "report.json").read_text())[
        "targets"]["cpu"]["latency_budget"]["met"] is True

    required = cli("convert", TWO_HEADS, "-o", tmp_path / "required", "--latency-budget",
                   "0.00001", "--require-budget", *FAST)
    assert required.code == ExitCode.VERIFICATION_FAILED, required.err
    assert not (tmp_path / "required").exists()


def test_bench_checks_the_budget_on_the_device(cli, artifact):
    fits = cli("bench", artifact, "--runs", "20", "--warmup", "1", "--budget", "1000")
    assert fits.code == 0, fits.err
    over = cli("bench", artifact, "--runs", "20", "--warmup", "1", "--budget", "0.00001")
    assert over.code == ExitCode.VERIFICATION_FAILED, over.err


@pytest.mark.parametrize("text", ["fast", "0", "-1@2", "5@0"])
def test_a_malformed_budget_is_bad_input(cli, tmp_path, text):
    done = cli("convert", TWO_HEADS, "-o", tmp_path / "out", f"--latency-budget={text}",
               *FAST)
    assert done.code == ExitCode.BAD_INPUT
    assert "--latency-budget" in done.err and "Traceback" not in done.err
    assert not (tmp_path / "out").exists()
