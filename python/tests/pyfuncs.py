"""Python functions the test workers offer (started with `--module pyfuncs`)."""

import os
import time

import zask


@zask.function
def pyinc(x):
    return x + 1


@zask.function
def echo(x):
    return x


@zask.function
def fails(x):
    raise ValueError(f"fails was given {x}")


@zask.function
def unrepresentable(x):
    return object()


@zask.function
def nap(seconds, value=None):
    time.sleep(seconds)
    return value


@zask.function
def touch(path):
    with open(path, "w") as f:
        f.write("ran")
    return path


@zask.function(name="py-add")
def py_add(a, b=0):
    return a + b


@zask.function
def pid(x):
    return os.getpid()


@zask.function
def even(x):
    return x % 2 == 0
