"""Parallel tempering for Bernoulli RBMs (public API; part of ``dlkernels.rbm``).

Replica exchange (Swendsen & Wang 1986; Geyer 1991), used for RBMs by Desjardins
et al. (2010) and Salakhutdinov (2009): K copies of each chain sample the
tempered distributions p_k(v, h) ~ exp(-beta_k E(v, h)), beta_0 < ... <
beta_{K-1} = 1, each with block Gibbs sweeps, and neighbouring copies exchange
their states with the Metropolis rule, so the hot copies carry the cold one
between modes that plain Gibbs sampling rarely crosses.
"""
from collections import namedtuple

import numpy as np

from ._backend import resolve
from ._checks import check_array, check_bool, check_int, check_max_work, check_work, WORK_MAX
from ._progress import interruptible
from .rbm import _check_values, _finite, _rng, _transposed, _weights

__all__ = ["parallel_tempering", "PTResult"]

PTResult = namedtuple("PTResult", ["v", "h", "acceptance", "replicas"])
PTResult.__doc__ = """Result of ``parallel_tempering``.

v (C, m), h (C, n): the states of the beta = 1 replica of every chain;
acceptance (K - 1,): the share of accepted swaps between replicas k and k+1
over all chains and swap rounds (NaN when no round was attempted);
replicas: None, or (V, H) with all replicas, V (C, K, m), H (C, K, n)
(V can be passed back as ``v0`` to continue the run)."""

_PREFER = ("cython", "numba")


def _check_betas(betas, name="betas"):
    """A checked inverse-temperature ladder (float64): strictly increasing,
    finite, >= 0, ending at 1."""
    betas = check_array(betas, name, ndim=1, dtype=(np.float32, np.float64),
                        allow_empty=False).astype(np.float64)
    if not np.all(np.isfinite(betas)):
        raise ValueError(f"{name}: expected finite inverse temperatures, got NaN or inf")
    if betas[0] < 0:
        raise ValueError(f"{name}: expected values >= 0, got {betas[0]!r}")
    if betas.size > 1 and not np.all(np.diff(betas) > 0):
        raise ValueError(f"{name}: expected strictly increasing inverse temperatures, got "
                         f"{np.array2string(betas, threshold=8)}")
    if betas[-1] != 1.0:
        raise ValueError(f"{name}: expected the last inverse temperature to be 1, got "
                         f"{betas[-1]!r}")
    return np.ascontiguousarray(betas)


