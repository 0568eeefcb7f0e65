# RBM Markov-chain kernels (Cython backend): single-site Gibbs chains,
# annealed importance sampling, pseudo-likelihood.
#
# This file is `include`d by rbm.pyx.  Same names, arguments, semantics and
# random-word consumption as dlkernels/engine/numba/_rbm_mcmc.py (see its
# docstring for the stream layout); no input validation here.
from libc.stdint cimport uint64_t, int64_t
from libc.math cimport exp as _mc_exp, log as _mc_log, log1p as _mc_log1p, fabs as _mc_fabs
from cython.parallel cimport prange
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm as _mc_sgemm, dgemm as _mc_dgemm
from dlkernels.engine.cython.rng cimport (dlk_philox4x64_10, dlk_ctr_add,
                                          stream_fill_f32 as _mc_fill_f32,
                                          stream_fill_f64 as _mc_fill_f64)
import numpy as _mc_np

cdef extern from *:
    """
    #include <stdint.h>
    /* high 64 bits of a*b; *lo = low 64 bits */
    static inline uint64_t dlk_mc_mulhilo(uint64_t a, uint64_t b, uint64_t *lo) {
    #if defined(__SIZEOF_INT128__)
        unsigned __int128 p = (unsigned __int128)a * (unsigned __int128)b;
        *lo = (uint64_t)p;
        return (uint64_t)(p >> 64);
    #else
        uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
        uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
        uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
        *lo = (mid << 32) | (uint32_t)p0;
        return p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    #endif
    }
    """
    uint64_t dlk_mc_mulhilo(uint64_t a, uint64_t b, uint64_t *lo) noexcept nogil

cdef enum:
    _MC_LOG_RENORM = 256


cdef inline double _mc_sigmoid(double x) noexcept nogil:
    cdef double e
    if x >= 0.0:
        return 1.0 / (1.0 + _mc_exp(-x))
    e = _mc_exp(x)
    return e / (1.0 + e)


cdef inline double _mc_softplus(double x) noexcept nogil:
    if x > 0.0:
        return x + _mc_log1p(_mc_exp(-x))
    return _mc_log1p(_mc_exp(x))


cdef inline void _mc_stream_counter(const uint64_t* ctr, Py_ssize_t s, uint64_t* c) noexcept nogil:
    c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3]
    dlk_ctr_add(c, <uint64_t>s, 2)


# ---- single-site Gibbs ------------------------------------------------------

cdef void _mc_single_site_chain(floating* v, floating* h, floating* vf, floating* hf,
                                const floating* W, const floating* WT,
                                const floating* a, const floating* b,
                                Py_ssize_t m, Py_ssize_t n, int64_t n_steps, int mode,
                                const uint64_t* thr, const int64_t* alias,
                                const uint64_t* key, const uint64_t* ctr,
                                Py_ssize_t s) noexcept nogil:
    cdef Py_ssize_t i, j, k
    cdef int64_t t
    cdef uint64_t c[4]
    cdef uint64_t w[4]
    cdef uint64_t ws, wu, hi, lo
    cdef uint64_t M = <uint64_t>(m + n)
    cdef double u
    cdef bint new
    cdef const floating* row
    # fields: vf = a + W h, hf = b + v W, rows added in index order
    for i in range(m):
        vf[i] = a[i]
    for j in range(n):
        hf[j] = b[j]
    for i in range(m):
        if v[i] != 0:
            row = W + i * n
            for j in range(n):
                hf[j] += row[j]
    for j in range(n):
        if h[j] != 0:
            row = WT + j * m
            for i in range(m):
                vf[i] += row[i]
    _mc_stream_counter(ctr, s, c)
    dlk_ctr_add(c, 1, 0)
    w[0] = w[1] = w[2] = w[3] = 0
    for t in range(n_steps):
        if (t & 1) == 0:
            dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], w)
            dlk_ctr_add(c, 1, 0)
            ws = w[0]
            wu = w[1]
        else:
            ws = w[2]
            wu = w[3]
        if mode == 1:
            k = <Py_ssize_t>(t % (m + n))
        else:
            hi = dlk_mc_mulhilo(ws, M, &lo)
            k = <Py_ssize_t>hi
            if mode == 2:
                if lo >= thr[k]:
                    k = <Py_ssize_t>alias[k]
        u = <double>(wu >> 11) * (1.0 / 9007199254740992.0)
        if k < m:
            new = u < _mc_sigmoid(<double>vf[k])
            if new != (v[k] != 0):
                row = W + k * n
                if new:
                    v[k] = 1
                    for j in range(n):
                        hf[j] += row[j]
                else:
                    v[k] = 0
                    for j in range(n):
                        hf[j] -= row[j]
        else:
            k = k - m
            new = u < _mc_sigmoid(<double>hf[k])
            if new != (h[k] != 0):
                row = WT + k * m
                if new:
                    h[k] = 1
                    for i in range(m):
                        vf[i] += row[i]
                else:
                    h[k] = 0
                    for i in range(m):
                        vf[i] -= row[i]


