#!/usr/bin/env python3
"""dask.distributed's counterparts of zask bench's W8 and W9 (futures), on this machine.

W8: 10,000 `client.submit(inc, i)` calls one after another, then `client.gather(futures)`;
W9: `client.map(inc, range(10,000))`, then `as_completed(futures, with_results=True)`.
Timed from the first call to the last result; every result is checked. Fresh values each
repetition (so no key is reused), a cluster of 2 worker processes x 1 thread, as `zask bench`
runs by default.

    python3 -m venv /tmp/dask-venv && /tmp/dask-venv/bin/pip install dask distributed
    /tmp/dask-venv/bin/python bench/dask_futures.py --reps 3

Prints one JSON object per workload (median, min, max seconds; microseconds per future;
for W8 also per submit call).
"""

import argparse
import json
import statistics
import time

from distributed import Client, LocalCluster, as_completed


def inc(x):
    return x + 1


def w8(client, n, rep):
    base = (rep + 1) * 1_000_000_000
    t0 = time.perf_counter()
    futures = [client.submit(inc, base + i) for i in range(n)]
    submitted = time.perf_counter() - t0
    values = client.gather(futures)
    dt = time.perf_counter() - t0
    assert values == [base + i + 1 for i in range(n)], "wrong W8 results"
    del futures
    return dt, submitted


def w9(client, n, rep):
    base = (rep + 1) * 1_000_000_000 + 500_000_000
    t0 = time.perf_counter()
    futures = client.map(inc, range(base, base + n))
    expected = {f.key: base + i + 1 for i, f in enumerate(futures)}
    seen = 0
    for f, v in as_completed(futures, with_results=True):
        assert v == expected[f.key], "wrong W9 result"
        seen += 1
    dt = time.perf_counter() - t0
    assert seen == n
    del futures
    return dt, None


def settle(client):
    deadline = time.time() + 60
    while time.time() < deadline:
        if not client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
            return
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nthreads", type=int, default=1)
    args = ap.parse_args()
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.nthreads,
        processes=True,
        dashboard_address=None,
    )
    client = Client(cluster)
    # Warm-up (untimed).
    w8(client, 1000, 100)
    w9(client, 1000, 100)
    settle(client)
    for name, fn in (("W8", w8), ("W9", w9)):
        walls, calls = [], []
        for rep in range(args.reps):
            dt, submitted = fn(client, args.n, rep)
            walls.append(dt)
            if submitted is not None:
                calls.append(submitted)
            settle(client)
        out = {
            "workload": name,
            "system": "dask.distributed",
            "futures": args.n,
            "reps": args.reps,
            "median_s": statistics.median(walls),
            "min_s": min(walls),
            "max_s": max(walls),
            "us_per_future": statistics.median(walls) / args.n * 1e6,
            "min_us_per_future": min(walls) / args.n * 1e6,
        }
        if calls:
            out["us_per_submit_call"] = statistics.median(calls) / args.n * 1e6
        print(json.dumps(out), flush=True)
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
