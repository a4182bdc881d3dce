"""Breadth: real architectures through the hand-written export routes and through onnxport.

For every model of `benchmarks/breadth_models.py` (timm CNNs and ViT, a plain torch.nn
video model, Hugging Face transformers from tiny configs, keras.applications and three
hand-written Keras models; random weights, fixed seeds, nothing downloaded) it runs:

- the plain routes a user writes by hand:
  - PyTorch: `torch.onnx.export(model, args, f, kwargs=..., dynamo=True,
    dynamic_shapes={name: {0: Dim("batch")}})` and `torch.onnx.export(..., dynamo=False,
    opset_version=17, dynamic_axes={name: {0: "batch"}})`;
  - Keras: `model.export(path, format="onnx")` and `tf2onnx.convert.from_keras(model,
    input_signature=[TensorSpec((None, ...))], opset=17, output_path=path)`;

  a hand route "ships" (ok) when it writes a file that onnxruntime loads and whose outputs
  match the source's on the factory's example inputs within atol 1e-4, rtol 1e-3
  (`np.allclose`, shapes equal). The cell notes, without changing the verdict, when the
  same file then fails at batch 1 (a batch the exporter froze) or dropped an input;
- onnxport's default conversion, `onnxport convert benchmarks/breadth_models.py:NAME -o
  TMPDIR --json`: exit code 0 ships; otherwise the exit code and the one-line error.

Every (model, route) runs in a fresh process with a timeout, so a crash, an abort or a
hang in one does not stop the table. The last column, "source spread", is the largest
difference between the source's outputs for the example's two rows: a model whose
outputs barely depend on its input (random weights saturate) passes any comparison, so a
pass on a row marked "flat" proves little.

    .venv/bin/python benchmarks/zoo_breadth.py [--only NAME ...] [--timeout S] [--jobs N]
                                               [--markdown FILE] [--json FILE]

Needs `timm` and `transformers` in the venv (see breadth_models.py for the torchvision
caveat); runs on the CPU, one model at a time by default (the machines are shared).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_FILE = Path(__file__).resolve().parent / "breadth_models.py"
VENV_BIN = ROOT / ".venv" / "bin"
MARK = "@@BREADTH-RESULT@@"
ATOL, RTOL = 1e-4, 1e-3
FLAT = 1e-4  # a source spread below this (hand atol, 10x onnxport's): rows barely differ

HAND_ROUTES = {
    "torch": ("dynamo", "torchscript"),
    "keras": ("keras_export", "from_keras"),
}
COLUMNS = [("dynamo", "torch dynamo"), ("torchscript", "torch torchscript"),
           ("keras_export", "keras export"), ("from_keras", "tf2onnx from_keras"),
           ("onnxport", "onnxport")]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="-1", PYTHONWARNINGS="ignore")
    return env


# ============================================================================ the worker
# (runs in a child process: `zoo_breadth.py --worker ROUTE NAME DIR`)


def _load_models_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("breadth_models", MODELS_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["breadth_models"] = module
    spec.loader.exec_module(module)
    return module


def _cause(exc: BaseException, limit: int = 240) -> str:
    """The innermost error of a chain, as `Type: first line` (torch.onnx wraps the real
    error in a long "step 1/3" message)."""
    chain, current = [], exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    inner = chain[-1]
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(inner))
    wrapped = re.search(r"<class '([\w.]+)'>: (.+)", text)
    if wrapped:
        name, first = wrapped.group(1).rpartition(".")[2], wrapped.group(2)
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        name, first = type(inner).__name__, (lines[0] if lines else "")
    line = f"{name}: {first}".strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _flatten_torch(value) -> list:
    import torch

    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _flatten_torch(v)]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flatten_torch(v)]
    raise TypeError(f"the model returned a {type(value).__name__}")


def _spread(outputs: list) -> float | None:
    """Largest |row i - row 0| over all outputs: how much the output depends on the
    input across the example's rows."""
    import numpy as np

    values = [float(np.max(np.abs(o[1:].astype("float64") - o[:1].astype("float64"))))
              for o in outputs if getattr(o, "ndim", 0) >= 1 and o.shape[0] >= 2]
    return max(values) if values else None


