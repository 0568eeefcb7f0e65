"""dlkernels.interop.torch: autograd Functions vs PyTorch's own SDPA, gradcheck
in float64, zero-copy.  Skipped when PyTorch is not installed.

float32 tolerance against ``torch.nn.functional.scaled_dot_product_attention``
(O(1) standard-normal inputs): absolute and relative 2e-5 for outputs, 1e-4
for gradients; float64: 1e-12 / 1e-10.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import dlkernels  # noqa: E402
from dlkernels.interop import torch as dt  # noqa: E402
from dlkernels.interop.torch import _np  # noqa: E402

import naive_sdpa as ref  # noqa: E402

FAMILY = "attention"


def _tol(dtype, grad=False):
    if dtype == torch.float32:
        return dict(rtol=1e-4, atol=1e-4) if grad else dict(rtol=2e-5, atol=2e-5)
    return dict(rtol=1e-10, atol=1e-10) if grad else dict(rtol=1e-12, atol=1e-12)


CASES = {
    "plain": ((2, 3, 7, 8), (2, 3, 9, 8), (2, 3, 9, 5), None, {}),
    "bool_mask": ((2, 2, 6, 4), (2, 2, 10, 4), (2, 2, 10, 4), "bool", {}),
    "float_mask": ((2, 2, 6, 4), (2, 2, 10, 4), (2, 2, 10, 3), "float", {}),
    "causal_l_lt_s": ((1, 2, 5, 4), (1, 2, 11, 4), (1, 2, 11, 4), None, dict(is_causal=True)),
    "causal_l_gt_s": ((1, 2, 11, 4), (1, 2, 5, 4), (1, 2, 5, 4), None, dict(is_causal=True)),
    "causal_big": ((1, 2, 150, 16), (1, 2, 150, 16), (1, 2, 150, 16), None, dict(is_causal=True)),
    "gqa": ((2, 4, 6, 4), (2, 2, 8, 4), (2, 2, 8, 4), None, dict(enable_gqa=True)),
    "scale": ((3, 5, 6), (3, 7, 6), (3, 7, 2), None, dict(scale=0.3)),
    "broadcast": ((2, 3, 5, 4), (1, 3, 6, 4), (1, 3, 6, 4), None, {}),
}


def _make(name, dtype, seed=0):
    qs, ks, vs, mk, kw = CASES[name]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(s, generator=g, dtype=dtype) for s in (qs, ks, vs))
    L, S = qs[-2], ks[-2]
    m = None
    if mk == "bool":
        m = torch.rand((qs[0], 1, L, S), generator=g) < 0.7
        m[..., 0] = True
    elif mk == "float":
        m = torch.randn((L, S), generator=g, dtype=dtype)
    return q, k, v, m, kw


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_matches_torch_sdpa(name, dtype, backend):
    q, k, v, m, kw = _make(name, dtype)
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    want = F.scaled_dot_product_attention(*leaves, attn_mask=m, **kw)
    gout = torch.randn(want.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    want.backward(gout)
    mine = [x.clone().requires_grad_(True) for x in (q, k, v)]
    got = dt.scaled_dot_product_attention(*mine, attn_mask=m, backend=backend, **kw)
    assert got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got, want.detach(), **_tol(dtype))
    got.backward(gout)
    for a, b in zip(mine, leaves):
        torch.testing.assert_close(a.grad, b.grad, **_tol(dtype, grad=True))


@pytest.mark.parametrize("name", ["plain", "bool_mask", "float_mask", "causal_l_gt_s", "gqa"])
def test_reference_matches_torch(name):
    """The NumPy reference of tests/naive_sdpa.py agrees with PyTorch (float64)."""
    q, k, v, m, kw = _make(name, torch.float64)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=m, **kw).numpy()
    mm = None if m is None else m.numpy()
    np.testing.assert_allclose(ref.sdpa(q.numpy(), k.numpy(), v.numpy(), mm, **kw)[0], want,
                               rtol=1e-12, atol=1e-12)


GC_CASES = {  # small shapes: gradcheck calls the function once per input element
    "plain": ((1, 2, 3, 4), (1, 2, 4, 4), (1, 2, 4, 3), None, {}),
    "bool_mask": ((2, 1, 3, 3), (2, 1, 4, 3), (2, 1, 4, 2), "bool", {}),
    "causal_l_lt_s": ((1, 1, 3, 3), (1, 1, 5, 3), (1, 1, 5, 2), None, dict(is_causal=True)),
    "causal_l_gt_s": ((1, 1, 5, 3), (1, 1, 3, 3), (1, 1, 3, 2), None, dict(is_causal=True)),
    "gqa": ((1, 4, 2, 3), (1, 2, 3, 3), (1, 2, 3, 2), None, dict(enable_gqa=True)),
    "broadcast": ((2, 2, 3, 3), (1, 2, 4, 3), (4, 2), None, {}),
}


@pytest.mark.parametrize("name,p", [("plain", 0.0), ("bool_mask", 0.0), ("causal_l_lt_s", 0.0),
                                    ("gqa", 0.0), ("broadcast", 0.0), ("plain", 0.3),
                                    ("causal_l_gt_s", 0.2)])
def test_gradcheck(name, p, backend, restore_threads):
    dlkernels.set_num_threads(1)  # hundreds of tiny calls: no thread start-up per call
    qs, ks, vs, mk, kw = GC_CASES[name]
    g = torch.Generator().manual_seed(3)
    leaves = tuple(torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
                   for s in (qs, ks, vs))
    m = None
    if mk == "bool":
        m = torch.rand((qs[0], 1, qs[-2], ks[-2]), generator=g) < 0.7
        m[..., 0] = True

    def fn(a, b, c):
        return dt.scaled_dot_product_attention(a, b, c, attn_mask=m, dropout_p=p, random_state=11,
                                               backend=backend, **kw)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_dropout_replays_in_backward(backend):
    """With a Streams, each call draws fresh (one epoch); the backward reuses the
    forward's mask: dV = (P Z)^T dO, checked against the NumPy backward."""
    from dlkernels.rng import Streams
    from dlkernels.attention import scaled_dot_product_attention_backward as bwd
    q, k, v, m, kw = _make("plain", torch.float64, seed=4)
    st = Streams(5)
    a = dt.scaled_dot_product_attention(q, k, v, dropout_p=0.5, random_state=st, backend=backend)
    assert st.epoch == 1
    vv = v.clone().requires_grad_(True)
    b = dt.scaled_dot_product_attention(q, k, vv, dropout_p=0.5, random_state=st, backend=backend)
    assert not torch.equal(a, b)
    b.sum().backward()
    st2 = Streams(5)
    st2.next_counter()  # the state before the second call
    from dlkernels.attention import scaled_dot_product_attention as sdpa
    qn, kn, vn = q.numpy(), k.numpy(), v.numpy()
    s3 = Streams(5)
    s3.set_state(st2.get_state())
    out, lse = sdpa(qn, kn, vn, dropout_p=0.5, return_lse=True, random_state=s3)
    np.testing.assert_array_equal(out, b.detach().numpy())
    s3.set_state(st2.get_state())
    _, _, dv = bwd(np.ones_like(out), qn, kn, vn, out, lse, dropout_p=0.5, random_state=s3)
    np.testing.assert_array_equal(vv.grad.numpy(), dv)


