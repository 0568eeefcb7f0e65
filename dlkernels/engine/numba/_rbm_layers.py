"""RBM layers (Numba backend; part of the family module ``rbm``).

Tiled GEMM layers (``_layer``), binary-state layers (``_bin_layer``), the
fused bias + sigmoid + Bernoulli row passes, and the public one-layer
kernels (energies, conditionals, samplers, ``binary_layer``).  The contract
(shapes, stream layout, path rule, parity with ``rbm.pyx``) is in the
docstring of ``dlkernels.engine.numba.rbm``.  No validation here.
"""
import numpy as np
from numba import njit, prange

from ._flags import CALLS_PARALLEL, NoAliasCompiler
from ._blas import borrowed, gemm_at
from ._fastmath import sigmoid, softplus
from .rng import fill_f32_from, stream_ctr

__all__ = ["energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
           "sample_visible", "blocks_per_layer", "DRAWS_PER_BLOCK", "binary_layer", "TILE_R",
           "TILE_C", "PAR_MIN_WORK", "BIN_CHUNK", "BIN_SAMPLE_ROWS", "BIN_CLASSES",
           "BIN_DEFAULT_SMALL", "BIN_DEFAULT_LARGE", "bin_class", "OP_LINEAR", "OP_SIGMOID",
           "OP_SAMPLE", "OP_ACCUMULATE"]

# ``op`` of the layer kernels (``_layer``, ``_bin_layer``, ``binary_layer``):
# what happens to out = X W after the product.
OP_LINEAR = 0      # nothing: out = X W
OP_SIGMOID = 1     # out = sigmoid(X W + bias)
OP_SAMPLE = 2      # out = Bernoulli(sigmoid(X W + bias)) (probs optional)
OP_ACCUMULATE = 3  # out += X W (binary layers only: the scatter-add of a gradient)

# Tile of the output that one work item computes (a single-threaded gemm
# followed by the fused element-wise pass).  Fixed sizes, shared with the
# Cython backend: the results do not depend on the thread count.  TILE_C is a
# multiple of 8, so every column tile starts on a Philox block of the row.
TILE_R = 256
TILE_C = 128


#: uniforms per Philox block in a layer draw, in both dtypes: one 32-bit
#: half-word per Bernoulli draw (low half first), so that a float32 and a
#: float64 model of one seed compare the same uniform with their probability
#: (issue 10; scikit-learn checks that its fits agree across dtypes)
DRAWS_PER_BLOCK = 8


@njit(cache=True, error_model="numpy")
def blocks_per_layer(n, itemsize=None):
    """Philox blocks one layer draw of n units consumes (per row): ceil(n / 8)
    in both dtypes (``itemsize`` is accepted and ignored: the count no longer
    depends on the dtype)."""
    return (n + DRAWS_PER_BLOCK - 1) // DRAWS_PER_BLOCK


# ---- row kernels (serial; called inside the prange loops) --------------------
@njit(cache=True, error_model="numpy")
def _field(x, Wr, bias, f):
    """f = bias + the rows Wr[i] whose unit x[i] is on, added one row at a
    time in index order (the binary product of one state; single-site Gibbs
    and parallel tempering build their fields with it)."""
    for j in range(f.shape[0]):
        f[j] = bias[j]
    for i in range(x.shape[0]):
        if x[i] != 0:
            for j in range(f.shape[0]):
                f[j] += Wr[i, j]


@njit(cache=True, error_model="numpy")
def _bern_row(p, out, k0, k1, c0, c1, c2, c3, first_block, ubuf):
    """out[i] = 1 if u_i < p[i] else 0, u_i = uniform i of the stream (key, c)
    counted from block ``first_block`` (the float32 uniform of a 32-bit
    half-word, low half first, held exactly in ubuf's dtype); p and out
    distinct; ubuf scratch."""
    n = p.shape[0]
    fill_f32_from(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)
    for j in range(n):
        out[j] = 1.0 if ubuf[j] < p[j] else 0.0


@njit(cache=True, error_model="numpy")
def _bern_row_ip(x, k0, k1, c0, c1, c2, c3, first_block, ubuf):
    """In-place _bern_row: x[i] = 1 if u_i < x[i] else 0 (a separate loop so
    that it vectorizes: an exactly aliased pair defeats the overlap check)."""
    n = x.shape[0]
    fill_f32_from(ubuf, n, k0, k1, c0, c1, c2, c3, first_block)
    for j in range(n):
        x[j] = 1.0 if ubuf[j] < x[j] else 0.0


@njit(cache=True, error_model="numpy")
def _sigmoid_row(x, bias, out):
    """out = sigmoid(x + bias) (out distinct from x)."""
    for j in range(x.shape[0]):
        out[j] = sigmoid(x[j] + bias[j])


