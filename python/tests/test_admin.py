"""What `zask computations`, `zask cancel` and `zask keys` read and do, from Python."""

import time

import pytest

import zask
from pyfuncs import nap


def wait_for(what, check, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout} s")


def test_a_clients_futures_are_listed_and_cancelled_by_another_client(cluster):
    with zask.Client(cluster.address) as owner, zask.Client(cluster.address) as admin:
        futures = [owner.submit(nap, 30, i, pure=False) for i in range(3)]
        row = wait_for(
            "futures row",
            lambda: next((c for c in admin.computations()
                          if c["kind"] == "futures" and c["total"] == 3), None),
        )
        assert row["id"].startswith("futures-")
        assert (row["done"], row["failed"], row["waiting"]) == (0, 0, 3)
        assert all(ch in "0123456789abcdef" for ch in row["client"])
        admin.cancel_computation(row["id"])
        import concurrent.futures
        for f in futures:
            with pytest.raises(concurrent.futures.CancelledError):
                f.result(timeout=20)
        wait_for("no computation", lambda: admin.computations() == [] or None)
        with pytest.raises(zask.ZaskError) as e:
            admin.cancel_computation(row["id"])
        assert e.value.kind == "unknown_computation"
        del futures
    cluster.wait_idle()


def test_held_keys_are_listed_with_sizes_and_holders(client):
    keys = client.scatter([b"x" * 1000, b"y" * 2000])
    total, listed = client.held_keys()
    assert total >= 2
    mine = {k["key"]: k for k in listed if k["key"] in keys}
    assert set(mine) == set(keys)
    for k in mine.values():
        assert k["nbytes"] >= 1000
        assert len(k["holders"]) == 1 and k["holders"][0].startswith("tcp://")
    total1, one = client.held_keys(limit=1)
    assert (total1, len(one)) == (total, 1)
    client.release(keys)
