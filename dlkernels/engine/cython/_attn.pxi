# Part of dlkernels.engine.cython.attention (included by attention.pyx).
#
# Scores, masked softmax, fused attention, Luong local attention and ragged
# attention pooling, forward and backward: the twin of
# dlkernels.engine.numba._attn (read its docstring for the array layout, the
# two score kinds and the mask encoding).  The same IEEE operations in the
# same order (sequential sums over keys / features, exp and tanh from
# dlk_fastmath.h), so both backends give bit-identical results for any
# thread count.  No validation here.
from libc.stdint cimport int64_t, uint8_t
from libc.math cimport floor, floorf, INFINITY
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._fastmath cimport dlk_exp32, dlk_exp64, dlk_tanh32, dlk_tanh64

_ATTN_ALL = ["SCORE_DOT", "SCORE_TANH", "attn_scores", "attn_softmax", "attn_fwd", "attn_bwd",
             "attn_local_fwd", "attn_local_bwd", "attn_pool_fwd", "attn_pool_bwd"]

SCORE_DOT = 0
SCORE_TANH = 1


cdef inline floating _at_tanh(floating x) noexcept nogil:
    if floating is float:
        return dlk_tanh32(x)
    else:
        return dlk_tanh64(x)


cdef inline floating _at_exp(floating x) noexcept nogil:
    if floating is float:
        return dlk_exp32(x)
    else:
        return dlk_exp64(x)


cdef extern from *:
    """
    #include "dlk_fastmath.h"
    /* One query's scores with keys j0..j0+n-1 (the twin of _attn.py's
       _score_row, the same operations in the same order), multiversioned
       (DLK_CLONES): the loops over keys are the additive score's tanh loops,
       which need the AVX2 / AVX-512 clones to run 8 / 16 lanes wide. */
    #define DLK_AT_SCORE_ROW(T, SUF, TANH)                                              \
    DLK_CLONES static void dlk_at_score_row_##SUF(int kind, const T *restrict qrow,     \
            const T *restrict KTb, Py_ssize_t E, Py_ssize_t Tk, const T *restrict vv,  \
            T sc, Py_ssize_t j0, Py_ssize_t n, T *restrict s, T *restrict Tb, int keep) { \
        Py_ssize_t e, jj; T a, c, t; const T *restrict kr;                             \
        for (jj = 0; jj < n; jj++) s[jj] = 0;                                          \
        if (kind == 0) {                                                               \
            for (e = 0; e < E; e++) {                                                  \
                a = qrow[e]; kr = KTb + e * Tk + j0;                                   \
                for (jj = 0; jj < n; jj++) s[jj] = s[jj] + a * kr[jj];                 \
            }                                                                          \
            for (jj = 0; jj < n; jj++) s[jj] = sc * s[jj];                             \
        } else {                                                                       \
            for (e = 0; e < E; e++) {                                                  \
                a = qrow[e]; c = vv[e]; kr = KTb + e * Tk + j0;                        \
                if (keep) {                                                            \
                    T *restrict te = Tb + e * n;                                       \
                    for (jj = 0; jj < n; jj++) {                                       \
                        t = TANH(a + kr[jj]); te[jj] = t; s[jj] = s[jj] + c * t;       \
                    }                                                                  \
                } else {                                                               \
                    for (jj = 0; jj < n; jj++) s[jj] = s[jj] + c * TANH(a + kr[jj]);   \
                }                                                                      \
            }                                                                          \
        }                                                                              \
    }
    DLK_AT_SCORE_ROW(float, f32, dlk_tanh32)
    DLK_AT_SCORE_ROW(double, f64, dlk_tanh64)
    """
    void dlk_at_score_row_f32(int kind, const float* qrow, const float* KTb, Py_ssize_t E,
                              Py_ssize_t Tk, const float* vv, float sc, Py_ssize_t j0,
                              Py_ssize_t n, float* s, float* Tb, int keep) noexcept nogil
    void dlk_at_score_row_f64(int kind, const double* qrow, const double* KTb, Py_ssize_t E,
                              Py_ssize_t Tk, const double* vv, double sc, Py_ssize_t j0,
                              Py_ssize_t n, double* s, double* Tb, int keep) noexcept nogil


cdef inline void _at_score_row(int kind, const floating* qrow, const floating* KTb,
                               Py_ssize_t E, Py_ssize_t Tk, const floating* vv, floating sc,
                               Py_ssize_t j0, Py_ssize_t n, floating* s, floating* T,
                               bint keep) noexcept nogil:
    """s[0:n]: scores of one query (qrow) with keys j0..j0+n-1 of KTb (E, Tk);
    T (E, n) = the tanh values when keep (kind 1)."""
    if floating is float:
        dlk_at_score_row_f32(kind, qrow, KTb, E, Tk, vv, sc, j0, n, s, T, keep)
    else:
        dlk_at_score_row_f64(kind, qrow, KTb, E, Tk, vv, sc, j0, n, s, T, keep)


