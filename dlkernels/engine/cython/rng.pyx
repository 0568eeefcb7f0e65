# cython: language_level=3
"""Philox4x64-10 kernels (Cython backend).

Same names, arguments and semantics as ``dlkernels.engine.numba.rng``; no
input validation here (that is ``dlkernels.bindings``' job).
"""
from libc.stdint cimport uint64_t, uint32_t
from cython cimport floating
from cython.parallel cimport prange

__all__ = ["fill_raw", "fill_uniform_f32", "fill_uniform_f64", "fill_uniform_streams_f32",
           "fill_uniform_streams_f64", "philox_block", "CHUNK"]

# Blocks per parallel work item: big enough to amortise scheduling, small
# enough to balance two to a few dozen threads on 10**6+ draws.
cpdef enum:
    CHUNK = 4096


cdef void philox4x64_10(const uint64_t* key, const uint64_t* ctr, uint64_t* out) noexcept nogil:
    dlk_philox4x64_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out)


cdef void counter_add(uint64_t* ctr, uint64_t delta, int word) noexcept nogil:
    dlk_ctr_add(ctr, delta, word)


cdef inline void _start(const uint64_t* ctr, uint64_t first_block, uint64_t* c) noexcept nogil:
    c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3]
    dlk_ctr_add(c, 1, 0)
    dlk_ctr_add(c, first_block, 0)


ctypedef fused _word:
    uint64_t
    double
    float


cdef inline _word _value(const _word* tag, const uint64_t* blk, Py_ssize_t j,
                         bint halves) noexcept nogil:
    """Value j of a block in the type of ``tag``: the raw word j (uint64), the
    float32 uniform j (``halves``: the low, then the high 32-bit half of each
    word; stored exactly in a float or a double), or word j's float64 uniform."""
    if _word is uint64_t:
        return blk[j]
    elif halves:
        return <_word>dlk_u32_to_f32(<uint32_t>(blk[j >> 1] >> (32 * (j & 1))))
    else:
        return <_word>dlk_u64_to_f64(blk[j])


cdef inline void _fill_values(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                              _word* out, Py_ssize_t n, bint halves) noexcept nogil:
    """out[:n] = the values (_value) of blocks first_block.. of the stream:
    8 a block with ``halves``, else 4.  ``halves`` is a constant at each use,
    so the C compiler unrolls the block's loop as if written out."""
    cdef uint64_t c[4]
    cdef uint64_t blk[4]
    cdef Py_ssize_t i = 0, j, per = 8 if halves else 4
    _start(ctr, first_block, c)
    while i + per <= n:
        dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], blk)
        dlk_ctr_add(c, 1, 0)
        for j in range(per):
            out[i + j] = _value(out, blk, j, halves)
        i += per
    if i < n:
        dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], blk)
        j = 0
        while i < n:
            out[i] = _value(out, blk, j, halves)
            i += 1
            j += 1


cdef void stream_fill_raw(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          uint64_t* out, Py_ssize_t n) noexcept nogil:
    _fill_values(key, ctr, first_block, out, n, False)


cdef void stream_fill_f64(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          double* out, Py_ssize_t n) noexcept nogil:
    _fill_values(key, ctr, first_block, out, n, False)


cdef void stream_fill_f32(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          float* out, Py_ssize_t n) noexcept nogil:
    _fill_values(key, ctr, first_block, out, n, True)


cdef void stream_fill_f32_f64(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                              double* out, Py_ssize_t n) noexcept nogil:
    _fill_values(key, ctr, first_block, out, n, True)


# ---- Python-level kernels ---------------------------------------------------

def philox_block(const uint64_t[::1] key, const uint64_t[::1] ctr, uint64_t[::1] out):
    """out[:4] = Philox4x64-10(ctr, key): one block, no counter increment."""
    philox4x64_10(&key[0], &ctr[0], &out[0])


cdef void _fill_parallel(const uint64_t* key, const uint64_t* ctr, _word* out,
                         Py_ssize_t n) noexcept nogil:
    """out[:n] = the stream's raw words / float64 / float32 uniforms, in chunks of
    CHUNK Philox blocks (4 or 8 values each) filled in parallel."""
    cdef Py_ssize_t per = (8 if _word is float else 4) * CHUNK, nchunks, ch, lo
    if n == 0:
        return
    nchunks = (n + per - 1) // per
    for ch in prange(nchunks, schedule="static"):
        lo = ch * per
        if _word is uint64_t:
            stream_fill_raw(key, ctr, <uint64_t>(ch * CHUNK), out + lo, min(per, n - lo))
        elif _word is double:
            stream_fill_f64(key, ctr, <uint64_t>(ch * CHUNK), out + lo, min(per, n - lo))
        else:
            stream_fill_f32(key, ctr, <uint64_t>(ch * CHUNK), out + lo, min(per, n - lo))


def fill_raw(const uint64_t[::1] key, const uint64_t[::1] ctr, uint64_t[::1] out):
    """out[j] = word j of the stream (key, ctr), as numpy.random.Philox yields it."""
    with nogil:
        _fill_parallel(&key[0], &ctr[0], &out[0] if out.shape[0] else NULL, out.shape[0])


def fill_uniform_f64(const uint64_t[::1] key, const uint64_t[::1] ctr, double[::1] out):
    """out[j] = float64 uniform j of the stream (key, ctr) (numpy's Generator.random)."""
    with nogil:
        _fill_parallel(&key[0], &ctr[0], &out[0] if out.shape[0] else NULL, out.shape[0])


def fill_uniform_f32(const uint64_t[::1] key, const uint64_t[::1] ctr, float[::1] out):
    """out[j] = float32 uniform j of the stream (key, ctr) (numpy's Generator.random(dtype=float32))."""
    with nogil:
        _fill_parallel(&key[0], &ctr[0], &out[0] if out.shape[0] else NULL, out.shape[0])


def fill_uniform_streams_f64(const uint64_t[::1] key, const uint64_t[::1] ctr, double[:, ::1] out):
    """Row r of out = float64 uniforms of the stream (key, ctr + r * 2**128)."""
    cdef Py_ssize_t r, n = out.shape[1]
    if n == 0:
        return
    for r in prange(out.shape[0], nogil=True, schedule="static"):
        _row_fill_f64(&key[0], &ctr[0], r, &out[r, 0], n)


def fill_uniform_streams_f32(const uint64_t[::1] key, const uint64_t[::1] ctr, float[:, ::1] out):
    """Row r of out = float32 uniforms of the stream (key, ctr + r * 2**128)."""
    cdef Py_ssize_t r, n = out.shape[1]
    if n == 0:
        return
    for r in prange(out.shape[0], nogil=True, schedule="static"):
        _row_fill_f32(&key[0], &ctr[0], r, &out[r, 0], n)


cdef inline void _row_fill_f64(const uint64_t* key, const uint64_t* ctr, Py_ssize_t r,
                               double* out, Py_ssize_t n) noexcept nogil:
    cdef uint64_t c[4]
    c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3]
    dlk_ctr_add(c, <uint64_t>r, 2)
    stream_fill_f64(key, c, 0, out, n)


cdef inline void _row_fill_f32(const uint64_t* key, const uint64_t* ctr, Py_ssize_t r,
                               float* out, Py_ssize_t n) noexcept nogil:
    cdef uint64_t c[4]
    c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3]
    dlk_ctr_add(c, <uint64_t>r, 2)
    stream_fill_f32(key, c, 0, out, n)
