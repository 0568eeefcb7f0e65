"""Attention kernels (Numba backend): scores, masked softmax, fused attention,
Luong local attention, attention pooling over ragged segments; forward and
backward.

Contract (shared with the Cython twin ``_attn.pxi``, which has the same
names, arguments and semantics and gives the same bits):

* No validation here: the bindings (``dlkernels.bindings.attention``) check
  shapes, dtypes and ranges and hand over C-contiguous arrays of one float
  dtype (float32 or float64); index arrays are int64, boolean masks uint8.
* The projections of the score functions (q Wq, k Wk, q W, ...) are GEMMs in
  tiles of PROJ_ROWS rows within each batch row (``attn_project``; a tile of
  at most PROJ_SMALL rows is a loop): the same calls wherever a projection is
  made, so it has the same bits in the fused forward (``attn_fwd_proj``,
  which projects inside its work items and never allocates the
  projections), in ``attn_project`` (the backward, ``scores``,
  ``project_keys``) and in either backend.  The score kernels take the
  projections in two shapes:
  ``Qp`` (B, Tq, E), one projected query per row, and ``Kp`` (B, Tk, E), one
  projected key per row (the keys as the user holds them for "dot",
  "scaled_dot" and "general": no transposed copy).  Two score kinds cover
  the five score functions:

  - ``SCORE_DOT``  (0): ``s[b,i,j] = scale * dot(Qp[b,i], Kp[b,j])``
    (dot, scaled dot, general);
  - ``SCORE_TANH`` (1): ``s[b,i,j] = dot(vv, tanh(Qp[b,i] + Kp[b,j]))``
    (additive, concat: the bias is folded into Qp).  The (B, Tq, Tk, E)
    tensor is never built: one key's E tanh values are made in a scratch
    row and reduced at once.  With Tq >= TANH_PAIR_ROWS the tanh of a pair
    of rows both within +-TANH_PAIR_MAX comes from exponentials made once
    per query and per key (``_fastmath.tanh_pair32``, <= 2.5 ulp).

  ``dot`` sums over the features in a fixed 8-lane order (lane t takes the
  features e = t mod 8 of the full blocks of 8; the lanes are combined
  ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), then the tail is
  added in order): the order of ``_sdpa._dot_lanes`` and of the C twin.

* Masks: key j of row (b, i) is attended iff ``j < L[b]``, ``j <= i + Tk - Tq``
  when ``causal`` (bottom-right aligned), and by ``mmode``: 0 no mask; 1 a
  uint8 mask ``mb`` (nonzero = attend); 2 a float mask ``mf`` added to the
  score (-inf = not attended).  Mask element (b, i, j) is read at
  ``b*msb + i*msq + j*msk`` (strides 0 on broadcast axes).  A row with no
  attended key gets weights 0 and context 0; scores, keys and values at
  positions not attended are never read into a result.
* Non-finite input (``attn_fwd`` / ``attn_fwd_proj`` with ``check``): row r
  = (b, i) sets ``bad[r]`` = 1 when its query row (``Qp[b, i]``; the
  unprojected ``Xq[b, i]`` in ``attn_fwd_proj``) is non-finite, when, among
  the keys j below its limit (``L[b]`` and causality), a score is
  non-finite (SCORE_DOT: a non-finite key always gives one, 0 * inf being
  NaN; or finite inputs overflowed), or (SCORE_TANH: tanh(inf) is finite,
  so the keys are scanned, once per batch row and work item) a projected
  key below the limit is, or when its context is (an attended non-finite
  value always reaches it); else 0.  The checks read what the row's pass
  reads, so they add no pass over memory.  The binding then decides
  exactly which input is bad and, for keys and values, from the mask,
  whether an attended position is (the kernels never use a score or value
  at a position not attended, so a bad one elsewhere does not change the
  results).
* Summation orders are fixed (keys ascending, features ascending or the
  8-lane order above) and the same in both backends; every parallel work
  item (a chunk of query rows, a batch row in the backward, a run of
  segments) writes only its own outputs, so results do not depend on the
  thread count.
* The gradients' products: ``attn_gemm`` (tiles of PROJ_ROWS rows of the
  product, one single-threaded GEMM per tile, tiles in parallel); it and
  the projecting kernels are called inside ``blas_single_threaded``.
  Doing them on the kernels' own threads, not in NumPy's multi-threaded
  BLAS, keeps two thread pools from spinning against each other between a
  projection and a kernel.
* No random numbers are drawn.
"""
import math

import numpy as np
from numba import njit, prange

__all__ = ["SCORE_DOT", "SCORE_TANH", "PROJ_ROWS", "POOL_ROWS", "POOL_SCRATCH",
           "PROJ_SMALL", "TANH_PAIR_ROWS", "attn_gemm", "attn_scores", "attn_softmax",
           "attn_fwd", "attn_fwd_proj", "attn_project", "attn_bwd", "attn_local_fwd",
           "attn_local_bwd", "attn_pool_fwd", "attn_pool_bwd"]

SCORE_DOT = 0
SCORE_TANH = 1

#: rows of X per work item of ``attn_pool_fwd`` (whole segments are added
#: to a work item until it has at least this many rows) and per gemm inside
#: it (256 x H x A: large enough that a BLAS call's fixed cost does not
#: count, small enough for a fixed scratch whatever a segment's length)
POOL_ROWS = 256
#: at most this many elements of scratch per work item of ``attn_pool_fwd``:
#: a gemm block has POOL_ROWS rows, or fewer when A is larger than
#: POOL_SCRATCH / POOL_ROWS (``_pool_block``; at least one row)
POOL_SCRATCH = 1 << 20

