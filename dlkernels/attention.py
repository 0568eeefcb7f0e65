"""dlkernels.attention: attention scores and fused attention kernels.

* score functions (dot, scaled dot, general, additive, concat), masked
  softmax, fused attention without the B*Tq*Tk*H tensor, Luong local
  attention, hierarchical attention pooling over ragged documents, forward
  and backward (``dlkernels.bindings.attention``);
* flash-style scaled dot-product attention with PyTorch's semantics,
  forward and backward (``dlkernels.bindings.sdpa``).
"""
from .bindings.attention import *  # noqa: F401,F403
from .bindings.attention import __all__ as _attn_all
from .bindings.sdpa import *  # noqa: F401,F403
from .bindings.sdpa import __all__ as _sdpa_all

__all__ = list(_attn_all) + list(_sdpa_all)
