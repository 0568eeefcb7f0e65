"""Tests of dlkernels.rbm's Markov-chain functions: single-site Gibbs,
transition matrix, Boltzmann distribution, exact and AIS log partition,
log-likelihood, pseudo-likelihood.

Statistical tests use fixed seeds; each states its false-alarm rate (the
probability that it would fail for a correct sampler with a random seed).
"""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

import dlkernels
from dlkernels.bindings import rbm_mcmc as mc
from dlkernels.rng import Streams, counter

import naive_rbm as ref


_NO_STOP = np.zeros(1, np.int64)   # the kernels' stop flag, never set here

FAMILY = "rbm"
_BACKENDS = dlkernels.available_backends(FAMILY)


_model = ref.random_model
_states = ref.random_states


# ---- single-site Gibbs: reference, parity, threads ------------------------------------

Q7 = np.array([0.3, 0.0, 0.1, 0.05, 0.15, 0.1, 0.2, 0.05, 0.05])


@pytest.mark.parametrize("mode", ["random", "systematic", "q"])
def test_single_site_matches_reference(backend, dtype, mode):
    m, n, C, steps = 5, 4, 3, 301
    W, a, b = _model(m, n, dtype, seed=1)
    v0, h0 = _states(C, m, dtype, 2), _states(C, n, dtype, 3)
    kw = {"scan": "systematic"} if mode == "systematic" else {}
    thr = alias = None
    if mode == "q":
        kw["q"] = Q7
        thr, alias = mc._alias_table(Q7 / Q7.sum())
    st = Streams(7)
    key, ctr = st.key.copy(), counter(0, st.epoch)
    v, h = mc.single_site_gibbs(v0, h0, W, a, b, steps, random_state=st, backend=backend, **kw)
    code = {"random": 0, "systematic": 1, "q": 2}[mode]
    rv, rh = ref.single_site_gibbs_ref(v0, h0, W, a, b, steps, key, ctr, code, thr, alias)
    assert v.dtype == dtype and h.dtype == dtype
    np.testing.assert_array_equal(v, rv)
    np.testing.assert_array_equal(h, rh)
    assert st.epoch == 1
    assert (v0 == _states(C, m, dtype, 2)).all()        # inputs untouched
    if mode == "q":       # site 1 has q = 0: never updated
        np.testing.assert_array_equal(v[:, 1], v0[:, 1])


def test_single_site_backend_parity_and_threads(dtype, restore_threads):
    if not _BACKENDS:
        pytest.skip("no backend")
    m, n, C, steps = 23, 17, 9, 3001
    W, a, b = _model(m, n, dtype, seed=4, scale=0.3)
    v0, h0 = _states(C, m, dtype, 5), _states(C, n, dtype, 6)
    q = np.random.default_rng(0).random(m + n)
    q /= q.sum()
    for kw in ({}, {"q": q}, {"scan": "systematic"}):
        out = []
        for be, threads in (("numba", 1), ("numba", 2), ("cython", 1), ("cython", 2)):
            if be not in _BACKENDS:
                continue
            dlkernels.set_num_threads(1 if threads == 1 else restore_threads)
            out.append(mc.single_site_gibbs(v0, h0, W, a, b, steps, random_state=11,
                                            backend=be, **kw))
        for v, h in out[1:]:
            np.testing.assert_array_equal(v, out[0][0])
            np.testing.assert_array_equal(h, out[0][1])
        assert not np.array_equal(out[0][0], v0)


def test_single_site_one_chain_and_zero_steps(backend):
    W, a, b = _model(4, 3)
    v0, h0 = np.array([1, 0, 1, 1]), np.array([0, 1, 0])
    v, h = mc.single_site_gibbs(v0, h0, W, a, b, 0, random_state=0, backend=backend)
    assert v.shape == (4,) and h.shape == (3,) and v.dtype == np.float64
    np.testing.assert_array_equal(v, v0)
    v, h = mc.single_site_gibbs(v0[None], h0[None], W, a, b, 50, random_state=0,
                                backend=backend)
    assert v.shape == (1, 4)
    st = Streams(3)
    v1, _ = mc.single_site_gibbs(v0[None], h0[None], W, a, b, 50, random_state=st, backend=backend)
    v2, _ = mc.single_site_gibbs(v0[None], h0[None], W, a, b, 50, random_state=st, backend=backend)
    assert st.epoch == 2       # a fresh counter per call