#: rows of the product per work item of ``attn_gemm``, and per tile of a
#: projection (``attn_project``, ``attn_fwd_proj``: tiles of PROJ_ROWS rows
#: within each batch row, one gemm each -- a BLAS's bits depend on the rows
#: of the call, so every projection of a batch row is made by the same calls
#: and the forward, the backward and ``project_keys`` see the same bits).
#: Fixed: the tiling, hence the bits, depend on the sizes only; 128 rows keep
#: a GEMM tile near its peak rate for any inner size while giving 2-8 threads
#: enough tiles
PROJ_ROWS = 128

#: the tanh score ("additive", "concat") of a batch row with at least this
#: many queries takes its tanh from exponentials made once per query and per
#: key (``_fastmath.tanh_pair32``: exp(2|q + k|) = exp(2q) exp(2k) (or their
#: inverses), one product per element instead of an exp; ~2x the tanh rate):
#: 2 E exps per query and per key then serve Tq Tk E tanh.  Below it (a
#: decoding step) they would not pay.  Per (query, key) pair only when all of
#: both rows' projected features are within +-TANH_PAIR_MAX (finite
#: products); else the plain tanh.  Sizes and values decide it, never the
#: work division: the same bits from every kernel and thread count.
TANH_PAIR_ROWS = 4

#: a projection tile of at most this many rows is a plain loop, not a gemm
#: call: a BLAS packs all of W (K x E) on every call, which costs about as
#: much as 8-16 rows of the product (measured: sgemm 2-17 GFLOP/s at 1-8 rows
#: against the loop's 15-26, K = E = 256) -- a decoding step projects one
#: query per batch row
PROJ_SMALL = 8


from ._blas import gemm_at, gemm_tiles
from ._flags import CALLS_PARALLEL
from ._fastmath import all_finite
from ._fastmath import exp as _exp, tanh as _tanh, tanh_pair as _tanh_pair, TANH_PAIR_MAX
from ._sdpa import _dot_lanes


@njit(cache=True, error_model="numpy")
def _score_row(kind, Qp, Kp, vv, sc, b, i, j0, n, s, T, keep):
    """s[0:n] = scores of query (b, i) with keys j0..j0+n-1.  SCORE_TANH: the
    tanh values of key j0+jj go to row jj of T (n, E) when ``keep``, else to
    row 0 (scratch)."""
    E = Qp.shape[2]
    qr = Qp[b, i]
    if kind == SCORE_DOT:
        for jj in range(n):
            s[jj] = sc * _dot_lanes(qr, 0, Kp[b, j0 + jj], 0, E)
    else:
        for jj in range(n):
            t = T[jj] if keep else T[0]
            kr = Kp[b, j0 + jj]
            for e in range(E):
                t[e] = _tanh(qr[e] + kr[e])
            s[jj] = _dot_lanes(vv, 0, t, 0, E)


@njit(cache=True, error_model="numpy")
def _pair_row(x, P, N):
    """P = exp(2x), N = exp(-2x) for the row x (E,); whether all |x| <=
    TANH_PAIR_MAX (NaN: no)."""
    lim = x.dtype.type(TANH_PAIR_MAX)
    two = x.dtype.type(2.0)
    for e in range(x.shape[0]):   # two loops: LLVM vectorizes each, not the pair
        a = x[e]
        P[e] = _exp(two * a)
        N[e] = _exp(-two * a)
    nbad = 0
    for e in range(x.shape[0]):
        a = x[e]
        nbad += 0 if (a <= lim) & (a >= -lim) else 1
    return nbad == 0


@njit(cache=True, error_model="numpy")
def _pair_keys(Kp, b, n, KP, KN, kok):
    """The exponentials and range flags of keys 0..n-1 of Kp[b] (TANH_PAIR_ROWS)."""
    for j in range(n):
        kok[j] = 1 if _pair_row(Kp[b, j], KP[j], KN[j]) else 0


@njit(cache=True, error_model="numpy")
def _pair_scratch(kind, Tq, Tk, E, like):
    """(pair, EP, EN, KP, KN, kok) of a work item: whether its tanh rows take
    the exponentials (the TANH_PAIR_ROWS rule, the same for every kernel), the
    query's EP, EN (E,) and the keys' KP, KN (m, E), kok (m,), m = Tk when they
    do (else 1); ``like``: an array of the dtype."""
    dt = like.dtype
    pair = kind == SCORE_TANH and Tq >= TANH_PAIR_ROWS
    m = Tk if pair else 1
    return (pair, np.empty(E, dt), np.empty(E, dt), np.empty((m, E), dt), np.empty((m, E), dt),
            np.empty(m, np.uint8))


@njit(cache=True, error_model="numpy")
def _tanh_row(Qp, Kp, vv, b, i, n, s, T, keep, pair, EP, EN, KP, KN, kok):
    """SCORE_TANH scores of query (b, i) with keys 0..n-1 (as _score_row);
    with ``pair`` (TANH_PAIR_ROWS; the keys' KP, KN, kok made by _pair_keys)
    a pair whose rows are both in range takes tanh_pair, else tanh."""
    E = Qp.shape[2]
    qr = Qp[b, i]
    qok = pair and _pair_row(qr, EP, EN)
    for jj in range(n):
        t = T[jj] if keep else T[0]
        kr = Kp[b, jj]
        if qok and kok[jj] != 0:
            kp = KP[jj]
            kn = KN[jj]
            for e in range(E):
                t[e] = _tanh_pair(qr[e] + kr[e], EP[e] * kp[e], EN[e] * kn[e])
        else:
            for e in range(E):
                t[e] = _tanh(qr[e] + kr[e])
        s[jj] = _dot_lanes(vv, 0, t, 0, E)


