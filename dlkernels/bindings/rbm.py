"""Bernoulli RBM: energies, conditionals, block Gibbs chains, CD-k / PCD.

Model: visible v in {0,1}^m, hidden h in {0,1}^n, weights W (m, n), visible
bias a (m,), hidden bias b (n,);
``E(v, h) = -a.v - b.h - v W h``, ``p(h_j=1|v) = sigmoid(b_j + (v W)_j)``,
``p(v_i=1|h) = sigmoid(a_i + (W h)_i)``.

Arrays: v (batch, m), h (batch, n).  All float arrays share one dtype,
float32 or float64 (the dtype of W; a float of the other width is a
TypeError; integer/bool inputs are converted).  Every function validates its
input (shapes, dtypes, finiteness, binary or [0, 1] values) and raises
``TypeError`` / ``ValueError`` naming the argument.

Randomness: ``random_state`` is None, an int seed, a
``dlkernels.rng.Streams`` (its epoch advances by one per call, so successive
calls draw fresh numbers and a whole run is reproducible) or a numpy
Generator.  Row / chain ``s`` of a call draws from stream ``s`` of the call's
counter, so results are identical for any thread count and either backend
(see ``dlkernels.engine.numba.rbm`` for the exact layout of the draws).
"""
from collections import namedtuple
from contextlib import contextmanager

import numpy as np

from ._backend import resolve
from ._threads import _blas_controllers, blas_single_threaded  # noqa: F401  (public here too)
from ._checks import (check_array, check_binary, check_bool, check_choice, check_float,
                      check_in_range, check_int, check_max_work, check_no_overlap, check_out,
                      check_work, _describe, COUNT_MAX, WORK_MAX)
from ._progress import INTERRUPTIBLE_MIN_WORK, interruptible
from .rng import as_streams
from .rbm_paths import bin_max, path_thresholds

__all__ = ["energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
           "sample_visible", "gibbs_chains", "cd_gradient", "cd_update", "CDResult",
           "blas_single_threaded", "path_thresholds"]

CDResult = namedtuple("CDResult", ["dW", "da", "db", "chains"])
CDResult.__doc__ = """Result of ``cd_gradient``: dW (m, n), da (m,), db (n,) = E_data - E_model,
and the final states of the negative chains."""

_PREFER = ("cython", "numba")


def _kernels(backend):
    """The engine module (raw kernels; callers keep BLAS single-threaded)."""
    return resolve(backend, "rbm", prefer=_PREFER)


_LIMITED = {}


class _LimitedEngine:
    """An engine module whose kernels each run inside ``blas_single_threaded()``
    (a few microseconds per call): what ``_engine`` hands to code that calls
    the kernels directly (the estimator), so that a multi-threaded BLAS never
    runs inside the kernels' own threads."""

    def __init__(self, module):
        self._module = module
        self.__name__ = module.__name__

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if callable(attr) and not name.startswith("__"):
            def call(*args, **kwargs):
                with blas_single_threaded():
                    return attr(*args, **kwargs)
            call.__name__ = name
            call.__doc__ = getattr(attr, "__doc__", None)
            setattr(self, name, call)
            return call
        return attr


def _engine(backend):
    """The engine for ``backend``, its kernels wrapped in ``blas_single_threaded``."""
    mod = _kernels(backend)
    if mod not in _LIMITED:
        _LIMITED[mod] = _LimitedEngine(mod)
    return _LIMITED[mod]


# The kernels run layers smaller than this (multiply-adds) on the calling
# thread (engine PAR_MIN_WORK); BLAS is left alone for them.
_PAR_MIN_WORK = 1 << 20


def _run(fn, *args, work=None, **kwargs):
    """Call a kernel inside ``blas_single_threaded()``.  ``work``: the largest
    GEMM's multiply-adds; below the kernels' parallel threshold (where every
    layer runs on the calling thread) BLAS is left alone (saves a few
    microseconds per call)."""
    if work is not None and work < _PAR_MIN_WORK:
        return fn(*args, **kwargs)
    with blas_single_threaded():
        return fn(*args, **kwargs)


