# RBM layers (part of dlkernels.engine.cython.rbm; included by rbm.pyx).
# Twin of dlkernels/engine/numba/_rbm_layers.py: tiled-GEMM and binary layers,
# energies, conditionals, samplers.  No validation here.

# ---- GEMM ------------------------------------------------------------------------
cpdef enum:
    # output tile of one work item (same values as the Numba backend)
    TILE_R = 256
    TILE_C = 128
    # below this work a layer runs on the calling thread (as in the Numba backend)
    PAR_MIN_WORK = 1 << 20


cdef inline int _nthreads(Py_ssize_t items, Py_ssize_t work) noexcept nogil:
    if items > 1 and work >= PAR_MIN_WORK:
        return openmp.omp_get_max_threads()
    return 1


cdef void gemm_f32(bint ta, bint tb, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C) noexcept nogil:
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N)


cdef void gemm_f64(bint ta, bint tb, int M, int N, int K, double alpha, const double* A, int lda,
                   const double* B, int ldb, double beta, double* C) noexcept nogil:
    gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, N)


# ---- scalar helpers ------------------------------------------------------------------
cdef extern from *:
    """
    /* Binary layers: acc[0..N) = sum of the rows Wr[idx[q]] (row length N), in
       the fixed order of _bin_acc of the Numba backend: groups of 8 listed rows
       acc += ((w0 + w1) + (w2 + w3)) + ((w4 + w5) + (w6 + w7)), then one row at
       a time.  Adds only (no contraction possible), so every ISA version below
       gives the same bits. */
    #include "dlk_fastmath.h"   /* DLK_CLONES: the shared multiversioning attribute */
    /* The remaining r < 8 rows are added in one pass, acc[j] = ((acc[j] + w0[j]) +
       w1[j]) + ...: per element the same operations, in the same order, as one
       pass per row (the Numba backend makes at most three: 4, 2, 1 rows), with
       one load/store of acc. */
    #define DLK_REM_CASE(K_, EXPR) case K_: for (j = 0; j < N; j++) acc[j] = EXPR; break;
    #define DLK_BIN_ACC(T, SUF)                                                        \
    DLK_CLONES static void dlk_bin_acc_##SUF(const T *restrict Wr, Py_ssize_t ld,   \
            Py_ssize_t N, const Py_ssize_t *restrict idx, Py_ssize_t cnt,              \
            T *restrict acc) {                                                        \
        Py_ssize_t q = 0, j;                                                          \
        const T *restrict w0, *restrict w1, *restrict w2, *restrict w3;               \
        const T *restrict w4, *restrict w5, *restrict w6, *restrict w7;               \
        for (j = 0; j < N; j++) acc[j] = 0;                                           \
        for (; q + 8 <= cnt; q += 8) {                                                \
            w0 = Wr + idx[q] * ld; w1 = Wr + idx[q + 1] * ld;                         \
            w2 = Wr + idx[q + 2] * ld; w3 = Wr + idx[q + 3] * ld;                     \
            w4 = Wr + idx[q + 4] * ld; w5 = Wr + idx[q + 5] * ld;                     \
            w6 = Wr + idx[q + 6] * ld; w7 = Wr + idx[q + 7] * ld;                     \
            for (j = 0; j < N; j++)                                                   \
                acc[j] += ((w0[j] + w1[j]) + (w2[j] + w3[j]))                         \
                          + ((w4[j] + w5[j]) + (w6[j] + w7[j]));                      \
        }                                                                             \
        w0 = w1 = w2 = w3 = w4 = w5 = w6 = Wr;                                        \
        switch (cnt - q) {                                                            \
        case 7: w6 = Wr + idx[q + 6] * ld; /* fall through */                         \
        case 6: w5 = Wr + idx[q + 5] * ld; /* fall through */                         \
        case 5: w4 = Wr + idx[q + 4] * ld; /* fall through */                         \
        case 4: w3 = Wr + idx[q + 3] * ld; /* fall through */                         \
        case 3: w2 = Wr + idx[q + 2] * ld; /* fall through */                         \
        case 2: w1 = Wr + idx[q + 1] * ld; /* fall through */                         \
        case 1: w0 = Wr + idx[q] * ld; /* fall through */                             \
        default: break;                                                               \
        }                                                                             \
        switch (cnt - q) {                                                            \
        DLK_REM_CASE(1, acc[j] + w0[j])                                               \
        DLK_REM_CASE(2, (acc[j] + w0[j]) + w1[j])                                     \
        DLK_REM_CASE(3, ((acc[j] + w0[j]) + w1[j]) + w2[j])                           \
        DLK_REM_CASE(4, (((acc[j] + w0[j]) + w1[j]) + w2[j]) + w3[j])                 \
        DLK_REM_CASE(5, ((((acc[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j])       \
        DLK_REM_CASE(6, (((((acc[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j]) + w5[j]) \
        DLK_REM_CASE(7, ((((((acc[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j]) + w5[j]) + w6[j]) \
        default: break;                                                               \
        }                                                                             \
    }
    DLK_BIN_ACC(float, f32)
    DLK_BIN_ACC(double, f64)
    /* float32 sigmoid rows, out[j] = dlk_sigmoid32(x[j] + bias[j]) (_ip: in place),
       multiversioned like dlk_bin_acc: the module itself is built for the
       baseline ISA (4 floats a vector), these run at the machine's width. */
    DLK_CLONES static void dlk_sigmoid_row_f32(const float *restrict x,
            const float *restrict bias, float *restrict out, Py_ssize_t n) {
        Py_ssize_t j;
        for (j = 0; j < n; j++) out[j] = dlk_sigmoid32(x[j] + bias[j]);
    }
    DLK_CLONES static void dlk_sigmoid_row_ip_f32(float *restrict out,
            const float *restrict bias, Py_ssize_t n) {
        Py_ssize_t j;
        for (j = 0; j < n; j++) out[j] = dlk_sigmoid32(out[j] + bias[j]);
    }
    """
    void dlk_bin_acc_f32(const float* Wr, Py_ssize_t ld, Py_ssize_t N, const Py_ssize_t* idx,
                         Py_ssize_t cnt, float* acc) noexcept nogil
    void dlk_bin_acc_f64(const double* Wr, Py_ssize_t ld, Py_ssize_t N, const Py_ssize_t* idx,
                         Py_ssize_t cnt, double* acc) noexcept nogil
    void dlk_sigmoid_row_f32(const float* x, const float* bias, float* out,
                             Py_ssize_t n) noexcept nogil
    void dlk_sigmoid_row_ip_f32(float* out, const float* bias, Py_ssize_t n) noexcept nogil


