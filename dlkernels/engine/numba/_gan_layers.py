"""GAN layer kernels (Numba backend; re-exported by ``gan``): fused MLP layers and
losses from logits.

Same names, arguments and semantics as ``dlkernels.engine.cython.gan``; no
input validation here (that is ``dlkernels.bindings.gan``' job).  All arrays
are C-contiguous and share one float dtype (float32 or float64); ``idx`` is
int32.  Both backends perform the same IEEE operations in the same order, so
they return bit-identical results.

Conventions.  A layer maps X (B, n_in) to Y (B, n_out) with weights
W (n_in, n_out * p) and bias b (n_out * p,), p = 1 except for maxout.  Codes of
the activations: ``IDENTITY`` 0, ``RELU`` 1, ``LEAKY_RELU`` 2, ``TANH`` 3,
``SIGMOID`` 4, ``MAXOUT`` 5.  Maxout unit j takes the largest of the p
pre-activations in columns ``j*p .. j*p + p - 1`` (the first on ties).

* ``layer_forward(X, W, b, act, slope, PRE, Y, D, idx, need_d)``: one GEMM
  through BLAS (``gemm_tiled``: ``_blas.gemm_at``, the ``?gemm`` of
  scipy.linalg.cython_blas, the same calls as the Cython backend; in parallel
  output tiles for large products) into Y (or into PRE (B, n_out*p) for
  maxout), then one pass adding the bias and applying the activation, which
  also writes act'(pre) into D (B, n_out) (maxout: the arg-max piece into
  idx (B, n_out)) when ``need_d``.  PRE, D, idx are untouched when unused.
* ``layer_backward(X, W, GY, D, idx, act, GPRE, GX, GW, gb, need_gx,
  need_gw)``: one pass forming the gradient of the pre-activations
  GPRE = GY * D (maxout: GY scattered to the arg-max column, zeros elsewhere;
  GPRE (B, n_out*p)), accumulating gb = sum over rows of GPRE (rows in order)
  in the same pass; then GW = X^T GPRE and GX = GPRE W^T by GEMM (each only
  when asked).  For the other activations GPRE may be GY itself (in place).
* ``logit_loss(L, n_real, mode, G)``: the loss (float64 sum, rows in order,
  divided by the number of rows it averages over) and its gradient G with
  respect to the logits L (B, 1).  mode 0 (discriminator): rows < n_real are
  real, the rest fake, loss = (1/m) sum softplus(-l_real) + softplus(l_fake)
  with m = n_real (the negative of the ascended objective); mode 1 (minimax
  generator): loss = -(1/B) sum softplus(l) (= (1/B) sum log(1 - D));
  mode 2 (non-saturating): loss = (1/B) sum softplus(-l) (= -(1/B) sum log D).
  Softplus and sigmoid are the stable ``_fastmath`` forms, so logits of any
  size (+-1e4 in float32) give finite losses and gradients.

No kernel allocates anything but the few bytes of the GEMM calls.  Large
GEMMs run in parallel tiles (``gemm_tiled``), with the BLAS single-threaded;
the element-wise passes run on the calling thread.  No random numbers are drawn here.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from ._flags import CALLS_PARALLEL
from ._blas import gemm_at, gemm_tiles
from ._fastmath import sigmoid as _sig, softplus as _softplus, tanh as _tanh

__all__ = ["IDENTITY", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "MAXOUT", "TILE_R", "TILE_C",
           "PAR_MIN_WORK", "SMALL_DIM", "layer_forward", "layer_backward", "logit_loss"]

IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, MAXOUT = 0, 1, 2, 3, 4, 5


# ---- dtype-resolved scalar helpers (chosen at typing time) -----------------------------------
def _like(x, v):
    """v converted to the float type of x."""
    raise NotImplementedError


@overload(_like)
def _ov_like(x, v):
    if x == types.float32:
        return lambda x, v: np.float32(v)
    return lambda x, v: np.float64(v)


# ---- GEMM in tiles --------------------------------------------------------------------------
# A product of at least PAR_MIN_WORK multiply-adds is computed in tiles of the
# output (TILE_R rows x equal column tiles of at most TILE_C), one
# single-threaded BLAS call per tile, tiles in parallel (the shared driver
# ``_blas.gemm_tiles``); smaller products are one BLAS call.  The tiling depends on the sizes only (never on
# the thread count) and the Cython backend uses the same one, so results are
# bit-identical for any thread count and either backend.  The BLAS must be
# single-threaded meanwhile (the bindings enter ``blas_single_threaded``).
TILE_R = 256
TILE_C = 128
PAR_MIN_WORK = 1 << 23


@njit(cache=True, error_model="numpy")
def _tiles(M, N):
    ntr = (M + TILE_R - 1) // TILE_R
    th = (M + ntr - 1) // ntr
    ntc = (N + TILE_C - 1) // TILE_C
    tw = (N + ntc - 1) // ntc
    return ntr, th, ntc, tw


# A product op(A) B with a dimension of at most SMALL_DIM (A^T B) or an inner
# dimension K of at most SMALL_DIM (A B) is computed by plain loops, not BLAS:
# with so thin an operand a BLAS call spends most of its time packing panels it
# uses once (the first and last layers of small MLPs: 3-15 us a call against
# 0.5-3 us of loops).  Each element is summed over k in order from 0, in both
# backends.
SMALL_DIM = 4
_SMALL_T_VEC = 8      # A^T B with fewer columns than this: vectorized over rows instead


@njit(cache=True, error_model="numpy")
def _gemm_small(ta, M, N, K, A, lda, B, ldb, C, ldc):
    """Row-major C (M, N) = op(A) B by loops (see SMALL_DIM), A, B, C flat.  The
    inner loops index row views from 0 (no negative-index fix-up: they vectorize)."""
    if ta and N < _SMALL_T_VEC:
        # C^T row by row, the inner loop over the M contiguous entries of a row of A
        T = np.empty(M, C.dtype)
        for j in range(N):
            for i in range(M):
                T[i] = 0.0
            for k in range(K):
                b = B[k * ldb + j]
                ar = A[k * lda:k * lda + M]
                for i in range(M):
                    T[i] = T[i] + ar[i] * b
            for i in range(M):
                C[i * ldc + j] = T[i]
        return
    for i in range(M):
        cr = C[i * ldc:i * ldc + N]
        for j in range(N):
            cr[j] = 0.0
        for k in range(K):
            a = A[k * lda + i] if ta else A[i * lda + k]
            br = B[k * ldb:k * ldb + N]
            for j in range(N):
                cr[j] = cr[j] + a * br[j]


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def gemm_tiled(ta, tb, M, N, K, A, lda, B, ldb, C, ldc):
    """Row-major C (M, N) = op(A) op(B) (row strides lda, ldb, ldc), in
    parallel tiles when the product is large enough, by loops when it is thin
    (see above)."""
    if not tb and (K <= SMALL_DIM or (ta and min(M, N) <= SMALL_DIM)):
        _gemm_small(ta, M, N, K, A.reshape(A.size), lda, B.reshape(B.size), ldb,
                    C.reshape(C.size), ldc)
        return
    if M * N * K < PAR_MIN_WORK:
        z = M - M     # a run-time 0: literal arguments would compile gemm_at once more
        gemm_at(ta, tb, M, N, K, 1.0, A, z, lda, B, z, ldb, 0.0, C, z, ldc)
        return
    ntr, th, ntc, tw = _tiles(M, N)
    gemm_tiles(ta, tb, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc, th, tw, np.bool_(True))


# ---- element-wise passes ---------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _act_pass(Y, b, act, slope, D, need_d):
    """Y = act(Y + b) in place (Y holds x W), D = act'(Y + b) when need_d."""
    B, n = Y.shape
    one = _like(slope, 1.0)
    zero = _like(slope, 0.0)
    for r in range(B):
        y = Y[r]
        if act == IDENTITY:
            for c in range(n):
                y[c] = y[c] + b[c]
            if need_d:
                d = D[r]
                for c in range(n):
                    d[c] = one
        elif act == RELU or act == LEAKY_RELU:
            # below zero: ReLU +0 (and +0 for NaN), leaky ReLU v * slope; the
            # test is loop-invariant, so each element costs one select more
            relu = act == RELU
            if need_d:
                d = D[r]
                for c in range(n):
                    v = y[c] + b[c]
                    pos = v > zero
                    y[c] = v if pos else (zero if relu else v * slope)
                    d[c] = one if pos else (zero if relu else slope)
            else:
                for c in range(n):
                    v = y[c] + b[c]
                    y[c] = v if v > zero else (zero if relu else v * slope)
        else:
            if act == TANH:
                for c in range(n):
                    y[c] = _tanh(y[c] + b[c])
            else:  # SIGMOID
                for c in range(n):
                    y[c] = _sig(y[c] + b[c])
            if need_d:
                # from the output t: tanh' = 1 - t^2, sigmoid' = t (1 - t)
                th = act == TANH
                d = D[r]
                for c in range(n):
                    t = y[c]
                    d[c] = one - t * t if th else t * (one - t)


