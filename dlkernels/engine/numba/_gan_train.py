"""Whole GAN training steps in one compiled call (Numba backend; re-exported by ``gan``).

``train_steps`` runs ``n_steps`` steps of Algorithm 1 of Goodfellow et al.
(2014) -- k discriminator updates, then one generator update -- with no
Python in between: minibatch gathering, the noise (Philox uniforms drawn in
the kernel, or given), both networks' forward and backward passes (the
``layer_forward`` / ``layer_backward`` / ``logit_loss`` kernels of this
module), the optimizer updates (SGD with momentum or Adam, per-update scalars
precomputed by the caller) and the history.  It does, step for step, the
same IEEE operations in the same order as the Python loop of
``dlkernels.bindings.gan_train`` (``GANTrainer._run_python``), so the two give
bit-identical parameters; the Cython twin does the same.

Arguments (all arrays C-contiguous; F = the networks' float dtype):

* ``X`` (n, nx) F: the data; ``perms`` (npass, n) int64: the row permutations of
  the passes ``pass0 .. pass0 + npass - 1`` the steps touch; ``bpe`` minibatches
  per pass.  Minibatch b = step * k + j is rows ``perm[(b % bpe) * m :][:m]`` of
  pass ``b // bpe``.
* ``k``, ``step0`` (the first step's global index), ``n_steps``.
* ``key`` (2,) uint64 and ``noise`` (rows, nz) F: with 0 rows the noise of step
  s, update j (j = k: the generator's) is the uniforms of the Philox stream
  (key, counter (0, 0, 1 + s (k + 1) + j, 0)) times ``zmul`` minus ``zsub``
  (F scalars); otherwise ``noise`` holds it, m rows per (step, j), steps of the
  call in order.
* ``simultaneous`` (bool), ``g_mode`` (``logit_loss`` mode 1 or 2), ``adam`` (bool).
* ``sched_d`` (n_steps * k, 2) and ``sched_g`` (n_steps, 2) float64, one row per
  update: SGD (momentum, learning rate); Adam (lr_t, eps_t) with the bias
  corrections folded in.  ``adam_c`` (4,) F: beta1, 1 - beta1, beta2, 1 - beta2.
* Per network (prefix ``g_`` for G, ``d_`` for D): ``params``, ``grad`` and the
  optimizer state ``st0``, ``st1`` (n_params,) F (SGD uses ``st0`` only);
  ``snap`` (2 or, for Adam, 3, n_params) F, where the network's first update of
  the call saves params, st0 (and st1) before changing them; ``lay`` (L, LAY_COLS) int64, the
  layer table (columns ``L_*``: widths, pieces, activation code, offsets of W and
  b in ``params``, offsets of the workspace buffers Y, D, PRE, GPRE, GX in
  ``ws`` and of idx in ``wsi``; -1 when a layer has no such buffer), sized for
  m rows (G) or 2 m rows (D); ``ws`` F and ``wsi`` int32 workspaces; ``slope``
  (F) of leaky_relu.
* ``z`` (m, nz) F, ``inp`` (2 m, nx) F, ``gl`` (2 m, 1) F: scratch.
* ``hist`` (n_steps, 4) float64: per step d_loss, g_loss, D's accuracy on the
  real and on the fake rows of its last minibatch.

Returns ``(status, i, value, saved)``: status 0 when all steps ran; else the
step ``step0 + i`` failed (1: a non-finite discriminator loss ``value``, 2: a
non-finite generator loss, 3: a non-finite parameter after the updates) and
the networks and optimizer state are those of the middle of that step; bit 0
(D) and bit 1 (G) of ``saved`` tell which networks were updated in the call,
so that their ``snap`` holds their state at its start (the caller restores it
and replays the i good steps).

The optimizer updates are element-wise passes in blocks of UPD_BLOCK
parameters, in parallel (prange) from PAR_MIN_UPDATE parameters on: the
split never changes a bit.  The layers' large GEMMs run in parallel tiles
(``gemm_tiled``); the rest runs on the calling thread.
"""
import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._blas import copy_rows
from ._flags import CALLS_PARALLEL
from ._fastmath import all_finite
from ._gan_layers import _like, layer_backward, layer_forward, logit_loss
from .rng import fill_f32_from, fill_f64_from

