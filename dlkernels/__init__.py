"""dlkernels: fast, reproducible kernels for RBM sampling, attention scores and
GAN minibatch gradients, in two compiled backends (Numba and Cython) behind
one validating Python API.

Families are imported lazily (``dlkernels.rbm``, ``dlkernels.rng``...), so
``import dlkernels`` stays cheap: no JIT compilation happens before a kernel
is first called.
"""
import importlib

from .bindings._backend import (available_backends, get_backend, get_num_threads,  # noqa: F401
                                set_backend, set_num_threads)

__version__ = "0.1.0"
__all__ = ["rng", "rbm", "attention", "gan", "set_backend", "get_backend", "available_backends",
           "set_num_threads", "get_num_threads", "__version__"]

_FAMILIES = ("rng", "rbm", "attention", "gan")


def __getattr__(name):
    if name in _FAMILIES:
        return importlib.import_module(f"dlkernels.{name}")
    raise AttributeError(f"module 'dlkernels' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_FAMILIES))
