"""zask from Python, end to end: starts a scheduler and two workers (the package's commands,
the workers with the Python functions of myfuncs.py), computes a dask-style graph, uses
futures and dask.delayed if dask is installed, and stops them.

    python3 -m venv venv && venv/bin/pip install ./python
    venv/bin/python python/examples/quickstart.py
"""

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import zask  # noqa: E402
from myfuncs import describe, square  # noqa: E402


def command(name):
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else shutil.which(name)


def field(proc, prefix):
    for line in proc.stdout:
        if line.startswith(prefix):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"{prefix} never came")


def main():
    env = dict(os.environ, RUST_LOG="warn")
    scheduler = subprocess.Popen([command("zask-scheduler"), "--host", "127.0.0.1"],
                                 stdout=subprocess.PIPE, text=True, env=env)
    procs = [scheduler]
    try:
        to_workers = field(scheduler, "address_to_workers")
        to_clients = field(scheduler, "address_to_clients")
        for _ in range(2):
            w = subprocess.Popen([command("zask-worker"), to_workers, "--host", "127.0.0.1",
                                  "--module", "myfuncs", "--nthreads", "2"],
                                 cwd=HERE, stdout=subprocess.PIPE, text=True, env=env)
            procs.append(w)
            field(w, "worker_address")
        with zask.Client(to_clients) as client:
            client.wait_for_workers(2)
            inc, add = zask.function("inc"), zask.function("add")
            dsk = {"x": 1, "y": (inc, "x"), "z": (square, "y"), "w": (add, "z", "x")}
            print("get z:", client.get(dsk, "z"))
            print("get [x, [y, w]]:", client.get(dsk, ["x", ["y", "w"]]))
            futures = client.map(square, range(10))
            print("map square:", client.gather(futures))
            total = client.submit(zask.function("sum"), futures)
            print("sum of squares:", total.result())
            for f, text in zask.as_completed(
                    [client.submit(describe, n, len(n)) for n in ("zask", "dask")],
                    with_results=True):
                print("as completed:", text)
            try:
                import dask
                from dask import delayed
            except ImportError:
                print("(dask is not installed: skipping dask.delayed)")
            else:
                v = delayed(add)(delayed(square)(3), 1)
                print("dask.delayed:", dask.compute(v, scheduler=client.get)[0])
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