@contextmanager
def _restored_on_error(arrays, total):
    """Gives the in-place ``arrays`` their contents back when the block raises
    (Ctrl-C in a long call).  Copies only when ``total`` (the call's estimated
    multiply-adds) sends the kernel to ``interruptible``'s worker thread: a
    shorter call cannot be interrupted inside the kernel."""
    saved = [x.copy() for x in arrays] if total >= INTERRUPTIBLE_MIN_WORK else ()
    try:
        yield
    except BaseException:
        for x, old in zip(arrays, saved):
            x[...] = old
        raise


def _long(fn, total, layer, **kwargs):
    """Call a long kernel (it takes ``stop``) so that Ctrl-C interrupts it
    (``_progress.interruptible``; ``total``: the call's estimated
    multiply-adds), through ``_run`` with ``layer`` (the largest GEMM's
    multiply-adds) as its work."""
    return _run(interruptible, fn, total, work=layer, **kwargs)


_UNUSED = object()  # a bias the function does not take (a user's None is an error)


def _weights(W, a=_UNUSED, b=_UNUSED, *, inplace=False):
    """Validated (W, a, b): W 2-d non-empty finite float; a (m,), b (n,) of W's dtype
    (``_UNUSED`` for a bias the caller does not take; None from a user is a TypeError)."""
    if inplace:
        if not isinstance(W, np.ndarray):
            raise TypeError(f"W: expected a numpy array (updated in place), got {_describe(W)}")
        if W.dtype not in (np.float32, np.float64):
            raise TypeError(f"W: expected dtype float32 or float64, got {W.dtype}")
        check_out(W, "W", W.shape, W.dtype)
    W = check_array(W, "W", ndim=2, allow_empty=False)
    dt = W.dtype
    out = [W]
    for x, name, size in ((a, "a", W.shape[0]), (b, "b", W.shape[1])):
        if x is _UNUSED:
            out.append(None)
            continue
        if inplace:
            if not isinstance(x, np.ndarray):
                raise TypeError(f"{name}: expected a numpy array (updated in place), got {_describe(x)}")
            check_out(x, name, (size,), dt)
        else:
            x = check_array(x, name, dtype=dt, shape=(size,))
        out.append(x)
    return tuple(out)


def _finite(arrays, names):
    for x, name in zip(arrays, names):
        if x is not None and x.size and not np.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")


#: entries of W_T compared with W by ``_transposed`` (positions spread over
#: every row and column class; a full comparison costs what the transpose saves)
_WT_PROBES = 64


def _transposed(W_T, W):
    """W_T validated as W's transpose (n, m) for the engine, or a (0, 0)
    array when None (the kernel then makes it).  Checked: dtype, shape,
    finiteness (one pass) and W_T[j, i] == W[i, j] at _WT_PROBES positions
    and at the four corners."""
    if W_T is None:
        return np.empty((0, 0), W.dtype)
    m, n = W.shape
    W_T = check_array(W_T, "W_T", dtype=W.dtype, shape=(n, m))
    _finite((W_T,), ("W_T",))
    t = np.arange(_WT_PROBES, dtype=np.int64)
    i = np.concatenate([(t * 7919 + 13) % m, [0, 0, m - 1, m - 1]])
    j = np.concatenate([(t * 104729 + 29) % n, [0, n - 1, 0, n - 1]])
    if not np.array_equal(W_T[j, i], W[i, j]):
        raise ValueError("W_T: expected the transpose of W (W_T[j, i] == W[i, j]; a copy made "
                         "before W last changed is stale), got a different matrix")
    return W_T


def _states(x, name, dt, ncols, *, binary):
    """A (rows, ncols) non-empty array of dtype dt, binary or in [0, 1]
    (one cheap pass when the values are fine; NaN / inf are reported as such)."""
    x = check_array(x, name, ndim=2, dtype=dt, shape=(None, ncols), allow_empty=False)
    _check_values(x, name, binary)
    return x


