"""Slow, obviously-correct NumPy references for dlkernels.attention.

Everything is computed the textbook way, in float64, with the broadcast
tensors the kernels avoid (the (B, Tq, Tk, H) tensor of additive and concat
scores included).  Gradients: analytic ones for ``attend`` (written out from
the chain rule below) and a central finite-difference helper for the rest.
"""
import numpy as np

SCORES = ("dot", "scaled_dot", "general", "additive", "concat")


def f64(x):
    return None if x is None else np.asarray(x, dtype=np.float64)


def random_params(score, Dq, Dk, H, rng, *, bias=True, g=False):
    """A params dict for ``score`` (float64)."""
    if score in ("dot", "scaled_dot"):
        return None
    if score == "general":
        return {"W": rng.standard_normal((Dq, Dk)) / np.sqrt(Dq)}
    if score == "additive":
        p = {"Wq": rng.standard_normal((Dq, H)) / np.sqrt(Dq),
             "Wk": rng.standard_normal((Dk, H)) / np.sqrt(Dk),
             "v": rng.standard_normal(H)}
    else:
        p = {"W": rng.standard_normal((Dq + Dk, H)) / np.sqrt(Dq + Dk), "v": rng.standard_normal(H)}
    if bias:
        p["b"] = 0.1 * rng.standard_normal(H)
    if g and score == "additive":
        p["g"] = np.array(1.3)
    return p


def scores(q, k, score, params=None):
    """(B, Tq, Tk) scores, the broadcast way."""
    q, k = f64(q), f64(k)
    params = {n: f64(a) for n, a in (params or {}).items()}
    if score == "dot":
        return np.einsum("bid,bjd->bij", q, k)
    if score == "scaled_dot":
        return np.einsum("bid,bjd->bij", q, k) / np.sqrt(k.shape[2])
    if score == "general":
        return np.einsum("bid,de,bje->bij", q, params["W"], k)
    if score == "additive":
        qp, kp, v = q @ params["Wq"], k @ params["Wk"], params["v"]
        if "g" in params:
            v = params["g"] * v / np.linalg.norm(v)
    else:  # concat: [q; k] W, the concatenation built explicitly
        B, Tq, Dq = q.shape
        Tk = k.shape[1]
        cat = np.concatenate([np.broadcast_to(q[:, :, None, :], (B, Tq, Tk, Dq)),
                              np.broadcast_to(k[:, None, :, :], (B, Tq, Tk, k.shape[2]))], axis=3)
        pre = cat @ params["W"] + params.get("b", 0.0)
        return np.tanh(pre) @ params["v"]
    pre = qp[:, :, None, :] + kp[:, None, :, :] + params.get("b", 0.0)
    return np.tanh(pre) @ v


def valid_and_add(B, Tq, Tk, lengths=None, mask=None, causal=False):
    """(valid (B, Tq, Tk) bool, additive float mask (B, Tq, Tk))."""
    valid = np.ones((B, Tq, Tk), bool)
    add = np.zeros((B, Tq, Tk))
    if lengths is not None:
        valid &= np.arange(Tk)[None, None, :] < np.asarray(lengths)[:, None, None]
    if causal:
        valid &= np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype == bool:
            valid &= np.broadcast_to(m, (B, Tq, Tk))
        else:
            m = np.broadcast_to(f64(m), (B, Tq, Tk))
            valid &= m != -np.inf
            add = np.where(valid, m, 0.0)
    return valid, add


def masked_softmax(s, lengths=None, mask=None, causal=False):
    s = f64(s)
    B, Tq, Tk = s.shape
    valid, add = valid_and_add(B, Tq, Tk, lengths, mask, causal)
    x = np.where(valid, s + add, -np.inf)
    m = x.max(axis=2, keepdims=True) if Tk else np.zeros((B, Tq, 1))
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(valid, np.exp(np.where(valid, x - m, 0.0)), 0.0)
    z = e.sum(axis=2, keepdims=True)
    return np.where(z > 0, e / np.where(z > 0, z, 1.0), 0.0)


