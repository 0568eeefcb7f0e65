"""Public attention API: score functions, masked softmax, fused attention,
Luong local attention and hierarchical attention pooling, forward and
backward; input checks and backend dispatch.

Conventions: row vectors (``x @ W``), batch first.  q (B, Tq, Dq),
k (B, Tk, Dk), v (B, Tk, Dv); all float arrays of one call share one dtype,
float32 or float64 (the dtype of q; a float of the other width is a
TypeError, integer inputs are converted).

Score functions (``score=`` and its ``params`` dict of arrays):

* ``"dot"``: q . k (Dq == Dk); ``"scaled_dot"``: q . k / sqrt(Dk); no params;
* ``"general"`` (Luong): q W k^T, ``W`` (Dq, Dk);
* ``"additive"`` (Bahdanau): v . tanh(q Wq + k Wk + b), ``Wq`` (Dq, H),
  ``Wk`` (Dk, H), ``v`` (H,), optional ``b`` (H,) and optional scalar ``g``
  (weight normalisation: v is replaced by g v / ||v||);
* ``"concat"`` (Luong): v . tanh([q; k] W + b), ``W`` (Dq + Dk, H), ``v``
  (H,), optional ``b`` (H,); computed as q W[:Dq] + k W[Dq:], never by
  concatenating.

The projections (q Wq, k Wk, q W) are GEMMs on the kernels' own threads, made
inside ``attend``'s work items (a batch row and up to 128 of its queries:
neither projection is allocated; the key side once per batch row, not once
per query, for up to 128 queries; ``project_keys`` computes it once for many
calls, as a decoder's steps share their keys); the kernels then loop over H
inside each score (additive, concat) with a vectorizable tanh, so the
(B, Tq, Tk, H) tensor of the usual broadcast implementation is never built.
With 4 or more queries per batch row the tanh of q + k is made from
exp(+-2q) and exp(+-2k), computed once per query and per key (one product
per element instead of an exp; <= 2.5 ulp against tanh's 1.5; pairs with a
projected feature beyond +-20 take the plain tanh).

Masks (``lengths``, ``mask``, ``causal``): key j is attended by query i of
row b iff ``j < lengths[b]``; a boolean ``mask`` broadcastable to
(B, Tq, Tk) has **True = attend**; a float ``mask`` is added to the scores
(-inf = not attended); ``causal=True`` lets query i attend key j iff
``j <= i + (Tk - Tq)`` (the queries are the last Tq positions of the key
sequence: bottom-right aligned, the alignment of incremental decoding; note
that PyTorch's SDPA ``is_causal`` and ``dlkernels.attention.sdpa`` align
top-left).  A row with no attended key gets weights 0 and context 0, never
NaN, and finite gradients; NaN or inf in keys or values at positions no
query attends never reach a result or a gradient.
"""
from collections import namedtuple

import numpy as np

from ._backend import resolve
from ._checks import _describe, check_alloc, check_array, check_bool, check_choice, check_int
from ._threads import blas_single_threaded

__all__ = ["SCORES", "scores", "project_keys", "masked_softmax", "attend", "attend_backward",
           "local_attend", "local_attend_backward", "LocalAttention", "attention_pool",
           "attention_pool_backward", "attention_pool_padded", "attention_pool_padded_backward",
           "han_pool", "han_pool_backward", "HANResult"]

SCORES = ("dot", "scaled_dot", "general", "additive", "concat")
_PREFER = ("cython", "numba")

LocalAttention = namedtuple("LocalAttention", ["context", "weights", "starts", "positions"])
LocalAttention.__doc__ = """Result of ``local_attend``: context (B, Tq, Dv); window weights
(B, Tq, 2D+1), slot w of query i being key ``starts[b, i] + w`` (0 outside the sequence);
starts (B, Tq) int64; positions p_t (B, Tq)."""

HANResult = namedtuple("HANResult", ["documents", "word_weights", "sentence_weights"])
HANResult.__doc__ = """Result of ``han_pool``: document vectors (D, H), word weights (N,),
sentence weights (S,)."""

_PARAM_KEYS = {
    "dot": ((), ()),
    "scaled_dot": ((), ()),
    "general": (("W",), ()),
    "additive": (("Wq", "Wk", "v"), ("b", "g")),
    "concat": (("W", "v"), ("b",)),
}


def _eng(backend):
    return resolve(backend, "attention", prefer=_PREFER)


# ---- argument checks -------------------------------------------------------------

def _arr3(x, name, dt=None):
    return check_array(x, name, ndim=3, dtype=dt)


_NO_V = object()  # scores() takes no values


def _qkv(q, k, v):
    q = _arr3(q, "q")
    dt = q.dtype
    k = _arr3(k, "k", dt)
    if k.shape[0] != q.shape[0]:
        raise ValueError(f"k: expected batch size {q.shape[0]} (that of q), got shape {k.shape}")
    if v is _NO_V:
        v = None
    else:
        v = _arr3(v, "v", dt)
        if v.shape[:2] != k.shape[:2]:
            raise ValueError(f"v: expected shape ({k.shape[0]}, {k.shape[1]}, any) (batch and "
                             f"keys of k), got {v.shape}")
    return q, k, v, dt


def _all_finite(x):
    """True when x has no NaN / inf (two fast reductions, no temporary)."""
    if not x.size:
        return True
    return bool(np.isfinite(x.min()) and np.isfinite(x.max()))


def _finite(x, name):
    if not _all_finite(x):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")


def _params(score, params, Dq, Dk, dt, check_finite):
    """Validated params dict (arrays of dtype dt)."""
    score = check_choice(score, "score", SCORES)
    need, opt = _PARAM_KEYS[score]
    if score in ("dot", "scaled_dot") and Dq != Dk:
        raise ValueError(f"k: expected feature size {Dq} (that of q) for score {score!r}, got {Dk}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of arrays, got {_describe(params)}")
    for key in need:
        if key not in params:
            raise ValueError(f"params: expected keys {list(need)} for score {score!r}, "
                             f"got {sorted(params)} (missing {key!r})")
    for key in params:
        if key not in need and key not in opt:
            raise ValueError(f"params: expected only keys {list(need + opt)} for score {score!r}, "
                             f"got {key!r}")
    out = {}
    if score == "general":
        out["W"] = check_array(params["W"], "params['W']", dtype=dt, shape=(Dq, Dk))
    elif score == "additive":
        Wq = check_array(params["Wq"], "params['Wq']", dtype=dt, ndim=2, shape=(Dq, None))
        H = Wq.shape[1]
        out["Wq"] = Wq
        out["Wk"] = check_array(params["Wk"], "params['Wk']", dtype=dt, shape=(Dk, H))
    elif score == "concat":
        W = check_array(params["W"], "params['W']", dtype=dt, ndim=2, shape=(Dq + Dk, None))
        H = W.shape[1]
        out["W"] = W
    if score in ("additive", "concat"):
        out["v"] = check_array(params["v"], "params['v']", dtype=dt, shape=(H,))
        if "b" in params:
            out["b"] = check_array(params["b"], "params['b']", dtype=dt, shape=(H,))
        if "g" in params:
            out["g"] = check_array(params["g"], "params['g']", dtype=dt, shape=())
            if not float(np.linalg.norm(out["v"])) > 0:
                raise ValueError("params['v']: expected a nonzero vector (weight normalisation "
                                 "divides by its norm), got all zeros")
    if check_finite:
        for key, a in out.items():
            _finite(a, f"params[{key!r}]")
    return out


