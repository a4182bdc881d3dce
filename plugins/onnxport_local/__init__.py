"""Built-in plugin: the `local` executor, a pool of worker processes on this machine.

Each job is one conversion in a worker process of its own (`onnxport.flow.worker`), so
a native abort, an out-of-memory kill or a hang ends that job, not the fleet. How many
run at once comes from `--jobs`, or by default from the machine's memory as well as its
cores: a PyTorch or TensorFlow export can take a GB or more, and two CPUs with little
memory cannot run two of them.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Executor


def _run(jobs, options, update):
    from .pool import run

    return run(jobs, options, update)


@hookimpl
def onnxport_register_executors(register):
    register(Executor(
        name="local",
        description="worker processes on this machine, as many at once as its memory "
                    "and cores allow (--jobs N to choose)",
        run=_run,
    ))
