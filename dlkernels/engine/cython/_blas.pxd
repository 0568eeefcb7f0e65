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
from cython.parallel cimport prange
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


# ---- tiled products (twin of the Numba _blas.gemm_tiles) ----------------------------------
cdef inline void _gemm_tile(Py_ssize_t t, bint ta, bint tb, Py_ssize_t M, Py_ssize_t N,
                            Py_ssize_t K, floating alpha, const floating* A, Py_ssize_t lda,
                            const floating* B, Py_ssize_t ldb, floating beta, floating* C,
                            Py_ssize_t ldc, Py_ssize_t th, Py_ssize_t ntc,
                            Py_ssize_t tw) noexcept nogil:
    cdef Py_ssize_t tr = t // ntc
    cdef Py_ssize_t r0 = tr * th, c0 = (t - tr * ntc) * tw
    cdef Py_ssize_t r1 = r0 + th if r0 + th < M else M
    cdef Py_ssize_t c1 = c0 + tw if c0 + tw < N else N
    gemm(ta, tb, <int>(r1 - r0), <int>(c1 - c0), <int>K, alpha, A + (r0 if ta else r0 * lda),
         <int>lda, B + (c0 * ldb if tb else c0), <int>ldb, beta, C + r0 * ldc + c0, <int>ldc)


cdef inline void gemm_tiles(bint ta, bint tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                            floating alpha, const floating* A, Py_ssize_t lda,
                            const floating* B, Py_ssize_t ldb, floating beta, floating* C,
                            Py_ssize_t ldc, Py_ssize_t th, Py_ssize_t tw,
                            int nthreads) noexcept nogil:
    """Row-major C (M, N, row stride ldc) = alpha op(A) op(B) + beta C in
    tiles of th x tw elements of C, one ``gemm`` call each; the tiles run on
    ``nthreads`` OpenMP threads when it is > 1 and there are several (the
    BLAS must then be single-threaded).  The tiles, not the threads, decide
    every bit (twin: ``dlkernels.engine.numba._blas.gemm_tiles``)."""
    cdef Py_ssize_t ntc = (N + tw - 1) // tw
    cdef Py_ssize_t ntiles = ((M + th - 1) // th) * ntc, t
    if nthreads > 1 and ntiles > 1:
        for t in prange(ntiles, schedule="dynamic", num_threads=nthreads):
            _gemm_tile(t, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw)
    else:
        for t in range(ntiles):
            _gemm_tile(t, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw)