# ---- exact distributions ----------------------------------------------------------------

def test_boltzmann_distribution_and_ordering():
    W, a, b = _model(3, 2, seed=3)
    p = mc.boltzmann_distribution(W, a, b)
    np.testing.assert_allclose(p, ref.boltzmann_ref(W, a, b), rtol=1e-12)
    assert abs(p.sum() - 1) < 1e-14
    # state index: bit i = v_i, bit m + j = h_j
    v, h = mc.state_bits(np.arange(32), 3, 2)
    E = ref.energy(v, h, W, a, b)
    np.testing.assert_allclose(p, np.exp(-E) / np.exp(-E).sum(), rtol=1e-12)
    v5, h5 = mc.state_bits(5 + 16, 3, 2)
    np.testing.assert_array_equal(v5, [1, 0, 1])
    np.testing.assert_array_equal(h5, [0, 1])


@pytest.mark.parametrize("q", [None, np.array([0.1, 0.3, 0.2, 0.25, 0.15])])
def test_transition_matrix_exact(q):
    W, a, b = _model(3, 2, seed=8, scale=1.5)
    T = mc.transition_matrix(W, a, b, q)
    assert sp.issparse(T) and T.format == "csr"
    D = mc.transition_matrix(W, a, b, q, sparse=False)
    assert isinstance(D, np.ndarray) and D.shape == (32, 32)
    np.testing.assert_allclose(T.toarray(), D, rtol=0, atol=1e-15)
    np.testing.assert_allclose(D, ref.transition_matrix_ref(W, a, b, q), rtol=1e-12, atol=1e-15)
    pi = mc.boltzmann_distribution(W, a, b)
    assert np.abs(D.sum(axis=1) - 1).max() < 1e-13 and (D >= 0).all()
    assert np.abs(pi @ D - pi).max() < 1e-12


def test_transition_matrix_16_units_stationary():
    W, a, b = _model(9, 7, seed=9, scale=0.7)
    q = np.random.default_rng(1).random(16)
    T = mc.transition_matrix(W, a, b, q / q.sum())
    assert T.shape == (2 ** 16, 2 ** 16) and T.nnz <= 2 ** 16 * 17
    pi = mc.boltzmann_distribution(W, a, b)
    assert np.abs(np.asarray(T.sum(axis=1)).ravel() - 1).max() < 1e-12
    assert T.data.min() >= 0
    assert np.abs(pi @ T - pi).max() < 1e-12


def _chisq_pvalue(counts, p):
    """Pearson chi-square p-value, merging cells with expected count < 5 into one."""
    N = counts.sum()
    exp = N * p
    small = exp < 5
    obs = np.append(counts[~small], counts[small].sum())
    ex = np.append(exp[~small], exp[small].sum())
    if ex[-1] == 0:
        obs, ex = obs[:-1], ex[:-1]
    return stats.chisquare(obs, ex).pvalue


def _state_index(v, h):
    m = v.shape[1]
    return (v.astype(np.int64) << np.arange(m)).sum(1) + (h.astype(np.int64) << (m + np.arange(h.shape[1]))).sum(1)


@pytest.mark.parametrize("scan", ["random", "q", "systematic"])
def test_sampler_converges_to_boltzmann(backend, scan):
    """20000 independent chains from x = 0, 200 steps each, on a 3+2-unit RBM.

    The empirical distribution of the final states is compared with the exact
    distribution after 200 steps (start vector times the transition matrices,
    so the chi-square test has no burn-in bias; false-alarm rate 1e-3) and
    with the Boltzmann distribution (total variation < 0.03; for a correct
    sampler E[TV] is about 0.01 here and TV > 0.03 has probability < 1e-6).
    """
    m, n, C, steps = 3, 2, 20000, 200
    W, a, b = _model(m, n, seed=12, scale=1.2)
    M = m + n
    q = np.array([0.15, 0.25, 0.2, 0.3, 0.1])
    kw = {"q": q} if scan == "q" else ({"scan": "systematic"} if scan == "systematic" else {})
    v, h = mc.single_site_gibbs(np.zeros((C, m)), np.zeros((C, n)), W, a, b, steps,
                                random_state=2024, backend=backend, **kw)
    counts = np.bincount(_state_index(v, h), minlength=2 ** M)
    p = np.zeros(2 ** M)
    p[0] = 1.0
    if scan == "systematic":
        Ts = [mc.transition_matrix(W, a, b, np.eye(M)[k], sparse=False) for k in range(M)]
        for t in range(steps):
            p = p @ Ts[t % M]
    else:
        T = mc.transition_matrix(W, a, b, q if scan == "q" else None, sparse=False)
        p = p @ np.linalg.matrix_power(T, steps)
    pi = mc.boltzmann_distribution(W, a, b)
    assert 0.5 * np.abs(p - pi).sum() < 1e-3          # 200 steps mix this chain
    assert _chisq_pvalue(counts, p) > 1e-3
    assert 0.5 * np.abs(counts / C - pi).sum() < 0.03


