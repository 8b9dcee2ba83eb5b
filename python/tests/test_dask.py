"""dask interoperation: `dask.compute(obj, scheduler=client.get)` runs dask.delayed and
dask.bag graphs whose functions are zask functions, with the real dask package."""

import pytest

dask = pytest.importorskip("dask")
from dask import delayed  # noqa: E402

import zask  # noqa: E402
from pyfuncs import pyinc  # noqa: E402

add = zask.function("add")


def test_delayed_graphs(client):
    x = delayed(pyinc)(1)
    y = delayed(add)(x, 10)
    z = delayed(add)(y, [x, 2][0])
    assert dask.compute(y, scheduler=client.get) == (12,)
    assert dask.compute(x, y, z, scheduler=client.get) == (2, 12, 14)
    # Containers of delayed values are resolved.
    total = delayed(zask.function("sum"))([delayed(pyinc)(i) for i in range(10)])
    assert total.compute(scheduler=client.get) == 55


def test_a_lambda_is_refused_not_pickled(client):
    with pytest.raises(TypeError, match="not a zask function"):
        dask.compute(delayed(lambda v: v)(1), scheduler=client.get)


def test_bags(client):
    import dask.bag as db

    from pyfuncs import even

    b = db.from_sequence(range(1, 11), npartitions=3)
    cases = {
        "map then sum": b.map(pyinc).sum(),
        "the items": b.map(pyinc),
        "filter then count": b.filter(even).count(),
        "filter": b.filter(even),
        "max": b.map(pyinc).max(),
        "min": b.min(),
    }
    for name, obj in cases.items():
        assert dask.compute(obj, scheduler=client.get) == dask.compute(obj, scheduler="sync"), name


def test_a_bag_operation_zask_does_not_offer_is_a_clear_error(client):
    import dask.bag as db

    b = db.from_sequence(range(10), npartitions=2)
    with pytest.raises(TypeError, match="not a zask function"):
        dask.compute(b.map(lambda x: x), scheduler=client.get)
    with pytest.raises(TypeError, match="not a zask function"):
        dask.compute(b.frequencies(), scheduler=client.get)
