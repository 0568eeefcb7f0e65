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
"""
import os

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
    the Cython kernels.  Results never depend on it.  BLAS threads are not
    touched (see ``blas_single_threaded``).
    """
    import numba

    n = check_int(n, "n", min=1, max=numba.config.NUMBA_NUM_THREADS)
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
        which ``set_num_threads`` keeps equal to OpenMP's.
    """
    import numba

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


class blas_single_threaded:
    """Context manager: the BLAS behind ``scipy.linalg.cython_blas`` runs on
    one thread inside the block (previous thread counts restored on exit).

    Kernels that parallelise over output tiles themselves (one
    single-threaded gemm per tile, fused with the element-wise pass) would
    oversubscribe the cores with a multi-threaded BLAS inside their threads.
    The public functions enter this around each such kernel call; code that
    calls the engine kernels directly (e.g. a training loop) should enter it
    once around the loop.  Re-entrant; a no-op when threadpoolctl is missing.

    Examples
    --------
    >>> import dlkernels
    >>> with dlkernels.blas_single_threaded():
    ...     pass   # call engine kernels here
    """

    def __enter__(self):
        self._ctl = _blas_controllers()
        self._old = [c.get_num_threads() for c in self._ctl]
        for c, n in zip(self._ctl, self._old):
            if n != 1:
                c.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        for c, n in zip(self._ctl, self._old):
            if n != 1:
                c.set_num_threads(n)
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
        (``internal_api``, ``version``, ``num_threads``, ``filepath`` and
        ``used_by_kernels``: whether it is the BLAS behind
        ``scipy.linalg.cython_blas``), empty when threadpoolctl is missing.
    """
    import numba

    omp = _omp()
    out = dict(numba=numba.get_num_threads(), numba_max=numba.config.NUMBA_NUM_THREADS,
               openmp=omp.get_num_threads() if omp is not None else None, blas=[])
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
                                used_by_kernels=os.path.realpath(lib["filepath"]) in mine))
    return out
