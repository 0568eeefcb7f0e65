"""Parallel tempering for Bernoulli RBMs (Numba backend; part of the rbm family).

Twin of ``_rbm_pt.pxi`` of the Cython backend (same name, arguments, random
draws and floating-point operations in the same order: bit-identical
results); no validation here (``dlkernels.bindings.rbm_pt`` does it).

``parallel_tempering(V, H, W, a, b, betas, n_sweeps, swap_every, key, ctr, accepted)``

* ``V`` (C, K, m), ``H`` (C, K, n): the binary states of K replicas of each
  of C chains, updated in place (``H`` is output only: the hidden states of
  the last sweep).  Replica k samples p_k(v, h) ~ exp(-betas[k] E(v, h)),
  E = -a.v - b.h - v W h; ``betas`` (K,) float64.
* A sweep: for k = 0 .. K-1, h ~ p_k(h | v) then v ~ p_k(v | h) (unit on iff
  its uniform < sigmoid(beta_k * field), field = b + v W resp. a + W h: the
  bias plus the rows of W resp. of W^T (copied once per call) of the on-units,
  added in index order, in the model's dtype).  After sweep t
  (0-based) with (t + 1) % swap_every == 0, a swap round: for k = 0 .. K-2 in
  order, replicas k and k+1 exchange their (v, h) with probability
  min(1, exp((beta_k - beta_{k+1}) (E_k - E_{k+1}))) (energies in float64;
  accept iff u < exp(min(0, .)), the fast ``exp64``); ``accepted`` (C, K-1)
  int64 counts the accepted swaps of each pair (added to).
* Random numbers: chain c draws from stream c of the call (counter
  ctr + c * 2**128).  Sweep t uses float32 uniforms (one 32-bit half-word
  each, low half first; the same uniforms in both dtypes) from block
  t * bps on, bps = ceil((K (n + m) + K - 1) / 8): for each replica its n
  hidden then its m visible uniforms, then K - 1 swap uniforms (consumed
  whether or not the sweep ends with a swap round).
* Chains run in parallel (prange), each with its own scratch; the result
  does not depend on the thread count.
"""
import numpy as np
from numba import njit, prange

from ._blas import borrowed
from ._fastmath import exp64, sigmoid
from ._interrupt import stopped
from ._rbm_layers import _field
from .rng import fill_f32_from, stream_counter

__all__ = ["parallel_tempering", "pt_blocks_per_sweep"]


@njit(cache=True)
def pt_blocks_per_sweep(K, m, n):
    """Philox blocks one sweep of one chain consumes."""
    return (K * (n + m) + K - 1 + 7) // 8


@njit(cache=True, error_model="numpy", inline="always")
def _pt_layer(x, y, Wr, bias, bt, u, f):
    """y ~ p_beta(y | x), bt = beta in W's dtype: f = bias + the rows of Wr
    (W for v -> h, W^T for h -> v) whose unit in x is on, then
    y_j = u_j < sigmoid(bt * f_j).  f: scratch in W's dtype, left holding
    the field."""
    _field(x, Wr, bias, f)
    for j in range(f.shape[0]):
        y[j] = 1.0 if u[j] < sigmoid(bt * f[j]) else 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _on_sum(y, w):
    """The sum of w_j over the units y_j that are on, in float64, in index order."""
    acc = 0.0
    for j in range(y.shape[0]):
        if y[j] != 0:
            acc += np.float64(w[j])
    return acc


@njit(cache=True, error_model="numpy")
def _pt_chain(Vc, Hc, W, WT, a, b, betas, bdt, n_sweeps, swap_every, key, c, bps, acc, u, f, g, E,
              stop):
    K = Vc.shape[0]
    m, n = W.shape
    U = K * (n + m) + K - 1
    # ownerless views of the arguments (their owners are the caller's): the
    # per-replica slices below then skip the atomic reference counting (two
    # locked instructions per slice, six slices per replica and sweep)
    Vc, Hc, W, WT, a, b = borrowed(Vc), borrowed(Hc), borrowed(W), borrowed(WT), borrowed(a), borrowed(b)
    u, f, g, E, acc = borrowed(u), borrowed(f), borrowed(g), borrowed(E), borrowed(acc)
    for t in range(n_sweeps):
        if stopped(stop):
            return
        fill_f32_from(u, U, key[0], key[1], c[0], c[1], c[2], c[3], t * bps)
        off = 0
        for k in range(K):
            # E = -(v.(a + W h) + b.h), from the fields the sweep computed
            _pt_layer(Vc[k], Hc[k], W, b, bdt[k], u[off:off + n], f)
            off += n
            _pt_layer(Hc[k], Vc[k], WT, a, bdt[k], u[off:off + m], g)
            off += m
            E[k] = -(_on_sum(Vc[k], g) + _on_sum(Hc[k], b))
        if (t + 1) % swap_every == 0:
            for k in range(K - 1):
                d = (betas[k] - betas[k + 1]) * (E[k] - E[k + 1])
                if d > 0.0:
                    d = 0.0
                if np.float64(u[off + k]) < exp64(d):
                    for i in range(m):
                        x = Vc[k, i]
                        Vc[k, i] = Vc[k + 1, i]
                        Vc[k + 1, i] = x
                    for j in range(n):
                        x = Hc[k, j]
                        Hc[k, j] = Hc[k + 1, j]
                        Hc[k + 1, j] = x
                    e = E[k]
                    E[k] = E[k + 1]
                    E[k + 1] = e
                    acc[k] += 1


@njit(cache=True, error_model="numpy", parallel=True)
def parallel_tempering(V, H, W, a, b, betas, n_sweeps, swap_every, key, ctr, accepted, WT, stop):
    """See the module docstring.  WT (n, m): W's transpose, C-contiguous, or
    a (0, 0) array to have it made here; stop: a 1-element int64 flag,
    checked before every sweep (the chains return early when it is set)."""
    C, K, m = V.shape
    n = W.shape[1]
    bps = pt_blocks_per_sweep(K, m, n)
    U = K * (n + m) + K - 1
    bdt = np.empty(K, W.dtype)
    for k in range(K):
        bdt[k] = betas[k]
    if WT.shape[0] == 0:
        WT = np.empty((n, m), W.dtype)
        for i in range(m):
            for j in range(n):
                WT[j, i] = W[i, j]
    for s in prange(C):
        c = stream_counter(ctr, s)
        u = np.empty(U, np.float32)
        f = np.empty(n, W.dtype)
        g = np.empty(m, W.dtype)
        E = np.empty(K, np.float64)
        _pt_chain(V[s], H[s], W, WT, a, b, betas, bdt, n_sweeps, swap_every, key, c, bps, accepted[s],
                  u, f, g, E, stop)
