"""Python functions for the quick start's workers (`zask-worker ... --module myfuncs`)."""

import zask


@zask.function
def square(x):
    return x * x


@zask.function
def describe(name, n):
    return f"{name} has {n} letters"
