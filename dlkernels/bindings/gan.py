"""GAN minibatch gradients: MLPs with one flat parameter buffer, fused dense
layers, numerically stable losses from logits (Goodfellow et al. 2014).

* ``MLP(sizes, activations, ...)``: layer i computes ``act_i(x @ W_i + b_i)``
  with ``W_i`` of shape (sizes[i], sizes[i+1] * p) (p pieces for maxout, else
  1), every parameter a view into ``MLP.params`` (layout W_0, b_0, W_1, b_1...).
* ``discriminator_gradients`` / ``generator_gradients``: loss and gradient (a
  flat buffer of the network's layout) of one minibatch.  The discriminator
  outputs a logit l: log D = -softplus(-l), log(1 - D) = -softplus(l).
* ``dense_forward`` / ``dense_backward``: one fused layer (the engine kernels
  ``layer_forward`` / ``layer_backward``, also callable from a user's
  ``@njit`` code or cimport-able from ``dlkernels.engine.cython.gan``).
* Evaluation: ``ring_modes`` / ``grid_modes``, ``sample_ring`` /
  ``sample_grid``, ``mode_metrics``, ``parzen_log_likelihood``.

Both backends give bit-identical results; forward and backward passes run in
per-network workspaces (one per batch size and Python thread), so repeated
calls allocate nothing but their outputs.
"""
import math
import threading

import numpy as np

from ._backend import resolve
from ._threads import blas_single_threaded
from ._checks import (_describe, check_alloc, check_array, check_choice, check_dtype, check_float,
                      check_int, check_out)
from . import rng as _rng

__all__ = ["MLP", "ACTIVATIONS", "discriminator_gradients", "generator_gradients",
           "dense_forward", "dense_backward", "ring_modes", "grid_modes", "sample_ring",
           "sample_grid", "mode_metrics", "parzen_log_likelihood"]

ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "maxout")
_CODE = {name: i for i, name in enumerate(ACTIVATIONS)}
_MAXOUT = _CODE["maxout"]
_PREFER = ("cython", "numba")


def _engine(backend):
    return resolve(backend, "gan", prefer=_PREFER)


# ---- networks ------------------------------------------------------------------------------
class _Work:
    """Buffers of one forward + backward pass at one batch size."""

    def __init__(self, net, B):
        dt = net.dtype
        self.B = B
        self.Y, self.D, self.idx, self.PRE, self.GPRE, self.GX = [], [], [], [], [], []
        empty = np.empty((0, 0), dt)
        empty_i = np.empty((0, 0), np.int32)
        for i, (n_in, n_out, p) in enumerate(zip(net.sizes[:-1], net.sizes[1:], net.pieces)):
            mx = net._codes[i] == _MAXOUT
            self.Y.append(np.empty((B, n_out), dt))
            self.D.append(empty if mx else np.empty((B, n_out), dt))
            self.idx.append(np.empty((B, n_out), np.int32) if mx else empty_i)
            self.PRE.append(np.empty((B, n_out * p), dt) if mx else empty)
            self.GPRE.append(np.empty((B, n_out * p), dt) if mx else None)
            self.GX.append(np.empty((B, n_in), dt))
        self.gout = np.empty((B, net.sizes[-1]), dt)