# uniforms per Philox block of a layer draw, both dtypes (one 32-bit half-word
# per draw; see the Numba twin's DRAWS_PER_BLOCK)
cpdef enum:
    DRAWS_PER_BLOCK = 8


cdef inline Py_ssize_t _blocks(Py_ssize_t n) noexcept nogil:
    return (n + DRAWS_PER_BLOCK - 1) // DRAWS_PER_BLOCK


# ---- row kernels -----------------------------------------------------------------------
cdef void _uniforms(floating* ubuf, Py_ssize_t n, const uint64_t* key, const uint64_t* ctr,
                    uint64_t s, uint64_t first_block) noexcept nogil:
    """ubuf[:n] = uniforms 0..n-1 of stream s (counter ctr + s 2**128) from block
    first_block: the float32 uniforms of the 32-bit half-words (low half
    first) in both dtypes, stored exactly in floating."""
    cdef uint64_t c[4]
    dlk_stream_ctr(ctr, s, c)
    if floating is float:
        stream_fill_f32(key, c, first_block, ubuf, n)
    else:
        stream_fill_f32_f64(key, c, first_block, ubuf, n)


cdef void _bern_row(const floating* p, floating* out, Py_ssize_t n, const uint64_t* key,
                    const uint64_t* ctr, uint64_t s, uint64_t first_block) noexcept nogil:
    """out[i] = (u_i < p[i]), u_i = uniform i of stream s from block first_block
    (processed in segments of TILE_C units); p may be out (a separate in-place
    loop then, so that it vectorizes)."""
    cdef floating ubuf[TILE_C]
    cdef Py_ssize_t j0, j, m
    cdef uint64_t per = DRAWS_PER_BLOCK
    j0 = 0
    while j0 < n:
        m = min(<Py_ssize_t>TILE_C, n - j0)
        _uniforms(ubuf, m, key, ctr, s, first_block + <uint64_t>j0 // per)
        if p == out:
            for j in range(m):
                out[j0 + j] = 1 if ubuf[j] < out[j0 + j] else 0
        else:
            for j in range(m):
                out[j0 + j] = 1 if ubuf[j] < p[j0 + j] else 0
        j0 += TILE_C


cdef inline void _sigmoid_row(const floating* x, const floating* bias, floating* out,
                              Py_ssize_t n) noexcept nogil:
    """out = sigmoid(x + bias); out may be x (a separate in-place loop then)."""
    cdef Py_ssize_t j
    if <const floating*>out == x:
        if floating is float:
            dlk_sigmoid_row_ip_f32(out, bias, n)
        else:
            for j in range(n):
                out[j] = dlk_sigmoid64(out[j] + bias[j])
    else:
        if floating is float:
            dlk_sigmoid_row_f32(x, bias, out, n)
        else:
            for j in range(n):
                out[j] = dlk_sigmoid64(x[j] + bias[j])


# ---- layer kernels (parallel over tiles / rows) ----------------------------------------
cdef void _layer_tile(Py_ssize_t t, Py_ssize_t ntc, Py_ssize_t tw, const floating* X,
                      Py_ssize_t R, Py_ssize_t K, const floating* W, Py_ssize_t nw, bint transw,
                      const floating* bias, const uint64_t* key, const uint64_t* ctr,
                      uint64_t first_block, floating* out, Py_ssize_t N, floating* probs,
                      int op) noexcept nogil:
    """Tile t of _layer (see there; twin of the Numba _layer_tile)."""
    cdef Py_ssize_t tr = t // ntc, tc, r0, r1, c0, c1, s, offb
    cdef uint64_t per = DRAWS_PER_BLOCK
    tc = t - tr * ntc
    r0 = tr * TILE_R
    r1 = min(r0 + TILE_R, R)
    c0 = tc * tw
    c1 = min(c0 + tw, N)
    offb = c0 * nw if transw else c0
    gemm(False, transw, <int>(r1 - r0), <int>(c1 - c0), <int>K, <floating>1, X + r0 * K,
          <int>K, W + offb, <int>nw, <floating>0, out + r0 * N + c0, <int>N)
    if op == OP_SIGMOID:
        for s in range(r0, r1):
            _sigmoid_row(out + s * N + c0, bias + c0, out + s * N + c0, c1 - c0)
    elif op == OP_SAMPLE:
        for s in range(r0, r1):
            if probs != NULL:
                _sigmoid_row(out + s * N + c0, bias + c0, probs + s * N + c0, c1 - c0)
                _bern_row(probs + s * N + c0, out + s * N + c0, c1 - c0, key, ctr,
                          <uint64_t>s, first_block + <uint64_t>c0 // per)
            else:
                _sigmoid_row(out + s * N + c0, bias + c0, out + s * N + c0, c1 - c0)
                _bern_row(out + s * N + c0, out + s * N + c0, c1 - c0, key, ctr,
                          <uint64_t>s, first_block + <uint64_t>c0 // per)


cdef void _layer(const floating* X, Py_ssize_t R, Py_ssize_t K, const floating* W, Py_ssize_t nw,
                 bint transw, const floating* bias, const uint64_t* key, const uint64_t* ctr,
                 uint64_t first_block, floating* out, Py_ssize_t N, floating* probs,
                 int op) noexcept nogil:
    """out (R, N) = X (R, K) @ (W^T if transw else W) (W has nw columns), then
    op 0: nothing; 1: sigmoid(out + bias); 2: Bernoulli(sigmoid(out + bias)), row s
    from stream s from block first_block; probs (or NULL) gets the probabilities.
    Parallel over tiles (TILE_R rows x _col_tiles columns; single-threaded gemm +
    fused pass).  A layer below the parallel size runs without an OpenMP region:
    libgomp makes futex calls for a region even of one thread, and the
    digits fit (10-row minibatches, 64 x 100) took 36.7 ms with them, 31.0 ms
    without (AMD Zen 4)."""
    cdef Py_ssize_t ntr = (R + TILE_R - 1) // TILE_R, ntc = (N + TILE_C - 1) // TILE_C, tw
    if ntc > 1 and ntc % 2 == 1:
        ntc += 1
    tw = ((N + ntc - 1) // ntc + 7) // 8 * 8
    ntc = (N + tw - 1) // tw
    cdef Py_ssize_t t
    cdef int nth = _nthreads(ntr * ntc, R * N * K)
    if nth > 1:
        for t in prange(ntr * ntc, schedule="static", num_threads=nth):
            _layer_tile(t, ntc, tw, X, R, K, W, nw, transw, bias, key, ctr, first_block, out, N,
                        probs, op)
    else:
        for t in range(ntr * ntc):
            _layer_tile(t, ntc, tw, X, R, K, W, nw, transw, bias, key, ctr, first_block, out, N,
                        probs, op)


cpdef enum:
    BIN_CHUNK = 16  # rows per parallel work item (as in the Numba backend)


cdef void _bin_chunk(Py_ssize_t t, Py_ssize_t ncp, Py_ssize_t pw, const floating* X,
                     Py_ssize_t R, Py_ssize_t K, const floating* Wr, Py_ssize_t N,
                     const floating* bias, const uint64_t* key, const uint64_t* ctr,
                     uint64_t first_block, floating* out, floating* probs, int op,
                     Py_ssize_t* idx, floating* acc) noexcept nogil:
    """Work item t of _bin_layer (idx: K + 1 ints, acc: N + 1 floats of scratch;
    twin of the Numba _bin_chunk)."""
    cdef Py_ssize_t g = t // ncp, s, i, cnt, c0, w
    cdef uint64_t per = DRAWS_PER_BLOCK
    cdef floating* row
    c0 = (t - g * ncp) * pw
    w = min(c0 + pw, N) - c0
    for s in range(g * BIN_CHUNK, min(g * BIN_CHUNK + BIN_CHUNK, R)):
        cnt = 0
        for i in range(K):
            idx[cnt] = i
            cnt = cnt + (1 if X[s * K + i] != 0 else 0)
        if floating is float:
            dlk_bin_acc_f32(Wr + c0, N, w, idx, cnt, acc)
        else:
            dlk_bin_acc_f64(Wr + c0, N, w, idx, cnt, acc)
        row = out + s * N + c0
        if op == OP_LINEAR:
            for i in range(w):
                row[i] = acc[i]
        elif op == OP_ACCUMULATE:
            for i in range(w):
                row[i] = row[i] + acc[i]
        elif op == OP_SIGMOID:
            _sigmoid_row(acc, bias + c0, row, w)
        elif probs != NULL:
            _sigmoid_row(acc, bias + c0, probs + s * N + c0, w)
            _bern_row(probs + s * N + c0, row, w, key, ctr, <uint64_t>s,
                      first_block + <uint64_t>c0 // per)
        else:
            _sigmoid_row(acc, bias + c0, row, w)
            _bern_row(row, row, w, key, ctr, <uint64_t>s, first_block + <uint64_t>c0 // per)


cdef void _bin_layer(const floating* X, Py_ssize_t R, Py_ssize_t K, const floating* Wr,
                     Py_ssize_t N, const floating* bias, const uint64_t* key, const uint64_t* ctr,
                     uint64_t first_block, floating* out, floating* probs, int op) noexcept nogil:
    """As _layer with W = Wr (K, N) not transposed, for a 0/1 matrix X (R, K) (any
    nonzero counts as 1): row s of X Wr is the sum of the rows Wr[i] of its on-units
    (dlk_bin_acc order), then op 0 / 1 / 2 as in _layer (same stream layout), or op 3:
    out += the sums (a rank-R update written row by row: no races).
    Work items as the Numba twin's _bin_split: chunks of BIN_CHUNK rows, one chunk
    split into two column parts (multiples of TILE_C) when N >= 2 TILE_C.  Below
    the parallel size: no OpenMP region (see _layer)."""
    cdef Py_ssize_t nchunks = (R + BIN_CHUNK - 1) // BIN_CHUNK, ncp = 1, pw = N, t
    if nchunks == 1 and N >= 2 * TILE_C:
        pw = ((N + 1) // 2 + TILE_C - 1) // TILE_C * TILE_C
        ncp = (N + pw - 1) // pw
    cdef int nth = _nthreads(nchunks * ncp, R * K * N)
    cdef Py_ssize_t* idx = NULL
    cdef floating* acc = NULL
    if nth > 1:
        with parallel(num_threads=nth):
            idx = <Py_ssize_t*>malloc((K + 1) * sizeof(Py_ssize_t))
            acc = <floating*>malloc((N + 1) * sizeof(floating))
            for t in prange(nchunks * ncp, schedule="static"):
                _bin_chunk(t, ncp, pw, X, R, K, Wr, N, bias, key, ctr, first_block, out, probs,
                           op, idx, acc)
            free(idx)
            free(acc)
    else:
        idx = <Py_ssize_t*>malloc((K + 1) * sizeof(Py_ssize_t))
        acc = <floating*>malloc((N + 1) * sizeof(floating))
        for t in range(nchunks * ncp):
            _bin_chunk(t, ncp, pw, X, R, K, Wr, N, bias, key, ctr, first_block, out, probs, op,
                       idx, acc)
        free(idx)
        free(acc)


cpdef enum:
    # the path rule's table (see the Numba twin's _prefer_bin)
    BIN_SAMPLE_ROWS = 64
    BIN_CLASSES = 12          # row classes 0 .. 11: R < 2, 2 <= R < 4, ..., R >= 2048
    BIN_DEFAULT_SMALL = 1000  # per mille: classes 0 .. 5 (R < 64) always binary
    BIN_DEFAULT_LARGE = 400   # per mille: classes 6 .. 11 binary up to 40% on


cpdef Py_ssize_t bin_class(Py_ssize_t R) noexcept nogil:
    """The row class of a layer of R rows: floor(log2(R)) in 0 .. BIN_CLASSES - 1."""
    cdef Py_ssize_t c = 0
    while c < BIN_CLASSES - 1 and (R >> (c + 1)) > 0:
        c += 1
    return c


cdef bint _prefer_bin(const floating* X, Py_ssize_t R, Py_ssize_t K,
                      const _i64* bin_max) noexcept nogil:
    """Path rule of the Numba twin: the binary path when the first
    min(R, BIN_SAMPLE_ROWS) rows are at most bin_max[bin_class(R)] per mille on."""
    cdef Py_ssize_t i, cnt = 0, S = min(R, <Py_ssize_t>BIN_SAMPLE_ROWS)
    cdef _i64 lim = bin_max[bin_class(R)]
    if lim >= 1000:   # any density (the count cannot exceed it): no pass over X
        return True
    for i in range(S * K):
        cnt = cnt + (1 if X[i] != 0 else 0)
    return cnt * 1000 <= S * K * lim


# ---- C-level entry points (exported through rbm.pxd / __pyx_capi__) ---------------------
cdef void sample_layer_f32(float* act, Py_ssize_t C, Py_ssize_t n, const float* bias,
                           const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                           float* probs) noexcept nogil:
    _sample_rows(act, C, n, bias, key, ctr, first_block, probs)


cdef void sample_layer_f64(double* act, Py_ssize_t C, Py_ssize_t n, const double* bias,
                           const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                           double* probs) noexcept nogil:
    _sample_rows(act, C, n, bias, key, ctr, first_block, probs)


cdef void _sample_rows(floating* act, Py_ssize_t C, Py_ssize_t n, const floating* bias,
                       const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                       floating* probs) noexcept nogil:
    cdef Py_ssize_t s
    for s in prange(C, schedule="static"):
        if probs != NULL:
            _sigmoid_row(act + s * n, bias, probs + s * n, n)
            _bern_row(probs + s * n, act + s * n, n, key, ctr, <uint64_t>s, first_block)
        else:
            _sigmoid_row(act + s * n, bias, act + s * n, n)
            _bern_row(act + s * n, act + s * n, n, key, ctr, <uint64_t>s, first_block)


# ---- Python-level kernels ------------------------------------------------------------------
def blocks_per_layer(Py_ssize_t n, itemsize=None):
    """Philox blocks one layer draw of n units consumes (per row): ceil(n / 8)
    in both dtypes (``itemsize`` is accepted and ignored: the count no longer
    depends on the dtype)."""
    return _blocks(n)


def energy(const floating[:, ::1] v, const floating[:, ::1] h, const floating[:, ::1] W,
           const floating[::1] a, const floating[::1] b, floating[::1] out):
    """out[s] = -a.v_s - b.h_s - v_s W h_s  (sums in float64)."""
    cdef Py_ssize_t B = v.shape[0], m = W.shape[0], n = W.shape[1], s, i, j
    cdef double e
    vw_arr = np.empty((B, n), np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] vw = vw_arr
    with nogil:
        _layer(&v[0, 0], B, m, &W[0, 0], n, False, &b[0], NULL, NULL, 0, &vw[0, 0], n,
               <floating*>NULL, OP_LINEAR)
        for s in prange(B, schedule="static"):
            e = 0.0
            for i in range(m):
                e = e + <double>a[i] * <double>v[s, i]
            for j in range(n):
                e = e + (<double>b[j] + <double>vw[s, j]) * <double>h[s, j]
            out[s] = <floating>(-e)


def free_energy(const floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] a,
                const floating[::1] b, floating[::1] out):
    """out[s] = -a.v_s - sum_j softplus(b_j + (v_s W)_j)  (sums in float64)."""
    cdef Py_ssize_t B = v.shape[0], m = W.shape[0], n = W.shape[1], s, i, j
    cdef double e
    vw_arr = np.empty((B, n), np.float32 if floating is float else np.float64)
    cdef floating[:, ::1] vw = vw_arr
    with nogil:
        _layer(&v[0, 0], B, m, &W[0, 0], n, False, &b[0], NULL, NULL, 0, &vw[0, 0], n,
               <floating*>NULL, OP_LINEAR)
        for s in prange(B, schedule="static"):
            e = 0.0
            for i in range(m):
                e = e + <double>a[i] * <double>v[s, i]
            for j in range(n):
                if floating is float:
                    e = e + <double>dlk_softplus32(vw[s, j] + b[j])
                else:
                    e = e + dlk_softplus64(vw[s, j] + b[j])
            out[s] = <floating>(-e)


def hidden_probs(const floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] b,
                 floating[:, ::1] out):
    """out = sigmoid(v W + b)."""
    cdef Py_ssize_t B = v.shape[0], m = W.shape[0], n = W.shape[1]
    with nogil:
        _layer(&v[0, 0], B, m, &W[0, 0], n, False, &b[0], NULL, NULL, 0, &out[0, 0], n,
               <floating*>NULL, OP_SIGMOID)


def visible_probs(const floating[:, ::1] h, const floating[:, ::1] W, const floating[::1] a,
                  floating[:, ::1] out):
    """out = sigmoid(h W^T + a)."""
    cdef Py_ssize_t B = h.shape[0], m = W.shape[0], n = W.shape[1]
    with nogil:
        _layer(&h[0, 0], B, n, &W[0, 0], n, True, &a[0], NULL, NULL, 0, &out[0, 0], m,
               <floating*>NULL, OP_SIGMOID)


def sample_hidden(const floating[:, ::1] v, const floating[:, ::1] W, const floating[::1] b,
                  const uint64_t[::1] key, const uint64_t[::1] ctr, floating[:, ::1] out,
                  floating[:, ::1] probs):
    """out = Bernoulli(sigmoid(v W + b)); row s from stream s, block 0.
    probs: (rows, n) to receive the probabilities, or a (0, 0) array."""
    cdef Py_ssize_t B = v.shape[0], m = W.shape[0], n = W.shape[1]
    cdef floating* pp = &probs[0, 0] if probs.shape[0] > 0 else NULL
    with nogil:
        _layer(&v[0, 0], B, m, &W[0, 0], n, False, &b[0], &key[0], &ctr[0], 0, &out[0, 0], n,
               pp, OP_SAMPLE)


def sample_visible(const floating[:, ::1] h, const floating[:, ::1] W, const floating[::1] a,
                   const uint64_t[::1] key, const uint64_t[::1] ctr, floating[:, ::1] out,
                   floating[:, ::1] probs):
    """out = Bernoulli(sigmoid(h W^T + a)); row s from stream s, block 0."""
    cdef Py_ssize_t B = h.shape[0], m = W.shape[0], n = W.shape[1]
    cdef floating* pp = &probs[0, 0] if probs.shape[0] > 0 else NULL
    with nogil:
        _layer(&h[0, 0], B, n, &W[0, 0], n, True, &a[0], &key[0], &ctr[0], 0, &out[0, 0], m,
               pp, OP_SAMPLE)


def binary_layer(const floating[:, ::1] X, const floating[:, ::1] Wr, const floating[::1] bias,
                 const uint64_t[::1] key, const uint64_t[::1] ctr, uint64_t first_block,
                 floating[:, ::1] out, floating[:, ::1] probs, int op):
    """The binary-state layer kernel (see the Numba twin)."""
    cdef Py_ssize_t R = X.shape[0], K = X.shape[1], N = Wr.shape[1]
    cdef floating* pp = &probs[0, 0] if probs.shape[0] > 0 else NULL
    with nogil:
        _bin_layer(&X[0, 0], R, K, &Wr[0, 0], N, &bias[0], &key[0], &ctr[0], first_block,
                   &out[0, 0], pp, op)


