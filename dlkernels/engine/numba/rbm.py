"""Bernoulli RBM kernels (Numba backend).

Same names, arguments and semantics as ``dlkernels.engine.cython.rbm``; no
input validation here (that is ``dlkernels.bindings.rbm``' job).  All arrays
are C-contiguous and share one float dtype (float32 or float64).

Conventions: v (rows, m), h (rows, n), W (m, n), a (m,), b (n,).

GEMM.  Every matrix product calls the ``?gemm`` of ``scipy.linalg.cython_blas``
(the BLAS Numba's own ``np.dot`` uses) through ``_blas.gemm_at``, with exactly the
arguments the Cython backend passes, so both backends see bit-identical
products; it also accumulates (beta = 1), which lets ``cd_step`` add the
gradient straight into W without an (m, n) temporary.

Layers.  ``_layer`` computes a layer's activations tile by tile (TILE_R rows
x equal column tiles of at most TILE_C units, fixed by the sizes only): one
single-threaded gemm per tile, then bias + sigmoid (+ Bernoulli draw) on the
tile while it is in cache; tiles run in parallel (prange) when the layer is
big enough (PAR_MIN_WORK), otherwise on the calling thread.  The BLAS must
be single-threaded meanwhile (``dlkernels.bindings.rbm.blas_single_threaded``).
Neither the tiling nor the thread count changes any result.

Binary layers.  Where the input states are 0/1 -- the chains of
``gibbs_chains`` and ``cd_step``, and the data of ``cd_step`` when every value
is 0 or 1 -- a product x W is a sum of the rows of W of the units that are on:
``_bin_layer`` lists them per row and adds those rows in a fixed order
(``_bin_acc``: adds only, no FMA, no BLAS, the same operations in both
backends and for any thread count), then runs the fused pass on the row.  At
density d it does d / 2 of a GEMM's flops, but it streams W from L2 (about 22
G adds/s per core here) where a large GEMM reuses W from registers, so it wins
over a big GEMM only by about 1 / (2.5 d) and wins most for small batches.
``gibbs_chains`` samples both layers this way (h -> v with a transposed copy
of W made once per call) unless ``_prefer_bin`` sees a dense layer; ``cd_step`` computes v W for the chains (and binary
data) this way and the gradient's v^T p as a scatter-add of the rows of p into
the rows of W of the on-units (one pass over W); h W^T (a per-call transpose
of W costs more than it saves) and grey data stay on the tiled GEMM.  The
probabilities differ from the GEMM path's by rounding only (tests bound it).

Random numbers.  Row/chain ``s`` of a call draws from stream ``s`` of the
call's base counter ``ctr`` (counter ``ctr + s * 2**128``).  Each layer draw
of a row starts on a fresh Philox block: a float32 layer of n units uses
``ceil(n / 8)`` blocks (uniform i = float32 uniform i of the stream), a
float64 layer ``ceil(n / 4)`` blocks.  Within a call, the draws of a row are
laid out one after another in the order they happen (see each kernel).
A unit is on when ``u < p`` with u the stream's uniform (for float32 this is
exactly the integer test ``(x >> 8) < ceil(p * 2**24)`` on the 32-bit word x).

Sigmoid and softplus come from the shared ``_fastmath`` module (the same
IEEE operations in the same order as the Cython backend's ``dlk_fastmath.h``):
``sigmoid32`` (``1 / (1 + exp(-x))`` with a vectorizable polynomial exp),
``sigmoid64`` (libm exp), ``softplus32/64`` (``max(x, 0) + log1p(exp(-|x|))``,
libm); their error bounds are tabled there.  Kernels are compiled with
``error_model="numpy"`` so that these loops vectorize.
"""
import numpy as np
from numba import njit, prange

from ._blas import gemm_at
from ._fastmath import sigmoid32, sigmoid64, softplus32, softplus64
from .rng import fill_f32_from, fill_f64_from, stream_ctr

__all__ = ["energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
           "sample_visible", "gibbs_chains", "cd_step", "blocks_per_layer", "binary_layer"]

# Tile of the output that one work item computes (a single-threaded gemm
# followed by the fused element-wise pass).  Fixed sizes, shared with the
# Cython backend: the results do not depend on the thread count.  TILE_C is a
# multiple of 8, so every column tile starts on a Philox block of the row.
TILE_R = 256
TILE_C = 128


@njit(cache=True, error_model="numpy")
def blocks_per_layer(n, itemsize):
    """Philox blocks one layer draw of n units consumes (per row)."""
    if itemsize == 4:
        return (n + 7) // 8
    return (n + 3) // 4