class MLP:
    """A multilayer perceptron whose parameters live in one flat buffer.

    Parameters
    ----------
    sizes : sequence of int
        Widths ``(n_0, n_1, ..., n_L)``, at least two, each >= 1.
    activations : str or sequence of str
        One activation per layer (or one name for all): ``"identity"``,
        ``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"`` or ``"maxout"``.
    maxout_pieces : int, optional
        Pieces p of every maxout layer (required when a layer is maxout, >= 1).
        A maxout layer's pre-activations ``x @ W + b`` have width n_out * p,
        viewed as (batch, n_out, p); its output is the maximum over the pieces.
    leaky_slope : float, default 0.2
        Slope of ``leaky_relu`` for negative inputs, in [0, 1).
    init : {"glorot", "uniform"}, default "glorot"
        ``"glorot"``: ``W_i ~ U(-a, a)``, ``a = sqrt(6 / (n_i + n_{i+1}))``
        (Glorot & Bengio 2010; for maxout the fan-out is n_{i+1}, one piece);
        ``"uniform"``: ``W_i ~ U(-init_range, init_range)`` as the original
        adversarial-nets code (pylearn2's ``irange``).  Biases start at 0.
    init_range : float or sequence of float, default 0.05
        Half-width(s) for ``init="uniform"`` (one for all layers or one per layer).
    dtype : float32 or float64, default float32
    random_state : int, sequence of int, SeedSequence or None
        Seed of the initialisation: layer i's weights are
        ``(2 u - 1) * a`` with u the float64 uniforms of Philox stream i
        (``dlkernels.rng.uniform(make_key(random_state), n, counter=counter(i))``),
        rounded to ``dtype``.

    Attributes
    ----------
    params : ndarray (n_params,)
        All parameters, layout W_0 (row-major), b_0, W_1, b_1, ...
    weights, biases : list of ndarray
        Views into ``params``.
    sizes, activations, pieces : tuple
    n_params : int

    Raises
    ------
    TypeError, ValueError
        For sizes that are not a sequence of at least two positive ints, an
        unknown activation, a wrong number of activations, a missing or bad
        ``maxout_pieces``, a bad slope, init, range, dtype or seed.
    """

    def __init__(self, sizes, activations, *, maxout_pieces=None, leaky_slope=0.2,
                 init="glorot", init_range=0.05, dtype=np.float32, random_state=None):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes: expected a sequence of integers, got {_describe(sizes)}")
        sizes = tuple(check_int(s, f"sizes[{i}]", min=1) for i, s in enumerate(sizes))
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least 2 widths, got {len(sizes)}")
        nl = len(sizes) - 1
        if isinstance(activations, str):
            activations = (activations,) * nl
        if not hasattr(activations, "__len__"):
            raise TypeError(f"activations: expected a name or a sequence of names, "
                            f"got {_describe(activations)}")
        if len(activations) != nl:
            raise ValueError(f"activations: expected {nl} names (one per layer), "
                             f"got {len(activations)}")
        acts = tuple(check_choice(a, f"activations[{i}]", ACTIVATIONS)
                     for i, a in enumerate(activations))
        if "maxout" in acts:
            if maxout_pieces is None:
                raise ValueError("maxout_pieces: expected an integer >= 1 for the maxout "
                                 "layers, got None")
            pieces_n = check_int(maxout_pieces, "maxout_pieces", min=1)
        elif maxout_pieces is not None:
            pieces_n = check_int(maxout_pieces, "maxout_pieces", min=1)
        else:
            pieces_n = 1
        self.leaky_slope = check_float(leaky_slope, "leaky_slope", min=0.0, max=1.0,
                                       max_inclusive=False)
        check_choice(init, "init", ("glorot", "uniform"))
        if isinstance(init_range, (list, tuple, np.ndarray)):
            if len(init_range) != nl:
                raise ValueError(f"init_range: expected {nl} values (one per layer), "
                                 f"got {len(init_range)}")
            ranges = [check_float(r, f"init_range[{i}]", min=0.0) for i, r in enumerate(init_range)]
        else:
            ranges = [check_float(init_range, "init_range", min=0.0)] * nl
        dt = check_dtype(dtype)
        key = _rng._make_key(random_state, "random_state")

        self.sizes = sizes
        self.activations = acts
        self.pieces = tuple(pieces_n if a == "maxout" else 1 for a in acts)
        self.maxout_pieces = maxout_pieces
        self.init = init
        self.dtype = dt
        self._codes = tuple(_CODE[a] for a in acts)
        self._slope = dt.type(self.leaky_slope)
        self._layout = []
        off = 0
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], self.pieces):
            nw = n_in * n_out * p
            self._layout.append((off, off + nw, off + nw + n_out * p))
            off += nw + n_out * p
        self.n_params = off
        self.params = np.zeros(off, dt)
        self.weights, self.biases = self._views(self.params)
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            a = math.sqrt(6.0 / (n_in + n_out)) if init == "glorot" else ranges[i]
            W = self.weights[i]
            u = _rng.uniform(key, W.size, counter=_rng.counter(i, 0), dtype=np.float64)
            W[...] = ((2.0 * u - 1.0) * a).reshape(W.shape)
        self._tls = threading.local()

    # layout -----------------------------------------------------------------------------------
    def _views(self, flat):
        Ws, bs = [], []
        for (o0, o1, o2), n_in, n_out, p in zip(self._layout, self.sizes[:-1], self.sizes[1:],
                                                self.pieces):
            Ws.append(flat[o0:o1].reshape(n_in, n_out * p))
            bs.append(flat[o1:o2])
        return Ws, bs

    def unflatten(self, flat):
        """(weights, biases): lists of views of a flat buffer of this network's layout."""
        flat = check_array(flat, "flat", ndim=1, dtype=self.dtype, shape=(self.n_params,))
        return self._views(flat)

    def copy(self):
        """An independent network with the same architecture and parameters."""
        new = object.__new__(MLP)
        new.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in ("params", "weights", "biases", "_tls")})
        new.params = self.params.copy()
        new.weights, new.biases = new._views(new.params)
        new._tls = threading.local()
        return new

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("weights", "biases", "_tls")}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.weights, self.biases = self._views(self.params)
        self._tls = threading.local()

    def __repr__(self):
        return (f"MLP(sizes={list(self.sizes)}, activations={list(self.activations)}, "
                f"pieces={list(self.pieces)}, dtype={self.dtype.name})")

    @property
    def n_in(self):
        return self.sizes[0]

    @property
    def n_out(self):
        return self.sizes[-1]

    # passes (no validation) -------------------------------------------------------------------
    def _work(self, B):
        cache = getattr(self._tls, "work", None)
        if cache is None:
            cache = self._tls.work = {}
        w = cache.get(B)
        if w is None:
            w = cache[B] = _Work(self, B)
        return w

    def _fwd(self, eng, x, w, need_d):
        h = x
        for i in range(len(self._codes)):
            eng.layer_forward(h, self.weights[i], self.biases[i], self._codes[i], self._slope,
                              w.PRE[i], w.Y[i], w.D[i], w.idx[i], need_d)
            h = w.Y[i]
        return h

    def _bwd(self, eng, x, w, gy, gW, gb, need_input):
        """Backward from gy = dL/d(output); gradients into the views gW/gb (None: skip)."""
        g = gy
        need_gw = gW is not None
        for i in reversed(range(len(self._codes))):
            X = x if i == 0 else w.Y[i - 1]
            GPRE = w.GPRE[i] if self._codes[i] == _MAXOUT else g
            eng.layer_backward(X, self.weights[i], g, w.D[i], w.idx[i], self._codes[i], GPRE,
                               w.GX[i], gW[i] if need_gw else w.GX[i],
                               gb[i] if need_gw else w.GX[i][0], i > 0 or need_input, need_gw)
            g = w.GX[i]
        return g

    # public -----------------------------------------------------------------------------------
    def _check_input(self, x, name, rows=None):
        x = check_array(x, name, ndim=2, dtype=self.dtype, shape=(rows, self.sizes[0]),
                        finite=True)
        if x.shape[0] < 1:
            raise ValueError(f"{name}: expected at least one row, got shape {x.shape}")
        return x

    def forward(self, x, out=None, *, backend=None):
        """The network's output for a batch.

        Parameters
        ----------
        x : ndarray (batch, sizes[0]) of the network's dtype, finite
        out : ndarray (batch, sizes[-1]), optional
            Buffer to write the output into.
        backend : {"auto", "numba", "cython"}, optional

        Returns
        -------
        ndarray (batch, sizes[-1])

        Raises
        ------
        TypeError, ValueError
            Wrong dtype, shape, non-finite input or a bad ``out``.
        """
        x = self._check_input(x, "x")
        if out is not None:
            check_out(out, "out", (x.shape[0], self.sizes[-1]), self.dtype)
        eng = _engine(backend)
        with blas_single_threaded():
            y = self._fwd(eng, x, self._work(x.shape[0]), False)
        if out is None:
            return y.copy()
        out[...] = y
        return out

    __call__ = forward


