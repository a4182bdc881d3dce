"""Writing an artifact directory so that it is either complete or not there at all.

Everything is written into a hidden staging directory beside the output and renamed
into place in one step at the end; a failure removes the staging directory and leaves
the output path exactly as it was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from onnxport.artifact.reading import REPORT, sha256_of
from onnxport.errors import BadInput



def check_output_dir(output: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output path that would lose or mix data."""
    if output.exists() and not output.is_dir():
        raise BadInput(f"--output {output} is a file, not a directory",
                       "choose a directory path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        what = "an onnxport artifact" if (output / REPORT).exists() else "files"
        raise BadInput(f"--output {output} already holds {what}",
                       "choose another directory or pass --overwrite to replace it")


class Staging:
    """A temporary directory that becomes the output directory only on `commit()`."""

    def __init__(self, output: Path):
        self.output = Path(output).absolute()
        self._created_parents: list[Path] = []
        parent = self.output.parent
        while not parent.exists():
            self._created_parents.append(parent)
            parent = parent.parent
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.output.name}.staging-",
                                          dir=self.output.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.path, 0o777 & ~umask)  # mkdtemp makes it private; the result is not

    def commit(self) -> Path:
        backup = None
        if self.output.exists():
            backup = self.output.with_name(f".{self.output.name}.replaced-{os.getpid()}")
            os.replace(self.output, backup)
        os.replace(self.path, self.output)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self._created_parents = []
        return self.output

    def discard(self, keep_as: Path | None = None) -> Path | None:
        """Remove the staging directory, or keep it under `keep_as` for inspection."""
        if not self.path.exists():
            return None
        if keep_as is not None:
            shutil.rmtree(keep_as, ignore_errors=True)
            os.replace(self.path, keep_as)
            return keep_as
        shutil.rmtree(self.path, ignore_errors=True)
        for parent in self._created_parents:  # innermost first
            try:
                parent.rmdir()
            except OSError:
                break
        return None


def describe_files(directory: Path, names: list[str]) -> list[dict[str, Any]]:
    """sha256 and size of each file, for the manifest (paths relative to `directory`)."""
    return [{"path": name, "bytes": (directory / name).stat().st_size,
             "sha256": sha256_of(directory / name)} for name in names]


def write_json(path: Path, data: Any) -> None:
    """Strict JSON any parser reads: infinities and NaN become "inf", "-inf", "nan"."""
    path.write_text(json.dumps(strict_json(data), indent=2, allow_nan=False) + "\n")


def strict_json(data: Any) -> Any:
    """`data` as plain JSON values (paths, numpy scalars, dataclasses converted), with
    infinities and NaN as the strings "inf", "-inf", "nan"."""
    return _finite(json.loads(json.dumps(data, default=_jsonable)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
