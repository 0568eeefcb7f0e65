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
    /* out[i] = f(x[i]) for i in [i0, i1), f by op (OP_EXP .. OP_LOG_SIGMOID),
       multiversioned (DLK_CLONES) so that the loops run in AVX2 / AVX-512
       lanes where the CPU has them (as Numba's do): Cython's own loops would
       be compiled for the x86-64 baseline only. */
    #define DLK_MAP_LOOP(F) for (i = i0; i < i1; i++) out[i] = F(x[i]); break;
    #define DLK_MAP(T, SUF)                                                            \
    DLK_CLONES static void dlk_map_##SUF(int op, const T *restrict x, T *restrict out,  \
                                         Py_ssize_t i0, Py_ssize_t i1) {               \
        Py_ssize_t i;                                                                  \
        switch (op) {                                                                  \
        case 0: DLK_MAP_LOOP(dlk_exp##SUF)                                             \
        case 1: DLK_MAP_LOOP(dlk_sigmoid##SUF)                                         \
        case 2: DLK_MAP_LOOP(dlk_tanh##SUF)                                            \
        case 3: DLK_MAP_LOOP(dlk_softplus##SUF)                                        \
        default: DLK_MAP_LOOP(dlk_log_sigmoid##SUF)                                    \
        }                                                                              \
    }
    DLK_MAP(float, 32)
    DLK_MAP(double, 64)
    """
    void dlk_map_32(int op, const float* x, float* out, Py_ssize_t i0, Py_ssize_t i1) noexcept nogil
    void dlk_map_64(int op, const double* x, double* out, Py_ssize_t i0,
                    Py_ssize_t i1) noexcept nogil


cdef void _map_range(int op, const floating* x, floating* out, Py_ssize_t i0,
                     Py_ssize_t i1) noexcept nogil:
    # the codes of the switch above are the OP_* constants
    if floating is float:
        dlk_map_32(op, x, out, i0, i1)
    else:
        dlk_map_64(op, x, out, i0, i1)


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
