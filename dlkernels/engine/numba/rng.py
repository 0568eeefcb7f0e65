"""Philox4x64-10 kernels (Numba backend).

Same names, arguments and semantics as ``dlkernels.engine.cython.rng``.  The
scalar building blocks (``philox4x64_10``, ``stream_block``, ``ctr_add``,
``u32_to_f32``, ``u64_to_f64``, ``stream_fill_f32``...) are plain ``@njit``
functions, so a user's own ``@njit`` code can call them directly.

Stream convention (the same as ``numpy.random.Philox``): a stream is a
(key[2], counter[4]) pair; its 64-bit word ``j`` is word ``j % 4`` of the
block ``philox(counter + 1 + j // 4, key)``.  float64 uniforms are
``(w >> 11) * 2**-53``; float32 uniforms are ``(u >> 8) * 2**-24`` of the low,
then the high 32-bit half of each word.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

__all__ = ["fill_raw", "fill_uniform_f32", "fill_uniform_f64", "fill_uniform_streams_f32",
           "fill_uniform_streams_f64", "philox_block", "CHUNK"]

_M0 = np.uint64(0xD2E7470EE14C6C93)
_M1 = np.uint64(0xCA5A826395121157)
_W0 = np.uint64(0x9E3779B97F4A7C15)
_W1 = np.uint64(0xBB67AE8584CAA73B)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_S8 = np.uint64(8)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)
_F32_SCALE = np.float32(1.0 / 16777216.0)
_F64_SCALE = 1.0 / 9007199254740992.0
# Blocks per parallel work item (same as the Cython backend; any value gives
# the same output, this one balances scheduling cost and load).
CHUNK = 4096


@intrinsic
def mulhilo64(typingctx, a, b):
    """(hi, lo) of the full 128-bit product of two uint64 (one native mul)."""
    if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return None
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        x, y = args
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(x, i128), builder.zext(y, i128))
        lo = builder.trunc(p, ir.IntType(64))
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@njit(cache=True, inline="always")
def _round_key(k0, k1, r):
    """The key of Philox round r from that of round r - 1: + (W0, W1) mod 2**64
    (round 0 uses the key itself)."""
    if r > 0:
        return k0 + _W0, k1 + _W1
    return k0, k1


@njit(cache=True, inline="always")
def _round(c0, c1, c2, c3, k0, k1):
    """One Philox4x64 round of the counter (c0..c3) under the round key (k0, k1)."""
    hi0, lo0 = mulhilo64(_M0, c0)
    hi1, lo1 = mulhilo64(_M1, c2)
    return hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0


@njit(cache=True, inline="never")
def philox4x64_10(c0, c1, c2, c3, k0, k1):
    """One Philox4x64-10 block of counter (c0..c3) under key (k0, k1): 4 uint64."""
    c0 = np.uint64(c0)
    c1 = np.uint64(c1)
    c2 = np.uint64(c2)
    c3 = np.uint64(c3)
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    for r in range(10):
        k0, k1 = _round_key(k0, k1, r)
        c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    return c0, c1, c2, c3


@njit(cache=True)
def philox4x64_10_x2(a0, a1, a2, a3, b0, b1, b2, b3, k0, k1):
    """Two blocks (counters a and b, same key) with their rounds interleaved.

    Equal to two calls of ``philox4x64_10``; the interleaving gives the CPU two
    independent multiply chains (about 20% faster per block with LLVM).
    """
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    for r in range(10):
        k0, k1 = _round_key(k0, k1, r)
        a0, a1, a2, a3 = _round(a0, a1, a2, a3, k0, k1)
        b0, b1, b2, b3 = _round(b0, b1, b2, b3, k0, k1)
    return (a0, a1, a2, a3), (b0, b1, b2, b3)


# One signature, compiled when the module is imported: the callers pass
# literal words and deltas (``ctr_add(c0, c1, c2, c3, 1, 0)``), for which
# Numba would otherwise compile one specialisation per literal (three in a
# first ``gibbs_chains``, ~0.9 s); LLVM still folds the constants once it is
# inlined into a caller.
_U64 = types.uint64


@njit(cache=True, inline="always")
def _adc(x, y, k):
    """(x + y + k mod 2**64, the carry out) for uint64 x, y and a carry k of 0 or 1."""
    s = x + y
    c = _ONE if s < y else _ZERO
    t = s + k
    return t, c + (_ONE if t < k else _ZERO)


@njit(types.UniTuple(_U64, 4)(_U64, _U64, _U64, _U64, types.int64, types.int64), cache=True)
def ctr_add(c0, c1, c2, c3, delta, word):
    """(c0..c3) + delta * 2**(64*word) mod 2**256, as a 4-tuple of uint64 (a
    word other than 0, 1, 2 counts as 3): a 256-bit add, the carry rippling
    up through the higher words."""
    d = np.uint64(delta)
    w0, k = _adc(np.uint64(c0), d if word == 0 else _ZERO, _ZERO)
    w1, k = _adc(np.uint64(c1), d if word == 1 else _ZERO, k)
    w2, k = _adc(np.uint64(c2), d if word == 2 else _ZERO, k)
    w3, k = _adc(np.uint64(c3), d if word < 0 or word > 2 else _ZERO, k)
    return w0, w1, w2, w3


@njit(cache=True)
def u32_to_f32(u):
    """float32 uniform in [0, 1) from the 32-bit integer u, as numpy does it."""
    return np.float32((np.uint64(u) & _LO32) >> _S8) * _F32_SCALE


@njit(cache=True)
def u64_to_f64(w):
    """float64 uniform in [0, 1) from the 64-bit word w, as numpy does it."""
    return np.float64(np.uint64(w) >> _S11) * _F64_SCALE


@njit(cache=True)
def stream_block(key, ctr, b):
    """Block b (0-based) of the stream (key, ctr): philox(ctr + 1 + b, key)."""
    c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], 1, 0)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, b, 0)
    return philox4x64_10(c0, c1, c2, c3, key[0], key[1])


@njit(cache=True)
def stream_fill_raw(key, ctr, first_block, out):
    """out[i] = word 4*first_block + i of the stream (key, ctr)."""
    n = out.shape[0]
    c0, c1, c2, c3 = ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], 1, 0)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, first_block, 0)
    i = 0
    while i < n:
        b = philox4x64_10(c0, c1, c2, c3, key[0], key[1])
        c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
        for j in range(4):
            if i < n:
                out[i] = b[j]
                i += 1


@njit(cache=True)
def stream_fill_f64(key, ctr, first_block, out):
    """out[i] = float64 uniform 4*first_block + i of the stream (key, ctr)."""
    fill_f64_from(out, out.shape[0], key[0], key[1], ctr[0], ctr[1], ctr[2], ctr[3], first_block)


@njit(cache=True, inline="always")
def _put_block(out, i, w, halves):
    """The values of block w (4 words) at out[i:]: with ``halves`` 8 float32
    uniforms (the low 32-bit half of each word first), else 4 float64 ones."""
    if halves:
        for j in range(4):
            out[i + 2 * j] = u32_to_f32(w[j])
            out[i + 2 * j + 1] = u32_to_f32(w[j] >> _S32)
    else:
        for j in range(4):
            out[i + j] = u64_to_f64(w[j])


@njit(cache=True, inline="always")
def _fill_from(out, n, k0, k1, c0, c1, c2, c3, first_block, halves):
    """out[:n] = the uniforms of blocks first_block.. of the stream (k0, k1;
    counter c0..c3): float32 ones (8 a block, ``halves``) or float64 ones (4).
    Two blocks at a time (interleaved Philox), then one, then the last
    block's first values.  ``halves`` is a constant at each (inlined) use."""
    per = 8 if halves else 4
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
    c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, first_block, 0)
    i = 0
    while i + 2 * per <= n:
        d0, d1, d2, d3 = ctr_add(c0, c1, c2, c3, 1, 0)
        wa, wb = philox4x64_10_x2(c0, c1, c2, c3, d0, d1, d2, d3, k0, k1)
        c0, c1, c2, c3 = ctr_add(d0, d1, d2, d3, 1, 0)
        _put_block(out, i, wa, halves)
        _put_block(out, i + per, wb, halves)
        i += 2 * per
    if i + per <= n:
        w = philox4x64_10(c0, c1, c2, c3, k0, k1)
        c0, c1, c2, c3 = ctr_add(c0, c1, c2, c3, 1, 0)
        _put_block(out, i, w, halves)
        i += per
    if i < n:
        w = philox4x64_10(c0, c1, c2, c3, k0, k1)
        j = 0
        while i < n:
            if halves:
                out[i] = u32_to_f32(w[j // 2] >> _S32 if j % 2 == 1 else w[j // 2])
            else:
                out[i] = u64_to_f64(w[j])
            i += 1
            j += 1


@njit(cache=True)
def fill_f64_from(out, n, k0, k1, c0, c1, c2, c3, first_block):
    """``stream_fill_f64`` on out[:n] with the key (k0, k1) and the counter
    (c0..c3) as scalars, for kernels that keep them in registers."""
    _fill_from(out, n, k0, k1, c0, c1, c2, c3, first_block, False)


@njit(cache=True)
def stream_fill_f32(key, ctr, first_block, out):
    """out[i] = float32 uniform 8*first_block + i of the stream (key, ctr)."""
    fill_f32_from(out, out.shape[0], key[0], key[1], ctr[0], ctr[1], ctr[2], ctr[3], first_block)


@njit(cache=True)
def fill_f32_from(out, n, k0, k1, c0, c1, c2, c3, first_block):
    """``stream_fill_f32`` on out[:n] with the key (k0, k1) and the counter
    (c0..c3) as scalars, for kernels that keep them in registers (out may be
    float64: the float32 uniforms stored exactly)."""
    _fill_from(out, n, k0, k1, c0, c1, c2, c3, first_block, True)


# ---- array kernels (parallel, deterministic for any thread count) ----------

@njit(cache=True)
def philox_block(key, ctr, out):
    """out[:4] = Philox4x64-10(ctr, key): one block, no counter increment."""
    b = philox4x64_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1])
    for j in range(4):
        out[j] = b[j]


