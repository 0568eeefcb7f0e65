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

from .rng import ctr_add, mulhilo64, philox4x64_10, stream_fill_f32, stream_fill_f64

_S11 = np.uint64(11)
_F64_SCALE = 1.0 / 9007199254740992.0
_LOG_RENORM = 256  # factors of a softplus product between two logs


@njit(cache=True, inline="always")
def _sigmoid64(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True)
def stream_counter(ctr, s):
    """Counter of stream s of the base counter ctr: ctr + s * 2**128 (4 words)."""
    c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], s, 2)
    out = np.empty(4, np.uint64)
    out[0] = c0
    out[1] = c1
    out[2] = c2
    out[3] = c3
    return out


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
def _single_site_chain(v, h, vf, hf, W, WT, a, b, n_steps, mode, thr, alias, key, ctr, s):
    m = v.shape[0]
    n = h.shape[0]
    M = np.uint64(m + n)
    _init_fields(v, h, W, WT, a, b, vf, hf)
    c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], s, 2)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
    w0 = w1 = w2 = w3 = np.uint64(0)
    for t in range(n_steps):
        if t & 1 == 0:
            w0, w1, w2, w3 = philox4x64_10(c0, c1, c2, c3, key[0], key[1])
            c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
            ws = w0
            wu = w1
        else:
            ws = w2
            wu = w3
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
            new = u < _sigmoid64(np.float64(vf[k]))
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
            new = u < _sigmoid64(np.float64(hf[jj]))
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
def single_site_gibbs(v, h, W, WT, a, b, n_steps, mode, thr, alias, key, ctr):
    """n_steps single-site Gibbs updates of every chain (row) of (v, h), in place.

    W (m, n) and WT = W.T (n, m) C-contiguous; mode 0 = uniform random site,
    1 = systematic scan (site t mod (m+n)), 2 = sites from the alias table
    (thr uint64, alias int64, both of length m+n).  Local fields are kept up
    to date incrementally: O(n) per visible flip, O(m) per hidden flip.
    """
    C = v.shape[0]
    vf = np.empty(v.shape, v.dtype)
    hf = np.empty(h.shape, h.dtype)
    for s in prange(C):
        _single_site_chain(v[s], h[s], vf[s], hf[s], W, WT, a, b, n_steps, mode, thr,
                           alias, key, ctr, s)


# ---- annealed importance sampling ---------------------------------------------

def _fill_uniforms(key, cs, first_block, out):
    """out[i] = uniform (of out's dtype) number (U*first_block + i) of the stream (key, cs)."""


@overload(_fill_uniforms)
def _fill_uniforms_impl(key, cs, first_block, out):
    if out.dtype == types.float32:
        return lambda key, cs, first_block, out: stream_fill_f32(key, cs, first_block, out)
    return lambda key, cs, first_block, out: stream_fill_f64(key, cs, first_block, out)


@njit(cache=True)
def _ais_visible(vs, xs, us, a, a_base, beta, da, first):
    """v_i = u_i < sigmoid((1-beta) a_base_i + beta (a_i + x_i)); returns (a - a_base).v.

    With first=True, x is ignored (the base-rate model: sigmoid(a_base_i))."""
    m = vs.shape[0]
    acc = 0.0
    for i in range(m):
        if first:
            z = np.float64(a_base[i])
        else:
            z = (1.0 - beta) * np.float64(a_base[i]) + beta * (np.float64(a[i]) + np.float64(xs[i]))
        if np.float64(us[i]) < _sigmoid64(z):
            vs[i] = 1
            acc += da[i]
        else:
            vs[i] = 0
    return acc


@njit(cache=True)
def _ais_hidden(ys, hs, us, b, bk, bp, sample):
    """The log-weight increment sum_j softplus(bk*y_j) - softplus(bp*y_j), y = b + xs,
    in float64; with sample=True also h_j = u_j < sigmoid(bk*y_j)."""
    n = ys.shape[0]
    acc = 0.0
    p1 = 1.0
    p0 = 1.0
    for j in range(n):
        y = np.float64(ys[j]) + np.float64(b[j])
        z1 = bk * y
        z0 = bp * y
        e1 = math.exp(-abs(z1))
        e0 = math.exp(-abs(z0))
        acc += max(z1, 0.0) - max(z0, 0.0)
        p1 *= 1.0 + e1
        p0 *= 1.0 + e0
        if (j + 1) % _LOG_RENORM == 0:
            acc += math.log(p1) - math.log(p0)
            p1 = 1.0
            p0 = 1.0
        if sample:
            if z1 >= 0.0:
                p = 1.0 / (1.0 + e1)
            else:
                p = e1 / (1.0 + e1)
            hs[j] = 1 if np.float64(us[j]) < p else 0
    acc += math.log(p1) - math.log(p0)
    return acc