def _check_mlp(net, name):
    if not isinstance(net, MLP):
        raise TypeError(f"{name}: expected a dlkernels.gan.MLP, got {_describe(net)}")
    return net


def _check_pair(G, D):
    _check_mlp(G, "G")
    _check_mlp(D, "D")
    if D.dtype != G.dtype:
        raise TypeError(f"D: expected dtype {G.dtype} (the dtype of G), got {D.dtype}")
    if D.sizes[-1] != 1:
        raise ValueError(f"D: expected an output width of 1 (a logit), got {D.sizes[-1]}")
    if D.sizes[0] != G.sizes[-1]:
        raise ValueError(f"D: expected an input width of {G.sizes[-1]} (G's output width), "
                         f"got {D.sizes[0]}")


def _grad_out(net, out, name="out"):
    if out is None:
        return np.empty(net.n_params, net.dtype)
    return check_out(out, name, (net.n_params,), net.dtype)


def _d_grad(eng, G, D, x_real, z, out):
    """The discriminator step (no validation): loss; gradient into ``out``."""
    m = x_real.shape[0]
    gw = G._work(m)
    dw = D._work(2 * m)
    inp = getattr(dw, "inp", None)
    if inp is None:
        inp = dw.inp = np.empty((2 * m, D.sizes[0]), D.dtype)
    inp[:m] = x_real
    inp[m:] = G._fwd(eng, z, gw, False)
    logits = D._fwd(eng, inp, dw, True)
    loss = eng.logit_loss(logits, m, 0, dw.gout)
    gW, gb = D._views(out)
    D._bwd(eng, inp, dw, dw.gout, gW, gb, False)
    return loss, logits


