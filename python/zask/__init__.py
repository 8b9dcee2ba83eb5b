"""zask: a distributed task scheduler with a Rust core, for Python users.

>>> import zask
>>> with zask.Client("tcp://127.0.0.1:8787") as client:          # doctest: +SKIP
...     inc = zask.function("inc")
...     client.get({"x": 1, "y": (inc, "x")}, "y")
2

Graphs are dicts as dask writes them; functions are named, never shipped: a task calls a
function workers offer (the standard library, or Python functions a worker imported itself,
``zask-worker ADDRESS --module mymodule``). See docs/python.md.
"""

import functools

from . import _native, _registry
from ._errors import CancelledError, KeyConflict, SchedulerUnreachable, TaskError, ZaskError
from ._native import Bag, Future

__all__ = [
    "Client",
    "Future",
    "Bag",
    "Function",
    "Key",
    "function",
    "as_completed",
    "wait",
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "ZaskError",
    "TaskError",
    "KeyConflict",
    "SchedulerUnreachable",
    "CancelledError",
]

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"


class Key(str):
    """A key named explicitly: a reference to its value wherever it appears in a graph or
    the arguments of ``submit`` (``Client.scatter`` gives these)."""

    @property
    def __zask_key__(self):
        return str(self)


class Function:
    """A function workers offer, by name: the head of a task tuple (``(f, 1, 2)``), or what
    ``Client.submit`` calls. Made by :func:`function`. Called locally, it runs the Python
    function it wraps (if any)."""

    def __init__(self, name, fn=None):
        if not isinstance(name, str) or not name:
            raise TypeError("a zask function's name is a non-empty str")
        self.name = name
        self.fn = fn
        self.__zask_function__ = name
        self.__wrapped__ = fn
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            raise TypeError(
                f"zask function {self.name!r} runs on workers; it has no local Python body"
            )
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"zask.function({self.name!r})"

    def __reduce__(self):
        # Pickled by name only (never its code).
        return (function, (self.name,))


def function(arg=None, *, name=None):
    """A zask function.

    - ``zask.function("add")``: one workers offer by that name (the standard library has
      ``add``, ``inc``, ``sum``, ``map``, ...).
    - ``@zask.function`` (or ``@zask.function(name="...")``) on a Python function: registers
      it in this process, so that a worker started with ``--module`` naming this module offers
      it (under its ``__name__``, or ``name``), and returns a :class:`Function` for graphs and
      ``submit``.
    """
    if isinstance(arg, str):
        return Function(arg)

    def register(fn):
        n = name or fn.__name__
        _registry.FUNCTIONS[n] = fn
        f = Function(n, fn)
        functools.update_wrapper(f, fn, assigned=(), updated=())
        return f

    if arg is None:
        return register
    if callable(arg):
        return register(arg)
    raise TypeError("zask.function takes a name, or decorates a function")


def _graph_of(dsk):
    """A graph dict from what ``dask.compute(..., scheduler=client.get)`` passes."""
    if isinstance(dsk, dict):
        return dsk
    graph = getattr(dsk, "__dask_graph__", None)
    if graph is not None:
        return dict(graph())
    return dict(dsk)