def _lengths(lengths, B, T, name="lengths"):
    """int64 (B,) in [0, T]; None -> all T."""
    if lengths is None:
        return np.full(B, T, dtype=np.int64)
    if isinstance(lengths, np.ndarray):
        arr = lengths
    else:
        try:
            arr = np.asarray(lengths)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an integer array, got {_describe(lengths)}") from None
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"{name}: expected shape ({B},), got {arr.shape}")
    if arr.dtype == np.int64:   # one comparison: negatives are huge as uint64
        out_of_range = B and bool((arr.view(np.uint64) > T).any())
    else:
        out_of_range = B and (arr.min() < 0 or arr.max() > T)
    if out_of_range:
        bad = arr[(arr < 0) | (arr > T)][0]
        raise ValueError(f"{name}: expected values in [0, {T}], got {int(bad)}")
    return np.ascontiguousarray(arr, dtype=np.int64)


_NOMASK = {}


def _mask(mask, B, Tq, Tk, dt):
    """(mode, mb uint8 flat, mf float flat, stride b, stride i, stride j)."""
    if mask is None:
        key = np.dtype(dt)
        if key not in _NOMASK:
            _NOMASK[key] = (0, np.zeros(1, np.uint8), np.zeros(1, dt), 0, 0, 0)
        return _NOMASK[key]
    m = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    if m.dtype.kind not in "bf":
        raise TypeError(f"mask: expected a bool (True = attend) or float (added) array, "
                        f"got dtype {m.dtype}")
    if m.ndim > 3:
        raise ValueError(f"mask: expected an array broadcastable to ({B}, {Tq}, {Tk}), got shape "
                         f"{m.shape}")
    shp = (1,) * (3 - m.ndim) + m.shape
    for s, t in zip(shp, (B, Tq, Tk)):
        if s != 1 and s != t:
            raise ValueError(f"mask: expected an array broadcastable to ({B}, {Tq}, {Tk}), got "
                             f"shape {m.shape}")
    m = m.reshape(shp)
    strides = (shp[1] * shp[2] if shp[0] > 1 else 0, shp[2] if shp[1] > 1 else 0,
               1 if shp[2] > 1 else 0)
    if m.dtype.kind == "b":
        return (1, np.ascontiguousarray(m).view(np.uint8).reshape(-1), np.zeros(1, dt)) + strides
    mf = np.ascontiguousarray(m, dtype=dt).reshape(-1)
    if mf.size and (np.isnan(mf).any() or (mf == np.inf).any()):
        raise ValueError("mask: expected float values < inf (-inf = not attended), got NaN or +inf")
    return (2, np.zeros(1, np.uint8), mf) + strides


def _attended(B, Tq, Tk, L, causal, mk):
    """(B, Tq, Tk) bool: what the kernels attend (slow path only)."""
    valid = np.arange(Tk)[None, None, :] < L[:, None, None]
    if causal:
        valid = valid & (np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq))
    mode, mb, mf, sb, sq, sk = mk
    if mode:
        idx = (np.arange(B)[:, None, None] * sb + np.arange(Tq)[None, :, None] * sq
               + np.arange(Tk)[None, None, :] * sk)
        valid = valid & (mb[idx] != 0 if mode == 1 else mf[idx] != -np.inf)
    return np.broadcast_to(valid, (B, Tq, Tk))


def _clean_kv(k, v, name_k, name_v, B, Tq, L, causal, mk, check):
    """k, v with non-finite entries at never-attended keys replaced by 0;
    raises (when ``check``) for non-finite entries at attended keys."""
    out = []
    used = None
    for x, name in ((k, name_k), (v, name_v)):
        if not _all_finite(x):
            fin = np.isfinite(x)
            if used is None:
                used = _attended(B, Tq, x.shape[1], L, causal, mk).any(axis=1)
            bad = ~fin.all(axis=2)
            if check and (bad & used).any():
                raise ValueError(f"{name}: expected finite values at attended positions, got NaN "
                                 "or inf")
            x = np.where(fin, x, 0).astype(x.dtype)
        out.append(x)
    return out


# ---- projections (GEMMs, once per call) ---------------------------------------------

def _gemm(eng, A, B, ta=False, tb=False):
    """op(A) op(B) of 2-d arrays by the engine's tiled GEMM: on the kernels'
    own threads, so that NumPy's BLAS threads and the kernels' do not spin
    against each other between a product and a kernel (measured: 2x on an
    additive decoding step, 2x on the additive backward)."""
    A = np.ascontiguousarray(A)
    B = np.ascontiguousarray(B)
    C = np.empty((A.shape[1] if ta else A.shape[0], B.shape[0] if tb else B.shape[1]), A.dtype)
    with blas_single_threaded():
        eng.attn_gemm(ta, tb, A, B, C)
    return C


def _project(eng, x, W, bias=None):
    """x (B, T, D) @ W (D, H) (+ bias) (x C-contiguous), by the engine's
    ``attn_project``: tiles of PROJ_ROWS rows within each batch row, the
    gemm calls the fused forward (``attn_fwd_proj``) makes too, so every
    projection of a batch row has the same bits wherever it is made."""
    out = np.empty(x.shape[:2] + (W.shape[1],), x.dtype)
    has_b = bias is not None
    with blas_single_threaded():
        eng.attn_project(x, np.ascontiguousarray(W), bias if has_b else np.zeros(1, x.dtype),
                         has_b, out)
    return out


def _dot_scale(score, Dk):
    """The factor of a dot score: 1, or 1 / sqrt(Dk) for "scaled_dot"."""
    return 1.0 / np.sqrt(Dk) if score == "scaled_dot" and Dk else 1.0


def _tanh_weights(score, P, Dq):
    """(Wq, Wk) of an additive / concat score: concat's W split at Dq rows."""
    if score == "additive":
        return P["Wq"], P["Wk"]
    return P["W"][:Dq], P["W"][Dq:]


