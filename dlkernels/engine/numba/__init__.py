"""Numba backend: JIT kernels, callable from users' own ``@njit`` code."""
import warnings as _warnings

try:
    from numba.core.errors import NumbaPerformanceWarning as _NumbaPerformanceWarning
except ImportError:  # pragma: no cover - numba missing: the backend fails to import anyway
    pass
else:
    # The callers compiled with parallel=CALLS_PARALLEL (see _flags.py) have no
    # loop to parallelise on purpose; Numba says so once per compilation.  Only
    # that message, and only for this package's files, is silenced.
    _warnings.filterwarnings(
        "ignore", category=_NumbaPerformanceWarning,
        message=r"(?s)\s*The keyword argument 'parallel=True' was specified but no "
                r"transformation for parallel execution was possible.*"
                r"dlkernels[\\/]engine[\\/]numba[\\/]")
