"""Findings of the hostile-input probe (issue 11), one test each, both backends."""
import numpy as np
import pytest

import dlkernels
from dlkernels import rbm

FAMILY = "rbm"
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix on purpose


def _model():
    g = np.random.default_rng(0)
    W = g.normal(0, 0.1, (6, 5))
    return W, np.zeros(6), np.zeros(5), (g.random((4, 6)) < 0.5) * 1.0


CALLS_WITH_BIASES = {
    # name: (call with the biases (a, b) given, which of them the call takes)
    "energy": (lambda v, W, a, b, be: rbm.energy(v, np.zeros((4, 5)), W, a, b, backend=be), "ab"),
    "free_energy": (lambda v, W, a, b, be: rbm.free_energy(v, W, a, b, backend=be), "ab"),
    "hidden_probs": (lambda v, W, a, b, be: rbm.hidden_probs(v, W, b, backend=be), "b"),
    "visible_probs": (lambda v, W, a, b, be: rbm.visible_probs(np.zeros((4, 5)), W, a, backend=be), "a"),
    "sample_hidden": (lambda v, W, a, b, be: rbm.sample_hidden(v, W, b, backend=be), "b"),
    "sample_visible": (lambda v, W, a, b, be: rbm.sample_visible(np.zeros((4, 5)), W, a, backend=be), "a"),
    "gibbs_chains": (lambda v, W, a, b, be: rbm.gibbs_chains(v, W, a, b, 1, backend=be), "ab"),
    "cd_gradient": (lambda v, W, a, b, be: rbm.cd_gradient(v, W, a, b, backend=be), "ab"),
    "cd_update": (lambda v, W, a, b, be: rbm.cd_update(v, W.copy(), a if a is None else a.copy(),
                                                       b if b is None else b.copy(),
                                                       learning_rate=0.1, backend=be), "ab"),
    "parallel_tempering": (lambda v, W, a, b, be: rbm.parallel_tempering(v, W, a, b, 1, betas=[1.0],
                                                                         backend=be), "ab"),
}


@pytest.mark.parametrize("fn, which", [(f, w) for f in sorted(CALLS_WITH_BIASES)
                                         for w in CALLS_WITH_BIASES[f][1]])
def test_none_bias_is_a_type_error(fn, which, backend):
    # was: SIGSEGV with the Cython backend, a long TypingError with Numba
    call = CALLS_WITH_BIASES[fn][0]
    W, a, b, v = _model()
    a2, b2 = (None, b) if which == "a" else (a, None)
    with pytest.raises(TypeError, match=f"^{which}: expected .*got (NoneType )?None"):
        call(v, W, a2, b2, backend)


def test_matrix_arguments_have_array_semantics(backend):
    # was: exact_log_partition(np.matrix(W), a, b) = 11.02 instead of 7.55
    W, a, b, v = _model()
    ref = rbm.exact_log_partition(W, a, b)
    assert rbm.exact_log_partition(np.matrix(W), a, b) == ref
    ll = rbm.log_likelihood(np.matrix(v), W, a, b, ref)
    assert np.shape(ll) == (4,) and type(ll) is np.ndarray
    np.testing.assert_array_equal(ll, rbm.log_likelihood(v, W, a, b, ref))
    np.testing.assert_array_equal(rbm.hidden_probs(np.matrix(v), W, b, backend=backend),
                                  rbm.hidden_probs(v, W, b, backend=backend))


def test_masked_arrays_are_refused(backend):
    W, a, b, v = _model()
    vm = np.ma.masked_array(v, mask=np.zeros_like(v, bool))
    with pytest.raises(TypeError, match="^v: expected an array of numbers, got a masked array"):
        rbm.hidden_probs(vm, W, b, backend=backend)
    with pytest.raises(TypeError, match="^W: .*masked array"):
        rbm.hidden_probs(v, np.ma.masked_array(W), b, backend=backend)


