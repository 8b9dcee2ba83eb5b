"""Fixtures: a real zask-scheduler and zask-worker processes (the package's console
scripts), on 127.0.0.1 with ports the OS chooses. Workers import `pyfuncs` (this folder)."""

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import zask

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BIN = Path(sys.executable).parent


def command(name):
    path = BIN / name
    return str(path) if path.exists() else shutil.which(name)


class Proc:
    """A child process; its stdout lines are read by a thread (every wait has a timeout), its
    stderr goes to a file (read when something goes wrong)."""

    def __init__(self, args, cwd=HERE):
        env = dict(os.environ)
        env["RUST_LOG"] = "error"
        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout=30):
        """The next line of its stdout (None at its end); fails after `timeout` seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout} s; stderr: {self.stderr()}")

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def field(self, prefix, timeout=30):
        deadline = time.time() + timeout
        while True:
            line = self.line(max(0.1, deadline - time.time()))
            if line is None:
                raise RuntimeError(f"{prefix} never came: {self.stderr()}")
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)


class Cluster:
    def __init__(self, nworkers=2, nthreads=2, scheduler_args=()):
        self.procs = []
        s = Proc([command("zask-scheduler"), "--host", "127.0.0.1", *scheduler_args])
        self.procs.append(s)
        self.workers_address = s.field("address_to_workers")
        self.address = s.field("address_to_clients")
        self.worker_addresses = []
        for _ in range(nworkers):
            self.add_worker(nthreads)
        with zask.Client(self.address) as c:
            c.wait_for_workers(nworkers, timeout=30)

    def add_worker(self, nthreads=2):
        w = Proc([command("zask-worker"), self.workers_address, "--host", "127.0.0.1",
                  "--module", "pyfuncs", "--nthreads", str(nthreads)])
        self.procs.append(w)
        self.worker_addresses.append(w.field("worker_address"))
        return w

    def wait_idle(self, timeout=30):
        with zask.Client(self.address) as c:
            deadline = time.time() + timeout
            while True:
                s = c.status()
                held = sum(w["keys"] for w in c.workers())
                busy = sum(w["processing"] for w in c.workers())
                if s["tasks"] == 0 and s["graphs"] == 0 and held == 0 and busy == 0:
                    return
                if time.time() > deadline:
                    raise AssertionError(f"the cluster still holds something: {s}")
                time.sleep(0.02)

    def close(self):
        for p in reversed(self.procs):
            p.stop()


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    yield c
    c.close()


@pytest.fixture
def client(cluster):
    with zask.Client(cluster.address) as c:
        yield c
