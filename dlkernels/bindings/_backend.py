"""Backend selection (``"auto" | "numba" | "cython"``) and thread control."""
import importlib
import os

from ._checks import check_choice, check_int

BACKENDS = ("auto", "numba", "cython")
_default = os.environ.get("DLKERNELS_BACKEND", "auto")
if _default not in BACKENDS:
    _default = "auto"
_cache = {}
_unavailable = {}


def set_backend(name):
    """Set the process-wide default backend: "auto", "numba" or "cython"."""
    global _default
    _default = check_choice(name, "backend", BACKENDS)


def get_backend():
    """The process-wide default backend."""
    return _default


def _load(backend, family):
    key = (backend, family)
    if key not in _cache:
        try:
            _cache[key] = importlib.import_module(f"dlkernels.engine.{backend}.{family}")
        except ImportError as exc:
            _unavailable[key] = exc
            _cache[key] = None
    return _cache[key]


def available_backends(family="rng"):
    """The backends whose kernels for ``family`` import on this machine."""
    return [b for b in ("numba", "cython") if _load(b, family) is not None]


def resolve(backend, family, prefer=("cython", "numba")):
    """The engine module of ``family`` for ``backend`` (None = process default).

    "auto" takes the first available backend in ``prefer`` (each kernel's
    binding passes the order its benchmarks favour); an explicit backend that
    is not available raises ImportError naming the cause.
    """
    if backend is None:
        backend = _default
    check_choice(backend, "backend", BACKENDS)
    if backend == "auto":
        for b in prefer:
            mod = _load(b, family)
            if mod is not None:
                return mod
        raise ImportError(f"dlkernels: no backend for {family!r} could be imported: "
                          f"{_unavailable}")
    mod = _load(backend, family)
    if mod is None:
        hint = (" (build the Cython extensions: pip install -e .)" if backend == "cython" else "")
        raise ImportError(f"dlkernels: backend {backend!r} is unavailable for {family!r}: "
                          f"{_unavailable[(backend, family)]}{hint}")
    return mod


def backend_name(module):
    """'numba' or 'cython' for an engine module."""
    return module.__name__.split(".")[2]


def set_num_threads(n):
    """Threads for dlkernels' parallel loops, in both backends.

    Sets Numba's thread count (``numba.set_num_threads``, at most
    ``numba.config.NUMBA_NUM_THREADS``) and OpenMP's for the Cython kernels.
    Results never depend on it: every kernel is bit-identical for any count.
    """
    import numba

    n = check_int(n, "n", min=1, max=numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    omp = _omp()
    if omp is not None:
        omp.set_num_threads(n)


def get_num_threads():
    import numba

    return numba.get_num_threads()


def _omp():
    try:
        from ..engine.cython import _omp as omp
    except ImportError:
        return None
    return omp
