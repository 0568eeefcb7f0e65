"""PyTorch adapters: dlkernels' attention kernels as ``torch.autograd.Function``s.

``import dlkernels.interop.torch`` needs PyTorch (the optional ``torch``
extra); nothing else in dlkernels imports it.  The functions take and return
CPU tensors of dtype float32 or float64; a contiguous tensor is handed to the
kernels without a copy (``Tensor.numpy()`` shares its memory), and the results
come back as tensors sharing the kernels' output arrays.  They differentiate
through dlkernels' own backward kernels, so a model can swap them in for
``torch.nn.functional.scaled_dot_product_attention`` (same argument order and
meaning; see ``dlkernels.attention.scaled_dot_product_attention`` for the
documented differences: a fully masked row gives zeros, dropout draws come
from dlkernels' Philox streams, inputs must be finite)::

    from dlkernels.interop.torch import scaled_dot_product_attention
    out = scaled_dot_product_attention(q, k, v, is_causal=True)
    out.sum().backward()

Gradients flow to query, key and value (and to ``attend``'s score
parameters), not to masks.  Double backward is not supported.
"""
import torch

from ..bindings import attention as _attn
from ..bindings import sdpa as _sdpa
from ..rng import Streams, as_streams

__all__ = ["scaled_dot_product_attention", "attend"]

_DTYPES = (torch.float32, torch.float64)