def _ort_check(path: Path, feeds_by_name: dict, ordered: list, reference: list,
               batch1: tuple | None) -> dict:
    """Load in onnxruntime, run on the example inputs, compare; then try batch 1."""
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc)
        op = re.search(r'In Node, \("([^"]*)", (\w+), "([^"]*)".*?Error (No Op registered '
                       r'for \w+ with domain_version of \d+)', text, re.S)
        if op:
            raise RuntimeError(f"onnxruntime cannot load it: {op.group(4)} "
                               f"(node {op.group(1)})") from None
        raise RuntimeError("onnxruntime cannot load it: "
                           + text.partition(" failed:")[2].strip()[:300]) from None
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    notes = []

    def feeds_for(by_name, arrays):
        if all(n in by_name for n in names):
            return {n: by_name[n] for n in names}
        if len(names) == len(arrays):  # exporter's own names: by position
            return dict(zip(names, arrays))
        missing = [n for n in names if n not in by_name]
        raise RuntimeError(f"the ONNX model has input(s) the example does not: "
                           f"{', '.join(missing)} (example: {', '.join(by_name)})")

    dropped = [n for n in feeds_by_name if n not in names] \
        if all(n in feeds_by_name for n in names) else []
    if dropped:
        notes.append(f"dropped input {', '.join(dropped)}")
    got = session.run(None, feeds_for(feeds_by_name, ordered))
    result = {"onnx_inputs": names, "onnx_outputs": [o.name for o in session.get_outputs()],
              "notes": notes}
    if len(got) != len(reference):
        result.update(ok=False, cause=f"{len(got)} ONNX outputs, the source has "
                                      f"{len(reference)}")
        return result
    worst, problems = 0.0, []
    for index, (a, b) in enumerate(zip(got, reference)):
        a = np.asarray(a)
        if a.shape != b.shape:
            problems.append(f"output {index} shape {list(a.shape)} != {list(b.shape)}")
            continue
        if a.dtype.kind in "fc":
            finite = np.isfinite(b)
            if not np.array_equal(np.isfinite(a), finite):
                problems.append(f"output {index}: NaN/inf differ")
                continue
            if finite.any():
                worst = max(worst, float(np.max(np.abs(a[finite].astype("float64")
                                                       - b[finite].astype("float64")))))
            if not np.allclose(a, b, atol=ATOL, rtol=RTOL, equal_nan=True):
                problems.append(f"output {index} max abs err "
                                f"{float(np.nanmax(np.abs(a - b))):.2g}")
        elif not np.array_equal(a, b):
            problems.append(f"output {index} differs")
    result["max_abs"] = worst
    result["ok"] = not problems
    if problems:
        result["cause"] = "mismatch: " + "; ".join(problems[:3])
    if result["ok"] and batch1 is not None:
        by_name1, ordered1, reference1 = batch1
        try:
            got1 = session.run(None, feeds_for(by_name1, ordered1))
            bad = [i for i, (a, b) in enumerate(zip(got1, reference1))
                   if np.asarray(a).shape != b.shape
                   or not np.allclose(a, b, atol=ATOL, rtol=RTOL, equal_nan=True)]
            if bad:
                notes.append("batch 1 mismatches")
        except Exception as exc:  # noqa: BLE001 - any ORT failure here is the finding
            notes.append("batch 1 fails: " + _cause(exc, 100))
    return result


