"""Parallel tempering (dlkernels.rbm.parallel_tempering)."""
import numpy as np
import pytest
from conftest import require_backend

import dlkernels
from dlkernels import rbm
import naive_rbm as ref

FAMILY = "rbm"


def _bimodal(w=2.0, m=5, n=4, dtype=np.float64):
    """Ferromagnetic RBM: E is symmetric under flipping every unit, with two
    deep modes (all off, all on) that single-temperature Gibbs rarely crosses."""
    W = np.full((m, n), w, dtype)
    a = np.full(m, -w * n / 2, dtype)
    b = np.full(n, -w * m / 2, dtype)
    return W, a, b


def _sum_hist(v, m):
    return np.bincount(v.sum(axis=1).astype(int), minlength=m + 1) / v.shape[0]


def test_replays_reference_float64(backend):
    W, a, b = ref.random_model(6, 4, np.float64, seed=3, scale=1.5)
    betas = np.array([0.2, 0.5, 1.0])
    v0 = ref.random_states(7, 6, np.float64, seed=1)
    r = rbm.parallel_tempering(v0, W, a, b, 9, betas=betas, swap_every=2, return_all=True,
                               random_state=11, backend=backend)
    # the call's streams: a seed's Streams at epoch 0 hands out its first counter
    st = dlkernels.rng.Streams(11)
    key, ctr = st.key, st.next_counter()
    V, H, acc = ref.parallel_tempering_ref(np.repeat(v0[:, None, :], 3, axis=1), W, a, b, betas,
                                          9, 2, key, ctr)
    np.testing.assert_array_equal(r.replicas[0], V)
    np.testing.assert_array_equal(r.replicas[1], H)
    np.testing.assert_array_equal(r.v, V[:, -1])
    np.testing.assert_array_equal(r.h, H[:, -1])
    np.testing.assert_allclose(r.acceptance, acc.sum(0) / (7 * 4))


def test_backends_threads_identical(dtype, restore_threads):
    require_backend("cython", FAMILY)
    W, a, b = ref.random_model(9, 7, dtype, seed=5, scale=1.0)
    v0 = ref.random_states(33, 9, dtype, seed=2)
    betas = np.linspace(0.3, 1.0, 5)
    outs = []
    for nthreads in (1, 2):
        dlkernels.set_num_threads(nthreads)
        for be in ("numba", "cython"):
            r = rbm.parallel_tempering(v0, W, a, b, 13, betas=betas, return_all=True,
                                       random_state=4, backend=be)
            outs.append(r)
    for r in outs[1:]:
        for x, y in zip(r.replicas, outs[0].replicas):
            assert x.dtype == dtype
            assert np.array_equal(x, y)
        np.testing.assert_array_equal(r.acceptance, outs[0].acceptance)


def test_float32_and_float64_models_make_the_same_draws(backend):
    # one 32-bit half-word per draw in both dtypes: only rounding of the
    # probabilities can make a decision differ, which is rare
    W, a, b = ref.random_model(8, 6, np.float64, seed=8)
    v0 = ref.random_states(200, 8, np.float64, seed=9)
    kw = dict(betas=[0.5, 1.0], random_state=3, backend=backend)
    r64 = rbm.parallel_tempering(v0, W, a, b, 5, **kw)
    r32 = rbm.parallel_tempering(v0.astype(np.float32), W.astype(np.float32),
                                 a.astype(np.float32), b.astype(np.float32), 5, **kw)
    same = np.all(r64.v == r32.v, axis=1).mean()
    assert same >= 0.95