def _np(t, name, *, mask=False):
    """The NumPy view (or copy for a non-contiguous tensor) of a CPU tensor."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        return t  # arrays, lists: the bindings validate them
    if t.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got a tensor on {t.device}")
    if not mask and t.dtype not in _DTYPES:
        raise TypeError(f"{name}: expected a tensor of dtype float32 or float64, got {t.dtype}")
    if mask and t.dtype not in _DTYPES + (torch.bool,):
        raise TypeError(f"{name}: expected a bool tensor or a float32/float64 tensor, got {t.dtype}")
    return t.detach().contiguous().numpy()


def _t(a):
    return torch.from_numpy(a)


class _SDPA(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                rng_state, backend):
        q, k, v = _np(query, "query"), _np(key, "key"), _np(value, "value")
        m = _np(attn_mask, "attn_mask", mask=True)
        st = None
        if rng_state is not None:
            st = Streams()
            st.set_state(rng_state)
        out, lse = _sdpa.scaled_dot_product_attention(
            q, k, v, m, dropout_p, is_causal, scale, enable_gqa, return_lse=True,
            random_state=st, backend=backend)
        ctx.opts = (m, dropout_p, is_causal, scale, enable_gqa, rng_state, backend)
        ctx.arrays = (q, k, v, out, lse)
        return _t(out)

    @staticmethod
    def backward(ctx, grad_out):
        m, dropout_p, is_causal, scale, enable_gqa, rng_state, backend = ctx.opts
        q, k, v, out, lse = ctx.arrays
        st = None
        if rng_state is not None:
            st = Streams()
            st.set_state(rng_state)  # the state before the forward: the same draws
        dq, dk, dv = _sdpa.scaled_dot_product_attention_backward(
            _np(grad_out, "grad_out"), q, k, v, out, lse, m, dropout_p, is_causal, scale,
            enable_gqa, random_state=st, backend=backend)
        need = ctx.needs_input_grad
        return (_t(dq) if need[0] else None, _t(dk) if need[1] else None,
                _t(dv) if need[2] else None, None, None, None, None, None, None, None)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None, enable_gqa=False, *, random_state=None, backend=None):
    """``torch.nn.functional.scaled_dot_product_attention`` computed by dlkernels.

    Parameters
    ----------
    query, key, value : torch.Tensor
        CPU tensors, float32 or float64, shaped (..., L, E), (..., S, E),
        (..., S, Ev) (leading dimensions broadcast).
    attn_mask : torch.Tensor, optional
        bool (True = takes part) or float (added to the scores), broadcastable
        to (..., L, S).
    dropout_p, is_causal, scale, enable_gqa
        As in PyTorch (``is_causal`` top-left aligned).
    random_state : None, int, dlkernels.rng.Streams or numpy Generator
        Dropout draws (only with ``dropout_p > 0``); the backward replays the
        forward's draws.
    backend : {"auto", "numba", "cython"} or None

    Returns
    -------
    torch.Tensor
        (..., L, Ev), differentiable with respect to query, key and value.

    Raises
    ------
    TypeError
        A tensor of another dtype (float16, bfloat16, integer; masks may be
        bool), or any error of ``dlkernels.attention.scaled_dot_product_attention``.
    ValueError
        A tensor not on the CPU, or any error of the NumPy function.
    """
    rng_state = None
    try:
        p = float(dropout_p)
    except (TypeError, ValueError):
        p = 0.0  # the NumPy function reports the bad value
    if p > 0 and not isinstance(dropout_p, bool):
        rng_state = as_streams(random_state).get_state()
        if isinstance(random_state, Streams):
            random_state.next_counter()  # the call consumes one epoch, as the NumPy API
    elif random_state is not None:
        as_streams(random_state)
    return _SDPA.apply(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                       rng_state, backend)


class _Attend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, opts, names, q, k, v, *params):
        score, lengths, mask, causal, backend = opts
        qn, kn, vn = _np(q, "q"), _np(k, "k"), _np(v, "v")
        P = {n: _np(p, f"params[{n!r}]") for n, p in zip(names, params)} if names else None
        ctxa = _attn.attend(qn, kn, vn, score=score, params=P, lengths=lengths, mask=mask,
                            causal=causal, backend=backend)
        ctx.saved = (opts, names, qn, kn, vn, P)
        return _t(ctxa)

    @staticmethod
    def backward(ctx, grad_context):
        (score, lengths, mask, causal, backend), names, qn, kn, vn, P = ctx.saved
        g = _attn.attend_backward(_np(grad_context, "grad_context"), qn, kn, vn, score=score,
                                  params=P, lengths=lengths, mask=mask, causal=causal,
                                  backend=backend)
        need = ctx.needs_input_grad
        grads = [g["q"], g["k"], g["v"]] + [g["params"][n] for n in names]
        return (None, None) + tuple(_t(x) if need[2 + i] else None for i, x in enumerate(grads))


def attend(q, k, v, *, score="dot", params=None, lengths=None, mask=None, causal=False,
           backend=None):
    """``dlkernels.attention.attend`` on tensors, differentiable (context only).

    Parameters
    ----------
    q, k, v : torch.Tensor
        CPU tensors (B, Tq, Dq), (B, Tk, Dk), (B, Tk, Dv), float32 or float64.
    score : str
        "dot", "scaled_dot", "general", "additive" or "concat".
    params : dict of torch.Tensor, optional
        The score's parameters; gradients flow to them.
    lengths, mask : tensor or array, optional
        Key lengths (B,) and mask (bool True = attend, or float added); no gradient.
    causal : bool
        Bottom-right aligned, as ``dlkernels.attention.attend`` documents.
    backend : {"auto", "numba", "cython"} or None

    Returns
    -------
    torch.Tensor
        The context (B, Tq, Dv).

    Raises
    ------
    TypeError, ValueError
        As ``dlkernels.attention.attend``; non-CPU tensors or tensors of
        another dtype; ``params`` not a dict.
    """
    if params is not None and not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of tensors, got {type(params).__name__}")
    names = tuple(sorted(params)) if params else ()
    vals = tuple(params[n] for n in names)
    if isinstance(lengths, torch.Tensor):
        lengths = _np(lengths, "lengths", mask=True) if lengths.dtype in _DTYPES + (torch.bool,) \
            else lengths.detach().cpu().numpy()
    mask = _np(mask, "mask", mask=True)
    opts = (score, lengths, mask, causal, backend)
    return _Attend.apply(opts, names, q, k, v, *vals)
