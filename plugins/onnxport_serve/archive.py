"""An artifact as a streamed .tar.gz: what the download endpoint sends.

The artifact is read through the core's reader first (`checked_artifact`: every file
against its manifest's sha256, no path outside it, no link), and exactly the files a
publisher would copy go into the archive, under `NAME/`. The archive is written by a
thread into a pipe and sent as it is made: memory stays flat whatever the model's size.
"""

from __future__ import annotations

import os
import tarfile
import threading
from pathlib import Path
from typing import Iterator

CHUNK = 1 << 16


def archive_files(root: Path) -> list[str]:
    """The artifact's files, checked (raises the core's BadInput when it is damaged)."""
    from onnxport.artifact.publishing import artifact_files, checked_artifact

    return list(artifact_files(checked_artifact(root)))


def stream(root: Path, name: str, files: list[str]) -> Iterator[bytes]:
    read_end, write_end = os.pipe()
    failure: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(write_end, "wb", buffering=CHUNK) as pipe, \
                    tarfile.open(fileobj=pipe, mode="w|gz") as tar:
                for relative in files:
                    path = root / relative
                    info = tar.gettarinfo(str(path), arcname=f"{name}/{relative}")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
        except BrokenPipeError:
            pass  # the client went away
        except BaseException as exc:
            failure.append(exc)

    writer = threading.Thread(target=write, name="onnxport-archive", daemon=True)
    writer.start()
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            chunk = pipe.read(CHUNK)
            if not chunk:
                break
            yield chunk
    writer.join()
    if failure:  # the response has started: all that can be done is to cut it short
        raise failure[0]
