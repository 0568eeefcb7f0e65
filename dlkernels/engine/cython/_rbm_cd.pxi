# CD-k / PCD minibatch step (part of dlkernels.engine.cython.rbm; included by
# rbm.pyx).  Twin of dlkernels/engine/numba/_rbm_cd.py.  No validation here.

cpdef enum:
    # ``mode`` of cd_step: where the negative chains come from
    MODE_CD = 0          # CD-k: one chain per data row, started at the data
    MODE_PCD = 1         # PCD: persistent visible chains
    MODE_PCD_HIDDEN = 2  # PCD with persistent hidden chains (scikit-learn's scheme)


cdef void _hid_probs(const floating* V, Py_ssize_t C, Py_ssize_t m, const floating* W,
                     Py_ssize_t n, const floating* b, floating* H,
                     const _i64* bin_max) noexcept nogil:
    """H = sigmoid(V W + b) for 0/1 states V (path rule: _prefer_bin)."""
    if _prefer_bin(V, C, m, bin_max):
        _bin_layer(V, C, m, W, n, b, NULL, NULL, 0, H, <floating*>NULL, OP_SIGMOID)
    else:
        _layer(V, C, m, W, n, False, b, NULL, NULL, 0, H, n, <floating*>NULL, OP_SIGMOID)


cdef bint _is_binary(const floating* x, Py_ssize_t n) noexcept nogil:
    """True when every one of the n elements is 0 or 1."""
    cdef Py_ssize_t i
    for i in range(n):
        if x[i] != 0 and x[i] != 1:
            return False
    return True


cdef void _transpose_rows(floating* dst, Py_ssize_t ld, const floating* src, Py_ssize_t rows,
                          Py_ssize_t m, Py_ssize_t c0) noexcept nogil:
    """dst[i * ld + c0 + c] = src[c * m + i] (src (rows, m))."""
    cdef Py_ssize_t c, i
    for c in range(rows):
        for i in range(m):
            dst[i * ld + c0 + c] = src[c * m + i]


cdef void _gemm_tn(double alpha, const floating* A, Py_ssize_t K, const floating* B,
                   floating beta, floating* C, Py_ssize_t m, Py_ssize_t n) noexcept nogil:
    """C (m, n) = alpha A^T B + beta C for A (K, m), B (K, n): TILE_R x TILE_C
    tiles, in parallel above PAR_MIN_WORK (``_blas.pxd``'s gemm_tiles)."""
    cdef Py_ssize_t ntr = (m + TILE_R - 1) // TILE_R, ntc = (n + TILE_C - 1) // TILE_C
    gemm_tiles(True, False, m, n, K, <floating>alpha, A, m, B, n, beta, C, n, TILE_R, TILE_C,
               _nthreads(ntr * ntc, m * n * K))


cdef void _bern_layer(floating* p, Py_ssize_t C, Py_ssize_t n, const uint64_t* key,
                      const uint64_t* ctr, uint64_t first_block) noexcept nogil:
    cdef Py_ssize_t s
    cdef int nth = _nthreads(C, C * n * 16)
    if nth > 1:
        for s in prange(C, schedule="static", num_threads=nth):
            _bern_row(p + s * n, p + s * n, n, key, ctr, <uint64_t>s, first_block)
    else:   # no OpenMP region of one thread (see _layer)
        for s in range(C):
            _bern_row(p + s * n, p + s * n, n, key, ctr, <uint64_t>s, first_block)


