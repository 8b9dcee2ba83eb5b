#!/usr/bin/env python3
"""W1 and W4 driven from Python (the `zask` package), with the standard library's `inc`/`add`
and with Python functions on the workers (`pyinc`/`pyadd`, bench/pyfuncs_bench.py), plus the
client's own cost of building and sending W1's graph. Starts its own scheduler and 2 workers
x 1 thread (the package's commands), as `zask bench` does.

    target/python-venv/bin/python bench/python_bench.py --reps 5

dask.distributed's counterpart (same workloads, Python functions) is
bench/dask_python.py; results in docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import zask  # noqa: E402
from zask import _native  # noqa: E402
from pyfuncs_bench import pyadd, pyinc  # noqa: E402


def command(name):
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else shutil.which(name)


def field(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"{prefix} never came")


def w1_graph(n, inc, tag):
    dsk = {f"inc-{tag}-{i}": (inc, i) for i in range(n)}
    dsk[f"total-{tag}"] = (zask.function("sum"), list(dsk))
    return dsk, f"total-{tag}"


def settle(client):
    deadline = time.time() + 60
    while client.status()["tasks"] and time.time() < deadline:
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=200)
    args = ap.parse_args()
    env = dict(os.environ, RUST_LOG="warn")
    scheduler = subprocess.Popen([command("zask-scheduler"), "--host", "127.0.0.1"],
                                 stdout=subprocess.PIPE, text=True, env=env)
    procs = [scheduler]
    try:
        to_workers = field(scheduler, "address_to_workers")
        to_clients = field(scheduler, "address_to_clients")
        for _ in range(2):
            w = subprocess.Popen([command("zask-worker"), to_workers, "--host", "127.0.0.1",
                                  "--module", "pyfuncs_bench", "--nthreads", "1"],
                                 cwd=HERE, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(w)
            field(w, "worker_address")
        client = zask.Client(to_clients)
        client.wait_for_workers(2)
        stdlib = (zask.function("inc"), zask.function("add"))
        python = (pyinc, pyadd)
        n = args.n
        # Warm-up.
        for inc, _ in (stdlib, python):
            dsk, k = w1_graph(1000, inc, f"warm-{inc.name}")
            client.get(dsk, k)
        settle(client)
        results = []
        for label, (inc, add) in (("stdlib", stdlib), ("python", python)):
            walls = []
            for rep in range(args.reps):
                dsk, k = w1_graph(n, inc, f"{label}-{rep}")
                t0 = time.perf_counter()
                v = client.get(dsk, k)
                walls.append(time.perf_counter() - t0)
                assert v == n * (n + 1) // 2, v
                settle(client)
            results.append({"workload": "W1", "functions": label,
                            "us_per_task": statistics.median(walls) / (n + 1) * 1e6,
                            "min_us_per_task": min(walls) / (n + 1) * 1e6})
            lat = []
            for i in range(args.gets):
                k = f"y-{label}-{i}"
                t0 = time.perf_counter()
                v = client.get({k: (add, 1, 2)}, k)
                lat.append(time.perf_counter() - t0)
                assert v == 3
            lat.sort()
            results.append({"workload": "W4", "functions": label,
                            "p50_us": lat[len(lat) // 2] * 1e6,
                            "p99_us": lat[int(len(lat) * 0.99) - 1] * 1e6})
            settle(client)
        # The client's own cost: building W1's dict and converting and encoding it.
        builds, encodes = [], []
        for rep in range(args.reps):
            t0 = time.perf_counter()
            dsk, k = w1_graph(n, stdlib[0], f"cost-{rep}")
            t1 = time.perf_counter()
            _native.encode_graph(dsk, k)
            t2 = time.perf_counter()
            builds.append(t1 - t0)
            encodes.append(t2 - t1)
        results.append({"workload": "client cost", "functions": "stdlib",
                        "us_per_task_build_dict": statistics.median(builds) / (n + 1) * 1e6,
                        "us_per_task_convert_encode": statistics.median(encodes) / (n + 1) * 1e6})
        for r in results:
            print(json.dumps(r), flush=True)
        client.close()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=20)


if __name__ == "__main__":
    main()
