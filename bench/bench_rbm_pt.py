"""Parallel tempering (dlkernels.rbm.parallel_tempering) vs NumPy PT and vs plain block Gibbs.

Model: a ferromagnetic RBM, W = w (all entries), a = -w n / 2, b = -w m / 2
(m = 16 visible, n = 8 hidden, w = 1): two deep modes, all units off or all
on, that single-temperature block Gibbs rarely crosses.  Inverse
temperatures: 6, geometric from 0.1 to 1.
"""
import numpy as np
import pytest

from bench import _presets

FAMILY = "rbm_pt"
TITLE = "RBM parallel tempering (issue 10)"
ORDER = 25
PEERS = {"gibbs": "dlkernels"}
FOOTNOTES = (
    "Model: m = 16, n = 8, W = 1, a = -n/2, b = -m/2 (two modes: all off / all on); "
    "betas = 6 inverse temperatures, geometric from 0.1 to 1; float32.",
    "Sweeps: the numpy peer is a vectorised PT (all chains and replicas at once, one matrix "
    "product per replica and layer, swaps vectorised over chains), the same algorithm and "
    "swap rule. Rate = replica sweeps per second.",
    "ESS: time to 10,000 effective samples of the mode indicator 1[sum(v) > m/2] of the "
    "beta = 1 chain (ESS from the pooled autocorrelation with the exact mean 1/2, "
    "initial-positive-sequence truncation, from an untimed run of the same length); the "
    "'gibbs' peer is dlkernels' own block Gibbs (`gibbs_chains`) given the same number of "
    "sweeps per chain as PT's replicas together (K x).",
)
PRESETS = {
    "smoke": dict(chains=50, sweeps=20, ess_steps=40),
    "quick": dict(chains=500, sweeps=200, ess_steps=200),
    "full": dict(chains=1000, sweeps=1000, ess_steps=400),
}
STARTUP_PRESETS = ()

P = _presets.sizes(PRESETS)
M, N, WSTR = 16, 8, 1.0
BETAS = np.geomspace(0.1, 1.0, 6)


def _model(dtype=np.float32):
    W = np.full((M, N), WSTR, dtype)
    a = np.full(M, -WSTR * N / 2, dtype)
    b = np.full(N, -WSTR * M / 2, dtype)
    return W, a, b


def _start(C, dtype=np.float32):
    g = np.random.default_rng(0)
    return np.repeat((g.random(C) < 0.5)[:, None], M, axis=1).astype(dtype)


def numpy_pt(v0, W, a, b, n_sweeps, betas, rng):
    """Vectorised NumPy parallel tempering (chains x replicas at once)."""
    C = v0.shape[0]
    K = len(betas)
    dt = W.dtype
    V = np.repeat(v0[:, None, :], K, axis=1)
    bt = betas.astype(dt)[None, :, None]
    for _ in range(n_sweeps):
        F = V @ W + b
        H = (rng.random(F.shape, dtype=np.float32) < 1 / (1 + np.exp(-bt * F))).astype(dt)
        G = H @ W.T + a
        V = (rng.random(G.shape, dtype=np.float32) < 1 / (1 + np.exp(-bt * G))).astype(dt)
        E = -(np.einsum("ckm,ckm->ck", V, G, dtype=np.float64)
              + (H @ b).astype(np.float64))
        u = rng.random((C, K - 1))
        for k in range(K - 1):
            d = np.minimum(0.0, (betas[k] - betas[k + 1]) * (E[:, k] - E[:, k + 1]))
            sw = u[:, k] < np.exp(d)
            V[sw, k], V[sw, k + 1] = V[sw, k + 1].copy(), V[sw, k].copy()
            E[sw, k], E[sw, k + 1] = E[sw, k + 1], E[sw, k]
    return V[:, -1]


def _ess(trace):
    """ESS of a (T, C) trace of a 0/1 indicator with exact mean 1/2."""
    x = trace - 0.5
    T, C = x.shape
    s, prev = 0.0, None
    for t in range(1, T // 2):
        r = float((x[:-t] * x[t:]).mean() / 0.25)
        if prev is not None and r + prev < 0:
            break
        s += r
        prev = r
    return C * T / (1 + 2 * s)


@pytest.mark.parametrize("impl", ["numba", "cython", "numpy"])
def test_pt_sweeps(bench, impl):
    C, S = P["chains"], P["sweeps"]
    K = len(BETAS)
    W, a, b = _model()
    v0 = _start(C)
    bench.describe(family=FAMILY, case=f"PT {C} chains x {K} replicas, {M}x{N}, {S} sweeps",
                   impl=impl, work=C * K * S, unit="replica sweeps",
                   target=[{"vs": "numpy", "ratio": 1.0}])
    if impl == "numpy":
        rng = np.random.default_rng(0)
        bench.run(lambda: numpy_pt(v0, W, a, b, S, BETAS, rng))
        return
    bench.require_backend("rbm")
    from dlkernels import rbm

    bench.run(lambda: rbm.parallel_tempering(v0, W, a, b, S, betas=BETAS, random_state=1,
                                             backend=impl))


@pytest.mark.parametrize("impl", ["numba", "cython", "gibbs"])
def test_pt_ess(bench, impl):
    import dlkernels
    from dlkernels import rbm

    C, T = P["chains"], P["ess_steps"]
    K = len(BETAS)
    W, a, b = _model()
    v0 = _start(C)
    backend = "numba" if impl == "gibbs" else impl
    bench.describe(family=FAMILY, case=f"time to 10,000 effective samples (mode indicator), "
                   f"{C} chains, {T} steps", impl=impl, work=10_000, unit="eff. samples",
                   target=[{"vs": "gibbs", "ratio": 2.0}])
    if impl != "gibbs":
        bench.require_backend("rbm")
    st = dlkernels.rng.Streams(5)
    trace, cur = [], v0
    for _ in range(T):  # untimed run: the ESS of this many steps
        if impl == "gibbs":
            cur = rbm.gibbs_chains(cur, W, a, b, K, random_state=st, backend=backend)
            trace.append(cur.sum(axis=1) > M / 2)
        else:
            r = rbm.parallel_tempering(cur, W, a, b, 1, betas=BETAS, return_all=True,
                                       random_state=st, backend=backend)
            cur = r.replicas[0]
            trace.append(r.v.sum(axis=1) > M / 2)
    ess = _ess(np.array(trace, np.float64))
    if impl == "gibbs":
        fn = lambda: rbm.gibbs_chains(v0, W, a, b, K * T, random_state=1, backend=backend)  # noqa: E731
    else:
        fn = lambda: rbm.parallel_tempering(v0, W, a, b, T, betas=BETAS, random_state=1,  # noqa: E731
                                            backend=backend)
    # the same row again, now with the measured ESS: time x norm = time to 10,000 samples
    bench.describe(family=FAMILY, case=f"time to 10,000 effective samples (mode indicator), "
                   f"{C} chains, {T} steps", impl=impl, work=10_000, unit="eff. samples",
                   norm=10_000 / ess, note=f"ESS {ess:,.0f} in {T} steps",
                   target=[{"vs": "gibbs", "ratio": 2.0}])
    bench.run(fn)
