"""Tests of dlkernels.rbm's core: energies, conditionals, fused samplers, block
Gibbs chains, CD-k / PCD gradients and the fused in-place update.

References are the slow NumPy functions of ``naive_rbm.py``, which replay the
kernels' documented stream layout with ``numpy.random.Philox``.  Statistical
tests use fixed seeds and state their tolerances and false-alarm rates (the
probability that a correct sampler would fail with a random seed).
"""
import numpy as np
import pytest
from scipy import stats

import dlkernels
from dlkernels import rbm
from dlkernels.bindings import rbm as brbm
from dlkernels.rng import Streams

import naive_rbm as ref

from conftest import require_backend

FAMILY = "rbm"


def _available(name):
    return name in dlkernels.available_backends(FAMILY)


_model = ref.random_model
_states = ref.random_states


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _key_ctr(seed):
    st = Streams(seed)
    return st.key.copy(), st.next_counter()


# ---- deterministic functions vs NumPy --------------------------------------------------------

def test_energy_free_energy_probs_reference(backend, dtype):
    m, n, B = 13, 9, 17
    W, a, b = _model(m, n, dtype)
    v, h = _states(B, m, dtype, 1), _states(B, n, dtype, 2)
    e = rbm.energy(v, h, W, a, b, backend=backend)
    assert e.dtype == dtype and e.shape == (B,)
    np.testing.assert_allclose(e, ref.energy(v, h, W, a, b), **_tol(dtype))
    f = rbm.free_energy(v, W, a, b, backend=backend)
    assert f.dtype == dtype
    np.testing.assert_allclose(f, ref.free_energy(v, W, a, b), **_tol(dtype))
    # F(v) = -log sum_h exp(-E(v, h))
    H = ref.all_states(n)
    E = np.stack([ref.energy(np.repeat(v[s:s + 1], len(H), 0), H, W, a, b) for s in range(B)])
    np.testing.assert_allclose(f, -np.logaddexp.reduce(-E, axis=1), **_tol(dtype))
    p = rbm.hidden_probs(v, W, b, backend=backend)
    np.testing.assert_allclose(p, ref.hidden_probs(v, W, b), **_tol(dtype))
    q = rbm.visible_probs(h, W, a, backend=backend)
    np.testing.assert_allclose(q, ref.visible_probs(h, W, a), **_tol(dtype))
    out = np.empty((B, n), dtype)
    assert rbm.hidden_probs(v, W, b, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, p)


