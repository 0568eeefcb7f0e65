"""Bernoulli RBM kernels (Numba backend).

Same names, arguments and semantics as ``dlkernels.engine.cython.rbm``; no
input validation here (that is ``dlkernels.bindings.rbm``' job).  All arrays
are C-contiguous and share one float dtype (float32 or float64).

Conventions: v (rows, m), h (rows, n), W (m, n), a (m,), b (n,).

GEMM.  Every matrix product calls the ``?gemm`` of ``scipy.linalg.cython_blas``
(the BLAS Numba's own ``np.dot`` uses) through ``_gemm``, with exactly the
arguments the Cython backend passes, so both backends see bit-identical
products; ``_gemm`` also accumulates (beta = 1), which lets ``cd_step`` add
the gradient straight into W without an (m, n) temporary.

Random numbers.  Row/chain ``s`` of a call draws from stream ``s`` of the
call's base counter ``ctr`` (counter ``ctr + s * 2**128``).  Each layer draw
of a row starts on a fresh Philox block: a float32 layer of n units uses
``ceil(n / 8)`` blocks (uniform i = float32 uniform i of the stream), a
float64 layer ``ceil(n / 4)`` blocks.  Within a call, the draws of a row are
laid out one after another in the order they happen (see each kernel).
A unit is on when ``u < p`` with u the stream's uniform (for float32 this is
exactly the integer test ``(x >> 8) < ceil(p * 2**24)`` on the 32-bit word x).

Sigmoid: ``1 / (1 + exp(-x))`` in the array dtype (libm ``expf``/``exp``;
it saturates to exactly 0 or 1, never NaN).  Softplus:
``max(x, 0) + log1p(exp(-|x|))``.
"""
import math

import llvmlite.binding as _llb
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from .rng import ctr_add, philox4x64_10

__all__ = ["energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
           "sample_visible", "gibbs_chains", "cd_step", "blocks_per_layer"]

# ---- BLAS: scipy.linalg.cython_blas ?gemm, called by symbol name ----------
for _nm in ("sgemm", "dgemm"):
    _llb.add_symbol("dlk_cyblas_" + _nm,
                    get_cython_function_address("scipy.linalg.cython_blas", _nm))
_vp = types.voidptr
_sgemm = types.ExternalFunction("dlk_cyblas_sgemm", types.void(*([_vp] * 13)))
_dgemm = types.ExternalFunction("dlk_cyblas_dgemm", types.void(*([_vp] * 13)))