cdef inline void _at_row_ok(floating* s, Py_ssize_t b, Py_ssize_t i, Py_ssize_t Tq,
                            Py_ssize_t Tk, const int64_t* L, bint causal, int mmode,
                            const uint8_t* mb, const floating* mf, Py_ssize_t msb,
                            Py_ssize_t msq, Py_ssize_t msk, uint8_t* ok) noexcept nogil:
    cdef Py_ssize_t j, lim = L[b], c, base = b * msb + i * msq
    cdef floating f, ninf = -INFINITY
    if causal:
        c = i + Tk - Tq + 1
        if c < lim:
            lim = c
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
    cdef Py_ssize_t jj, d
    cdef floating a
    cdef const floating* vr
    for d in range(Dv):
        out[d] = 0
    for jj in range(n):
        if ok[jj] != 0:
            a = w[jj]
            vr = Vrows + jj * Dv
            for d in range(Dv):
                out[d] += a * vr[d]


cdef inline void _at_score_bwd_row(int kind, const floating* qrow, const floating* KTb,
                                   Py_ssize_t E, Py_ssize_t Tk, const floating* vv, floating sc,
                                   Py_ssize_t j0, Py_ssize_t n, const floating* ds,
                                   const uint8_t* ok, const floating* T, floating* dq,
                                   floating* dKTb, floating* dvvb) noexcept nogil:
    cdef Py_ssize_t e, jj
    cdef floating qe, acc, accv, g, c, t, d
    if kind == 0:
        for e in range(E):
            qe = qrow[e]
            acc = 0
            for jj in range(n):
                if ok[jj] != 0:
                    g = sc * ds[jj]
                    acc += g * KTb[e * Tk + j0 + jj]
                    dKTb[e * Tk + j0 + jj] += g * qe
            dq[e] = acc
    else:
        for e in range(E):
            c = vv[e]
            acc = 0
            accv = 0
            for jj in range(n):
                if ok[jj] != 0:
                    t = T[e * n + jj]
                    g = ds[jj]
                    d = (g * c) * (<floating>1 - t * t)
                    acc += d
                    dKTb[e * Tk + j0 + jj] += d
                    accv += g * t
            dq[e] = acc
            dvvb[e] += accv


cdef inline Py_ssize_t _at_min(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


# ---- scores and masked softmax ------------------------------------------------------

def attn_scores(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] KT,
                const floating[::1] vv, double scale, floating[:, :, ::1] out):
    """out (B, Tq, Tk) = the scores of every query with every key."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = KT.shape[2]
    cdef Py_ssize_t r, b, i
    cdef floating sc = <floating>scale
    if B * Tq == 0 or Tk == 0:
        return
    cdef const floating* qp = &Qp[0, 0, 0]
    cdef const floating* kt = &KT[0, 0, 0] if E else NULL
    cdef floating* o = &out[0, 0, 0]
    for r in prange(B * Tq, nogil=True, schedule="static"):
        b = r // Tq
        i = r - b * Tq
        _at_score_row(kind, qp + r * E, kt + b * E * Tk, E, Tk, &vv[0], sc, 0, Tk,
                      o + r * Tk, NULL, False)


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

cdef void _at_fwd_chunk(int kind, const floating* Qp, const floating* KT, const floating* vv,
                        floating sc, const floating* V, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv,
                        const int64_t* L, bint causal, int mmode, const uint8_t* mb,
                        const floating* mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
                        floating* ctx, floating* wout, bint want_w) noexcept nogil:
    cdef floating* s = <floating*>malloc((2 * Tk + 1) * sizeof(floating))
    cdef floating* w = s + Tk
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef Py_ssize_t r, b, i, j
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        _at_score_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, 0, Tk, s, NULL, False)
        _at_row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        _at_softmax_row(s, ok, Tk, w)
        _at_weighted_sum(w, ok, Tk, V + b * Tk * Dv, Dv, ctx + r * Dv)
        if want_w:
            for j in range(Tk):
                wout[r * Tk + j] = w[j]
    free(s)
    free(ok)


def attn_fwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] KT,
             const floating[::1] vv, double scale, const floating[:, :, ::1] V,
             const int64_t[::1] L, bint causal, int mmode, const uint8_t[::1] mb,
             const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
             floating[:, :, ::1] ctx, floating[:, :, ::1] wout, bint want_w):
    """Fused attention: ctx (B, Tq, Dv) and, when want_w, wout (B, Tq, Tk)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = KT.shape[2]
    cdef Py_ssize_t Dv = V.shape[2], nrows = B * Tq, nch, c
    cdef floating sc = <floating>scale
    if nrows == 0 or Dv == 0 and not want_w:
        return
    cdef const floating* qp = &Qp[0, 0, 0] if E else NULL
    cdef const floating* kt = &KT[0, 0, 0] if E * Tk else NULL
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else NULL
    cdef floating* cp = &ctx[0, 0, 0] if Dv else NULL
    cdef floating* wp = &wout[0, 0, 0] if wout.shape[0] * wout.shape[1] * wout.shape[2] else NULL
    nch = _at_min(nrows, 256)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_fwd_chunk(kind, qp, kt, &vv[0], sc, vp, c * nrows // nch, (c + 1) * nrows // nch,
                      Tq, Tk, E, Dv, &L[0], causal, mmode, &mb[0], &mf[0], msb, msq, msk, cp,
                      wp, want_w)