# ---- partition functions ----------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (6, 2), (7, 7)])
def test_exact_log_partition_vs_brute_force(shape, dtype):
    W, a, b = _model(*shape, dtype=dtype, seed=sum(shape))
    lz = mc.exact_log_partition(W, a, b)
    assert isinstance(lz, float)
    expected = ref.brute_log_partition(W.astype(np.float64), a.astype(np.float64),
                                       b.astype(np.float64))
    assert abs(lz - expected) < 1e-10 * max(1.0, abs(expected))


def test_exact_log_partition_chunked_and_large_weights():
    # 13 visible x 14 hidden: enumerates the 2**13 visible states in two chunks;
    # compared with the sum over the 2**14 hidden states.
    W, a, b = _model(13, 14, seed=5, scale=3.0)
    lz = mc.exact_log_partition(W, a, b)
    H = ref.all_states(14)
    vals = H @ b + np.logaddexp(0.0, a + H @ W.T).sum(axis=1)
    mx = vals.max()
    assert abs(lz - (mx + np.log(np.exp(vals - mx).sum()))) < 1e-9 * abs(lz)
    assert np.isfinite(mc.exact_log_partition(W * 100, a, b))     # no overflow


def test_log_likelihood_normalised():
    W, a, b = _model(4, 3, seed=6)
    lz = mc.exact_log_partition(W, a, b)
    V = ref.all_states(4)
    ll = mc.log_likelihood(V, W, a, b, lz)
    assert abs(np.exp(ll).sum() - 1) < 1e-12
    pv = mc.boltzmann_distribution(W, a, b).reshape(8, 16).sum(axis=0)   # h bits are high
    np.testing.assert_allclose(np.exp(ll), pv, rtol=1e-12)
    res = mc.AISResult(lz, 0.0)
    np.testing.assert_allclose(mc.log_likelihood(V, W, a, b, res), ll)
    assert mc.log_likelihood(V.astype(np.float32), W.astype(np.float32), a.astype(np.float32),
                             b.astype(np.float32), lz).dtype == np.float32


def test_ais_betas_default_schedule():
    betas = mc.ais_betas(10000)
    assert betas.shape == (10000,) and betas[0] == 0 and betas[-1] == 1
    d = np.diff(betas)
    assert (d > 0).all()
    assert d[-1] < d[0] / 10          # denser near 1
    assert (betas <= 0.5).sum() == pytest.approx(10000 * 500 / 14500, abs=2)
    np.testing.assert_allclose(mc.ais_betas(3), [0, 0.5, 1])


