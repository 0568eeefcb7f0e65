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
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from ._flags import CALLS_PARALLEL

__all__ = ["borrowed", "gemm_at", "gemm_tiles", "ptr"]

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


@intrinsic
def borrowed(typingctx, arr):
    """The same array view without its owner (meminfo and parent NULL): views
    sliced from it skip the atomic reference-count updates that Numba makes for
    every slice (a row helper called per row and per group of rows paid two
    locked instructions per slice).  Only for arrays that outlive every use of
    the view: a kernel's arguments inside that kernel."""
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(signature.return_type)(context, builder)
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        dst.nitems = src.nitems
        dst.itemsize = src.itemsize
        dst.data = src.data
        dst.shape = src.shape
        dst.strides = src.strides
        return dst._getvalue()

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


# ---- tiled products: one single-threaded gemm per tile of C, tiles in parallel ----
# The tiling is the caller's (its tile sizes are part of its results' bits:
# a BLAS's last bits depend on the call's shape), the driver is shared.

@njit(cache=True, error_model="numpy")
def _gemm_tile(t, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw):
    """Tile t (row-major over ntc tiles per row of tiles) of gemm_tiles."""
    tr = t // ntc
    r0 = tr * th
    c0 = (t - tr * ntc) * tw
    r1 = min(r0 + th, M)
    c1 = min(c0 + tw, N)
    gemm_at(ta, tb, r1 - r0, c1 - c0, K, alpha, A, r0 if ta else r0 * lda, lda, B,
            c0 * ldb if tb else c0, ldb, beta, C, r0 * ldc + c0, ldc)


@njit(cache=True, error_model="numpy", parallel=True)
def _gemm_tiles_par(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw, ntiles):
    for t in prange(ntiles):
        # int64: prange hands its index over as uint64 in the parallel version,
        # int64 in the serial one (two compilations of the callee otherwise)
        _gemm_tile(np.int64(t), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc,
                   tw)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def gemm_tiles(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, tw, par):
    """Row-major C (M, N, row stride ldc) = alpha op(A) op(B) + beta C in tiles of
    th x tw elements of C, one ``gemm_at`` call each (A, B with row strides
    lda, ldb, read from their first element); the tiles run in parallel when
    ``par`` and there are several (the BLAS must then be single-threaded).
    Pass alpha / beta as float64 and ta / tb / par as np.bool_ (one
    compilation per dtype for every caller).  Twin: ``_blas.pxd``'s
    ``gemm_tiles``; the tiles, not the threads, decide every bit."""
    ntc = (N + tw - 1) // tw
    ntiles = ((M + th - 1) // th) * ntc
    if par and ntiles > 1:
        _gemm_tiles_par(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw,
                        ntiles)
    else:
        for t in range(ntiles):
            _gemm_tile(t, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, th, ntc, tw)
