"""GET /metrics in the Prometheus text format (version 0.0.4).

Jobs by state and the durations of finished jobs come from the job database (shared by
every server on it, and kept: the duration histogram only grows); submissions and
refusals are counted by this process since it started.
"""

from __future__ import annotations

import threading
from collections import Counter

BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)


class Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self.submissions: Counter[str] = Counter()

    def count(self, result: str) -> None:
        with self._lock:
            self.submissions[result] += 1


def render(store, counters: Counters, *, queue_limit: int, slots: int,
           running_here: int, ready: bool) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{text}}} {value}" if text else f"{name} {value}")

    metric("onnxport_serve_jobs", "gauge", "Jobs in the job database, by state.",
           [({"state": s}, n) for s, n in store.counts().items()])
    lines.append("# HELP onnxport_serve_job_duration_seconds Wall time of finished jobs, "
                 "from start to end.")
    lines.append("# TYPE onnxport_serve_job_duration_seconds histogram")
    for state, (count, total, buckets) in store.duration_histogram(BUCKETS).items():
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), (*buckets, count)):
            lines.append(f'onnxport_serve_job_duration_seconds_bucket{{state="{state}",'
                         f'le="{bound}"}} {n}')
        lines.append(f'onnxport_serve_job_duration_seconds_sum{{state="{state}"}} '
                     f"{total:.3f}")
        lines.append(f'onnxport_serve_job_duration_seconds_count{{state="{state}"}} '
                     f"{count}")
    with counters._lock:
        submissions = dict(counters.submissions)
    metric("onnxport_serve_submissions_total", "counter",
           "Submissions this process answered, by result.",
           [({"result": r}, n) for r, n in sorted(submissions.items())])
    metric("onnxport_serve_queue_limit", "gauge", "Queued jobs before 429.",
           [({}, queue_limit)])
    metric("onnxport_serve_slots", "gauge", "Jobs this process runs at once.",
           [({}, slots)])
    metric("onnxport_serve_running_here", "gauge", "Jobs this process runs now.",
           [({}, running_here)])
    metric("onnxport_serve_ready", "gauge", "1 when this process takes jobs.",
           [({}, int(ready))])
    return "\n".join(lines) + "\n"
