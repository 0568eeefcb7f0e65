"""Tests of Luong local attention and (hierarchical) attention pooling:
NumPy references, finite differences, ragged == padded, empty segments,
backend and thread bit parity."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dlkernels
from dlkernels import attention as A

import naive_attention as ref
from conftest import require_backend
from test_attention_core import TOL, case, close

FAMILY = "attention"


def pos_params(Dq, Hp, rng, dtype):
    return {"Wp": rng.standard_normal((Dq, Hp)).astype(dtype),
            "vp": rng.standard_normal(Hp).astype(dtype)}


@pytest.mark.parametrize("position", ["monotonic", "predictive"])
@pytest.mark.parametrize("score", ["general", "dot", "concat"])
@pytest.mark.parametrize("window", [0, 1, 3])
def test_local_matches_reference(backend, dtype, position, score, window):
    rng = np.random.default_rng(20)
    q, k, v, P = case(score, dtype, rng, B=3, Tq=6, Tk=8)
    PP = pos_params(4, 5, rng, dtype) if position == "predictive" else None
    L = np.array([8, 5, 0])
    res = A.local_attend(q, k, v, window=window, position=position, position_params=PP,
                         score=score, params=P, lengths=L, backend=backend)
    c2, w2, s2, p2 = ref.local_attend(q, k, v, window, position, PP, score, P, L)
    close(res.positions, p2, dtype)
    ok = np.abs(p2 + 0.5 - np.round(p2 + 0.5)) > 1e-3  # float32 rounding at the half-way points
    np.testing.assert_array_equal(res.starts[ok], s2[ok])
    sel = ok[..., None]
    np.testing.assert_allclose(np.where(sel, res.context, 0), np.where(sel, c2, 0),
                               **TOL[np.dtype(dtype)])
    np.testing.assert_allclose(np.where(sel, res.weights, 0), np.where(sel, w2, 0),
                               **TOL[np.dtype(dtype)])
    assert res.weights.shape == (3, 6, 2 * window + 1)
    assert (res.context[2] == 0).all()


@pytest.mark.parametrize("position", ["monotonic", "predictive"])
@pytest.mark.parametrize("score", ["general", "additive"])
def test_local_backward_finite_differences(backend, position, score):
    rng = np.random.default_rng(21)
    q, k, v, P = case(score, np.float64, rng, B=2, Tq=3, Tk=5, Dq=3, Dk=2, Dv=2, H=3)
    PP = pos_params(3, 2, rng, np.float64) if position == "predictive" else None
    L = np.array([5, 3])
    D = 2
    dctx = rng.standard_normal((2, 3, 2))
    g = A.local_attend_backward(dctx, q, k, v, window=D, position=position, position_params=PP,
                                score=score, params=P, lengths=L, backend=backend)

    def loss():
        return float((ref.local_attend(q, k, v, D, position, PP, score, P, L)[0] * dctx).sum())

    for n, x in (("q", q), ("k", k), ("v", v)):
        np.testing.assert_allclose(g[n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg=n)
    for n, x in P.items():
        np.testing.assert_allclose(g["params"][n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8,
                                   err_msg=n)
    for n, x in (PP or {}).items():
        np.testing.assert_allclose(g["position_params"][n], ref.fd_grad(loss, x), rtol=1e-6,
                                   atol=1e-8, err_msg=n)
    assert sorted(g["position_params"]) == sorted(PP or {})


def _segments(rng, S, maxlen, H, dtype, empty=True):
    lens = rng.integers(0 if empty else 1, maxlen + 1, S)
    off = np.concatenate([[0], np.cumsum(lens)])
    X = rng.standard_normal((off[-1], H)).astype(dtype)
    return X, off, lens


def _pool_params(H, A_, rng, dtype):
    return ((rng.standard_normal((H, A_)) / np.sqrt(H)).astype(dtype),
            (rng.standard_normal(A_) * 0.1).astype(dtype), rng.standard_normal(A_).astype(dtype))


def test_pool_matches_reference(backend, dtype):
    rng = np.random.default_rng(22)
    X, off, lens = _segments(rng, 7, 5, 4, dtype)
    lens[0] = 0
    off = np.concatenate([[0], np.cumsum(lens)])
    X = X[:off[-1]]
    W, b, u = _pool_params(4, 3, rng, dtype)
    pooled, w = A.attention_pool(X, off, W, b, u, backend=backend)
    p2, w2 = ref.attention_pool(X, off, W, b, u)
    close(pooled, p2, dtype)
    close(w, w2, dtype)
    assert (pooled[0] == 0).all()


def test_pool_many_work_items(backend, dtype, restore_threads):
    # attn_pool_fwd cuts the segments into work items of about POOL_ROWS rows
    # (one gemm each): many items, empty segments at item boundaries, a
    # segment longer than an item; against the reference, 1 == 2 threads,
    # the backward's recomputation equal to the forward's weights
    rng = np.random.default_rng(28)
    lens = rng.integers(0, 12, 150)
    lens[[0, 40, 41, 149]] = 0
    lens[70] = 600
    off = np.concatenate([[0], np.cumsum(lens)])
    X = rng.standard_normal((off[-1], 6)).astype(dtype)
    W, b, u = _pool_params(6, 5, rng, dtype)
    outs = []
    for th in (1, 2):
        dlkernels.set_num_threads(th)
        outs.append(A.attention_pool(X, off, W, b, u, backend=backend))
    p2, w2 = ref.attention_pool(X, off, W, b, u)
    close(outs[0][0], p2, dtype)
    close(outs[0][1], w2, dtype)
    for x, y in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(x, y)
    assert (outs[0][0][lens == 0] == 0).all()
    dpo = rng.standard_normal(p2.shape).astype(dtype)
    g = A.attention_pool_backward(dpo, X, off, W, b, u, backend=backend)
    # the same gradients segment by segment (one work item each)
    tot = {n: np.zeros(x.shape) for n, x in (("W", W), ("b", b), ("u", u))}
    for s in range(150):
        Xs = X[off[s]:off[s + 1]]
        gs = A.attention_pool_backward(dpo[s:s + 1], Xs, [0, lens[s]], W, b, u, backend=backend)
        np.testing.assert_allclose(g["states"][off[s]:off[s + 1]], gs["states"],
                                   **TOL[np.dtype(dtype)])
        for n in tot:
            tot[n] += gs[n]
    for n in tot:
        np.testing.assert_allclose(g[n], tot[n], **TOL[np.dtype(dtype)])


def test_pool_wide_attention_dim(backend, dtype):
    # A > POOL_SCRATCH / POOL_ROWS: the gemm blocks have fewer rows (the
    # scratch stays bounded); a 600-row segment spans several blocks
    from dlkernels.engine.numba import attention as eng
    A_ = eng.POOL_SCRATCH // eng.POOL_ROWS + 904
    rng = np.random.default_rng(29)
    off = np.array([0, 3, 603, 610])
    X = rng.standard_normal((610, 2)).astype(dtype)
    W, b, u = _pool_params(2, A_, rng, dtype)
    pooled, w = A.attention_pool(X, off, W, b, u, backend=backend)
    p2, w2 = ref.attention_pool(X, off, W, b, u)
    close(pooled, p2, dtype)
    close(w, w2, dtype)


def test_pool_padded_equals_ragged(backend, dtype):
    rng = np.random.default_rng(23)
    X, off, lens = _segments(rng, 6, 4, 5, dtype)
    W, b, u = _pool_params(5, 3, rng, dtype)
    T = 4
    Xp = np.full((6, T, 5), np.nan, dtype)
    for s in range(6):
        Xp[s, :lens[s]] = X[off[s]:off[s + 1]]
    pooled, w = A.attention_pool(X, off, W, b, u, backend=backend)
    pp, wp = A.attention_pool_padded(Xp, lens, W, b, u, backend=backend)
    np.testing.assert_array_equal(pooled, pp)
    for s in range(6):
        np.testing.assert_array_equal(w[off[s]:off[s + 1]], wp[s, :lens[s]])
        assert (wp[s, lens[s]:] == 0).all()
    close(pp, ref.attention_pool_padded(np.nan_to_num(Xp), lens, W, b, u)[0], dtype)
    dpo = rng.standard_normal(pooled.shape).astype(dtype)
    gr = A.attention_pool_backward(dpo, X, off, W, b, u, backend=backend)
    gp = A.attention_pool_padded_backward(dpo, Xp, lens, W, b, u, backend=backend)
    for n in ("W", "b", "u"):
        np.testing.assert_allclose(gr[n], gp[n], **TOL[np.dtype(dtype)])
    for s in range(6):
        np.testing.assert_array_equal(gr["states"][off[s]:off[s + 1]], gp["states"][s, :lens[s]])
        assert (gp["states"][s, lens[s]:] == 0).all()


def test_pool_backward_finite_differences(backend):
    rng = np.random.default_rng(24)
    X, off, lens = _segments(rng, 4, 3, 3, np.float64)
    W, b, u = _pool_params(3, 2, rng, np.float64)
    dpo = rng.standard_normal((4, 3))
    gw = rng.standard_normal(X.shape[0])
    g = A.attention_pool_backward(dpo, X, off, W, b, u, grad_weights=gw, backend=backend)

    def loss():
        p, w = ref.attention_pool(X, off, W, b, u)
        return float((p * dpo).sum() + (w * gw).sum())

    for n, x in (("states", X), ("W", W), ("b", b), ("u", u)):
        np.testing.assert_allclose(g[n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg=n)


def _han_case(rng, dtype, D=4, H=3):
    nsent = rng.integers(0, 4, D)
    doc_off = np.concatenate([[0], np.cumsum(nsent)])
    S = doc_off[-1]
    nw = rng.integers(0, 4, S)
    sent_off = np.concatenate([[0], np.cumsum(nw)])
    X = rng.standard_normal((sent_off[-1], H)).astype(dtype)
    Ww, bw, uw = _pool_params(H, 2, rng, dtype)
    Ws, bs, us = _pool_params(H, 3, rng, dtype)
    P = dict(Ww=Ww, bw=bw, uw=uw, Ws=Ws, bs=bs, us=us)
    return X, sent_off, doc_off, P


def test_han_matches_reference(backend, dtype):
    rng = np.random.default_rng(25)
    X, so, do, P = _han_case(rng, dtype, D=6)
    r = A.han_pool(X, so, do, P, backend=backend)
    d2, ww2, sw2 = ref.han_pool(X, so, do, P)
    close(r.documents, d2, dtype)
    close(r.word_weights, ww2, dtype)
    close(r.sentence_weights, sw2, dtype)


def test_han_backward_finite_differences(backend):
    rng = np.random.default_rng(26)
    X, so, do, P = _han_case(rng, np.float64)
    dd = rng.standard_normal((len(do) - 1, 3))
    g = A.han_pool_backward(dd, X, so, do, P, backend=backend)

    def loss():
        return float((ref.han_pool(X, so, do, P)[0] * dd).sum())

    np.testing.assert_allclose(g["word_states"], ref.fd_grad(loss, X), rtol=1e-6, atol=1e-8)
    for n, x in P.items():
        np.testing.assert_allclose(g["params"][n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8,
                                   err_msg=n)


def _outputs(backend, dtype):
    rng = np.random.default_rng(27)
    out = []
    for score in ("general", "additive"):
        q, k, v, P = case(score, dtype, rng, B=4, Tq=9, Tk=11)
        PP = pos_params(4, 3, rng, dtype)
        kw = dict(window=2, position="predictive", position_params=PP, score=score, params=P,
                  lengths=np.array([11, 6, 0, 3]), backend=backend)
        out.extend(A.local_attend(q, k, v, **kw))
        g = A.local_attend_backward(rng.standard_normal((4, 9, 3)).astype(dtype), q, k, v, **kw)
        out.extend([g["q"], g["k"], g["v"], *g["params"].values(), *g["position_params"].values()])
    X, so, do, P = _han_case(rng, dtype, D=40, H=5)
    out.extend(A.han_pool(X, so, do, P, backend=backend))
    g = A.han_pool_backward(rng.standard_normal((40, 5)).astype(dtype), X, so, do, P,
                            backend=backend)
    out.extend([g["word_states"], *g["params"].values()])
    return out


def test_backends_bit_identical(dtype):
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    for x, y in zip(_outputs("numba", dtype), _outputs("cython", dtype)):
        np.testing.assert_array_equal(x, y)


def test_threads_bit_identical(backend, dtype, restore_threads):
    dlkernels.set_num_threads(1)
    a = _outputs(backend, dtype)
    dlkernels.set_num_threads(min(2, __import__("numba").config.NUMBA_NUM_THREADS))
    b = _outputs(backend, dtype)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=25, deadline=None)
@given(S=st.integers(0, 6), maxlen=st.integers(0, 4), seed=st.integers(0, 2**31),
       be=st.sampled_from(["numba", "cython"]))
def test_pool_property(S, maxlen, seed, be):
    require_backend(be, FAMILY)
    rng = np.random.default_rng(seed)
    X, off, lens = _segments(rng, S, maxlen, 3, np.float64)
    W, b, u = _pool_params(3, 2, rng, np.float64)
    pooled, w = A.attention_pool(X, off, W, b, u, backend=be)
    p2, w2 = ref.attention_pool(X, off, W, b, u)
    np.testing.assert_allclose(pooled, p2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w, w2, rtol=1e-10, atol=1e-12)
    assert pooled.shape == (S, 3)
