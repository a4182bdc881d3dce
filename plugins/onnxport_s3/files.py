"""What a publish uploads: the files the core checked and listed (`PublishRequest.files`),
each read through `onnxport.artifact.reading`, so that no path leaves the artifact and
no symbolic link is followed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from onnxport.artifact.reading import MANIFEST, confined, open_artifact, sha256_of
from onnxport.errors import BadInput
from onnxport.records import PublishRequest

from .locations import MARKER


@dataclass
class ArtifactFile:
    path: str  # relative, POSIX
    local: Path
    size: int
    sha256: str
    target: str | None


def listed_files(request: PublishRequest) -> tuple[str, ...]:
    """The relative paths to publish: the core's list; for a request made by hand, the
    same list the core would make (reports, manifests and the files they list)."""
    if request.files:
        return tuple(request.files)
    from onnxport.artifact.publishing import artifact_files

    return artifact_files(open_artifact(request.artifact))


def artifact_files(request: PublishRequest) -> list[ArtifactFile]:
    """The files to upload, manifests after the files they describe. A file a manifest
    lists keeps the sha256 it records there (the core has just checked it)."""
    root = Path(request.artifact)
    known: dict[str, str] = {}
    targets: dict[str, str] = {}  # target directory (relative, "" for the root) -> name
    for entry in open_artifact(root).targets:
        directory = "" if entry.directory == root else entry.directory.name
        targets[directory] = entry.name
        for item in entry.manifest.get("files", []):
            if isinstance(item, dict) and isinstance(item.get("sha256"), str):
                entry.file(item.get("path"))  # confined: refused if outside or a link
                known[str(PurePosixPath(directory, item["path"]))] = item["sha256"]
    files = []
    for relative in listed_files(request):
        rel = PurePosixPath(relative).as_posix()
        if rel == MARKER:
            raise BadInput(f"{root} holds a file named {MARKER}, which the s3 publisher "
                           "reserves for its completion marker")
        local = confined(root, rel, str(root))
        if not local.is_file():
            raise BadInput(f"{local} is not a regular file", "convert again")
        parents = ["" if p.as_posix() == "." else p.as_posix()
                   for p in PurePosixPath(rel).parents]
        target = next((targets[d] for d in parents if d in targets), None)
        files.append(ArtifactFile(rel, local, local.stat().st_size,
                                  known.get(rel) or sha256_of(local), target))
    files.sort(key=lambda f: (PurePosixPath(f.path).name == MANIFEST, f.path))
    return files