cdef void _at_bwd_batch(int kind, const floating* Qp, const floating* KT, const floating* vv,
                        floating sc, const floating* V, Py_ssize_t b, Py_ssize_t Tq,
                        Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv, const int64_t* L,
                        bint causal, int mmode, const uint8_t* mb, const floating* mf,
                        Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk, const floating* dctx,
                        const floating* gw, bint has_gw, floating* dQp, floating* dKT,
                        floating* dvv, Py_ssize_t nvv, floating* dV) noexcept nogil:
    cdef Py_ssize_t nT = E * Tk if kind == 1 else 1
    cdef floating* s = <floating*>malloc((3 * Tk + nT + 1) * sizeof(floating))
    cdef floating* w = s + Tk
    cdef floating* dw = w + Tk
    cdef floating* T = dw + Tk
    cdef uint8_t* ok = <uint8_t*>malloc(Tk + 1)
    cdef Py_ssize_t i, j, d, e, r
    cdef floating dot, acc, a
    cdef floating* dKTb = dKT + b * E * Tk
    cdef floating* dVb = dV + b * Tk * Dv
    cdef const floating* Vb = V + b * Tk * Dv
    cdef const floating* dc
    for e in range(nvv):
        dvv[b * nvv + e] = 0
    for j in range(E * Tk):
        dKTb[j] = 0
    for j in range(Tk * Dv):
        dVb[j] = 0
    for i in range(Tq):
        r = b * Tq + i
        dc = dctx + r * Dv
        _at_score_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, 0, Tk, s, T, True)
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
        _at_score_bwd_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, 0, Tk, dw, ok, T,
                          dQp + r * E, dKTb, dvv + b * nvv)
    free(s)
    free(ok)


