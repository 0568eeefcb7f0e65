"""Public scaled dot-product attention API (flash-style, PyTorch semantics):
input checks and backend dispatch."""
__all__ = []