def attend(q, k, v, score="dot", params=None, lengths=None, mask=None, causal=False):
    """(context, weights)."""
    w = masked_softmax(scores(q, k, score, params), lengths, mask, causal)
    valid, _ = valid_and_add(*w.shape, lengths, mask, causal)
    vv = np.where(np.isfinite(f64(v)), f64(v), 0.0)  # masked-out NaN must not leak
    return np.einsum("bij,bjd->bid", w, vv), w


def _score_grads(q, k, score, params, ds):
    """d(sum ds * scores)/d(q, k, params), analytically."""
    q, k = f64(q), f64(k)
    P = {n: f64(a) for n, a in (params or {}).items()}
    out = {}
    if score in ("dot", "scaled_dot"):
        c = 1.0 if score == "dot" else 1.0 / np.sqrt(k.shape[2])
        out["q"] = c * np.einsum("bij,bjd->bid", ds, k)
        out["k"] = c * np.einsum("bij,bid->bjd", ds, q)
        return out
    if score == "general":
        W = P["W"]
        out["q"] = np.einsum("bij,de,bje->bid", ds, W, k)
        out["k"] = np.einsum("bij,bid,de->bje", ds, q, W)
        out["W"] = np.einsum("bij,bid,bje->de", ds, q, k)
        return out
    Dq = q.shape[2]
    if score == "additive":
        Wq, Wk = P["Wq"], P["Wk"]
    else:
        Wq, Wk = P["W"][:Dq], P["W"][Dq:]
    v = P["v"]
    veff = v
    if "g" in P:
        nv = np.linalg.norm(v)
        veff = P["g"] * v / nv
    t = np.tanh((q @ Wq)[:, :, None, :] + (k @ Wk)[:, None, :, :] + P.get("b", 0.0))
    dveff = np.einsum("bij,bijh->h", ds, t)
    dpre = ds[..., None] * veff * (1 - t * t)
    dqp, dkp = dpre.sum(axis=2), dpre.sum(axis=1)
    out["q"] = dqp @ Wq.T
    out["k"] = dkp @ Wk.T
    dWq = np.einsum("bid,bih->dh", q, dqp)
    dWk = np.einsum("bjd,bjh->dh", k, dkp)
    if score == "additive":
        out["Wq"], out["Wk"] = dWq, dWk
    else:
        out["W"] = np.concatenate([dWq, dWk], axis=0)
    if "b" in P:
        out["b"] = dpre.sum(axis=(0, 1, 2))
    if "g" in P:
        vhat = v / nv
        out["g"] = np.array(dveff @ vhat)
        out["v"] = P["g"] / nv * (dveff - (dveff @ vhat) * vhat)
    else:
        out["v"] = dveff
    return out


def attend_backward(dctx, q, k, v, score="dot", params=None, lengths=None, mask=None,
                    causal=False, grad_weights=None):
    """Analytic gradients of sum(dctx * context) + sum(grad_weights * weights)."""
    ctx, w = attend(q, k, v, score, params, lengths, mask, causal)
    dctx = f64(dctx)
    vv = np.where(np.isfinite(f64(v)), f64(v), 0.0)
    dw = np.einsum("bid,bjd->bij", dctx, vv)
    if grad_weights is not None:
        dw = dw + f64(grad_weights)
    ds = w * (dw - (w * dw).sum(axis=2, keepdims=True))
    kk = np.where(np.isfinite(f64(k)), f64(k), 0.0)
    out = _score_grads(q, kk, score, params, ds)
    res = {"q": out.pop("q"), "k": out.pop("k"), "v": np.einsum("bij,bid->bjd", w, dctx)}
    res["params"] = out  # gradients of the params entries, named as in params
    return res


