"""Attention kernels (Numba backend): the family module.

Same names, arguments and semantics as ``dlkernels.engine.cython.attention``;
no input validation here (that is ``dlkernels.bindings.attention``' job).
The kernels live in two private files, re-exported here:

* ``_attn.py``  -- score functions, masked softmax, fused attention, Luong
  local attention, hierarchical attention pooling (forward and backward);
* ``_sdpa.py``  -- flash-style scaled dot-product attention (forward, backward).
"""
from . import _attn, _sdpa
from ._attn import *  # noqa: F401,F403
from ._sdpa import *  # noqa: F401,F403

__all__ = list(_attn.__all__) + list(_sdpa.__all__)
