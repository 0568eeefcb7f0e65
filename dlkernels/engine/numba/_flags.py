"""Compiler options shared by the Numba kernels of every family.

``NoAliasCompiler``: a ``pipeline_class=`` for a function whose array
arguments never overlap (C's ``restrict``; see the class).

``CALLS_PARALLEL``: the ``parallel=`` option of a cached function that calls
(directly or through others) a ``parallel=True`` function but has no loop of
its own to parallelise.  Numba caches such a caller incorrectly when it is
compiled as a plain (serial) function in a process that loaded the parallel
callee from the cache: the next process that loads the caller from the cache
crashes (SIGSEGV; numba/numba#8578, #4807, #10184, open as of Numba 0.68).
For example, with an empty cache: process 1 ``rbm.free_energy``, process 2
``rbm.hidden_probs`` (fine), process 3 ``rbm.hidden_probs`` (segfault).
Compiling the caller through the parallel pipeline avoids it
(``tests/test_numba_cache.py`` replays such sequences).  Every automatic
transformation is off, so the caller's own code is compiled exactly as
before: no array expression, fill or reduction becomes a parallel loop (which
would also cost a parallel launch per call and, for reductions, change the
order of the sums); only an explicit ``prange`` is (the RBM's ``_layer`` and
``_bin_layer`` hold their parallel loop this way, behind a size test, rather
than calling a separate ``parallel=True`` driver: one compiled function less,
and Numba re-optimises a driver's whole tree of callees).
``tests/test_numba_cache.py`` also checks that every cached function that
reaches a parallel one is compiled this way.
"""

from numba.core.compiler import Compiler as _Compiler
from numba.core.cpu_options import ParallelOptions

__all__ = ["CALLS_PARALLEL", "NoAliasCompiler"]

# A ParallelOptions, not a dict: Numba pops the keys out of a dict option when
# it compiles, so a dict shared by several decorators (or one function compiled
# for a second signature) would come back empty -- every transform on.
CALLS_PARALLEL = ParallelOptions({"comprehension": False, "reduction": False,
                                  "inplace_binop": False, "setitem": False, "numpy": False,
                                  "stencil": False, "fusion": False, "prange": True})


class NoAliasCompiler(_Compiler):
    """The default Numba pipeline with every pointer argument marked
    ``noalias`` (Numba's own ``Flags.noalias``, which no decorator option
    sets): LLVM may then assume that the arrays a function is given do not
    overlap, as C's ``restrict`` does, and vectorizes their loops without the
    run-time overlap checks it otherwise emits per loop.  Only for functions
    whose array arguments never share memory (and whose callers pass views of
    one owner at most once: the owner's reference count is a pointer argument
    too)."""

    def __init__(self, typingctx, targetctx, library, args, return_type, flags, locals):
        flags = flags.copy()
        flags.noalias = True
        super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)
