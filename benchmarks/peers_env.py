"""The peers' side of benchmarks/peers.py: their virtual environment and their conversions.

Two jobs, both standard library only at import time (this file runs under two Pythons):

- `setup()` (called by `peers.py --setup`, or `python benchmarks/peers_env.py setup`)
  creates build/peers-venv with `python3 -m venv` and installs, step by step, torch
  2.13.0 first (the CPU build: a plain `torch` would pull the multi-GB CUDA build),
  then Hugging Face Optimum's ONNX package with onnxruntime, then Microsoft Olive. It is
  idempotent: a step whose requirements did not change since it last succeeded is
  skipped. Each step's outcome (versions, or the one-line cause of a failure) goes to
  build/peers-venv/peers.json, which the tables quote. torchvision is never installed
  (its wheel on the registry is built for another torch and breaks transformers'
  imports); if a dependency pulls it in, it is removed again and the record says so.
- `peer_environment()` is the environment every peer command runs in (offline Hugging
  Face hub, no telemetry); peers.py runs the peers' own command-line tools
  (`optimum-cli`, `olive run`) from this venv, one conversion step per process, so it can
  time each one and read its peak RSS.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "build" / "peers-venv"
RECORD = VENV / "peers.json"
TORCH = "2.13.0"
ONNXRUNTIME = "1.32.0"

# (step, requirements). Optimum's ONNX exporter and its onnxruntime classes
# (ORTOptimizer, ORTQuantizer) moved from `optimum[onnxruntime]` to the `optimum-onnx`
# distribution with optimum 2.0; `optimum[onnxruntime]` now only depends on it.
STEPS: list[tuple[str, list[str]]] = [
    ("torch", [f"torch=={TORCH}"]),
    ("optimum", ["optimum-onnx[onnxruntime]", "transformers", f"onnxruntime=={ONNXRUNTIME}"]),
    # onnxoptimizer: the extra dependency Olive declares for OnnxPeepholeOptimizer (without
    # it the pass only warns and does less)
    ("olive", ["olive-ai", "onnxoptimizer", f"onnxruntime=={ONNXRUNTIME}"]),
]
# Distributions whose versions the tables report.
REPORTED = ["torch", "transformers", "onnx", "onnxruntime", "onnxscript", "optimum",
            "optimum-onnx", "olive-ai", "onnxoptimizer", "numpy", "onnx-ir"]
# What each peer must be able to import for its conversions to run.
SMOKE = {
    "optimum": "import optimum.exporters.onnx, optimum.onnxruntime; "
               "from optimum.onnxruntime import ORTOptimizer, ORTQuantizer",
    "olive": "import olive; from olive.workflows import run",
}


def python() -> Path:
    return VENV / "bin" / "python"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # pip's useful line is the ERROR one, not the trailing hint
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors[0] if errors else lines[-1] if lines else "no output")[:300]


def _load_record() -> dict:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return {"steps": {}}


def _pip(args: list[str], log) -> subprocess.CompletedProcess:
    command = [str(python()), "-m", "pip", *args]
    log(" ".join(command[2:]))
    return subprocess.run(command, capture_output=True, text=True)


def installed_versions() -> dict[str, str]:
    """Versions of every distribution in the peers venv (name lower-cased)."""
    done = subprocess.run([str(python()), "-m", "pip", "list", "--format", "json"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {}
    return {d["name"].lower(): d["version"] for d in json.loads(done.stdout)}


def setup(log=lambda message: print(message, file=sys.stderr, flush=True)) -> dict:
    """Create or update build/peers-venv; return (and write) the record of the steps."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    if not python().exists():
        log(f"creating {VENV}")
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        _pip(["install", "--quiet", "--upgrade", "pip"], log)
    record = _load_record()
    record.setdefault("steps", {})
    constraints = VENV / "constraints.txt"
    for index, (step, requirements) in enumerate(STEPS):
        digest = hashlib.sha256(json.dumps(requirements).encode()).hexdigest()[:16]
        previous = record["steps"].get(step, {})
        if previous.get("ok") and previous.get("digest") == digest:
            log(f"{step}: already installed")
            continue
        started = time.perf_counter()
        args = ["install", "--quiet", *requirements]
        if index > 0:
            # later steps keep the CPU torch of the first one: pin the version it installed
            args += ["-c", str(constraints)]
        done = _pip(args, log)
        entry = {"digest": digest, "requirements": requirements,
                 "seconds": round(time.perf_counter() - started, 1),
                 "ok": done.returncode == 0}
        if done.returncode != 0:
            entry["cause"] = _last_line(done.stderr or done.stdout)
            log(f"{step}: FAILED: {entry['cause']}")
        if step == "torch" and entry["ok"]:
            version = installed_versions().get("torch", "")
            constraints.write_text(f"torch=={version}\n")
            if "+cpu" not in version:
                entry["ok"] = False
                entry["cause"] = (f"torch {version} is not the CPU build; the later steps "
                                  "would run on a CUDA wheel")
        if step in SMOKE and entry["ok"]:
            check = subprocess.run([str(python()), "-c", SMOKE[step]], capture_output=True,
                                   text=True, env=peer_environment())
            if check.returncode != 0:
                entry["ok"] = False
                entry["cause"] = "installed but does not import: " + _last_line(check.stderr)
                log(f"{step}: {entry['cause']}")
        record["steps"][step] = entry
        RECORD.write_text(json.dumps(record, indent=2))
    versions = installed_versions()
    if "torchvision" in versions:
        _pip(["uninstall", "--quiet", "--yes", "torchvision"], log)
        record["removed_torchvision"] = versions.pop("torchvision")
    record["versions"] = {name: versions[name] for name in REPORTED if name in versions}
    record["python"] = subprocess.run([str(python()), "-c", "import sys; print(sys.version.split()[0])"],
                                      capture_output=True, text=True).stdout.strip()
    RECORD.write_text(json.dumps(record, indent=2))
    return record


def peer_environment() -> dict[str, str]:
    """The environment every peer process runs in: offline, one thread, no telemetry."""
    env = dict(os.environ)
    env.update({
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": str(ROOT / "build" / "peers" / "hf-home"),
        "OLIVE_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def main(argv: list[str]) -> int:
    if argv[:1] == ["setup"]:
        record = setup()
        print(json.dumps(record, indent=2))
        return 0 if all(s.get("ok") for s in record["steps"].values()) else 1
    print("usage: python benchmarks/peers_env.py setup", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
