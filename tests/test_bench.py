"""`onnxport bench`: latency percentiles, throughput, load time and peak memory, each row
measured in a fresh process. Timings on a shared machine are never asserted: only that
every figure is there, is consistent, and says what it was measured with."""

from __future__ import annotations

import json

import pytest

from onnxport.bench import available_cpus
from onnxport.errors import ExitCode

from conftest import ROOT

MODELS = ROOT / "tests" / "models.py"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from onnxport.cli import main

    out = tmp_path_factory.mktemp("bench") / "twoheads"
    assert main(["convert", f"{MODELS}:two_heads", "-o", str(out), "--latency-runs",
                 "0"]) == 0
    return out


def check_row(row: dict, batch: int, threads: int, runs: int) -> None:
    latency = row["latency_ms"]
    assert row["error"] == "" and row["batch"] == batch and row["threads"] == threads
    assert row["runs"] == runs
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] \
        <= latency["max"]
    assert row["throughput"] > 0 and row["load_ms"] > 0 and row["cold_ms"] > 0
    assert row["peak_rss_bytes"] >= row["start_rss_bytes"] > 0
    assert row["model_rss_bytes"] == row["peak_rss_bytes"] - row["start_rss_bytes"]


def test_bench_an_artifact_and_its_source(cli, artifact):
    refused = cli("bench", artifact, "--with-source")  # runs what the manifest names
    assert refused.code == ExitCode.BAD_INPUT and "--trust-code" in refused.err
    done = cli("bench", artifact, "--with-source", "--trust-code", "--runs", "5",
               "--warmup", "1", "--json")
    assert done.code == 0, done.err
    data = json.loads(done.out)
    assert data["settings"] == {"batch": 1, "threads": available_cpus(),
                                "threads_set": False, "warmup": 1, "runs": 5, "seed": 0}
    onnx_row, source = data["results"]
    check_row(onnx_row, 1, available_cpus(), 5)
    check_row(source, 1, available_cpus(), 5)
    assert (onnx_row["label"], onnx_row["runner"]) == ("cpu", "onnxruntime")
    assert onnx_row["ran_on"] == ["CPUExecutionProvider"]
    assert onnx_row["size_bytes"] == (artifact / "cpu" / "two_heads.onnx").stat().st_size
    assert (source["label"], source["runner"]) == ("source", "torch")
    assert source["ran_on"][0].startswith("torch ")
    # each row is its own process: the ONNX Runtime one never imported torch
    assert source["peak_rss_bytes"] > onnx_row["peak_rss_bytes"]
    assert data["machine"]["cpu_count"] and data["versions"]["onnxruntime"]


def test_the_table_states_threads_batch_and_runs(cli, artifact):
    done = cli("bench", artifact, "--runs", "3", "--warmup", "0", "--threads", "1",
               "--batch", "4")
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0] == "bench: batch 4, 1 intra-op thread(s) (set with --threads),"
    assert "0 warm-up + 3 timed runs" in lines[1]
    header = next(line for line in lines if line.startswith("model"))
    for column in ("ran on", "cold", "load", "p50", "p90", "p99", "items/s", "peak RSS"):
        assert column in header
    row = lines[lines.index(header) + 1]
    assert row.startswith("cpu ") and " CPU " in row and " MB " in row
    assert all(len(line) <= 100 for line in lines)


def test_a_bare_onnx_per_provider_with_a_source(cli, artifact):
    model = artifact / "cpu" / "two_heads.onnx"
    done = cli("bench", model, "--providers", "CPUExecutionProvider", "--runs", "3",
               "--warmup", "1", "--batch", "2", "--threads", "1", "--source",
               f"{MODELS}:two_heads", "--json")
    assert done.code == 0, done.err
    rows = json.loads(done.out)["results"]
    assert [r["label"] for r in rows] == ["CPU", "source"]
    for row in rows:
        check_row(row, 2, 1, 3)


def test_what_cannot_be_benched_is_refused(cli, artifact, tmp_path):
    model = artifact / "cpu" / "two_heads.onnx"
    cases = [
        (("bench", artifact, "--target", "gpu"), "has no target gpu"),
        (("bench", model, "--providers", "NoSuchExecutionProvider"),
         "unknown execution provider NoSuchExecutionProvider"),
        (("bench", artifact, "--runs", "0"), "--runs 0: must be at least 1"),
        (("bench", model, "--with-source"), "--with-source needs an artifact directory"),
        (("bench", tmp_path / "missing"), "does not exist"),
    ]
    for args, expected in cases:
        done = cli(*args)
        assert done.code == ExitCode.BAD_INPUT, args
        assert expected in done.err, (args, done.err)
    static = tmp_path / "static"
    assert cli("convert", f"{MODELS}:two_heads", "-o", static, "--static-batch",
               "--latency-runs", "0").code == 0
    fixed = cli("bench", static, "--batch", "3")
    assert fixed.code == ExitCode.BAD_INPUT and "fixed at 2" in fixed.err