def _torch_worker(route: str, name: str, workdir: Path, built, early: dict) -> dict:
    import inspect

    import torch

    model, example = built[0], built[1]
    output_names = list(built[2]) if len(built) > 2 else None
    signature = inspect.signature(model.forward).parameters.values()
    params = [p.name for p in signature if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    open_ended = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in signature)
    if isinstance(example, dict):
        args, kwargs, names = (), dict(example), list(example)
        # onnxport calls a forward() that takes **kwargs with the dict's values by
        # position; that only binds them right if the keys are forward()'s first names
        early["forward"] = {"open_ended": open_ended, "parameters": params[:8],
                            "dict_keys": names,
                            "by_position_binds_right": names == params[:len(names)]}
    else:
        args = tuple(example) if isinstance(example, (tuple, list)) else (example,)
        kwargs = {}
        names = params[:len(args)]
    with torch.no_grad():
        source = model(*args, **kwargs)
        reference = _flatten_torch(source)
        first = lambda t: t[:1] if isinstance(t, torch.Tensor) else t  # noqa: E731
        args1 = tuple(first(a) for a in args)
        kwargs1 = {k: first(v) for k, v in kwargs.items()}
        reference1 = _flatten_torch(model(*args1, **kwargs1))
    early["spread"] = _spread(reference)
    if output_names is None:
        keys = list(source.keys()) if isinstance(source, dict) else None
        output_names = keys if keys and len(keys) == len(reference) else (
            ["output"] if len(reference) == 1
            else [f"output_{i}" for i in range(len(reference))])
    path = workdir / f"{name}.onnx"
    started = time.perf_counter()
    if route == "dynamo":
        batch = torch.export.Dim("batch")
        dynamic_shapes = ({n: {0: batch} for n in kwargs} if kwargs
                          else tuple({0: batch} for _ in args))
        torch.onnx.export(model, args, str(path), kwargs=kwargs or None, dynamo=True,
                          input_names=names, output_names=output_names,
                          dynamic_shapes=dynamic_shapes)
    else:
        torch.onnx.export(model, args, str(path), kwargs=kwargs or None, dynamo=False,
                          opset_version=17, input_names=names, output_names=output_names,
                          dynamic_axes={n: {0: "batch"} for n in [*names, *output_names]})
    export_s = time.perf_counter() - started
    tensors = [*args, *kwargs.values()]
    numpy_of = lambda t: t.detach().cpu().numpy()  # noqa: E731
    by_name = {n: numpy_of(t) for n, t in zip(names, tensors)}
    by_name1 = {n: v[:1] for n, v in by_name.items()}
    result = _ort_check(path, by_name, list(by_name.values()), reference,
                        (by_name1, list(by_name1.values()), reference1))
    result.update(export_s=export_s, spread=_spread(reference))
    return result


def _keras_worker(route: str, name: str, workdir: Path, built, early: dict) -> dict:
    import numpy as np
    import tensorflow as tf

    if isinstance(built, tuple):
        model, example = built[0], built[1]
    else:
        model, example = built, None
    if isinstance(example, dict):
        names, arrays = list(example), [np.asarray(v) for v in example.values()]
    else:
        arrays = list(example) if isinstance(example, (list, tuple)) else [example]
        arrays = [np.asarray(a) for a in arrays]
        names = [getattr(t, "name", f"input_{i}") for i, t in
                 enumerate(getattr(model, "inputs", None) or arrays)]
        names = [n if isinstance(n, str) else f"input_{i}" for i, n in enumerate(names)]

    def call(batch_arrays):
        x = batch_arrays[0] if len(batch_arrays) == 1 else (
            dict(zip(names, batch_arrays)) if isinstance(example, dict) else batch_arrays)
        out = model(x, training=False)
        if isinstance(out, dict):
            out = list(out.values())
        out = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in out]

    reference = call(arrays)
    reference1 = call([a[:1] for a in arrays])
    early["spread"] = _spread(reference)
    path = workdir / f"{name}.onnx"
    started = time.perf_counter()
    if route == "keras_export":
        model.export(str(path), format="onnx", verbose=False)
    else:
        import tf2onnx

        signature = [tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype), name=n)
                     for n, a in zip(names, arrays)]
        _, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17,
                                          output_path=str(path))
    export_s = time.perf_counter() - started
    by_name = dict(zip(names, arrays))
    by_name1 = {n: a[:1] for n, a in by_name.items()}
    result = _ort_check(path, by_name, arrays, reference,
                        (by_name1, [a[:1] for a in arrays], reference1))
    result.update(export_s=export_s, spread=_spread(reference))
    return result