def _tanh_v(P, dt):
    """The score vector v, weight-normalised (g v / |v|) when P has "g"."""
    v = P["v"]
    return (P["g"] * v / np.linalg.norm(v)).astype(dt) if "g" in P else v


def _prepare(eng, score, q, k, P, Kp=None):
    """(kind, Qp (B, Tq, E), Kp (B, Tk, E), vv (E,), scale); Kp, when given,
    is the key side of an additive / concat score (``project_keys``)."""
    dt = q.dtype
    if score in ("dot", "scaled_dot"):
        return 0, q, k, np.zeros(1, dt), _dot_scale(score, k.shape[2])
    if score == "general":
        return 0, _project(eng, q, P["W"]), k, np.zeros(1, dt), 1.0
    Wq, Wk = _tanh_weights(score, P, q.shape[2])
    Qp = _project(eng, q, Wq, P.get("b"))
    if Kp is None:
        Kp = _project(eng, k, Wk)
    return 1, Qp, Kp, _tanh_v(P, dt), 1.0


def _fwd_proj(eng, score, q, k, v, P, Kp, L, causal, mk, ctx, w, want_w, check, bad):
    """attend's kernel call for the scores with projections ("general",
    "additive", "concat"): the engine projects inside its work items, so the
    (B, Tq, E) and (B, Tk, E) projections are never allocated (extra memory
    O(threads x tile)); the same products as ``_prepare``'s."""
    dt = q.dtype
    one = np.zeros(1, dt)
    kgiven = True
    Wk = np.zeros((1, 1), dt)
    if score == "general":
        kind, Wq, bq, Kp, vv = 0, P["W"], one, k, one
    else:
        kind = 1
        Wq, Wk = _tanh_weights(score, P, q.shape[2])
        bq = P.get("b", one)
        vv = _tanh_v(P, dt)
        if Kp is None:
            kgiven, Kp = False, np.zeros((1, 1, 1), dt)
    with blas_single_threaded():
        eng.attn_fwd_proj(kind=kind, Xq=q, Wq=np.ascontiguousarray(Wq), bq=bq, has_b="b" in P,
                          Xk=k, Wk=np.ascontiguousarray(Wk), Kp=Kp, kgiven=kgiven, vv=vv,
                          scale=1.0, V=v, L=L, causal=causal, mmode=mk[0], mb=mk[1], mf=mk[2],
                          msb=mk[3], msq=mk[4], msk=mk[5], ctx=ctx, wout=w, want_w=want_w,
                          check=check, bad=bad)


def _project_back(eng, score, q, k, P, dQp, dKp, dvv):
    """Gradients of q, k and the params from those of Qp, Kp and vv."""
    B, Tq, Dq = q.shape
    g = {}
    if score in ("dot", "scaled_dot"):
        return dQp, dKp, g
    q2 = q.reshape(-1, Dq)
    if score == "general":
        W = P["W"]
        g["W"] = _gemm(eng, q2, dQp.reshape(-1, W.shape[1]), ta=True)
        return _gemm(eng, dQp.reshape(-1, W.shape[1]), W, tb=True).reshape(q.shape), dKp, g
    Wq, Wk = _tanh_weights(score, P, Dq)
    H = Wq.shape[1]
    dQ2 = dQp.reshape(-1, H)
    dK2 = dKp.reshape(-1, H)
    k2 = k.reshape(-1, k.shape[2])
    dWq = _gemm(eng, q2, dQ2, ta=True)
    dWk = _gemm(eng, k2, dK2, ta=True)
    if score == "additive":
        g["Wq"], g["Wk"] = dWq, dWk
    else:
        g["W"] = np.concatenate([dWq, dWk], axis=0)
    if "b" in P:
        g["b"] = dQ2.sum(axis=0)
    v = P["v"]
    if "g" in P:
        nv = np.linalg.norm(v)
        vhat = v / nv
        proj = dvv @ vhat
        g["g"] = np.asarray(proj, dtype=q.dtype)
        g["v"] = (P["g"] / nv * (dvv - proj * vhat)).astype(q.dtype)
    else:
        g["v"] = dvv
    return (_gemm(eng, dQ2, Wq, tb=True).reshape(q.shape),
            _gemm(eng, dK2, Wk, tb=True).reshape(k.shape), g)


def _setup(q, k, v, score, params, lengths, mask, causal, check_finite, check_q=True):
    """Validated arguments; q is checked for NaN / inf here when check_q
    (``attend`` leaves it to its kernel's flags)."""
    q, k, v, dt = _qkv(q, k, v)
    B, Tq, Dq = q.shape
    Tk, Dk = k.shape[1], k.shape[2]
    P = _params(score, params, Dq, Dk, dt, check_bool(check_finite, "check_finite"))
    L = _lengths(lengths, B, Tk)
    causal = check_bool(causal, "causal")
    mk = _mask(mask, B, Tq, Tk, dt)
    if check_finite and check_q:
        _finite(q, "q")
    return q, k, v, dt, P, L, causal, mk


# ---- public functions ---------------------------------------------------------------

def scores(q, k, *, score, params=None, backend=None):
    """Attention scores of every query with every key.

    Parameters
    ----------
    q : array (B, Tq, Dq), float32 or float64
    k : array (B, Tk, Dk), q's dtype
    score : {"dot", "scaled_dot", "general", "additive", "concat"}
        The compatibility function (see the module docstring for each one's
        formula and ``params``).
    params : dict of arrays, optional
        The score's parameters (none for "dot" and "scaled_dot").
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    array (B, Tq, Tk) of q's dtype.

    Raises
    ------
    TypeError
        Non-array or non-float input, mixed float widths, params not a dict.
    ValueError
        Wrong dimensions, mismatched batch or feature sizes, params with
        missing or unknown keys or wrong shapes, NaN or inf in q, k or params.
    """
    q, k, _, dt = _qkv(q, k, _NO_V)
    P = _params(score, params, q.shape[2], k.shape[2], dt, True)
    _finite(q, "q")
    _finite(k, "k")
    eng = _eng(backend)
    kind, Qp, Kp, vv, scale = _prepare(eng, score, q, k, P)
    out = np.empty((q.shape[0], q.shape[1], k.shape[1]), dtype=dt)
    eng.attn_scores(kind, Qp, Kp, vv, scale, out)
    return out


def _query_size(score, params, Dk):
    """The query feature size the params of an additive / concat score imply
    (0 when they do not say: ``_params`` then names what is wrong)."""
    W = params.get("Wq" if score == "additive" else "W") if isinstance(params, dict) else None
    shp = np.shape(W) if W is not None else ()
    if len(shp) != 2:
        return 0
    return shp[0] if score == "additive" else max(shp[0] - Dk, 0)


