#!/usr/bin/env python3
"""dask.distributed's counterpart of bench/python_bench.py: W1 (10,000 inc + sum) and W4
(one-task gets) with Python functions, on LocalCluster(2 workers x 1 thread, processes).

    /tmp/dask-venv/bin/python bench/dask_python.py --reps 3
"""

import argparse
import json
import statistics
import time

from distributed import Client, LocalCluster


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--gets", type=int, default=200)
    args = ap.parse_args()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    client = Client(cluster)
    n = args.n
    walls = []
    for rep in range(args.reps):
        dsk = {f"inc-{rep}-{i}": (inc, i) for i in range(n)}
        dsk[f"total-{rep}"] = (sum, list(dsk))
        t0 = time.perf_counter()
        v = client.get(dsk, f"total-{rep}")
        walls.append(time.perf_counter() - t0)
        assert v == n * (n + 1) // 2
    print(json.dumps({"workload": "W1", "system": "dask.distributed",
                      "us_per_task": statistics.median(walls) / (n + 1) * 1e6,
                      "min_us_per_task": min(walls) / (n + 1) * 1e6}))
    lat = []
    for i in range(args.gets):
        t0 = time.perf_counter()
        v = client.get({f"y-{i}": (add, 1, 2)}, f"y-{i}")
        lat.append(time.perf_counter() - t0)
        assert v == 3
    lat.sort()
    print(json.dumps({"workload": "W4", "system": "dask.distributed",
                      "p50_us": lat[len(lat) // 2] * 1e6,
                      "p99_us": lat[int(len(lat) * 0.99) - 1] * 1e6}))
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
