"""Cython backend: ahead-of-time kernels (``*.pyx``) and their C API (``*.pxd``).

Import a family module (``from dlkernels.engine.cython import rng``); when the
extensions were not built, importing them raises ImportError and the
bindings fall back to the Numba backend.
"""
