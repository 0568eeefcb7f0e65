"""Public scaled dot-product attention API (flash-style, PyTorch semantics):
input checks and backend dispatch.

``scaled_dot_product_attention`` follows the documentation of
``torch.nn.functional.scaled_dot_product_attention``: query (..., L, E), key
(..., S, E), value (..., S, Ev), leading (batch, head) dimensions broadcast;
``softmax(scale q k^T + bias) v`` with the bias from ``attn_mask`` (bool:
True = takes part; float: added to the scores) and ``is_causal`` (key j takes
part for query i when j <= i: the top-left aligned lower triangle, also for
L != S).  Differences, all documented below: a query row whose keys are all
masked gives zeros (PyTorch gives NaN in some versions); dropout draws come
from dlkernels' Philox streams; inputs must be finite.

The kernels (``dlkernels.engine.{numba,cython}.attention``) are flash-style:
nothing of size L x S is allocated (the engine module's docstring states the
tiling, the stream layout of the dropout draws and the backward algorithm).
"""
import numbers

import numpy as np

from ._backend import backend_name, resolve
from ._checks import _describe, check_array, check_bool, check_float
from .rng import as_streams

try:  # the shared thread-control module (falls back to the RBM family's copy)
    from ._threads import blas_single_threaded
except ImportError:  # pragma: no cover
    from .rbm import blas_single_threaded

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]

_PREFER = ("cython", "numba")
_EMPTY_I64 = np.empty(0, np.int64)
_EMPTY_U8 = np.empty(0, np.uint8)


def _kernels(backend):
    return resolve(backend, "attention", prefer=_PREFER)


def _writeable(eng, *arrays):
    """Numba compiles a separate specialisation for read-only arrays (seconds
    of start-up): hand it writeable copies instead.  Cython takes them as they are."""
    if backend_name(eng) != "numba":
        return arrays
    return tuple(a if a.flags.writeable else a.copy() for a in arrays)


class _Plan:
    """Validated, engine-ready arguments of one call."""


