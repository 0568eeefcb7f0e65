# Part of dlkernels.engine.cython.attention (included by attention.pyx).
_ATTN_ALL = []