def _check_values(x, name, binary):
    if binary:
        ok = bool(np.all((x == 0) | (x == 1)))
    else:
        lo, hi = x.min(), x.max()  # NaN propagates and fails both tests
        ok = bool(lo >= 0 and hi <= 1)
    if not ok:
        _finite((x,), (name,))
        if binary:
            check_binary(x, name)
        check_in_range(x, name, 0, 1)


def _rng(random_state):
    """(key, base counter) of one call: ``Streams.next_counter()``."""
    st = as_streams(random_state)
    return st.key, st.next_counter()


# ---- energies and conditionals ---------------------------------------------------

def energy(v, h, W, a, b, *, backend=None):
    """E(v_s, h_s) = -a.v_s - b.h_s - v_s W h_s for each row s; v, h binary.

    Returns an array of shape (batch,) in W's dtype (sums taken in float64).

    Parameters
    ----------
    v : array_like
        Visible states (batch, m), binary.
    h : array_like
        Hidden states (batch, n), binary.
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        (batch,) in W's dtype.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    _finite((W, a, b), ("W", "a", "b"))
    v = _states(v, "v", W.dtype, W.shape[0], binary=True)
    h = _states(h, "h", W.dtype, W.shape[1], binary=True)
    if h.shape[0] != v.shape[0]:
        raise ValueError(f"h: expected {v.shape[0]} rows (the rows of v), got {h.shape[0]}")
    out = np.empty(v.shape[0], W.dtype)
    _run(_kernels(backend).energy, v, h, W, a, b, out, work=v.shape[0] * W.size)
    return out


def free_energy(v, W, a, b, *, backend=None):
    """F(v_s) = -a.v_s - sum_j softplus(b_j + (v_s W)_j) = -log sum_h exp(-E(v_s, h)).

    v: (batch, m) with values in [0, 1] (binary for the usual meaning).
    Softplus is evaluated stably (max(x, 0) + log1p(exp(-|x|))).

    Parameters
    ----------
    v : array_like
        Visible values (batch, m) in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        (batch,) in W's dtype.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    _finite((W, a, b), ("W", "a", "b"))
    v = _states(v, "v", W.dtype, W.shape[0], binary=False)
    out = np.empty(v.shape[0], W.dtype)
    _run(_kernels(backend).free_energy, v, W, a, b, out, work=v.shape[0] * W.size)
    return out


def _out2(out, shape, dt, inputs=()):
    if out is None:
        return np.empty(shape, dt)
    check_out(out, "out", shape, dt)
    check_no_overlap(out, "out", inputs)
    return out


def _layer_inputs(x, xname, W, bias, bname, to_hidden):
    """The validated (x, W, bias, result shape) of a conditional: x (batch, m)
    to the hidden units when ``to_hidden`` (bias b), else x (batch, n) to the
    visible units (bias a)."""
    if to_hidden:
        W, _, bias = _weights(W, _UNUSED, bias)
    else:
        W, bias, _ = _weights(W, bias, _UNUSED)
    _finite((W, bias), ("W", bname))
    x = _states(x, xname, W.dtype, W.shape[0 if to_hidden else 1], binary=False)
    return x, W, bias, (x.shape[0], W.shape[1 if to_hidden else 0])


def _sample(x, xname, W, bias, bname, to_hidden, random_state, return_probs, backend):
    """``sample_hidden`` (to_hidden) or ``sample_visible``."""
    x, W, bias, shape = _layer_inputs(x, xname, W, bias, bname, to_hidden)
    return_probs = check_bool(return_probs, "return_probs")
    key, ctr = _rng(random_state)
    out = np.empty(shape, W.dtype)
    probs = np.empty(shape if return_probs else (0, 0), W.dtype)
    eng = _kernels(backend)
    _run(eng.sample_hidden if to_hidden else eng.sample_visible, x, W, bias, key, ctr, out, probs,
         work=x.shape[0] * W.size)
    return (out, probs) if return_probs else out


