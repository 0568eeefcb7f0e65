"""Tests of dlkernels.gan's training loop (Algorithm 1 of Goodfellow et al.
2014): the update rules against a NumPy replay, determinism across runs,
backends and thread counts, checkpoint / resume, the NaN stop, errors, and
mode capture on the 8-Gaussian ring."""
import numpy as np
import pytest

import dlkernels
from dlkernels import gan
from dlkernels.bindings.gan_train import GANTrainer, GANTrainingError, train_gan
from dlkernels.rng import counter, make_key

FAMILY = "gan"


def _setup(dtype=np.float32, seed=0, n=96, act="relu"):
    X = gan.sample_ring(n, random_state=seed, dtype=dtype)
    G = gan.MLP([2, 8, 2], [act, "identity"], dtype=dtype, random_state=seed + 1)
    D = gan.MLP([2, 8, 1], ["maxout", "identity"], maxout_pieces=2, dtype=dtype,
                random_state=seed + 2)
    return X, G, D


OPTIONS = [
    dict(),
    dict(k=2, noise="normal", g_loss="minimax"),
    dict(optimizer="adam", learning_rate=(1e-3, 2e-3)),
    dict(final_momentum=0.9, momentum_saturate=2, lr_decay=1.01, min_lr=0.01),
    dict(simultaneous=True, k=2),
]


@pytest.mark.parametrize("opts", OPTIONS, ids=["sgd", "k2-normal-minimax", "adam", "ramp-decay",
                                               "simultaneous"])
def test_same_seed_bit_identical_across_backends(dtype, opts):
    from conftest import require_backend
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    res = []
    for backend in ("numba", "cython", "numba"):
        X, G, D = _setup(dtype)
        h = train_gan(X, G, D, n_epochs=2, batch_size=16, random_state=5, backend=backend,
                      **opts)
        res.append((G.params, D.params, h["d_loss"], h["g_loss"], h["d_acc_real"]))
        assert len(h["d_loss"]) == 2 * (96 // 16)
        assert np.isfinite(h["d_loss"]).all() and np.isfinite(h["g_loss"]).all()
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)
    X, G, D = _setup(dtype)
    train_gan(X, G, D, n_epochs=2, batch_size=16, random_state=6, **opts)
    assert not np.array_equal(G.params, res[0][0])


def _trainer(dtype, backend, opts, seed=5, act="relu"):
    X, G, D = _setup(dtype, act=act)
    tr = GANTrainer(G, D, batch_size=16, random_state=seed, backend=backend, progress=False,
                    **opts)
    return X, tr


def _state(tr):
    return ([tr.G.params, tr.D.params, *tr._state["G"], *tr._state["D"]]
            + [tr.history[h] for h in sorted(tr.history)] + [np.array(tr._adam_t), tr.step])


def _run_reference(tr, X, n_epochs):
    """GANTrainer._run_python: the loop written out in Python (one kernel call per layer,
    NumPy updates), instead of the compiled steps of fit()."""
    tr._check_X(X)
    tr.n_rows = X.shape[0]
    tr.target_step = tr.step + n_epochs * tr.batches_per_epoch(X.shape[0])
    return tr._run_python(X)


@pytest.mark.parametrize("opts", OPTIONS + [dict(simultaneous=True, optimizer="adam",
                                                 noise="normal", g_loss="minimax")],
                         ids=["sgd", "k2-normal-minimax", "adam", "ramp-decay", "simultaneous",
                              "simultaneous-k1-adam-normal"])
def test_compiled_steps_equal_the_python_loop(backend, dtype, opts):
    """fit() runs whole steps in compiled calls (train_steps); the Python loop that calls one
    kernel per layer and updates with NumPy must give the same bits: parameters, optimizer
    state, Adam's step counts and the history."""
    X, tr = _trainer(dtype, backend, opts)
    tr.fit(X, 3)
    X, ref = _trainer(dtype, backend, opts)
    _run_reference(ref, X, 3)
    assert tr.step == ref.step == 18
    for a, b in zip(_state(tr), _state(ref)):
        np.testing.assert_array_equal(a, b)


