# Part of dlkernels.engine.cython.attention (included by attention.pyx).
#
# Scores, masked softmax, fused attention, Luong local attention and ragged
# attention pooling, forward and backward: the twin of
# dlkernels.engine.numba._attn (read its docstring for the array layout, the
# two score kinds, the mask encoding and the finiteness flags).  The same IEEE
# operations in the same order (sequential sums over keys / features or the
# 8-lane dot, exp and tanh from dlk_fastmath.h), so both backends give
# bit-identical results for any thread count.  No validation here.
from libc.stdint cimport int64_t, uint8_t
from libc.math cimport floor, floorf, INFINITY
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._blas cimport gemm, gemm_tiles
cimport openmp
from dlkernels.engine.cython._fastmath cimport (dlk_exp32, dlk_exp64, dlk_tanh32, dlk_tanh64,
                                                dlk_all_finite_f32, dlk_all_finite_f64)

_ATTN_ALL = ["SCORE_DOT", "SCORE_TANH", "PROJ_ROWS", "PROJ_SMALL", "TANH_PAIR_ROWS", "POOL_ROWS",
             "POOL_SCRATCH", "attn_gemm", "attn_scores", "attn_softmax", "attn_fwd",
             "attn_fwd_proj", "attn_project", "attn_bwd", "attn_local_fwd", "attn_local_bwd",
             "attn_pool_fwd", "attn_pool_bwd"]

SCORE_DOT = 0
SCORE_TANH = 1

cpdef enum:
    POOL_ROWS = 256  # rows of X per work item of attn_pool_fwd (see the Numba twin)
    POOL_SCRATCH = 1 << 20  # scratch elements per work item of attn_pool_fwd (Numba twin)
    PROJ_ROWS = 128  # rows of the product per work item of attn_gemm (see the Numba twin)
    PROJ_SMALL = 8  # a projection tile of at most this many rows is a loop (Numba twin)
    TANH_PAIR_ROWS = 4  # tanh score from per-query / per-key exponentials (Numba twin)


cdef inline floating _at_tanh(floating x) noexcept nogil:
    if floating is float:
        return dlk_tanh32(x)
    else:
        return dlk_tanh64(x)


cdef inline bint _at_all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return dlk_all_finite_f32(x, n)
    else:
        return dlk_all_finite_f64(x, n)


cdef inline floating _at_exp(floating x) noexcept nogil:
    if floating is float:
        return dlk_exp32(x)
    else:
        return dlk_exp64(x)