def hidden_probs(v, W, b, *, out=None, backend=None):
    """p(h=1|v) = sigmoid(v W + b), shape (batch, n); v in [0, 1].

    Parameters
    ----------
    v : array_like
        Visible values (batch, m) in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    b : array_like
        Hidden biases (n,).
    out : numpy.ndarray, optional
        C-contiguous writeable output of the result's shape and dtype.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        p(h=1|v), (batch, n) (``out`` when given).

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    v, W, b, shape = _layer_inputs(v, "v", W, b, "b", True)
    out = _out2(out, shape, W.dtype, ((v, "v"), (W, "W"), (b, "b")))
    _run(_kernels(backend).hidden_probs, v, W, b, out, work=v.shape[0] * W.size)
    return out


def visible_probs(h, W, a, *, out=None, backend=None):
    """p(v=1|h) = sigmoid(h W^T + a), shape (batch, m); h in [0, 1].

    Parameters
    ----------
    h : array_like
        Hidden values (batch, n) in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    out : numpy.ndarray, optional
        C-contiguous writeable output of the result's shape and dtype.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        p(v=1|h), (batch, m) (``out`` when given).

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    h, W, a, shape = _layer_inputs(h, "h", W, a, "a", False)
    out = _out2(out, shape, W.dtype, ((h, "h"), (W, "W"), (a, "a")))
    _run(_kernels(backend).visible_probs, h, W, a, out, work=h.shape[0] * W.size)
    return out


