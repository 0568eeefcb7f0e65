"""``BernoulliRBM``: a drop-in replacement for scikit-learn's
``sklearn.neural_network.BernoulliRBM`` that trains with dlkernels' kernels.

Same parameters (names, defaults), attributes, methods, dtype rules, sparse
input and verbose output as scikit-learn's class, so code written for it runs
unchanged; the defaults run scikit-learn's algorithm (persistent contrastive
divergence, one Gibbs step per minibatch from ``h_samples_``, learning rate
``learning_rate / batch_size`` on the summed statistics).  Extra parameters
add CD-k / PCD-k with r averaged steps, momentum, weight decay, shuffling,
the backend and the dtype; ``save``/``load`` keep a whole training state so
that a resumed fit is bit for bit the run that was never interrupted.

The estimator needs scikit-learn (the optional extra
``pip install dlkernels[sklearn]``); the functional API in ``dlkernels.rbm``
does not.  Without scikit-learn this module still imports, and creating a
``BernoulliRBM`` raises an ImportError naming the extra.

Input values
------------
As in scikit-learn, the visible data are read as the probabilities of the
visible units being on: binary data or values in [0, 1] (e.g. grey levels
scaled to [0, 1]).  Like scikit-learn, the estimator does not reject finite
values outside [0, 1] (the conditionals are defined for any real input, and
scikit-learn's own estimator checks feed such data); NaN and infinite values,
empty data, a wrong number of features, complex or non-numeric data raise a
ValueError (or TypeError) before any state of the estimator changes.

Differences from scikit-learn
-----------------------------
* Random numbers come from dlkernels' Philox streams, so a seed gives another
  (equally distributed) run than scikit-learn's.  As in scikit-learn, float32
  and float64 fits of one seed draw the same uniforms (here one 32-bit
  half-word per Bernoulli draw, in both dtypes) and so make the same random
  decisions; they differ by rounding.
* A last minibatch shorter than ``batch_size``: the model statistics are
  averaged over the chains (scikit-learn divides their sum by the shorter
  length).
* ``transform`` returns the model's dtype; ``gibbs`` takes ``n_steps``.
* Of scikit-learn's private helpers, ``_mean_hiddens``, ``_sample_hiddens``,
  ``_sample_visibles`` and ``_free_energy`` exist with its semantics (its own
  test file calls them); ``_fit`` does not.
* Extra: ``fit(X, resume=True)``, ``save``/``load``, deferred Ctrl-C.
"""
import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from . import rbm_persist as _rbm_persist
from ._checks import COUNT_MAX as _COUNT_MAX, check_alloc as _check_alloc
from ._checks import WORK_MAX as _WORK_MAX, check_max_work as _check_max_work
from ._checks import check_work as _check_work
from ._progress import interruptible as _interruptible
from . import rng as _rng
from .rbm_paths import bin_max
from ._progress import DeferInterrupt as _DeferInterrupt
from ._progress import Progress as _Progress

try:  # scikit-learn is an optional extra
    import sklearn as _sklearn
    from sklearn.base import (BaseEstimator, ClassNamePrefixFeaturesOutMixin,
                              TransformerMixin)
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.validation import check_is_fitted
    try:
        # scikit-learn >= 1.6: validate_data and __sklearn_tags__
        from sklearn.utils.validation import validate_data
        from sklearn.base import _fit_context
        _SKLEARN_ERROR = None
    except ImportError:  # pragma: no cover - older scikit-learn
        _SKLEARN_ERROR = ImportError(f"scikit-learn >= 1.6 is required, found {_sklearn.__version__}")
except ImportError as _exc:  # pragma: no cover - exercised by a test with a patched import
    _SKLEARN_ERROR = _exc

__all__ = ["BernoulliRBM"]

_EXTRA_MSG = ("dlkernels.rbm.BernoulliRBM needs scikit-learn >= 1.6, an optional extra of "
              "dlkernels: install it with `pip install dlkernels[sklearn]`")

#: the progress bar (stderr) shows only once a verbose fit has run this long
_PROGRESS_AFTER_S = 2.0
_PROGRESS_EVERY_S = 0.25

#: rows per kernel call in transform/score_samples/gibbs (bounds the dense
#: copy of sparse input; the same for dense input so both give equal results)
_CHUNK_ROWS = 4096

#: the stream index (above any chain index) whose draws shuffle the epochs
_SHUFFLE_STREAM = 1 << 127

#: most replicas per chain of ``sampler="pt"``
_MAX_TEMPERATURES = 1024


def _pt_betas(n_temperatures):
    """The inverse temperatures of ``sampler="pt"``: K = n_temperatures
    evenly spaced in [1/K, 1] (1/K, 2/K, ..., 1), or the given ladder
    (strictly increasing, >= 0, ending at 1; float64)."""
    if isinstance(n_temperatures, Integral) and not isinstance(n_temperatures, bool):
        K = int(n_temperatures)
        return np.arange(1, K + 1, dtype=np.float64) / K
    from .rbm_pt import _check_betas
    betas = _check_betas(n_temperatures, "n_temperatures")
    if not 2 <= betas.shape[0] <= _MAX_TEMPERATURES:
        raise ValueError(f"n_temperatures: expected 2 to {_MAX_TEMPERATURES} inverse "
                         f"temperatures, got {betas.shape[0]}")
    return betas


# --------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------
# The estimator validates its input once per call (finite, shape, dtype,
# C-contiguous; parameters finite) and then calls the engine kernels of
# dlkernels.bindings.rbm / rbm_mcmc directly, once per minibatch: no
# per-minibatch re-validation, and data outside [0, 1] (which scikit-learn
# accepts and the public functional API rejects) reach the same kernels.

def _core(backend):
    """The raw engine module; callers hold ``_blas_single_threaded()``."""
    from . import rbm as _rbm_bindings
    return _rbm_bindings._kernels(backend)


def _blas_single_threaded():
    """The kernels parallelise over tiles with single-threaded GEMMs: a
    multi-threaded BLAS inside them oversubscribes the cores.  Entered once
    around a whole fit / transform / score, not per minibatch."""
    from ._threads import blas_single_threaded
    return blas_single_threaded()