def test_chunking_never_changes_the_result(backend, monkeypatch):
    """Chunks of steps per compiled call (sized by time), one step per call (with a
    callback), or a chunk cut short by the passes it may read: the same bits."""
    import dlkernels.bindings.gan_train as gt
    opts = dict(k=3, optimizer="adam")
    X, tr = _trainer(np.float32, backend, opts)
    tr.fit(X, 4)
    results = [_state(tr)]
    X, tr = _trainer(np.float32, backend, opts)
    tr.fit(X, 4, callback=lambda t, info: None)
    results.append(_state(tr))
    # a chunk may read at most 2 passes of the data here (k = 3 minibatches a step)
    monkeypatch.setattr(gt, "_MAX_PERM_WORDS", 2 * 96)
    monkeypatch.setattr(gt, "_CHUNK_SECONDS", 1e9)
    X, tr = _trainer(np.float32, backend, opts)
    tr.fit(X, 4)
    results.append(_state(tr))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate,opts,what", [
    (1e3, dict(), "discriminator loss"), (1e5, dict(), "parameter update"),
    (1e20, dict(), "generator loss"), (1e3, dict(k=2, simultaneous=True), "parameter update"),
    (1e20, dict(optimizer="adam", beta1=0.0), "discriminator loss")],
    ids=["sgd-d-loss", "sgd-params", "sgd-g-loss", "simultaneous-params", "adam-d-loss"])
def test_nan_stop_inside_a_chunk_restores_the_step_before(backend, rate, opts, what):
    """Without a callback a failure happens in the middle of a compiled chunk: the trainer
    restores the chunk's start and replays the good steps, so G, D, the optimizer state and
    the history equal those of the Python loop stopped at the same step."""
    X, tr = _trainer(np.float32, backend, dict(opts, learning_rate=rate, momentum=0.9))
    with pytest.raises(GANTrainingError, match=f"non-finite {what} .* at step [1-9]") as err:
        tr.fit(X, 50)
    X, ref = _trainer(np.float32, backend, dict(opts, learning_rate=rate, momentum=0.9))
    with pytest.raises(GANTrainingError) as ref_err:
        _run_reference(ref, X, 50)
    assert str(err.value) == str(ref_err.value)
    assert tr.step == ref.step and tr.step > 0
    for a, b in zip(_state(tr), _state(ref)):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(tr.G.params).all() and np.isfinite(tr.D.params).all()
    assert np.isfinite(tr.history["d_loss"]).all()


@pytest.mark.parametrize("opts", [dict(momentum=0.9), dict(optimizer="adam", k=2)],
                         ids=["sgd", "adam-k2"])
def test_parallel_updates_of_a_large_network(backend, opts, restore_threads):
    """From PAR_MIN_UPDATE parameters on the optimizer updates run in parallel blocks:
    the same bits as the Python loop's NumPy updates, on 1 and 2 threads, and a failure
    restores the state the call saved in its first (parallel) update."""
    import numba
    from dlkernels.engine.numba.gan import PAR_MIN_UPDATE

    def build():
        X = gan.sample_ring(96, random_state=0)
        G = gan.MLP([2, 384, 384, 2], ["relu", "relu", "identity"], random_state=1)
        D = gan.MLP([2, 384, 384, 1], ["leaky_relu", "leaky_relu", "identity"],
                    random_state=2)
        assert G.n_params > PAR_MIN_UPDATE and D.n_params > PAR_MIN_UPDATE
        return X, GANTrainer(G, D, batch_size=32, learning_rate=0.01, random_state=3,
                             backend=backend, progress=False, **opts)

    res = []
    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        dlkernels.set_num_threads(n)
        X, tr = build()
        tr.fit(X, 2)
        res.append(_state(tr))
    X, ref = build()
    _run_reference(ref, X, 2)
    for other in (res[1], _state(ref)):
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)
    # a non-finite update in the middle of a chunk, on the parallel path
    X, tr = build()
    tr.fit(X, 1)
    tr.learning_rate = (1e8, 1e8)
    used = [0, 1, 2, 4]                      # parameters and momenta (or first moments)
    before = [_state(tr)[i].copy() for i in used]
    with pytest.raises(GANTrainingError, match=r"at step 4;"):
        tr.fit(X, 4)
    for a, i in zip(before, used):
        assert not np.array_equal(a, _state(tr)[i])   # the good step 3 was replayed
    X, ref = build()
    _run_reference(ref, X, 1)
    ref.learning_rate = (1e8, 1e8)
    with pytest.raises(GANTrainingError, match=r"at step 4;"):
        _run_reference(ref, X, 4)
    for a, b in zip(_state(tr), _state(ref)):
        np.testing.assert_array_equal(a, b)


