"""Slow, obviously-correct NumPy references for the RBM kernels.

Shared by the RBM test files (helpers append functions; nothing here is fast).
Random draws are reproduced with ``dlkernels.rng.numpy_generator``: row s of
a kernel call with base counter ``ctr`` reads stream ``ctr + s * 2**128``;
a layer draw that starts at block ``blk`` is
``numpy_generator(key, ctr_s + blk).random(n, dtype)``.
"""
import itertools

import numpy as np

from dlkernels.bindings._checks import words_to_int
from dlkernels.rng import numpy_generator


def sigmoid(x):
    x = np.asarray(x)
    one = x.dtype.type(1)
    with np.errstate(over="ignore"):
        return one / (one + np.exp(-x))


def softplus(x):
    x = np.asarray(x)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def energy(v, h, W, a, b):
    v, h, W, a, b = (np.asarray(x, np.float64) for x in (v, h, W, a, b))
    return -(v @ a) - (h @ b) - np.einsum("si,ij,sj->s", v, W, h)


def free_energy(v, W, a, b):
    v, W, a, b = (np.asarray(x, np.float64) for x in (v, W, a, b))
    return -(v @ a) - softplus(v @ W + b).sum(axis=1)


def hidden_probs(v, W, b):
    return sigmoid(v @ W + b)


def visible_probs(h, W, a):
    return sigmoid(h @ W.T + a)


def blocks_per_layer(n, dtype):
    return (n + 7) // 8 if np.dtype(dtype) == np.float32 else (n + 3) // 4


def uniforms(key, ctr, stream, first_block, n, dtype):
    """n uniforms of stream `stream` of a call with base counter ctr, from block first_block."""
    c = words_to_int(ctr) + (stream << 128) + first_block
    return numpy_generator(key, c & ((1 << 256) - 1)).random(n, dtype=np.dtype(dtype))


def bernoulli_rows(p, key, ctr, first_block):
    """Row s: (u < p[s]) with u the uniforms of stream s from first_block."""
    out = np.empty_like(p)
    for s in range(p.shape[0]):
        u = uniforms(key, ctr, s, first_block, p.shape[1], p.dtype)
        out[s] = (u < p[s]).astype(p.dtype)
    return out


def sample_hidden(v, W, b, key, ctr):
    p = hidden_probs(v, W, b)
    return bernoulli_rows(p, key, ctr, 0), p


def sample_visible(h, W, a, key, ctr):
    p = visible_probs(h, W, a)
    return bernoulli_rows(p, key, ctr, 0), p


def gibbs_chains(v0, W, a, b, k, key, ctr, mean_last=0):
    """k sweeps v -> h -> v; sweep t uses blocks t*(bh+bv) (hidden) and +bh (visible)."""
    dt = W.dtype
    m, n = W.shape
    bh, bv = blocks_per_layer(n, dt), blocks_per_layer(m, dt)
    v = np.array(v0, dt)
    mv = np.zeros_like(v)
    mh = np.zeros((v.shape[0], n), dt)
    h = None
    for t in range(k):
        blk = t * (bh + bv)
        h = bernoulli_rows(hidden_probs(v, W, b), key, ctr, blk)
        v = bernoulli_rows(visible_probs(h, W, a), key, ctr, blk + bh)
        if t >= k - mean_last:
            mv += v
            mh += h
    if mean_last:
        return v, h, mv / mean_last, mh / mean_last
    return v, h


def cd_gradient(vdata, W, a, b, k, r, key, ctr, persistent=None, persistent_hidden=None):
    """(dW, da, db, chains) following the kernel's documented draw layout."""
    dt = W.dtype
    m, n = W.shape
    bh, bv = blocks_per_layer(n, dt), blocks_per_layer(m, dt)
    ppos = hidden_probs(vdata, W, b)
    T = k + r - 1
    stats_w = np.zeros((m, n))
    stats_a = np.zeros(m)
    stats_b = np.zeros(n)
    if persistent_hidden is None:
        v = np.array(vdata if persistent is None else persistent, dt)
        p = ppos if persistent is None else hidden_probs(v, W, b)
        for t in range(1, T + 1):
            blk = (t - 1) * (bh + bv)
            h = bernoulli_rows(p, key, ctr, blk)
            v = bernoulli_rows(visible_probs(h, W, a), key, ctr, blk + bh)
            p = hidden_probs(v, W, b)
            if t >= k:
                stats_w += v.T.astype(np.float64) @ p
                stats_a += v.sum(0)
                stats_b += p.sum(0)
        chains = v
    else:
        h = np.array(persistent_hidden, dt)
        for t in range(1, T + 1):
            blk = (t - 1) * (bh + bv)
            v = bernoulli_rows(visible_probs(h, W, a), key, ctr, blk)
            p = hidden_probs(v, W, b)
            if t >= k:
                stats_w += v.T.astype(np.float64) @ p
                stats_a += v.sum(0)
                stats_b += p.sum(0)
            h = bernoulli_rows(p, key, ctr, blk + bv)
        chains = h
    C = chains.shape[0]
    B = vdata.shape[0]
    dW = vdata.T.astype(np.float64) @ ppos / B - stats_w / (r * C)
    da = vdata.sum(0) / B - stats_a / (r * C)
    db = ppos.sum(0) / B - stats_b / (r * C)
    return dW, da, db, chains


def all_states(n):
    """All 2**n binary vectors, row x = sum_i x_i 2**i."""
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.float64)[:, ::-1]


def exact_visible_marginal(W, a, b):
    """p(v) over all_states(m), by enumeration (exp(-F(v)) / Z)."""
    V = all_states(W.shape[0])
    logp = -free_energy(V, W, a, b)
    logp -= logp.max()
    p = np.exp(logp)
    return p / p.sum()


def exact_loglik_gradient(vdata, W, a, b):
    """Exact gradient of the mean log-likelihood of vdata (enumerating v)."""
    W64, a64, b64 = (np.asarray(x, np.float64) for x in (W, a, b))
    V = all_states(W.shape[0])
    pv = exact_visible_marginal(W64, a64, b64)
    PH = hidden_probs(V, W64, b64)
    vd = np.asarray(vdata, np.float64)
    pd = hidden_probs(vd, W64, b64)
    dW = vd.T @ pd / len(vd) - (V * pv[:, None]).T @ PH
    da = vd.mean(0) - pv @ V
    db = pd.mean(0) - pv @ PH
    return dW, da, db
