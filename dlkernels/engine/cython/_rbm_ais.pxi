# Annealed importance sampling (part of dlkernels.engine.cython.rbm; included
# by rbm.pyx).  Twin of dlkernels/engine/numba/_rbm_ais.py (same names,
# arguments, semantics and random words: see its docstring); no validation here.
from libc.stdint cimport uint64_t
from libc.math cimport log as _mc_log
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._blas cimport gemm as _mc_gemm
from dlkernels.engine.cython._fastmath cimport dlk_expneg64
from dlkernels.engine.cython.rng cimport (dlk_stream_ctr, stream_fill_f32 as _mc_fill_f32,
                                          stream_fill_f32_f64 as _mc_fill_f32_f64)
import numpy as _mc_np

cdef extern from *:
    """
    #include "dlk_fastmath.h"   /* dlk_expneg64, DLK_CLONES */

    #define DLK_MC_HIDDEN_BODY(T, SAMPLE)                                              \
        for (j = 0; j < n; j++) {                                                     \
            double y = (double)ys[j] + (double)b[j];                                  \
            double z1 = bk * y, z0 = bp * y;                                          \
            double e1 = dlk_expneg64(-fabs(z1)), e0 = dlk_expneg64(-fabs(z0));          \
            t[j] = (1.0 + e1) / (1.0 + e0);                                           \
            d[j] = (z1 > 0.0 ? z1 : 0.0) - (z0 > 0.0 ? z0 : 0.0);                     \
            if (SAMPLE) {                                                             \
                double p = (z1 >= 0.0 ? 1.0 : e1) / (1.0 + e1);                       \
                hs[j] = (double)us[j] < p ? (T)1 : (T)0;                              \
            }                                                                         \
        }
    #define DLK_MC_VISIBLE_BODY(T, FIRST)                                             \
        for (i = 0; i < m; i++) {                                                     \
            double z = FIRST ? (double)a_base[i]                                      \
                : om * (double)a_base[i] + beta * ((double)a[i] + (double)xs[i]);     \
            double e = dlk_expneg64(-fabs(z));                                        \
            double p = (z >= 0.0 ? 1.0 : e) / (1.0 + e);                              \
            vs[i] = (double)us[i] < p ? (T)1 : (T)0;                                  \
        }
    #define DLK_MC_AIS_LOOPS(T, SUF)                                                   \
    DLK_CLONES static void dlk_mc_ais_hidden_loop_##SUF(                           \
            const T *restrict ys, const T *restrict b, const T *restrict us,          \
            T *restrict hs, double *restrict t, double *restrict d,                   \
            double bk, double bp, Py_ssize_t n, int sample) {                         \
        Py_ssize_t j;                                                                 \
        if (sample) { DLK_MC_HIDDEN_BODY(T, 1) }                                      \
        else { DLK_MC_HIDDEN_BODY(T, 0) }                                             \
    }                                                                                 \
    DLK_CLONES static void dlk_mc_ais_visible_loop_##SUF(                          \
            const T *restrict xs, const T *restrict a, const T *restrict a_base,      \
            const T *restrict us, T *restrict vs, double beta, Py_ssize_t m,          \
            int first) {                                                              \
        Py_ssize_t i;                                                                 \
        double om = 1.0 - beta;                                                       \
        if (first) { DLK_MC_VISIBLE_BODY(T, 1) }                                      \
        else { DLK_MC_VISIBLE_BODY(T, 0) }                                            \
    }
    DLK_MC_AIS_LOOPS(float, f32)
    DLK_MC_AIS_LOOPS(double, f64)
    """
    void dlk_mc_ais_hidden_loop_f32(const float* ys, const float* b, const float* us, float* hs,
                                    double* t, double* d, double bk, double bp, Py_ssize_t n,
                                    int sample) noexcept nogil
    void dlk_mc_ais_hidden_loop_f64(const double* ys, const double* b, const double* us,
                                    double* hs, double* t, double* d, double bk, double bp,
                                    Py_ssize_t n, int sample) noexcept nogil
    void dlk_mc_ais_visible_loop_f32(const float* xs, const float* a, const float* a_base,
                                     const float* us, float* vs, double beta, Py_ssize_t m,
                                     int first) noexcept nogil
    void dlk_mc_ais_visible_loop_f64(const double* xs, const double* a, const double* a_base,
                                     const double* us, double* vs, double beta, Py_ssize_t m,
                                     int first) noexcept nogil


cdef enum:
    _LOG_RENORM = 256  # factors of a softplus product between two logs


# ---- annealed importance sampling ---------------------------------------------

