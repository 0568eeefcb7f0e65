"""Scaled dot-product attention suite: the speed targets of issue 8 (float32, the
runner's thread count; PyTorch set to the same count by the runner).

Cases (shapes (B, heads, L, E) of the "full" preset, S = L unless stated; "quick" and
"smoke" run smaller shapes of the same kinds):
  forward: (8, 8, 512, 64); (1, 8, 2048, 64) without and with is_causal; (32, 1, 64, 128);
      decoder step (64, 8, 1, 64) against S = 512 --
      dlkernels.attention.scaled_dot_product_attention vs
      torch.nn.functional.scaled_dot_product_attention (no_grad);
  backward: (8, 8, 512, 64) and (1, 8, 2048, 64) with and without is_causal --
      scaled_dot_product_attention_backward (out and lse precomputed) vs torch's backward
      through its SDPA (out.backward(g, retain_graph=True), the forward graph precomputed).
Flops (GEMM % column): forward 4 B H L S E (Q K^T and P V), causal rows count the full
L x S; backward 8 B H L S E (S, dP, dV, dK, dQ products, S recomputed twice: counted 4).
"""
import numpy as np
import pytest

from bench import _presets
from bench.conftest import gemm_key

FAMILY = "sdpa"
TITLE = "Scaled dot-product attention (issue 8)"
ORDER = 31
OURS = ("numba", "cython")
F32 = np.float32
FOOTNOTES = (
    "Peers: torch = torch.nn.functional.scaled_dot_product_attention on the same float32 "
    "CPU tensors (forward under no_grad; backward = out.backward(g, retain_graph=True) of a "
    "precomputed forward). Ours: the backward takes out and lse from a forward made "
    "outside the timed call. GEMM % = (4·B·H·L·S·E flops forward, 8·B·H·L·S·E backward) / "
    "our time over the rate of the (L x E)@(E x S) float32 GEMM probe of the same run. "
    "Causal target (issue 8): causal >= 1.8x faster than non-causal at L = S = 2048: "
    "compare the two forward rows of that shape (the causal row counts the full L x S flops, "
    "so its GEMM % is also its speed-up over the non-causal row's GEMM %).",
    "Memory note: peak extra memory = tracemalloc peak of the call (NumPy-side: outputs, index "
    "arrays) plus the kernels' scratch (threads x (TQ x TK + TK + TQ x Ev + 2 TQ) floats, "
    "TQ and TK from sdpa_tiles), over the size of one L x S float32 matrix per batch-head "
    "(B·H·L·S·4 bytes), which the kernels never allocate.",
)
PRESETS = {
    "smoke": dict(fwd=[(2, 2, 64, 32, 64), (1, 2, 128, 32, 128), (4, 1, 16, 32, 16),
                       (4, 2, 1, 32, 64)],
                  big=(1, 2, 128, 32, 128), bwd=[(2, 2, 64, 32, 64), (1, 2, 128, 32, 128)]),
    "quick": dict(fwd=[(2, 8, 512, 64, 512), (1, 8, 1024, 64, 1024), (32, 1, 64, 128, 64),
                       (64, 8, 1, 64, 512)],
                  big=(1, 8, 1024, 64, 1024), bwd=[(2, 8, 512, 64, 512), (1, 8, 1024, 64, 1024)]),
    "full": dict(fwd=[(8, 8, 512, 64, 512), (1, 8, 2048, 64, 2048), (32, 1, 64, 128, 64),
                      (64, 8, 1, 64, 512)],
                 big=(1, 8, 2048, 64, 2048), bwd=[(8, 8, 512, 64, 512), (1, 8, 2048, 64, 2048)]),
}
STARTUP_PRESETS = ("quick", "full")


def startup(backend):
    import numpy as np

    from dlkernels import attention

    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 2, 8, 16)).astype(np.float32)
    return ("attention.scaled_dot_product_attention(float32, 2x2x8x16, causal)",
            lambda: attention.scaled_dot_product_attention(q, q, q, is_causal=True,
                                                           backend=backend))


P = _presets.sizes(PRESETS)


def gemm_shapes(sizes):
    """(L x E) @ (E x S) float32 probes of the first two forward shapes."""
    return [(np.float32, L, E, S) for (_, _, L, E, S) in sizes["fwd"][:2]]