@pytest.mark.parametrize("call, match", [
    # were: silent positive-phase-only result (k + r - 1 overflowed) or OverflowError
    (lambda v, W, a, b: rbm.cd_gradient(v, W, a, b, k=2**63 - 1, r=2, random_state=0), "^k: "),
    (lambda v, W, a, b: rbm.cd_gradient(v, W, a, b, k=2**62, r=2, random_state=0), "^k, r: "),
    (lambda v, W, a, b: rbm.cd_gradient(v, W, a, b, k=1, r=2**64, random_state=0), "^r: "),
    (lambda v, W, a, b: rbm.gibbs_chains(v, W, a, b, 2**63), "^k: "),
    (lambda v, W, a, b: rbm.single_site_gibbs(v, np.zeros((4, 5)), W, a, b, n_steps=2**63),
     "^n_steps: "),
    (lambda v, W, a, b: rbm.ais_log_partition(W, a, b, n_betas=2**64), "^n_betas: "),
    (lambda v, W, a, b: rbm.ais_log_partition(W, a, b, n_runs=2**63), "^n_runs: "),
    (lambda v, W, a, b: rbm.state_bits(2**63, 40, 30), "^m, n: "),
    (lambda v, W, a, b: rbm.parallel_tempering(v, W, a, b, 2**63, betas=[1.0]), "^n_sweeps: "),
])
def test_huge_counts_are_value_errors_naming_the_argument(call, match):
    W, a, b, v = _model()
    with pytest.raises(ValueError, match=match):
        call(v, W, a, b)


def test_state_bits_at_the_limit():
    # 63 bits: the top index still decodes exactly
    v, h = rbm.state_bits(2**63 - 1, 40, 23)
    assert v.sum() == 40 and h.sum() == 23


def test_out_aliasing_an_input_is_refused(backend):
    # was: hidden_probs(x, W, b, out=x) silently wrong by up to 0.7
    g = np.random.default_rng(1)
    W = g.normal(0, 1, (5, 5))
    x = g.random((3, 5))
    before = x.copy()
    with pytest.raises(ValueError, match="^out: expected an array that shares no memory with v"):
        rbm.hidden_probs(x, W, np.zeros(5), out=x, backend=backend)
    np.testing.assert_array_equal(x, before)  # a failed call changes nothing
    big = np.zeros((4, 5))
    with pytest.raises(ValueError, match="^out: .*shares no memory with h"):
        rbm.visible_probs(big[:3], W, np.zeros(5), out=big[1:], backend=backend)  # overlapping views
    with pytest.raises(ValueError, match="^out: .*shares no memory with W"):
        rbm.hidden_probs(x[:, :5], W, np.zeros(5), out=W[:3], backend=backend)
    # a distinct buffer is fine and gives the allocated result
    out = np.empty((3, 5))
    np.testing.assert_array_equal(rbm.hidden_probs(x, W, np.zeros(5), out=out, backend=backend),
                                  rbm.hidden_probs(x, W, np.zeros(5), backend=backend))


def test_cd_update_refuses_aliased_in_place_arguments(backend):
    # was: persistent is v_data -> data overwritten, W off by 0.03
    W, a, b, v = _model()
    W0, v0 = W.copy(), v.copy()
    with pytest.raises(ValueError, match="^persistent: .*shares no memory with v_data"):
        rbm.cd_update(v, W, a, b, learning_rate=0.1, persistent=v, backend=backend)
    vel = (np.zeros_like(W), np.zeros_like(a), np.zeros_like(b))
    with pytest.raises(ValueError, match=r"^velocity\[0\]: .*shares no memory with W"):
        rbm.cd_update(v, W, a, b, learning_rate=0.1, momentum=0.5, velocity=(W, vel[1], vel[2]),
                      backend=backend)
    np.testing.assert_array_equal(W, W0)
    np.testing.assert_array_equal(v, v0)


def test_failed_cd_update_leaves_velocity_alone(backend):
    # was: velocity scaled by the momentum before k = 2**63 raised
    W, a, b, v = _model()
    vel = (np.ones_like(W), np.ones_like(a), np.ones_like(b))
    with pytest.raises(ValueError, match="^k: "):
        rbm.cd_update(v, W, a, b, learning_rate=0.1, momentum=0.5, velocity=vel, k=2**63,
                      backend=backend)
    assert all(np.all(x == 1) for x in vel)


