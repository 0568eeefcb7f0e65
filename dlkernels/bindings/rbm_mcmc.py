"""Bernoulli RBM Markov chains and partition functions.

* ``single_site_gibbs``: the single-site Gibbs chain over x = (v, h) in
  {0,1}^(m+n): each step picks a site from q (uniform, a given distribution,
  or a systematic scan) and redraws it from its conditional given all other
  units; local fields are updated incrementally (O(n) per visible flip, O(m)
  per hidden flip).  Many chains (rows) run in parallel.
* ``transition_matrix`` / ``boltzmann_distribution``: the exact transition
  matrix of the random-scan chain and the exact joint distribution of a tiny
  RBM (m + n <= 16), for tests and teaching.
* ``exact_log_partition``: log Z by enumerating the smaller layer.
* ``ais_log_partition``: annealed importance sampling (Salakhutdinov & Murray
  2008, "On the quantitative analysis of deep belief networks"), with
  ``log_likelihood`` from its result.
* ``pseudo_likelihood``: scikit-learn's one-bit-flip estimate, or the exact
  sum over all bits.

Model and conventions as in ``dlkernels.bindings.rbm``: W (m, n), a (m,)
visible bias, b (n,) hidden bias, E(v, h) = -a.v - b.h - v W h, one float
dtype (float32 / float64, the dtype of W).

State index of the enumerations (``transition_matrix``,
``boltzmann_distribution``): x = (v_0..v_{m-1}, h_0..h_{n-1}) has index
``sum_k x_k 2**k``, i.e. bit i is v_i and bit m + j is h_j (visible units are
the low bits).  ``state_bits(index, m, n)`` decodes it.

Randomness: ``random_state`` as in ``dlkernels.bindings.rbm``; chain / run /
row ``s`` uses stream ``s`` of the call's counter, so results are identical
for any thread count and both backends.  The exact use of the random words is
documented in ``dlkernels.engine.numba._rbm_single_site`` / ``_rbm_ais`` / ``_rbm_pl``.
"""
import math
from collections import namedtuple

import numpy as np

from . import _backend
from ._checks import (check_array, check_binary, check_bool, check_choice, check_in_range,
                      check_alloc, check_int, check_max_work, check_work, _describe, COUNT_MAX,
                      WORK_MAX)
from ._progress import interruptible
from ._threads import blas_single_threaded
from .rng import as_streams

__all__ = ["single_site_gibbs", "transition_matrix", "boltzmann_distribution", "state_bits",
           "exact_log_partition", "ais_log_partition", "ais_betas", "AISResult",
           "log_likelihood", "pseudo_likelihood"]

AISResult = namedtuple("AISResult", ["log_z", "stderr"])
AISResult.__doc__ = """Result of ``ais_log_partition``: ``log_z``, the estimate of log Z, and
``stderr``, its standard error (delta method on the mean importance weight:
std(w) / (sqrt(n_runs) * mean(w)))."""

_PREFER = ("cython", "numba")

MAX_TRANSITION_UNITS = 16     # m + n for transition_matrix (sparse)
MAX_DENSE_UNITS = 12          # m + n for a dense transition matrix (2**24 entries)
MAX_BOLTZMANN_UNITS = 20      # m + n for boltzmann_distribution
MAX_EXACT_UNITS = 30          # units of the smaller layer for exact_log_partition
_CHUNK_BITS = 12              # configurations per chunk of the enumeration: 2**12
MAX_BASE_BIAS = 1e4           # |base_visible_bias| for ais_log_partition (see _base_bias)
FIELD_REFRESH = 1 << 16       # single-site steps between full recomputes of the local fields


def _engine(backend):
    """The RBM engine module for ``backend`` (its MCMC kernels included)."""
    return _backend.resolve(backend, "rbm", prefer=_PREFER)


def _weights(W, a, b):
    W = check_array(W, "W", ndim=2, allow_empty=False, finite=True)
    dt = W.dtype
    a = check_array(a, "a", dtype=dt, shape=(W.shape[0],), finite=True)
    b = check_array(b, "b", dtype=dt, shape=(W.shape[1],), finite=True)
    return W, a, b


def _states(x, name, dt, ncols, rows=None):
    x = check_array(x, name, ndim=2, dtype=dt, shape=(rows, ncols), finite=True)
    return check_binary(x, name)


