"""Numba backend: JIT kernels, callable from users' own ``@njit`` code."""
