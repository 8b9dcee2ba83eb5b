"""zask's exceptions (raised by the native module; see docs/python.md)."""

import concurrent.futures


class ZaskError(Exception):
    """Something zask reports: ``kind`` is the scheduler's error kind (``missing_key``,
    ``cycle``, ``unknown_function``, ...) when it gave one."""

    kind = None
    key = None
    function = None
    dependency = None
    message = None


class TaskError(ZaskError):
    """A task failed (``kind`` ``task_failed``), or one it depends on did
    (``dependency_failed``, naming it in ``dependency``). ``key``, ``function`` and
    ``message`` say which and why; a Python function's traceback is in ``message``."""


class KeyConflict(ZaskError):
    """A key is already held or being computed with another definition: a key names one
    value. Give the new definition another key, or release the old one first."""


class SchedulerUnreachable(ZaskError):
    """The scheduler does not answer, went silent, or restarted (and forgot the request)."""


class CancelledError(ZaskError, concurrent.futures.CancelledError):
    """The future was cancelled."""