def test_ais_kernel_matches_reference(backend, dtype):
    m, n, R = 6, 5, 5
    W, a, b = _model(m, n, dtype, seed=13)
    a_base = (0.3 * np.arange(m) - 0.5).astype(dtype)
    betas = np.linspace(0, 1, 31) ** 0.5
    key, ctr = Streams(21).key, counter(0, 4)
    eng = mc._engine(backend)
    logw = np.empty(R)
    eng.ais(W, np.ascontiguousarray(W.T), a, b, a_base, betas, key, ctr, logw, _NO_STOP)
    expected = ref.ais_ref(W, a, b, a_base, betas, R, key=key, ctr=ctr)
    tol = 1e-11 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(logw, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("base", ["zeros", "data"])
def test_ais_agrees_with_exact(backend, dtype, base):
    """AIS (100 runs, 2000 temperatures) within 3 standard errors and 0.1 nats
    of the exact log Z on a 14 x 10 RBM."""
    W, a, b = _model(14, 10, dtype, seed=17, scale=0.5)
    exact = mc.exact_log_partition(W, a, b)
    kw = {}
    if base == "data":
        data = (np.random.default_rng(3).random((50, 14)) < 0.3).astype(dtype)
        kw = {"base_visible_bias": "data", "data": data}
    res = mc.ais_log_partition(W, a, b, n_runs=100, n_betas=2000, random_state=5,
                               backend=backend, **kw)
    assert isinstance(res, mc.AISResult) and res.stderr > 0
    assert abs(res.log_z - exact) < 3 * res.stderr
    assert abs(res.log_z - exact) < 0.1


def test_ais_backend_parity_and_threads(dtype, restore_threads):
    if not _BACKENDS:
        pytest.skip("no backend")
    W, a, b = _model(9, 7, dtype, seed=19)
    out = []
    for be in _BACKENDS:
        for threads in (1, restore_threads):
            dlkernels.set_num_threads(threads)
            out.append(mc.ais_log_partition(W, a, b, n_runs=7, n_betas=200, random_state=3,
                                            backend=be))
    assert all(r == out[0] for r in out[1:])
    # 150 runs: three tiles of 50 runs, compared with the reference run by run
    betas = mc.ais_betas(12)
    key, ctr = Streams(6).key, counter(0, 0)
    expected = ref.ais_ref(W, a, b, np.zeros(9, dtype), betas, 150, key=key, ctr=ctr)
    logws = []
    for be in _BACKENDS:
        for threads in (1, restore_threads):
            dlkernels.set_num_threads(threads)
            logw = np.empty(150)
            mc._engine(be).ais(W, np.ascontiguousarray(W.T), a, b, np.zeros(9, dtype), betas, key,
                               ctr, logw, _NO_STOP)
            logws.append(logw)
    assert mc._engine(_BACKENDS[0]).ais_tile_rows(150) == 50
    for lw in logws[1:]:
        np.testing.assert_array_equal(lw, logws[0])
    tol = 1e-11 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(logws[0], expected, rtol=tol, atol=tol)


# ---- pseudo-likelihood -------------------------------------------------------------------

def test_pseudo_likelihood_exact(backend, dtype):
    W, a, b = _model(7, 5, dtype, seed=23, scale=2.0)
    v = _states(11, 7, dtype, 24)
    pl = mc.pseudo_likelihood(v, W, a, b, exact=True, backend=backend)
    assert pl.dtype == dtype and pl.shape == (11,)
    tol = 1e-11 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(pl, ref.pseudo_likelihood_exact_ref(v, W, a, b), rtol=tol)
    # brute force conditionals from the Boltzmann distribution
    pv = mc.boltzmann_distribution(W, a, b).reshape(2 ** 5, 2 ** 7).sum(axis=0)
    idx = _state_index(v, np.zeros((11, 0)))
    brute = np.zeros(11)
    for i in range(7):
        brute += np.log(pv[idx] / (pv[idx] + pv[idx ^ (1 << i)]))
    np.testing.assert_allclose(pl, brute, rtol=max(tol, 1e-10))


def test_pseudo_likelihood_stochastic(backend, dtype):
    W, a, b = _model(8, 6, dtype, seed=25)
    v = _states(40, 8, dtype, 26)
    st = Streams(99)
    key, ctr = st.key.copy(), counter(0, 0)
    pl = mc.pseudo_likelihood(v, W, a, b, random_state=st, backend=backend)
    idx = np.array([ref.pl_flip_index(key, ctr, s, 8) for s in range(40)])
    assert len(set(idx)) > 4
    tol = 1e-11 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(pl, ref.pseudo_likelihood_ref(v, W, a, b, idx), rtol=tol)
    # unbiased for the exact sum: the mean over all m flips is the exact value / 1
    ex = mc.pseudo_likelihood(v, W, a, b, exact=True, backend=backend)
    all_flips = np.mean([ref.pseudo_likelihood_ref(v, W, a, b, np.full(40, i)) for i in range(8)],
                        axis=0)
    np.testing.assert_allclose(all_flips, ex, rtol=tol)


def test_pseudo_likelihood_parity_and_threads(dtype, restore_threads):
    if not _BACKENDS:
        pytest.skip("no backend")
    W, a, b = _model(30, 20, dtype, seed=27)
    v = _states(150, 30, dtype, 28)          # three tiles of rows (64, 64, 22)
    for exact in (False, True):
        out = []
        for be in _BACKENDS:
            for threads in (1, restore_threads):
                dlkernels.set_num_threads(threads)
                out.append(mc.pseudo_likelihood(v, W, a, b, exact=exact, random_state=4,
                                                backend=be))
        for o in out[1:]:
            np.testing.assert_array_equal(o, out[0])
        tol = 1e-11 if dtype == np.float64 else 1e-5
        if exact:
            expected = ref.pseudo_likelihood_exact_ref(v, W, a, b)
        else:
            key, ctr = Streams(4).key, counter(0, 0)
            idx = np.array([ref.pl_flip_index(key, ctr, s, 30) for s in range(150)])
            expected = ref.pseudo_likelihood_ref(v, W, a, b, idx)
        np.testing.assert_allclose(out[0], expected, rtol=tol)


# ---- errors ---------------------------------------------------------------------------------

def test_errors_single_site():
    W, a, b = _model(3, 2)
    v0, h0 = np.zeros((2, 3)), np.zeros((2, 2))
    f = mc.single_site_gibbs
    with pytest.raises(ValueError, match="n_steps"):
        f(v0, h0, W, a, b, -1)
    with pytest.raises(TypeError, match="n_steps"):
        f(v0, h0, W, a, b, 2.5)
    with pytest.raises(ValueError, match="v0"):
        f(np.zeros((2, 4)), h0, W, a, b, 1)
    with pytest.raises(ValueError, match="h0"):
        f(v0, np.zeros((3, 2)), W, a, b, 1)
    with pytest.raises(ValueError, match="v0"):
        f(v0 + 0.5, h0, W, a, b, 1)
    with pytest.raises(ValueError, match="h0"):
        f(v0, h0 * np.nan, W, a, b, 1)
    with pytest.raises(TypeError, match="a"):
        f(v0, h0, W, a.astype(np.float32), b, 1)
    with pytest.raises(TypeError, match="v0"):
        f(v0.astype(np.float32), h0, W, a, b, 1)
    with pytest.raises(ValueError, match="W"):
        f(v0, h0, W * np.inf, a, b, 1)
    with pytest.raises(ValueError, match="b"):
        f(v0, h0, W, a, np.zeros(3), 1)
    with pytest.raises(ValueError, match="scan"):
        f(v0, h0, W, a, b, 1, scan="sweep")
    with pytest.raises(ValueError, match="q"):
        f(v0, h0, W, a, b, 1, q=[0.2] * 5, scan="systematic")
    with pytest.raises(ValueError, match="q"):
        f(v0, h0, W, a, b, 1, q=[0.2] * 4)
    with pytest.raises(ValueError, match="q"):
        f(v0, h0, W, a, b, 1, q=[0.5, 0.5, 0.5, -0.5, 0.0])
    with pytest.raises(ValueError, match="q"):
        f(v0, h0, W, a, b, 1, q=[0.1] * 5)
    with pytest.raises(ValueError, match="q"):
        f(v0, h0, W, a, b, 1, q=[np.nan] * 5)
    with pytest.raises(ValueError, match="backend"):
        f(v0, h0, W, a, b, 1, backend="fortran")
    with pytest.raises(TypeError, match="random_state"):
        f(v0, h0, W, a, b, 1, random_state="seed")


def test_errors_exact_and_ais():
    W, a, b = _model(3, 2)
    with pytest.raises(ValueError, match="at most 30"):
        mc.exact_log_partition(np.zeros((31, 40)), np.zeros(31), np.zeros(40))
    with pytest.raises(ValueError, match="at most 16"):
        mc.transition_matrix(np.zeros((9, 8)), np.zeros(9), np.zeros(8))
    with pytest.raises(ValueError, match="sparse=False"):
        mc.transition_matrix(np.zeros((7, 6)), np.zeros(7), np.zeros(6), sparse=False)
    with pytest.raises(ValueError, match="q"):
        mc.transition_matrix(W, a, b, [1.0, 0, 0, 0, 0.5])
    with pytest.raises(TypeError, match="sparse"):
        mc.transition_matrix(W, a, b, sparse="yes")
    with pytest.raises(ValueError, match="at most 20"):
        mc.boltzmann_distribution(np.zeros((11, 10)), np.zeros(11), np.zeros(10))
    with pytest.raises(ValueError, match="index"):
        mc.state_bits(32, 3, 2)
    ais = mc.ais_log_partition
    with pytest.raises(ValueError, match="n_runs"):
        ais(W, a, b, n_runs=1)
    with pytest.raises(ValueError, match="n_betas"):
        ais(W, a, b, n_betas=1)
    with pytest.raises(ValueError, match="betas"):
        ais(W, a, b, betas=[0.0, 0.5, 0.9])
    with pytest.raises(ValueError, match="betas"):
        ais(W, a, b, betas=[0.0, 0.6, 0.5, 1.0])
    with pytest.raises(ValueError, match="betas"):
        ais(W, a, b, betas=[1.0])
    with pytest.raises(ValueError, match="data"):
        ais(W, a, b, base_visible_bias="data")
    with pytest.raises(ValueError, match="data"):
        ais(W, a, b, data=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="base_visible_bias"):
        ais(W, a, b, base_visible_bias="mean")
    with pytest.raises(ValueError, match="data"):
        ais(W, a, b, base_visible_bias="data", data=np.full((4, 3), 2.0))
    with pytest.raises(ValueError, match="data"):
        ais(W, a, b, base_visible_bias="data", data=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="base_visible_bias"):
        ais(W, a, b, base_visible_bias=np.zeros(4))
    with pytest.raises(ValueError, match="log_z"):
        mc.log_likelihood(np.zeros((1, 3)), W, a, b, np.nan)
    with pytest.raises(TypeError, match="log_z"):
        mc.log_likelihood(np.zeros((1, 3)), W, a, b, "1.0")
    with pytest.raises(ValueError, match="v"):
        mc.log_likelihood(np.full((1, 3), 0.5), W, a, b, 1.0)


def test_errors_pseudo_likelihood():
    W, a, b = _model(3, 2)
    with pytest.raises(ValueError, match="v"):
        mc.pseudo_likelihood(np.full((2, 3), 0.5), W, a, b)
    with pytest.raises(ValueError, match="v"):
        mc.pseudo_likelihood(np.zeros((2, 4)), W, a, b)
    with pytest.raises(TypeError, match="exact"):
        mc.pseudo_likelihood(np.zeros((2, 3)), W, a, b, exact=1)
    with pytest.raises(TypeError, match="v"):
        mc.pseudo_likelihood(np.zeros((2, 3), np.float32), W, a, b)
    assert mc.pseudo_likelihood(np.zeros((0, 3)), W, a, b).shape == (0,)


def test_public_namespace():
    import dlkernels.rbm as rbm
    for name in mc.__all__:
        assert getattr(rbm, name) is getattr(mc, name)


def test_expneg_accuracy(backend):
    """The vectorizable exp of the AIS loops: <= 2 ulp from the correctly
    rounded exp on [-40, 0] (reference in long double), clamped below -40."""
    eng = mc._engine(backend)
    rs = np.random.default_rng(0)
    x = np.concatenate([-40 * rs.random(200000), -rs.random(1000) * 1e-3,
                        [0.0, -0.0, -1e-300, -40.0, -np.log(2), -39.999999]])
    out = np.empty_like(x)
    eng.expneg_array(x, out)
    exact = np.exp(x.astype(np.longdouble)).astype(np.float64)
    ulp = np.abs(out - exact) / np.spacing(exact)
    assert ulp.max() <= 2.0
    low = np.array([-40.0, -41.0, -700.0, -1e6, -np.inf])
    out = np.empty_like(low)
    eng.expneg_array(low, out)
    np.testing.assert_allclose(out, np.exp(-40.0), rtol=4e-16)


def test_ais_numpy_peer_agrees():
    """The benchmark's NumPy peer (tests/naive_rbm.ais_numpy) estimates the same log Z."""
    W, a, b = _model(10, 6, np.float64, seed=31, scale=0.5)
    betas = mc.ais_betas(500)
    logw = ref.ais_numpy(W, a, b, np.zeros(10), betas, 200, np.random.default_rng(0))
    res = mc._ais_result(logw, 16 * math.log(2.0))
    assert abs(res.log_z - mc.exact_log_partition(W, a, b)) < max(3 * res.stderr, 0.02)


def test_alias_table_realises_q():
    """The site distribution the kernels realise from the alias table equals q
    (up to 2**-52), including zero and dominant entries."""
    for q in (Q7 / Q7.sum(), np.full(5, 0.2), np.array([1.0, 0, 0, 0]),
              np.random.default_rng(3).dirichlet(np.full(37, 0.3))):
        thr, alias = mc._alias_table(q)
        M = q.size
        keep = thr.astype(np.float64) / 2.0 ** 64
        real = keep / M
        np.add.at(real, alias, (1.0 - keep) / M)
        np.testing.assert_allclose(real, q, rtol=0, atol=M * 2.0 ** -52)


def test_pseudo_likelihood_reference_is_sklearns():
    """naive_rbm.pseudo_likelihood_ref (the formula our kernel is checked
    against) equals scikit-learn's BernoulliRBM.score_samples given the same
    flipped bits (scikit-learn draws them with RandomState(seed).randint)."""
    neural = pytest.importorskip("sklearn.neural_network")
    W, a, b = _model(9, 4, seed=41)
    v = _states(25, 9, np.float64, 42)
    rbm = neural.BernoulliRBM(n_components=4, random_state=7).fit(v)
    rbm.components_ = W.T.copy()
    rbm.intercept_visible_ = a.copy()
    rbm.intercept_hidden_ = b.copy()
    idx = np.random.RandomState(7).randint(0, 9, 25)
    np.testing.assert_allclose(ref.pseudo_likelihood_ref(v, W, a, b, idx), rbm.score_samples(v),
                               rtol=1e-12)
    ours = mc.pseudo_likelihood(v, W, a, b, random_state=0)
    assert ours.shape == (25,) and (ours <= 0).all()


def test_ais_user_schedule_and_base_array(backend):
    W, a, b = _model(12, 7, np.float64, seed=43, scale=0.6)
    exact = mc.exact_log_partition(W, a, b)
    betas = np.linspace(0.0, 1.0, 3001) ** 2
    res = mc.ais_log_partition(W, a, b, n_runs=64, betas=betas,
                               base_visible_bias=np.full(12, -0.5), random_state=8,
                               backend=backend)
    assert abs(res.log_z - exact) < max(3 * res.stderr, 0.02) and abs(res.log_z - exact) < 0.1
    st = Streams(1)
    r1 = mc.ais_log_partition(W, a, b, n_runs=4, n_betas=20, random_state=st, backend=backend)
    r2 = mc.ais_log_partition(W, a, b, n_runs=4, n_betas=20, random_state=st, backend=backend)
    assert st.epoch == 2 and r1 != r2


def test_single_site_field_refresh(backend, dtype):
    """The engine's periodic recompute of the local fields (every `refresh`
    steps) matches the reference, and refreshing changes no chain when the
    fields are exact (small integer weights: float sums are exact)."""
    m, n, C, steps = 6, 5, 4, 400
    rs = np.random.default_rng(50)
    W = rs.integers(-2, 3, size=(m, n)).astype(dtype)
    a = rs.integers(-1, 2, size=m).astype(dtype)
    b = rs.integers(-1, 2, size=n).astype(dtype)
    v0, h0 = _states(C, m, dtype, 51), _states(C, n, dtype, 52)
    key, ctr = Streams(5).key, counter(0, 9)
    eng = mc._engine(backend)
    e, al = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    out = []
    for refresh in (0, 7):
        v, h = v0.copy(), h0.copy()
        eng.single_site_gibbs(v, h, W, np.ascontiguousarray(W.T), a, b, steps, 0, e, al, refresh,
                              key, ctr, _NO_STOP)
        rv, rh = ref.single_site_gibbs_ref(v0, h0, W, a, b, steps, key, ctr, refresh=refresh)
        np.testing.assert_array_equal(v, rv)
        np.testing.assert_array_equal(h, rh)
        out.append((v, h))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    W2, a2, b2 = _model(m, n, dtype, seed=53)
    v, h = v0.copy(), h0.copy()
    eng.single_site_gibbs(v, h, W2, np.ascontiguousarray(W2.T), a2, b2, steps, 0, e, al, 13,
                          key, ctr, _NO_STOP)
    rv, rh = ref.single_site_gibbs_ref(v0, h0, W2, a2, b2, steps, key, ctr, refresh=13)
    np.testing.assert_array_equal(v, rv)
