"""Single-site Gibbs chains (Numba backend; part of the family module ``rbm``).

Twin of ``_rbm_single_site.pxi`` (included by ``rbm.pyx``); no validation
here (``dlkernels.bindings.rbm_mcmc`` does it).

Random words: chain ``s`` of a call with base counter ``ctr`` draws from the
stream ``(key, ctr + s*2**128)``; step ``t`` uses words ``2t`` (site choice)
and ``2t+1`` (the uniform ``u = (w >> 11) * 2**-53``) of its chain's stream,
whatever the scan mode (a systematic scan ignores word ``2t``).  Site
``k = floor(w * M / 2**64)`` (uniform, ``M = m + n``); with an alias table
``(thr, alias)``: ``k = floor(w*M/2**64)``, kept when
``(w*M mod 2**64) < thr[k]`` else ``alias[k]``.  The unit is set to
``u < sigmoid(field)`` (float64 compare, the two-sided float64 sigmoid
``_fastmath.sigmoid64_split``).
"""
import numpy as np
from numba import njit, prange

from ._fastmath import sigmoid64_split
from ._interrupt import stopped
from ._rbm_layers import _field
from .rng import _F64_SCALE, _S11, ctr_add, mulhilo64, philox4x64_10_x2, stream_ctr

__all__ = ["single_site_gibbs", "SCAN_RANDOM", "SCAN_SYSTEMATIC", "SCAN_ALIAS"]

# ``mode`` of single_site_gibbs: how the site of each step is chosen.
SCAN_RANDOM = 0      # uniform over the m + n sites
SCAN_SYSTEMATIC = 1  # site t mod (m + n)
SCAN_ALIAS = 2       # from the alias table (thr, alias) of a site distribution q

_SS_BATCH_WORDS = 32  # random words generated at once by a single-site chain


# ---- single-site Gibbs ------------------------------------------------------

@njit(cache=True)
def _init_fields(v, h, W, WT, a, b, vf, hf):
    """vf = a + W h, hf = b + v W, accumulated row by row in index order."""
    _field(v, W, b, hf)
    _field(h, WT, a, vf)


@njit(cache=True)
def _single_site_chain(v, h, vf, hf, W, WT, a, b, n_steps, mode, thr, alias, refresh, key, ctr,
                       s, stop):
    m = v.shape[0]
    n = h.shape[0]
    M = np.uint64(m + n)
    _init_fields(v, h, W, WT, a, b, vf, hf)
    c0, c1, c2, c3 = stream_ctr(ctr, s)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
    # words are generated 8 blocks (16 steps) at a time: independent blocks,
    # so the multiply chains overlap instead of stalling each step
    wb = np.empty(_SS_BATCH_WORDS, np.uint64)
    for t in range(n_steps):
        if (t & 4095) == 0 and stopped(stop):
            return
        if refresh > 0 and t > 0 and t % refresh == 0:
            _init_fields(v, h, W, WT, a, b, vf, hf)   # bound the rounding drift
        r = t % (_SS_BATCH_WORDS // 2)
        if r == 0:
            for q in range(_SS_BATCH_WORDS // 8):
                d0, d1, d2, d3 = ctr_add(c0, c1, c2, c3, 1, 0)
                ba, bb = philox4x64_10_x2(c0, c1, c2, c3, d0, d1, d2, d3, key[0], key[1])
                c0, c1, c2, c3 = ctr_add(d0, d1, d2, d3, 1, 0)
                for j in range(4):
                    wb[8 * q + j] = ba[j]
                    wb[8 * q + 4 + j] = bb[j]
        ws = wb[2 * r]
        wu = wb[2 * r + 1]
        if mode == SCAN_SYSTEMATIC:
            k = t % (m + n)
        else:
            hi, lo = mulhilo64(ws, M)
            k = np.int64(hi)
            if mode == SCAN_ALIAS:
                if lo >= thr[k]:
                    k = alias[k]
        u = np.float64(wu >> _S11) * _F64_SCALE
        # the two flips are written out: as one helper (x, k, field, rows)
        # the chain ran 18% slower called, 4% slower inlined (measured,
        # 784x500, 64 chains; the same bits)
        if k < m:
            new = u < sigmoid64_split(np.float64(vf[k]))
            if new != (v[k] != 0):
                if new:
                    v[k] = 1
                    for j in range(n):
                        hf[j] += W[k, j]
                else:
                    v[k] = 0
                    for j in range(n):
                        hf[j] -= W[k, j]
        else:
            jj = k - m
            new = u < sigmoid64_split(np.float64(hf[jj]))
            if new != (h[jj] != 0):
                if new:
                    h[jj] = 1
                    for i in range(m):
                        vf[i] += WT[jj, i]
                else:
                    h[jj] = 0
                    for i in range(m):
                        vf[i] -= WT[jj, i]


@njit(cache=True, parallel=True)
def single_site_gibbs(v, h, W, WT, a, b, n_steps, mode, thr, alias, refresh, key, ctr, stop):
    """n_steps single-site Gibbs updates of every chain (row) of (v, h), in place.

    W (m, n) and WT = W.T (n, m) C-contiguous; mode SCAN_RANDOM = uniform random
    site, SCAN_SYSTEMATIC = site t mod (m+n), SCAN_ALIAS = sites from the alias table
    (thr uint64, alias int64, both of length m+n).  Local fields are kept up
    to date incrementally: O(n) per visible flip, O(m) per hidden flip, and
    recomputed from scratch every ``refresh`` steps (0 = never) so that
    rounding errors cannot accumulate over very long chains.
    stop: a 1-element int64 flag, checked every 4096 steps; when set
    every chain returns early (its state is then partial).
    """
    C = v.shape[0]
    vf = np.empty(v.shape, v.dtype)
    hf = np.empty(h.shape, h.dtype)
    for s in prange(C):
        _single_site_chain(v[s], h[s], vf[s], hf[s], W, WT, a, b, n_steps, mode, thr,
                           alias, refresh, key, ctr, np.int64(s), stop)