def project_keys(k, *, score, params, backend=None):
    """The key side of an additive or concat score, computed once.

    ``k Wk`` (additive) or ``k W[Dq:]`` (concat): what ``attend`` computes
    from the keys on every call.  A decoder attends to the same keys
    (encoder states, image regions) at every step: project them once per
    sequence and pass the result as ``attend(..., projected_keys=...)``,
    which then computes only the query side and the scores (for B = 64,
    Tk = 50, H = 256 the key projection is most of a step's time).

    Parameters
    ----------
    k : array (B, Tk, Dk), float32 or float64
    score : {"additive", "concat"}
    params : dict of arrays
        The score's parameters, as for ``attend`` (all of them are checked).
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    array (B, Tk, H) of k's dtype: bit for bit what ``attend`` computes
    internally for these keys and params.

    Raises
    ------
    TypeError
        Non-float k, params not a dict or with arrays of another dtype.
    ValueError
        A score without a key-side projection ("dot", "scaled_dot",
        "general": their keys enter the scores as they are), params with
        missing or unknown keys or wrong shapes, NaN or inf in k or params.
    """
    k = _arr3(k, "k")
    score = check_choice(score, "score", SCORES)
    if score not in ("additive", "concat"):
        raise ValueError(f"score: expected 'additive' or 'concat' (the scores with a key-side "
                         f"projection), got {score!r}")
    Dq = _query_size(score, params, k.shape[2])
    P = _params(score, params, Dq, k.shape[2], k.dtype, True)
    _finite(k, "k")
    eng = _eng(backend)
    _, Wk = _tanh_weights(score, P, Dq)
    return _project(eng, k, Wk)


def masked_softmax(scores, *, lengths=None, mask=None, causal=False, backend=None):
    """Softmax over the last axis of ``scores`` with masking.

    Parameters
    ----------
    scores : array (B, Tq, Tk), float32 or float64
    lengths : int array (B,), optional
        Keys ``j >= lengths[b]`` are masked out (0 <= lengths[b] <= Tk).
    mask : array broadcastable to (B, Tq, Tk), optional
        bool: **True = attend**, False = masked out; float: added to the
        scores (-inf = masked out; NaN and +inf are errors).
    causal : bool
        Query i attends key j iff ``j <= i + (Tk - Tq)`` (bottom-right
        aligned; PyTorch's SDPA ``is_causal`` aligns top-left instead).
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    array (B, Tq, Tk): the weights; 0 at masked positions, a row with no
    attended key is all 0.  Scores at masked positions (NaN included) are
    never read.

    Raises
    ------
    TypeError
        Non-float scores, non-integer lengths, a mask neither bool nor float.
    ValueError
        scores not 3-d, lengths of the wrong shape or outside [0, Tk], a mask
        not broadcastable or with NaN / +inf.
    """
    s = _arr3(scores, "scores")
    B, Tq, Tk = s.shape
    L = _lengths(lengths, B, Tk)
    causal = check_bool(causal, "causal")
    mk = _mask(mask, B, Tq, Tk, s.dtype)
    out = np.empty_like(s)
    _eng(backend).attn_softmax(s, L, causal, *mk, out)
    return out


def attend(q, k, v, *, score="dot", params=None, lengths=None, mask=None, causal=False,
           return_weights=False, check_finite=True, projected_keys=None, backend=None):
    """Fused attention: scores, masked stable softmax and the weighted sum of
    the values, one pass per query row, without the (B, Tq, Tk, H) tensor.

    The projections of "general", "additive" and "concat" are made inside
    the kernel's work items (a batch row and up to 128 of its queries; its
    keys up to the last one a row may attend): neither (B, Tq, H) nor
    (B, Tk, H) is allocated, so the memory beyond the outputs is O(threads
    x (128 + 3 Tk) x H) (the tiles and the keys' exponentials of the tanh
    score).  A batch row with more than 128 queries projects its keys once
    per 128 queries (a few percent of the score's work).

    Parameters
    ----------
    q : array (B, Tq, Dq), float32 or float64
    k : array (B, Tk, Dk), q's dtype
    v : array (B, Tk, Dv), q's dtype
    score : {"dot", "scaled_dot", "general", "additive", "concat"}
    params : dict of arrays, optional
        The score's parameters (module docstring).
    lengths : int array (B,), optional
        Keys ``j >= lengths[b]`` are masked out.
    mask : array broadcastable to (B, Tq, Tk), optional
        bool: **True = attend**; float: added to the scores (-inf = masked).
    causal : bool
        Query i attends key j iff ``j <= i + (Tk - Tq)`` (queries are the
        last Tq positions: bottom-right aligned, unlike PyTorch's SDPA
        ``is_causal`` and ``dlkernels.attention.sdpa``, which align top-left).
    return_weights : bool
        Also return the weights (B, Tq, Tk).
    check_finite : bool
        Check that q, the params and the keys/values at attended positions
        are finite (q and the params by a pass over each; the keys and values
        inside the kernel's own pass over them, so the check costs no extra
        pass over memory; False skips it).
    projected_keys : array (B, Tk, H), optional
        "additive" and "concat" only: ``project_keys(k, score=score,
        params=params)``, computed once for keys that several calls share
        (a decoder's steps); the key projection is then not recomputed and
        k serves for its shape only.  The same results as without it.  It
        is checked (shape, dtype, finite at attended positions), but not
        that it is the projection of these k and params.
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    context : array (B, Tq, Dv)
    weights : array (B, Tq, Tk), only when ``return_weights``
        A row with no attended key has weights 0 and context 0.

    Raises
    ------
    TypeError
        Non-float arrays, mixed float widths, non-integer lengths, a mask
        neither bool nor float, params not a dict.
    ValueError
        Mismatched batch / key / feature sizes, lengths outside [0, Tk],
        params with missing or unknown keys or wrong shapes, NaN or inf in q,
        the params or an attended key or value (when ``check_finite``);
        ``projected_keys`` with a score other than "additive" / "concat" or
        of the wrong shape.
    """
    q, k, v, dt, P, L, causal, mk = _setup(q, k, v, score, params, lengths, mask, causal,
                                           check_finite, check_q=False)
    return_weights = check_bool(return_weights, "return_weights")
    eng = _eng(backend)
    B, Tq, _ = q.shape
    Kp = None
    if projected_keys is not None:
        if score not in ("additive", "concat"):
            raise ValueError(f"projected_keys: expected None for score {score!r} (only "
                             f"'additive' and 'concat' project the keys)")
        Kp = check_array(projected_keys, "projected_keys", dtype=dt,
                         shape=(B, k.shape[1], P["v"].shape[0]))
    ctx = np.empty((B, Tq, v.shape[2]), dtype=dt)
    w = np.empty((B, Tq, k.shape[1]) if return_weights else (1, 1, 1), dtype=dt)
    # The kernel checks queries, keys and values in the pass that reads them (a
    # separate pass would double a decoding step's memory traffic; see
    # "Non-finite input" in the engine's docstring); a flagged row is then
    # judged exactly here (keys and values by the mask).  Positions not
    # attended never reach a result, so nothing is recomputed.
    bad = np.zeros(B * Tq if check_finite and B * Tq else 1, np.uint8)
    if score in ("dot", "scaled_dot"):
        kind, Qp, Kp, vv, scale = _prepare(eng, score, q, k, P, Kp)
        eng.attn_fwd(kind, Qp, Kp, vv, scale, v, L, causal, *mk, ctx, w, return_weights,
                     check_finite, bad)
    else:
        _fwd_proj(eng, score, q, k, v, P, Kp, L, causal, mk, ctx, w, return_weights,
                  check_finite, bad)
    if check_finite and bad.any():
        _finite(q, "q")   # the kernel flags a non-finite query row too
        if projected_keys is None:
            _clean_kv(k, v, "k", "v", B, Tq, L, causal, mk, True)
        else:
            _clean_kv(Kp, v, "projected_keys", "v", B, Tq, L, causal, mk, True)
    return (ctx, w) if return_weights else ctx