def single_site_gibbs(floating[:, ::1] v, floating[:, ::1] h, const floating[:, ::1] W,
                      const floating[:, ::1] WT, const floating[::1] a, const floating[::1] b,
                      int64_t n_steps, int mode, const uint64_t[::1] thr, const int64_t[::1] alias,
                      const uint64_t[::1] key, const uint64_t[::1] ctr):
    """n_steps single-site Gibbs updates of every chain (row) of (v, h), in place.

    W (m, n) and WT = W.T (n, m) C-contiguous; mode 0 = uniform random site,
    1 = systematic scan (site t mod (m+n)), 2 = sites from the alias table
    (thr uint64, alias int64, both of length m+n).  Local fields are kept up
    to date incrementally: O(n) per visible flip, O(m) per hidden flip.
    """
    cdef Py_ssize_t C = v.shape[0], m = v.shape[1], n = h.shape[1], s
    if C == 0 or n_steps <= 0:
        return
    dt = _mc_np.float32 if floating is float else _mc_np.float64
    cdef floating[:, ::1] vf = _mc_np.empty((C, m), dt)
    cdef floating[:, ::1] hf = _mc_np.empty((C, n), dt)
    cdef const uint64_t* thr_p = &thr[0] if thr.shape[0] > 0 else NULL
    cdef const int64_t* alias_p = &alias[0] if alias.shape[0] > 0 else NULL
    for s in prange(C, nogil=True, schedule="dynamic"):
        _mc_single_site_chain(&v[s, 0], &h[s, 0], &vf[s, 0], &hf[s, 0], &W[0, 0], &WT[0, 0],
                              &a[0], &b[0], m, n, n_steps, mode, thr_p, alias_p,
                              &key[0], &ctr[0], s)


# ---- annealed importance sampling ---------------------------------------------

cdef inline void _mc_gemm_nn(const floating* A, const floating* B, floating* Cm,
                             int rows, int inner, int cols) noexcept nogil:
    """Cm (rows, cols) = A (rows, inner) @ B (inner, cols), all C-contiguous."""
    cdef char tr = b'N'
    cdef float one_f = 1.0, zero_f = 0.0
    cdef double one_d = 1.0, zero_d = 0.0
    if rows == 0 or cols == 0:
        return
    if floating is float:
        _mc_sgemm(&tr, &tr, &cols, &rows, &inner, &one_f, <float*>B, &cols, <float*>A, &inner,
                  &zero_f, Cm, &cols)
    else:
        _mc_dgemm(&tr, &tr, &cols, &rows, &inner, &one_d, <double*>B, &cols, <double*>A, &inner,
                  &zero_d, Cm, &cols)


cdef inline void _mc_fill(const uint64_t* key, const uint64_t* cs, uint64_t first_block,
                          floating* out, Py_ssize_t n) noexcept nogil:
    if floating is float:
        _mc_fill_f32(key, cs, first_block, out, n)
    else:
        _mc_fill_f64(key, cs, first_block, out, n)


