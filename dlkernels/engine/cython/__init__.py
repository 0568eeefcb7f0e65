"""Cython backend: ahead-of-time kernels (``*.pyx``) and their C API (``*.pxd``).

Import a family module (``from dlkernels.engine.cython import rng``); when the
extensions were not built, importing them raises ImportError and the
bindings fall back to the Numba backend.
"""


def get_include():
    """The folder of the ``.pxd`` files' C headers (``dlk_fastmath.h``): add it
    to ``include_dirs`` when building your own Cython that cimports them."""
    import os

    return os.path.dirname(os.path.abspath(__file__))