@pytest.mark.parametrize("call, match", [
    # were: MemoryError "Unable to allocate ... TiB"
    (lambda: dlkernels.rng.uniform(dlkernels.rng.make_key(1), 10**15), "^size: expected a size whose arrays fit"),
    (lambda: dlkernels.rng.raw(dlkernels.rng.make_key(1), 10**15), "^n: expected a size"),
    (lambda: dlkernels.rng.uniform_streams(dlkernels.rng.make_key(1), 4, 2**40), "^streams: expected a size"),
    (lambda: rbm.ais_log_partition(*_model()[:3], n_runs=10**13), "^n_runs: expected a size"),
    (lambda: rbm.ais_log_partition(*_model()[:3], n_betas=2**40), "^n_betas: expected a size"),
])
def test_absurd_sizes_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- the estimator: a failed fit / partial_fit changes nothing --------------------------

@pytest.mark.parametrize("params, exc, match", [
    (dict(k=2**63), ValueError, "'k' parameter"),
    (dict(batch_size=10**12), ValueError, "^batch_size: expected a size whose arrays fit"),
    (dict(n_components=10**12), ValueError, "^n_components: expected a size"),
    (dict(weight_decay=1e300), ValueError, "^weight_decay: expected learning_rate \\* weight_decay < 1"),
    (dict(k=2**62, r=5), ValueError, "^k, r: expected k \\+ r - 1"),
])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_failed_fit_keeps_the_old_model(params, exc, match, method):
    pytest.importorskip("sklearn")
    X = (np.random.default_rng(0).random((40, 6)) < 0.5) * 1.0
    est = rbm.BernoulliRBM(n_components=3, n_iter=2, random_state=0).fit(X)
    W, hb, vb = est.components_.copy(), est.intercept_hidden_.copy(), est.intercept_visible_.copy()
    state = est.random_state_.get_state()
    est.set_params(**params)
    with pytest.raises(exc, match=match):
        getattr(est, method)(X)
    np.testing.assert_array_equal(est.components_, W)
    np.testing.assert_array_equal(est.intercept_hidden_, hb)
    np.testing.assert_array_equal(est.intercept_visible_, vb)
    assert est.random_state_.get_state() == state


def test_diverging_fit_raises_instead_of_returning_nan_weights():
    pytest.importorskip("sklearn")
    X = (np.random.default_rng(0).random((40, 6)) < 0.5).astype(np.float32)
    # float32 model, learning rate beyond float32's range: W overflows in the first epoch
    est = rbm.BernoulliRBM(n_components=3, n_iter=3, learning_rate=1e300, batch_size=1,
                           random_state=0)
    with pytest.raises(ValueError, match="^learning_rate: .*NaN or inf in epoch"):
        est.fit(X)


# ---- AIS from a base model too far from uniform ---------------------------------------------

def test_ais_refuses_a_base_bias_that_rounding_would_swallow(backend):
    # was: base_visible_bias=1e30 gave log Z = 3.4e17 with stderr 0.0
    W, a, b, _ = _model()
    for big in (1e30, -2e4):
        with pytest.raises(ValueError, match=r"^base_visible_bias: expected values in \[-10000, "
                                             r"10000\].*largest magnitude of"):
            rbm.ais_log_partition(W, a, b, base_visible_bias=np.full(6, big), n_runs=4,
                                  n_betas=10, backend=backend)
    # at the limit the estimate is still right (exact log Z within 4 stderr + 0.05)
    g = np.random.default_rng(1)
    W = g.normal(0, 0.5, (6, 5))
    a = g.normal(0, 0.5, 6)
    exact = rbm.exact_log_partition(W, a, np.zeros(5))
    res = rbm.ais_log_partition(W, a, np.zeros(5), base_visible_bias=np.full(6, 1e4),
                                n_runs=100, n_betas=1000, random_state=0, backend=backend)
    assert res.stderr > 0 and abs(res.log_z - exact) < 4 * res.stderr + 0.05


# ---- persistence ----------------------------------------------------------------------------

