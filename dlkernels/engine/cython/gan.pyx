# cython: language_level=3
"""GAN kernels (Cython backend): fused MLP layers and losses from logits.

Same names, arguments and semantics as ``dlkernels.engine.numba.gan`` (read
its docstring for the conventions); no input validation here.  GEMMs call
the shared inline ``_blas.gemm`` (the same ``?gemm`` call as the Numba
backend's ``gemm_at``), the element-wise passes use the shared ``_fastmath``
scalars and do the same IEEE operations in the same order as the Numba
passes, so both backends return bit-identical results.  The C-level
``_f32`` / ``_f64`` functions are exported through ``gan.pxd``.
``train_steps`` (whole training steps in one call) is in ``_gan_train.pxi``.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf, isfinite, NAN
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy
from libc.stdlib cimport malloc, free

from dlkernels.engine.cython._blas cimport gemm, gemm_tiles
cimport openmp
from dlkernels.engine.cython._fastmath cimport (dlk_all_finite_f32, dlk_all_finite_f64,
                                              dlk_sigmoid32, dlk_sigmoid64, dlk_softplus32,
                                              dlk_softplus64)
from dlkernels.engine.cython.rng cimport stream_fill_f32, stream_fill_f64

cdef extern from *:
    """
    #include "dlk_fastmath.h"   /* DLK_CLONES, dlk_tanh32/64, dlk_sigmoid32/64 */

    /* One row of the tanh / sigmoid layers: y = act(y + b), and with d (not NULL)
       d = act' from the output t (tanh: 1 - t*t, sigmoid: t (1 - t)).  Twin: the
       smooth branch of _gan_layers._act_pass.  Multiversioned (DLK_CLONES) so that
       the loops run at the CPU's vector width: as plain Cython loops they ran in
       SSE2, 2.5x slower than the Numba twin at 256 x 1024 float32; element-wise,
       so every width gives the same bits. */
    #define DLK_GAN_SMOOTH(T, SUF)                                                    \
    DLK_CLONES static void dlk_gan_smooth_##SUF(int is_tanh, T *restrict y,          \
                                                const T *restrict b, T *restrict d,  \
                                                Py_ssize_t n) {                      \
        Py_ssize_t c;                                                                \
        T t;                                                                         \
        if (is_tanh) { for (c = 0; c < n; c++) y[c] = dlk_tanh##SUF(y[c] + b[c]); }  \
        else { for (c = 0; c < n; c++) y[c] = dlk_sigmoid##SUF(y[c] + b[c]); }       \
        if (d == NULL) return;                                                       \
        if (is_tanh) { for (c = 0; c < n; c++) { t = y[c]; d[c] = (T)1 - t * t; } }  \
        else { for (c = 0; c < n; c++) { t = y[c]; d[c] = t * ((T)1 - t); } }        \
    }
    DLK_GAN_SMOOTH(float, 32)
    DLK_GAN_SMOOTH(double, 64)
    """
    void dlk_gan_smooth_32(int is_tanh, float* y, const float* b, float* d,
                           Py_ssize_t n) noexcept nogil
    void dlk_gan_smooth_64(int is_tanh, double* y, const double* b, double* d,
                           Py_ssize_t n) noexcept nogil

__all__ = ["IDENTITY", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "MAXOUT", "TILE_R", "TILE_C",
           "PAR_MIN_WORK", "SMALL_DIM", "UPD_BLOCK", "PAR_MIN_UPDATE", "LAY_COLS", "L_N_IN", "L_N_OUT", "L_P", "L_CODE", "L_W", "L_B", "L_Y",
           "L_D", "L_PRE", "L_GPRE", "L_GX", "L_IDX", "layer_forward", "layer_backward",
           "logit_loss", "train_steps"]

IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, MAXOUT = 0, 1, 2, 3, 4, 5

cdef enum:
    A_IDENTITY = 0
    A_RELU = 1
    A_LEAKY = 2
    A_TANH = 3
    A_SIGMOID = 4
    A_MAXOUT = 5


cdef inline floating _sig(floating x) noexcept nogil:
    if floating is float:
        return dlk_sigmoid32(x)
    else:
        return dlk_sigmoid64(x)


cdef inline floating _softplus(floating x) noexcept nogil:
    if floating is float:
        return dlk_softplus32(x)
    else:
        return dlk_softplus64(x)


# ---- GEMM in tiles (same tiling and threshold as the Numba backend) --------------------------
cdef enum:
    TILE_R_ = 256
    TILE_C_ = 128
    PAR_MIN_WORK_ = 1 << 23

TILE_R, TILE_C, PAR_MIN_WORK = TILE_R_, TILE_C_, PAR_MIN_WORK_


# thin products by loops (the rule and the order of the sums: SMALL_DIM in the Numba twin)
cdef enum:
    SMALL_DIM_ = 4
    SMALL_T_VEC = 8

SMALL_DIM = SMALL_DIM_


cdef void _gemm_small(bint ta, int M, int N, int K, const floating* A, int lda,
                      const floating* B, int ldb, floating* C, int ldc) noexcept nogil:
    """Row-major C (M, N) = op(A) B by loops, each element summed over k in order."""
    cdef Py_ssize_t i, j, k
    cdef floating a, b
    cdef floating* T
    cdef const floating* ar
    cdef const floating* br
    cdef floating* cr
    if ta and N < SMALL_T_VEC:
        T = <floating*>malloc(max(M, 1) * sizeof(floating))
        if T != NULL:
            for j in range(N):
                for i in range(M):
                    T[i] = 0
                for k in range(K):
                    b = B[k * ldb + j]
                    ar = A + k * lda
                    for i in range(M):
                        T[i] = T[i] + ar[i] * b
                for i in range(M):
                    C[i * ldc + j] = T[i]
            free(T)
            return
    for i in range(M):
        cr = C + i * ldc
        for j in range(N):
            cr[j] = 0
        for k in range(K):
            a = A[k * lda + i] if ta else A[i * lda + k]
            br = B + k * ldb
            for j in range(N):
                cr[j] = cr[j] + a * br[j]


cdef void _gemm_tiled(bint ta, bint tb, int M, int N, int K, const floating* A, int lda,
                      const floating* B, int ldb, floating* C, int ldc) noexcept nogil:
    """Row-major C (M, N) = op(A) op(B): loops for a thin product (SMALL_DIM),
    one BLAS call below PAR_MIN_WORK multiply-adds, else TILE_R x TILE_C output
    tiles in parallel (one single-threaded BLAS call each; the tiling depends
    on the sizes only)."""
    cdef Py_ssize_t ntr, th, ntc, tw
    if not tb and (K <= SMALL_DIM_ or (ta and (M <= SMALL_DIM_ or N <= SMALL_DIM_))):
        _gemm_small(ta, M, N, K, A, lda, B, ldb, C, ldc)
        return
    if <long long>M * N * K < PAR_MIN_WORK_:
        gemm(ta, tb, M, N, K, <floating>1.0, A, lda, B, ldb, <floating>0.0, C, ldc)
        return
    ntr = (M + TILE_R_ - 1) // TILE_R_
    th = (M + ntr - 1) // ntr
    ntc = (N + TILE_C_ - 1) // TILE_C_
    tw = (N + ntc - 1) // ntc
    gemm_tiles(ta, tb, M, N, K, <floating>1.0, A, lda, B, ldb, <floating>0.0, C, ldc, th, tw,
               openmp.omp_get_max_threads())


# ---- element-wise passes -------------------------------------------------------------------
cdef void _act_pass(floating* Y, const floating* b, int B, int n, int act, floating slope,
                    floating* D, bint need_d) noexcept nogil:
    cdef Py_ssize_t r, c
    cdef floating one = 1, zero = 0, v
    cdef floating* y
    cdef floating* d
    cdef bint pos
    for r in range(B):
        y = Y + r * n
        d = D + r * n
        if act == A_IDENTITY:
            for c in range(n):
                y[c] = y[c] + b[c]
            if need_d:
                for c in range(n):
                    d[c] = one
        elif act == A_RELU:
            if need_d:
                for c in range(n):
                    v = y[c] + b[c]
                    pos = v > zero
                    y[c] = v if pos else zero
                    d[c] = one if pos else zero
            else:
                for c in range(n):
                    v = y[c] + b[c]
                    y[c] = v if v > zero else zero
        elif act == A_LEAKY:
            if need_d:
                for c in range(n):
                    v = y[c] + b[c]
                    pos = v > zero
                    y[c] = v if pos else v * slope
                    d[c] = one if pos else slope
            else:
                for c in range(n):
                    v = y[c] + b[c]
                    y[c] = v if v > zero else v * slope
        elif floating is float:   # tanh or sigmoid
            dlk_gan_smooth_32(act == A_TANH, y, b, d if need_d else NULL, n)
        else:
            dlk_gan_smooth_64(act == A_TANH, y, b, d if need_d else NULL, n)


cdef void _maxout_pass(const floating* PRE, const floating* b, int B, int n, int p, floating* Y,
                       int* idx, bint need_d) noexcept nogil:
    cdef Py_ssize_t r, j, q, c0
    cdef int N = n * p, bi
    cdef floating best, v
    cdef const floating* pr
    for r in range(B):
        pr = PRE + r * N
        for j in range(n):
            c0 = j * p
            best = pr[c0] + b[c0]
            bi = 0
            for q in range(1, p):
                v = pr[c0 + q] + b[c0 + q]
                if v > best:
                    best = v
                    bi = <int>q
            Y[r * n + j] = best
            if need_d:
                idx[r * n + j] = bi


cdef inline void _forward(const floating* X, const floating* W, const floating* b, int B, int K,
                          int n, int p, int act, floating slope, floating* PRE, floating* Y,
                          floating* D, int* idx, bint need_d) noexcept nogil:
    cdef int N = n * p
    if act == A_MAXOUT:
        _gemm_tiled(False, False, B, N, K, X, K, W, N, PRE, N)
        _maxout_pass(PRE, b, B, n, p, Y, idx, need_d)
    else:
        _gemm_tiled(False, False, B, N, K, X, K, W, N, Y, N)
        _act_pass(Y, b, B, n, act, slope, D, need_d)


cdef inline void _add_row(floating* gb, const floating* g, Py_ssize_t N) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(N):
        gb[c] += g[c]


cdef void _grad_pass(const floating* GY, const floating* D, const int* idx, bint maxout, int B,
                     int n, int p, floating* GPRE, floating* gb, bint need_gw) noexcept nogil:
    """GPRE = GY * D, or with maxout GPRE[r, j*p + idx[r, j]] = GY[r, j] and
    zeros elsewhere (p = 1 otherwise); gb = column sums of GPRE when need_gw."""
    cdef Py_ssize_t r, c, j
    cdef int N = n * p
    cdef floating* g
    if need_gw:
        for c in range(N):
            gb[c] = 0
    for r in range(B):
        g = GPRE + r * N
        if maxout:
            for c in range(N):
                g[c] = 0
            for j in range(n):
                g[j * p + idx[r * n + j]] = GY[r * n + j]
        else:
            for c in range(n):
                g[c] = GY[r * n + c] * D[r * n + c]
        if need_gw:
            _add_row(gb, g, N)


cdef inline void _backward(const floating* X, const floating* W, floating* GY,
                           const floating* D, const int* idx, int B, int K, int n, int p,
                           int act, floating* GPRE, floating* GX, floating* GW, floating* gb,
                           bint need_gx, bint need_gw) noexcept nogil:
    cdef int N = n * p
    _grad_pass(GY, D, idx, act == A_MAXOUT, B, n, p, GPRE, gb, need_gw)
    if need_gw:
        _gemm_tiled(True, False, K, N, B, X, K, GPRE, N, GW, N)
    if need_gx:
        _gemm_tiled(False, True, B, K, N, GPRE, N, W, N, GX, K)


cdef inline double _loss(const floating* L, int B, int n_real, int mode,
                         floating* G) noexcept nogil:
    cdef double acc = 0.0
    cdef int m = n_real if mode == 0 else B
    cdef floating one = 1
    cdef floating inv = one / <floating>m
    cdef floating l
    cdef Py_ssize_t r
    for r in range(B):
        l = L[r]
        if mode == 0 and r < n_real:
            acc += <double>_softplus(-l)
            G[r] = -_sig(-l) * inv
        elif mode == 0 or mode == 1:
            acc += <double>_softplus(l)
            G[r] = (-_sig(l) if mode == 1 else _sig(l)) * inv
        else:
            acc += <double>_softplus(-l)
            G[r] = -_sig(-l) * inv
    if mode == 1:
        return -acc / m
    return acc / m


# ---- C-level exports (gan.pxd) ------------------------------------------------------------
cdef void layer_forward_f32(const float* X, const float* W, const float* b, int B, int K, int n,
                            int p, int act, float slope, float* PRE, float* Y, float* D,
                            int* idx, bint need_d) noexcept nogil:
    _forward(X, W, b, B, K, n, p, act, slope, PRE, Y, D, idx, need_d)


cdef void layer_forward_f64(const double* X, const double* W, const double* b, int B, int K,
                            int n, int p, int act, double slope, double* PRE, double* Y,
                            double* D, int* idx, bint need_d) noexcept nogil:
    _forward(X, W, b, B, K, n, p, act, slope, PRE, Y, D, idx, need_d)


cdef void layer_backward_f32(const float* X, const float* W, float* GY, const float* D,
                             const int* idx, int B, int K, int n, int p, int act, float* GPRE,
                             float* GX, float* GW, float* gb, bint need_gx,
                             bint need_gw) noexcept nogil:
    _backward(X, W, GY, D, idx, B, K, n, p, act, GPRE, GX, GW, gb, need_gx, need_gw)


cdef void layer_backward_f64(const double* X, const double* W, double* GY, const double* D,
                             const int* idx, int B, int K, int n, int p, int act, double* GPRE,
                             double* GX, double* GW, double* gb, bint need_gx,
                             bint need_gw) noexcept nogil:
    _backward(X, W, GY, D, idx, B, K, n, p, act, GPRE, GX, GW, gb, need_gx, need_gw)


cdef double logit_loss_f32(const float* L, int B, int n_real, int mode, float* G) noexcept nogil:
    return _loss(L, B, n_real, mode, G)


cdef double logit_loss_f64(const double* L, int B, int n_real, int mode, double* G) noexcept nogil:
    return _loss(L, B, n_real, mode, G)


# ---- Python-level kernels (same signatures as the Numba backend) ----------------------------
# Optional buffers arrive as empty placeholders: their pointer is NULL, never the
# address of an absent element.
cdef inline floating* _buf(floating[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline const floating* _cbuf(const floating[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline int* _ibuf(int[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


cdef inline const int* _cibuf(const int[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] > 0 and a.shape[1] > 0 else NULL


def layer_forward(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
                  int act, double slope, floating[:, ::1] PRE, floating[:, ::1] Y,
                  floating[:, ::1] D, int[:, ::1] idx, bint need_d):
    """Y = act(X W + b), D = act'(X W + b) / idx = maxout arg-max when need_d."""
    cdef int B = <int>X.shape[0], K = <int>X.shape[1], n = <int>Y.shape[1]
    cdef int p = <int>W.shape[1] // n
    # PRE (maxout only), D and idx (need_d; D for the others, idx for maxout) may be
    # empty placeholders
    cdef floating* pre = _buf(PRE)
    cdef floating* d = _buf(D)
    cdef int* ix = _ibuf(idx)
    with nogil:
        _forward(&X[0, 0], &W[0, 0], &b[0], B, K, n, p, act, <floating>slope, pre,
                 &Y[0, 0], d, ix, need_d)


def layer_backward(const floating[:, ::1] X, const floating[:, ::1] W, floating[:, ::1] GY,
                   const floating[:, ::1] D, const int[:, ::1] idx, int act,
                   floating[:, ::1] GPRE, floating[:, ::1] GX, floating[:, ::1] GW,
                   floating[::1] gb, bint need_gx, bint need_gw):
    """Layer gradients from GY: GPRE, gb and GW (need_gw), GX (need_gx)."""
    cdef int B = <int>X.shape[0], K = <int>X.shape[1], n = <int>GY.shape[1]
    cdef int p = <int>W.shape[1] // n
    # D/idx, GPRE, GX (need_gx), GW and gb (need_gw) may be empty placeholders
    cdef const floating* d = _cbuf(D)
    cdef const int* ix = _cibuf(idx)
    cdef floating* gpre = _buf(GPRE)
    cdef floating* gx = _buf(GX)
    cdef floating* gw = _buf(GW)
    cdef floating* gbp = &gb[0] if gb.shape[0] > 0 else NULL
    with nogil:
        _backward(&X[0, 0], &W[0, 0], &GY[0, 0], d, ix, B, K, n, p, act,
                  gpre, gx, gw, gbp, need_gx, need_gw)


def logit_loss(const floating[:, ::1] L, int n_real, int mode, floating[:, ::1] G):
    """Loss from the logits L (B, 1) and its gradient G (B, 1)."""
    cdef double res
    with nogil:
        res = _loss(&L[0, 0], <int>L.shape[0], n_real, mode, &G[0, 0])
    return res


include "_gan_train.pxi"