def test_beta1_marginal_matches_enumeration_where_gibbs_is_stuck(backend):
    # Exact marginal of sum(v) by enumeration (two modes of 0.447 each).  All
    # chains start in the all-off mode.  4000 independent chains: the sampling
    # noise of the 6-bin TV is ~0.012, so PT's TV < 0.05 has a wide margin
    # while single-temperature Gibbs at the same cost (K x sweeps) stays near
    # 0.3 (it has not crossed to the other mode); fixed seeds, deterministic.
    W, a, b = _bimodal()
    m = W.shape[0]
    p = ref.exact_visible_marginal(W, a, b)
    exact = np.bincount(ref.all_states(m).sum(1).astype(int), weights=p, minlength=m + 1)
    C, S, betas = 4000, 25, np.array([0.15, 0.35, 0.6, 1.0])
    pt = rbm.parallel_tempering(np.zeros((C, m)), W, a, b, S, betas=betas, random_state=1,
                                backend=backend)
    gibbs = rbm.gibbs_chains(np.zeros((C, m)), W, a, b, S * len(betas), random_state=1,
                             backend=backend)
    tv_pt = 0.5 * np.abs(_sum_hist(pt.v, m) - exact).sum()
    tv_gibbs = 0.5 * np.abs(_sum_hist(gibbs, m) - exact).sum()
    assert tv_pt < 0.05
    assert tv_gibbs > 0.2
    assert np.all((pt.acceptance > 0.2) & (pt.acceptance < 1.0))


def _swap_expectation(v0, W, a, b, betas):
    """Exact probability that the swap after one sweep is accepted (2 replicas)."""
    m = W.shape[0]
    dists = [ref.gibbs_step_distribution(v0, W, a, b, bt) for bt in betas]
    (S0, P0), (S1, P1) = dists
    E0 = ref.energy(S0[:, :m], S0[:, m:], W, a, b)
    E1 = ref.energy(S1[:, :m], S1[:, m:], W, a, b)
    d = (betas[0] - betas[1]) * (E0[:, None] - E1[None, :])
    return float(np.sum(P0[:, None] * P1[None, :] * np.exp(np.minimum(d, 0.0))))


def test_swap_acceptance_is_metropolis(backend):
    # Two replicas, one sweep from a fixed state, 20000 chains: the share of
    # accepted swaps must equal the exact expectation of min(1, exp(delta))
    # over the exact one-sweep distributions; binomial s.e. <= 0.0036, tolerance 4 s.e.
    W, a, b = ref.random_model(3, 2, np.float64, seed=12, scale=1.5)
    betas = np.array([0.4, 1.0])
    v0 = np.array([1.0, 0.0, 1.0])
    C = 20000
    r = rbm.parallel_tempering(np.tile(v0, (C, 1)), W, a, b, 1, betas=betas, random_state=5,
                               backend=backend)
    expected = _swap_expectation(v0, W, a, b, betas)
    se = np.sqrt(expected * (1 - expected) / C)
    assert abs(r.acceptance[0] - expected) < 4 * se


def test_swaps_keep_the_product_distribution_invariant(backend):
    # Detailed balance of the whole step, exactly: start 2-replica chains from
    # exact samples of p_0 x p_1 (joint (v, h) by enumeration), run one sweep
    # with a swap; the beta = 1 replica's (v, h) must still follow p_1.
    # Chi-square over the 2**(m+n) = 32 states, 30000 chains, fixed seed,
    # false-alarm rate 1e-3.
    from scipy import stats

    W, a, b = ref.random_model(3, 2, np.float64, seed=21, scale=2.0)
    m, n = W.shape
    betas = np.array([0.3, 1.0])
    Vs, Hs = ref.all_states(m), ref.all_states(n)
    states = np.array([np.concatenate([v, h]) for v in Vs for h in Hs])
    E = ref.energy(states[:, :m], states[:, m:], W, a, b)
    g = np.random.default_rng(0)
    C = 30000
    start = np.empty((C, 2, m))
    for k, bt in enumerate(betas):
        p = np.exp(-bt * (E - E.min()))
        p /= p.sum()
        start[:, k] = states[g.choice(len(p), size=C, p=p), :m]
    r = rbm.parallel_tempering(start, W, a, b, 1, betas=betas, random_state=7, backend=backend)
    p1 = np.exp(-(E - E.min()))
    p1 /= p1.sum()
    idx = (r.v @ (2 ** np.arange(m)[::-1])) * 2**n + r.h @ (2 ** np.arange(n)[::-1])
    counts = np.bincount(idx.astype(int), minlength=len(p1))
    # states are enumerated as v-major, h-minor in the same bit order as all_states
    order = np.array([int(v @ (2 ** np.arange(m)[::-1])) * 2**n + int(h @ (2 ** np.arange(n)[::-1]))
                      for v in Vs for h in Hs])
    expected = np.zeros(len(p1))
    expected[order] = p1 * C
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-3, len(p1) - 1)
    assert r.acceptance[0] > 0.05  # swaps did happen