def _g_grad(eng, G, D, z, mode, out):
    """The generator step (no validation): loss; gradient into ``out``."""
    m = z.shape[0]
    gw = G._work(m)
    dw = D._work(m)
    xf = G._fwd(eng, z, gw, True)
    logits = D._fwd(eng, xf, dw, True)
    loss = eng.logit_loss(logits, 0, mode, dw.gout)
    gx = D._bwd(eng, xf, dw, dw.gout, None, None, True)
    gW, gb = G._views(out)
    G._bwd(eng, z, gw, gx, gW, gb, False)
    return loss


def _check_batch(G, D, x_real, z):
    if x_real is not None:
        x_real = check_array(x_real, "x_real", ndim=2, dtype=G.dtype, shape=(None, D.sizes[0]),
                             finite=True)
        if x_real.shape[0] < 1:
            raise ValueError(f"x_real: expected at least one row, got shape {x_real.shape}")
    z = check_array(z, "z", ndim=2, dtype=G.dtype, shape=(None, G.sizes[0]), finite=True)
    if z.shape[0] < 1:
        raise ValueError(f"z: expected at least one row, got shape {z.shape}")
    if x_real is not None and z.shape[0] != x_real.shape[0]:
        raise ValueError(f"z: expected {x_real.shape[0]} rows (as x_real), got {z.shape[0]}")
    return x_real, z


def discriminator_gradients(G, D, x_real, z, *, out=None, backend=None):
    """Loss and gradient of the discriminator on one minibatch.

    D ascends ``(1/m) sum_i [log D(x_i) + log(1 - D(G(z_i)))]``; this returns
    the quantity it minimises, the negative,
    ``(1/m) sum_i [softplus(-l(x_i)) + softplus(l(G(z_i)))]`` with l the
    logit, and its gradient with respect to D's parameters.  Real and fake
    rows go through D as one batch of 2m rows.  G and D are not changed.

    Parameters
    ----------
    G, D : MLP
        Generator and discriminator (same dtype; D's input width = G's
        output width; D's output width 1).
    x_real : ndarray (m, D.sizes[0])
        Real data, finite, of the networks' dtype.
    z : ndarray (m, G.sizes[0])
        Noise, finite.
    out : ndarray (D.n_params,), optional
        Buffer for the gradient.
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    loss : float
    grad : ndarray (D.n_params,)
        In the layout of ``D.params``.

    Raises
    ------
    TypeError, ValueError
        Networks that do not fit together, inputs of the wrong shape, dtype or
        with NaN/inf, a bad ``out``.
    """
    _check_pair(G, D)
    x_real, z = _check_batch(G, D, x_real, z)
    out = _grad_out(D, out)
    eng = _engine(backend)
    with blas_single_threaded():
        loss, _ = _d_grad(eng, G, D, x_real, z, out)
    return float(loss), out


