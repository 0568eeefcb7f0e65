# Part of dlkernels.engine.cython.attention (included by attention.pyx).
#
# Flash-style scaled dot-product attention, the twin of
# dlkernels.engine.numba._sdpa (read its docstring: array layout, tiling,
# skipping, dropout stream layout, backward).  The same IEEE operations in the
# same order (the same ?gemm calls, exp from dlk_fastmath.h, sequential sums),
# so both backends return bit-identical results for any thread count.  No
# validation here, except the forward's in-pass check of non-finite input
# (lse NaN; see "Non-finite input" in the twin's docstring).
from libc.stdint cimport uint64_t, int64_t, uint8_t
from libc.math cimport log, logf, INFINITY, NAN
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, parallel
from cython cimport floating
from dlkernels.engine.cython._fastmath cimport dlk_all_finite_f32, dlk_all_finite_f64
from dlkernels.engine.cython._blas cimport gemm
from dlkernels.engine.cython._fastmath cimport dlk_exp32, dlk_exp64
from dlkernels.engine.cython.rng cimport dlk_ctr_add, stream_fill_f32, stream_fill_f64

_SDPA_ALL = ["sdpa_tiles", "sdpa_forward", "sdpa_backward"]

cdef enum:
    SDPA_TQ = 128          # (Numba: TQ, TQ_MIN, KV_TILE_BYTES, ITEM_BYTES; the rule in its doc)
    SDPA_TQ_MIN = 64
    SDPA_KV_TILE_BYTES = 128 * 1024
    SDPA_ITEM_BYTES = 384 * 1024
    SDPA_DIAG = 64        # causal: keys per sub-tile of the diagonal block (Numba: DIAG)
    SDPA_SMALL_Q = 4      # query tiles of at most this many rows skip BLAS (Numba: SMALL_Q)


cdef inline void _sdpa_tiles(Py_ssize_t E, Py_ssize_t Ev, Py_ssize_t itemsize,
                             Py_ssize_t* tq, Py_ssize_t* tk) noexcept nogil:
    cdef Py_ssize_t t = 512
    while t > 16 and t * (E + Ev) * itemsize > SDPA_KV_TILE_BYTES:
        t //= 2
    tq[0] = SDPA_TQ
    if (SDPA_TQ * (E + t + Ev) + t * (E + Ev)) * itemsize > SDPA_ITEM_BYTES:
        tq[0] = SDPA_TQ_MIN
    tk[0] = t


def sdpa_tiles(Py_ssize_t E, Py_ssize_t Ev, Py_ssize_t itemsize):
    """(TQ, TK): query rows per work item, key rows per tile."""
    cdef Py_ssize_t tq, tk
    _sdpa_tiles(E, Ev, itemsize, &tq, &tk)
    return tq, tk


