"""Futures: submit, map, gather, as_completed, wait, cancel, callbacks, futures as
arguments, priorities and worker restrictions."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import zask
from pyfuncs import nap, pyinc, touch

inc = zask.function("inc")


def test_submit_map_gather(client, cluster):
    f = client.submit(inc, 1)
    g = client.submit(pyinc, f)  # a future as an argument: resolved on the scheduler
    assert g.result() == 3
    assert f.done() and f.status == "finished"
    fs = client.map(pyinc, range(100))
    assert client.gather(fs) == list(range(1, 101))
    assert client.gather(f) == 2
    del f, g, fs
    cluster.wait_idle()


def test_same_call_same_key_as_rust(client):
    # docs/futures.md: inc(1) is named inc-e225a138ab6cef4d, by Rust and Python clients alike.
    assert client.submit(inc, 1).key == "inc-e225a138ab6cef4d"
    assert client.submit("inc", 1).key == "inc-e225a138ab6cef4d"
    assert client.submit(inc, 1, pure=False).key != "inc-e225a138ab6cef4d"
    assert client.submit(inc, 1, key="mine").key == "mine"


def test_as_completed_in_completion_order(client):
    fs = [client.submit(nap, 1.6, "slow"), client.submit(nap, 0.1, "fast"),
          client.submit(nap, 0.8, "middle")]
    order = [v for _, v in zask.as_completed(fs, with_results=True)]
    assert order == ["fast", "middle", "slow"]
    many = client.map(pyinc, range(1000))
    got = sorted(f.result() for f in zask.as_completed(many))
    assert got == list(range(1, 1001))


def test_wait_and_timeouts(client):
    slow = client.submit(nap, 30, pure=False)
    quick = client.submit(inc, 5)
    done, not_done = zask.wait([slow, quick], timeout=20, return_when=zask.FIRST_COMPLETED)
    assert done == [quick] and not_done == [slow]
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.2)
    slow.cancel()
    with pytest.raises(zask.CancelledError):
        slow.result()
    import concurrent.futures
    with pytest.raises(concurrent.futures.CancelledError):
        slow.result()


def test_cancel_frees_the_worker_and_queued_tasks_never_run(cluster):
    with zask.Client(cluster.address) as client:
        target = cluster.worker_addresses[0]
        # Fill both threads of one worker, then queue a task behind them there.
        blockers = [client.submit(nap, 30, i, pure=False, workers=[target]) for i in range(2)]
        time.sleep(0.5)
        path = os.path.join(tempfile.mkdtemp(), "ran")
        queued = client.submit(touch, path, workers=[target])
        time.sleep(0.3)
        queued.cancel()
        start = time.time()
        client.cancel(blockers)
        after = client.submit(pyinc, 1, workers=[target])
        assert after.result(timeout=20) == 2
        assert time.time() - start < 5, "the cancelled tasks held the threads"
        time.sleep(0.5)
        assert not os.path.exists(path), "a cancelled queued task ran"
        del blockers, queued, after
    cluster.wait_idle()


def test_add_done_callback(client):
    seen = threading.Event()
    got = []

    def callback(f):
        got.append(f.result())
        seen.set()

    f = client.submit(nap, 0.2, "called")
    f.add_done_callback(callback)
    assert seen.wait(20)
    assert got == ["called"]
    # Already done: called at once.
    got.clear()
    f.add_done_callback(lambda fut: got.append(fut.key))
    assert got == [f.key]


def test_priority_and_workers(client, cluster):
    target = cluster.worker_addresses[1]
    fs = [client.submit(pyinc, i, workers=[target]) for i in range(20)]
    client.gather(fs)
    held = {w["address"]: w["keys"] for w in client.workers()}
    assert held[target] >= 20
    # (The ordering by priority is tested without sockets, and with the Rust client.)
    assert client.submit(pyinc, 1, priority=10).result() == 2


KEYBOARD = r"""
import sys, time, zask
c = zask.Client(sys.argv[1])
nap = zask.function("nap")
dsk = {f"s{i}": (nap, 30, i) for i in range(8)}
dsk["all"] = (zask.function("list"),) + tuple(f"s{i}" for i in range(8))
print("started", flush=True)
try:
    c.get(dsk, "all")
except KeyboardInterrupt:
    print("interrupted", flush=True)
    time.sleep(0.5)
"""


def test_keyboard_interrupt_cancels_a_get(cluster):
    from conftest import Proc

    p = Proc([sys.executable, "-c", KEYBOARD, cluster.address])
    assert p.line().strip() == "started"
    with zask.Client(cluster.address) as c:
        deadline = time.time() + 20
        while sum(w["processing"] for w in c.workers()) < 4:
            assert time.time() < deadline, "the tasks never ran"
            time.sleep(0.05)
        p.p.send_signal(signal.SIGINT)
        assert p.line().strip() == "interrupted", p.stderr()
        start = time.time()
        cluster.wait_idle(timeout=20)
        # (The tasks sleep 30 s: gone within seconds, they were cancelled.)
        assert time.time() - start < 5
    p.p.wait(timeout=20)


def test_gather_fails_as_soon_as_one_fails(client):
    from pyfuncs import fails

    slow = client.submit(nap, 8, "slow", pure=False)
    bad = client.submit(fails, 1)
    start = time.time()
    with pytest.raises(zask.TaskError):
        client.gather([slow, bad])
    assert time.time() - start < 4, "gather waited for the slow one first"
    slow.cancel()


def test_timeouts_and_empty_waits(client):
    f = client.submit(inc, 1)
    assert f.result(timeout=float("inf")) == 2
    assert f.result(timeout=1e300) == 2
    with pytest.raises(ValueError):
        f.result(timeout=float("nan"))
    assert zask.wait([], return_when=zask.FIRST_COMPLETED) == ([], [])
    assert zask.wait([]) == ([], [])