cdef double _mc_ais_visible(floating* vs, const floating* xs, const floating* us,
                            const floating* a, const floating* a_base, double beta,
                            const double* da, Py_ssize_t m, bint first) noexcept nogil:
    cdef Py_ssize_t i
    cdef double acc = 0.0, z
    for i in range(m):
        if first:
            z = <double>a_base[i]
        else:
            z = (1.0 - beta) * <double>a_base[i] + beta * (<double>a[i] + <double>xs[i])
        if <double>us[i] < _mc_sigmoid(z):
            vs[i] = 1
            acc += da[i]
        else:
            vs[i] = 0
    return acc


cdef double _mc_ais_hidden(const floating* ys, floating* hs, const floating* us,
                           const floating* b, double bk, double bp, Py_ssize_t n,
                           bint sample) noexcept nogil:
    cdef Py_ssize_t j
    cdef double acc = 0.0, p1 = 1.0, p0 = 1.0, y, z1, z0, e1, e0, p
    for j in range(n):
        y = <double>ys[j] + <double>b[j]
        z1 = bk * y
        z0 = bp * y
        e1 = _mc_exp(-_mc_fabs(z1))
        e0 = _mc_exp(-_mc_fabs(z0))
        acc += (z1 if z1 > 0.0 else 0.0) - (z0 if z0 > 0.0 else 0.0)
        p1 *= 1.0 + e1
        p0 *= 1.0 + e0
        if (j + 1) % _MC_LOG_RENORM == 0:
            acc += _mc_log(p1) - _mc_log(p0)
            p1 = 1.0
            p0 = 1.0
        if sample:
            if z1 >= 0.0:
                p = 1.0 / (1.0 + e1)
            else:
                p = e1 / (1.0 + e1)
            hs[j] = 1 if <double>us[j] < p else 0
    acc += _mc_log(p1) - _mc_log(p0)
    return acc


def ais(const floating[:, ::1] W, const floating[:, ::1] WT, const floating[::1] a,
        const floating[::1] b, const floating[::1] a_base, const double[::1] betas,
        const uint64_t[::1] key, const uint64_t[::1] ctr, double[::1] logw):
    """Annealed importance sampling from the base-rate model (visible biases
    a_base, W = 0) to the RBM (W, a, b) along betas[0] = 0 < ... < betas[K] = 1.

    logw (R,) float64 receives the log importance weight of each run:
    sum_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1}), with
    log p*_k(v) = (1-beta_k) a_base.v + beta_k a.v + sum_j softplus(beta_k (b_j + v.W_j))
    and v_k drawn by one block Gibbs sweep (h then v) at beta_k.
    """
    cdef Py_ssize_t R = logw.shape[0], m = W.shape[0], n = W.shape[1], K = betas.shape[0] - 1
    cdef Py_ssize_t s, k, i
    cdef Py_ssize_t U = 8 if floating is float else 4
    cdef Py_ssize_t nbv = (m + U - 1) // U, nbh = (n + U - 1) // U
    cdef uint64_t blk
    cdef double bk, bp
    cdef bint last
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
    cdef double[::1] da = _mc_np.empty(m, _mc_np.float64)
    cdef uint64_t[:, ::1] cs = _mc_np.empty((R, 4), _mc_np.uint64)
    for i in range(m):
        da[i] = <double>a[i] - <double>a_base[i]
    for s in range(R):
        _mc_stream_counter(&ctr[0], s, &cs[s, 0])
    with nogil:
        for s in prange(R, schedule="static"):
            logw[s] = 0.0
            _mc_fill(&key[0], &cs[s, 0], 0, &uv[s, 0], m)
            adv[s] = _mc_ais_visible(&V[s, 0], &X[s, 0], &uv[s, 0], &a[0], &a_base[0], 0.0,
                                     &da[0], m, True)
        for k in range(1, K + 1):
            bk = betas[k]
            bp = betas[k - 1]
            last = k == K
            _mc_gemm_nn(&V[0, 0], &W[0, 0], &Y[0, 0], <int>R, <int>m, <int>n)
            blk = <uint64_t>(nbv + (k - 1) * (nbh + nbv))
            for s in prange(R, schedule="static"):
                if not last:
                    _mc_fill(&key[0], &cs[s, 0], blk, &uh[s, 0], n)
                logw[s] += (bk - bp) * adv[s] + _mc_ais_hidden(&Y[s, 0], &H[s, 0], &uh[s, 0],
                                                               &b[0], bk, bp, n, not last)
            if not last:
                _mc_gemm_nn(&H[0, 0], &WT[0, 0], &X[0, 0], <int>R, <int>n, <int>m)
                for s in prange(R, schedule="static"):
                    _mc_fill(&key[0], &cs[s, 0], blk + nbh, &uv[s, 0], m)
                    adv[s] = _mc_ais_visible(&V[s, 0], &X[s, 0], &uv[s, 0], &a[0], &a_base[0],
                                             bk, &da[0], m, False)


