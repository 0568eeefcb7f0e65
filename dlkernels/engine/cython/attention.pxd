# cython: language_level=3
"""C-level API of dlkernels' attention kernels (Cython backend).

``cimport dlkernels.engine.cython.attention`` or take the function pointers
from ``attention.__pyx_capi__``.  The declarations of each part of the family
are in its own include file.
"""
include "_attn_decl.pxi"
include "_sdpa_decl.pxi"