@njit(cache=True, error_model="numpy")
def _maxout_pass(PRE, b, Y, idx, need_d):
    """Y[r, j] = max_q PRE[r, j*p+q] + b[j*p+q] (first max on ties), idx = arg-max."""
    B, n = Y.shape
    p = PRE.shape[1] // n
    for r in range(B):
        pr = PRE[r]
        y = Y[r]
        for j in range(n):
            c0 = j * p
            best = pr[c0] + b[c0]
            bi = 0
            for q in range(1, p):
                v = pr[c0 + q] + b[c0 + q]
                if v > best:
                    best = v
                    bi = q
            y[j] = best
            if need_d:
                idx[r, j] = bi


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def layer_forward(X, W, b, act, slope, PRE, Y, D, idx, need_d):
    """Y = act(X W + b), D = act'(X W + b) / idx = maxout arg-max when need_d
    (see the module docstring)."""
    B, K = X.shape
    N = W.shape[1]
    no = B < 0        # run-time False: a literal would compile gemm_tiled once per value
    if act == MAXOUT:
        gemm_tiled(no, no, B, N, K, X, K, W, N, PRE, N)
        _maxout_pass(PRE, b, Y, idx, need_d)
    else:
        gemm_tiled(no, no, B, N, K, X, K, W, N, Y, N)
        _act_pass(Y, b, act, slope, D, need_d)


