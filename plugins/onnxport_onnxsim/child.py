"""The child process that runs onnxsim: `python -m onnxport_onnxsim.child REQUEST.json`,
or `--warm` (started ahead: it imports onnxsim, then reads the request's path on stdin).

It simplifies one file into another and prints one line `ONNXPORT-RESULT {json}` on
stdout. Anything else (a Python exception, a native abort or segfault, a hang) is seen
by the parent as an exit code, a signal or a timeout, with the tail of stderr.
"""

from __future__ import annotations

import functools
import sys

from onnxport.child_tool import WARM_FLAG, read_request, send_answer


def main(argv: list[str]) -> int:
    if argv and argv[0] == WARM_FLAG:
        load_simplify()  # started ahead: import now, while the parent exports
    request = read_request(argv)
    _limit_memory(request.get("memory_limit_mb"))
    simplify = load_simplify()

    skipped = list(request["skipped_optimizers"])
    if request["skip_fuse_bn"]:
        skipped.append("fuse_bn_into_conv")
    _, ok = simplify(
        request["input"],
        check_n=request["check_n"],
        skipped_optimizers=skipped,
        skip_constant_folding=request["skip_constant_folding"],
        skip_shape_inference=request["skip_shape_inference"],
        output_path=request["output"],
        external_data_threshold=request["external_data_threshold"],
        # overwrite_input_shapes is never passed: dynamic axes must stay dynamic.
    )
    send_answer({"ok": bool(ok)})
    return 0


@functools.lru_cache(maxsize=None)
def load_simplify():
    """`onnxsim.simplify`, without running onnxsim's package __init__ if possible.

    onnxsim >= 0.6 imports torch and a hundred quantization modules from its package
    __init__ (about 3 s here); the simplifier itself (onnxsim.onnx_simplifier) needs
    none of them (under 1 s). Any problem with the light import falls back to the
    ordinary one.
    """
    import importlib.util
    import types

    spec = importlib.util.find_spec("onnxsim")
    if spec is not None and spec.submodule_search_locations:
        package = types.ModuleType("onnxsim")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin
        package.__spec__ = spec
        sys.modules["onnxsim"] = package
        try:
            from onnxsim.onnx_simplifier import simplify

            return simplify
        except Exception:
            for name in [n for n in sys.modules if n == "onnxsim" or
                         n.startswith("onnxsim.")]:
                del sys.modules[name]
    import onnxsim

    return onnxsim.simplify


def _limit_memory(megabytes: int | None) -> None:
    if not megabytes:
        return
    import resource

    limit = int(megabytes) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
