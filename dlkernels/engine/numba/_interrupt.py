"""Cooperative cancellation for the long kernels of every family (shared).

A long kernel (chains of a user-chosen length, AIS over a user-chosen number
of temperatures) takes a ``stop`` argument: a 1-element int64 array (pass
``np.zeros(1, np.int64)`` from your own code).  It is a required argument,
never None: one typing, one compiled (and cached) version of each kernel.  It calls ``stopped(stop)`` between units of work (a sweep, a
temperature, a few thousand single-site steps) and returns early when the
flag is non-zero.  The bindings run such a kernel on a worker thread, keep
the main thread free to receive Ctrl-C, and set the flag when it arrives
(``dlkernels.bindings._interrupt``).  The flag is read with an atomic
(monotonic) load, so the compiler can never hoist the read out of a loop.
A kernel whose flag is never set computes exactly what it computed without
one: the check draws no random numbers and changes no arithmetic.
"""
from numba import types
from numba.extending import intrinsic

__all__ = ["stopped"]


@intrinsic
def stopped(typingctx, stop):
    """True when ``stop`` (1-element int64 array) is set."""
    if not (isinstance(stop, types.Array) and stop.ndim == 1 and stop.dtype == types.int64):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        val = builder.load_atomic(ary.data, ordering="monotonic", align=8)
        return builder.icmp_signed("!=", val, val.type(0))
    return types.boolean(stop), codegen