__all__ = ["UPD_BLOCK", "PAR_MIN_UPDATE", "LAY_COLS", "L_N_IN", "L_N_OUT", "L_P", "L_CODE", "L_W", "L_B", "L_Y", "L_D",
           "L_PRE", "L_GPRE", "L_GX", "L_IDX", "train_steps"]

# columns of the layer table
L_N_IN, L_N_OUT, L_P, L_CODE, L_W, L_B, L_Y, L_D, L_PRE, L_GPRE, L_GX, L_IDX = range(12)
LAY_COLS = 12
_MAXOUT = 5
# optimizer updates: blocks of UPD_BLOCK parameters, in parallel from PAR_MIN_UPDATE on
# (a parallel launch costs a few microseconds; 2**17 float32 updates take ~100)
UPD_BLOCK = 4096
PAR_MIN_UPDATE = 1 << 17


def _fill(out, n, key, stream):
    """out[:n] = the uniforms of the Philox stream (key, counter (0, 0, stream, 0))."""
    raise NotImplementedError


@overload(_fill)
def _ov_fill(out, n, key, stream):
    z = np.uint64(0)
    if out.dtype == types.float32:
        return lambda out, n, key, stream: fill_f32_from(out, n, key[0], key[1], z, z,
                                                         np.uint64(stream), z, z)
    return lambda out, n, key, stream: fill_f64_from(out, n, key[0], key[1], z, z,
                                                     np.uint64(stream), z, z)


@njit(cache=True, error_model="numpy")
def _view(buf, off, rows, cols):
    if off < 0:
        return buf[:0].reshape((0, 0))
    return buf[off:off + rows * cols].reshape((rows, cols))

@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _forward(x, rows, params, lay, ws, wsi, slope, need_d):
    h = x
    for i in range(lay.shape[0]):
        n_in = lay[i, L_N_IN]
        n_out = lay[i, L_N_OUT]
        N = n_out * lay[i, L_P]
        W = _view(params, lay[i, L_W], n_in, N)
        b = params[lay[i, L_B]:lay[i, L_B] + N]
        Y = _view(ws, lay[i, L_Y], rows, n_out)
        layer_forward(h, W, b, lay[i, L_CODE], slope, _view(ws, lay[i, L_PRE], rows, N), Y,
                      _view(ws, lay[i, L_D], rows, n_out),
                      _view(wsi, lay[i, L_IDX], rows, n_out), need_d)
        h = Y
    return h

@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _backward(x, rows, params, lay, ws, wsi, gy, grad, need_gw, need_input):
    g = gy
    for i in range(lay.shape[0] - 1, -1, -1):
        n_in = lay[i, L_N_IN]
        n_out = lay[i, L_N_OUT]
        N = n_out * lay[i, L_P]
        if i == 0:
            X = x
        else:
            X = _view(ws, lay[i - 1, L_Y], rows, lay[i - 1, L_N_OUT])
        W = _view(params, lay[i, L_W], n_in, N)
        GX = _view(ws, lay[i, L_GX], rows, n_in)
        if lay[i, L_CODE] == _MAXOUT:
            GPRE = _view(ws, lay[i, L_GPRE], rows, N)
        else:
            GPRE = g
        if need_gw:
            GW = _view(grad, lay[i, L_W], n_in, N)
            gb = grad[lay[i, L_B]:lay[i, L_B] + N]
        else:
            GW = GX
            gb = grad[:0]
        layer_backward(X, W, g, _view(ws, lay[i, L_D], rows, n_out),
                       _view(wsi, lay[i, L_IDX], rows, n_out), lay[i, L_CODE], GPRE, GX,
                       GW, gb, i > 0 or need_input, need_gw)
        g = GX
    return g

