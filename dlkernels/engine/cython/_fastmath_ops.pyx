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


cdef void _map_range(int op, const floating* x, floating* out, Py_ssize_t i0,
                     Py_ssize_t i1) noexcept nogil:
    cdef Py_ssize_t i
    if floating is float:
        if op == OP_EXP:
            for i in range(i0, i1):
                out[i] = dlk_exp32(x[i])
        elif op == OP_SIGMOID:
            for i in range(i0, i1):
                out[i] = dlk_sigmoid32(x[i])
        elif op == OP_TANH:
            for i in range(i0, i1):
                out[i] = dlk_tanh32(x[i])
        elif op == OP_SOFTPLUS:
            for i in range(i0, i1):
                out[i] = dlk_softplus32(x[i])
        else:
            for i in range(i0, i1):
                out[i] = dlk_log_sigmoid32(x[i])
    else:
        if op == OP_EXP:
            for i in range(i0, i1):
                out[i] = dlk_exp64(x[i])
        elif op == OP_SIGMOID:
            for i in range(i0, i1):
                out[i] = dlk_sigmoid64(x[i])
        elif op == OP_TANH:
            for i in range(i0, i1):
                out[i] = dlk_tanh64(x[i])
        elif op == OP_SOFTPLUS:
            for i in range(i0, i1):
                out[i] = dlk_softplus64(x[i])
        else:
            for i in range(i0, i1):
                out[i] = dlk_log_sigmoid64(x[i])


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
