"""RNG suite: uniforms per second, dlkernels.rng.uniform vs
numpy.random.Generator(Philox).random, float32 and float64, 1 and N threads.

Target (issue 2): 10^8 float32 uniforms with 2 threads >= 3x faster than
numpy's Generator(Philox).random(dtype=float32) in the same run.
"""
import math

import numpy as np
import pytest

from bench import _presets

FAMILY = "rng"
TITLE = "Random numbers (Philox4x64-10 uniforms)"
ORDER = 10
FOOTNOTES = ("Uniforms in [0, 1) as numpy's `Generator(Philox).random` draws them (bit-identical). "
             "numpy is single-threaded, so its time is the same in the 1- and N-thread rows.",)
PRESETS = {"smoke": dict(rng_n=10**6), "quick": dict(rng_n=10**7), "full": dict(rng_n=10**8)}
STARTUP_PRESETS = ("smoke", "quick", "full")


def startup(backend):
    """Start-up probe (bench/_startup.py): the first rng.uniform call."""
    import numpy as np

    import dlkernels.rng as fam

    key = fam.make_key(0)

    def call():
        fam.uniform(key, 1000, dtype=np.float32, backend=backend)
    return "rng.uniform(float32, n=1000)", call


P = _presets.sizes(PRESETS)
N = P["rng_n"]
NTHR = _presets.threads()
THREADS = sorted({1, NTHR})
IMPLS = ("numba", "cython", "numpy")


def _size(n):
    e = int(round(math.log10(n)))
    return f"10^{e}" if 10**e == n else f"{n:,}"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_uniform(bench, dtype, threads, impl):
    import dlkernels
    import dlkernels.rng as dr

    dt = np.dtype(dtype)
    target = None
    if dt == np.float32 and threads == 2:
        target = [{"vs": "numpy", "ratio": 3.0}]
    bench.describe(family="rng", case=f"uniform {dt.name}, n={_size(N)}, {threads} thread{'s' * (threads > 1)}",
                   impl=impl, work=N, unit="uniforms", target=target,
                   note="numpy: Generator(Philox).random(out=, dtype=), single-threaded")
    out = np.empty(N, dtype=dt)
    if impl == "numpy":
        gen = np.random.Generator(np.random.Philox(12345))
        bench.run(lambda: gen.random(out=out, dtype=dt))
        return
    bench.require_backend("rng")
    key = dr.make_key(12345)
    old = dlkernels.get_num_threads()
    dlkernels.set_num_threads(threads)
    try:
        bench.run(lambda: dr.uniform(key, out=out, dtype=dt, backend=impl))
    finally:
        dlkernels.set_num_threads(old)