@njit(cache=True, error_model="numpy")
def _row_lim(b, i, Tq, Tk, L, causal):
    """Keys j < this may be attended by row (b, i) (lengths and causality)."""
    lim = L[b]
    if causal:
        c = i + Tk - Tq + 1
        if c < lim:
            lim = c
    return max(lim, 0)


@njit(cache=True, error_model="numpy")
def _row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok):
    """ok[j] = 1 where key j is attended by row (b, i); adds a float mask to s."""
    lim = _row_lim(b, i, Tq, Tk, L, causal)
    base = b * msb + i * msq
    ninf = s.dtype.type(-np.inf)
    for j in range(Tk):
        if j >= lim:
            ok[j] = 0
        elif mmode == 1:
            ok[j] = 1 if mb[base + j * msk] != 0 else 0
        elif mmode == 2:
            f = mf[base + j * msk]
            if f == ninf:
                ok[j] = 0
            else:
                ok[j] = 1
                s[j] = s[j] + f
        else:
            ok[j] = 1


@njit(cache=True, error_model="numpy")
def _softmax_row(s, ok, n, w):
    """w[0:n] = softmax of s over the positions with ok; 0 elsewhere; all 0 (and
    False returned) when no position is attended."""
    m = s.dtype.type(-np.inf)
    for j in range(n):
        if ok[j] != 0 and s[j] > m:
            m = s[j]
    zero = s.dtype.type(0.0)
    if m == s.dtype.type(-np.inf):
        for j in range(n):
            w[j] = zero
        return False
    z = zero
    for j in range(n):
        if ok[j] != 0:
            e = _exp(s[j] - m)
            w[j] = e
            z += e
        else:
            w[j] = zero
    for j in range(n):
        w[j] = w[j] / z
    return True


@njit(cache=True, error_model="numpy")
def _weighted_sum(w, ok, n, V, b, j0, out, i):
    """out[b, i, :] = sum over attended jj of w[jj] * V[b, j0 + jj, :]."""
    Dv = V.shape[2]
    zero = w.dtype.type(0.0)
    for d in range(Dv):
        out[b, i, d] = zero
    for jj in range(n):
        if ok[jj] != 0:
            a = w[jj]
            for d in range(Dv):
                out[b, i, d] += a * V[b, j0 + jj, d]


@njit(cache=True, error_model="numpy", inline="always")
def _attend_row(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok, w, n, V, j0, out):
    """Row (b, i) of a forward once its scores s are made: the attended keys
    (ok, a float mask added to s), the softmax weights w and out[b, i] = the
    weighted sum of the rows V[b, j0 + jj] (the two forward kernels' common
    tail; inlined: no call in the row loop)."""
    _row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
    _softmax_row(s, ok, Tk, w)
    _weighted_sum(w, ok, n, V, b, j0, out, i)


