#!/usr/bin/env bash
# Every test of the project: the Rust workspace's (unit tests, and integration tests that start
# real scheduler, worker and client processes), then the Python package's: it is built and
# installed into a virtualenv (target/python-venv, made if missing; ZASK_VENV to choose
# another) with pytest and dask, and its tests start real processes too.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
# The Python tests run the Rust `bag` example against the Python client.
cargo build --workspace --examples
venv="${ZASK_VENV:-target/python-venv}"
if [ ! -x "$venv/bin/python" ]; then
    "${ZASK_PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "./python[test]"
venv_abs="$(cd "$venv" && pwd)"
# (From the tests' folder: `import zask` is the installed package, not the source folder.)
cd python/tests
"$venv_abs/bin/python" -m pytest -q
