# Single-site Gibbs chains (part of dlkernels.engine.cython.rbm; included by
# rbm.pyx).  Twin of dlkernels/engine/numba/_rbm_single_site.py (same names,
# arguments, semantics and random words: see its docstring); no validation here.
from libc.stdint cimport uint64_t, int64_t
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._fastmath cimport dlk_sigmoid64_split
from dlkernels.engine.cython.rng cimport (dlk_philox4x64_10, dlk_ctr_add, dlk_mulhilo64,
                                          dlk_stream_ctr)
import numpy as _mc_np

cdef extern from *:
    """
    #include "dlk_fastmath.h"   /* DLK_CLONES */

    /* y += x / y -= x over n elements (the incremental field updates of the
       single-site chain); element-wise, so every vector width gives the same bits. */
    #define DLK_MC_ROW_OPS(T, SUF)                                                     \
    DLK_CLONES static void dlk_mc_row_add_##SUF(T *restrict y, const T *restrict x,  \
                                                   Py_ssize_t n) {                     \
        Py_ssize_t j;                                                                 \
        for (j = 0; j < n; j++) y[j] += x[j];                                         \
    }                                                                                 \
    DLK_CLONES static void dlk_mc_row_sub_##SUF(T *restrict y, const T *restrict x,  \
                                                   Py_ssize_t n) {                     \
        Py_ssize_t j;                                                                 \
        for (j = 0; j < n; j++) y[j] -= x[j];                                         \
    }
    DLK_MC_ROW_OPS(float, f32)
    DLK_MC_ROW_OPS(double, f64)
    """
    void dlk_mc_row_add_f32(float* y, const float* x, Py_ssize_t n) noexcept nogil
    void dlk_mc_row_sub_f32(float* y, const float* x, Py_ssize_t n) noexcept nogil
    void dlk_mc_row_add_f64(double* y, const double* x, Py_ssize_t n) noexcept nogil
    void dlk_mc_row_sub_f64(double* y, const double* x, Py_ssize_t n) noexcept nogil

cpdef enum:
    # ``mode`` of single_site_gibbs: how the site of each step is chosen
    SCAN_RANDOM = 0      # uniform over the m + n sites
    SCAN_SYSTEMATIC = 1  # site t mod (m + n)
    SCAN_ALIAS = 2       # from the alias table (thr, alias) of a site distribution q

cdef enum:
    _SS_BATCH_WORDS = 32  # random words generated at once by a chain


# ---- single-site Gibbs ------------------------------------------------------

cdef inline void _mc_row_update(floating* y, const floating* x, Py_ssize_t n,
                                bint add) noexcept nogil:
    if floating is float:
        if add:
            dlk_mc_row_add_f32(y, x, n)
        else:
            dlk_mc_row_sub_f32(y, x, n)
    else:
        if add:
            dlk_mc_row_add_f64(y, x, n)
        else:
            dlk_mc_row_sub_f64(y, x, n)