def sample_hidden(v, W, b, *, random_state=None, return_probs=False, backend=None):
    """h ~ p(h|v): 0/1 in W's dtype, shape (batch, n); with ``return_probs``
    the tuple (h, p(h=1|v)).  Bias, sigmoid and Bernoulli draw are fused in
    one pass after the GEMM; row s draws from stream s of the call.

    Parameters
    ----------
    v : array_like
        Visible values (batch, m) in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    b : array_like
        Hidden biases (n,).
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    return_probs : bool, default False
        Also return p(h=1|v).
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    h : numpy.ndarray
        (batch, n), 0/1 in W's dtype.
    probs : numpy.ndarray
        p(h=1|v), only with ``return_probs``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    return _sample(v, "v", W, b, "b", True, random_state, return_probs, backend)


def sample_visible(h, W, a, *, random_state=None, return_probs=False, backend=None):
    """v ~ p(v|h): 0/1 in W's dtype, shape (batch, m); see ``sample_hidden``.

    Parameters
    ----------
    h : array_like
        Hidden values (batch, n) in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    return_probs : bool, default False
        Also return p(v=1|h).
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    v : numpy.ndarray
        (batch, m), 0/1 in W's dtype.
    probs : numpy.ndarray
        p(v=1|h), only with ``return_probs``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    ImportError
        If the requested backend cannot be imported.
    """
    return _sample(h, "h", W, a, "a", False, random_state, return_probs, backend)


# ---- block Gibbs chains ----------------------------------------------------------------

def gibbs_chains(v0, W, a, b, k, *, random_state=None, return_hidden=False, mean_last=0,
                 W_T=None, max_work=WORK_MAX, backend=None):
    """Run k block-Gibbs sweeps v -> h -> v on every chain (row of v0) in one call.

    v0: (n_chains, m) binary start states (not modified).  Returns v_k, the
    states after k sweeps; with ``return_hidden`` or ``mean_last > 0`` a tuple
    (v_k, h_k) where h_k is the hidden state drawn in the last sweep (the one
    v_k was drawn from), followed by (mean_v, mean_h) when ``mean_last = r > 0``:
    the mean of the visible states v_{k-r+1} .. v_k and of the hidden states
    drawn in those same r sweeps.  Chain s draws from stream s of the call.

    Parameters
    ----------
    v0 : array_like
        Start states (n_chains, m), binary; not modified.
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    k : int
        Sweeps, >= 0.
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    return_hidden : bool, default False
        Also return h_k.
    mean_last : int, default 0
        r > 0: also return the means over the last r sweeps (0 <= r <= k).
    W_T : numpy.ndarray or None, default None
        W's transpose (n, m), C-contiguous, kept by the caller between calls
        with the same W (e.g. ``np.ascontiguousarray(W.T)``): the call then
        skips making it, which is most of a call with few chains and k = 1
        (784 x 500: 0.3 ms of 0.5 ms).  Checked for dtype, shape,
        finiteness, and against W at 68 entries (a copy made before W
        changed is refused); None: the call makes it.
    max_work : int or None, default 2**46
        Refuse (ValueError naming k) a call estimated above this many
        multiply-adds, k * n_chains * (2 m n + m + n) (an hour or more);
        None: no limit.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    v_k : numpy.ndarray
        (n_chains, m), or the tuple described above.
    h_k : numpy.ndarray
        (n_chains, n), with ``return_hidden`` or ``mean_last > 0``.
    mean_v, mean_h : numpy.ndarray
        float means of the last r sweeps, with ``mean_last = r > 0``.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    KeyboardInterrupt
        Ctrl-C: the chains stop within a sweep; the inputs are unchanged.
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    _finite((W, a, b), ("W", "a", "b"))
    v = _states(v0, "v0", W.dtype, W.shape[0], binary=True)
    k = check_int(k, "k", min=1, max=COUNT_MAX)
    return_hidden = check_bool(return_hidden, "return_hidden")
    mean_last = check_int(mean_last, "mean_last", min=0, max=k)
    max_work = check_max_work(max_work)
    C, (m, n) = v.shape[0], W.shape
    total = k * C * (2 * m * n + m + n)
    check_work(total, max_work, "k", "sweeps")
    v = np.array(v, order="C", copy=True)
    h = np.empty((C, n), W.dtype)
    if mean_last:
        mv = np.empty_like(v)
        mh = np.empty_like(h)
    else:
        mv = mh = np.empty((0, 0), W.dtype)
    WT = _transposed(W_T, W)
    key, ctr = _rng(random_state)
    eng = _kernels(backend)
    _long(eng.gibbs_chains, total, C * W.size, v=v, W=W, a=a, b=b, k=k, key=key,
          ctr=ctr, h=h, mean_last=mean_last, mean_v=mv, mean_h=mh, WT=WT,
          bin_max=bin_max(eng, W.dtype, m, n, C))
    if mean_last:
        return v, h, mv, mh
    if return_hidden:
        return v, h
    return v


# ---- CD-k / PCD ------------------------------------------------------------------------------

def _cd_setup(v_data, W, k, r, persistent, persistent_hidden, inplace, check_chains=True):
    dt = W.dtype
    m, n = W.shape
    v_data = _states(v_data, "v_data", dt, m, binary=False)
    k = check_int(k, "k", min=1, max=COUNT_MAX)
    r = check_int(r, "r", min=1, max=COUNT_MAX)
    if k + r - 1 > COUNT_MAX:
        raise ValueError(f"k, r: expected k + r - 1 <= {COUNT_MAX} sweeps, got {k + r - 1}")
    if persistent is not None and persistent_hidden is not None:
        raise ValueError("persistent_hidden: expected None when persistent is given, got an array "
                         "(give visible or hidden persistent chains, not both)")
    # mode: the name of the engine's cd_step mode constant (resolved at the call)
    mode, chains = "MODE_CD", None
    for x, name, cols, md in ((persistent, "persistent", m, "MODE_PCD"),
                              (persistent_hidden, "persistent_hidden", n, "MODE_PCD_HIDDEN")):
        if x is None:
            continue
        if inplace:
            if not isinstance(x, np.ndarray):
                raise TypeError(f"{name}: expected a numpy array (updated in place), got {_describe(x)}")
            if x.ndim != 2:
                raise ValueError(f"{name}: expected a 2-d array, got {x.ndim}-d array of shape {x.shape}")
            if x.shape[0] == 0:
                raise ValueError(f"{name}: expected at least one chain, got shape {x.shape}")
            check_out(x, name, (x.shape[0], cols), dt)
            if check_chains:
                _check_values(x, name, True)
        else:
            x = np.array(_states(x, name, dt, cols, binary=True), order="C", copy=True)
        mode, chains = md, x
    return v_data, k, r, mode, chains


