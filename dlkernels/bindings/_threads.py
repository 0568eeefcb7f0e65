"""Thread control shared by every family: the thread count of dlkernels'
parallel loops (Numba's and OpenMP's), the BLAS that the kernels call, and a
summary of both for diagnostics.

* ``set_num_threads(n)`` / ``get_num_threads()``: public as
  ``dlkernels.set_num_threads`` / ``dlkernels.get_num_threads``.
* ``blas_single_threaded()``: public as ``dlkernels.blas_single_threaded``;
  a context manager that runs the BLAS behind ``scipy.linalg.cython_blas``
  (the one both backends' kernels call) on one thread, for kernels that
  parallelise over tiles themselves.
* ``thread_info()``: the thread counts in effect (Numba, OpenMP, BLAS), the
  ``threads`` entry of ``dlkernels.backend_info(family)``.

Results never depend on any of these counts: every kernel is bit-identical
for any number of threads.

Python threads
--------------
Kernels may be called from several Python threads at once: each call's
parallel loops get their own OpenMP team (Numba's ``omp`` threading layer and
the Cython backend), and the results are those of sequential calls.
``blas_single_threaded`` is process-wide and counted: the BLAS goes to one
thread when the first caller (any thread) enters and back to its previous
count when the last one leaves.  (threadpoolctl lets only the first Python
thread that limited OpenBLAS change it again and silently ignores the
others; the kernels' tiles would then call a multi-threaded BLAS from their
own threads -- oversubscribed, and in float32 not the same bits -- so the
limit is set here past that guard.)

Processes started with ``fork``
-------------------------------
GNU OpenMP is not fork-safe: a child forked after a parallel region inherits
a thread pool whose threads do not exist in it, so a parallel region of more
than one thread in the forking thread waits for them forever; Numba's ``omp``
layer even kills (SIGTERM) any parallel launch in a direct child, whatever
the thread count.  So, as PyTorch does, **a forked child runs dlkernels'
kernels on one thread**: a handler registered with
``os.register_at_fork(after_in_child=...)`` sets Numba's and OpenMP's thread
counts of the forking thread to 1 and tells Numba's ``omp`` layer that the
child is its own process (its fork check compares the pid recorded when the
layer started with the parent pid); every other thread of the child is set
to one thread by ``resolve`` (every public function goes through it) on its
first call.  A parallel region of one thread runs on the calling thread and
never touches the inherited pool.  The results are the parent's, bit for
bit.  In such a child ``get_num_threads()`` returns 1 and
``set_num_threads(n)`` with n > 1 warns (RuntimeWarning) and keeps 1.
Processes started with ``spawn`` are fresh interpreters and keep their
threads (so do ``forkserver`` children while the server has not imported
dlkernels).  Code that calls the engine kernels directly (its
own ``@njit``/Cython code) from a new thread of a forked child should call
``dlkernels.set_num_threads(1)`` in that thread first.

Measured alternative, not taken: Numba's ``tbb`` threading layer is
fork-safe, but it needs the ``tbb`` wheel (a new run-time dependency, 20 MB;
its ``libtbb.so.12`` lies in the environment's ``lib/``, outside the loader's
path, so it must be loaded by path before Numba picks a layer), a parallel
launch costs about 1 us more than with ``omp``, and it does nothing for the
Cython backend's GNU OpenMP, which needs the one-thread child anyway.
Numba's ``workqueue`` layer is fork-safe but kills the process when two
Python threads launch parallel kernels at once.
"""
import os
import sys
import threading
import warnings

from ._checks import check_int

__all__ = ["set_num_threads", "get_num_threads", "blas_single_threaded", "thread_info"]


