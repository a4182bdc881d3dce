"""onnxport beside its peers: Hugging Face Optimum and Microsoft Olive, on the same models.

The peers live in their own virtual environment, build/peers-venv (never .venv):

    .venv/bin/python benchmarks/peers.py --setup     # create/update it, then measure
    .venv/bin/python benchmarks/peers.py [--models tiny_bert,planner,autopilot]
                                         [--iterations N] [--threads N] [--reuse]

`--setup` (benchmarks/peers_env.py) installs torch 2.13.0 (CPU) first, then
optimum-onnx[onnxruntime] (Optimum's ONNX package since optimum 2.0) and olive-ai (with
onnxoptimizer, which its OnnxPeepholeOptimizer uses), with onnxruntime 1.32.0, idempotently; the versions go to build/peers-venv/peers.json and
into the tables' header.

Models (built from code, no hub; HF_HUB_OFFLINE=1 everywhere):

- tiny_bert: transformers BertForSequenceClassification, hidden 64, 2 layers, 2 heads,
  intermediate 256, vocab 1000, 2 labels, random weights (seed 0), saved with
  save_pretrained to build/peers/models/tiny-bert; inputs input_ids, attention_mask,
  token_type_ids at sequence length 32; the attention masks are real padding masks
  (every row keeps 8 to 32 tokens), never random integers.
- planner (examples/zoo/planner.py:build) and autopilot (examples/zoo/autopilot_torch.py:build);
  their weights are also saved as a state_dict that Olive's model loader reads.

Candidates, per model: the baseline, a plain `torch.onnx.export(dynamo=False,
opset_version=17)` with a dynamic batch; then each tool's fp32, optimized and INT8
output:

- Optimum (optimum-cli): `export onnx --task text-classification` (fp32);
  `onnxruntime optimize -O2` and `-O3` on that export; `onnxruntime quantize --avx2`
  (ORTQuantizer, dynamic) on the fp32 export, and on the -O2 output. The zoo models are
  not transformers models, so Optimum's exporter and its ORTOptimizer fusions do not
  apply ("n/a"); its ORTQuantizer runs on the plain export (INT8 row).
- Olive (`olive run` with a JSON workflow): HfModel (tiny_bert) or PyTorchModel with
  a model_loader script (zoo) -> OnnxConversion (fp32); + OrtTransformersOptimization
  with model_type=bert (tiny_bert) or OnnxPeepholeOptimizer (zoo) (optimized); + then
  OnnxDynamicQuantization (INT8). Every option is Olive's default except model_type.
- onnxport (.venv/bin/onnxport): `convert --target cpu --quantize off` (its shipped
  fp32 model: export + simplify, verified) and `--quantize on` (INT8), with its default
  exporter (dynamo), plus `--exporter torchscript --quantize off` as a second route;
  and `--target x86-avx2 --optimize thorough` (the "shipped" row): what the search
  ships for a serving x86 target, timed by onnxport at batch 1 and 8 among every
  candidate that verified (both exporters, transformer fusions, INT8 variants); for
  tiny_bert from the saved directory through the transformers backend (`--task
  text-classification`), the way a user converts a Hugging Face model.
  tiny_bert is verified on the benchmark's own inputs (`--data`), so its masks are valid.

Every conversion step is its own process: wall time from start to exit (interpreter
start-up and imports included), and its peak RSS from GNU time (/usr/bin/time %M: the
largest resident set of that process or of any child it waited for; not os.wait4 here,
which would inherit this torch-sized process's own RSS through fork + exec).
An output made by a chain of steps (Optimum's optimize after its export, an INT8 on the
plain export) is charged the sum of the times and the largest RSS of the chain.

Then all outputs of a model are measured side by side in ONE process and ONE loop:
onnxruntime CPU sessions (intra_op_num_threads=1, inter-op 1, ORT_ENABLE_ALL), every
candidate at batch 1 and at batch 8, one timed call each per iteration, the order
rotating (and reversing) every iteration so noise lands on all alike; medians and p90
over the iterations, and the median relative to the plain export at the same batch.
The max abs error is against the source PyTorch model (eval mode, .venv) on the same
seeded inputs, over both batches. A peer that failed to install or convert keeps its
row, with the one-line cause. No timed assertions; compare the ratios, not the ms.
Everything is written under build/peers/ (logs, artifacts, peers.md).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import peers_env  # noqa: E402  (standard library only)

ROOT = HERE.parent
ZOO = ROOT / "examples" / "zoo"
WORK = ROOT / "build" / "peers"
MODELS_DIR = WORK / "models"
OUT = WORK / "out"
LOGS = WORK / "logs"
VENV_PYTHON = Path(sys.executable)
ONNXPORT = VENV_PYTHON.parent / "onnxport"
PEER_BIN = peers_env.VENV / "bin"
MODELS = ["tiny_bert", "planner", "autopilot"]
SEQ = 32
BATCHES = (1, 8)
STEP_TIMEOUT = 1200  # seconds; a conversion step still running then is stopped
ONNXPORT_RETRIES = 10  # the CLI may break briefly while core/ is being reorganised
ONNXPORT_RETRY_WAIT = 60
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else ""

os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"})


# --- models ------------------------------------------------------------------------------

BERT_FACTORY = '''"""tiny_bert for onnxport and the plain export: the saved model, logits only."""
import torch
from torch import nn
from transformers import BertForSequenceClassification

MODEL_DIR = {model_dir!r}
SEQ = {seq}


class Logits(nn.Module):
    """BertForSequenceClassification returning its logits tensor (not a ModelOutput)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


