# cython: language_level=3
"""C-level API of dlkernels' RBM kernels (Cython backend).

``cimport dlkernels.engine.cython.rbm`` (or take the pointers from
``rbm.__pyx_capi__``) gives the row-major GEMM wrapper the kernels use and
the fused layer sampler (bias + sigmoid + Bernoulli draw, row s from stream
s of counter ctr, starting at block first_block; probs may be NULL; a
unit's uniform is the float32 uniform of a 32-bit half-word in both dtypes).
"""
from libc.stdint cimport uint64_t

# Row-major C (M, N) = alpha op(A) op(B) + beta C via scipy.linalg.cython_blas;
# lda / ldb are the row lengths of A / B as stored.
cdef void gemm_f32(bint ta, bint tb, int M, int N, int K, float alpha, const float* A, int lda,
                   const float* B, int ldb, float beta, float* C) noexcept nogil
cdef void gemm_f64(bint ta, bint tb, int M, int N, int K, double alpha, const double* A, int lda,
                   const double* B, int ldb, double beta, double* C) noexcept nogil
# act (C, n) = Bernoulli(sigmoid(act + bias)) in place.
cdef void sample_layer_f32(float* act, Py_ssize_t C, Py_ssize_t n, const float* bias,
                           const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                           float* probs) noexcept nogil
cdef void sample_layer_f64(double* act, Py_ssize_t C, Py_ssize_t n, const double* bias,
                           const uint64_t* key, const uint64_t* ctr, uint64_t first_block,
                           double* probs) noexcept nogil
