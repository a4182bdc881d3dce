"""Publishing an artifact somewhere and pulling it back, through publisher plugins.

The core does what every publisher needs, by one rule for all of them: it reads the
artifact through `artifact.reading` (every file checked against its manifest, no path
outside it, no link followed), refuses a name that is not safe as a path, hands the
publisher the exact list of files to publish, picks the publisher by the URI's scheme,
and after a pull refuses links and checks every file again before the artifact appears
at its destination.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlparse

from onnxport.artifact.names import checked_name
from onnxport.artifact.reading import (MANIFEST, Artifact, confined, integrity_problems,
                                       open_artifact)
from onnxport.artifact.committing import OutputLock, Staging, check_output_dir
from onnxport.errors import BadInput, VerificationFailed
from onnxport.flow.stages import stage_events
from onnxport.host import PluginHost
from onnxport.records import Publisher, PublishRequest, PublishResult
from onnxport.report.formatting import human_bytes

REPORT_FILES = ("report.json", "report.html", "report.md")


def version_tag(now: datetime.datetime | None = None) -> str:
    """`vYYYYMMDD_HHMMSS` in UTC, the version name the localization seed used."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("v%Y%m%d_%H%M%S")


def artifact_digest(manifests: list[dict[str, Any]]) -> str:
    """One string that is equal exactly when every model file is equal."""
    return ",".join(sorted(f"{m['target']['name']}:{f['path']}:{f['sha256']}"
                           for m in manifests for f in m["files"]))


def checked_artifact(path: Path) -> Artifact:
    """The artifact at `path`, after checking every file its manifests list."""
    if not Path(path).is_dir():
        raise BadInput(f"{path} is not an artifact directory")
    artifact = open_artifact(Path(path))
    for entry in artifact.targets:
        problems = integrity_problems(entry)
        if problems:
            raise BadInput(f"{path} does not match its manifest ({problems[0]}); "
                           "refusing to publish it", "convert again, or run onnxport verify")
    return artifact


def artifact_files(artifact: Artifact) -> tuple[str, ...]:
    """What a publisher copies: the reports, and each target's manifest and the files it
    lists; relative POSIX paths of regular files inside the artifact."""
    files = [name for name in REPORT_FILES if (artifact.root / name).is_file()]
    for name in files:
        confined(artifact.root, name, str(artifact.root))  # refuses a linked report
    for entry in artifact.targets:
        prefix = "" if entry.directory == artifact.root else f"{entry.directory.name}/"
        listed = [MANIFEST, *(f["path"] for f in entry.manifest["files"])]
        for relative in listed:
            entry.file(relative)  # confined: no '..', no link
            files.append(prefix + relative)
    return tuple(dict.fromkeys(files))


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
            options: Mapping[str, Any] | None = None, observers: Iterable[Any] = ()
            ) -> PublishResult:
    """Check the artifact, then hand it to the publisher of the URI's scheme; the upload
    is a stage `publish` that `observers` (a progress display) see start and finish."""
    checked = checked_artifact(Path(artifact))
    manifests = [t.manifest for t in checked.targets]
    name = (checked.report or {}).get("name") or manifests[0].get("name")
    name = checked_name(name, "the artifact's name")
    publisher = publisher_for(host, uri)
    files = artifact_files(checked)
    size = sum((checked.root / f).stat().st_size for f in files)
    with stage_events(host.view(observers=observers), "publish", None, {},
                      f"{len(files)} files, {human_bytes(size)}, to {uri}") as note:
        result = publisher.publish(PublishRequest(
            artifact=checked.root, uri=uri, name=name, manifests=manifests,
            options=dict(options or {}), files=files))
        note["detail"] = f"{human_bytes(size)} {'sent' if result.created else 'already there'}"
    return result


def pull(uri: str, destination: Path, host: PluginHost, overwrite: bool = False,
         observers: Iterable[Any] = ()) -> Path:
    """Fetch into a staging directory, check every file, then move it into place; the
    download is a stage `pull` that `observers` see start and finish."""
    destination = Path(destination)
    publisher = publisher_for(host, uri)
    if publisher.pull is None:
        raise BadInput(f"the {publisher.name} publisher cannot pull artifacts back")
    with OutputLock(destination):
        check_output_dir(destination, overwrite)
        with stage_events(host.view(observers=observers), "pull", None, {},
                          f"from {uri}") as note:
            path = _pull_into(publisher, uri, Staging(destination))
            note["detail"] = human_bytes(sum(p.stat().st_size for p in path.rglob("*")
                                             if p.is_file() and not p.is_symlink()))
        return path


def _pull_into(publisher: Publisher, uri: str, staging: Staging) -> Path:
    try:
        publisher.pull(uri, staging.path)
        links = [p for p in staging.path.rglob("*") if p.is_symlink()]
        if links:
            raise VerificationFailed(f"{uri} holds a symbolic link "
                                     f"({links[0].relative_to(staging.path)}); refusing it",
                                     "an artifact holds regular files only: publish it "
                                     "again from a converted artifact")
        for entry in open_artifact(staging.path).targets:
            problems = integrity_problems(entry)
            if problems:
                raise VerificationFailed(f"{uri} does not match its manifest after the "
                                         f"download: {problems[0]}",
                                         "publish the artifact again")
    except BaseException:
        staging.discard()
        raise
    return staging.commit()