# ---- pseudo-likelihood -------------------------------------------------------

cdef double _mc_flip_delta(const floating* vs, const floating* xs, const floating* W,
                           const floating* a, const floating* b, Py_ssize_t n,
                           Py_ssize_t i) noexcept nogil:
    """F(v with bit i flipped) - F(v), in float64; xs = v W (without b)."""
    cdef Py_ssize_t j
    cdef double sgn = -1.0 if vs[i] != 0 else 1.0
    cdef double acc = -sgn * <double>a[i], x
    cdef const floating* row = W + i * n
    for j in range(n):
        x = <double>xs[j] + <double>b[j]
        acc -= _mc_softplus(x + sgn * <double>row[j]) - _mc_softplus(x)
    return acc


cdef double _mc_pl_row_stochastic(const floating* vs, const floating* xs, const floating* W,
                                  const floating* a, const floating* b, Py_ssize_t m,
                                  Py_ssize_t n, const uint64_t* key, const uint64_t* ctr,
                                  Py_ssize_t s) noexcept nogil:
    """m * log sigmoid(F(v~i) - F(v)), i = floor(w * m / 2**64), w = word 0 of stream s."""
    cdef uint64_t c[4]
    cdef uint64_t w[4]
    cdef uint64_t hi, lo
    _mc_stream_counter(ctr, s, c)
    dlk_ctr_add(c, 1, 0)
    dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], w)
    hi = dlk_mc_mulhilo(w[0], <uint64_t>m, &lo)
    return -m * _mc_softplus(-_mc_flip_delta(vs, xs, W, a, b, n, <Py_ssize_t>hi))


def pseudo_likelihood(const floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] a,
                      const floating[::1] b, bint exact, const uint64_t[::1] key,
                      const uint64_t[::1] ctr, floating[::1] out):
    """out[s] = log pseudo-likelihood of row s of v.

    exact: sum_i log sigmoid(F(v~i) - F(v)) over every bit i (v~i = v with
    bit i flipped); otherwise scikit-learn's estimate m * log sigmoid(F(v~i) -
    F(v)) for one bit i per row, drawn from the row's stream.
    """
    cdef Py_ssize_t B = v.shape[0], m = v.shape[1], n = W.shape[1], s, i
    cdef double acc
    if B == 0:
        return
    dt = _mc_np.float32 if floating is float else _mc_np.float64
    cdef floating[:, ::1] X = _mc_np.zeros((B, n), dt)
    with nogil:
        _mc_gemm_nn(&v[0, 0], &W[0, 0], &X[0, 0], <int>B, <int>m, <int>n)
        for s in prange(B, schedule="static"):
            if exact:
                acc = 0.0
                for i in range(m):
                    acc = acc - _mc_softplus(-_mc_flip_delta(&v[s, 0], &X[s, 0], &W[0, 0], &a[0],
                                                             &b[0], n, i))
                out[s] = <floating>acc
            else:
                out[s] = <floating>_mc_pl_row_stochastic(&v[s, 0], &X[s, 0], &W[0, 0], &a[0],
                                                         &b[0], m, n, &key[0], &ctr[0], s)
