"""Public attention API (score functions, masked softmax, fused attention,
local attention, hierarchical pooling): input checks and backend dispatch."""
__all__ = []
