"""GEMM probes: the BLAS rate (np.dot, same dtype and shape as a kernel's
products) measured in the same run, the denominator of the "GEMM %" column."""
import numpy as np
import pytest

from bench import _presets
from bench.conftest import gemm_key

P = _presets.current()
_B = {P["ais_runs"], 100, 10, P["gibbs_chains"]}
SHAPES = sorted({(b, 784, 500) for b in _B} | {(10, 64, 100)})


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [np.float32], ids=["f32"])
def test_gemm(bench, shape, dtype):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.random((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    one = 2.0 * m * k * n
    reps = max(1, int(5e7 // one))          # ~0.05 GFLOP a round: long enough to time
    bench.describe(family="gemm", case=gemm_key(dtype, m, k, n), impl="gemm", flops=reps * one,
                   note=f"{reps} np.dot calls per round, best of the rounds")

    def fn():
        for _ in range(reps):
            np.dot(a, b, out=c)

    bench.run(fn, rounds=bench.preset["probe_rounds"])