@intrinsic
def _ptr(typingctx, arr):
    """The data pointer of an array, as void*."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.voidptr(arr)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)

    return sig, codegen


_N = ord("N")
_T = ord("T")


@njit(cache=True)
def _gemm(ta, tb, alpha, A, B, beta, C):
    """C = alpha * op(A) @ op(B) + beta * C for C-contiguous row-major arrays
    (op = transpose when ta / tb).  Row-major C is column-major C^T, so this
    calls gemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, N)."""
    M = C.shape[0]
    N = C.shape[1]
    K = A.shape[0] if ta else A.shape[1]
    ints = np.empty(6, np.int32)
    ints[0] = N
    ints[1] = M
    ints[2] = K
    ints[3] = B.shape[1]
    ints[4] = A.shape[1]
    ints[5] = N
    ch = np.empty(2, np.uint8)
    ch[0] = _T if tb else _N
    ch[1] = _T if ta else _N
    sc = np.empty(2, C.dtype)
    sc[0] = alpha
    sc[1] = beta
    if C.itemsize == 4:
        _sgemm(_ptr(ch[0:1]), _ptr(ch[1:2]), _ptr(ints[0:1]), _ptr(ints[1:2]), _ptr(ints[2:3]),
               _ptr(sc[0:1]), _ptr(B), _ptr(ints[3:4]), _ptr(A), _ptr(ints[4:5]),
               _ptr(sc[1:2]), _ptr(C), _ptr(ints[5:6]))
    else:
        _dgemm(_ptr(ch[0:1]), _ptr(ch[1:2]), _ptr(ints[0:1]), _ptr(ints[1:2]), _ptr(ints[2:3]),
               _ptr(sc[0:1]), _ptr(B), _ptr(ints[3:4]), _ptr(A), _ptr(ints[4:5]),
               _ptr(sc[1:2]), _ptr(C), _ptr(ints[5:6]))


# ---- scalar helpers ----------------------------------------------------------
_ONE32 = np.float32(1.0)
_ZERO32 = np.float32(0.0)
_LO32 = np.uint64(0xFFFFFFFF)
_S8 = np.uint64(8)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_F32_SCALE = np.float32(1.0 / 16777216.0)
_F64_SCALE = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def _sig32(x):
    return _ONE32 / (_ONE32 + math.exp(-x))


@njit(cache=True, inline="always")
def _sig64(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True, inline="always")
def _softplus32(x):
    if x > _ZERO32:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, inline="always")
def _softplus64(x):
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True)
def blocks_per_layer(n, itemsize):
    """Philox blocks one layer draw of n units consumes (per row)."""
    if itemsize == 4:
        return (n + 7) // 8
    return (n + 3) // 4


# ---- row kernels (serial; called inside the prange loops) --------------------
@njit(cache=True)
def _bern_row(p, out, k0, k1, c0, c1, c2, c3, first_block):
    """out[i] = 1 if u_i < p[i] else 0, u_i = uniform i of the stream (key, c)
    counted from block ``first_block``.  p and out may be the same array."""
    n = p.shape[0]
    d0, d1, d2, d3 = ctr_add(c0, c1, c2, c3, 1 + first_block, 0)
    i = 0
    if p.itemsize == 4:
        while i < n:
            w = philox4x64_10(d0, d1, d2, d3, k0, k1)
            d0, d1, d2, d3 = ctr_add(d0, d1, d2, d3, 1, 0)
            for j in range(4):
                x = w[j]
                if i < n:
                    u = np.float32((x & _LO32) >> _S8) * _F32_SCALE
                    out[i] = 1.0 if u < p[i] else 0.0
                    i += 1
                if i < n:
                    u = np.float32(x >> (_S32 + _S8)) * _F32_SCALE
                    out[i] = 1.0 if u < p[i] else 0.0
                    i += 1
    else:
        while i < n:
            w = philox4x64_10(d0, d1, d2, d3, k0, k1)
            d0, d1, d2, d3 = ctr_add(d0, d1, d2, d3, 1, 0)
            for j in range(4):
                if i < n:
                    u = np.float64(w[j] >> _S11) * _F64_SCALE
                    out[i] = 1.0 if u < p[i] else 0.0
                    i += 1


@njit(cache=True)
def _sigmoid_row(x, bias, out):
    """out = sigmoid(x + bias) (out may be x)."""
    n = x.shape[0]
    if x.itemsize == 4:
        for j in range(n):
            out[j] = _sig32(x[j] + bias[j])
    else:
        for j in range(n):
            out[j] = _sig64(x[j] + bias[j])


# ---- layer kernels (parallel over rows) ---------------------------------------
@njit(cache=True, parallel=True)
def _sigmoid_layer(act, bias):
    """act = sigmoid(act + bias), in place."""
    for s in prange(act.shape[0]):
        _sigmoid_row(act[s], bias, act[s])


@njit(cache=True, parallel=True)
def _sample_layer(act, bias, key, ctr, first_block, probs):
    """act = Bernoulli(sigmoid(act + bias)) in place, row s from stream s
    (blocks from first_block); probs (same shape, or 0 rows) receives the
    probabilities."""
    keep = probs.shape[0] > 0
    for s in prange(act.shape[0]):
        row = act[s]
        tgt = probs[s] if keep else row
        _sigmoid_row(row, bias, tgt)
        c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], s, 2)
        _bern_row(tgt, row, key[0], key[1], c0, c1, c2, c3, first_block)


@njit(cache=True, parallel=True)
def _bern_layer(p, key, ctr, first_block):
    """p = Bernoulli(p) in place, row s from stream s (blocks from first_block)."""
    for s in prange(p.shape[0]):
        c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], s, 2)
        _bern_row(p[s], p[s], key[0], key[1], c0, c1, c2, c3, first_block)


@njit(cache=True, parallel=True)
def _add_layer(acc, x):
    """acc += x (elementwise, same shapes)."""
    for s in prange(acc.shape[0]):
        for j in range(acc.shape[1]):
            acc[s, j] += x[s, j]


@njit(cache=True)
def _colsum(x, out):
    """out (float64) += column sums of x, rows in order."""
    for s in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[j] += x[s, j]


# ---- public kernels ------------------------------------------------------------
@njit(cache=True, parallel=True)
def _energy_rows(v, h, vw, a, b, out):
    for s in prange(v.shape[0]):
        e = 0.0
        for i in range(v.shape[1]):
            e += np.float64(a[i]) * np.float64(v[s, i])
        for j in range(h.shape[1]):
            e += (np.float64(b[j]) + np.float64(vw[s, j])) * np.float64(h[s, j])
        out[s] = -e


@njit(cache=True)
def energy(v, h, W, a, b, out):
    """out[s] = -a.v_s - b.h_s - v_s W h_s  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _gemm(False, False, 1.0, v, W, 0.0, vw)
    _energy_rows(v, h, vw, a, b, out)


