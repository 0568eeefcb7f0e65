# cython: language_level=3
"""Cooperative cancellation for the long kernels of every family (shared).

The C twin of ``dlkernels.engine.numba._interrupt``: a long kernel takes a
``stop`` flag (a 1-element int64 array, or None; NULL at the C level) and
returns early when ``dlk_stopped(flag)`` is true between units of work.  The
read is an atomic (relaxed) load, so the compiler cannot hoist it out of a
loop.  A flag that is never set changes nothing the kernel computes.
"""
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <stdint.h>
    static inline int dlk_stopped(const int64_t *flag) {
        return flag != 0 && __atomic_load_n(flag, __ATOMIC_RELAXED) != 0;
    }
    """
    bint dlk_stopped(const int64_t* flag) noexcept nogil
