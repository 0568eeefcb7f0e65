"""Slow, obviously-correct NumPy references for the RBM kernels.

Shared by the RBM test files (helpers append functions; nothing here is fast).
Random draws are reproduced with ``dlkernels.rng.numpy_generator``: row s of
a kernel call with base counter ``ctr`` reads stream ``ctr + s * 2**128``;
a layer draw that starts at block ``blk`` is
``numpy_generator(key, ctr_s + blk).random(n, np.float32)`` in both dtypes
(one 32-bit half-word per draw; converted exactly to float64 for float64).
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
    """Blocks of a layer draw of n units: 8 uniforms per block in both dtypes."""
    return (n + 7) // 8


def uniforms(key, ctr, stream, first_block, n, dtype):
    """n uniforms of stream `stream` of a call with base counter ctr, from block
    first_block: numpy's float32 uniforms (one 32-bit half-word each, low half
    first) in both dtypes, converted exactly to `dtype` (the RBM kernels' rule)."""
    c = words_to_int(ctr) + (stream << 128) + first_block
    u = numpy_generator(key, c & ((1 << 256) - 1)).random(n, dtype=np.float32)
    return u.astype(np.dtype(dtype))


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


def exact_cd1_gradient(vdata, W, a, b):
    """Exact expectation of the CD-1 estimate (k = r = 1, chains started at the
    data): the data term minus E[v' p(h|v')] with h ~ p(h|v), v' ~ p(v'|h),
    by enumerating h and v'."""
    W64, a64, b64 = (np.asarray(x, np.float64) for x in (W, a, b))
    m, n = W64.shape
    vd = np.asarray(vdata, np.float64)
    H, V = all_states(n), all_states(m)
    pd = hidden_probs(vd, W64, b64)
    p_h = np.prod(np.where(H[None] == 1, pd[:, None], 1 - pd[:, None]), axis=2)   # (N, 2**n)
    pv = visible_probs(H, W64, a64)
    p_v = np.prod(np.where(V[None] == 1, pv[:, None], 1 - pv[:, None]), axis=2)   # (2**n, 2**m)
    q = (p_h @ p_v).mean(0)                     # distribution of v' over the data
    PH = hidden_probs(V, W64, b64)
    dW = vd.T @ pd / len(vd) - (V * q[:, None]).T @ PH
    da = vd.mean(0) - q @ V
    db = pd.mean(0) - q @ PH
    return dW, da, db


# ---- single-site Gibbs, partition functions, AIS, pseudo-likelihood (helper R2) -------------
# References for dlkernels.bindings.rbm_mcmc; the kernels' use of the random
# words is documented in dlkernels.engine.numba._rbm_mcmc.

import math as _math

_MASK64 = (1 << 64) - 1


def stream_words(key, ctr, stream, n_words, first_block=0):
    """The first n_words 64-bit words of stream `stream` (from first_block) as Python ints."""
    c = (words_to_int(ctr) + (stream << 128) + first_block) & ((1 << 256) - 1)
    return [int(w) for w in numpy_generator(key, c).bit_generator.random_raw(n_words)]


def sigmoid64(x):
    """Stable float64 sigmoid with math.exp (the libm exp the kernels call)."""
    if x >= 0.0:
        return 1.0 / (1.0 + _math.exp(-x))
    e = _math.exp(x)
    return e / (1.0 + e)


def _fields(vs, hs, W, a, b):
    """(a + W h, b + v W) with rows added in index order, in W's dtype."""
    vf = a.copy()
    hf = b.copy()
    for i in range(W.shape[0]):
        if vs[i]:
            hf += W[i]
    for j in range(W.shape[1]):
        if hs[j]:
            vf += W[:, j]
    return vf, hf


def single_site_gibbs_ref(v, h, W, a, b, n_steps, key, ctr, mode=0, thr=None, alias=None,
                          refresh=0):
    """Chain-by-chain, step-by-step reference of the single-site Gibbs kernel
    (same words, same incremental field updates in W's dtype, fields
    recomputed every `refresh` steps)."""
    v = np.array(v, copy=True)
    h = np.array(h, copy=True)
    m, n = W.shape
    M = m + n
    for s in range(v.shape[0]):
        vf, hf = _fields(v[s], h[s], W, a, b)
        words = stream_words(key, ctr, s, 2 * n_steps)
        for t in range(n_steps):
            if refresh > 0 and t > 0 and t % refresh == 0:
                vf, hf = _fields(v[s], h[s], W, a, b)
            ws, wu = words[2 * t], words[2 * t + 1]
            if mode == 1:
                k = t % M
            else:
                k, lo = (ws * M) >> 64, (ws * M) & _MASK64
                if mode == 2 and lo >= int(thr[k]):
                    k = int(alias[k])
            u = (wu >> 11) * 2.0 ** -53
            if k < m:
                new = u < sigmoid64(float(vf[k]))
                if new != bool(v[s, k]):
                    v[s, k] = new
                    if new:
                        hf += W[k]
                    else:
                        hf -= W[k]
            else:
                j = k - m
                new = u < sigmoid64(float(hf[j]))
                if new != bool(h[s, j]):
                    h[s, j] = new
                    if new:
                        vf += W[:, j]
                    else:
                        vf -= W[:, j]
    return v, h


def single_site_gibbs_numpy(v, h, W, a, b, n_steps, rng):
    """The NumPy peer for benchmarks: a Python loop over steps, vectorised over
    the chains (each chain picks its own uniform random site each step),
    local fields updated incrementally.  Same chain law as the kernel, other
    random numbers."""
    v = np.array(v, copy=True)
    h = np.array(h, copy=True)
    m, n = W.shape
    C = v.shape[0]
    rows = np.arange(C)
    WT = np.ascontiguousarray(W.T)
    vf = a + h @ W.T
    hf = b + v @ W
    sites = rng.integers(0, m + n, size=(n_steps, C))
    us = rng.random((n_steps, C))
    for t in range(n_steps):
        k = sites[t]
        vis = k < m
        cv, kv = rows[vis], k[vis]
        ch, kh = rows[~vis], k[~vis] - m
        new_v = (us[t, vis] < 1.0 / (1.0 + np.exp(-vf[cv, kv]))).astype(v.dtype)
        dv = new_v - v[cv, kv]
        v[cv, kv] = new_v
        hf[cv] += dv[:, None] * W[kv]
        new_h = (us[t, ~vis] < 1.0 / (1.0 + np.exp(-hf[ch, kh]))).astype(h.dtype)
        dh = new_h - h[ch, kh]
        h[ch, kh] = new_h
        vf[ch] += dh[:, None] * WT[kh]
    return v, h


def single_site_gibbs_numpy_loop(v, h, W, a, b, n_steps, rng):
    """The literal NumPy per-site loop (benchmark peer): Python loops over
    chains and steps, one site update at a time, local fields updated
    incrementally with NumPy row operations (O(n) or O(m) per flip)."""
    v = np.array(v, copy=True)
    h = np.array(h, copy=True)
    m, n = W.shape
    WT = np.ascontiguousarray(W.T)
    for s in range(v.shape[0]):
        vs, hs = v[s], h[s]
        vf = a + WT.T @ hs
        hf = b + vs @ W
        sites = rng.integers(0, m + n, size=n_steps)
        us = rng.random(n_steps)
        for t in range(n_steps):
            k = sites[t]
            if k < m:
                new = us[t] < 1.0 / (1.0 + np.exp(-vf[k]))
                if new != (vs[k] != 0):
                    vs[k] = new
                    if new:
                        hf += W[k]
                    else:
                        hf -= W[k]
            else:
                j = k - m
                new = us[t] < 1.0 / (1.0 + np.exp(-hf[j]))
                if new != (hs[j] != 0):
                    hs[j] = new
                    if new:
                        vf += WT[j]
                    else:
                        vf -= WT[j]
    return v, h


def brute_log_partition(W, a, b):
    """log Z by enumerating every (v, h) (tiny models)."""
    m, n = W.shape
    V = all_states(m)
    H = all_states(n)
    le = (V @ a)[:, None] + (H @ b)[None, :] + V @ W @ H.T
    mx = le.max()
    return float(mx + np.log(np.exp(le - mx).sum()))


def state_index_bits(m, n):
    """(V, H): the visible and hidden parts of states 0 .. 2**(m+n)-1 (bit i = v_i, bit m+j = h_j)."""
    N = 2 ** (m + n)
    x = np.array([[(s >> k) & 1 for k in range(m + n)] for s in range(N)], dtype=np.float64)
    return x[:, :m], x[:, m:]


def boltzmann_ref(W, a, b):
    m, n = W.shape
    V, H = state_index_bits(m, n)
    le = V @ a + H @ b + np.einsum("si,ij,sj->s", V, W, H)
    p = np.exp(le - le.max())
    return p / p.sum()


def transition_matrix_ref(W, a, b, q=None):
    """Dense T from the definition: T[x, y] = q_k p(y)/(p(x)+p(y)) for y = x with bit k flipped."""
    m, n = W.shape
    M = m + n
    q = np.full(M, 1.0 / M) if q is None else np.asarray(q, np.float64)
    p = boltzmann_ref(W, a, b)
    N = 2 ** M
    T = np.zeros((N, N))
    for x in range(N):
        for k in range(M):
            y = x ^ (1 << k)
            T[x, y] = q[k] * p[y] / (p[x] + p[y])
        T[x, x] = 1.0 - T[x].sum()
    return T


def ais_ref(W, a, b, a_base, betas, n_runs, key, ctr):
    """AIS log weights (float64, (n_runs,)) along betas from the base-rate model a_base,
    with the kernel's draws (stream s, block layout of dlkernels.engine.numba._rbm_mcmc);
    runs looped in Python for the draws.  GEMMs in W's dtype; probabilities and
    log weights in float64."""
    dt = W.dtype
    m, n = W.shape
    R = n_runs
    nbv, nbh = blocks_per_layer(m, dt), blocks_per_layer(n, dt)
    a64, b64, ab64 = (np.asarray(x, np.float64) for x in (a, b, a_base))
    da = a64 - ab64

    def unif(size, first_block):
        return np.stack([uniforms(key, ctr, s, first_block, size, dt) for s in range(R)])

    def sig(z):
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0, e) / (1.0 + e)

    V = (unif(m, 0).astype(np.float64) < sig(ab64)[None, :]).astype(dt)
    logw = np.zeros(R)
    K = len(betas) - 1
    for k in range(1, K + 1):
        bk, bp = float(betas[k]), float(betas[k - 1])
        y = (V @ W).astype(np.float64) + b64
        logw += (bk - bp) * (V.astype(np.float64) @ da)
        logw += np.logaddexp(0.0, bk * y).sum(axis=1) - np.logaddexp(0.0, bp * y).sum(axis=1)
        if k == K:
            break
        blk = nbv + (k - 1) * (nbh + nbv)
        H = (unif(n, blk).astype(np.float64) < sig(bk * y)).astype(dt)
        x = (H @ W.T).astype(np.float64)
        z = (1.0 - bk) * ab64 + bk * (a64 + x)
        V = (unif(m, blk + nbh).astype(np.float64) < sig(z)).astype(dt)
    return logw


