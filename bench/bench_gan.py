"""GAN suite: the speed targets of issue 9 (float32).

Cases (sizes of the "full" preset; "quick"/"smoke" run fewer steps of the same shapes):
  toy GAN, G 2-128-128-2 (ReLU, identity out), D 2-128-128-1 (ReLU, identity out), batch 64,
      1000 k=1 steps of SGD + momentum, 1 thread: dlkernels.gan.GANTrainer.fit vs the same loop
      in PyTorch eager (nn.Linear, BCE with logits, torch.optim.SGD) and a hand-written NumPy
      backprop (both in this file);
  MNIST-sized GAN, G 100-1200-1200-784 (ReLU, sigmoid out), D 784-240-240-1 (maxout x 5,
      identity out), batch 100, one k=1 step at the runner's thread count: the same three.
Every implementation does the same work per step: a D update on m real + m fake rows (one
forward of G, forward and backward of D), then a G update on fresh noise (forward of G and D,
backward through D into G), non-saturating generator loss.
"""
import numpy as np
import pytest

from bench import _presets
from bench.conftest import gemm_key, set_threads

FAMILY = "gan"
TITLE = "GAN minibatch training (float32)"
ORDER = 40
F32 = np.float32
OURS = ("numba", "cython")

TOY = dict(g=[2, 128, 128, 2], g_act=["relu", "relu", "identity"],
           d=[2, 128, 128, 1], d_act=["relu", "relu", "identity"], pieces=None, m=64)
MNIST = dict(g=[100, 1200, 1200, 784], g_act=["relu", "relu", "sigmoid"],
             d=[784, 240, 240, 1], d_act=["maxout", "maxout", "identity"], pieces=5, m=100)


def _step_flops(cfg):
    """GEMM flops of one k=1 step (the D step on 2m rows, the G step on m rows)."""
    m = cfg["m"]

    def layers(sizes, acts):
        return [(a, b * (cfg["pieces"] if act == "maxout" else 1))
                for a, b, act in zip(sizes[:-1], sizes[1:], acts)]
    g, d = layers(cfg["g"], cfg["g_act"]), layers(cfg["d"], cfg["d_act"])
    f = sum(2 * m * a * b for a, b in g)                              # D step: G forward
    f += sum(2 * 2 * m * a * b for a, b in d)                         # D forward (2m rows)
    f += sum(2 * 2 * m * a * b * (2 if i else 1) for i, (a, b) in enumerate(d))  # D backward
    f += sum(2 * m * a * b for a, b in g) + sum(2 * m * a * b for a, b in d)     # G step fwd
    f += sum(2 * m * a * b for a, b in d)                             # D backward (inputs only)
    f += sum(2 * m * a * b * (2 if i else 1) for i, (a, b) in enumerate(g))      # G backward
    return float(f)


FOOTNOTES = (
    "Flops per step (GEMMs only; the GEMM % column): toy "
    f"{_step_flops(TOY) / 1e6:.1f} MFLOP, MNIST-sized {_step_flops(MNIST) / 1e9:.2f} GFLOP "
    "(D step: G forward on m rows, D forward and backward on 2m rows; G step: G and D forward, "
    "D backward to its input, G backward). The toy case runs at 1 thread (dlkernels, BLAS, "
    "PyTorch); the MNIST-sized case at the runner's thread count. Peers: PyTorch eager "
    "(nn.Linear stacks, maxout as view + amax, BCE-with-logits, optim.SGD momentum) and a "
    "hand-written NumPy backprop, float32, same sizes, same SGD + momentum updates.",
)
PRESETS = {"smoke": dict(toy_steps=20, mnist_steps=1), "quick": dict(toy_steps=200, mnist_steps=1),
           "full": dict(toy_steps=1000, mnist_steps=1)}
STARTUP_PRESETS = ("quick", "full")
P = _presets.sizes(PRESETS)


def gemm_shapes(sizes):
    return [(F32, 128, 128, 128), (F32, 100, 1200, 1200)]


