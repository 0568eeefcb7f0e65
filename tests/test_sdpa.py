"""Tests of dlkernels.attention.scaled_dot_product_attention and its backward.

References: ``naive_sdpa.py`` (PyTorch's documented math in float64, dropout
replayed from the documented stream layout), central finite differences for
the gradients (float64), and -- in ``test_interop_torch.py`` -- PyTorch itself.
Tolerances: float64 1e-12 relative to the output scale; float32 2e-5 (the
inputs are O(1) standard normals; the float32 kernels accumulate in float32).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dlkernels
from dlkernels import attention as A
from dlkernels.engine.numba import _sdpa as nsdpa

import naive_sdpa as ref

FAMILY = "attention"

SDPA = A.scaled_dot_product_attention
SDPA_BWD = A.scaled_dot_product_attention_backward


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def _gtol(dtype):
    return dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _qkv(rng, qshape, kshape, vshape, dtype):
    return tuple(rng.standard_normal(s).astype(dtype) for s in (qshape, kshape, vshape))


def _key0(seed):
    return np.random.SeedSequence(seed).generate_state(2, np.uint64), np.zeros(4, np.uint64)


# Each case: (q shape, k shape, v shape, mask maker or None, kwargs)
def _bool_pad(rng, B, L, S):
    m = rng.random((B, 1, 1, S)) < 0.7
    m[:, :, :, 0] = True
    return m


CASES = {
    "plain": ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6), None, {}),
    "bool_full": ((2, 2, 9, 4), (2, 2, 11, 4), (2, 2, 11, 5),
                  lambda r: r.random((2, 2, 9, 11)) < 0.6, {}),
    "bool_keypad": ((3, 2, 6, 4), (3, 2, 10, 4), (3, 2, 10, 4),
                    lambda r: _bool_pad(r, 3, 6, 10), {}),
    "bool_ls": ((2, 4, 8, 3), (2, 4, 8, 3), (2, 4, 8, 3), lambda r: r.random((8, 8)) < 0.5, {}),
    "bool_1d": ((2, 5, 4), (2, 6, 4), (2, 6, 4), lambda r: np.array([1, 0, 1, 1, 0, 1], bool), {}),
    "bool_col": ((1, 7, 4), (1, 6, 4), (1, 6, 4), lambda r: r.random((7, 1)) < 0.6, {}),
    "float_mask": ((2, 2, 6, 5), (2, 2, 9, 5), (2, 2, 9, 3),
                   lambda r: np.where(r.random((2, 1, 6, 9)) < 0.3, -np.inf,
                                      r.standard_normal((2, 1, 6, 9))), {}),
    "causal_sq": ((2, 2, 9, 4), (2, 2, 9, 4), (2, 2, 9, 4), None, dict(is_causal=True)),
    "causal_l_lt_s": ((2, 1, 5, 4), (2, 1, 12, 4), (2, 1, 12, 3), None, dict(is_causal=True)),
    "causal_l_gt_s": ((1, 2, 12, 4), (1, 2, 5, 4), (1, 2, 5, 3), None, dict(is_causal=True)),
    "causal_mask": ((2, 2, 10, 4), (2, 2, 10, 4), (2, 2, 10, 4),
                    lambda r: r.random((2, 2, 10, 10)) < 0.7, dict(is_causal=True)),
    "gqa": ((2, 6, 5, 4), (2, 2, 7, 4), (2, 2, 7, 3), None, dict(enable_gqa=True)),
    "gqa_causal_mask": ((1, 4, 7, 4), (1, 2, 7, 4), (1, 2, 7, 4),
                        lambda r: r.random((1, 4, 7, 7)) < 0.8, dict(enable_gqa=True, is_causal=True)),
    "scale": ((2, 4, 6), (2, 5, 6), (2, 5, 2), None, dict(scale=0.37)),
    "broadcast_kv": ((3, 2, 5, 4), (1, 2, 6, 4), (2, 6, 4), None, {}),
    "broadcast_q": ((1, 5, 4), (3, 6, 4), (3, 6, 2), None, {}),
    "no_batch": ((5, 4), (7, 4), (7, 3), None, {}),
    # query tiles of <= 4 rows take the BLAS-free products (decoding steps; the
    # last tile of L = 66); E = 12 and 9 exercise the dot's tail after 8 lanes
    "decode_step": ((3, 2, 1, 12), (3, 2, 20, 12), (3, 2, 20, 5),
                    lambda r: r.random((3, 2, 1, 20)) < 0.8, {}),
    "decode_3_causal": ((2, 2, 3, 9), (2, 2, 17, 9), (2, 2, 17, 7), None, dict(is_causal=True)),
    # 128-row query tiles whose causal diagonal block is split into 64-key sub-tiles
    # (L = S, L > S with a key-padding mask, L < S; E = 64 gives 128-row tiles in
    # float64 too, E = 8 in float32 only)
    "causal_diag": ((1, 2, 300, 64), (1, 2, 300, 64), (1, 2, 300, 64), None,
                    dict(is_causal=True)),
    "causal_diag_mask": ((2, 1, 290, 8), (2, 1, 200, 8), (2, 1, 200, 8),
                         lambda r: _bool_pad(r, 2, 290, 200), dict(is_causal=True)),
    "causal_diag_short": ((1, 1, 150, 8), (1, 1, 400, 8), (1, 1, 400, 3), None,
                          dict(is_causal=True)),
    # rows that span three key tiles (TK = 512 at E = 8): the online softmax rescales
    # the running sum (found: Numba rounded l * alpha + rs in float64 before float32)
    "multi_key_tiles": ((1, 2, 40, 8), (1, 2, 1100, 8), (1, 2, 1100, 4), None, {}),
    # L = 130: a last query tile of 2 rows whether TQ is 64 or 128 (sdpa_tiles)
    "tail_tile": ((1, 1, 130, 8), (1, 1, 134, 8), (1, 1, 134, 8), None, dict(is_causal=True)),
}


def _case(name, dtype, seed=0):
    qs, ks, vs, mk, kw = CASES[name]
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, qs, ks, vs, dtype)
    m = mk(rng) if mk is not None else None
    if m is not None and m.dtype != bool:
        m = m.astype(dtype)
    return q, k, v, m, dict(kw)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_backward_reference(name, backend, dtype):
    q, k, v, m, kw = _case(name, dtype)
    out, lse = SDPA(q, k, v, m, return_lse=True, backend=backend, **kw)
    ro, rl = ref.sdpa(q, k, v, m, **kw)
    assert out.dtype == dtype and out.shape == ro.shape and lse.shape == rl.shape
    np.testing.assert_allclose(out, ro, **_tol(dtype))
    np.testing.assert_allclose(lse, rl, **_tol(dtype))
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    dq, dk, dv = SDPA_BWD(g, q, k, v, out, lse, m, backend=backend, **kw)
    rq, rk, rv = ref.sdpa_backward(g, q, k, v, m, **kw)
    for got, want, x in ((dq, rq, q), (dk, rk, k), (dv, rv, v)):
        assert got.shape == x.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, **_gtol(dtype))


@pytest.mark.parametrize("name", ["plain", "causal_mask", "gqa", "broadcast_kv"])
@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_replayed(name, p, backend, dtype):
    """Dropout replays exactly from the documented streams (row bh * L + i)."""
    q, k, v, m, kw = _case(name, dtype)
    out, lse = SDPA(q, k, v, m, dropout_p=p, return_lse=True, random_state=123, backend=backend, **kw)
    key, ctr = _key0(123)
    keep = ref.dropout_keep(key, ctr, out.shape[:-2], q.shape[-2], k.shape[-2], p, dtype)
    ro, rl = ref.sdpa(q, k, v, m, dropout_p=p, keep=keep, **kw)
    np.testing.assert_allclose(out, ro, **_tol(dtype))
    np.testing.assert_allclose(lse, rl, **_tol(dtype))  # lse of the weights before dropout
    g = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    grads = SDPA_BWD(g, q, k, v, out, lse, m, dropout_p=p, random_state=123, backend=backend, **kw)
    want = ref.sdpa_backward(g, q, k, v, m, dropout_p=p, keep=keep, **kw)
    for got, w in zip(grads, want):
        np.testing.assert_allclose(got, w, **_gtol(dtype))


def test_dropout_streams_advance_and_statistics(backend):
    """A Streams advances per call (fresh draws); the kept fraction is 1 - p."""
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng, (4, 16, 8), (4, 64, 8), (4, 64, 8), np.float64)
    v = np.ones_like(v)
    st = dlkernels.rng.Streams(9)
    a = SDPA(q, k, v, dropout_p=0.5, random_state=st, backend=backend)
    b = SDPA(q, k, v, dropout_p=0.5, random_state=st, backend=backend)
    assert not np.array_equal(a, b)
    # E[out] = 1 with v = 1 (inverted dropout); 64 rows x 64 keys
    assert abs(a.mean() - 1.0) < 0.1
    st2 = dlkernels.rng.Streams(9)
    np.testing.assert_array_equal(SDPA(q, k, v, dropout_p=0.5, random_state=st2, backend=backend), a)


def test_default_scale_and_no_dropout_ignores_state(backend, dtype):
    q, k, v, m, kw = _case("plain", dtype)
    a = SDPA(q, k, v, backend=backend)
    b = SDPA(q, k, v, scale=1 / np.sqrt(q.shape[-1]), backend=backend)
    np.testing.assert_array_equal(a, b)
    st = dlkernels.rng.Streams(1)
    c = SDPA(q, k, v, random_state=st, backend=backend)
    assert st.epoch == 0
    np.testing.assert_array_equal(a, c)


def _all_outputs(backend, dtype, name, p=0.0):
    q, k, v, m, kw = _case(name, dtype, seed=5)
    out, lse = SDPA(q, k, v, m, dropout_p=p, return_lse=True, random_state=7, backend=backend, **kw)
    g = np.random.default_rng(4).standard_normal(out.shape).astype(dtype)
    return (out, lse) + SDPA_BWD(g, q, k, v, out, lse, m, dropout_p=p, random_state=7,
                                 backend=backend, **kw)


@pytest.mark.parametrize("name,p", [("plain", 0.0), ("causal_mask", 0.3), ("gqa_causal_mask", 0.0),
                                    ("float_mask", 0.2), ("bool_keypad", 0.0),
                                    ("decode_step", 0.0), ("decode_step", 0.3),
                                    ("decode_3_causal", 0.0), ("tail_tile", 0.2),
                                    ("causal_diag", 0.3), ("causal_diag_mask", 0.0),
                                    ("multi_key_tiles", 0.0)])
def test_backends_bit_identical(name, p, dtype):
    from conftest import require_backend
    require_backend("numba", FAMILY)
    require_backend("cython", FAMILY)
    a = _all_outputs("numba", dtype, name, p)
    b = _all_outputs("cython", dtype, name, p)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_threads_bit_identical(backend, dtype, restore_threads):
    """Bigger than one tile in both directions so that several items run."""
    rng = np.random.default_rng(6)
    tq, tk = nsdpa.sdpa_tiles(12, 12, np.dtype(dtype).itemsize)
    q, k, v = _qkv(rng, (2, 3, tq + 9, 12), (2, 3, tk + 5, 12), (2, 3, tk + 5, 12), dtype)
    res = []
    import numba

    for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        dlkernels.set_num_threads(n)
        out, lse = SDPA(q, k, v, dropout_p=0.1, is_causal=True, return_lse=True, random_state=1,
                        backend=backend)
        g = np.ones_like(out)
        res.append((out, lse) + SDPA_BWD(g, q, k, v, out, lse, dropout_p=0.1, is_causal=True,
                                         random_state=1, backend=backend))
    for x, y in zip(*res):
        np.testing.assert_array_equal(x, y)


def test_tile_sizes_rule():
    for E, Ev, isz in ((64, 64, 4), (64, 64, 8), (128, 128, 4), (1, 1, 4), (4096, 4096, 8)):
        tq, tk = nsdpa.sdpa_tiles(E, Ev, isz)
        assert 16 <= tk <= 512 and tk & (tk - 1) == 0
        assert tk == 16 or tk * (E + Ev) * isz <= 128 * 1024
        assert tk == 512 or 2 * tk * (E + Ev) * isz > 128 * 1024
        fits = (128 * (E + tk + Ev) + tk * (E + Ev)) * isz <= 384 * 1024
        assert tq == (128 if fits else 64)
    # the decisions the module doc states (float32 E = 64 and float64 E = 64: 128 rows)
    assert nsdpa.sdpa_tiles(64, 64, 4) == (128, 256)
    assert nsdpa.sdpa_tiles(64, 64, 8) == (128, 128)
    assert nsdpa.sdpa_tiles(256, 256, 4) == (64, 64)
    from conftest import require_backend
    require_backend("cython", FAMILY)
    from dlkernels.engine.cython import attention as cat
    for E, Ev, isz in ((64, 64, 4), (129, 129, 8), (3, 5, 4), (8, 8, 8), (256, 256, 4)):
        assert cat.sdpa_tiles(E, Ev, isz) == nsdpa.sdpa_tiles(E, Ev, isz)


@pytest.mark.parametrize("dL", [-1, 0, 1])
@pytest.mark.parametrize("dS", [-1, 0, 1])
def test_tile_boundaries(dL, dS, backend, dtype):
    """L, S = tile - 1, tile, tile + 1 with odd E (E = Ev = 129: TK = 64 in float32,
    32 in float64); causal and a random bool mask."""
    E = 129
    tq, tk = nsdpa.sdpa_tiles(E, E, np.dtype(dtype).itemsize)
    L, S = tq + dL, tk + dS
    rng = np.random.default_rng(10 + dL * 3 + dS)
    q, k, v = _qkv(rng, (1, L, E), (1, S, E), (1, S, E), dtype)
    q *= 0.3
    m = rng.random((L, S)) < 0.8
    for kw in (dict(is_causal=True), dict(attn_mask=m)):
        out, lse = SDPA(q, k, v, return_lse=True, backend=backend, **kw)
        ro, rl = ref.sdpa(q, k, v, **kw)
        np.testing.assert_allclose(out, ro, **_tol(dtype))
        g = rng.standard_normal(out.shape).astype(dtype)
        got = SDPA_BWD(g, q, k, v, out, lse, backend=backend, **kw)
        for x, w in zip(got, ref.sdpa_backward(g, q, k, v, **kw)):
            np.testing.assert_allclose(x, w, **_gtol(dtype))


@pytest.mark.parametrize("LS", [(1, 1), (1, 9), (9, 1)])
def test_single_rows(LS, backend, dtype):
    L, S = LS
    rng = np.random.default_rng(11)
    q, k, v = _qkv(rng, (3, L, 5), (3, S, 5), (3, S, 4), dtype)
    for causal in (False, True):
        out = SDPA(q, k, v, is_causal=causal, backend=backend)
        np.testing.assert_allclose(out, ref.sdpa(q, k, v, is_causal=causal)[0], **_tol(dtype))


def test_fully_masked_rows(backend, dtype):
    """A query row with every key masked gives 0, lse -inf and finite (zero) gradients;
    the other rows are unaffected; NaN never appears."""
    rng = np.random.default_rng(12)
    q, k, v = _qkv(rng, (2, 6, 4), (2, 8, 4), (2, 8, 3), dtype)
    m = rng.random((2, 6, 8)) < 0.7
    m[0, 2] = False
    m[1, 5] = False
    fm = np.where(m, 0.0, -np.inf).astype(dtype)
    for mask in (m, fm):
        out, lse = SDPA(q, k, v, mask, return_lse=True, backend=backend)
        assert np.all(out[0, 2] == 0) and np.all(out[1, 5] == 0)
        assert lse[0, 2] == -np.inf and lse[1, 5] == -np.inf
        np.testing.assert_allclose(out, ref.sdpa(q, k, v, mask)[0], **_tol(dtype))
        g = rng.standard_normal(out.shape).astype(dtype)
        dq, dk, dv = SDPA_BWD(g, q, k, v, out, lse, mask, backend=backend)
        for x in (dq, dk, dv):
            assert np.all(np.isfinite(x))
        assert np.all(dq[0, 2] == 0) and np.all(dq[1, 5] == 0)
        for x, w in zip((dq, dk, dv), ref.sdpa_backward(g, q, k, v, mask)):
            np.testing.assert_allclose(x, w, **_gtol(dtype))
    # everything masked; and causal with L > S leaves no row dead (row 0 sees key 0)
    out = SDPA(q, k, v, np.zeros((6, 8), bool), backend=backend)
    assert np.all(out == 0)


def test_masked_key_never_leaks(backend):
    """A huge value at a masked key leaves no trace in the output (weights exactly 0)."""
    rng = np.random.default_rng(13)
    q, k, v = _qkv(rng, (4, 4), (6, 4), (6, 2), np.float64)
    m = np.ones((4, 6), bool)
    m[:, 3] = False
    v2 = v.copy()
    v2[3] = 1e300
    np.testing.assert_array_equal(SDPA(q, k, v, m, backend=backend), SDPA(q, k, v2, m, backend=backend))


@pytest.mark.parametrize("name", ["plain", "causal_mask", "gqa", "float_mask", "broadcast_q"])
def test_gradients_finite_differences(name, backend):
    """Central differences of sum(out * g) in float64 (h = 1e-6): relative error < 1e-6."""
    q, k, v, m, kw = _case(name, np.float64, seed=21)
    g = np.random.default_rng(22).standard_normal(SDPA(q, k, v, m, **kw).shape)
    out, lse = SDPA(q, k, v, m, return_lse=True, backend=backend, **kw)
    grads = SDPA_BWD(g, q, k, v, out, lse, m, backend=backend, **kw)
    h = 1e-6
    args = [q, k, v]
    rng = np.random.default_rng(23)
    for a in range(3):
        for flat in rng.choice(args[a].size, size=min(6, args[a].size), replace=False):
            xs = [x.copy() for x in args]
            xs[a].flat[flat] += h
            fp = np.sum(SDPA(*xs, m, backend=backend, **kw) * g)
            xs[a].flat[flat] -= 2 * h
            fm = np.sum(SDPA(*xs, m, backend=backend, **kw) * g)
            fd = (fp - fm) / (2 * h)
            assert abs(fd - grads[a].flat[flat]) <= 1e-6 * max(1.0, abs(fd)), (a, flat)


def test_inputs_not_modified(backend):
    q, k, v, m, kw = _case("causal_mask", np.float64)
    copies = [x.copy() for x in (q, k, v, m)]
    out, lse = SDPA(q, k, v, m, return_lse=True, backend=backend, **kw)
    lc = lse.copy()
    SDPA_BWD(np.ones_like(out), q, k, v, out, lse, m, backend=backend, **kw)
    for x, c in zip((q, k, v, m), copies):
        np.testing.assert_array_equal(x, c)
    np.testing.assert_array_equal(lse, lc)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), H=st.integers(1, 3), L=st.integers(1, 40), S=st.integers(1, 40),
       E=st.integers(1, 9), Ev=st.integers(1, 7), causal=st.booleans(),
       masked=st.sampled_from(["none", "bool", "float"]), f32=st.booleans(),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes(B, H, L, S, E, Ev, causal, masked, f32, seed):
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    q, k, v = _qkv(rng, (B, H, L, E), (B, H, S, E), (B, H, S, Ev), dtype)
    m = None
    if masked == "bool":
        m = rng.random((B, 1, L, S)) < 0.7
    elif masked == "float":
        m = np.where(rng.random((L, S)) < 0.3, -np.inf, rng.standard_normal((L, S))).astype(dtype)
    out, lse = SDPA(q, k, v, m, is_causal=causal, return_lse=True)
    ro, rl = ref.sdpa(q, k, v, m, is_causal=causal)
    np.testing.assert_allclose(out, ro, **_tol(dtype))
    assert np.all(np.isfinite(out))
    g = rng.standard_normal(out.shape).astype(dtype)
    got = SDPA_BWD(g, q, k, v, out, lse, m, is_causal=causal)
    for x, w in zip(got, ref.sdpa_backward(g, q, k, v, m, is_causal=causal)):
        np.testing.assert_allclose(x, w, **_gtol(dtype))


# ---- errors --------------------------------------------------------------------------------

def _base():
    rng = np.random.default_rng(0)
    return _qkv(rng, (2, 3, 4), (2, 5, 4), (2, 5, 2), np.float64)


_q, _k, _v = _base()
ERRORS = [
    (dict(query="abc"), TypeError, "query: expected"),
    (dict(query=np.ones((2, 3, 4), np.complex128)), TypeError, "query: expected a real float"),
    (dict(key=_k.astype(np.float32)), TypeError, "key: expected dtype float64"),
    (dict(value=_v.astype(np.float32)), TypeError, "value: expected dtype float64"),
    (dict(query=np.ones(4)), ValueError, "query: expected an array of at least 2"),
    (dict(query=np.ones((2, 0, 4))), ValueError, "query: expected a non-empty"),
    (dict(key=np.ones((2, 5, 3))), ValueError, "key: expected 4 features"),
    (dict(value=np.ones((2, 6, 2))), ValueError, "value: expected 5 rows"),
    (dict(key=np.ones((3, 5, 4)), value=np.ones((3, 5, 2))), ValueError,
     "key: expected batch dimensions broadcastable"),
    (dict(value=np.ones((3, 5, 2))), ValueError, "value: expected batch dimensions broadcastable"),
    (dict(query=np.full((2, 3, 4), np.nan)), ValueError, "query: expected finite"),
    (dict(key=np.full((2, 5, 4), np.inf)), ValueError, "key: expected finite"),
    (dict(attn_mask=np.ones((3, 4), bool)), ValueError, "attn_mask: expected a shape broadcastable"),
    (dict(attn_mask=np.ones((1, 1, 3, 5), bool)), ValueError, "attn_mask: expected a shape"),
    (dict(attn_mask=np.ones((3, 5), np.int64)), TypeError, "attn_mask: expected a bool array"),
    (dict(attn_mask=np.ones((3, 5), np.float32)), TypeError, "attn_mask: expected dtype float64"),
    (dict(attn_mask=np.full((3, 5), np.nan)), ValueError, "attn_mask: expected finite values or -inf"),
    (dict(attn_mask=np.full((3, 5), np.inf)), ValueError, "attn_mask: expected finite values or -inf"),
    (dict(attn_mask="x"), TypeError, "attn_mask: expected"),
    (dict(dropout_p=1.0), ValueError, "dropout_p: expected a number < 1"),
    (dict(dropout_p=-0.1), ValueError, "dropout_p: expected a number >= 0"),
    (dict(dropout_p="0.1"), TypeError, "dropout_p: expected a real number"),
    (dict(dropout_p=1 - 1e-9, query=_q.astype(np.float32), key=_k.astype(np.float32),
          value=_v.astype(np.float32)), ValueError, "dropout_p: expected a number < 1 in float32"),
    (dict(is_causal=1), TypeError, "is_causal: expected True or False"),
    (dict(scale=np.inf), ValueError, "scale: expected a finite number"),
    (dict(scale="1"), TypeError, "scale: expected a real number"),
    (dict(enable_gqa="yes"), TypeError, "enable_gqa: expected True or False"),
    (dict(enable_gqa=True, key=np.ones((3, 5, 4)), value=np.ones((3, 5, 2))), ValueError,
     "key: expected a number of heads"),
    (dict(enable_gqa=True, query=np.ones((3, 4))), ValueError, "query: expected (..., heads"),
    (dict(enable_gqa=True, query=np.ones((1, 2, 3, 4)), key=np.ones((1, 1, 5, 4)),
          value=np.ones((1, 2, 5, 2))), ValueError, "value: expected 1 heads"),
    (dict(return_lse=None), TypeError, "return_lse: expected True or False"),
    (dict(dropout_p=0.1, random_state="seed"), TypeError, "random_state: expected"),
    (dict(random_state=-1), ValueError, "random_state: expected a non-negative"),
    (dict(backend="gpu"), ValueError, "backend: expected one of"),
]


@pytest.mark.parametrize("kw,exc,msg", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors(kw, exc, msg):
    args = dict(query=_q, key=_k, value=_v)
    args.update(kw)
    with pytest.raises(exc) as info:
        SDPA(**args)
    assert msg in str(info.value)


def test_backward_errors():
    out, lse = SDPA(_q, _k, _v, return_lse=True)
    g = np.ones_like(out)
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(2, 3, 2\)"):
        SDPA_BWD(np.ones((2, 3, 3)), _q, _k, _v, out, lse)
    with pytest.raises(TypeError, match="grad_out: expected dtype float64"):
        SDPA_BWD(g.astype(np.float32), _q, _k, _v, out, lse)
    with pytest.raises(ValueError, match="out: expected shape"):
        SDPA_BWD(g, _q, _k, _v, out[:, :2], lse)
    with pytest.raises(ValueError, match="lse: expected shape"):
        SDPA_BWD(g, _q, _k, _v, out, lse[:, :2])
    with pytest.raises(ValueError, match="grad_out: expected finite"):
        SDPA_BWD(np.full_like(g, np.nan), _q, _k, _v, out, lse)
    with pytest.raises(ValueError, match="lse: expected finite values or -inf"):
        SDPA_BWD(g, _q, _k, _v, out, np.full_like(lse, np.inf))
    with pytest.raises(ValueError, match="key: expected 4 features"):
        SDPA_BWD(g, _q, np.ones((2, 5, 3)), _v, out, lse)


# ---- non-finite input: found by the forward kernel's own pass -------------------------------
#
# The forward does not scan query, key and value in the bindings: the kernel checks them in
# the passes that read them (raw scores, the accumulator, the rows it skips) and the owner of
# each key/value head checks the rows nobody computes with.  Each case puts one NaN / +inf /
# -inf where one of those routes must find it; every case must raise, naming the array.

def _poison_case(name, dtype):
    rng = np.random.default_rng(3)
    kw = {}
    E = 4
    if name == "key_L1":                  # small tile, second batch-head (owner bh = 1)
        q, k, v = _qkv(rng, (2, 1, E), (2, 600, E), (2, 600, 3), dtype)
        return q, k, v, kw, "key", (1, 300, 2)
    if name == "value_L1":
        q, k, v = _qkv(rng, (2, 1, E), (2, 600, E), (2, 600, 3), dtype)
        return q, k, v, kw, "value", (1, 599, 0)
    if name in ("key_skipped_tile", "value_skipped_tile"):   # keys >= 512 masked: tile skipped
        q, k, v = _qkv(rng, (2, 3, E), (2, 600, E), (2, 600, 3), dtype)
        kw["attn_mask"] = np.arange(600) < 512
        return q, k, v, kw, name.split("_")[0], (0, 550, 1)
    if name in ("key_masked_small", "value_masked_small"):   # masked key inside a live tile
        q, k, v = _qkv(rng, (2, 1, E), (2, 20, E), (2, 20, 3), dtype)
        kw["attn_mask"] = np.arange(20) != 5
        return q, k, v, kw, name.split("_")[0], (1, 5, 0)
    if name in ("key_masked_blas", "value_masked_blas"):     # the same, 64-row BLAS tiles
        q, k, v = _qkv(rng, (2, 70, E), (2, 20, E), (2, 20, 3), dtype)
        kw["attn_mask"] = np.arange(20) != 5
        return q, k, v, kw, name.split("_")[0], (1, 5, 2)
    if name in ("key_past_causal", "value_past_causal"):     # keys past every query's cut
        q, k, v = _qkv(rng, (2, 3, E), (2, 600, E), (2, 600, 3), dtype)
        kw["is_causal"] = True
        return q, k, v, kw, name.split("_")[0], (1, 580, 0)
    if name == "value_past_causal_blas":
        q, k, v = _qkv(rng, (1, 70, E), (1, 90, E), (1, 90, 3), dtype)
        kw["is_causal"] = True
        return q, k, v, kw, "value", (0, 85, 2)
    if name == "key_scale0_blas":          # scale 0: the BLAS product does not show K
        q, k, v = _qkv(rng, (1, 70, E), (1, 20, E), (1, 20, 3), dtype)
        kw["scale"] = 0.0
        return q, k, v, kw, "key", (0, 3, 1)
    if name == "key_scale0_small":
        q, k, v = _qkv(rng, (1, 2, E), (1, 20, E), (1, 20, 3), dtype)
        kw["scale"] = 0.0
        return q, k, v, kw, "key", (0, 3, 1)
    if name == "query_tail_tile":
        q, k, v = _qkv(rng, (2, 130, E), (2, 9, E), (2, 9, 3), dtype)
        return q, k, v, kw, "query", (1, 129, 3)
    if name == "query_fully_masked_row":
        q, k, v = _qkv(rng, (1, 5, E), (1, 9, E), (1, 9, 3), dtype)
        m = np.ones((5, 9), bool)
        m[2] = False
        kw["attn_mask"] = m
        return q, k, v, kw, "query", (0, 2, 0)
    if name == "key_gqa":                  # query heads 2, 3 share key head 1
        q, k, v = _qkv(rng, (1, 4, 1, E), (1, 2, 30, E), (1, 2, 30, 3), dtype)
        kw["enable_gqa"] = True
        return q, k, v, kw, "key", (0, 1, 29, 0)
    if name == "value_broadcast":          # one key/value head for three batch rows
        q, k, v = _qkv(rng, (3, 2, E), (1, 30, E), (1, 30, 3), dtype)
        return q, k, v, kw, "value", (0, 17, 1)
    if name == "value_dropped":            # most weights dropped (small tile)
        q, k, v = _qkv(rng, (1, 1, E), (1, 50, E), (1, 50, 3), dtype)
        kw.update(dropout_p=0.9, random_state=5)
        return q, k, v, kw, "value", (0, 30, 0)
    raise KeyError(name)


POISON = ["key_L1", "value_L1", "key_skipped_tile", "value_skipped_tile", "key_masked_small",
          "value_masked_small", "key_masked_blas", "value_masked_blas", "key_past_causal",
          "value_past_causal", "value_past_causal_blas", "key_scale0_blas", "key_scale0_small",
          "query_tail_tile", "query_fully_masked_row", "key_gqa", "value_broadcast",
          "value_dropped"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", POISON)
def test_nonfinite_input_found_by_the_kernel(name, bad, backend, dtype):
    q, k, v, kw, which, idx = _poison_case(name, dtype)
    SDPA(q, k, v, backend=backend, **kw)        # clean: no error
    arr = dict(query=q, key=k, value=v)[which]
    arr[idx] = bad
    with pytest.raises(ValueError, match=f"{which}: expected finite values"):
        SDPA(q, k, v, backend=backend, **kw)


def test_nonfinite_input_random_positions(backend):
    """Random shapes, masks, causal and positions (seeded): a single NaN or inf
    anywhere in query, key or value always raises."""
    rng = np.random.default_rng(11)
    for it in range(40):
        dt = (np.float32, np.float64)[it % 2]
        B, H = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        L = int(rng.choice([1, 2, 3, 5, 63, 64, 65, 70]))
        S = int(rng.choice([1, 7, 300, 520]))
        E, Ev = int(rng.integers(1, 9)), int(rng.integers(1, 6))
        q, k, v = _qkv(rng, (B, H, L, E), (B, H, S, E), (B, H, S, Ev), dt)
        kw = dict(is_causal=bool(rng.random() < 0.3))
        if rng.random() < 0.5:
            m = rng.random((L, S)) < 0.5
            m[:, rng.random(S) < 0.3] = False       # whole key columns masked
            kw["attn_mask"] = m
        which = ("query", "key", "value")[int(rng.integers(3))]
        arr = dict(query=q, key=k, value=v)[which]
        idx = tuple(int(rng.integers(n)) for n in arr.shape)
        arr[idx] = (np.nan, np.inf, -np.inf)[int(rng.integers(3))]
        with pytest.raises(ValueError, match=f"{which}: expected finite values"):
            SDPA(q, k, v, backend=backend, **kw)


@pytest.mark.parametrize("dt,big", [(np.float32, 1e19), (np.float64, 1e154)])
def test_score_overflow_raises(dt, big, backend):
    """Finite inputs whose scores overflow the dtype raise (PyTorch returns NaN)."""
    q = np.full((1, 2, 4), big, dt)
    k = np.full((1, 3, 4), big, dt)
    v = np.ones((1, 3, 2), dt)
    with pytest.raises(ValueError, match="query, key: expected scores"):
        SDPA(q, k, v, backend=backend)
    out = SDPA(q / big, k / big, v, backend=backend)   # the same, scaled: fine
    np.testing.assert_allclose(out, 1.0)


def test_readonly_and_noncontiguous_inputs(backend):
    q, k, v, m, kw = _case("plain", np.float64)
    want = SDPA(q, k, v, backend=backend)
    qs = np.asfortranarray(q)
    kr = k.copy()
    kr.setflags(write=False)
    np.testing.assert_array_equal(SDPA(qs, kr, v, backend=backend), want)
    np.testing.assert_array_equal(SDPA(q.tolist(), k, v, backend=backend), want)


def test_no_l_by_s_allocation_in_bindings(backend):
    """A key-padding mask (B, 1, 1, S) and is_causal are never expanded to (L, S):
    the traced peak (tracemalloc: NumPy arrays, and Numba's scratch, which it
    allocates through Python's allocator) of forward and backward stays below a
    quarter of one L x S float32 matrix (inputs / outputs are L x 32 each; the
    scratch is 3 x TQ x TK per running work item)."""
    import tracemalloc

    L = S = 2048
    rng = np.random.default_rng(30)
    q, k, v = _qkv(rng, (1, 1, L, 32), (1, 1, S, 32), (1, 1, S, 32), np.float32)
    m = rng.random((1, 1, 1, S)) < 0.9
    out, lse = SDPA(q, k, v, m, is_causal=True, return_lse=True, backend=backend)
    SDPA_BWD(out, q, k, v, out, lse, m, is_causal=True, backend=backend)
    tracemalloc.start()
    out, lse = SDPA(q, k, v, m, is_causal=True, return_lse=True, backend=backend)
    SDPA_BWD(out, q, k, v, out, lse, m, is_causal=True, backend=backend)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < L * S * 4 / 4, peak


def test_engine_names_and_c_exports():
    """Both backends export the same kernel names; the Cython module exports the
    non-fused float32 / float64 C entry points through __pyx_capi__."""
    from conftest import require_backend
    require_backend("cython", FAMILY)
    from dlkernels.engine.cython import attention as cat
    from dlkernels.engine.numba import attention as nat

    for name in ("sdpa_tiles", "sdpa_forward", "sdpa_backward"):
        assert name in nat.__all__ and name in cat.__all__
    for name in ("sdpa_forward_f32", "sdpa_forward_f64", "sdpa_backward_f32", "sdpa_backward_f64"):
        assert name in cat.__pyx_capi__