@njit(cache=True, error_model="numpy")
def _sigmoid_row_ip(x, bias):
    """x = sigmoid(x + bias), in place."""
    for j in range(x.shape[0]):
        x[j] = sigmoid(x[j] + bias[j])


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
    per = DRAWS_PER_BLOCK
    tr = t // ntc
    tc = t - tr * ntc
    r0 = tr * TILE_R
    r1 = min(r0 + TILE_R, R)
    c0 = tc * tw
    c1 = min(c0 + tw, N)
    offb = c0 * nw if transw else c0
    gemm_at(np.bool_(False), transw, r1 - r0, c1 - c0, K, 1.0, X, r0 * K, K, W, offb, nw, 0.0,
             out, r0 * N + c0, N)
    if op == OP_SIGMOID:
        for s in range(r0, r1):
            _sigmoid_row_ip(out[s, c0:c1], bias[c0:c1])
    elif op == OP_SAMPLE:
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


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
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
        for t in prange(ntiles):
            tb = np.empty(TILE_C, out.dtype)
            _layer_tile(np.int64(t), ntc, tw, X, W, transw, bias, key, ctr, first_block, out,
                        probs, op, tb)
    else:
        ubuf = np.empty(TILE_C, out.dtype)
        for t in range(ntiles):
            _layer_tile(t, ntc, tw, X, W, transw, bias, key, ctr, first_block, out, probs, op,
                        ubuf)


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


@njit(cache=True, error_model="numpy", pipeline_class=NoAliasCompiler)
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
    # the remaining r < 8 rows: per element a[j] = ((a[j] + w0[j]) + w1[j]) + ...,
    # in at most three passes (4, 2, 1 rows): the same operations as one pass
    # per row, or the Cython twin's one pass for all r (three loop bodies
    # instead of seven: a third of the IR that every caller re-optimizes)
    if cnt - q >= 4:
        w0 = Wr[idx[q], c0:c1]
        w1 = Wr[idx[q + 1], c0:c1]
        w2 = Wr[idx[q + 2], c0:c1]
        w3 = Wr[idx[q + 3], c0:c1]
        for j in range(N):
            a[j] = (((a[j] + w0[j]) + w1[j]) + w2[j]) + w3[j]
        q += 4
    if cnt - q >= 2:
        w0 = Wr[idx[q], c0:c1]
        w1 = Wr[idx[q + 1], c0:c1]
        for j in range(N):
            a[j] = (a[j] + w0[j]) + w1[j]
        q += 2
    if cnt - q >= 1:
        w0 = Wr[idx[q], c0:c1]
        for j in range(N):
            a[j] = a[j] + w0[j]


@njit(cache=True, error_model="numpy")
def _bin_row(X, s, Wr, bias, key, ctr, first_block, out, probs, op, idx, acc, ubuf, c0, c1):
    """Columns c0..c1 (c0 a multiple of TILE_C) of row s of _bin_layer (idx: K
    ints, acc: N floats, ubuf: TILE_C floats)."""
    K = X.shape[1]
    cnt = np.int64(0)   # not a literal 0: a literal would compile _bin_acc twice
    for i in range(K):
        idx[cnt] = i
        cnt += 1 if X[s, i] != 0 else 0
    _bin_acc(Wr, idx, cnt, acc, c0, c1)
    row = out[s]
    if op == OP_LINEAR or op == OP_ACCUMULATE:
        rw = row[c0:c1]
        a = acc[c0:c1]
        if op == OP_LINEAR:
            for j in range(c1 - c0):
                rw[j] = a[j]
        else:
            for j in range(c1 - c0):
                rw[j] += a[j]
        return
    if op == OP_SIGMOID:
        _sigmoid_row(acc[c0:c1], bias[c0:c1], row[c0:c1])
        return
    per = DRAWS_PER_BLOCK
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
    # the arguments' views once (their owner is the caller); the scratch is
    # borrowed at the call, so that its owner stays live through the loop
    Xb, Wb, bb, ob, pb = borrowed(X), borrowed(Wr), borrowed(bias), borrowed(out), borrowed(probs)
    for s in range(g * BIN_CHUNK, min(g * BIN_CHUNK + BIN_CHUNK, R)):
        _bin_row(Xb, s, Wb, bb, key, ctr, first_block, ob, pb, op, borrowed(idx),
                 borrowed(acc), borrowed(ubuf), c0, c1)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
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
        for t in prange(nitems):
            _bin_chunk(np.int64(t), ncp, pw, X, Wr, bias, key, ctr, first_block, out, probs, op)
    else:
        for t in range(nitems):
            _bin_chunk(t, ncp, pw, X, Wr, bias, key, ctr, first_block, out, probs, op)


