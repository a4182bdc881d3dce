"""Serving one model with Netron on 127.0.0.1 until Ctrl-C (or for --seconds)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator

from onnxport.errors import BadInput, MissingDependency

HOST = "127.0.0.1"  # loopback only: the model is served to this machine, nowhere else


def model_path(path: Path, target: str | None = None) -> Path:
    """The model file to show: an artifact's (through its manifest, confined to the
    target directory by the one reader) or a bare .onnx file."""
    from onnxport.artifact.reading import open_artifact

    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path} does not exist", "give an artifact directory or an .onnx file")
    if path.is_dir():
        artifact = open_artifact(path)
        entry = artifact.target(target) if target else artifact.targets[0]
        model = entry.model  # refuses '..', absolute paths and links
        if not model.is_file():
            raise BadInput(f"{model} is missing from the artifact",
                           "convert again, or pull the artifact again")
        return model
    if target:
        raise BadInput(f"--target applies to an artifact directory, and {path} is a file")
    if path.suffix.lower() != ".onnx":
        raise BadInput(f"{path} is not an .onnx file",
                       "give an artifact directory or an .onnx file")
    return path


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    """netron.serve() calls logging.basicConfig() when the root logger has no handler,
    which would print its own lines and change logging for the rest of the process;
    a handler that drops everything keeps the root logger as it was."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    added = not root.hasHandlers()
    if added:
        root.addHandler(handler)
    try:
        yield
    finally:
        if added:
            root.removeHandler(handler)


def view(path: Path, target: str | None = None, port: int | None = None,
         browse: bool = False, seconds: float | None = None) -> int:
    model = model_path(path, target)
    try:
        import netron
    except ImportError:
        raise MissingDependency("netron", "view", "onnxport view",
                                install="pip install netron") from None
    if port is not None and not 0 <= port <= 65535:
        raise BadInput(f"--port {port} is not a port number", "give 0 to 65535")
    try:
        with _quiet_root():
            host, bound = netron.start(str(model), address=(HOST, port), browse=False)
    except OSError as error:
        raise BadInput(f"cannot serve on {HOST}:{port}: {error.strerror or error}",
                       "choose another --port (0: any free port)") from None
    url = f"http://{host}:{bound}"
    until = "until Ctrl-C" if seconds is None else f"for {seconds:g} s"
    print(f"Netron: serving {model} at {url} ({until})", flush=True)
    if browse:
        import webbrowser

        if not webbrowser.open(url):
            print(f"onnxport: no web browser found here: open {url} yourself",
                  file=sys.stderr)
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        while netron.status((host, bound)) and (deadline is None or
                                                time.monotonic() < deadline):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        netron.stop((host, bound))
    print("Netron: stopped", flush=True)
    return 0
