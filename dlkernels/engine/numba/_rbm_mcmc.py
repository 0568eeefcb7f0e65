"""RBM Markov-chain kernels (Numba backend): single-site Gibbs chains,
annealed importance sampling, pseudo-likelihood.

Same names, arguments and semantics as the Cython versions in
``dlkernels/engine/cython/_rbm_mcmc.pxi`` (included by ``rbm.pyx``); no input
validation here (``dlkernels.bindings.rbm_mcmc`` does it).

Random words (Philox4x64-10, see ``rng.py``).  Chain / run / row ``s`` of a
call with base counter ``ctr`` draws from the stream ``(key, ctr + s*2**128)``:

* ``single_site_gibbs``: step ``t`` uses words ``2t`` (site choice) and
  ``2t+1`` (the uniform ``u = (w >> 11) * 2**-53``) of its chain's stream,
  whatever the scan mode (a systematic scan ignores word ``2t``).  Site
  ``k = floor(w * M / 2**64)`` (uniform, ``M = m + n``); with an alias table
  ``(thr, alias)``: ``k = floor(w*M/2**64)``, kept when
  ``(w*M mod 2**64) < thr[k]`` else ``alias[k]``.  The unit is set to
  ``u < sigmoid(field)`` (float64 compare, the sigmoid in float64).
* ``ais``: run ``s`` draws its initial visible state from blocks ``[0, nbv)``
  and, at transition ``k = 1..K-1``, the hidden uniforms from the next
  ``nbh`` blocks and the visible ones from the following ``nbv`` blocks
  (``nbv = ceil(m / U)``, ``nbh = ceil(n / U)``, ``U`` = 8 uniforms per block
  in float32, 4 in float64; unused uniforms of a phase's last block are
  skipped).  Bernoulli draws compare the dtype's uniform with a float64
  probability.
* ``pseudo_likelihood``: row ``s`` flips bit ``floor(w * m / 2**64)``, ``w``
  = word 0 of its stream.
"""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._blas import gemm_at
from ._fastmath import expneg64, log_sigmoid64, sigmoid64_split, softplus64
from .rng import (_F64_SCALE, _S11, ctr_add, mulhilo64, philox4x64_10, philox4x64_10_x2,
                  stream_counter, stream_ctr, stream_fill_f32, stream_fill_f64)

__all__ = ["single_site_gibbs", "ais", "ais_tile_rows", "pseudo_likelihood", "expneg",
           "expneg_array"]

_LOG_RENORM = 256  # factors of a softplus product between two logs
_SS_BATCH_WORDS = 32  # random words generated at once by a single-site chain


# ---- single-site Gibbs ------------------------------------------------------

@njit(cache=True)
def _init_fields(v, h, W, WT, a, b, vf, hf):
    """vf = a + W h, hf = b + v W, accumulated row by row in index order."""
    m = v.shape[0]
    n = h.shape[0]
    for i in range(m):
        vf[i] = a[i]
    for j in range(n):
        hf[j] = b[j]
    for i in range(m):
        if v[i] != 0:
            for j in range(n):
                hf[j] += W[i, j]
    for j in range(n):
        if h[j] != 0:
            for i in range(m):
                vf[i] += WT[j, i]


