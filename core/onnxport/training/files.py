"""Writing what training produces so a crash or a reader never sees half of it: atomic
files and directories, hard-linked snapshots, and the early check that the artifact's
place can be written at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from onnxport.errors import EnvironmentProblem


def check_writable(artifact: Path) -> None:
    """Refuse, before a worker starts, an artifact place nothing can be written to (below
    a file, a read-only or forbidden directory): a clear ENVIRONMENT failure."""
    parent = Path(artifact).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".onnxport-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EnvironmentProblem(
            f"the artifact directory {artifact} cannot be written: "
            f"{exc.strerror or exc} ({exc.filename or parent})",
            "choose a writable place with artifact= (or the callback's directory)") \
            from exc


def atomic_save(path: Path, write: Callable[[Path], None], suffix: str = "") -> Path:
    """Write `path` through `write(temporary)` and a rename: a reader (or a crash)
    never sees half a checkpoint. `suffix` keeps the extension a writer insists on."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            try:
                temporary.unlink()
            except OSError:
                pass
        raise
    return path


def replace_directory(path: Path, write: Callable[[Path], None]) -> Path:
    """Write a directory (a save_pretrained folder) beside `path`, then swap it in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.{os.getpid()}.new")
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        write(fresh)
        if path.exists():
            os.replace(path, old)
        os.replace(fresh, path)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return path


def link_into(source: Path, directory: Path) -> Path:
    """`source` (a file or a directory of files) in `directory` under its own name, as
    hard links (a copy where links are not possible): the attempt keeps these bytes
    whatever later checkpoints write."""
    source = Path(source)
    target = Path(directory) / source.name
    if source.is_dir():
        shutil.copytree(source, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, target)
    return target


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
