"""Slow, obviously-correct NumPy references for dlkernels.gan (float64 maths).

Written from the maths, independently of the kernels: a plain MLP forward
pass keeping every layer's input and pre-activation, backprop by the chain
rule, the losses of Goodfellow et al. 2014 from logits with
``np.logaddexp`` (log D = -softplus(-l), log(1 - D) = -softplus(l)).

Parameters are given as a list of (W, b) pairs; W (n_in, n_out * p).
"""
import numpy as np

ACTS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "maxout")


def softplus(x):
    return np.logaddexp(0.0, x)


def sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def act_forward(name, a, slope=0.2, pieces=1):
    """Activation of the pre-activations a (B, n_out * p); maxout also gives the arg-max."""
    if name == "identity":
        return a, None
    if name == "relu":
        return np.maximum(a, 0.0), None
    if name == "leaky_relu":
        return np.where(a > 0, a, slope * a), None
    if name == "tanh":
        return np.tanh(a), None
    if name == "sigmoid":
        return sigmoid(a), None
    if name == "maxout":
        B, n = a.shape
        r = a.reshape(B, n // pieces, pieces)
        return r.max(axis=2), r.argmax(axis=2)
    raise ValueError(name)


def act_backward(name, a, y, gy, arg=None, slope=0.2, pieces=1):
    """Gradient wrt the pre-activations a from the gradient gy of the output y."""
    if name == "identity":
        return gy
    if name == "relu":
        return gy * (a > 0)
    if name == "leaky_relu":
        return gy * np.where(a > 0, 1.0, slope)
    if name == "tanh":
        return gy * (1.0 - y * y)
    if name == "sigmoid":
        return gy * y * (1.0 - y)
    if name == "maxout":
        B, n = gy.shape
        g = np.zeros((B, n, pieces))
        np.put_along_axis(g, arg[:, :, None], gy[:, :, None], axis=2)
        return g.reshape(B, n * pieces)
    raise ValueError(name)


def forward(params, acts, x, slope=0.2, pieces=1):
    """Output and the cache (inputs, pre-activations, outputs, arg-max) of each layer."""
    cache = []
    h = np.asarray(x, dtype=np.float64)
    for (W, b), name in zip(params, acts):
        a = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        y, arg = act_forward(name, a, slope, pieces if name == "maxout" else 1)
        cache.append((h, a, y, arg))
        h = y
    return h, cache


def backward(params, acts, cache, gout, slope=0.2, pieces=1):
    """Gradients [(gW, gb)] and the gradient wrt the input, from gout = dL/d(output)."""
    grads = []
    g = gout
    for (W, b), name, (h, a, y, arg) in reversed(list(zip(params, acts, cache))):
        ga = act_backward(name, a, y, g, arg, slope, pieces if name == "maxout" else 1)
        grads.append((h.T @ ga, ga.sum(axis=0)))
        g = ga @ np.asarray(W, np.float64).T
    return grads[::-1], g


def d_loss_grad_logits(l_real, l_fake):
    """Minimised D loss (1/m) sum softplus(-l_real) + softplus(l_fake) and its logit gradients."""
    m = len(l_real)
    loss = (softplus(-l_real).sum() + softplus(l_fake).sum()) / m
    return loss, -sigmoid(-l_real) / m, sigmoid(l_fake) / m


def g_loss_grad_logits(l_fake, loss="minimax"):
    m = len(l_fake)
    if loss == "minimax":
        return -softplus(l_fake).sum() / m, -sigmoid(l_fake) / m
    return softplus(-l_fake).sum() / m, -sigmoid(-l_fake) / m


def discriminator_gradients(Gp, Ga, Dp, Da, x_real, z, slope=0.2, pieces=1):
    """(loss, [(gW, gb)] of D): real and fake rows through D in one batch."""
    xf, _ = forward(Gp, Ga, z, slope, pieces)
    m = len(x_real)
    inp = np.concatenate([np.asarray(x_real, np.float64), xf])
    l, cache = forward(Dp, Da, inp, slope, pieces)
    loss, gr, gf = d_loss_grad_logits(l[:m, 0], l[m:, 0])
    grads, _ = backward(Dp, Da, cache, np.concatenate([gr, gf])[:, None], slope, pieces)
    return loss, grads


def generator_gradients(Gp, Ga, Dp, Da, z, loss="minimax", slope=0.2, pieces=1):
    xf, gcache = forward(Gp, Ga, z, slope, pieces)
    l, dcache = forward(Dp, Da, xf, slope, pieces)
    val, gl = g_loss_grad_logits(l[:, 0], loss)
    _, gx = backward(Dp, Da, dcache, gl[:, None], slope, pieces)
    grads, _ = backward(Gp, Ga, gcache, gx, slope, pieces)
    return val, grads


def flatten(pairs):
    """The flat layout of dlkernels' MLP: W_0, b_0, W_1, b_1, ..."""
    return np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in pairs])


def glorot_bound(n_in, n_out):
    return np.sqrt(6.0 / (n_in + n_out))
