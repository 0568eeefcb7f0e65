"""Minibatch training of a GAN: Algorithm 1 of Goodfellow et al. (2014).

Each training step does ``k`` discriminator updates -- each on a fresh
minibatch of noise from the prior and a fresh minibatch of data -- then one
generator update on fresh noise.  With ``batches_per_epoch = len(X) //
batch_size``, ``n_epochs`` epochs are ``batches_per_epoch * n_epochs`` steps.

Random numbers (all from the Philox key of ``random_state``; none depends on
the backend or the thread count, so a seed gives bit-identical training):

* the noise of step s, discriminator update j (j = 0..k-1) and of the
  generator update (j = k) is drawn by
  ``numpy.random.Generator(Philox(key, counter=dlkernels.rng.counter(1 + s*(k+1) + j)))``
  (``random`` mapped to [-sqrt 3, sqrt 3] for ``noise="uniform"``, the
  original code's prior; ``standard_normal`` for ``"normal"``), in the
  networks' dtype;
* data minibatches are consecutive slices of a permutation of the rows drawn
  per pass over the data: minibatch b = s*k + j is slice ``b % batches_per_epoch``
  of the permutation of pass ``b // batches_per_epoch``, drawn by
  ``Generator(Philox(key, counter=counter(0, 1 + pass))).permutation(len(X))``.

Everything a step needs is a function of (key, step), so a run saved with
``GANTrainer.save`` and resumed gives bit-identical parameters.

Whole steps run inside one compiled call (the engine's ``train_steps``): the
minibatch gathering, the uniform noise (drawn from the same Philox streams in
the kernel), both networks' passes, the optimizer updates and the history, for
a chunk of steps at a time; Python only prepares a chunk (the permutations of
the passes it touches, the per-update learning rates and momenta, and for
``noise="normal"`` NumPy's normal draws) and looks at the result.  Chunks are
sized to take about 0.2 s (one step when there is a callback), for the
progress bar and Ctrl-C; the chunking never changes a result.  A call saves
each network's parameters and optimizer state as part of its first update
(no separate copy), so that a non-finite loss or parameter can be rolled
back to the step before it: restore, then replay the good steps of the chunk.
``GANTrainer._run_python`` is the same loop written with one kernel call per
layer and NumPy updates: the tests check that both give the same bits.
"""
import time
import math
import os

import numpy as np

from ._backend import resolve
from ._checks import _describe, check_array, check_bool, check_choice, check_float, check_int
from . import rng as _rng
from . import _persist
from ._progress import DeferInterrupt, Progress
from ._threads import blas_single_threaded
from .gan import MLP, _CODE, _check_pair, _d_grad, _g_grad, _PREFER

__all__ = ["GANTrainer", "GANTrainingError", "train_gan"]

_SQRT3 = math.sqrt(3.0)
_HIST = ("d_loss", "g_loss", "d_acc_real", "d_acc_fake")
_CHUNK_SECONDS = 0.2          # target duration of one compiled call (progress, Ctrl-C)
_MAX_PERM_WORDS = 1 << 22     # bound on the permutations handed to one call (int64 words)
_FAILED = {1: "discriminator loss", 2: "generator loss", 3: "parameter update"}


class GANTrainingError(FloatingPointError):
    """A loss or a parameter became NaN/inf; the networks hold the last good parameters.

    Parameters
    ----------
    message : str
        Names the step and what became non-finite.
    """


