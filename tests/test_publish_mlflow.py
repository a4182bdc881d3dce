"""The mlflow publisher against a real MLflow tracking server (SQLite store, on 127.0.0.1,
started by tests/servers.py), and the seed's whole workflow as the one command that
docs/publishing.md shows: convert, verify, upload to S3, register in MLflow linked to the
training run with the alias staging; then pull back by both URIs and run."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import onnxport
from onnxport.errors import BadInput, ExitCode, VerificationFailed

from conftest import ROOT, assert_untouched
from servers import assert_runs_like_the_original, copy_artifact, free_ports, unique
from servers import (mlflow_env, mlflow_server, reference_artifact,  # noqa: F401
                     s3_env, s3_server)  # (fixtures)

VERSION = r"v\d{8}_\d{6}(?:_\d+)?"
# What makes a version's directory an MLflow model, beside the artifact's own files.
MLFLOW_MODEL = {"MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"}


def _documented_command() -> list[str]:
    """The one-command workflow of docs/publishing.md, as argv."""
    page = (ROOT / "docs" / "publishing.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", page, re.S)
                 if "--publish s3://" in b and "--publish mlflow://" in b)
    command = block[block.index("onnxport convert"):].replace("\\\n", " ")
    argv = shlex.split(command, comments=True)
    assert argv[:2] == ["onnxport", "convert"]
    return argv[2:]


def _training_run(client) -> str:
    experiment = client.create_experiment(unique("training"))
    run = client.create_run(experiment, run_name="train localization")
    client.log_metric(run.info.run_id, "val_loss", 0.042)
    with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints "View run at ..."
        client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_version_has_tags_artifacts_run_link_and_alias(reference_artifact, mlflow_env, cli):
    client = mlflow_env.client()
    run_id = _training_run(client)
    name = unique("localization")
    done = cli("publish", reference_artifact, "--to", f"mlflow://{name}", "--run-id",
               run_id, "--alias", "staging")
    assert done.code == ExitCode.OK, done.err
    assert done.out.strip() == f"published: mlflow://{name}/1"

    manifest = json.loads((reference_artifact / "cpu" / "manifest.json").read_text())
    version = client.get_model_version(name, "1")
    tags = version.tags
    assert {k: tags[k] for k in ("format", "framework", "target", "sha256",
                                 "verification")} == {
        "format": "onnx", "framework": "torch", "target": "cpu",
        "sha256": manifest["files"][0]["sha256"], "verification": "passed"}
    assert float(tags["max_abs"]) == pytest.approx(manifest["verification"]["max_abs"],
                                                   rel=1e-5)
    assert tags["onnxport_version"] == onnxport.__version__
    assert len(tags["artifact_sha256"]) == 64
    assert "max |error|" in version.description

    # linked to the training run, whose artifacts now hold the whole artifact
    assert version.run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"val_loss": 0.042}
    (home,) = client.list_artifacts(run_id, "onnxport/localization")
    assert re.fullmatch(rf"onnxport/localization/{VERSION}", home.path)
    assert version.source.endswith(home.path)
    listed = {a.path[len(home.path) + 1:] for a in client.list_artifacts(run_id, home.path)}
    assert listed == {"cpu", "report.json", "report.html", "report.md", *MLFLOW_MODEL}
    in_target = {a.path.rsplit("/", 1)[1]
                 for a in client.list_artifacts(run_id, f"{home.path}/cpu")}
    assert in_target == {"localization.onnx", "manifest.json", "MLmodel"}

    # the seed's stage "Staging", as an alias
    assert client.get_model_version_by_alias(name, "staging").version == "1"
    assert client.get_registered_model(name).aliases == {"staging": "1"}


def test_same_sha256_is_not_registered_twice_unless_forced(reference_artifact, mlflow_env,
                                                           tmp_path):
    client = mlflow_env.client()
    name = unique("again")
    first = onnxport.publish(reference_artifact, f"mlflow://{name}")
    assert first.created and first.uri == f"mlflow://{name}/1"
    # without --run-id the artifact goes into a finished run of the experiment onnxport
    run = client.get_run(first.details["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "onnxport"

    again = onnxport.publish(reference_artifact, f"mlflow://{name}", alias="staging")
    assert not again.created and again.uri == first.uri
    assert "already version 1" in again.details["reason"]
    assert again.details["alias"] == "staging"  # the alias moves to the existing version
    assert len(client.search_model_versions(f"name='{name}'")) == 1

    forced = onnxport.publish(reference_artifact, f"mlflow://{name}", force=True,
                              alias="staging")
    assert forced.created and forced.uri == f"mlflow://{name}/2"
    assert client.get_model_version_by_alias(name, "staging").version == "2"

    # pull by version, by alias and by name alone (the newest)
    for uri in (f"mlflow://{name}/1", f"mlflow://{name}@staging", f"mlflow://{name}"):
        pulled = onnxport.pull(uri, tmp_path / re.sub(r"\W", "_", uri))
        assert (pulled / "cpu" / "localization.onnx").read_bytes() == (
            reference_artifact / "cpu" / "localization.onnx").read_bytes()


def test_unreachable_server_is_a_clear_error(reference_artifact, cli, monkeypatch,
                                             tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://onnxport:pa55word@127.0.0.1:{port}")
    started = time.monotonic()
    failed = cli("publish", reference_artifact, "--to", "mlflow://localization",
                 "--publish-option", "retries=2")
    assert time.monotonic() - started < 20
    assert failed.code == ExitCode.BAD_INPUT
    assert failed.err.startswith(
        "onnxport: error: cannot reach the MLflow tracking server at "
        f"http://127.0.0.1:{port} after 2 attempts")
    assert "pa55word" not in failed.err + failed.out

    pulled = cli("pull", "mlflow://localization/1", "-o", tmp_path / "pulled")
    assert pulled.code == ExitCode.BAD_INPUT
    assert "cannot reach the MLflow tracking server" in pulled.err
    assert_untouched(tmp_path / "pulled")


def test_unknown_run_version_and_alias_are_clear_errors(reference_artifact, mlflow_env, cli,
                                                        tmp_path):
    name = unique("errors")
    refused = cli("publish", reference_artifact, "--to", f"mlflow://{name}", "--run-id",
                  "0123456789abcdef0123456789abcdef")
    assert refused.code == ExitCode.BAD_INPUT
    assert "run '0123456789abcdef0123456789abcdef' does not exist at " \
           f"{mlflow_env.uri}" in refused.err
    assert not mlflow_env.client().search_registered_models(f"name='{name}'")

    onnxport.publish(reference_artifact, f"mlflow://{name}")
    for uri, problem in ((f"mlflow://{name}/7", "has no version 7"),
                         (f"mlflow://{name}@production", "has no alias 'production'"),
                         (f"mlflow://nothing-{name}", f"there is no registered model "
                                                      f"'nothing-{name}' at {mlflow_env.uri}")):
        failed = cli("pull", uri, "-o", tmp_path / "pulled")
        assert failed.code == ExitCode.BAD_INPUT, uri
        assert problem in failed.err, failed.err
        assert_untouched(tmp_path / "pulled")
    bad_alias = cli("publish", reference_artifact, "--to", f"mlflow://{name}", "--alias",
                    "v3")
    assert bad_alias.code == ExitCode.BAD_INPUT and "not a valid MLflow alias" in \
        bad_alias.err


def test_tampered_artifact_is_refused_before_registering(reference_artifact, mlflow_env,
                                                         cli, tmp_path):
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    manifest = artifact / "cpu" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][0]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    name = unique("tampered")
    refused = cli("publish", artifact, "--to", f"mlflow://{name}")
    assert refused.code == ExitCode.BAD_INPUT
    assert "does not match its manifest" in refused.err
    assert not mlflow_env.client().search_registered_models(f"name='{name}'")


def test_pull_refuses_an_artifact_changed_on_the_server(reference_artifact, mlflow_env,
                                                        tmp_path):
    name = unique("changed")
    onnxport.publish(reference_artifact, f"mlflow://{name}")
    # damage the stored model where the server keeps it (its --artifacts-destination)
    run_id = mlflow_env.client().get_model_version(name, "1").run_id
    (stored,) = [p for p in (mlflow_env.root / "artifacts").rglob("localization.onnx")
                 if run_id in p.parts]
    stored.write_bytes(stored.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(VerificationFailed, match="does not match its manifest"):
        onnxport.pull(f"mlflow://{name}/1", tmp_path / "pulled")
    assert_untouched(tmp_path / "pulled")


def test_mlflow_uris_are_parsed_by_hand():
    import onnxport_mlflow
    from onnxport.records import PublishRequest

    parse = onnxport_mlflow.parse_uri
    assert parse("mlflow://Heimdall-Loc@Staging") == ("Heimdall-Loc", None, "Staging")
    assert parse("mlflow://team/loc/3") == ("team/loc", "3", None)
    assert parse("mlflow://my%20model") == ("my model", None, None)
    with pytest.raises(BadInput):
        parse("mlflow://")
    with pytest.raises(BadInput, match="publish to mlflow://x, not mlflow://x/3"):
        onnxport_mlflow.publish(PublishRequest(artifact=ROOT, uri="mlflow://x/3", name="x",
                                               manifests=[]))


def test_the_plugins_own_options_are_on_the_command_line_and_reach_the_publisher(
        reference_artifact, cli, capsys, monkeypatch):
    import onnxport_mlflow.publishing
    from onnxport.records import PublishResult
    from onnxport_mlflow.settings import settings_from

    from onnxport.cli import main

    for command in ("publish", "convert"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr()
        assert "--run-id RUN_ID" in shown.out and "--alias ALIAS" in shown.out
    received = []
    monkeypatch.setattr(onnxport_mlflow.publishing, "publish", lambda request: (
        received.append(request) or PublishResult(uri="mlflow://m/1")))
    done = cli("publish", reference_artifact, "--to", "mlflow://m", "--run-id", "abc123",
               "--alias", "staging", "--create-bucket", "--force",
               "--publish-option", "mlflow.retries=2")
    assert done.code == ExitCode.OK, done.err
    (request,) = received
    assert request.options == {"force": True, "run_id": "abc123", "alias": "staging",
                               "create_bucket": True, "mlflow.retries": "2"}
    settings = settings_from(request.options, "here")  # s3's create_bucket: not its own
    assert (settings.run_id, settings.alias, settings.retries, settings.force) == (
        "abc123", "staging", 2, True)


def test_unknown_mlflow_option_is_refused_naming_the_known_ones(reference_artifact,
                                                                mlflow_env, cli):
    name = unique("options")
    refused = cli("publish", reference_artifact, "--to", f"mlflow://{name}",
                  "--publish-option", "mlflow.foo=1")
    assert refused.code == ExitCode.BAD_INPUT
    assert refused.err.startswith(f"onnxport: error: publishing to mlflow://{name}: "
                                  "unknown option mlflow.foo: known options: ")
    assert {"alias", "run_id", "tracking_uri", "force"} <= set(
        refused.err.split("known options: ", 1)[1].strip().split(", "))
    bad = cli("publish", reference_artifact, "--to", f"mlflow://{name}",
              "--publish-option", "retries=0")
    assert bad.code == ExitCode.BAD_INPUT and "mlflow.retries must be at least 1" in bad.err
    assert not mlflow_env.client().search_registered_models(f"name='{name}'")


@pytest.mark.parametrize("artifact_name", ["../escape", "a/b", "/abs", ".."])
def test_an_unsafe_artifact_name_never_becomes_a_run_path(reference_artifact, mlflow_env,
                                                          artifact_name):
    import onnxport_mlflow
    from onnxport.records import PublishRequest

    name = unique("names")
    manifests = [json.loads((reference_artifact / "cpu" / "manifest.json").read_text())]
    with pytest.raises(BadInput, match="is not a safe name"):
        onnxport_mlflow.publish(PublishRequest(artifact=reference_artifact,
                                               uri=f"mlflow://{name}", name=artifact_name,
                                               manifests=manifests))
    assert not mlflow_env.client().search_registered_models(f"name='{name}'")


def test_links_in_the_artifact_are_never_followed(reference_artifact, mlflow_env, cli,
                                                  tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the registry")
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    (artifact / "cpu" / "notes.txt").symlink_to(secret)  # not listed: left out
    (artifact / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    name = unique("links")
    done = cli("publish", artifact, "--to", f"mlflow://{name}")
    assert done.code == ExitCode.OK, done.err
    client = mlflow_env.client()
    version = client.get_model_version(name, "1")
    stored = [p for p in (mlflow_env.root / "artifacts").rglob("*")
              if version.run_id in p.parts and p.is_file()]
    assert {p.name for p in stored} == {"report.json", "report.html", "report.md",
                                        "localization.onnx", "manifest.json", *MLFLOW_MODEL}
    assert not any(b"not for the registry" in p.read_bytes() for p in stored)

    (artifact / "report.md").unlink()
    (artifact / "report.md").symlink_to(secret)
    refused = cli("publish", artifact, "--to", f"mlflow://{name}", "--force")
    assert refused.code == ExitCode.BAD_INPUT and "symbolic link" in refused.err
    assert len(client.search_model_versions(f"name='{name}'")) == 1


def test_the_documented_command_converts_publishes_registers_and_pulls_back(
        s3_env, mlflow_env, cli, tmp_path, monkeypatch):
    argv = _documented_command()
    run_id = _training_run(mlflow_env.client())
    argv[argv.index("$TRAINING_RUN_ID")] = run_id
    argv[argv.index("-o") + 1] = str(tmp_path / "exports" / "localization")
    bucket = argv[argv.index("--publish") + 1].split("/")[2]
    s3_env.client().create_bucket(Bucket=bucket)
    monkeypatch.chdir(ROOT)  # the factory path is relative to the repository

    done = cli("convert", *argv, "--latency-runs", "0")
    assert done.code == ExitCode.OK, done.err
    s3_uri, mlflow_uri = re.findall(r"(?m)^published: (\S+)$", done.out)
    assert re.fullmatch(rf"s3://{bucket}/models/localization/{VERSION}", s3_uri)
    name = argv[argv.index("--publish", argv.index("--publish") + 1) + 1][len("mlflow://"):]
    assert mlflow_uri == f"mlflow://{name}/1"

    client = mlflow_env.client()
    version = client.get_model_version_by_alias(name, "staging")
    assert version.version == "1" and version.run_id == run_id
    assert version.tags["format"] == "onnx" and version.tags["framework"] == "torch"

    exported = tmp_path / "exports" / "localization"
    assert_loads_in_mlflow(name, exported)
    for uri in (s3_uri, f"mlflow://{name}@staging"):
        pulled = tmp_path / re.sub(r"\W", "_", uri)
        back = cli("pull", uri, "-o", pulled)
        assert back.code == ExitCode.OK, back.err
        assert_runs_like_the_original(pulled, exported)


# --------------------------------------------------------------------------- an MLflow model


def _feeds(batch: int = 3) -> dict:
    from conftest import zoo_module

    _, inputs, _ = zoo_module("localization").build(batch=batch)
    return {name: tensor.numpy() for name, tensor in inputs.items()}


def assert_loads_in_mlflow(name: str, artifact, target: str = "cpu") -> None:
    """What the registry holds is an MLflow model: mlflow.onnx loads the shipped model
    byte for byte, and mlflow.pyfunc runs it with the artifact's outputs, by version and
    by alias."""
    import mlflow.onnx
    import mlflow.pyfunc
    import numpy as np
    import onnx

    from onnxport.runtime import InferenceModel

    shipped = onnx.load(str(artifact / target / "localization.onnx"))
    loaded = mlflow.onnx.load_model(f"models:/{name}/1")
    assert loaded.SerializeToString() == shipped.SerializeToString()
    model = mlflow.pyfunc.load_model(f"models:/{name}@staging")
    assert model.metadata.flavors["onnx"]["data"] == f"{target}/localization.onnx"
    signature = model.metadata.get_input_schema()
    assert signature.input_names() == [i.name for i in shipped.graph.input]
    feeds = _feeds()
    got = model.predict(feeds)
    want = InferenceModel(artifact / target).predict(feeds)
    assert set(got) == set(want)
    for output in want:
        np.testing.assert_array_equal(got[output], want[output])


def test_a_version_is_an_mlflow_model_with_the_artifact_beside_it(reference_artifact,
                                                                   mlflow_env, cli,
                                                                   tmp_path):
    name = unique("model")
    done = cli("publish", reference_artifact, "--to", f"mlflow://{name}", "--alias",
               "staging")
    assert done.code == ExitCode.OK, done.err
    assert_loads_in_mlflow(name, reference_artifact)
    # onnxport's manifest and report are files of the same version
    import mlflow.artifacts

    version = mlflow_env.client().get_model_version(name, "1")
    local = mlflow.artifacts.download_artifacts(artifact_uri=version.source,
                                                dst_path=str(tmp_path / "version"))
    for relative in ("cpu/manifest.json", "report.json", "report.html", "report.md",
                     "MLmodel", "cpu/MLmodel"):
        assert (tmp_path / "version" / relative).is_file() or \
            (Path(local) / relative).is_file(), relative
    # the pull gives back the artifact alone, without the MLflow model's files
    pulled = onnxport.pull(f"mlflow://{name}@staging", tmp_path / "pulled")
    assert not any((pulled / f).exists() for f in MLFLOW_MODEL)
    assert not (pulled / "cpu" / "MLmodel").exists()
    assert sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*")) == sorted(
        p.relative_to(reference_artifact).as_posix() for p in reference_artifact.rglob("*"))


@pytest.fixture(scope="module")
def two_target_artifact(tmp_path_factory):
    from conftest import factory

    out = tmp_path_factory.mktemp("two-targets") / "localization"
    onnxport.convert(factory("localization"), output=out, targets=["cuda", "cpu"],
                     latency_runs=0)
    return out


def test_several_targets_register_the_first_and_keep_every_target(two_target_artifact,
                                                                  mlflow_env):
    import mlflow.onnx
    import onnx

    name = unique("targets")
    result = onnxport.publish(two_target_artifact, f"mlflow://{name}", alias="staging")
    assert result.details["model_uri"] == f"models:/{name}/1"
    assert_loads_in_mlflow(name, two_target_artifact, target="cuda")  # the first target
    version = mlflow_env.client().get_model_version(name, "1")
    assert set(version.tags["target"].split(",")) == {"cuda", "cpu"}
    # every target's directory is an MLflow model of its own
    for target in ("cuda", "cpu"):
        loaded = mlflow.onnx.load_model(f"{version.source}/{target}")
        shipped = onnx.load(str(two_target_artifact / target / "localization.onnx"))
        assert loaded.SerializeToString() == shipped.SerializeToString()
    meta = mlflow.pyfunc.load_model(f"{version.source}/cuda").metadata
    assert meta.flavors["onnx"]["providers"] == ["CUDAExecutionProvider",
                                                 "CPUExecutionProvider"]


def test_the_mlflow_extra_is_the_client_only():
    """`onnxport[mlflow]` installs mlflow-skinny (the client); the dev extra keeps the
    full mlflow for the test server. The publisher imports nothing that needs pandas."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["mlflow"]] == ["mlflow-skinny"]
    assert any(r.startswith("mlflow>") for r in extras["dev"])
    code = ("import sys\n"
            "sys.modules['pandas'] = None\n"
            "sys.modules['mlflow.pyfunc'] = None\n"
            "sys.modules['mlflow.onnx'] = None\n"
            "import onnxport_mlflow.model, onnxport_mlflow.publishing\n"
            "from onnxport_mlflow.model import _mlmodel, _environment\n"
            "m = {'model': 'm.onnx', 'files': [], 'target': {'name': 'cpu'},\n"
            "     'onnx': {'inputs': [{'name': 'x', 'shape': ['batch', 3],\n"
            "                         'dtype': 'float32'}],\n"
            "              'outputs': [{'name': 'y', 'shape': ['batch'],\n"
            "                          'dtype': 'float32'}]}, 'versions': {}}\n"
            "print(_mlmodel(m, 'cpu/m.onnx', 'r', 'p', 'n', env=True))\n"
            "print(_environment(m)['requirements.txt'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "loader_module: mlflow.onnx" in done.stdout and "onnx_version" in done.stdout
    assert '"tensor-spec": {"dtype": "float32", "shape": [-1, 3]}' in done.stdout