@njit(cache=True)
def _single_site_chain(v, h, vf, hf, W, WT, a, b, n_steps, mode, thr, alias, refresh, key, ctr,
                       s):
    m = v.shape[0]
    n = h.shape[0]
    M = np.uint64(m + n)
    _init_fields(v, h, W, WT, a, b, vf, hf)
    c0, c1, c2, c3 = stream_ctr(ctr, s)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
    # words are generated 8 blocks (16 steps) at a time: independent blocks,
    # so the multiply chains overlap instead of stalling each step
    wb = np.empty(_SS_BATCH_WORDS, np.uint64)
    for t in range(n_steps):
        if refresh > 0 and t > 0 and t % refresh == 0:
            _init_fields(v, h, W, WT, a, b, vf, hf)   # bound the rounding drift
        r = t % (_SS_BATCH_WORDS // 2)
        if r == 0:
            for q in range(_SS_BATCH_WORDS // 8):
                d0, d1, d2, d3 = ctr_add(c0, c1, c2, c3, 1, 0)
                ba, bb = philox4x64_10_x2(c0, c1, c2, c3, d0, d1, d2, d3, key[0], key[1])
                c0, c1, c2, c3 = ctr_add(d0, d1, d2, d3, 1, 0)
                for j in range(4):
                    wb[8 * q + j] = ba[j]
                    wb[8 * q + 4 + j] = bb[j]
        ws = wb[2 * r]
        wu = wb[2 * r + 1]
        if mode == 1:
            k = t % (m + n)
        else:
            hi, lo = mulhilo64(ws, M)
            k = np.int64(hi)
            if mode == 2:
                if lo >= thr[k]:
                    k = alias[k]
        u = np.float64(wu >> _S11) * _F64_SCALE
        if k < m:
            new = u < sigmoid64_split(np.float64(vf[k]))
            if new != (v[k] != 0):
                if new:
                    v[k] = 1
                    for j in range(n):
                        hf[j] += W[k, j]
                else:
                    v[k] = 0
                    for j in range(n):
                        hf[j] -= W[k, j]
        else:
            jj = k - m
            new = u < sigmoid64_split(np.float64(hf[jj]))
            if new != (h[jj] != 0):
                if new:
                    h[jj] = 1
                    for i in range(m):
                        vf[i] += WT[jj, i]
                else:
                    h[jj] = 0
                    for i in range(m):
                        vf[i] -= WT[jj, i]


@njit(cache=True, parallel=True)
def single_site_gibbs(v, h, W, WT, a, b, n_steps, mode, thr, alias, refresh, key, ctr):
    """n_steps single-site Gibbs updates of every chain (row) of (v, h), in place.

    W (m, n) and WT = W.T (n, m) C-contiguous; mode 0 = uniform random site,
    1 = systematic scan (site t mod (m+n)), 2 = sites from the alias table
    (thr uint64, alias int64, both of length m+n).  Local fields are kept up
    to date incrementally: O(n) per visible flip, O(m) per hidden flip, and
    recomputed from scratch every ``refresh`` steps (0 = never) so that
    rounding errors cannot accumulate over very long chains.
    """
    C = v.shape[0]
    vf = np.empty(v.shape, v.dtype)
    hf = np.empty(h.shape, h.dtype)
    for s in prange(C):
        _single_site_chain(v[s], h[s], vf[s], hf[s], W, WT, a, b, n_steps, mode, thr,
                           alias, refresh, key, ctr, s)


# ---- annealed importance sampling ---------------------------------------------

def _fill_uniforms(key, cs, first_block, out):
    """out[i] = uniform (of out's dtype) number (U*first_block + i) of the stream (key, cs)."""


@overload(_fill_uniforms)
def _fill_uniforms_impl(key, cs, first_block, out):
    if out.dtype == types.float32:
        return lambda key, cs, first_block, out: stream_fill_f32(key, cs, first_block, out)
    return lambda key, cs, first_block, out: stream_fill_f64(key, cs, first_block, out)


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
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
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
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = 0
    while j < n:
        hi = min(j + _LOG_RENORM, n)
        p0 = 1.0
        p1 = 1.0
        p2 = 1.0
        p3 = 1.0
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
PL_TILE = 64    # rows per work item of pseudo_likelihood


@njit(cache=True)
def ais_tile_rows(R):
    """Runs per work item of ``ais``: the most even split of R into tiles of
    at most AIS_MAX_TILE runs (a function of R only, so the GEMM shapes,
    hence the results, do not depend on the thread count)."""
    tiles = (R + AIS_MAX_TILE - 1) // AIS_MAX_TILE
    return (R + tiles - 1) // tiles


@njit(cache=True)
def _ais_tile(W, WT, a, b, a_base, da, betas, key, cs, logw):
    """All temperatures of the runs of one tile (rows of cs / logw)."""
    R = logw.shape[0]
    m = W.shape[0]
    n = W.shape[1]
    K = betas.shape[0] - 1
    dt = W.dtype
    U = 32 // W.itemsize  # uniforms per Philox block
    nbv = (m + U - 1) // U
    nbh = (n + U - 1) // U
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
        _fill_uniforms(key, cs[s], 0, uv)
        adv[s] = _ais_visible(V[s], X[s], uv, a, a_base, 0.0, da, True)
    for k in range(1, K + 1):
        bk = betas[k]
        bp = betas[k - 1]
        last = k == K
        gemm_at(False, False, R, n, m, 1.0, V, 0, m, W, 0, n, 0.0, Y, 0, n)
        blk = nbv + (k - 1) * (nbh + nbv)
        for s in range(R):
            if not last:
                _fill_uniforms(key, cs[s], blk, uh)
            inc = _ais_hidden(Y[s], H[s], uh, b, bk, bp, not last, tt, dd)
            logw[s] += (bk - bp) * adv[s] + inc
        if not last:
            gemm_at(False, False, R, m, n, 1.0, H, 0, n, WT, 0, m, 0.0, X, 0, m)
            for s in range(R):
                _fill_uniforms(key, cs[s], blk + nbh, uv)
                adv[s] = _ais_visible(V[s], X[s], uv, a, a_base, bk, da, False)


@njit(cache=True, parallel=True)
def ais(W, WT, a, b, a_base, betas, key, ctr, logw):
    """Annealed importance sampling from the base-rate model (visible biases
    a_base, W = 0) to the RBM (W, a, b) along betas[0] = 0 <= ... <= betas[K] = 1.

    logw (R,) float64 receives the log importance weight of each run:
    sum_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1}), with
    log p*_k(v) = (1-beta_k) a_base.v + beta_k a.v + sum_j softplus(beta_k (b_j + v.W_j))
    and v_k drawn by one block Gibbs sweep (h then v) at beta_k.

    Parallel over tiles of ``ais_tile_rows(R)`` runs; each work item runs all
    temperatures of its tile (two GEMMs per temperature, through BLAS, which
    the caller keeps single-threaded), with no synchronisation between
    temperatures.
    """
    R = logw.shape[0]
    if R == 0:
        return
    m = W.shape[0]
    da = np.empty(m, np.float64)
    for i in range(m):
        da[i] = np.float64(a[i]) - np.float64(a_base[i])
    cs = np.empty((R, 4), np.uint64)
    for s in range(R):
        cs[s] = stream_counter(ctr, s)
    T = ais_tile_rows(R)
    ntiles = (R + T - 1) // T
    for ti in prange(ntiles):
        r0 = ti * T
        r1 = min(R, r0 + T)
        _ais_tile(W, WT, a, b, a_base, da, betas, key, cs[r0:r1], logw[r0:r1])


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
        r0 = ti * PL_TILE
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