def local_positions(q, window, position, position_params, lengths, Tk):
    """p_t (B, Tq)."""
    q = f64(q)
    B, Tq, _ = q.shape
    if position == "monotonic":
        return np.broadcast_to(np.arange(Tq, dtype=np.float64), (B, Tq)).copy()
    S = np.full(B, float(Tk)) if lengths is None else np.asarray(lengths, np.float64)
    z = np.tanh(q @ f64(position_params["Wp"])) @ f64(position_params["vp"])
    return S[:, None] / (1 + np.exp(-z))


def local_attend(q, k, v, window, position="monotonic", position_params=None, score="general",
                 params=None, lengths=None):
    """(context, window weights (B, Tq, 2D+1), starts (B, Tq), p (B, Tq)), the slow way."""
    q, k, v = f64(q), f64(k), f64(v)
    B, Tq, _ = q.shape
    Tk = k.shape[1]
    D = window
    p = local_positions(q, window, position, position_params, lengths, Tk)
    s = scores(q, k, score, params)
    L = np.full(B, Tk) if lengths is None else np.asarray(lengths)
    ctx = np.zeros((B, Tq, v.shape[2]))
    W = np.zeros((B, Tq, 2 * D + 1))
    starts = np.floor(p + 0.5).astype(np.int64) - D
    sigma = D / 2.0
    for b in range(B):
        for i in range(Tq):
            pos = starts[b, i] + np.arange(2 * D + 1)
            ok = (pos >= 0) & (pos < L[b])
            if not ok.any():
                continue
            x = np.full(2 * D + 1, -np.inf)
            x[ok] = s[b, i, pos[ok]]
            e = np.where(ok, np.exp(x - x[ok].max()), 0.0)
            a = e / e.sum()
            if D > 0:
                a = a * np.exp(-(pos - p[b, i]) ** 2 / (2 * sigma ** 2))
            W[b, i] = np.where(ok, a, 0.0)
            ctx[b, i] = W[b, i, ok] @ v[b, pos[ok]]
    return ctx, W, starts, p


def attention_pool(states, offsets, W, b, u):
    """(pooled (S, H), weights (N,)), one segment at a time."""
    states, W, b, u = f64(states), f64(W), f64(b), f64(u)
    offsets = np.asarray(offsets)
    S = len(offsets) - 1
    pooled = np.zeros((S, states.shape[1]))
    weights = np.zeros(states.shape[0])
    for s in range(S):
        h = states[offsets[s]:offsets[s + 1]]
        if len(h) == 0:
            continue
        e = np.tanh(h @ W + b) @ u
        a = np.exp(e - e.max())
        a /= a.sum()
        weights[offsets[s]:offsets[s + 1]] = a
        pooled[s] = a @ h
    return pooled, weights


def attention_pool_padded(states, lengths, W, b, u):
    """(pooled (B, H), weights (B, T)), the padded-and-masked way."""
    states = f64(states)
    B, T, _ = states.shape
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    x = np.where(valid[..., None], states, 0.0)
    e = np.tanh(x @ f64(W) + f64(b)) @ f64(u)
    e = np.where(valid, e, -np.inf)
    m = np.where(valid.any(1), e.max(1), 0.0)
    a = np.where(valid, np.exp(e - m[:, None]), 0.0)
    z = a.sum(1, keepdims=True)
    a = np.where(z > 0, a / np.where(z > 0, z, 1), 0.0)
    return np.einsum("bt,bth->bh", a, x), a


def han_pool(word_states, sentence_offsets, document_offsets, params):
    sent, ww = attention_pool(word_states, sentence_offsets, params["Ww"], params["bw"], params["uw"])
    doc, sw = attention_pool(sent, document_offsets, params["Ws"], params["bs"], params["us"])
    return doc, ww, sw


def fd_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar f() w.r.t. the float64 array x (changed in place
    and restored)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2 * eps)
    return g
