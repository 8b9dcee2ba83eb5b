"""Graphs as dask writes them, through `Client.get`."""

import pytest

import zask
from pyfuncs import echo, pyinc

inc = zask.function("inc")
add = zask.function("add")


def test_get_with_nested_keys(client, cluster):
    dsk = {
        "x": 1,
        "y": (inc, "x"),
        "z": (add, "y", "x"),
        "w": (pyinc, "z"),
        # references inside lists and dicts are resolved; other strings are strings
        "l": ["x", "y", "not a key", [("a", "b")]],
        "d": {"one": "x", "two": (inc, "y")},
    }
    assert client.get(dsk, "y") == 2
    assert client.get(dsk, ["z", ["w", ["y"]]]) == [3, [4, [2]]]
    assert client.get(dsk, "l") == [1, 2, "not a key", [["a", "b"]]]
    assert client.get(dsk, "d") == {"one": 1, "two": 3}
    cluster.wait_idle()


def test_tuple_keys_as_dask_collections_use(client):
    dsk = {("x", 0): 10, ("x", 1): (inc, ("x", 0)), "total": (add, ("x", 0), ("x", 1))}
    assert client.get(dsk, [("x", 1), "total"]) == [11, 21]


VALUES = [
    None,
    True,
    False,
    0,
    -(2**63),
    2**63 - 1,
    1.5,
    float("inf"),
    "",
    "héllo",
    b"",
    b"\x00\x01binary",
    [1, [2, [3]]],
    {"a": {"b": [1, None]}, "c": "d"},
]


def same(a, b):
    """Equal, and of the same types all the way down (`True == 1` is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip(client, value):
    # Through the standard library's identity, and through a Python function on a worker.
    assert same(client.get({"v": (zask.function("identity"), value)}, "v"), value)
    assert same(client.submit(echo, value).result(), value)


def test_tuples_bytearrays_and_buffers_come_back_as_lists_and_bytes(client):
    assert client.get({"v": (echo, (1, (2, 3)))}, "v") == [1, [2, 3]]
    assert client.get({"v": (echo, bytearray(b"ab"))}, "v") == b"ab"
    assert client.get({"v": (echo, memoryview(b"cd"))}, "v") == b"cd"


def test_values_zask_cannot_carry_are_clear_errors(client):
    with pytest.raises(OverflowError, match="64 bits"):
        client.get({"v": 2**64}, "v")
    with pytest.raises(TypeError, match="str keys"):
        client.get({"v": {1: "a"}}, "v")
    with pytest.raises(TypeError, match="set"):
        client.get({"v": {1, 2}}, "v")


def test_a_function_that_is_not_a_zask_function_is_refused_naming_the_key(client):
    with pytest.raises(TypeError, match='key "bad" calls .*not a zask function'):
        client.get({"bad": (lambda x: x, 1)}, "bad")


def test_errors(client):
    with pytest.raises(zask.ZaskError) as e:
        client.get({"y": (inc, 1)}, "nowhere")
    assert e.value.kind == "missing_key"
    # A string that is not a key of the graph is a string.
    with pytest.raises(zask.TaskError):
        client.get({"y": (inc, "nowhere")}, "y")
    with pytest.raises(zask.ZaskError) as e:
        client.get({"a": (inc, "b"), "b": (inc, "a")}, "a")
    assert e.value.kind == "cycle"
    with pytest.raises(zask.ZaskError) as e:
        client.get({"u": (zask.function("no_such_function"), 1)}, "u")
    assert e.value.kind == "unknown_function"


def test_key_conflict(client):
    f = client.submit(pyinc, 1, key="conflicting")
    assert f.result() == 2
    with pytest.raises(zask.KeyConflict):
        client.get({"conflicting": (pyinc, 2)}, "conflicting")
    del f


def test_keys_named_alike_are_refused_and_equal_keys_are_references(client):
    with pytest.raises(TypeError, match="both named"):
        client.get({("x", 0): 1, "('x', 0)": 2}, "('x', 0)")
    # ('x', 0.0) equals the key ('x', 0): a reference to it.
    assert client.get({("x", 0): 1, "y": (inc, ("x", 0.0))}, "y") == 2


def test_dask_task_objects_are_read_by_their_own_rules(client):
    spec = pytest.importorskip("dask._task_spec")
    listing = zask.function("list")
    dsk = {
        "a": spec.DataNode("a", 5),
        # Inside task objects only TaskRef and Alias refer: the string "a" is a string.
        "b": spec.Task("b", listing, "a", spec.TaskRef("a"), ("a", 1)),
        "c": spec.Alias("c", "b"),
    }
    assert client.get(dsk, "c") == ["a", 5, ["a", 1]]
