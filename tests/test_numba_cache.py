"""Numba's on-disk cache of the RBM kernels across processes and thread counts.

The parallel RBM kernels are compiled with ``cache=True``.  Numba's cache of
``parallel=True`` functions has broken for users when a process with another
thread count loaded it, so these tests run the kernels in fresh interpreters
that share one cache directory with different ``NUMBA_NUM_THREADS``: the
first compiles and writes the cache, the next ones load it, and every
process must produce the same bits (the recorded digests of
``test_digests.py``).  No timing is asserted here (start-up times are
measured by ``python -m bench``'s start-up table).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FAMILY = "rbm"

ROOT = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    import numba
    import test_digests as td
    out = {{"threads": numba.config.NUMBA_NUM_THREADS}}
    for case in ("gibbs_gemm", "gibbs_bin", "single_site", "ais", "pl"):
        out[case] = td._digest(td.CASES[case]("numba", np.float32))
    print(json.dumps(out))
""")


def _run_child(cache_dir, threads):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["NUMBA_NUM_THREADS"] = str(threads)
    env.pop("NUMBA_DISABLE_JIT", None)
    res = subprocess.run([sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests"))],
                         cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_cached_parallel_kernels_other_thread_count(tmp_path):
    """Compile with 2 threads, then load the cache with 1 and with 3 threads:
    no crash, and the same bits as the recorded digests every time."""
    pytest.importorskip("numba")
    import test_digests as td

    runs = [_run_child(tmp_path, n) for n in (2, 1, 3)]
    assert [r["threads"] for r in runs] == [2, 1, 3]
    assert any(tmp_path.rglob("*.nbi")), "no cache index was written"
    for r in runs:
        for case in ("gibbs_gemm", "gibbs_bin", "single_site", "ais", "pl"):
            assert r[case] == td.DIGESTS[f"{case}-float32"], (r["threads"], case)


# ---- callers of parallel kernels (numba/numba#8578) -----------------------------------------

_SEQUENCE_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from dlkernels import gan, rbm
    g = np.random.default_rng(0)
    W = g.normal(0, 0.1, (64, 48)); a = np.zeros(64); b = np.zeros(48)
    v = (g.random((64, 64)) < 0.5) * 1.0
    calls = {
        "free_energy": lambda: rbm.free_energy(v, W, a, b, backend="numba").sum(),
        "hidden_probs": lambda: rbm.hidden_probs(v, W, b, backend="numba").sum(),
        "cd_gradient": lambda: rbm.cd_gradient(v, W, a, b, k=2, random_state=3,
                                               backend="numba").dW.sum(),
        "gibbs_chains": lambda: rbm.gibbs_chains(v, W, a, b, 5, random_state=3,
                                                 backend="numba").sum(),
        "dense_forward": lambda: gan.dense_forward(v, W, b, "tanh", backend="numba")[0].sum(),
        "dense_backward": lambda: gan.dense_backward(
            v, W, np.ones((64, 48)), gan.dense_forward(v, W, b, "relu", backend="numba")[1],
            "relu", backend="numba")[0].sum(),
    }
    print(repr(float(calls[sys.argv[1]]())))
""")


def _run_call(cache_dir, name):
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env.pop("NUMBA_DISABLE_JIT", None)
    res = subprocess.run([sys.executable, "-c", _SEQUENCE_CHILD, name], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, f"{name}: exit {res.returncode}\n{res.stderr[-3000:]}"
    return res.stdout.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("first, then", [("free_energy", "hidden_probs"),
                                         ("cd_gradient", "gibbs_chains"),
                                         ("dense_backward", "dense_forward")])
def test_caller_compiled_after_its_parallel_callee_was_cached(tmp_path, first, then):
    """Process 1 caches the parallel layer kernels; process 2 loads them and
    compiles ``then`` (a serial function calling them) into the cache;
    process 3 loads ``then`` from the cache.  With a plain ``@njit`` caller
    process 3 died of SIGSEGV (numba/numba#8578); see engine/numba/_flags.py."""
    pytest.importorskip("numba")
    _run_call(tmp_path, first)
    compiled = _run_call(tmp_path, then)
    loaded = _run_call(tmp_path, then)
    assert loaded == compiled


def _dispatchers():
    """Every cached Numba dispatcher defined in dlkernels.engine.numba, by
    qualified name, with the names its Python source calls resolved to
    dispatchers."""
    import ast
    import importlib
    import inspect
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import dlkernels.engine.numba as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                found[f"{mod.__name__}.{name}"] = obj
    graph, parallel = {}, set()
    for qual, disp in found.items():
        tree = ast.parse(textwrap.dedent(inspect.getsource(disp.py_func)))
        names = {n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        glb = disp.py_func.__globals__
        graph[qual] = {f"{glb[n].py_func.__module__}.{n}" for n in names
                       if isinstance(glb.get(n), CPUDispatcher)} - {qual}
        # the declared option, read from the decorator: Numba rewrites
        # ``targetoptions["parallel"]`` to {} once a function compiled through
        # the parallel pipeline turned out to have no parallel loop
        deco = tree.body[0].decorator_list
        if any(isinstance(d, ast.Call) and any(
                k.arg == "parallel" and not (isinstance(k.value, ast.Constant) and not k.value.value)
                for k in d.keywords) for d in deco):
            parallel.add(qual)
    return found, graph, parallel


def test_every_cached_caller_of_a_parallel_kernel_uses_the_parallel_pipeline():
    """The static side of the test above: a cached function that reaches a
    ``parallel=True`` function through its calls must itself be compiled with
    a ``parallel`` option (``CALLS_PARALLEL`` or True)."""
    pytest.importorskip("numba")
    found, graph, par = _dispatchers()
    assert par, "no parallel kernels found"

    def reaches(q, seen):
        return any(c in par or (c not in seen and reaches(c, seen | {c}))
                   for c in graph.get(q, ()))

    cached = {q for q, d in found.items() if type(d._cache).__name__ != "NullCache"}
    assert len(cached) > len(found) // 2, "cache detection failed"
    bad = sorted(q for q in cached if q not in par and reaches(q, {q}))
    assert not bad, f"cached serial callers of parallel kernels (use CALLS_PARALLEL): {bad}"
    # and the option really is the one that keeps the caller's own code serial
    from dlkernels.engine.numba._flags import CALLS_PARALLEL
    transforms = ("comprehension", "reduction", "inplace_binop", "setitem", "numpy", "stencil",
                  "fusion")
    assert CALLS_PARALLEL.enabled and CALLS_PARALLEL.prange
    assert not any(getattr(CALLS_PARALLEL, t) for t in transforms)


@pytest.mark.slow
def test_calls_parallel_survives_compilation(tmp_path):
    """Numba empties a dict ``parallel=`` option when it compiles; the shared
    option must still disable every transform after several compilations."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    code = textwrap.dedent("""
        import numpy as np
        from dlkernels import rbm
        from dlkernels.engine.numba._flags import CALLS_PARALLEL
        g = np.random.default_rng(0)
        W = g.normal(0, 0.1, (8, 6)); v = (g.random((4, 8)) < 0.5) * 1.0
        for dt in (np.float32, np.float64):
            rbm.hidden_probs(v.astype(dt), W.astype(dt), np.zeros(6, dt), backend="numba")
            rbm.gibbs_chains(v.astype(dt), W.astype(dt), np.zeros(8, dt), np.zeros(6, dt), 2,
                             backend="numba")
        print(CALLS_PARALLEL.prange, CALLS_PARALLEL.numpy, CALLS_PARALLEL.setitem,
              CALLS_PARALLEL.reduction)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), env=env,
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["True", "False", "False", "False"]