def generator_gradients(G, D, z, *, loss="minimax", out=None, backend=None):
    """Loss and gradient of the generator on one minibatch of noise.

    ``loss="minimax"`` descends ``(1/m) sum_i log(1 - D(G(z_i)))``
    ``= -(1/m) sum_i softplus(l_i)`` (the form of the source notes; this value
    is returned); ``"non_saturating"`` ascends ``(1/m) sum_i log D(G(z_i))``
    and returns the minimised ``(1/m) sum_i softplus(-l_i)``.  Backprop runs
    through D into G; D's parameters are not changed.

    Parameters
    ----------
    G, D : MLP
    z : ndarray (m, G.sizes[0])
        Noise, finite, of the networks' dtype.
    loss : {"minimax", "non_saturating"}
    out : ndarray (G.n_params,), optional
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    loss : float
    grad : ndarray (G.n_params,)

    Raises
    ------
    TypeError, ValueError
        As ``discriminator_gradients``; an unknown ``loss``.
    """
    _check_pair(G, D)
    mode = 1 if check_choice(loss, "loss", ("minimax", "non_saturating")) == "minimax" else 2
    _, z = _check_batch(G, D, None, z)
    out = _grad_out(G, out)
    eng = _engine(backend)
    with blas_single_threaded():
        val = _g_grad(eng, G, D, z, mode, out)
    return float(val), out


# ---- one layer -----------------------------------------------------------------------------
def _check_layer(x, W, b, activation, pieces, slope):
    code = _CODE[check_choice(activation, "activation", ACTIVATIONS)]
    p = check_int(pieces, "pieces", min=1)
    if code != _MAXOUT and p != 1:
        raise ValueError(f"pieces: expected 1 for activation {activation!r}, got {p}")
    slope = check_float(slope, "slope", min=0.0, max=1.0, max_inclusive=False)
    x = check_array(x, "x", ndim=2, finite=True)
    dt = x.dtype
    W = check_array(W, "W", ndim=2, dtype=dt, shape=(x.shape[1], None), finite=True)
    if W.shape[1] < 1 or W.shape[1] % p:
        raise ValueError(f"W: expected a positive number of columns divisible by pieces={p}, "
                         f"got shape {W.shape}")
    if b is not None:
        b = check_array(b, "b", ndim=1, dtype=dt, shape=(W.shape[1],), finite=True)
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x: expected a non-empty 2-d array, got shape {x.shape}")
    return x, W, b, code, p, dt.type(slope)


def dense_forward(x, W, b, activation, *, pieces=1, slope=0.2, backend=None):
    """One fused layer: ``y = act(x @ W + b)`` and what its backward pass needs.

    Parameters
    ----------
    x : ndarray (B, K), float32 or float64, finite
    W : ndarray (K, n * pieces), same dtype
    b : ndarray (n * pieces,), same dtype
    activation : str
        One of ``ACTIVATIONS``.
    pieces : int, default 1
        Maxout pieces (1 for the other activations).
    slope : float, default 0.2
        Leaky-ReLU slope, in [0, 1).
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    y : ndarray (B, n)
    cache : ndarray (B, n)
        The derivative act'(pre-activation) (float), or for maxout the arg-max
        piece (int32); pass it to ``dense_backward``.

    Raises
    ------
    TypeError, ValueError
        Unknown activation, mismatched shapes or dtypes, non-finite values.
    """
    x, W, b, code, p, sl = _check_layer(x, W, b, activation, pieces, slope)
    B, n, dt = x.shape[0], W.shape[1] // p, x.dtype
    y = np.empty((B, n), dt)
    if code == _MAXOUT:
        pre, d, idx = np.empty((B, n * p), dt), np.empty((0, 0), dt), np.empty((B, n), np.int32)
    else:
        pre, d, idx = np.empty((0, 0), dt), np.empty((B, n), dt), np.empty((0, 0), np.int32)
    eng = _engine(backend)
    with blas_single_threaded():
        eng.layer_forward(x, W, b, code, sl, pre, y, d, idx, True)
    return y, (idx if code == _MAXOUT else d)


