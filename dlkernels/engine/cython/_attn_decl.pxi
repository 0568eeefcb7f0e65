# C-level declarations of _attn.pxi (included by attention.pxd).
from libc.stdint cimport uint64_t