def _fitted_estimator():
    pytest.importorskip("sklearn")
    X = (np.random.default_rng(0).random((40, 6)) < 0.5) * 1.0
    return rbm.BernoulliRBM(n_components=3, n_iter=2, batch_size=10, random_state=0).fit(X), X


def test_save_to_a_missing_directory_names_the_path(tmp_path):
    # was: FileNotFoundError naming the hidden temporary file '.tmp-xxxx.npz'
    est, _ = _fitted_estimator()
    target = tmp_path / "no" / "such" / "model.npz"
    with pytest.raises(FileNotFoundError, match="model.npz") as info:
        est.save(target)
    assert info.value.filename == str(target) and ".tmp-" not in str(info.value)
    assert not (tmp_path / "no").exists()


def test_save_and_load_accept_bytes_paths(tmp_path):
    # was: TypeError "Can't mix bytes and non-bytes in path components"
    est, X = _fitted_estimator()
    path = bytes(tmp_path / "model.npz")
    est.save(path)
    back = rbm.BernoulliRBM.load(path)
    np.testing.assert_array_equal(back.components_, est.components_)
    with pytest.raises(TypeError, match="^path: expected a str, bytes or os.PathLike"):
        est.save(12)


def _forge(tmp_path, est, **changes):
    """A file with valid signature and checksum whose metadata says ``changes``."""
    from dlkernels.bindings import _persist, rbm_persist
    good = tmp_path / "good.npz"
    est.save(good)
    arrays, meta, version = _persist.load(good, magic=rbm_persist.MAGIC, versions=version_of(),
                                          what="x")
    meta.update(changes.pop("meta", {}))
    arrays.update(changes)
    path = tmp_path / "forged.npz"
    _persist.save(path, arrays, meta, magic=rbm_persist.MAGIC, version=version)
    return path


def version_of():
    from dlkernels.bindings import rbm_persist
    return (rbm_persist.FORMAT_VERSION,)


@pytest.mark.parametrize("changes, why", [
    # was: negative fit_pos loaded, then ZeroDivisionError / silent garbage on resume
    (dict(meta={"fit_pos": [-1, 0, 40]}), "fit_pos epoch: expected an integer in"),
    (dict(meta={"fit_pos": [0, -5, 40]}), "fit_pos minibatch: expected an integer in"),
    (dict(meta={"fit_pos": [0, 99, 40]}), r"fit_pos minibatch: expected an integer in \[0, 4\]"),
    (dict(meta={"fit_pos": [0, 0, 0]}), "fit_pos n_samples: expected an integer in"),
    (dict(meta={"fit_pos": [0, 0]}), "fit_pos: expected"),
    (dict(meta={"fit_pos": [0.5, 0, 40]}), "fit_pos epoch"),
    (dict(meta={"n_iter_": -3}), "n_iter_: expected an integer"),
    (dict(W=np.full((6, 3), np.nan)), "non-finite values in W"),
    (dict(h_samples=np.full((10, 3), 0.5)), "inconsistent h_samples"),
])
def test_forged_metadata_is_refused(tmp_path, changes, why):
    est, X = _fitted_estimator()
    path = _forge(tmp_path, est, **changes)
    with pytest.raises(ValueError, match=f"is not a valid dlkernels BernoulliRBM file: {why}"):
        rbm.BernoulliRBM.load(path)


def test_sparse_and_ragged_inputs_get_messages_naming_the_argument(backend):
    # were: "expected a real float array, got dtype object" / numpy's raw message
    sp = pytest.importorskip("scipy.sparse")
    W, a, b, v = _model()
    with pytest.raises(TypeError, match=r"^v: expected a dense array of numbers, got a "
                                        r"scipy.sparse csr_matrix \(convert it with .toarray"):
        rbm.hidden_probs(sp.csr_matrix(v), W, b, backend=backend)
    with pytest.raises(TypeError, match="^v0: expected a dense array .* csr_array"):
        rbm.gibbs_chains(sp.csr_array(v), W, a, b, 1, backend=backend)
    with pytest.raises(TypeError, match="^v0: expected an array of numbers, got list"):
        rbm.gibbs_chains([[0, 1, 0, 1, 0, 1], [1, 0]], W, a, b, 1, backend=backend)