def _stream_fill(key, ctr, first_block, out):
    """stream_fill_raw / stream_fill_f64 / stream_fill_f32, chosen by out's
    dtype (uint64 / float64 / float32) when a kernel is compiled."""
    raise NotImplementedError("compiled code only")


@overload(_stream_fill)
def _ol_stream_fill(key, ctr, first_block, out):
    fill = {types.uint64: stream_fill_raw, types.float64: stream_fill_f64,
            types.float32: stream_fill_f32}.get(getattr(out, "dtype", None))
    if fill is None:
        return None

    def impl(key, ctr, first_block, out):
        fill(key, ctr, first_block, out)
    return impl


@njit(cache=True, parallel=True)
def _fill_parallel(key, ctr, out):
    """out[j] = value j of the stream (key, ctr) for out's dtype: raw words
    (uint64), float64 or float32 uniforms, in chunks of CHUNK blocks (4 or 8
    values each) filled in parallel."""
    n = out.shape[0]
    per = (8 if out.itemsize == 4 else 4) * CHUNK
    for ch in prange((n + per - 1) // per):
        _stream_fill(key, ctr, ch * CHUNK, out[ch * per:min(ch * per + per, n)])


# fill_raw(key, ctr, out): out (uint64) = the stream's words, as
# numpy.random.Philox yields them; fill_uniform_f64 / fill_uniform_f32: out =
# its float64 / float32 uniforms (numpy's Generator.random, dtype float64 /
# float32).  One compiled driver: the three differ in out's dtype only.
fill_raw = fill_uniform_f64 = fill_uniform_f32 = _fill_parallel


@njit(cache=True)
def stream_ctr(ctr, r):
    """Counter of stream r of the base counter ctr, ctr + r * 2**128, as a
    4-tuple of uint64 (the one definition of the per-stream counter; for
    kernels that keep it in registers)."""
    return ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], r, 2)


@njit(cache=True)
def stream_counter(ctr, r):
    """Counter of stream r of the base counter ctr: ctr + r * 2**128 (a new uint64[4])."""
    c0, c1, c2, c3 = stream_ctr(ctr, r)
    c = np.empty(4, np.uint64)
    c[0] = c0
    c[1] = c1
    c[2] = c2
    c[3] = c3
    return c


@njit(cache=True, parallel=True)
def _fill_streams(key, ctr, out):
    """Row r of out = the uniforms (out's dtype: float64 or float32) of the
    stream (key, ctr + r * 2**128)."""
    for r in prange(out.shape[0]):
        _stream_fill(key, stream_counter(ctr, r), 0, out[r])


# fill_uniform_streams_f64 / _f32(key, ctr, out): row r of out = float64 /
# float32 uniforms of stream r (one driver, as for fill_uniform_*).
fill_uniform_streams_f64 = fill_uniform_streams_f32 = _fill_streams
