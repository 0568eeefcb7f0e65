"""BLAS for the Numba kernels of every family (shared; no family imports another's).

``gemm_at`` calls the ``?gemm`` of ``scipy.linalg.cython_blas`` -- the BLAS
Numba's own ``np.dot`` uses -- by symbol, with exactly the arguments the
Cython backend's ``_blas.pxd`` ``gemm`` passes, so both backends see
bit-identical products.  Arrays are C-contiguous (any number of dimensions);
positions are flat element offsets.  Inside a ``prange`` loop the BLAS must be
single-threaded (``dlkernels.blas_single_threaded``); the kernels' own tiles
are the parallel work items.
"""
import llvmlite.binding as _llb
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

__all__ = ["gemm_at", "ptr"]

for _nm in ("sgemm", "dgemm"):
    _llb.add_symbol("dlk_cyblas_" + _nm,
                    get_cython_function_address("scipy.linalg.cython_blas", _nm))
_vp = types.voidptr
_sgemm = types.ExternalFunction("dlk_cyblas_sgemm", types.void(*([_vp] * 13)))
_dgemm = types.ExternalFunction("dlk_cyblas_dgemm", types.void(*([_vp] * 13)))


@intrinsic
def ptr(typingctx, arr, off):
    """void* to element ``off`` (flat index) of an array's data."""
    if not isinstance(arr, types.Array) or not isinstance(off, types.Integer):
        return None
    sig = types.voidptr(arr, off)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        return builder.bitcast(builder.gep(ary.data, [idx]), cgutils.voidptr_t)

    return sig, codegen


_N = ord("N")
_T = ord("T")


@njit(cache=True, error_model="numpy")
def gemm_at(ta, tb, M, N, K, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc):
    """Row-major C[offc..] (M, N, row stride ldc) = alpha op(A) op(B) + beta C,
    A, B read from element offa / offb with row strides lda / ldb (op = transpose
    when ta / tb).  Row-major C is column-major C^T = op(B)^T op(A)^T, so this calls
    ?gemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc) -- exactly the call of
    the Cython backend.  A, B, C share one float dtype (float32 -> sgemm, else dgemm).
    """
    ints = np.empty(6, np.int32)
    ints[0] = N
    ints[1] = M
    ints[2] = K
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    ch = np.empty(2, np.uint8)
    ch[0] = _T if tb else _N
    ch[1] = _T if ta else _N
    sc = np.empty(2, C.dtype)
    sc[0] = alpha
    sc[1] = beta
    if C.itemsize == 4:
        _sgemm(ptr(ch, 0), ptr(ch, 1), ptr(ints, 0), ptr(ints, 1), ptr(ints, 2),
               ptr(sc, 0), ptr(B, offb), ptr(ints, 3), ptr(A, offa), ptr(ints, 4),
               ptr(sc, 1), ptr(C, offc), ptr(ints, 5))
    else:
        _dgemm(ptr(ch, 0), ptr(ch, 1), ptr(ints, 0), ptr(ints, 1), ptr(ints, 2),
               ptr(sc, 0), ptr(B, offb), ptr(ints, 3), ptr(A, offa), ptr(ints, 4),
               ptr(sc, 1), ptr(C, offc), ptr(ints, 5))
