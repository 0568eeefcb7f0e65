"""CD-k / PCD minibatch step (Numba backend; part of the family module ``rbm``).

``cd_step``: the negative chains, the data and model statistics and the
in-place gradient accumulation of one minibatch (see
``dlkernels.engine.numba.rbm`` for the contract).  No validation here.
"""
import numpy as np
from numba import njit, prange

from ._flags import CALLS_PARALLEL
from ._blas import borrowed, carve, copy_rows, gemm_tiles, scalar_as
from ._interrupt import stopped
from ._rbm_layers import (DRAWS_PER_BLOCK, OP_ACCUMULATE, OP_SAMPLE, OP_SIGMOID, PAR_MIN_WORK,
                          TILE_C, TILE_R, _bern_row_ip, _bin_layer, _layer, _noprobs, _prefer_bin,
                          blocks_per_layer)
from .rng import stream_ctr

__all__ = ["cd_step", "cd_minibatches", "MODE_CD", "MODE_PCD", "MODE_PCD_HIDDEN"]

# ``mode`` of cd_step: where the negative chains come from.
MODE_CD = 0          # CD-k: one chain per data row, started at the data
MODE_PCD = 1         # PCD: persistent visible chains
MODE_PCD_HIDDEN = 2  # PCD with persistent hidden chains (scikit-learn's scheme)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _gemm_tn(alpha, A, B, beta, C):
    """C (m, n) = alpha A^T B + beta C for A (K, m), B (K, n); parallel over
    TILE_R x TILE_C tiles of C (single-threaded gemm each)."""
    m = C.shape[0]
    n = C.shape[1]
    K = A.shape[0]
    gemm_tiles(np.bool_(True), np.bool_(False), m, n, K, np.float64(alpha), A, m, B, n,
               np.float64(beta), C, n, TILE_R, TILE_C, m * n * K >= PAR_MIN_WORK)