def attend_backward(grad_context, q, k, v, *, score="dot", params=None, lengths=None, mask=None,
                    causal=False, grad_weights=None, check_finite=True, backend=None):
    """Gradients of ``attend``: of the loss ``sum(grad_context * context) +
    sum(grad_weights * weights)`` with respect to q, k, v and the params.

    The forward is recomputed (scores and weights, one query row at a time:
    nothing of size B*Tq*Tk*H is stored).  Deterministic: every batch row's
    key/value gradients are summed by one work item in a fixed order, and the
    score vector's partial sums are reduced in batch order, so 1 and N threads
    give the same bits.

    Parameters
    ----------
    grad_context : array (B, Tq, Dv), q's dtype
    q, k, v, score, params, lengths, mask, causal, check_finite, backend
        As for ``attend``.
    grad_weights : array (B, Tq, Tk), optional
        Gradient with respect to the weights (when the forward returned them
        and they feed the loss).

    Returns
    -------
    dict
        ``"q"``, ``"k"``, ``"v"``: arrays shaped like q, k, v; ``"params"``:
        a dict with the gradient of every entry of ``params``, under the same
        names (empty for "dot" and "scaled_dot").  Gradients at keys no query
        attends are 0.

    Raises
    ------
    TypeError, ValueError
        As for ``attend``; grad_context / grad_weights of the wrong shape or
        dtype, or not finite.
    """
    q, k, v, dt, P, L, causal, mk = _setup(q, k, v, score, params, lengths, mask, causal,
                                           check_finite)
    B, Tq, _ = q.shape
    Tk = k.shape[1]
    dctx = check_array(grad_context, "grad_context", dtype=dt, shape=(B, Tq, v.shape[2]))
    has_gw = grad_weights is not None
    gw = (check_array(grad_weights, "grad_weights", dtype=dt, shape=(B, Tq, Tk)) if has_gw
          else np.zeros((1, 1, 1), dt))
    if check_finite:
        _finite(dctx, "grad_context")
        _finite(gw, "grad_weights")
    eng = _eng(backend)
    k, v = _clean_kv(k, v, "k", "v", B, Tq, L, causal, mk, check_finite)
    kind, Qp, Kp, vv, scale = _prepare(eng, score, q, k, P)
    E = Qp.shape[2]
    dQp = np.empty_like(Qp)
    dKp = np.empty_like(Kp)
    dvv = np.empty((B, E if kind else 1), dtype=dt)
    dV = np.empty_like(v)
    eng.attn_bwd(kind, Qp, Kp, vv, scale, v, L, causal, *mk, dctx, gw, has_gw, dQp, dKp, dvv, dV)
    dq, dk, gp = _project_back(eng, score, q, k, P, dQp, dKp, dvv.sum(axis=0))
    return {"q": dq, "k": dk, "v": dV, "params": gp}


# ---- Luong local attention ----------------------------------------------------------

def _local_setup(q, k, v, window, position, position_params, score, params, lengths,
                 check_finite):
    q, k, v, dt, P, L, _, _ = _setup(q, k, v, score, params, lengths, None, False, check_finite)
    D = check_int(window, "window", min=0)
    # the window weights are (B, Tq, 2 window + 1)
    check_alloc(q.shape[0] * q.shape[1] * (2 * min(D, 2**40) + 1), q.dtype.itemsize, "window")
    position = check_choice(position, "position", ("monotonic", "predictive"))
    PP = None
    Dq = q.shape[2]
    if position == "predictive":
        if not isinstance(position_params, dict):
            raise TypeError(f"position_params: expected a dict with 'Wp' (Dq, Hp) and 'vp' (Hp,), "
                            f"got {_describe(position_params)}")
        for key in position_params:
            if key not in ("Wp", "vp"):
                raise ValueError(f"position_params: expected only keys ['Wp', 'vp'], got {key!r}")
        for key in ("Wp", "vp"):
            if key not in position_params:
                raise ValueError(f"position_params: expected keys ['Wp', 'vp'], got "
                                 f"{sorted(position_params)} (missing {key!r})")
        Wp = check_array(position_params["Wp"], "position_params['Wp']", dtype=dt, ndim=2,
                         shape=(Dq, None))
        vp = check_array(position_params["vp"], "position_params['vp']", dtype=dt,
                         shape=(Wp.shape[1],))
        if check_finite:
            _finite(Wp, "position_params['Wp']")
            _finite(vp, "position_params['vp']")
        PP = {"Wp": Wp, "vp": vp}
    elif position_params is not None:
        raise ValueError("position_params: expected None for position 'monotonic', got a value")
    return q, k, v, dt, P, L, D, position, PP


def _positions(q, L, position, PP, dt):
    """(p (B, Tq), cache for the backward)."""
    B, Tq, _ = q.shape
    if position == "monotonic":
        return np.ascontiguousarray(np.broadcast_to(np.arange(Tq, dtype=dt), (B, Tq))), None
    th = np.tanh(np.matmul(q, PP["Wp"]))
    z = th @ PP["vp"]
    with np.errstate(over="ignore"):
        sig = (1 / (1 + np.exp(-z))).astype(dt)
    p = np.ascontiguousarray(L.astype(dt)[:, None] * sig)
    return p, (th, sig)