def _as_2d(x, name):
    """(array, was_1d): a 1-d state vector is one chain."""
    if isinstance(x, np.ndarray) and x.ndim == 1:
        return x[None, :], True
    if not isinstance(x, np.ndarray) and x is not None:
        try:
            arr = np.asarray(x) if not isinstance(x, (str, bytes, dict, set)) else x
        except (ValueError, TypeError):  # ragged lists...: check_array names the argument
            return x, False
        if isinstance(arr, np.ndarray) and arr.ndim == 1:
            return arr[None, :], True
    return x, False


def _check_q(q, M):
    """q as float64 probabilities over the M = m + n sites."""
    q = check_array(q, "q", ndim=1, shape=(M,), finite=True)
    q = q.astype(np.float64)
    if (q < 0).any():
        raise ValueError(f"q: expected non-negative probabilities, got {q[q < 0][0]!r}")
    total = q.sum()
    if not abs(total - 1.0) <= 1e-6:
        raise ValueError(f"q: expected probabilities summing to 1, got a sum of {total!r}")
    return q / total


def _alias_table(q):
    """Walker/Vose alias table of q with 64-bit integer thresholds.

    Site k = floor(w * M / 2**64) is kept when (w * M mod 2**64) < thr[k],
    else replaced by alias[k]; the realised probabilities equal q up to
    about M * 2**-53.
    """
    M = q.shape[0]
    scaled = q * M
    thr = np.zeros(M, np.float64)
    alias = np.arange(M, dtype=np.int64)
    small = [k for k in range(M) if scaled[k] < 1.0]
    large = [k for k in range(M) if scaled[k] >= 1.0]
    while small and large:
        s = small.pop()
        l = large.pop()
        thr[s] = scaled[s]
        alias[s] = l
        scaled[l] = (scaled[l] + scaled[s]) - 1.0
        (small if scaled[l] < 1.0 else large).append(l)
    for k in large + small:   # numerically ~1: always kept
        thr[k] = 1.0
        alias[k] = k
    t = np.minimum(np.floor(thr * 2.0 ** 64), 2.0 ** 64 - 2048).astype(np.uint64)
    full = thr >= 1.0
    t[full] = np.uint64(0xFFFFFFFFFFFFFFFF)
    return t, alias


# ---- single-site Gibbs ----------------------------------------------------------

