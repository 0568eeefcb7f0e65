# Parallel tempering (part of dlkernels.engine.cython.rbm; included by rbm.pyx).
# Twin of dlkernels/engine/numba/_rbm_pt.py: read its docstring for the
# semantics, the stream layout and the order of operations (bit-identical).
from libc.stdint cimport uint64_t as _pt_u64, int64_t as _pt_i64
from libc.stdlib cimport malloc as _pt_malloc, free as _pt_free
from cython.parallel cimport prange as _pt_prange, parallel as _pt_parallel
from cython cimport floating
from dlkernels.engine.cython.rng cimport dlk_ctr_add as _pt_ctr_add, stream_fill_f32 as _pt_fill_f32
from dlkernels.engine.cython._fastmath cimport dlk_exp64 as _pt_exp64, \
    dlk_sigmoid32 as _pt_sig32, dlk_sigmoid64 as _pt_sig64


def pt_blocks_per_sweep(Py_ssize_t K, Py_ssize_t m, Py_ssize_t n):
    """Philox blocks one sweep of one chain consumes."""
    return (K * (n + m) + K - 1 + 7) // 8


cdef double _pt_hidden(const floating* v, floating* h, const floating* W, const floating* b,
                       floating bt, const float* u, floating* f, Py_ssize_t m,
                       Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double bh = 0.0
    cdef floating p
    for j in range(n):
        f[j] = b[j]
    for i in range(m):
        if v[i] != 0:
            for j in range(n):
                f[j] += W[i * n + j]
    for j in range(n):
        if floating is float:
            p = _pt_sig32(bt * f[j])
        else:
            p = _pt_sig64(bt * f[j])
        h[j] = 1.0 if u[j] < p else 0.0
    for j in range(n):
        if h[j] != 0:
            bh += <double>b[j]
    return bh


cdef double _pt_visible(floating* v, const floating* h, const floating* WT, const floating* a,
                        floating bt, const float* u, floating* g, Py_ssize_t m,
                        Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double vg = 0.0
    cdef floating p
    for i in range(m):
        g[i] = a[i]
    for j in range(n):
        if h[j] != 0:
            for i in range(m):
                g[i] += WT[j * m + i]
    for i in range(m):
        if floating is float:
            p = _pt_sig32(bt * g[i])
        else:
            p = _pt_sig64(bt * g[i])
        v[i] = 1.0 if u[i] < p else 0.0
    for i in range(m):
        if v[i] != 0:
            vg += <double>g[i]
    return vg


cdef void _pt_chain(floating* Vc, floating* Hc, const floating* W, const floating* WT,
                    const floating* a,
                    const floating* b, const double* betas, const floating* bdt, Py_ssize_t K,
                    Py_ssize_t m, Py_ssize_t n, _pt_i64 n_sweeps, _pt_i64 swap_every,
                    const _pt_u64* key, const _pt_u64* c, _pt_u64 bps, _pt_i64* acc,
                    float* u, floating* f, floating* g, double* E,
                    const _pt_i64* stop) noexcept nogil:
    cdef Py_ssize_t U = K * (n + m) + K - 1, off, k, i, j
    cdef _pt_i64 t
    cdef double bh, vg, d, e
    cdef floating x
    for t in range(n_sweeps):
        if dlk_stopped(stop):
            return
        _pt_fill_f32(key, c, <_pt_u64>t * bps, u, U)
        off = 0
        for k in range(K):
            bh = _pt_hidden(Vc + k * m, Hc + k * n, W, b, bdt[k], u + off, f, m, n)
            off += n
            vg = _pt_visible(Vc + k * m, Hc + k * n, WT, a, bdt[k], u + off, g, m, n)
            off += m
            E[k] = -(vg + bh)
        if (t + 1) % swap_every == 0:
            for k in range(K - 1):
                d = (betas[k] - betas[k + 1]) * (E[k] - E[k + 1])
                if d > 0.0:
                    d = 0.0
                if <double>u[off + k] < _pt_exp64(d):
                    for i in range(m):
                        x = Vc[k * m + i]
                        Vc[k * m + i] = Vc[(k + 1) * m + i]
                        Vc[(k + 1) * m + i] = x
                    for j in range(n):
                        x = Hc[k * n + j]
                        Hc[k * n + j] = Hc[(k + 1) * n + j]
                        Hc[(k + 1) * n + j] = x
                    e = E[k]
                    E[k] = E[k + 1]
                    E[k + 1] = e
                    acc[k] += 1


cdef int _pt_run(floating[:, :, ::1] V, floating[:, :, ::1] H, const floating[:, ::1] W,
                  const floating[::1] a, const floating[::1] b, const double[::1] betas,
                  _pt_i64 n_sweeps, _pt_i64 swap_every, const _pt_u64[::1] key,
                  const _pt_u64[::1] ctr, _pt_i64[:, ::1] accepted, const floating* WT_given,
                  const _pt_i64* stop) noexcept nogil:
    """0, or -1 when scratch memory could not be allocated.  WT_given: W's
    transpose (n, m), or NULL to make it here."""
    cdef Py_ssize_t C = V.shape[0], K = V.shape[1], m = V.shape[2], n = W.shape[1]
    cdef Py_ssize_t U = K * (n + m) + K - 1, s, k
    cdef _pt_u64 bps = <_pt_u64>((U + 7) // 8)
    cdef int failed[1]
    cdef _pt_u64* c
    cdef float* u
    cdef floating* f
    cdef floating* g
    cdef floating* bdt
    cdef floating* WT_made = NULL
    cdef const floating* WT
    cdef double* E
    failed[0] = 0
    bdt = <floating*>_pt_malloc(K * sizeof(floating))
    if bdt == NULL:
        return -1
    for k in range(K):
        bdt[k] = <floating>betas[k]
    if WT_given != NULL:
        WT = WT_given
    else:
        WT_made = <floating*>_pt_malloc(m * n * sizeof(floating))
        if WT_made == NULL:
            _pt_free(bdt)
            return -1
        for s in range(m):
            for k in range(n):
                WT_made[k * m + s] = W[s, k]
        WT = WT_made
    with _pt_parallel():
        u = <float*>_pt_malloc(U * sizeof(float))
        f = <floating*>_pt_malloc(n * sizeof(floating))
        g = <floating*>_pt_malloc(m * sizeof(floating))
        E = <double*>_pt_malloc(K * sizeof(double))
        c = <_pt_u64*>_pt_malloc(4 * sizeof(_pt_u64))
        if u == NULL or f == NULL or g == NULL or E == NULL or c == NULL:
            failed[0] = 1
        for s in _pt_prange(C, schedule="dynamic"):
            if u != NULL and f != NULL and g != NULL and E != NULL and c != NULL:
                c[0] = ctr[0]
                c[1] = ctr[1]
                c[2] = ctr[2]
                c[3] = ctr[3]
                _pt_ctr_add(c, <_pt_u64>s, 2)
                _pt_chain(&V[s, 0, 0], &H[s, 0, 0], &W[0, 0], WT, &a[0], &b[0], &betas[0], bdt, K,
                          m, n, n_sweeps, swap_every, &key[0], c, bps, &accepted[s, 0], u, f, g, E,
                          stop)
        _pt_free(u)
        _pt_free(f)
        _pt_free(g)
        _pt_free(E)
        _pt_free(c)
    _pt_free(bdt)
    _pt_free(WT_made)
    return -1 if failed[0] else 0


def parallel_tempering(floating[:, :, ::1] V, floating[:, :, ::1] H, const floating[:, ::1] W,
                       const floating[::1] a, const floating[::1] b, const double[::1] betas,
                       _pt_i64 n_sweeps, _pt_i64 swap_every, const _pt_u64[::1] key,
                       const _pt_u64[::1] ctr, _pt_i64[:, ::1] accepted,
                       const floating[:, ::1] WT, const _pt_i64[::1] stop):
    """See dlkernels.engine.numba._rbm_pt (module docstring); WT: W's
    transpose (n, m), or a (0, 0) array to have it made here."""
    cdef int rc
    cdef const _pt_i64* stp = NULL if stop is None else &stop[0]
    cdef const floating* wt = NULL if WT.shape[0] == 0 else &WT[0, 0]
    with nogil:
        rc = _pt_run(V, H, W, a, b, betas, n_sweeps, swap_every, key, ctr, accepted, wt, stp)
    if rc != 0:
        raise MemoryError("parallel_tempering: could not allocate per-thread scratch")
