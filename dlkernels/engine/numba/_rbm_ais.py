"""Annealed importance sampling (Numba backend; part of the family module ``rbm``).

Twin of ``_rbm_ais.pxi`` (included by ``rbm.pyx``); no validation here
(``dlkernels.bindings.rbm_mcmc`` does it).

Random words: run ``s`` of a call with base counter ``ctr`` draws from the
stream ``(key, ctr + s*2**128)``: its initial visible state from blocks
``[0, nbv)`` and, at transition ``k = 1..K-1``, the hidden uniforms from the
next ``nbh`` blocks and the visible ones from the following ``nbv`` blocks
(``nbv = ceil(m / 8)``, ``nbh = ceil(n / 8)``: 8 uniforms per block, the
float32 uniforms of the 32-bit half-words, in both dtypes; unused uniforms of
a phase's last block are skipped).  Bernoulli draws compare that uniform
(held exactly in the model's dtype) with a float64 probability, so float32
and float64 runs of one seed make the same random decisions up to rounding.
"""
import math

import numpy as np
from numba import njit, prange

from ._blas import gemm_at
from ._fastmath import expneg64
from ._interrupt import stopped
from ._rbm_layers import blocks_per_layer
from .rng import stream_ctr, stream_fill_f32

__all__ = ["ais", "ais_tile_rows", "expneg", "expneg_array", "AIS_MAX_TILE"]

_LOG_RENORM = 256  # factors of a softplus product between two logs


# ---- annealed importance sampling ---------------------------------------------

# Vectorizable exp for the AIS loops (libm's exp is a scalar call that stops
# the loop vectorizer): the shared ``_fastmath.expneg64`` (exp(max(x, -40))
# for x <= 0, <= 2 ulp); ``expneg`` is its name in this family's API.
expneg = expneg64


@njit(cache=True)
def expneg_array(x, out):
    """out[i] = expneg64(x[i]) (for tests)."""
    for i in range(x.shape[0]):
        out[i] = expneg64(x[i])


@njit(cache=True, error_model="numpy")
def _ais_visible(vs, xs, us, a, a_base, beta, da, first):
    """v_i = u_i < sigmoid((1-beta) a_base_i + beta (a_i + x_i)); returns (a - a_base).v
    (4 interleaved partial sums).  With first=True, x is ignored (the
    base-rate model: sigmoid(a_base_i))."""
    m = vs.shape[0]
    om = 1.0 - beta
    for i in range(m):
        if first:
            z = np.float64(a_base[i])
        else:
            z = om * np.float64(a_base[i]) + beta * (np.float64(a[i]) + np.float64(xs[i]))
        e = expneg64(-abs(z))
        num = 1.0 if z >= 0.0 else e
        p = num / (1.0 + e)
        vs[i] = 1 if np.float64(us[i]) < p else 0
    s0 = s1 = s2 = s3 = 0.0
    i = 0
    while i + 4 <= m:
        s0 += da[i] * np.float64(vs[i])
        s1 += da[i + 1] * np.float64(vs[i + 1])
        s2 += da[i + 2] * np.float64(vs[i + 2])
        s3 += da[i + 3] * np.float64(vs[i + 3])
        i += 4
    while i < m:
        s0 += da[i] * np.float64(vs[i])
        i += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, error_model="numpy")
def _ais_hidden(ys, hs, us, b, bk, bp, sample, t, d):
    """The log-weight increment sum_j softplus(bk*y_j) - softplus(bp*y_j),
    y = b + ys, in float64; with sample=True also h_j = u_j < sigmoid(bk*y_j).

    softplus(z) = max(z, 0) + log(1 + exp(-|z|)): the first parts are summed
    (4 interleaved partial sums), the second are a log of a product of
    t_j = (1 + e1_j) / (1 + e0_j) in [1/2, 2] (4 interleaved partial
    products, one log per 256 factors).  t, d: scratch (n,) float64.
    """
    n = ys.shape[0]
    for j in range(n):
        y = np.float64(ys[j]) + np.float64(b[j])
        z1 = bk * y
        z0 = bp * y
        e1 = expneg64(-abs(z1))
        e0 = expneg64(-abs(z0))
        t[j] = (1.0 + e1) / (1.0 + e0)
        d[j] = max(z1, 0.0) - max(z0, 0.0)
        if sample:
            num = 1.0 if z1 >= 0.0 else e1
            p = num / (1.0 + e1)
            hs[j] = 1 if np.float64(us[j]) < p else 0
    acc = 0.0
    s0 = s1 = s2 = s3 = 0.0
    j = 0
    while j < n:
        hi = min(j + _LOG_RENORM, n)
        p0 = p1 = p2 = p3 = 1.0
        while j + 4 <= hi:
            p0 *= t[j]
            p1 *= t[j + 1]
            p2 *= t[j + 2]
            p3 *= t[j + 3]
            s0 += d[j]
            s1 += d[j + 1]
            s2 += d[j + 2]
            s3 += d[j + 3]
            j += 4
        while j < hi:
            p0 *= t[j]
            s0 += d[j]
            j += 1
        acc += math.log((p0 * p1) * (p2 * p3))
    return acc + ((s0 + s1) + (s2 + s3))