def startup(backend):
    """Start-up probe: the first discriminator_gradients call of a small GAN."""
    import numpy as np

    import dlkernels.gan as fam

    G = fam.MLP([2, 8, 2], ["relu", "identity"], random_state=0)
    D = fam.MLP([2, 8, 1], ["maxout", "identity"], maxout_pieces=2, random_state=1)
    x = np.ones((4, 2), np.float32)
    return ("gan.discriminator_gradients(float32, 2-8-2 / 2-8x2-1, m=4)",
            lambda: fam.discriminator_gradients(G, D, x, x, backend=backend))


def _data(cfg, n_rows):
    rng = np.random.default_rng(0)
    return rng.random((n_rows, cfg["g"][-1]), dtype=F32)


# ---- peers -----------------------------------------------------------------------------------
def _np_init(sizes, acts, pieces, rng):
    out = []
    for a, b, act in zip(sizes[:-1], sizes[1:], acts):
        w = b * (pieces if act == "maxout" else 1)
        lim = np.sqrt(6.0 / (a + b))
        out.append([rng.uniform(-lim, lim, (a, w)).astype(F32), np.zeros(w, F32)])
    return out


def _np_forward(net, acts, pieces, x):
    cache = []
    h = x
    for (W, b), act in zip(net, acts):
        a = h @ W + b
        if act == "relu":
            y = np.maximum(a, 0)
        elif act == "sigmoid":
            y = 1 / (1 + np.exp(-a))
        elif act == "maxout":
            y = a.reshape(len(a), -1, pieces).max(axis=2)
        else:
            y = a
        cache.append((h, a, y))
        h = y
    return h, cache


def _np_backward(net, acts, pieces, cache, g, want_w=True, need_input=False):
    grads = [None] * len(net)
    for i in reversed(range(len(net))):
        (W, b), act, (h, a, y) = net[i], acts[i], cache[i]
        if act == "relu":
            g = g * (a > 0)
        elif act == "sigmoid":
            g = g * y * (1 - y)
        elif act == "maxout":
            ar = a.reshape(len(a), -1, pieces)
            mask = ar == ar.max(axis=2, keepdims=True)
            g = (mask * g[:, :, None]).reshape(a.shape)
        if want_w:
            grads[i] = (h.T @ g, g.sum(0))
        if i or need_input:
            g = g @ W.T
    return grads, g


def _np_sigmoid(x):
    return np.exp(-np.logaddexp(0, -x)).astype(F32)


def numpy_train(cfg, X, steps, lr=0.05, mom=0.5):
    rng = np.random.default_rng(0)
    G = _np_init(cfg["g"], cfg["g_act"], cfg["pieces"], rng)
    D = _np_init(cfg["d"], cfg["d_act"], cfg["pieces"], rng)
    vG = [[np.zeros_like(p) for p in layer] for layer in G]
    vD = [[np.zeros_like(p) for p in layer] for layer in D]
    m, pcs = cfg["m"], cfg["pieces"]

    def update(net, vel, grads):
        for layer, v, gr in zip(net, vel, grads):
            for p, vv, g in zip(layer, v, gr):
                vv *= mom
                vv -= lr * g
                p += vv

    for s in range(steps):
        i = (s * m) % (len(X) - m + 1)
        xb = X[i:i + m]
        z = rng.standard_normal((m, cfg["g"][0]), dtype=F32)
        xf, _ = _np_forward(G, cfg["g_act"], pcs, z)
        inp = np.concatenate([xb, xf])
        l, dc = _np_forward(D, cfg["d_act"], pcs, inp)
        gl = np.concatenate([-_np_sigmoid(-l[:m]), _np_sigmoid(l[m:])]) / m
        gD, _ = _np_backward(D, cfg["d_act"], pcs, dc, gl)
        update(D, vD, gD)
        z = rng.standard_normal((m, cfg["g"][0]), dtype=F32)
        xf, gc = _np_forward(G, cfg["g_act"], pcs, z)
        l, dc = _np_forward(D, cfg["d_act"], pcs, xf)
        _, gx = _np_backward(D, cfg["d_act"], pcs, dc, -_np_sigmoid(-l) / m, want_w=False,
                              need_input=True)
        gG, _ = _np_backward(G, cfg["g_act"], pcs, gc, gx)
        update(G, vG, gG)


