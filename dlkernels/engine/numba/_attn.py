"""Private part of the attention family (Numba backend); see attention.py."""
__all__ = []