cdef inline void _mc_gemm_nn(const floating* A, const floating* B, floating* Cm,
                             int rows, int inner, int cols) noexcept nogil:
    """Cm (rows, cols) = A (rows, inner) @ B (inner, cols), all C-contiguous
    (the shared gemm: the Numba twin's gemm_at call)."""
    if rows == 0 or cols == 0:
        return
    _mc_gemm(False, False, rows, cols, inner, <floating>1, A, inner, B, cols, <floating>0,
             Cm, cols)


cdef inline void _mc_fill(const uint64_t* key, const uint64_t* cs, uint64_t first_block,
                          floating* out, Py_ssize_t n) noexcept nogil:
    if floating is float:
        _mc_fill_f32(key, cs, first_block, out, n)
    else:
        _mc_fill_f32_f64(key, cs, first_block, out, n)


cdef double _mc_ais_visible(floating* vs, const floating* xs, const floating* us,
                            const floating* a, const floating* a_base, double beta,
                            const double* da, Py_ssize_t m, bint first) noexcept nogil:
    """v_i = u_i < sigmoid(z_i) (see the Numba twin); returns (a - a_base).v."""
    cdef Py_ssize_t i = 0
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    if floating is float:
        dlk_mc_ais_visible_loop_f32(xs, a, a_base, us, vs, beta, m, first)
    else:
        dlk_mc_ais_visible_loop_f64(xs, a, a_base, us, vs, beta, m, first)
    while i + 4 <= m:
        s0 += da[i] * <double>vs[i]
        s1 += da[i + 1] * <double>vs[i + 1]
        s2 += da[i + 2] * <double>vs[i + 2]
        s3 += da[i + 3] * <double>vs[i + 3]
        i += 4
    while i < m:
        s0 += da[i] * <double>vs[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef double _mc_ais_hidden(const floating* ys, floating* hs, const floating* us,
                           const floating* b, double bk, double bp, Py_ssize_t n,
                           bint sample, double* t, double* d) noexcept nogil:
    """sum_j softplus(bk*y_j) - softplus(bp*y_j) (and h_j draws), see the Numba twin."""
    cdef Py_ssize_t j = 0, hi
    cdef double acc = 0.0, s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, p0, p1, p2, p3
    if floating is float:
        dlk_mc_ais_hidden_loop_f32(ys, b, us, hs, t, d, bk, bp, n, sample)
    else:
        dlk_mc_ais_hidden_loop_f64(ys, b, us, hs, t, d, bk, bp, n, sample)
    while j < n:
        hi = j + _LOG_RENORM
        if hi > n:
            hi = n
        p0 = 1.0
        p1 = 1.0
        p2 = 1.0
        p3 = 1.0
        while j + 4 <= hi:
            p0 *= t[j]
            p1 *= t[j + 1]
            p2 *= t[j + 2]
            p3 *= t[j + 3]
            s0 += d[j]
            s1 += d[j + 1]
            s2 += d[j + 2]
            s3 += d[j + 3]
            j += 4
        while j < hi:
            p0 *= t[j]
            s0 += d[j]
            j += 1
        acc += _mc_log((p0 * p1) * (p2 * p3))
    return acc + ((s0 + s1) + (s2 + s3))


def expneg(double x):
    """exp(x) for x <= 0, clamped at exp(-40) (the shared dlk_expneg64; a scalar,
    for tests and twin parity with the Numba module's ``expneg``)."""
    return dlk_expneg64(x)


def expneg_array(const double[::1] x, double[::1] out):
    """out[i] = expneg(x[i]) (for tests)."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        out[i] = dlk_expneg64(x[i])


cpdef enum:
    AIS_MAX_TILE = 64  # most runs per work item (as in the Numba backend)


def ais_tile_rows(Py_ssize_t R):
    """Runs per work item of ``ais`` (see the Numba twin)."""
    return _mc_ais_tile_rows(R)


cdef inline Py_ssize_t _mc_ais_tile_rows(Py_ssize_t R) noexcept nogil:
    cdef Py_ssize_t tiles = (R + AIS_MAX_TILE - 1) // AIS_MAX_TILE
    if tiles == 0:
        return 1
    return (R + tiles - 1) // tiles


cdef void _mc_ais_tile(const floating* W, const floating* WT, const floating* a,
                       const floating* b, const floating* a_base, const double* da,
                       const double* betas, Py_ssize_t K, const uint64_t* key,
                       const uint64_t* cs, double* logw, Py_ssize_t R, Py_ssize_t m,
                       Py_ssize_t n, floating* V, floating* H, floating* Y, floating* X,
                       floating* uv, floating* uh, double* adv, double* tt,
                       double* dd, const _i64* stop) noexcept nogil:
    """All temperatures of the R runs of one tile; V..dd are the tile's buffers."""
    # the layers' draw (_blocks: 8 half-word uniforms per block)
    cdef Py_ssize_t nbv = _blocks(m), nbh = _blocks(n), s, k
    cdef uint64_t blk
    cdef double bk, bp
    cdef bint last
    for s in range(R):
        logw[s] = 0.0
        _mc_fill(key, cs + 4 * s, 0, uv, m)
        adv[s] = _mc_ais_visible(V + s * m, X + s * m, uv, a, a_base, 0.0, da, m, True)
    for k in range(1, K + 1):
        if dlk_stopped(stop):
            return
        bk = betas[k]
        bp = betas[k - 1]
        last = k == K
        _mc_gemm_nn(V, W, Y, <int>R, <int>m, <int>n)
        blk = <uint64_t>(nbv + (k - 1) * (nbh + nbv))
        for s in range(R):
            if not last:
                _mc_fill(key, cs + 4 * s, blk, uh, n)
            logw[s] += (bk - bp) * adv[s] + _mc_ais_hidden(Y + s * n, H + s * n, uh, b, bk, bp,
                                                           n, not last, tt, dd)
        if not last:
            _mc_gemm_nn(H, WT, X, <int>R, <int>n, <int>m)
            for s in range(R):
                _mc_fill(key, cs + 4 * s, blk + nbh, uv, m)
                adv[s] = _mc_ais_visible(V + s * m, X + s * m, uv, a, a_base, bk, da, m, False)


def ais(const floating[:, ::1] W, const floating[:, ::1] WT, const floating[::1] a,
        const floating[::1] b, const floating[::1] a_base, const double[::1] betas,
        const uint64_t[::1] key, const uint64_t[::1] ctr, double[::1] logw,
        const _i64[::1] stop):
    """Annealed importance sampling from the base-rate model (visible biases
    a_base, W = 0) to the RBM (W, a, b) along betas[0] = 0 <= ... <= betas[K] = 1.

    logw (R,) float64 receives the log importance weight of each run:
    sum_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1}), with
    log p*_k(v) = (1-beta_k) a_base.v + beta_k a.v + sum_j softplus(beta_k (b_j + v.W_j))
    and v_k drawn by one block Gibbs sweep (h then v) at beta_k.

    Parallel over tiles of ``ais_tile_rows(R)`` runs; each work item runs all
    temperatures of its tile (two GEMMs per temperature, through BLAS, which
    the caller keeps single-threaded), with no synchronisation between
    temperatures.
    """
    cdef Py_ssize_t R = logw.shape[0], m = W.shape[0], n = W.shape[1], K = betas.shape[0] - 1
    cdef Py_ssize_t s, i, ti, r0, r1, T, ntiles
    cdef const _i64* stp = NULL if stop is None else &stop[0]
    if R == 0:
        return
    dt = _mc_np.float32 if floating is float else _mc_np.float64
    cdef floating[:, ::1] V = _mc_np.empty((R, m), dt)
    cdef floating[:, ::1] H = _mc_np.empty((R, n), dt)
    cdef floating[:, ::1] Y = _mc_np.empty((R, n), dt)
    cdef floating[:, ::1] X = _mc_np.zeros((R, m), dt)
    cdef floating[:, ::1] uv = _mc_np.empty((R, m), dt)
    cdef floating[:, ::1] uh = _mc_np.empty((R, n), dt)
    cdef double[::1] adv = _mc_np.empty(R, _mc_np.float64)
    cdef double[:, ::1] tt = _mc_np.empty((R, n), _mc_np.float64)
    cdef double[:, ::1] dd = _mc_np.empty((R, n), _mc_np.float64)
    cdef double[::1] da = _mc_np.empty(m, _mc_np.float64)
    cdef uint64_t[:, ::1] cs = _mc_np.empty((R, 4), _mc_np.uint64)
    for i in range(m):
        da[i] = <double>a[i] - <double>a_base[i]
    for s in range(R):
        dlk_stream_ctr(&ctr[0], <uint64_t>s, &cs[s, 0])
    T = _mc_ais_tile_rows(R)
    ntiles = (R + T - 1) // T
    for ti in prange(ntiles, nogil=True, schedule="dynamic", chunksize=1):
        r0 = ti * T
        r1 = r0 + T
        if r1 > R:
            r1 = R
        _mc_ais_tile(&W[0, 0], &WT[0, 0], &a[0], &b[0], &a_base[0], &da[0], &betas[0], K,
                     &key[0], &cs[r0, 0], &logw[r0], r1 - r0, m, n, &V[r0, 0], &H[r0, 0],
                     &Y[r0, 0], &X[r0, 0], &uv[r0, 0], &uh[r0, 0], &adv[r0], &tt[r0, 0],
                     &dd[r0, 0], stp)


