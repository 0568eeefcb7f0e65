"""BLAS for the Numba kernels of every family (shared; no family imports another's),
and the array plumbing around it: ownerless views (``borrowed``, ``carve``),
stack arguments (``byref``, ``scalar_as``), row copies (``copy_rows``).

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

__all__ = ["borrowed", "byref", "carve", "copy_rows", "gemm_at", "gemm_tiles", "ptr",
           "scalar_as"]

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


@intrinsic
def carve(typingctx, flat, off, rows, cols):
    """The C-contiguous (rows, cols) array at element ``off`` of the 1-d C
    array ``flat``, ownerless like ``borrowed`` (for scratch carved from a
    buffer that outlives every use of the view).  No bounds check: the caller
    sizes the buffer.  (``reshape`` of a slice would do, but compiles Numba's
    shape-mismatch error path -- seconds of a cold start.)"""
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"
            and all(isinstance(x, types.Integer) for x in (off, rows, cols))):
        return None
    ret = types.Array(flat.dtype, 2, "C")
    sig = ret(flat, off, rows, cols)

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        dst = context.make_array(ret)(context, builder)
        o, r, c = (context.cast(builder, v, t, types.intp)
                   for v, t in zip(args[1:], signature.args[1:]))
        item = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(flat.dtype)))
        context.populate_array(dst, data=builder.gep(src.data, [o]),
                               shape=cgutils.pack_array(builder, [r, c]),
                               strides=cgutils.pack_array(builder, [builder.mul(c, item), item]),
                               itemsize=item, meminfo=None)
        return dst._getvalue()

    return sig, codegen


@intrinsic
def byref(typingctx, val):
    """void* to a copy of the scalar ``val`` in the calling function's stack
    frame (valid until it returns): Fortran-style by-reference arguments
    without a heap allocation (``gemm_at`` made three per call, for its
    integers, characters and scalars)."""
    if not isinstance(val, (types.Integer, types.Float)):
        return None
    sig = types.voidptr(val)

    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, context.get_value_type(signature.args[0]))
        builder.store(args[0], slot)
        return builder.bitcast(slot, cgutils.voidptr_t)

    return sig, codegen


@intrinsic
def scalar_as(typingctx, arr, val):
    """``val`` converted to the dtype of the array ``arr`` (as storing it in
    such an array would: the same rounding), without an array."""
    if not isinstance(arr, types.Array) or not isinstance(val, (types.Integer, types.Float)):
        return None
    sig = arr.dtype(arr, val)

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[1], signature.args[1], signature.return_type)

    return sig, codegen


@njit(cache=True, error_model="numpy")
def copy_rows(dst, d0, src, s0, n):
    """dst[d0 + i, :] = src[s0 + i, :] for i < n (2-d, same row length).  A loop,
    not a slice assignment: that one compiles Numba's shape-mismatch error path
    with its message formatting, seconds of a cold start."""
    for i in range(n):
        for j in range(src.shape[1]):
            dst[d0 + i, j] = src[s0 + i, j]


_N = np.uint8(ord("N"))
_T = np.uint8(ord("T"))


@njit(cache=True, error_model="numpy")
def gemm_at(ta, tb, M, N, K, alpha, A, offa, lda, B, offb, ldb, beta, C, offc, ldc):
    """Row-major C[offc..] (M, N, row stride ldc) = alpha op(A) op(B) + beta C,
    A, B read from element offa / offb with row strides lda / ldb (op = transpose
    when ta / tb).  Row-major C is column-major C^T = op(B)^T op(A)^T, so this calls
    ?gemm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc) -- exactly the call of
    the Cython backend.  A, B, C share one float dtype (float32 -> sgemm, else dgemm).
    The by-reference arguments live on the stack (``byref``).
    """
    cb = _T if tb else _N
    ca = _T if ta else _N
    al = scalar_as(C, alpha)
    be = scalar_as(C, beta)
    if C.itemsize == 4:
        _sgemm(byref(cb), byref(ca), byref(np.int32(N)), byref(np.int32(M)),
               byref(np.int32(K)), byref(al), ptr(B, offb), byref(np.int32(ldb)), ptr(A, offa),
               byref(np.int32(lda)), byref(be), ptr(C, offc), byref(np.int32(ldc)))
    else:
        _dgemm(byref(cb), byref(ca), byref(np.int32(N)), byref(np.int32(M)),
               byref(np.int32(K)), byref(al), ptr(B, offb), byref(np.int32(ldb)), ptr(A, offa),
               byref(np.int32(lda)), byref(be), ptr(C, offc), byref(np.int32(ldc)))


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
