"""Attention suite: the speed targets of issue 7 (float32, the runner's thread count).

Cases (sizes of the "full" preset; "quick" and "smoke" run smaller shapes):
  additive attention forward, B=32, Tq=32, Tk=64, Dq=Dk=H=256, weights returned:
      dlkernels.attention.attend vs the broadcast implementation (the (B, Tq, Tk, H) tensor)
      in NumPy and in PyTorch; the note gives our peak extra memory / the weights tensor;
  its backward: attend_backward (recomputes the forward) vs PyTorch autograd through the
      broadcast (forward + backward timed: autograd needs its forward graph);
  decoder step, B=64, Tq=1, Tk=50, D=256, "dot" and "additive" with lengths: one call each,
      vs PyTorch eager (masked_fill + softmax + bmm) and NumPy; and the additive step with the
      keys' projection made once per sequence by every implementation (no target: what a
      decoder's steps cost with attention.project_keys);
  HAN pooling of ragged documents: 2,000 documents of 1-30 sentences of 1-40 words, H=64:
      han_pool vs a padded-and-masked NumPy implementation (the padding built per call).
The peers are in this file (plain broadcast code, as a user would write it).
"""
import numpy as np
import pytest

from bench import _presets

FAMILY = "attention"
TITLE = "Attention (issue 7)"
ORDER = 30
FOOTNOTES = (
    "Peers: numpy/torch = the broadcast implementation that builds the (B, Tq, Tk, H) tensor "
    "(additive) or masked_fill + softmax + bmm (dot), float32. Backward row: our "
    "attend_backward (which recomputes the scores) vs torch forward + backward through the "
    "broadcast. HAN numpy peer: padded (D, Smax, Wmax, H) copies and masked softmaxes, the "
    "padding built inside the timed call. Memory note: tracemalloc peak of attend(...) "
    "(NumPy-side allocations, with the outputs; the Numba kernels' scratch, which numba's "
    "allocator reports to tracemalloc; the Cython kernels' scratch added by its formula, "
    "threads x ((min(Tq, 128) + 3 Tk) H + 2 Tk + 3 H) scalars), over the weights tensor's size; "
    "also without the outputs (context, weights).",
)
PRESETS = {
    "smoke": dict(B=4, Tq=4, Tk=8, D=16, dec_B=8, dec_Tk=10, dec_D=16, docs=50),
    "quick": dict(B=8, Tq=16, Tk=32, D=128, dec_B=64, dec_Tk=50, dec_D=256, docs=300),
    "full": dict(B=32, Tq=32, Tk=64, D=256, dec_B=64, dec_Tk=50, dec_D=256, docs=2000),
}
STARTUP_PRESETS = ("quick", "full")
OURS = ("numba", "cython")
F32 = np.float32


def startup(backend):
    import numpy as np

    from dlkernels import attention

    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    k = rng.standard_normal((2, 5, 8)).astype(np.float32)
    P = {"Wq": np.ones((8, 4), np.float32), "Wk": np.ones((8, 4), np.float32),
         "v": np.ones(4, np.float32)}
    return ("attention.attend(additive, float32, 2x3x5x8)",
            lambda: attention.attend(q, k, k, score="additive", params=P, backend=backend))


P = _presets.sizes(PRESETS)


def _additive_inputs(B, Tq, Tk, D, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, Tq, D)).astype(F32)
    k = rng.standard_normal((B, Tk, D)).astype(F32)
    v = rng.standard_normal((B, Tk, D)).astype(F32)
    prm = {"Wq": (rng.standard_normal((D, D)) / np.sqrt(D)).astype(F32),
           "Wk": (rng.standard_normal((D, D)) / np.sqrt(D)).astype(F32),
           "v": rng.standard_normal(D).astype(F32), "b": np.zeros(D, F32)}
    return q, k, v, prm


def _numpy_additive(q, k, v, prm, lengths=None, kp=None):
    """kp: the keys' projection k @ Wk made beforehand (else made here)."""
    kp = k @ prm["Wk"] if kp is None else kp
    pre = (q @ prm["Wq"])[:, :, None, :] + kp[:, None, :, :] + prm["b"]
    s = np.tanh(pre) @ prm["v"]
    if lengths is not None:
        s = np.where(np.arange(k.shape[1])[None, None, :] < lengths[:, None, None], s, -np.inf)
    s = s - s.max(axis=2, keepdims=True)
    w = np.exp(s)
    w /= w.sum(axis=2, keepdims=True)
    return w @ v, w


def _numpy_dot(q, k, v, lengths):
    s = q @ k.transpose(0, 2, 1)
    s = np.where(np.arange(k.shape[1])[None, None, :] < lengths[:, None, None], s, -np.inf)
    w = np.exp(s - s.max(axis=2, keepdims=True))
    w /= w.sum(axis=2, keepdims=True)
    return w @ v