@njit(cache=True, error_model="numpy")
def _score_bwd_row(kind, Qp, Kp, vv, sc, b, i, j0, n, ds, ok, T, dQp, dKp, dvv, acc):
    """Backward of _score_row for query (b, i): dQp[b, i] = (written),
    dKp[b, j0:j0+n] += , dvv[b] += ; ds[jj] = d loss / d s[jj]; T the kept
    tanh values; acc scratch (E,).  Each element sums over the keys in
    ascending order (dQp, dvv) or over the queries (dKp, by the caller's
    loop)."""
    E = Qp.shape[2]
    zero = ds.dtype.type(0.0)
    one = ds.dtype.type(1.0)
    qr = Qp[b, i]
    dq = dQp[b, i]
    for e in range(E):
        dq[e] = zero
    if kind == SCORE_DOT:
        for jj in range(n):
            if ok[jj] != 0:
                g = sc * ds[jj]
                kr = Kp[b, j0 + jj]
                dk = dKp[b, j0 + jj]
                for e in range(E):
                    dq[e] += g * kr[e]
                    dk[e] += g * qr[e]
    else:
        for e in range(E):
            acc[e] = zero
        for jj in range(n):
            if ok[jj] != 0:
                t = T[jj]
                g = ds[jj]
                dk = dKp[b, j0 + jj]
                for e in range(E):
                    d = (g * vv[e]) * (one - t[e] * t[e])
                    dq[e] += d
                    dk[e] += d
                    acc[e] += g * t[e]
        dv = dvv[b]
        for e in range(E):
            dv[e] += acc[e]


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def attn_gemm(ta, tb, A, B, C):
    """C (M, N) = op(A) op(B) (op = transpose when ta / tb; all C-contiguous,
    A (M, K) or (K, M), B (K, N) or (N, K)): tiles of PROJ_ROWS rows of C,
    one single-threaded gemm each, in parallel (the BLAS must be
    single-threaded meanwhile; the shared ``_blas.gemm_tiles``).  The
    gradients' products."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        for r in range(M):
            for c in range(N):
                C[r, c] = 0.0
        return
    gemm_tiles(ta, tb, M, N, K, 1.0, A, A.shape[1], B, B.shape[1], 0.0, C, N, PROJ_ROWS, N,
               np.bool_(True))


# Each parallel kernel is a thin prange driver over work items; the work
# itself is a plain (cached) function, which keeps the parallel compilation
# small: start-up counts.

@njit(cache=True, error_model="numpy")
def _scores_rows(kind, Qp, Kp, vv, sc, r0, r1, out):
    Tq = Qp.shape[1]
    Tk = out.shape[2]
    E = Qp.shape[2]
    scratch = np.empty((1, E), dtype=Qp.dtype)
    z = r0 - r0       # run-time 0 and False: literal arguments would compile the
    no = r0 < z       # callees once more per literal (CONTRIBUTING: Numba habits)
    pair, EP, EN, KP, KN, kok = _pair_scratch(kind, Tq, Tk, E, scratch)
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        if kind == SCORE_DOT:
            _score_row(kind, Qp, Kp, vv, sc, b, i, z, Tk, out[b, i], scratch, no)
        else:
            if pair and (i == 0 or r == r0):
                _pair_keys(Kp, b, Tk, KP, KN, kok)
            _tanh_row(Qp, Kp, vv, b, i, Tk, out[b, i], scratch, no, pair, EP, EN, KP, KN, kok)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_scores(kind, Qp, Kp, vv, scale, out):
    """out (B, Tq, Tk) = the scores of every query with every key."""
    nrows = Qp.shape[0] * Qp.shape[1]
    sc = Qp.dtype.type(scale)
    nch = min(nrows, 256)
    for c in prange(nch):
        _scores_rows(kind, Qp, Kp, vv, sc, c * nrows // nch, (c + 1) * nrows // nch, out)


@njit(cache=True, error_model="numpy")
def _softmax_rows(S, L, causal, mmode, mb, mf, msb, msq, msk, r0, r1, out):
    B, Tq, Tk = S.shape
    s = np.empty(Tk, dtype=S.dtype)
    ok = np.empty(Tk, dtype=np.uint8)
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        for j in range(Tk):
            s[j] = S[b, i, j]
        _row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        _softmax_row(s, ok, Tk, out[b, i])


@njit(cache=True, error_model="numpy", parallel=True)
def attn_softmax(S, L, causal, mmode, mb, mf, msb, msq, msk, out):
    """out (B, Tq, Tk) = masked softmax of S over the keys (out may be S)."""
    nrows = S.shape[0] * S.shape[1]
    nch = min(nrows, 64)
    for c in prange(nch):
        _softmax_rows(S, L, causal, mmode, mb, mf, msb, msq, msk, c * nrows // nch,
                      (c + 1) * nrows // nch, out)


@njit(cache=True, error_model="numpy", inline="always")
def _row_scores(kind, Qp, Kp, vv, sc, b, i, z, n, s, T, no, pair, EP, EN, KP, KN, kok, check,
                kfin):
    """s[:n] = the scores of query (b, i) with keys 0..n-1 of batch row b (z: a
    run-time 0); returns whether they are finite: for dot scores, with
    ``check``, a scan of them (a non-finite key makes its score non-finite);
    for tanh scores the keys' flag ``kfin`` (tanh hides inf)."""
    if kind == SCORE_DOT:
        _score_row(kind, Qp, Kp, vv, sc, b, i, z, n, s, T, no)
        return all_finite(s, z, n) if check else kfin
    _tanh_row(Qp, Kp, vv, b, i, n, s, T, no, pair, EP, EN, KP, KN, kok)
    return kfin


@njit(cache=True, error_model="numpy")
def _fwd_rows(kind, Qp, Kp, vv, sc, V, L, causal, mmode, mb, mf, msb, msq, msk, r0, r1, ctx,
              wout, want_w, check, bad):
    Tq = Qp.shape[1]
    E = Qp.shape[2]
    Tk = V.shape[1]
    Dv = V.shape[2]
    s = np.empty(Tk, dtype=Qp.dtype)
    w = np.empty(Tk, dtype=Qp.dtype)
    ok = np.empty(Tk, dtype=np.uint8)
    scratch = np.empty((1, E), dtype=Qp.dtype)
    z = r0 - r0       # run-time 0 and False (see _scores_rows)
    no = r0 < z
    pair, EP, EN, KP, KN, kok = _pair_scratch(kind, Tq, Tk, E, scratch)
    kfin = True
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        if kind != SCORE_DOT and (i == 0 or r == r0):
            nb = min(L[b], Tk)
            if check:   # tanh hides inf: the keys below L[b], once per batch row and item
                kfin = all_finite(Kp[b].reshape(Tk * E), z, nb * E)
            if pair:
                _pair_keys(Kp, b, nb, KP, KN, kok)
        n = _row_lim(b, i, Tq, Tk, L, causal)
        fin = _row_scores(kind, Qp, Kp, vv, sc, b, i, z, n, s, scratch, no, pair, EP, EN, KP, KN,
                          kok, check, kfin)
        _attend_row(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok, w, n, V, z,
                    ctx)
        if check:  # an attended non-finite value reaches the context (0 * inf is NaN)
            bad[r] = 0 if (fin and all_finite(Qp[b, i], z, E)
                           and all_finite(ctx[b, i], z, Dv)) else 1
        if want_w:
            for j in range(Tk):
                wout[b, i, j] = w[j]


