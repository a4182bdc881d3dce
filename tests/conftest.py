"""Shared fixtures: the reference models, the real CLI (in-process and as a process)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from onnxport.testing import onnxport_host  # noqa: F401  (the isolated-host fixture)

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "examples" / "zoo"
BIN = Path(sys.executable).parent


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run `onnxport ARGS` in this process, conversions included (main() is handed the
    installed plugins' host, so torch is imported once for the session). The default
    path, a worker process per conversion, is tested through `run_process`."""
    from onnxport.cli import main
    from onnxport.host import default_host

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args], host=default_host())
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_process(*args: str, env: dict | None = None, cwd: Path | None = None,
                executable: str | None = None) -> CliResult:
    """Run the installed `onnxport` console script as a separate process."""
    merged = {**os.environ, **(env or {})}
    done = subprocess.run([executable or str(BIN / "onnxport"), *map(str, args)],
                          capture_output=True, text=True, env=merged, cwd=cwd or ROOT,
                          timeout=600)
    return CliResult(done.returncode, done.stdout, done.stderr)


def factory(model: str, function: str = "build") -> str:
    return f"{ZOO / (model + '.py')}:{function}"


def zoo_module(name: str):
    """Import a reference model module from examples/zoo by file name."""
    import importlib.util

    module_name = f"zoo_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ZOO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that torch.save can pickle its classes
    spec.loader.exec_module(module)
    return module


def assert_untouched(path: Path) -> None:
    """Nothing was written: no output directory and no staging leftovers beside it."""
    assert not path.exists(), f"{path} was created"
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    assert not leftovers, f"staging leftovers: {leftovers}"


def onnxport_without_frameworks(root: Path) -> Path:
    """A real Python environment in `root` with onnxport, its built-in plugins, pluggy
    and numpy, and nothing else installed (no torch, TensorFlow, onnx, onnxruntime):
    links to the installed packages, used with `python -S` so site-packages is not on
    the path. Returns `root`."""
    import importlib.metadata

    import numpy
    import pluggy

    for module in (numpy, pluggy):
        package = Path(module.__file__).parent
        (root / package.name).symlink_to(package)
        libs = package.with_name(package.name + ".libs")
        if libs.exists():
            (root / libs.name).symlink_to(libs)
    (root / "onnxport").symlink_to(ROOT / "core" / "onnxport")
    for plugin in (ROOT / "plugins").iterdir():
        if (plugin / "__init__.py").is_file():
            (root / plugin.name).symlink_to(plugin)
    info = root / "onnxport-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxport\n"
                                   "Version: 0.1.0\n")
    entry_points = importlib.metadata.entry_points(group="onnxport")
    (info / "entry_points.txt").write_text(
        "[onnxport]\n" + "".join(f"{ep.name} = {ep.value}\n" for ep in entry_points
                                 if ep.dist and ep.dist.name == "onnxport"))
    return root