def set_num_threads(n):
    """Set the number of threads of dlkernels' parallel loops, both backends.

    Parameters
    ----------
    n : int
        Threads, 1 <= n <= ``numba.config.NUMBA_NUM_THREADS`` (the size of
        Numba's pool, fixed at start-up; OpenMP is set to the same count).

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is outside 1..NUMBA_NUM_THREADS.

    Notes
    -----
    Sets Numba's thread count (``numba.set_num_threads``) and OpenMP's for
    the Cython kernels, for the calling thread (other threads keep theirs).
    Results never depend on it.  BLAS threads are not touched (see
    ``blas_single_threaded``).  In a process forked after dlkernels was
    imported the kernels stay on one thread (see the module docstring):
    n > 1 then warns (RuntimeWarning) and sets 1.
    """
    import numba

    n = check_int(n, "n", min=1, max=numba.config.NUMBA_NUM_THREADS)
    if FORK_GENERATION:
        child_thread_setup()
        if n > 1:
            warnings.warn(f"dlkernels.set_num_threads({n}): this process was forked after "
                          "dlkernels was imported; its kernels run on one thread (GNU OpenMP "
                          "is not fork-safe)", RuntimeWarning, stacklevel=2)
            n = 1
    numba.set_num_threads(n)
    omp = _omp()
    if omp is not None:
        omp.set_num_threads(n)


def get_num_threads():
    """The number of threads of dlkernels' parallel loops.

    Returns
    -------
    int
        Numba's thread count in this thread (``numba.get_num_threads``),
        which ``set_num_threads`` keeps equal to OpenMP's; 1 in a process
        forked after dlkernels was imported.
    """
    import numba

    if FORK_GENERATION:
        child_thread_setup()
    return numba.get_num_threads()


def _omp():
    """The OpenMP control extension of the Cython backend, or None when it is
    not built."""
    try:
        from ..engine.cython import _omp as omp
    except ImportError:
        return None
    return omp


_BLAS = None