def worker(route: str, name: str, workdir: str) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    result: dict = {"route": route, "model": name}
    try:
        models = _load_models_module()
        framework, _, builder = models.MODELS[name]
        if framework == "keras":  # what onnxport's keras backend does too
            import tensorflow as tf
            tf.config.set_visible_devices([], "GPU")
        stage = "build"
        built = builder()
        stage = "export"
        run = _torch_worker if framework == "torch" else _keras_worker
        result.update(run(route, name, Path(workdir), built, result))
    except BaseException as exc:  # noqa: BLE001 - the child reports everything
        result.update(ok=False, stage=locals().get("stage", "import"), cause=_cause(exc),
                      traceback=traceback.format_exc()[-4000:])
    sys.stdout.flush()
    print(MARK + json.dumps(result, default=str), flush=True)
    return 0


# ============================================================================ the parent


def run_child(command: list[str], timeout: float, cwd: Path) -> tuple[int | None, str,
                                                                      str, float]:
    """(exit code or None on timeout, stdout, stderr, seconds), killing the child's whole
    process group on timeout."""
    started = time.perf_counter()
    with subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True,
                          stdin=subprocess.DEVNULL) as process:
        try:
            out, err = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = process.communicate()
            code = None
    return code, out, err, time.perf_counter() - started


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", stderr).splitlines()
             if ln.strip()]
    for line in reversed(lines):
        if line.startswith("onnxport: error:"):
            return line
    return lines[-1] if lines else ""


def hand_route(route: str, name: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"breadth-{route}-") as workdir:
        code, out, err, seconds = run_child(
            [str(VENV_BIN / "python"), str(Path(__file__).resolve()), "--worker", route,
             name, workdir], timeout, ROOT)
    found = [ln for ln in out.splitlines() if ln.startswith(MARK)]
    if found:
        result = json.loads(found[-1][len(MARK):])
    elif code is None:
        result = {"ok": False, "cause": f"timeout after {timeout:.0f} s"}
    else:
        result = {"ok": False, "cause": f"process died (exit {code}): "
                                        f"{_last_error_line(err)[:200]}"}
    result.update(seconds=seconds, route=route, model=name)
    return result


def onnxport_route(name: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="breadth-onnxport-") as workdir:
        code, out, err, seconds = run_child(
            [str(VENV_BIN / "onnxport"), "convert", f"{MODELS_FILE}:{name}", "-o",
             str(Path(workdir) / "out"), "--json"], timeout, ROOT)
    result: dict = {"route": "onnxport", "model": name, "exit": code, "seconds": seconds,
                    "ok": code == 0}
    if code is None:
        result["cause"] = f"timeout after {timeout:.0f} s"
    elif code != 0:
        result["cause"] = _last_error_line(err)
        result["stderr_tail"] = "\n".join(err.strip().splitlines()[-15:])
    try:
        report = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        report = None
    if report:
        result.update(_report_figures(report))
    return result


def _report_figures(report: dict) -> dict:
    figures: dict = {"status": report.get("status")}
    export = report.get("export") or {}
    figures["exporter"] = export.get("exporter") or (export.get("settings") or {}).get(
        "exporter")
    worst, problems = None, []
    for target in (report.get("targets") or {}).values():
        for stage in target.get("stages") or []:
            verification = stage.get("verification") or {}
            if verification.get("max_abs") is not None and stage.get("stage") == "export":
                worst = verification["max_abs"]
            if verification.get("problem"):
                problems.append(f"{stage.get('stage')}: {verification['problem']}")
    figures["max_abs"] = worst
    if problems:
        figures["problems"] = problems
    return figures


