# Block Gibbs chains (part of dlkernels.engine.cython.rbm; included by rbm.pyx).
# Twin of dlkernels/engine/numba/_rbm_chains.py.  No validation here.

cdef void _transpose(const floating* W, Py_ssize_t m, Py_ssize_t n, floating* WT) noexcept nogil:
    """WT (n, m) = W (m, n)^T, in 32 x 32 blocks."""
    cdef Py_ssize_t i0, j0, i, j
    for i0 in range(0, m, 32):
        for j0 in range(0, n, 32):
            for j in range(j0, min(j0 + 32, n)):
                for i in range(i0, min(i0 + 32, m)):
                    WT[j * m + i] = W[i * n + j]


cdef void _add_layer(floating* acc, const floating* x, Py_ssize_t C, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t s, j
    for s in range(C):
        for j in range(n):
            acc[s * n + j] += x[s * n + j]


cdef void _scale_layer(floating* x, Py_ssize_t C, Py_ssize_t n, Py_ssize_t r) noexcept nogil:
    cdef Py_ssize_t s, j
    for s in range(C):
        for j in range(n):
            x[s * n + j] = <floating>(<double>x[s * n + j] / <double>r)


def gibbs_chains(floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] a,
                 const floating[::1] b, Py_ssize_t k, const uint64_t[::1] key,
                 const uint64_t[::1] ctr, floating[:, ::1] h, Py_ssize_t mean_last,
                 floating[:, ::1] mean_v, floating[:, ::1] mean_h, const floating[:, ::1] WT,
                 const _i64[::1] bin_max, const _i64[::1] stop):
    """k block-Gibbs sweeps v -> h -> v of every chain, in place (see the Numba
    twin; WT: W's transpose, or (0, 0) to have it made here)."""
    cdef const _i64* stp = NULL if stop is None else &stop[0]
    cdef Py_ssize_t C = v.shape[0], m = W.shape[0], n = W.shape[1]
    cdef uint64_t bh = _blocks(n), bv = _blocks(m), blk
    cdef Py_ssize_t t, s, j
    cdef floating[:, ::1] WT_made
    if WT.shape[0] == 0:
        WT_made = np.empty((n, m), np.float32 if floating is float else np.float64)
        with nogil:
            _transpose(&W[0, 0], m, n, &WT_made[0, 0])
        WT = WT_made
    with nogil:
        if mean_last > 0:
            for s in range(C):
                for j in range(m):
                    mean_v[s, j] = 0
                for j in range(n):
                    mean_h[s, j] = 0
        for t in range(k):
            if dlk_stopped(stp):
                break   # the caller discards the results of a stopped call
            blk = <uint64_t>t * (bh + bv)
            if _prefer_bin(&v[0, 0], C, m, &bin_max[0]):
                _bin_layer(&v[0, 0], C, m, &W[0, 0], n, &b[0], &key[0], &ctr[0], blk,
                           &h[0, 0], <floating*>NULL, OP_SAMPLE)
            else:
                _layer(&v[0, 0], C, m, &W[0, 0], n, False, &b[0], &key[0], &ctr[0], blk,
                       &h[0, 0], n, <floating*>NULL, OP_SAMPLE)
            if _prefer_bin(&h[0, 0], C, n, &bin_max[0]):
                _bin_layer(&h[0, 0], C, n, &WT[0, 0], m, &a[0], &key[0], &ctr[0], blk + bh,
                           &v[0, 0], <floating*>NULL, OP_SAMPLE)
            else:
                _layer(&h[0, 0], C, n, &W[0, 0], n, True, &a[0], &key[0], &ctr[0], blk + bh,
                       &v[0, 0], m, <floating*>NULL, OP_SAMPLE)
            if mean_last > 0 and t >= k - mean_last:
                _add_layer(&mean_v[0, 0], &v[0, 0], C, m)
                _add_layer(&mean_h[0, 0], &h[0, 0], C, n)
        if mean_last > 0:
            _scale_layer(&mean_v[0, 0], C, m, mean_last)
            _scale_layer(&mean_h[0, 0], C, n, mean_last)


