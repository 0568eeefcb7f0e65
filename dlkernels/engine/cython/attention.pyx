# cython: language_level=3
"""Attention kernels (Cython backend): the family module.

Same names, arguments and semantics as ``dlkernels.engine.numba.attention``
(read its docstrings for the conventions); no input validation here.  The
kernels live in two private include files:

* ``_attn.pxi`` -- score functions, masked softmax, fused attention, Luong
  local attention, hierarchical attention pooling (forward and backward);
* ``_sdpa.pxi`` -- flash-style scaled dot-product attention.

Their C-level exports are declared in ``attention.pxd`` (through
``_attn_decl.pxi`` and ``_sdpa_decl.pxi``).
"""
include "_attn.pxi"
include "_sdpa.pxi"

__all__ = list(_ATTN_ALL) + list(_SDPA_ALL)