def single_site_gibbs(v0, h0, W, a, b, n_steps, *, scan="random", q=None, random_state=None,
                      max_work=WORK_MAX, backend=None):
    """Run ``n_steps`` single-site Gibbs updates on each chain (row) of (v0, h0).

    Each step picks one site k of x = (v, h) (k < m: visible unit k, else
    hidden unit k - m) and sets x_k to 1 with probability
    sigmoid(local field): ``a_k + (W h)_k`` for a visible site,
    ``b_j + (v W)_j`` for a hidden one.

    scan: "random" (site drawn from q each step; q=None is uniform over the
    m + n sites) or "systematic" (sites 0, 1, ..., m+n-1, 0, ... starting at
    site 0 in every call).  q: probabilities of the m + n sites (random scan
    only; sites with q = 0 are never updated).
    v0 (chains, m), h0 (chains, n): binary start states (1-d = one chain), not
    modified.  Returns the final (v, h) in W's dtype.

    The local fields are updated incrementally in W's dtype and recomputed
    from scratch every ``FIELD_REFRESH`` (65536) steps of a chain, which
    bounds the rounding drift of float32 fields over long runs.

    Parameters
    ----------
    v0 : array_like
        Visible start states (chains, m) or (m,), binary.
    h0 : array_like
        Hidden start states (chains, n) or (n,), binary.
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    n_steps : int
        Site updates per chain, >= 0.
    scan : {"random", "systematic"}, default "random"
        Site order.
    q : array_like, optional
        Site probabilities (m + n,), random scan only.
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    max_work : int or None, default 2**46
        Refuse (ValueError naming n_steps) a call estimated above this many
        multiply-adds, n_steps * chains * max(m, n) (an hour or more); None:
        no limit.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    v, h : numpy.ndarray
        Final states in W's dtype, shaped like v0 and h0.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    KeyboardInterrupt
        Ctrl-C: the chains stop within 4096 steps; the inputs are unchanged.
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    dt = W.dtype
    m, n = W.shape
    v0, one_v = _as_2d(v0, "v0")
    h0, one_h = _as_2d(h0, "h0")
    v = _states(v0, "v0", dt, m)
    h = _states(h0, "h0", dt, n)
    if h.shape[0] != v.shape[0]:
        raise ValueError(f"h0: expected {v.shape[0]} rows (the rows of v0), got {h.shape[0]}")
    v = np.array(v, order="C", copy=True)
    h = np.array(h, order="C", copy=True)
    n_steps = check_int(n_steps, "n_steps", min=0, max=COUNT_MAX)
    max_work = check_max_work(max_work)
    total = n_steps * v.shape[0] * max(m, n)
    check_work(total, max_work, "n_steps", "steps")
    scan = check_choice(scan, "scan", ("random", "systematic"))
    thr = np.zeros(0, np.uint64)
    alias = np.zeros(0, np.int64)
    if scan == "systematic":
        if q is not None:
            raise ValueError("q: expected None with scan='systematic' (q applies to the random "
                             f"scan), got {_describe(q)}")
        mode = "SCAN_SYSTEMATIC"
    elif q is None:
        mode = "SCAN_RANDOM"
    else:
        thr, alias = _alias_table(_check_q(q, m + n))
        mode = "SCAN_ALIAS"
    eng = _engine(backend)
    streams = as_streams(random_state)
    ctr = streams.next_counter()
    if v.shape[0] and n_steps:
        WT = np.ascontiguousarray(W.T)
        interruptible(eng.single_site_gibbs, total, v=v, h=h, W=W, WT=WT, a=a, b=b,
                      n_steps=n_steps, mode=getattr(eng, mode), thr=thr, alias=alias,
                      refresh=FIELD_REFRESH, key=streams.key, ctr=ctr)
    if one_v and one_h:
        return v[0], h[0]
    return v, h


# ---- exact enumeration ----------------------------------------------------------

def _bits(idx, nbits):
    return ((idx[:, None] >> np.arange(nbits, dtype=np.int64)) & 1).astype(np.float64)


def state_bits(index, m, n):
    """The (v, h) states of the state indices ``index`` (int or 1-d array):
    bit i of the index is v_i, bit m + j is h_j.  Returns float64 arrays
    (len, m) and (len, n) (1-d for a scalar index).

    Parameters
    ----------
    index : int or array_like of int
        State indices, 0 <= index < 2**(m+n).
    m : int
        Visible units.
    n : int
        Hidden units (m + n <= 63).

    Returns
    -------
    v : numpy.ndarray
        float64 (len, m), or (m,) for a scalar index.
    h : numpy.ndarray
        float64 (len, n), or (n,) for a scalar index.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    """
    m = check_int(m, "m", min=1)
    n = check_int(n, "n", min=1)
    if m + n > 63:
        raise ValueError(f"m, n: expected m + n <= 63 (state indices are 64-bit integers), "
                         f"got {m} + {n}")
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"index: expected integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2 ** (m + n)):
        raise ValueError(f"index: expected values in [0, 2**{m + n}), got {idx.min()}..{idx.max()}")
    x = _bits(np.atleast_1d(idx).astype(np.int64), m + n)
    v, h = x[:, :m], x[:, m:]
    if idx.ndim == 0:
        return v[0], h[0]
    return v, h


def _tiny(W, a, b, limit, what):
    W, a, b = _weights(W, a, b)
    m, n = W.shape
    if m + n > limit:
        raise ValueError(f"W: expected at most {limit} units in all (m + n) for {what}, "
                         f"got m + n = {m + n}")
    return W.astype(np.float64), a.astype(np.float64), b.astype(np.float64)


def _log_weights_all(W, a, b):
    """-E(x) of every state x (index order above), float64."""
    m, n = W.shape
    x = _bits(np.arange(2 ** (m + n), dtype=np.int64), m + n)
    v, h = x[:, :m], x[:, m:]
    return v @ a + h @ b + np.einsum("si,ij,sj->s", v, W, h, optimize=True)


def boltzmann_distribution(W, a, b):
    """The exact joint p(v, h) = exp(-E(v, h)) / Z of every state (m + n <= 20).

    Returns a float64 array of length 2**(m+n); state index
    ``sum_i v_i 2**i + sum_j h_j 2**(m+j)`` (visible units are the low bits).

    Parameters
    ----------
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).

    Returns
    -------
    numpy.ndarray
        float64 (2**(m+n),), sums to 1.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    """
    W, a, b = _tiny(W, a, b, MAX_BOLTZMANN_UNITS, "boltzmann_distribution")
    lw = _log_weights_all(W, a, b)
    mx = lw.max()
    p = np.exp(lw - mx)
    return p / p.sum()


def transition_matrix(W, a, b, q=None, *, sparse=True):
    """The exact transition matrix T[x, y] of the random-scan single-site
    Gibbs chain (the chain of ``single_site_gibbs(scan="random", q=q)``).

    T[x, y] = q_k p(x_k = y_k | x_-k) when y differs from x in site k only;
    T[x, x] = sum_k q_k p(x_k unchanged | x_-k); 0 otherwise.  States are
    indexed as in ``boltzmann_distribution``.  Rows sum to 1 and the
    Boltzmann distribution is stationary (detailed balance).

    m + n <= 16 (sparse, a ``scipy.sparse.csr_array`` with at most
    (m+n+1) nonzeros per row) or m + n <= 12 for ``sparse=False`` (a dense
    float64 ndarray).

    Parameters
    ----------
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    q : array_like, optional
        Site probabilities (m + n,); None is uniform.
    sparse : bool, default True
        A scipy.sparse.csr_array, else a dense ndarray.

    Returns
    -------
    scipy.sparse.csr_array or numpy.ndarray
        float64 (2**(m+n), 2**(m+n)).

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    """
    from scipy.special import expit
    sparse = check_bool(sparse, "sparse")
    limit = MAX_TRANSITION_UNITS if sparse else MAX_DENSE_UNITS
    what = "transition_matrix" + ("" if sparse else " with sparse=False")
    W, a, b = _tiny(W, a, b, limit, what)
    m, n = W.shape
    M = m + n
    q = np.full(M, 1.0 / M) if q is None else _check_q(q, M)
    N = 2 ** M
    idx = np.arange(N, dtype=np.int64)
    x = _bits(idx, M)
    v, h = x[:, :m], x[:, m:]
    field = np.concatenate([a + h @ W.T, b + v @ W], axis=1)       # (N, M)
    sgn = 2.0 * x - 1.0
    stay = q * expit(sgn * field)      # q_k p(x_k keeps its value)
    move = q * expit(-sgn * field)     # q_k p(x_k flips)
    diag = stay.sum(axis=1)
    cols = idx[:, None] ^ (np.int64(1) << np.arange(M, dtype=np.int64))
    if not sparse:
        T = np.zeros((N, N))
        T[idx[:, None], cols] = move
        T[idx, idx] = diag
        return T
    import scipy.sparse as sp
    rows = np.concatenate([np.repeat(idx, M), idx])
    cc = np.concatenate([cols.ravel(), idx])
    vals = np.concatenate([move.ravel(), diag])
    T = sp.csr_array((vals, (rows, cc)), shape=(N, N))
    T.eliminate_zeros()
    T.sort_indices()
    return T


def _logsumexp_update(acc_max, acc_sum, vals):
    mx = vals.max()
    if mx > acc_max:
        acc_sum = acc_sum * math.exp(acc_max - mx) if acc_sum else 0.0
        acc_max = mx
    return acc_max, acc_sum + float(np.exp(vals - acc_max).sum())


def exact_log_partition(W, a, b, *, max_work=WORK_MAX):
    """log Z = log sum_{v,h} exp(-E(v, h)), exactly (float64), by enumerating
    the smaller layer and summing the other analytically:
    log Z = logsumexp_h [b.h + sum_i softplus(a_i + (W h)_i)] (or the same
    over v).  Cost 2**min(m, n) * m * n; practical up to ~25 units on the
    smaller layer, refused (ValueError) beyond 30.  Memory is bounded: the
    configurations are enumerated in chunks of 4096, and Ctrl-C stops the
    enumeration between two chunks (KeyboardInterrupt).

    Parameters
    ----------
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    max_work : int or None, default 2**46
        Refuse (ValueError naming W) a call estimated above this many
        multiply-adds, 2**min(m, n) * m * n; None: no limit.

    Returns
    -------
    float
        log Z.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    KeyboardInterrupt
        Ctrl-C, between two chunks of configurations.
    """
    W, a, b = _weights(W, a, b)
    m, n = W.shape
    L = min(m, n)
    if L > MAX_EXACT_UNITS:
        raise ValueError(f"W: expected at most {MAX_EXACT_UNITS} units on the smaller layer for "
                         f"exact_log_partition (2**L terms), got min(m, n) = {L}; "
                         f"use ais_log_partition")
    check_work(2 ** L * m * n, check_max_work(max_work), "W", "units (2**min(m, n) terms)")
    W = W.astype(np.float64)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if n <= m:   # enumerate h: sum over v analytically
        Wl, own, other = W.T, b, a      # Wl: (n, m)
    else:        # enumerate v
        Wl, own, other = W, a, b        # (m, n)
    chunk = 2 ** min(L, _CHUNK_BITS)
    acc_max, acc_sum = -np.inf, 0.0
    for start in range(0, 2 ** L, chunk):
        x = _bits(np.arange(start, start + chunk, dtype=np.int64), L)
        vals = x @ own + np.logaddexp(0.0, other + x @ Wl).sum(axis=1)
        acc_max, acc_sum = _logsumexp_update(acc_max, acc_sum, vals)
    return float(acc_max + math.log(acc_sum))


# ---- annealed importance sampling -------------------------------------------------

def ais_betas(n_betas=10000):
    """The default AIS schedule: ``n_betas`` inverse temperatures from 0 to 1,
    spaced like Salakhutdinov & Murray (2008) (500 in [0, 0.5], 4000 in
    [0.5, 0.9], 10000 in [0.9, 1] out of 14500), i.e. denser near 1; scaled
    to n_betas points (n_betas >= 2).  float64, strictly increasing.

    Parameters
    ----------
    n_betas : int, default 10000
        Number of temperatures, >= 2.

    Returns
    -------
    numpy.ndarray
        float64 (n_betas,), from 0 to 1.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    """
    n_betas = check_int(n_betas, "n_betas", min=2, max=COUNT_MAX)
    check_alloc(n_betas, 8, "n_betas")
    if n_betas < 8:
        return np.linspace(0.0, 1.0, n_betas)
    k = n_betas - 1      # intervals
    k1 = max(1, round(k * 500 / 14500))
    k2 = max(1, round(k * 4000 / 14500))
    k3 = k - k1 - k2
    return np.concatenate([np.linspace(0.0, 0.5, k1, endpoint=False),
                           np.linspace(0.5, 0.9, k2, endpoint=False),
                           np.linspace(0.9, 1.0, k3 + 1)])


def _check_betas(betas):
    betas = check_array(betas, "betas", ndim=1, finite=True).astype(np.float64)
    if betas.shape[0] < 2:
        raise ValueError(f"betas: expected at least 2 inverse temperatures, got {betas.shape[0]}")
    if betas[0] != 0.0 or betas[-1] != 1.0:
        raise ValueError(f"betas: expected a schedule from 0 to 1, got {betas[0]!r} .. {betas[-1]!r}")
    if (np.diff(betas) < 0).any():
        raise ValueError("betas: expected a non-decreasing schedule, got a decreasing step")
    return np.ascontiguousarray(betas)


def _base_bias(base_visible_bias, data, m, dt):
    if isinstance(base_visible_bias, str):
        check_choice(base_visible_bias, "base_visible_bias", ("data",))
        if data is None:
            raise ValueError("data: expected the training data (rows of visible vectors) with "
                             "base_visible_bias='data', got None")
        data = check_array(data, "data", ndim=2, shape=(None, m), allow_empty=False, finite=True)
        check_in_range(data, "data", 0, 1)
        N = data.shape[0]
        p = (data.astype(np.float64).sum(axis=0) + 1.0) / (N + 2.0)   # Laplace-smoothed mean
        return np.log(p) - np.log1p(-p)
    if data is not None:
        raise ValueError("data: only used with base_visible_bias='data', got data with "
                         f"base_visible_bias={_describe(base_visible_bias)}")
    if base_visible_bias is None:
        return np.zeros(m)
    x = check_array(base_visible_bias, "base_visible_bias", shape=(m,), finite=True
                    ).astype(np.float64)
    big = float(np.abs(x).max()) if m else 0.0
    if big > MAX_BASE_BIAS:
        # log Z_A ~ sum softplus(a_A) and the log weights ~ -(a_A - a).v cancel: beyond this the
        # estimate keeps fewer than ~8 digits (m * 1e4 * 2**-52 < 1e-8 for m < 4.5e4), and at
        # 1e30 every weight rounds to the same value (stderr 0.0 for a wrong log Z)
        raise ValueError(f"base_visible_bias: expected values in [-{MAX_BASE_BIAS:g}, "
                         f"{MAX_BASE_BIAS:g}] (a base model that far from uniform loses the "
                         f"estimate to rounding), got a largest magnitude of {big:.3g}")
    return x


def ais_log_partition(W, a, b, *, n_runs=100, n_betas=10000, betas=None,
                      base_visible_bias=None, data=None, random_state=None, max_work=WORK_MAX,
                      backend=None):
    """Estimate log Z of the RBM (W, a, b) by annealed importance sampling.

    Salakhutdinov & Murray (2008): the base-rate model A has W = 0, visible
    biases ``base_visible_bias`` and its hidden units out of play
    (log Z_A = sum_i softplus(a_A,i) + n log 2); the intermediate models are
    p*_k(v) = exp((1-beta_k) a_A.v + beta_k a.v) prod_j (1 + exp(beta_k (b_j + (vW)_j))),
    each transition is one block Gibbs sweep (h then v) at beta_k, and the
    log weights are accumulated in float64.  ``n_runs`` independent runs in
    parallel (run s uses stream s).

    betas: a schedule (0 = betas[0] <= ... <= betas[-1] = 1; overrides
    n_betas), else ``ais_betas(n_betas)``.  base_visible_bias: None (zeros),
    "data" (logit of the Laplace-smoothed mean of ``data``, as in the paper),
    or an array (m,) of values in [-1e4, 1e4] (``MAX_BASE_BIAS``; a data
    mean's logit is within +-log(N + 1); farther out log Z_A and the log
    weights cancel to fewer digits than the estimate needs).

    Returns ``AISResult(log_z, stderr)``: log Z_A + log mean(w) and the
    delta-method standard error std(w) / (sqrt(n_runs) mean(w)) (it
    underestimates the error when the weights are heavy-tailed: use more
    runs and temperatures for real models).

    Parameters
    ----------
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    n_runs : int, default 100
        Independent runs, >= 1.
    n_betas : int, default 10000
        Temperatures of the default schedule, >= 2.
    betas : array_like, optional
        An explicit schedule (overrides n_betas).
    base_visible_bias : None, "data" or array_like, default None
        Visible biases of the base model.
    data : array_like, optional
        Binary data (rows, m), required for ``base_visible_bias="data"``.
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
    max_work : int or None, default 2**46
        Refuse (ValueError naming n_betas) a call estimated above this many
        multiply-adds, n_betas * n_runs * 2 m n (an hour or more); None: no
        limit.
    backend : {None, "auto", "numba", "cython"}, default None
        None uses the process default (``dlkernels.get_backend()``).

    Returns
    -------
    AISResult
        ``(log_z, stderr)``, floats.

    Raises
    ------
    TypeError
        If an argument has the wrong type or dtype (the message names it).
    ValueError
        If a shape, value or range is wrong (the message names the argument).
    KeyboardInterrupt
        Ctrl-C: the runs stop within a temperature; the inputs are unchanged.
    ImportError
        If the requested backend cannot be imported.
    """
    W, a, b = _weights(W, a, b)
    dt = W.dtype
    m, n = W.shape
    n_runs = check_int(n_runs, "n_runs", min=2, max=COUNT_MAX)
    check_alloc(n_runs * max(m, n), dt.itemsize, "n_runs")  # the runs' states and fields
    max_work = check_max_work(max_work)
    if betas is None:
        n_betas = check_int(n_betas, "n_betas", min=2, max=COUNT_MAX)
        check_alloc(n_betas, 8, "n_betas")   # the schedule (as ais_betas would)
        check_work(n_betas * n_runs * 2 * m * n, max_work, "n_betas", "temperatures")
        betas = ais_betas(n_betas)
    else:
        betas = _check_betas(betas)
        check_work((betas.shape[0] - 1) * n_runs * 2 * m * n, max_work, "betas", "temperatures")
    total = (betas.shape[0] - 1) * n_runs * 2 * m * n
    a_base64 = _base_bias(base_visible_bias, data, m, dt)
    a_base = a_base64.astype(dt)
    eng = _engine(backend)
    streams = as_streams(random_state)
    ctr = streams.next_counter()
    logw = np.empty(n_runs, np.float64)
    WT = np.ascontiguousarray(W.T)
    with blas_single_threaded():   # the kernel parallelises over tiles of runs itself
        interruptible(eng.ais, total, W=W, WT=WT, a=a, b=b, a_base=a_base, betas=betas,
                      key=streams.key, ctr=ctr, logw=logw)
    log_za = float(np.logaddexp(0.0, a_base.astype(np.float64)).sum() + n * math.log(2.0))
    return _ais_result(logw, log_za)


def _ais_result(logw, log_za):
    mx = logw.max()
    w = np.exp(logw - mx)
    mean = w.mean()
    log_z = log_za + float(mx + math.log(mean))
    stderr = float(w.std(ddof=1) / (math.sqrt(w.shape[0]) * mean))
    return AISResult(log_z, stderr)


def log_likelihood(v, W, a, b, log_z):
    """log p(v_s) = -F(v_s) - log Z for each row of v (binary), in W's dtype
    (computed in float64); ``log_z`` from ``exact_log_partition`` or
    ``ais_log_partition`` (an AISResult is accepted).

    Parameters
    ----------
    v : array_like
        Visible states (batch, m), binary.
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    log_z : float or AISResult
        log Z of the model.

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
    """
    W, a, b = _weights(W, a, b)
    v = _states(v, "v", W.dtype, W.shape[0])
    if isinstance(log_z, AISResult):
        log_z = log_z.log_z
    if isinstance(log_z, (bool, np.bool_)) or not isinstance(log_z, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"log_z: expected a real number, got {_describe(log_z)}")
    log_z = float(log_z)
    if not np.isfinite(log_z):
        raise ValueError(f"log_z: expected a finite number, got {log_z}")
    v64 = v.astype(np.float64)
    neg_f = v64 @ a.astype(np.float64) + np.logaddexp(
        0.0, v64 @ W.astype(np.float64) + b.astype(np.float64)).sum(axis=1)
    return (neg_f - log_z).astype(W.dtype)


# ---- pseudo-likelihood -------------------------------------------------------------

def pseudo_likelihood(v, W, a, b, *, exact=False, random_state=None, backend=None):
    """Log pseudo-likelihood of each row of v (binary), in W's dtype.

    exact=False: scikit-learn's stochastic estimate (BernoulliRBM.score_samples):
    for each row one bit i (uniform; row s takes i = floor(w m / 2**64), w the
    first word of stream s) is flipped, and the value is
    ``m * log sigmoid(F(v~) - F(v))``, an unbiased estimate of the exact sum.
    exact=True: ``sum_i log p(v_i | v_-i) = sum_i log sigmoid(F(v~i) - F(v))``
    over every bit (cost m times a free energy; random_state unused).
    F(v~) - F(v) is computed from the change of each hidden input, in
    float64, with a stable log-sigmoid.

    Parameters
    ----------
    v : array_like
        Visible states (batch, m), binary.
    W : numpy.ndarray
        Weights (m, n), float32 or float64: the dtype of every float argument
        and result.
    a : array_like
        Visible biases (m,).
    b : array_like
        Hidden biases (n,).
    exact : bool, default False
        The exact sum over every bit instead of the stochastic estimate.
    random_state : None, int, dlkernels.rng.Streams or numpy.random.Generator, default None
        The random numbers (see the module docstring).
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
    v = _states(v, "v", W.dtype, W.shape[0])
    exact = check_bool(exact, "exact")
    eng = _engine(backend)
    out = np.empty(v.shape[0], W.dtype)
    if exact:
        key = np.zeros(2, np.uint64)
        ctr = np.zeros(4, np.uint64)
    else:
        streams = as_streams(random_state)
        key, ctr = streams.key, streams.next_counter()
    if v.shape[0]:
        with blas_single_threaded():   # the kernel parallelises over tiles of rows itself
            eng.pseudo_likelihood(v=v, W=W, a=a, b=b, exact=exact, key=key, ctr=ctr, out=out)
    return out