def test_one_and_two_threads_identical(backend, restore_threads):
    import numba
    res = []
    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        dlkernels.set_num_threads(n)
        X, G, D = _setup()
        train_gan(X, G, D, n_epochs=2, batch_size=16, random_state=3, backend=backend)
        res.append((G.params.copy(), D.params.copy()))
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


def _replay_sgd(X, G, D, *, steps, m, k, lr, mom, seed, g_loss):
    """The training loop written out with the public gradient functions and NumPy."""
    key = make_key(seed)
    bpe = len(X) // m
    vD = np.zeros_like(D.params)
    vG = np.zeros_like(G.params)
    perms = {}
    dt = G.dtype.type
    for s in range(steps):
        base = 1 + s * (k + 1)
        for j in range(k):
            b = s * k + j
            p = b // bpe
            if p not in perms:
                perms[p] = np.random.Generator(np.random.Philox(key=key, counter=counter(0, 1 + p))
                                               ).permutation(len(X))
            xb = X[perms[p][(b % bpe) * m:(b % bpe + 1) * m]]
            u = np.random.Generator(np.random.Philox(key=key, counter=counter(base + j))
                                    ).random(size=(m, G.sizes[0]), dtype=G.dtype)
            z = u * dt(2 * np.sqrt(3)) - dt(np.sqrt(3))
            _, g = gan.discriminator_gradients(G, D, xb, z)
            vD = dt(mom) * vD - dt(lr) * g
            D.params += vD
        u = np.random.Generator(np.random.Philox(key=key, counter=counter(base + k))
                                ).random(size=(m, G.sizes[0]), dtype=G.dtype)
        z = u * dt(2 * np.sqrt(3)) - dt(np.sqrt(3))
        _, g = gan.generator_gradients(G, D, z, loss=g_loss)
        vG = dt(mom) * vG - dt(lr) * g
        G.params += vG


def test_training_matches_replay_of_algorithm_1(dtype):
    X, G, D = _setup(dtype)
    G2, D2 = G.copy(), D.copy()
    train_gan(X, G, D, n_epochs=1, batch_size=24, k=2, learning_rate=0.1, momentum=0.7,
              g_loss="minimax", random_state=9)
    _replay_sgd(X, G2, D2, steps=4, m=24, k=2, lr=0.1, mom=0.7, seed=9, g_loss="minimax")
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(G.params, G2.params, **tol)
    np.testing.assert_allclose(D.params, D2.params, **tol)