@njit(cache=True, parallel=True)
def _free_energy_rows(v, vw, a, b, out):
    is32 = v.itemsize == 4
    for s in prange(v.shape[0]):
        e = 0.0
        for i in range(v.shape[1]):
            e += np.float64(a[i]) * np.float64(v[s, i])
        for j in range(vw.shape[1]):
            if is32:
                e += np.float64(_softplus32(vw[s, j] + b[j]))
            else:
                e += _softplus64(vw[s, j] + b[j])
        out[s] = -e


@njit(cache=True)
def free_energy(v, W, a, b, out):
    """out[s] = -a.v_s - sum_j softplus(b_j + (v_s W)_j)  (sums in float64)."""
    vw = np.empty((v.shape[0], W.shape[1]), W.dtype)
    _gemm(False, False, 1.0, v, W, 0.0, vw)
    _free_energy_rows(v, vw, a, b, out)


@njit(cache=True)
def hidden_probs(v, W, b, out):
    """out = sigmoid(v W + b)."""
    _gemm(False, False, 1.0, v, W, 0.0, out)
    _sigmoid_layer(out, b)


@njit(cache=True)
def visible_probs(h, W, a, out):
    """out = sigmoid(h W^T + a)."""
    _gemm(False, True, 1.0, h, W, 0.0, out)
    _sigmoid_layer(out, a)


