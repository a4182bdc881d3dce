"""Built-in plugin: publish artifacts to a directory (local disk or a mounted share),
versioned as NAME/vYYYYMMDD_HHMMSS/, and pull them back."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from onnxport.host import hookimpl
from onnxport.records import Publisher, PublishRequest, PublishResult


def _root(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(parsed.path if parsed.scheme == "file" else uri)


def publish(request: PublishRequest) -> PublishResult:
    from onnxport.artifact.publishing import artifact_digest, version_tag

    home = _root(request.uri) / request.name
    digest = artifact_digest(request.manifests)
    if not request.options.get("force"):
        for existing in sorted(home.glob("v*/"), reverse=True):
            stamp = existing / ".onnxport-digest"
            if stamp.is_file() and stamp.read_text() == digest:
                return PublishResult(uri=f"file://{existing}", created=False,
                                     details={"reason": "the same artifact is already "
                                                        f"published as {existing.name}"})
    target = home / version_tag()
    suffix = 1
    while target.exists() or target.with_name(target.name + ".partial").exists():
        suffix += 1  # two versions in one second: v..._2, v..._3
        target = home / f"{version_tag()}_{suffix}"
    partial = target.with_name(target.name + ".partial")
    for relative in request.files:  # regular files the core checked, never links
        copy = partial / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.artifact / relative, copy, follow_symlinks=False)
    (partial / ".onnxport-digest").write_text(digest)
    partial.rename(target)  # complete or absent
    return PublishResult(uri=f"file://{target}",
                         details={"files": sum(len(m["files"]) for m in request.manifests)})


def pull(uri: str, destination: Path) -> None:
    """`file:///dir/NAME/vYYYYMMDD_HHMMSS` pulls that version; `file:///dir/NAME` the
    newest complete one."""
    source = _root(uri)
    versions = sorted(p for p in source.glob("v*") if p.is_dir() and not p.is_symlink()
                      and not p.name.endswith(".partial")
                      and (p / ".onnxport-digest").is_file()) if source.is_dir() else []
    if versions and not (source / "report.json").is_file():
        source = versions[-1]
    if not (source.is_dir() and any(source.rglob("manifest.json"))):
        from onnxport.errors import BadInput

        raise BadInput(f"{uri} is not a published artifact")
    # links are copied as links, never followed; the core then refuses them
    shutil.copytree(source, destination, dirs_exist_ok=True, symlinks=True,
                    ignore=shutil.ignore_patterns(".onnxport-digest"))


@hookimpl
def onnxport_register_publishers(register):
    register(Publisher(
        name="localdir",
        description="a directory on this machine or a mounted share: "
                    "DIR/NAME/vYYYYMMDD_HHMMSS/",
        schemes=("file",),
        publish=publish,
        pull=pull,
    ))
