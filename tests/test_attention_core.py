"""Tests of dlkernels.attention's scores, masked softmax, fused attention and
its backward: NumPy references (``naive_attention.py``), finite differences,
Numba == Cython bit for bit, 1 == 2 threads, masks and their edge cases,
hypothesis over shapes, lengths and masks."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dlkernels
from dlkernels import attention as A

import naive_attention as ref
from conftest import require_backend

FAMILY = "attention"
SCORES = ref.SCORES
TOL = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5), np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12)}


def case(score, dtype, rng, B=2, Tq=3, Tk=5, Dq=4, Dk=6, Dv=3, H=7, bias=True, g=False):
    if score in ("dot", "scaled_dot"):
        Dk = Dq
    q = rng.standard_normal((B, Tq, Dq)).astype(dtype)
    k = rng.standard_normal((B, Tk, Dk)).astype(dtype)
    v = rng.standard_normal((B, Tk, Dv)).astype(dtype)
    P = ref.random_params(score, Dq, Dk, H, rng, bias=bias, g=g)
    if P is not None:
        P = {n: np.asarray(a, dtype=dtype) for n, a in P.items()}
    return q, k, v, P


def close(a, b, dtype):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, **TOL[np.dtype(dtype)])


MASKS = {
    "none": lambda rng, B, Tq, Tk: dict(),
    "lengths": lambda rng, B, Tq, Tk: dict(lengths=np.array([Tk, 0] + [2] * (B - 2))[:B]),
    "bool": lambda rng, B, Tq, Tk: dict(mask=rng.random((B, Tq, Tk)) < 0.6),
    "bool_2d": lambda rng, B, Tq, Tk: dict(mask=rng.random((Tq, Tk)) < 0.6),
    "float": lambda rng, B, Tq, Tk: dict(mask=np.where(rng.random((B, 1, Tk)) < 0.3, -np.inf,
                                                       rng.standard_normal((B, 1, Tk)))),
    "causal": lambda rng, B, Tq, Tk: dict(causal=True),
    "all": lambda rng, B, Tq, Tk: dict(causal=True, lengths=np.array([3, 4] + [1] * (B - 2))[:B],
                                       mask=rng.random((B, Tq, Tk)) < 0.7),
}


@pytest.mark.parametrize("score", SCORES)
def test_scores_match_reference(backend, dtype, score):
    rng = np.random.default_rng(1)
    q, k, v, P = case(score, dtype, rng)
    s = A.scores(q, k, score=score, params=P, backend=backend)
    assert s.dtype == dtype and s.shape == (2, 3, 5)
    close(s, ref.scores(q, k, score, P), dtype)


def test_additive_weight_norm(backend, dtype):
    rng = np.random.default_rng(2)
    q, k, v, P = case("additive", dtype, rng, g=True)
    close(A.scores(q, k, score="additive", params=P, backend=backend),
          ref.scores(q, k, "additive", P), dtype)
    # g * v / |v| with g = |v| is the unnormalised score
    P2 = dict(P, g=np.asarray(np.linalg.norm(P["v"].astype(np.float64)), dtype))
    P3 = {n: a for n, a in P.items() if n != "g"}
    np.testing.assert_allclose(A.scores(q, k, score="additive", params=P2, backend=backend),
                               A.scores(q, k, score="additive", params=P3, backend=backend),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("mname", sorted(MASKS))
def test_masked_softmax_matches_reference(backend, dtype, mname):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((3, 4, 6)).astype(dtype)
    kw = MASKS[mname](rng, 3, 4, 6)
    w = A.masked_softmax(s, backend=backend, **kw)
    close(w, ref.masked_softmax(s, **kw), dtype)
    assert np.isfinite(w).all()


def test_causal_is_bottom_right_aligned(backend):
    s = np.zeros((1, 2, 4))
    w = A.masked_softmax(s, causal=True, backend=backend)
    # query 0 is key position 2 of 4: keys 0..2; query 1: keys 0..3
    np.testing.assert_allclose(w[0], [[1 / 3, 1 / 3, 1 / 3, 0], [0.25] * 4])
    w = A.masked_softmax(np.zeros((1, 3, 3)), causal=True, backend=backend)
    np.testing.assert_allclose(w[0], np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None])


def test_masked_nan_never_leaks(backend, dtype):
    rng = np.random.default_rng(4)
    s = rng.standard_normal((2, 3, 5)).astype(dtype)
    s[:, :, 3:] = np.nan
    s[1] = np.inf
    w = A.masked_softmax(s, lengths=[3, 0], backend=backend)
    assert np.isfinite(w).all() and (w[1] == 0).all() and (w[:, :, 3:] == 0).all()
    np.testing.assert_allclose(w[0].sum(1), 1, rtol=1e-6)


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("mname", ["none", "all", "float"])
def test_attend_matches_reference(backend, dtype, score, mname):
    rng = np.random.default_rng(5)
    q, k, v, P = case(score, dtype, rng, B=3, Tq=4, Tk=6)
    kw = MASKS[mname](rng, 3, 4, 6)
    ctx, w = A.attend(q, k, v, score=score, params=P, return_weights=True, backend=backend, **kw)
    c2, w2 = ref.attend(q, k, v, score, P, **kw)
    assert ctx.dtype == dtype and w.dtype == dtype
    close(ctx, c2, dtype)
    close(w, w2, dtype)
    ctx_only = A.attend(q, k, v, score=score, params=P, backend=backend, **kw)
    np.testing.assert_array_equal(ctx_only, ctx)


@pytest.mark.parametrize("score", SCORES)
def test_attend_backward_matches_reference(backend, dtype, score):
    rng = np.random.default_rng(6)
    q, k, v, P = case(score, dtype, rng, B=3, Tq=4, Tk=6, g=(score == "additive"))
    kw = MASKS["all"](rng, 3, 4, 6)
    dctx = rng.standard_normal((3, 4, 3)).astype(dtype)
    gw = rng.standard_normal((3, 4, 6)).astype(dtype)
    g = A.attend_backward(dctx, q, k, v, score=score, params=P, grad_weights=gw, backend=backend,
                          **kw)
    r = ref.attend_backward(dctx, q, k, v, score, P, grad_weights=gw, **kw)
    tol = dict(rtol=2e-3, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    for n in "qkv":
        assert g[n].dtype == dtype and g[n].shape == {"q": q, "k": k, "v": v}[n].shape
        np.testing.assert_allclose(g[n], r[n], **tol, err_msg=n)
    assert sorted(g["params"]) == sorted(r["params"]) == sorted(P or {})
    for n in r["params"]:
        assert g["params"][n].shape == P[n].shape and g["params"][n].dtype == dtype
        np.testing.assert_allclose(g["params"][n], r["params"][n], **tol, err_msg=n)


@pytest.mark.parametrize("score", SCORES)
def test_attend_backward_finite_differences(backend, score):
    """float64 gradients against central differences of the reference loss."""
    rng = np.random.default_rng(7)
    q, k, v, P = case(score, np.float64, rng, B=2, Tq=2, Tk=3, Dq=3, Dk=2, Dv=2, H=3,
                      g=(score == "additive"))
    kw = dict(lengths=np.array([3, 2]), causal=True)
    dctx = rng.standard_normal((2, 2, 2))
    gw = rng.standard_normal((2, 2, 3))
    g = A.attend_backward(dctx, q, k, v, score=score, params=P, grad_weights=gw, backend=backend,
                          **kw)

    def loss():
        c, w = ref.attend(q, k, v, score, P, **kw)
        return float((c * dctx).sum() + (w * gw).sum())

    for n, x in (("q", q), ("k", k), ("v", v)):
        np.testing.assert_allclose(g[n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8, err_msg=n)
    for n, x in (P or {}).items():
        np.testing.assert_allclose(g["params"][n], ref.fd_grad(loss, x), rtol=1e-6, atol=1e-8,
                                   err_msg=n)


def test_fully_masked_rows_zero_and_finite_grads(backend, dtype):
    rng = np.random.default_rng(8)
    q, k, v, P = case("additive", dtype, rng)
    k[1] = np.nan  # batch row 1 fully masked: its keys / values are never read
    v[1] = np.inf
    v[0, 4] = np.nan  # key 4 of row 0 masked by lengths
    L = np.array([4, 0])
    ctx, w = A.attend(q, k, v, score="additive", params=P, lengths=L, return_weights=True,
                      backend=backend)
    assert np.isfinite(ctx).all() and np.isfinite(w).all()
    assert (ctx[1] == 0).all() and (w[1] == 0).all() and (w[0, :, 4] == 0).all()
    g = A.attend_backward(np.ones_like(ctx), q, k, v, score="additive", params=P, lengths=L,
                          backend=backend)
    for x in [g["q"], g["k"], g["v"], *g["params"].values()]:
        assert np.isfinite(x).all()
    assert (g["k"][1] == 0).all() and (g["v"][1] == 0).all() and (g["q"][1] == 0).all()


def test_nan_at_attended_position_raises(backend):
    rng = np.random.default_rng(9)
    q, k, v, P = case("dot", np.float64, rng)
    v[0, 1] = np.nan
    with pytest.raises(ValueError, match="v: expected finite values at attended"):
        A.attend(q, k, v, backend=backend)
    with pytest.raises(ValueError, match="v: expected finite"):
        A.attend_backward(np.ones((2, 3, 3)), q, k, v, backend=backend)
    A.attend(q, k, v, lengths=[1, 5], backend=backend)  # masked: fine
    q[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="q: expected finite"):
        A.attend(q, k, v, lengths=[1, 5], backend=backend)


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
@pytest.mark.parametrize("where", ["k", "v"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_checked_in_the_kernel(backend, score, where, bad):
    # attend checks keys and values inside its kernel (below lengths[b]) and
    # judges a flagged row exactly: a bad entry at a position some query
    # attends raises; one at a position masked by lengths, the bool mask or
    # causality is ignored, and the results are those of the input with a 0
    # there (bit for bit: the kernel never uses a masked position).  An inf
    # key under the additive score is caught too, though tanh(inf) is finite.
    rng = np.random.default_rng(12)
    q, k, v, P = case(score, np.float64, rng, B=3, Tq=2, Tk=6)
    mask = np.ones((3, 2, 6), bool)
    mask[1, :, 2] = False          # key 2 of row 1: masked for both queries
    kw = dict(score=score, params=P, lengths=[6, 5, 4], mask=mask, causal=True,
              return_weights=True, backend=backend)
    arr = k if where == "k" else v
    for b, j in [(1, 5), (1, 2), (2, 4), (2, 5)]:  # lengths; mask; lengths; lengths
        x = arr.copy()
        x[b, j, 0] = bad
        args = (q, x, v) if where == "k" else (q, k, x)
        ctx, w = A.attend(*args, **kw)
        ctx0, w0 = A.attend(q, k, v, **kw)
        np.testing.assert_array_equal(ctx, ctx0)
        np.testing.assert_array_equal(w, w0)
    kw2 = dict(kw, causal=False, mask=None)
    for b, j in [(0, 0), (2, 3), (1, 4)]:
        x = arr.copy()
        x[b, j, -1] = bad
        args = (q, x, v) if where == "k" else (q, k, x)
        with pytest.raises(ValueError, match=f"{where}: expected finite values at attended"):
            A.attend(*args, **kw2)
    # causal: with Tq = 2 and Tk = 6 query 0 attends keys 0..4, query 1 all
    x = arr.copy()
    x[0, 5, 0] = bad
    args = (q, x, v) if where == "k" else (q, k, x)
    with pytest.raises(ValueError, match=f"{where}: expected finite values at attended"):
        A.attend(*args, **dict(kw2, causal=True))
    ctx, w = A.attend(*args, **dict(kw2, causal=True, check_finite=False, return_weights=True))
    assert np.isfinite(ctx[0, 0]).all() and w[0, 0, 5] == 0


@pytest.mark.parametrize("score", ["additive", "concat"])
def test_tanh_from_exponentials(backend, dtype, score, restore_threads):
    # With Tq >= TANH_PAIR_ROWS the tanh score takes exp(2|q + k|) as a
    # product of per-query and per-key exponentials, for the (query, key)
    # pairs whose projected rows are both within +-TANH_PAIR_MAX, the plain
    # tanh for the others (here: one query row and one key row scaled far
    # out).  Against the reference; the same rows with Tq below the rule
    # (plain tanh throughout) agree to rounding; the kernels agree bit for
    # bit: attend's weights are masked_softmax(scores(...))'s, the backward
    # matches the reference, 1 == 2 threads.
    from dlkernels.bindings.attention import _eng
    R = _eng(backend).TANH_PAIR_ROWS
    rng = np.random.default_rng(25)
    Tq = R + 2
    q, k, v, P = case(score, dtype, rng, B=2, Tq=Tq, Tk=7, H=11, g=(score == "additive"))
    q[0, 1] *= 200   # its projected row leaves the range: plain tanh for the row
    k[1, 3] *= 200   # and for this key with every query
    kw = dict(score=score, params=P, lengths=[7, 5], backend=backend)
    ctx, w = A.attend(q, k, v, return_weights=True, **kw)
    rc, rw = ref.attend(q, k, v, score, P, lengths=[7, 5])
    close(ctx, rc, dtype)
    close(w, rw, dtype)
    S = A.scores(q, k, score=score, params=P, backend=backend)
    np.testing.assert_array_equal(w, A.masked_softmax(S, lengths=[7, 5], backend=backend))
    few = A.attend(q[:, :R - 1], k, v, **kw)          # below the rule: plain tanh
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ctx[:, :R - 1], few, **tol)
    dctx = rng.standard_normal(ctx.shape).astype(dtype)
    g = A.attend_backward(dctx, q, k, v, **kw)
    r = ref.attend_backward(dctx, q, k, v, score, P, lengths=[7, 5])
    gtol = dict(rtol=2e-3, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    for n in "qkv":
        np.testing.assert_allclose(g[n], r[n], **gtol, err_msg=n)
    dlkernels.set_num_threads(1)
    np.testing.assert_array_equal(ctx, A.attend(q, k, v, **kw))
    g1 = A.attend_backward(dctx, q, k, v, **kw)
    for n in "qkv":
        np.testing.assert_array_equal(g[n], g1[n])
    other = "cython" if backend == "numba" else "numba"
    if other in dlkernels.backend_info("attention")["available"]:
        np.testing.assert_array_equal(ctx, A.attend(q, k, v, **dict(kw, backend=other)))


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_query_checked_in_the_kernel(backend, score, bad):
    # attend leaves q's check to its kernel's row flags: a non-finite query
    # raises wherever it is -- in a row that attends keys, in a row with no
    # key at all (lengths 0), past PROJ_ROWS queries -- and check_finite=False
    # returns.
    from dlkernels.bindings.attention import _eng
    R = _eng(backend).PROJ_ROWS
    rng = np.random.default_rng(24)
    q, k, v, P = case(score, np.float64, rng, B=3, Tq=R + 2, Tk=4)
    kw = dict(score=score, params=P, lengths=[4, 0, 2], backend=backend)
    A.attend(q, k, v, **kw)
    for b, i, d in [(0, 0, 0), (1, 3, -1), (2, R + 1, 1)]:
        x = q.copy()
        x[b, i, d] = bad
        with pytest.raises(ValueError, match="q: expected finite values"):
            A.attend(x, k, v, **kw)
        A.attend(x, k, v, check_finite=False, **kw)


@pytest.mark.parametrize("shape", [(300, 17, 9), (128, 5, 3), (129, 1, 1), (0, 4, 3),
                                   (5, 0, 3), (5, 4, 0)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_engine_gemm_in_tiles(backend, dtype, shape, ta, tb, restore_threads):
    # attn_gemm (the projections' gradients): op(A) op(B) in tiles
    # of PROJ_ROWS rows (single-threaded gemm each): equal to NumPy's product
    # within float rounding, the same bits for 1 and 2 threads, zeros when
    # the inner size is 0.
    from dlkernels.bindings.attention import _eng
    eng = _eng(backend)
    M, K, N = shape
    rng = np.random.default_rng(13)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    outs = []
    for th in (1, 2):
        dlkernels.set_num_threads(th)
        out = np.full((M, N), np.nan, dtype)
        with dlkernels.blas_single_threaded():
            eng.attn_gemm(ta, tb, A, B, out)
        outs.append(out)
    a64, b64 = A.astype(np.float64), B.astype(np.float64)
    close(outs[0], (a64.T if ta else a64) @ (b64.T if tb else b64), dtype)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("score", ["additive", "concat"])
def test_projected_keys_reused(backend, dtype, score):
    # project_keys once, attend at several steps with new queries: the same
    # bits as attend projecting the keys itself
    rng = np.random.default_rng(15)
    q, k, v, P = case(score, dtype, rng, B=3, Tq=1, Tk=7, g=(score == "additive"))
    Kp = A.project_keys(k, score=score, params=P, backend=backend)
    assert Kp.shape == (3, 7, P["v"].shape[0]) and Kp.dtype == dtype
    W = P["Wk"] if score == "additive" else P["W"][q.shape[2]:]
    close(Kp, k.astype(np.float64) @ W.astype(np.float64), dtype)
    kw = dict(score=score, params=P, lengths=[7, 3, 0], return_weights=True, backend=backend)
    for _ in range(3):
        qs = rng.standard_normal(q.shape).astype(dtype)
        for x, y in zip(A.attend(qs, k, v, projected_keys=Kp, **kw), A.attend(qs, k, v, **kw)):
            np.testing.assert_array_equal(x, y)
    # non-finite projected keys: ignored beyond lengths, refused where attended
    Kb = Kp.copy()
    Kb[1, 5, 0] = np.nan
    A.attend(q, k, v, projected_keys=Kb, **kw)
    Kb[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match="projected_keys: expected finite values at attended"):
        A.attend(q, k, v, projected_keys=Kb, **kw)


def test_projected_keys_errors(backend):
    rng = np.random.default_rng(16)
    q, k, v, P = case("additive", np.float64, rng)
    Kp = A.project_keys(k, score="additive", params=P, backend=backend)
    with pytest.raises(ValueError, match="score: expected 'additive' or 'concat'"):
        A.project_keys(k, score="general", params={"W": np.ones((4, 6))}, backend=backend)
    with pytest.raises(ValueError, match="projected_keys: expected None for score 'dot'"):
        A.attend(q, k[:, :, :4], v, projected_keys=Kp, backend=backend)
    with pytest.raises(ValueError, match="projected_keys: expected"):
        A.attend(q, k, v, score="additive", params=P, projected_keys=Kp[:, :-1],
                 backend=backend)
    with pytest.raises(TypeError, match="projected_keys"):
        A.attend(q, k, v, score="additive", params=P, projected_keys=Kp.astype(np.float32),
                 backend=backend)
    with pytest.raises(ValueError, match="params: expected keys"):
        A.project_keys(k, score="additive", params={"Wk": P["Wk"], "v": P["v"]},
                       backend=backend)
    with pytest.raises(ValueError, match="params\\['Wk'\\]: expected"):
        A.project_keys(k, score="additive", params=dict(P, Wk=P["Wk"][:-1]), backend=backend)
    kb = k.copy()
    kb[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="k: expected finite"):
        A.project_keys(kb, score="additive", params=P, backend=backend)


def _all_outputs(backend, dtype, seed=10):
    rng = np.random.default_rng(seed)
    out = []
    for score in SCORES:
        q, k, v, P = case(score, dtype, rng, B=5, Tq=7, Tk=9, H=8, g=(score == "additive"))
        kw = MASKS["all"](rng, 5, 7, 9)
        out.append(A.scores(q, k, score=score, params=P, backend=backend))
        out.extend(A.attend(q, k, v, score=score, params=P, return_weights=True, backend=backend,
                            **kw))
        dctx = rng.standard_normal((5, 7, 3)).astype(dtype)
        g = A.attend_backward(dctx, q, k, v, score=score, params=P, backend=backend, **kw)
        out.extend([g["q"], g["k"], g["v"], *g["params"].values()])
        out.append(A.masked_softmax(out[-1 - len(g["params"]) - 5], mask=kw["mask"],
                                    backend=backend))
    return out


def test_backends_bit_identical(dtype):
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    a, b = _all_outputs("numba", dtype), _all_outputs("cython", dtype)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_backends_bit_identical_projection_tiles(dtype):
    # more than PROJ_ROWS projected rows: several GEMM tiles in both backends
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    rng = np.random.default_rng(14)
    q, k, v, P = case("additive", dtype, rng, B=3, Tq=50, Tk=60, H=16)
    a, b = (A.attend(q, k, v, score="additive", params=P, backend=be) for be in ("numba", "cython"))
    np.testing.assert_array_equal(a, b)
    dctx = rng.standard_normal(a.shape).astype(dtype)
    ga, gb = (A.attend_backward(dctx, q, k, v, score="additive", params=P, backend=be)
              for be in ("numba", "cython"))
    for x, y in [(ga["q"], gb["q"]), (ga["k"], gb["k"]), (ga["v"], gb["v"])] + [
            (ga["params"][n], gb["params"][n]) for n in P]:
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shape", [(2, 300, 17, 9), (3, 128, 5, 3), (1, 129, 1, 1), (2, 0, 4, 3),
                                   (2, 5, 0, 3), (2, 5, 4, 0), (0, 3, 4, 5)])
def test_engine_project_in_tiles(backend, dtype, shape, restore_threads):
    # attn_project (every projection of the score functions): x @ W (+ b) by
    # tiles of PROJ_ROWS rows within each batch row: NumPy's product within
    # rounding, the bias added, the same bits for 1 and 2 threads, zeros
    # when D is 0.
    from dlkernels.bindings.attention import _eng
    eng = _eng(backend)
    B, T, D, E = shape
    rng = np.random.default_rng(23)
    X = rng.standard_normal((B, T, D)).astype(dtype)
    W = rng.standard_normal((D, E)).astype(dtype)
    b = rng.standard_normal(E).astype(dtype)
    outs = []
    for th in (1, 2):
        dlkernels.set_num_threads(th)
        out = np.full((B, T, E), np.nan, dtype)
        with dlkernels.blas_single_threaded():
            eng.attn_project(X, W, b, True, out)
        outs.append(out)
    close(outs[0], X.astype(np.float64) @ W + b, dtype)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("score", ["general", "additive", "concat"])
def test_fused_projections_tiles(backend, dtype, score, restore_threads):
    # attend projects inside its work items (query and key tiles of PROJ_ROWS
    # rows per batch row; key tiles past the lengths / causal limit skipped):
    # more than PROJ_ROWS queries and keys, one batch row with keys in the
    # second tile only, one empty.  Against the reference; the weights bit for
    # bit those of masked_softmax(scores(...)) (same projection calls, same
    # orders); projected_keys and 1 or 2 threads change no bit.
    from dlkernels.bindings.attention import _eng
    R = _eng(backend).PROJ_ROWS
    rng = np.random.default_rng(21)
    B, Tq, Tk = 3, R + 22, R + 37
    q, k, v, P = case(score, dtype, rng, B=B, Tq=Tq, Tk=Tk, H=9, g=(score == "additive"))
    kw = dict(lengths=[Tk, R + 3, 0], causal=True)
    ctx, w = A.attend(q, k, v, score=score, params=P, return_weights=True, backend=backend, **kw)
    rc, rw = ref.attend(q, k, v, score, P, **kw)
    close(ctx, rc, dtype)
    close(w, rw, dtype)
    S = A.scores(q, k, score=score, params=P, backend=backend)
    np.testing.assert_array_equal(w, A.masked_softmax(S, backend=backend, **kw))
    if score != "general":
        Kp = A.project_keys(k, score=score, params=P, backend=backend)
        np.testing.assert_array_equal(ctx, A.attend(q, k, v, score=score, params=P,
                                                    projected_keys=Kp, backend=backend, **kw))
    dlkernels.set_num_threads(1)
    one = A.attend(q, k, v, score=score, params=P, backend=backend, **kw)
    np.testing.assert_array_equal(ctx, one)
    other = "cython" if backend == "numba" else "numba"
    if other in dlkernels.backend_info("attention")["available"]:
        np.testing.assert_array_equal(ctx, A.attend(q, k, v, score=score, params=P,
                                                    backend=other, **kw))


@pytest.mark.parametrize("score", ["general", "additive"])
def test_fused_projections_allocate_no_projection(backend, score, restore_threads):
    # the (B, Tq, H) and (B, Tk, H) projections are never allocated by attend:
    # its peak (tracemalloc: the binding's NumPy arrays, and the Numba
    # kernels' scratch, which numba's allocator reports to it; the Cython
    # kernels' malloc is not traced) stays within the context plus each
    # thread's scratch -- one work item's query and key tiles, O((Tq + Tk) H),
    # and the keys' exponentials of the tanh score (2 Tk H) -- a small
    # fraction of the query projection alone.
    import tracemalloc
    dlkernels.set_num_threads(2)
    rng = np.random.default_rng(22)
    B, Tq, Tk = 64, 40, 60
    q, k, v, P = case(score, np.float64, rng, B=B, Tq=Tq, Tk=Tk, Dq=16, Dk=64, Dv=2, H=64)
    A.attend(q, k, v, score=score, params=P, backend=backend)   # compile, warm
    tracemalloc.start()
    ctx = A.attend(q, k, v, score=score, params=P, backend=backend)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    H = P["W"].shape[1] if score == "general" else P["v"].shape[0]
    per_thread = (Tq + 3 * Tk + 8) * H * 8 + 4 * Tk * 8   # tiles, and the tanh exps
    bound = ctx.nbytes + 2 * per_thread + (16 << 10)
    assert peak < bound < B * Tq * H * 8 // 4, (peak, bound)


def test_threads_bit_identical(backend, dtype, restore_threads):
    if dlkernels.get_num_threads() < 2 and restore_threads < 2:
        import numba
        if numba.config.NUMBA_NUM_THREADS < 2:
            pytest.skip("one thread only")
    dlkernels.set_num_threads(1)
    a = _all_outputs(backend, dtype)
    dlkernels.set_num_threads(2)
    b = _all_outputs(backend, dtype)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), Tq=st.integers(1, 4), Tk=st.integers(1, 5), score=st.sampled_from(SCORES),
       causal=st.booleans(), use_len=st.booleans(), mkind=st.sampled_from(["none", "bool", "float"]),
       seed=st.integers(0, 2**31), be=st.sampled_from(["numba", "cython"]))
def test_attend_property(B, Tq, Tk, score, causal, use_len, mkind, seed, be):
    require_backend(be, FAMILY)
    rng = np.random.default_rng(seed)
    q, k, v, P = case(score, np.float64, rng, B=B, Tq=Tq, Tk=Tk, Dq=3, Dk=2, Dv=2, H=3)
    kw = dict(causal=causal)
    if use_len:
        kw["lengths"] = rng.integers(0, Tk + 1, B)
    if mkind == "bool":
        kw["mask"] = rng.random((B, 1, Tk)) < 0.5
    elif mkind == "float":
        kw["mask"] = np.where(rng.random((Tq, Tk)) < 0.3, -np.inf, rng.standard_normal((Tq, Tk)))
    ctx, w = A.attend(q, k, v, score=score, params=P, return_weights=True, backend=be, **kw)
    c2, w2 = ref.attend(q, k, v, score, P, **kw)
    np.testing.assert_allclose(ctx, c2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w, w2, rtol=1e-9, atol=1e-12)
    rs = w.sum(axis=2)
    assert np.all((np.abs(rs - 1) < 1e-9) | (rs == 0))
    dctx = rng.standard_normal(ctx.shape)
    g = A.attend_backward(dctx, q, k, v, score=score, params=P, backend=be, **kw)
    r = ref.attend_backward(dctx, q, k, v, score, P, **kw)
    for n in "qkv":
        np.testing.assert_allclose(g[n], r[n], rtol=1e-8, atol=1e-10)
    for n in r["params"]:
        np.testing.assert_allclose(g["params"][n], r["params"][n], rtol=1e-8, atol=1e-10)


def test_empty_shapes(backend, dtype):
    rng = np.random.default_rng(11)
    q, k, v, P = case("additive", dtype, rng, Tk=0)
    ctx, w = A.attend(q, k, v, score="additive", params=P, return_weights=True, backend=backend)
    assert ctx.shape == (2, 3, 3) and (ctx == 0).all() and w.shape == (2, 3, 0)
    g = A.attend_backward(np.ones_like(ctx), q, k, v, score="additive", params=P, backend=backend)
    assert (g["q"] == 0).all() and g["k"].shape == k.shape
    q, k, v, P = case("dot", dtype, rng, B=0)
    assert A.attend(q, k, v, backend=backend).shape == (0, 3, 3)