cdef extern from *:
    """
    #include "dlk_fastmath.h"
    /* One query's scores with n consecutive keys (rows of Kb, E features each;
       the twin of _attn.py's _score_row: the same operations in the same
       order), multiversioned (DLK_CLONES): the additive score's tanh row
       needs the AVX2 / AVX-512 clones to run 8 / 16 lanes wide.  dot:
       dlk_dot8 (dlk_fastmath.h), the 8-lane order of _sdpa._dot_lanes. */
    #define DLK_AT_SCORE_ROW(T, SUF, TANH, EXP, TPAIR)                                  \
    /* exp(2x), exp(-2x) of a row x (E,); whether all |x| <= DLK_TANH_PAIR_MAX  \
       (NaN: no) (twin of _attn.py's _pair_row) */                                  \
    DLK_CLONES static int dlk_at_pair_row_##SUF(const T *restrict x, Py_ssize_t E,    \
            T *restrict P, T *restrict N) {                                        \
        Py_ssize_t e, nbad = 0; T a;                                               \
        for (e = 0; e < E; e++) {                                                  \
            a = x[e];                                                              \
            P[e] = EXP((T)2.0 * a);                                                \
            N[e] = EXP(-(T)2.0 * a);                                               \
        }                                                                          \
        for (e = 0; e < E; e++) {                                                  \
            a = x[e];                                                              \
            nbad += (a <= (T)DLK_TANH_PAIR_MAX && a >= -(T)DLK_TANH_PAIR_MAX) ? 0 : 1; \
        }                                                                          \
        return nbad == 0;                                                          \
    }                                                                              \
    static void dlk_at_pair_keys_##SUF(const T *restrict Kb, Py_ssize_t n,            \
            Py_ssize_t E, T *restrict KP, T *restrict KN, uint8_t *restrict kok) {     \
        Py_ssize_t j;                                                              \
        for (j = 0; j < n; j++)                                                    \
            kok[j] = dlk_at_pair_row_##SUF(Kb + j * E, E, KP + j * E, KN + j * E) ? 1 : 0; \
    }                                                                              \
    /* the tanh scores of one query with keys 0..n-1 of Kb; with pair, a pair of    \
       rows both in range takes TPAIR from the exponentials (twin of _tanh_row) */  \
    DLK_CLONES static void dlk_at_tanh_row_##SUF(const T *restrict qrow,               \
            const T *restrict Kb, Py_ssize_t E, const T *restrict vv, Py_ssize_t n,     \
            T *restrict s, T *restrict Tb, int keep, int pair, T *restrict EP,         \
            T *restrict EN, const T *restrict KP, const T *restrict KN,                \
            const uint8_t *restrict kok) {                                             \
        Py_ssize_t e, jj; const T *restrict kr; const T *restrict kp;                  \
        const T *restrict kn; T *restrict t;                                           \
        int qok = pair && dlk_at_pair_row_##SUF(qrow, E, EP, EN);                       \
        for (jj = 0; jj < n; jj++) {                                                   \
            kr = Kb + jj * E; t = keep ? Tb + jj * E : Tb;                             \
            if (qok && kok[jj] != 0) {                                                 \
                kp = KP + jj * E; kn = KN + jj * E;                                    \
                for (e = 0; e < E; e++)                                                \
                    t[e] = TPAIR(qrow[e] + kr[e], EP[e] * kp[e], EN[e] * kn[e]);       \
            } else {                                                                   \
                for (e = 0; e < E; e++) t[e] = TANH(qrow[e] + kr[e]);                  \
            }                                                                          \
            s[jj] = dlk_dot8_##SUF(vv, t, E);                                        \
        }                                                                              \
    }                                                                                  \
    /* kind 0: the dot scores; kind 1: the plain tanh row (tanh_row without the     \
       exponentials) */                                                             \
    DLK_CLONES static void dlk_at_score_row_##SUF(int kind, const T *restrict qrow,    \
            const T *restrict Kb, Py_ssize_t E, const T *restrict vv, T sc,             \
            Py_ssize_t n, T *restrict s, T *restrict Tb, int keep) {                   \
        Py_ssize_t jj;                                                                 \
        if (kind == 0) {                                                               \
            for (jj = 0; jj < n; jj++) s[jj] = sc * dlk_dot8_##SUF(qrow, Kb + jj * E, E); \
        } else {                                                                       \
            dlk_at_tanh_row_##SUF(qrow, Kb, E, vv, n, s, Tb, keep, 0, NULL, NULL, NULL,    \
                                  NULL, NULL);                                         \
        }                                                                              \
    }                                                                                  \
    /* attention pooling: t = tanh(t + b) in place, returns dot(t, u) */           \
    DLK_CLONES static T dlk_at_pool_row_##SUF(T *restrict t, const T *restrict b,     \
                                              const T *restrict u, Py_ssize_t A) {     \
        Py_ssize_t h;                                                                  \
        for (h = 0; h < A; h++) t[h] = TANH(t[h] + b[h]);                              \
        return dlk_dot8_##SUF(t, u, A);                                              \
    }                                                                                  \
    /* out[0:Dv] = sum over the attended jj < n of w[jj] * V row jj (keys in     \
       order; the twin of _attn.py's _weighted_sum) */                             \
    DLK_CLONES static void dlk_at_wsum_##SUF(const T *restrict w,                     \
            const uint8_t *restrict ok, Py_ssize_t n, const T *restrict V,             \
            Py_ssize_t Dv, T *restrict out) {                                          \
        Py_ssize_t jj, d; T a; const T *restrict vr;                                   \
        for (d = 0; d < Dv; d++) out[d] = 0;                                           \
        for (jj = 0; jj < n; jj++) {                                                   \
            if (ok[jj] != 0) {                                                         \
                a = w[jj]; vr = V + jj * Dv;                                           \
                for (d = 0; d < Dv; d++) out[d] = out[d] + a * vr[d];                  \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    /* out (n, E) = X (n, K) @ W (K, E), each element summed over d ascending   \
       from 0 (the twin of _attn.py's _proj_rows loop for small tiles) */            \
    DLK_CLONES static void dlk_at_rows_##SUF(const T *restrict X, Py_ssize_t n,        \
            Py_ssize_t K, const T *restrict W, Py_ssize_t E, T *restrict out) {        \
        Py_ssize_t r, d, e; T a; const T *restrict wr; T *restrict orow;               \
        for (r = 0; r < n * E; r++) out[r] = 0;                                        \
        for (d = 0; d < K; d++) {                                                      \
            wr = W + d * E;                                                            \
            for (r = 0; r < n; r++) {                                                  \
                a = X[r * K + d]; orow = out + r * E;                                  \
                for (e = 0; e < E; e++) orow[e] = orow[e] + a * wr[e];                 \
            }                                                                          \
        }                                                                              \
    }
    DLK_AT_SCORE_ROW(float, f32, dlk_tanh32, dlk_exp32, dlk_tanh_pair32)
    DLK_AT_SCORE_ROW(double, f64, dlk_tanh64, dlk_exp64, dlk_tanh_pair64)
    """
    void dlk_at_score_row_f32(int kind, const float* qrow, const float* Kb, Py_ssize_t E,
                              const float* vv, float sc, Py_ssize_t n, float* s, float* Tb,
                              int keep) noexcept nogil
    void dlk_at_score_row_f64(int kind, const double* qrow, const double* Kb, Py_ssize_t E,
                              const double* vv, double sc, Py_ssize_t n, double* s, double* Tb,
                              int keep) noexcept nogil
    float dlk_at_pool_row_f32(float* t, const float* b, const float* u,
                              Py_ssize_t A) noexcept nogil
    double dlk_at_pool_row_f64(double* t, const double* b, const double* u,
                               Py_ssize_t A) noexcept nogil
    void dlk_at_wsum_f32(const float* w, const uint8_t* ok, Py_ssize_t n, const float* V,
                         Py_ssize_t Dv, float* out) noexcept nogil
    void dlk_at_wsum_f64(const double* w, const uint8_t* ok, Py_ssize_t n, const double* V,
                         Py_ssize_t Dv, double* out) noexcept nogil
    void dlk_at_pair_keys_f32(const float* Kb, Py_ssize_t n, Py_ssize_t E, float* KP,
                              float* KN, uint8_t* kok) noexcept nogil
    void dlk_at_pair_keys_f64(const double* Kb, Py_ssize_t n, Py_ssize_t E, double* KP,
                              double* KN, uint8_t* kok) noexcept nogil
    void dlk_at_tanh_row_f32(const float* qrow, const float* Kb, Py_ssize_t E, const float* vv,
                             Py_ssize_t n, float* s, float* Tb, int keep, int pair, float* EP,
                             float* EN, const float* KP, const float* KN,
                             const uint8_t* kok) noexcept nogil
    void dlk_at_tanh_row_f64(const double* qrow, const double* Kb, Py_ssize_t E,
                             const double* vv, Py_ssize_t n, double* s, double* Tb, int keep,
                             int pair, double* EP, double* EN, const double* KP,
                             const double* KN, const uint8_t* kok) noexcept nogil
    void dlk_at_rows_f32(const float* X, Py_ssize_t n, Py_ssize_t K, const float* W,
                         Py_ssize_t E, float* out) noexcept nogil
    void dlk_at_rows_f64(const double* X, Py_ssize_t n, Py_ssize_t K, const double* W,
                         Py_ssize_t E, double* out) noexcept nogil


cdef inline void _at_score_row(int kind, const floating* qrow, const floating* Kb,
                               Py_ssize_t E, const floating* vv, floating sc, Py_ssize_t n,
                               floating* s, floating* T, bint keep) noexcept nogil:
    """s[0:n]: scores of one query (qrow) with the n keys (rows of E) from Kb;
    kind 1: the tanh values of key jj go to row jj of T (n, E) when keep, else
    to T[0:E] (scratch)."""
    if floating is float:
        dlk_at_score_row_f32(kind, qrow, Kb, E, vv, sc, n, s, T, keep)
    else:
        dlk_at_score_row_f64(kind, qrow, Kb, E, vv, sc, n, s, T, keep)


cdef inline bint _at_pair_rule(int kind, Py_ssize_t Tq) noexcept nogil:
    """Whether the tanh rows of a batch row of Tq queries take the exponentials
    (the TANH_PAIR_ROWS rule of every kernel; Numba twin: _pair_scratch).  The
    scratch PB then holds EP, EN (E each), KP, KN (Tk x E each), else 1 x E."""
    return kind == 1 and Tq >= TANH_PAIR_ROWS


cdef inline void _at_pair_keys(const floating* Kb, Py_ssize_t n, Py_ssize_t E, floating* PB,
                               Py_ssize_t m, uint8_t* kok) noexcept nogil:
    """Exponentials and range flags of keys 0..n-1 of Kb into the scratch PB
    (EP, EN: E each; KP, KN: m x E each) (Numba twin: _pair_keys)."""
    if floating is float:
        dlk_at_pair_keys_f32(Kb, n, E, PB + 2 * E, PB + 2 * E + m * E, kok)
    else:
        dlk_at_pair_keys_f64(Kb, n, E, PB + 2 * E, PB + 2 * E + m * E, kok)


