"""`onnxport serve` under a bounded load on localhost: N submissions from C concurrent
clients, each a tiny model (tests/hostile_models.py:tiny, a Linear(4, 3)), converted
for a target without passes (exported with TorchScript, verified at batch 1), so the
figures are the service's, not a large model's.

Reports the submit latency (p50, p99, max: the time to get the 202), the accepted and
refused (429) submissions, the jobs per minute from the first submission to the last
job's end, whether every accepted job ended passed exactly once (none lost), and the
server's resident memory (the server process alone, sampled every 0.5 s; the workers'
peak is the median of the jobs' own figure).

    .venv/bin/python benchmarks/serve.py [--submissions 200] [--clients 20] [--jobs N]
                                         [--queue-size 256]

Everything runs on 127.0.0.1 and stops by itself (bounded submissions, a deadline).
Run on demand; never a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "plugins"))

from onnxport_serve.client import ServeClient, ServeError  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=None, help="the server's --jobs")
    parser.add_argument("--queue-size", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=3600,
                        help="give up after this many seconds")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="onnxport-serve-bench-"))
    (work / "bench.toml").write_text(
        '[targets.bare]\nbase = "cpu"\ndescription = "cpu, no passes"\npasses = []\n')
    (work / "models.toml").write_text(f'''
[[models]]
name = "tiny"
source = "{ROOT / 'tests' / 'hostile_models.py'}:tiny"
config = "bench.toml"
targets = ["bare"]
exporter = "torchscript"
latency_runs = 0
batch_sizes = [1]
''')
    port = free_port()
    command = [str(BIN / "onnxport"), "serve", "--models", str(work / "models.toml"),
               "--state", str(work / "state"), "--port", str(port),
               "--queue-size", str(args.queue_size)]
    if args.jobs:
        command += ["--jobs", str(args.jobs)]
    log = open(work / "server.log", "wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    samples: list[int] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.5):
            samples.append(rss(server.pid))

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start: see {work}/server.log")
                time.sleep(0.2)
        idle_rss = rss(server.pid)
        threading.Thread(target=sample, daemon=True).start()

        latencies: list[float] = []
        accepted: list[str] = []
        refused = [0]
        failures: list[str] = []
        lock = threading.Lock()
        per_client = [args.submissions // args.clients + (i < args.submissions %
                                                          args.clients)
                      for i in range(args.clients)]

        def client_loop(index: int, count: int) -> None:
            client = ServeClient(url, timeout=60)
            for n in range(count):
                key = f"bench-{index}-{n}"
                while True:
                    started = time.perf_counter()
                    try:
                        job = client.submit("tiny", idempotency_key=key)
                    except ServeError as exc:
                        if exc.status == 429:
                            with lock:
                                refused[0] += 1
                            time.sleep(min(exc.retry_after or 1.0, 5.0))
                            continue
                        with lock:
                            failures.append(f"{exc.status} {exc.code}")
                        break
                    with lock:
                        latencies.append(time.perf_counter() - started)
                        accepted.append(job["id"])
                    break

        began = time.time()
        threads = [threading.Thread(target=client_loop, args=(i, c))
                   for i, c in enumerate(per_client)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submitted_in = time.time() - began
        print(f"{len(accepted)} jobs accepted in {submitted_in:.1f} s; waiting for them",
              file=sys.stderr, flush=True)

        client = ServeClient(url, timeout=60)
        end = time.monotonic() + args.deadline
        states: dict[str, dict] = {}
        while time.monotonic() < end:
            listed = client.jobs(limit=1000)
            states = {j["id"]: j for j in listed}
            done = sum(states.get(i, {}).get("state") in ("passed", "failed",
                                                           "cancelled", "interrupted")
                       for i in accepted)
            print(f"  {done}/{len(accepted)} ended", file=sys.stderr, flush=True)
            if done == len(accepted):
                break
            time.sleep(5)
        stop_sampling.set()
        ended = [states[i] for i in accepted if i in states]
        passed = [j for j in ended if j["state"] == "passed"]
        finished = max((datetime.datetime.fromisoformat(j["finished"]).timestamp()
                        for j in ended if j["finished"]), default=began)
        minutes = max(1e-9, (finished - began) / 60)
        workers = [j["result"]["peak_rss_bytes"] for j in passed
                   if j.get("result") and j["result"].get("peak_rss_bytes")]
        attempts = [j["attempts"] for j in ended]
        rows = [
            ("submissions (clients)", f"{args.submissions} ({args.clients})"),
            ("accepted / refused 429 / other errors",
             f"{len(accepted)} / {refused[0]} / {len(failures)}"),
            ("submit latency p50 / p99 / max",
             f"{percentile(latencies, .5) * 1000:.1f} / "
             f"{percentile(latencies, .99) * 1000:.1f} / {max(latencies) * 1000:.1f} ms"
             if latencies else "-"),
            ("jobs passed / failed / other",
             f"{len(passed)} / {sum(j['state'] == 'failed' for j in ended)} / "
             f"{len(ended) - len(passed) - sum(j['state'] == 'failed' for j in ended)}"),
            ("lost (accepted, never ended)", str(len(accepted) - len(ended) +
                                                 sum(j['state'] not in ('passed', 'failed',
                                                                        'cancelled',
                                                                        'interrupted')
                                                     for j in ended))),
            ("run more than once", str(sum(a > 1 for a in attempts))),
            ("distinct job ids", str(len(set(accepted)))),
            ("jobs per minute", f"{len(passed) / minutes:.1f} "
                                f"(over {minutes * 60:.0f} s, {_slots(client)} at once)"),
            ("job duration p50 (start to end)",
             f"{statistics.median(j['seconds'] for j in passed):.1f} s" if passed else "-"),
            ("server RSS idle / peak / end",
             f"{idle_rss / 2**20:.0f} / {max(samples or [0]) / 2**20:.0f} / "
             f"{(samples or [0])[-1] / 2**20:.0f} MB"),
            ("worker peak RSS (median)",
             f"{statistics.median(workers) / 2**20:.0f} MB" if workers else "-"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'measure':<{width}}  value")
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        if failures:
            print(f"\nerrors: {sorted(set(failures))}", file=sys.stderr)
        causes: dict[str, int] = {}
        for job in ended:
            if job["state"] != "passed" and job.get("error"):
                cause = job["error"].get("message", "?")
                causes[cause] = causes.get(cause, 0) + 1
        for cause, count in sorted(causes.items(), key=lambda c: -c[1]):
            print(f"  {count} job(s) did not pass: {cause}")
        json.dump({"rows": rows}, open(work / "result.json", "w"))
        return 0 if len(passed) == len(accepted) == args.submissions else 1
    finally:
        stop_sampling.set()
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        print(f"(work directory: {work})", file=sys.stderr)


def _slots(client: ServeClient) -> str:
    try:
        return str(client.health()["slots"])
    except ServeError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