def _batch(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")" if shape else "()"


def _prepare(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
             finite=True):
    """``finite=False``: query, key and value are not scanned here (the forward
    kernel checks them in its own pass: see ``_raise_nonfinite``)."""
    q = check_array(query, "query", allow_empty=False, finite=finite)
    dt = q.dtype
    k = check_array(key, "key", dtype=dt, allow_empty=False, finite=finite)
    v = check_array(value, "value", dtype=dt, allow_empty=False, finite=finite)
    for x, name in ((q, "query"), (k, "key"), (v, "value")):
        if x.ndim < 2:
            raise ValueError(f"{name}: expected an array of at least 2 dimensions (..., rows, "
                             f"features), got shape {x.shape}")
    L, E = q.shape[-2:]
    S = k.shape[-2]
    Ev = v.shape[-1]
    if k.shape[-1] != E:
        raise ValueError(f"key: expected {E} features in the last dimension (query's E), "
                         f"got shape {k.shape}")
    if v.shape[-2] != S:
        raise ValueError(f"value: expected {S} rows in dimension -2 (key's S), got shape {v.shape}")
    dropout_p = check_float(dropout_p, "dropout_p", min=0.0, max=1.0, max_inclusive=False)
    if dt.type(dropout_p) >= 1:  # the kernels compare and scale in the array's dtype
        raise ValueError(f"dropout_p: expected a number < 1 in {dt}, got {dropout_p!r} "
                         f"(rounds to 1)")
    is_causal = check_bool(is_causal, "is_causal")
    enable_gqa = check_bool(enable_gqa, "enable_gqa")
    if scale is None:
        scale = 1.0 / np.sqrt(E)
    else:
        scale = check_float(scale, "scale")
    qb, kb, vb = q.shape[:-2], k.shape[:-2], v.shape[:-2]
    g = 1
    if enable_gqa:
        for x, name in ((q, "query"), (k, "key"), (v, "value")):
            if x.ndim < 3:
                raise ValueError(f"{name}: expected (..., heads, rows, features) with enable_gqa, "
                                 f"got shape {x.shape}")
        Hq, Hk, Hv = qb[-1], kb[-1], vb[-1]
        if Hv != Hk:
            raise ValueError(f"value: expected {Hk} heads in dimension -3 (key's), got shape {v.shape}")
        if Hq % Hk:
            raise ValueError(f"key: expected a number of heads (dimension -3) dividing query's "
                             f"{Hq}, got shape {k.shape}")
        g = Hq // Hk
        try:
            kvlead = np.broadcast_shapes(kb[:-1], vb[:-1])
        except ValueError:
            raise ValueError(f"value: expected batch dimensions broadcastable with key's "
                             f"{_batch(kb[:-1])}, got shape {v.shape}") from None
        kvb = kvlead + (Hk,)
        try:
            bshape = np.broadcast_shapes(qb[:-1], kvlead) + (Hq,)
        except ValueError:
            raise ValueError(f"key: expected batch dimensions broadcastable with query's "
                             f"{_batch(qb[:-1])}, got shape {k.shape}") from None
    else:
        try:
            kvb = np.broadcast_shapes(kb, vb)
        except ValueError:
            raise ValueError(f"value: expected batch dimensions broadcastable with key's "
                             f"{_batch(kb)}, got shape {v.shape}") from None
        try:
            bshape = np.broadcast_shapes(qb, kvb)
        except ValueError:
            raise ValueError(f"key: expected batch dimensions broadcastable with query's "
                             f"{_batch(qb)}, got shape {k.shape}") from None
    p = _Plan()
    p.orig_shapes = (q.shape, k.shape, v.shape)
    if kb != kvb:
        k = np.ascontiguousarray(np.broadcast_to(k, kvb + k.shape[-2:]))
    if vb != kvb:
        v = np.ascontiguousarray(np.broadcast_to(v, kvb + v.shape[-2:]))
    if qb != bshape:
        q = np.ascontiguousarray(np.broadcast_to(q, bshape + q.shape[-2:]))
    NKV = int(np.prod(kvb, dtype=np.int64))
    BH = int(np.prod(bshape, dtype=np.int64))
    idx = np.arange(NKV, dtype=np.int64).reshape(kvb)
    if g > 1:
        idx = np.repeat(idx, g, axis=-1)
    p.kv_idx = np.ascontiguousarray(np.broadcast_to(idx, bshape)).reshape(BH)
    p.q = q.reshape(BH, L, E)
    p.k = k.reshape(NKV, S, E)
    p.v = v.reshape(NKV, S, Ev)
    p.kv_shapes = (kvb + (S, E), kvb + (S, Ev))
    p.bshape, p.L, p.S, p.E, p.Ev, p.dtype = bshape, L, S, E, Ev, dt
    p.dropout_p, p.is_causal, p.scale = dropout_p, is_causal, scale
    _mask(p, attn_mask)
    return p


def _mask(p, attn_mask):
    L, S, bshape = p.L, p.S, p.bshape
    p.mask_mode, p.mask_b, p.mask_f, p.mask_off, p.mask_ld = 0, _EMPTY_U8, np.empty(0, p.dtype), \
        _EMPTY_I64, 0
    if attn_mask is None:
        return
    if isinstance(attn_mask, np.ndarray) and attn_mask.dtype == bool:
        m = attn_mask
    elif isinstance(attn_mask, (list, tuple)) and np.asarray(attn_mask).dtype == bool:
        m = np.asarray(attn_mask)
    else:
        if isinstance(attn_mask, np.ndarray) and attn_mask.dtype.kind in "iu":
            raise TypeError(f"attn_mask: expected a bool array or a float array of dtype {p.dtype}, "
                            f"got dtype {attn_mask.dtype}")
        m = check_array(attn_mask, "attn_mask", dtype=p.dtype)
        if m.size and (np.isnan(m).any() or (m == np.inf).any()):
            raise ValueError("attn_mask: expected finite values or -inf, got NaN or +inf")
    nd = len(bshape) + 2
    if m.ndim > nd:
        raise ValueError(f"attn_mask: expected a shape broadcastable to {bshape + (L, S)}, "
                         f"got shape {m.shape}")
    m = m.reshape((1,) * (nd - m.ndim) + m.shape)
    Lm, Sm = m.shape[-2:]
    mb = m.shape[:-2]
    ok = Lm in (1, L) and Sm in (1, S) and all(a in (1, b) for a, b in zip(mb, bshape))
    if not ok:
        raise ValueError(f"attn_mask: expected a shape broadcastable to {bshape + (L, S)}, "
                         f"got shape {m.shape}")
    if Sm != S:
        m = np.broadcast_to(m, mb + (Lm, S))
    m = np.ascontiguousarray(m)
    NM = int(np.prod(mb, dtype=np.int64))
    midx = np.broadcast_to(np.arange(NM, dtype=np.int64).reshape(mb), bshape)
    p.mask_off = np.ascontiguousarray(midx).reshape(-1) * (Lm * S)
    p.mask_ld = S if Lm == L and L > 1 else 0
    if m.dtype == bool:
        p.mask_mode, p.mask_b = 1, m.reshape(-1).view(np.uint8)
    else:
        p.mask_mode, p.mask_f = 2, m.reshape(-1)


def _raise_nonfinite(p):
    """The forward kernel returned a NaN lse: a NaN or inf in query, key or
    value (the kernel's check; named here by a scan of each), or finite
    inputs whose scores overflow the dtype."""
    for x, name in ((p.q, "query"), (p.k, "key"), (p.v, "value")):
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    raise ValueError(f"query, key: expected scores scale * q.k within the range of {p.dtype}, "
                     f"got an overflow to inf (scale the inputs down or compute in float64)")


def _rng(p, random_state):
    if p.dropout_p > 0:
        st = as_streams(random_state)
        return st.key, st.next_counter()
    if random_state is not None:
        as_streams(random_state)  # validated, not consumed
    return np.zeros(2, np.uint64), np.zeros(4, np.uint64)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False, *, return_lse=False,
                                 random_state=None, backend=None):
    """Scaled dot-product attention, ``softmax(scale q k^T + bias) v``, with the
    semantics of ``torch.nn.functional.scaled_dot_product_attention``.

    Parameters
    ----------
    query : array_like, shape (..., L, E)
        float32 or float64 (integer input is converted to float64); finite.
    key : array_like, shape (..., S, E)
        Same dtype as ``query``; finite.
    value : array_like, shape (..., S, Ev)
        Same dtype as ``query``; finite.  The leading dimensions of query,
        key and value broadcast against each other (the output takes the
        broadcast shape); key and value are never copied per query head.
    attn_mask : array_like, optional
        Broadcastable to (..., L, S) (the broadcast batch shape, L, S).  A
        bool mask: True = the key takes part.  A float mask (query's dtype;
        finite or -inf) is added to the scores.
    dropout_p : float, default 0
        Dropout probability in [0, 1) on the attention weights (kept weights
        are scaled by 1 / (1 - p)); p is rounded to the dtype of query, and
        must stay below 1 there.
    is_causal : bool, default False
        Key j takes part for query i only when j <= i (top-left aligned,
        as PyTorch's ``tril(diagonal=0)``; combined with ``attn_mask``).
    scale : float, optional
        Factor of the scores; default ``1 / sqrt(E)``.
    enable_gqa : bool, default False
        Grouped-query attention: key and value have Hk heads in dimension -3,
        query Hq, a multiple of Hk; query head h uses key/value head
        ``h // (Hq // Hk)`` (PyTorch's ``repeat_interleave``).
    return_lse : bool, default False
        Also return the log-sum-exp of each query's (scaled, masked) scores,
        shape (..., L), as the backward needs it (-inf for a fully masked row).
    random_state : None, int, dlkernels.rng.Streams or numpy Generator
        Source of the dropout draws (used only when ``dropout_p > 0``; a
        ``Streams`` advances by one epoch).  Query row i of the flattened
        batch-head bh draws from stream ``bh * L + i`` of the call
        (``dlkernels.engine.numba._sdpa`` documents the layout): the same
        bits for any thread count and either backend.
    backend : {"auto", "numba", "cython"} or None
        None = the process default.

    Returns
    -------
    out : ndarray, shape (..., L, Ev)
        In query's dtype.  A query row whose keys are all masked gives 0
        (where PyTorch's result differs between its versions, NaN or 0).
    lse : ndarray, shape (..., L)
        Only with ``return_lse=True``.

    Raises
    ------
    TypeError
        An argument of the wrong type or dtype (query not float/integer, key
        or value or a float mask of another float dtype than query, an
        integer mask, non-bool flags, a bad random_state).
    ValueError
        Fewer than 2 dimensions, empty arrays, mismatched E / S, batch
        dimensions or mask shapes that do not broadcast, heads that do not
        group (enable_gqa), NaN / inf in query, key or value (anywhere, masked
        positions included), a NaN or +inf mask entry, dropout_p outside
        [0, 1), a non-finite scale, scores ``scale * q.k`` that overflow the
        dtype to inf (PyTorch returns NaN there), an unknown backend.
    """
    # query, key and value are checked for NaN / inf by the kernel, in the pass
    # that reads them (a separate np.isfinite pass would double a decoding
    # step's memory traffic): a NaN lse reports it.
    p = _prepare(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                 finite=False)
    return_lse = check_bool(return_lse, "return_lse")
    eng = _kernels(backend)
    kkey, ctr = _rng(p, random_state)
    BH = p.q.shape[0]
    out = np.empty((BH, p.L, p.Ev), p.dtype)
    lse = np.empty((BH, p.L), p.dtype)
    q, k, v, mb, mf = _writeable(eng, p.q, p.k, p.v, p.mask_b, p.mask_f)
    with blas_single_threaded():
        eng.sdpa_forward(q, k, v, p.kv_idx, p.mask_mode, mb, mf, p.mask_off,
                         p.mask_ld, p.is_causal, p.scale, p.dropout_p, kkey, ctr, out, lse)
    if np.isnan(lse).any():
        _raise_nonfinite(p)
    out = out.reshape(p.bshape + (p.L, p.Ev))
    if return_lse:
        return out, lse.reshape(p.bshape + (p.L,))
    return out