cdef void _axpy_layer(floating* y, double alpha, const floating* x, Py_ssize_t C,
                      Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t s, j
    cdef floating al = <floating>alpha
    for s in range(C):
        for j in range(n):
            y[s * n + j] += al * x[s * n + j]


cdef void _mul_layer(floating* y, double f, Py_ssize_t C, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t s, j
    cdef floating al = <floating>f
    for s in range(C):
        for j in range(n):
            y[s * n + j] = y[s * n + j] * al


cdef void _colsum(const floating* x, Py_ssize_t C, Py_ssize_t n, double* out) noexcept nogil:
    cdef Py_ssize_t s, j
    for s in range(C):
        for j in range(n):
            out[j] += x[s * n + j]


cdef void _stack(floating* S, const floating* top, Py_ssize_t B, const floating* bottom,
                 Py_ssize_t C, Py_ssize_t m) noexcept nogil:
    """S (B + C, m) = [top; bottom]."""
    cdef Py_ssize_t i
    for i in range(B * m):
        S[i] = top[i]
    for i in range(C * m):
        S[B * m + i] = bottom[i]


cdef void _add_scaled_vec(floating* y, Py_ssize_t n, double sa, const double* xa, double sb,
                          const double* xb) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating t
    for i in range(n):
        t = <floating>(sa * xa[i] + sb * xb[i])
        y[i] = y[i] + t


cdef int _cd_core(const floating* vdata, Py_ssize_t B, const floating* pW, Py_ssize_t m,
                  Py_ssize_t n, const floating* a, const floating* b, Py_ssize_t k, Py_ssize_t r,
                  int mode, floating* V, floating* H, Py_ssize_t C, const uint64_t* kp,
                  const uint64_t* cp, floating* gW, floating* ga, floating* gb, double scale_pos,
                  double scale_neg, double decay, const _i64* bin_max,
                  const _i64* stp) noexcept nogil:
    """cd_step on raw pointers (see there): 0 done, 1 stopped before the
    update, -1 out of memory (nothing changed).  pW is only read, so gW may
    be the same memory."""
    cdef uint64_t bh = _blocks(n), bv = _blocks(m), blk
    cdef Py_ssize_t T = k + r - 1, t, s, j
    cdef bint bin_data
    # scratch: one malloc'd block (no numpy arrays / memoryviews per call)
    cdef Py_ssize_t n_acc = m * n if r > 1 else 0, n_vt = m * C if r > 1 else 0
    cdef Py_ssize_t n_fl = B * n + n_acc + n_vt + (B + C) * m + (B + C) * n
    cdef double* sv = <double*>calloc(2 * (m + n), sizeof(double))
    cdef floating* ppos = <floating*>malloc((n_fl + 1) * sizeof(floating))
    if sv == NULL or ppos == NULL:
        free(sv)
        free(ppos)
        return -1
    cdef double* sp = sv + m
    cdef double* pv = sp + n
    cdef double* ph = pv + m
    cdef floating* acc = ppos + B * n
    cdef floating* VT = acc + n_acc
    cdef floating* S = VT + n_vt
    cdef floating* Q = S + (B + C) * m
    cdef floating fs
    cdef int rc = 0
    if n_acc > 0:
        memset(acc, 0, n_acc * sizeof(floating))
    # binary states (the chains always, the data when 0/1) take the binary
    # path for v W and for the gradient's v^T p (see the Numba twin)
    bin_data = _is_binary(vdata, B * m)
    if bin_data and _prefer_bin(vdata, B, m, bin_max):
        _bin_layer(vdata, B, m, pW, n, b, kp, cp, 0, ppos, <floating*>NULL, OP_SIGMOID)
    else:
        _layer(vdata, B, m, pW, n, False, b, kp, cp, 0, ppos, n, <floating*>NULL, OP_SIGMOID)
    if mode == MODE_CD:
        for s in range(B):
            for j in range(m):
                V[s * m + j] = vdata[s * m + j]
            for j in range(n):
                H[s * n + j] = ppos[s * n + j]
    elif mode == MODE_PCD:
        _hid_probs(V, C, m, pW, n, b, H, bin_max)
    for t in range(1, T + 1):
        if dlk_stopped(stp):
            rc = 1   # skip the update: gW, ga, gb are left as they were
            break
        blk = <uint64_t>(t - 1) * (bh + bv)
        if mode != MODE_PCD_HIDDEN:
            _bern_layer(H, C, n, kp, cp, blk)
            _layer(H, C, n, pW, n, True, a, kp, cp, blk + bh, V, m, <floating*>NULL, OP_SAMPLE)
        else:
            _layer(H, C, n, pW, n, True, a, kp, cp, blk, V, m, <floating*>NULL, OP_SAMPLE)
        _hid_probs(V, C, m, pW, n, b, H, bin_max)
        if r > 1 and t >= k:
            _transpose_rows(VT, C, V, C, m, 0)
            _bin_layer(VT, m, C, H, n, b, kp, cp, 0, acc, <floating*>NULL, OP_ACCUMULATE)
            _colsum(V, C, m, sv)
            _colsum(H, C, n, sp)
        if mode == MODE_PCD_HIDDEN and t < T:
            _bern_layer(H, C, n, kp, cp, blk + bv)
    if rc == 0:
        # ---- accumulate (W, a, b are not read after this point) ----
        if decay != 1.0:
            _mul_layer(gW, decay, m, n)
        if r == 1:
            # gW += [vdata; V]^T [sp*P(vdata); sn*P(V)]: one pass over gW
            fs = <floating>scale_pos
            for s in range(B):
                for j in range(n):
                    Q[s * n + j] = fs * ppos[s * n + j]
            fs = <floating>scale_neg
            for s in range(C):
                for j in range(n):
                    Q[(B + s) * n + j] = fs * H[s * n + j]
            if bin_data:
                # S (B + C, m) reused as the transposed stack ST (m, B + C)
                _transpose_rows(S, B + C, vdata, B, m, 0)
                _transpose_rows(S, B + C, V, C, m, B)
                _bin_layer(S, m, B + C, Q, n, b, kp, cp, 0, gW, <floating*>NULL, OP_ACCUMULATE)
            else:
                _stack(S, vdata, B, V, C, m)
                _gemm_tn(1.0, S, B + C, Q, <floating>1, gW, m, n)
            _colsum(V, C, m, sv)
            _colsum(H, C, n, sp)
        else:
            _gemm_tn(scale_pos, vdata, B, ppos, <floating>1, gW, m, n)
            _axpy_layer(gW, scale_neg, acc, m, n)
        _colsum(vdata, B, m, pv)
        _colsum(ppos, B, n, ph)
        _add_scaled_vec(ga, m, scale_pos, pv, scale_neg, sv)
        _add_scaled_vec(gb, n, scale_pos, ph, scale_neg, sp)
        if mode == MODE_PCD_HIDDEN:
            _bern_layer(H, C, n, kp, cp, <uint64_t>(T - 1) * (bh + bv) + bv)
    free(sv)
    free(ppos)
    return rc


def cd_step(const floating[:, ::1] vdata, const floating[:, ::1] W, const floating[::1] a,
            const floating[::1] b, Py_ssize_t k, Py_ssize_t r, int mode, floating[:, ::1] V,
            floating[:, ::1] H, const uint64_t[::1] key, const uint64_t[::1] ctr,
            floating[:, ::1] gW, floating[::1] ga, floating[::1] gb, double scale_pos,
            double scale_neg, double decay, const _i64[::1] bin_max,
            const _i64[::1] stop):
    """One CD-k / PCD minibatch (see the Numba twin for the full contract).

    gW, ga, gb may alias W, a, b: all reads of W, a, b precede the first write."""
    cdef const _i64* stp = NULL if stop is None else &stop[0]
    cdef int rc
    with nogil:
        rc = _cd_core(&vdata[0, 0], vdata.shape[0], &W[0, 0], W.shape[0], W.shape[1], &a[0],
                      &b[0], k, r, mode, &V[0, 0], &H[0, 0], V.shape[0], &key[0], &ctr[0],
                      &gW[0, 0], &ga[0], &gb[0], scale_pos, scale_neg, decay,
                      &bin_max[0], stp)
    if rc < 0:
        raise MemoryError()


def cd_minibatches(const floating[:, ::1] X, const _i64[::1] order, Py_ssize_t first,
                   Py_ssize_t count, Py_ssize_t batch_size, floating[:, ::1] W, floating[::1] a,
                   floating[::1] b, Py_ssize_t k, Py_ssize_t r, int mode, floating[:, ::1] V,
                   floating[:, ::1] H, const uint64_t[::1] key, const uint64_t[:, ::1] ctrs,
                   double lr, double decay, const floating[::1] f, const floating[::1] wd,
                   floating[:, ::1] vW, floating[::1] va, floating[::1] vb,
                   const _i64[::1] bin_max, const _i64[::1] stop):
    """Minibatches first .. first + count - 1 of an epoch in one call (see the
    Numba twin for the contract); returns the number done."""
    cdef Py_ssize_t N = X.shape[0], m = X.shape[1], n = W.shape[1]
    cdef bint cd_mode = mode == MODE_CD, mom = vW.shape[0] > 0, use_wd = wd.shape[0] > 0
    cdef bint shuffled = order.shape[0] > 0
    cdef Py_ssize_t rows = min(batch_size, N)   # no minibatch has more rows than the data
    cdef Py_ssize_t C = rows if cd_mode else V.shape[0]
    cdef const _i64* stp = NULL if stop is None else &stop[0]
    cdef floating* vbuf = <floating*>malloc((rows * m + 1) * sizeof(floating))
    cdef floating* Vc = NULL
    cdef floating* Hc = NULL
    if cd_mode:
        Vc = <floating*>malloc((rows * (m + n) + 1) * sizeof(floating))
        Hc = Vc + rows * m if Vc != NULL else NULL
    else:
        Vc = &V[0, 0]
        Hc = &H[0, 0]
    if vbuf == NULL or Vc == NULL:
        free(vbuf)
        if cd_mode:
            free(Vc)
        raise MemoryError()
    cdef Py_ssize_t i, q, j, p, s0, s1, B, row, done = 0
    cdef double s_neg
    cdef floating fm, w0
    cdef int rc = 0
    with nogil:
        for i in range(first, first + count):
            if dlk_stopped(stp):
                break
            s0 = i * batch_size
            s1 = min(s0 + batch_size, N)
            B = s1 - s0
            for q in range(B):
                row = order[s0 + q] if shuffled else s0 + q
                for j in range(m):
                    vbuf[q * m + j] = X[row, j]
            if cd_mode:
                C = B
                s_neg = -lr / <double>(r * B)
            else:
                s_neg = -lr / <double>(r * C)
            if not mom:
                rc = _cd_core(vbuf, B, &W[0, 0], m, n, &a[0], &b[0], k, r, mode, Vc, Hc, C,
                              &key[0], &ctrs[i - first, 0], &W[0, 0], &a[0], &b[0],
                              lr / <double>B, s_neg, decay, &bin_max[0], NULL)
            else:
                fm = f[0]
                for p in range(m):
                    for j in range(n):
                        vW[p, j] = vW[p, j] * fm
                if use_wd:
                    w0 = wd[0]
                    for p in range(m):
                        for j in range(n):
                            vW[p, j] = vW[p, j] - w0 * W[p, j]
                for p in range(m):
                    va[p] = va[p] * fm
                for j in range(n):
                    vb[j] = vb[j] * fm
                rc = _cd_core(vbuf, B, &W[0, 0], m, n, &a[0], &b[0], k, r, mode, Vc, Hc, C,
                              &key[0], &ctrs[i - first, 0], &vW[0, 0], &va[0], &vb[0],
                              lr / <double>B, s_neg, 1.0, &bin_max[0], NULL)
                if rc == 0:
                    for p in range(m):
                        for j in range(n):
                            W[p, j] = W[p, j] + vW[p, j]
                    for p in range(m):
                        a[p] = a[p] + va[p]
                    for j in range(n):
                        b[j] = b[j] + vb[j]
            if rc != 0:
                break
            done += 1
    free(vbuf)
    if cd_mode:
        free(Vc)
    if rc < 0:
        raise MemoryError()
    return done
