"""float32 -> float16 on one model: onnxruntime's converter in a child process (child.py,
which says why a child), then what it did, as the stage's settings.

A model with nothing to convert is never shipped as "float16": mode on is an error,
mode auto skips the pass with the reason. A converter that fails (raises, crashes, runs
past float16.timeout) fails the run in mode on and is the reason float16 was skipped in
mode auto.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from onnxport.artifact.modelinfo import describe_model
from onnxport.child_tool import run_tool
from onnxport.errors import BadInput, ExportFailed
from onnxport.pass_modes import run_in_mode
from onnxport.records import PassContext, PassOutcome

from .options import Float16Options, parse_options

_HINT = ("set float16.mode = auto to ship fp32 when float16 cannot be made, or run with "
         "--debug for the full error")


def convert(context: PassContext) -> PassOutcome:
    options = parse_options(context.options, context.target.name)
    if options.mode == "off":
        return PassOutcome(applied=False, reason="float16.mode is off")
    return run_in_mode(options.mode, lambda: _convert(context, options),
                       failure=f"float16 conversion failed for target "
                               f"{context.target.name}", hint=_HINT)


def _convert(context: PassContext, options: Float16Options) -> PassOutcome:
    source, output = Path(context.input_path), Path(context.output_path)
    info = describe_model(source)  # a missing or corrupt file: BadInput, before the child
    external = bool(info.external_data)
    request = {"input": str(source.resolve()), "output": str(output.resolve()),
               "block_ops": list(options.block_ops), "external_data": external,
               "data_file": output.name + ".data"}
    output.parent.mkdir(parents=True, exist_ok=True)
    run = run_tool("onnxport_float16.child", request, Path(context.work_dir),
                   tool="onnxruntime's float16 converter", timeout=options.timeout,
                   timeout_hint="raise float16.timeout for large models")
    if run.answer is None:
        if options.mode == "on":
            raise ExportFailed(f"float16 conversion failed for target "
                               f"{context.target.name}: {run.failure}", _HINT)
        return PassOutcome(applied=False, reason=run.failure)
    settings: dict[str, Any] = {
        "mode": options.mode,
        "keep_io_types": True,
        "block_ops": list(options.block_ops),  # besides onnxruntime's default list
        "onnxruntime": _ort_version(),
        **run.answer,  # ops_converted, ops_kept_fp32, casts_inserted
    }
    if not run.answer["ops_converted"]:
        return _nothing_to_convert(source, info.op_histogram, options, settings)
    before, after = info.size_bytes, describe_model(output).size_bytes
    settings.update({"size_bytes": {"before": before, "after": after},
                     "size_ratio": round(after / before, 3)})
    return PassOutcome(applied=True, path=output, settings=settings,
                       tolerance=options.tolerance, optional=options.mode == "auto")


def _nothing_to_convert(source: Path, ops: dict[str, int], options: Float16Options,
                        settings: dict[str, Any]) -> PassOutcome:
    kept = settings["ops_kept_fp32"]
    if kept:
        why = ("every float32 op is one kept in float32 ("
               + ", ".join(f"{op} x{n}" for op, n in kept.items()) + ")")
    else:
        has = ", ".join(f"{op} x{n}" for op, n in Counter(ops).most_common(8))
        why = f"no op computes in float32 (the model has {has or 'no nodes'})"
    message = f"nothing to convert to float16 in {source.name}: {why}"
    if options.mode == "on":
        raise BadInput(message, "convert it with float16.mode = off or auto"
                       + (", or take op types out of float16.block_ops"
                          if options.block_ops else ""))
    return PassOutcome(applied=False, reason=message, settings=settings)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
