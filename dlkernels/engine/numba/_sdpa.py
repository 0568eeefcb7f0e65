"""Flash-style scaled dot-product attention (Numba backend); part of
``dlkernels.engine.numba.attention``.

Same names, arguments and semantics as the Cython twin (``_sdpa.pxi``); both
perform the same IEEE operations in the same order (GEMMs through the same
``?gemm`` calls, exp from ``_fastmath``), so they return bit-identical
results, for any thread count.  No validation here: that is
``dlkernels.bindings.sdpa``' job.

Arrays (C-contiguous, one float dtype except the index / mask arrays)::

    q (BH, L, E)     k (NKV, S, E)     v (NKV, S, Ev)     out (BH, L, Ev)   lse (BH, L)
    kv_idx int64 (BH,): the key/value head of each query head (broadcasting
                        and grouped-query attention without copies)
    kv_ptr int64 (NKV + 1,), kv_list int64 (BH,): the query heads of each kv
                        head, ascending (CSR; the backward's dK / dV loop)
    mask_mode 0 none, 1 bool (mask_b uint8: 0 = masked out), 2 additive (mask_f,
                        dtype; finite or -inf); entry (bh, i, j) of the mask
                        is at mask_off[bh] + i * mask_ld + j (mask_ld = 0 for a
                        mask broadcast over the queries)
    causal              key j takes part for query i only when j <= i
    key uint64[2], ctr uint64[4]: the call's Philox stream base (dropout)

Tiling (``sdpa_tiles``).  A work item is one query tile of TQ rows of one
batch-head.  It walks the key tiles of TK rows in order, with an online
softmax: S = scale Q K^T (one ``gemm``), mask, row max m, P = exp(S - m),
rescale of the running sum l and of the accumulator O by exp(m_old - m_new),
O += P V (one ``gemm``, beta = 1); at the end O / l and lse = m + log l.
TK is the largest power of two (16 .. 512) whose K and V tiles
(TK (E + Ev) elements) fit in 128 KiB.  TQ is 128 when the item's working
set -- its Q tile, scores and accumulator, TQ (E + TK + Ev) elements, beside
the K/V tile -- fits in 384 KiB, else 64: it then stays in any current x86-64
core's L2 (512 KiB on AMD Zen 2-4, 1-2 MiB on Intel since Skylake-SP), and
the products are 128-row GEMMs, which OpenBLAS runs about 10% faster than
64-row ones (measured: B=8 H=8 L=512 E=64 float32, 2 threads, AMD Zen 3).
The rule uses sizes only, never a measurement, so the results are the same
on every machine.  Nothing of size L x S is allocated: per item scratch is
TQ x TK.

Small tiles.  A query tile of at most SMALL_Q = 4 rows (decoding steps, the
last tile of an odd L) makes its products without BLAS, whose fixed cost per
call dominates there: each score is ``scale * dot(q_i, k_j)`` with the dot in
the fixed 8-lane order of the reductions below, ``dO V^T`` likewise (scale 1),
and ``O += P V`` adds ``p_ij v_j`` to the row in key order, skipping weights
equal to 0.  Forward and backward use the same rule, so the backward
recomputes exactly the forward's scores.

Reductions.  A row's maximum and its sum of exponentials run over 8 lanes
(lane t takes the entries c = t mod 8 of the full blocks of 8, the lanes are
combined as ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), the tail is
added in order): vectorizable, and the same order in both backends (the
Cython twin runs these passes as multiversioned C loops).  Other sums (D =
rowsum(dO * O)) run in index order.

Skipping.  With ``causal`` the keys j >= i1 (i1 = the tile's last query + 1)
are never visited; the keys below the tile's first query i0 come in key
tiles of TK as above, the diagonal block [i0, i1) in sub-tiles of DIAG = 64
keys (at most TK), each computed for the rows that reach it only (rows
i >= its first key), so that a 128-row tile does not compute the 128 x 128
triangle it masks out (the causal work is then 52% of the full L x S at
L = S = 2048 instead of 53%; 50% is the limit).  A key tile whose mask
entries are all masked out (bool False / float -inf) for the tile's rows is
skipped.  Skipped work contributes exactly nothing, so skipping never changes
the result.

Non-finite input.  The forward checks that query, key and value are finite
in the passes that already read them, so that the bindings need no separate
pass over K and V (a decoding step is bound by reading them): every work
item checks its query rows and its raw score tiles (before the mask; with Q
finite, a NaN or inf in key row j makes score column j NaN or +-inf) and its
accumulator at the end (a NaN or inf in value row j reaches it through a
nonzero weight, or as 0 x inf = NaN in the BLAS product; the small-tile loop
checks the rows it skips for a zero weight).  The owner of each key/value
head (its first query head's first query tile) also checks the K and V rows
it does not compute with (skipped tiles, the rows past a causal cut; all of
K when scale = 0), so every entry of Q, K and V is checked exactly once or
more.  An item that finds a NaN or inf sets its rows' lse to NaN.  Finite
input gives a NaN lse only when a score or the accumulator overflows to inf
(the bindings report both).  The backward checks nothing.

Fully masked rows (every key masked): output 0, lse -inf (PyTorch returns NaN
in some versions; dlkernels returns zeros).  Their gradients are 0.

Dropout (``dropout_p > 0``) is applied to the normalised weights: query row i
of batch-head bh owns stream ``bh * L + i`` of the call (counter
``ctr + (bh * L + i) * 2**128``); its uniform j (float32: the low then high
32-bit halves of the words; float64: one per word -- numpy's
``Generator(Philox).random``) keeps key j when ``u >= p`` (p in the dtype).
Key tiles start at multiples of 8 uniforms, i.e. on a Philox block, so a
tile's uniforms are read from block j0 / 8 (float32) or j0 / 4 (float64).
The draws depend on (bh, i, j) only: not on the tiling nor the thread count.
Kept weights are scaled by 1 / (1 - p); l and lse are those of the
weights before dropout.

Backward (FlashAttention-2's algorithm, deterministic): D_i = dO_i . O_i per
query row; then (a) one work item per (kv head, key tile) recomputes P from
Q, K and lse for every query head of that kv head (ascending) and every query
tile, and accumulates dV += (P Z)^T dO and dK += scale dS^T Q with
dS = P ((dO V^T) Z - D) (Z = keep / (1 - p), 1 without dropout); (b) one
work item per (batch-head, query tile) recomputes the same and accumulates
dQ += scale dS K.  Each output block has one owner, summed in a fixed order:
no atomics.  The BLAS must run single-threaded inside these parallel loops.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._blas import gemm_at
from ._fastmath import all_finite, exp32, exp64
from .rng import ctr_add, fill_f32_from, fill_f64_from

__all__ = ["sdpa_tiles", "sdpa_forward", "sdpa_backward"]

TQ = 128                     # query rows per work item (64 when the item would not fit)
TQ_MIN = 64
KV_TILE_BYTES = 128 * 1024   # a K/V tile
DIAG = 64                    # causal: keys per sub-tile of the diagonal block
ITEM_BYTES = 384 * 1024      # an item's K/V tile, Q tile, scores and accumulator
# Query tiles of at most SMALL_Q rows (decoding: L = 1 .. 4) compute their
# products Q K^T, (P Z) V and dO V^T with the loops _dot_lanes / _pv_rows
# instead of a BLAS call (whose fixed cost dominates a 1-row product).
SMALL_Q = 4
# Parallel loops deal their work items round-robin to at most GROUPS groups
# (scratch allocated once per group; a fixed number, not the thread count:
# Numba cannot cache a function that asks for it).  No effect on the results.
GROUPS = 256


@njit(cache=True)
def sdpa_tiles(E, Ev, itemsize):
    """(TQ, TK): query rows per work item, key rows per tile (see the module doc)."""
    tk = 512
    while tk > 16 and tk * (E + Ev) * itemsize > KV_TILE_BYTES:
        tk //= 2
    tq = TQ
    if (tq * (E + tk + Ev) + tk * (E + Ev)) * itemsize > ITEM_BYTES:
        tq = TQ_MIN
    return tq, tk


@njit(cache=True, inline="always")
def _cast(a, x):
    """x in the dtype of array a."""
    t = np.empty(1, a.dtype)
    t[0] = x
    return t[0]


@njit(cache=True, inline="always")
def _item_tile(it, ntiles, t, size):
    """Work item it of a (head, tile) grid of ntiles tiles of t rows per head
    over size rows: (head, first row, rows); the forward's and the backward's
    work items."""
    h = it // ntiles
    r0 = (it % ntiles) * t
    return h, r0, min(t, size - r0)


@njit(cache=True)
def _op(a, b, is_max):
    """The reduction's step: b if b > a else a (a maximum that keeps a where b
    is NaN) with ``is_max``, else a + b.  Plain functions, not inlined by
    Numba (inlined into _reduce8's 16 call sites they added ~1 s to the first
    SDPA call with an empty cache); LLVM inlines them and folds the constant
    test (same time, measured)."""
    if is_max:
        return b if b > a else a
    return a + b


@njit(cache=True, error_model="numpy")
def _op4(x, c, r0, r1, r2, r3, is_max):
    """Four lanes: r_t = _op(r_t, x[c + t])."""
    return (_op(r0, x[c], is_max), _op(r1, x[c + 1], is_max), _op(r2, x[c + 2], is_max),
            _op(r3, x[c + 3], is_max))


@njit(cache=True, error_model="numpy", inline="always")
def _reduce8(Sb, base, n, init, is_max):
    """max(init, Sb[base:base+n]) (``is_max``) or init + sum(Sb[base:base+n]) in
    a fixed order (the Cython twin's): 8 lanes r_t = _op(r_t, x[c]) over c = t
    mod 8 of the full blocks of 8 (vectorizable), combined as
    ((r0, r1), (r2, r3)), ((r4, r5), (r6, r7)), then the tail in order.  The
    maximum is exact, so its lane order does not matter; the sum's is fixed."""
    x = Sb[base:base + n]
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = init
    c = 0
    while c + 8 <= n:
        r0, r1, r2, r3 = _op4(x, c, r0, r1, r2, r3, is_max)
        r4, r5, r6, r7 = _op4(x, c + 4, r4, r5, r6, r7, is_max)
        c += 8
    r0 = _op(_op(_op(r0, r1, is_max), _op(r2, r3, is_max), is_max),
             _op(_op(r4, r5, is_max), _op(r6, r7, is_max), is_max), is_max)
    while c < n:
        r0 = _op(r0, x[c], is_max)
        c += 1
    return r0


@intrinsic
def _dot_lanes(typingctx, a, ao, b, bo, n):
    """sum_c a[ao + c] * b[bo + c] (c < n; flat 1-d arrays of one float dtype) in
    the fixed order of _reduce8's sum: 8 lanes over the full blocks of 8, combined
    ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)), then the tail in order.
    Written as LLVM IR with the 8 lanes in one vector register (plain IEEE
    fmul / fadd, no fast-math flags): Numba leaves LLVM's SLP vectorizer off,
    so eight scalar accumulators would stay scalar; this is 2.3x faster at
    E = 64 float32 and gives the bits of the Cython twin's C loop."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array) and a.dtype == b.dtype
            and a.dtype in (types.float32, types.float64) and a.ndim == 1 and b.ndim == 1):
        return None
    sig = a.dtype(a, ao, b, bo, n)

    def codegen(context, builder, signature, args):
        aty, aoty, bty, boty, nty = signature.args
        av, aov, bv, bov, nv = args
        vt = ir.VectorType(context.get_value_type(aty.dtype), 8)
        i64 = ir.IntType(64)
        ap = builder.gep(context.make_array(aty)(context, builder, av).data,
                         [context.cast(builder, aov, aoty, types.intp)])
        bp = builder.gep(context.make_array(bty)(context, builder, bv).data,
                         [context.cast(builder, bov, boty, types.intp)])
        nv = context.cast(builder, nv, nty, types.intp)
        accp = cgutils.alloca_once_value(builder, ir.Constant(vt, [0.0] * 8))
        nb = builder.sdiv(nv, ir.Constant(i64, 8))
        with cgutils.for_range(builder, nb) as loop:
            off = builder.mul(loop.index, ir.Constant(i64, 8))
            xa = builder.load(builder.bitcast(builder.gep(ap, [off]), vt.as_pointer()), align=1)
            xb = builder.load(builder.bitcast(builder.gep(bp, [off]), vt.as_pointer()), align=1)
            builder.store(builder.fadd(builder.load(accp), builder.fmul(xa, xb)), accp)
        acc = builder.load(accp)
        s = [builder.extract_element(acc, ir.Constant(ir.IntType(32), t)) for t in range(8)]
        r = builder.fadd(builder.fadd(builder.fadd(s[0], s[1]), builder.fadd(s[2], s[3])),
                         builder.fadd(builder.fadd(s[4], s[5]), builder.fadd(s[6], s[7])))
        rp = cgutils.alloca_once_value(builder, r)
        with cgutils.for_range_slice(builder, builder.mul(nb, ir.Constant(i64, 8)), nv,
                                     ir.Constant(i64, 1)) as (idx, _):
            xa = builder.load(builder.gep(ap, [idx]))
            xb = builder.load(builder.gep(bp, [idx]))
            builder.store(builder.fadd(builder.load(rp), builder.fmul(xa, xb)), rp)
        return builder.load(rp)

    return sig, codegen


@njit(cache=True, error_model="numpy")
def _dots_small(x, xo, ld, y, yo, nq, nk, alpha, out):
    """out[r * nk + c] = alpha * (x row r . y row c) (rows of length ld from
    the flat offsets xo, yo): the small-tile Q K^T and dO V^T."""
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for r in range(nq):
        for c in range(nk):
            out[r * nk + c] = alpha * _dot_lanes(xf, xo + r * ld, yf, yo + c * ld, ld)


@njit(cache=True, error_model="numpy")
def _pv_rows(P, nq, nk, v, vo, Ev, acc, zero):
    """acc[r] += sum_c P[r, c] v[c] (c ascending, rows of v from the flat
    offset vo; weights equal to zero skipped): the small-tile (P Z) V.
    Returns whether the rows of v it skipped are finite (the rows it adds
    show up in acc)."""
    vf = v.reshape(v.size)
    ok = True
    for r in range(nq):
        arow = acc[r * Ev:r * Ev + Ev]
        for c in range(nk):
            p = P[r * nk + c]
            if p != zero:
                vrow = vf[vo + c * Ev:vo + c * Ev + Ev]
                for e in range(Ev):
                    arow[e] += p * vrow[e]
            elif ok:
                ok = all_finite(vf, vo + c * Ev, Ev)
    return ok


@njit(cache=True, error_model="numpy")
def _tile_live(mask_mode, mask_b, mask_f, moff, mld, i0, nq, j0, nk, ninf):
    """Whether any (i, j) of the tile takes part according to the mask."""
    if mask_mode == 1:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                if mask_b[base + c] != 0:
                    return True
            if mld == 0:
                return False
        return False
    if mask_mode == 2:
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            for c in range(nk):
                if mask_f[base + c] > ninf:
                    return True
            if mld == 0:
                return False
        return False
    return True


@njit(cache=True, error_model="numpy")
def _mask_scores(Sb, nq, nk, i0, j0, mask_mode, mask_b, mask_f, moff, mld, causal, ninf):
    """Apply the mask and the causal rule to the score tile Sb (nq, nk)."""
    if mask_mode != 0:   # 1: bool mask (False = -inf), 2: float mask (added)
        for r in range(nq):
            base = moff + (i0 + r) * mld + j0
            row = Sb[r * nk:r * nk + nk]
            for c in range(nk):
                if mask_mode == 1:
                    row[c] = row[c] if mask_b[base + c] != 0 else ninf
                else:
                    row[c] = row[c] + mask_f[base + c]
    if causal:
        for r in range(nq):
            c0 = i0 + r - j0 + 1
            if c0 < 0:
                c0 = 0
            if c0 < nk:
                row = Sb[r * nk + c0:r * nk + nk]
                for c in range(nk - c0):
                    row[c] = ninf


@njit(cache=True, error_model="numpy")
def _exp_shift(Sb, base, n, m):
    """Sb[base:base+n] = exp(Sb[base:base+n] - m) (vectorizable)."""
    x = Sb[base:base + n]
    if Sb.itemsize == 4:
        for c in range(n):
            x[c] = exp32(x[c] - m)
    else:
        for c in range(n):
            x[c] = exp64(x[c] - m)


@njit(cache=True, error_model="numpy")
def _exp1(x):
    """exp(x[0]) in x's dtype.  The result goes through x[0]: returning exp32(...)
    and exp64(...) from the two branches would type the result float64 for
    float32 input too, and the running sum l * alpha + rs would then round
    twice (in float64, then to float32), unlike the Cython twin."""
    if x.itemsize == 4:
        x[0] = exp32(x[0])
    else:
        x[0] = exp64(x[0])
    return x[0]


@njit(cache=True, error_model="numpy")
def _uniforms(ub, n, k0, k1, c0, c1, c2, c3, j0):
    """ub[:n] = uniforms j0 .. j0+n-1 of the stream (j0 a multiple of 8)."""
    if ub.itemsize == 4:
        fill_f32_from(ub, n, k0, k1, c0, c1, c2, c3, j0 // 8)
    else:
        fill_f64_from(ub, n, k0, k1, c0, c1, c2, c3, j0 // 4)


@njit(cache=True, error_model="numpy")
def _dropout_rows(Sb, ub, nq, nk, i0, j0, bh, L, key, ctr, dp, zero):
    """Zero the entries of Sb (nq, nk) whose uniform is < dp (see module doc)."""
    for r in range(nq):
        c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], bh * L + i0 + r, 2)
        _uniforms(ub, nk, key[0], key[1], c0, c1, c2, c3, j0)
        row = Sb[r * nk:r * nk + nk]
        for c in range(nk):
            row[c] = row[c] if ub[c] >= dp else zero


@njit(cache=True, error_model="numpy")
def _fwd_item(q, k, v, bh, kvh, i0, nq, S, E, Ev, TK, mask_mode, mask_b, mask_f, moff, mld,
              causal, sc, dp, dscale, key, ctr, out, lse, Sb, ub, acc, m, l, tmp, consts, owner):
    """One work item; returns False when it met a non-finite key or value row
    (or a score overflow): see "Non-finite input" in the module doc."""
    L = q.shape[1]
    ninf = consts[0]
    zero = consts[1]
    one = consts[2]
    kf = k.reshape(k.size)
    vf = v.reshape(v.size)
    ok = True
    if owner and sc == zero:   # scale 0: the scores do not show K (BLAS skips alpha = 0)
        ok = all_finite(kf, kvh * S * E, S * E)
    for r in range(nq):
        m[r] = ninf
        l[r] = zero
    acc[:nq * Ev] = zero
    jend = S
    if causal and i0 + nq < S:
        jend = i0 + nq
    # causal: the keys from i0 on (the diagonal block) in sub-tiles of dg keys,
    # each computed for the rows that reach it only (rows r >= j0 - i0)
    dg = min(DIAG, TK)
    jdiag = i0 if causal and nq > dg and i0 < jend else jend
    j0 = jend - jend   # an int64 0: a literal 0 would make Numba compile each callee twice
    while j0 < jend:
        if j0 < jdiag:
            nk = min(TK, jdiag - j0)
            r0 = 0
        else:
            nk = min(dg, jend - j0)
            r0 = j0 - i0
        nr = nq - r0
        ii = i0 + r0
        mr = m[r0:]
        lr = l[r0:]
        ar = acc[r0 * Ev:]
        if not _tile_live(mask_mode, mask_b, mask_f, moff, mld, ii, nr, j0, nk, ninf):
            if owner and ok:
                ok = all_finite(kf, (kvh * S + j0) * E, nk * E) and \
                    all_finite(vf, (kvh * S + j0) * Ev, nk * Ev)
            j0 += nk
            continue
        if nr <= SMALL_Q:
            _dots_small(q, (bh * L + ii) * E, E, k, (kvh * S + j0) * E, nr, nk, sc, Sb)
        else:
            gemm_at(False, True, nr, nk, E, sc, q, (bh * L + ii) * E, E, k, (kvh * S + j0) * E,
                    E, zero, Sb, 0, nk)
        if ok:   # a non-finite row of K makes its whole score column non-finite
            ok = all_finite(Sb, j0 - j0, nr * nk)
        _mask_scores(Sb, nr, nk, ii, j0, mask_mode, mask_b, mask_f, moff, mld, causal, ninf)
        for r in range(nr):
            base = r * nk
            mx = _reduce8(Sb, base, nk, ninf, True)
            mold = mr[r]
            mnew = mx if mx > mold else mold
            if mnew == ninf:
                Sb[base:base + nk] = zero
                continue
            _exp_shift(Sb, base, nk, mnew)
            rs = _reduce8(Sb, base, nk, zero, False)
            tmp[0] = mold - mnew
            alpha = _exp1(tmp)
            lr[r] = lr[r] * alpha + rs
            mr[r] = mnew
            if alpha != one:
                arow = ar[r * Ev:r * Ev + Ev]
                for c in range(Ev):
                    arow[c] = arow[c] * alpha
        if dp > zero:
            _dropout_rows(Sb, ub, nr, nk, ii, j0, bh, L, key, ctr, dp, zero)
        if nr <= SMALL_Q:
            if not _pv_rows(Sb, nr, nk, v, (kvh * S + j0) * Ev, Ev, ar, zero):
                ok = False
        else:   # (0 times a non-finite value is NaN in the BLAS product too)
            gemm_at(False, False, nr, Ev, nk, one, Sb, 0, nk, v, (kvh * S + j0) * Ev, Ev, one,
                    ar, 0, Ev)
        j0 += nk
    if owner and ok and jend < S:
        ok = all_finite(kf, (kvh * S + jend) * E, (S - jend) * E) and \
            all_finite(vf, (kvh * S + jend) * Ev, (S - jend) * Ev)
    if ok:   # a non-finite row of V reaches the accumulator
        ok = all_finite(acc, jend - jend, nq * Ev)
    for r in range(nq):
        orow = out[bh, i0 + r]
        if l[r] == zero:
            orow[:] = zero
            lse[bh, i0 + r] = ninf
        else:
            inv = dscale / l[r]
            arow = acc[r * Ev:r * Ev + Ev]
            for c in range(Ev):
                orow[c] = arow[c] * inv
            lse[bh, i0 + r] = m[r] + math.log(l[r])
    return ok


@njit(cache=True, error_model="numpy", parallel=True)
def sdpa_forward(q, k, v, kv_idx, mask_mode, mask_b, mask_f, mask_off, mask_ld, causal, scale,
                 dropout_p, key, ctr, out, lse):
    """out (BH, L, Ev) and lse (BH, L) of scaled dot-product attention (module doc)."""
    BH, L, E = q.shape
    S = k.shape[1]
    Ev = v.shape[2]
    tq, TK = sdpa_tiles(E, Ev, q.itemsize)
    tq = min(tq, L)
    nqt = (L + tq - 1) // tq
    sc = _cast(q, scale)
    dp = _cast(q, dropout_p)
    dscale = _cast(q, 1.0) / (_cast(q, 1.0) - dp)
    tkb = min(TK, S)
    # Work items (bh, query tile) are dealt round-robin to nch groups, each with
    # its scratch allocated once (a mix of light and heavy causal items per
    # group); the grouping changes no result.
    n_items = BH * nqt
    nch = min(n_items, GROUPS)
    consts = np.empty(4, q.dtype)
    consts[0] = -np.inf
    consts[1] = 0.0
    consts[2] = 1.0
    # The owner of a key/value head (its first query head's first tile) makes
    # sure all of that head's K and V is checked; every item checks its query rows.
    qf = q.reshape(q.size)
    owner = np.full(k.shape[0], -1, np.int64)
    for bh in range(BH):
        if owner[kv_idx[bh]] < 0:
            owner[kv_idx[bh]] = bh
    for ch in prange(nch):
        Sb = np.empty(tq * tkb, q.dtype)
        ub = np.empty(tkb, q.dtype)
        acc = np.empty(tq * Ev, q.dtype)
        m = np.empty(tq, q.dtype)
        l = np.empty(tq, q.dtype)
        tmp = np.empty(1, q.dtype)
        for it in range(ch, n_items, nch):
            bh, i0, nq = _item_tile(it, nqt, tq, L)
            kvh = kv_idx[bh]
            moff = mask_off[bh] if mask_mode != 0 else 0
            own = i0 == 0 and owner[kvh] == bh
            ok = _fwd_item(q, k, v, bh, kvh, i0, nq, S, E, Ev, TK, mask_mode, mask_b, mask_f,
                           moff, mask_ld, causal, sc, dp, dscale, key, ctr, out, lse, Sb, ub,
                           acc, m, l, tmp, consts, own)
            if not (ok and all_finite(qf, (bh * L + i0) * E, nq * E)):
                for r in range(nq):
                    lse[bh, i0 + r] = np.nan


# ---- backward ---------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def _probs(Sb, nq, nk, lse, bh, i0):
    """Sb (scores, masked) -> P = exp(S - lse) per row; 0 for rows with lse = -inf."""
    ninf = _cast(Sb, -np.inf)
    zero = _cast(Sb, 0.0)
    for r in range(nq):
        li = lse[bh, i0 + r]
        base = r * nk
        if li == ninf:
            Sb[base:base + nk] = zero
        else:
            _exp_shift(Sb, base, nk, li)


@njit(cache=True, error_model="numpy")
def _bwd_tile(q, k, v, go, lse, Dm, bh, kvh, i0, nq, j0, nk, mask_mode, mask_b, mask_f, moff,
              mld, causal, sc, dp, dscale, key, ctr, Pb, Pd, dP, ub):
    """For the tile (rows i0.., keys j0..): Pb = P, Pd = P Z (the dropped, scaled
    weights), dP = dS = P ((dO V^T) Z - D).  Returns False when the tile is
    entirely masked (nothing computed)."""
    L, E = q.shape[1], q.shape[2]
    S = k.shape[1]
    Ev = v.shape[2]
    ninf = _cast(Pb, -np.inf)
    zero = _cast(Pb, 0.0)
    one = _cast(Pb, 1.0)
    if not _tile_live(mask_mode, mask_b, mask_f, moff, mld, i0, nq, j0, nk, ninf):
        return False
    if nq <= SMALL_Q:   # the forward's small-tile products: the same scores
        _dots_small(q, (bh * L + i0) * E, E, k, (kvh * S + j0) * E, nq, nk, sc, Pb)
    else:
        gemm_at(False, True, nq, nk, E, sc, q, (bh * L + i0) * E, E, k, (kvh * S + j0) * E, E,
                zero, Pb, 0, nk)
    _mask_scores(Pb, nq, nk, i0, j0, mask_mode, mask_b, mask_f, moff, mld, causal, ninf)
    _probs(Pb, nq, nk, lse, bh, i0)
    if nq <= SMALL_Q:
        _dots_small(go, (bh * L + i0) * Ev, Ev, v, (kvh * S + j0) * Ev, nq, nk, one, dP)
    else:
        gemm_at(False, True, nq, nk, Ev, one, go, (bh * L + i0) * Ev, Ev, v,
                (kvh * S + j0) * Ev, Ev, zero, dP, 0, nk)
    if dp > zero:
        for r in range(nq):
            c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], bh * L + i0 + r, 2)
            _uniforms(ub, nk, key[0], key[1], c0, c1, c2, c3, j0)
            pr = Pb[r * nk:r * nk + nk]
            pdr = Pd[r * nk:r * nk + nk]
            dpr = dP[r * nk:r * nk + nk]
            for c in range(nk):
                z = dscale if ub[c] >= dp else zero
                pdr[c] = pr[c] * z
                dpr[c] = dpr[c] * z
    else:
        for c in range(nq * nk):   # a loop: a slice assignment compiles an error path (s)
            Pd[c] = Pb[c]
    for r in range(nq):
        d = Dm[bh, i0 + r]
        pr = Pb[r * nk:r * nk + nk]
        dpr = dP[r * nk:r * nk + nk]
        for c in range(nk):
            dpr[c] = pr[c] * (dpr[c] - d)
    return True


@njit(cache=True, error_model="numpy", parallel=True)
def _rowdot(go, out, Dm):
    """Dm[bh, i] = sum_c go[bh, i, c] out[bh, i, c] (c ascending)."""
    BH, L, Ev = out.shape
    zero = _cast(Dm, 0.0)
    for bh in prange(BH):
        for i in range(L):
            gr = go[bh, i]
            orow = out[bh, i]
            s = zero
            for c in range(Ev):
                s += gr[c] * orow[c]
            Dm[bh, i] = s


@njit(cache=True, inline="always")
def _bwd_scratch(q, tq, tk):
    """A backward work group's scratch, in q's dtype: the tile's P, P with
    dropout and dP (tq x tk each) and tk uniforms, views of one buffer."""
    n = tq * tk
    buf = np.empty(3 * n + tk, q.dtype)
    return buf[:n], buf[n:2 * n], buf[2 * n:3 * n], buf[3 * n:]


@njit(cache=True, error_model="numpy", parallel=True)
def sdpa_backward(go, q, k, v, out, lse, kv_idx, kv_ptr, kv_list, mask_mode, mask_b, mask_f,
                  mask_off, mask_ld, causal, scale, dropout_p, key, ctr, dq, dk, dv):
    """dq (BH, L, E), dk (NKV, S, E), dv (NKV, S, Ev) (overwritten) for the
    upstream gradient go (BH, L, Ev), given out and lse of the forward."""
    BH, L, E = q.shape
    NKV, S = k.shape[0], k.shape[1]
    Ev = v.shape[2]
    tq, TK = sdpa_tiles(E, Ev, q.itemsize)
    tq = min(tq, L)
    nqt = (L + tq - 1) // tq
    tk = min(TK, S)
    nkt = (S + tk - 1) // tk
    sc = _cast(q, scale)
    dp = _cast(q, dropout_p)
    dscale = _cast(q, 1.0) / (_cast(q, 1.0) - dp)
    zero = _cast(q, 0.0)
    one = _cast(q, 1.0)
    Dm = np.empty((BH, L), q.dtype)
    _rowdot(go, out, Dm)
    dkf = dk.reshape(dk.size)
    dvf = dv.reshape(dv.size)
    dqf = dq.reshape(dq.size)
    # (a) dK, dV: one item per (kv head, key tile); items dealt round-robin to
    # groups with their scratch allocated once (no effect on the results)
    ncha = min(NKV * nkt, GROUPS)
    for ch in prange(ncha):
        Pb, Pd, dP, ub = _bwd_scratch(q, tq, tk)
        for it in range(ch, NKV * nkt, ncha):
            kvh, j0, nk = _item_tile(it, nkt, tk, S)
            dkf[(kvh * S + j0) * E:(kvh * S + j0 + nk) * E] = zero
            dvf[(kvh * S + j0) * Ev:(kvh * S + j0 + nk) * Ev] = zero
            qt0 = j0 // tq if causal else 0
            for p in range(kv_ptr[kvh], kv_ptr[kvh + 1]):
                bh = kv_list[p]
                moff = mask_off[bh] if mask_mode != 0 else 0
                for qt in range(qt0, nqt):
                    i0 = qt * tq
                    nq = min(tq, L - i0)
                    if not _bwd_tile(q, k, v, go, lse, Dm, bh, kvh, i0, nq, j0, nk, mask_mode,
                                     mask_b, mask_f, moff, mask_ld, causal, sc, dp, dscale, key,
                                     ctr, Pb, Pd, dP, ub):
                        continue
                    gemm_at(True, False, nk, Ev, nq, one, Pd, 0, nk, go, (bh * L + i0) * Ev, Ev,
                            one, dv, (kvh * S + j0) * Ev, Ev)
                    gemm_at(True, False, nk, E, nq, sc, dP, 0, nk, q, (bh * L + i0) * E, E, one,
                            dk, (kvh * S + j0) * E, E)
    # (b) dQ: one item per (batch-head, query tile), grouped as in (a)
    nchb = min(BH * nqt, GROUPS)
    for ch in prange(nchb):
        Pb, Pd, dP, ub = _bwd_scratch(q, tq, tk)
        for it in range(ch, BH * nqt, nchb):
            bh, i0, nq = _item_tile(it, nqt, tq, L)
            kvh = kv_idx[bh]
            moff = mask_off[bh] if mask_mode != 0 else 0
            dqf[(bh * L + i0) * E:(bh * L + i0 + nq) * E] = zero
            jend = S
            if causal and i0 + nq < S:
                jend = i0 + nq
            for j0 in range(0, jend, tk):
                nk = min(tk, jend - j0)
                if not _bwd_tile(q, k, v, go, lse, Dm, bh, kvh, i0, nq, j0, nk, mask_mode,
                                 mask_b, mask_f, moff, mask_ld, causal, sc, dp, dscale, key, ctr,
                                 Pb, Pd, dP, ub):
                    continue
                gemm_at(False, False, nq, E, nk, sc, dP, 0, nk, k, (kvh * S + j0) * E, E, one,
                        dq, (bh * L + i0) * E, E)
