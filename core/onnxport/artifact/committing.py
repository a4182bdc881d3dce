"""Putting an artifact directory in place so that it is complete or not there at all.

- `check_output_dir` refuses, before any user code runs, an output that would lose or
  mix data: a file, a directory holding anything but an onnxport artifact, the working
  directory or one of its parents, or a directory holding (or above) the conversion's
  own inputs. `--overwrite` replaces an onnxport artifact and nothing else.
- `OutputLock` makes one conversion at a time own an output: a second one fails at once
  with a clear message instead of both writing.
- `Staging` writes everything into a hidden `.DIR.staging-*` directory beside DIR and
  commits it in one step: where the OS can swap two directories atomically (Linux
  `renameat2(RENAME_EXCHANGE)`), DIR is at every instant the old artifact or the new
  one; elsewhere the old one is renamed aside first, and a commit killed half-way is
  finished by the next run (`recover`). A staging directory is marked complete before
  the commit starts, so recovery knows which copy to keep.
- A DIR that is a mount point (a container volume) cannot be renamed: the artifact is
  staged inside it and its entries are moved in, each with one rename.

The debris of killed runs (`.DIR.staging-*`, `.DIR.replaced-*`) is recovered or removed
by the next run that takes the lock; no command lists it as an artifact.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable

from onnxport.artifact.reading import MANIFEST, REPORT, target_directories
from onnxport.errors import BadInput

COMPLETE = ".onnxport-complete"  # in a staging directory: everything is written
PAUSE_VARIABLE = "ONNXPORT_TEST_COMMIT_PAUSE"  # tests: seconds to wait inside a commit
NO_EXCHANGE_VARIABLE = "ONNXPORT_TEST_NO_EXCHANGE"  # tests: take the two-rename path


def is_artifact(directory: Path) -> bool:
    """Whether `directory` holds an onnxport artifact (its report, or target manifests)."""
    directory = Path(directory)
    return directory.is_dir() and ((directory / REPORT).is_file() or
                                   (directory / MANIFEST).is_file() or
                                   bool(target_directories(directory)))


def check_output_dir(output: Path, overwrite: bool,
                     protected: Iterable[Path] = ()) -> None:
    """Refuse, before any work, an output path that would lose or mix data. `protected`
    are the conversion's own inputs (source, factory, weights, data, config)."""
    output = Path(output)
    where = output.absolute()
    if output.exists() and not output.is_dir():
        raise BadInput(f"--output {output} is a file, not a directory",
                       "choose a directory path")
    cwd = Path.cwd().resolve()
    resolved = where.resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise BadInput(f"--output {output} is the working directory or one of its "
                       "parents", "write the artifact into a new directory, e.g. -o out/model")
    for path in protected:
        inside = Path(path).absolute().resolve()
        if inside == resolved or resolved in inside.parents:
            raise BadInput(f"--output {output} holds {path}, an input of this conversion",
                           "write the artifact into a new directory, e.g. -o out/model")
    if output.is_dir() and any(_entries(output)):
        if not is_artifact(output):
            raise BadInput(f"--output {output} already holds files that are not an "
                           "onnxport artifact", "choose a new or empty directory; "
                           "--overwrite replaces only an onnxport artifact")
        if not overwrite:
            raise BadInput(f"--output {output} already holds an onnxport artifact",
                           "choose another directory or pass --overwrite to replace it")


def _entries(directory: Path):
    return (p for p in directory.iterdir() if not p.name.startswith(".onnxport-"))


# --------------------------------------------------------------------------- the lock


class OutputLock:
    """An exclusive lock on an output directory (a `.DIR.lock` file beside it), held
    while a conversion or a pull owns it."""

    def __init__(self, output: Path):
        self.output = Path(output).absolute()
        self.path = self.output.with_name(f".{self.output.name}.lock")
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.output.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another"
                os.close(fd)
                raise BadInput(f"--output {self.output} is being written by another "
                               f"onnxport process (pid {holder})",
                               "wait for it to finish, or choose another directory") \
                    from None
            try:  # the file may have been removed by its last holder meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- staging