@njit(cache=True, error_model="numpy")
def _bern_layer_row(p, s, key, ctr, first_block, ubuf):
    n = p.shape[1]
    per = DRAWS_PER_BLOCK
    c0, c1, c2, c3 = stream_ctr(ctr, s)
    for j0 in range(0, n, TILE_C):
        j1 = min(j0 + TILE_C, n)
        _bern_row_ip(p[s, j0:j1], key[0], key[1], c0, c1, c2, c3,
                     first_block + j0 // per, ubuf)


@njit(cache=True, error_model="numpy", parallel=True)
def _bern_layer_par(p, key, ctr, first_block):
    for s in prange(p.shape[0]):
        ubuf = np.empty(TILE_C, p.dtype)
        _bern_layer_row(p, np.int64(s), key, ctr, first_block, ubuf)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _bern_layer(p, key, ctr, first_block):
    """p = Bernoulli(p) in place, row s from stream s (blocks from first_block)."""
    if p.shape[0] > 1 and p.size * 16 >= PAR_MIN_WORK:
        _bern_layer_par(p, key, ctr, first_block)
    else:
        ubuf = np.empty(TILE_C, p.dtype)
        for s in range(p.shape[0]):
            _bern_layer_row(p, np.int64(s), key, ctr, first_block, ubuf)


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
def _colsum(x, out):
    """out (float64) += column sums of x, rows in order."""
    for s in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[j] += x[s, j]


@njit(cache=True, error_model="numpy")
def _scaled(dst, f, src, add):
    """dst = f * src, or with ``add`` dst += f * src (2-d, same shapes; dst
    may be src), f rounded to the dtype first."""
    al = scalar_as(dst, f)
    for s in range(dst.shape[0]):
        if add:
            for j in range(dst.shape[1]):
                dst[s, j] += al * src[s, j]
        else:
            for j in range(dst.shape[1]):
                dst[s, j] = al * src[s, j]


@njit(cache=True, error_model="numpy")
def _add_scaled_vec(y, sa, xa, sb, xb):
    """y[i] += (dtype)(sa * xa[i] + sb * xb[i])  (xa, xb float64)."""
    for i in range(y.shape[0]):
        y[i] = y[i] + scalar_as(y, sa * xa[i] + sb * xb[i])


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _hid_probs(V, W, b, key, ctr, H, noprobs, bin_max):
    """H = sigmoid(V W + b) for 0/1 states V (path rule: _prefer_bin)."""
    if _prefer_bin(V, bin_max):
        _bin_layer(V, W, b, key, ctr, np.int64(0), H, noprobs, np.int64(OP_SIGMOID))
    else:
        _layer(V, W, np.bool_(False), b, key, ctr, np.int64(0), H, noprobs, np.int64(OP_SIGMOID))


@njit(cache=True, error_model="numpy")
def _cd_scratch(B, C, m, n, r):
    """Elements of W's dtype of _cd_core's scratch for B data rows, C chains."""
    return B * n + (m * n + m * C if r > 1 else 0) + (B + C) * m + (B + C) * n


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL, nogil=True)
def _cd_core(vdata, W, a, b, k, r, mode, V, H, key, ctr, gW, ga, gb, scale_pos, scale_neg,
             decay, bin_max, stop, wsd, ws64):
    """cd_step with its scratch in wsd (W's dtype, >= _cd_scratch(B, C, m, n, r)
    elements) and ws64 (float64, 2 (m + n)): 0 done, 1 stopped before the update."""
    B = vdata.shape[0]
    m = vdata.shape[1]
    n = W.shape[1]
    bh = blocks_per_layer(n)
    bv = blocks_per_layer(m)
    T = k + r - 1
    C = V.shape[0]
    noprobs = _noprobs(W)
    # Binary states (the chains always, the data when they are 0/1) take the
    # binary path for the products v W and for the gradient's v^T p (a
    # scatter-add of rows of p into the rows of W of the on-units); h W^T and
    # grey data stay on the tiled GEMM.
    bin_data = _is_binary(vdata)
    # the scratch, carved from the caller's two flat buffers as in the Cython
    # twin's _cd_core: ppos (B, n), acc (m, n) and VT (m, C) when r > 1, S (B+C, m)
    # (or ST (m, B+C)), Q (B+C, n) of W's dtype; sv, sp, pv, ph in float64
    n_acc = m * n if r > 1 else 0
    n_vt = m * C if r > 1 else 0
    ppos = carve(wsd, 0, B, n)
    o = B * n
    for i in range(o, o + n_acc):
        wsd[i] = 0.0
    acc = carve(wsd, o, m if r > 1 else 0, n if r > 1 else 0)
    o += n_acc
    VT = carve(wsd, o, m if r > 1 else 0, C if r > 1 else 0)
    o += n_vt
    o_s = o
    o += (B + C) * m
    Q = carve(wsd, o, B + C, n)
    for i in range(2 * (m + n)):
        ws64[i] = 0.0
    sv = ws64[:m]
    sp = ws64[m:m + n]
    pv = ws64[m + n:2 * m + n]
    ph = ws64[2 * m + n:]
    if bin_data and _prefer_bin(vdata, bin_max):
        _bin_layer(vdata, W, b, key, ctr, np.int64(0), ppos, noprobs, np.int64(OP_SIGMOID))
    else:
        _layer(vdata, W, np.bool_(False), b, key, ctr, np.int64(0), ppos, noprobs, np.int64(OP_SIGMOID))
    if mode == MODE_CD:
        copy_rows(V, 0, vdata, 0, B)
        copy_rows(H, 0, ppos, 0, B)
    elif mode == MODE_PCD:
        _hid_probs(V, W, b, key, ctr, H, noprobs, bin_max)
    for t in range(1, T + 1):
        if stopped(stop):
            return 1
        blk = (t - 1) * (bh + bv)
        if mode != MODE_PCD_HIDDEN:
            _bern_layer(H, key, ctr, blk)
            _layer(H, W, np.bool_(True), a, key, ctr, blk + bh, V, noprobs, np.int64(OP_SAMPLE))
        else:
            _layer(H, W, np.bool_(True), a, key, ctr, blk, V, noprobs, np.int64(OP_SAMPLE))
        _hid_probs(V, W, b, key, ctr, H, noprobs, bin_max)
        if r > 1 and t >= k:
            _transpose_rows(VT, V, 0)
            _bin_layer(VT, H, b, key, ctr, np.int64(0), acc, noprobs, np.int64(OP_ACCUMULATE))
            _colsum(V, sv)
            _colsum(H, sp)
        if mode == MODE_PCD_HIDDEN and t < T:
            _bern_layer(H, key, ctr, blk + bv)
    # ---- accumulate (W, a, b are not read after this point) ----
    if decay != 1.0:
        _scaled(gW, decay, gW, np.bool_(False))   # gW *= decay
    if r == 1:
        # gW += [vdata; V]^T [sp*P(vdata); sn*P(V)]: one pass over gW
        _scaled(Q[:B], scale_pos, ppos, np.bool_(False))
        _scaled(Q[B:], scale_neg, H, np.bool_(False))
        if bin_data:
            ST = carve(wsd, o_s, m, B + C)
            _transpose_rows(ST, vdata, 0)
            _transpose_rows(ST, V, B)
            _bin_layer(ST, Q, b, key, ctr, np.int64(0), gW, noprobs, np.int64(OP_ACCUMULATE))
        else:
            S = carve(wsd, o_s, B + C, m)
            copy_rows(S, 0, vdata, 0, B)
            copy_rows(S, B, V, 0, C)
            _gemm_tn(1.0, S, Q, 1.0, gW)
        _colsum(V, sv)
        _colsum(H, sp)
    else:
        _gemm_tn(scale_pos, vdata, ppos, 1.0, gW)
        _scaled(gW, scale_neg, acc, np.bool_(True))
    _colsum(vdata, pv)
    _colsum(ppos, ph)
    _add_scaled_vec(ga, scale_pos, pv, scale_neg, sv)
    _add_scaled_vec(gb, scale_pos, ph, scale_neg, sp)
    if mode == MODE_PCD_HIDDEN:
        _bern_layer(H, key, ctr, (T - 1) * (bh + bv) + bv)
    return 0


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL, nogil=True)   # nogil: interruptible from a worker thread
def cd_step(vdata, W, a, b, k, r, mode, V, H, key, ctr, gW, ga, gb,
            scale_pos, scale_neg, decay, bin_max, stop):
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
    bin_max (BIN_CLASSES,) int64: the path rule's table (``_prefer_bin``) for
    the products v W of the data and of the chains.
    stop: a 1-element int64 flag, checked before every sweep; when set
    the kernel returns before writing gW, ga, gb (V, H may have advanced).
    """
    B = vdata.shape[0]
    m = vdata.shape[1]
    n = W.shape[1]
    wsd = np.empty(_cd_scratch(B, V.shape[0], m, n, r), W.dtype)
    ws64 = np.empty(2 * (m + n), np.float64)
    _cd_core(vdata, W, a, b, k, r, mode, V, H, key, ctr, gW, ga, gb, scale_pos, scale_neg,
             decay, bin_max, stop, wsd, ws64)


@njit(cache=True, error_model="numpy")
def _alive(*arrays):
    """0: a use of its arguments (keeps the owners of borrowed views live up to here)."""
    return 0


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL, nogil=True)
def cd_minibatches(X, order, first, count, batch_size, W, a, b, k, r, mode, V, H, key, ctrs,
                   lr, decay, f, wd, vW, va, vb, bin_max, stop):
    """Minibatches ``first .. first + count - 1`` of an epoch of training, in
    one call: the loop that ``BernoulliRBM.fit`` otherwise runs in Python,
    one ``cd_step`` per minibatch, with the same arithmetic (bit-identical).

    X (N, m): the data (any values); order (N,) int64: the epoch's order of
    the rows (empty: rows in order); minibatch i holds the rows
    order[i*batch_size : min((i+1)*batch_size, N)], gathered in order.
    W, a, b: updated in place.  mode MODE_CD: chains start at the minibatch
    (V, H: scratch of >= batch_size rows); MODE_PCD_HIDDEN / MODE_PCD: the
    persistent chains V (C, m), H (C, n) as in ``cd_step``.  ctrs (count, 4)
    uint64: the stream counter of each minibatch.  Scales: lr / B for the
    data term (B the minibatch's rows), -lr / (r C) (persistent; C chains)
    or -lr / (r B) (CD) for the model term.
    Without momentum (vW empty): cd_step updates W, a, b in place with
    ``decay`` (= 1 - lr * weight_decay).  With momentum: f (1,) the momentum
    in W's dtype; vW, va, vb the velocity; wd (1,) lr * weight_decay in W's
    dtype, or empty when weight_decay is 0; per minibatch vW = f vW (- wd W),
    va = f va, vb = f vb, then cd_step adds the gradient to the velocity
    (decay 1), then W += vW, a += va, b += vb.
    bin_max: the path rule's table, as in ``cd_step``.
    stop: a 1-element int64 flag checked before each minibatch.  Returns
    the number of minibatches done.
    """
    N, m = X.shape
    n = W.shape[1]
    dt = W.dtype
    rows = min(batch_size, N)   # no minibatch has more rows than the data
    vbuf = np.empty((rows, m), dt)
    cd_mode = mode == MODE_CD
    if cd_mode:
        Vc = np.empty((rows, m), dt)
        Hc = np.empty((rows, n), dt)
    else:
        Vc = V
        Hc = H
    # _cd_core's scratch, once for every minibatch (at most `rows` data rows)
    wsd = np.empty(_cd_scratch(rows, rows if cd_mode else Vc.shape[0], m, n, r), dt)
    ws64 = np.empty(2 * (m + n), np.float64)
    never = np.zeros(1, np.int64)
    mom = vW.shape[0] > 0
    # Ownerless views (_blas.borrowed) of the arguments and of the buffers
    # above: the views sliced from them per minibatch, here, in _cd_core and
    # in its callees, then skip the atomic reference-count updates that Numba
    # makes per slice (about a hundred a minibatch).  The arguments outlive
    # the call; the buffers' owners are used after the loop (_alive), so that
    # Numba releases them only then.
    X, order, W, a, b, ctrs = (borrowed(X), borrowed(order), borrowed(W), borrowed(a),
                               borrowed(b), borrowed(ctrs))
    vW, va, vb = borrowed(vW), borrowed(va), borrowed(vb)
    vbuf_b, Vcb, Hcb, wsd_b, ws64_b = (borrowed(vbuf), borrowed(Vc), borrowed(Hc), borrowed(wsd),
                                       borrowed(ws64))
    for i in range(first, first + count):
        if stopped(stop):
            return i - first + _alive(vbuf, Vc, Hc, wsd, ws64)
        s0 = i * batch_size
        s1 = min(s0 + batch_size, N)
        B = s1 - s0
        for q in range(B):
            row = order[s0 + q] if order.shape[0] > 0 else s0 + q
            for j in range(m):
                vbuf_b[q, j] = X[row, j]
        v = vbuf_b[:B]
        if cd_mode:
            Vs = Vcb[:B]
            Hs = Hcb[:B]
            s_neg = -lr / (r * B)
        else:
            Vs = Vcb[:Vcb.shape[0]]   # the same array type as the CD branch's slices
            Hs = Hcb[:Hcb.shape[0]]
            s_neg = -lr / (r * Vcb.shape[0])
        ctr = ctrs[i - first]
        if not mom:
            _cd_core(v, W, a, b, k, r, mode, Vs, Hs, key, ctr, W, a, b, lr / B, s_neg, decay,
                     bin_max, never, wsd_b, ws64_b)
        else:
            fm = f[0]
            for p in range(m):
                for j in range(n):
                    vW[p, j] = vW[p, j] * fm
            if wd.shape[0] > 0:
                w0 = wd[0]
                for p in range(m):
                    for j in range(n):
                        vW[p, j] = vW[p, j] - w0 * W[p, j]
            for p in range(m):
                va[p] = va[p] * fm
            for j in range(n):
                vb[j] = vb[j] * fm
            _cd_core(v, W, a, b, k, r, mode, Vs, Hs, key, ctr, vW, va, vb, lr / B, s_neg, 1.0,
                     bin_max, never, wsd_b, ws64_b)
            for p in range(m):
                for j in range(n):
                    W[p, j] = W[p, j] + vW[p, j]
            for p in range(m):
                a[p] = a[p] + va[p]
            for j in range(n):
                b[j] = b[j] + vb[j]
    return count + _alive(vbuf, Vc, Hc, wsd, ws64)
