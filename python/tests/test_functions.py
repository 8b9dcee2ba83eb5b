"""Python functions on workers: results, errors with tracebacks, unrepresentable results."""

import pytest

import zask
from pyfuncs import fails, pid, py_add, pyinc, unrepresentable


def test_python_functions_run_on_workers(client):
    assert client.submit(pyinc, 41).result() == 42
    assert client.submit(py_add, 1, b=2).result() == 3
    assert py_add.name == "py-add"
    # Locally, the decorated function is still the function.
    assert pyinc(1) == 2


def test_a_python_exception_is_the_task_error_with_its_traceback(client):
    f = client.submit(fails, 7)
    with pytest.raises(zask.TaskError) as e:
        f.result()
    err = e.value
    assert err.kind == "task_failed"
    assert err.key == f.key
    assert err.function == "fails"
    assert "Traceback (most recent call last)" in err.message
    assert "ValueError: fails was given 7" in err.message
    # A dependent fails with dependency_failed, naming the input.
    g = client.submit(pyinc, f)
    with pytest.raises(zask.TaskError) as e:
        g.result()
    assert e.value.kind == "dependency_failed"
    assert e.value.dependency == f.key


def test_a_result_zask_cannot_carry_is_a_task_error(client):
    with pytest.raises(zask.TaskError, match="cannot carry"):
        client.submit(unrepresentable, 1).result()


def test_functions_run_in_the_worker_processes(client, cluster):
    import os

    pids = set(client.gather(client.map(pid, range(20), pure=False)))
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= len(cluster.worker_addresses)


def test_a_python_function_may_not_take_a_standard_library_name(cluster, tmp_path):
    import subprocess

    from conftest import command

    (tmp_path / "clash.py").write_text(
        "import zask\n@zask.function\ndef add(a, b):\n    return a - b\n")
    out = subprocess.run([command("zask-worker"), cluster.workers_address, "--module", "clash"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "standard-library function" in out.stderr