def local_attend(q, k, v, *, window, position="monotonic", position_params=None, score="general",
                 params=None, lengths=None, check_finite=True, backend=None):
    """Luong et al.'s (2015) local attention.

    Query t of row b attends the keys s in the window [p_t - D, p_t + D]
    (2D+1 slots from ``start = floor(p_t + 1/2) - D``); slots outside the
    sequence (< 0 or >= lengths[b]) are masked, not zero-filled.  The weights
    are the softmax of the scores over the window, multiplied by
    ``exp(-(s - p_t)^2 / (2 sigma^2))`` with sigma = D/2 (factor 1 when D = 0).

    Parameters
    ----------
    q : array (B, Tq, Dq); k : (B, Tk, Dk); v : (B, Tk, Dv); one float dtype
    window : int >= 0
        D, the half width.
    position : {"monotonic", "predictive"}
        local-m: p_t = t; local-p: p_t = S sigmoid(vp . tanh(q_t Wp)) with S
        the source length (``lengths[b]`` when given, else Tk).
    position_params : dict, for "predictive"
        ``{"Wp": (Dq, Hp), "vp": (Hp,)}``.
    score, params : as for ``attend`` (default "general", ``{"W": (Dq, Dk)}``)
    lengths : int array (B,), optional
    check_finite : bool
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    LocalAttention
        ``(context (B, Tq, Dv), weights (B, Tq, 2D+1), starts (B, Tq) int64,
        positions (B, Tq))``.

    Raises
    ------
    TypeError, ValueError
        As for ``attend``; window not an integer >= 0, an unknown position,
        position_params missing, with missing/unknown keys or wrong shapes.
    """
    q, k, v, dt, P, L, D, position, PP = _local_setup(q, k, v, window, position, position_params,
                                                      score, params, lengths, check_finite)
    eng = _eng(backend)
    B, Tq, _ = q.shape
    k, v = _clean_kv(k, v, "k", "v", B, 1, L, False, _mask(None, B, 1, k.shape[1], dt),
                     check_finite)
    p, _ = _positions(q, L, position, PP, dt)
    kind, Qp, Kp, vv, scale = _prepare(eng, score, q, k, P)
    ctx = np.empty((B, Tq, v.shape[2]), dtype=dt)
    w = np.empty((B, Tq, 2 * D + 1), dtype=dt)
    starts = np.empty((B, Tq), dtype=np.int64)
    eng.attn_local_fwd(kind, Qp, Kp, vv, scale, v, L, p, D, starts, ctx, w)
    return LocalAttention(ctx, w, starts, p)


def local_attend_backward(grad_context, q, k, v, *, window, position="monotonic",
                          position_params=None, score="general", params=None, lengths=None,
                          check_finite=True, backend=None):
    """Gradients of ``local_attend``'s context (loss ``sum(grad_context * context)``).

    The window starts are piecewise constant in p_t (no gradient); p_t gets
    its gradient through the Gaussian factor, and with it Wp and vp.

    Parameters
    ----------
    grad_context : array (B, Tq, Dv)
    q, k, v, window, position, position_params, score, params, lengths, check_finite, backend
        As for ``local_attend``.

    Returns
    -------
    dict
        ``"q"``, ``"k"``, ``"v"``, ``"params"`` (as in ``attend_backward``)
        and ``"position_params"`` (``{"Wp", "vp"}`` for "predictive", else
        an empty dict).

    Raises
    ------
    TypeError, ValueError
        As for ``local_attend``; grad_context of the wrong shape or dtype.
    """
    q, k, v, dt, P, L, D, position, PP = _local_setup(q, k, v, window, position, position_params,
                                                      score, params, lengths, check_finite)
    B, Tq, _ = q.shape
    dctx = check_array(grad_context, "grad_context", dtype=dt, shape=(B, Tq, v.shape[2]))
    if check_finite:
        _finite(dctx, "grad_context")
    eng = _eng(backend)
    k, v = _clean_kv(k, v, "k", "v", B, 1, L, False, _mask(None, B, 1, k.shape[1], dt),
                     check_finite)
    p, cache = _positions(q, L, position, PP, dt)
    kind, Qp, Kp, vv, scale = _prepare(eng, score, q, k, P)
    E = Qp.shape[2]
    dQp = np.empty_like(Qp)
    dKp = np.empty_like(Kp)
    dvv = np.empty((B, E if kind else 1), dtype=dt)
    dV = np.empty_like(v)
    dp = np.empty((B, Tq), dtype=dt)
    eng.attn_local_bwd(kind, Qp, Kp, vv, scale, v, L, p, D, dctx, dQp, dKp, dvv, dV, dp)
    dq, dk, gp = _project_back(eng, score, q, k, P, dQp, dKp, dvv.sum(axis=0))
    gpp = {}
    if position == "predictive":
        th, sig = cache
        dz = dp * L.astype(dt)[:, None] * sig * (1 - sig)
        gpp["vp"] = np.einsum("bt,bth->h", dz, th).astype(dt)
        dpre = dz[..., None] * PP["vp"] * (1 - th * th)
        gpp["Wp"] = q.reshape(-1, q.shape[2]).T @ dpre.reshape(-1, dpre.shape[2])
        dq = dq + np.matmul(dpre, PP["Wp"].T)
    return {"q": dq, "k": dk, "v": dV, "params": gp, "position_params": gpp}


# ---- hierarchical attention pooling ---------------------------------------------------

def _pool_params(W, b, u, H, dt, check_finite, names=("W", "b", "u")):
    W = check_array(W, names[0], dtype=dt, ndim=2, shape=(H, None))
    A = W.shape[1]
    b = check_array(b, names[1], dtype=dt, shape=(A,))
    u = check_array(u, names[2], dtype=dt, shape=(A,))
    if check_finite:
        for x, n in zip((W, b, u), names):
            _finite(x, n)
    return W, b, u


def _offsets(offsets, N, name):
    if isinstance(offsets, np.ndarray):
        arr = offsets
    else:
        try:
            arr = np.asarray(offsets)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an integer array, got {_describe(offsets)}") from None
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"{name}: expected a 1-d array of S+1 >= 1 offsets, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr[0] != 0:
        raise ValueError(f"{name}: expected offsets starting at 0, got {int(arr[0])}")
    if arr[-1] != N:
        raise ValueError(f"{name}: expected offsets ending at {N} (the number of rows), got "
                         f"{int(arr[-1])}")
    if arr.size > 1 and (np.diff(arr) < 0).any():
        raise ValueError(f"{name}: expected non-decreasing offsets, got a decrease")
    return arr


