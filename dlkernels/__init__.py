"""dlkernels: fast, reproducible kernels for RBM sampling, attention scores and
GAN minibatch gradients, in two compiled backends (Numba and Cython) behind
one validating Python API.

Families are imported lazily (``dlkernels.rbm``, ``dlkernels.rng``...), so
``import dlkernels`` stays cheap: no JIT compilation happens before a kernel
is first called.
"""
import importlib

from .bindings._backend import available_backends, backend_info, get_backend, set_backend  # noqa: F401
from .bindings._threads import blas_single_threaded, get_num_threads, set_num_threads  # noqa: F401

__version__ = "0.1.0"
__all__ = ["rng", "rbm", "attention", "gan", "set_backend", "get_backend", "available_backends",
           "set_num_threads", "get_num_threads", "blas_single_threaded", "backend_info", "__version__"]

from .bindings._backend import FAMILIES as _FAMILIES  # noqa: E402


def __getattr__(name):
    if name in _FAMILIES:
        return importlib.import_module(f"dlkernels.{name}")
    raise AttributeError(f"module 'dlkernels' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_FAMILIES))
