"""Slow NumPy reference of ``dlkernels.attention.scaled_dot_product_attention``
and its backward, written from the documentation of
``torch.nn.functional.scaled_dot_product_attention`` (not from the kernels).

The documented math, for query (..., L, E), key (..., S, E), value (..., S, Ev)::

    bias = 0 (L, S)
    is_causal:   bias[j > i] = -inf            (tril(diagonal=0): top-left aligned)
    bool mask:   bias[~attn_mask] = -inf       (True = takes part)
    float mask:  bias += attn_mask
    enable_gqa:  key, value heads repeated (repeat_interleave) Hq // Hk times on dim -3
    w = softmax(scale * q k^T + bias, -1); w = dropout(w, p); out = w v

Everything here is computed in float64.  Differences from torch documented by
dlkernels: a row whose keys are all masked gives weights 0 (output 0, lse
-inf) instead of NaN; dropout's keep mask is replayed from dlkernels' Philox
streams (``dropout_keep``).
"""
import numpy as np


def _batch_shapes(q, k, v, enable_gqa):
    """(out batch shape, k/v batch shape with the GQA heads repeated)."""
    kb, vb = k.shape[:-2], v.shape[:-2]
    if enable_gqa:
        g = q.shape[-3] // k.shape[-3]
        kb = kb[:-1] + (kb[-1] * g,)
        vb = vb[:-1] + (vb[-1] * g,)
    return np.broadcast_shapes(q.shape[:-2], kb, vb)


def _expand_kv(x, enable_gqa, hq):
    x = np.asarray(x, np.float64)
    if enable_gqa:
        x = np.repeat(x, hq // x.shape[-3], axis=-3)
    return x


def bias(L, S, attn_mask=None, is_causal=False):
    """The additive bias of the scores (float64), broadcastable to (..., L, S)."""
    b = np.zeros((L, S))
    if is_causal:
        b[~np.tril(np.ones((L, S), bool))] = -np.inf
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == bool:
            b = np.where(m, b, -np.inf)
        else:
            b = b + m.astype(np.float64)
    return b


def dropout_keep(key, ctr, batch_shape, L, S, p, dtype):
    """The dropout keep mask (batch_shape + (L, S), bool) of the kernels' streams.

    Query row i of batch-head bh (the flat index over ``batch_shape``) owns
    stream ``bh * L + i`` of the call: counter ``ctr + (bh * L + i) * 2**128``.
    Its uniform j (numpy's ``Generator(Philox).random(dtype=dtype)``: float64
    one per 64-bit word, float32 from the low then the high 32-bit half of each
    word) decides key j: kept when ``u >= p`` (p rounded to dtype).
    """
    dtype = np.dtype(dtype)
    BH = int(np.prod(batch_shape, dtype=np.int64))
    c0 = sum(int(w) << (64 * t) for t, w in enumerate(np.asarray(ctr, np.uint64)))
    keep = np.empty((BH, L, S), bool)
    pd = dtype.type(p)
    for bh in range(BH):
        for i in range(L):
            c = (c0 + ((bh * L + i) << 128)) % (1 << 256)
            words = np.array([(c >> (64 * t)) & 0xFFFFFFFFFFFFFFFF for t in range(4)], np.uint64)
            g = np.random.Generator(np.random.Philox(key=np.asarray(key, np.uint64), counter=words))
            keep[bh, i] = g.random(S, dtype=dtype) >= pd
    return keep.reshape(tuple(batch_shape) + (L, S))


def _weights(q, k, attn_mask, is_causal, scale, enable_gqa):
    q = np.asarray(q, np.float64)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / np.sqrt(E) if scale is None else float(scale)
    k = _expand_kv(k, enable_gqa, q.shape[-3] if q.ndim >= 3 else 1)
    s = (q @ np.swapaxes(k, -1, -2)) * scale + bias(L, S, attn_mask, is_causal)
    m = np.max(s, axis=-1, keepdims=True)
    dead = ~np.isfinite(m)  # every key masked
    m = np.where(dead, 0.0, m)
    e = np.exp(s - m)  # exp(-inf) = 0
    tot = e.sum(-1, keepdims=True)
    w = np.where(dead, 0.0, e / np.where(dead, 1.0, tot))
    lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1.0, tot)))[..., 0]
    return w, lse, scale


def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
         enable_gqa=False, keep=None):
    """(out, lse) in float64; ``keep`` the dropout keep mask (None = no dropout)."""
    w, lse, _ = _weights(query, key, attn_mask, is_causal, scale, enable_gqa)
    if keep is not None and dropout_p > 0:
        w = w * keep / (1.0 - dropout_p)
    v = _expand_kv(value, enable_gqa, query.shape[-3] if np.ndim(query) >= 3 else 1)
    out = w @ v
    shape = _batch_shapes(np.asarray(query), np.asarray(key), np.asarray(value), enable_gqa)
    return np.broadcast_to(out, shape + out.shape[-2:]), np.broadcast_to(lse, shape + lse.shape[-1:])


def _sum_to(x, shape):
    """Sum the broadcast dimensions of x back to ``shape``."""
    while x.ndim > len(shape):
        x = x.sum(0)
    for ax, n in enumerate(shape):
        if n == 1 and x.shape[ax] != 1:
            x = x.sum(ax, keepdims=True)
    return x


def _sum_heads(x, enable_gqa, hk):
    """Sum the repeated GQA heads of a gradient back to hk heads."""
    if not enable_gqa:
        return x
    g = x.shape[-3] // hk
    return x.reshape(x.shape[:-3] + (hk, g) + x.shape[-2:]).sum(-3)


def sdpa_backward(grad_out, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                  scale=None, enable_gqa=False, keep=None):
    """(grad_query, grad_key, grad_value) in float64 by the chain rule through
    the softmax (dS = W * (dW - rowsum(W * dW)))."""
    q = np.asarray(query, np.float64)
    hq = q.shape[-3] if q.ndim >= 3 else 1
    w, _, scale = _weights(query, key, attn_mask, is_causal, scale, enable_gqa)
    k = _expand_kv(key, enable_gqa, hq)
    v = _expand_kv(value, enable_gqa, hq)
    g = np.asarray(grad_out, np.float64)
    z = np.ones_like(w) if keep is None or dropout_p == 0 else keep / (1.0 - dropout_p)
    wd = w * z
    dv = np.swapaxes(wd, -1, -2) @ g
    dwd = g @ np.swapaxes(v, -1, -2)
    dw = dwd * z
    ds = w * (dw - (w * dw).sum(-1, keepdims=True))
    dq = (ds @ k) * scale
    dk = (np.swapaxes(ds, -1, -2) @ q) * scale
    dq = _sum_to(dq, q.shape)
    kshape = np.shape(key)
    dk = _sum_to(_sum_heads(dk, enable_gqa, kshape[-3] if enable_gqa else 0),
                 kshape)
    dv = _sum_to(_sum_heads(dv, enable_gqa, np.shape(value)[-3] if enable_gqa else 0),
                 np.shape(value))
    return dq, dk, dv