def _cases():
    out = []
    for i, shp in enumerate(P["fwd"]):
        out.append((shp, False, i))
        if shp == P["big"]:
            out.append((shp, True, i))
    return out


def _inputs(shp, seed=0):
    B, H, L, E, S = shp
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, H, L, E)).astype(F32)
    k = rng.standard_normal((B, H, S, E)).astype(F32)
    v = rng.standard_normal((B, H, S, E)).astype(F32)
    return q, k, v


def _label(shp, causal):
    B, H, L, E, S = shp
    s = f"B={B} H={H} L={L} E={E}" + (f" S={S}" if S != L else "")
    return s + (", causal" if causal else "")


def _memory_note(fn, shp, backend):
    import os
    import tracemalloc

    from dlkernels.engine.numba._sdpa import sdpa_tiles

    B, H, L, E, S = shp
    fn()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tq, tk = sdpa_tiles(E, E, 4)
    tq, tk = min(tq, L), min(tk, S)
    threads = int(os.environ.get("DLKBENCH_THREADS", "2"))
    peak += threads * (3 * tq * tk + tk + tq * E + 2 * tq) * 4
    ls = B * H * L * S * 4
    return f"peak extra memory {peak / 2**20:.2f} MiB = {peak / ls:.2f}x B·H·L·S floats"


def _torch(q, k, v, grad=False):
    import torch

    T = [torch.from_numpy(x) for x in (q, k, v)]
    if grad:
        T = [x.clone().requires_grad_(True) for x in T]
    return torch, T


@pytest.mark.parametrize("shp,causal,idx", _cases(),
                         ids=[_label(s, c).replace(" ", "") for s, c, _ in _cases()])
@pytest.mark.parametrize("impl", OURS + ("torch",))
def test_forward(bench, impl, shp, causal, idx):
    B, H, L, E, S = shp
    q, k, v = _inputs(shp)
    flops = 4 * B * H * L * S * E
    target = [{"vs": "torch", "ratio": 1.0}]
    gemm = None
    if idx < 2:
        target.append({"vs": "gemm", "frac": 0.6})
        gemm = gemm_key(F32, L, E, S)
    note = None
    if impl in OURS:
        bench.describe(family=FAMILY, case="forward " + _label(shp, causal), impl=impl,
                       flops=flops, gemm=gemm, target=target)
        bench.require_backend("attention")
        from dlkernels import attention

        def fn():
            return attention.scaled_dot_product_attention(q, k, v, is_causal=causal, backend=impl)
        note = _memory_note(fn, shp, impl)
    bench.describe(family=FAMILY, case="forward " + _label(shp, causal), impl=impl, flops=flops,
                   gemm=gemm, target=target, note=note)
    if impl == "torch":
        bench.require_module("torch")
        torch, (tq, tk, tv) = _torch(q, k, v)
        F = torch.nn.functional
        with torch.no_grad():
            bench.run(lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal))
        return
    bench.run(fn)


def _bwd_cases():
    return [(s, c) for s in P["bwd"] for c in ((False, True) if s == P["big"] else (False,))]


@pytest.mark.parametrize("shp,causal", _bwd_cases(),
                         ids=[_label(s, c).replace(" ", "") for s, c in _bwd_cases()])
@pytest.mark.parametrize("impl", OURS + ("torch",))
def test_backward(bench, impl, shp, causal):
    B, H, L, E, S = shp
    q, k, v = _inputs(shp)
    g = np.random.default_rng(1).standard_normal((B, H, L, E)).astype(F32)
    bench.describe(family=FAMILY, case="backward " + _label(shp, causal), impl=impl,
                   flops=8 * B * H * L * S * E, target=[{"vs": "torch", "ratio": 1.0}],
                   note="torch: out.backward(g) of a precomputed forward" if impl == "torch"
                   else None)
    if impl == "torch":
        bench.require_module("torch")
        torch, T = _torch(q, k, v, grad=True)
        out = torch.nn.functional.scaled_dot_product_attention(*T, is_causal=causal)
        tg = torch.from_numpy(g)
        bench.run(lambda: out.backward(tg, retain_graph=True))
        return
    bench.require_backend("attention")
    from dlkernels import attention

    out, lse = attention.scaled_dot_product_attention(q, k, v, is_causal=causal, return_lse=True,
                                                      backend=impl)
    bench.run(lambda: attention.scaled_dot_product_attention_backward(
        g, q, k, v, out, lse, is_causal=causal, backend=impl))
