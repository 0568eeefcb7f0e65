"""Backend selection (``"auto" | "numba" | "cython"``): the process-wide
default, ``resolve(backend, family)`` -- the one way bindings find a family's
engine module (``dlkernels.engine.<backend>.<family>``) -- and
``backend_info(family)``.  Thread control lives in ``_threads.py`` (its
functions stay importable from here)."""
import importlib
import os

from . import _threads
from ._checks import check_choice

BACKENDS = ("auto", "numba", "cython")
_default = os.environ.get("DLKERNELS_BACKEND", "auto")
if _default not in BACKENDS:
    _default = "auto"
_cache = {}
_unavailable = {}


def set_backend(name):
    """Set the process-wide default backend (what ``backend=None`` means).

    Parameters
    ----------
    name : {"auto", "numba", "cython"}
        "auto" picks, per kernel, the backend its benchmarks favour among
        those that import.

    Returns
    -------
    None

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not one of the three.
    """
    global _default
    _default = check_choice(name, "backend", BACKENDS)


def get_backend():
    """The process-wide default backend.

    Returns
    -------
    str
        "auto", "numba" or "cython" (initially ``$DLKERNELS_BACKEND`` when
        that is one of them, else "auto").
    """
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
    """The backends whose kernels for ``family`` import on this machine.

    Parameters
    ----------
    family : str, default "rng"
        A kernel family ("rng", "rbm", "attention", "gan").

    Returns
    -------
    list of str
        A sub-list of ``["numba", "cython"]``; ``backend_info(family)`` says
        why a missing one does not import.
    """
    return [b for b in ("numba", "cython") if _load(b, family) is not None]


def resolve(backend, family, prefer=("cython", "numba")):
    """The engine module of ``family`` for ``backend`` (None = process default).

    "auto" takes the first available backend in ``prefer`` (each kernel's
    binding passes the order its benchmarks favour); an explicit backend that
    is not available raises ImportError naming the cause.  In a process
    forked after import it first puts the calling thread on one kernel thread
    (``_threads.child_thread_setup``: GNU OpenMP is not fork-safe).

    Parameters
    ----------
    backend : {None, "auto", "numba", "cython"}
        None is the process default.
    family : str
        The family: the module is ``dlkernels.engine.<backend>.<family>``.
    prefer : tuple of str, default ("cython", "numba")
        The order "auto" tries.

    Returns
    -------
    module
        The engine module.

    Raises
    ------
    TypeError, ValueError
        If ``backend`` is not one of the choices.
    ImportError
        If no (or not the requested) backend imports.
    """
    if _threads.FORK_GENERATION:
        _threads.child_thread_setup()
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


# Thread control moved to _threads.py; these names stay importable from here.
from ._threads import _omp, get_num_threads, set_num_threads  # noqa: E402,F401

FAMILIES = ("rng", "rbm", "attention", "gan")


def backend_info(family="rng"):
    """Which backends of ``family`` import on this machine, why one does not,
    and the thread counts in effect.

    Parameters
    ----------
    family : str, default "rng"
        One of "rng", "rbm", "attention", "gan".

    Returns
    -------
    dict
        ``family``: the name; ``default``: the process-wide default backend
        (``get_backend()``); ``available``: the importable backends, in the
        order "numba", "cython"; ``backends``: for "numba" and "cython" a
        dict with ``available`` (bool), ``module`` (the engine module's
        dotted name) and ``error`` (None, or the ImportError's type and text
        saying why the module does not import); ``threads``: the thread
        counts of Numba, OpenMP and the BLAS libraries (see
        ``dlkernels.bindings._threads.thread_info``).

    Raises
    ------
    TypeError
        If ``family`` is not a string.
    ValueError
        If ``family`` is not one of the families.
    """
    from ._threads import thread_info

    family = check_choice(family, "family", FAMILIES)
    backends = {}
    for b in ("numba", "cython"):
        mod = _load(b, family)
        exc = _unavailable.get((b, family)) if mod is None else None
        backends[b] = dict(available=mod is not None, module=f"dlkernels.engine.{b}.{family}",
                           error=None if exc is None else f"{type(exc).__name__}: {exc}")
    return dict(family=family, default=_default,
                available=[b for b in ("numba", "cython") if backends[b]["available"]],
                backends=backends, threads=thread_info())