@njit(cache=True, error_model="numpy", parallel=True)
def attn_fwd(kind, Qp, Kp, vv, scale, V, L, causal, mmode, mb, mf, msb, msq, msk, ctx, wout,
             want_w, check, bad):
    """Fused attention: ctx (B, Tq, Dv) and, when ``want_w``, wout (B, Tq, Tk)
    (else wout may be any array).  With ``check``, bad (B * Tq,) uint8 flags
    the query rows that met a non-finite value (module docstring; else bad
    may be any array).  Work item: a chunk of query rows (at most 256 chunks); scratch
    O(Tk + E) per item."""
    nrows = Qp.shape[0] * Qp.shape[1]
    sc = Qp.dtype.type(scale)
    nch = min(nrows, 256)
    for c in prange(nch):
        _fwd_rows(kind, Qp, Kp, vv, sc, V, L, causal, mmode, mb, mf, msb, msq, msk,
                  c * nrows // nch, (c + 1) * nrows // nch, ctx, wout, want_w, check, bad)


@njit(cache=True, error_model="numpy")
def _proj_rows(X, r0, n, W, bias, has_b, out, o0):
    """out[o0:o0+n] = X[r0:r0+n] @ W (+ bias): one single-threaded gemm, or for
    at most PROJ_SMALL rows a loop (X (R, K), W (K, E), out (>= o0 + n, E), all
    2-d C-contiguous); zeros for K == 0."""
    K = X.shape[1]
    E = W.shape[1]
    if n == 0 or E == 0:
        return
    zero = out.dtype.type(0.0)
    if K == 0 or n <= PROJ_SMALL:
        for r in range(o0, o0 + n):
            for e in range(E):
                out[r, e] = zero
        for d in range(K):   # each element summed over d ascending from 0
            for r in range(n):
                a = X[r0 + r, d]
                orow = out[o0 + r]
                wrow = W[d]
                for e in range(E):
                    orow[e] += a * wrow[e]
    else:
        gemm_at(False, False, n, E, K, out.dtype.type(1.0), X, r0 * K, K, W, r0 - r0, E, zero,
                out, o0 * E, E)
    if has_b:
        for r in range(o0, o0 + n):
            for e in range(E):
                out[r, e] = out[r, e] + bias[e]


@njit(cache=True, error_model="numpy")
def _project_item(t, X, W, bias, has_b, out):
    B, T, D = X.shape
    nt = (T + PROJ_ROWS - 1) // PROJ_ROWS
    b = t // nt
    c0 = (t - b * nt) * PROJ_ROWS
    c1 = min(c0 + PROJ_ROWS, T)
    _proj_rows(X.reshape(B * T, D), b * T + c0, c1 - c0, W, bias, has_b,
               out.reshape(B * T, W.shape[1]), b * T + c0)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_project(X, W, bias, has_b, out):
    """out (B, T, E) = X (B, T, D) @ W (D, E) (+ bias (E,) when has_b, else any
    1-d array): tiles of PROJ_ROWS rows within each batch row, one
    single-threaded gemm each, in parallel (the BLAS must be single-threaded
    meanwhile).  The projections of the score functions."""
    B, T, D = X.shape
    nit = B * ((T + PROJ_ROWS - 1) // PROJ_ROWS)
    for t in prange(nit):
        _project_item(np.int64(t), X, W, bias, has_b, out)


@njit(cache=True, error_model="numpy")
def _fwd_proj_item(t, kind, Xq, Wq, bq, has_b, Xk, Wk, Kp, kgiven, vv, sc, V, L, causal, mmode,
                   mb, mf, msb, msq, msk, ctx, wout, want_w, check, bad):
    B, Tq, Dq = Xq.shape
    Tk = V.shape[1]
    Dv = V.shape[2]
    E = Wq.shape[1]
    nqt = (Tq + PROJ_ROWS - 1) // PROJ_ROWS
    b = t // nqt
    i0 = (t - b * nqt) * PROJ_ROWS
    i1 = min(i0 + PROJ_ROWS, Tq)
    nq = i1 - i0
    z = t - t          # run-time 0 and False (see _scores_rows)
    no = t < z
    nk = _row_lim(b, i1 - 1, Tq, Tk, L, causal)   # the most keys a row of the item attends
    Qs = np.empty((nq, E), dtype=V.dtype)
    _proj_rows(Xq.reshape(B * Tq, Dq), b * Tq + i0, nq, Wq, bq, has_b, Qs, z)
    if kgiven:
        Ks = Kp[b]
    else:
        # the key tiles holding keys 0..nk-1 (padding beyond them is not projected)
        Ks = np.empty((Tk, E), dtype=V.dtype)
        X2 = Xk.reshape(B * Tk, Xk.shape[2])
        for c0 in range(z, nk, PROJ_ROWS):
            _proj_rows(X2, b * Tk + c0, min(c0 + PROJ_ROWS, Tk) - c0, Wk, bq, no, Ks, c0)
    Q3 = Qs.reshape(1, nq, E)
    K3 = Ks.reshape(1, Tk, E)
    s = np.empty(Tk, dtype=V.dtype)
    w = np.empty(Tk, dtype=V.dtype)
    ok = np.empty(Tk, dtype=np.uint8)
    scratch = np.empty((1, E), dtype=V.dtype)
    pair, EP, EN, KP, KN, kok = _pair_scratch(kind, Tq, Tk, E, scratch)
    if pair:
        _pair_keys(K3, z, nk, KP, KN, kok)
    kfin = True
    if check and kind != SCORE_DOT:  # tanh hides inf: the keys the item reads
        kfin = all_finite(Ks.reshape(Tk * E), z, nk * E)
    for ii in range(nq):
        i = i0 + ii
        n = _row_lim(b, i, Tq, Tk, L, causal)
        fin = _row_scores(kind, Q3, K3, vv, sc, z, ii, z, n, s, scratch, no, pair, EP, EN, KP, KN,
                          kok, check, kfin)
        _attend_row(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok, w, n, V, z,
                    ctx)
        if check:
            bad[b * Tq + i] = 0 if (fin and all_finite(Xq[b, i], z, Dq)
                                    and all_finite(ctx[b, i], z, Dv)) else 1
        if want_w:
            for j in range(Tk):
                wout[b, i, j] = w[j]


@njit(cache=True, error_model="numpy", parallel=True)
def attn_fwd_proj(kind, Xq, Wq, bq, has_b, Xk, Wk, Kp, kgiven, vv, scale, V, L, causal, mmode,
                  mb, mf, msb, msq, msk, ctx, wout, want_w, check, bad):
    """``attn_fwd`` with the projections made inside the work items, so that
    neither (B, Tq, E) nor (B, Tk, E) is ever allocated: an item is a batch
    row b and a tile of PROJ_ROWS of its queries (i0 = a multiple of
    PROJ_ROWS); it computes ``Xq[b, i0:i1] @ Wq (+ bq when has_b)`` and,
    unless ``kgiven`` (then the projected keys are ``Kp[b]``), ``Xk[b] @ Wk``
    for the key tiles (of PROJ_ROWS keys) that hold the keys its rows may
    attend (lengths, causality: the tiles of padding are not projected) --
    the same gemm calls as ``attn_project``, so the same bits; then the rows
    as in ``attn_fwd``.  A batch row with Tq > PROJ_ROWS projects its keys
    once per query tile: at most Dk / (60 PROJ_ROWS) of the score's tanh
    work (a multiply-add in a GEMM costs ~1/60 of a tanh here), ~3% at Dk =
    256.  Xq (B, Tq, Dq), Wq (Dq, E), Xk (B, Tk, Dk), Wk (Dk, E), Kp (B, Tk,
    E) (any 3-d array unless kgiven; Xk, Wk any 3-d / 2-d arrays when
    kgiven), bq (E,) (any 1-d array unless has_b).  Scratch O((PROJ_ROWS +
    Tk) E) per item; the BLAS must be single-threaded meanwhile; same bits
    for any thread count."""
    B = Xq.shape[0]
    Tq = Xq.shape[1]
    if B * Tq == 0:
        return
    sc = V.dtype.type(scale)
    nit = B * ((Tq + PROJ_ROWS - 1) // PROJ_ROWS)
    for t in prange(nit):
        _fwd_proj_item(np.int64(t), kind, Xq, Wq, bq, has_b, Xk, Wk, Kp, kgiven, vv, sc, V, L,
                       causal, mmode, mb, mf, msb, msq, msk, ctx, wout, want_w, check, bad)


@njit(cache=True, error_model="numpy")
def _bwd_batch(kind, Qp, Kp, vv, sc, V, L, causal, mmode, mb, mf, msb, msq, msk, dctx, gw,
               has_gw, dQp, dKp, dvv, dV, b):
    B, Tq, E = Qp.shape
    Tk = V.shape[1]
    Dv = V.shape[2]
    zero = Qp.dtype.type(0.0)
    s = np.empty(Tk, dtype=Qp.dtype)
    w = np.empty(Tk, dtype=Qp.dtype)
    dw = np.empty(Tk, dtype=Qp.dtype)
    ok = np.empty(Tk, dtype=np.uint8)
    T = np.empty((Tk if kind == SCORE_TANH else 1, E), dtype=Qp.dtype)
    accE = np.empty(E, dtype=Qp.dtype)
    z = b - b         # run-time 0 and True (see _scores_rows)
    yes = b >= z
    pair, EP, EN, KP, KN, kok = _pair_scratch(kind, Tq, Tk, E, T)
    if pair:
        _pair_keys(Kp, b, min(L[b], Tk), KP, KN, kok)
    dvv[b, :] = zero
    dKp[b, :, :] = zero
    dV[b, :, :] = zero
    for i in range(Tq):
        n = _row_lim(b, i, Tq, Tk, L, causal)
        if kind == SCORE_DOT:
            _score_row(kind, Qp, Kp, vv, sc, b, i, z, n, s, T, yes)
        else:
            _tanh_row(Qp, Kp, vv, b, i, n, s, T, yes, pair, EP, EN, KP, KN, kok)
        _row_ok(s, b, i, Tq, Tk, L, causal, mmode, mb, mf, msb, msq, msk, ok)
        if not _softmax_row(s, ok, Tk, w):
            for e in range(E):
                dQp[b, i, e] = zero
            continue
        dot = zero
        for j in range(Tk):
            if ok[j] != 0:
                acc = zero
                for d in range(Dv):
                    acc += dctx[b, i, d] * V[b, j, d]
                if has_gw:
                    acc += gw[b, i, j]
                dw[j] = acc
                dot += w[j] * acc
        for j in range(Tk):
            if ok[j] != 0:
                dw[j] = w[j] * (dw[j] - dot)
                a = w[j]
                for d in range(Dv):
                    dV[b, j, d] += a * dctx[b, i, d]
            else:
                dw[j] = zero
        _score_bwd_row(kind, Qp, Kp, vv, sc, b, i, z, n, dw, ok, T, dQp, dKp, dvv, accE)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_bwd(kind, Qp, Kp, vv, scale, V, L, causal, mmode, mb, mf, msb, msq, msk, dctx, gw,
             has_gw, dQp, dKp, dvv, dV):
    """Backward of attn_fwd (recomputes the scores and weights).  Writes
    dQp (B, Tq, E), dKp (B, Tk, E), dV (B, Tk, Dv) and per-batch-row partial
    sums dvv (B, E) of the score vector's gradient (the caller sums them over
    b; dvv may be (B, 1) for SCORE_DOT).  Work item: one batch row (its keys'
    gradients are its own)."""
    sc = Qp.dtype.type(scale)
    for b in prange(Qp.shape[0]):
        # int64: prange hands its index over as uint64 in the parallel version
        _bwd_batch(kind, Qp, Kp, vv, sc, V, L, causal, mmode, mb, mf, msb, msq, msk, dctx, gw,
                   has_gw, dQp, dKp, dvv, dV, np.int64(b))


@njit(cache=True, error_model="numpy")
def _local_row(kind, Qp, Kp, vv, sc, V, L, p, D, b, i, s, w, g, ok, T, keep):
    """Window of query (b, i): returns (start, lo, n): keys lo..lo+n-1 are
    inside the sequence; s/w/g[0:n] = scores, softmax, Gaussian factors."""
    half = s.dtype.type(0.5)
    pt = p[b, i]
    st = np.int64(math.floor(pt + half)) - D
    lo = st if st > 0 else 0
    hi = st + 2 * D + 1
    if hi > L[b]:
        hi = L[b]
    n = hi - lo
    if n <= 0:
        return st, lo, 0
    _score_row(kind, Qp, Kp, vv, sc, b, i, lo, n, s, T, keep)
    for jj in range(n):
        ok[jj] = 1
    _softmax_row(s, ok, n, w)
    one = s.dtype.type(1.0)
    if D > 0:
        den = s.dtype.type(D * D * 0.5)
        for jj in range(n):
            dl = s.dtype.type(lo + jj) - pt
            g[jj] = _exp(-(dl * dl) / den)
    else:
        for jj in range(n):
            g[jj] = one
    return st, lo, n


@njit(cache=True, error_model="numpy")
def _window_scratch(Qp, nw):
    """Scratch of one local-attention window of nw keys: scores, weights,
    Gaussian factors (Qp's dtype) and the keys' flags."""
    return (np.empty(nw, dtype=Qp.dtype), np.empty(nw, dtype=Qp.dtype),
            np.empty(nw, dtype=Qp.dtype), np.empty(nw, dtype=np.uint8))


@njit(cache=True, error_model="numpy")
def _local_fwd_rows(kind, Qp, Kp, vv, sc, V, L, p, D, r0, r1, starts, ctx, wout):
    Tq = Qp.shape[1]
    nw = 2 * D + 1
    zero = Qp.dtype.type(0.0)
    s, w, g, ok = _window_scratch(Qp, nw)
    scratch = np.empty((1, Qp.shape[2]), dtype=Qp.dtype)
    no = r0 < r0 - r0  # run-time False (see _scores_rows)
    for r in range(r0, r1):
        b = r // Tq
        i = r - b * Tq
        st, lo, n = _local_row(kind, Qp, Kp, vv, sc, V, L, p, D, b, i, s, w, g, ok, scratch,
                               no)
        starts[b, i] = st
        for jj in range(nw):
            wout[b, i, jj] = zero
        for jj in range(n):
            w[jj] = w[jj] * g[jj]
            wout[b, i, lo - st + jj] = w[jj]
        _weighted_sum(w, ok, n, V, b, lo, ctx, i)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_local_fwd(kind, Qp, Kp, vv, scale, V, L, p, D, starts, ctx, wout):
    """Luong local attention at positions p (B, Tq): window keys
    start..start+2D (start = floor(p + 1/2) - D, written to starts (B, Tq)),
    softmax over those inside [0, L[b]), times exp(-(j - p)^2 / (D^2 / 2))
    (sigma = D/2; factor 1 when D = 0).  wout (B, Tq, 2D+1): 0 outside."""
    nrows = Qp.shape[0] * Qp.shape[1]
    sc = Qp.dtype.type(scale)
    nch = min(nrows, 256)
    for c in prange(nch):
        _local_fwd_rows(kind, Qp, Kp, vv, sc, V, L, p, D, c * nrows // nch,
                        (c + 1) * nrows // nch, starts, ctx, wout)


@njit(cache=True, error_model="numpy")
def _local_bwd_batch(kind, Qp, Kp, vv, sc, V, L, p, D, dctx, dQp, dKp, dvv, dV, dp, b):
    B, Tq, E = Qp.shape
    Dv = V.shape[2]
    nw = 2 * D + 1
    zero = Qp.dtype.type(0.0)
    s, w, g, ok = _window_scratch(Qp, nw)
    ds = np.empty(nw, dtype=Qp.dtype)
    T = np.empty((nw if kind == SCORE_TANH else 1, E), dtype=Qp.dtype)
    accE = np.empty(E, dtype=Qp.dtype)
    yes = b >= b - b  # run-time True (see _scores_rows)
    dvv[b, :] = zero
    dKp[b, :, :] = zero
    dV[b, :, :] = zero
    for i in range(Tq):
        st, lo, n = _local_row(kind, Qp, Kp, vv, sc, V, L, p, D, b, i, s, w, g, ok, T, yes)
        for e in range(E):
            dQp[b, i, e] = zero
        dp[b, i] = zero
        if n <= 0:
            continue
        pt = p[b, i]
        dot = zero
        accp = zero
        for jj in range(n):
            acc = zero
            for d in range(Dv):
                acc += dctx[b, i, d] * V[b, lo + jj, d]
            a = w[jj] * g[jj]
            for d in range(Dv):
                dV[b, lo + jj, d] += a * dctx[b, i, d]
            if D > 0:
                dl = Qp.dtype.type(lo + jj) - pt
                accp += ((acc * w[jj]) * g[jj]) * (dl + dl)
            acc = acc * g[jj]
            ds[jj] = acc
            dot += w[jj] * acc
        if D > 0:
            dp[b, i] = accp / Qp.dtype.type(D * D * 0.5)
        for jj in range(n):
            ds[jj] = w[jj] * (ds[jj] - dot)
        _score_bwd_row(kind, Qp, Kp, vv, sc, b, i, lo, n, ds, ok, T, dQp, dKp, dvv, accE)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_local_bwd(kind, Qp, Kp, vv, scale, V, L, p, D, dctx, dQp, dKp, dvv, dV, dp):
    """Backward of attn_local_fwd: dQp, dKp, dV, dvv (per batch row, as in
    attn_bwd) and dp (B, Tq), the gradient of the positions."""
    sc = Qp.dtype.type(scale)
    for b in prange(Qp.shape[0]):
        _local_bwd_batch(kind, Qp, Kp, vv, sc, V, L, p, D, dctx, dQp, dKp, dvv, dV, dp,
                         np.int64(b))


@njit(cache=True, error_model="numpy")
def _pool_block(A):
    """Rows per gemm block of attn_pool_fwd for A columns (sizes only)."""
    return max(1, min(POOL_ROWS, POOL_SCRATCH // max(A, 1)))


@njit(cache=True, error_model="numpy")
def _pool_chunk(X, W, b, u, starts, counts, s0, s1, pooled, weights, T, keep, zero, no):
    """Segments s0..s1-1 (consecutive; their rows r0..r1-1, gaps included).
    Rows in blocks of _pool_block(A) rows (the scratch stays at most
    POOL_SCRATCH elements however long a segment is): one single-threaded
    gemm S = X[block] W, then per row t = tanh(S + b) (kept in T when
    ``keep``) and its score dot(t, u) (8-lane order) in ``weights``; rows in
    gaps between segments are set back to 0; then per segment the softmax
    and the weighted sum of its rows of X.  The block products are
    ``_proj_rows``'s (a gemm, or a loop for a block of at most PROJ_SMALL
    rows)."""
    H = X.shape[1]
    A = W.shape[1]
    r0 = starts[s0]
    r1 = starts[s1 - 1] + counts[s1 - 1]
    blk = _pool_block(A)
    S = np.empty((blk, A), dtype=X.dtype)
    z = r0 - r0
    for q0 in range(r0, r1, blk):
        q1 = min(q0 + blk, r1)
        _proj_rows(X, q0, q1 - q0, W, b, no, S, z)   # S = X[q0:q1] W (zeros when H = 0)
        for r in range(q0, q1):
            t = S[r - q0]
            for h in range(A):
                t[h] = _tanh(t[h] + b[h])
            if keep:
                tr = T[r]
                for h in range(A):
                    tr[h] = t[h]
            weights[r] = _dot_lanes(t, z, u, z, A)
    end = r0
    for sg in range(s0, s1):
        a0 = starts[sg]
        a1 = a0 + counts[sg]
        for r in range(end, a0):   # a gap (padding rows): no weight, no tanh values
            weights[r] = zero
            if keep:
                for h in range(A):
                    T[r, h] = zero
        if a1 > end:
            end = a1
        for h in range(H):
            pooled[sg, h] = zero
        if a1 <= a0:
            continue
        m = X.dtype.type(-np.inf)
        for r in range(a0, a1):
            if weights[r] > m:
                m = weights[r]
        zs = zero
        for r in range(a0, a1):
            e = _exp(weights[r] - m)
            weights[r] = e
            zs += e
        for r in range(a0, a1):
            weights[r] = weights[r] / zs
        for r in range(a0, a1):
            a = weights[r]
            for h in range(H):
                pooled[sg, h] += a * X[r, h]


@njit(cache=True, error_model="numpy", parallel=True)
def attn_pool_fwd(X, W, b, u, starts, counts, chunks, pooled, weights, T, keep):
    """Attention pooling of segments: rows starts[s]..starts[s]+counts[s]-1 of
    X (N, H) pool into pooled[s] with the weights softmax(tanh(X W + b) u)
    over the segment, written to ``weights`` for those rows only (and the
    tanh values to T (N, A) when ``keep``; else T may be any array).  The
    segments are consecutive in X; work item c: segments chunks[c] ..
    chunks[c+1]-1 (the binding cuts them by rows, POOL_ROWS, fixed by the
    sizes), one gemm for their rows (the BLAS single-threaded meanwhile)."""
    zero = X.dtype.type(0.0)
    no = X.shape[0] < 0  # a run-time False (see _scores_rows)
    for c in prange(chunks.shape[0] - 1):
        _pool_chunk(X, W, b, u, starts, counts, chunks[c], chunks[c + 1], pooled, weights, T,
                    keep, zero, no)


@njit(cache=True, error_model="numpy")
def _pool_bwd_seg(T, u, X, a0, a1, sg, weights, dpooled, gw, has_gw, dX, dP, dsc):
    A = T.shape[1]
    H = X.shape[1]
    zero = T.dtype.type(0.0)
    one = T.dtype.type(1.0)
    dot = zero
    for r in range(a0, a1):
        acc = zero
        for h in range(H):
            acc += dpooled[sg, h] * X[r, h]
        if has_gw:
            acc += gw[r]
        dsc[r] = acc
        dot += weights[r] * acc
        a = weights[r]
        for h in range(H):
            dX[r, h] = a * dpooled[sg, h]
    for r in range(a0, a1):
        gr = weights[r] * (dsc[r] - dot)
        dsc[r] = gr
        for h in range(A):
            t = T[r, h]
            dP[r, h] = (gr * u[h]) * (one - t * t)


@njit(cache=True, error_model="numpy", parallel=True)
def attn_pool_bwd(T, u, X, starts, counts, weights, dpooled, gw, has_gw, dX, dP, dsc):
    """Backward of attn_pool_fwd for the segment rows: dX = weights * dpooled
    (the direct part; the caller adds dP W^T), dsc = d loss / d score,
    dP = dsc * u * (1 - T^2)."""
    for sg in prange(starts.shape[0]):
        _pool_bwd_seg(T, u, X, starts[sg], starts[sg] + counts[sg], np.int64(sg), weights,
                      dpooled, gw, has_gw, dX, dP, dsc)
