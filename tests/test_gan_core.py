"""Tests of dlkernels.gan's networks and gradients: the MLP layout and
initialisation, fused layers and both GAN losses against the NumPy reference
(``naive_gan.py``) and finite differences, backend and thread parity,
extreme logits and every documented error."""
import numpy as np
import pytest

import dlkernels
from dlkernels import gan
from dlkernels.rng import counter, make_key, numpy_generator

import naive_gan as ref

FAMILY = "gan"

HIDDEN = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "maxout")


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def _pairs(net):
    return list(zip(net.weights, net.biases))


def _nets(act, dtype, seed=0, pieces=3):
    """A small G and D whose hidden layers use ``act`` (maxout: 3 pieces)."""
    G = gan.MLP([3, 6, 4], [act, "tanh"], maxout_pieces=pieces if act == "maxout" else None,
                dtype=dtype, random_state=seed)
    D = gan.MLP([4, 5, 4, 1], [act, "leaky_relu" if act != "leaky_relu" else "relu", "identity"],
                maxout_pieces=pieces if act == "maxout" else None, dtype=dtype,
                random_state=seed + 1)
    # non-zero biases so that every bias gradient is exercised
    rng = np.random.default_rng(seed)
    for net in (G, D):
        for b in net.biases:
            b[...] = 0.3 * rng.standard_normal(b.shape)
    return G, D


def _batch(dtype, m=7, seed=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, 4)).astype(dtype), rng.standard_normal((m, 3)).astype(dtype))


# ---- the network ---------------------------------------------------------------------------

def test_flat_layout_and_views(dtype):
    net = gan.MLP([3, 5, 2], ["maxout", "sigmoid"], maxout_pieces=4, dtype=dtype, random_state=1)
    assert net.n_params == 3 * 20 + 20 + 5 * 2 + 2 == net.params.size
    assert [w.shape for w in net.weights] == [(3, 20), (5, 2)]
    assert [b.shape for b in net.biases] == [(20,), (2,)]
    for a in net.weights + net.biases:
        assert a.base is net.params or np.shares_memory(a, net.params)
    np.testing.assert_array_equal(ref.flatten(_pairs(net)), net.params)
    net.params[:] = 0
    assert not net.weights[1].any()


def test_glorot_init_from_philox(dtype):
    net = gan.MLP([4, 7, 3], "relu", dtype=dtype, random_state=11)
    key = make_key(11)
    for i, (n_in, n_out) in enumerate([(4, 7), (7, 3)]):
        u = numpy_generator(key, counter(i, 0)).random(n_in * n_out)
        a = ref.glorot_bound(n_in, n_out)
        np.testing.assert_array_equal(net.weights[i], ((2 * u - 1) * a).reshape(n_in, n_out)
                                      .astype(dtype))
        assert not net.biases[i].any()
    uni = gan.MLP([4, 7, 3], "relu", init="uniform", init_range=[0.5, 0.005], random_state=11)
    assert np.abs(uni.weights[0]).max() <= 0.5 and np.abs(uni.weights[1]).max() <= 0.005
    assert np.abs(uni.weights[0]).max() > 0.25
    again = gan.MLP([4, 7, 3], "relu", dtype=dtype, random_state=11)
    np.testing.assert_array_equal(again.params, net.params)


@pytest.mark.parametrize("act", HIDDEN)
def test_forward_matches_reference(backend, dtype, act):
    G, _ = _nets(act, dtype)
    _, z = _batch(dtype)
    y = G.forward(z, backend=backend)
    want, _ = ref.forward(_pairs(G), G.activations, z, pieces=3)
    assert y.dtype == dtype and y.shape == (7, 4)
    np.testing.assert_allclose(y, want, **_tol(dtype))
    out = np.empty_like(y)
    assert G.forward(z, out=out, backend=backend) is out
    np.testing.assert_array_equal(out, y)


@pytest.mark.parametrize("act", HIDDEN)
def test_dense_layer_matches_reference(backend, dtype, act):
    rng = np.random.default_rng(5)
    p = 3 if act == "maxout" else 1
    x = rng.standard_normal((6, 4)).astype(dtype)
    W = rng.standard_normal((4, 5 * p)).astype(dtype)
    b = rng.standard_normal(5 * p).astype(dtype)
    y, cache = gan.dense_forward(x, W, b, act, pieces=p, slope=0.1, backend=backend)
    a = x.astype(float) @ W + b
    want, arg = ref.act_forward(act, a, 0.1, p)
    np.testing.assert_allclose(y, want, **_tol(dtype))
    gy = rng.standard_normal((6, 5)).astype(dtype)
    gx, gW, gb = gan.dense_backward(x, W, gy, cache, act, pieces=p, backend=backend)
    ga = ref.act_backward(act, a, want, gy.astype(float), arg, 0.1, p)
    np.testing.assert_allclose(gW, x.T.astype(float) @ ga, **_tol(dtype))
    np.testing.assert_allclose(gb, ga.sum(0), **_tol(dtype))
    np.testing.assert_allclose(gx, ga @ W.T.astype(float), **_tol(dtype))