CLASSES = {
    "vacuous": "ships, but the source's outputs barely depend on the input (random "
               "weights saturate): the pass proves little",
    "positional": "forward(**kwargs) and a dict of inputs out of the signature's order "
                  "(a binding by position would swap inputs)",
    "int-range": "integer input range: the random verification ints [0, 10) do not fit "
                 "the model (an embedding smaller than 10)",
    "mask": "attention_mask from random ints: a fully masked row, which torch and "
            "onnxruntime treat differently",
    "dynamo": "dynamo export failure that the TorchScript exporter handles (no hint, no "
              "fallback)",
    "captures": "captured constants become graph inputs (Keras Normalization through "
                "tf2onnx from_function)",
    "erfc": "exact GELU lowers to Erfc, which tf2onnx cannot convert",
    "xla-call": "grouped Conv2D runs as an XLA-compiled nested tf.function, left as "
                "StatefulPartitionedCall",
    "factory": "the factory could not be imported or built",
    "timeout": "timeout or crash",
    "other": "other",
}


def classify(row: dict) -> list[str]:
    """The failure classes of a row's onnxport result (see CLASSES)."""
    result = row["routes"].get("onnxport")
    if result is None:
        return []
    forward = next((r["forward"] for r in row["routes"].values() if r.get("forward")),
                   None)
    mislabeled = bool(forward and forward["open_ended"]
                      and not forward["by_position_binds_right"])
    if result.get("ok"):  # a shipped model was verified by name: no binding question
        found = []
        if row.get("spread") is not None and row["spread"] < FLAT:
            found.append("vacuous")
        return found
    text = (result.get("cause") or "") + "\n" + (result.get("stderr_tail") or "")
    found = []
    if result.get("exit") is None:
        return ["timeout"]
    if mislabeled:
        found.append("positional")
    if re.search(r"IndexError: index out of range", text):
        found.append("int-range")
    if re.search(r"differ by more than", text) and forward and any(
            "mask" in k for k in forward["dict_keys"]):
        found.append("mask")
    if "torch.onnx (dynamo) failed" in text and row["routes"].get(
            "torchscript", {}).get("ok"):
        found.append("dynamo")
    if re.search(r"names: expected inputs .* the model has inputs .*normalization", text):
        found.append("captures")
    if "Erfc" in text:
        found.append("erfc")
    if "StatefulPartitionedCall" in text:
        found.append("xla-call")
    if re.search(r"cannot import|No module named|could not import|factory", text,
                 re.IGNORECASE):
        found.append("factory")
    return found or ["other"]


def failure_summary(rows: list[dict]) -> str:
    lines = ["onnxport results by class (exact error line):", ""]
    by_class: dict[str, list[str]] = {}
    for row in rows:
        result = row["routes"].get("onnxport")
        for key in classify(row):
            detail = (f"exit {result.get('exit')}: {result.get('cause', '')}"
                      if not result.get("ok") else
                      f"shipped; source spread {_spread_cell(row.get('spread'))}")
            by_class.setdefault(key, []).append(f"  - {row['model']}: {detail}")
    for key in CLASSES:
        if key in by_class:
            lines.append(f"- {key}: {CLASSES[key]}")
            lines.extend(by_class[key])
    return "\n".join(lines)


def run_model(name: str, framework: str, timeout: float, log,
              routes: set[str] | None = None, previous: dict | None = None) -> dict:
    row = {"model": name, "framework": framework,
           "routes": dict((previous or {}).get("routes", {}))}
    for route in [*HAND_ROUTES[framework], "onnxport"]:
        if routes is not None and route not in routes:
            continue
        result = (onnxport_route(name, timeout) if route == "onnxport"
                  else hand_route(route, name, timeout))
        row["routes"][route] = result
        log(f"  {name:<24} {route:<13} {_cell(result)}  ({result['seconds']:.0f} s)")
    spreads = [r.get("spread") for r in row["routes"].values() if r.get("spread")
               is not None]
    row["spread"] = spreads[0] if spreads else None
    return row


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _cell(result: dict | None) -> str:
    if result is None:
        return "-"
    if result.get("ok"):
        text = "ok"
        if result.get("max_abs") is not None:
            text += f" ({result['max_abs']:.1e})"
        if result.get("notes"):
            text += "; " + "; ".join(result["notes"])
        return _short(text, 80)
    if result.get("route") == "onnxport":
        code = result.get("exit")
        cause = result.get("cause", "")
        cause = re.sub(r"^onnxport: (error: )?", "", cause).strip()
        return _short(f"fail (exit {code}): {cause}" if code is not None else
                      f"fail: {cause}")
    stage = result.get("stage")
    where = "build: " if stage == "build" else ""
    return _short(f"fail: {where}{result.get('cause', '?')}")