@njit(cache=True, error_model="numpy")
def _update_block(adam, lo, hi, p, g, a, v, c, s0, s1, snap, save):
    """The update of elements lo .. hi - 1 (first saving p, a and, for Adam, v into
    snap's rows when ``save``); returns 1 if a new parameter is not finite, else 0.  SGD (s0, s1 = momentum, rate): a = mu a - lr g; p += a.  Adam (s0, s1 =
    lr_t, eps_t; c = beta1, 1 - beta1, beta2, 1 - beta2): a = b1 a + (1 - b1) g;
    v = b2 v + (1 - b2) g^2; p -= lr_t a / (sqrt(v) + eps_t).  Each the element-wise
    steps, in order, of the NumPy in-place reference (GANTrainer._update)."""
    # views indexed from 0: no negative-index fix-up in the loops, which then vectorize
    n = hi - lo
    pb = p[lo:hi]
    gb = g[lo:hi]
    ab = a[lo:hi]
    if save:
        s0b = snap[0, lo:hi]
        s1b = snap[1, lo:hi]
        for i in range(n):
            s0b[i] = pb[i]
            s1b[i] = ab[i]
    if adam:
        vb = v[lo:hi]
        if save:
            s2b = snap[2, lo:hi]
            for i in range(n):
                s2b[i] = vb[i]
        lr_ = _like(p[0], s0)
        eps_ = _like(p[0], s1)
        for i in range(n):
            gi = gb[i]
            ai = ab[i] * c[0] + c[1] * gi
            ab[i] = ai
            vi = vb[i] * c[2] + (gi * gi) * c[3]
            vb[i] = vi
            pb[i] = pb[i] - ai / (np.sqrt(vi) + eps_) * lr_
    else:
        mu_ = _like(p[0], s0)
        lr_ = _like(p[0], s1)
        for i in range(n):
            ai = ab[i] * mu_ - gb[i] * lr_
            ab[i] = ai
            pb[i] = pb[i] + ai
    # a separate pass over the (cached) block: an integer reduction, so both loops vectorize
    return 0 if all_finite(p, lo, hi - lo) else 1