@njit(cache=True, parallel=True)
def ais(W, WT, a, b, a_base, betas, key, ctr, logw):
    """Annealed importance sampling from the base-rate model (visible biases
    a_base, W = 0) to the RBM (W, a, b) along betas[0] = 0 < ... < betas[K] = 1.

    logw (R,) float64 receives the log importance weight of each run:
    sum_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1}), with
    log p*_k(v) = (1-beta_k) a_base.v + beta_k a.v + sum_j softplus(beta_k (b_j + v.W_j))
    and v_k drawn by one block Gibbs sweep (h then v) at beta_k.
    """
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
    X = np.empty((R, m), dt)
    uv = np.empty((R, m), dt)
    uh = np.empty((R, n), dt)
    adv = np.empty(R, np.float64)
    da = np.empty(m, np.float64)
    for i in range(m):
        da[i] = np.float64(a[i]) - np.float64(a_base[i])
    cs = np.empty((R, 4), np.uint64)
    for s in range(R):
        cs[s] = stream_counter(ctr, s)
    for s in prange(R):
        logw[s] = 0.0
        _fill_uniforms(key, cs[s], 0, uv[s])
        adv[s] = _ais_visible(V[s], X[s], uv[s], a, a_base, 0.0, da, True)
    for k in range(1, K + 1):
        bk = betas[k]
        bp = betas[k - 1]
        last = k == K
        np.dot(V, W, Y)
        blk = nbv + (k - 1) * (nbh + nbv)
        for s in prange(R):
            if not last:
                _fill_uniforms(key, cs[s], blk, uh[s])
            inc = _ais_hidden(Y[s], H[s], uh[s], b, bk, bp, not last)
            logw[s] += (bk - bp) * adv[s] + inc
        if not last:
            np.dot(H, WT, X)
            for s in prange(R):
                _fill_uniforms(key, cs[s], blk + nbh, uv[s])
                adv[s] = _ais_visible(V[s], X[s], uv[s], a, a_base, bk, da, False)


# ---- pseudo-likelihood -------------------------------------------------------

@njit(cache=True, inline="always")
def _softplus64(x):
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, inline="always")
def _log_sigmoid64(x):
    return -_softplus64(-x)


@njit(cache=True)
def _flip_delta(vs, xs, W, a, b, i):
    """F(v with bit i flipped) - F(v), in float64; xs = v W (without b)."""
    n = W.shape[1]
    sgn = -1.0 if vs[i] != 0 else 1.0
    acc = -sgn * np.float64(a[i])
    for j in range(n):
        x = np.float64(xs[j]) + np.float64(b[j])
        acc -= _softplus64(x + sgn * np.float64(W[i, j])) - _softplus64(x)
    return acc


@njit(cache=True, parallel=True)
def pseudo_likelihood(v, W, a, b, exact, key, ctr, out):
    """out[s] = log pseudo-likelihood of row s of v.

    exact: sum_i log sigmoid(F(v~i) - F(v)) over every bit i (v~i = v with
    bit i flipped); otherwise scikit-learn's estimate m * log sigmoid(F(v~i) -
    F(v)) for one bit i per row, drawn from the row's stream.
    """
    B = v.shape[0]
    m = v.shape[1]
    X = np.dot(v, W)
    M = np.uint64(m)
    for s in prange(B):
        if exact:
            acc = 0.0
            for i in range(m):
                acc += _log_sigmoid64(_flip_delta(v[s], X[s], W, a, b, i))
            out[s] = acc
        else:
            c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], s, 2)
            c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
            w0, w1, w2, w3 = philox4x64_10(c0, c1, c2, c3, key[0], key[1])
            hi, lo = mulhilo64(w0, M)
            out[s] = m * _log_sigmoid64(_flip_delta(v[s], X[s], W, a, b, np.int64(hi)))