def parallel_tempering(v0, W, a, b, n_sweeps, *, betas, swap_every=1, return_all=False,
                       random_state=None, W_T=None, max_work=WORK_MAX, backend=None):
    """Parallel tempering (replica exchange) with block Gibbs sweeps, in one call.

    Each of the C chains keeps K replicas at the inverse temperatures
    ``betas``; replica k samples ``p_k(v, h) ~ exp(-betas[k] E(v, h))`` with
    ``E(v, h) = -a.v - b.h - v W h``.  A sweep updates every replica with one
    block Gibbs step (h ~ p_k(h | v), then v ~ p_k(v | h)); after every
    ``swap_every``-th sweep, replicas k and k+1 (k = 0 .. K-2, in order)
    exchange their states with probability
    ``min(1, exp((beta_k - beta_{k+1}) (E_k - E_{k+1})))``, which leaves the
    product of the tempered distributions invariant.

    Parameters
    ----------
    v0 : array_like, (C, m) or (C, K, m)
        Binary start states: one per chain (copied into every replica) or one
        per replica (e.g. ``replicas[0]`` of an earlier call, to continue).
        Not modified.
    W : ndarray, (m, n), float32 or float64
        Weights; the dtype of every float array and of the result.
    a, b : array_like, (m,) and (n,)
        Visible and hidden biases.
    n_sweeps : int >= 1
        Sweeps per replica.
    betas : array_like, (K,)
        Inverse temperatures, strictly increasing, ``betas[0] >= 0`` and
        ``betas[-1] == 1`` (the replica whose states are returned).  A common
        choice is geometric or linear spacing between 0.1-0.5 and 1.
    swap_every : int >= 1, default 1
        Sweeps between two swap rounds.
    return_all : bool, default False
        Also return every replica's states (``PTResult.replicas``).
    random_state : None, int, dlkernels.rng.Streams or numpy Generator
        Chain c draws from stream c of the call (layout in
        ``dlkernels.engine.numba._rbm_pt``); the result is the same for any
        thread count and either backend.  Float32 and float64 models use the
        same uniforms (one 32-bit half-word per draw).
    W_T : numpy.ndarray or None, default None
        W's transpose (n, m), kept by the caller between calls with the same
        W; checked as in ``gibbs_chains``.  None: the call makes it.
    max_work : int or None, default 2**46
        Refuse (ValueError naming n_sweeps) a call estimated above this many
        multiply-adds, n_sweeps * chains * K * 2 m n (an hour or more); None:
        no limit.
    backend : {"auto", "numba", "cython"} or None

    Returns
    -------
    PTResult
        ``(v, h, acceptance, replicas)``: the beta = 1 states (C, m) and
        (C, n), the swap acceptance rate per neighbouring pair (K - 1,), and
        ``(V, H)`` of all replicas when ``return_all`` (else None).

    Raises
    ------
    TypeError
        Non-numeric arrays, a float dtype other than W's, non-integer counts.
    ValueError
        Shapes that do not match W, states that are not 0/1, non-finite
        weights, ``betas`` not strictly increasing from >= 0 to 1,
        ``n_sweeps < 1``, ``swap_every < 1``, more work than ``max_work``.
    KeyboardInterrupt
        Ctrl-C: the chains stop within a sweep; the inputs are unchanged.
    """
    W, a, b = _weights(W, a, b)
    _finite((W, a, b), ("W", "a", "b"))
    dt = W.dtype
    m, n = W.shape
    betas = _check_betas(betas)
    K = betas.shape[0]
    v = check_array(v0, "v0", dtype=dt, allow_empty=False)
    if v.ndim == 2 and v.shape[1] == m:
        V = np.empty((v.shape[0], K, m), dt)
        V[:] = v[:, None, :]
    elif v.ndim == 3 and v.shape[1:] == (K, m):
        V = np.array(v, order="C", copy=True)
    else:
        raise ValueError(f"v0: expected shape (chains, {m}) or (chains, {K}, {m}), got shape "
                         f"{v.shape}")
    _check_values(V.reshape(-1, m), "v0", True)
    n_sweeps = check_int(n_sweeps, "n_sweeps", min=1, max=2**62)
    swap_every = check_int(swap_every, "swap_every", min=1, max=2**62)
    return_all = check_bool(return_all, "return_all")
    max_work = check_max_work(max_work)
    C = V.shape[0]
    total = n_sweeps * C * K * 2 * m * n
    check_work(total, max_work, "n_sweeps", "sweeps")
    H = np.zeros((C, K, n), dt)
    accepted = np.zeros((C, max(K - 1, 1)), np.int64)
    WT = _transposed(W_T, W)
    key, ctr = _rng(random_state)
    interruptible(resolve(backend, "rbm", _PREFER).parallel_tempering, total, V=V, H=H, W=W, a=a,
                  b=b, betas=betas, n_sweeps=n_sweeps, swap_every=swap_every, key=key, ctr=ctr,
                  accepted=accepted, WT=WT)
    rounds = n_sweeps // swap_every
    with np.errstate(invalid="ignore", divide="ignore"):
        acceptance = accepted[:, :K - 1].sum(axis=0) / float(C * rounds) if rounds else \
            np.full(K - 1, np.nan)
    v_out = np.ascontiguousarray(V[:, K - 1])
    h_out = np.ascontiguousarray(H[:, K - 1])
    return PTResult(v_out, h_out, acceptance, (V, H) if return_all else None)