class GANTrainer:
    """Trains a generator G and a discriminator D (Algorithm 1 of Goodfellow et al. 2014).

    Parameters
    ----------
    G, D : dlkernels.gan.MLP
        Same dtype; D's input width = G's output width, D's output width 1
        (a logit).  Trained in place.
    batch_size : int >= 1
        Minibatch size m (noise and data).
    k : int >= 1, default 1
        Discriminator updates per generator update.
    noise : {"uniform", "normal"}, default "uniform"
        The prior: uniform on [-sqrt 3, sqrt 3] (zero mean, unit variance;
        the original code's choice) or standard normal.
    g_loss : {"non_saturating", "minimax"}, default "non_saturating"
        The generator's objective: ascend log D(G(z)) (the paper's advice for
        training) or descend log(1 - D(G(z))) (Algorithm 1 as written).
    optimizer : {"sgd", "adam"}, default "sgd"
    learning_rate : float > 0 or (float, float), default 0.05
        One rate for both networks or (rate of D, rate of G).
    momentum : float in [0, 1), default 0.5
        SGD momentum: ``v = momentum * v - lr * grad; params += v``.
    final_momentum : float in [0, 1), optional
        With ``momentum_saturate``: the momentum ramps linearly from
        ``momentum`` at epoch 0 to ``final_momentum`` at epoch
        ``momentum_saturate`` (the original code's MomentumAdjustor).
    momentum_saturate : int >= 1, optional
    lr_decay : float >= 1, default 1.0
        Exponential decay: the rate of step s is ``max(lr / lr_decay**s, min_lr)``
        (the original code's ExponentialDecay, e.g. 1.000004).
    min_lr : float >= 0, default 0.0
    beta1, beta2, eps : float
        Adam's parameters (defaults 0.5, 0.999, 1e-8; 0.5 as DCGAN).
    simultaneous : bool, default False
        Update D and G from the same step: the last discriminator minibatch's
        noise is also the generator's, both gradients use the parameters from
        before the step, then both networks are updated.
    random_state : int, sequence of int, SeedSequence, None, or 2 uint64 words
        Seed of the noise and data order (``dlkernels.rng.make_key``), or a
        Philox key itself (a uint64 array of shape (2,), as checkpoints store it).
    backend : {"auto", "numba", "cython"}, optional
    progress : bool or None, default None
        A progress bar on stderr; None shows it for runs longer than 2 s.

    Attributes
    ----------
    step : int
        Steps done so far.
    history : dict of ndarray
        Per step: ``d_loss`` (the minimised discriminator loss of the step's
        last D update, before it), ``g_loss`` (the generator's loss as
        ``generator_gradients`` returns it), ``d_acc_real`` / ``d_acc_fake``
        (share of real rows with logit > 0, of fake rows with logit < 0, on the
        last D minibatch of the step).

    Raises
    ------
    TypeError, ValueError
        For any invalid argument (nothing is changed).
    """

    def __init__(self, G, D, *, batch_size, k=1, noise="uniform", g_loss="non_saturating",
                 optimizer="sgd", learning_rate=0.05, momentum=0.5, final_momentum=None,
                 momentum_saturate=None, lr_decay=1.0, min_lr=0.0, beta1=0.5, beta2=0.999,
                 eps=1e-8, simultaneous=False, random_state=None, backend=None, progress=None):
        _check_pair(G, D)
        self.G, self.D = G, D
        self.batch_size = check_int(batch_size, "batch_size", min=1)
        self.k = check_int(k, "k", min=1)
        self.noise = check_choice(noise, "noise", ("uniform", "normal"))
        self.g_loss = check_choice(g_loss, "g_loss", ("non_saturating", "minimax"))
        self.optimizer = check_choice(optimizer, "optimizer", ("sgd", "adam"))
        if isinstance(learning_rate, (tuple, list)):
            if len(learning_rate) != 2:
                raise ValueError(f"learning_rate: expected a number or 2 numbers (D, G), "
                                 f"got {len(learning_rate)} values")
            lrs = tuple(check_float(v, f"learning_rate[{i}]", min=0.0, min_inclusive=False)
                        for i, v in enumerate(learning_rate))
        else:
            lrs = (check_float(learning_rate, "learning_rate", min=0.0, min_inclusive=False),) * 2
        self.learning_rate = lrs
        self.momentum = check_float(momentum, "momentum", min=0.0, max=1.0, max_inclusive=False)
        if (final_momentum is None) != (momentum_saturate is None):
            raise ValueError("final_momentum: expected final_momentum and momentum_saturate "
                             "together (or neither), got only one of them")
        self.final_momentum = (None if final_momentum is None else
                               check_float(final_momentum, "final_momentum", min=0.0, max=1.0,
                                           max_inclusive=False))
        self.momentum_saturate = (None if momentum_saturate is None else
                                  check_int(momentum_saturate, "momentum_saturate", min=1))
        self.lr_decay = check_float(lr_decay, "lr_decay", min=1.0)
        self.min_lr = check_float(min_lr, "min_lr", min=0.0)
        self.beta1 = check_float(beta1, "beta1", min=0.0, max=1.0, max_inclusive=False)
        self.beta2 = check_float(beta2, "beta2", min=0.0, max=1.0, max_inclusive=False)
        self.eps = check_float(eps, "eps", min=0.0, min_inclusive=False)
        self.simultaneous = check_bool(simultaneous, "simultaneous")
        self.backend = backend
        resolve(backend, "gan", prefer=_PREFER)  # fails now for an unknown/unavailable backend
        if progress is not None:
            progress = check_bool(progress, "progress")
        self.progress = progress
        if isinstance(random_state, np.ndarray) and random_state.dtype == np.uint64 \
                and random_state.shape == (2,):
            self.key = random_state.copy()
        else:
            self.key = _rng.make_key(random_state)
        self.step = 0
        self.target_step = 0
        self.n_rows = None
        self._hist = {h: np.empty(0) for h in _HIST}
        dt = G.dtype
        self._state = {}
        for name, net in (("D", D), ("G", G)):
            self._state[name] = [np.zeros(net.n_params, dt), np.zeros(net.n_params, dt)]
        self._adam_t = [0, 0]

    # ---- state --------------------------------------------------------------------------------
    @property
    def history(self):
        return {h: self._hist[h][:self.step].copy() for h in _HIST}

    def batches_per_epoch(self, n_rows):
        return n_rows // self.batch_size

    def _schedule(self, s0, n, bpe):
        """Per-update optimizer scalars of steps s0 .. s0 + n - 1 (float64):
        (n * k, 2) for D's updates, (n, 2) for G's.  SGD: (momentum, learning
        rate); Adam: (lr_t, eps_t), the bias corrections of update t folded in
        (``lr sqrt(1 - beta2**t) / (1 - beta1**t)`` and ``eps sqrt(1 - beta2**t)``)."""
        k = self.k
        steps = np.arange(s0, s0 + n, dtype=np.int64)
        lrs = []
        for lr in self.learning_rate:
            if self.lr_decay != 1.0:
                lr = np.maximum(lr / np.power(self.lr_decay, steps.astype(np.float64)),
                                self.min_lr)
            lrs.append(np.broadcast_to(np.asarray(lr, np.float64), (n,)))
        sd = np.empty((n * k, 2))
        sg = np.empty((n, 2))
        if self.optimizer == "sgd":
            if self.final_momentum is None:
                mu = np.full(n, self.momentum)
            else:
                frac = np.minimum((steps // bpe) / self.momentum_saturate, 1.0)
                mu = self.momentum + frac * (self.final_momentum - self.momentum)
            sd[:, 0] = np.repeat(mu, k)
            sd[:, 1] = np.repeat(lrs[0], k)
            sg[:, 0] = mu
            sg[:, 1] = lrs[1]
            return sd, sg
        b1, b2 = self.beta1, self.beta2
        for out, lr, t0, per in ((sd, np.repeat(lrs[0], k), self._adam_t[0], k),
                                 (sg, lrs[1], self._adam_t[1], 1)):
            t = np.arange(t0 + 1, t0 + 1 + n * per, dtype=np.float64)
            c2 = np.sqrt(1.0 - np.power(b2, t))
            out[:, 0] = lr * c2 / (1.0 - np.power(b1, t))
            out[:, 1] = self.eps * c2
        return sd, sg

    def _check_X(self, X):
        G = self.G
        X = check_array(X, "X", ndim=2, dtype=G.dtype, finite=True)
        if X.shape[1] != G.sizes[-1]:
            raise ValueError(f"X: expected {G.sizes[-1]} columns (G's output width), "
                             f"got {X.shape[1]}")
        if X.shape[0] < self.batch_size:
            raise ValueError(f"batch_size: expected an integer <= len(X) = {X.shape[0]}, "
                             f"got {self.batch_size}")
        if self.n_rows is not None and X.shape[0] != self.n_rows:
            raise ValueError(f"X: expected {self.n_rows} rows (the data this run started "
                             f"with), got {X.shape[0]}")
        return X

    # ---- the loop -----------------------------------------------------------------------------
    def fit(self, X, n_epochs, *, callback=None):
        """Train for ``n_epochs`` more epochs (``len(X) // batch_size`` steps each).

        Parameters
        ----------
        X : ndarray (n, G.sizes[-1]), finite, of the networks' dtype
            The data (the same array for every call of one run).
        n_epochs : int >= 1
            Additional epochs (on a resumed run too).
        callback : callable, optional
            ``callback(trainer, info)`` after every step, ``info`` a dict
            (step, epoch, d_loss, g_loss, d_acc_real, d_acc_fake); a true
            return value stops training after that step (``resume`` goes on).

        Returns
        -------
        dict of ndarray
            The history of the whole run so far.

        Raises
        ------
        TypeError, ValueError
            Bad data or arguments (nothing changed).
        GANTrainingError
            A non-finite loss or parameter at some step (named in the message);
            G, D and the optimizer state are those from before that step
            (``step`` is the number of completed steps, the history holds
            them; resuming would meet the same failure).
        KeyboardInterrupt
            On Ctrl-C, raised after the chunk of steps in progress completes
            (chunks take about 0.2 s; the trainer is consistent: ``save`` it
            and ``resume`` later).

        Notes
        -----
        The steps run inside compiled calls, a chunk of steps per call
        (module docstring); with a ``callback`` each call runs one step, so
        the callback sees every step.  Neither changes the results.
        """
        X = self._check_X(X)
        n_epochs = check_int(n_epochs, "n_epochs", min=1)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable, got {_describe(callback)}")
        self.n_rows = X.shape[0]
        self.target_step = self.step + n_epochs * self.batches_per_epoch(X.shape[0])
        return self._run(X, callback)

    def resume(self, X, *, callback=None):
        """Continue a run stopped before its target (by a callback, Ctrl-C or a
        checkpoint taken mid-run) up to the target of the ``fit`` that started it.

        Parameters and errors as ``fit`` (without ``n_epochs``).
        """
        X = self._check_X(X)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable, got {_describe(callback)}")
        self.n_rows = X.shape[0]
        return self._run(X, callback)

    def _noise(self, out, stream):
        """Noise of ``stream`` into ``out``: the draws of
        ``Generator(Philox(key, counter=counter(stream)))`` (serial NumPy: a
        parallel fill costs more than it saves on a minibatch of noise)."""
        ctr = self._ctr
        ctr[2] = stream & 0xFFFFFFFFFFFFFFFF
        ctr[3] = stream >> 64
        g = np.random.Generator(np.random.Philox(key=self.key, counter=ctr))
        if self.noise == "uniform":
            dt = out.dtype.type
            g.random(out=out, dtype=out.dtype)
            out *= dt(2.0 * _SQRT3)
            out -= dt(_SQRT3)
        else:
            g.standard_normal(out=out, dtype=out.dtype)
        return out

    def _perm(self, p):
        perm = self._perms.get(p)
        if perm is None:
            g = np.random.Generator(np.random.Philox(key=self.key,
                                                     counter=_rng.counter(0, 1 + p)))
            perm = self._perms[p] = g.permutation(self.n_rows)
        return perm

    def _update(self, which, net, grad, sched):
        """One update of ``net`` from ``grad`` (overwritten), with the row ``sched``
        of ``_schedule``: NumPy in-place steps, the reference of the kernels' updates."""
        dt = net.dtype.type
        p = net.params
        a, b = self._state[which]
        if self.optimizer == "sgd":
            # v = mu v - lr g ; p += v
            a *= dt(sched[0])
            grad *= dt(sched[1])
            a -= grad
            p += a
        else:
            b1, b2 = self.beta1, self.beta2
            # m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g^2
            a *= dt(b1)
            a += dt(1.0 - b1) * grad
            grad *= grad
            b *= dt(b2)
            grad *= dt(1.0 - b2)
            b += grad
            # p -= lr_t m / (sqrt(v) + eps_t)
            np.sqrt(b, out=grad)
            grad += dt(sched[1])
            np.divide(a, grad, out=grad)
            grad *= dt(sched[0])
            p -= grad

    def _prepare(self):
        """Per-run state: the permutation cache and the noise counter."""
        self._perms = {}
        self._ctr = np.zeros(4, np.uint64)

    def _reserve(self, n):
        """History arrays with room for ``n`` steps, grown as steps are done (by
        doubling, up to the target: a run of 10**9 steps allocates nothing up front)."""
        cap = len(self._hist["d_loss"])
        if cap < n:
            new_cap = min(max(n, 2 * cap, 1024), max(n, self.target_step))
            for h in _HIST:
                new = np.full(new_cap, np.nan)
                new[:self.step] = self._hist[h][:self.step]
                self._hist[h] = new

    def _bar(self, n_steps, bpe):
        n_ep = -(-n_steps // bpe)
        bar = Progress(n_steps, self.progress is not False, "train_gan",
                       after=0.0 if self.progress else 2.0)
        return bar, n_ep

    def _after_step(self, bar, intr, callback, start, bpe, n_ep, info):
        """Progress, Ctrl-C and the callback after a chunk; True: stop."""
        bar.update(self.step - start, (self.step - start - 1) // bpe + 1, n_ep)
        if intr.requested:
            bar.clear()
            raise KeyboardInterrupt(f"train_gan: interrupted after step {self.step}; the "
                                    f"trainer is consistent (save() it, resume() later)")
        if callback is not None:
            info = {"step": self.step, "epoch": self.step / bpe, **info}
            if callback(self, info):
                return True
        return False

    def _kernel_buffers(self, eng, m, nx):
        """Workspaces of ``train_steps``, kept across calls (a run's steps allocate
        nothing); rebuilt if the batch size or the optimizer changed."""
        key = (m, nx, self.optimizer)
        tb = getattr(self, "_tbufs", None)
        if tb is None or tb["key"] != key:
            G, D = self.G, self.D
            dt = G.dtype
            tb = self._tbufs = {
                "key": key,
                "g": _layout(eng, G, m), "d": _layout(eng, D, 2 * m),
                "z": np.empty((m, G.sizes[0]), dt), "inp": np.empty((2 * m, nx), dt),
                "gl": np.empty((2 * m, 1), dt), "gD": np.empty(D.n_params, dt),
                "gG": np.empty(G.n_params, dt),
                # where a call's first update of a network saves params, st0 (, st1)
                "g_snap": np.empty((2 + (self.optimizer == "adam"), G.n_params), dt),
                "d_snap": np.empty((2 + (self.optimizer == "adam"), D.n_params), dt)}
        tb["adam_c"] = np.array([self.beta1, 1.0 - self.beta1, self.beta2, 1.0 - self.beta2],
                                self.G.dtype)
        return tb

    def _saved(self):
        """Both networks' parameters and optimizer state."""
        return (self.G.params, self.D.params, *self._state["G"], *self._state["D"])

    def _run(self, X, callback):
        """The training loop: chunks of steps, each one ``train_steps`` call."""
        G, D = self.G, self.D
        m, k = self.batch_size, self.k
        bpe = self.batches_per_epoch(X.shape[0])
        eng = resolve(self.backend, "gan", prefer=_PREFER)
        dt = G.dtype
        self._prepare()
        tb = self._kernel_buffers(eng, m, X.shape[1])
        gl_, dl_ = tb["g"], tb["d"]
        start, total = self.step, self.target_step
        bar, n_ep = self._bar(total - start, bpe)
        chunk = 1 if callback is not None else 4
        nz = G.sizes[0]
        no_noise = np.empty((0, nz), dt)
        max_pass = max(2, _MAX_PERM_WORDS // max(self.n_rows, 1))
        common = dict(X=X, bpe=bpe, k=k, key=self.key,
                      zmul=dt.type(2.0 * _SQRT3), zsub=dt.type(_SQRT3),
                      simultaneous=self.simultaneous,
                      g_mode=2 if self.g_loss == "non_saturating" else 1,
                      adam=self.optimizer == "adam", adam_c=tb["adam_c"],
                      g_params=G.params, g_grad=tb["gG"], g_st0=self._state["G"][0],
                      g_st1=self._state["G"][1], g_snap=tb["g_snap"], g_lay=gl_[0],
                      g_ws=gl_[1], g_wsi=gl_[2], g_slope=G._slope,
                      d_params=D.params, d_grad=tb["gD"], d_st0=self._state["D"][0],
                      d_st1=self._state["D"][1], d_snap=tb["d_snap"], d_lay=dl_[0],
                      d_ws=dl_[1], d_wsi=dl_[2], d_slope=D._slope,
                      z=tb["z"], inp=tb["inp"], gl=tb["gl"])
        with blas_single_threaded(), DeferInterrupt() as intr:
            while self.step < total:
                s0 = self.step
                n = min(chunk, total - s0)
                # passes of the data this chunk reads, at most max_pass of them
                n = max(1, min(n, ((max_pass - 1) * bpe) // k))
                p_lo, p_hi = (s0 * k) // bpe, ((s0 + n) * k - 1) // bpe
                for p in [p for p in self._perms if p < p_lo]:
                    del self._perms[p]
                perms = np.stack([self._perm(p) for p in range(p_lo, p_hi + 1)])
                sd, sg = self._schedule(s0, n, bpe)
                if self.noise == "normal":
                    noise = np.empty((n * (k + 1) * m, nz), dt)
                    for i in range(n):
                        for j in range(k + (not self.simultaneous)):
                            r0 = (i * (k + 1) + j) * m
                            self._noise(noise[r0:r0 + m], 1 + (s0 + i) * (k + 1) + j)
                else:
                    noise = no_noise
                self._reserve(s0 + n)
                hist = np.empty((n, 4))
                call = dict(common, perms=perms, pass0=p_lo, step0=s0, noise=noise,
                            sched_d=sd, sched_g=sg, hist=hist)
                t0 = time.perf_counter()
                status, done, value, saved = eng.train_steps(n_steps=n, **call)
                took = time.perf_counter() - t0
                for c, h in enumerate(_HIST):
                    self._hist[h][s0:s0 + done] = hist[:done, c]
                if status:
                    self._fail_chunk(eng, call, int(status), int(done), float(value),
                                     int(saved), bar)
                self.step = s0 + n
                self._adam_t[0] += n * k
                self._adam_t[1] += n
                if callback is None:     # the next chunk takes about _CHUNK_SECONDS
                    chunk = int(min(max(n * _CHUNK_SECONDS / max(took, 1e-6), 1), 1 << 16))
                last = hist[n - 1]
                info = dict(zip(_HIST, (float(v) for v in last)))
                if self._after_step(bar, intr, callback, start, bpe, n_ep, info):
                    break
        bar.clear()
        return self.history

    def _fail_chunk(self, eng, call, status, done, value, saved, bar):
        """A step of the chunk failed: restore the chunk's start (the kernel saved
        each network it updated before its first update), replay the good steps
        before the failure (the same bits), raise."""
        for bit, name, net in ((1, "D", self.D), (2, "G", self.G)):
            if saved & bit:
                snap = self._tbufs[name.lower() + "_snap"]
                for row, arr in zip(snap, (net.params, *self._state[name])):
                    arr[...] = row
        if done:
            eng.train_steps(n_steps=done, **call)
        s = call["step0"] + done
        self.step = s
        self._adam_t[0] += done * self.k
        self._adam_t[1] += done
        bar.clear()
        raise GANTrainingError(f"train_gan: non-finite {_FAILED[status]} ({value}) at step "
                               f"{s}; G, D and the optimizer state are those from before "
                               f"that step")

    def _run_python(self, X, callback=None):
        """The loop of ``_run`` written out step by step in Python (one kernel
        call per layer, NumPy updates): the reference the tests compare the
        compiled steps with, bit for bit.  Same arguments and effects as ``_run``
        (no chunks, no Ctrl-C handling)."""
        G, D = self.G, self.D
        m, k = self.batch_size, self.k
        bpe = self.batches_per_epoch(X.shape[0])
        eng = resolve(self.backend, "gan", prefer=_PREFER)
        dt = G.dtype
        self._prepare()
        z, zg, xb = (np.empty((m, G.sizes[0]), dt), np.empty((m, G.sizes[0]), dt),
                     np.empty((m, X.shape[1]), dt))
        gD, gG = np.empty(D.n_params, dt), np.empty(G.n_params, dt)
        snap = [a.copy() for a in self._saved()]
        mode = 2 if self.g_loss == "non_saturating" else 1
        with blas_single_threaded():
            while self.step < self.target_step:
                s = self.step
                for a, b in zip(snap, self._saved()):
                    a[...] = b
                t_saved = list(self._adam_t)
                sd, sg = self._schedule(s, 1, bpe)
                base = 1 + s * (k + 1)
                failed = None
                for j in range(k):
                    b = s * k + j
                    pos = (b % bpe) * m
                    np.take(X, self._perm(b // bpe)[pos:pos + m], axis=0, out=xb)
                    self._noise(z, base + j)
                    d_loss, logits = _d_grad(eng, G, D, xb, z, gD)
                    if not math.isfinite(d_loss):
                        failed = (1, d_loss)
                        break
                    if j < k - 1 or not self.simultaneous:
                        self._update("D", D, gD, sd[j])
                if failed is None:
                    acc_r = float(np.count_nonzero(logits[:m] > 0)) / m
                    acc_f = float(np.count_nonzero(logits[m:] < 0)) / m
                    if self.simultaneous:
                        g_loss = _g_grad(eng, G, D, z, mode, gG)
                        if math.isfinite(g_loss):
                            self._update("D", D, gD, sd[k - 1])
                    else:
                        g_loss = _g_grad(eng, G, D, self._noise(zg, base + k), mode, gG)
                    if not math.isfinite(g_loss):
                        failed = (2, g_loss)
                if failed is None:
                    self._update("G", G, gG, sg[0])
                    if not (np.isfinite(G.params).all() and np.isfinite(D.params).all()):
                        failed = (3, float("nan"))
                if failed is not None:
                    for a, b in zip(self._saved(), snap):
                        a[...] = b
                    self._adam_t = t_saved
                    raise GANTrainingError(
                        f"train_gan: non-finite {_FAILED[failed[0]]} ({failed[1]}) at step "
                        f"{s}; G, D and the optimizer state are those from before that step")
                self._reserve(s + 1)
                h = self._hist
                h["d_loss"][s], h["g_loss"][s] = d_loss, g_loss
                h["d_acc_real"][s], h["d_acc_fake"][s] = acc_r, acc_f
                self._adam_t[0] += k
                self._adam_t[1] += 1
                self.step = s + 1
                if callback is not None and callback(self, {"step": self.step}):
                    break
        return self.history

    # ---- checkpoints --------------------------------------------------------------------------
    def save(self, path):
        """Write a checkpoint: both networks, the optimizer state, the random
        key, the step and target step, the history and the options.

        Written atomically (temporary file + rename): a crash never leaves a
        half-written file.  ``GANTrainer.load(path).resume(X)`` (or ``.fit``)
        continues bit-identically to a run that was never interrupted.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        str
            The path written.
        """
        meta = {"options": {o: getattr(self, o) for o in _OPTIONS},
                "nets": {n: {a: getattr(net, a) for a in _NET} for n, net in
                         (("G", self.G), ("D", self.D))},
                "dtype": self.G.dtype.name, "step": self.step, "target_step": self.target_step,
                "n_rows": self.n_rows, "adam_t": list(self._adam_t),
                "key": [int(w) for w in self.key]}
        meta["options"]["learning_rate"] = list(self.learning_rate)
        arrays = {"G": self.G.params, "D": self.D.params,
                  "opt_D_0": self._state["D"][0], "opt_D_1": self._state["D"][1],
                  "opt_G_0": self._state["G"][0], "opt_G_1": self._state["G"][1]}
        for h in _HIST:
            arrays["hist_" + h] = self._hist[h][:self.step]
        return _persist.save(path, arrays, meta, magic=_MAGIC, version=_FORMAT_VERSION)

    @classmethod
    def load(cls, path, *, backend=None):
        """A trainer (with its own G and D) from a file written by ``save``.

        Parameters
        ----------
        path : str or os.PathLike
        backend : {"auto", "numba", "cython"}, optional

        Returns
        -------
        GANTrainer

        Raises
        ------
        OSError
            The file cannot be read.
        ValueError
            A file that is corrupt, truncated, not a GAN checkpoint or of an
            unknown format version.
        """
        arrays, meta, _ = _persist.load(path, magic=_MAGIC, versions=(_FORMAT_VERSION,),
                                        what=_WHAT)

        def bad(why):
            return _persist.invalid(path, _WHAT, why)
        try:
            dt = np.dtype(meta["dtype"])
            nets = {}
            for name in ("G", "D"):
                cfg = meta["nets"][name]
                net = MLP(cfg["sizes"], cfg["activations"], maxout_pieces=cfg["maxout_pieces"],
                          leaky_slope=cfg["leaky_slope"], init=cfg["init"], dtype=dt,
                          random_state=0)
                if arrays[name].shape != net.params.shape or arrays[name].dtype != dt:
                    raise bad(f"parameters of {name} do not fit its architecture")
                net.params[...] = arrays[name]
                nets[name] = net
            opts = dict(meta["options"])
            tr = cls(nets["G"], nets["D"], backend=backend,
                     random_state=np.array(meta["key"], dtype=np.uint64), **opts)
            for name in ("D", "G"):
                for i in range(2):
                    tr._state[name][i][...] = arrays[f"opt_{name}_{i}"]
            tr._adam_t = [int(t) for t in meta["adam_t"]]
            tr.step = int(meta["step"])
            tr.target_step = int(meta["target_step"])
            tr.n_rows = None if meta["n_rows"] is None else int(meta["n_rows"])
            for h in _HIST:
                tr._hist[h] = np.array(arrays["hist_" + h], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(repr(os.fspath(path))):
                raise
            raise bad(f"{type(exc).__name__}: {exc}") from None
        return tr


_MAGIC = "dlkernels.GANTrainer"
_FORMAT_VERSION = 1
_WHAT = "dlkernels GAN checkpoint"
_OPTIONS = ("batch_size", "k", "noise", "g_loss", "optimizer", "learning_rate", "momentum",
            "final_momentum", "momentum_saturate", "lr_decay", "min_lr", "beta1", "beta2", "eps",
            "simultaneous", "progress")
_NET = ("sizes", "activations", "maxout_pieces", "leaky_slope", "init")


def _layout(eng, net, rows):
    """(lay, ws, wsi) of ``net`` for the engine's ``train_steps`` at up to ``rows``
    rows: the layer table (widths, pieces, activation, offsets of W and b in
    ``params`` and of the buffers Y, D, PRE, GPRE, GX in ``ws`` and idx in ``wsi``,
    -1 for a buffer the layer does not use) and the two workspaces.  Each buffer
    starts on a 64-byte boundary."""
    L = len(net.sizes) - 1
    lay = np.full((L, eng.LAY_COLS), -1, np.int64)
    align = 64 // net.dtype.itemsize
    off = [0, 0]

    def take(n, which=0):
        o = off[which]
        off[which] += -(-n // align) * align
        return o

    for i, (n_in, n_out, p) in enumerate(zip(net.sizes[:-1], net.sizes[1:], net.pieces)):
        code = net._codes[i]
        lay[i, eng.L_N_IN], lay[i, eng.L_N_OUT], lay[i, eng.L_P] = n_in, n_out, p
        lay[i, eng.L_CODE] = code
        lay[i, eng.L_W], lay[i, eng.L_B] = net._layout[i][0], net._layout[i][1]
        lay[i, eng.L_Y] = take(rows * n_out)
        if code == _CODE["maxout"]:
            lay[i, eng.L_PRE] = take(rows * n_out * p)
            lay[i, eng.L_GPRE] = take(rows * n_out * p)
            lay[i, eng.L_IDX] = take(rows * n_out, 1)
        else:
            lay[i, eng.L_D] = take(rows * n_out)
        lay[i, eng.L_GX] = take(rows * n_in)
    return lay, np.zeros(off[0], net.dtype), np.zeros(off[1], np.int32)


def train_gan(X, G, D, *, n_epochs, batch_size, k=1, noise="uniform", g_loss="non_saturating",
              optimizer="sgd", learning_rate=0.05, momentum=0.5, final_momentum=None,
              momentum_saturate=None, lr_decay=1.0, min_lr=0.0, beta1=0.5, beta2=0.999, eps=1e-8,
              simultaneous=False, callback=None, random_state=None, backend=None, progress=None):
    """Train G and D in place on the data X; returns the history.

    A shortcut for ``GANTrainer(G, D, ...).fit(X, n_epochs, callback=callback)``.
    The trainer (for ``save`` / ``resume``) is ``history["trainer"]``.

    Parameters
    ----------
    X : ndarray (n, G.sizes[-1])
        The data, finite, of the networks' dtype.
    G, D : dlkernels.gan.MLP
        Generator and discriminator, trained in place.
    n_epochs : int >= 1
        Epochs of ``len(X) // batch_size`` steps.
    batch_size, k, noise, g_loss, optimizer, learning_rate, momentum, final_momentum,
    momentum_saturate, lr_decay, min_lr, beta1, beta2, eps, simultaneous, random_state,
    backend, progress
        As in :class:`GANTrainer`.
    callback : callable, optional
        As in :meth:`GANTrainer.fit`.

    Returns
    -------
    dict
        ``d_loss``, ``g_loss``, ``d_acc_real``, ``d_acc_fake`` (ndarray, one
        entry per step) and ``trainer``.

    Raises
    ------
    TypeError, ValueError
        Invalid arguments or data (nothing changed).
    GANTrainingError
        A non-finite loss or parameter (see ``GANTrainer.fit``).
    """
    tr = GANTrainer(G, D, batch_size=batch_size, k=k, noise=noise, g_loss=g_loss,
                    optimizer=optimizer, learning_rate=learning_rate, momentum=momentum,
                    final_momentum=final_momentum, momentum_saturate=momentum_saturate,
                    lr_decay=lr_decay, min_lr=min_lr, beta1=beta1, beta2=beta2, eps=eps,
                    simultaneous=simultaneous, random_state=random_state, backend=backend,
                    progress=progress)
    tr._check_X(X)
    check_int(n_epochs, "n_epochs", min=1)
    hist = tr.fit(X, n_epochs, callback=callback)
    hist["trainer"] = tr
    return hist