def torch_train_fn(cfg, X, steps, lr=0.05, mom=0.5):
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Maxout(nn.Module):
        def __init__(self, pieces):
            super().__init__()
            self.p = pieces

        def forward(self, x):
            return x.view(x.shape[0], -1, self.p).amax(dim=2)

    def build(sizes, acts):
        mods = []
        for a, b, act in zip(sizes[:-1], sizes[1:], acts):
            mods.append(nn.Linear(a, b * (cfg["pieces"] if act == "maxout" else 1)))
            mods.append({"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "identity": nn.Identity(),
                         "maxout": Maxout(cfg["pieces"] or 1)}[act])
        return nn.Sequential(*mods)

    G, D = build(cfg["g"], cfg["g_act"]), build(cfg["d"], cfg["d_act"])
    optG = torch.optim.SGD(G.parameters(), lr=lr, momentum=mom)
    optD = torch.optim.SGD(D.parameters(), lr=lr, momentum=mom)
    bce = nn.BCEWithLogitsLoss()
    Xt = torch.from_numpy(X)
    m = cfg["m"]
    ones, zeros = torch.ones(m, 1), torch.zeros(m, 1)

    def run():
        for s in range(steps):
            i = (s * m) % (len(X) - m + 1)
            z = torch.randn(m, cfg["g"][0])
            with torch.no_grad():
                xf = G(z)
            logits = D(torch.cat([Xt[i:i + m], xf]))
            lossD = bce(logits[:m], ones) + bce(logits[m:], zeros)
            optD.zero_grad(set_to_none=True)
            lossD.backward()
            optD.step()
            z = torch.randn(m, cfg["g"][0])
            lossG = bce(D(G(z)), ones)
            optG.zero_grad(set_to_none=True)
            lossG.backward()
            optG.step()
    return run


def ours_train_fn(cfg, X, steps, backend):
    from dlkernels import gan

    G = gan.MLP(cfg["g"], cfg["g_act"], maxout_pieces=cfg["pieces"], random_state=0)
    D = gan.MLP(cfg["d"], cfg["d_act"], maxout_pieces=cfg["pieces"], random_state=1)
    tr = gan.GANTrainer(G, D, batch_size=cfg["m"], learning_rate=0.05, momentum=0.5,
                        noise="normal", random_state=0, backend=backend, progress=False)
    n_epochs = max(1, steps // (len(X) // cfg["m"]))
    return lambda: tr.fit(X, n_epochs)


def _case(bench, impl, cfg, steps, case, target):
    X = _data(cfg, cfg["m"] * steps)
    bench.describe(family=FAMILY, case=case, impl=impl, flops=_step_flops(cfg) * steps,
                   gemm=gemm_key(F32, 128, 128, 128) if cfg is TOY else
                   gemm_key(F32, 100, 1200, 1200), target=target)
    if impl == "numpy":
        bench.run(lambda: numpy_train(cfg, X, steps))
    elif impl == "torch":
        bench.require_module("torch")
        bench.run(torch_train_fn(cfg, X, steps))
    else:
        bench.require_backend(FAMILY)
        bench.run(ours_train_fn(cfg, X, steps, impl))


@pytest.fixture
def one_thread():
    set_threads(1, 1)
    yield
    set_threads(_presets.threads(), _presets.blas_threads())


@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_toy_gan(bench, impl, one_thread):
    n = P["toy_steps"]
    _case(bench, impl, TOY, n,
          f"toy GAN 2-128-128-2 / 2-128-128-1, batch 64, {n} k=1 SGD steps, 1 thread",
          [{"vs": "torch", "ratio": 5.0}, {"vs": "numpy", "ratio": 2.0}])


@pytest.mark.parametrize("impl", OURS + ("numpy", "torch"))
def test_mnist_gan(bench, impl):
    n = P["mnist_steps"]
    _case(bench, impl, MNIST, n,
          f"MNIST-sized GAN 100-1200-1200-784 / 784-240x5-240x5-1, batch 100, {n} k=1 step",
          [{"vs": "gemm", "frac": 0.85}, {"vs": "torch", "ratio": 1.2}])
