"""Kernels in processes forked after the parent used them, and in several
Python threads at once.

GNU OpenMP (the Cython backend and Numba's ``omp`` threading layer) is not
fork-safe: a child forked after a parallel region inherits a thread pool whose
threads do not exist, and Numba's ``omp`` layer kills any parallel launch in
such a child.  ``dlkernels.bindings._threads`` runs a forked child on one
thread (see its docstring); these tests check that a ``fork`` pool's workers,
threads inside them and a grandchild get exactly the parent's numbers, with
both backends.  The fork scenarios run in a subprocess under a timeout so
that a hang fails the test instead of blocking the suite.

Run as a script (``python tests/test_processes.py BACKEND``) it plays the
scenario and prints the digests as JSON.
"""
import functools
import hashlib
import json
import os
import select
import subprocess
import sys
import threading

import numpy as np
import pytest

import dlkernels
from dlkernels import rbm, rng

from conftest import require_backend

FAMILY = "rbm"

# Seconds one fork scenario may take before it counts as a hang (inside the
# script), and the whole script (start-up, Numba cache loads, compilation if
# the cache is stale).
TASK_TIMEOUT = 120
SCRIPT_TIMEOUT = 600
N_TASKS = 4


def _two_threads():
    """2, or 1 on a machine whose Numba pool has a single thread."""
    import numba

    return min(2, numba.config.NUMBA_NUM_THREADS)


def _sizes_parallel():
    """(chains, visible, hidden): chains * visible * hidden is above the
    engines' parallel threshold, so the layers run in parallel regions."""
    return 96, 192, 128


def workload(i, backend):
    """Digests of a few parallel kernels' outputs for task i (even i: float32,
    odd i: float64): uniforms, block Gibbs chains, a CD-1 gradient."""
    dt = np.float32 if i % 2 == 0 else np.float64
    C, m, n = _sizes_parallel()
    rs = np.random.default_rng(100 + i)
    W = (0.1 * rs.standard_normal((m, n))).astype(dt)
    a = (0.5 * rs.standard_normal(m)).astype(dt)
    b = (0.5 * rs.standard_normal(n)).astype(dt)
    v0 = (rs.random((C, m)) < 0.5).astype(dt)
    u = rng.uniform(rng.make_key(1000 + i), 1 << 19, dtype=dt, backend=backend)
    v, h = rbm.gibbs_chains(v0, W, a, b, 2, random_state=i, return_hidden=True, backend=backend)
    g = rbm.cd_gradient(v0, W, a, b, k=1, random_state=i, backend=backend)
    out = hashlib.sha256()
    for x in (u, v, h, g.dW, g.da, g.db):
        out.update(np.ascontiguousarray(x).tobytes())
    return out.hexdigest()


