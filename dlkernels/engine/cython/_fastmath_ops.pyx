# cython: language_level=3
"""Array maps of the shared scalar math (Cython twin of ``map_unary`` /
``pmap_unary`` in ``dlkernels.engine.numba._fastmath``): used by the tests
(accuracy, backend parity) and the benchmark runner; no validation."""
from cython.parallel cimport prange
from cython cimport floating
from dlkernels.engine.cython._fastmath cimport (dlk_exp32, dlk_exp64, dlk_sigmoid32,
    dlk_sigmoid64, dlk_softplus32, dlk_softplus64, dlk_log_sigmoid32, dlk_log_sigmoid64,
    dlk_tanh32, dlk_tanh64)

__all__ = ["map_unary", "pmap_unary", "OP_EXP", "OP_SIGMOID", "OP_TANH", "OP_SOFTPLUS",
           "OP_LOG_SIGMOID"]

cpdef enum:
    OP_EXP = 0
    OP_SIGMOID = 1
    OP_TANH = 2
    OP_SOFTPLUS = 3
    OP_LOG_SIGMOID = 4

cdef enum:
    _MAP_CHUNK = 16384


cdef extern from *:
    """
    #include "dlk_fastmath.h"
    /* out[i] = f(x[i]), multiversioned (DLK_CLONES) so that the loops run in
       AVX2 / AVX-512 lanes where the CPU has them (as Numba's do): Cython's
       own loops would be compiled for the x86-64 baseline only. */
    #define DLK_MAP(F, T)                                                              \
    DLK_CLONES static void dlk_map_##F(const T *restrict x, T *restrict out,            \
                                       Py_ssize_t i0, Py_ssize_t i1) {                 \
        Py_ssize_t i;                                                                  \
        for (i = i0; i < i1; i++) out[i] = dlk_##F(x[i]);                              \
    }
    DLK_MAP(exp32, float)
    DLK_MAP(sigmoid32, float)
    DLK_MAP(tanh32, float)
    DLK_MAP(softplus32, float)
    DLK_MAP(log_sigmoid32, float)
    DLK_MAP(exp64, double)
    DLK_MAP(sigmoid64, double)
    DLK_MAP(tanh64, double)
    DLK_MAP(softplus64, double)
    DLK_MAP(log_sigmoid64, double)
    """
    void dlk_map_exp32(const float* x, float* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_sigmoid32(const float* x, float* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_tanh32(const float* x, float* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_softplus32(const float* x, float* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_log_sigmoid32(const float* x, float* out, Py_ssize_t i0,
                               Py_ssize_t i1) noexcept nogil
    void dlk_map_exp64(const double* x, double* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_sigmoid64(const double* x, double* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_tanh64(const double* x, double* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_softplus64(const double* x, double* out, Py_ssize_t i0,
                            Py_ssize_t i1) noexcept nogil
    void dlk_map_log_sigmoid64(const double* x, double* out, Py_ssize_t i0,
                               Py_ssize_t i1) noexcept nogil


cdef void _map_range(int op, const floating* x, floating* out, Py_ssize_t i0,
                     Py_ssize_t i1) noexcept nogil:
    if floating is float:
        if op == OP_EXP:
            dlk_map_exp32(x, out, i0, i1)
        elif op == OP_SIGMOID:
            dlk_map_sigmoid32(x, out, i0, i1)
        elif op == OP_TANH:
            dlk_map_tanh32(x, out, i0, i1)
        elif op == OP_SOFTPLUS:
            dlk_map_softplus32(x, out, i0, i1)
        else:
            dlk_map_log_sigmoid32(x, out, i0, i1)
    else:
        if op == OP_EXP:
            dlk_map_exp64(x, out, i0, i1)
        elif op == OP_SIGMOID:
            dlk_map_sigmoid64(x, out, i0, i1)
        elif op == OP_TANH:
            dlk_map_tanh64(x, out, i0, i1)
        elif op == OP_SOFTPLUS:
            dlk_map_softplus64(x, out, i0, i1)
        else:
            dlk_map_log_sigmoid64(x, out, i0, i1)


def map_unary(int op, floating[::1] x, floating[::1] out):
    """out[i] = f(x[i]) (f by ``op``), serial."""
    with nogil:
        _map_range(op, &x[0] if x.shape[0] else NULL, &out[0] if out.shape[0] else NULL,
                   0, x.shape[0])


def pmap_unary(int op, floating[::1] x, floating[::1] out):
    """``map_unary`` over chunks of 16384 elements in parallel (OpenMP)."""
    cdef Py_ssize_t n = x.shape[0], c, nchunks = (n + _MAP_CHUNK - 1) // _MAP_CHUNK
    if n == 0:
        return
    for c in prange(nchunks, nogil=True, schedule="static"):
        _map_range(op, &x[0], &out[0], c * _MAP_CHUNK, min(n, (c + 1) * _MAP_CHUNK))