def test_continue_from_all_replicas_equals_one_long_run(backend):
    W, a, b = ref.random_model(6, 5, np.float32, seed=2)
    v0 = ref.random_states(10, 6, np.float32, seed=3)
    st = dlkernels.rng.Streams(9)
    r1 = rbm.parallel_tempering(v0, W, a, b, 4, betas=[0.5, 1.0], return_all=True,
                                random_state=st, backend=backend)
    r2 = rbm.parallel_tempering(r1.replicas[0], W, a, b, 4, betas=[0.5, 1.0],
                                random_state=st, backend=backend)
    assert r2.v.shape == (10, 6) and r2.replicas is None
    assert set(np.unique(r2.v)) <= {0.0, 1.0}
    # and the input was not modified
    assert np.array_equal(r1.replicas[0][:, -1], r1.v)


def test_single_temperature_is_block_gibbs_statistics(backend):
    # K = 1: no swaps; acceptance is empty and states are binary
    W, a, b = ref.random_model(4, 3, np.float64, seed=1)
    r = rbm.parallel_tempering(np.zeros((5, 4)), W, a, b, 3, betas=[1.0], backend=backend)
    assert r.acceptance.shape == (0,)
    assert r.v.shape == (5, 4) and r.h.shape == (5, 3)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(betas=[0.5, 0.4, 1.0]), ValueError, "betas: expected strictly increasing"),
    (dict(betas=[0.5, 0.9]), ValueError, "betas: expected the last inverse temperature to be 1"),
    (dict(betas=[-0.1, 1.0]), ValueError, "betas: expected values >= 0"),
    (dict(betas=[np.nan, 1.0]), ValueError, "betas: expected finite"),
    (dict(betas=[]), ValueError, "betas"),
    (dict(betas="hot"), TypeError, "betas"),
    (dict(betas=[0.5, 1.0], swap_every=0), ValueError, "swap_every"),
    (dict(betas=[0.5, 1.0], n_sweeps=0), ValueError, "n_sweeps"),
    (dict(betas=[0.5, 1.0], n_sweeps=2.5), TypeError, "n_sweeps"),
    (dict(betas=[0.5, 1.0], v0=np.full((3, 4), 0.5)), ValueError, "v0"),
    (dict(betas=[0.5, 1.0], v0=np.zeros((3, 5))), ValueError, "v0: expected shape"),
    (dict(betas=[0.5, 1.0], v0=np.zeros((3, 3, 4))), ValueError, "v0: expected shape"),
    (dict(betas=[0.5, 1.0], return_all="yes"), TypeError, "return_all"),
    (dict(betas=[0.5, 1.0], backend="fortran"), ValueError, "backend"),
])
def test_errors(kwargs, exc, match):
    W, a, b = ref.random_model(4, 3, np.float64, seed=1)
    args = dict(v0=np.zeros((3, 4)), n_sweeps=2)
    args.update(kwargs)
    v0, n_sweeps = args.pop("v0"), args.pop("n_sweeps")
    with pytest.raises(exc, match=match):
        rbm.parallel_tempering(v0, W, a, b, n_sweeps, **args)


def test_weights_errors():
    W, a, b = ref.random_model(4, 3, np.float64, seed=1)
    with pytest.raises(TypeError, match="a"):
        rbm.parallel_tempering(np.zeros((2, 4)), W, a.astype(np.float32), b, 1, betas=[1.0])
    W2 = W.copy()
    W2[0, 0] = np.nan
    with pytest.raises(ValueError, match="W"):
        rbm.parallel_tempering(np.zeros((2, 4)), W2, a, b, 1, betas=[1.0])
