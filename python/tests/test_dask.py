"""dask interoperation: `dask.compute(obj, scheduler=client.get)` runs dask.delayed graphs
whose functions are zask functions, with the real dask package."""

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
