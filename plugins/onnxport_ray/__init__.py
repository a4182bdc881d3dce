"""Built-in plugin: the `ray` executor, each conversion a Ray task.

`--executor ray` uses the cluster at `--ray-address` (or `RAY_ADDRESS`), else starts
Ray on this machine (`ray.init()`). A task runs `onnxport.flow.worker.run_job`, which
converts in a worker process of its own on whichever node runs it, so a crash stays
that model's failure. On several machines, give the fleet a publisher URI
(`s3://bucket/prefix`) as its destination: each task publishes its artifact there.
Every node needs the same onnxport, plugins and frameworks installed (docs/fleet.md).
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Executor, Option, Requirements


def _run(jobs, options, update):
    from .tasks import run

    return run(jobs, options, update)


@hookimpl
def onnxport_register_executors(register):
    register(Executor(
        name="ray",
        description="each conversion a Ray task, on a cluster (--ray-address or "
                    "RAY_ADDRESS) or on Ray started on this machine",
        run=_run,
        requires=Requirements(modules=("ray",), extra="ray"),
    ))


@hookimpl
def onnxport_add_options(options):
    options.add(Option(flags=("--ray-address",), metavar="ADDRESS", commands=("fleet",),
                       help="the Ray cluster for --executor ray, e.g. 10.0.0.5:6379 "
                            "(default: RAY_ADDRESS, else Ray on this machine)"))