cdef inline void _at_score_any(int kind, const floating* qrow, const floating* Kb,
                               Py_ssize_t E, const floating* vv, floating sc, Py_ssize_t n,
                               floating* s, floating* T, bint keep, bint pair, floating* PB,
                               Py_ssize_t m, const uint8_t* kok) noexcept nogil:
    """_at_score_row for kind 0, the tanh row (with the exponentials of PB when
    pair) for kind 1 (Numba twin: _score_row / _tanh_row)."""
    if kind == 0:
        _at_score_row(kind, qrow, Kb, E, vv, sc, n, s, T, keep)
    elif floating is float:
        dlk_at_tanh_row_f32(qrow, Kb, E, vv, n, s, T, keep, pair, PB, PB + E, PB + 2 * E,
                            PB + 2 * E + m * E, kok)
    else:
        dlk_at_tanh_row_f64(qrow, Kb, E, vv, n, s, T, keep, pair, PB, PB + E, PB + 2 * E,
                            PB + 2 * E + m * E, kok)


cdef inline Py_ssize_t _at_row_lim(Py_ssize_t b, Py_ssize_t i, Py_ssize_t Tq, Py_ssize_t Tk,
                                   const int64_t* L, bint causal) noexcept nogil:
    """Keys j < this may be attended by row (b, i) (lengths and causality)."""
    cdef Py_ssize_t lim = L[b], c
    if causal:
        c = i + Tk - Tq + 1
        if c < lim:
            lim = c
    return lim if lim > 0 else 0


cdef inline void _at_row_ok(floating* s, Py_ssize_t b, Py_ssize_t i, Py_ssize_t Tq,
                            Py_ssize_t Tk, const int64_t* L, bint causal, int mmode,
                            const uint8_t* mb, const floating* mf, Py_ssize_t msb,
                            Py_ssize_t msq, Py_ssize_t msk, uint8_t* ok) noexcept nogil:
    cdef Py_ssize_t j, lim = _at_row_lim(b, i, Tq, Tk, L, causal), base = b * msb + i * msq
    cdef floating f, ninf = -INFINITY
    for j in range(Tk):
        if j >= lim:
            ok[j] = 0
        elif mmode == 1:
            ok[j] = 1 if mb[base + j * msk] != 0 else 0
        elif mmode == 2:
            f = mf[base + j * msk]
            if f == ninf:
                ok[j] = 0
            else:
                ok[j] = 1
                s[j] = s[j] + f
        else:
            ok[j] = 1


cdef inline bint _at_softmax_row(const floating* s, const uint8_t* ok, Py_ssize_t n,
                                 floating* w) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = -INFINITY, ninf = -INFINITY, z = 0, e
    for j in range(n):
        if ok[j] != 0 and s[j] > m:
            m = s[j]
    if m == ninf:
        for j in range(n):
            w[j] = 0
        return False
    for j in range(n):
        if ok[j] != 0:
            e = _at_exp(s[j] - m)
            w[j] = e
            z += e
        else:
            w[j] = 0
    for j in range(n):
        w[j] = w[j] / z
    return True


cdef inline void _at_weighted_sum(const floating* w, const uint8_t* ok, Py_ssize_t n,
                                  const floating* Vrows, Py_ssize_t Dv,
                                  floating* out) noexcept nogil:
    if floating is float:
        dlk_at_wsum_f32(w, ok, n, Vrows, Dv, out)
    else:
        dlk_at_wsum_f64(w, ok, n, Vrows, Dv, out)


cdef inline void _at_score_bwd_row(int kind, const floating* qrow, const floating* Kb,
                                   Py_ssize_t E, const floating* vv, floating sc, Py_ssize_t n,
                                   const floating* ds, const uint8_t* ok, const floating* T,
                                   floating* dq, floating* dKb, floating* dvvb,
                                   floating* acc) noexcept nogil:
    """Backward of _at_score_row (twin of _score_bwd_row): dq written, the
    rows of dKb and dvvb accumulated; acc scratch (E,)."""
    cdef Py_ssize_t e, jj
    cdef floating g, d
    cdef const floating* kr
    cdef const floating* t
    cdef floating* dk
    for e in range(E):
        dq[e] = 0
    if kind == 0:
        for jj in range(n):
            if ok[jj] != 0:
                g = sc * ds[jj]
                kr = Kb + jj * E
                dk = dKb + jj * E
                for e in range(E):
                    dq[e] += g * kr[e]
                    dk[e] += g * qrow[e]
    else:
        for e in range(E):
            acc[e] = 0
        for jj in range(n):
            if ok[jj] != 0:
                t = T + jj * E
                g = ds[jj]
                dk = dKb + jj * E
                for e in range(E):
                    d = (g * vv[e]) * (<floating>1 - t[e] * t[e])
                    dq[e] += d
                    dk[e] += d
                    acc[e] += g * t[e]
        for e in range(E):
            dvvb[e] += acc[e]


cdef inline Py_ssize_t _at_min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


# ---- projections ------------------------------------------------------------------------

def attn_gemm(bint ta, bint tb, const floating[:, ::1] A, const floating[:, ::1] B,
              floating[:, ::1] C):
    """C (M, N) = op(A) op(B): tiles of PROJ_ROWS rows of C, one
    single-threaded gemm each, in parallel (``_blas.pxd``'s gemm_tiles; see
    the Numba twin)."""
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1], K = A.shape[0] if ta else A.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        C[:, :] = 0
        return
    with nogil:
        gemm_tiles(ta, tb, M, N, K, <floating>1, &A[0, 0], A.shape[1], &B[0, 0], B.shape[1],
                   <floating>0, &C[0, 0], N, PROJ_ROWS, N, openmp.omp_get_max_threads())


# ---- scores and masked softmax ------------------------------------------------------

cdef void _at_scores_chunk(int kind, const floating* Qp, const floating* Kp,
                           const floating* vv, floating sc, Py_ssize_t r0, Py_ssize_t r1,
                           Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E,
                           floating* out) noexcept nogil:
    cdef floating* t = <floating*>malloc((E + 1) * sizeof(floating))
    cdef Py_ssize_t r, b, i
    cdef bint pair = _at_pair_rule(kind, Tq)
    cdef Py_ssize_t m = Tk if pair else 1
    cdef floating* PB = <floating*>malloc((2 * E + 2 * m * E + 1) * sizeof(floating))
    cdef uint8_t* kok = <uint8_t*>malloc(m + 1)
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        if pair and (i == 0 or r == r0):
            _at_pair_keys(Kp + b * Tk * E, Tk, E, PB, m, kok)
        _at_score_any(kind, Qp + r * E, Kp + b * Tk * E, E, vv, sc, Tk, out + r * Tk, t, False,
                      pair, PB, m, kok)
    free(t)
    free(PB)
    free(kok)