@njit(cache=True, error_model="numpy")
def _grad_pass(GY, D, idx, maxout, GPRE, gb, need_gw):
    """GPRE = the gradient at the pre-activation: GY * D (GPRE may be GY), or
    with ``maxout`` GPRE[r, j*p + idx[r, j]] = GY[r, j] and zeros elsewhere;
    gb = column sums of GPRE (rows in order) when need_gw."""
    B, n = GY.shape
    N = GPRE.shape[1]
    p = N // n
    if need_gw:
        for c in range(N):
            gb[c] = 0.0
    for r in range(B):
        g = GPRE[r]
        if maxout:
            for c in range(N):
                g[c] = 0.0
            for j in range(n):
                g[j * p + idx[r, j]] = GY[r, j]
        else:
            gy = GY[r]
            d = D[r]
            for c in range(n):
                g[c] = gy[c] * d[c]
        if need_gw:
            for c in range(N):
                gb[c] += g[c]


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def layer_backward(X, W, GY, D, idx, act, GPRE, GX, GW, gb, need_gx, need_gw):
    """Gradients of a layer from the gradient GY of its output (see the module
    docstring): GPRE, gb (need_gw), GW = X^T GPRE (need_gw), GX = GPRE W^T
    (need_gx)."""
    B, K = X.shape
    N = W.shape[1]
    no = B < 0        # run-time bools (see layer_forward)
    yes = not no
    _grad_pass(GY, D, idx, act == MAXOUT, GPRE, gb, need_gw)
    if need_gw:
        gemm_tiled(yes, no, K, N, B, X, K, GPRE, N, GW, N)
    if need_gx:
        gemm_tiled(no, yes, B, K, N, GPRE, N, W, N, GX, K)


@njit(cache=True, error_model="numpy")
def logit_loss(L, n_real, mode, G):
    """Loss from the logits L (B, 1) and its gradient G (B, 1) (module docstring)."""
    B = L.shape[0]
    acc = 0.0
    if mode == 0:
        m = n_real
    else:
        m = B
    one = _like(L[0, 0], 1.0)
    inv = one / _like(L[0, 0], m)
    for r in range(B):
        l = L[r, 0]
        if mode == 0 and r < n_real:
            acc += np.float64(_softplus(-l))
            G[r, 0] = -_sig(-l) * inv
        elif mode == 0 or mode == 1:
            acc += np.float64(_softplus(l))
            G[r, 0] = (-_sig(l) if mode == 1 else _sig(l)) * inv
        else:
            acc += np.float64(_softplus(-l))
            G[r, 0] = -_sig(-l) * inv
    if mode == 1:
        return -acc / m
    return acc / m