def _mcmc(backend):
    from . import rbm_mcmc as _mcmc_bindings
    return _mcmc_bindings._engine(backend)


def _no_probs(dt):
    return np.empty((0, 0), dt)


def _hidden_probs(v, W, b, backend, out):
    _core(backend).hidden_probs(v, W, b, out)


def _gibbs(v, W, a, b, n_steps, streams, backend):
    """n_steps sweeps v -> h -> v from v (any values; the first hidden draw
    uses p(h|v)); returns the visible states (0/1 in W's dtype)."""
    eng = _core(backend)
    dt = W.dtype
    h = np.empty((v.shape[0], W.shape[1]), dt)
    eng.sample_hidden(v, W, b, streams.key, streams.next_counter(), h, _no_probs(dt))
    out = np.empty(v.shape, dt)
    eng.sample_visible(h, W, a, streams.key, streams.next_counter(), out, _no_probs(dt))
    if n_steps > 1:
        _interruptible(eng.gibbs_chains, (n_steps - 1) * v.shape[0] * 2 * W.size, v=out, W=W,
                       a=a, b=b, k=n_steps - 1, key=streams.key, ctr=streams.next_counter(),
                       h=h, mean_last=0, mean_v=_no_probs(dt), mean_h=_no_probs(dt),
                       WT=_no_probs(dt), bin_max=bin_max(eng, dt, *W.shape, v.shape[0]))
    return out


def _pseudo_likelihood(v, W, a, b, streams, backend):
    """scikit-learn's stochastic pseudo-likelihood ``m * log sigmoid(F(v~) - F(v))``,
    v~ = v with its entry i set to 1 - v_i, one i per row.

    Binary rows: the engine kernel of ``dlkernels.rbm.pseudo_likelihood``
    (row s flips bit floor(w m / 2**64), w the first word of stream s).
    Other rows (e.g. grey levels in [0, 1], which scikit-learn's score_samples
    takes): the same formula in NumPy, flipping bit floor(u m), u the first
    float64 uniform of the same stream (the same bit except with probability
    < m * 2**-53).
    """
    epoch = streams.epoch
    key, ctr = streams.key, streams.next_counter()
    out = np.empty(v.shape[0], W.dtype)
    if v.shape[0] == 0:
        return out
    if np.all((v == 0) | (v == 1)):
        _mcmc(backend).pseudo_likelihood(v=v, W=W, a=a, b=b, exact=False, key=key, ctr=ctr,
                                         out=out)
    else:
        out[:] = _pseudo_likelihood_numpy(v, W, a, b, key, epoch)
    return out


def _pseudo_likelihood_numpy(v, W, a, b, key, epoch):
    """The pseudo-likelihood estimate for any v (see ``_pseudo_likelihood``),
    in float64, the flip of row s drawn from stream s of ``counter(0, epoch)``."""
    B, m = v.shape
    u = _rng.uniform_streams(key, 1, B, epoch=epoch, dtype=np.float64)[:, 0]
    idx = np.minimum((u * m).astype(np.int64), m - 1)
    rows = np.arange(B)
    vi = v[rows, idx].astype(np.float64)
    delta = (1.0 - vi) - vi                      # v~_i - v_i
    x = (v @ W).astype(np.float64) + b           # hidden inputs (B, n)
    x_flip = x + delta[:, None] * W[idx].astype(np.float64)
    with np.errstate(under="ignore"):
        dF = -delta * a[idx] - (np.logaddexp(0.0, x_flip) - np.logaddexp(0.0, x)).sum(axis=1)
        return -m * np.logaddexp(0.0, -dF)       # m * log sigmoid(dF), stable


def _make_step(W, a, b, chains, *, lr, k, r, persistent, momentum, velocity, weight_decay,
               streams, eng, pt=None):
    """A function v -> one minibatch update of W, a, b (and the chains) in place.

    persistent: scikit-learn's PCD, whose persistent state is the hidden
    layer of ``batch_size`` chains (``chains`` = ``h_samples_``): each sweep
    draws v ~ p(v|h), takes the statistics at (v, p(h|v)) and draws the next
    h from p(h|v).  Otherwise CD-k from the minibatch.  The update is
    ``lr * (mean_data[v p(h|v)^T] - mean_model[v p(h|v)^T])`` (scikit-learn's
    ``learning_rate / batch_size`` times the summed statistics), the model
    term averaged over the chains and the r steps; weight decay on W only;
    momentum through ``velocity`` = (vW, va, vb).  The same arithmetic as
    ``dlkernels.rbm.cd_update`` (a test checks it), with the checks and the
    set-up done once instead of per minibatch.

    pt = (betas, V, H, accepted): parallel tempering as the negative phase
    (``sampler="pt"``; persistent, r = 1).  Each minibatch runs k PT sweeps
    of the replicas V (C, K, m) / H (C, K, n) (a swap round after every
    sweep; ``accepted`` (C, K-1) counts the accepted swaps), then takes the
    model statistics at the beta = 1 replicas and their p(h|v) (``cd_step``
    with no sweep of its own); ``chains`` receives the beta = 1 hidden states.
    """
    m, n = W.shape
    dt = W.dtype
    cd_step = eng.cd_step
    V_chains = np.empty((chains.shape[0], m), dt)
    s_neg_p = -lr / (r * chains.shape[0])
    if pt is not None:
        betas, V_rep, H_rep, accepted = pt
        H_pt = np.empty((chains.shape[0], n), dt)
    decay = 1.0 - lr * weight_decay
    if velocity is not None:
        vW, va, vb = velocity
        f = dt.type(momentum)
        wd = dt.type(lr * weight_decay)

    def step(v):
        B = v.shape[0]
        table = bin_max(eng, dt, m, n, B, chains.shape[0])
        k_step = k
        if pt is not None:
            mode, V, H, s_neg, k_step = eng.MODE_PCD, V_chains, H_pt, s_neg_p, 0
        elif persistent:
            mode, V, H, s_neg = eng.MODE_PCD_HIDDEN, V_chains, chains, s_neg_p
        else:
            mode, s_neg = eng.MODE_CD, -lr / (r * B)
            V = np.empty((B, m), dt)
            H = np.empty((B, n), dt)
        ctr = streams.next_counter()
        if pt is not None:
            eng.parallel_tempering(V=V_rep, H=H_rep, W=W, a=a, b=b, betas=betas, n_sweeps=k,
                                   swap_every=1, key=streams.key, ctr=ctr, accepted=accepted,
                                   WT=_no_probs(dt), stop=_NEVER_STOP)
            V[:] = V_rep[:, -1]
            chains[:] = H_rep[:, -1]
        if velocity is None:
            cd_step(vdata=v, W=W, a=a, b=b, k=k_step, r=r, mode=mode, V=V, H=H, key=streams.key,
                    ctr=ctr, gW=W, ga=a, gb=b, scale_pos=lr / B, scale_neg=s_neg, decay=decay,
                    bin_max=table, stop=_NEVER_STOP)
        else:
            # in-place ufuncs (an augmented assignment would make these names local)
            np.multiply(vW, f, out=vW)
            if weight_decay:
                np.subtract(vW, wd * W, out=vW)
            np.multiply(va, f, out=va)
            np.multiply(vb, f, out=vb)
            cd_step(vdata=v, W=W, a=a, b=b, k=k_step, r=r, mode=mode, V=V, H=H, key=streams.key,
                    ctr=ctr, gW=vW, ga=va, gb=vb, scale_pos=lr / B, scale_neg=s_neg, decay=1.0,
                    bin_max=table, stop=_NEVER_STOP)
            np.add(W, vW, out=W)
            np.add(a, va, out=a)
            np.add(b, vb, out=b)
    return step