def _spread_cell(spread: float | None) -> str:
    if spread is None:
        return "-"
    return f"{spread:.1e}" + (" flat" if spread < FLAT else "")


def markdown(rows: list[dict], models_module_families: dict[str, str]) -> str:
    header = ["model", "family", *[label for _, label in COLUMNS], "source spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], models_module_families.get(row["model"], "")]
        for key, _ in COLUMNS:
            cell = _cell(row["routes"].get(key))
            if key == "onnxport" and classify(row):
                cell += " **[" + ", ".join(classify(row)) + "]**"
            cells.append(cell)
        cells.append(_spread_cell(row.get("spread")))
        lines.append("| " + " | ".join(cells) + " |")
    counts = ["**ships**", ""]
    for key, _ in COLUMNS:
        ran = [r["routes"][key] for r in rows if key in r["routes"]]
        counts.append(f"**{sum(1 for r in ran if r.get('ok'))}/{len(ran)}**" if ran
                      else "-")
    flat = sum(1 for r in rows if r.get("spread") is not None and r["spread"] < FLAT)
    counts.append(f"{flat} flat")
    lines.append("| " + " | ".join(counts) + " |")
    return "\n".join(lines)


def _registry() -> dict[str, tuple[str, str]]:
    """name -> (framework, family), read without importing torch or TensorFlow."""
    import ast

    tree = ast.parse(MODELS_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MODELS"
                                                for t in node.targets):
            return {k.value: (v.elts[0].value, v.elts[1].value)
                    for k, v in zip(node.value.keys, node.value.values)}
    raise SystemExit(f"no MODELS in {MODELS_FILE}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this model (repeatable)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds per model and route (default 900)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models run at once (default 1: the machines are shared)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table here")
    parser.add_argument("--json", metavar="FILE",
                        help="write every route's full result (errors, tracebacks) here")
    parser.add_argument("--routes", metavar="A,B",
                        help="run only these routes (dynamo, torchscript, keras_export, "
                             "from_keras, onnxport); the others come from --previous")
    parser.add_argument("--previous", metavar="FILE",
                        help="a --json file of an earlier run: its results fill the "
                             "routes and models not run now")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--worker", nargs=3, metavar=("ROUTE", "NAME", "DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    registry = _registry()
    if args.list:
        for name, (framework, family) in registry.items():
            print(f"{name:<26} {framework:<6} {family}")
        return 0
    names = list(registry)
    if args.only:
        unknown = [n for n in args.only if n not in registry]
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; --list shows them")
        names = [n for n in names if n in args.only]

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log(f"{len(names)} model(s), timeout {args.timeout:.0f} s per route, "
        f"{args.jobs} at a time")
    routes = set(args.routes.split(",")) if args.routes else None
    previous = {}
    if args.previous:
        previous = {r["model"]: r for r in json.loads(Path(args.previous).read_text())}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {n: pool.submit(run_model, n, registry[n][0], args.timeout, log,
                                  routes, previous.get(n))
                   for n in names}
        done = {n: futures[n].result() for n in names}
    # models not run now keep their earlier results, in the registry's order
    rows = [done.get(n) or previous[n] for n in registry if n in done or n in previous]
    table = markdown(rows, {n: f for n, (_, f) in registry.items()})
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    preface = (f"Breadth run {stamp} on {platform.node()} ({platform.machine()}); hand "
               f"routes ship at atol {ATOL:g} rtol {RTOL:g} on the example inputs; "
               f"onnxport with its defaults. \"flat\": the source's outputs for the two "
               f"example rows differ by less than {FLAT:g}.")
    text = preface + "\n\n" + table + "\n\n" + failure_summary(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