def ais_numpy(W, a, b, a_base, betas, n_runs, rng):
    """The NumPy peer of ais_log_partition for benchmarks: the same algorithm
    and schedule, vectorised over the runs (one GEMM per layer per temperature),
    uniforms from the numpy Generator rng, sampling in W's dtype, log weights
    in float64 (np.logaddexp).  Returns the log weights (n_runs,)."""
    dt = W.dtype
    m, n = W.shape
    R = n_runs
    one = dt.type(1)
    WT = np.ascontiguousarray(W.T)
    da = a.astype(np.float64) - a_base.astype(np.float64)
    with np.errstate(over="ignore"):
        V = (rng.random((R, m), dtype=dt) < one / (one + np.exp(-a_base))).astype(dt)
        logw = np.zeros(R)
        K = len(betas) - 1
        for k in range(1, K + 1):
            bk, bp = float(betas[k]), float(betas[k - 1])
            y = V @ W + b
            y64 = y.astype(np.float64)
            logw += (bk - bp) * (V @ da)
            logw += np.logaddexp(0.0, bk * y64).sum(axis=1) - np.logaddexp(0.0, bp * y64).sum(axis=1)
            if k == K:
                break
            bkd = dt.type(bk)
            H = (rng.random((R, n), dtype=dt) < one / (one + np.exp(-bkd * y))).astype(dt)
            z = (one - bkd) * a_base + bkd * (H @ WT + a)
            V = (rng.random((R, m), dtype=dt) < one / (one + np.exp(-z))).astype(dt)
    return logw