def make_model():
    return Logits(BertForSequenceClassification.from_pretrained(MODEL_DIR).eval()).eval()


def build(batch: int = 2):
    gen = torch.Generator().manual_seed(0)
    inputs = {{
        "input_ids": torch.randint(0, 1000, (batch, SEQ), generator=gen),
        "attention_mask": torch.ones(batch, SEQ, dtype=torch.int64),
        "token_type_ids": torch.zeros(batch, SEQ, dtype=torch.int64),
    }}
    return make_model(), inputs, ["logits"]
'''

OLIVE_LOADERS = '''"""Olive's model_loader functions for the zoo models (run in the peers venv)."""
import importlib.util

import torch

ZOO = {zoo!r}


def _zoo(name):
    spec = importlib.util.spec_from_file_location("zoo_" + name, ZOO + "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(name, model_path):
    model = _zoo(name).make_model()
    model.load_state_dict(torch.load(model_path, weights_only=True))
    return model.eval()


def load_planner(model_path):
    return _load("planner", model_path)


def load_autopilot_torch(model_path):
    return _load("autopilot_torch", model_path)
'''


@dataclass
class ModelSpec:
    name: str
    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape without batch, dtype)
    output: str
    hf: bool = False
    zoo: str = ""  # examples/zoo module name

    def factory(self) -> str:
        if self.hf:
            return f"{MODELS_DIR / 'bert_factory.py'}:build"
        return f"{ZOO / self.zoo}.py:build"


SPECS = {
    "tiny_bert": ModelSpec("tiny_bert", {n: ((SEQ,), "int64") for n in
                                         ("input_ids", "attention_mask", "token_type_ids")},
                           "logits", hf=True),
    "planner": ModelSpec("planner", {"costmap_input": ((1, 50, 50), "float32"),
                                     "robot_state_input": ((9,), "float32"),
                                     "goal_relative_input": ((3,), "float32"),
                                     "costmap_metadata_input": ((2,), "float32")},
                         "output", zoo="planner"),
    "autopilot": ModelSpec("autopilot", {"sensors": ((20, 25), "float32")}, "rudder",
                           zoo="autopilot_torch"),
}


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def source_model(spec: ModelSpec):
    """The PyTorch model every candidate is compared with, in eval mode."""
    if spec.hf:
        return load_module(MODELS_DIR / "bert_factory.py", "peers_bert_factory").make_model()
    return load_module(ZOO / f"{spec.zoo}.py", f"peers_zoo_{spec.zoo}").make_model()


def prepare_models(specs: list[ModelSpec]) -> None:
    """Write the saved models, factories and loaders the conversions read (build/peers/models)."""
    import torch

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    (MODELS_DIR / "bert_factory.py").write_text(
        BERT_FACTORY.format(model_dir=str(MODELS_DIR / "tiny-bert"), seq=SEQ))
    (MODELS_DIR / "olive_loaders.py").write_text(OLIVE_LOADERS.format(zoo=str(ZOO)))
    for spec in specs:
        if spec.hf:
            from transformers import BertConfig, BertForSequenceClassification

            torch.manual_seed(0)
            config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=256,
                                max_position_embeddings=64, num_labels=2)
            BertForSequenceClassification(config).eval().save_pretrained(
                MODELS_DIR / "tiny-bert")
        else:
            torch.save(source_model(spec).state_dict(), MODELS_DIR / f"{spec.name}.pt")
        import numpy as np

        np.savez(MODELS_DIR / f"{spec.name}-data.npz", **make_feeds(spec, max(BATCHES)))


def make_feeds(spec: ModelSpec, batch: int, seed: int = 0) -> dict[str, Any]:
    """Seeded inputs; for tiny_bert, real padding masks and two token-type segments."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if spec.hf:
        lengths = rng.integers(8, SEQ + 1, batch)
        lengths[0] = SEQ
        positions = np.arange(SEQ)[None, :]
        mask = (positions < lengths[:, None]).astype(np.int64)
        segment = ((positions >= lengths[:, None] // 2) & (mask == 1)).astype(np.int64)
        ids = rng.integers(1, 1000, (batch, SEQ)).astype(np.int64) * mask
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": segment}
    return {name: rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
            for name, (shape, _) in spec.inputs.items()}


def plain_export(model_name: str, output: str) -> int:
    """The baseline (run as its own process): torch.onnx.export, TorchScript, opset 17."""
    import torch

    spec = SPECS[model_name]
    model = source_model(spec)
    example = {k: torch.from_numpy(v) for k, v in make_feeds(spec, 2, seed=1).items()}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, tuple(example.values()), output, dynamo=False, opset_version=17,
                      input_names=list(example), output_names=[spec.output],
                      dynamic_axes={n: {0: "batch"} for n in [*example, spec.output]})
    return 0


# --- running a conversion step -----------------------------------------------------------

@dataclass
class StepResult:
    ok: bool
    seconds: float
    rss_mb: float
    output: str = ""
    cause: str = ""
    retries: int = 0
    flag: str = ""  # measured although the tool itself refused it (onnxport --keep-failed)


ERROR_LINE = re.compile(r"(Error|ERROR|Exception|error:|FAILED|failed|Traceback|No such|"
                        r"not supported|Unsupported)")


def one_line_cause(log_text: str, returncode: int) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if ERROR_LINE.search(ln) and not ln.startswith("Traceback")
            and "Warning" not in ln]
    line = hits[-1] if hits else (lines[-1] if lines else f"exit code {returncode}")
    line = re.sub(r"\s+", " ", line)
    return line[:220] + ("..." if len(line) > 220 else "")


def run_timed(argv: list[str], log: Path, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> tuple[int, float, float, str]:
    """Run argv as one process; (return code, wall s, peak RSS MB, log text).

    The peak RSS comes from /usr/bin/time (GNU time's %M), which forks the command from
    its own small process. Reading it here with os.wait4 would be wrong: Linux carries
    the parent's high-water RSS into a child across fork/vfork + exec, so every child of
    this (torch-sized) process would report at least this process's RSS. Without
    /usr/bin/time, os.wait4's figure is used instead: an upper bound.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log.with_suffix(".time")
    usage_file.unlink(missing_ok=True)
    command = ([GNU_TIME, "-f", "%e %M", "-o", str(usage_file), *argv] if GNU_TIME
               else argv)
    with open(log, "w") as handle:
        handle.write("$ " + " ".join(argv) + "\n")
        handle.flush()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                                   start_new_session=True)
        timer = threading.Timer(STEP_TIMEOUT, lambda: os.killpg(process.pid, 9))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        returncode = os.waitstatus_to_exitcode(status)
    rss_mb = usage.ru_maxrss / 1024
    usage_text = ""
    if GNU_TIME:
        try:
            # "%e %M" is the last line; "Command exited with non-zero status N" or
            # "Command terminated by signal N" may come before it
            usage_text = usage_file.read_text()
            rss_mb = int(usage_text.strip().splitlines()[-1].split()[1]) / 1024
        except (OSError, IndexError, ValueError):
            rss_mb = float("nan")
    text = log.read_text(errors="replace")
    if returncode < 0 or "terminated by signal" in usage_text:
        text += f"\nstopped by a signal (the step timeout is {STEP_TIMEOUT} s)\n"
    return returncode, seconds, rss_mb, text


def find_onnx(directory: Path, pattern: str = "*.onnx") -> Path | None:
    found = sorted(directory.glob(pattern))
    return found[0] if found else None


@dataclass
class Step:
    """One conversion process; `after` names the step whose output it reads."""
    key: str
    make: Callable[[dict[str, StepResult]], StepResult]
    after: str | None = None


def step_plain(spec: ModelSpec) -> Step:
    def make(_):
        out = OUT / spec.name / "plain" / "model.onnx"
        shutil.rmtree(out.parent, ignore_errors=True)
        rc, s, rss, text = run_timed([str(VENV_PYTHON), str(HERE / "peers.py"), "--plain-export",
                                      spec.name, str(out)], LOGS / f"{spec.name}-plain.log")
        ok = rc == 0 and out.exists()
        return StepResult(ok, s, rss, str(out) if ok else "", "" if ok else one_line_cause(text, rc))
    return Step("plain", make)


def peers_ready(step: str) -> str:
    """'' if the peers venv has `step` (optimum, olive) installed and importing, else why not."""
    record = peers_env._load_record()
    entry = record.get("steps", {}).get(step)
    if not peers_env.python().exists() or entry is None:
        return "not installed: run benchmarks/peers.py --setup"
    if not entry.get("ok"):
        return f"install failed: {entry.get('cause', '?')}"
    return ""


def peer_step(spec: ModelSpec, key: str, argv: list[str], out_dir: Path, pattern: str,
              peer: str, after: str | None = None, cwd: Path | None = None,
              before: Callable[[], None] | None = None) -> Step:
    def make(done: dict[str, StepResult]) -> StepResult:
        why = peers_ready(peer)
        if why:
            return StepResult(False, 0, 0, cause=why)
        shutil.rmtree(out_dir, ignore_errors=True)
        if before:
            before()
        rc, s, rss, text = run_timed(argv, LOGS / f"{spec.name}-{key}.log", cwd=cwd,
                                     env=peers_env.peer_environment())
        model = find_onnx(out_dir, pattern) if out_dir.exists() else None
        ok = rc == 0 and model is not None
        cause = "" if ok else (one_line_cause(text, rc) if rc else "no .onnx written")
        return StepResult(ok, s, rss, str(model) if ok else "", cause)
    return Step(key, make, after)


def optimum_steps(spec: ModelSpec) -> list[Step]:
    cli = str(PEER_BIN / "optimum-cli")
    base = OUT / spec.name
    steps = []
    if spec.hf:
        export = base / "optimum-fp32"
        steps.append(peer_step(spec, "optimum-fp32",
                               [cli, "export", "onnx", "--model", str(MODELS_DIR / "tiny-bert"),
                                "--task", "text-classification", str(export)],
                               export, "model.onnx", "optimum"))
        for level in ("O2", "O3"):
            steps.append(peer_step(spec, f"optimum-{level}",
                                   [cli, "onnxruntime", "optimize", "--onnx_model", str(export),
                                    f"-{level}", "-o", str(base / f"optimum-{level}")],
                                   base / f"optimum-{level}", "*.onnx", "optimum",
                                   after="optimum-fp32"))
        steps.append(peer_step(spec, "optimum-int8",
                               [cli, "onnxruntime", "quantize", "--onnx_model", str(export),
                                "--avx2", "-o", str(base / "optimum-int8")],
                               base / "optimum-int8", "*.onnx", "optimum", after="optimum-fp32"))
        steps.append(peer_step(spec, "optimum-O2-int8",
                               [cli, "onnxruntime", "quantize", "--onnx_model",
                                str(base / "optimum-O2"), "--avx2", "-o",
                                str(base / "optimum-O2-int8")],
                               base / "optimum-O2-int8", "*.onnx", "optimum", after="optimum-O2"))
    else:
        # ORTQuantizer quantizes every .onnx in a directory: give it the plain export's
        steps.append(peer_step(spec, "optimum-int8",
                               [cli, "onnxruntime", "quantize", "--onnx_model",
                                str(base / "plain"), "--avx2", "-o", str(base / "optimum-int8")],
                               base / "optimum-int8", "*.onnx", "optimum", after="plain"))
    return steps


def olive_config(spec: ModelSpec, variant: str, run_dir: Path) -> dict:
    if spec.hf:
        model = {"type": "HfModel", "model_path": str(MODELS_DIR / "tiny-bert"),
                 "task": "text-classification"}
        optimize = {"type": "OrtTransformersOptimization", "model_type": "bert"}
    else:
        names = list(spec.inputs)
        model = {"type": "PyTorchModel", "model_path": str(MODELS_DIR / f"{spec.name}.pt"),
                 "model_script": str(MODELS_DIR / "olive_loaders.py"),
                 "model_loader": f"load_{spec.zoo}",
                 "io_config": {"input_names": names,
                               "input_shapes": [[1, *spec.inputs[n][0]] for n in names],
                               "input_types": [spec.inputs[n][1] for n in names],
                               "output_names": [spec.output],
                               "dynamic_axes": {n: {"0": "batch"} for n in
                                                [*names, spec.output]}}}
        optimize = {"type": "OnnxPeepholeOptimizer"}
    passes = {"conversion": {"type": "OnnxConversion"}}
    if variant in ("optimized", "int8"):
        passes["optimize"] = optimize
    if variant == "int8":
        passes["quantize"] = {"type": "OnnxDynamicQuantization"}
    cpu = {"type": "LocalSystem", "accelerators": [
        {"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}]}
    return {"input_model": model, "systems": {"local_system": cpu}, "passes": passes,
            "host": "local_system", "target": "local_system", "evaluate_input_model": False,
            "cache_dir": str(run_dir / "cache"), "output_dir": str(run_dir / "output"),
            "log_severity_level": 1}


def olive_steps(spec: ModelSpec) -> list[Step]:
    steps = []
    for variant in ("fp32", "optimized", "int8"):
        # Olive resolves a string option that names an existing path relative to the
        # working directory as that path (model_type "bert" beside a "bert" folder became
        # the folder): run it from a directory that holds only its own config.
        run_dir = OUT / spec.name / f"olive-{variant}"
        config = run_dir / "workflow.json"

        def before(run_dir=run_dir, config=config, variant=variant):
            run_dir.mkdir(parents=True, exist_ok=True)
            config.write_text(json.dumps(olive_config(spec, variant, run_dir), indent=2))
        steps.append(peer_step(spec, f"olive-{variant}",
                               [str(PEER_BIN / "olive"), "run", "--config", str(config)],
                               run_dir, "output/*.onnx", "olive", cwd=run_dir, before=before))
    return steps


def onnxport_step(spec: ModelSpec, key: str, extra: list[str], target: str = "cpu",
                  source: str = "") -> Step:
    def make(_):
        out = OUT / spec.name / key
        argv = [str(ONNXPORT), "convert", source or spec.factory(), "-o", str(out),
                "--target", target,
                "--overwrite", "--threads", "1", *extra]
        if spec.hf:
            argv += ["--data", str(MODELS_DIR / f"{spec.name}-data.npz")]
        retries = 0
        while True:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(f"{out}.failed", ignore_errors=True)
            rc, s, rss, text = run_timed(argv, LOGS / f"{spec.name}-{key}.log", cwd=WORK)
            broken = (rc == 1 and "internal error" in text and re.search(
                r"ImportError|ModuleNotFoundError|AttributeError|SyntaxError|NameError", text)
            ) or (rc == 2 and "invalid choice: 'convert'" in text)
            if not broken or retries >= ONNXPORT_RETRIES:
                break
            retries += 1
            print(f"    onnxport CLI broken ({one_line_cause(text, rc)}); retry {retries} in "
                  f"{ONNXPORT_RETRY_WAIT} s", file=sys.stderr, flush=True)
            time.sleep(ONNXPORT_RETRY_WAIT)
        model = find_onnx(out / target) if (out / target).exists() else None
        ok = rc == 0 and model is not None
        kept = Path(f"{out}.failed") / target
        if rc == 3 and "--keep-failed" in extra and kept.exists() and find_onnx(kept):
            # verification refused it; measure it anyway, flagged, so the table shows
            # what the refused INT8 model would have cost and gained -- if what was kept
            # is the INT8 candidate at all (it has been the fp32 model of the stage before)
            if is_int8(find_onnx(kept)):
                return StepResult(True, s, rss, str(find_onnx(kept)), "", retries,
                                  flag=f"REFUSED by onnxport (exit 3), measured from "
                                       f"{kept.parent.name}: {one_line_cause(text, rc)}")
            return StepResult(False, s, rss, "", f"exit {rc}: {one_line_cause(text, rc)} "
                              f"(and --keep-failed kept an fp32 model, not the INT8 "
                              f"candidate, so it is not measured)", retries)
        return StepResult(ok, s, rss, str(model) if ok else "",
                          "" if ok else f"exit {rc}: {one_line_cause(text, rc)}", retries)
    return Step(key, make)


INT8_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM",
            "DynamicQuantizeMatMul", "QAttention", "QuantizeLinear", "QLinearMatMul",
            "QLinearConv", "MatMulIntegerToFloat"}


def is_int8(path: Path) -> bool:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in INT8_OPS for n in model.graph.node)


@dataclass
class Candidate:
    tool: str
    variant: str
    chain: list[str]  # step keys, the last one makes the model
    note: str = ""
    na: str = ""  # why the tool does not apply to this model


def candidates(spec: ModelSpec) -> tuple[list[Step], list[Candidate]]:
    steps = [step_plain(spec), *optimum_steps(spec), *olive_steps(spec),
             onnxport_step(spec, "onnxport-off", ["--quantize", "off"]),
             onnxport_step(spec, "onnxport-on", ["--quantize", "on", "--keep-failed"]),
             onnxport_step(spec, "onnxport-ts-off", ["--quantize", "off", "--exporter",
                                                     "torchscript"]),
             onnxport_step(spec, "onnxport-shipped", ["--optimize", "thorough", *(
                 ["--task", "text-classification"] if spec.hf else [])], target="x86-avx2",
                 source=str(MODELS_DIR / "tiny-bert") if spec.hf else "")]
    rows = [Candidate("torch.onnx", "plain", ["plain"], "TorchScript exporter, opset 17")]
    if spec.hf:
        rows += [
            Candidate("optimum", "fp32", ["optimum-fp32"], "optimum-cli export onnx"),
            Candidate("optimum", "O2", ["optimum-fp32", "optimum-O2"], "ORTOptimizer -O2"),
            Candidate("optimum", "O3", ["optimum-fp32", "optimum-O3"],
                      "-O3: O2 + GELU approximation"),
            Candidate("optimum", "int8", ["optimum-fp32", "optimum-int8"],
                      "ORTQuantizer avx2 dynamic, on the fp32 export"),
            Candidate("optimum", "O2+int8", ["optimum-fp32", "optimum-O2", "optimum-O2-int8"],
                      "ORTQuantizer avx2 on the -O2 output"),
        ]
    else:
        why = ("not a transformers model: Optimum's exporter and ORTOptimizer's fusions "
               "need a transformers/timm/diffusers model")
        rows += [Candidate("optimum", "fp32", [], na=why),
                 Candidate("optimum", "optimized", [], na=why),
                 Candidate("optimum", "int8", ["plain", "optimum-int8"],
                           "ORTQuantizer avx2 dynamic, on the plain export")]
    opt = "OrtTransformersOptimization bert" if spec.hf else "OnnxPeepholeOptimizer"
    rows += [Candidate("olive", "fp32", ["olive-fp32"], "OnnxConversion"),
             Candidate("olive", "optimized", ["olive-optimized"], f"+ {opt}"),
             Candidate("olive", "int8", ["olive-int8"], f"+ {opt} + OnnxDynamicQuantization"),
             Candidate("onnxport", "fp32", [], na="onnxport ships export+simplify as its fp32 "
                       "model: the 'optimized' row"),
             Candidate("onnxport", "optimized", ["onnxport-off"], "cpu, --quantize off (dynamo)"),
             Candidate("onnxport", "optimized-ts", ["onnxport-ts-off"],
                       "cpu, --quantize off, --exporter torchscript"),
             Candidate("onnxport", "int8", ["onnxport-on"], "cpu, --quantize on"),
             Candidate("onnxport", "shipped", ["onnxport-shipped"],
                       "x86-avx2 --optimize thorough: the search's pick (batch 1 and 8)")]
    return steps, rows


def run_conversions(spec: ModelSpec, reuse: dict[str, dict]) -> dict[str, StepResult]:
    steps, _ = candidates(spec)
    done: dict[str, StepResult] = {}
    for step in steps:
        previous = reuse.get(step.key)
        if previous and previous.get("ok") and Path(previous["output"]).exists():
            done[step.key] = StepResult(**previous)
            continue
        if step.after and not (done.get(step.after) and done[step.after].ok):
            upstream = done.get(step.after)
            done[step.key] = StepResult(False, 0, 0, cause=f"needs {step.after}, which failed"
                                        + (f": {upstream.cause}" if upstream else ""))
            continue
        print(f"  {spec.name}: {step.key} ...", file=sys.stderr, flush=True)
        result = step.make(done)
        done[step.key] = result
        status = "ok" if result.ok else f"FAILED: {result.cause}"
        print(f"    {result.seconds:.1f} s, {result.rss_mb:.0f} MB, {status}", file=sys.stderr,
              flush=True)
    return done


# --- measuring ---------------------------------------------------------------------------

FUSED = ["Attention", "QAttention", "MultiHeadAttention", "EmbedLayerNormalization",
         "QEmbedLayerNormalization", "SkipLayerNormalization", "LayerNormalization",
         "BiasGelu", "FastGelu", "Gelu", "FusedMatMul", "FusedConv", "FusedGemm",
         "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger",
         "DynamicQuantizeLinear", "LSTM", "DynamicQuantizeLSTM", "Loop", "Scan", "Conv",
         "Gemm", "MatMul"]
SHORT = {"SkipLayerNormalization": "SkipLN", "EmbedLayerNormalization": "EmbedLN",
         "QEmbedLayerNormalization": "QEmbedLN", "LayerNormalization": "LN",
         "DynamicQuantizeLinear": "DQL", "DynamicQuantizeLSTM": "DQ-LSTM",
         "MultiHeadAttention": "MHA", "MatMulIntegerToFloat": "MatMulI2F",
         "DynamicQuantizeMatMul": "DQMatMul"}


def graph_summary(path: Path) -> tuple[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = collections.Counter(n.op_type for n in model.graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    parts = [f"{SHORT.get(op, op)} {counts[op]}" for op in FUSED if counts.get(op)]
    return (f"opset {opset}, {sum(counts.values())} nodes: " + ", ".join(parts[:6]),
            sum(counts.values()))


def model_size(path: Path) -> int:
    import onnx

    size = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    extra = {e.value for t in model.graph.initializer for e in t.external_data
             if e.key == "location"}
    return size + sum((path.parent / name).stat().st_size for name in extra)


@dataclass
class Row:
    tool: str
    variant: str
    note: str
    status: str  # ok, n/a, FAILED
    cause: str = ""
    path: str = ""
    seconds: float | None = None
    rss_mb: float | None = None
    size: int | None = None
    graph: str = ""
    error: float | None = None
    ms: dict[int, tuple[float, float]] = field(default_factory=dict)  # batch -> (p50, p90)
    retries: int = 0
    flag: str = ""


def make_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def measure(spec: ModelSpec, rows: list[Row], iterations: int, threads: int,
            warmup: int = 20) -> None:
    """Error against PyTorch, then one interleaved latency loop over every row and batch."""
    import numpy as np
    import torch

    model = source_model(spec)
    largest = make_feeds(spec, max(BATCHES))
    feeds = {b: {k: v[:b] for k, v in largest.items()} for b in BATCHES}
    with torch.inference_mode():
        expected = {b: model(**{k: torch.from_numpy(v) for k, v in f.items()}).numpy()
                    for b, f in feeds.items()}
    runs: list[tuple[Row, int, Callable[[], Any]]] = []
    for row in rows:
        if row.status != "ok":
            continue
        try:
            session = make_session(row.path, threads)
        except Exception as error:  # noqa: BLE001  a peer's model that does not load
            row.status, row.cause = "FAILED", f"does not load: {str(error).splitlines()[0][:200]}"
            continue
        names = [i.name for i in session.get_inputs()]
        worst = 0.0
        for batch in BATCHES:
            feed = {n: feeds[batch][n] for n in names if n in feeds[batch]}
            missing = [n for n in names if n not in feeds[batch]]
            if missing:
                row.status, row.cause = "FAILED", f"unexpected inputs {missing}"
                break
            try:
                actual = session.run(None, feed)[0]
            except Exception as error:  # noqa: BLE001
                row.status = "FAILED"
                row.cause = f"fails at batch {batch}: {str(error).splitlines()[0][:160]}"
                break
            if actual.shape != expected[batch].shape:
                row.status = "FAILED"
                row.cause = f"batch {batch}: shape {actual.shape}, expected {expected[batch].shape}"
                break
            worst = max(worst, float(np.max(np.abs(actual.astype(np.float64)
                                                   - expected[batch]))))
            runs.append((row, batch, lambda s=session, f=feed: s.run(None, f)))
        if row.status == "ok":
            row.error = worst
        else:
            runs = [r for r in runs if r[0] is not row]
    for _ in range(warmup):
        for _, _, run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    order = list(range(len(runs)))
    clock = time.perf_counter_ns
    for index in range(iterations):
        shift = index % len(runs)
        this = order[shift:] + order[:shift]
        if index % 2:
            this.reverse()
        for i in this:
            started = clock()
            runs[i][2]()
            times[i].append((clock() - started) / 1e6)
    for (row, batch, _), samples in zip(runs, times):
        samples.sort()
        row.ms[batch] = (statistics.median(samples), samples[int(0.9 * (len(samples) - 1))])


# --- reporting ---------------------------------------------------------------------------

def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def table(spec: ModelSpec, rows: list[Row]) -> str:
    plain = next((r for r in rows if r.variant == "plain" and r.ms), None)
    heads = ["tool", "output", "b1 p50 ms", "b1 p90", "b1 vs plain", "b8 p50 ms", "b8 p90",
             "b8 vs plain", "max abs err", "size KB", "convert s", "peak RSS MB", "graph / note"]
    align = [":--", ":--"] + ["--:"] * 10 + [":--"]
    lines = [f"### {spec.name}", "", "| " + " | ".join(heads) + " |",
             "| " + " | ".join(align) + " |"]
    for r in rows:
        cells = [r.tool, r.variant]
        for batch in BATCHES:
            p50, p90 = r.ms.get(batch, (None, None))
            ratio = (f"{p50 / plain.ms[batch][0]:.2f}x"
                     if p50 is not None and plain and batch in plain.ms else "-")
            cells += [fmt_ms(p50), fmt_ms(p90), ratio]
        cells += ["-" if r.error is None else f"{r.error:.1e}",
                  "-" if r.size is None else f"{r.size / 1000:.0f}",
                  "-" if r.seconds is None else f"{r.seconds:.1f}",
                  "-" if r.rss_mb is None else f"{r.rss_mb:.0f}"]
        if r.status == "n/a":
            note = f"n/a: {r.cause}"
        elif r.status != "ok":
            note = f"**FAILED**: {r.cause}".replace("|", "/")
        else:
            note = f"{r.note}; {r.graph}" + (f"; CLI retried {r.retries}x" if r.retries else "")
            if r.flag:
                note = f"**{r.flag}**; {note}"
        cells.append(note.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(re.sub(r"\((R|TM)\)|\bCPU\b", "", line.split(":", 1)[1]).split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(args: argparse.Namespace) -> str:
    record = peers_env._load_record()
    peers = record.get("versions", {})
    peer_text = ", ".join(f"{k} {v}" for k, v in peers.items()) or "peers venv not set up"
    ours = []
    for name in ("onnxport", "torch", "transformers", "onnx", "onnxruntime", "onnxsim",
                 "onnxscript"):
        try:
            ours.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    failed = [f"{k}: {v.get('cause')}" for k, v in record.get("steps", {}).items()
              if not v.get("ok")]
    return "\n".join([
        f"{datetime.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} cores (shared); "
        f"onnxruntime CPU, {args.threads} intra-op thread, {args.iterations} interleaved "
        f"iterations per candidate and batch",
        f"- measuring venv (.venv): {', '.join(ours)}",
        f"- peers venv (build/peers-venv): {peer_text}",
        *(f"- peers install FAILED: {f}" for f in failed),
    ])


FOOTNOTE = """\
vs plain: median latency / the plain torch.onnx export's median at the same batch (lower
is faster). max abs err: against the PyTorch source on the same seeded inputs, batch 1 and
8. size: the .onnx file (+ external data). convert s / peak RSS: the conversion
process(es) for that output, from the source model, including interpreter start-up and
imports (a chain is summed; RSS is the largest process, GNU time's %M). graph: node
counts of the saved file (onnxruntime fuses more when it loads it).
"""


# --- main --------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", action="store_true",
                        help="create/update build/peers-venv (idempotent), then measure")
    parser.add_argument("--models", help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--iterations", type=int, default=800,
                        help="timed iterations per candidate and batch (default 800)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the conversions of the last run (build/peers/conversions.json)")
    parser.add_argument("--markdown", type=Path, default=WORK / "peers.md",
                        help="also write the tables here (default build/peers/peers.md)")
    parser.add_argument("--plain-export", nargs=2, metavar=("MODEL", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.model_list = [m.strip() for m in (args.models or ",".join(MODELS)).split(",")
                       if m.strip()]
    unknown = [m for m in args.model_list if m not in SPECS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.iterations < 10:
        parser.error("need --iterations >= 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_export:
        return plain_export(*args.plain_export)
    if args.setup:
        record = peers_env.setup()
        for step, entry in record["steps"].items():
            print(f"setup {step}: {'ok' if entry.get('ok') else 'FAILED: ' + entry.get('cause', '')}",
                  file=sys.stderr)
    import torch

    torch.set_num_threads(args.threads)
    specs = [SPECS[m] for m in args.model_list]
    WORK.mkdir(parents=True, exist_ok=True)
    prepare_models(specs)
    record_path = WORK / "conversions.json"
    saved = json.loads(record_path.read_text()) if args.reuse and record_path.exists() else {}
    tables = []
    for spec in specs:
        print(f"{spec.name}: converting", file=sys.stderr, flush=True)
        done = run_conversions(spec, saved.get(spec.name, {}))
        saved[spec.name] = {k: vars(v) for k, v in done.items()}
        record_path.write_text(json.dumps(saved, indent=2))
        _, wanted = candidates(spec)
        rows = []
        for c in wanted:
            if c.na:
                rows.append(Row(c.tool, c.variant, c.note, "n/a", c.na))
                continue
            chain = [done[k] for k in c.chain]
            failed = next((s for s in chain if not s.ok), None)
            row = Row(c.tool, c.variant, c.note, "ok" if failed is None else "FAILED",
                      failed.cause if failed else "", chain[-1].output if not failed else "",
                      sum(s.seconds for s in chain), max(s.rss_mb for s in chain),
                      retries=sum(s.retries for s in chain))
            row.flag = chain[-1].flag if failed is None else ""
            if failed is None:
                row.size = model_size(Path(row.path))
                row.graph, _ = graph_summary(Path(row.path))
            rows.append(row)
        print(f"{spec.name}: measuring {sum(r.status == 'ok' for r in rows)} outputs x "
              f"{len(BATCHES)} batches, {args.iterations} iterations", file=sys.stderr,
              flush=True)
        measure(spec, rows, args.iterations, args.threads)
        tables.append(table(spec, rows))
        print(tables[-1], flush=True)
    text = header(args) + "\n\n" + "\n".join(tables) + "\n" + FOOTNOTE
    print(header(args))
    print(FOOTNOTE)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(f"wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