def attn_scores(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] Kp,
                const floating[::1] vv, double scale, floating[:, :, ::1] out):
    """out (B, Tq, Tk) = the scores of every query with every key."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = Kp.shape[1]
    cdef Py_ssize_t nrows = B * Tq, nch, c
    cdef floating sc = <floating>scale
    if nrows == 0 or Tk == 0:
        return
    cdef const floating* qp = &Qp[0, 0, 0]
    cdef const floating* kpp = &Kp[0, 0, 0] if E else NULL
    cdef floating* o = &out[0, 0, 0]
    nch = _at_min(nrows, 256)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_scores_chunk(kind, qp, kpp, &vv[0], sc, c * nrows // nch, (c + 1) * nrows // nch,
                         Tq, Tk, E, o)


cdef void _at_softmax_chunk(const floating* S, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t Tq,
                            Py_ssize_t Tk, const int64_t* L, bint causal, int mmode,
                            const uint8_t* mb, const floating* mf, Py_ssize_t msb,
                            Py_ssize_t msq, Py_ssize_t msk, floating* out) noexcept nogil:
    cdef floating* s = <floating*>malloc((Tk + 1) * sizeof(floating))
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef Py_ssize_t r, b, i, j
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        for j in range(Tk):
            s[j] = S[r * Tk + j]
        _at_row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        _at_softmax_row(s, ok, Tk, out + r * Tk)
    free(s)
    free(ok)


def attn_softmax(const floating[:, :, ::1] S, const int64_t[::1] L, bint causal, int mmode,
                 const uint8_t[::1] mb, const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq,
                 Py_ssize_t msk, floating[:, :, ::1] out):
    """out (B, Tq, Tk) = masked softmax of S over the keys (out may be S)."""
    cdef Py_ssize_t B = S.shape[0], Tq = S.shape[1], Tk = S.shape[2]
    cdef Py_ssize_t nrows = B * Tq, nch, c
    if nrows == 0 or Tk == 0:
        return
    nch = _at_min(nrows, 64)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_softmax_chunk(&S[0, 0, 0], c * nrows // nch, (c + 1) * nrows // nch, Tq, Tk, &L[0],
                          causal, mmode, &mb[0], &mf[0], msb, msq, msk, &out[0, 0, 0])


# ---- fused attention ------------------------------------------------------------------

cdef void _at_fwd_chunk(int kind, const floating* Qp, const floating* Kp, const floating* vv,
                        floating sc, const floating* V, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv,
                        const int64_t* L, bint causal, int mmode, const uint8_t* mb,
                        const floating* mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
                        floating* ctx, floating* wout, bint want_w, bint check,
                        uint8_t* bad) noexcept nogil:
    cdef floating* s = <floating*>malloc((2 * Tk + E + 1) * sizeof(floating))
    cdef floating* w = s + Tk
    cdef floating* t = w + Tk
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef Py_ssize_t r, b, i, j, n, nb
    cdef bint fin, kfin = True
    cdef bint pair = _at_pair_rule(kind, Tq)
    cdef Py_ssize_t m = Tk if pair else 1
    cdef floating* PB = <floating*>malloc((2 * E + 2 * m * E + 1) * sizeof(floating))
    cdef uint8_t* kok = <uint8_t*>malloc(m + 1)
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        if kind != 0 and (i == 0 or r == r0):
            nb = _at_min(L[b], Tk)
            if check:
                kfin = _at_all_finite(Kp + b * Tk * E, nb * E)
            if pair:
                _at_pair_keys(Kp + b * Tk * E, nb, E, PB, m, kok)
        n = _at_row_lim(b, i, Tq, Tk, L, causal)
        _at_score_any(kind, Qp + r * E, Kp + b * Tk * E, E, vv, sc, n, s, t, False, pair, PB, m,
                      kok)
        fin = kfin
        if check and kind == 0:
            fin = _at_all_finite(s, n)
        _at_row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        _at_softmax_row(s, ok, Tk, w)
        _at_weighted_sum(w, ok, n, V + b * Tk * Dv, Dv, ctx + r * Dv)
        if check:
            bad[r] = 0 if (fin and _at_all_finite(Qp + r * E, E)
                           and _at_all_finite(ctx + r * Dv, Dv)) else 1
        if want_w:
            for j in range(Tk):
                wout[r * Tk + j] = w[j]
    free(s)
    free(ok)
    free(PB)
    free(kok)


def attn_fwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] Kp,
             const floating[::1] vv, double scale, const floating[:, :, ::1] V,
             const int64_t[::1] L, bint causal, int mmode, const uint8_t[::1] mb,
             const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
             floating[:, :, ::1] ctx, floating[:, :, ::1] wout, bint want_w, bint check,
             uint8_t[::1] bad):
    """Fused attention: ctx (B, Tq, Dv) and, when want_w, wout (B, Tq, Tk);
    with check, bad (B * Tq,) flags the rows that met a non-finite value (see
    the Numba twin)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = Kp.shape[1]
    cdef Py_ssize_t Dv = V.shape[2], nrows = B * Tq, nch, c
    cdef floating sc = <floating>scale
    if nrows == 0:
        return
    cdef const floating* qp = &Qp[0, 0, 0] if E else NULL
    cdef const floating* kpp = &Kp[0, 0, 0] if E * Tk else NULL
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else NULL
    cdef floating* cp = &ctx[0, 0, 0] if Dv else NULL
    cdef floating* wp = &wout[0, 0, 0] if wout.shape[0] * wout.shape[1] * wout.shape[2] else NULL
    nch = _at_min(nrows, 256)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_fwd_chunk(kind, qp, kpp, &vv[0], sc, vp, c * nrows // nch, (c + 1) * nrows // nch,
                      Tq, Tk, E, Dv, &L[0], causal, mmode, &mb[0], &mf[0], msb, msq, msk, cp,
                      wp, want_w, check, &bad[0])


cdef void _at_proj_rows(const floating* X, Py_ssize_t n, Py_ssize_t K, const floating* W,
                        Py_ssize_t E, const floating* bias, bint has_b,
                        floating* out) noexcept nogil:
    """out (n, E) = X (n, K) @ W (K, E) (+ bias): one single-threaded gemm, or
    a loop for at most PROJ_SMALL rows; zeros for K == 0 (Numba twin:
    _proj_rows)."""
    cdef Py_ssize_t r, e
    if n == 0 or E == 0:
        return
    if K == 0 or n <= PROJ_SMALL:
        if floating is float:
            dlk_at_rows_f32(X, n, K, W, E, out)
        else:
            dlk_at_rows_f64(X, n, K, W, E, out)
    else:
        gemm(False, False, <int>n, <int>E, <int>K, <floating>1, X, <int>K, W, <int>E,
             <floating>0, out, <int>E)
    if has_b:
        for r in range(n):
            for e in range(E):
                out[r * E + e] = out[r * E + e] + bias[e]


