"""Python functions for bench/python_bench.py's workers."""

import zask


@zask.function
def pyinc(x):
    return x + 1


@zask.function
def pyadd(a, b):
    return a + b
