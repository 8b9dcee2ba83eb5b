"""The Python functions this process offers to run (filled by ``@zask.function``)."""

FUNCTIONS = {}
