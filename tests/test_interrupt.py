"""Ctrl-C stops the long kernels, and absurd amounts of work are refused.

Each long call (chains of a user-chosen length, AIS over a user-chosen number
of temperatures) runs in a child process: the child warms the kernel up (so
that compilation is not what gets interrupted), prints ``ready``, starts a
call that would run for hours, and the parent sends it SIGINT.  The child
must raise KeyboardInterrupt, with its inputs as they were, and exit.  The
parent waits at most ``HANG_TIMEOUT`` seconds after the signal: that is a
hang detector, not a speed assertion (the kernels check their stop flag every
sweep / temperature / 4096 single-site steps, so the real latency is a few
milliseconds; the child prints it, and ``-s`` shows it).  GAN training is the
exception that changes its inputs by design: ``GANTrainer.fit`` stops after
the chunk of compiled steps in progress (about 0.2 s), and the child checks
that the interrupted trainer equals one that ran the same steps without
interruption.

Run as a script (``python tests/test_interrupt.py CASE BACKEND``) it plays the
child's part.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dlkernels import rbm
from dlkernels.bindings._checks import WORK_MAX

FAMILY = "rbm"

HANG_TIMEOUT = 60      # seconds from SIGINT to the child's exit before it counts as a hang
READY_TIMEOUT = 600    # start-up, Numba cache loads or compilation
HOURS = 10**12         # a chain length / step count that would run for hours


def _model(dt=np.float64, m=40, n=30, C=8, seed=0):
    g = np.random.default_rng(seed)
    W = g.normal(0, 0.1, (m, n)).astype(dt)
    a = g.normal(0, 0.1, m).astype(dt)
    b = g.normal(0, 0.1, n).astype(dt)
    v = (g.random((C, m)) < 0.5).astype(dt)
    return W, a, b, v


def _case(name, backend):
    """(call(size), arrays whose contents must survive the interrupt)."""
    W, a, b, v = _model()
    if name == "gibbs_chains":
        return (lambda k: rbm.gibbs_chains(v, W, a, b, k, random_state=1, max_work=None,
                                           backend=backend)), (v, W, a, b)
    if name == "cd_update":
        vel = (np.ones_like(W), np.ones_like(a), np.ones_like(b))
        chains = v.copy()
        return (lambda k: rbm.cd_update(v, W, a, b, learning_rate=0.1, k=k, momentum=0.5,
                                        velocity=vel, persistent=chains, random_state=1,
                                        max_work=None, backend=backend)), (v, W, a, b, chains) + vel
    if name == "single_site_gibbs":
        h = np.zeros((v.shape[0], W.shape[1]))
        return (lambda k: rbm.single_site_gibbs(v, h, W, a, b, k * 100, random_state=1,
                                                max_work=None, backend=backend)), (v, h, W)
    if name == "ais_log_partition":
        return (lambda k: rbm.ais_log_partition(W, a, b, n_runs=16, n_betas=max(k, 2),
                                                random_state=1, max_work=None,
                                                backend=backend)), (W, a, b)
    if name == "parallel_tempering":
        return (lambda k: rbm.parallel_tempering(v, W, a, b, k, betas=[0.5, 0.75, 1.0],
                                                 random_state=1, max_work=None,
                                                 backend=backend)), (v, W)
    if name == "exact_log_partition":
        # numpy over chunks of 4096 configurations: 30 x 30 takes about 20 minutes
        return (lambda k: rbm.exact_log_partition(*_model(m=30 if k > 3 else 4,
                                                          n=30 if k > 3 else 4)[:3])), (W, a, b)
    if name == "estimator_gibbs":
        est = rbm.BernoulliRBM(n_components=30, n_iter=1, random_state=0, backend=backend).fit(v)

        def call(k):
            return est.gibbs(v, n_steps=k, max_work=None)
        # the estimator's random state is restored too: compare it as an array
        return call, (v, est.components_, est.random_state_.key, est.random_state_.get_state)
    if name == "gan_fit":
        X, tr = _gan_trainer(backend)
        call = _gan_call(tr, X)
        call.trainer = tr
        return call, (X,)
    raise ValueError(name)


def _gan_trainer(backend):
    from dlkernels import gan
    X = gan.sample_ring(96, random_state=0)
    G = gan.MLP([2, 16, 2], ["relu", "identity"], random_state=1)
    D = gan.MLP([2, 16, 1], ["relu", "identity"], random_state=2)
    return X, gan.GANTrainer(G, D, batch_size=16, random_state=3, backend=backend,
                             progress=False)


def _gan_call(tr, X):
    def call(k):
        return tr.fit(X, k)          # k more epochs (6 steps each): 10**12 is hours
    return call


def _gan_consistent(tr, backend):
    """The interrupted trainer equals one that ran the same steps uninterrupted."""
    X, ref = _gan_trainer(backend)
    ref.fit(X, 3)
    ref.target_step = tr.step            # then run up to the interrupted trainer's step
    ref.resume(X)
    same = (ref.step == tr.step and np.array_equal(ref.G.params, tr.G.params)
            and np.array_equal(ref.D.params, tr.D.params)
            and all(np.array_equal(ref.history[h], tr.history[h]) for h in ref.history))
    return same, tr.step


CASES = ["gibbs_chains", "cd_update", "single_site_gibbs", "parallel_tempering",
         "estimator_gibbs", "gan_fit"]


def child(name, backend):
    call, arrays = _case(name, backend)
    def snapshot():
        return [np.array(x() if callable(x) else x, copy=True) for x in arrays]
    call(3)                                  # compile / load the kernel first
    before = snapshot()
    if name == "ais_log_partition":
        big = 10**7                          # temperatures: n_runs * n_betas * 2mn is hours
    elif name == "gan_fit":
        big = 10**9                          # epochs of 6 steps
    else:
        big = HOURS
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        call(big)
    except KeyboardInterrupt:
        pass
    else:
        print("finished without an interrupt", flush=True)
        sys.exit(3)
    dt = time.perf_counter() - t0
    changed = [i for i, (x, y) in enumerate(zip(snapshot(), before)) if not np.array_equal(x, y)]
    if name == "gan_fit":               # training changes G and D in place, consistently
        same, step = _gan_consistent(call.trainer, backend)
        print(f"stopped at step {step}; equal to an uninterrupted run: {same}", flush=True)
        if not same or step <= 18:
            sys.exit(5)
    print(f"interrupted after {dt:.2f} s; changed inputs: {changed}", flush=True)
    sys.exit(0 if not changed else 4)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("name", CASES + ["ais_log_partition", "exact_log_partition"])
def test_ctrl_c_stops_a_long_call(name, backend):
    if name == "estimator_gibbs":
        pytest.importorskip("sklearn")
    if name == "exact_log_partition" and backend != "numba":
        pytest.skip("NumPy code: no backend to vary")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    proc = subprocess.Popen([sys.executable, __file__, name, backend], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        t0 = time.monotonic()
        line = ""
        while "ready" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"child exited before it was ready (rc {proc.returncode})")
            if time.monotonic() - t0 > READY_TIMEOUT:
                pytest.fail("child not ready in time")
        time.sleep(1.0)                      # let the long call start
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name}: still running {HANG_TIMEOUT} s after Ctrl-C")
        print(out)
        assert proc.returncode == 0, out
        assert "interrupted after" in out and "changed inputs: []" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---- absurd work is refused, naming the argument; max_work overrides -----------------------

@pytest.mark.parametrize("call, name", [
    (lambda W, a, b, v, mw: rbm.gibbs_chains(v, W, a, b, 2**40, max_work=mw), "k"),
    (lambda W, a, b, v, mw: rbm.cd_gradient(v, W, a, b, k=2**40, max_work=mw), "k"),
    (lambda W, a, b, v, mw: rbm.cd_update(v, W.copy(), a.copy(), b.copy(), learning_rate=0.1,
                                          k=2**40, max_work=mw), "k"),
    (lambda W, a, b, v, mw: rbm.single_site_gibbs(v, np.zeros((v.shape[0], W.shape[1])), W, a, b,
                                                  n_steps=2**50, max_work=mw), "n_steps"),
    (lambda W, a, b, v, mw: rbm.ais_log_partition(np.zeros((200, 200)), np.zeros(200),
                                                  np.zeros(200), n_betas=10**8, max_work=mw),
     "n_betas"),   # a larger model: 10**8 temperatures still fit in memory
    (lambda W, a, b, v, mw: rbm.parallel_tempering(v, W, a, b, 2**40, betas=[0.5, 1.0],
                                                   max_work=mw), "n_sweeps"),
])
def test_absurd_work_is_refused(call, name, backend):
    W, a, b, v = _model(m=6, n=5, C=4)
    with pytest.raises(ValueError, match=f"^{name}: expected at most 7.04e\\+13 multiply-adds"):
        call(W, a, b, v, WORK_MAX)
    # a lower limit refuses smaller calls; the message names the limit given
    with pytest.raises(ValueError, match=f"^{name}: expected at most 1e\\+03 multiply-adds"):
        call(W, a, b, v, 1000)
    with pytest.raises(TypeError, match="^max_work: "):
        call(W, a, b, v, 1.5)


def test_exact_log_partition_work_limit():
    W, a, b = np.zeros((10, 12)), np.zeros(10), np.zeros(12)
    with pytest.raises(ValueError, match=r"^W: expected at most 1e\+03 multiply-adds"):
        rbm.exact_log_partition(W, a, b, max_work=1000)
    with pytest.raises(TypeError, match="^max_work: "):
        rbm.exact_log_partition(W, a, b, max_work="big")
    # 2**10 terms of 10 * 12: exactly at the limit is accepted (log Z of the zero model)
    assert rbm.exact_log_partition(W, a, b, max_work=2**10 * 120) == pytest.approx(22 * np.log(2))


def test_estimator_gibbs_work_limit():
    pytest.importorskip("sklearn")
    W, a, b, v = _model(m=6, n=5, C=4)
    est = rbm.BernoulliRBM(n_components=5, n_iter=1, random_state=0).fit(v)
    state = est.random_state_.get_state()
    with pytest.raises(ValueError, match="^n_steps: expected at most"):
        est.gibbs(v, n_steps=2**40)
    with pytest.raises(ValueError, match="^n_steps: expected an integer in"):
        est.gibbs(v, n_steps=2**63)
    assert est.random_state_.get_state() == state
    # under the limit: the same draws as without one
    s1 = est.gibbs(v, n_steps=3)
    est.random_state_.set_state(state)
    s2 = est.gibbs(v, n_steps=3, max_work=None)
    np.testing.assert_array_equal(s1, s2)


def test_max_work_does_not_change_results(backend):
    # the stop flag and the work check draw nothing: same bits with or without a limit,
    # and through the worker thread (work above the interruptible threshold) or not
    from dlkernels.bindings import _progress
    W, a, b, v = _model(C=64, m=64, n=48)
    ref = rbm.gibbs_chains(v, W, a, b, 50, random_state=3, backend=backend)
    old = _progress.INTERRUPTIBLE_MIN_WORK
    try:
        _progress.INTERRUPTIBLE_MIN_WORK = 1   # force the worker thread
        np.testing.assert_array_equal(
            rbm.gibbs_chains(v, W, a, b, 50, random_state=3, max_work=None, backend=backend), ref)
    finally:
        _progress.INTERRUPTIBLE_MIN_WORK = old


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
