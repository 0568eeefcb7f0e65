# C-level declarations of _sdpa.pxi (included by attention.pxd).
from libc.stdint cimport uint64_t