def test_sigmoid_accuracy(backend, dtype):
    """The float32 sigmoid uses a vectorizable polynomial exp: within 4 ulp of
    the correctly rounded value for x in [-87, 100] (measured: 2.4 ulp); for
    x < -88 it returns 0 (the exact value is below 6.1e-39, subnormal).  The
    float64 sigmoid uses libm exp (within 2 ulp)."""
    xs = np.concatenate([np.linspace(-87, 100, 400_001), np.linspace(-1, 1, 20_001)]).astype(dtype)
    p = rbm.hidden_probs(np.ones((1, 1), dtype), xs[None], np.zeros(xs.size, dtype),
                         backend=backend)[0]
    x64 = xs.astype(np.float64)
    exact = np.where(x64 >= 0, 1 / (1 + np.exp(-np.abs(x64))),
                     np.exp(-np.abs(x64)) / (1 + np.exp(-np.abs(x64))))
    if dtype == np.float32:
        ulp = np.abs(p - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
        assert ulp.max() <= 4.0
    else:
        assert (np.abs(p - exact) / exact).max() <= 4 * 2.0 ** -52
    tiny = rbm.hidden_probs(np.ones((1, 1), dtype), np.array([[-88.5, -1e4, 1e4]], dtype),
                            np.zeros(3, dtype), backend=backend)[0]
    assert tiny[2] == 1.0 and tiny[1] == 0.0 and 0 <= tiny[0] < 1e-38


def test_free_energy_and_sigmoid_extreme_inputs(backend, dtype):
    # huge activations: softplus/sigmoid stay finite and exact-ish, never NaN
    W = np.array([[1e4, -1e4, 0.0]], dtype)
    a = np.zeros(1, dtype)
    b = np.array([0.0, 0.0, -1e4], dtype)
    v = np.ones((1, 1), dtype)
    f = rbm.free_energy(v, W, a, b, backend=backend)
    np.testing.assert_allclose(f, [-1e4], rtol=1e-6)
    p = rbm.hidden_probs(v, W, b, backend=backend)
    np.testing.assert_array_equal(p, np.array([[1.0, 0.0, 0.0]], dtype))
    h, p = rbm.sample_hidden(v, W, b, random_state=0, return_probs=True, backend=backend)
    np.testing.assert_array_equal(h, [[1.0, 0.0, 0.0]])


# ---- samplers vs NumPy (exact samples) -------------------------------------------------------

def test_sample_hidden_visible_reference(backend, dtype):
    m, n, B = 19, 11, 9  # odd sizes: partial Philox blocks
    W, a, b = _model(m, n, dtype, seed=3)
    v, h = _states(B, m, dtype, 4), _states(B, n, dtype, 5)
    key, ctr = _key_ctr(7)
    hs, p = rbm.sample_hidden(v, W, b, random_state=Streams(7), return_probs=True, backend=backend)
    hr, pr = ref.sample_hidden(v, W, b, key, ctr)
    assert hs.dtype == dtype and set(np.unique(hs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(hs, hr)
    np.testing.assert_allclose(p, pr, **_tol(dtype))
    vs = rbm.sample_visible(h, W, a, random_state=Streams(7), backend=backend)
    vr, _ = ref.sample_visible(h, W, a, key, ctr)
    np.testing.assert_array_equal(vs, vr)
    # a Streams object advances: the next call draws fresh numbers
    st = Streams(7)
    h1 = rbm.sample_hidden(v, W, b, random_state=st, backend=backend)
    h2 = rbm.sample_hidden(v, W, b, random_state=st, backend=backend)
    assert st.epoch == 2 and not np.array_equal(h1, h2)


def test_gibbs_chains_reference(backend, dtype):
    m, n, C = 10, 7, 6
    W, a, b = _model(m, n, dtype, seed=5)
    v0 = _states(C, m, dtype, 6)
    key, ctr = _key_ctr(11)
    v0_copy = v0.copy()
    vk, hk, mv, mh = rbm.gibbs_chains(v0, W, a, b, 6, random_state=Streams(11), mean_last=3,
                                      backend=backend)
    np.testing.assert_array_equal(v0, v0_copy)  # input untouched
    rv, rh, rmv, rmh = ref.gibbs_chains(v0, W, a, b, 6, key, ctr, mean_last=3)
    np.testing.assert_array_equal(vk, rv)
    np.testing.assert_array_equal(hk, rh)
    np.testing.assert_array_equal(mv, rmv)
    np.testing.assert_array_equal(mh, rmh)
    v_only = rbm.gibbs_chains(v0, W, a, b, 6, random_state=Streams(11), backend=backend)
    np.testing.assert_array_equal(v_only, rv)
    pair = rbm.gibbs_chains(v0, W, a, b, 6, random_state=Streams(11), return_hidden=True,
                            backend=backend)
    assert len(pair) == 2
    np.testing.assert_array_equal(pair[1], rh)


def test_multi_tile_reference(backend, dtype):
    """Sizes that span several 256 x 128 output tiles (and a ragged last tile):
    the tiled GEMM + fused pass must equal the whole-matrix reference.  float32
    probabilities may differ from NumPy's by a few ulp, so a sample may flip
    where a uniform falls in between (expected < 0.01 flips here); at most 2
    flips are allowed."""
    m, n, B = 140, 130, 270
    W, a, b = _model(m, n, dtype, seed=70, scale=0.2)
    v, h = _states(B, m, dtype, 71), _states(B, n, dtype, 72)
    key, ctr = _key_ctr(73)
    hs, p = rbm.sample_hidden(v, W, b, random_state=Streams(73), return_probs=True, backend=backend)
    hr, pr = ref.sample_hidden(v, W, b, key, ctr)
    np.testing.assert_allclose(p, pr, **_tol(dtype))
    assert (hs != hr).sum() <= 2
    vs, q = rbm.sample_visible(h, W, a, random_state=Streams(73), return_probs=True, backend=backend)
    vr, qr = ref.sample_visible(h, W, a, key, ctr)
    np.testing.assert_allclose(q, qr, **_tol(dtype))
    assert (vs != vr).sum() <= 2
    np.testing.assert_allclose(rbm.free_energy(v, W, a, b, backend=backend),
                               ref.free_energy(v, W, a, b), rtol=1e-5 if dtype == np.float32 else 1e-12)
    g = rbm.cd_gradient(v[:40], W, a, b, k=1, r=1, random_state=Streams(74), backend=backend)
    key, ctr = _key_ctr(74)
    dW, da, db, ch = ref.cd_gradient(v[:40], W, a, b, 1, 1, key, ctr)
    if (g.chains != ch).sum() == 0:
        np.testing.assert_allclose(g.dW, dW, **_tol(dtype))
        np.testing.assert_allclose(g.da, da, **_tol(dtype))
        np.testing.assert_allclose(g.db, db, **_tol(dtype))
    else:  # a flipped unit (see above) changes the model term by O(1 / batch)
        assert (g.chains != ch).sum() <= 2


# ---- binary-state layers (sums of rows of W over the on-units) ---------------------------------

def _bin_rowsum_ref(X, Wr):
    """NumPy replay of the kernels' fixed summation order for 0/1 rows: per row,
    list the on-units i_1 < i_2 < ...; acc = 0; for each full group of 8 listed
    rows acc += ((w1 + w2) + (w3 + w4)) + ((w5 + w6) + (w7 + w8)); then acc += w
    for each remaining row; all in Wr's dtype (NumPy adds elementwise exactly)."""
    out = np.zeros((X.shape[0], Wr.shape[1]), Wr.dtype)
    for s in range(X.shape[0]):
        on = np.flatnonzero(X[s])
        acc = np.zeros(Wr.shape[1], Wr.dtype)
        q = 0
        while q + 8 <= on.size:
            w = Wr[on[q:q + 8]]
            acc += ((w[0] + w[1]) + (w[2] + w[3])) + ((w[4] + w[5]) + (w[6] + w[7]))
            q += 8
        for i in on[q:]:
            acc += Wr[i]
        out[s] = acc
    return out


def _engine_kernels(backend):
    return brbm._kernels(backend)


@pytest.mark.parametrize("R,K,N", [(5, 7, 3), (37, 17, 9), (33, 64, 130), (300, 70, 60),
                                   (10, 400, 300)])
def test_binary_layer_reference(backend, dtype, R, K, N):
    """binary_layer: row s of X Wr as a sum over the on-units in a fixed order
    (bit-identical to the NumPy replay), within rounding of the float64 product
    (|error| <= K * eps * sum |terms|), op 1 = sigmoid of it + bias, op 2 = the
    Bernoulli draws of the documented streams.  Rows include all-zero and
    all-one states and on-counts around the group size 8 (7, 8, 9, 16, 17);
    K, N not multiples of 8; (300, 70, 60) runs the parallel path (several
    chunks of 16 rows), (10, 400, 300) splits one chunk into two column parts
    (columns 0..255 and 256..299: the second part's draws start at block 32)."""
    eng = _engine_kernels(backend)
    rs = np.random.default_rng(R * K + N)
    Wr = rs.normal(size=(K, N)).astype(dtype)
    bias = rs.normal(size=N).astype(dtype)
    X = (rs.random((R, K)) < 0.4).astype(dtype)
    X[0] = 0
    X[1] = 1
    for r_, c in zip(range(2, min(R, 7)), (7, 8, 9, 16, 17)):
        X[r_] = 0
        X[r_, rs.permutation(K)[:min(c, K)]] = 1
    key, ctr = _key_ctr(R + K)
    none = np.empty((0, 0), dtype)
    acc = np.empty((R, N), dtype)
    eng.binary_layer(X, Wr, bias, key, ctr, 0, acc, none, 0)
    np.testing.assert_array_equal(acc, _bin_rowsum_ref(X, Wr))
    np.testing.assert_array_equal(acc[0], 0)
    exact = X.astype(np.float64) @ Wr.astype(np.float64)
    bound = K * np.finfo(dtype).eps * (X.astype(np.float64) @ np.abs(Wr.astype(np.float64)))
    assert np.all(np.abs(acc - exact) <= bound)
    p = np.empty((R, N), dtype)
    eng.binary_layer(X, Wr, bias, key, ctr, 0, p, none, 1)
    q = np.empty((R, N), dtype)
    eng.hidden_probs(np.ascontiguousarray(acc), np.eye(N, dtype=dtype), bias, q)
    np.testing.assert_array_equal(p, q)  # the same fused sigmoid as the dense path
    np.testing.assert_allclose(p, ref.sigmoid(exact + bias), **_tol(dtype))
    hs = np.empty((R, N), dtype)
    ps = np.empty((R, N), dtype)
    eng.binary_layer(X, Wr, bias, key, ctr, 3, hs, ps, 2)
    np.testing.assert_array_equal(ps, p)
    np.testing.assert_array_equal(hs, ref.bernoulli_rows(p, key, ctr, 3))
    hs2 = np.empty((R, N), dtype)
    eng.binary_layer(X, Wr, bias, key, ctr, 3, hs2, none, 2)
    np.testing.assert_array_equal(hs2, hs)


@pytest.mark.parametrize("R,K,N", [(300, 70, 60), (10, 400, 300)])
def test_binary_layer_backends_and_threads(dtype, restore_threads, R, K, N):
    """Same bits from both backends and for 1 or 2 threads (parallel paths:
    row chunks; one chunk split into column parts)."""
    rs = np.random.default_rng(5)
    Wr = rs.normal(size=(K, N)).astype(dtype)
    bias = rs.normal(size=N).astype(dtype)
    X = (rs.random((R, K)) < 0.5).astype(dtype)
    key, ctr = _key_ctr(9)
    outs = []
    for name in ("numba", "cython"):
        if not _available(name):
            continue
        for nt in (1, 2):
            dlkernels.set_num_threads(nt)
            h = np.empty((R, N), dtype)
            p = np.empty((R, N), dtype)
            _engine_kernels(name).binary_layer(X, Wr, bias, key, ctr, 1, h, p, 2)
            outs.append((h, p))
    for h, p in outs[1:]:
        np.testing.assert_array_equal(h, outs[0][0])
        np.testing.assert_array_equal(p, outs[0][1])


def test_transposed_weights_kept_by_the_caller(backend, dtype):
    """W_T (W's transpose kept between calls) gives the bits of a call that
    makes it itself: gibbs_chains on both paths (sparse and dense states, 80
    chains) and parallel_tempering; an F-ordered W.T view is accepted (copied)."""
    m, n, C = 23, 17, 80
    W, a, b = _model(m, n, dtype, seed=120, scale=0.3)
    WT = np.ascontiguousarray(W.T)
    for p_on in (0.1, 0.9):
        v0 = (np.random.default_rng(121).random((C, m)) < p_on).astype(dtype)
        ref_v, ref_h = rbm.gibbs_chains(v0, W, a, b, 3, random_state=4, return_hidden=True,
                                        backend=backend)
        for wt in (WT, W.T):
            v, h = rbm.gibbs_chains(v0, W, a, b, 3, random_state=4, return_hidden=True, W_T=wt,
                                    backend=backend)
            np.testing.assert_array_equal(v, ref_v)
            np.testing.assert_array_equal(h, ref_h)
    v0 = _states(9, m, dtype, 122)
    p0 = rbm.parallel_tempering(v0, W, a, b, 4, betas=[0.3, 0.6, 1.0], random_state=5,
                                return_all=True, backend=backend)
    p1 = rbm.parallel_tempering(v0, W, a, b, 4, betas=[0.3, 0.6, 1.0], random_state=5,
                                return_all=True, W_T=WT, backend=backend)
    for x, y in zip(p0.replicas + (p0.v, p0.h, p0.acceptance),
                    p1.replicas + (p1.v, p1.h, p1.acceptance)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("fn", ["gibbs_chains", "parallel_tempering"])
def test_transposed_weights_errors(fn):
    """A W_T that is not W's transpose is refused, naming W_T: wrong shape or
    dtype, non-finite, a copy made before W changed (one entry or all), W
    itself for a square W."""
    m, n = 12, 12
    W, a, b = _model(m, n, np.float32, seed=123, scale=0.3)
    v0 = _states(4, m, np.float32, 124)
    extra = {"betas": [0.5, 1.0]} if fn == "parallel_tempering" else {}

    def call(W_T, W=W):
        return getattr(rbm, fn)(v0, W, a, b, 2, W_T=W_T, **extra)

    WT = np.ascontiguousarray(W.T)
    nan = WT.copy()
    nan[3, 5] = np.nan
    stale = W + np.float32(0.01)
    corner = W.copy()
    corner[m - 1, n - 1] += 1
    cases = [(WT[:, :-1], ValueError, "shape"), (WT.astype(np.float64), TypeError, "dtype"),
             (nan, ValueError, "finite"), (W, ValueError, "transpose"),
             ("W_T", TypeError, ""), (WT[None], ValueError, "")]
    for bad, err, word in cases:
        with pytest.raises(err, match=f"^W_T: .*{word}"):
            call(bad)
    for changed in (stale, corner):
        with pytest.raises(ValueError, match="^W_T: expected the transpose of W"):
            call(WT, W=changed)
    call(WT)   # and the right one is accepted


def test_gibbs_chains_binary_path_extremes(backend, dtype):
    """Block Gibbs runs on the binary path: huge positive biases drive every unit
    on (all-one states), huge negative ones every unit off (all-zero states)."""
    m, n, C = 19, 13, 20
    W, a, b = _model(m, n, dtype, seed=90, scale=0.1)
    v0 = _states(C, m, dtype, 91)
    for sign in (1, -1):
        a2 = np.full(m, 60.0 * sign, dtype)
        b2 = np.full(n, 60.0 * sign, dtype)
        vk, hk = rbm.gibbs_chains(v0, W, a2, b2, 3, random_state=1, return_hidden=True,
                                  backend=backend)
        np.testing.assert_array_equal(vk, 1.0 if sign > 0 else 0.0)
        np.testing.assert_array_equal(hk, 1.0 if sign > 0 else 0.0)


@pytest.mark.parametrize("bias", [-1.5, 1.5])
def test_gibbs_chains_path_rule(dtype, bias):
    """80 chains (>= 64): sparse states (bias -1.5, ~20% on) take the binary
    path, dense ones (bias +1.5, ~80% on: the first 64 rows > 40% on) the tiled
    GEMM; either way the samples follow the reference's draws (float32
    probabilities differ by rounding, so at most 2 flips are allowed; expected
    < 0.01) and both backends give the same bits."""
    m, n, C = 23, 17, 80
    W, _, _ = _model(m, n, dtype, seed=95, scale=0.05)
    a = np.full(m, bias, dtype)
    b = np.full(n, bias, dtype)
    v0 = (np.random.default_rng(96).random((C, m)) < (0.8 if bias > 0 else 0.2)).astype(dtype)
    key, ctr = _key_ctr(97)
    rv, rh = ref.gibbs_chains(v0, W, a, b, 3, key, ctr)
    outs = []
    for name in ("numba", "cython"):
        if not _available(name):
            continue
        vk, hk = rbm.gibbs_chains(v0, W, a, b, 3, random_state=Streams(97), return_hidden=True,
                                  backend=name)
        assert (vk != rv).sum() + (hk != rh).sum() <= 2
        outs.append((vk, hk))
    for vk, hk in outs[1:]:
        np.testing.assert_array_equal(vk, outs[0][0])
        np.testing.assert_array_equal(hk, outs[0][1])


# ---- CD-k / PCD vs NumPy -------------------------------------------------------------------

@pytest.mark.parametrize("data", ["grey", "binary"])
@pytest.mark.parametrize("chains", ["cd", "pcd", "pcd_hidden"])
@pytest.mark.parametrize("k,r", [(1, 1), (2, 3)])
def test_cd_gradient_reference(backend, dtype, chains, k, r, data):
    """Grey data take the GEMM path for the data term, 0/1 data the binary
    path (the chains always do); both equal the float64 reference."""
    m, n, B = (9, 5, 4) if data == "grey" else (37, 21, 19)  # > 16 rows: several chunks
    W, a, b = _model(m, n, dtype, seed=8)
    v = _states(B, m, dtype, 9)
    if data == "grey":
        v[0, 0] = 0.25  # data may be probabilities in [0, 1]
    kw = {}
    if chains == "pcd":
        kw["persistent"] = _states(7, m, dtype, 10)  # 7 chains, batch 4
    elif chains == "pcd_hidden":
        kw["persistent_hidden"] = _states(3, n, dtype, 10)
    before = {name: x.copy() for name, x in kw.items()}
    key, ctr = _key_ctr(12)
    res = rbm.cd_gradient(v, W, a, b, k=k, r=r, random_state=Streams(12), backend=backend, **kw)
    dW, da, db, ch = ref.cd_gradient(v, W, a, b, k, r, key, ctr, **kw)
    for name, x in kw.items():
        np.testing.assert_array_equal(x, before[name])
    assert res.dW.dtype == dtype and res.dW.shape == (m, n)
    np.testing.assert_allclose(res.dW, dW, **_tol(dtype))
    np.testing.assert_allclose(res.da, da, **_tol(dtype))
    np.testing.assert_allclose(res.db, db, **_tol(dtype))
    np.testing.assert_array_equal(res.chains, ch)
    if chains == "pcd":
        assert res.chains.shape == (7, m)  # chain count independent of the batch
    if chains == "pcd_hidden":
        assert res.chains.shape == (3, n)


@pytest.mark.parametrize("chains", ["cd", "pcd", "pcd_hidden"])
def test_cd_update_equals_gradient_step(backend, dtype, chains):
    m, n, B = 8, 6, 5
    W, a, b = _model(m, n, dtype, seed=13)
    v = _states(B, m, dtype, 14)
    kw = {}
    if chains == "pcd":
        kw["persistent"] = _states(3, m, dtype, 15)
    elif chains == "pcd_hidden":
        kw["persistent_hidden"] = _states(4, n, dtype, 15)
    lr, wd = 0.05, 0.01
    g = rbm.cd_gradient(v, W, a, b, k=2, r=2, random_state=3, backend=backend,
                        **{k_: x.copy() for k_, x in kw.items()})
    W1, a1, b1 = W.copy(), a.copy(), b.copy()
    ch = {k_: x.copy() for k_, x in kw.items()}
    out = rbm.cd_update(v, W1, a1, b1, learning_rate=lr, k=2, r=2, weight_decay=wd,
                        random_state=3, backend=backend, **ch)
    for x in ch.values():
        assert out is x  # persistent chains updated in place and returned
    np.testing.assert_array_equal(out, g.chains)
    np.testing.assert_allclose(W1, W + lr * (g.dW - wd * W), **_tol(dtype))
    np.testing.assert_allclose(a1, a + lr * g.da, **_tol(dtype))
    np.testing.assert_allclose(b1, b + lr * g.db, **_tol(dtype))
    # momentum: v = mu v + lr (g - wd W); W += v
    W2, a2, b2 = W.copy(), a.copy(), b.copy()
    vel = (np.full_like(W, 0.1), np.full_like(a, -0.1), np.full_like(b, 0.2))
    vel0 = tuple(x.copy() for x in vel)
    rbm.cd_update(v, W2, a2, b2, learning_rate=lr, k=2, r=2, weight_decay=wd, momentum=0.5,
                  velocity=vel, random_state=3, backend=backend,
                  **{k_: x.copy() for k_, x in kw.items()})
    eW = 0.5 * vel0[0] + lr * (g.dW - wd * W)
    np.testing.assert_allclose(vel[0], eW, **_tol(dtype))
    np.testing.assert_allclose(W2, W + eW, **_tol(dtype))
    np.testing.assert_allclose(a2, a + 0.5 * vel0[1] + lr * g.da, **_tol(dtype))
    np.testing.assert_allclose(b2, b + 0.5 * vel0[2] + lr * g.db, **_tol(dtype))


class _ReplayRNG:
    """Stands in for scikit-learn's RandomState: its uniform() returns the
    uniforms our kernel draws (visible layer, then hidden layer, per chain)."""

    def __init__(self, blocks):
        self.blocks = list(blocks)

    def uniform(self, size):
        u = self.blocks.pop(0)
        assert u.shape == tuple(size)
        return u.astype(np.float64)


@pytest.mark.parametrize("batch", [6, 5])
def test_cd_update_persistent_hidden_is_sklearn_fit(backend, dtype, batch):
    """persistent_hidden + k=r=1 + negative_scale="batch" is scikit-learn's
    BernoulliRBM._fit step (fed the same uniforms)."""
    sk = pytest.importorskip("sklearn.neural_network")
    m, n, C = 11, 7, 6
    W, a, b = _model(m, n, dtype, seed=21, scale=0.3)
    rs = np.random.default_rng(22)
    v = rs.random((batch, m)).astype(dtype)  # non-binary data in [0, 1], as in digits / 16
    hch = _states(C, n, dtype, 23)
    key, ctr = _key_ctr(24)
    bv = ref.blocks_per_layer(m, dtype)
    uv = np.stack([ref.uniforms(key, ctr, s, 0, m, dtype) for s in range(C)])
    uh = np.stack([ref.uniforms(key, ctr, s, bv, n, dtype) for s in range(C)])
    est = sk.BernoulliRBM(n_components=n, learning_rate=0.1)
    est.components_ = W.T.copy()
    est.intercept_hidden_ = b.copy()
    est.intercept_visible_ = a.copy()
    est.h_samples_ = hch.copy()
    est._fit(v, _ReplayRNG([uv, uh]))
    W1, a1, b1, h1 = W.copy(), a.copy(), b.copy(), hch.copy()
    rbm.cd_update(v, W1, a1, b1, learning_rate=0.1, persistent_hidden=h1,
                  negative_scale="batch", random_state=Streams(24), backend=backend)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(W1, est.components_.T, **tol)
    np.testing.assert_allclose(a1, est.intercept_visible_, **tol)
    np.testing.assert_allclose(b1, est.intercept_hidden_, **tol)
    np.testing.assert_array_equal(h1, est.h_samples_)


# ---- reproducibility: backends, threads ----------------------------------------------------

def _run_everything(backend, dtype, m=37, n=21, B=11):
    W, a, b = _model(m, n, dtype, seed=30)
    v, h = _states(B, m, dtype, 31), _states(B, n, dtype, 32)
    out = [rbm.energy(v, h, W, a, b, backend=backend), rbm.free_energy(v, W, a, b, backend=backend),
           rbm.hidden_probs(v, W, b, backend=backend), rbm.visible_probs(h, W, a, backend=backend),
           *rbm.sample_hidden(v, W, b, random_state=3, return_probs=True, backend=backend),
           *rbm.sample_visible(h, W, a, random_state=3, return_probs=True, backend=backend),
           *rbm.gibbs_chains(v, W, a, b, 7, random_state=3, mean_last=4, backend=backend)]
    for kw in ({}, {"persistent": v[:5]}, {"persistent_hidden": h[:6]}):
        out += list(rbm.cd_gradient(v, W, a, b, k=3, r=2, random_state=4, backend=backend, **kw))
        W2, a2, b2 = W.copy(), a.copy(), b.copy()
        ch = {k_: x.copy() for k_, x in kw.items()}
        out.append(rbm.cd_update(v, W2, a2, b2, learning_rate=0.1, weight_decay=0.01,
                                 random_state=5, backend=backend, **ch))
        out += [W2, a2, b2]
    return out


def test_backends_bit_identical(dtype):
    if not (_available("numba") and _available("cython")):
        pytest.skip("needs both backends")
    x = _run_everything("numba", dtype) + _run_everything("numba", dtype, 140, 130, 270)
    y = _run_everything("cython", dtype) + _run_everything("cython", dtype, 140, 130, 270)
    assert len(x) == len(y)
    for i, (p, q) in enumerate(zip(x, y)):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q, err_msg=f"output {i}")


def test_thread_count_does_not_matter(backend, restore_threads):
    if dlkernels.get_num_threads() < 2 and restore_threads < 2:
        import numba
        if numba.config.NUMBA_NUM_THREADS < 2:
            pytest.skip("one thread only")
    dlkernels.set_num_threads(1)
    x = _run_everything(backend, np.dtype(np.float32), 140, 130, 270)
    dlkernels.set_num_threads(2)
    y = _run_everything(backend, np.dtype(np.float32), 140, 130, 270)
    for p, q in zip(x, y):
        np.testing.assert_array_equal(p, q)


# ---- statistics: block Gibbs samples the Boltzmann distribution ----------------------------

def test_block_gibbs_exact_distribution(backend):
    """4 visible + 3 hidden units (128 joint states).  20000 independent chains
    from uniform random starts, 30 sweeps (the chain's mixing time here is a
    few sweeps: the second eigenvalue of the v->v kernel is < 0.5, checked
    below, so the bias after 30 sweeps is < 0.5**30).  The pair (v_k, h_k) --
    h_k drawn from v_{k-1}, v_k from h_k -- is distributed as p(v, h).

    Chi-square on the 128-state joint and the 16-state marginal of v: a
    correct sampler fails each with probability 1e-4 (the 1 - 1e-4 quantile
    of chi2(dof) is the threshold); total variation of the v marginal
    < 0.03 (its expectation for 20000 samples is about 0.01)."""
    m, n, N = 4, 3, 20000
    W, a, b = _model(m, n, np.float64, seed=40, scale=0.8)
    # second eigenvalue of the v -> v transition matrix (mixing check)
    V = ref.all_states(m)
    H = ref.all_states(n)
    ph_v = np.prod(np.where(H[None], ref.hidden_probs(V, W, b)[:, None], 1 - ref.hidden_probs(V, W, b)[:, None]), axis=2)
    pv_h = np.prod(np.where(V[None], ref.visible_probs(H, W, a)[:, None], 1 - ref.visible_probs(H, W, a)[:, None]), axis=2)
    K = ph_v @ pv_h
    assert sorted(np.abs(np.linalg.eigvals(K)))[-2] < 0.5
    # exact joint p(v, h) over index x = sum_i v_i 2^i + sum_j h_j 2^(m+j)
    X = ref.all_states(m + n)
    logp = -ref.energy(X[:, :m], X[:, m:], W, a, b)
    pj = np.exp(logp - np.logaddexp.reduce(logp))
    pv_exact = ref.exact_visible_marginal(W, a, b)
    np.testing.assert_allclose(pj.reshape(2 ** n, 2 ** m).sum(0), pv_exact, atol=1e-12)
    v0 = _states(N, m, np.float64, 41)
    vk, hk = rbm.gibbs_chains(v0, W, a, b, 30, random_state=42, return_hidden=True, backend=backend)
    iv = (vk @ (2 ** np.arange(m))).astype(int)
    ih = (hk @ (2 ** np.arange(n))).astype(int)
    joint = np.bincount(iv + (ih << m), minlength=2 ** (m + n))
    marg = np.bincount(iv, minlength=2 ** m)
    chi_j = ((joint - N * pj) ** 2 / (N * pj)).sum()
    chi_v = ((marg - N * pv_exact) ** 2 / (N * pv_exact)).sum()
    assert chi_j < stats.chi2.ppf(1 - 1e-4, 2 ** (m + n) - 1)
    assert chi_v < stats.chi2.ppf(1 - 1e-4, 2 ** m - 1)
    assert 0.5 * np.abs(marg / N - pv_exact).sum() < 0.03


def test_gibbs_mean_last_estimates_marginals(backend):
    """mean_last = r averages r sweeps of each chain: on 2000 chains x 25 steps
    the mean of v estimates E[v] (exact by enumeration) within 0.02 (about 6
    standard errors, the sweeps being positively correlated)."""
    m, n = 5, 3
    W, a, b = _model(m, n, np.float64, seed=43, scale=0.8)
    v0 = _states(2000, m, np.float64, 44)
    _, _, mv, mh = rbm.gibbs_chains(v0, W, a, b, 30, random_state=45, mean_last=25,
                                    backend=backend)
    ev = ref.exact_visible_marginal(W, a, b) @ ref.all_states(m)
    np.testing.assert_allclose(mv.mean(0), ev, atol=0.02)


def test_cd_gradient_matches_exact_loglik_gradient(backend):
    """Tiny model (5 visible, 3 hidden).  CD with k = 20 burn-in sweeps and
    r = 40 averaged steps on 500 chains (started at the data: 50 vectors, each
    10 times) estimates the model term from 20000 correlated samples; the
    data term is exact, so dW,
    da, db must equal the exact log-likelihood gradient (enumeration) up to
    Monte-Carlo error: max abs deviation < 0.03 (the standard error of each
    entry is below 0.005 here)."""
    m, n = 5, 3
    W, a, b = _model(m, n, np.float64, seed=50, scale=0.7)
    v = np.repeat(_states(50, m, np.float64, 51), 10, axis=0)
    res = rbm.cd_gradient(v, W, a, b, k=20, r=40, random_state=52, backend=backend)
    dW, da, db = ref.exact_loglik_gradient(v, W, a, b)
    assert np.abs(res.dW - dW).max() < 0.03
    assert np.abs(res.da - da).max() < 0.03
    assert np.abs(res.db - db).max() < 0.03
    # the tolerance is small next to the gradient (the test can fail)
    assert np.abs(dW).max() > 0.1
    # CD-1 (k = r = 1) estimates its own expectation (enumerated), not the
    # log-likelihood gradient: 10000 chains, standard error of each entry
    # < 0.005, tolerance 0.02 (> 4 standard errors)
    v1 = np.repeat(v, 20, axis=0)
    res1 = rbm.cd_gradient(v1, W, a, b, k=1, r=1, random_state=52, backend=backend)
    for got, want in zip((res1.dW, res1.da, res1.db), ref.exact_cd1_gradient(v1, W, a, b)):
        assert np.abs(got - want).max() < 0.02


def test_pcd_chain_count_independent_of_batch(backend):
    m, n = 6, 4
    W, a, b = _model(m, n, np.float32, seed=60)
    chains = _states(9, m, np.float32, 61)
    for B in (1, 3, 20):
        v = _states(B, m, np.float32, 62 + B)
        W1, a1, b1 = W.copy(), a.copy(), b.copy()
        out = rbm.cd_update(v, W1, a1, b1, learning_rate=0.1, persistent=chains, random_state=B,
                            backend=backend)
        assert out is chains and chains.shape == (9, m)
        assert set(np.unique(chains)) <= {0.0, 1.0}
        g = rbm.cd_gradient(v, W, a, b, persistent=chains, random_state=B, backend=backend)
        assert g.chains.shape == (9, m) and g.dW.shape == (m, n)


# ---- errors ------------------------------------------------------------------------------------

def _err_cases():
    W, a, b = _model(4, 3, np.float64)
    v = _states(2, 4, np.float64, 1)
    h = _states(2, 3, np.float64, 2)
    W32 = W.astype(np.float32)
    nanW = W.copy()
    nanW[0, 0] = np.nan
    nonbin = v.copy()
    nonbin[0, 0] = 0.5
    over = v.copy()
    over[0, 0] = 1.5
    nanv = v.copy()
    nanv[1, 1] = np.nan
    cases = [
        (lambda: rbm.energy(v, h, W, a[:3], b), ValueError, "a: expected shape"),
        (lambda: rbm.energy(v, h, W, a, b[:2]), ValueError, "b: expected shape"),
        (lambda: rbm.energy(v[:, :3], h, W, a, b), ValueError, "v: expected shape"),
        (lambda: rbm.energy(v, h[:1], W, a, b), ValueError, "h: expected 2 rows"),
        (lambda: rbm.energy(nonbin, h, W, a, b), ValueError, "v: expected binary"),
        (lambda: rbm.energy(v, h, W32, a, b), TypeError, "a: expected dtype float32"),
        (lambda: rbm.energy(v, h, W, a.astype(np.float32), b), TypeError, "a: expected dtype"),
        (lambda: rbm.energy(v.astype(np.float32), h, W, a, b), TypeError, "v: expected dtype"),
        (lambda: rbm.energy(v, h, W[0], a, b), ValueError, "W: expected a 2-d array"),
        (lambda: rbm.energy(v, h, np.zeros((4, 0)), a, np.zeros(0)), ValueError, "W: expected a non-empty"),
        (lambda: rbm.energy(v, h, "W", a, b), TypeError, "W: expected an array"),
        (lambda: rbm.free_energy(over, W, a, b), ValueError, "v: expected values in [0, 1]"),
        (lambda: rbm.free_energy(nanv, W, a, b), ValueError, "v: expected finite"),
        (lambda: rbm.free_energy(v, nanW, a, b), ValueError, "W: expected finite"),
        (lambda: rbm.free_energy(np.zeros((0, 4)), W, a, b), ValueError, "v: expected a non-empty"),
        (lambda: rbm.hidden_probs(v, W, b, out=np.empty((2, 4))), ValueError, "out: expected shape"),
        (lambda: rbm.hidden_probs(v, W, b, out=np.empty((2, 3), np.float32)), TypeError, "out: expected dtype"),
        (lambda: rbm.visible_probs(h, W, np.full(4, np.inf)), ValueError, "a: expected finite"),
        (lambda: rbm.sample_hidden(v, W, b, random_state=-1), ValueError, "random_state"),
        (lambda: rbm.sample_hidden(v, W, b, random_state="x"), TypeError, "random_state"),
        (lambda: rbm.sample_hidden(v, W, b, return_probs=1), TypeError, "return_probs"),
        (lambda: rbm.sample_visible(over[:, :3], W, a), ValueError, "h: expected values in [0, 1]"),
        (lambda: rbm.gibbs_chains(v, W, a, b, 0), ValueError, "k: expected an integer >= 1"),
        (lambda: rbm.gibbs_chains(v, W, a, b, 1.5), TypeError, "k: expected an integer"),
        (lambda: rbm.gibbs_chains(nonbin, W, a, b, 1), ValueError, "v0: expected binary"),
        (lambda: rbm.gibbs_chains(v, W, a, b, 3, mean_last=4), ValueError, "mean_last"),
        (lambda: rbm.gibbs_chains(v, W, a, b, 3, return_hidden="yes"), TypeError, "return_hidden"),
        (lambda: rbm.gibbs_chains(v, W, a, b, 3, backend="fortran"), ValueError, "backend"),
        (lambda: rbm.cd_gradient(v, W, a, b, k=0), ValueError, "k: expected an integer >= 1"),
        (lambda: rbm.cd_gradient(v, W, a, b, r=0), ValueError, "r: expected an integer >= 1"),
        (lambda: rbm.cd_gradient(over, W, a, b), ValueError, "v_data: expected values in [0, 1]"),
        (lambda: rbm.cd_gradient(nanv, W, a, b), ValueError, "v_data: expected finite"),
        (lambda: rbm.cd_gradient(np.zeros((0, 4)), W, a, b), ValueError, "v_data: expected a non-empty"),
        (lambda: rbm.cd_gradient(v, W, a, b, persistent=nonbin), ValueError, "persistent: expected binary"),
        (lambda: rbm.cd_gradient(v, W, a, b, persistent=v[:, :3]), ValueError, "persistent: expected shape"),
        (lambda: rbm.cd_gradient(v, W, a, b, persistent_hidden=v), ValueError, "persistent_hidden: expected shape"),
        (lambda: rbm.cd_gradient(v, W, a, b, persistent=v, persistent_hidden=h), ValueError, "persistent_hidden: expected None"),
    ]
    return cases


@pytest.mark.parametrize("case", range(len(_err_cases())))
def test_errors(case):
    fn, exc, msg = _err_cases()[case]
    with pytest.raises(exc, match=msg.replace("[", r"\[").replace("]", r"\]")):
        fn()


def test_cd_update_errors_change_nothing():
    W, a, b = _model(4, 3, np.float64)
    v = _states(2, 4, np.float64, 1)
    chains = _states(3, 4, np.float64, 2)
    snap = [x.copy() for x in (W, a, b, chains)]
    bad = [
        (dict(learning_rate=-1.0), ValueError, "learning_rate"),
        (dict(learning_rate="x"), TypeError, "learning_rate"),
        (dict(learning_rate=0.1, momentum=1.5), ValueError, "momentum"),
        (dict(learning_rate=0.1, momentum=0.5), ValueError, "velocity: expected a tuple"),
        (dict(learning_rate=0.1, velocity=(W,)), TypeError, "velocity"),
        (dict(learning_rate=0.1, velocity=(np.zeros((3, 4)), a.copy(), b.copy())), ValueError, r"velocity\[0\]"),
        (dict(learning_rate=0.1, weight_decay=-0.1), ValueError, "weight_decay"),
        (dict(learning_rate=0.1, negative_scale="rows"), ValueError, "negative_scale"),
        (dict(learning_rate=0.1, k=0), ValueError, "k: expected"),
        (dict(learning_rate=0.1, persistent=chains.astype(np.float32)), TypeError, "persistent: expected dtype"),
        (dict(learning_rate=0.1, persistent=chains.tolist()), TypeError, "persistent: expected a numpy array"),
        (dict(learning_rate=0.1, persistent=np.ones((3, 8))[:, ::2]), ValueError, "persistent: expected a C-contiguous"),
    ]
    for kw, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            rbm.cd_update(v, W, a, b, **kw)
        for x, y in zip((W, a, b, chains), snap):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(TypeError, match="W: expected a numpy array"):
        rbm.cd_update(v, W.tolist(), a, b, learning_rate=0.1)
    with pytest.raises(ValueError, match="W: expected a C-contiguous"):
        rbm.cd_update(v, np.asfortranarray(W), a, b, learning_rate=0.1)
    ro = W.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="W: expected a writeable"):
        rbm.cd_update(v, ro, a, b, learning_rate=0.1)
    nanW = W.copy()
    nanW[1, 1] = np.nan
    with pytest.raises(ValueError, match="W: expected finite"):
        rbm.cd_update(v, nanW, a, b, learning_rate=0.1)
    with pytest.raises(TypeError, match="b: expected dtype"):
        rbm.cd_update(v, W, a, b.astype(np.float32), learning_rate=0.1)


def test_public_module():
    assert dlkernels.rbm is rbm
    for name in ("energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
                 "sample_visible", "gibbs_chains", "cd_gradient", "cd_update", "CDResult"):
        assert name in rbm.__all__ and callable(getattr(rbm, name))
    with pytest.raises(AttributeError):
        rbm.no_such_function


def test_blas_single_threaded_restores():
    ctl = brbm._blas_controllers()
    if not ctl:
        pytest.skip("threadpoolctl finds no BLAS")
    before = [c.get_num_threads() for c in ctl]
    with rbm.blas_single_threaded():
        assert all(c.get_num_threads() == 1 for c in ctl)
        with rbm.blas_single_threaded():  # re-entrant
            assert all(c.get_num_threads() == 1 for c in ctl)
        assert all(c.get_num_threads() == 1 for c in ctl)
    assert [c.get_num_threads() for c in ctl] == before


def test_cython_c_api_sample_layer():
    """The exported C function (through __pyx_capi__ and ctypes) samples like
    sample_hidden: with v = I, v W = W exactly."""
    require_backend("cython", FAMILY)
    import ctypes

    from dlkernels.engine.cython import rbm as cy

    cap = cy.__pyx_capi__["sample_layer_f32"]
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype = ctypes.c_char_p
    name.argtypes = [ctypes.py_object]
    P = ctypes.POINTER
    proto = ctypes.CFUNCTYPE(None, P(ctypes.c_float), ctypes.c_ssize_t, ctypes.c_ssize_t,
                             P(ctypes.c_float), P(ctypes.c_uint64), P(ctypes.c_uint64),
                             ctypes.c_uint64, P(ctypes.c_float))
    fn = proto(get(cap, name(cap)))
    C, n = 5, 21
    act = np.random.default_rng(80).normal(size=(C, n)).astype(np.float32)
    bias = np.random.default_rng(81).normal(size=n).astype(np.float32)
    key, ctr = _key_ctr(82)
    out = act.copy()
    fn(out.ctypes.data_as(P(ctypes.c_float)), C, n, bias.ctypes.data_as(P(ctypes.c_float)),
       key.ctypes.data_as(P(ctypes.c_uint64)), ctr.ctypes.data_as(P(ctypes.c_uint64)), 0, None)
    want = rbm.sample_hidden(np.eye(C, dtype=np.float32), act, bias, random_state=Streams(82),
                             backend="cython")
    np.testing.assert_array_equal(out, want)


def test_borrowed_view_is_the_same_memory():
    # engine/numba/_blas.borrowed: the row helpers' ownerless views (no
    # reference counting) read and write the argument's own memory, with its
    # shape and strides, and slices of them too
    from numba import njit

    from dlkernels.engine.numba._blas import borrowed

    @njit
    def touch(a):
        b = borrowed(a)
        r = b[1, 1:]
        r[0] = 7.0
        return b.shape[0], b.shape[1], b.strides[0], b[2, 2], r.shape[0]

    a = np.arange(12.0).reshape(3, 4)
    n0, n1, st, v, nr = touch(a)
    assert (n0, n1, st, nr) == (3, 4, a.strides[0], 3)
    assert v == a[2, 2] and a[1, 1] == 7.0


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_carved_views_and_stack_scalars(dt):
    # engine/numba/_blas.carve: the (rows, cols) view at an element offset of a
    # flat buffer (cd_step's scratch) is that memory, C-ordered; scalar_as
    # rounds as a store into the array would; gemm_at, whose by-reference
    # arguments now live on the stack (byref), still computes the product
    from numba import njit

    from dlkernels.engine.numba._blas import carve, gemm_at, scalar_as

    @njit
    def views(flat, x):
        v = carve(flat, 5, 3, 4)
        v[2, 3] = -1.0
        e = carve(flat, 0, 0, 4)
        return v.shape[0], v.shape[1], v.strides[0], v.strides[1], v[1, 2], e.size, scalar_as(flat, x)

    flat = np.arange(20.0).astype(dt)
    x = 1.0 + 2.0 ** -30
    r0, r1, s0, s1, v12, esize, xr = views(flat, x)
    it = flat.itemsize
    assert (r0, r1, s0, s1, esize) == (3, 4, 4 * it, it, 0)
    assert v12 == flat[5 + 1 * 4 + 2] and flat[5 + 2 * 4 + 3] == -1.0
    assert xr == float(dt(x))   # float32: rounded to 1.0; float64: x itself
    assert (xr == 1.0) == (dt is np.float32)

    @njit
    def product(A, B, C, alpha, beta):
        gemm_at(np.bool_(False), np.bool_(True), A.shape[0], B.shape[0], A.shape[1], alpha, A, 0,
                A.shape[1], B, 0, B.shape[1], beta, C, 0, C.shape[1])

    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 7)).astype(dt)
    B = rng.standard_normal((6, 7)).astype(dt)
    C = rng.standard_normal((5, 6)).astype(dt)
    want = 0.5 * (A.astype(np.float64) @ B.T.astype(np.float64)) + 2.0 * C
    product(A, B, C, 0.5, 2.0)
    tol = 1e-5 if dt is np.float32 else 1e-12
    np.testing.assert_allclose(C, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_bin_acc_compiled_without_overlap_checks(dt):
    # engine/numba/_flags.NoAliasCompiler: _bin_acc's array arguments are
    # declared noalias (C's restrict, as in the Cython twin dlk_bin_acc), so
    # LLVM vectorizes its row sums without run-time overlap checks; the sums
    # keep their documented order (compared with a reference that adds in
    # that order in the same dtype)
    import numba
    from numba.core.compiler import Flags

    from dlkernels.engine.numba import _rbm_layers as L
    from dlkernels.engine.numba._flags import NoAliasCompiler

    assert L._bin_acc._compiler.pipeline_class is NoAliasCompiler
    rng = np.random.default_rng(5)
    Wr = rng.standard_normal((40, 37)).astype(dt)
    for cnt in (0, 3, 8, 15, 21):
        idx = np.sort(rng.choice(40, size=max(cnt, 1), replace=False)).astype(np.intp)
        acc = np.full(37, np.nan, dt)
        L._bin_acc(Wr, idx, cnt, acc, 2, 35)
        want = np.zeros(33, dt)
        q = 0
        while q + 8 <= cnt:
            w = [Wr[idx[q + k], 2:35] for k in range(8)]
            want += ((w[0] + w[1]) + (w[2] + w[3])) + ((w[4] + w[5]) + (w[6] + w[7]))
            q += 8
        for k in range(q, cnt):
            want = want + Wr[idx[k], 2:35]
        np.testing.assert_array_equal(acc[2:35].view(np.uint8), want.view(np.uint8))   # bits
        assert np.isnan(acc[:2]).all() and np.isnan(acc[35:]).all()
    # the IR of a fresh (uncached) compile through the kernel's own pipeline:
    # a kernel loaded from Numba's cache has no LLVM IR to inspect
    fresh = numba.njit(error_model="numpy", pipeline_class=L._bin_acc._compiler.pipeline_class)(
        L._bin_acc.py_func)
    fresh(Wr, idx, cnt, acc, 2, 35)
    llvm = next(iter(fresh.inspect_llvm().values()))
    define = next(line for line in llvm.splitlines()
                  if line.startswith("define") and "_bin_acc" in line)
    assert "noalias" in define.split("excinfo", 1)[1]   # the array arguments, not only Numba's own
    assert Flags().noalias is False   # the default pipeline is untouched