class Client:
    """A connection to a zask scheduler (its ``address_to_clients``).

    As dask's ``Client``: ``get`` for graphs, ``submit``/``map``/``gather`` for futures,
    ``scatter``, collections, and a context manager that closes the connection. Waiting calls
    may be interrupted with Ctrl-C: what they waited for is cancelled on the scheduler.
    """

    def __init__(self, address, timeout=10.0, auth_token_file=None):
        self._native = _native.NativeClient(address, timeout, auth_token_file)

    @property
    def address(self):
        return self._native.address

    # ----- graphs -----------------------------------------------------------------------

    def get(self, dsk, keys, **kwargs):
        """Computes ``keys`` of dask-style graph ``dsk``: one key gives its value, a list a
        list, nested lists nested lists. Usable as dask's scheduler:
        ``dask.compute(obj, scheduler=client.get)``. Ctrl-C cancels the computation."""
        return self._native.get(_graph_of(dsk), keys)

    # ----- futures ----------------------------------------------------------------------

    def submit(self, func, *args, key=None, pure=True, priority=0, retries=0, workers=None,
               **kwargs):
        """Submits ``func(*args, **kwargs)``; returns its :class:`Future` at once. ``func`` is a
        zask function (or its name); futures among the arguments are resolved on the
        scheduler. ``key`` names the result (default: a hash of the call, so the same call
        shares one result; ``pure=False`` gives a fresh key); ``priority`` (higher first),
        ``retries`` (runs again after a failure), ``workers`` (addresses it may run on)."""
        return self._native.submit(func, args, kwargs or None, key, pure, priority, retries,
                                   list(workers) if workers else None)

    def map(self, func, *iterables, pure=True, priority=0, retries=0):
        """Submits ``func(item)`` for each item (several iterables: ``func(*items)``); the
        futures, in order."""
        if len(iterables) == 1:
            return self._native.map(func, iterables[0], pure, priority, retries)
        return [self.submit(func, *items, pure=pure, priority=priority, retries=retries)
                for items in zip(*iterables)]

    def gather(self, futures):
        """The values of ``futures`` (a future, or a list of them), once all are done; a
        failure raises its error. Ctrl-C cancels them."""
        if isinstance(futures, Future):
            return self._native.gather([futures])[0]
        return self._native.gather(list(futures))

    def cancel(self, futures):
        """Cancels ``futures`` (a future, or a list)."""
        if isinstance(futures, Future):
            futures = [futures]
        for f in futures:
            f.cancel()

    def scatter(self, data):
        """Puts values on workers: a list gives a list of :class:`Key`s, a single value one
        (held until :meth:`release`; graphs and ``submit`` arguments refer to them)."""
        if isinstance(data, (list, tuple)):
            return [Key(k) for k in self._native.scatter(list(data))]
        return Key(self._native.scatter([data])[0])

    def release(self, keys):
        """Lets held keys go (scattered or kept ones)."""
        if isinstance(keys, str):
            keys = [keys]
        return self._native.release(list(keys))

    # ----- collections ------------------------------------------------------------------

    def set_collection(self, name, graph, keys=None, kind="graph"):
        """Stores a graph (with its output ``keys``) or a :class:`Bag` under ``name``, for any
        client to fetch; returns whether one of that name was replaced."""
        if isinstance(graph, Bag):
            return self._native.set_bag(name, graph)
        return self._native.set_collection(name, _graph_of(graph), keys, kind)

    def get_collection(self, name):
        """The stored collection ``name``: a :class:`Bag` if it is one, else a dict
        ``{"kind", "graph", "keys", "meta"}``."""
        c = self._native.get_collection(name)
        if c.get("kind") == "bag":
            return self._native.get_bag(name)
        return c

    def list_collections(self):
        return self._native.list_collections()

    def delete_collection(self, name):
        return self._native.delete_collection(name)

    def compute_collection(self, name):
        """Computes the stored collection ``name`` (a bag: the list of its items)."""
        return self._native.compute_collection(name)

    # ----- cluster ----------------------------------------------------------------------

    def status(self):
        return self._native.status()

    def workers(self):
        return self._native.workers()

    def wait_for_workers(self, n=1, timeout=30.0):
        return self._native.wait_for_workers(n, timeout)

    def computations(self):
        """The computations in flight, every client's (as ``zask computations``): a list of
        dicts with ``id`` (``get-N`` or ``futures-N``), ``kind``, ``client``, ``age_ms``,
        ``total``, ``done``, ``failed``, ``waiting``."""
        return self._native.computations()

    def cancel_computation(self, id):
        """Cancels a computation by the id :meth:`computations` gives (as ``zask cancel``):
        a get fails with a cancelled error for its client; ``futures-N`` cancels that
        client's futures. An id not in flight raises ``zask.ZaskError`` of kind
        ``unknown_computation``."""
        return self._native.cancel_computation(id)

    def held_keys(self, limit=100):
        """Keys held on the workers (as ``zask keys``): ``(total, keys)``, ``keys`` a list of
        dicts with ``key``, ``nbytes``, ``holders``, at most ``limit`` (and 10,000)."""
        return self._native.held_keys(limit)

    def close(self):
        """Closes the connection: the scheduler cancels this client's computations and drops
        its futures."""
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<zask.Client: {self.address}>"


def as_completed(futures, with_results=False):
    """An iterator of ``futures`` in the order they finish (failed and cancelled ones too);
    ``with_results=True`` yields ``(future, value)`` pairs (the value is the exception for a
    failed one). ``.add(future)`` adds more while iterating."""
    return _native.as_completed(list(futures), with_results)


def wait(futures, timeout=None, return_when=ALL_COMPLETED):
    """Waits until all (``ALL_COMPLETED``) or the first (``FIRST_COMPLETED``) of ``futures``
    are done, or ``timeout`` seconds pass; returns ``(done, not_done)``."""
    return _native.wait(list(futures), timeout, return_when)
