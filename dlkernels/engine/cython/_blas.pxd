# cython: language_level=3
"""BLAS for the Cython kernels of every family (shared, inline; cimport it).

``gemm`` is the twin of ``dlkernels.engine.numba._blas.gemm_at``: row-major
C (M, N, row stride ldc) = alpha op(A) op(B) + beta C, with lda / ldb the row
strides of A / B as stored (pass pointers already offset).  It calls
``?gemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc)`` of
``scipy.linalg.cython_blas`` (column-major C^T = op(B)^T op(A)^T), exactly as
the Numba backend does, so both backends get bit-identical products.
"""
from cython cimport floating
cimport scipy.linalg.cython_blas as _cyblas


cdef inline void gemm(bint ta, bint tb, int M, int N, int K, floating alpha, const floating* A,
                      int lda, const floating* B, int ldb, floating beta, floating* C,
                      int ldc) noexcept nogil:
    cdef char ca = b'T' if ta else b'N'
    cdef char cb = b'T' if tb else b'N'
    if floating is float:
        _cyblas.sgemm(&cb, &ca, &N, &M, &K, &alpha, <float*>B, &ldb, <float*>A, &lda,
                      &beta, C, &ldc)
    else:
        _cyblas.dgemm(&cb, &ca, &N, &M, &K, &alpha, <double*>B, &ldb, <double*>A, &lda,
                      &beta, C, &ldc)
