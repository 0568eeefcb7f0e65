# C-level declarations of _sdpa.pxi (included by attention.pxd).
#
# Flash-style scaled dot-product attention, non-fused float32 / float64 entry
# points (nogil; reachable from C / Numba through attention.__pyx_capi__).
# Arrays are C-contiguous: q (BH, L, E), k (NKV, S, E), v (NKV, S, Ev),
# out / grad (BH, L, Ev), lse (BH, L); the arguments mean what they mean in
# dlkernels.engine.numba._sdpa (sdpa_forward / sdpa_backward).  The parallel
# loops use OpenMP; the caller keeps the BLAS single-threaded.
from libc.stdint cimport uint64_t, int64_t, uint8_t

cdef void sdpa_forward_f32(const float* q, const float* k, const float* v, const int64_t* kv_idx,
                           Py_ssize_t BH, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E, Py_ssize_t Ev,
                           int mask_mode, const uint8_t* mask_b, const float* mask_f,
                           const int64_t* mask_off, Py_ssize_t mask_ld, bint causal, double scale,
                           double dropout_p, const uint64_t* key, const uint64_t* ctr, float* out,
                           float* lse) noexcept nogil
cdef void sdpa_forward_f64(const double* q, const double* k, const double* v,
                           const int64_t* kv_idx, Py_ssize_t BH, Py_ssize_t L, Py_ssize_t S,
                           Py_ssize_t E, Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                           const double* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                           bint causal, double scale, double dropout_p, const uint64_t* key,
                           const uint64_t* ctr, double* out, double* lse) noexcept nogil
cdef void sdpa_backward_f32(const float* go, const float* q, const float* k, const float* v,
                            const float* out, const float* lse, const int64_t* kv_idx,
                            const int64_t* kv_ptr, const int64_t* kv_list, Py_ssize_t BH,
                            Py_ssize_t NKV, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                            Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                            const float* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                            bint causal, double scale, double dropout_p, const uint64_t* key,
                            const uint64_t* ctr, float* dq, float* dk, float* dv) noexcept nogil
cdef void sdpa_backward_f64(const double* go, const double* q, const double* k, const double* v,
                            const double* out, const double* lse, const int64_t* kv_idx,
                            const int64_t* kv_ptr, const int64_t* kv_list, Py_ssize_t BH,
                            Py_ssize_t NKV, Py_ssize_t L, Py_ssize_t S, Py_ssize_t E,
                            Py_ssize_t Ev, int mask_mode, const uint8_t* mask_b,
                            const double* mask_f, const int64_t* mask_off, Py_ssize_t mask_ld,
                            bint causal, double scale, double dropout_p, const uint64_t* key,
                            const uint64_t* ctr, double* dq, double* dk, double* dv) noexcept nogil