def pl_flip_index(key, ctr, s, m):
    """The bit the stochastic pseudo-likelihood flips in row s."""
    return (stream_words(key, ctr, s, 1)[0] * m) >> 64


def pseudo_likelihood_ref(v, W, a, b, idx):
    """scikit-learn's BernoulliRBM.score_samples with the flipped bits idx given."""
    m = v.shape[1]
    v_ = np.array(v, dtype=np.float64, copy=True)
    rows = np.arange(v.shape[0])
    v_[rows, idx] = 1 - v_[rows, idx]
    fe = free_energy(v, W, a, b)
    fe_ = free_energy(v_, W, a, b)
    return -m * np.logaddexp(0, -(fe_ - fe))


def pseudo_likelihood_exact_ref(v, W, a, b):
    """sum_i log p(v_i | v_-i) with p(v_i | v_-i) = p(v) / (p(v) + p(v with bit i flipped))."""
    v = np.asarray(v, np.float64)
    out = np.zeros(v.shape[0])
    fe = free_energy(v, W, a, b)
    for i in range(v.shape[1]):
        v_ = v.copy()
        v_[:, i] = 1 - v_[:, i]
        fe_ = free_energy(v_, W, a, b)
        out += -fe - np.logaddexp(-fe, -fe_)
    return out