@njit(cache=True, error_model="numpy", parallel=True)
def _update_par(adam, p, g, a, v, c, s0, s1, snap, save):
    n = p.shape[0]
    bad = 0
    for blk in prange((n + UPD_BLOCK - 1) // UPD_BLOCK):
        lo = blk * UPD_BLOCK
        bad += _update_block(adam, lo, min(lo + UPD_BLOCK, n), p, g, a, v, c, s0, s1, snap,
                             save)
    return bad


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def _update(adam, p, g, a, v, c, s0, s1, snap, save):
    """One optimizer update of a network (``_update_block`` on all of it), in
    parallel blocks from PAR_MIN_UPDATE parameters on: element-wise, so the bits
    do not depend on the split; returns the number of blocks with a non-finite
    parameter."""
    n = p.shape[0]
    if n >= PAR_MIN_UPDATE:
        return _update_par(adam, p, g, a, v, c, s0, s1, snap, save)
    return _update_block(adam, n - n, n, p, g, a, v, c, s0, s1, snap, save)


@njit(cache=True, error_model="numpy")
def _draw(z, key, stream, zmul, zsub):
    n = z.size
    flat = z.reshape(n)
    _fill(flat, n, key, stream)
    for i in range(n):
        flat[i] = flat[i] * zmul - zsub


@njit(cache=True, error_model="numpy")
def _noise(z, given, noise, batch, key, stream, zmul, zsub):
    """z (m rows) = the noise of minibatch ``batch`` of the call: rows
    batch*m.. of the given noise, else drawn from ``stream``."""
    if given:
        m = z.shape[0]
        copy_rows(z, 0, noise, batch * m, m)   # z[:, :] = noise[batch*m:...], without its error path
    else:
        _draw(z, key, stream, zmul, zsub)


@njit(cache=True, error_model="numpy", parallel=CALLS_PARALLEL)
def train_steps(X, perms, pass0, bpe, k, step0, n_steps, key, noise, zmul, zsub,
                simultaneous, g_mode, adam, sched_d, sched_g, adam_c,
                g_params, g_grad, g_st0, g_st1, g_snap, g_lay, g_ws, g_wsi, g_slope,
                d_params, d_grad, d_st0, d_st1, d_snap, d_lay, d_ws, d_wsi, d_slope,
                z, inp, gl, hist):
    """Steps step0 .. step0 + n_steps - 1 of the training (module docstring)."""
    m = z.shape[0]
    nx = X.shape[1]
    given = noise.shape[0] > 0
    # run-time True / False / 0: a literal argument would make Numba compile each
    # callee (and the layer kernels) a second time, for the literal's type
    yes = m > 0
    no = not yes
    zero = m - m
    d_saved = no
    g_saved = no
    for i in range(n_steps):
        s = step0 + i
        base = 1 + s * (k + 1)
        d_loss = 0.0
        logits = inp
        bad = zero
        for j in range(k):
            b = s * k + j
            perm = perms[b // bpe - pass0]
            pos = (b % bpe) * m
            for r in range(m):
                src = X[perm[pos + r]]
                dst = inp[r]
                for c in range(nx):
                    dst[c] = src[c]
            _noise(z, given, noise, i * (k + 1) + j, key, base + j, zmul, zsub)
            # discriminator gradient on m real + m fake rows
            xf = _forward(z, m, g_params, g_lay, g_ws, g_wsi, g_slope, no)
            copy_rows(inp, m, xf, 0, xf.shape[0])   # inp[m:] = xf
            logits = _forward(inp, 2 * m, d_params, d_lay, d_ws, d_wsi, d_slope, yes)
            d_loss = logit_loss(logits, m, zero, gl)
            _backward(inp, 2 * m, d_params, d_lay, d_ws, d_wsi, gl, d_grad, yes, no)
            if not np.isfinite(d_loss):
                return 1, i, d_loss, d_saved + 2 * g_saved
            if j < k - 1 or not simultaneous:
                u = i * k + j
                bad += _update(adam, d_params, d_grad, d_st0, d_st1, adam_c, sched_d[u, 0],
                               sched_d[u, 1], d_snap, not d_saved)
                d_saved = yes
        n_real = 0
        n_fake = 0
        for r in range(m):
            if logits[r, 0] > 0:
                n_real += 1
            if logits[m + r, 0] < 0:
                n_fake += 1
        acc_r = n_real / m
        acc_f = n_fake / m
        # generator gradient (through D into G)
        if not simultaneous:
            _noise(z, given, noise, i * (k + 1) + k, key, base + k, zmul, zsub)
        xf = _forward(z, m, g_params, g_lay, g_ws, g_wsi, g_slope, yes)
        lg = _forward(xf, m, d_params, d_lay, d_ws, d_wsi, d_slope, yes)
        glm = gl[:m]
        g_loss = logit_loss(lg, zero, g_mode, glm)
        gx = _backward(xf, m, d_params, d_lay, d_ws, d_wsi, glm, d_grad, no, yes)
        _backward(z, m, g_params, g_lay, g_ws, g_wsi, gx, g_grad, yes, no)
        if simultaneous and np.isfinite(g_loss):
            u = i * k + k - 1
            bad += _update(adam, d_params, d_grad, d_st0, d_st1, adam_c, sched_d[u, 0],
                           sched_d[u, 1], d_snap, not d_saved)
            d_saved = yes
        if not np.isfinite(g_loss):
            return 2, i, g_loss, d_saved + 2 * g_saved
        bad += _update(adam, g_params, g_grad, g_st0, g_st1, adam_c, sched_g[i, 0],
                       sched_g[i, 1], g_snap, not g_saved)
        g_saved = yes
        hist[i, 0] = d_loss
        hist[i, 1] = g_loss
        hist[i, 2] = acc_r
        hist[i, 3] = acc_f
        if bad != 0:
            return 3, i, np.nan, d_saved + 2 * g_saved
    return 0, n_steps, 0.0, d_saved + 2 * g_saved