cdef void _mc_init_fields(const floating* v, const floating* h, floating* vf, floating* hf,
                          const floating* W, const floating* WT, const floating* a,
                          const floating* b, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """vf = a + W h, hf = b + v W, rows added in index order."""
    cdef Py_ssize_t i, j
    for i in range(m):
        vf[i] = a[i]
    for j in range(n):
        hf[j] = b[j]
    for i in range(m):
        if v[i] != 0:
            _mc_row_update(hf, W + i * n, n, True)
    for j in range(n):
        if h[j] != 0:
            _mc_row_update(vf, WT + j * m, m, True)


cdef void _mc_single_site_chain(floating* v, floating* h, floating* vf, floating* hf,
                                const floating* W, const floating* WT,
                                const floating* a, const floating* b,
                                Py_ssize_t m, Py_ssize_t n, int64_t n_steps, int mode,
                                const uint64_t* thr, const int64_t* alias, int64_t refresh,
                                const uint64_t* key, const uint64_t* ctr,
                                Py_ssize_t s, const int64_t* stop) noexcept nogil:
    cdef Py_ssize_t i, j, k
    cdef int64_t t
    cdef uint64_t c[4]
    cdef uint64_t wb[_SS_BATCH_WORDS]
    cdef uint64_t ws, wu, hi, lo
    cdef uint64_t M = <uint64_t>(m + n)
    cdef int64_t r
    cdef Py_ssize_t q
    cdef double u
    cdef bint new
    cdef const floating* row
    _mc_init_fields(v, h, vf, hf, W, WT, a, b, m, n)
    dlk_stream_ctr(ctr, <uint64_t>s, c)
    dlk_ctr_add(c, 1, 0)
    for t in range(n_steps):
        if (t & 4095) == 0 and dlk_stopped(stop):
            return
        if refresh > 0 and t > 0 and t % refresh == 0:
            _mc_init_fields(v, h, vf, hf, W, WT, a, b, m, n)   # bound the rounding drift
        r = t % (_SS_BATCH_WORDS // 2)
        if r == 0:   # 8 blocks (16 steps) at once, see the Numba twin
            for q in range(_SS_BATCH_WORDS // 4):
                dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], &wb[4 * q])
                dlk_ctr_add(c, 1, 0)
        ws = wb[2 * r]
        wu = wb[2 * r + 1]
        if mode == SCAN_SYSTEMATIC:
            k = <Py_ssize_t>(t % (m + n))
        else:
            lo = dlk_mulhilo64(ws, M, &hi)
            k = <Py_ssize_t>hi
            if mode == SCAN_ALIAS:
                if lo >= thr[k]:
                    k = <Py_ssize_t>alias[k]
        u = <double>(wu >> 11) * (1.0 / 9007199254740992.0)
        if k < m:
            new = u < dlk_sigmoid64_split(<double>vf[k])
            if new != (v[k] != 0):
                v[k] = 1 if new else 0
                _mc_row_update(hf, W + k * n, n, new)
        else:
            k = k - m
            new = u < dlk_sigmoid64_split(<double>hf[k])
            if new != (h[k] != 0):
                h[k] = 1 if new else 0
                _mc_row_update(vf, WT + k * m, m, new)


def single_site_gibbs(floating[:, ::1] v, floating[:, ::1] h, const floating[:, ::1] W,
                      const floating[:, ::1] WT, const floating[::1] a, const floating[::1] b,
                      int64_t n_steps, int mode, const uint64_t[::1] thr, const int64_t[::1] alias,
                      int64_t refresh, const uint64_t[::1] key, const uint64_t[::1] ctr,
                      const int64_t[::1] stop):
    """n_steps single-site Gibbs updates of every chain (row) of (v, h), in place.

    W (m, n) and WT = W.T (n, m) C-contiguous; mode SCAN_RANDOM = uniform random
    site, SCAN_SYSTEMATIC = site t mod (m+n), SCAN_ALIAS = sites from the alias table
    (thr uint64, alias int64, both of length m+n).  Local fields are kept up
    to date incrementally: O(n) per visible flip, O(m) per hidden flip, and
    recomputed from scratch every ``refresh`` steps (0 = never) so that
    rounding errors cannot accumulate over very long chains.
    """
    cdef Py_ssize_t C = v.shape[0], m = v.shape[1], n = h.shape[1], s
    if C == 0 or n_steps <= 0:
        return
    dt = _mc_np.float32 if floating is float else _mc_np.float64
    cdef floating[:, ::1] vf = _mc_np.empty((C, m), dt)
    cdef floating[:, ::1] hf = _mc_np.empty((C, n), dt)
    cdef const uint64_t* thr_p = &thr[0] if thr.shape[0] > 0 else NULL
    cdef const int64_t* alias_p = &alias[0] if alias.shape[0] > 0 else NULL
    cdef const int64_t* stp = NULL if stop is None else &stop[0]
    # static: each thread runs one contiguous block of chains, as Numba's prange
    # does.  With "dynamic" (chunks of one chain) the two threads ran neighbouring
    # chains at the same time, and neighbouring rows of v, h and the fields share
    # cache lines at their ends (a row of 500 float32 is 2000 bytes, not a multiple
    # of 64): every flip wrote a line the other core was writing too.  Measured
    # (AMD EPYC Zen 4, 2 threads, the runner's 64 chains 784x500, 200,000 steps,
    # alternating processes): 357-623 ms dynamic (bimodal) against 316-355 ms
    # static (Numba 346-377 ms).  Same bits either way.
    for s in prange(C, nogil=True, schedule="static"):
        _mc_single_site_chain(&v[s, 0], &h[s, 0], &vf[s, 0], &hf[s, 0], &W[0, 0], &WT[0, 0],
                              &a[0], &b[0], m, n, n_steps, mode, thr_p, alias_p, refresh,
                              &key[0], &ctr[0], s, stp)