def attn_project(const floating[:, :, ::1] X, const floating[:, ::1] W,
                 const floating[::1] bias, bint has_b, floating[:, :, ::1] out):
    """out (B, T, E) = X (B, T, D) @ W (+ bias): tiles of PROJ_ROWS rows within
    each batch row, one single-threaded gemm each, in parallel (Numba twin)."""
    cdef Py_ssize_t B = X.shape[0], T = X.shape[1], D = X.shape[2], E = W.shape[1]
    cdef Py_ssize_t nt = (T + PROJ_ROWS - 1) // PROJ_ROWS, nit = B * nt, t, b, c0
    if nit == 0 or E == 0:
        return
    cdef const floating* xp = &X[0, 0, 0] if D else NULL
    cdef const floating* wp = &W[0, 0] if D else NULL
    cdef const floating* bp = &bias[0] if bias.shape[0] else NULL
    cdef floating* op = &out[0, 0, 0]
    for t in prange(nit, nogil=True, schedule="static"):
        b = t // nt
        c0 = (t - b * nt) * PROJ_ROWS
        _at_proj_rows(xp + (b * T + c0) * D, _at_min(c0 + PROJ_ROWS, T) - c0, D, wp, E, bp,
                      has_b, op + (b * T + c0) * E)


cdef void _at_fwd_proj_item(Py_ssize_t t, int kind, const floating* Xq, Py_ssize_t Dq,
                            const floating* Wq, const floating* bq, bint has_b,
                            const floating* Xk, Py_ssize_t Dk, const floating* Wk,
                            const floating* Kp, bint kgiven, const floating* vv, floating sc,
                            const floating* V, Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E,
                            Py_ssize_t Dv, const int64_t* L, bint causal, int mmode,
                            const uint8_t* mb, const floating* mf, Py_ssize_t msb,
                            Py_ssize_t msq, Py_ssize_t msk, floating* ctx, floating* wout,
                            bint want_w, bint check, uint8_t* bad) noexcept nogil:
    cdef Py_ssize_t nqt = (Tq + PROJ_ROWS - 1) // PROJ_ROWS
    cdef Py_ssize_t b = t // nqt, i0 = (t - b * nqt) * PROJ_ROWS
    cdef Py_ssize_t i1 = _at_min(i0 + PROJ_ROWS, Tq), nq, nk, ii, i, r, j, n, c0
    cdef bint fin, kfin = True
    nq = i1 - i0
    nk = _at_row_lim(b, i1 - 1, Tq, Tk, L, causal)
    cdef floating* Qs = <floating*>malloc((nq * E + 2 * Tk + E + 1) * sizeof(floating))
    cdef floating* s = Qs + nq * E
    cdef floating* w = s + Tk
    cdef floating* tt = w + Tk
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef floating* Kown = NULL
    cdef const floating* Ks
    _at_proj_rows(Xq + (b * Tq + i0) * Dq, nq, Dq, Wq, E, bq, has_b, Qs)
    if kgiven:
        Ks = Kp + b * Tk * E
    else:
        # the key tiles holding keys 0..nk-1 (padding beyond them is not projected)
        Kown = <floating*>malloc((Tk * E + 1) * sizeof(floating))
        c0 = 0
        while c0 < nk:
            _at_proj_rows(Xk + (b * Tk + c0) * Dk, _at_min(c0 + PROJ_ROWS, Tk) - c0, Dk, Wk, E,
                          bq, False, Kown + c0 * E)
            c0 += PROJ_ROWS
        Ks = Kown
    cdef bint pair = _at_pair_rule(kind, Tq)
    cdef Py_ssize_t m = Tk if pair else 1
    cdef floating* PB = <floating*>malloc((2 * E + 2 * m * E + 1) * sizeof(floating))
    cdef uint8_t* kok = <uint8_t*>malloc(m + 1)
    if pair:
        _at_pair_keys(Ks, nk, E, PB, m, kok)
    if check and kind != 0:  # tanh hides inf: the keys the item reads
        kfin = _at_all_finite(Ks, nk * E)
    for ii in range(nq):
        i = i0 + ii
        r = b * Tq + i
        n = _at_row_lim(b, i, Tq, Tk, L, causal)
        _at_score_any(kind, Qs + ii * E, Ks, E, vv, sc, n, s, tt, False, pair, PB, m, kok)
        fin = kfin
        if check and kind == 0:
            fin = _at_all_finite(s, n)
        _at_row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        _at_softmax_row(s, ok, Tk, w)
        _at_weighted_sum(w, ok, n, V + b * Tk * Dv, Dv, ctx + r * Dv)
        if check:
            bad[r] = 0 if (fin and _at_all_finite(Xq + r * Dq, Dq)
                           and _at_all_finite(ctx + r * Dv, Dv)) else 1
        if want_w:
            for j in range(Tk):
                wout[r * Tk + j] = w[j]
    free(Qs)
    free(ok)
    free(Kown)
    free(PB)
    free(kok)