def _make_runner(W, a, b, chains, X, *, batch_size, lr, k, r, persistent, momentum, velocity,
                 weight_decay, streams, eng):
    """A function (order, first, count) -> None that runs minibatches
    first .. first + count - 1 of an epoch of the dense data X in one kernel
    call (``cd_minibatches``): the minibatches of ``_make_step``, the same
    arithmetic and random streams (one epoch of ``streams`` per minibatch),
    without Python between them.  order: the epoch's row order or None."""
    m, n = W.shape
    dt = W.dtype
    if persistent:
        mode, V, H = eng.MODE_PCD_HIDDEN, np.empty((chains.shape[0], m), dt), chains
    else:
        mode, V, H = eng.MODE_CD, np.empty((0, m), dt), np.empty((0, n), dt)
    if velocity is None:
        vW, va, vb = np.empty((0, n), dt), np.empty(0, dt), np.empty(0, dt)
        f, wd = np.zeros(1, dt), np.empty(0, dt)
    else:
        vW, va, vb = velocity
        f = np.array([momentum], dt)
        wd = np.array([lr * weight_decay], dt) if weight_decay else np.empty(0, dt)
    decay = 1.0 - lr * weight_decay
    no_order = np.empty(0, np.int64)
    run_kernel = eng.cd_minibatches
    # every minibatch's row class (the last one may be short) and the chains'
    table = bin_max(eng, dt, m, n, batch_size, X.shape[0] % batch_size, V.shape[0])

    def run(order, first, count):
        ctrs = streams.next_counters(count)
        run_kernel(X=X, order=no_order if order is None else order, first=first, count=count,
                   batch_size=batch_size, W=W, a=a, b=b, k=k, r=r, mode=mode, V=V, H=H,
                   key=streams.key, ctrs=ctrs, lr=lr, decay=decay, f=f, wd=wd, vW=vW, va=va,
                   vb=vb, bin_max=table, stop=_NEVER_STOP)
    return run


#: minibatches of one kernel call of ``fit``: as many as about this many
#: multiply-adds (tens of milliseconds: Ctrl-C and the progress bar wait for
#: the end of a call); 0: one minibatch per call
_CHUNK_WORK = 1 << 25

#: False: fit runs every minibatch from Python (the reference path the
#: minibatch kernel must reproduce bit for bit; tests switch it)
_USE_MINIBATCH_KERNEL = True


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

#: the stop flag of the kernels fit calls directly: never set (Ctrl-C during
#: fit is deferred to the end of the current kernel call, a minibatch
#: boundary, see ``_run_epochs``)
_NEVER_STOP = np.zeros(1, np.int64)


def _after_batch(est):
    """A hook called after every minibatch of ``fit``, or group of minibatches
    run by one kernel call (tests patch it)."""


def _dense_rows(X, start, stop):
    """Rows start:stop of X as a C-contiguous dense array."""
    part = X[start:stop]
    if sp.issparse(part):
        return np.ascontiguousarray(part.toarray())
    return part


def _select_rows(X, idx):
    part = X[idx]
    if sp.issparse(part):
        return np.ascontiguousarray(part.toarray())
    return np.ascontiguousarray(part)


if _SKLEARN_ERROR is not None:

    class BernoulliRBM:  # noqa: D101 - placeholder without scikit-learn
        """Placeholder: scikit-learn is not installed (``pip install dlkernels[sklearn]``)."""

        def __init__(self, *args, **kwargs):
            raise ImportError(f"{_EXTRA_MSG} ({_SKLEARN_ERROR})") from _SKLEARN_ERROR

        @classmethod
        def load(cls, path):
            raise ImportError(f"{_EXTRA_MSG} ({_SKLEARN_ERROR})") from _SKLEARN_ERROR