def dense_backward(x, W, gy, cache, activation, *, pieces=1, backend=None):
    """Gradients of one layer from ``gy = dL/dy``.

    Parameters
    ----------
    x, W : as given to ``dense_forward``
    gy : ndarray (B, n), finite
    cache : ndarray (B, n)
        The second result of ``dense_forward``.
    activation : str
    pieces : int, default 1
    backend : {"auto", "numba", "cython"}, optional

    Returns
    -------
    gx : ndarray (B, K)
    gW : ndarray (K, n * pieces)
    gb : ndarray (n * pieces,)

    Raises
    ------
    TypeError, ValueError
        Mismatched shapes or dtypes, a cache that is not from this layer.
    """
    x, W, _, code, p, _ = _check_layer(x, W, None, activation, pieces, 0.2)
    B, K, n, dt = x.shape[0], x.shape[1], W.shape[1] // p, x.dtype
    gy = check_array(gy, "gy", ndim=2, dtype=dt, shape=(B, n), finite=True, copy=True)
    if code == _MAXOUT:
        if not isinstance(cache, np.ndarray) or cache.dtype != np.int32:
            raise TypeError(f"cache: expected the int32 arg-max of dense_forward, "
                            f"got {_describe(cache)}")
        if cache.shape != (B, n):
            raise ValueError(f"cache: expected shape {(B, n)}, got {cache.shape}")
        if cache.size and (cache.min() < 0 or cache.max() >= p):
            raise ValueError(f"cache: expected arg-max values in [0, {p}), got "
                             f"[{cache.min()}, {cache.max()}]")
        idx, d = np.ascontiguousarray(cache), np.empty((0, 0), dt)
        gpre = np.empty((B, n * p), dt)
    else:
        d = check_array(cache, "cache", ndim=2, dtype=dt, shape=(B, n), finite=True)
        idx, gpre = np.empty((0, 0), np.int32), gy
    gx, gW, gb = np.empty((B, K), dt), np.empty(W.shape, dt), np.empty(W.shape[1], dt)
    eng = _engine(backend)
    with blas_single_threaded():
        eng.layer_backward(x, W, gy, d, idx, code, gpre, gx, gW, gb, True, True)
    return gx, gW, gb