def _blas_controllers():
    """threadpoolctl controllers of the BLAS behind scipy.linalg.cython_blas
    (all BLAS libraries when it cannot be told apart)."""
    global _BLAS
    if _BLAS is None:
        try:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  (loads scipy's BLAS)
            from threadpoolctl import ThreadpoolController

            blas = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            here = os.path.dirname(os.path.realpath(scipy.__file__))
            mine = [c for c in blas if os.path.realpath(c.filepath).startswith(here)]
            _BLAS = mine or blas
        except Exception:  # pragma: no cover - threadpoolctl missing or failing
            _BLAS = []
    return _BLAS


def _set_blas_threads(ctl, n):
    """Set a threadpoolctl BLAS controller to n threads from any Python thread.

    threadpoolctl (>= 3.6) ignores ``set_num_threads`` on OpenBLAS from every
    Python thread but the first one that used it; its unguarded setter is
    called where it exists."""
    getattr(ctl, "_real_set_num_threads", ctl.set_num_threads)(n)


_blas_lock = threading.Lock()
_blas_depth = 0       # blocks of blas_single_threaded open in the process, all threads
_blas_saved = ()      # (controller, thread count) pairs to restore when the last one closes


class blas_single_threaded:
    """Context manager: the BLAS behind ``scipy.linalg.cython_blas`` runs on
    one thread inside the block.

    Kernels that parallelise over output tiles themselves (one
    single-threaded gemm per tile, fused with the element-wise pass) would
    oversubscribe the cores with a multi-threaded BLAS inside their threads.
    The public functions enter this around each such kernel call; code that
    calls the engine kernels directly (e.g. a training loop) should enter it
    once around the loop.

    The BLAS thread count is process-wide, so the blocks are counted across
    Python threads: the first block entered (in any thread) sets one thread,
    the last one left restores the previous counts.  Re-entrant and safe to
    use from several threads at once; a no-op when threadpoolctl is missing.

    Examples
    --------
    >>> import dlkernels
    >>> with dlkernels.blas_single_threaded():
    ...     pass   # call engine kernels here
    """

    def __enter__(self):
        global _blas_depth, _blas_saved
        with _blas_lock:
            if _blas_depth == 0:
                saved = []
                for c in _blas_controllers():
                    n = c.get_num_threads()
                    if n != 1:
                        _set_blas_threads(c, 1)
                        saved.append((c, n))
                _blas_saved = tuple(saved)
            _blas_depth += 1
        return self

    def __exit__(self, *exc):
        global _blas_depth, _blas_saved
        with _blas_lock:
            _blas_depth -= 1
            if _blas_depth == 0:
                for c, n in _blas_saved:
                    _set_blas_threads(c, n)
                _blas_saved = ()
        return False


def thread_info():
    """Thread counts in effect.

    Returns
    -------
    dict
        ``numba``: Numba's thread count; ``numba_max``: the size of Numba's
        pool (``NUMBA_NUM_THREADS``); ``openmp``: OpenMP's thread count for
        the Cython kernels (None when that extension is not built);
        ``blas``: one dict per BLAS library loaded in the process
        (``internal_api``, ``version``, ``num_threads``, ``filepath``,
        ``architecture``: the CPU kernels the library chose, e.g. OpenBLAS's
        "Haswell" or "SkylakeX" -- their products differ in the last bits --
        or None, and ``used_by_kernels``: whether it is the BLAS behind
        ``scipy.linalg.cython_blas``), empty when threadpoolctl is missing;
        ``forked_child``: whether this process was forked after dlkernels
        was imported (its kernels then run on one thread).
    """
    import numba

    if FORK_GENERATION:
        child_thread_setup()
    omp = _omp()
    out = dict(numba=numba.get_num_threads(), numba_max=numba.config.NUMBA_NUM_THREADS,
               openmp=omp.get_num_threads() if omp is not None else None, blas=[],
               forked_child=FORK_GENERATION > 0)
    mine = {os.path.realpath(c.filepath) for c in _blas_controllers()}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return out
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        out["blas"].append(dict(internal_api=lib.get("internal_api"), version=lib.get("version"),
                                num_threads=lib.get("num_threads"), filepath=lib.get("filepath"),
                                architecture=lib.get("architecture"),
                                used_by_kernels=os.path.realpath(lib["filepath"]) in mine))
    return out


# ---- processes started with fork (see the module docstring) ----------------------------------

FORK_GENERATION = 0   # 0 in a process that was not forked after import; else bumped per fork
_child = threading.local()


def _numba_omp_rearm():
    """Tell Numba's started ``omp`` threading layer that this process is its
    own (not a fork of the one that started it): its launch function records
    the calling pid again, past its one-time initialisation.  Lock-free; a
    no-op when the layer is not started or is another one."""
    npar = sys.modules.get("numba.np.ufunc.parallel")
    if npar is None or not getattr(npar, "_is_initialized", False):
        return None
    if getattr(npar, "_threading_layer", None) == "omp":
        import ctypes

        from numba.np.ufunc import omppool

        ctypes.CFUNCTYPE(None, ctypes.c_int)(omppool.launch_threads)(1)
    return npar


def _after_fork_in_child():
    """``os.register_at_fork(after_in_child=...)``: the forking thread of the
    child runs the kernels on one thread from now on.  Touches only modules
    already imported, takes no lock that another (vanished) thread could hold."""
    global FORK_GENERATION, _blas_lock
    FORK_GENERATION += 1
    _blas_lock = threading.Lock()
    try:
        npar = _numba_omp_rearm()
        if npar is not None:
            npar._set_num_threads(1)   # numba.set_num_threads(1) without its start-up lock
        omp = sys.modules.get("dlkernels.engine.cython._omp")
        if omp is not None:
            omp.set_num_threads(1)
    except Exception:  # pragma: no cover - never fail a fork; child_thread_setup retries
        pass


def child_thread_setup():
    """In a forked child, set the calling thread's Numba and OpenMP thread
    counts to 1, once per thread and fork (``resolve`` calls this on every
    kernel call while ``FORK_GENERATION`` is non-zero)."""
    if getattr(_child, "generation", 0) == FORK_GENERATION:
        return
    import numba

    numba.set_num_threads(1)   # starts Numba's threading layer in this process if needed
    _numba_omp_rearm()
    omp = _omp()
    if omp is not None:
        omp.set_num_threads(1)
    _child.generation = FORK_GENERATION


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def thread_setup_like_caller(engine_name):
    """A function that gives a new Python thread the calling thread's kernel
    thread count (Numba's and OpenMP's counts are per thread); engine_name:
    the module of the kernel the thread will run (Numba or Cython)."""
    if FORK_GENERATION:
        return child_thread_setup
    if ".numba." in engine_name:
        import numba
        n = numba.get_num_threads()
        return lambda: numba.set_num_threads(n)
    omp = _omp()
    if omp is None:
        return lambda: None
    n = omp.get_num_threads()
    return lambda: omp.set_num_threads(n)