# ---- gradients -----------------------------------------------------------------------------

@pytest.mark.parametrize("act", HIDDEN)
def test_discriminator_gradients_reference(backend, dtype, act):
    G, D = _nets(act, dtype)
    x, z = _batch(dtype)
    g_before, d_before = G.params.copy(), D.params.copy()
    loss, grad = gan.discriminator_gradients(G, D, x, z, backend=backend)
    want_loss, want = ref.discriminator_gradients(_pairs(G), G.activations, _pairs(D),
                                                  D.activations, x, z, pieces=3)
    assert grad.dtype == dtype and grad.shape == (D.n_params,)
    np.testing.assert_allclose(loss, want_loss, **_tol(dtype))
    np.testing.assert_allclose(grad, ref.flatten(want), **_tol(dtype))
    np.testing.assert_array_equal(G.params, g_before)
    np.testing.assert_array_equal(D.params, d_before)


@pytest.mark.parametrize("act", HIDDEN)
@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_generator_gradients_reference(backend, dtype, act, loss):
    G, D = _nets(act, dtype)
    _, z = _batch(dtype)
    d_before = D.params.copy()
    val, grad = gan.generator_gradients(G, D, z, loss=loss, backend=backend)
    want_val, want = ref.generator_gradients(_pairs(G), G.activations, _pairs(D),
                                             D.activations, z, loss=loss, pieces=3)
    np.testing.assert_allclose(val, want_val, **_tol(dtype))
    np.testing.assert_allclose(grad, ref.flatten(want), **_tol(dtype))
    np.testing.assert_array_equal(D.params, d_before)


