"""Publishing an artifact somewhere and pulling it back, through publisher plugins.

The core does what every publisher needs: it refuses an artifact whose files do not
match its manifests, picks the publisher by the URI's scheme, and after a pull checks
every file again before the artifact appears at its destination.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from onnxport.artifact.writing import REPORT, Staging, check_output_dir
from onnxport.errors import BadInput, VerificationFailed
from onnxport.host import PluginHost
from onnxport.records import Publisher, PublishRequest, PublishResult
from onnxport.flow.reverify import check_files, find_manifests


def version_tag(now: datetime.datetime | None = None) -> str:
    """`vYYYYMMDD_HHMMSS` in UTC, the version name the localization seed used."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("v%Y%m%d_%H%M%S")


def artifact_digest(manifests: list[dict[str, Any]]) -> str:
    """One string that is equal exactly when every model file is equal."""
    return ",".join(sorted(f"{m['target']['name']}:{f['path']}:{f['sha256']}"
                           for m in manifests for f in m["files"]))


def load_checked_manifests(artifact: Path) -> list[dict[str, Any]]:
    """The artifact's manifests, after checking every file they list."""
    if not artifact.is_dir():
        raise BadInput(f"{artifact} is not an artifact directory")
    manifests = []
    for path in find_manifests(artifact):
        manifest = json.loads(path.read_text())
        problems = check_files(path.parent, manifest)
        if problems:
            raise BadInput(f"{artifact} does not match its manifest ({problems[0]}); "
                           "refusing to publish it", "convert again, or run onnxport verify")
        manifests.append(manifest)
    return manifests


def publisher_for(host: PluginHost, uri: str) -> Publisher:
    scheme = urlparse(uri).scheme or "file"
    entries = host.registrations("publisher")
    for entry in entries.values():
        if scheme in entry.record.schemes:
            return host.get("publisher", entry.name)
    known = sorted(s for e in entries.values() for s in e.record.schemes)
    raise BadInput(f"no publisher handles {scheme}:// URIs ({uri})",
                   "known schemes: " + (", ".join(f"{s}://" for s in known) or "none"))


def publish(artifact: Path, uri: str, host: PluginHost,
            options: Mapping[str, Any] | None = None) -> PublishResult:
    artifact = Path(artifact)
    manifests = load_checked_manifests(artifact)
    report_path = artifact / REPORT
    name = (json.loads(report_path.read_text())["name"] if report_path.is_file()
            else manifests[0]["name"])
    publisher = publisher_for(host, uri)
    return publisher.publish(PublishRequest(artifact=artifact, uri=uri, name=name,
                                            manifests=manifests, options=dict(options or {})))


def pull(uri: str, destination: Path, host: PluginHost, overwrite: bool = False) -> Path:
    destination = Path(destination)
    check_output_dir(destination, overwrite)
    publisher = publisher_for(host, uri)
    if publisher.pull is None:
        raise BadInput(f"the {publisher.name} publisher cannot pull artifacts back")
    staging = Staging(destination)
    try:
        publisher.pull(uri, staging.path)
        for path in find_manifests(staging.path):
            problems = check_files(path.parent, json.loads(path.read_text()))
            if problems:
                raise VerificationFailed(f"{uri} does not match its manifest after the "
                                         f"download: {problems[0]}",
                                         "publish the artifact again")
    except BaseException:
        staging.discard()
        raise
    return staging.commit()