# Path rule (the same in both backends, decided from the data and a table the
# caller passes, never from timings inside a kernel): a layer whose input X
# (R, K) has row class c = floor(log2(R)) (capped at BIN_CLASSES - 1) takes
# the binary path when its first min(R, BIN_SAMPLE_ROWS) rows are at most
# bin_max[c] per mille on, else the tiled GEMM.  The table is the caller's
# (``dlkernels.rbm.path_thresholds``: measured on the machine, or the default
# BIN_DEFAULT_SMALL below row class 6 -- fewer than 64 rows: always binary --
# and BIN_DEFAULT_LARGE from there on, the rule this family had before the
# table existed).  The choice changes rounding only; the two backends choose
# alike for the same table.
BIN_SAMPLE_ROWS = 64
BIN_CLASSES = 12          # row classes 0 .. 11: R < 2, 2 <= R < 4, ..., R >= 2048
BIN_DEFAULT_SMALL = 1000  # per mille: classes 0 .. 5 (R < 64) always binary
BIN_DEFAULT_LARGE = 400   # per mille: classes 6 .. 11 binary up to 40% on


@njit(cache=True, error_model="numpy")
def bin_class(R):
    """The row class of a layer of R rows: floor(log2(R)) in 0 .. BIN_CLASSES - 1."""
    c = 0
    while c < BIN_CLASSES - 1 and (R >> (c + 1)) > 0:
        c += 1
    return c


@njit(cache=True, error_model="numpy")
def _prefer_bin(X, bin_max):
    R = X.shape[0]
    K = X.shape[1]
    lim = bin_max[bin_class(R)]
    if lim >= 1000:   # any density (the count cannot exceed it): no pass over X
        return True
    S = min(R, BIN_SAMPLE_ROWS)
    cnt = 0
    for s in range(S):
        for i in range(K):
            cnt += 1 if X[s, i] != 0 else 0
    return cnt * 1000 <= S * K * lim


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


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def energy(v, h, W, a, b, out):
    """out[s] = -a.v_s - b.h_s - v_s W h_s  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _layer(v, W, np.bool_(False), b, _NOKEY, _NOKEY, np.int64(0), vw, _noprobs(W), np.int64(OP_LINEAR))
    _energy_rows(v, h, vw, a, b, out)


@njit(cache=True, error_model="numpy", parallel=True)
def _free_energy_rows(v, vw, a, b, out):
    for s in prange(v.shape[0]):
        e = 0.0
        for i in range(v.shape[1]):
            e += np.float64(a[i]) * np.float64(v[s, i])
        for j in range(vw.shape[1]):
            e += np.float64(softplus(vw[s, j] + b[j]))   # in W's dtype
        out[s] = -e


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def free_energy(v, W, a, b, out):
    """out[s] = -a.v_s - sum_j softplus(b_j + (v_s W)_j)  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _layer(v, W, np.bool_(False), b, _NOKEY, _NOKEY, np.int64(0), vw, _noprobs(W), np.int64(OP_LINEAR))
    _free_energy_rows(v, vw, a, b, out)


@njit(cache=True, error_model="numpy")
def _noprobs(W):
    return np.empty((0, 0), W.dtype)


_NOKEY = np.zeros(4, np.uint64)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def hidden_probs(v, W, b, out):
    """out = sigmoid(v W + b)."""
    _layer(v, W, np.bool_(False), b, _NOKEY, _NOKEY, np.int64(0), out, _noprobs(W), np.int64(OP_SIGMOID))


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def visible_probs(h, W, a, out):
    """out = sigmoid(h W^T + a)."""
    _layer(h, W, np.bool_(True), a, _NOKEY, _NOKEY, np.int64(0), out, _noprobs(W), np.int64(OP_SIGMOID))


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def sample_hidden(v, W, b, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(v W + b)); row s from stream s, block 0.
    probs: (rows, n) to receive the probabilities, or a (0, 0) array."""
    _layer(v, W, np.bool_(False), b, key, ctr, np.int64(0), out, probs, np.int64(OP_SAMPLE))


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def sample_visible(h, W, a, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(h W^T + a)); row s from stream s, block 0."""
    _layer(h, W, np.bool_(True), a, key, ctr, np.int64(0), out, probs, np.int64(OP_SAMPLE))


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def binary_layer(X, Wr, bias, key, ctr, first_block, out, probs, op):
    """The binary-state layer kernel (for tests and direct callers): X (R, K)
    0/1 (nonzero = 1), Wr (K, N); out (R, N) = X Wr with row s summed over the
    rows of its on-units in the order of ``_bin_acc``, then op 0: nothing;
    1: sigmoid(out + bias); 2: Bernoulli(sigmoid(out + bias)), row s from stream
    s of ctr starting at block first_block; probs (R, N) or (0, 0); 3: out +=
    X Wr (out is read: the scatter-add form of a gradient X^T P with X = V^T)."""
    _bin_layer(X, Wr, bias, key, ctr, first_block, out, probs, op)
