"""GEMM probes: the BLAS rate on the same dtype and shape as a kernel's
products, measured in the same run: the denominator of the "GEMM %" column.

The shapes are the union of what the suites declare (``gemm_shapes(sizes)``
in each ``bench_<family>.py``, see bench/README.md); this file names no
family.  Two BLAS libraries may be loaded: numpy's (``np.dot``) and scipy's
(``scipy.linalg.blas``), which is the one dlkernels' kernels call (Cython
through ``scipy.linalg.cython_blas``, Numba through the same BLAS symbols).
Both are probed; the runner takes the faster as the reference rate.
"""
import numpy as np
import pytest
import scipy.linalg.blas as sblas

from bench import _presets, _registry
from bench.conftest import gemm_key

SHAPES = _registry.gemm_shapes(_presets.name())
_SHORT = {"float32": "f32", "float64": "f64"}


def _id(shape):
    dt, m, k, n = shape
    return f"{_SHORT.get(dt, dt)}-{m}x{k}x{n}"


@pytest.mark.parametrize("lib", ["numpy", "scipy"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_gemm(bench, shape, lib):
    dtype, m, k, n = shape
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    a = rng.random((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    one = 2.0 * m * k * n
    reps = max(1, int(5e7 // one))          # ~0.05 GFLOP a round: long enough to time
    bench.describe(family="gemm", case=gemm_key(dtype, m, k, n), impl=f"gemm-{lib}",
                   flops=reps * one, note=f"{reps} calls per round, best of the rounds")
    if lib == "numpy":
        def fn():
            for _ in range(reps):
                np.dot(a, b, out=c)
    else:
        gemm = sblas.sgemm if c.dtype == np.float32 else sblas.dgemm
        aT, bT, cT = a.T, b.T, c.T          # C = A B  <=>  C^T = B^T A^T, all Fortran-ordered views

        def fn():
            for _ in range(reps):
                gemm(1.0, bT, aT, beta=0.0, c=cT, overwrite_c=True)
        fn()
        tol = 1e-3 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(c, a @ b, rtol=tol, atol=tol)   # wrote into c, no copy
    bench.run(fn, rounds=bench.preset["probe_rounds"])