def test_zero_copy_and_errors():
    x = torch.randn(3, 4, 5)
    assert np.shares_memory(_np(x, "x"), x.numpy())
    assert not _np(x.transpose(1, 2), "x").flags.f_contiguous
    with pytest.raises(TypeError, match="query: expected a tensor of dtype float32 or float64"):
        dt.scaled_dot_product_attention(x.half(), x.half(), x.half())
    with pytest.raises(ValueError, match="query: expected a CPU tensor"):
        dt.scaled_dot_product_attention(x.to("meta"), x, x)
    with pytest.raises(TypeError, match="attn_mask: expected a bool tensor"):
        dt.scaled_dot_product_attention(x, x, x, attn_mask=torch.ones(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="key: expected 5 features"):
        dt.scaled_dot_product_attention(x, torch.randn(3, 4, 6), x)


def test_fully_masked_row_zero_not_nan(backend):
    q, k, v, _, _ = _make("plain", torch.float64)
    m = torch.ones(7, 9, dtype=torch.bool)
    m[2] = False
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    out = dt.scaled_dot_product_attention(*leaves, attn_mask=m, backend=backend)
    assert torch.all(out[..., 2, :] == 0)
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def _has_attend():
    try:
        from dlkernels.attention import attend  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _has_attend(), reason="dlkernels.attention.attend not built yet")
@pytest.mark.parametrize("score", ["dot", "general"])
def test_attend_gradcheck(score, backend, restore_threads):
    dlkernels.set_num_threads(1)
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in ((1, 2, 3), (1, 3, 3), (1, 3, 2)))
    params = {}
    if score == "general":
        params = {"W": torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)}
    names = sorted(params)

    def fn(a, b, c, *ps):
        return dt.attend(a, b, c, score=score, params=dict(zip(names, ps)) or None,
                         causal=True, backend=backend)

    assert torch.autograd.gradcheck(fn, (q, k, v) + tuple(params[n] for n in names),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_numpy_scalar_dropout_replays(backend):
    """dropout_p given as a NumPy float32 still replays the forward's draws in the
    backward (the gradient of sum(out) w.r.t. v is the column sum of the dropped weights)."""
    from dlkernels.attention import scaled_dot_product_attention_backward as bwd
    q, k, v, _, _ = _make("plain", torch.float64, seed=8)
    vv = v.clone().requires_grad_(True)
    out = dt.scaled_dot_product_attention(q, k, vv, dropout_p=np.float32(0.4), random_state=3,
                                          backend=backend)
    out.sum().backward()
    from dlkernels.attention import scaled_dot_product_attention as sdpa
    o, lse = sdpa(q.numpy(), k.numpy(), v.numpy(), dropout_p=float(np.float32(0.4)),
                  return_lse=True, random_state=3)
    np.testing.assert_array_equal(o, out.detach().numpy())
    _, _, dv = bwd(np.ones_like(o), q.numpy(), k.numpy(), v.numpy(), o, lse,
                   dropout_p=float(np.float32(0.4)), random_state=3)
    np.testing.assert_array_equal(vv.grad.numpy(), dv)