def _cd_buffers(mode, chains, v_data, W):
    B = v_data.shape[0]
    m, n = W.shape
    if mode == "MODE_CD":
        return np.empty((B, m), W.dtype), np.empty((B, n), W.dtype)
    if mode == "MODE_PCD":
        return chains, np.empty((chains.shape[0], n), W.dtype)
    return np.empty((chains.shape[0], m), W.dtype), chains


def cd_gradient(v_data, W, a, b, *, k=1, r=1, persistent=None, persistent_hidden=None,
                random_state=None, max_work=WORK_MAX, backend=None):
    """CD-k / PCD estimate of the log-likelihood gradient on a minibatch.

    Returns ``CDResult(dW, da, db, chains)`` with
    ``dW = mean_data[v p(h|v)^T] - mean_model[v p(h|v)^T]`` (hidden
    probabilities, not samples, in both terms), ``da``, ``db`` likewise.

    The negative chains run ``k + r - 1`` block-Gibbs sweeps; the model
    statistics are averaged over the chains and over the r visible states
    v_k, ..., v_{k+r-1} (v_t = state after t sweeps): k burn-in sweeps, then
    r averaged steps; r = 1 is classic CD-k.  Chains:

    * ``persistent=None, persistent_hidden=None``: CD-k, one chain per data
      row, started at the data (the first hidden draw uses the data's p(h|v));
    * ``persistent`` (n_chains, m) binary visible states: PCD; the chains
      continue from them, n_chains independent of the batch size;
    * ``persistent_hidden`` (n_chains, n) binary hidden states: PCD in
      scikit-learn's form: each sweep is h -> v -> h (v_t ~ p(v|h),
      statistics at v_t, then h ~ p(h|v_t)).

    ``chains`` is a new array: the final visible states (CD, PCD) or the new
    hidden states (``persistent_hidden``); inputs are never modified.

    Parameters
    ----------
    v_data : array_like
        Minibatch (batch, m), values in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    k : int, default 1
        Burn-in sweeps of the negative chains, >= 1.
    r : int, default 1
        Averaged steps, >= 1.
    persistent : array_like, optional
        Visible chains (n_chains, m), binary (PCD).
    persistent_hidden : array_like, optional
        Hidden chains (n_chains, n), binary (scikit-learn's PCD).
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    max_work : int or None, default 2**46
        Refuse (ValueError naming k) a call estimated above this many
        multiply-adds, (k + r - 1) * n_chains * 3 m n (an hour or more);
        None: no limit.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    CDResult
        ``(dW, da, db, chains)``, new arrays in W's dtype.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    KeyboardInterrupt
        Ctrl-C: the chains stop within a sweep; the inputs are unchanged.
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    _finite((W, a, b), ("W", "a", "b"))
    max_work = check_max_work(max_work)
    v_data, k, r, mode, chains = _cd_setup(v_data, W, k, r, persistent, persistent_hidden, False)
    V, H = _cd_buffers(mode, chains, v_data, W)
    C = V.shape[0]
    total = (k + r - 1) * max(C, v_data.shape[0]) * 3 * W.size
    check_work(total, max_work, "k", "sweeps")
    dW = np.zeros_like(W)
    da = np.zeros_like(a)
    db = np.zeros_like(b)
    key, ctr = _rng(random_state)
    eng = _kernels(backend)
    _long(eng.cd_step, total, max(v_data.shape[0], C) * W.size, vdata=v_data, W=W, a=a, b=b,
          k=k, r=r, mode=getattr(eng, mode), V=V, H=H, key=key, ctr=ctr, gW=dW, ga=da, gb=db,
          scale_pos=1.0 / v_data.shape[0], scale_neg=-1.0 / (r * C), decay=1.0,
          bin_max=bin_max(eng, W.dtype, *W.shape, v_data.shape[0], C))
    return CDResult(dW, da, db, H if mode == "MODE_PCD_HIDDEN" else V)


def cd_update(v_data, W, a, b, *, learning_rate, k=1, r=1, persistent=None,
              persistent_hidden=None, momentum=0.0, velocity=None, weight_decay=0.0,
              negative_scale="chains", random_state=None, check_finite=True, max_work=WORK_MAX,
              backend=None):
    """One CD-k / PCD training step on a minibatch, in place, in one fused call.

    With g = (dW, da, db) the ``cd_gradient`` estimate (same k, r, chains):

    * momentum == 0 and velocity None:
      ``W += lr * (dW - weight_decay * W)``, ``a += lr * da``, ``b += lr * db``
      (the gradient is added straight into W by the kernel: no (m, n) temporary);
    * otherwise ``velocity = (vW, va, vb)`` (arrays like W, a, b, updated in place):
      ``vW = momentum * vW + lr * (dW - weight_decay * W)``, ``W += vW``,
      biases likewise (weight decay applies to W only).

    W, a, b must be C-contiguous writeable float32/float64 arrays; so must
    ``persistent`` / ``persistent_hidden`` (updated in place with the chains'
    new states).  Returns the chains: the persistent array, or for CD-k a new
    array with the final visible states of the negative chains.

    ``negative_scale``: "chains" (default) averages the model term over the
    n_chains chains; "batch" divides its sum by the batch size instead, which
    is scikit-learn's ``BernoulliRBM`` convention (it divides both sums by the
    minibatch length).  ``persistent_hidden`` with k=1, r=1 and
    ``negative_scale="batch"`` is exactly scikit-learn's ``BernoulliRBM._fit``
    step (``h_samples_`` = the hidden chains): v_neg ~ p(v|h_chains),
    h_neg = p(h|v_neg), W += lr/B * (v_pos^T p(h|v_pos) - v_neg^T h_neg),
    biases likewise, then h_chains ~ Bernoulli(h_neg).

    ``check_finite=False`` skips the O(m n) NaN/inf scan of W, a, b and the
    value check of the persistent chains (for callers, such as the estimator,
    that own this state; the kernel only ever writes 0/1 into the chains);
    the data are always checked.

    Parameters
    ----------
    v_data : array_like
        Minibatch (batch, m), values in [0, 1].
    W : numpy.ndarray
        Weights (m, n), float32 or float64, C-contiguous and writeable: updated in place.
    a : numpy.ndarray
        Visible biases (m,), updated in place.
    b : numpy.ndarray
        Hidden biases (n,), updated in place.
    learning_rate : float
        Step size, finite and > 0.
    k : int, default 1
        Burn-in sweeps, >= 1.
    r : int, default 1
        Averaged steps, >= 1.
    persistent : numpy.ndarray, optional
        Visible chains (n_chains, m), updated in place (PCD).
    persistent_hidden : numpy.ndarray, optional
        Hidden chains (n_chains, n), updated in place.
    momentum : float, default 0.0
        In [0, 1).
    velocity : tuple of 3 numpy.ndarray, optional
        (vW, va, vb) like (W, a, b), updated in place.
    weight_decay : float, default 0.0
        >= 0, applied to W.
    negative_scale : {"chains", "batch"}, default "chains"
        How the model term is scaled (see above).
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    check_finite : bool, default True
        False skips the NaN/inf scan of the model and chains.
    max_work : int or None, default 2**46
        Refuse (ValueError naming k) a call estimated above this many
        multiply-adds, (k + r - 1) * n_chains * 3 m n (an hour or more);
        None: no limit.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    numpy.ndarray
        The chains: the persistent array, or (CD-k) the new visible states.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong, or in-place arguments overlap; nothing is modified.
    KeyboardInterrupt
        Ctrl-C: the chains stop within a sweep; W, a, b, the velocity and the
        persistent chains are left as they were.
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b, inplace=True)
    check_finite = check_bool(check_finite, "check_finite")
    if check_finite:
        _finite((W, a, b), ("W", "a", "b"))
    lr = check_float(learning_rate, "learning_rate", min=0.0)
    momentum = check_float(momentum, "momentum", min=0.0, max=1.0)
    weight_decay = check_float(weight_decay, "weight_decay", min=0.0)
    check_choice(negative_scale, "negative_scale", ("chains", "batch"))
    if velocity is not None:
        if not isinstance(velocity, (tuple, list)) or len(velocity) != 3:
            raise TypeError(f"velocity: expected a tuple (vW, va, vb) of arrays, got {_describe(velocity)}")
        for x, name, shape in zip(velocity, ("velocity[0]", "velocity[1]", "velocity[2]"),
                                  (W.shape, a.shape, b.shape)):
            check_out(x, name, shape, W.dtype)
        _finite(velocity, ("velocity[0]", "velocity[1]", "velocity[2]"))
    elif momentum > 0:
        raise ValueError("velocity: expected a tuple (vW, va, vb) of arrays when momentum > 0, got None")
    max_work = check_max_work(max_work)
    v_data, k, r, mode, chains = _cd_setup(v_data, W, k, r, persistent, persistent_hidden, True,
                                           check_finite)
    # arrays written in place must not alias each other or the data
    written = [(W, "W"), (a, "a"), (b, "b")]
    if chains is not None:
        written.append((chains, "persistent" if mode == "MODE_PCD" else "persistent_hidden"))
    if velocity is not None:
        written += [(velocity[0], "velocity[0]"), (velocity[1], "velocity[1]"),
                    (velocity[2], "velocity[2]")]
    for i, (x, name) in enumerate(written):
        check_no_overlap(x, name, written[:i] + [(v_data, "v_data")])
    V, H = _cd_buffers(mode, chains, v_data, W)
    B, C = v_data.shape[0], V.shape[0]
    work = max(B, C) * W.shape[0] * W.shape[1]
    total = (k + r - 1) * work * 3
    check_work(total, max_work, "k", "sweeps")
    kept = () if chains is None else (chains,)
    sp = lr / B
    sn = -lr / (r * (C if negative_scale == "chains" else B))
    key, ctr = _rng(random_state)
    eng = _kernels(backend)
    table = bin_max(eng, W.dtype, *W.shape, B, C)
    if velocity is None:
        with _restored_on_error(kept, total):
            _long(eng.cd_step, total, work, vdata=v_data, W=W, a=a, b=b, k=k, r=r,
                  mode=getattr(eng, mode), V=V, H=H, key=key, ctr=ctr, gW=W, ga=a, gb=b,
                  scale_pos=sp, scale_neg=sn, decay=1.0 - lr * weight_decay, bin_max=table)
    else:
        vW, va, vb = velocity
        with _restored_on_error(kept + tuple(velocity), total):   # scaled before the kernel
            vW *= W.dtype.type(momentum)
            if weight_decay:
                vW -= W.dtype.type(lr * weight_decay) * W
            va *= W.dtype.type(momentum)
            vb *= W.dtype.type(momentum)
            _long(eng.cd_step, total, work, vdata=v_data, W=W, a=a, b=b, k=k, r=r,
                  mode=getattr(eng, mode), V=V, H=H, key=key, ctr=ctr, gW=vW, ga=va, gb=vb,
                  scale_pos=sp, scale_neg=sn, decay=1.0, bin_max=table)
        W += vW
        a += va
        b += vb
    return H if mode == "MODE_PCD_HIDDEN" else V