@njit(cache=True)
def sample_hidden(v, W, b, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(v W + b)); row s from stream s, block 0.
    probs: (rows, n) to receive the probabilities, or a (0, 0) array."""
    _gemm(False, False, 1.0, v, W, 0.0, out)
    _sample_layer(out, b, key, ctr, 0, probs)


@njit(cache=True)
def sample_visible(h, W, a, key, ctr, out, probs):
    """out = Bernoulli(sigmoid(h W^T + a)); row s from stream s, block 0."""
    _gemm(False, True, 1.0, h, W, 0.0, out)
    _sample_layer(out, a, key, ctr, 0, probs)


@njit(cache=True)
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
    noprobs = np.empty((0, 0), v.dtype)
    if mean_last > 0:
        mean_v[:, :] = 0.0
        mean_h[:, :] = 0.0
    for t in range(k):
        blk = t * (bh + bv)
        _gemm(False, False, 1.0, v, W, 0.0, h)
        _sample_layer(h, b, key, ctr, blk, noprobs)
        _gemm(False, True, 1.0, h, W, 0.0, v)
        _sample_layer(v, a, key, ctr, blk + bh, noprobs)
        if mean_last > 0 and t >= k - mean_last:
            _add_layer(mean_v, v)
            _add_layer(mean_h, h)
    if mean_last > 0:
        _scale_layer(mean_v, mean_last)
        _scale_layer(mean_h, mean_last)


@njit(cache=True, parallel=True)
def _scale_layer(x, r):
    """x = x / r."""
    for s in prange(x.shape[0]):
        for j in range(x.shape[1]):
            x[s, j] = np.float64(x[s, j]) / np.float64(r)


@njit(cache=True, parallel=True)
def _axpy_layer(y, alpha, x):
    """y += alpha * x (2-d, same shapes), alpha rounded to the dtype first."""
    al = np.empty(1, y.dtype)
    al[0] = alpha
    for s in prange(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] += al[0] * x[s, j]


@njit(cache=True, parallel=True)
def _mul_layer(y, f):
    """y *= f (2-d), f rounded to the dtype first."""
    al = np.empty(1, y.dtype)
    al[0] = f
    for s in prange(y.shape[0]):
        for j in range(y.shape[1]):
            y[s, j] = y[s, j] * al[0]


@njit(cache=True)
def _add_scaled_vec(y, sa, xa, sb, xb):
    """y[i] += (dtype)(sa * xa[i] + sb * xb[i])  (xa, xb float64)."""
    tmp = np.empty(y.shape[0], y.dtype)
    for i in range(y.shape[0]):
        tmp[i] = sa * xa[i] + sb * xb[i]
    for i in range(y.shape[0]):
        y[i] = y[i] + tmp[i]


@njit(cache=True)
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
    ppos = np.empty((B, n), dt)
    _gemm(False, False, 1.0, vdata, W, 0.0, ppos)
    _sigmoid_layer(ppos, b)
    if r > 1:
        acc = np.zeros((m, n), dt)
    else:
        acc = np.zeros((0, 0), dt)
    sv = np.zeros(m, np.float64)
    sp = np.zeros(n, np.float64)
    noprobs = np.empty((0, 0), dt)
    if mode == 0:
        V[:, :] = vdata
        H[:, :] = ppos
    elif mode == 1:
        _gemm(False, False, 1.0, V, W, 0.0, H)
        _sigmoid_layer(H, b)
    for t in range(1, T + 1):
        blk = (t - 1) * (bh + bv)
        if mode != 2:
            _bern_layer(H, key, ctr, blk)
            _gemm(False, True, 1.0, H, W, 0.0, V)
            _sample_layer(V, a, key, ctr, blk + bh, noprobs)
        else:
            _gemm(False, True, 1.0, H, W, 0.0, V)
            _sample_layer(V, a, key, ctr, blk, noprobs)
        _gemm(False, False, 1.0, V, W, 0.0, H)
        _sigmoid_layer(H, b)
        if r > 1 and t >= k:
            _gemm(True, False, 1.0, V, H, 1.0, acc)
            _colsum(V, sv)
            _colsum(H, sp)
        if mode == 2 and t < T:
            _bern_layer(H, key, ctr, blk + bv)
    # ---- accumulate (W, a, b are not read after this point) ----
    if decay != 1.0:
        _mul_layer(gW, decay)
    _gemm(True, False, scale_pos, vdata, ppos, 1.0, gW)
    if r == 1:
        _gemm(True, False, scale_neg, V, H, 1.0, gW)
        _colsum(V, sv)
        _colsum(H, sp)
    else:
        _axpy_layer(gW, scale_neg, acc)
    pv = np.zeros(m, np.float64)
    ph = np.zeros(n, np.float64)
    _colsum(vdata, pv)
    _colsum(ppos, ph)
    _add_scaled_vec(ga, scale_pos, pv, scale_neg, sv)
    _add_scaled_vec(gb, scale_pos, ph, scale_neg, sp)
    if mode == 2:
        _bern_layer(H, key, ctr, (T - 1) * (bh + bv) + bv)


try:  # single-site Gibbs, AIS, partition functions (helper module)
    from ._rbm_mcmc import *  # noqa: F401,F403
except ImportError:  # pragma: no cover - before that module exists
    pass