# ---- row kernels (serial; called inside the prange loops) --------------------
@njit(cache=True, error_model="numpy")
def _uniforms(ubuf, n, k0, k1, c0, c1, c2, c3, first_block):
    """ubuf[:n] = uniforms 0..n-1 of the stream (key, c) counted from block
    ``first_block`` (float32: two per 64-bit word, low half first)."""
    if ubuf.itemsize == 4:
        fill_f32_from(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)
    else:
        fill_f64_from(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)


@njit(cache=True, error_model="numpy")
def _bern_row(p, out, k0, k1, c0, c1, c2, c3, first_block, ubuf):
    """out[i] = 1 if u_i < p[i] else 0, u_i = uniform i of the stream (key, c)
    counted from block ``first_block``; p and out distinct; ubuf scratch."""
    n = p.shape[0]
    _uniforms(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)
    for j in range(n):
        out[j] = 1.0 if ubuf[j] < p[j] else 0.0


@njit(cache=True, error_model="numpy")
def _bern_row_ip(x, k0, k1, c0, c1, c2, c3, first_block, ubuf):
    """In-place _bern_row: x[i] = 1 if u_i < x[i] else 0 (a separate loop so
    that it vectorizes: an exactly aliased pair defeats the overlap check)."""
    n = x.shape[0]
    _uniforms(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)
    for j in range(n):
        x[j] = 1.0 if ubuf[j] < x[j] else 0.0


@njit(cache=True, error_model="numpy")
def _sigmoid_row(x, bias, out):
    """out = sigmoid(x + bias) (out distinct from x)."""
    n = x.shape[0]
    if x.itemsize == 4:
        for j in range(n):
            out[j] = sigmoid32(x[j] + bias[j])
    else:
        for j in range(n):
            out[j] = sigmoid64(x[j] + bias[j])


@njit(cache=True, error_model="numpy")
def _sigmoid_row_ip(x, bias):
    """x = sigmoid(x + bias), in place."""
    n = x.shape[0]
    if x.itemsize == 4:
        for j in range(n):
            x[j] = sigmoid32(x[j] + bias[j])
    else:
        for j in range(n):
            x[j] = sigmoid64(x[j] + bias[j])


# ---- layer kernels (parallel over tiles / rows) -----------------------------------
# Below this many multiply-adds (or elements) a layer runs on the calling
# thread: a parallel region costs more than it saves (and far more on a
# machine with more runnable threads than cores).  The results are the same
# either way.
PAR_MIN_WORK = 1 << 20