class Staging:
    """A temporary directory that becomes the output directory only on `commit()`.
    Hold the output's `OutputLock` from before `Staging()` until after `commit()`."""

    def __init__(self, output: Path):
        self.output = Path(output).absolute()
        self._created_parents: list[Path] = []
        parent = self.output.parent
        while not parent.exists():
            self._created_parents.append(parent)
            parent = parent.parent
        self.output.parent.mkdir(parents=True, exist_ok=True)
        recover(self.output)
        self.inside = self.output.is_dir() and is_mount_point(self.output)
        self.path = Path(tempfile.mkdtemp(
            prefix=".onnxport-staging-" if self.inside else f".{self.output.name}.staging-",
            dir=self.output if self.inside else self.output.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, 0o777 & ~umask)  # mkdtemp makes it private; the result is not

    def commit(self) -> Path:
        (self.path / COMPLETE).write_text(str(os.getpid()))
        if self.inside:
            _pause("moving in")
            self._commit_inside()
        elif not self.output.exists():
            _pause("renaming")  # DIR is absent until the rename: nothing to lose
            os.replace(self.path, self.output)
        elif _exchange(self.path, self.output):
            _pause("exchanged")  # DIR is the new artifact; the old one is at self.path
            _remove(self.path)
        else:
            backup = self.output.with_name(f".{self.output.name}.replaced-{os.getpid()}")
            os.replace(self.output, backup)
            _pause("moved aside")  # DIR is missing: recover() finishes this
            os.replace(self.path, self.output)
            _remove(backup)
        _discard_marker(self.output)
        self._created_parents = []
        return self.output

    def _commit_inside(self) -> None:
        """DIR is a mount point: replace its artifact entries by the staged ones."""
        for entry in list(self.output.iterdir()):
            if entry != self.path and not entry.name.startswith(".onnxport-"):
                _remove(entry)
        for entry in self.path.iterdir():
            if entry.name != COMPLETE:
                os.replace(entry, self.output / entry.name)
        _remove(self.path)

    def discard(self, keep_as: Path | None = None) -> Path | None:
        """Remove the staging directory, or keep it under `keep_as` for inspection (a
        previous failed candidate there is replaced; anything else is left alone and
        a numbered name is taken)."""
        if not self.path.exists():
            return None
        if keep_as is not None:
            keep_as = _free_name(Path(keep_as))
            shutil.rmtree(keep_as, ignore_errors=True)
            os.replace(self.path, keep_as)
            return keep_as
        _remove(self.path)
        for parent in self._created_parents:  # innermost first
            try:
                parent.rmdir()
            except OSError:
                break
        return None


def recover(output: Path) -> list[str]:
    """Finish or undo what a killed run left beside `output` (call it holding the lock):
    a complete staging directory replaces a missing output, an old artifact moved aside
    comes back, and every other piece of debris is removed. Returns what was done."""
    output = Path(output).absolute()
    parent = output.parent
    if not parent.is_dir():
        return []
    done = []
    staged = sorted(parent.glob(f".{output.name}.staging-*"))
    replaced = sorted(parent.glob(f".{output.name}.replaced-*"))
    if not output.exists():
        complete = [s for s in staged if (s / COMPLETE).is_file()]
        if complete:
            os.replace(complete[-1], output)
            _discard_marker(output)
            staged.remove(complete[-1])
            done.append(f"finished the commit of {output} a killed run started")
        elif replaced:
            os.replace(replaced[-1], output)
            replaced.pop()
            done.append(f"put back the artifact a killed run had moved aside at {output}")
    for debris in (*staged, *replaced):
        _remove(debris)
        done.append(f"removed {debris.name}")
    if output.is_dir() and is_mount_point(output):
        for debris in output.glob(".onnxport-staging-*"):
            _remove(debris)
            done.append(f"removed {debris.name}")
    return done


def is_mount_point(path: Path) -> bool:
    """Whether `path` is a mount point, bind mounts of the same file system included
    (which `os.path.ismount` cannot see): such a directory cannot be renamed."""
    if os.path.ismount(path):
        return True
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    where = str(Path(path).resolve())
    points = {line.split()[4].replace("\\040", " ") for line in lines if len(line.split()) > 4}
    return where in points


def _free_name(path: Path) -> Path:
    """`path` if it is free or a failed candidate of ours, else `path-2`, `path-3`..."""
    candidate, number = path, 1
    while candidate.exists() and not is_artifact(candidate):
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _discard_marker(directory: Path) -> None:
    (directory / COMPLETE).unlink(missing_ok=True)


def _pause(step: str) -> None:
    """For the crash-safety tests: wait inside the commit window, so a test can kill
    the process there for real."""
    seconds = os.environ.get(PAUSE_VARIABLE)
    if seconds:
        print(f"onnxport test: commit paused ({step})", flush=True)
        time.sleep(float(seconds))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2); False where the OS cannot."""
    if os.environ.get(NO_EXCHANGE_VARIABLE):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                       _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # this kernel or file system cannot exchange: rename twice
    raise OSError(code, os.strerror(code), str(b))