def _torch_additive(t, q, k, v, prm, lengths=None, kp=None):
    kp = k @ prm["Wk"] if kp is None else kp
    pre = (q @ prm["Wq"])[:, :, None, :] + kp[:, None, :, :] + prm["b"]
    s = t.tanh(pre) @ prm["v"]
    if lengths is not None:
        s = s.masked_fill(t.arange(k.shape[1])[None, None, :] >= lengths[:, None, None],
                          float("-inf"))
    w = t.softmax(s, dim=2)
    return w @ v, w


def _torch(d):
    import torch

    return torch, {n: torch.from_numpy(a) for n, a in d.items()}


def _memory_note(q, k, v, prm, backend):
    import os
    import tracemalloc

    from dlkernels import attention

    attention.attend(q, k, v, score="additive", params=prm, return_weights=True, backend=backend)
    tracemalloc.start()
    attention.attend(q, k, v, score="additive", params=prm, return_weights=True, backend=backend)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    B, Tq, Tk = q.shape[0], q.shape[1], k.shape[1]
    H, Dv = prm["v"].shape[0], v.shape[2]
    if backend == "cython":   # its kernels' malloc is not traced (numba's allocator is)
        threads = int(os.environ.get("DLKBENCH_THREADS", "2"))
        peak += threads * ((min(Tq, 128) + 3 * Tk) * H + 2 * Tk + 3 * H) * 4 + 2 * threads * Tk
    wbytes = B * Tq * Tk * 4
    beyond = peak - wbytes - B * Tq * Dv * 4
    return (f"peak extra memory {peak / wbytes:.2f}x the weights tensor ({peak / 2**20:.2f} MiB), "
            f"{beyond / wbytes:.2f}x beyond the outputs")


@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_additive_forward(bench, impl):
    B, Tq, Tk, D = P["B"], P["Tq"], P["Tk"], P["D"]
    q, k, v, prm = _additive_inputs(B, Tq, Tk, D)
    bench.describe(family=FAMILY, case=f"additive fwd B={B} Tq={Tq} Tk={Tk} D=H={D}, weights",
                   impl=impl, work=B * Tq * Tk, unit="scores",
                   target=[{"vs": "numpy", "ratio": 10.0}, {"vs": "torch", "ratio": 10.0}])
    if impl in OURS:
        bench.require_backend(FAMILY)
        note = _memory_note(q, k, v, prm, impl)  # the row's note (describe's meta is shared)
        bench.meta["note"] = note
        bench.benchmark.extra_info["note"] = note
    if impl == "numpy":
        bench.run(lambda: _numpy_additive(q, k, v, prm))
    elif impl == "torch":
        bench.require_module("torch")
        t, T = _torch(dict(q=q, k=k, vals=v, **prm))
        with t.no_grad():
            bench.run(lambda: _torch_additive(t, T["q"], T["k"], T["vals"], T))
    else:
        from dlkernels import attention

        bench.run(lambda: attention.attend(q, k, v, score="additive", params=prm,
                                           return_weights=True, backend=impl))