@njit(cache=True, error_model="numpy")
def _col_tiles(N):
    """(count, width) of the column tiles of a layer of N units: an even count
    (two threads get equal halves) of equal widths <= TILE_C, multiples of 8
    (each tile starts on a Philox block of its rows)."""
    ntc = (N + TILE_C - 1) // TILE_C
    if ntc > 1 and ntc % 2 == 1:
        ntc += 1
    tw = ((N + ntc - 1) // ntc + 7) // 8 * 8
    return (N + tw - 1) // tw, tw


@njit(cache=True, error_model="numpy")
def _layer_tile(t, ntc, tw, X, W, transw, bias, key, ctr, first_block, out, probs, op, ubuf):
    """Tile t of _layer (see there)."""
    R = out.shape[0]
    N = out.shape[1]
    K = X.shape[1]
    nw = W.shape[1]
    per = 8 if out.itemsize == 4 else 4
    tr = t // ntc
    tc = t - tr * ntc
    r0 = tr * TILE_R
    r1 = min(r0 + TILE_R, R)
    c0 = tc * tw
    c1 = min(c0 + tw, N)
    offb = c0 * nw if transw else c0
    gemm_at(False, transw, r1 - r0, c1 - c0, K, 1.0, X, r0 * K, K, W, offb, nw, 0.0,
             out, r0 * N + c0, N)
    if op == 1:
        for s in range(r0, r1):
            _sigmoid_row_ip(out[s, c0:c1], bias[c0:c1])
    elif op == 2:
        keep = probs.shape[0] > 0
        for s in range(r0, r1):
            row = out[s, c0:c1]
            k0, k1, k2, k3 = stream_ctr(ctr, s)
            if keep:
                tgt = probs[s, c0:c1]
                _sigmoid_row(row, bias[c0:c1], tgt)
                _bern_row(tgt, row, key[0], key[1], k0, k1, k2, k3,
                          first_block + c0 // per, ubuf)
            else:
                _sigmoid_row_ip(row, bias[c0:c1])
                _bern_row_ip(row, key[0], key[1], k0, k1, k2, k3,
                             first_block + c0 // per, ubuf)


@njit(cache=True, error_model="numpy", parallel=True)
def _layer_par(X, W, transw, bias, key, ctr, first_block, out, probs, op, ntiles, ntc, tw):
    for t in prange(ntiles):
        ubuf = np.empty(TILE_C, out.dtype)
        _layer_tile(t, ntc, tw, X, W, transw, bias, key, ctr, first_block, out, probs, op,
                    ubuf)


@njit(cache=True, error_model="numpy")
def _layer(X, W, transw, bias, key, ctr, first_block, out, probs, op):
    """out (R, N) = X (R, K) @ (W^T if transw else W), then per element
    op 0: nothing; op 1: out = sigmoid(out + bias); op 2: out =
    Bernoulli(sigmoid(out + bias)), row s from stream s of ctr starting at
    block first_block (column c uses uniform c of the layer draw); probs
    (R, N) receives the probabilities when it has rows.

    Parallel over tiles of out (TILE_R rows x _col_tiles columns): each is a single-threaded
    gemm followed by the fused pass while the tile is in cache (BLAS must be
    single-threaded here; the bindings see to it)."""
    R = out.shape[0]
    N = out.shape[1]
    ntc, tw = _col_tiles(N)
    ntiles = ((R + TILE_R - 1) // TILE_R) * ntc
    if ntiles > 1 and R * N * X.shape[1] >= PAR_MIN_WORK:
        _layer_par(X, W, transw, bias, key, ctr, first_block, out, probs, op, ntiles, ntc, tw)
    else:
        ubuf = np.empty(TILE_C, out.dtype)
        for t in range(ntiles):
            _layer_tile(t, ntc, tw, X, W, transw, bias, key, ctr, first_block, out, probs, op,
                        ubuf)


@njit(cache=True, error_model="numpy")
def _gemm_tn_tile(t, ntc, alpha, A, B, beta, C):
    m = C.shape[0]
    n = C.shape[1]
    K = A.shape[0]
    tr = t // ntc
    tc = t - tr * ntc
    r0 = tr * TILE_R
    r1 = min(r0 + TILE_R, m)
    c0 = tc * TILE_C
    c1 = min(c0 + TILE_C, n)
    gemm_at(True, False, r1 - r0, c1 - c0, K, alpha, A, r0, m, B, c0, n, beta,
             C, r0 * n + c0, n)


@njit(cache=True, error_model="numpy", parallel=True)
def _gemm_tn_par(alpha, A, B, beta, C, ntiles, ntc):
    for t in prange(ntiles):
        _gemm_tn_tile(t, ntc, alpha, A, B, beta, C)


@njit(cache=True, error_model="numpy")
def _gemm_tn(alpha, A, B, beta, C):
    """C (m, n) = alpha A^T B + beta C for A (K, m), B (K, n); parallel over
    TILE_R x TILE_C tiles of C (single-threaded gemm each)."""
    m = C.shape[0]
    n = C.shape[1]
    ntc = (n + TILE_C - 1) // TILE_C
    ntiles = ((m + TILE_R - 1) // TILE_R) * ntc
    if ntiles > 1 and m * n * A.shape[0] >= PAR_MIN_WORK:
        _gemm_tn_par(alpha, A, B, beta, C, ntiles, ntc)
    else:
        for t in range(ntiles):
            _gemm_tn_tile(t, ntc, alpha, A, B, beta, C)


@njit(cache=True, error_model="numpy")
def _bern_layer_row(p, s, key, ctr, first_block, ubuf):
    n = p.shape[1]
    per = 8 if p.itemsize == 4 else 4
    c0, c1, c2, c3 = stream_ctr(ctr, s)
    for j0 in range(0, n, TILE_C):
        j1 = min(j0 + TILE_C, n)
        _bern_row_ip(p[s, j0:j1], key[0], key[1], c0, c1, c2, c3,
                     first_block + j0 // per, ubuf)


@njit(cache=True, error_model="numpy", parallel=True)
def _bern_layer_par(p, key, ctr, first_block):
    for s in prange(p.shape[0]):
        ubuf = np.empty(TILE_C, p.dtype)
        _bern_layer_row(p, s, key, ctr, first_block, ubuf)


@njit(cache=True, error_model="numpy")
def _bern_layer(p, key, ctr, first_block):
    """p = Bernoulli(p) in place, row s from stream s (blocks from first_block)."""
    if p.shape[0] > 1 and p.size * 16 >= PAR_MIN_WORK:
        _bern_layer_par(p, key, ctr, first_block)
    else:
        ubuf = np.empty(TILE_C, p.dtype)
        for s in range(p.shape[0]):
            _bern_layer_row(p, s, key, ctr, first_block, ubuf)


# ---- binary layers: sums of rows of W over the units that are on ----------------
# With a 0/1 input row x, (x Wr)_j is the sum of Wr[i, j] over the i with
# x_i != 0.  Per row: list the on-units once (increasing i), then sum their
# rows Wr[i, :] in the fixed order of _bin_acc (adds only: no FMA, no BLAS,
# the same operations in both backends and for any thread count), then the
# fused bias + sigmoid + Bernoulli pass on the row.  The rows of Wr are
# contiguous, so the adds vectorize; at density d it does d / 2 of a GEMM's
# flops (grouping 8 rows per pass over acc keeps it off the store port).  For the
# h -> v direction Wr is a transposed copy of W made once per kernel call.
BIN_CHUNK = 16  # rows per parallel work item (buffers allocated per item)


@njit(cache=True, error_model="numpy")
def _bin_acc(Wr, idx, cnt, acc, c0, c1):
    """acc[c0:c1] = sum of the rows Wr[idx[0..cnt-1], c0:c1] in a fixed order:
    acc = 0, then for each group of 8 listed rows w0..w7 (in list order)
    acc += ((w0 + w1) + (w2 + w3)) + ((w4 + w5) + (w6 + w7)), then acc += w
    for each of the remaining rows one at a time (the Cython backend performs
    the same operations; the column range does not change any element)."""
    a = acc[c0:c1]
    N = c1 - c0
    for j in range(N):
        a[j] = 0.0
    q = 0
    while q + 8 <= cnt:
        w0 = Wr[idx[q], c0:c1]
        w1 = Wr[idx[q + 1], c0:c1]
        w2 = Wr[idx[q + 2], c0:c1]
        w3 = Wr[idx[q + 3], c0:c1]
        w4 = Wr[idx[q + 4], c0:c1]
        w5 = Wr[idx[q + 5], c0:c1]
        w6 = Wr[idx[q + 6], c0:c1]
        w7 = Wr[idx[q + 7], c0:c1]
        for j in range(N):
            a[j] += ((w0[j] + w1[j]) + (w2[j] + w3[j])) + ((w4[j] + w5[j]) + (w6[j] + w7[j]))
        q += 8
    # the remaining r < 8 rows in one pass: a[j] = ((a[j] + w0[j]) + w1[j]) + ...
    # (per element the same operations as one pass per row)
    r = cnt - q
    if r == 0:
        return
    w0 = Wr[idx[q], c0:c1]
    w1 = Wr[idx[q + 1 if r > 1 else q], c0:c1]
    w2 = Wr[idx[q + 2 if r > 2 else q], c0:c1]
    w3 = Wr[idx[q + 3 if r > 3 else q], c0:c1]
    w4 = Wr[idx[q + 4 if r > 4 else q], c0:c1]
    w5 = Wr[idx[q + 5 if r > 5 else q], c0:c1]
    w6 = Wr[idx[q + 6 if r > 6 else q], c0:c1]
    if r == 1:
        for j in range(N):
            a[j] = a[j] + w0[j]
    elif r == 2:
        for j in range(N):
            a[j] = (a[j] + w0[j]) + w1[j]
    elif r == 3:
        for j in range(N):
            a[j] = ((a[j] + w0[j]) + w1[j]) + w2[j]
    elif r == 4:
        for j in range(N):
            a[j] = (((a[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]
    elif r == 5:
        for j in range(N):
            a[j] = ((((a[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j]
    elif r == 6:
        for j in range(N):
            a[j] = (((((a[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j]) + w5[j]
    else:
        for j in range(N):
            a[j] = ((((((a[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]) + w4[j]) + w5[j]) + w6[j]


@njit(cache=True, error_model="numpy")
def _bin_row(X, s, Wr, bias, key, ctr, first_block, out, probs, op, idx, acc, ubuf, c0, c1):
    """Columns c0..c1 (c0 a multiple of TILE_C) of row s of _bin_layer (idx: K
    ints, acc: N floats, ubuf: TILE_C floats)."""
    K = X.shape[1]
    cnt = 0
    for i in range(K):
        idx[cnt] = i
        cnt += 1 if X[s, i] != 0 else 0
    _bin_acc(Wr, idx, cnt, acc, c0, c1)
    row = out[s]
    if op == 0 or op == 3:
        rw = row[c0:c1]
        a = acc[c0:c1]
        if op == 0:
            for j in range(c1 - c0):
                rw[j] = a[j]
        else:
            for j in range(c1 - c0):
                rw[j] += a[j]
        return
    if op == 1:
        _sigmoid_row(acc[c0:c1], bias[c0:c1], row[c0:c1])
        return
    per = 8 if out.itemsize == 4 else 4
    k0, k1, k2, k3 = stream_ctr(ctr, s)
    if probs.shape[0] > 0:
        prow = probs[s]
        _sigmoid_row(acc[c0:c1], bias[c0:c1], prow[c0:c1])
        for j0 in range(c0, c1, TILE_C):
            j1 = min(j0 + TILE_C, c1)
            _bern_row(prow[j0:j1], row[j0:j1], key[0], key[1], k0, k1, k2, k3,
                      first_block + j0 // per, ubuf)
    else:
        _sigmoid_row(acc[c0:c1], bias[c0:c1], row[c0:c1])
        for j0 in range(c0, c1, TILE_C):
            j1 = min(j0 + TILE_C, c1)
            _bern_row_ip(row[j0:j1], key[0], key[1], k0, k1, k2, k3,
                         first_block + j0 // per, ubuf)


@njit(cache=True, error_model="numpy")
def _bin_split(R, N):
    """(row chunks, column parts, part width) of _bin_layer's work items: chunks
    of BIN_CHUNK rows; a layer of one chunk (a small batch) is split into two
    column parts (a multiple of TILE_C wide) so that two threads share it."""
    nchunks = (R + BIN_CHUNK - 1) // BIN_CHUNK
    if nchunks == 1 and N >= 2 * TILE_C:
        pw = ((N + 1) // 2 + TILE_C - 1) // TILE_C * TILE_C
        return nchunks, (N + pw - 1) // pw, pw
    return nchunks, 1, N


@njit(cache=True, error_model="numpy")
def _bin_chunk(t, ncp, pw, X, Wr, bias, key, ctr, first_block, out, probs, op):
    R = X.shape[0]
    N = Wr.shape[1]
    g = t // ncp
    c0 = (t - g * ncp) * pw
    c1 = min(c0 + pw, N)
    idx = np.empty(X.shape[1], np.intp)
    acc = np.empty(N, out.dtype)
    ubuf = np.empty(TILE_C, out.dtype)
    for s in range(g * BIN_CHUNK, min(g * BIN_CHUNK + BIN_CHUNK, R)):
        _bin_row(X, s, Wr, bias, key, ctr, first_block, out, probs, op, idx, acc, ubuf, c0, c1)


@njit(cache=True, error_model="numpy", parallel=True)
def _bin_layer_par(X, Wr, bias, key, ctr, first_block, out, probs, op, nitems, ncp, pw):
    for t in prange(nitems):
        _bin_chunk(t, ncp, pw, X, Wr, bias, key, ctr, first_block, out, probs, op)


@njit(cache=True, error_model="numpy")
def _bin_layer(X, Wr, bias, key, ctr, first_block, out, probs, op):
    """As _layer with W = Wr (K, N) not transposed, for a 0/1 matrix X (R, K)
    (any nonzero counts as 1): out = X Wr, row s the sum of the rows of Wr of
    its on-units in the order of _bin_acc, then op 0 / 1 / 2 as in _layer
    (same stream layout), or op 3: out += the sums (a rank-R update written row
    by row: no races).  Work items: _bin_split (the split never changes a result)."""
    R = X.shape[0]
    N = Wr.shape[1]
    nchunks, ncp, pw = _bin_split(R, N)
    nitems = nchunks * ncp
    if nitems > 1 and R * X.shape[1] * N >= PAR_MIN_WORK:
        _bin_layer_par(X, Wr, bias, key, ctr, first_block, out, probs, op, nitems, ncp, pw)
    else:
        for t in range(nitems):
            _bin_chunk(t, ncp, pw, X, Wr, bias, key, ctr, first_block, out, probs, op)


# Path rule (the same in both backends, decided from the data, never from
# timings): a layer with at least BIN_SAMPLE_ROWS rows whose first
# BIN_SAMPLE_ROWS rows are more than 40% on takes the tiled GEMM (a large GEMM
# beats the row sums above about that density); everything else the binary path.
BIN_SAMPLE_ROWS = 64


@njit(cache=True, error_model="numpy")
def _prefer_bin(X):
    R = X.shape[0]
    K = X.shape[1]
    if R < BIN_SAMPLE_ROWS:
        return True
    cnt = 0
    for s in range(BIN_SAMPLE_ROWS):
        for i in range(K):
            cnt += 1 if X[s, i] != 0 else 0
    return cnt * 10 <= BIN_SAMPLE_ROWS * K * 4


@njit(cache=True, error_model="numpy")
def _is_binary(x):
    """True when every element of the 2-d x is 0 or 1."""
    for s in range(x.shape[0]):
        for i in range(x.shape[1]):
            if x[s, i] != 0 and x[s, i] != 1:
                return False
    return True


@njit(cache=True, error_model="numpy")
def _transpose_rows(dst, src, c0):
    """dst[:, c0 + c] = src[c, :] (dst (m, >= c0 + rows of src))."""
    for c in range(src.shape[0]):
        for i in range(src.shape[1]):
            dst[i, c0 + c] = src[c, i]


@njit(cache=True, error_model="numpy")
def _transpose(W):
    """A C-contiguous copy of W^T (blocked)."""
    m = W.shape[0]
    n = W.shape[1]
    WT = np.empty((n, m), W.dtype)
    for i0 in range(0, m, 32):
        i1 = min(i0 + 32, m)
        for j0 in range(0, n, 32):
            j1 = min(j0 + 32, n)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    WT[j, i] = W[i, j]
    return WT


@njit(cache=True, error_model="numpy")
def _add_layer(acc, x):
    """acc += x (elementwise, same shapes)."""
    for s in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            acc[s, j] += x[s, j]


@njit(cache=True, error_model="numpy")
def _colsum(x, out):
    """out (float64) += column sums of x, rows in order."""
    for s in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[j] += x[s, j]


@njit(cache=True, error_model="numpy")
def _scale_layer(x, r):
    """x = x / r."""
    for s in prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[s, j] = np.float64(x[s, j]) / np.float64(r)


@njit(cache=True, error_model="numpy")
def _axpy_layer(y, alpha, x):
    """y += alpha * x (2-d, same shapes), alpha rounded to the dtype first."""
    al = np.empty(1, y.dtype)
    al[0] = alpha
    for s in prange(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] += al[0] * x[s, j]


@njit(cache=True, error_model="numpy")
def _mul_layer(y, f):
    """y *= f (2-d), f rounded to the dtype first."""
    al = np.empty(1, y.dtype)
    al[0] = f
    for s in prange(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] = y[s, j] * al[0]


@njit(cache=True, error_model="numpy")
def _scaled_copy(dst, src, f):
    """dst = f * src (2-d), f rounded to the dtype first."""
    al = np.empty(1, dst.dtype)
    al[0] = f
    for s in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[s, j] = al[0] * src[s, j]


@njit(cache=True, error_model="numpy")
def _add_scaled_vec(y, sa, xa, sb, xb):
    """y[i] += (dtype)(sa * xa[i] + sb * xb[i])  (xa, xb float64)."""
    tmp = np.empty(y.shape[0], y.dtype)
    for i in range(y.shape[0]):
        tmp[i] = sa * xa[i] + sb * xb[i]
    for i in range(y.shape[0]):
        y[i] = y[i] + tmp[i]


# ---- public kernels ------------------------------------------------------------
@njit(cache=True, error_model="numpy", parallel=True)
def _energy_rows(v, h, vw, a, b, out):
    for s in prange(v.shape[0]):
        e = 0.0
        for i in range(v.shape[1]):
            e += np.float64(a[i]) * np.float64(v[s, i])
        for j in range(h.shape[1]):
            e += (np.float64(b[j]) + np.float64(vw[s, j])) * np.float64(h[s, j])
        out[s] = -e


@njit(cache=True, error_model="numpy")
def energy(v, h, W, a, b, out):
    """out[s] = -a.v_s - b.h_s - v_s W h_s  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _layer(v, W, False, b, _NOKEY, _NOKEY, 0, vw, _noprobs(W), 0)
    _energy_rows(v, h, vw, a, b, out)


@njit(cache=True, error_model="numpy", parallel=True)
def _free_energy_rows(v, vw, a, b, out):
    is32 = v.itemsize == 4
    for s in prange(v.shape[0]):
        e = 0.0
        for i in range(v.shape[1]):
            e += np.float64(a[i]) * np.float64(v[s, i])
        for j in range(vw.shape[1]):
            if is32:
                e += np.float64(softplus32(vw[s, j] + b[j]))
            else:
                e += softplus64(vw[s, j] + b[j])
        out[s] = -e


@njit(cache=True, error_model="numpy")
def free_energy(v, W, a, b, out):
    """out[s] = -a.v_s - sum_j softplus(b_j + (v_s W)_j)  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _layer(v, W, False, b, _NOKEY, _NOKEY, 0, vw, _noprobs(W), 0)
    _free_energy_rows(v, vw, a, b, out)


@njit(cache=True, error_model="numpy")
def _noprobs(W):
    return np.empty((0, 0), W.dtype)


_NOKEY = np.zeros(4, np.uint64)


@njit(cache=True, error_model="numpy")
def hidden_probs(v, W, b, out):
    """out = sigmoid(v W + b)."""
    _layer(v, W, False, b, _NOKEY, _NOKEY, 0, out, _noprobs(W), 1)


@njit(cache=True, error_model="numpy")
def visible_probs(h, W, a, out):
    """out = sigmoid(h W^T + a)."""
    _layer(h, W, True, a, _NOKEY, _NOKEY, 0, out, _noprobs(W), 1)


@njit(cache=True, error_model="numpy")
def sample_hidden(v, W, b, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(v W + b)); row s from stream s, block 0.
    probs: (rows, n) to receive the probabilities, or a (0, 0) array."""
    _layer(v, W, False, b, key, ctr, 0, out, probs, 2)


@njit(cache=True, error_model="numpy")
def sample_visible(h, W, a, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(h W^T + a)); row s from stream s, block 0."""
    _layer(h, W, True, a, key, ctr, 0, out, probs, 2)


@njit(cache=True, error_model="numpy")
def binary_layer(X, Wr, bias, key, ctr, first_block, out, probs, op):
    """The binary-state layer kernel (for tests and direct callers): X (R, K)
    0/1 (nonzero = 1), Wr (K, N); out (R, N) = X Wr with row s summed over the
    rows of its on-units in the order of ``_bin_acc``, then op 0: nothing;
    1: sigmoid(out + bias); 2: Bernoulli(sigmoid(out + bias)), row s from stream
    s of ctr starting at block first_block; probs (R, N) or (0, 0); 3: out +=
    X Wr (out is read: the scatter-add form of a gradient X^T P with X = V^T)."""
    _bin_layer(X, Wr, bias, key, ctr, first_block, out, probs, op)


@njit(cache=True, error_model="numpy")
def gibbs_chains(v, W, a, b, k, key, ctr, h, mean_last, mean_v, mean_h):
    """k block-Gibbs sweeps v -> h -> v of every chain (row of v), in place.

    v (C, m): start states in, final states out; h (C, n): out, the hidden
    states drawn in the last sweep.  Sweep t (0-based) of chain s draws its
    hidden layer from blocks t*(bh+bv) .. and its visible layer from blocks
    t*(bh+bv)+bh .. of stream s (bh, bv = blocks_per_layer of n, m).
    mean_last > 0: mean_v / mean_h (C, m) / (C, n) receive the mean of the
    visible / hidden states of the last mean_last sweeps (else 0-row arrays).
    """
    m = v.shape[1]
    n = h.shape[1]
    bh = blocks_per_layer(n, v.itemsize)
    bv = blocks_per_layer(m, v.itemsize)
    noprobs = _noprobs(W)
    if mean_last > 0:
        mean_v[:, :] = 0.0
        mean_h[:, :] = 0.0
    WT = _transpose(W)
    for t in range(k):
        blk = t * (bh + bv)
        if _prefer_bin(v):
            _bin_layer(v, W, b, key, ctr, blk, h, noprobs, 2)
        else:
            _layer(v, W, False, b, key, ctr, blk, h, noprobs, 2)
        if _prefer_bin(h):
            _bin_layer(h, WT, a, key, ctr, blk + bh, v, noprobs, 2)
        else:
            _layer(h, W, True, a, key, ctr, blk + bh, v, noprobs, 2)
        if mean_last > 0 and t >= k - mean_last:
            _add_layer(mean_v, v)
            _add_layer(mean_h, h)
    if mean_last > 0:
        _scale_layer(mean_v, mean_last)
        _scale_layer(mean_h, mean_last)


@njit(cache=True, error_model="numpy")
def _hid_probs(V, W, b, key, ctr, H, noprobs):
    """H = sigmoid(V W + b) for 0/1 states V (path rule: _prefer_bin)."""
    if _prefer_bin(V):
        _bin_layer(V, W, b, key, ctr, 0, H, noprobs, 1)
    else:
        _layer(V, W, False, b, key, ctr, 0, H, noprobs, 1)


@njit(cache=True, error_model="numpy")
def cd_step(vdata, W, a, b, k, r, mode, V, H, key, ctr, gW, ga, gb,
            scale_pos, scale_neg, decay):
    """One CD-k / PCD minibatch: sample the negative chains, then
    gW = decay * gW + scale_pos * vdata^T P(vdata) + scale_neg * sum_t V_t^T P(V_t)
    and ga, gb likewise (no decay on the biases), P(v) = sigmoid(v W + b).

    Every read of W, a, b happens before the first write of gW, ga, gb, so
    gW, ga, gb may be W, a, b themselves (in-place update).

    mode 0 (CD): V (B, m) is overwritten with vdata and evolved; H (B, n) scratch.
    mode 1 (PCD, visible chains): V (C, m) chains in/out, H (C, n) scratch.
    mode 2 (PCD, hidden chains, scikit-learn's scheme): H (C, n) hidden
        chains in/out, V (C, m) out (last visible states).
    T = k + r - 1 sweeps; the statistics are taken at the visible states
    v_k .. v_{k+r-1} (v_t after t sweeps) and their hidden probabilities.
    Mode 0/1 sweep t (1-based): h ~ P(v_{t-1}) from blocks (t-1)*(bh+bv)..,
    v_t ~ p(v|h) from blocks (t-1)*(bh+bv)+bh.. of stream s.  Mode 2 sweep t:
    v_t ~ p(v|h) from blocks (t-1)*(bh+bv).., then h ~ P(v_t) from blocks
    (t-1)*(bh+bv)+bv.. (the last one after the statistics are taken).
    At return H holds P(v_T) in modes 0/1 and the new hidden chains in mode 2.
    """
    B = vdata.shape[0]
    m = vdata.shape[1]
    n = W.shape[1]
    dt = W.dtype
    bh = blocks_per_layer(n, W.itemsize)
    bv = blocks_per_layer(m, W.itemsize)
    T = k + r - 1
    C = V.shape[0]
    noprobs = _noprobs(W)
    # Binary states (the chains always, the data when they are 0/1) take the
    # binary path for the products v W and for the gradient's v^T p (a
    # scatter-add of rows of p into the rows of W of the on-units); h W^T and
    # grey data stay on the tiled GEMM.
    bin_data = _is_binary(vdata)
    ppos = np.empty((B, n), dt)
    if bin_data and _prefer_bin(vdata):
        _bin_layer(vdata, W, b, key, ctr, 0, ppos, noprobs, 1)
    else:
        _layer(vdata, W, False, b, key, ctr, 0, ppos, noprobs, 1)
    if r > 1:
        acc = np.zeros((m, n), dt)
        VT = np.empty((m, C), dt)
    else:
        acc = np.zeros((0, 0), dt)
        VT = np.empty((0, 0), dt)
    sv = np.zeros(m, np.float64)
    sp = np.zeros(n, np.float64)
    if mode == 0:
        V[:, :] = vdata
        H[:, :] = ppos
    elif mode == 1:
        _hid_probs(V, W, b, key, ctr, H, noprobs)
    for t in range(1, T + 1):
        blk = (t - 1) * (bh + bv)
        if mode != 2:
            _bern_layer(H, key, ctr, blk)
            _layer(H, W, True, a, key, ctr, blk + bh, V, noprobs, 2)
        else:
            _layer(H, W, True, a, key, ctr, blk, V, noprobs, 2)
        _hid_probs(V, W, b, key, ctr, H, noprobs)
        if r > 1 and t >= k:
            _transpose_rows(VT, V, 0)
            _bin_layer(VT, H, b, key, ctr, 0, acc, noprobs, 3)
            _colsum(V, sv)
            _colsum(H, sp)
        if mode == 2 and t < T:
            _bern_layer(H, key, ctr, blk + bv)
    # ---- accumulate (W, a, b are not read after this point) ----
    if decay != 1.0:
        _mul_layer(gW, decay)
    if r == 1:
        # gW += [vdata; V]^T [sp*P(vdata); sn*P(V)]: one pass over gW
        Q = np.empty((B + C, n), dt)
        _scaled_copy(Q[:B], ppos, scale_pos)
        _scaled_copy(Q[B:], H, scale_neg)
        if bin_data:
            ST = np.empty((m, B + C), dt)
            _transpose_rows(ST, vdata, 0)
            _transpose_rows(ST, V, B)
            _bin_layer(ST, Q, b, key, ctr, 0, gW, noprobs, 3)
        else:
            S = np.empty((B + C, m), dt)
            S[:B, :] = vdata
            S[B:, :] = V
            _gemm_tn(1.0, S, Q, 1.0, gW)
        _colsum(V, sv)
        _colsum(H, sp)
    else:
        _gemm_tn(scale_pos, vdata, ppos, 1.0, gW)
        _axpy_layer(gW, scale_neg, acc)
    pv = np.zeros(m, np.float64)
    ph = np.zeros(n, np.float64)
    _colsum(vdata, pv)
    _colsum(ppos, ph)
    _add_scaled_vec(ga, scale_pos, pv, scale_neg, sv)
    _add_scaled_vec(gb, scale_pos, ph, scale_neg, sp)
    if mode == 2:
        _bern_layer(H, key, ctr, (T - 1) * (bh + bv) + bv)


# single-site Gibbs, AIS, partition functions (kept in their own file; part of this family module)
from ._rbm_mcmc import *  # noqa: E402,F401,F403

# parallel tempering (its own file; part of this family module)
from ._rbm_pt import *  # noqa: E402,F401,F403
from ._rbm_pt import __all__ as _pt_all  # noqa: E402

__all__ = list(__all__) + [x for x in _pt_all if x not in __all__]