# ---- random test problems shared by the RBM test modules ------------------------------

def random_model(m, n, dtype=np.float64, seed=0, scale=1.0):
    """(W, a, b) with W ~ scale * N(0, 1) and biases ~ N(0, 0.25), of the given dtype."""
    rs = np.random.default_rng(seed)
    W = (scale * rs.normal(size=(m, n))).astype(dtype)
    a = (0.5 * rs.normal(size=m)).astype(dtype)
    b = (0.5 * rs.normal(size=n)).astype(dtype)
    return W, a, b


def random_states(rows, cols, dtype, seed):
    """A (rows, cols) array of fair coin flips (0/1) of the given dtype."""
    return (np.random.default_rng(seed).random((rows, cols)) < 0.5).astype(dtype)


# ---- parallel tempering -------------------------------------------------------------

def pt_blocks_per_sweep(K, m, n):
    return (K * (n + m) + K - 1 + 7) // 8


def _pt_sig(x):
    """1 / (1 + exp(-x)) with libm's exp, in the dtype of x (float64 here)."""
    import math

    return 1.0 / (1.0 + math.exp(-float(x)))


def parallel_tempering_ref(V, W, a, b, betas, n_sweeps, swap_every, key, ctr):
    """Float64 replay of the PT kernel (same draws, same summation order).

    V (C, K, m) start states; returns (V, H, accepted (C, K-1))."""
    import math

    V = np.array(V, np.float64)
    C, K, m = V.shape
    n = W.shape[1]
    H = np.zeros((C, K, n))
    acc = np.zeros((C, max(K - 1, 1)), np.int64)
    bps = pt_blocks_per_sweep(K, m, n)
    U = K * (n + m) + K - 1
    for c in range(C):
        for t in range(n_sweeps):
            u = uniforms(key, ctr, c, t * bps, U, np.float32).astype(np.float64)
            off = 0
            E = np.zeros(K)
            for k in range(K):
                v, h = V[c, k], H[c, k]
                f = [float(b[j]) for j in range(n)]
                for i in range(m):
                    if v[i]:
                        for j in range(n):
                            f[j] += float(W[i, j])
                for j in range(n):
                    h[j] = 1.0 if u[off + j] < _pt_sig(betas[k] * f[j]) else 0.0
                off += n
                g = []
                for i in range(m):
                    s = float(a[i])
                    for j in range(n):
                        if h[j]:
                            s += float(W[i, j])
                    g.append(s)
                for i in range(m):
                    v[i] = 1.0 if u[off + i] < _pt_sig(betas[k] * g[i]) else 0.0
                off += m
                E[k] = -(sum(g[i] for i in range(m) if v[i]) + sum(float(b[j]) for j in range(n) if h[j]))
            if (t + 1) % swap_every == 0:
                for k in range(K - 1):
                    d = min(0.0, (betas[k] - betas[k + 1]) * (E[k] - E[k + 1]))
                    if u[off + k] < math.exp(d):
                        V[c, [k, k + 1]] = V[c, [k + 1, k]]
                        H[c, [k, k + 1]] = H[c, [k + 1, k]]
                        E[[k, k + 1]] = E[[k + 1, k]]
                        acc[c, k] += 1
    return V, H, acc


def gibbs_step_distribution(v0, W, a, b, beta):
    """Exact distribution of (v', h) after one tempered block Gibbs sweep from v0:
    (states (2**(m+n), m+n) as [v', h], probabilities)."""
    W, a, b = (np.asarray(x, np.float64) for x in (W, a, b))
    m, n = W.shape
    Hs, Vs = all_states(n), all_states(m)
    ph = 1.0 / (1.0 + np.exp(-beta * (np.asarray(v0, np.float64) @ W + b)))
    P_h = np.prod(np.where(Hs == 1, ph, 1 - ph), axis=1)
    pv = 1.0 / (1.0 + np.exp(-beta * (Hs @ W.T + a)))  # (2**n, m)
    P_v_given_h = np.prod(np.where(Vs[None, :, :] == 1, pv[:, None, :], 1 - pv[:, None, :]), axis=2)
    joint = P_h[:, None] * P_v_given_h  # [h, v']
    states = np.array([np.concatenate([v, h]) for h in Hs for v in Vs])
    return states, joint.ravel()
