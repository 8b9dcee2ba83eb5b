"""Collections and the Bag, shared with Rust clients (the `bag` example and the `zask`
command, both Rust)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zask
from conftest import REPO, command

inc = zask.function("inc")


def rust_bag_example():
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "examples" / "bag"
        if path.exists():
            return str(path)
    pytest.skip("the Rust example `bag` is not built (cargo build --workspace --examples)")


def test_a_bag_stored_from_rust_is_computed_from_python(client):
    out = subprocess.run([rust_bag_example(), "store", client.address, "rust-bag"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    bag = client.get_collection("rust-bag")
    assert isinstance(bag, zask.Bag)
    assert bag.npartitions == 2
    assert bag.compute(client._native) == [1, 2, 3, 4, 5]
    assert bag.sum(client._native) == 15
    assert client.compute_collection("rust-bag") == [1, 2, 3, 4, 5]


def test_a_bag_stored_from_python_is_computed_from_rust(client):
    bag = zask.Bag.from_sequence(range(10), npartitions=3).map(inc)
    client.set_collection("python-bag", bag)
    out = subprocess.run([rust_bag_example(), "fetch", client.address, "python-bag"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["items"] == list(range(1, 11))
    assert got["sum"] == 55
    # And through the `zask` command line (Rust, here as the package's console script).
    out = subprocess.run([command("zask"), "compute", "--scheduler", client.address,
                          "python-bag"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == list(range(1, 11))


def test_graph_collections(client):
    replaced = client.set_collection("g", {"a": 1, "b": (inc, "a")}, ["b"])
    assert replaced is False
    assert client.compute_collection("g") == [2]
    names = [c["name"] for c in client.list_collections()]
    assert "g" in names
    stored = client.get_collection("g")
    assert stored["kind"] == "graph" and stored["keys"] == ["b"]
    client.delete_collection("g")
    with pytest.raises(zask.ZaskError) as e:
        client.get_collection("g")
    assert e.value.kind == "unknown_collection"


def test_scatter_and_release(client):
    keys = client.scatter([10, 20])
    assert all(k.startswith("scatter-") for k in keys)
    assert client.get({"s": (zask.function("add"), keys[0], keys[1])}, "s") == 30
    assert client.release(keys) == []