def _fd_check(f, params, grad, n_probe=40, eps=1e-6, seed=0):
    """Central differences of f along ``n_probe`` coordinates of params (in place)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(params.size, size=min(n_probe, params.size), replace=False)
    for i in idx:
        old = params[i]
        params[i] = old + eps
        fp = f()
        params[i] = old - eps
        fm = f()
        params[i] = old
        assert abs((fp - fm) / (2 * eps) - grad[i]) <= 1e-6 + 1e-5 * abs(grad[i]), i


@pytest.mark.parametrize("act", HIDDEN)
def test_discriminator_finite_differences(backend, act):
    G, D = _nets(act, np.float64, seed=4)
    x, z = _batch(np.float64, seed=8)
    _, grad = gan.discriminator_gradients(G, D, x, z, backend=backend)
    _fd_check(lambda: gan.discriminator_gradients(G, D, x, z, backend=backend)[0],
              D.params, grad)


@pytest.mark.parametrize("act", HIDDEN)
@pytest.mark.parametrize("loss", ["minimax", "non_saturating"])
def test_generator_finite_differences(backend, act, loss):
    G, D = _nets(act, np.float64, seed=6)
    _, z = _batch(np.float64, seed=9)
    _, grad = gan.generator_gradients(G, D, z, loss=loss, backend=backend)
    _fd_check(lambda: gan.generator_gradients(G, D, z, loss=loss, backend=backend)[0],
              G.params, grad)


# ---- parity --------------------------------------------------------------------------------

def _all_outputs(backend, dtype, act):
    G, D = _nets(act, dtype, seed=2)
    x, z = _batch(dtype, m=9)
    res = [G.forward(z, backend=backend)]
    res += list(gan.discriminator_gradients(G, D, x, z, backend=backend))
    for loss in ("minimax", "non_saturating"):
        res += list(gan.generator_gradients(G, D, z, loss=loss, backend=backend))
    return res


@pytest.mark.parametrize("act", HIDDEN)
def test_backends_bit_identical(dtype, act):
    from conftest import require_backend
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    a = _all_outputs("numba", dtype, act)
    b = _all_outputs("cython", dtype, act)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_one_and_two_threads_identical(backend, dtype, restore_threads):
    dlkernels.set_num_threads(1)
    a = _all_outputs(backend, dtype, "maxout") + _all_outputs(backend, dtype, "tanh")
    dlkernels.set_num_threads(min(2, __import__("numba").config.NUMBA_NUM_THREADS))
    b = _all_outputs(backend, dtype, "maxout") + _all_outputs(backend, dtype, "tanh")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


# ---- extreme logits ------------------------------------------------------------------------

@pytest.mark.parametrize("logit", [17.0, -17.0, 89.0, -89.0, 1e4, -1e4])
def test_extreme_logits_finite(backend, dtype, logit):
    G = gan.MLP([2, 3], "identity", dtype=dtype, random_state=0)
    D = gan.MLP([3, 4, 1], ["relu", "identity"], dtype=dtype, random_state=1)
    D.weights[1][...] = 0
    D.biases[1][...] = logit          # every logit equals `logit`
    x = np.ones((5, 3), dtype)
    z = np.ones((5, 2), dtype)
    sp = lambda t: np.logaddexp(0.0, t)  # noqa: E731
    loss, grad = gan.discriminator_gradients(G, D, x, z, backend=backend)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, sp(-logit) + sp(logit), rtol=1e-6)
    # d loss / d b_last = mean(-sigmoid(-l)) + mean(sigmoid(l)) = 2 sigmoid(l) - 1
    np.testing.assert_allclose(grad[-1], 2 * ref.sigmoid(logit) - 1, rtol=1e-6, atol=1e-7)
    for kind, want in (("minimax", -sp(logit)), ("non_saturating", sp(-logit))):
        val, g = gan.generator_gradients(G, D, z, loss=kind, backend=backend)
        assert np.isfinite(val) and np.isfinite(g).all()
        np.testing.assert_allclose(val, want, rtol=1e-6)


# ---- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(sizes=[3], activations=[]), ValueError, "sizes: expected at least 2"),
    (dict(sizes=3, activations="relu"), TypeError, "sizes: expected a sequence"),
    (dict(sizes=[3, 0], activations="relu"), ValueError, "sizes[1]"),
    (dict(sizes=[3, 2.5], activations="relu"), TypeError, "sizes[1]"),
    (dict(sizes=[3, 4, 2], activations=["relu"]), ValueError, "activations: expected 2"),
    (dict(sizes=[3, 4], activations="swish"), ValueError, "activations[0]"),
    (dict(sizes=[3, 4], activations=[5]), TypeError, "activations[0]"),
    (dict(sizes=[3, 4], activations="maxout"), ValueError, "maxout_pieces"),
    (dict(sizes=[3, 4], activations="maxout", maxout_pieces=0), ValueError, "maxout_pieces"),
    (dict(sizes=[3, 4], activations="relu", leaky_slope=1.5), ValueError, "leaky_slope"),
    (dict(sizes=[3, 4], activations="relu", init="he"), ValueError, "init"),
    (dict(sizes=[3, 4], activations="relu", init_range=-1.0), ValueError, "init_range"),
    (dict(sizes=[3, 4], activations="relu", init_range=[1, 2]), ValueError, "init_range"),
    (dict(sizes=[3, 4], activations="relu", dtype=np.int32), TypeError, "dtype"),
    (dict(sizes=[3, 4], activations="relu", random_state=-1), ValueError, "^random_state: "),
])
def test_mlp_errors(kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        gan.MLP(**kwargs)


def test_gradient_errors_and_nothing_changed(backend):
    G, D = _nets("relu", np.float32)
    x, z = _batch(np.float32)
    before = (G.params.copy(), D.params.copy())
    D64 = gan.MLP([4, 1], "identity", dtype=np.float64)
    D2 = gan.MLP([4, 2], "identity")
    D5 = gan.MLP([5, 1], "identity")
    cases = [
        (lambda: gan.discriminator_gradients(G, "D", x, z), TypeError, "D: expected a dlkernels"),
        (lambda: gan.discriminator_gradients(G, D64, x, z), TypeError, "D: expected dtype"),
        (lambda: gan.discriminator_gradients(G, D2, x, z), ValueError, "output width of 1"),
        (lambda: gan.discriminator_gradients(G, D5, x, z), ValueError, "input width of 4"),
        (lambda: gan.discriminator_gradients(G, D, x[:, :3], z), ValueError, "x_real"),
        (lambda: gan.discriminator_gradients(G, D, x, z[:5]), ValueError, "z: expected 7 rows"),
        (lambda: gan.discriminator_gradients(G, D, x.astype(np.float64), z), TypeError,
         "x_real"),
        (lambda: gan.discriminator_gradients(G, D, np.where(x > 1, np.nan, x), z), ValueError,
         "x_real: expected finite"),
        (lambda: gan.discriminator_gradients(G, D, x[:0], z[:0]), ValueError, "x_real"),
        (lambda: gan.discriminator_gradients(G, D, x, z, out=np.empty(3, np.float32)),
         ValueError, "out"),
        (lambda: gan.generator_gradients(G, D, z, loss="wasserstein"), ValueError, "loss"),
        (lambda: gan.generator_gradients(G, D, z[:, :2]), ValueError, "z"),
        (lambda: gan.generator_gradients(G, D, z, backend="fortran"), ValueError, "backend"),
        (lambda: G.forward(z[:, :2]), ValueError, "x"),
        (lambda: G.forward(z, out=np.empty((7, 3), np.float32)), ValueError, "out"),
    ]
    for call, exc, words in cases:
        with pytest.raises(exc, match=words):
            call()
    np.testing.assert_array_equal(G.params, before[0])
    np.testing.assert_array_equal(D.params, before[1])


def test_dense_errors():
    x = np.ones((3, 4), np.float32)
    W = np.ones((4, 6), np.float32)
    b = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="activation"):
        gan.dense_forward(x, W, b, "gelu")
    with pytest.raises(ValueError, match="pieces"):
        gan.dense_forward(x, W, b, "relu", pieces=2)
    with pytest.raises(ValueError, match="W: expected a positive number of columns"):
        gan.dense_forward(x, W, b, "maxout", pieces=4)
    with pytest.raises(ValueError, match="W: expected shape"):
        gan.dense_forward(x, W[:3], b, "relu")
    with pytest.raises(TypeError, match="W: expected dtype float32"):
        gan.dense_forward(x, W.astype(np.float64), b, "relu")
    with pytest.raises(ValueError, match="b: expected shape"):
        gan.dense_forward(x, W, b[:5], "relu")
    y, arg = gan.dense_forward(x, W, b, "maxout", pieces=3)
    with pytest.raises(ValueError, match="cache: expected arg-max values"):
        gan.dense_backward(x, W, y, arg + 5, "maxout", pieces=3)
    with pytest.raises(TypeError, match="cache"):
        gan.dense_backward(x, W, y, arg.astype(np.float32), "maxout", pieces=3)
    with pytest.raises(ValueError, match="gy"):
        gan.dense_backward(x, W, y[:, :1], arg, "maxout", pieces=3)


# ---- large layers: GEMMs in parallel tiles ---------------------------------------------------

def _big(dtype, backend):
    from dlkernels.engine.numba.gan import PAR_MIN_WORK, TILE_C, TILE_R
    G = gan.MLP([16, 300, 40], ["relu", "sigmoid"], dtype=dtype, random_state=1)
    D = gan.MLP([40, 270, 1], ["maxout", "identity"], maxout_pieces=2, dtype=dtype,
                random_state=2)
    m = 300   # 2m = 600 rows: 3 row tiles; 540 maxout columns: 5 column tiles
    assert 2 * m * 540 * 40 >= PAR_MIN_WORK and 2 * m > 2 * TILE_R and 540 > 4 * TILE_C
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, 40)).astype(dtype)
    z = rng.standard_normal((m, 16)).astype(dtype)
    out = list(gan.discriminator_gradients(G, D, x, z, backend=backend))
    out += list(gan.generator_gradients(G, D, z, backend=backend))
    return G, D, x, z, out


def test_tiled_layers_reference_backends_threads(dtype, restore_threads):
    import numba
    from conftest import require_backend
    res = {}
    for backend in ("numba", "cython"):
        require_backend(backend, FAMILY)
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            dlkernels.set_num_threads(n)
            G, D, x, z, out = _big(dtype, backend)
            res[backend, n] = out
    for key, out in res.items():
        for a, b in zip(out, res["numba", 1]):
            np.testing.assert_array_equal(a, b, err_msg=str(key))
    loss, want = ref.discriminator_gradients(_pairs(G), G.activations, _pairs(D), D.activations,
                                             x, z, pieces=2)
    np.testing.assert_allclose(res["numba", 1][0], loss, **_tol(dtype))
    np.testing.assert_allclose(res["numba", 1][1], ref.flatten(want), **_tol(dtype))
    val, want = ref.generator_gradients(_pairs(G), G.activations, _pairs(D), D.activations, z,
                                        loss="minimax", pieces=2)
    np.testing.assert_allclose(res["numba", 1][3], ref.flatten(want), **_tol(dtype))