cdef extern from *:
    """
    #include "dlk_fastmath.h"   /* dlk_exp32 / dlk_exp64, DLK_CLONES */
    /* Row passes of the SDPA kernels, multiversioned (DLK_CLONES: AVX-512 /
       AVX2 / baseline; the same bits in every version, -ffp-contract=off).
       Each is the same IEEE operations in the same order as its Numba twin
       in _sdpa.py (_exp_shift, _reduce8, the dS pass). */
    #define DLK_SDPA_ROWS(T, SUF, EXP)                                                 \
    DLK_CLONES static void dlk_sdpa_exp_shift_##SUF(T *restrict x, Py_ssize_t n, T m) { \
        Py_ssize_t c;                                                                 \
        for (c = 0; c < n; c++) x[c] = EXP(x[c] - m);                                 \
    }                                                                                 \
    DLK_CLONES static T dlk_sdpa_rowmax_##SUF(const T *restrict x, Py_ssize_t n, T init) { \
        T m[8]; Py_ssize_t c = 0; int t;                                              \
        for (t = 0; t < 8; t++) m[t] = init;                                          \
        for (; c + 8 <= n; c += 8)                                                    \
            for (t = 0; t < 8; t++) m[t] = x[c + t] > m[t] ? x[c + t] : m[t];          \
        m[0] = m[1] > m[0] ? m[1] : m[0]; m[2] = m[3] > m[2] ? m[3] : m[2];           \
        m[4] = m[5] > m[4] ? m[5] : m[4]; m[6] = m[7] > m[6] ? m[7] : m[6];           \
        m[0] = m[2] > m[0] ? m[2] : m[0]; m[4] = m[6] > m[4] ? m[6] : m[4];           \
        m[0] = m[4] > m[0] ? m[4] : m[0];                                             \
        for (; c < n; c++) m[0] = x[c] > m[0] ? x[c] : m[0];                          \
        return m[0];                                                                  \
    }                                                                                 \
    DLK_CLONES static T dlk_sdpa_rowsum_##SUF(const T *restrict x, Py_ssize_t n) {    \
        return dlk_sum8_##SUF(x, n);                                                  \
    }                                                                                 \
    DLK_CLONES static void dlk_sdpa_ds_##SUF(const T *restrict p, T *restrict dp,     \
                                             Py_ssize_t n, T d) {                     \
        Py_ssize_t c;                                                                 \
        for (c = 0; c < n; c++) dp[c] = p[c] * (dp[c] - d);                           \
    }                                                                                 \
    /* small query tiles (<= SMALL_Q rows): the products without BLAS (Numba  \
       twin: _dots_small, _pv_rows; the dot in _reduce8's 8-lane order) */       \
    DLK_CLONES static void dlk_sdpa_dots_##SUF(const T *restrict x, const T *restrict y, \
                                               Py_ssize_t ld, Py_ssize_t nq,           \
                                               Py_ssize_t nk, T alpha, T *restrict out) { \
        Py_ssize_t r, j;                                                              \
        for (r = 0; r < nq; r++)                                                      \
            for (j = 0; j < nk; j++)                                                  \
                out[r * nk + j] = alpha * dlk_dot8_##SUF(x + r * ld, y + j * ld, ld);  \
    }                                                                                 \
    DLK_CLONES static int dlk_sdpa_pv_##SUF(const T *restrict P, Py_ssize_t nq,       \
                                            Py_ssize_t nk, const T *restrict v,       \
                                            Py_ssize_t Ev, T *restrict acc) {         \
        Py_ssize_t r, j, e; int ok = 1;                                               \
        for (r = 0; r < nq; r++) {                                                    \
            T *ar = acc + r * Ev;                                                     \
            for (j = 0; j < nk; j++) {                                                \
                T p = P[r * nk + j];                                                  \
                if (p != 0) {                                                         \
                    const T *vr = v + j * Ev;                                         \
                    for (e = 0; e < Ev; e++) ar[e] = ar[e] + p * vr[e];               \
                } else if (ok) {                                                      \
                    ok = dlk_all_finite_##SUF(v + j * Ev, Ev);                        \
                }                                                                     \
            }                                                                         \
        }                                                                             \
        return ok;                                                                    \
    }
    DLK_SDPA_ROWS(float, f32, dlk_exp32)
    DLK_SDPA_ROWS(double, f64, dlk_exp64)
    """
    void dlk_sdpa_exp_shift_f32(float* x, Py_ssize_t n, float m) noexcept nogil
    void dlk_sdpa_exp_shift_f64(double* x, Py_ssize_t n, double m) noexcept nogil
    float dlk_sdpa_rowmax_f32(const float* x, Py_ssize_t n, float init) noexcept nogil
    double dlk_sdpa_rowmax_f64(const double* x, Py_ssize_t n, double init) noexcept nogil
    float dlk_sdpa_rowsum_f32(const float* x, Py_ssize_t n) noexcept nogil
    double dlk_sdpa_rowsum_f64(const double* x, Py_ssize_t n) noexcept nogil
    void dlk_sdpa_ds_f32(const float* p, float* dp, Py_ssize_t n, float d) noexcept nogil
    void dlk_sdpa_ds_f64(const double* p, double* dp, Py_ssize_t n, double d) noexcept nogil
    void dlk_sdpa_dots_f32(const float* x, const float* y, Py_ssize_t ld, Py_ssize_t nq,
                           Py_ssize_t nk, float alpha, float* out) noexcept nogil
    void dlk_sdpa_dots_f64(const double* x, const double* y, Py_ssize_t ld, Py_ssize_t nq,
                           Py_ssize_t nk, double alpha, double* out) noexcept nogil
    int dlk_sdpa_pv_f32(const float* P, Py_ssize_t nq, Py_ssize_t nk, const float* v,
                        Py_ssize_t Ev, float* acc) noexcept nogil
    int dlk_sdpa_pv_f64(const double* P, Py_ssize_t nq, Py_ssize_t nk, const double* v,
                        Py_ssize_t Ev, double* acc) noexcept nogil


cdef inline void _sdpa_dots(const floating* x, const floating* y, Py_ssize_t ld, Py_ssize_t nq,
                            Py_ssize_t nk, floating alpha, floating* out) noexcept nogil:
    if floating is float:
        dlk_sdpa_dots_f32(x, y, ld, nq, nk, alpha, out)
    else:
        dlk_sdpa_dots_f64(x, y, ld, nq, nk, alpha, out)


