"""The s3 publisher against a real S3-compatible server (SeaweedFS on 127.0.0.1, started
by tests/servers.py): versioned upload with metadata, multipart, verification of the
stored bytes, the completion marker, pull, and every fault the issue lists, caused for
real: a missing bucket, wrong credentials, a server that is not there, a server killed
in the middle of a multipart upload, a tampered artifact, a damaged object."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time

import pytest

import onnxport
from onnxport.errors import BadInput, ExitCode, VerificationFailed

from conftest import assert_untouched
from servers import (S3Server, assert_runs_like_the_original, copy_artifact, free_ports,
                     padded_artifact, unique)
from servers import reference_artifact, s3_env, s3_server  # noqa: F401 (fixtures)

VERSION = r"v\d{8}_\d{6}(?:_\d+)?"
MiB = 1024 * 1024


def _objects(client, bucket: str, prefix: str = "") -> dict[str, dict]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix):
        for entry in page.get("Contents", []):
            found[entry["Key"]] = entry
    return found


def _buckets(client) -> set[str]:
    return {b["Name"] for b in client.list_buckets()["Buckets"]}


def _published_uri(out: str) -> str:
    match = re.search(r"published: (\S+)", out)
    assert match, out
    return match.group(1)


def test_publish_versioned_with_metadata_then_pull_and_run(reference_artifact, s3_env, cli,
                                                           tmp_path):
    bucket = unique("models")
    done = cli("publish", reference_artifact, "--to", f"s3://{bucket}/models",
               "--create-bucket")
    assert done.code == ExitCode.OK, done.err
    uri = _published_uri(done.out)
    # the seed's models/<name>/v<YYYYMMDD_HHMMSS>.onnx, with every file kept together
    version = re.fullmatch(rf"s3://{bucket}/models/localization/({VERSION})", uri).group(1)

    client = s3_env.client()
    keys = set(_objects(client, bucket))
    home = f"models/localization/{version}"
    files = sorted(p.relative_to(reference_artifact).as_posix()
                   for p in reference_artifact.rglob("*") if p.is_file())
    assert keys == {f"{home}/{f}" for f in files} | {f"{home}/_COMPLETE"}

    manifest = json.loads((reference_artifact / "cpu" / "manifest.json").read_text())
    (entry,) = manifest["files"]
    head = client.head_object(Bucket=bucket, Key=f"{home}/cpu/localization.onnx",
                              ChecksumMode="ENABLED")
    assert head["Metadata"] == {
        "sha256": entry["sha256"], "size": str(entry["bytes"]), "target": "cpu",
        "source-framework": "torch",
        "framework-version": manifest["source"]["framework_version"],
        "onnxport-version": onnxport.__version__, "artifact": "localization",
        "artifact-version": version, "artifact-sha256": head["Metadata"]["artifact-sha256"]}
    # the server kept the SHA-256 it validated on receipt: the manifest's digest
    assert head["ChecksumSHA256"] == base64.b64encode(
        bytes.fromhex(entry["sha256"])).decode()
    assert head["ContentLength"] == entry["bytes"]
    report = client.head_object(Bucket=bucket, Key=f"{home}/report.json")["Metadata"]
    assert "target" not in report and report["sha256"] == hashlib.sha256(
        (reference_artifact / "report.json").read_bytes()).hexdigest()

    marker = json.loads(client.get_object(Bucket=bucket, Key=f"{home}/_COMPLETE")["Body"]
                        .read())
    assert marker["format"] == "onnxport-s3-version/1" and marker["version"] == version
    assert sorted(f["path"] for f in marker["files"]) == files
    # written last: no object of the version is newer than the marker
    listed = _objects(client, bucket, home)
    assert max(v["LastModified"] for v in listed.values()) == listed[
        f"{home}/_COMPLETE"]["LastModified"]

    pulled = tmp_path / "pulled"
    back = cli("pull", uri, "-o", pulled)
    assert back.code == ExitCode.OK, back.err
    assert sorted(p.relative_to(pulled).as_posix() for p in pulled.rglob("*")
                  if p.is_file()) == files
    assert_runs_like_the_original(pulled, reference_artifact)

    # the name alone pulls the newest complete version
    latest = onnxport.pull(f"s3://{bucket}/models/localization", tmp_path / "latest")
    assert (latest / "cpu" / "localization.onnx").read_bytes() == (
        reference_artifact / "cpu" / "localization.onnx").read_bytes()


def test_same_artifact_is_not_uploaded_twice_unless_forced(reference_artifact, s3_env):
    bucket = unique("again")
    first = onnxport.publish(reference_artifact, f"s3://{bucket}", create_bucket=True)
    again = onnxport.publish(reference_artifact, f"s3://{bucket}")
    assert first.created and not again.created and again.uri == first.uri
    assert "already published" in again.details["reason"]
    forced = onnxport.publish(reference_artifact, f"s3://{bucket}", force=True)
    assert forced.created and forced.uri != first.uri
    assert re.fullmatch(rf"s3://{bucket}/localization/{VERSION}", forced.uri)
    markers = [k for k in _objects(s3_env.client(), bucket) if k.endswith("/_COMPLETE")]
    assert len(markers) == 2


def test_multipart_upload_is_verified_against_the_manifest(reference_artifact, s3_env,
                                                           tmp_path):
    artifact = padded_artifact(reference_artifact, tmp_path / "big", mib=12)
    bucket = unique("parts")
    result = onnxport.publish(artifact, f"s3://{bucket}/models", create_bucket=True,
                              multipart_threshold="5MiB", multipart_chunksize="5MiB")
    assert result.details["multipart"] == ["cpu/padding.bin"]
    assert result.details["verified"]["cpu/padding.bin"] == "sha256 of parts (server)"
    assert result.details["verified"]["cpu/localization.onnx"] == "sha256 (server)"
    key = result.uri.split(f"s3://{bucket}/", 1)[1] + "/cpu/padding.bin"
    head = s3_env.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"') and head["ChecksumSHA256"].endswith("-3")

    # the other way to check: read every object back and hash it
    downloaded = onnxport.publish(artifact, f"s3://{bucket}/models", force=True,
                                  verify="download", multipart_threshold="5MiB")
    assert set(downloaded.details["verified"].values()) == {"download"}

    pulled = onnxport.pull(result.uri, tmp_path / "pulled")
    assert (pulled / "cpu" / "padding.bin").read_bytes() == (
        artifact / "cpu" / "padding.bin").read_bytes()


def test_missing_bucket_is_an_error_unless_create_bucket(reference_artifact, s3_env, cli):
    bucket = unique("absent")
    refused = cli("publish", reference_artifact, "--to", f"s3://{bucket}/models")
    assert refused.code == ExitCode.BAD_INPUT
    assert refused.err.strip() == (
        f"onnxport: error: bucket '{bucket}' does not exist at S3 endpoint "
        f"{s3_env.endpoint}: create it, or pass --create-bucket")
    # SeaweedFS would create a bucket on the first PUT: nothing was sent
    assert bucket not in _buckets(s3_env.client())
    done = cli("publish", reference_artifact, "--to", f"s3://{bucket}/models",
               "--create-bucket")
    assert done.code == ExitCode.OK, done.err
    assert bucket in _buckets(s3_env.client())


def test_wrong_credentials_name_the_endpoint_never_the_secret(reference_artifact, s3_env,
                                                              cli, monkeypatch, caplog):
    bucket = unique("creds")
    s3_env.client().create_bucket(Bucket=bucket)
    wrong = "wrong-secret-" + unique("x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    refused = cli("publish", reference_artifact, "--to", f"s3://{bucket}/models")
    assert refused.code == ExitCode.BAD_INPUT
    assert s3_env.endpoint in refused.err
    assert "refused the credentials (from env)" in refused.err
    assert "AWS_SECRET_ACCESS_KEY" in refused.err  # where to look, not what it is
    everything = refused.out + refused.err + caplog.text
    assert wrong not in everything and s3_env.secret_key not in everything
    assert not _objects(s3_env.client(), bucket)


def test_the_secret_is_never_written_or_logged(reference_artifact, s3_env, cli, tmp_path,
                                               caplog):
    caplog.set_level(logging.DEBUG)  # botocore's debug log included
    bucket = unique("secret")
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    done = cli("--debug", "publish", artifact, "--to", f"s3://{bucket}/models",
               "--create-bucket")
    assert done.code == ExitCode.OK, done.err
    back = cli("--debug", "pull", _published_uri(done.out), "-o", tmp_path / "pulled")
    assert back.code == ExitCode.OK, back.err
    secret = s3_env.secret_key
    assert caplog.text and secret not in caplog.text
    assert secret not in done.out + done.err + back.out + back.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    client = s3_env.client()
    for key in _objects(client, bucket):
        stored = client.get_object(Bucket=bucket, Key=key)
        assert secret.encode() not in stored["Body"].read(), key
        assert secret not in json.dumps(stored["Metadata"]), key


def test_endpoint_and_credentials_from_a_profile(reference_artifact, s3_env, monkeypatch,
                                                 tmp_path):
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text(f"[profile store]\nendpoint_url = {s3_env.endpoint}\n"
                      "region = us-east-1\n")
    credentials.write_text(f"[store]\naws_access_key_id = {s3_env.access_key}\n"
                           f"aws_secret_access_key = {s3_env.secret_key}\n")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "store")
    bucket = unique("profile")
    result = onnxport.publish(reference_artifact, f"s3://{bucket}", create_bucket=True)
    assert result.created and result.details["endpoint"] == s3_env.endpoint
    onnxport.pull(result.uri, tmp_path / "pulled")

    monkeypatch.delenv("AWS_PROFILE")  # no credentials anywhere now
    with pytest.raises(BadInput, match="no S3 credentials found in the standard places"):
        onnxport.publish(reference_artifact, f"s3://{bucket}")


def test_unreachable_server_is_retried_then_a_clear_error(reference_artifact, s3_env, cli,
                                                          caplog):
    (port,) = free_ports(1)  # nothing listens there
    caplog.set_level(logging.DEBUG, logger="botocore.retries")
    started = time.monotonic()
    failed = cli("publish", reference_artifact, "--to", "s3://models",
                 "--publish-option", f"endpoint_url=http://127.0.0.1:{port}",
                 "--publish-option", "retries=3")
    assert failed.code == ExitCode.BAD_INPUT
    assert time.monotonic() - started < 30
    assert failed.err.startswith(
        f"onnxport: error: cannot reach S3 endpoint http://127.0.0.1:{port} while "
        "checking bucket 'models', after 3 attempts (EndpointConnectionError): check that "
        "the server is running")
    assert caplog.text.count("Retry needed") == 2


def test_tampered_artifact_is_refused_before_any_upload(reference_artifact, s3_env, cli,
                                                        tmp_path):
    bucket = unique("tamper")
    s3_env.client().create_bucket(Bucket=bucket)
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    model = artifact / "cpu" / "localization.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    refused = cli("publish", artifact, "--to", f"s3://{bucket}")
    assert refused.code == ExitCode.BAD_INPUT
    assert "does not match its manifest" in refused.err
    assert "refusing to publish it" in refused.err
    assert not _objects(s3_env.client(), bucket)


def test_pull_refuses_incomplete_versions_and_damaged_objects(reference_artifact, s3_env,
                                                              tmp_path):
    bucket = unique("pull")
    good = onnxport.publish(reference_artifact, f"s3://{bucket}/m", create_bucket=True)
    client = s3_env.client()
    home = good.uri.split(f"s3://{bucket}/", 1)[1]

    # a version an interrupted upload left behind: every file, no marker
    stale = "m/localization/v20000101_000000"
    for path in reference_artifact.rglob("*"):
        if path.is_file():
            relative = path.relative_to(reference_artifact).as_posix()
            client.put_object(Bucket=bucket, Key=f"{stale}/{relative}",
                              Body=path.read_bytes())
    with pytest.raises(BadInput, match="is not a complete published version"):
        onnxport.pull(f"s3://{bucket}/{stale}", tmp_path / "stale")
    assert_untouched(tmp_path / "stale")
    with pytest.raises(BadInput, match="has no complete published version"):
        onnxport.pull(f"s3://{bucket}/m/nothing-here", tmp_path / "none")

    # a stored object changed after publishing
    key = f"{home}/cpu/localization.onnx"
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(VerificationFailed, match="does not match the sha256"):
        onnxport.pull(good.uri, tmp_path / "damaged")
    assert_untouched(tmp_path / "damaged")


def test_unknown_s3_option_is_refused_naming_the_known_ones(reference_artifact, s3_env,
                                                            cli):
    bucket = unique("options")
    for key in ("s3.multipart_treshold", "s3.foo"):
        refused = cli("publish", reference_artifact, "--to", f"s3://{bucket}",
                      "--create-bucket", "--publish-option", f"{key}=5MiB")
        assert refused.code == ExitCode.BAD_INPUT, refused.err
        assert refused.err.startswith(f"onnxport: error: publishing to s3://{bucket}: "
                                      f"unknown option {key}: known options: ")
        known = refused.err.split("known options: ", 1)[1].strip().split(", ")
        assert {"endpoint_url", "multipart_threshold", "create_bucket", "force",
                "verify"} <= set(known)
    # a plain key no schema of s3 knows belongs to another publisher: ignored
    done = cli("publish", reference_artifact, "--to", f"s3://{bucket}", "--create-bucket",
               "--publish-option", "experiment=training")
    assert done.code == ExitCode.OK, done.err
    assert bucket in _buckets(s3_env.client())
    bad = cli("publish", reference_artifact, "--to", f"s3://{bucket}", "--force",
              "--publish-option", "multipart_chunksize=5 parsecs")
    assert bad.code == ExitCode.BAD_INPUT
    assert "s3.multipart_chunksize must be a size, not '5 parsecs'" in bad.err


def test_the_plugins_own_options_are_on_the_command_line_and_reach_the_publisher(
        reference_artifact, cli, capsys, monkeypatch):
    import onnxport_s3.uploading
    from onnxport.records import PublishResult
    from onnxport_s3.settings import settings_from

    from onnxport.cli import main

    for command in ("publish", "convert"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr()
        assert "--create-bucket" in shown.out and "S3: create the bucket" in shown.out
    received = []
    monkeypatch.setattr(onnxport_s3.uploading, "publish", lambda request: (
        received.append(request) or PublishResult(uri="s3://b/x/v1")))
    done = cli("publish", reference_artifact, "--to", "s3://b", "--create-bucket",
               "--alias", "staging", "--publish-option", "s3.retries=2")
    assert done.code == ExitCode.OK, done.err
    (request,) = received
    assert request.options == {"force": False, "create_bucket": True, "alias": "staging",
                               "s3.retries": "2"}
    settings = settings_from(request.options, "here")  # mlflow's alias is not its own
    assert settings.create_bucket and settings.retries == 2 and not settings.force
    cli("publish", reference_artifact, "--to", "s3://b")
    assert received[-1].options == {"force": False}  # a flag not given is not sent
    assert not settings_from(received[-1].options, "here").create_bucket


# --------------------------------------------------------------------------- the crash


def _kill_when_the_first_part_lands(server: S3Server, bucket: str, seen: dict,
                                    timeout: float = 60) -> None:
    """Watch the server from outside (a client of its own): once a multipart upload has
    a part stored, SIGKILL the server."""
    client = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                parts = client.list_parts(Bucket=bucket, Key=upload["Key"],
                                          UploadId=upload["UploadId"]).get("Parts", [])
                if parts:
                    seen.update(key=upload["Key"], parts=len(parts))
                    server.kill()
                    return
        except Exception as error:  # keep watching; report if it never happens
            seen["watch_error"] = repr(error)
        time.sleep(0.005)


def test_server_killed_in_the_middle_of_a_multipart_upload(reference_artifact, tmp_path,
                                                           monkeypatch, cli, caplog):
    server = S3Server(tmp_path / "server").start()
    try:
        for key, value in server.environment().items():
            monkeypatch.setenv(key, value)
        bucket = "crash"
        server.client().create_bucket(Bucket=bucket)
        artifact = padded_artifact(reference_artifact, tmp_path / "big", mib=24)  # 5 parts
        seen: dict = {}
        watcher = threading.Thread(target=_kill_when_the_first_part_lands,
                                   args=(server, bucket, seen), daemon=True)
        watcher.start()
        caplog.set_level(logging.DEBUG, logger="botocore.retries")
        started = time.monotonic()
        failed = cli("publish", artifact, "--to", f"s3://{bucket}/models",
                     "--publish-option", "multipart_threshold=5MiB",
                     "--publish-option", "multipart_chunksize=5MiB",
                     "--publish-option", "max_concurrency=1",
                     "--publish-option", "retries=2")
        elapsed = time.monotonic() - started
        watcher.join(timeout=5)
        assert seen.get("parts"), f"the server was not killed mid-upload: {seen}"
        assert seen["key"].endswith("/cpu/padding.bin") and seen["parts"] < 5

        # a clear error, after a retry, in bounded time
        assert failed.code == ExitCode.BAD_INPUT, failed.err
        message = failed.err.strip()
        assert re.match(rf"onnxport: error: publishing localization to "
                        rf"s3://{bucket}/models/localization/{VERSION} failed: cannot "
                        rf"reach S3 endpoint {re.escape(server.endpoint)} while "
                        rf"uploading cpu/padding.bin", message), message
        assert ("No completion marker was written, so this version is incomplete and "
                "onnxport pull refuses it") in message
        assert "Retry needed" in caplog.text
        assert elapsed < 60
        version_uri = re.search(rf"s3://{bucket}/models/localization/{VERSION}",
                                message).group(0)

        # the server comes back (same data): nothing there claims to be complete
        server.restart()
        client = server.client()
        keys = set(_objects(client, bucket))
        assert not [k for k in keys if k.endswith("/_COMPLETE")], keys
        assert not [k for k in keys if k.endswith("/padding.bin")], keys
        with pytest.raises(BadInput, match="is not a complete published version"):
            onnxport.pull(version_uri, tmp_path / "pulled")
        with pytest.raises(BadInput, match=r"has no complete published version \(1 "
                                           r"incomplete\)"):
            onnxport.pull(f"s3://{bucket}/models/localization", tmp_path / "pulled")
        assert_untouched(tmp_path / "pulled")

        # publishing again works, beside the incomplete version, and is what pull finds
        again = cli("publish", artifact, "--to", f"s3://{bucket}/models",
                    "--publish-option", "multipart_threshold=5MiB")
        assert again.code == ExitCode.OK, again.err
        assert _published_uri(again.out) != version_uri
        pulled = onnxport.pull(f"s3://{bucket}/models/localization", tmp_path / "pulled")
        assert (pulled / "cpu" / "padding.bin").stat().st_size == 24 * MiB
    finally:
        server.stop()


# --------------------------------------------------------------------------- untrusted input


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "..", "a\\b"])
def test_an_unsafe_artifact_name_never_becomes_a_key(reference_artifact, s3_env, name):
    import onnxport_s3
    from onnxport.records import PublishRequest

    bucket = unique("names")
    s3_env.client().create_bucket(Bucket=bucket)
    manifests = [json.loads((reference_artifact / "cpu" / "manifest.json").read_text())]
    with pytest.raises(BadInput, match="is not a safe name"):
        onnxport_s3.publish(PublishRequest(artifact=reference_artifact,
                                           uri=f"s3://{bucket}/models", name=name,
                                           manifests=manifests))
    assert not _objects(s3_env.client(), bucket)


def test_a_renamed_report_is_refused_before_any_upload(reference_artifact, s3_env, cli,
                                                       tmp_path):
    bucket = unique("renamed")
    s3_env.client().create_bucket(Bucket=bucket)
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    report = json.loads((artifact / "report.json").read_text())
    report["name"] = "../../escape"
    (artifact / "report.json").write_text(json.dumps(report))
    refused = cli("publish", artifact, "--to", f"s3://{bucket}/models")
    assert refused.code == ExitCode.BAD_INPUT
    assert "'../../escape' is not a safe name" in refused.err
    assert not _objects(s3_env.client(), bucket)


def test_links_in_the_artifact_are_never_followed(reference_artifact, s3_env, cli,
                                                  tmp_path):
    import onnxport_s3
    from onnxport.records import PublishRequest

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the bucket")
    bucket = unique("links")
    s3_env.client().create_bucket(Bucket=bucket)
    artifact = copy_artifact(reference_artifact, tmp_path / "artifact")
    (artifact / "cpu" / "notes.txt").symlink_to(secret)  # not listed: left out
    (artifact / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    done = cli("publish", artifact, "--to", f"s3://{bucket}")
    assert done.code == ExitCode.OK, done.err
    keys = set(_objects(s3_env.client(), bucket))
    assert not [k for k in keys if "notes.txt" in k or "elsewhere" in k], keys
    for key in keys:
        body = s3_env.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert b"not for the bucket" not in body, key

    # a listed file that is a link, or a path out of the artifact, is refused
    manifests = [json.loads((artifact / "cpu" / "manifest.json").read_text())]
    (artifact / "report.md").unlink()
    (artifact / "report.md").symlink_to(secret)
    for files, problem in ((("report.md",), "symbolic link"),
                           (("../secret.txt",), "outside its directory")):
        with pytest.raises(BadInput, match=problem):
            onnxport_s3.publish(PublishRequest(
                artifact=artifact, uri=f"s3://{bucket}/direct", name="localization",
                manifests=manifests, files=files, options={"force": True}))
    assert not [k for k in _objects(s3_env.client(), bucket) if k.startswith("direct/")]
    refused = cli("publish", artifact, "--to", f"s3://{bucket}/cli")
    assert refused.code == ExitCode.BAD_INPUT and "symbolic link" in refused.err


def test_pull_refuses_a_marker_naming_paths_outside_or_damaged(s3_env, tmp_path):
    bucket = unique("marker")
    client = s3_env.client()
    client.create_bucket(Bucket=bucket)
    (tmp_path / "pulled").mkdir()
    body = b"escaped"
    for label, entry in (
            ("outside", {"path": "../escaped.txt", "bytes": len(body),
                         "sha256": hashlib.sha256(body).hexdigest()}),
            ("absolute", {"path": str(tmp_path / "abs.txt"), "bytes": len(body),
                          "sha256": hashlib.sha256(body).hexdigest()}),
            ("damaged", {"path": "cpu/x.onnx", "bytes": "many", "sha256": None})):
        version = f"m/{label}/v20000101_000000"
        client.put_object(Bucket=bucket, Key=f"{version}/_COMPLETE", Body=json.dumps({
            "format": "onnxport-s3-version/1", "files": [entry]}).encode())
        destination = tmp_path / "pulled" / label
        problem = "damaged" if label == "damaged" else "unsafe path"
        with pytest.raises(VerificationFailed, match=problem):
            onnxport.pull(f"s3://{bucket}/{version}", destination)
        assert_untouched(destination)
    assert not (tmp_path / "pulled" / "escaped.txt").exists()
    assert not (tmp_path / "abs.txt").exists()