def _sum_to(x, shape):
    """Sum the broadcast dimensions of x back to ``shape``."""
    if x.shape == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(a for a, n in enumerate(shape) if n == 1 and x.shape[a] != 1)
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return np.ascontiguousarray(x)


def _same(x, name, shape, dt, *, finite=True, allow_inf=False):
    x = check_array(x, name, dtype=dt)
    if x.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {x.shape}")
    if x.size:
        bad = np.isnan(x).any() or (np.isinf(x).any() if not allow_inf else (x == np.inf).any())
        if finite and bad:
            what = "finite values or -inf" if allow_inf else "finite values"
            raise ValueError(f"{name}: expected {what}, got NaN or inf")
    return x


def scaled_dot_product_attention_backward(grad_out, query, key, value, out, lse, attn_mask=None,
                                          dropout_p=0.0, is_causal=False, scale=None,
                                          enable_gqa=False, *, random_state=None, backend=None):
    """Gradients of ``scaled_dot_product_attention`` (FlashAttention-2's backward).

    P is recomputed tile by tile from query, key and ``lse``; dK and dV are
    accumulated per key tile, dQ per query tile, in a fixed order (no
    atomics): deterministic and bit-identical across backends and thread
    counts.  No gradient flows to ``attn_mask``.

    Parameters
    ----------
    grad_out : array_like, shape (..., L, Ev)
        Gradient of the loss with respect to ``out`` (the broadcast batch
        shape); query's dtype, finite.
    query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa
        Exactly as given to the forward call.
    out, lse : array_like
        The forward's output and log-sum-exp (``return_lse=True``).
    random_state : None, int, dlkernels.rng.Streams or numpy Generator
        With ``dropout_p > 0``: the same generator as the forward's, in the
        state it had before the forward call (an int seed replays itself; a
        ``Streams`` must be restored with ``get_state`` / ``set_state``), so
        that the same dropout mask is drawn.
    backend : {"auto", "numba", "cython"} or None

    Returns
    -------
    grad_query, grad_key, grad_value : ndarray
        Shaped as query, key and value (summed over broadcast dimensions and
        over the query heads of each key/value head with ``enable_gqa``).

    Raises
    ------
    TypeError, ValueError
        As the forward, plus: ``grad_out`` / ``out`` / ``lse`` of the wrong
        dtype or shape, or non-finite (lse may be -inf).
    """
    p = _prepare(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    dt = p.dtype
    oshape = p.bshape + (p.L, p.Ev)
    g = _same(grad_out, "grad_out", oshape, dt)
    o = _same(out, "out", oshape, dt)
    ls = _same(lse, "lse", p.bshape + (p.L,), dt, allow_inf=True)
    eng = _kernels(backend)
    kkey, ctr = _rng(p, random_state)
    BH = p.q.shape[0]
    NKV = p.k.shape[0]
    order = np.argsort(p.kv_idx, kind="stable").astype(np.int64)
    kv_ptr = np.zeros(NKV + 1, np.int64)
    np.cumsum(np.bincount(p.kv_idx, minlength=NKV), out=kv_ptr[1:])
    dq = np.empty((BH, p.L, p.E), dt)
    dk = np.empty((NKV, p.S, p.E), dt)
    dv = np.empty((NKV, p.S, p.Ev), dt)
    g, q, k, v, o, ls, mb, mf = _writeable(eng, g.reshape(BH, p.L, p.Ev), p.q, p.k, p.v,
                                           o.reshape(BH, p.L, p.Ev), ls.reshape(BH, p.L),
                                           p.mask_b, p.mask_f)
    with blas_single_threaded():
        eng.sdpa_backward(g, q, k, v, o, ls, p.kv_idx, kv_ptr, order, p.mask_mode, mb,
                          mf, p.mask_off, p.mask_ld, p.is_causal, p.scale, p.dropout_p,
                          kkey, ctr, dq, dk, dv)
    qs, ks, vs = p.orig_shapes
    dq = _sum_to(dq.reshape(p.bshape + (p.L, p.E)), qs)
    dk = _sum_to(dk.reshape(p.kv_shapes[0]), ks)
    dv = _sum_to(dv.reshape(p.kv_shapes[1]), vs)
    return dq, dk, dv
