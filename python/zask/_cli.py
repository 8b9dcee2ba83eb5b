"""The console scripts the package installs: ``zask``, ``zask-scheduler`` and
``zask-worker`` (with ``--module`` for Python functions)."""

import importlib
import os
import sys


def zask_main():
    """``zask``: the client command line (as the Rust binary)."""
    from . import _native

    sys.exit(_native.run_zask(["zask"] + sys.argv[1:]))


def scheduler_main():
    """``zask-scheduler``: run a scheduler (as the Rust binary)."""
    from . import _native

    _native.run_scheduler(["zask-scheduler"] + sys.argv[1:])


def worker_main():
    """``zask-worker ADDRESS [--module M ...] [flags]``: a worker with the standard library
    plus every function the modules register with ``@zask.function``. The other flags are
    those of the Rust ``zask-worker`` (``--help`` lists them)."""
    from . import _native, _registry

    args = sys.argv[1:]
    modules = []
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--module":
            if i + 1 >= len(args):
                print("zask-worker: --module takes a module name", file=sys.stderr)
                sys.exit(2)
            modules.append(args[i + 1])
            i += 2
            continue
        if a.startswith("--module="):
            modules.append(a.split("=", 1)[1])
            i += 1
            continue
        rest.append(a)
        i += 1
    if "--help" in rest or "-h" in rest:
        print("zask-worker (Python): --module MODULE (repeatable) imports MODULE and offers "
              "the functions it registers with @zask.function, besides the standard library.\n")
    # Modules next to where the worker is started are importable, as with `python -m`.
    if "" not in sys.path:
        sys.path.insert(0, "")
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as e:  # noqa: BLE001 - reported, then exit
            print(f"zask-worker: cannot import module {m!r}: {e}", file=sys.stderr)
            sys.exit(2)
    try:
        _native.run_worker(["zask-worker"] + rest, dict(_registry.FUNCTIONS))
    except ValueError as e:
        print(f"zask-worker: {e}", file=sys.stderr)
        sys.exit(2)
    # The worker stopped. Executor threads may still run a cancelled task's Python code: the
    # interpreter must not be torn down under them, so the process ends here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
