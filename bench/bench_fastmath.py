"""Shared fast math suite: elements per second of the vectorizable scalar
functions every family's kernels inline (``dlkernels.engine.numba._fastmath``
and its Cython twin ``engine/cython/_fastmath.pxd``), float32 and float64, 1
and N threads, against NumPy's ufuncs in the same run.

Our columns call the engine's array maps (``pmap_unary``: chunks of 16384
elements in a prange / OpenMP loop; Numba in ``_fastmath``, Cython in the
``_fastmath_ops`` extension) into a preallocated output.  Peers:
``numpy.exp(x, out=)``, ``numpy.tanh(x, out=)``, and for the sigmoid the
NumPy expression ``1 / (1 + exp(-x))`` in place plus ``scipy.special.expit``.
NumPy and SciPy are single-threaded: their time is the same in the 1- and
N-thread rows.

Target (issue 6): attention's additive score needs about 1.5 G tanh/s on 2
cores (float32), stated in the footnote and read off the rate column.
"""
import math

import numpy as np
import pytest

from bench import _presets

FAMILY = "fastmath"
TITLE = "Shared fast math (exp, sigmoid, tanh)"
ORDER = 200
FOOTNOTES = (
    "Elements per second of out[i] = f(x[i]) over x ~ U(-10, 10) (exp: U(-80, 80) in float32, "
    "U(-700, 700) in float64), n elements into a preallocated array. Ours: the engine's "
    "`pmap_unary` (the polynomial exp/tanh and the sigmoid the kernels inline; error bounds in "
    "`dlkernels/engine/numba/_fastmath.py`). numpy: `np.exp` / `np.tanh` with `out=`, sigmoid as "
    "`1 / (1 + exp(-x))` in place; scipy: `scipy.special.expit(x, out=)`. Goal (issue 6): about "
    "1.5 G tanh/s float32 on 2 cores for attention's additive score.",
)
PRESETS = {"smoke": dict(fm_n=10**5), "quick": dict(fm_n=10**6), "full": dict(fm_n=10**7)}
PEERS = {"scipy": "scipy"}

P = _presets.sizes(PRESETS)
N = P["fm_n"]
NTHR = _presets.threads()
THREADS = sorted({1, NTHR})
OPS = ("exp", "sigmoid", "tanh")
RANGE = {("exp", "float32"): 80.0, ("exp", "float64"): 700.0}


def _size(n):
    e = int(round(math.log10(n)))
    return f"10^{e}" if 10**e == n else f"{n:,}"


def _engine(impl):
    """(map function, {op name: op code}) of our backend ``impl``, or skip."""
    try:
        if impl == "numba":
            from dlkernels.engine.numba import _fastmath as mod
        else:
            from dlkernels.engine.cython import _fastmath_ops as mod
    except ImportError as exc:
        where = "numba._fastmath" if impl == "numba" else "cython._fastmath_ops"
        pytest.skip(f"not importable: dlkernels.engine.{where} ({type(exc).__name__}: {exc})")
    codes = {"exp": mod.OP_EXP, "sigmoid": mod.OP_SIGMOID, "tanh": mod.OP_TANH}
    return mod.pmap_unary, codes


def _numpy_peer(op, x, out):
    if op == "exp":
        return lambda: np.exp(x, out=out)
    if op == "tanh":
        return lambda: np.tanh(x, out=out)

    def sigmoid():
        np.negative(x, out=out)
        np.exp(out, out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)
    return sigmoid


@pytest.mark.parametrize("impl", ("numba", "cython", "numpy", "scipy"))
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("op", OPS)
def test_unary(bench, op, dtype, threads, impl):
    import dlkernels

    dt = np.dtype(dtype)
    if impl == "scipy" and op != "sigmoid":
        pytest.skip("no scipy peer for this function")   # not described: no column entry
    bench.describe(family=FAMILY, case=f"{op} {dt.name}, n={_size(N)}, {threads} thread{'s' * (threads > 1)}",
                   impl=impl, work=N, unit="elements",
                   note="peers single-threaded; ours: pmap_unary into a preallocated output")
    lim = RANGE.get((op, dt.name), 10.0)
    x = np.random.default_rng(0).uniform(-lim, lim, N).astype(dt)
    out = np.empty_like(x)
    if impl == "numpy":
        bench.run(_numpy_peer(op, x, out))
        return
    if impl == "scipy":
        bench.require_module("scipy")
        from scipy.special import expit

        bench.run(lambda: expit(x, out=out))
        return
    bench.require_backend("rng")        # the engine packages import (the rng module is the base)
    fn, codes = _engine(impl)
    code = codes[op]
    fn(code, x[:1000], out[:1000])      # compile (once per dtype) outside the warm-up estimate
    old = dlkernels.get_num_threads()
    dlkernels.set_num_threads(threads)
    try:
        bench.run(lambda: fn(code, x, out))
    finally:
        dlkernels.set_num_threads(old)