AIS_MAX_TILE = 64


@njit(cache=True)
def ais_tile_rows(R):
    """Runs per work item of ``ais``: the most even split of R into tiles of
    at most AIS_MAX_TILE runs (a function of R only, so the GEMM shapes,
    hence the results, do not depend on the thread count)."""
    tiles = (R + AIS_MAX_TILE - 1) // AIS_MAX_TILE
    return (R + tiles - 1) // tiles


@njit(cache=True)
def _ais_tile(W, WT, a, b, a_base, da, betas, key, cs, logw, stop):
    """All temperatures of the runs of one tile (rows of cs / logw)."""
    R = logw.shape[0]
    m = W.shape[0]
    n = W.shape[1]
    K = betas.shape[0] - 1
    dt = W.dtype
    nbv = blocks_per_layer(m)   # the layers' draw: 8 half-word uniforms per block
    nbh = blocks_per_layer(n)
    V = np.empty((R, m), dt)
    H = np.empty((R, n), dt)
    Y = np.empty((R, n), dt)
    X = np.zeros((R, m), dt)
    uv = np.empty(m, dt)
    uh = np.empty(n, dt)
    adv = np.empty(R, np.float64)
    tt = np.empty(n, np.float64)
    dd = np.empty(n, np.float64)
    for s in range(R):
        logw[s] = 0.0
        stream_fill_f32(key, cs[s], 0, uv)
        adv[s] = _ais_visible(V[s], X[s], uv, a, a_base, 0.0, da, True)
    for k in range(1, K + 1):
        if stopped(stop):
            return
        bk = betas[k]
        bp = betas[k - 1]
        last = k == K
        gemm_at(False, False, R, n, m, 1.0, V, 0, m, W, 0, n, 0.0, Y, 0, n)
        blk = nbv + (k - 1) * (nbh + nbv)
        for s in range(R):
            if not last:
                stream_fill_f32(key, cs[s], blk, uh)
            inc = _ais_hidden(Y[s], H[s], uh, b, bk, bp, not last, tt, dd)
            logw[s] += (bk - bp) * adv[s] + inc
        if not last:
            gemm_at(False, False, R, m, n, 1.0, H, 0, n, WT, 0, m, 0.0, X, 0, m)
            for s in range(R):
                stream_fill_f32(key, cs[s], blk + nbh, uv)
                adv[s] = _ais_visible(V[s], X[s], uv, a, a_base, bk, da, False)


@njit(cache=True, parallel=True)
def ais(W, WT, a, b, a_base, betas, key, ctr, logw, stop):
    """Annealed importance sampling from the base-rate model (visible biases
    a_base, W = 0) to the RBM (W, a, b) along betas[0] = 0 <= ... <= betas[K] = 1.

    logw (R,) float64 receives the log importance weight of each run:
    sum_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1}), with
    log p*_k(v) = (1-beta_k) a_base.v + beta_k a.v + sum_j softplus(beta_k (b_j + v.W_j))
    and v_k drawn by one block Gibbs sweep (h then v) at beta_k.

    Parallel over tiles of ``ais_tile_rows(R)`` runs; each work item runs all
    temperatures of its tile (two GEMMs per temperature, through BLAS, which
    the caller keeps single-threaded), with no synchronisation between
    temperatures.  stop: a 1-element int64 flag, checked before every
    temperature; when set the kernel returns early (logw is then partial).
    """
    R = logw.shape[0]
    if R == 0:
        return
    m = W.shape[0]
    da = np.empty(m, np.float64)
    for i in range(m):
        da[i] = np.float64(a[i]) - np.float64(a_base[i])
    cs = np.empty((R, 4), np.uint64)
    for s in range(R):   # elementwise: a row assignment compiles an error path (s of a cold start)
        c0, c1, c2, c3 = stream_ctr(ctr, s)
        cs[s, 0] = c0
        cs[s, 1] = c1
        cs[s, 2] = c2
        cs[s, 3] = c3
    T = ais_tile_rows(R)
    ntiles = (R + T - 1) // T
    for ti in prange(ntiles):
        r0 = ti * T
        r1 = min(R, r0 + T)
        _ais_tile(W, WT, a, b, a_base, da, betas, key, cs[r0:r1], logw[r0:r1], stop)