@pytest.mark.parametrize("impl", OURS + ("torch",))
def test_additive_backward(bench, impl):
    B, Tq, Tk, D = P["B"], P["Tq"], P["Tk"], P["D"]
    q, k, v, prm = _additive_inputs(B, Tq, Tk, D)
    bench.describe(family=FAMILY, case=f"additive bwd B={B} Tq={Tq} Tk={Tk} D=H={D}",
                   impl=impl, work=B * Tq * Tk, unit="scores",
                   target=[{"vs": "torch", "ratio": 5.0}],
                   note="torch: forward + backward (autograd)" if impl == "torch" else None)
    dctx = np.random.default_rng(1).standard_normal((B, Tq, D)).astype(F32)
    if impl == "torch":
        bench.require_module("torch")
        t, T = _torch(dict(q=q, k=k, vals=v, **prm))
        for x in T.values():
            x.requires_grad_(True)
        g = t.from_numpy(dctx)

        def step():
            ctx, _ = _torch_additive(t, T["q"], T["k"], T["vals"], T)
            ctx.backward(g)
        bench.run(step)
        return
    bench.require_backend(FAMILY)
    from dlkernels import attention

    bench.run(lambda: attention.attend_backward(dctx, q, k, v, score="additive", params=prm,
                                                backend=impl))


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_decoder_step(bench, impl, score):
    B, Tk, D = P["dec_B"], P["dec_Tk"], P["dec_D"]
    q, k, v, prm = _additive_inputs(B, 1, Tk, D, seed=2)
    lengths = np.random.default_rng(3).integers(Tk // 2, Tk + 1, B)
    bench.describe(family=FAMILY, case=f"decoder step {score}, B={B} Tq=1 Tk={Tk} D={D}, lengths",
                   impl=impl, work=B * Tk, unit="scores", target=[{"vs": "torch", "ratio": 3.0}])
    if impl == "numpy":
        if score == "dot":
            bench.run(lambda: _numpy_dot(q, k, v, lengths))
        else:
            bench.run(lambda: _numpy_additive(q, k, v, prm, lengths))
    elif impl == "torch":
        bench.require_module("torch")
        t, T = _torch(dict(q=q, k=k, vals=v, L=lengths, **prm))
        with t.no_grad():
            if score == "dot":
                def f():
                    s = T["q"] @ T["k"].transpose(1, 2)
                    s = s.masked_fill(t.arange(Tk)[None, None, :] >= T["L"][:, None, None],
                                      float("-inf"))
                    return t.softmax(s, dim=2) @ T["vals"]
                bench.run(f)
            else:
                bench.run(lambda: _torch_additive(t, T["q"], T["k"], T["vals"], T, T["L"]))
    else:
        bench.require_backend(FAMILY)
        from dlkernels import attention

        kw = dict(score=score, params=None if score == "dot" else prm, lengths=lengths,
                  backend=impl)
        bench.run(lambda: attention.attend(q, k, v, **kw))


@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_decoder_step_projected_keys(bench, impl):
    # the same step with the keys' projection made once per sequence, by
    # every implementation (ours: attention.project_keys; the peers: k @ Wk
    # outside the timed call): what a decoder does at each step
    B, Tk, D = P["dec_B"], P["dec_Tk"], P["dec_D"]
    q, k, v, prm = _additive_inputs(B, 1, Tk, D, seed=2)
    lengths = np.random.default_rng(3).integers(Tk // 2, Tk + 1, B)
    bench.describe(family=FAMILY, case=f"decoder step additive, keys projected once, B={B} Tq=1 "
                   f"Tk={Tk} D={D}, lengths", impl=impl, work=B * Tk, unit="scores",
                   note="keys projected once per sequence by every implementation (not timed)")
    if impl == "numpy":
        Kp = k @ prm["Wk"]
        bench.run(lambda: _numpy_additive(q, k, v, prm, lengths, kp=Kp))
    elif impl == "torch":
        bench.require_module("torch")
        t, T = _torch(dict(q=q, k=k, vals=v, L=lengths, **prm))
        with t.no_grad():
            Kp = T["k"] @ T["Wk"]
            bench.run(lambda: _torch_additive(t, T["q"], T["k"], T["vals"], T, T["L"], kp=Kp))
    else:
        bench.require_backend(FAMILY)
        from dlkernels import attention

        Kp = attention.project_keys(k, score="additive", params=prm, backend=impl)
        bench.run(lambda: attention.attend(q, k, v, score="additive", params=prm,
                                           lengths=lengths, projected_keys=Kp, backend=impl))


def _han_inputs(docs, H=64, seed=4):
    rng = np.random.default_rng(seed)
    nsent = rng.integers(1, 31, docs)
    doc_off = np.concatenate([[0], np.cumsum(nsent)])
    nwords = rng.integers(1, 41, doc_off[-1])
    sent_off = np.concatenate([[0], np.cumsum(nwords)])
    X = rng.standard_normal((sent_off[-1], H)).astype(F32)

    def lin(a):
        return ((rng.standard_normal((H, a)) / np.sqrt(H)).astype(F32),
                np.zeros(a, F32), rng.standard_normal(a).astype(F32))
    (Ww, bw, uw), (Ws, bs, us) = lin(H), lin(H)
    return X, sent_off, doc_off, dict(Ww=Ww, bw=bw, uw=uw, Ws=Ws, bs=bs, us=us)


def _numpy_pool_padded(Xp, valid, W, b, u):
    e = np.tanh(Xp @ W + b) @ u
    e = np.where(valid, e, -np.inf)
    m = e.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    a = np.where(valid, np.exp(e - m), 0)
    z = a.sum(axis=-1, keepdims=True)
    a = a / np.where(z > 0, z, 1)
    return (a[..., None] * Xp).sum(axis=-2)


def _numpy_han(X, so, do, prm):
    nw = np.diff(so)
    S = len(nw)
    Wm = nw.max()
    Xp = np.zeros((S, Wm, X.shape[1]), X.dtype)
    pos = np.arange(len(X)) - np.repeat(so[:-1], nw)
    Xp[np.repeat(np.arange(S), nw), pos] = X
    sent = _numpy_pool_padded(Xp, np.arange(Wm)[None, :] < nw[:, None], prm["Ww"], prm["bw"],
                              prm["uw"])
    ns = np.diff(do)
    D = len(ns)
    Sm = ns.max()
    Sp = np.zeros((D, Sm, X.shape[1]), X.dtype)
    pos = np.arange(S) - np.repeat(do[:-1], ns)
    Sp[np.repeat(np.arange(D), ns), pos] = sent
    return _numpy_pool_padded(Sp, np.arange(Sm)[None, :] < ns[:, None], prm["Ws"], prm["bs"],
                              prm["us"])


@pytest.mark.parametrize("impl", OURS + ("numpy",))
def test_han_pool(bench, impl):
    X, so, do, prm = _han_inputs(P["docs"])
    bench.describe(family=FAMILY, case=f"HAN pooling, {P['docs']:,} docs ({len(X):,} words), H=64",
                   impl=impl, work=len(X), unit="words", target=[{"vs": "numpy", "ratio": 5.0}])
    if impl == "numpy":
        bench.run(lambda: _numpy_han(X, so, do, prm))
        return
    bench.require_backend(FAMILY)
    from dlkernels import attention

    bench.run(lambda: attention.han_pool(X, so, do, prm, backend=impl))