cdef inline bint _sdpa_pv(const floating* P, Py_ssize_t nq, Py_ssize_t nk, const floating* v,
                          Py_ssize_t Ev, floating* acc) noexcept nogil:
    """acc += P v (small tiles); whether the rows of v skipped for a zero weight are finite."""
    if floating is float:
        return dlk_sdpa_pv_f32(P, nq, nk, v, Ev, acc)
    else:
        return dlk_sdpa_pv_f64(P, nq, nk, v, Ev, acc)


cdef inline bint _sdpa_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return dlk_all_finite_f32(x, n)
    else:
        return dlk_all_finite_f64(x, n)


cdef inline floating _sdpa_rowmax(const floating* x, Py_ssize_t n, floating init) noexcept nogil:
    """max(init, x[:n]), 8 lanes (exact: the order does not matter)."""
    if floating is float:
        return dlk_sdpa_rowmax_f32(x, n, init)
    else:
        return dlk_sdpa_rowmax_f64(x, n, init)


cdef inline floating _sdpa_rowsum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum(x[:n]) in the Numba twin's fixed order (_rowsum)."""
    if floating is float:
        return dlk_sdpa_rowsum_f32(x, n)
    else:
        return dlk_sdpa_rowsum_f64(x, n)

cdef inline bint _sdpa_live(int mode, const uint8_t* mb, const floating* mf, int64_t moff,
                            Py_ssize_t mld, Py_ssize_t i0, Py_ssize_t nq, Py_ssize_t j0,
                            Py_ssize_t nk) noexcept nogil:
    cdef Py_ssize_t r, c, base
    cdef floating ninf = -INFINITY
    if mode == 1:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                if mb[base + c] != 0:
                    return True
            if mld == 0:
                return False
        return False
    if mode == 2:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                if mf[base + c] > ninf:
                    return True
            if mld == 0:
                return False
        return False
    return True


cdef inline void _sdpa_mask(floating* Sb, Py_ssize_t nq, Py_ssize_t nk, Py_ssize_t i0,
                            Py_ssize_t j0, int mode, const uint8_t* mb, const floating* mf,
                            int64_t moff, Py_ssize_t mld, bint causal) noexcept nogil:
    cdef Py_ssize_t r, c, base, c0
    cdef floating ninf = -INFINITY
    if mode == 1:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                if mb[base + c] == 0:
                    Sb[r * nk + c] = ninf
    elif mode == 2:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                Sb[r * nk + c] = Sb[r * nk + c] + mf[base + c]
    if causal:
        for r in range(nq):
            c0 = i0 + r - j0 + 1
            if c0 < 0:
                c0 = 0
            for c in range(c0, nk):
                Sb[r * nk + c] = ninf


cdef inline void _sdpa_exp_shift(floating* x, Py_ssize_t n, floating m) noexcept nogil:
    if floating is float:
        dlk_sdpa_exp_shift_f32(x, n, m)
    else:
        dlk_sdpa_exp_shift_f64(x, n, m)


