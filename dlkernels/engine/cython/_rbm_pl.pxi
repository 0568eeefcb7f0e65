# Pseudo-likelihood (part of dlkernels.engine.cython.rbm; included by rbm.pyx).
# Twin of dlkernels/engine/numba/_rbm_pl.py (same names, arguments, semantics
# and random words: see its docstring); no validation here.
from libc.stdint cimport uint64_t
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._fastmath cimport dlk_softplus64 as _mc_softplus
from dlkernels.engine.cython.rng cimport (dlk_philox4x64_10, dlk_ctr_add, dlk_mulhilo64,
                                          dlk_stream_ctr)
import numpy as _mc_np

cpdef enum:
    PL_TILE = 64  # rows per work item of pseudo_likelihood (as in the Numba backend)


# ---- pseudo-likelihood -------------------------------------------------------

cdef double _mc_flip_delta(const floating* vs, const floating* xs, const floating* W,
                           const floating* a, const floating* b, Py_ssize_t n,
                           Py_ssize_t i) noexcept nogil:
    """F(v with bit i flipped) - F(v), in float64; xs = v W (without b)."""
    cdef Py_ssize_t j
    cdef double sgn = -1.0 if vs[i] != 0 else 1.0
    cdef double acc = -sgn * <double>a[i], x
    cdef const floating* row = W + i * n
    for j in range(n):
        x = <double>xs[j] + <double>b[j]
        acc -= _mc_softplus(x + sgn * <double>row[j]) - _mc_softplus(x)
    return acc


cdef double _mc_pl_row_stochastic(const floating* vs, const floating* xs, const floating* W,
                                  const floating* a, const floating* b, Py_ssize_t m,
                                  Py_ssize_t n, const uint64_t* key, const uint64_t* ctr,
                                  Py_ssize_t s) noexcept nogil:
    """m * log sigmoid(F(v~i) - F(v)), i = floor(w * m / 2**64), w = word 0 of stream s."""
    cdef uint64_t c[4]
    cdef uint64_t w[4]
    cdef uint64_t hi, lo
    dlk_stream_ctr(ctr, <uint64_t>s, c)
    dlk_ctr_add(c, 1, 0)
    dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], w)
    lo = dlk_mulhilo64(w[0], <uint64_t>m, &hi)
    return -m * _mc_softplus(-_mc_flip_delta(vs, xs, W, a, b, n, <Py_ssize_t>hi))


def pseudo_likelihood(const floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] a,
                      const floating[::1] b, bint exact, const uint64_t[::1] key,
                      const uint64_t[::1] ctr, floating[::1] out):
    """out[s] = log pseudo-likelihood of row s of v.

    exact: sum_i log sigmoid(F(v~i) - F(v)) over every bit i (v~i = v with
    bit i flipped); otherwise scikit-learn's estimate m * log sigmoid(F(v~i) -
    F(v)) for one bit i per row, drawn from the row's stream.  Parallel over
    tiles of 64 rows (one GEMM per tile through BLAS, which the caller keeps
    single-threaded).
    """
    cdef Py_ssize_t B = v.shape[0], m = v.shape[1], n = W.shape[1], s, i, ti, r0, r1, ntiles
    cdef double acc
    if B == 0:
        return
    dt = _mc_np.float32 if floating is float else _mc_np.float64
    cdef floating[:, ::1] X = _mc_np.zeros((B, n), dt)
    ntiles = (B + PL_TILE - 1) // PL_TILE
    for ti in prange(ntiles, nogil=True, schedule="dynamic", chunksize=1):
        r0 = ti * PL_TILE
        r1 = r0 + PL_TILE
        if r1 > B:
            r1 = B
        _mc_gemm_nn(&v[r0, 0], &W[0, 0], &X[r0, 0], <int>(r1 - r0), <int>m, <int>n)
        for s in range(r0, r1):
            if exact:
                acc = 0.0
                for i in range(m):
                    acc = acc - _mc_softplus(-_mc_flip_delta(&v[s, 0], &X[s, 0], &W[0, 0], &a[0],
                                                             &b[0], n, i))
                out[s] = <floating>acc
            else:
                out[s] = <floating>_mc_pl_row_stochastic(&v[s, 0], &X[s, 0], &W[0, 0], &a[0],
                                                         &b[0], m, n, &key[0], &ctr[0], s)