def _threaded(backend, tasks=range(N_TASKS), kernel_threads=None):
    """workload(i) for each i, each in its own Python thread, all at once
    (each thread first sets its kernels' thread count when one is given:
    ``set_num_threads`` acts on the calling thread)."""
    tasks = list(tasks)
    res = [None] * len(tasks)
    errors = []
    start = threading.Barrier(len(tasks))

    def run(j, i):
        try:
            if kernel_threads is not None:
                dlkernels.set_num_threads(kernel_threads)
            start.wait()
            res[j] = workload(i, backend)
        except BaseException as exc:  # reported by the caller
            errors.append(repr(exc))

    ths = [threading.Thread(target=run, args=(j, i)) for j, i in enumerate(tasks)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if errors:
        raise RuntimeError(f"threads failed: {errors}")
    return res


def _grandchild(backend, i):
    """Fork from inside a pool worker (os.fork) and run workload(i) in the
    grandchild; its digest, or 'hang' / 'died' when it does not answer."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the grandchild
        code = 1
        try:
            os.close(r)
            os.write(w, workload(i, backend).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], TASK_TIMEOUT)
        if not ready:
            os.kill(pid, 9)
            return "hang"
        data = os.read(r, 256).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return data or "died"


def _child_info():
    """Thread counts seen in a forked child, and what set_num_threads(2) does there."""
    import warnings

    from dlkernels.bindings import _threads

    before = dlkernels.get_num_threads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dlkernels.set_num_threads(_two_threads())
    info = _threads.thread_info()
    return dict(before=before, after=dlkernels.get_num_threads(), numba=info["numba"],
                openmp=info["openmp"], forked_child=info["forked_child"], asked=_two_threads(),
                warned=[str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])


def scenario(backend):
    """The parent uses both backends' parallel regions (Numba's omp layer
    started, a GNU OpenMP team created), then a fork pool runs the tasks with
    ``backend``: in its workers, in 4 threads of one worker, in a grandchild."""
    import multiprocessing as mp

    from dlkernels.bindings import _threads
    from dlkernels.bindings._backend import available_backends

    dlkernels.set_num_threads(_two_threads())
    for b in available_backends(FAMILY):
        workload(0, b)
    parent = [workload(i, backend) for i in range(N_TASKS)]
    with mp.get_context("fork").Pool(2) as pool:
        child = pool.starmap_async(workload, [(i, backend) for i in range(N_TASKS)])
        child = child.get(TASK_TIMEOUT)
        threads = pool.apply_async(_threaded, (backend,)).get(TASK_TIMEOUT)
        grand = pool.apply_async(_grandchild, (backend, 1)).get(TASK_TIMEOUT)
        info = pool.apply_async(_child_info).get(TASK_TIMEOUT)
    return dict(parent=parent, child=child, threads=threads, grand=grand, info=info,
                parent_threads=dlkernels.get_num_threads(),
                parent_forked_child=_threads.thread_info()["forked_child"])


@functools.lru_cache(maxsize=None)
def _uniform_digest(i, backend):
    u = rng.uniform(rng.make_key(2000 + i), 1 << 19, dtype=np.float32, backend=backend)
    return hashlib.sha256(u.tobytes()).hexdigest()


def cross_scenario(parent_backend, child_backend):
    """The parent uses one backend only; the fork pool's workers use the other
    (e.g. Numba's threading layer first started in the child, over the GNU
    OpenMP pool inherited from the parent's Cython call)."""
    import multiprocessing as mp

    dlkernels.set_num_threads(_two_threads())
    parent = _uniform_digest(0, parent_backend)
    with mp.get_context("fork").Pool(2) as pool:
        child = pool.starmap_async(_uniform_digest, [(i, child_backend) for i in range(2)])
        child = child.get(TASK_TIMEOUT)
    return dict(parent=parent, child=child)


def _run_scenario(*args):
    """scenario(backend) (or cross_scenario(a, b)) in a fresh interpreter
    (one run per argument tuple, shared by the tests)."""
    here = os.path.abspath(__file__)
    proc = subprocess.run([sys.executable, here, *args], capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT, cwd=os.path.dirname(here))
    assert proc.returncode == 0, f"fork scenario failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_pool_after_parent_use(backend):
    """Workers of a fork pool, threads inside one, and a grandchild compute
    exactly the parent's numbers; a hang or a killed worker fails the test."""
    # computed here first: a cold Numba cache is filled by this process, without
    # a timeout, and the scenario's interpreter only loads it
    expected = [workload(i, backend) for i in range(N_TASKS)]
    got = _run_scenario(backend)
    assert got["parent"] == expected
    assert got["child"] == expected
    assert got["threads"] == expected
    assert got["grand"] == expected[1]
    assert got["parent_threads"] == _two_threads()  # the parent keeps its threads
    assert got["parent_forked_child"] is False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_is_single_threaded(backend):
    """In a forked child the kernels run on one thread: get_num_threads() is 1
    and set_num_threads(2) warns and keeps 1 (Numba and OpenMP alike)."""
    info = _run_scenario(backend)["info"]
    assert info["before"] == 1 and info["after"] == 1
    assert info["numba"] == 1
    assert info["openmp"] in (1, None)
    assert info["forked_child"] is True
    if info["asked"] > 1:
        assert len(info["warned"]) == 1 and "forked" in info["warned"][0]
    else:
        assert info["warned"] == []


def test_python_threads_give_sequential_results(backend, restore_threads):
    """4 Python threads calling kernels at once (each kernel itself parallel on
    2 threads) give the results of sequential calls, in both dtypes."""
    dlkernels.set_num_threads(_two_threads())
    expected = [workload(i, backend) for i in range(N_TASKS)]
    for _ in range(2):
        assert _threaded(backend, kernel_threads=_two_threads()) == expected


def test_python_threads_single_kernel_threads(backend, restore_threads):
    """The same with one kernel thread (serial paths inside each Python thread)."""
    dlkernels.set_num_threads(1)
    expected = [workload(i, backend) for i in range(N_TASKS)]
    assert _threaded(backend, kernel_threads=1) == expected


def test_blas_single_threaded_counts_across_threads():
    """blas_single_threaded works from any Python thread (threadpoolctl alone
    ignores all but the first thread that limited OpenBLAS) and is counted:
    the BLAS stays on one thread while any block is open, in any thread, and
    gets its previous count back when the last one closes."""
    from dlkernels.bindings import _threads

    ctl = _threads._blas_controllers()
    if not ctl:
        pytest.skip("threadpoolctl finds no BLAS")
    with dlkernels.blas_single_threaded():   # the main thread has limited it once
        pass
    before = [c.get_num_threads() for c in ctl]
    seen = {}
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with dlkernels.blas_single_threaded():
            seen["first"] = [c.get_num_threads() for c in ctl]
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def second():
        a_in.wait(10)
        with dlkernels.blas_single_threaded():
            b_in.set()
            a_out.wait(10)
            seen["second, first gone"] = [c.get_num_threads() for c in ctl]

    ths = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert seen == {"first": [1] * len(ctl), "second, first gone": [1] * len(ctl)}
    assert [c.get_num_threads() for c in ctl] == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("parent_backend, child_backend", [("cython", "numba"), ("numba", "cython")])
def test_fork_child_uses_the_other_backend(parent_backend, child_backend):
    """Parent on one backend, fork-pool workers on the other: no hang, same numbers."""
    require_backend(parent_backend, FAMILY)
    require_backend(child_backend, FAMILY)
    expected = [_uniform_digest(i, child_backend) for i in range(2)]
    got = _run_scenario(parent_backend, child_backend)
    assert got["parent"] == _uniform_digest(0, parent_backend) == expected[0]
    assert got["child"] == expected


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(cross_scenario(sys.argv[1], sys.argv[2])))
    else:
        print(json.dumps(scenario(sys.argv[1])))