def _pool_chunks(eng, starts):
    """Work items of attn_pool_fwd: runs of consecutive segments, cut where a
    segment starts in a new block of POOL_ROWS rows (by the sizes only)."""
    S = starts.shape[0]
    if S == 0:
        return np.zeros(1, np.int64)
    cut = np.flatnonzero(np.diff(starts // eng.POOL_ROWS)) + 1
    return np.concatenate(([0], cut, [S])).astype(np.int64)


def _pool_fwd(eng, X, starts, counts, W, b, u, keep=False):
    """pooled, weights and, when ``keep``, the tanh values T (N, A) (else
    None): one fused kernel, X W computed a work item at a time (nothing of
    size N x A is made unless T is kept)."""
    N, H = X.shape
    weights = np.zeros(N, dtype=X.dtype)
    pooled = np.empty((starts.shape[0], H), dtype=X.dtype)
    T = np.zeros((N, W.shape[1]) if keep else (1, 1), dtype=X.dtype)
    with blas_single_threaded():
        eng.attn_pool_fwd(X, np.ascontiguousarray(W), b, u, starts, counts,
                          _pool_chunks(eng, starts), pooled, weights, T, keep)
    return pooled, weights, (T if keep else None)


def _pool_bwd(eng, X, starts, counts, W, u, weights, T, dpooled, gw):
    N, H = X.shape
    dX = np.zeros_like(X)
    dP = np.zeros_like(T)
    dsc = np.zeros(N, dtype=X.dtype)
    has = gw is not None
    eng.attn_pool_bwd(T, u, X, starts, counts, weights, dpooled,
                      gw if has else np.zeros(1, X.dtype), has, dX, dP, dsc)
    dX += _gemm(eng, dP, W, tb=True)
    return {"states": dX, "W": _gemm(eng, X, dP, ta=True), "b": dP.sum(axis=0), "u": dsc @ T}


def _ragged(states, offsets, W, b, u, check_finite):
    X = check_array(states, "states", ndim=2)
    dt = X.dtype
    check_finite = check_bool(check_finite, "check_finite")
    W, b, u = _pool_params(W, b, u, X.shape[1], dt, check_finite)
    off = _offsets(offsets, X.shape[0], "offsets")
    if check_finite:
        _finite(X, "states")
    return X, off, W, b, u


def attention_pool(states, offsets, W, b, u, *, check_finite=True, backend=None):
    """Attention pooling of ragged segments (Yang et al. 2016).

    For segment s (rows ``offsets[s]:offsets[s+1]`` of the packed states):
    u_i = tanh(h_i W + b), alpha_i = softmax over the segment of u_i . u,
    pooled[s] = sum_i alpha_i h_i; an empty segment gives a zero vector.  The
    ragged input is never copied into a padded one.

    Parameters
    ----------
    states : array (N, H), float32 or float64
    offsets : int array (S+1,)
        Non-decreasing from 0 to N.
    W : array (H, A); b : array (A,); u : array (A,), states' dtype
    check_finite : bool
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    pooled : array (S, H)
    weights : array (N,)

    Raises
    ------
    TypeError
        Non-float arrays, mixed widths, non-integer offsets.
    ValueError
        Wrong shapes, offsets not starting at 0, decreasing or not ending at
        N, NaN or inf (when ``check_finite``).
    """
    X, off, W, b, u = _ragged(states, offsets, W, b, u, check_finite)
    pooled, weights, _ = _pool_fwd(_eng(backend), X, off[:-1], np.diff(off), W, b, u)
    return pooled, weights


def attention_pool_backward(grad_pooled, states, offsets, W, b, u, *, grad_weights=None,
                            check_finite=True, backend=None):
    """Gradients of ``attention_pool`` (loss ``sum(grad_pooled * pooled) +
    sum(grad_weights * weights)``).

    Parameters
    ----------
    grad_pooled : array (S, H)
    states, offsets, W, b, u, check_finite, backend
        As for ``attention_pool``.
    grad_weights : array (N,), optional

    Returns
    -------
    dict with ``"states"`` (N, H), ``"W"``, ``"b"``, ``"u"``.

    Raises
    ------
    TypeError, ValueError
        As for ``attention_pool``; gradients of the wrong shape or dtype.
    """
    X, off, W, b, u = _ragged(states, offsets, W, b, u, check_finite)
    S = off.size - 1
    dpo = check_array(grad_pooled, "grad_pooled", dtype=X.dtype, shape=(S, X.shape[1]))
    gw = None
    if grad_weights is not None:
        gw = check_array(grad_weights, "grad_weights", dtype=X.dtype, shape=(X.shape[0],))
    eng = _eng(backend)
    starts, counts = off[:-1], np.diff(off)
    _, weights, T = _pool_fwd(eng, X, starts, counts, W, b, u, keep=True)
    return _pool_bwd(eng, X, starts, counts, W, u, weights, T, dpo, gw)


def _padded(states, lengths, W, b, u, check_finite):
    X = check_array(states, "states", ndim=3)
    dt = X.dtype
    B, T, H = X.shape
    check_finite = check_bool(check_finite, "check_finite")
    W, b, u = _pool_params(W, b, u, H, dt, check_finite)
    L = _lengths(lengths, B, T)
    fin = np.isfinite(X)
    if X.size and not fin.all():
        valid = np.arange(T)[None, :] < L[:, None]
        if check_finite and (~fin.all(axis=2) & valid).any():
            raise ValueError("states: expected finite values at positions < lengths, got NaN or inf")
        X = np.where(fin, X, 0).astype(dt)  # padding is never read, but enters X^T dP
    starts = np.arange(B, dtype=np.int64) * T
    return X, L, starts, W, b, u


def attention_pool_padded(states, lengths, W, b, u, *, check_finite=True, backend=None):
    """``attention_pool`` on padded input: row b pools ``states[b, :lengths[b]]``.

    Parameters
    ----------
    states : array (B, T, H), float32 or float64
    lengths : int array (B,), in [0, T]
    W : array (H, A); b : array (A,); u : array (A,)
    check_finite : bool
        Positions >= lengths[b] may hold anything (NaN included).
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    pooled : array (B, H)
    weights : array (B, T), 0 at padding

    Raises
    ------
    TypeError, ValueError
        As for ``attention_pool``; lengths of the wrong shape or outside [0, T].
    """
    X, L, starts, W, b, u = _padded(states, lengths, W, b, u, check_finite)
    B, T, H = X.shape
    pooled, weights, _ = _pool_fwd(_eng(backend), X.reshape(B * T, H), starts, L, W, b, u)
    return pooled, weights.reshape(B, T)


def attention_pool_padded_backward(grad_pooled, states, lengths, W, b, u, *, grad_weights=None,
                                   check_finite=True, backend=None):
    """Gradients of ``attention_pool_padded``.

    Parameters
    ----------
    grad_pooled : array (B, H)
    states, lengths, W, b, u, check_finite, backend
        As for ``attention_pool_padded``.
    grad_weights : array (B, T), optional

    Returns
    -------
    dict with ``"states"`` (B, T, H; 0 at padding), ``"W"``, ``"b"``, ``"u"``.

    Raises
    ------
    TypeError, ValueError
        As for ``attention_pool_padded``; gradients of the wrong shape or dtype.
    """
    X, L, starts, W, b, u = _padded(states, lengths, W, b, u, check_finite)
    B, T, H = X.shape
    dpo = check_array(grad_pooled, "grad_pooled", dtype=X.dtype, shape=(B, H))
    gw = None
    if grad_weights is not None:
        gw = check_array(grad_weights, "grad_weights", dtype=X.dtype, shape=(B, T)).reshape(-1)
    eng = _eng(backend)
    X2 = X.reshape(B * T, H)
    _, weights, Tt = _pool_fwd(eng, X2, starts, L, W, b, u, keep=True)
    g = _pool_bwd(eng, X2, starts, L, W, u, weights, Tt, dpo, gw)
    g["states"] = g["states"].reshape(B, T, H)
    return g


_HAN_KEYS = ("Ww", "bw", "uw", "Ws", "bs", "us")


def _han(word_states, sentence_offsets, document_offsets, params, check_finite):
    X = check_array(word_states, "word_states", ndim=2)
    dt = X.dtype
    check_finite = check_bool(check_finite, "check_finite")
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict with keys {list(_HAN_KEYS)}, got "
                        f"{_describe(params)}")
    for key in _HAN_KEYS:
        if key not in params:
            raise ValueError(f"params: expected keys {list(_HAN_KEYS)}, got {sorted(params)} "
                             f"(missing {key!r})")
    for key in params:
        if key not in _HAN_KEYS:
            raise ValueError(f"params: expected only keys {list(_HAN_KEYS)}, got {key!r}")
    H = X.shape[1]
    Ww, bw, uw = _pool_params(params["Ww"], params["bw"], params["uw"], H, dt, check_finite,
                              ("params['Ww']", "params['bw']", "params['uw']"))
    Ws, bs, us = _pool_params(params["Ws"], params["bs"], params["us"], H, dt, check_finite,
                              ("params['Ws']", "params['bs']", "params['us']"))
    so = _offsets(sentence_offsets, X.shape[0], "sentence_offsets")
    do = _offsets(document_offsets, so.size - 1, "document_offsets")
    if check_finite:
        _finite(X, "word_states")
    return X, so, do, (Ww, bw, uw), (Ws, bs, us)


def han_pool(word_states, sentence_offsets, document_offsets, params, *, check_finite=True,
             backend=None):
    """Hierarchical attention pooling (Yang et al. 2016) of ragged documents.

    Word-level attention pooling of the words of each sentence into sentence
    vectors, then sentence-level pooling of the sentences of each document
    into document vectors.  Here the sentence vectors are pooled directly;
    a sentence encoder between the levels (as in the paper's bidirectional
    GRU) is the user's: call ``attention_pool(word_states, sentence_offsets,
    Ww, bw, uw)``, encode the resulting (S, H) sentence vectors, then call
    ``attention_pool(encoded, document_offsets, Ws, bs, us)`` (and the two
    ``attention_pool_backward`` in reverse order for the gradients).

    Parameters
    ----------
    word_states : array (N, H), float32 or float64
        The words of all sentences of all documents, packed.
    sentence_offsets : int array (S+1,)
        Words of sentence s: ``sentence_offsets[s]:sentence_offsets[s+1]``.
    document_offsets : int array (D+1,)
        Sentences of document d: ``document_offsets[d]:document_offsets[d+1]``
        (from 0 to S).
    params : dict
        ``"Ww"`` (H, A), ``"bw"`` (A,), ``"uw"`` (A,) for the words;
        ``"Ws"`` (H, A'), ``"bs"``, ``"us"`` for the sentences.
    check_finite : bool
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    HANResult
        ``(documents (D, H), word_weights (N,), sentence_weights (S,))``.

    Raises
    ------
    TypeError, ValueError
        As for ``attention_pool``; params not a dict, with missing or unknown
        keys; document_offsets not ending at S.
    """
    X, so, do, pw, ps = _han(word_states, sentence_offsets, document_offsets, params,
                             check_finite)
    eng = _eng(backend)
    sent, ww, _ = _pool_fwd(eng, X, so[:-1], np.diff(so), *pw)
    doc, sw, _ = _pool_fwd(eng, sent, do[:-1], np.diff(do), *ps)
    return HANResult(doc, ww, sw)


def han_pool_backward(grad_documents, word_states, sentence_offsets, document_offsets, params, *,
                      check_finite=True, backend=None):
    """Gradients of ``han_pool``'s document vectors (loss ``sum(grad_documents * documents)``).

    Parameters
    ----------
    grad_documents : array (D, H)
    word_states, sentence_offsets, document_offsets, params, check_finite, backend
        As for ``han_pool``.

    Returns
    -------
    dict with ``"word_states"`` (N, H) and ``"params"`` (the six entries).

    Raises
    ------
    TypeError, ValueError
        As for ``han_pool``; grad_documents of the wrong shape or dtype.
    """
    X, so, do, pw, ps = _han(word_states, sentence_offsets, document_offsets, params,
                             check_finite)
    dd = check_array(grad_documents, "grad_documents", dtype=X.dtype,
                     shape=(do.size - 1, X.shape[1]))
    eng = _eng(backend)
    s1, c1, s2, c2 = so[:-1], np.diff(so), do[:-1], np.diff(do)
    sent, w1, T1 = _pool_fwd(eng, X, s1, c1, *pw, keep=True)
    _, w2, T2 = _pool_fwd(eng, sent, s2, c2, *ps, keep=True)
    g2 = _pool_bwd(eng, sent, s2, c2, ps[0], ps[2], w2, T2, dd, None)
    g1 = _pool_bwd(eng, X, s1, c1, pw[0], pw[2], w1, T1, g2["states"], None)
    return {"word_states": g1["states"],
            "params": {"Ww": g1["W"], "bw": g1["b"], "uw": g1["u"],
                       "Ws": g2["W"], "bs": g2["b"], "us": g2["u"]}}
