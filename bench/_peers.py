"""Peer implementations for the RBM benchmarks: plain, obvious NumPy (and
PyTorch) loops doing the same work as dlkernels' kernels.  They are timing
peers, not references: the references of the tests live in tests/."""
import numpy as np
from scipy.special import expit


def block_gibbs_numpy(v, W, a, b, k, rng):
    """k sweeps v -> h -> v for all chains (rows of v) at once."""
    dt = W.dtype
    c, (m, n) = v.shape[0], W.shape
    for _ in range(k):
        ph = expit(v @ W + b)
        h = (rng.random((c, n), dtype=dt) < ph).astype(dt)
        pv = expit(h @ W.T + a)
        v = (rng.random((c, m), dtype=dt) < pv).astype(dt)
    return v, h


def block_gibbs_torch(v, W, a, b, k, gen):
    """The same loop in PyTorch (v, W, a, b torch tensors)."""
    import torch

    Wt = W.T
    for _ in range(k):
        h = torch.bernoulli(torch.sigmoid(torch.addmm(b, v, W)), generator=gen)
        v = torch.bernoulli(torch.sigmoid(torch.addmm(a, h, Wt)), generator=gen)
    return v, h


def single_site_numpy(v, h, W, a, b, n_updates, rng):
    """Single-site Gibbs, one site update per Python iteration: chain
    t % n_chains resamples a uniformly chosen unit of x = (v, h) from its
    conditional, the local field computed from the current state."""
    c, m = v.shape
    n = h.shape[1]
    sites = rng.integers(0, m + n, size=n_updates)
    u = rng.random(n_updates)
    for t in range(n_updates):
        ch, i = t % c, sites[t]
        if i < m:
            v[ch, i] = u[t] < expit(a[i] + W[i] @ h[ch])
        else:
            j = i - m
            h[ch, j] = u[t] < expit(b[j] + v[ch] @ W[:, j])
    return v, h


def single_site_numpy_vec(v, h, W, a, b, n_steps, rng):
    """Single-site Gibbs vectorised over chains: at each step every chain
    resamples one uniformly chosen unit (one NumPy pass per step)."""
    c, m = v.shape
    n = h.shape[1]
    rows = np.arange(c)
    for _ in range(n_steps):
        i = rng.integers(0, m + n, size=c)
        u = rng.random(c, dtype=W.dtype)
        vis = i < m
        cv, iv = rows[vis], i[vis]
        if cv.size:
            f = a[iv] + np.einsum("ij,ij->i", W[iv], h[cv])
            v[cv, iv] = u[vis] < expit(f)
        ch, jh = rows[~vis], i[~vis] - m
        if ch.size:
            f = b[jh] + np.einsum("ij,ji->i", v[ch], W[:, jh])
            h[ch, jh] = u[~vis] < expit(f)
    return v, h


def ais_numpy(W, a, b, n_runs, betas, rng):
    """Annealed importance sampling (Salakhutdinov & Murray 2008) from the
    base model with zero weights and biases to the RBM (W, a, b), along
    ``betas``; one v -> h -> v transition per temperature.  Returns the log
    importance weights of the runs (log Z_B - log Z_A is their log-mean)."""
    dt = W.dtype
    m, n = W.shape
    v = (rng.random((n_runs, m), dtype=dt) < 0.5).astype(dt)
    logw = np.zeros(n_runs)

    def log_p(beta, v, x):          # unnormalised log p_beta(v), x = v @ W + b
        return beta * (v @ a) + np.logaddexp(0, beta * x).sum(axis=1)

    for k in range(1, len(betas)):
        x = v @ W + b
        logw += log_p(betas[k], v, x) - log_p(betas[k - 1], v, x)
        h = (rng.random((n_runs, n), dtype=dt) < expit(betas[k] * x)).astype(dt)
        pv = expit(betas[k] * (h @ W.T + a))
        v = (rng.random((n_runs, m), dtype=dt) < pv).astype(dt)
    return logw
