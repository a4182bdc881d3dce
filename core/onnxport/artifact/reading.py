"""Reading an artifact back: the one place that opens what an artifact names.

An artifact is untrusted input: pulled from a registry, received from another team,
mounted from a shared volume. Every command (`verify`, `inspect`, `bench`, `diagnose`,
`publish`, `pull`), every publisher and the runtime read it through this module, which

- confines every path a manifest or report names to the artifact: absolute paths,
  `..` and symbolic links anywhere below the artifact are refused, never followed;
- checks the manifest's fields have the types onnxport writes, so a damaged or hostile
  manifest is one clear error, not a `TypeError` three calls later;
- checks every file against the size and sha256 its manifest recorded.

Nothing here runs code an artifact names (see docs/security.md). Standard library only:
the runtime imports it beside onnxruntime and numpy.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from onnxport.errors import BadInput

MANIFEST = "manifest.json"
REPORT = "report.json"
MAX_JSON_BYTES = 64 << 20  # a manifest or report is kilobytes; refuse to read a giant


class ArtifactError(BadInput):
    """The path does not lead to an artifact (or a model) onnxport can read."""

    def __str__(self) -> str:  # the whole sentence: what went wrong, then what to do
        return self.one_line()


class ArtifactNotFound(ArtifactError, FileNotFoundError):
    """There is nothing at the path (or the manifest names a file that is not there)."""


class IntegrityError(ArtifactError):
    """A file differs from the size or sha256 its manifest recorded: refused unloaded."""


# --------------------------------------------------------------------------- paths


def confined(directory: Path, relative: Any, what: str) -> Path:
    """`directory / relative`, where `relative` is a name an artifact gave: refused if
    it is not a plain relative path inside `directory`, or if any part of it below
    `directory` is a symbolic link."""
    if not isinstance(relative, str) or not relative.strip():
        raise ArtifactError(f"{what} names no file ({relative!r})",
                            "the artifact is damaged: convert again")
    _plain(relative, what)
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    path = Path(directory)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise ArtifactError(f"{what} names {relative!r}, which is a symbolic link",
                                "refusing to follow it: onnxport never follows links "
                                "inside an artifact; copy the real file in")
    return path


def _plain(relative: str, what: str) -> None:
    """Refuse a name that is absolute or climbs out, before any file system access."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or ".." in parts \
            or (parts and ":" in parts[0]):
        raise ArtifactError(f"{what} names a file outside its directory: {relative!r}",
                            "refusing to read it: an artifact only names files inside it")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a regular file (not a link) of sensible size."""
    if path.is_symlink():
        raise ArtifactError(f"{path} is a symbolic link", "refusing to follow it: "
                            "onnxport never follows links inside an artifact")
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ArtifactError(f"{path} is {path.stat().st_size} bytes, too large for "
                                f"a {what}", "the artifact is damaged: convert again")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactNotFound(f"{path} is missing", "copy the whole artifact") from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{path} is not a readable {what} ({error})",
                            "the artifact is damaged: copy it again or convert again") \
            from error
    if not isinstance(data, dict):
        raise ArtifactError(f"{path} is not a {what} (not a JSON object)",
                            "the artifact is damaged: convert again")
    return data


# --------------------------------------------------------------------------- manifest

# field -> the JSON type onnxport writes there (checked where present)
_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str, "files": list, "target": dict, "interface": dict, "source": dict,
    "verification": dict, "onnx": (dict, type(None)), "runner": str,
    "target.name": str, "target.providers": list, "target.runner": str,
    "target.provider_options": dict, "target.graph_optimization_level": str,
    "target.allow_fallback": bool, "interface.inputs": list, "interface.outputs": list,
    "interface.dynamic_batch": bool, "source.origin": str, "source.kind": str,
    "source.backend": str, "source.weights": (dict, type(None)),
    "source.load_options": dict, "verification.batches": list,
}
_JSON_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true or false",
               int: "a number", type(None): "null"}


def read_manifest(path: Path) -> dict[str, Any]:
    """A target's manifest.json, with the types of the fields onnxport reads checked."""
    data = read_json(path, "manifest")
    if not isinstance(data.get("model"), str):
        raise ArtifactError(f"{path} is not an onnxport manifest (it names no model file)",
                            "pass the .onnx file itself, or an onnxport artifact directory")
    _plain(data["model"], f"{path}")
    for key, expected in _MANIFEST_FIELDS.items():
        head, _, tail = key.partition(".")
        value = data.get(head) if not tail else (data.get(head) or {}).get(tail)
        present = head in data if not tail else tail in (data.get(head) or {})
        if present and not isinstance(value, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            raise ArtifactError(
                f"{path}: {key} must be {' or '.join(_JSON_NAMES[k] for k in kinds)}, "
                f"not {type(value).__name__} ({str(value)[:60]!r})",
                "the manifest was not written by onnxport or was damaged: convert again")
    return data


@dataclass
class TargetEntry:
    """One target directory of an artifact, with its manifest."""

    name: str
    directory: Path
    manifest: dict[str, Any]

    @property
    def model(self) -> Path:
        return confined(self.directory, self.manifest["model"],
                        f"{self.directory / MANIFEST}")

    def file(self, relative: Any) -> Path:
        return confined(self.directory, relative, f"{self.directory / MANIFEST}")


@dataclass
class Artifact:
    """An artifact directory read back: its targets, and its report if it has one."""

    root: Path
    targets: list[TargetEntry]

    @property
    def report(self) -> dict[str, Any] | None:
        """report.json of the run (beside the targets, or above a single target)."""
        for candidate in (self.root / REPORT, self.root.parent / REPORT):
            if candidate.is_file() and not candidate.is_symlink():
                return read_json(candidate, "report")
        return None

    def verification_settings(self) -> dict[str, Any]:
        """The verification settings the conversion recorded ({} if it has no report)."""
        settings = (self.report or {}).get("verification_settings") or {}
        if not isinstance(settings, dict):
            raise ArtifactError(f"{self.root / REPORT}: verification_settings must be "
                                "an object", "convert again")
        return settings

    def target(self, name: str) -> TargetEntry:
        for entry in self.targets:
            if name in (entry.name, entry.directory.name):
                return entry
        raise ArtifactError(f"{self.root} has no target {name!r}",
                            "its targets are: " + ", ".join(t.name for t in self.targets))


def target_directories(directory: Path) -> dict[str, Path]:
    """The target directories of an artifact, by directory name (links are skipped)."""
    found = {}
    for child in sorted(directory.iterdir()):
        if child.name.startswith(".") or child.is_symlink() or not child.is_dir():
            continue
        if (child / MANIFEST).is_file():
            found[child.name] = child
    return found


def open_artifact(path: Path) -> Artifact:
    """An artifact directory (or one of its target directories), read back."""
    path = Path(path)
    if not path.exists():
        raise ArtifactNotFound(f"{path} does not exist")
    if path.is_dir() and (path / MANIFEST).is_file():
        directories = {path.name: path}
    elif path.is_dir():
        directories = target_directories(path)
    else:
        directories = {}
    if not directories:
        raise ArtifactError(f"{path} is not an onnxport artifact (no {MANIFEST} in it or "
                            "its subdirectories)", "give the --output directory of a "
                            "conversion")
    targets = []
    for directory in directories.values():
        manifest = read_manifest(directory / MANIFEST)
        name = (manifest.get("target") or {}).get("name") or directory.name
        targets.append(TargetEntry(name, directory, manifest))
    return Artifact(path, targets)


# --------------------------------------------------------------------------- integrity


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in blocks: the one hash helper of onnxport."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_integrity(directory: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Compare every file the manifest lists with its recorded size and sha256.

    Returns the paths checked; raises IntegrityError at the first difference (size first,
    so a truncated file says so), or if the manifest does not list the model itself.
    """
    where = directory / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise IntegrityError(f"{where} lists no files with their sha256",
                             "nothing to check against: load with verify_checksum=False "
                             "if you trust the files")
    checked = []
    for entry in files:
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes", 0), int) \
                or not isinstance(entry.get("sha256"), str):
            raise IntegrityError(f"{where} has a malformed files entry: {entry!r}",
                                 "the artifact is damaged: convert again")
        relative = entry.get("path")
        try:
            path = confined(directory, relative, str(where))
        except ArtifactError as error:
            raise IntegrityError(error.message, error.hint) from None
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (the manifest lists it)",
                                 "copy the whole target directory, not only some files")
        size = path.stat().st_size
        if "bytes" in entry and size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "modified"
            raise IntegrityError(
                f"{path.name} is {size} bytes but the manifest says {entry['bytes']} "
                f"({what}); refusing to load it",
                "copy the artifact again (check the copy finished) or convert again")
        digest = sha256_of(path)
        if digest != entry["sha256"]:
            raise IntegrityError(
                f"{path.name} has sha256 {digest[:16]}... but the manifest says "
                f"{entry['sha256'][:16]}... (modified or corrupted); refusing to "
                "load it", "copy the artifact again or convert again")
        checked.append(relative)
    if manifest["model"] not in checked:
        raise IntegrityError(f"{where} does not list its model {manifest['model']} "
                             "among its files", "refusing to load it")
    return checked


def integrity_problems(entry: TargetEntry) -> list[str]:
    """What is wrong with a target's files, in words ([] when every file matches)."""
    try:
        check_integrity(entry.directory, entry.manifest)
    except IntegrityError as error:
        return [error.message]
    return []