# ---- evaluation ----------------------------------------------------------------------------
def ring_modes(n_modes=8, radius=2.0):
    """Centres of the ring mixture: ``radius * (cos 2 pi k / n, sin 2 pi k / n)``.

    Parameters
    ----------
    n_modes : int >= 1, default 8
    radius : float > 0, default 2.0

    Returns
    -------
    ndarray (n_modes, 2), float64

    Raises
    ------
    TypeError, ValueError
        For a bad count or radius.
    """
    n_modes = check_int(n_modes, "n_modes", min=1)
    check_alloc(3 * n_modes, 8, "n_modes")
    radius = check_float(radius, "radius", min=0.0, min_inclusive=False)
    t = 2.0 * np.pi * np.arange(n_modes) / n_modes
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def grid_modes(n_side=5, spacing=2.0):
    """Centres of the grid mixture: ``spacing * (i - (n_side-1)/2, j - (n_side-1)/2)``.

    Parameters
    ----------
    n_side : int >= 1, default 5
        Modes per side (25 modes by default, at -4, -2, 0, 2, 4 on each axis).
    spacing : float > 0, default 2.0

    Returns
    -------
    ndarray (n_side**2, 2), float64

    Raises
    ------
    TypeError, ValueError
        For a bad count or spacing.
    """
    n_side = check_int(n_side, "n_side", min=1)
    check_alloc(3 * n_side * n_side, 8, "n_side")
    spacing = check_float(spacing, "spacing", min=0.0, min_inclusive=False)
    c = spacing * (np.arange(n_side) - (n_side - 1) / 2.0)
    gx, gy = np.meshgrid(c, c, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _sample_mixture(modes, n, std, random_state, dtype):
    n = check_int(n, "n", min=0)
    check_alloc(3 * n, 8, "n")
    std = check_float(std, "std", min=0.0)
    dt = check_dtype(dtype)
    g = _rng.numpy_generator(_rng._make_key(random_state, "random_state"))
    k = g.integers(0, len(modes), size=n)
    return (modes[k] + std * g.standard_normal((n, 2))).astype(dt)


def sample_ring(n, *, n_modes=8, radius=2.0, std=0.02, random_state=None, dtype=np.float32):
    """``n`` points of the ring of Gaussians (modes equally likely), (n, 2).

    Parameters
    ----------
    n : int >= 0
    n_modes : int, default 8
    radius : float, default 2.0
    std : float, default 0.02
    random_state : seed for a Philox generator (``dlkernels.rng.numpy_generator``)
    dtype : float32 or float64

    Returns
    -------
    ndarray (n, 2)

    Raises
    ------
    TypeError, ValueError
        For bad sizes, a negative std, a bad seed or dtype.
    """
    return _sample_mixture(ring_modes(n_modes, radius), n, std, random_state, dtype)


def sample_grid(n, *, n_side=5, spacing=2.0, std=0.05, random_state=None, dtype=np.float32):
    """``n`` points of the n_side x n_side grid of Gaussians (25 modes by default).

    Parameters
    ----------
    n : int >= 0
    n_side : int, default 5
    spacing : float, default 2.0
    std : float, default 0.05
    random_state : seed for a Philox generator (``dlkernels.rng.numpy_generator``)
    dtype : float32 or float64

    Returns
    -------
    ndarray (n, 2)

    Raises
    ------
    TypeError, ValueError
        For bad sizes, a negative std, a bad seed or dtype.
    """
    return _sample_mixture(grid_modes(n_side, spacing), n, std, random_state, dtype)


def mode_metrics(samples, modes, std, *, min_count=None):
    """Quality of samples from a mixture of Gaussians with known centres.

    A sample is of *high quality* when it lies within ``3 * std`` of its
    nearest mode.  A mode is *captured* when at least ``min_count`` high-quality
    samples are nearest to it.  The *reverse KL* is
    ``KL(q || p) = sum_k q_k log(q_k / p_k)`` between the histogram q of the
    high-quality samples over the modes and the uniform mixture weights p
    (0 when the samples cover the modes evenly; ``inf`` when no sample is of
    high quality).

    Parameters
    ----------
    samples : ndarray (n, d), finite
    modes : ndarray (k, d)
    std : float > 0
    min_count : int, optional
        Default: 1% of the samples, at least 1.

    Returns
    -------
    dict with ``high_quality`` (share, float), ``modes_captured`` (int),
    ``reverse_kl`` (float) and ``counts`` (int array (k,)).

    Raises
    ------
    TypeError, ValueError
        Bad shapes, non-finite samples, std <= 0.
    """
    samples = check_array(samples, "samples", ndim=2, finite=True)
    modes = check_array(modes, "modes", ndim=2, shape=(None, samples.shape[1]), finite=True,
                        allow_empty=False)
    std = check_float(std, "std", min=0.0, min_inclusive=False)
    n = samples.shape[0]
    if min_count is None:
        min_count = max(1, int(math.ceil(0.01 * n)))
    else:
        min_count = check_int(min_count, "min_count", min=1)
    s = samples.astype(np.float64)
    c = modes.astype(np.float64)
    d2 = (s * s).sum(1)[:, None] - 2.0 * s @ c.T + (c * c).sum(1)[None, :]
    near = d2.argmin(axis=1) if n else np.zeros(0, np.int64)
    dist = np.sqrt(np.maximum(d2[np.arange(n), near], 0.0)) if n else np.zeros(0)
    hq = dist <= 3.0 * std
    counts = np.bincount(near[hq], minlength=len(c))
    total = counts.sum()
    if total:
        q = counts / total
        nz = q > 0
        rkl = float(np.sum(q[nz] * np.log(q[nz] * len(c))))
    else:
        rkl = float("inf")
    return {"high_quality": float(hq.mean()) if n else 0.0,
            "modes_captured": int((counts >= min_count).sum()),
            "reverse_kl": rkl, "counts": counts}


def _parzen_logp(samples, x, sigma, chunk):
    """log p(x_j) under the Gaussian Parzen window on ``samples`` (float64), in chunks."""
    N, d = samples.shape
    out = np.empty(x.shape[0])
    s2 = (samples * samples).sum(1)
    const = -math.log(N) - 0.5 * d * math.log(2.0 * math.pi * sigma * sigma)
    for j0 in range(0, x.shape[0], chunk):
        xb = x[j0:j0 + chunk]
        d2 = (xb * xb).sum(1)[:, None] - 2.0 * (xb @ samples.T) + s2[None, :]
        e = -np.maximum(d2, 0.0) / (2.0 * sigma * sigma)
        mx = e.max(axis=1, keepdims=True)
        out[j0:j0 + chunk] = mx[:, 0] + np.log(np.exp(e - mx).sum(axis=1)) + const
    return out


def parzen_log_likelihood(samples, test, *, sigma=None, validation=None, sigmas=None,
                          chunk_size=None):
    """Parzen-window (Gaussian kernel) log-likelihood of ``test`` under ``samples``.

    The estimator of the original GAN paper's evaluation:
    ``log p(x) = logsumexp_i(-|x - s_i|^2 / (2 sigma^2)) - log N - d/2 log(2 pi sigma^2)``.
    ``sigma`` is either given or chosen on ``validation`` as the value of
    ``sigmas`` (default ``logspace(-1, 0, 10)``) with the highest mean
    validation log-likelihood.  Computed in chunks of test rows: memory is
    O(chunk_size * N), never an N x M x d tensor.

    Parameters
    ----------
    samples : ndarray (N, d), finite
        Generated samples (the kernel centres).
    test : ndarray (M, d), finite
    sigma : float > 0, optional
    validation : ndarray (V, d), optional
        Required when ``sigma`` is None.
    sigmas : sequence of float > 0, optional
    chunk_size : int, optional
        Test rows per chunk (default: about 2**22 / N elements per chunk).

    Returns
    -------
    mean : float
        Mean log-likelihood over ``test``.
    std_error : float
        Its standard error, ``std(log p) / sqrt(M)``.
    sigma : float
        The bandwidth used.

    Raises
    ------
    TypeError, ValueError
        Bad shapes, non-finite values, neither ``sigma`` nor ``validation``,
        a non-positive bandwidth.
    """
    samples = check_array(samples, "samples", ndim=2, finite=True, allow_empty=False)
    d = samples.shape[1]
    test = check_array(test, "test", ndim=2, shape=(None, d), finite=True, allow_empty=False)
    S = samples.astype(np.float64)
    if chunk_size is None:
        chunk = max(1, (1 << 22) // S.shape[0])
    else:
        chunk = check_int(chunk_size, "chunk_size", min=1)
    if sigma is None:
        if validation is None:
            raise ValueError("validation: expected an array to choose sigma on when sigma is "
                             "None, got None")
        V = check_array(validation, "validation", ndim=2, shape=(None, d), finite=True,
                        allow_empty=False).astype(np.float64)
        if sigmas is None:
            grid = np.logspace(-1, 0, 10)
        else:
            grid = [check_float(s, "sigmas", min=0.0, min_inclusive=False)
                    for s in np.atleast_1d(np.asarray(sigmas, dtype=object))]
            if not grid:
                raise ValueError("sigmas: expected at least one bandwidth, got none")
        scores = [_parzen_logp(S, V, float(s), chunk).mean() for s in grid]
        sigma = float(grid[int(np.argmax(scores))])
    else:
        sigma = check_float(sigma, "sigma", min=0.0, min_inclusive=False)
    lp = _parzen_logp(S, test.astype(np.float64), sigma, chunk)
    se = float(lp.std() / math.sqrt(len(lp)))
    return float(lp.mean()), se, sigma
