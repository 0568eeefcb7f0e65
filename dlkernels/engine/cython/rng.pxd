# cython: language_level=3
"""C-level Philox4x64-10 for dlkernels' Cython kernels and for downstream code.

``cimport dlkernels.engine.cython.rng as dlk_rng`` gives

* the inline C core (``dlk_philox4x64_10``, ``dlk_ctr_add``, ``dlk_u32_to_f32``,
  ``dlk_u64_to_f64``) compiled into the cimporting module, for hot loops;
* the exported C functions below, which live in ``rng``'s shared object and
  are reachable from C or ctypes/Numba through ``rng.__pyx_capi__``.

Stream convention (the same as ``numpy.random.Philox``): a stream is a
(key[2], counter[4]) pair; its 64-bit word ``j`` is word ``j % 4`` of the
block ``philox(counter + 1 + j // 4, key)``.  float64 uniforms are
``(w >> 11) * 2**-53``, one per word; float32 uniforms are ``(u >> 8) * 2**-24``
for the low, then the high 32-bit half of each word (``stream_fill_f32_f64``
stores those same float32 uniforms as doubles).
"""
from libc.stdint cimport uint64_t, uint32_t

cdef extern from *:
    """
    #include <stdint.h>
    #ifndef DLK_PHILOX_INLINE_H
    #define DLK_PHILOX_INLINE_H
    #if defined(_MSC_VER)
    #include <intrin.h>
    #endif
    #define DLK_PHILOX_M0 0xD2E7470EE14C6C93ULL
    #define DLK_PHILOX_M1 0xCA5A826395121157ULL
    #define DLK_PHILOX_W0 0x9E3779B97F4A7C15ULL
    #define DLK_PHILOX_W1 0xBB67AE8584CAA73BULL

    static inline uint64_t dlk_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) {
    #if defined(__SIZEOF_INT128__)
        unsigned __int128 p = (unsigned __int128)a * (unsigned __int128)b;
        *hi = (uint64_t)(p >> 64);
        return (uint64_t)p;
    #elif defined(_MSC_VER) && defined(_M_X64)
        return _umul128(a, b, hi);
    #else
        uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
        uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
        uint64_t mid = (p0 >> 32) + (uint32_t)p1 + (uint32_t)p2;
        *hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
        return (mid << 32) | (uint32_t)p0;
    #endif
    }

    /* One Philox4x64-10 block of counter (c0..c3) under key (k0, k1). */
    static inline void dlk_philox4x64_10(uint64_t c0, uint64_t c1, uint64_t c2, uint64_t c3,
                                         uint64_t k0, uint64_t k1, uint64_t *out) {
        int r;
        for (r = 0; r < 10; r++) {
            uint64_t hi0, hi1, lo0, lo1;
            if (r) { k0 += DLK_PHILOX_W0; k1 += DLK_PHILOX_W1; }
            lo0 = dlk_mulhilo64(DLK_PHILOX_M0, c0, &hi0);
            lo1 = dlk_mulhilo64(DLK_PHILOX_M1, c2, &hi1);
            c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
        }
        out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
    }

    /* ctr += delta * 2**(64*word)  (mod 2**256); word in 0..3. */
    static inline void dlk_ctr_add(uint64_t *ctr, uint64_t delta, int word) {
        int i;
        uint64_t old = ctr[word];
        ctr[word] = old + delta;
        if (ctr[word] >= old) return;
        for (i = word + 1; i < 4; i++) { if (++ctr[i] != 0) return; }
    }

    static inline float dlk_u32_to_f32(uint32_t u) {
        return (float)(u >> 8) * (1.0f / 16777216.0f);
    }
    static inline double dlk_u64_to_f64(uint64_t w) {
        return (double)(w >> 11) * (1.0 / 9007199254740992.0);
    }

    /* Counter of stream s of the base counter ctr: out = ctr + s * 2**128. */
    static inline void dlk_stream_ctr(const uint64_t *ctr, uint64_t s, uint64_t *out) {
        out[0] = ctr[0]; out[1] = ctr[1]; out[2] = ctr[2]; out[3] = ctr[3];
        dlk_ctr_add(out, s, 2);
    }

    /* Block `b` (0-based) of the stream (key, ctr): philox(ctr + 1 + b, key). */
    static inline void dlk_stream_block(const uint64_t *key, const uint64_t *ctr,
                                        uint64_t b, uint64_t *out) {
        uint64_t c[4];
        c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3];
        dlk_ctr_add(c, 1, 0);
        dlk_ctr_add(c, b, 0);
        dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], out);
    }
    #endif
    """
    void dlk_philox4x64_10(uint64_t c0, uint64_t c1, uint64_t c2, uint64_t c3,
                           uint64_t k0, uint64_t k1, uint64_t *out) noexcept nogil
    void dlk_ctr_add(uint64_t *ctr, uint64_t delta, int word) noexcept nogil
    void dlk_stream_ctr(const uint64_t *ctr, uint64_t s, uint64_t *out) noexcept nogil
    uint64_t dlk_mulhilo64(uint64_t a, uint64_t b, uint64_t *hi) noexcept nogil
    void dlk_stream_block(const uint64_t *key, const uint64_t *ctr, uint64_t b,
                          uint64_t *out) noexcept nogil
    float dlk_u32_to_f32(uint32_t u) noexcept nogil
    double dlk_u64_to_f64(uint64_t w) noexcept nogil


# ---- exported C API (in __pyx_capi__) -------------------------------------
# One Philox4x64-10 block: out = philox(ctr, key) (no increment).
cdef void philox4x64_10(const uint64_t* key, const uint64_t* ctr, uint64_t* out) noexcept nogil
# ctr += delta * 2**(64*word) mod 2**256.
cdef void counter_add(uint64_t* ctr, uint64_t delta, int word) noexcept nogil
# Words / uniforms of the stream (key, ctr), starting at block `first_block`
# (i.e. at word 4*first_block, float64 4*first_block, float32 8*first_block);
# writes n values to out.
cdef void stream_fill_raw(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          uint64_t* out, Py_ssize_t n) noexcept nogil
cdef void stream_fill_f64(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          double* out, Py_ssize_t n) noexcept nogil
cdef void stream_fill_f32(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                          float* out, Py_ssize_t n) noexcept nogil
# The float32 uniforms of stream_fill_f32 (one 32-bit half-word each), stored
# exactly as doubles: what the float64 RBM kernels compare with their
# probabilities, so that float32 and float64 models make the same decisions.
cdef void stream_fill_f32_f64(const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                              double* out, Py_ssize_t n) noexcept nogil