def _replay_general(X, G, D, *, steps, m, seed, opt, lr, decay, mom0, mom1, sat, b1, b2, eps):
    """SGD with the momentum ramp and lr decay, or Adam, written out in NumPy (float64
    scalars, the networks' dtype for arrays) with the public gradient functions."""
    key = make_key(seed)
    bpe = len(X) // m
    dt = G.dtype.type
    st = {n: [np.zeros_like(net.params), np.zeros_like(net.params), 0] for n, net in
          (("D", D), ("G", G))}

    def noise(stream):
        u = np.random.Generator(np.random.Philox(key=key, counter=counter(stream))).random(
            size=(m, G.sizes[0]), dtype=G.dtype)
        return u * dt(2 * np.sqrt(3)) - dt(np.sqrt(3))

    def update(name, net, g, s):
        a, v, t = st[name]
        rate = max(lr / decay ** s, 0.0)
        if opt == "sgd":
            mu = mom0 + min((s // bpe) / sat, 1.0) * (mom1 - mom0)
            a[...] = dt(mu) * a - dt(rate) * g
            net.params += a
        else:
            t += 1
            st[name][2] = t
            a[...] = dt(b1) * a + dt(1 - b1) * g
            v[...] = dt(b2) * v + dt(1 - b2) * (g * g)
            mhat = a / (1 - b1 ** t)
            vhat = v / (1 - b2 ** t)
            net.params -= (rate * mhat / (np.sqrt(vhat) + eps)).astype(G.dtype)

    for s in range(steps):
        perm = np.random.Generator(np.random.Philox(key=key, counter=counter(0, 1 + s // bpe))
                                   ).permutation(len(X))
        xb = X[perm[(s % bpe) * m:(s % bpe + 1) * m]]
        _, g = gan.discriminator_gradients(G, D, xb, noise(1 + 2 * s))
        update("D", D, g, s)
        _, g = gan.generator_gradients(G, D, noise(2 + 2 * s), loss="non_saturating")
        update("G", G, g, s)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_momentum_ramp_lr_decay_and_adam_match_replay(opt):
    X, G, D = _setup(np.float64)
    G2, D2 = G.copy(), D.copy()
    kw = dict(opt=opt, lr=0.05 if opt == "sgd" else 0.01, decay=1.05, mom0=0.5, mom1=0.9,
              sat=2, b1=0.5, b2=0.999, eps=1e-8)
    train_gan(X, G, D, n_epochs=3, batch_size=32, optimizer=opt, learning_rate=kw["lr"],
              lr_decay=kw["decay"], momentum=0.5, final_momentum=0.9, momentum_saturate=2,
              random_state=2)
    _replay_general(X, G2, D2, steps=9, m=32, seed=2, **kw)
    np.testing.assert_allclose(G.params, G2.params, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(D.params, D2.params, rtol=1e-9, atol=1e-10)


def test_history_and_callback():
    X, G, D = _setup()
    seen = []
    h = train_gan(X, G, D, n_epochs=3, batch_size=32,
                  callback=lambda tr, info: seen.append(info["step"]), random_state=0)
    assert seen == list(range(1, 10))
    assert set(h) == {"d_loss", "g_loss", "d_acc_real", "d_acc_fake", "trainer"}
    for name in ("d_acc_real", "d_acc_fake"):
        assert ((h[name] >= 0) & (h[name] <= 1)).all()
    assert h["trainer"].step == 9


@pytest.mark.parametrize("opts", OPTIONS[:3] + OPTIONS[4:],
                         ids=["sgd", "k2-normal-minimax", "adam", "simultaneous"])
def test_interrupted_and_resumed_equals_uninterrupted(backend, tmp_path, opts):
    X, G, D = _setup()
    full = GANTrainer(G, D, batch_size=16, random_state=4, backend=backend, **opts)
    full.fit(X, 2)
    full.fit(X, 1)                           # n_epochs on a second fit means more epochs
    assert full.step == 18

    X, G, D = _setup()
    part = GANTrainer(G, D, batch_size=16, random_state=4, backend=backend, **opts)
    part.fit(X, 2, callback=lambda tr, info: info["step"] == 5)   # "Ctrl-C" after step 5
    assert part.step == 5
    path = tmp_path / "run.gan"
    part.save(path)
    back = GANTrainer.load(path, backend=backend)
    back.resume(X)
    assert back.step == 12
    back.save(path)
    back = GANTrainer.load(path, backend=backend)
    back.fit(X, 1)
    np.testing.assert_array_equal(back.G.params, full.G.params)
    np.testing.assert_array_equal(back.D.params, full.D.params)
    for name, arr in full.history.items():
        np.testing.assert_array_equal(back.history[name], arr)


def test_checkpoint_corruption_is_detected(tmp_path):
    X, G, D = _setup()
    tr = GANTrainer(G, D, batch_size=16, random_state=1)
    tr.fit(X, 1)
    path = tmp_path / "c.gan"
    tr.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.gan"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a valid dlkernels GAN checkpoint"):
        GANTrainer.load(bad)
    (tmp_path / "t.gan").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a valid"):
        GANTrainer.load(tmp_path / "t.gan")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="signature"):
        GANTrainer.load(tmp_path / "other.npz")


def test_nan_stops_with_last_good_parameters(backend):
    X, G, D = _setup()
    good = {"G": G.params.copy(), "D": D.params.copy(), "step": 0}

    def keep(tr, info):
        good["G"], good["D"], good["step"] = G.params.copy(), D.params.copy(), info["step"]

    with pytest.raises(GANTrainingError, match=r"non-finite .* at step \d+") as err:
        train_gan(X, G, D, n_epochs=50, batch_size=16, learning_rate=1e30, momentum=0.9,
                  callback=keep, random_state=0, backend=backend)
    assert f"at step {good['step']}" in str(err.value)
    assert np.isfinite(G.params).all() and np.isfinite(D.params).all()
    np.testing.assert_array_equal(G.params, good["G"])
    np.testing.assert_array_equal(D.params, good["D"])


def test_training_errors_change_nothing():
    X, G, D = _setup()
    G2 = gan.MLP([2, 8, 3], ["relu", "identity"], random_state=0)
    D2 = gan.MLP([2, 8, 2], ["relu", "identity"], random_state=0)
    before = (G.params.copy(), D.params.copy())
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    cases = [
        (dict(X=X, G=G, D=D2), ValueError, "D: expected an output width of 1"),
        (dict(X=X, G=G2, D=D), ValueError, "D: expected an input width of 3"),
        (dict(X=X[:, :1], G=G, D=D), ValueError, "X: expected 2 columns"),
        (dict(X=Xnan, G=G, D=D), ValueError, "X: expected finite"),
        (dict(X=X.astype(np.float64), G=G, D=D), TypeError, "X: expected dtype float32"),
        (dict(X=X, G=G, D=D, batch_size=97), ValueError, r"batch_size: expected an integer <= len\(X\) = 96"),
        (dict(X=X, G=G, D=D, batch_size=0), ValueError, "batch_size"),
        (dict(X=X, G=G, D=D, k=0), ValueError, "k: expected an integer >= 1"),
        (dict(X=X, G=G, D=D, n_epochs=0), ValueError, "n_epochs"),
        (dict(X=X, G=G, D=D, noise="cauchy"), ValueError, "noise"),
        (dict(X=X, G=G, D=D, optimizer="rmsprop"), ValueError, "optimizer"),
        (dict(X=X, G=G, D=D, g_loss="hinge"), ValueError, "g_loss"),
        (dict(X=X, G=G, D=D, learning_rate=-1.0), ValueError, "learning_rate"),
        (dict(X=X, G=G, D=D, learning_rate=(1.0,)), ValueError, "learning_rate"),
        (dict(X=X, G=G, D=D, momentum=1.0), ValueError, "momentum"),
        (dict(X=X, G=G, D=D, final_momentum=0.9), ValueError, "final_momentum"),
        (dict(X=X, G=G, D=D, lr_decay=0.5), ValueError, "lr_decay"),
        (dict(X=X, G=G, D=D, simultaneous="yes"), TypeError, "simultaneous"),
        (dict(X=X, G=G, D=D, callback=3), TypeError, "callback"),
        (dict(X=X, G=G, D=D, backend="julia"), ValueError, "backend"),
        (dict(X=X, G=None, D=D), TypeError, "G: expected a dlkernels.gan.MLP"),
    ]
    for kw, exc, words in cases:
        args = dict(n_epochs=1, batch_size=16)
        args.update(kw)
        with pytest.raises(exc, match=words):
            train_gan(args.pop("X"), args.pop("G"), args.pop("D"), **args)
    np.testing.assert_array_equal(G.params, before[0])
    np.testing.assert_array_equal(D.params, before[1])
    tr = GANTrainer(G, D, batch_size=16)
    tr.fit(X, 1)
    with pytest.raises(ValueError, match="X: expected 96 rows"):
        tr.fit(X[:50], 1)


@pytest.mark.slow
def test_ring_gan_captures_the_modes(restore_threads):
    """The issue's acceptance test: a GAN on the 8-Gaussian ring (radius 2, std
    0.02) with fixed seeds captures >= 7 of 8 modes with >= 80% high-quality
    samples for at least 2 of 3 seeds (stops once two seeds pass).

    G 2-128-128-2 (ReLU), D 2-128-128-1 (leaky ReLU), 4000 Adam steps of batch
    512 with the rate decaying from 1e-3 to 4e-5; measured with the compiled
    training steps (2026-11-30): seeds 0, 1, 2 reach 8 modes with 82%, 86%, 82%
    high-quality samples.  One thread (the result does not depend on it):
    about 18 s a seed (75 s before the steps ran inside one compiled call);
    slow-marked to keep CI's run short (``python -m pytest -m slow``).
    """
    dlkernels.set_num_threads(1)
    z = np.random.default_rng(12345).standard_normal((2000, 2)).astype(np.float32)
    results = []
    for seed in range(3):
        X = gan.sample_ring(8192, random_state=seed)
        G = gan.MLP([2, 128, 128, 2], ["relu", "relu", "identity"], random_state=seed + 10)
        D = gan.MLP([2, 128, 128, 1], ["leaky_relu", "leaky_relu", "identity"],
                    random_state=seed + 20)
        train_gan(X, G, D, n_epochs=250, batch_size=512, optimizer="adam", learning_rate=1e-3,
                  lr_decay=1.0008, noise="normal", random_state=seed, progress=False)
        m = gan.mode_metrics(G.forward(z), gan.ring_modes(), 0.02)
        results.append((m["modes_captured"], m["high_quality"]))
        if sum(c >= 7 and hq >= 0.8 for c, hq in results) >= 2:
            break
    assert sum(c >= 7 and hq >= 0.8 for c, hq in results) >= 2, results