else:

    _CONSTRAINTS = {
        "n_components": [Interval(Integral, 1, _COUNT_MAX, closed="both")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, _COUNT_MAX, closed="both")],
        "n_iter": [Interval(Integral, 0, _COUNT_MAX, closed="both")],
        "verbose": ["verbose"],
        "random_state": ["random_state", np.random.Generator, _rng.Streams],
        "k": [Interval(Integral, 1, _COUNT_MAX, closed="both")],
        "r": [Interval(Integral, 1, _COUNT_MAX, closed="both")],
        "persistent": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "shuffle": ["boolean"],
        "sampler": [StrOptions({"pcd", "pt"})],
        "n_temperatures": [Interval(Integral, 2, _MAX_TEMPERATURES, closed="both"), "array-like"],
        "backend": [StrOptions({"auto", "numba", "cython"}), None],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64}),
                  None],
    }

    _fit_ctx = _fit_context(prefer_skip_nested_validation=True)

    class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
        """Bernoulli Restricted Boltzmann Machine trained with dlkernels' kernels.

        A drop-in replacement for ``sklearn.neural_network.BernoulliRBM``:
        binary visible and hidden units, trained by stochastic maximum
        likelihood (persistent contrastive divergence, Tieleman 2008).

        Parameters
        ----------
        n_components : int, default=256
            Number of binary hidden units.
        learning_rate : float, default=0.1
            Learning rate. As in scikit-learn, the update of a minibatch is
            ``learning_rate`` times the mean over the minibatch of the data
            statistics minus the mean over the chains of the model statistics
            (scikit-learn writes it as ``learning_rate / batch_size`` times
            their sums). One difference: for a last minibatch shorter than
            ``batch_size``, scikit-learn divides the sum over its
            ``batch_size`` chains by the shorter length (an over-weighted
            negative term); we average over the chains.
        batch_size : int, default=10
            Examples per minibatch; also the number of persistent chains.
        n_iter : int, default=10
            Epochs (passes over the training data) of ``fit``.
        verbose : int, default=0
            When non-zero, ``fit`` prints scikit-learn's line per epoch
            (``[BernoulliRBM] Iteration i, pseudo-likelihood = x, time = ts``)
            to stdout, and a progress bar to stderr once a fit runs longer
            than two seconds.
        random_state : None, int, numpy RandomState / Generator or dlkernels.rng.Streams
            Seeds the Philox streams of the initialisation, the Gibbs
            sampling and the pseudo-likelihood bit flips. An int gives
            reproducible results; a Streams object is used (and advanced)
            as is.
        k : int, default=1
            Gibbs steps of the negative phase before the statistics are taken.
        r : int, default=1
            Further Gibbs steps over which the negative statistics are averaged
            (r=1: classic CD-k / PCD-k).
        persistent : bool, default=True
            True: persistent chains (PCD, scikit-learn's algorithm; the hidden
            states of ``batch_size`` chains are kept in ``h_samples_``).
            False: CD-k, chains start at the minibatch.
        momentum : float in [0, 1), default=0.0
            Momentum of the parameter updates (0: plain SGD as scikit-learn).
        weight_decay : float >= 0, default=0.0
            L2 penalty on the weights: the update adds ``-learning_rate *
            weight_decay * W`` (biases are not decayed).
        shuffle : bool, default=False
            Shuffle the samples before each epoch (scikit-learn does not).
            The order is a function of the seed and the epoch only.
        sampler : {"pcd", "pt"}, default="pcd"
            Negative phase. "pcd": block Gibbs chains (persistent, or CD-k
            with ``persistent=False``). "pt": parallel tempering (Desjardins
            et al. 2010; ``dlkernels.rbm.parallel_tempering``): each of the
            ``batch_size`` persistent chains keeps ``n_temperatures``
            replicas of the visible layer at increasing inverse temperatures
            ending at 1; a minibatch runs ``k`` sweeps of every replica, each
            followed by a round of Metropolis swaps between neighbouring
            replicas, and takes the model statistics at the beta = 1
            replicas. The hot replicas cross between modes of the model that
            plain Gibbs chains rarely leave (at K times the sampling cost).
            Needs ``persistent=True`` and ``r=1``.
        n_temperatures : int >= 2 or array-like, default=5
            Replicas per chain of ``sampler="pt"``: an int K gives the inverse
            temperatures 1/K, 2/K, ..., 1; an array gives the ladder itself
            (strictly increasing, >= 0, ending at 1; at most 1024).
            Unused by ``sampler="pcd"``.
        backend : {"auto", "numba", "cython"} or None, default=None
            Kernel backend (None: the process default, ``dlkernels.set_backend``).
        dtype : {"float32", "float64"} or None, default=None
            Dtype of the model; None follows scikit-learn's rule (float32 data
            gives a float32 model, any other data float64).

        Attributes
        ----------
        components_ : ndarray of shape (n_components, n_features)
            Weights. Stored in Fortran order, so that ``components_.T`` is
            the C-contiguous (n_features, n_components) matrix W that the
            kernels read and update in place (scikit-learn also stores it in
            Fortran order). Assigning another array is accepted; it is copied
            to that layout at the next call that needs it.
        intercept_hidden_ : ndarray of shape (n_components,)
        intercept_visible_ : ndarray of shape (n_features,)
        h_samples_ : ndarray of shape (batch_size, n_components)
            Hidden states of the persistent chains (zeros and unused with
            ``persistent=False``; with ``sampler="pt"``, the hidden states of
            the beta = 1 replicas after the last minibatch).
        pt_replicas_ : ndarray of shape (batch_size, K, n_features)
            Only with ``sampler="pt"``: the visible states of every replica,
            the persistent state of parallel tempering (``[:, -1]`` is the
            beta = 1 replica).
        pt_acceptance_ : ndarray of shape (K - 1,)
            Only with ``sampler="pt"``: the share of accepted swaps between
            replicas k and k + 1 since the fit started (NaN before the first
            swap round); a pair with a low rate (below about 0.1-0.2) calls
            for more temperatures or a closer ladder.
        n_features_in_ : int
        feature_names_in_ : ndarray of shape (n_features_in_,)
            Only when X has string feature names.
        n_iter_ : int
            Completed epochs of the last ``fit``.
        random_state_ : dlkernels.rng.Streams
            The random streams of the training and of ``gibbs``.
        """

        _parameter_constraints: dict = _CONSTRAINTS

        def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10,
                     verbose=0, random_state=None, k=1, r=1, persistent=True, momentum=0.0,
                     weight_decay=0.0, shuffle=False, sampler="pcd", n_temperatures=5,
                     backend=None, dtype=None):
            self.n_components = n_components
            self.learning_rate = learning_rate
            self.batch_size = batch_size
            self.n_iter = n_iter
            self.verbose = verbose
            self.random_state = random_state
            self.k = k
            self.r = r
            self.persistent = persistent
            self.momentum = momentum
            self.weight_decay = weight_decay
            self.shuffle = shuffle
            self.sampler = sampler
            self.n_temperatures = n_temperatures
            self.backend = backend
            self.dtype = dtype

        # ---------------------------------------------------------- helpers
        def _data_dtype(self, X_dtype=None):
            if self.dtype is not None:
                return np.dtype(self.dtype)
            return (np.dtype(np.float32) if X_dtype is not None and np.dtype(X_dtype) == np.float32
                    else np.dtype(np.float64))

        def _validate(self, X, reset, dtype=None):
            """validate_data, undoing its side effects on failure."""
            saved = dict(self.__dict__)
            try:
                X = validate_data(self, X, accept_sparse="csr", reset=reset,
                                  dtype=dtype if dtype is not None else (np.float64, np.float32),
                                  order="C")
                if dtype is None:
                    X = X.astype(self._data_dtype(X.dtype), copy=False)
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(saved)
                raise
            if sp.issparse(X):
                if not np.isfinite(X.data).all():  # pragma: no cover - validate_data checks
                    raise ValueError("X: expected finite values, got NaN or inf")
            elif not X.flags.writeable:
                X = X.copy()  # the kernels take writable buffers (read-only memmaps)
            return X

        def _model_dtype(self):
            return self.components_.dtype

        def _weights(self):
            """W (n_features, n_components), C-contiguous, a view of components_."""
            comp = self.components_
            W = comp.T
            if not (isinstance(comp, np.ndarray) and W.flags.c_contiguous and W.flags.writeable
                    and comp.dtype in (np.float32, np.float64)):
                raise RuntimeError("internal: components_ layout")  # pragma: no cover
            return W

        def _normalize_layout(self):
            """Bring user-assigned arrays to the layout and dtype of the model."""
            comp = np.asarray(self.components_)
            dt = comp.dtype if comp.dtype in (np.float32, np.float64) else np.dtype(np.float64)
            if comp.ndim != 2:
                raise ValueError(f"components_: expected a 2-d array, got shape {comp.shape}")
            if not (comp.T.flags.c_contiguous and comp.flags.writeable and comp.dtype == dt):
                self.components_ = np.asfortranarray(comp, dtype=dt)
            n, m = self.components_.shape
            for name, shape in (("intercept_hidden_", (n,)), ("intercept_visible_", (m,))):
                arr = np.asarray(getattr(self, name))
                if arr.shape != shape:
                    raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
                if arr.dtype != dt or not arr.flags.c_contiguous or not arr.flags.writeable:
                    setattr(self, name, np.ascontiguousarray(arr, dtype=dt).copy())
            if hasattr(self, "h_samples_"):
                h = np.asarray(self.h_samples_)
                if h.ndim != 2 or h.shape[1] != n:
                    raise ValueError(f"h_samples_: expected shape (any, {n}), got {h.shape}")
                if h.dtype != dt or not h.flags.c_contiguous or not h.flags.writeable:
                    self.h_samples_ = np.ascontiguousarray(h, dtype=dt).copy()

        def _score_streams(self):
            rs = self.random_state
            if rs is None or isinstance(rs, Integral):
                # a key of its own: scoring never disturbs the training streams
                return _rng.Streams(None if rs is None else [int(rs), 1])
            return _rng.as_streams(rs)  # a generator object: used (and advanced) as is

        def _init_state(self, X, streams):
            m = X.shape[1]
            n = self.n_components
            dt = X.dtype
            g = _rng.numpy_generator(streams.key, streams.next_counter())
            W = np.ascontiguousarray(g.normal(0.0, 0.01, size=(m, n)).astype(dt))
            self.components_ = W.T  # Fortran-ordered (n, m) view of C-ordered W
            self.intercept_hidden_ = np.zeros(n, dtype=dt)
            self.intercept_visible_ = np.zeros(m, dtype=dt)
            self.h_samples_ = np.zeros((self.batch_size, n), dtype=dt)
            self._velocity = None
            self._drop_pt_state()
            self._n_features_out = n
            self.random_state_ = streams

        def _drop_pt_state(self):
            for name in ("pt_replicas_", "_pt_accepted", "_pt_rounds"):
                self.__dict__.pop(name, None)

        def _pt_state(self, m, n, dt):
            """(betas, V, H, accepted) of ``sampler="pt"`` (None for "pcd"): the
            replicas ``pt_replicas_`` (zeros, i.e. all visible units off, when
            missing or of another shape / dtype) and the swap counters."""
            if self.sampler != "pt":
                self._drop_pt_state()
                return None
            betas = _pt_betas(self.n_temperatures)
            C, K = int(self.batch_size), betas.shape[0]
            V = getattr(self, "pt_replicas_", None)
            acc = getattr(self, "_pt_accepted", None)
            if V is not None:
                V = np.asarray(V)
                if V.shape == (C, K, m) and V.dtype != dt:
                    V = V.astype(dt)
                if V.shape == (C, K, m) and not np.isin(V, (0, 1)).all():
                    raise ValueError("pt_replicas_: expected binary (0/1) visible states")
            if V is None or V.shape != (C, K, m):
                V = np.zeros((C, K, m), dt)
                acc = None
            if acc is None or acc.shape != (C, K - 1) or "_pt_rounds" not in self.__dict__:
                acc = np.zeros((C, K - 1), np.int64)
                self._pt_rounds = np.zeros(1, np.int64)
            self.pt_replicas_ = np.ascontiguousarray(V)
            if not self.pt_replicas_.flags.writeable:
                self.pt_replicas_ = self.pt_replicas_.copy()
            self._pt_accepted = acc
            return betas, self.pt_replicas_, np.zeros((C, K, n), dt), acc

        @property
        def pt_acceptance_(self):
            """Share of accepted swaps per neighbouring replica pair (``sampler="pt"``)."""
            if "_pt_accepted" not in self.__dict__:
                raise AttributeError("pt_acceptance_ exists only after a fit with sampler='pt'")
            acc, rounds = self._pt_accepted, int(self._pt_rounds[0])
            if rounds == 0:
                return np.full(acc.shape[1], np.nan)
            return acc.sum(axis=0) / float(acc.shape[0] * rounds)

        def _trainer(self, X=None):
            """A function v -> one minibatch update (engine resolved, buffers made
            once); with X (dense, sampler "pcd"): a function (order, first,
            count) running minibatches of X in one kernel call instead."""
            self._check_finite_params()
            W, a, b = self._weights(), self.intercept_visible_, self.intercept_hidden_
            dt = W.dtype
            n = W.shape[1]
            h = getattr(self, "h_samples_", None)
            if h is None or h.shape != (int(self.batch_size), n):
                h = np.zeros((int(self.batch_size), n), dtype=dt)
                self.h_samples_ = h
            velocity = None
            if float(self.momentum) != 0.0:
                velocity = getattr(self, "_velocity", None)
                if velocity is None or velocity[0].shape != W.shape or velocity[0].dtype != dt:
                    velocity = (np.zeros_like(W), np.zeros_like(a), np.zeros_like(b))
                    self._velocity = velocity
            else:
                self._velocity = None
            pt = self._pt_state(W.shape[0], n, dt)
            if X is not None:
                return _make_runner(W, a, b, h, X, batch_size=int(self.batch_size),
                                    lr=float(self.learning_rate), k=int(self.k), r=int(self.r),
                                    persistent=bool(self.persistent),
                                    momentum=float(self.momentum), velocity=velocity,
                                    weight_decay=float(self.weight_decay),
                                    streams=self.random_state_, eng=_core(self.backend))
            step = _make_step(W, a, b, h, lr=float(self.learning_rate), k=int(self.k),
                              r=int(self.r), persistent=bool(self.persistent),
                              momentum=float(self.momentum), velocity=velocity,
                              weight_decay=float(self.weight_decay), streams=self.random_state_,
                              eng=_core(self.backend), pt=pt)
            if pt is None:
                return step
            rounds, k = self._pt_rounds, int(self.k)

            def pt_step(v):
                step(v)
                rounds[0] += k   # one swap round after each of the k sweeps
            return pt_step

        def _check_run(self, X):
            """Everything a fit or partial_fit could fail on later, checked before
            the estimator changes: sizes whose arrays cannot fit in memory, k + r - 1
            sweeps, a weight decay that makes the update diverge."""
            n = int(self.n_components)
            item = 8 if self.dtype in (None, "float64", np.float64) else 4
            shape = getattr(X, "shape", None)
            if shape is not None and len(shape) == 2:
                _check_alloc(n * int(shape[1]), item, "n_components")
            _check_alloc(int(self.batch_size) * n, item, "batch_size")
            if int(self.k) + int(self.r) - 1 > _COUNT_MAX:
                raise ValueError(f"k, r: expected k + r - 1 <= {_COUNT_MAX} sweeps, got "
                                 f"{int(self.k) + int(self.r) - 1}")
            if shape is not None and len(shape) == 2:
                # one minibatch is one kernel call (Ctrl-C waits for its end): bound its work
                rows = max(1, min(int(self.batch_size), int(shape[0])))
                _check_work((int(self.k) + int(self.r) - 1) * rows * 3 * n * int(shape[1]),
                            _WORK_MAX, "k", "sweeps per minibatch")
            if self.sampler == "pt":
                if not self.persistent:
                    raise ValueError("sampler='pt': parallel tempering runs persistent chains; "
                                     "expected persistent=True, got persistent=False")
                if int(self.r) != 1:
                    raise ValueError("sampler='pt': expected r=1 (the statistics are taken "
                                     f"once, at the beta = 1 replicas), got r={int(self.r)}")
                K = _pt_betas(self.n_temperatures).shape[0]
                _check_alloc(int(self.batch_size) * K * n, item, "n_temperatures")
                if shape is not None and len(shape) == 2:
                    _check_alloc(int(self.batch_size) * K * int(shape[1]), item,
                                 "n_temperatures")
                    rows = int(self.batch_size)
                    _check_work(int(self.k) * rows * K * 2 * n * int(shape[1]), _WORK_MAX, "k",
                                "parallel tempering sweeps per minibatch")
            if float(self.learning_rate) * float(self.weight_decay) >= 1.0:
                raise ValueError("weight_decay: expected learning_rate * weight_decay < 1 (the "
                                 "decay factor 1 - learning_rate * weight_decay must stay in (0, 1]),"
                                 f" got {float(self.learning_rate) * float(self.weight_decay):g}")

        def _check_finite_params(self):
            for name in ("components_", "intercept_hidden_", "intercept_visible_"):
                if not np.isfinite(getattr(self, name)).all():
                    raise ValueError(f"{name}: expected finite values, got NaN or inf "
                                     "(the model diverged or was assigned bad values)")

        def _epoch_order(self, n_samples, epoch):
            if not self.shuffle:
                return None
            g = _rng.numpy_generator(self.random_state_.key, _rng.counter(_SHUFFLE_STREAM, epoch))
            return g.permutation(n_samples)

        # ------------------------------------------------------------ API
        @_fit_ctx
        def fit(self, X, y=None, *, resume=False):
            """Fit the model to the data X (dense or sparse), ``n_iter`` epochs.

            ``resume=True`` continues the fit that a previous ``fit`` (or a
            loaded file) stopped -- after fewer epochs (raise ``n_iter``) or
            interrupted with Ctrl-C, which stops at a minibatch boundary (the
            end of the kernel call running it) -- from its epoch and
            minibatch, with its chains and random state: the result equals a
            fit that was never interrupted. X must be the same data. Without
            a fit to resume, ``resume=True`` starts a new fit.

            Dense data are trained on by one compiled call per run of
            minibatches (``cd_minibatches``; no Python between minibatches);
            sparse data and ``sampler="pt"`` take one call per minibatch.
            Both give the same bits.

            Returns self.
            """
            resuming = bool(resume) and hasattr(self, "components_") and hasattr(self, "_fit_pos")
            self._check_run(X)
            if resuming:
                X = self._validate(X, reset=False, dtype=self._model_dtype())
                if X.shape[0] != self._fit_pos[2]:
                    raise ValueError(f"X: expected the {self._fit_pos[2]} samples of the fit to "
                                     f"resume, got {X.shape[0]}")
                self._normalize_layout()
            else:
                X = self._validate(X, reset=True)
                self._init_state(X, _rng.as_streams(self.random_state))
                self.n_iter_ = 0
                self._fit_pos = [0, 0, X.shape[0]]
            self._run_epochs(X)
            return self

        def _run_epochs(self, X):
            n_samples = X.shape[0]
            bs = int(self.batch_size)
            n_batches = -(-n_samples // bs)
            epoch, batch0, _ = self._fit_pos
            total = (int(self.n_iter) - epoch) * n_batches - batch0
            progress = _Progress(total, bool(self.verbose), type(self).__name__,
                                 after=_PROGRESS_AFTER_S, every=_PROGRESS_EVERY_S)
            done = 0
            begin = time.time()
            use_kernel = (_USE_MINIBATCH_KERNEL and not sp.issparse(X) and self.sampler != "pt")
            if use_kernel:
                # minibatches of the dense data in kernel calls of about _CHUNK_WORK
                run = self._trainer(X)
                per_batch = ((int(self.k) + int(self.r)) * min(bs, n_samples) * 3
                             * int(self.n_components) * X.shape[1])
                chunk = max(1, _CHUNK_WORK // max(per_batch, 1))
            else:
                step = self._trainer()
                chunk = 1
            with _blas_single_threaded(), _DeferInterrupt() as intr:
                while epoch < int(self.n_iter):
                    order = self._epoch_order(n_samples, epoch)
                    i = batch0
                    while i < n_batches:
                        count = min(chunk, n_batches - i)
                        if use_kernel:
                            run(order, i, count)
                        else:
                            s, e = i * bs, min((i + 1) * bs, n_samples)
                            step(_dense_rows(X, s, e) if order is None
                                 else _select_rows(X, order[s:e]))
                        i += count
                        self._fit_pos = [epoch, i, n_samples]
                        done += count
                        _after_batch(self)
                        progress.update(done, epoch + 1, int(self.n_iter))
                        if intr.requested:
                            progress.clear()
                            raise KeyboardInterrupt(
                                f"{type(self).__name__}.fit interrupted after epoch {epoch} "
                                f"minibatch {i}: save() keeps the state, fit(X, resume=True) "
                                "continues it")
                    if not np.isfinite(self.components_).all():
                        raise ValueError(
                            "learning_rate: expected a rate at which the model converges, got "
                            f"{float(self.learning_rate)!r}: the weights became NaN or inf in "
                            f"epoch {epoch} (lower learning_rate, momentum or weight_decay)")
                    epoch += 1
                    batch0 = 0
                    self._fit_pos = [epoch, 0, n_samples]
                    self.n_iter_ = epoch
                    if self.verbose:
                        progress.clear()
                        end = time.time()
                        print("[%s] Iteration %d, pseudo-likelihood = %.2f, time = %.2fs"
                              % (type(self).__name__, epoch, self.score_samples(X).mean(),
                                 end - begin))
                        begin = end
            progress.clear()

        @_fit_ctx
        def partial_fit(self, X, y=None):
            """Fit the model to one segment X (one minibatch update per call,
            as scikit-learn). The first call creates the model (its dtype:
            ``dtype`` or X's dtype by the rule of ``fit``); later calls convert
            X to that dtype. Returns self."""
            first = not hasattr(self, "components_")
            if not first:
                # scikit-learn's _fit_context validates the parameters only at
                # the first partial_fit; set_params may have changed them since
                self._validate_params()
            self._check_run(X)
            if first:
                X = self._validate(X, reset=True)
                self._init_state(X, _rng.as_streams(self.random_state))
            else:
                X = self._validate(X, reset=False, dtype=self._model_dtype())
                self._normalize_layout()
                if not hasattr(self, "random_state_"):
                    self.random_state_ = _rng.as_streams(self.random_state)
            v = X.toarray() if sp.issparse(X) else X
            with _blas_single_threaded():
                self._trainer()(np.ascontiguousarray(v))
            return self

        def transform(self, X):
            """Hidden activation probabilities P(h=1 | v=X), shape
            (n_samples, n_components), in the model's dtype."""
            check_is_fitted(self)
            X = self._validate(X, reset=False, dtype=self._data_dtype_for_predict())
            W, _, b = self._model_arrays()
            out = np.empty((X.shape[0], W.shape[1]), dtype=W.dtype)
            with _blas_single_threaded():
                for s in range(0, X.shape[0], _CHUNK_ROWS):
                    e = min(s + _CHUNK_ROWS, X.shape[0])
                    _hidden_probs(_dense_rows(X, s, e), W, b, self.backend, out[s:e])
            return out

        def _data_dtype_for_predict(self):
            comp = self.components_
            return comp.dtype if comp.dtype in (np.float32, np.float64) else np.dtype(np.float64)

        def _model_arrays(self):
            """(W, a, b) for the kernels, checked, without changing the estimator
            (no copy when the arrays have the estimator's own layout)."""
            dt = self._data_dtype_for_predict()
            W = np.ascontiguousarray(np.asarray(self.components_, dtype=dt).T)
            a = np.ascontiguousarray(self.intercept_visible_, dtype=dt)
            b = np.ascontiguousarray(self.intercept_hidden_, dtype=dt)
            if W.ndim != 2 or a.shape != (W.shape[0],) or b.shape != (W.shape[1],):
                raise ValueError("components_, intercept_visible_, intercept_hidden_: expected "
                                 f"shapes (n, m), (m,), (n,), got {W.T.shape}, {a.shape}, {b.shape}")
            for x, name in ((W, "components_"), (a, "intercept_visible_"),
                            (b, "intercept_hidden_")):
                if not np.isfinite(x).all():
                    raise ValueError(f"{name}: expected finite values, got NaN or inf")
            return W, a, b

        def gibbs(self, v, n_steps=1, *, max_work=_WORK_MAX):
            """``n_steps`` block Gibbs steps v -> h -> v (one by default, as
            scikit-learn) from the rows of v; returns the visible states as a
            boolean array of v's shape (as scikit-learn). Draws from
            ``random_state_``, so that successive calls differ.

            ``n_steps`` (1 <= n_steps <= 2**62) is a dlkernels extension, as
            is ``max_work`` (default 2**46; None: no limit): a call estimated
            above that many multiply-adds, n_steps * rows * 2 m n, is refused
            with a ValueError naming n_steps.  Ctrl-C stops a long call within
            a sweep and raises KeyboardInterrupt; ``random_state_`` is then
            as it was before the call."""
            check_is_fitted(self)
            if (isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, Integral)
                    or not 1 <= n_steps <= _COUNT_MAX):
                raise ValueError(f"n_steps: expected an integer in [1, {_COUNT_MAX}], got "
                                 f"{n_steps!r}")
            max_work = _check_max_work(max_work)
            X = self._validate(v, reset=False, dtype=self._data_dtype_for_predict())
            W, a, b = self._model_arrays()
            _check_work(int(n_steps) * X.shape[0] * 2 * W.size, max_work, "n_steps", "steps")
            if not hasattr(self, "random_state_"):
                self.random_state_ = _rng.as_streams(self.random_state)
            state = self.random_state_.get_state()
            out = np.empty(X.shape, dtype=bool)
            try:
                with _blas_single_threaded():
                    for s in range(0, X.shape[0], _CHUNK_ROWS):
                        e = min(s + _CHUNK_ROWS, X.shape[0])
                        res = _gibbs(_dense_rows(X, s, e), W, a, b, int(n_steps),
                                     self.random_state_, self.backend)
                        out[s:e] = res != 0
            except BaseException:
                self.random_state_.set_state(state)
                raise
            return out

        def score_samples(self, X):
            """Pseudo-likelihood of X (scikit-learn's estimate: the free
            energy of X and of X with one random bit flipped per row,
            ``n_features * log sigmoid(F(x~) - F(x))``). Stochastic: an int
            ``random_state`` gives the same flips at every call."""
            check_is_fitted(self)
            X = self._validate(X, reset=False, dtype=self._data_dtype_for_predict())
            W, a, b = self._model_arrays()
            streams = self._score_streams()
            out = np.empty(X.shape[0], dtype=W.dtype)
            with _blas_single_threaded():
                for s in range(0, X.shape[0], _CHUNK_ROWS):
                    e = min(s + _CHUNK_ROWS, X.shape[0])
                    out[s:e] = _pseudo_likelihood(_dense_rows(X, s, e), W, a, b, streams,
                                                  self.backend)
            return out

        # ---- scikit-learn's private helpers: its own test file calls them ----
        def _rows(self, v):
            """v as validated 2-d rows of the model's dtype (a 1-d v is one row)."""
            if not sp.issparse(v) and np.ndim(v) == 1:
                v = np.reshape(np.asarray(v), (1, -1))
            return self._validate(v, reset=False, dtype=self._data_dtype_for_predict())

        def _mean_hiddens(self, v):
            """P(h=1 | v), as scikit-learn's private ``_mean_hiddens`` (a 1-d v
            gives a 1-d result)."""
            check_is_fitted(self)
            one = not sp.issparse(v) and np.ndim(v) == 1
            out = self.transform(self._rows(v))
            return out[0] if one else out

        def _sample_hiddens(self, v, rng):
            """Hidden states drawn from P(h | v) with ``rng.uniform`` (a numpy
            RandomState or Generator), as scikit-learn's private helper: a
            boolean array."""
            p = self._mean_hiddens(v)
            return rng.uniform(size=p.shape) < p

        def _sample_visibles(self, h, rng):
            """Visible states drawn from P(v | h) with ``rng.uniform``, as
            scikit-learn's private helper: a boolean array of h's row count."""
            from . import rbm as _api

            check_is_fitted(self)
            W, a, _ = self._model_arrays()
            one = np.ndim(h) == 1
            p = _api.visible_probs(np.atleast_2d(np.asarray(h, dtype=W.dtype)), W, a,
                                   backend=self.backend)
            p = p[0] if one else p
            return rng.uniform(size=p.shape) < p

        def _free_energy(self, v):
            """Free energy F(v) = -a.v - sum_j softplus(b_j + (v W)_j) of each
            row, as scikit-learn's private helper."""
            from . import rbm as _api

            check_is_fitted(self)
            X = self._rows(v)
            W, a, b = self._model_arrays()
            X = X.toarray() if sp.issparse(X) else X
            return _api.free_energy(np.ascontiguousarray(X), W, a, b, backend=self.backend)

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.sparse = True
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
            return tags

        # ---------------------------------------------------- save / load
        def save(self, path):
            """Write the estimator -- parameters, learned arrays, persistent
            chains, momentum buffers, random state and fit position -- to a
            file (an .npz archive of plain arrays; no pickled code), so that
            ``load`` and ``fit(X, resume=True)`` continue the run bit for bit.

            The file is written to a temporary file in the same directory,
            fsynced and moved into place (``os.replace``): a crash never
            leaves a half-written file at ``path``.

            Parameters
            ----------
            path : str or os.PathLike
                The file to write (replaced if it exists).

            Returns
            -------
            str
                ``path`` as a string.

            Raises
            ------
            OSError
                If the file cannot be written (an existing file is left intact).
            """
            return _rbm_persist.save_estimator(self, path)

        @classmethod
        def load(cls, path):
            """An estimator from a file written by ``save``.

            Parameters
            ----------
            path : str or os.PathLike

            Returns
            -------
            BernoulliRBM
                With the saved parameters and, if it was fitted, its state.

            Raises
            ------
            ValueError
                If the file is corrupt, truncated or not a BernoulliRBM file
                of a known format version.
            OSError
                If the file cannot be read (e.g. FileNotFoundError).
            """
            return _rbm_persist.load_estimator(cls, path)
