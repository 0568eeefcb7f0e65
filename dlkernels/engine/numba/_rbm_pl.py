"""Pseudo-likelihood (Numba backend; part of the family module ``rbm``).

Twin of ``_rbm_pl.pxi`` (included by ``rbm.pyx``); no validation here
(``dlkernels.bindings.rbm_mcmc`` does it).

Random words: row ``s`` of a call with base counter ``ctr`` flips bit
``floor(w * m / 2**64)``, ``w`` = word 0 of the stream ``(key, ctr + s*2**128)``
(the stochastic estimate only; the exact sum draws nothing).
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm_at
from ._fastmath import log_sigmoid64, softplus64
from .rng import ctr_add, mulhilo64, philox4x64_10, stream_ctr

__all__ = ["pseudo_likelihood", "PL_TILE"]

PL_TILE = 64    # rows per work item of pseudo_likelihood


# ---- pseudo-likelihood -------------------------------------------------------

@njit(cache=True)
def _flip_delta(vs, xs, W, a, b, i):
    """F(v with bit i flipped) - F(v), in float64; xs = v W (without b)."""
    n = W.shape[1]
    sgn = -1.0 if vs[i] != 0 else 1.0
    acc = -sgn * np.float64(a[i])
    for j in range(n):
        x = np.float64(xs[j]) + np.float64(b[j])
        acc -= softplus64(x + sgn * np.float64(W[i, j])) - softplus64(x)
    return acc


@njit(cache=True, parallel=True)
def pseudo_likelihood(v, W, a, b, exact, key, ctr, out):
    """out[s] = log pseudo-likelihood of row s of v.

    exact: sum_i log sigmoid(F(v~i) - F(v)) over every bit i (v~i = v with
    bit i flipped); otherwise scikit-learn's estimate m * log sigmoid(F(v~i) -
    F(v)) for one bit i per row, drawn from the row's stream.  Parallel over
    tiles of PL_TILE rows (one GEMM per tile through BLAS, which the caller
    keeps single-threaded).
    """
    B = v.shape[0]
    if B == 0:
        return
    ntiles = (B + PL_TILE - 1) // PL_TILE
    for ti in prange(ntiles):
        r0 = np.int64(ti) * PL_TILE
        r1 = min(B, r0 + PL_TILE)
        _pl_tile(v, W, a, b, exact, key, ctr, r0, r1, out)


@njit(cache=True)
def _pl_tile(v, W, a, b, exact, key, ctr, r0, r1, out):
    """Rows r0..r1 of the pseudo-likelihood: one GEMM for the tile, then the rows."""
    m = v.shape[1]
    n = W.shape[1]
    X = np.empty((r1 - r0, n), W.dtype)
    gemm_at(False, False, r1 - r0, n, m, 1.0, v, r0 * m, m, W, 0, n, 0.0, X, 0, n)
    M = np.uint64(m)
    for r in range(r1 - r0):
        vr = v[r0 + r]
        if exact:
            acc = 0.0
            for i in range(m):
                acc += log_sigmoid64(_flip_delta(vr, X[r], W, a, b, i))
            out[r0 + r] = acc
        else:
            c0, c1, c2, c3 = stream_ctr(ctr, r0 + r)
            c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
            w0, w1, w2, w3 = philox4x64_10(c0, c1, c2, c3, key[0], key[1])
            hi, lo = mulhilo64(w0, M)
            out[r0 + r] = m * log_sigmoid64(_flip_delta(vr, X[r], W, a, b, np.int64(hi)))