def attn_fwd_proj(int kind, const floating[:, :, ::1] Xq, const floating[:, ::1] Wq,
                  const floating[::1] bq, bint has_b, const floating[:, :, ::1] Xk,
                  const floating[:, ::1] Wk, const floating[:, :, ::1] Kp, bint kgiven,
                  const floating[::1] vv, double scale, const floating[:, :, ::1] V,
                  const int64_t[::1] L, bint causal, int mmode, const uint8_t[::1] mb,
                  const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
                  floating[:, :, ::1] ctx, floating[:, :, ::1] wout, bint want_w, bint check,
                  uint8_t[::1] bad):
    """attn_fwd with the projections made inside the work items (batch row b,
    a tile of PROJ_ROWS of its queries; the same gemm calls as attn_project;
    see the Numba twin)."""
    cdef Py_ssize_t B = Xq.shape[0], Tq = Xq.shape[1], Dq = Xq.shape[2], E = Wq.shape[1]
    cdef Py_ssize_t Tk = V.shape[1], Dv = V.shape[2], Dk = Xk.shape[2], nit, t
    cdef floating sc = <floating>scale
    if B * Tq == 0:
        return
    cdef const floating* xq = &Xq[0, 0, 0] if Dq else NULL
    cdef const floating* wq = &Wq[0, 0] if Dq * E else NULL
    cdef const floating* xk = &Xk[0, 0, 0] if Xk.shape[0] * Xk.shape[1] * Dk else NULL
    cdef const floating* wk = &Wk[0, 0] if Wk.shape[0] * Wk.shape[1] else NULL
    cdef const floating* kpp = &Kp[0, 0, 0] if Kp.shape[0] * Kp.shape[1] * Kp.shape[2] else NULL
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else NULL
    cdef floating* cp = &ctx[0, 0, 0] if Dv else NULL
    cdef floating* wp = &wout[0, 0, 0] if wout.shape[0] * wout.shape[1] * wout.shape[2] else NULL
    cdef const floating* vvp = &vv[0] if vv.shape[0] else NULL
    cdef const floating* bp = &bq[0] if bq.shape[0] else NULL
    nit = B * ((Tq + PROJ_ROWS - 1) // PROJ_ROWS)
    for t in prange(nit, nogil=True, schedule="static"):
        _at_fwd_proj_item(t, kind, xq, Dq, wq, bp, has_b, xk, Dk, wk, kpp, kgiven, vvp, sc, vp,
                          Tq, Tk, E, Dv, &L[0], causal, mmode, &mb[0], &mf[0], msb, msq, msk,
                          cp, wp, want_w, check, &bad[0])


cdef void _at_bwd_batch(int kind, const floating* Qp, const floating* Kp, const floating* vv,
                        floating sc, const floating* V, Py_ssize_t b, Py_ssize_t Tq,
                        Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv, const int64_t* L,
                        bint causal, int mmode, const uint8_t* mb, const floating* mf,
                        Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk, const floating* dctx,
                        const floating* gw, bint has_gw, floating* dQp, floating* dKp,
                        floating* dvv, Py_ssize_t nvv, floating* dV) noexcept nogil:
    cdef Py_ssize_t nT = E * Tk if kind == 1 else 1
    cdef floating* s = <floating*>malloc((3 * Tk + nT + E + 1) * sizeof(floating))
    cdef floating* w = s + Tk
    cdef floating* dw = w + Tk
    cdef floating* T = dw + Tk
    cdef floating* ac = T + nT
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef Py_ssize_t i, j, d, e, r, n
    cdef floating dot, acc, a
    cdef floating* dKpb = dKp + b * Tk * E
    cdef floating* dVb = dV + b * Tk * Dv
    cdef const floating* Vb = V + b * Tk * Dv
    cdef const floating* dc
    cdef bint pair = _at_pair_rule(kind, Tq)
    cdef Py_ssize_t m = Tk if pair else 1
    cdef floating* PB = <floating*>malloc((2 * E + 2 * m * E + 1) * sizeof(floating))
    cdef uint8_t* kok = <uint8_t*>malloc(m + 1)
    if pair:
        _at_pair_keys(Kp + b * Tk * E, _at_min(L[b], Tk), E, PB, m, kok)
    for e in range(nvv):
        dvv[b * nvv + e] = 0
    for j in range(E * Tk):
        dKpb[j] = 0
    for j in range(Tk * Dv):
        dVb[j] = 0
    for i in range(Tq):
        r = b * Tq + i
        dc = dctx + r * Dv
        n = _at_row_lim(b, i, Tq, Tk, L, causal)
        _at_score_any(kind, Qp + r * E, Kp + b * Tk * E, E, vv, sc, n, s, T, True, pair, PB, m,
                      kok)
        _at_row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        if not _at_softmax_row(s, ok, Tk, w):
            for e in range(E):
                dQp[r * E + e] = 0
            continue
        dot = 0
        for j in range(Tk):
            if ok[j] != 0:
                acc = 0
                for d in range(Dv):
                    acc += dc[d] * Vb[j * Dv + d]
                if has_gw:
                    acc += gw[r * Tk + j]
                dw[j] = acc
                dot += w[j] * acc
        for j in range(Tk):
            if ok[j] != 0:
                dw[j] = w[j] * (dw[j] - dot)
                a = w[j]
                for d in range(Dv):
                    dVb[j * Dv + d] += a * dc[d]
            else:
                dw[j] = 0
        _at_score_bwd_row(kind, Qp + r * E, Kp + b * Tk * E, E, vv, sc, n, dw, ok, T,
                          dQp + r * E, dKpb, dvv + b * nvv, ac)
    free(s)
    free(ok)
    free(PB)
    free(kok)


def attn_bwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] Kp,
             const floating[::1] vv, double scale, const floating[:, :, ::1] V,
             const int64_t[::1] L, bint causal, int mmode, const uint8_t[::1] mb,
             const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
             const floating[:, :, ::1] dctx, const floating[:, :, ::1] gw, bint has_gw,
             floating[:, :, ::1] dQp, floating[:, :, ::1] dKp, floating[:, ::1] dvv,
             floating[:, :, ::1] dV):
    """Backward of attn_fwd: dQp, dKp, dV and per-batch-row partials dvv (B, E)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = Kp.shape[1]
    cdef Py_ssize_t Dv = V.shape[2], b
    cdef floating sc = <floating>scale
    if B == 0:
        return
    cdef floating* dz = &dvv[0, 0]  # any valid address for empty arrays
    cdef const floating* qp = &Qp[0, 0, 0] if Tq * E else <const floating*>dz
    cdef const floating* kpp = &Kp[0, 0, 0] if E * Tk else <const floating*>dz
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>dz
    cdef const floating* dcp = &dctx[0, 0, 0] if Tq * Dv else <const floating*>dz
    cdef floating* dqp = &dQp[0, 0, 0] if Tq * E else dz
    cdef floating* dkp = &dKp[0, 0, 0] if E * Tk else dz
    cdef floating* dvp = &dV[0, 0, 0] if Tk * Dv else dz
    for b in prange(B, nogil=True, schedule="static"):
        _at_bwd_batch(kind, qp, kpp, &vv[0], sc, vp, b, Tq, Tk, E, Dv, &L[0], causal, mmode,
                      &mb[0], &mf[0], msb, msq, msk, dcp, &gw[0, 0, 0], has_gw, dqp, dkp,
                      &dvv[0, 0], dvv.shape[1], dvp)


# ---- Luong local attention --------------------------------------------------------------

cdef inline Py_ssize_t _at_local_row(int kind, const floating* qrow, const floating* Kpb,
                                     Py_ssize_t E, Py_ssize_t Tk, const floating* vv,
                                     floating sc, Py_ssize_t Lb, floating pt, Py_ssize_t D,
                                     floating* s, floating* w, floating* g, uint8_t* ok,
                                     floating* T, bint keep, Py_ssize_t* st_out,
                                     Py_ssize_t* lo_out) noexcept nogil:
    cdef floating half = 0.5, one = 1, den, dl
    cdef Py_ssize_t st, lo, hi, n, jj
    if floating is float:
        st = <Py_ssize_t>floorf(pt + half) - D
    else:
        st = <Py_ssize_t>floor(pt + half) - D
    lo = st if st > 0 else 0
    hi = st + 2 * D + 1
    if hi > Lb:
        hi = Lb
    n = hi - lo
    st_out[0] = st
    lo_out[0] = lo
    if n <= 0:
        return 0
    _at_score_row(kind, qrow, Kpb + lo * E, E, vv, sc, n, s, T, keep)
    for jj in range(n):
        ok[jj] = 1
    _at_softmax_row(s, ok, n, w)
    if D > 0:
        den = <floating>(<double>(D * D) * 0.5)
        for jj in range(n):
            dl = <floating>(lo + jj) - pt
            g[jj] = _at_exp(-(dl * dl) / den)
    else:
        for jj in range(n):
            g[jj] = one
    return n


cdef void _at_local_fwd_chunk(int kind, const floating* Qp, const floating* Kp,
                              const floating* vv, floating sc, const floating* V,
                              const int64_t* L, const floating* p, Py_ssize_t D, Py_ssize_t r0,
                              Py_ssize_t r1, Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E,
                              Py_ssize_t Dv, int64_t* starts, floating* ctx,
                              floating* wout) noexcept nogil:
    cdef Py_ssize_t nw = 2 * D + 1
    cdef floating* s = <floating*>malloc((3 * nw + E + 1) * sizeof(floating))
    cdef floating* w = s + nw
    cdef floating* g = w + nw
    cdef floating* t = g + nw
    cdef uint8_t* ok = <uint8_t*>malloc(nw + 1)
    cdef Py_ssize_t r, b, jj, st, lo, n
    for r in range(r0, r1):
        b = r // Tq
        n = _at_local_row(kind, Qp + r * E, Kp + b * Tk * E, E, Tk, vv, sc, L[b], p[r], D, s,
                          w, g, ok, t, False, &st, &lo)
        starts[r] = st
        for jj in range(nw):
            wout[r * nw + jj] = 0
        for jj in range(n):
            w[jj] = w[jj] * g[jj]
            wout[r * nw + lo - st + jj] = w[jj]
        _at_weighted_sum(w, ok, n, V + (b * Tk + lo) * Dv, Dv, ctx + r * Dv)
    free(s)
    free(ok)


def attn_local_fwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] Kp,
                   const floating[::1] vv, double scale, const floating[:, :, ::1] V,
                   const int64_t[::1] L, const floating[:, ::1] p, Py_ssize_t D,
                   int64_t[:, ::1] starts, floating[:, :, ::1] ctx, floating[:, :, ::1] wout):
    """Luong local attention (see the Numba twin's docstring)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = Kp.shape[1]
    cdef Py_ssize_t Dv = V.shape[2], nrows = B * Tq, nch, c
    cdef floating sc = <floating>scale
    if nrows == 0:
        return
    cdef floating* wp = &wout[0, 0, 0]
    cdef const floating* qp = &Qp[0, 0, 0] if E else <const floating*>wp
    cdef const floating* kpp = &Kp[0, 0, 0] if E * Tk else <const floating*>wp
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>wp
    cdef floating* cp = &ctx[0, 0, 0] if Dv else wp
    nch = _at_min(nrows, 256)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_local_fwd_chunk(kind, qp, kpp, &vv[0], sc, vp, &L[0], &p[0, 0], D,
                            c * nrows // nch, (c + 1) * nrows // nch, Tq, Tk, E, Dv,
                            &starts[0, 0], cp, wp)


cdef void _at_local_bwd_batch(int kind, const floating* Qp, const floating* Kp,
                              const floating* vv, floating sc, const floating* V,
                              const int64_t* L, const floating* p, Py_ssize_t D, Py_ssize_t b,
                              Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv,
                              const floating* dctx, floating* dQp, floating* dKp, floating* dvv,
                              Py_ssize_t nvv, floating* dV, floating* dp) noexcept nogil:
    cdef Py_ssize_t nw = 2 * D + 1
    cdef Py_ssize_t nT = E * nw if kind == 1 else 1
    cdef floating* s = <floating*>malloc((4 * nw + nT + E + 1) * sizeof(floating))
    cdef floating* w = s + nw
    cdef floating* g = w + nw
    cdef floating* ds = g + nw
    cdef floating* T = ds + nw
    cdef uint8_t* ok = <uint8_t*>malloc(nw + 1)
    cdef Py_ssize_t i, j, jj, d, e, r, st, lo, n
    cdef floating dot, acc, accp, a, pt, dl
    cdef floating* dKpb = dKp + b * Tk * E
    cdef floating* dVb = dV + b * Tk * Dv
    cdef const floating* Vb = V + b * Tk * Dv
    cdef const floating* dc
    for e in range(nvv):
        dvv[b * nvv + e] = 0
    for j in range(E * Tk):
        dKpb[j] = 0
    for j in range(Tk * Dv):
        dVb[j] = 0
    for i in range(Tq):
        r = b * Tq + i
        dc = dctx + r * Dv
        n = _at_local_row(kind, Qp + r * E, Kp + b * Tk * E, E, Tk, vv, sc, L[b], p[r], D, s,
                          w, g, ok, T, True, &st, &lo)
        for e in range(E):
            dQp[r * E + e] = 0
        dp[r] = 0
        if n <= 0:
            continue
        pt = p[r]
        dot = 0
        accp = 0
        for jj in range(n):
            acc = 0
            for d in range(Dv):
                acc += dc[d] * Vb[(lo + jj) * Dv + d]
            a = w[jj] * g[jj]
            for d in range(Dv):
                dVb[(lo + jj) * Dv + d] += a * dc[d]
            if D > 0:
                dl = <floating>(lo + jj) - pt
                accp += ((acc * w[jj]) * g[jj]) * (dl + dl)
            acc = acc * g[jj]
            ds[jj] = acc
            dot += w[jj] * acc
        if D > 0:
            dp[r] = accp / <floating>(<double>(D * D) * 0.5)
        for jj in range(n):
            ds[jj] = w[jj] * (ds[jj] - dot)
        _at_score_bwd_row(kind, Qp + r * E, Kp + (b * Tk + lo) * E, E, vv, sc, n, ds, ok, T,
                          dQp + r * E, dKpb + lo * E, dvv + b * nvv, T + nT)
    free(s)
    free(ok)


def attn_local_bwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] Kp,
                   const floating[::1] vv, double scale, const floating[:, :, ::1] V,
                   const int64_t[::1] L, const floating[:, ::1] p, Py_ssize_t D,
                   const floating[:, :, ::1] dctx, floating[:, :, ::1] dQp,
                   floating[:, :, ::1] dKp, floating[:, ::1] dvv, floating[:, :, ::1] dV,
                   floating[:, ::1] dp):
    """Backward of attn_local_fwd (dQp, dKp, dV, dvv partials per batch row, dp)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = Kp.shape[1]
    cdef Py_ssize_t Dv = V.shape[2], b
    cdef floating sc = <floating>scale
    if B == 0:
        return
    cdef floating* dz = &dvv[0, 0]
    cdef const floating* qp = &Qp[0, 0, 0] if Tq * E else <const floating*>dz
    cdef const floating* kpp = &Kp[0, 0, 0] if E * Tk else <const floating*>dz
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>dz
    cdef const floating* dcp = &dctx[0, 0, 0] if Tq * Dv else <const floating*>dz
    cdef const floating* pp = &p[0, 0] if Tq else <const floating*>dz
    cdef floating* dqp = &dQp[0, 0, 0] if Tq * E else dz
    cdef floating* dkp = &dKp[0, 0, 0] if E * Tk else dz
    cdef floating* dvp = &dV[0, 0, 0] if Tk * Dv else dz
    cdef floating* dpp = &dp[0, 0] if Tq else dz
    for b in prange(B, nogil=True, schedule="static"):
        _at_local_bwd_batch(kind, qp, kpp, &vv[0], sc, vp, &L[0], pp, D, b, Tq, Tk, E, Dv, dcp,
                            dqp, dkp, &dvv[0, 0], dvv.shape[1], dvp, dpp)


# ---- attention pooling over ragged segments -------------------------------------------

cdef inline floating _at_pool_row(floating* t, const floating* b, const floating* u,
                                  Py_ssize_t A) noexcept nogil:
    if floating is float:
        return dlk_at_pool_row_f32(t, b, u, A)
    else:
        return dlk_at_pool_row_f64(t, b, u, A)


cdef inline Py_ssize_t _at_pool_block(Py_ssize_t A) noexcept nogil:
    """Rows per gemm block of attn_pool_fwd (twin of _pool_block)."""
    cdef Py_ssize_t r = POOL_SCRATCH // (A if A > 1 else 1)
    r = r if r < POOL_ROWS else POOL_ROWS
    return r if r > 1 else 1


cdef void _at_pool_chunk(const floating* X, const floating* W, const floating* b,
                         const floating* u, const int64_t* starts, const int64_t* counts,
                         Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t H, Py_ssize_t A,
                         floating* pooled, floating* weights, floating* T, bint keep,
                         floating* S) noexcept nogil:
    """Segments s0..s1-1 (the twin of _attn.py's _pool_chunk); S scratch
    (_at_pool_block(A), A)."""
    cdef Py_ssize_t r0 = starts[s0], r1 = starts[s1 - 1] + counts[s1 - 1]
    cdef Py_ssize_t q0, q1, sg, a0, a1, r, h, end, blk = _at_pool_block(A)
    cdef floating m, zs, e, a
    cdef floating* t
    q0 = r0
    while q0 < r1:
        q1 = _at_min(q0 + blk, r1)
        _at_proj_rows(X + q0 * H, q1 - q0, H, W, A, b, False, S)   # S = X[q0:q1] W
        for r in range(q0, q1):
            t = S + (r - q0) * A
            weights[r] = _at_pool_row(t, b, u, A)
            if keep:
                for h in range(A):
                    T[r * A + h] = t[h]
        q0 = q1
    end = r0
    for sg in range(s0, s1):
        a0 = starts[sg]
        a1 = a0 + counts[sg]
        for r in range(end, a0):
            weights[r] = 0
            if keep:
                for h in range(A):
                    T[r * A + h] = 0
        if a1 > end:
            end = a1
        for h in range(H):
            pooled[sg * H + h] = 0
        if a1 <= a0:
            continue
        m = -INFINITY
        for r in range(a0, a1):
            if weights[r] > m:
                m = weights[r]
        zs = 0
        for r in range(a0, a1):
            e = _at_exp(weights[r] - m)
            weights[r] = e
            zs += e
        for r in range(a0, a1):
            weights[r] = weights[r] / zs
        for r in range(a0, a1):
            a = weights[r]
            for h in range(H):
                pooled[sg * H + h] += a * X[r * H + h]


cdef void _at_pool_chunks(const floating* X, const floating* W, const floating* b,
                          const floating* u, const int64_t* starts, const int64_t* counts,
                          const int64_t* chunks, Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t H,
                          Py_ssize_t A, floating* pooled, floating* weights, floating* T,
                          bint keep) noexcept nogil:
    cdef floating* S = <floating*>malloc((_at_pool_block(A) * A + 1) * sizeof(floating))
    cdef Py_ssize_t c
    for c in range(c0, c1):
        _at_pool_chunk(X, W, b, u, starts, counts, chunks[c], chunks[c + 1], H, A, pooled,
                       weights, T, keep, S)
    free(S)


def attn_pool_fwd(const floating[:, ::1] X, const floating[:, ::1] W, const floating[::1] b,
                  const floating[::1] u, const int64_t[::1] starts, const int64_t[::1] counts,
                  const int64_t[::1] chunks, floating[:, ::1] pooled, floating[::1] weights,
                  floating[:, ::1] T, bint keep):
    """Attention pooling of segments (see the Numba twin's docstring)."""
    cdef Py_ssize_t nc = chunks.shape[0] - 1, A = W.shape[1], H = X.shape[1], N = X.shape[0], c
    if nc <= 0:
        return
    cdef floating* wp = &weights[0] if N else NULL
    cdef floating* po = &pooled[0, 0] if H else wp
    cdef const floating* xp = &X[0, 0] if N * H else <const floating*>po
    cdef const floating* Wp = &W[0, 0] if H * A else <const floating*>po
    cdef const floating* bp = &b[0] if A else <const floating*>po
    cdef const floating* up = &u[0] if A else <const floating*>po
    cdef floating* tp = &T[0, 0] if T.shape[0] * T.shape[1] else po
    cdef Py_ssize_t ng = _at_min(nc, 256)  # groups of chunks: one scratch per group
    for c in prange(ng, nogil=True, schedule="static"):
        _at_pool_chunks(xp, Wp, bp, up, &starts[0], &counts[0], &chunks[0], c * nc // ng,
                        (c + 1) * nc // ng, H, A, po, wp, tp, keep)


cdef void _at_pool_bwd_seg(const floating* T, const floating* u, const floating* X,
                           Py_ssize_t a0, Py_ssize_t a1, Py_ssize_t A, Py_ssize_t H,
                           const floating* weights, const floating* dpo, const floating* gw,
                           bint has_gw, floating* dX, floating* dP,
                           floating* dsc) noexcept nogil:
    cdef Py_ssize_t r, h
    cdef floating dot = 0, acc, a, gr, t
    for r in range(a0, a1):
        acc = 0
        for h in range(H):
            acc += dpo[h] * X[r * H + h]
        if has_gw:
            acc += gw[r]
        dsc[r] = acc
        dot += weights[r] * acc
        a = weights[r]
        for h in range(H):
            dX[r * H + h] = a * dpo[h]
    for r in range(a0, a1):
        gr = weights[r] * (dsc[r] - dot)
        dsc[r] = gr
        for h in range(A):
            t = T[r * A + h]
            dP[r * A + h] = (gr * u[h]) * (<floating>1 - t * t)


def attn_pool_bwd(const floating[:, ::1] T, const floating[::1] u, const floating[:, ::1] X,
                  const int64_t[::1] starts, const int64_t[::1] counts,
                  const floating[::1] weights, const floating[:, ::1] dpooled,
                  const floating[::1] gw, bint has_gw, floating[:, ::1] dX,
                  floating[:, ::1] dP, floating[::1] dsc):
    """Backward of attn_pool_fwd for the segment rows (see the Numba twin)."""
    cdef Py_ssize_t S = starts.shape[0], A = T.shape[1], H = X.shape[1], N = X.shape[0], sg
    if S == 0 or N == 0:
        return
    cdef const floating* gp = &gw[0]
    cdef const floating* tp = &T[0, 0] if A else gp
    cdef const floating* xp = &X[0, 0] if H else gp
    cdef const floating* dpo = &dpooled[0, 0] if H else gp
    cdef floating* dxp = &dX[0, 0] if H else &dsc[0]
    cdef floating* dpp = &dP[0, 0] if A else &dsc[0]
    cdef const floating* up = &u[0] if A else gp
    for sg in prange(S, nogil=True, schedule="static"):
        _at_pool_bwd_seg(tp, up, xp, starts[sg], starts[sg] + counts[sg], A, H, &weights[0],
                         dpo + sg * H, gp, has_gw, dxp, dpp, &dsc[0])