def attn_bwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] KT,
             const floating[::1] vv, double scale, const floating[:, :, ::1] V,
             const int64_t[::1] L, bint causal, int mmode, const uint8_t[::1] mb,
             const floating[::1] mf, Py_ssize_t msb, Py_ssize_t msq, Py_ssize_t msk,
             const floating[:, :, ::1] dctx, const floating[:, :, ::1] gw, bint has_gw,
             floating[:, :, ::1] dQp, floating[:, :, ::1] dKT, floating[:, ::1] dvv,
             floating[:, :, ::1] dV):
    """Backward of attn_fwd: dQp, dKT, dV and per-batch-row partials dvv (B, E)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = KT.shape[2]
    cdef Py_ssize_t Dv = V.shape[2], b
    cdef floating sc = <floating>scale
    if B == 0:
        return
    cdef floating* dz = &dvv[0, 0]  # any valid address for empty arrays
    cdef const floating* qp = &Qp[0, 0, 0] if Tq * E else <const floating*>dz
    cdef const floating* kt = &KT[0, 0, 0] if E * Tk else <const floating*>dz
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>dz
    cdef const floating* dcp = &dctx[0, 0, 0] if Tq * Dv else <const floating*>dz
    cdef floating* dqp = &dQp[0, 0, 0] if Tq * E else dz
    cdef floating* dkp = &dKT[0, 0, 0] if E * Tk else dz
    cdef floating* dvp = &dV[0, 0, 0] if Tk * Dv else dz
    for b in prange(B, nogil=True, schedule="static"):
        _at_bwd_batch(kind, qp, kt, &vv[0], sc, vp, b, Tq, Tk, E, Dv, &L[0], causal, mmode,
                      &mb[0], &mf[0], msb, msq, msk, dcp, &gw[0, 0, 0], has_gw, dqp, dkp,
                      &dvv[0, 0], dvv.shape[1], dvp)


# ---- Luong local attention --------------------------------------------------------------

cdef inline Py_ssize_t _at_local_row(int kind, const floating* qrow, const floating* KTb,
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
    _at_score_row(kind, qrow, KTb, E, Tk, vv, sc, lo, n, s, T, keep)
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


cdef void _at_local_fwd_chunk(int kind, const floating* Qp, const floating* KT,
                              const floating* vv, floating sc, const floating* V,
                              const int64_t* L, const floating* p, Py_ssize_t D, Py_ssize_t r0,
                              Py_ssize_t r1, Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E,
                              Py_ssize_t Dv, int64_t* starts, floating* ctx,
                              floating* wout) noexcept nogil:
    cdef Py_ssize_t nw = 2 * D + 1
    cdef floating* s = <floating*>malloc((3 * nw + 1) * sizeof(floating))
    cdef floating* w = s + nw
    cdef floating* g = w + nw
    cdef uint8_t* ok = <uint8_t*>malloc(nw + 1)
    cdef Py_ssize_t r, b, jj, st, lo, n
    for r in range(r0, r1):
        b = r // Tq
        n = _at_local_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, L[b], p[r], D, s,
                          w, g, ok, NULL, False, &st, &lo)
        starts[r] = st
        for jj in range(nw):
            wout[r * nw + jj] = 0
        for jj in range(n):
            w[jj] = w[jj] * g[jj]
            wout[r * nw + lo - st + jj] = w[jj]
        _at_weighted_sum(w, ok, n, V + (b * Tk + lo) * Dv, Dv, ctx + r * Dv)
    free(s)
    free(ok)


def attn_local_fwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] KT,
                   const floating[::1] vv, double scale, const floating[:, :, ::1] V,
                   const int64_t[::1] L, const floating[:, ::1] p, Py_ssize_t D,
                   int64_t[:, ::1] starts, floating[:, :, ::1] ctx, floating[:, :, ::1] wout):
    """Luong local attention (see the Numba twin's docstring)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = KT.shape[2]
    cdef Py_ssize_t Dv = V.shape[2], nrows = B * Tq, nch, c
    cdef floating sc = <floating>scale
    if nrows == 0:
        return
    cdef floating* wp = &wout[0, 0, 0]
    cdef const floating* qp = &Qp[0, 0, 0] if E else <const floating*>wp
    cdef const floating* kt = &KT[0, 0, 0] if E * Tk else <const floating*>wp
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>wp
    cdef floating* cp = &ctx[0, 0, 0] if Dv else wp
    nch = _at_min(nrows, 256)
    for c in prange(nch, nogil=True, schedule="static"):
        _at_local_fwd_chunk(kind, qp, kt, &vv[0], sc, vp, &L[0], &p[0, 0], D,
                            c * nrows // nch, (c + 1) * nrows // nch, Tq, Tk, E, Dv,
                            &starts[0, 0], cp, wp)


cdef void _at_local_bwd_batch(int kind, const floating* Qp, const floating* KT,
                              const floating* vv, floating sc, const floating* V,
                              const int64_t* L, const floating* p, Py_ssize_t D, Py_ssize_t b,
                              Py_ssize_t Tq, Py_ssize_t Tk, Py_ssize_t E, Py_ssize_t Dv,
                              const floating* dctx, floating* dQp, floating* dKT, floating* dvv,
                              Py_ssize_t nvv, floating* dV, floating* dp) noexcept nogil:
    cdef Py_ssize_t nw = 2 * D + 1
    cdef Py_ssize_t nT = E * nw if kind == 1 else 1
    cdef floating* s = <floating*>malloc((4 * nw + nT + 1) * sizeof(floating))
    cdef floating* w = s + nw
    cdef floating* g = w + nw
    cdef floating* ds = g + nw
    cdef floating* T = ds + nw
    cdef uint8_t* ok = <uint8_t*>malloc(nw + 1)
    cdef Py_ssize_t i, j, jj, d, e, r, st, lo, n
    cdef floating dot, acc, accp, a, pt, dl
    cdef floating* dKTb = dKT + b * E * Tk
    cdef floating* dVb = dV + b * Tk * Dv
    cdef const floating* Vb = V + b * Tk * Dv
    cdef const floating* dc
    for e in range(nvv):
        dvv[b * nvv + e] = 0
    for j in range(E * Tk):
        dKTb[j] = 0
    for j in range(Tk * Dv):
        dVb[j] = 0
    for i in range(Tq):
        r = b * Tq + i
        dc = dctx + r * Dv
        n = _at_local_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, L[b], p[r], D, s,
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
        _at_score_bwd_row(kind, Qp + r * E, KT + b * E * Tk, E, Tk, vv, sc, lo, n, ds, ok, T,
                          dQp + r * E, dKTb, dvv + b * nvv)
    free(s)
    free(ok)


def attn_local_bwd(int kind, const floating[:, :, ::1] Qp, const floating[:, :, ::1] KT,
                   const floating[::1] vv, double scale, const floating[:, :, ::1] V,
                   const int64_t[::1] L, const floating[:, ::1] p, Py_ssize_t D,
                   const floating[:, :, ::1] dctx, floating[:, :, ::1] dQp,
                   floating[:, :, ::1] dKT, floating[:, ::1] dvv, floating[:, :, ::1] dV,
                   floating[:, ::1] dp):
    """Backward of attn_local_fwd (dQp, dKT, dV, dvv partials per batch row, dp)."""
    cdef Py_ssize_t B = Qp.shape[0], Tq = Qp.shape[1], E = Qp.shape[2], Tk = KT.shape[2]
    cdef Py_ssize_t Dv = V.shape[2], b
    cdef floating sc = <floating>scale
    if B == 0:
        return
    cdef floating* dz = &dvv[0, 0]
    cdef const floating* qp = &Qp[0, 0, 0] if Tq * E else <const floating*>dz
    cdef const floating* kt = &KT[0, 0, 0] if E * Tk else <const floating*>dz
    cdef const floating* vp = &V[0, 0, 0] if Tk * Dv else <const floating*>dz
    cdef const floating* dcp = &dctx[0, 0, 0] if Tq * Dv else <const floating*>dz
    cdef const floating* pp = &p[0, 0] if Tq else <const floating*>dz
    cdef floating* dqp = &dQp[0, 0, 0] if Tq * E else dz
    cdef floating* dkp = &dKT[0, 0, 0] if E * Tk else dz
    cdef floating* dvp = &dV[0, 0, 0] if Tk * Dv else dz
    cdef floating* dpp = &dp[0, 0] if Tq else dz
    for b in prange(B, nogil=True, schedule="static"):
        _at_local_bwd_batch(kind, qp, kt, &vv[0], sc, vp, &L[0], pp, D, b, Tq, Tk, E, Dv, dcp,
                            dqp, dkp, &dvv[0, 0], dvv.shape[1], dvp, dpp)


# ---- attention pooling over ragged segments -------------------------------------------

cdef void _at_pool_seg(const floating* P, const floating* u, const floating* X, Py_ssize_t a0,
                       Py_ssize_t a1, Py_ssize_t A, Py_ssize_t H, floating* pooled,
                       floating* weights, floating* T) noexcept nogil:
    cdef Py_ssize_t r, h
    cdef floating m = -INFINITY, acc, z = 0, e, a
    for h in range(H):
        pooled[h] = 0
    if a1 <= a0:
        return
    for r in range(a0, a1):
        for h in range(A):
            T[r * A + h] = _at_tanh(P[r * A + h])
        acc = 0
        for h in range(A):
            acc += T[r * A + h] * u[h]
        weights[r] = acc
        if acc > m:
            m = acc
    for r in range(a0, a1):
        e = _at_exp(weights[r] - m)
        weights[r] = e
        z += e
    for r in range(a0, a1):
        weights[r] = weights[r] / z
    for r in range(a0, a1):
        a = weights[r]
        for h in range(H):
            pooled[h] += a * X[r * H + h]


def attn_pool_fwd(const floating[:, ::1] P, const floating[::1] u, const floating[:, ::1] X,
                  const int64_t[::1] starts, const int64_t[::1] counts,
                  floating[:, ::1] pooled, floating[::1] weights, floating[:, ::1] T):
    """Attention pooling of segments (see the Numba twin's docstring)."""
    cdef Py_ssize_t S = starts.shape[0], A = P.shape[1], H = X.shape[1], N = X.shape[0], sg
    if S == 0 or H == 0:
        return
    cdef floating* po = &pooled[0, 0]
    cdef const floating* pp = &P[0, 0] if N * A else <const floating*>po
    cdef const floating* xp = &X[0, 0] if N else <const floating*>po
    cdef floating* wp = &weights[0] if N else po
    cdef floating* tp = &T[0, 0] if N * A else po
    cdef const floating* up = &u[0] if A else <const floating*>po
    for sg in prange(S, nogil=True, schedule="static"):
        _at_pool_seg(pp, up, xp, starts[sg], starts[sg] + counts[sg], A, H, po + sg * H, wp, tp)


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