cdef inline void _sdpa_uniforms(floating* ub, Py_ssize_t n, const uint64_t* key,
                                const uint64_t* ctr, Py_ssize_t stream,
                                Py_ssize_t j0) noexcept nogil:
    cdef uint64_t c[4]
    c[0] = ctr[0]
    c[1] = ctr[1]
    c[2] = ctr[2]
    c[3] = ctr[3]
    dlk_ctr_add(c, <uint64_t>stream, 2)
    if floating is float:
        stream_fill_f32(key, c, <uint64_t>(j0 // 8), ub, n)
    else:
        stream_fill_f64(key, c, <uint64_t>(j0 // 4), ub, n)


cdef bint _sdpa_fwd_item(const floating* q, const floating* k, const floating* v,
                         Py_ssize_t bh, Py_ssize_t kvh, Py_ssize_t i0, Py_ssize_t nq,
                         Py_ssize_t L, Py_ssize_t S, Py_ssize_t E, Py_ssize_t Ev, Py_ssize_t TK,
                         int mode, const uint8_t* mb, const floating* mf, int64_t moff,
                         Py_ssize_t mld, bint causal, floating sc, floating dp, floating dscale,
                         const uint64_t* key, const uint64_t* ctr, floating* out, floating* lse,
                         floating* Sb, floating* ub, floating* acc, floating* m,
                         floating* l, bint owner) noexcept nogil:
    """One work item; False when it met a non-finite key or value row (or an
    overflow): "Non-finite input" in the Numba twin's module doc."""
    cdef floating ninf = -INFINITY
    cdef floating zero = 0
    cdef floating one = 1
    cdef floating mx, x, mold, mnew, rs, alpha, inv
    cdef Py_ssize_t r, c, t, j0, nk, jend, base, dg, jdiag, r0, nr, ii
    cdef floating* mr
    cdef floating* lr
    cdef floating* ar
    cdef bint ok = True
    if owner and sc == zero:
        ok = _sdpa_finite(k + kvh * S * E, S * E)
    for r in range(nq):
        m[r] = ninf
        l[r] = zero
    for t in range(nq * Ev):
        acc[t] = zero
    jend = S
    if causal and i0 + nq < S:
        jend = i0 + nq
    # causal: the diagonal block [i0, jend) in sub-tiles of dg keys, each for
    # the rows that reach it only (the Numba twin's rule)
    dg = min(<Py_ssize_t>SDPA_DIAG, TK)
    jdiag = i0 if (causal and nq > dg and i0 < jend) else jend
    j0 = 0
    while j0 < jend:
        if j0 < jdiag:
            nk = min(TK, jdiag - j0)
            r0 = 0
        else:
            nk = min(dg, jend - j0)
            r0 = j0 - i0
        nr = nq - r0
        ii = i0 + r0
        mr = m + r0
        lr = l + r0
        ar = acc + r0 * Ev
        if not _sdpa_live(mode, mb, mf, moff, mld, ii, nr, j0, nk):
            if owner and ok:
                ok = _sdpa_finite(k + (kvh * S + j0) * E, nk * E) and \
                    _sdpa_finite(v + (kvh * S + j0) * Ev, nk * Ev)
            j0 += nk
            continue
        if nr <= SDPA_SMALL_Q:
            _sdpa_dots(q + (bh * L + ii) * E, k + (kvh * S + j0) * E, E, nr, nk, sc, Sb)
        else:
            gemm(False, True, <int>nr, <int>nk, <int>E, sc, q + (bh * L + ii) * E, <int>E,
                 k + (kvh * S + j0) * E, <int>E, zero, Sb, <int>nk)
        if ok:
            ok = _sdpa_finite(Sb, nr * nk)
        _sdpa_mask(Sb, nr, nk, ii, j0, mode, mb, mf, moff, mld, causal)
        for r in range(nr):
            base = r * nk
            mx = _sdpa_rowmax(Sb + base, nk, ninf)
            mold = mr[r]
            mnew = mx if mx > mold else mold
            if mnew == ninf:
                for c in range(nk):
                    Sb[base + c] = zero
                continue
            _sdpa_exp_shift(Sb + base, nk, mnew)
            rs = _sdpa_rowsum(Sb + base, nk)
            if floating is float:
                alpha = dlk_exp32(mold - mnew)
            else:
                alpha = dlk_exp64(mold - mnew)
            lr[r] = lr[r] * alpha + rs
            mr[r] = mnew
            if alpha != one:
                for c in range(Ev):
                    ar[r * Ev + c] = ar[r * Ev + c] * alpha
        if dp > zero:
            for r in range(nr):
                _sdpa_uniforms(ub, nk, key, ctr, bh * L + ii + r, j0)
                base = r * nk
                for c in range(nk):
                    Sb[base + c] = Sb[base + c] if ub[c] >= dp else zero
        if nr <= SDPA_SMALL_Q:
            if not _sdpa_pv(Sb, nr, nk, v + (kvh * S + j0) * Ev, Ev, ar):
                ok = False
        else:
            gemm(False, False, <int>nr, <int>Ev, <int>nk, one, Sb, <int>nk,
                 v + (kvh * S + j0) * Ev, <int>Ev, one, ar, <int>Ev)
        j0 += nk
    if owner and ok and jend < S:
        ok = _sdpa_finite(k + (kvh * S + jend) * E, (S - jend) * E) and \
            _sdpa_finite(v + (kvh * S + jend) * Ev, (S - jend) * Ev)
    if ok:
        ok = _sdpa_finite(acc, nq * Ev)
    for r in range(nq):
        base = (bh * L + i0 + r) * Ev
        if l[r] == zero:
            for c in range(Ev):
                out[base + c] = zero
            lse[bh * L + i0 + r] = ninf
        else:
            inv = dscale / l[r]
            for c in range(Ev):
                out[base + c] = acc[r * Ev + c] * inv
            if floating is float:
                lse[bh * L + i0 + r] = m[r] + logf(l[r])
            else:
                lse[bh * L + i0 + r] = m[r] + log(l[r])
    return ok


cdef void _sdpa_forward(const floating* q, const floating* k, const floating* v,
                        const int64_t* kv_idx, Py_ssize_t BH, Py_ssize_t L, Py_ssize_t S,
                        Py_ssize_t E, Py_ssize_t Ev, int mode, const uint8_t* mb,
                        const floating* mf, const int64_t* mask_off, Py_ssize_t mld, bint causal,
                        double scale, double dropout_p, const uint64_t* key, const uint64_t* ctr,
                        floating* out, floating* lse) noexcept nogil:
    cdef Py_ssize_t tq, TK, nqt, tkb, it, bh, i0, nq, r, kvh, nkv = 0
    cdef int64_t moff
    cdef floating sc = <floating>scale
    cdef floating dp = <floating>dropout_p
    cdef floating one = 1
    cdef floating dscale = one / (one - dp)
    cdef floating* buf = NULL
    cdef int64_t* owner = NULL
    cdef bint ok
    _sdpa_tiles(E, Ev, sizeof(floating), &tq, &TK)
    tq = min(tq, L)
    nqt = (L + tq - 1) // tq
    tkb = min(TK, S)
    # the owner of a key/value head: its first query head (first query tile)
    for bh in range(BH):
        if kv_idx[bh] >= nkv:
            nkv = kv_idx[bh] + 1
    owner = <int64_t*>malloc((nkv + 1) * sizeof(int64_t))
    if owner == NULL:   # no check possible: report every row as unchecked (lse NaN)
        for it in range(BH * L):
            lse[it] = NAN
        return
    for kvh in range(nkv):
        owner[kvh] = -1
    for bh in range(BH):
        if owner[kv_idx[bh]] < 0:
            owner[kv_idx[bh]] = bh
    with parallel():
        buf = <floating*>malloc((tq * tkb + tkb + tq * Ev + 2 * tq + 1) * sizeof(floating))
        for it in prange(BH * nqt, schedule="dynamic"):
            bh = it // nqt
            i0 = (it % nqt) * tq
            nq = min(tq, L - i0)
            kvh = kv_idx[bh]
            moff = mask_off[bh] if mode != 0 else 0
            ok = _sdpa_fwd_item(q, k, v, bh, kvh, i0, nq, L, S, E, Ev, TK, mode, mb, mf, moff,
                                mld, causal, sc, dp, dscale, key, ctr, out, lse, buf,
                                buf + tq * tkb, buf + tq * tkb + tkb,
                                buf + tq * tkb + tkb + tq * Ev,
                                buf + tq * tkb + tkb + tq * Ev + tq,
                                i0 == 0 and owner[kvh] == bh)
            if not (ok and _sdpa_finite(q + (bh * L + i0) * E, nq * E)):
                for r in range(nq):
                    lse[bh * L + i0 + r] = NAN
        free(buf)
    free(owner)


cdef bint _sdpa_bwd_tile(const floating* q, const floating* k, const floating* v,
                         const floating* go, const floating* lse, const floating* Dm,
                         Py_ssize_t bh, Py_ssize_t kvh, Py_ssize_t i0, Py_ssize_t nq,
                         Py_ssize_t j0, Py_ssize_t nk, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                         Py_ssize_t Ev, int mode, const uint8_t* mb, const floating* mf,
                         int64_t moff, Py_ssize_t mld, bint causal, floating sc, floating dp,
                         floating dscale, const uint64_t* key, const uint64_t* ctr, floating* Pb,
                         floating* Pd, floating* dP, floating* ub) noexcept nogil:
    cdef floating ninf = -INFINITY
    cdef floating zero = 0
    cdef floating one = 1
    cdef floating li, z, d
    cdef Py_ssize_t r, c, t, base
    if not _sdpa_live(mode, mb, mf, moff, mld, i0, nq, j0, nk):
        return False
    if nq <= SDPA_SMALL_Q:   # the forward's small-tile products: the same scores
        _sdpa_dots(q + (bh * L + i0) * E, k + (kvh * S + j0) * E, E, nq, nk, sc, Pb)
    else:
        gemm(False, True, <int>nq, <int>nk, <int>E, sc, q + (bh * L + i0) * E, <int>E,
             k + (kvh * S + j0) * E, <int>E, zero, Pb, <int>nk)
    _sdpa_mask(Pb, nq, nk, i0, j0, mode, mb, mf, moff, mld, causal)
    for r in range(nq):
        li = lse[bh * L + i0 + r]
        base = r * nk
        if li == ninf:
            for c in range(nk):
                Pb[base + c] = zero
        else:
            _sdpa_exp_shift(Pb + base, nk, li)
    if nq <= SDPA_SMALL_Q:
        _sdpa_dots(go + (bh * L + i0) * Ev, v + (kvh * S + j0) * Ev, Ev, nq, nk, one, dP)
    else:
        gemm(False, True, <int>nq, <int>nk, <int>Ev, one, go + (bh * L + i0) * Ev, <int>Ev,
             v + (kvh * S + j0) * Ev, <int>Ev, zero, dP, <int>nk)
    if dp > zero:
        for r in range(nq):
            _sdpa_uniforms(ub, nk, key, ctr, bh * L + i0 + r, j0)
            base = r * nk
            for c in range(nk):
                z = dscale if ub[c] >= dp else zero
                Pd[base + c] = Pb[base + c] * z
                dP[base + c] = dP[base + c] * z
    else:
        for t in range(nq * nk):
            Pd[t] = Pb[t]
    for r in range(nq):
        d = Dm[bh * L + i0 + r]
        if floating is float:
            dlk_sdpa_ds_f32(Pb + r * nk, dP + r * nk, nk, d)
        else:
            dlk_sdpa_ds_f64(Pb + r * nk, dP + r * nk, nk, d)
    return True


cdef void _sdpa_dkdv_item(const floating* go, const floating* q, const floating* k,
                          const floating* v, const floating* lse, const floating* Dm,
                          const int64_t* kv_ptr, const int64_t* kv_list, Py_ssize_t kvh,
                          Py_ssize_t j0, Py_ssize_t tq, Py_ssize_t tk, Py_ssize_t nqt,
                          Py_ssize_t L, Py_ssize_t S, Py_ssize_t E, Py_ssize_t Ev, int mode,
                          const uint8_t* mb, const floating* mf, const int64_t* mask_off,
                          Py_ssize_t mld, bint causal, floating sc, floating dp, floating dscale,
                          const uint64_t* key, const uint64_t* ctr, floating* dk, floating* dv,
                          floating* buf) noexcept nogil:
    cdef Py_ssize_t nk = min(tk, S - j0)
    cdef Py_ssize_t t, qt, qt0, i0, nq, bh
    cdef int64_t pp, moff
    cdef floating zero = 0
    cdef floating one = 1
    for t in range(nk * E):
        dk[(kvh * S + j0) * E + t] = zero
    for t in range(nk * Ev):
        dv[(kvh * S + j0) * Ev + t] = zero
    qt0 = j0 // tq if causal else 0
    for pp in range(kv_ptr[kvh], kv_ptr[kvh + 1]):
        bh = kv_list[pp]
        moff = mask_off[bh] if mode != 0 else 0
        for qt in range(qt0, nqt):
            i0 = qt * tq
            nq = min(tq, L - i0)
            if not _sdpa_bwd_tile(q, k, v, go, lse, Dm, bh, kvh, i0, nq, j0, nk, L, S, E, Ev, mode,
                                  mb, mf, moff, mld, causal, sc, dp, dscale, key, ctr, buf,
                                  buf + tq * tk, buf + 2 * tq * tk, buf + 3 * tq * tk):
                continue
            gemm(True, False, <int>nk, <int>Ev, <int>nq, one, buf + tq * tk, <int>nk,
                 go + (bh * L + i0) * Ev, <int>Ev, one, dv + (kvh * S + j0) * Ev, <int>Ev)
            gemm(True, False, <int>nk, <int>E, <int>nq, sc, buf + 2 * tq * tk, <int>nk,
                 q + (bh * L + i0) * E, <int>E, one, dk + (kvh * S + j0) * E, <int>E)


cdef void _sdpa_dq_item(const floating* go, const floating* q, const floating* k,
                        const floating* v, const floating* lse, const floating* Dm,
                        const int64_t* kv_idx, Py_ssize_t bh, Py_ssize_t i0, Py_ssize_t tq,
                        Py_ssize_t tk, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E, Py_ssize_t Ev,
                        int mode, const uint8_t* mb, const floating* mf, const int64_t* mask_off,
                        Py_ssize_t mld, bint causal, floating sc, floating dp, floating dscale,
                        const uint64_t* key, const uint64_t* ctr, floating* dq,
                        floating* buf) noexcept nogil:
    cdef Py_ssize_t nq = min(tq, L - i0)
    cdef Py_ssize_t kvh = kv_idx[bh]
    cdef int64_t moff = mask_off[bh] if mode != 0 else 0
    cdef Py_ssize_t t, jend, j0, nk
    cdef floating zero = 0
    cdef floating one = 1
    for t in range(nq * E):
        dq[(bh * L + i0) * E + t] = zero
    jend = S
    if causal and i0 + nq < S:
        jend = i0 + nq
    j0 = -tk
    while j0 + tk < jend:
        j0 += tk
        nk = min(tk, jend - j0)
        if not _sdpa_bwd_tile(q, k, v, go, lse, Dm, bh, kvh, i0, nq, j0, nk, L, S, E, Ev, mode, mb,
                              mf, moff, mld, causal, sc, dp, dscale, key, ctr, buf, buf + tq * tk,
                              buf + 2 * tq * tk, buf + 3 * tq * tk):
            continue
        gemm(False, False, <int>nq, <int>E, <int>nk, sc, buf + 2 * tq * tk, <int>nk,
             k + (kvh * S + j0) * E, <int>E, one, dq + (bh * L + i0) * E, <int>E)


cdef void _sdpa_backward(const floating* go, const floating* q, const floating* k,
                         const floating* v, const floating* out, const floating* lse,
                         const int64_t* kv_idx, const int64_t* kv_ptr, const int64_t* kv_list,
                         Py_ssize_t BH, Py_ssize_t NKV, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                         Py_ssize_t Ev, int mode, const uint8_t* mb, const floating* mf,
                         const int64_t* mask_off, Py_ssize_t mld, bint causal, double scale,
                         double dropout_p, const uint64_t* key, const uint64_t* ctr,
                         floating* dq, floating* dk, floating* dv) noexcept nogil:
    cdef Py_ssize_t tq, TK, tk, nqt, nkt, it, bh, i, c
    cdef floating sc = <floating>scale
    cdef floating dp = <floating>dropout_p
    cdef floating one = 1
    cdef floating zero = 0
    cdef floating dscale = one / (one - dp)
    cdef floating s
    cdef floating* buf = NULL
    cdef floating* Dm = <floating*>malloc((BH * L + 1) * sizeof(floating))
    _sdpa_tiles(E, Ev, sizeof(floating), &tq, &TK)
    tq = min(tq, L)
    nqt = (L + tq - 1) // tq
    tk = min(TK, S)
    nkt = (S + tk - 1) // tk
    for bh in prange(BH, schedule="static", nogil=True):
        for i in range(L):
            s = zero
            for c in range(Ev):
                s = s + go[(bh * L + i) * Ev + c] * out[(bh * L + i) * Ev + c]
            Dm[bh * L + i] = s
    with parallel():
        buf = <floating*>malloc((3 * tq * tk + tk + 1) * sizeof(floating))
        # (a) dK, dV per (kv head, key tile)
        for it in prange(NKV * nkt, schedule="dynamic"):
            _sdpa_dkdv_item(go, q, k, v, lse, Dm, kv_ptr, kv_list, it // nkt, (it % nkt) * tk,
                            tq, tk, nqt, L, S, E, Ev, mode, mb, mf, mask_off, mld, causal, sc,
                            dp, dscale, key, ctr, dk, dv, buf)
        free(buf)
    with parallel():
        buf = <floating*>malloc((3 * tq * tk + tk + 1) * sizeof(floating))
        # (b) dQ per (batch-head, query tile)
        for it in prange(BH * nqt, schedule="dynamic"):
            _sdpa_dq_item(go, q, k, v, lse, Dm, kv_idx, it // nqt, (it % nqt) * tq, tq, tk, L, S,
                          E, Ev, mode, mb, mf, mask_off, mld, causal, sc, dp, dscale, key, ctr,
                          dq, buf)
        free(buf)
    free(Dm)


# ---- C-level exports (declared in _sdpa_decl.pxi) ----------------------------------------
cdef void sdpa_forward_f32(const float* q, const float* k, const float* v, const int64_t* kv_idx,
                           Py_ssize_t BH, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E, Py_ssize_t Ev,
                           int mask_mode, const uint8_t* mask_b, const float* mask_f,
                           const int64_t* mask_off, Py_ssize_t mask_ld, bint causal, double scale,
                           double dropout_p, const uint64_t* key, const uint64_t* ctr, float* out,
                           float* lse) noexcept nogil:
    _sdpa_forward(q, k, v, kv_idx, BH, L, S, E, Ev, mask_mode, mask_b, mask_f, mask_off, mask_ld,
                  causal, scale, dropout_p, key, ctr, out, lse)


cdef void sdpa_forward_f64(const double* q, const double* k, const double* v,
                           const int64_t* kv_idx, Py_ssize_t BH, Py_ssize_t L, Py_ssize_t S,
                           Py_ssize_t E, Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                           const double* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                           bint causal, double scale, double dropout_p, const uint64_t* key,
                           const uint64_t* ctr, double* out, double* lse) noexcept nogil:
    _sdpa_forward(q, k, v, kv_idx, BH, L, S, E, Ev, mask_mode, mask_b, mask_f, mask_off, mask_ld,
                  causal, scale, dropout_p, key, ctr, out, lse)


cdef void sdpa_backward_f32(const float* go, const float* q, const float* k, const float* v,
                            const float* out, const float* lse, const int64_t* kv_idx,
                            const int64_t* kv_ptr, const int64_t* kv_list, Py_ssize_t BH,
                            Py_ssize_t NKV, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                            Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                            const float* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                            bint causal, double scale, double dropout_p, const uint64_t* key,
                            const uint64_t* ctr, float* dq, float* dk, float* dv) noexcept nogil:
    _sdpa_backward(go, q, k, v, out, lse, kv_idx, kv_ptr, kv_list, BH, NKV, L, S, E, Ev,
                   mask_mode, mask_b, mask_f, mask_off, mask_ld, causal, scale, dropout_p, key,
                   ctr, dq, dk, dv)


cdef void sdpa_backward_f64(const double* go, const double* q, const double* k, const double* v,
                            const double* out, const double* lse, const int64_t* kv_idx,
                            const int64_t* kv_ptr, const int64_t* kv_list, Py_ssize_t BH,
                            Py_ssize_t NKV, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                            Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                            const double* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                            bint causal, double scale, double dropout_p, const uint64_t* key,
                            const uint64_t* ctr, double* dq, double* dk, double* dv) noexcept nogil:
    _sdpa_backward(go, q, k, v, out, lse, kv_idx, kv_ptr, kv_list, BH, NKV, L, S, E, Ev,
                   mask_mode, mask_b, mask_f, mask_off, mask_ld, causal, scale, dropout_p, key,
                   ctr, dq, dk, dv)


# ---- Python-level kernels (same arguments as the Numba backend) -----------------------------
cdef inline const uint8_t* _sdpa_u8(const uint8_t[::1] x) noexcept:
    return &x[0] if x.shape[0] else NULL


cdef inline const int64_t* _sdpa_i64(const int64_t[::1] x) noexcept:
    return &x[0] if x.shape[0] else NULL


def sdpa_forward(const floating[:, :, ::1] q, const floating[:, :, ::1] k,
                 const floating[:, :, ::1] v, const int64_t[::1] kv_idx, int mask_mode,
                 const uint8_t[::1] mask_b, const floating[::1] mask_f, const int64_t[::1] mask_off,
                 Py_ssize_t mask_ld, bint causal, double scale, double dropout_p,
                 const uint64_t[::1] key, const uint64_t[::1] ctr, floating[:, :, ::1] out,
                 floating[:, ::1] lse):
    """out (BH, L, Ev) and lse (BH, L) of scaled dot-product attention."""
    cdef const floating* mf = &mask_f[0] if mask_f.shape[0] else NULL
    cdef const uint8_t* mb = _sdpa_u8(mask_b)
    cdef const int64_t* mo = _sdpa_i64(mask_off)
    with nogil:
        _sdpa_forward(&q[0, 0, 0], &k[0, 0, 0], &v[0, 0, 0], &kv_idx[0], q.shape[0], q.shape[1],
                      k.shape[1], q.shape[2], v.shape[2], mask_mode, mb, mf, mo, mask_ld, causal,
                      scale, dropout_p, &key[0], &ctr[0], &out[0, 0, 0], &lse[0, 0])


def sdpa_backward(const floating[:, :, ::1] go, const floating[:, :, ::1] q,
                  const floating[:, :, ::1] k, const floating[:, :, ::1] v,
                  const floating[:, :, ::1] out, const floating[:, ::1] lse,
                  const int64_t[::1] kv_idx, const int64_t[::1] kv_ptr, const int64_t[::1] kv_list,
                  int mask_mode, const uint8_t[::1] mask_b, const floating[::1] mask_f,
                  const int64_t[::1] mask_off, Py_ssize_t mask_ld, bint causal, double scale,
                  double dropout_p, const uint64_t[::1] key, const uint64_t[::1] ctr,
                  floating[:, :, ::1] dq, floating[:, :, ::1] dk, floating[:, :, ::1] dv):
    """dq, dk, dv (overwritten) for the upstream gradient go (see the Numba twin)."""
    cdef const floating* mf = &mask_f[0] if mask_f.shape[0] else NULL
    cdef const uint8_t* mb = _sdpa_u8(mask_b)
    cdef const int64_t* mo = _sdpa_i64(mask_off)
    with nogil:
        _sdpa_backward(&go[0, 0, 0], &q[0, 0, 0], &k[0, 0, 0], &v[0, 0, 0], &out[0, 0, 0],
                       &lse[0, 0], &kv_idx[0], &kv_ptr[0], &kv_list[0], q.shape[0], k.shape[0],
                       q.shape[1], k.shape[1], q.shape[2], v.shape[2], mask_mode, mb, mf, mo,
                       mask_ld, causal, scale, dropout_p, &key[0], &ctr[0], &dq[0, 0, 0],
                       &dk[0, 0, 0], &dv[0, 0, 0])
