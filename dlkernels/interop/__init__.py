"""Optional adapters to other frameworks, imported on use
(``dlkernels.interop.torch`` needs PyTorch)."""
