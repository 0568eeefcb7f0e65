"""Block Gibbs chains (Numba backend; part of the family module ``rbm``).

``gibbs_chains``: k sweeps v -> h -> v of every chain, on the binary or the
tiled-GEMM layer path (see ``dlkernels.engine.numba.rbm``).  No validation here.
"""
import numpy as np
from numba import njit, prange

from ._flags import CALLS_PARALLEL
from ._interrupt import stopped
from ._rbm_layers import (OP_SAMPLE, _bin_layer, _layer, _noprobs, _prefer_bin,
                          blocks_per_layer)

__all__ = ["gibbs_chains"]


@njit(cache=True, error_model="numpy")
def _transpose(W):
    """A C-contiguous copy of W^T (blocked)."""
    m = W.shape[0]
    n = W.shape[1]
    WT = np.empty((n, m), W.dtype)
    for i0 in range(0, m, 32):
        i1 = min(i0 + 32, m)
        for j0 in range(0, n, 32):
            j1 = min(j0 + 32, n)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    WT[j, i] = W[i, j]
    return WT


@njit(cache=True, error_model="numpy")
def _add_layer(acc, x):
    """acc += x (elementwise, same shapes)."""
    for s in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            acc[s, j] += x[s, j]


@njit(cache=True, error_model="numpy")
def _scale_layer(x, r):
    """x = x / r."""
    for s in prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[s, j] = np.float64(x[s, j]) / np.float64(r)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL, nogil=True)   # nogil: interruptible from a worker thread
def gibbs_chains(v, W, a, b, k, key, ctr, h, mean_last, mean_v, mean_h, WT, bin_max, stop):
    """k block-Gibbs sweeps v -> h -> v of every chain (row of v), in place.

    v (C, m): start states in, final states out; h (C, n): out, the hidden
    states drawn in the last sweep.  Sweep t (0-based) of chain s draws its
    hidden layer from blocks t*(bh+bv) .. and its visible layer from blocks
    t*(bh+bv)+bh .. of stream s (bh, bv = blocks_per_layer of n, m).
    mean_last > 0: mean_v / mean_h (C, m) / (C, n) receive the mean of the
    visible / hidden states of the last mean_last sweeps (else 0-row arrays).
    WT (n, m): W's transpose, C-contiguous (the caller keeps it between calls
    with the same W), or a (0, 0) array: the kernel makes it (blocked copy).
    bin_max (BIN_CLASSES,) int64: the path rule's table (``_prefer_bin``),
    applied to each layer's input states before each product.
    stop: a 1-element int64 flag, checked before every sweep; when
    set the kernel returns early (v, h, means then hold partial results).
    """
    m = v.shape[1]
    n = h.shape[1]
    bh = blocks_per_layer(n)
    bv = blocks_per_layer(m)
    noprobs = _noprobs(W)
    if mean_last > 0:
        mean_v[:, :] = 0.0
        mean_h[:, :] = 0.0
    if WT.shape[0] == 0:
        WT = _transpose(W)
    for t in range(k):
        if stopped(stop):
            return
        blk = t * (bh + bv)
        if _prefer_bin(v, bin_max):
            _bin_layer(v, W, b, key, ctr, blk, h, noprobs, np.int64(OP_SAMPLE))
        else:
            _layer(v, W, np.bool_(False), b, key, ctr, blk, h, noprobs, np.int64(OP_SAMPLE))
        if _prefer_bin(h, bin_max):
            _bin_layer(h, WT, a, key, ctr, blk + bh, v, noprobs, np.int64(OP_SAMPLE))
        else:
            _layer(h, W, np.bool_(True), a, key, ctr, blk + bh, v, noprobs, np.int64(OP_SAMPLE))
        if mean_last > 0 and t >= k - mean_last:
            _add_layer(mean_v, v)
            _add_layer(mean_h, h)
    if mean_last > 0:
        _scale_layer(mean_v, mean_last)
        _scale_layer(mean_h, mean_last)
