# cython: language_level=3
"""Bernoulli RBM kernels (Cython backend).

Same names, arguments and semantics as ``dlkernels.engine.numba.rbm`` (read
its docstring for the conventions: GEMM through ``scipy.linalg.cython_blas``
with the same arguments as the Numba backend, stream layout of the random
draws, sigmoid / softplus formulas); no input validation here.  Both backends
perform the same floating-point operations in the same order, so they return
bit-identical results for the same inputs and seed.

This is the family's one extension module; its kernels are in include files
along their seams, twins of the Numba backend's private files:
``_rbm_layers.pxi`` (layers, energies, conditionals, samplers; ``OP_*``),
``_rbm_chains.pxi`` (block Gibbs), ``_rbm_cd.pxi`` (CD-k / PCD; ``MODE_*``),
``_rbm_single_site.pxi`` (``SCAN_*``), ``_rbm_ais.pxi``, ``_rbm_pl.pxi``,
``_rbm_pt.pxi``.  Integer codes and tile sizes are ``cpdef enum`` constants:
module attributes with the same names and values as the Numba module's.
"""
from libc.stdint cimport uint64_t, uint32_t
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset
cimport openmp
from cython cimport floating
from dlkernels.engine.cython._blas cimport gemm, gemm_tiles
from dlkernels.engine.cython._interrupt cimport dlk_stopped
from libc.stdint cimport int64_t as _i64
from dlkernels.engine.cython._fastmath cimport (dlk_sigmoid32, dlk_sigmoid64, dlk_softplus32,
                                               dlk_softplus64)
from dlkernels.engine.cython.rng cimport dlk_stream_ctr, stream_fill_f32, stream_fill_f32_f64

import numpy as np

# The same names as the Numba module's __all__ (tests/test_twins.py checks it).
__all__ = ["energy", "free_energy", "hidden_probs", "visible_probs", "sample_hidden",
           "sample_visible", "blocks_per_layer", "DRAWS_PER_BLOCK", "binary_layer", "TILE_R",
           "TILE_C", "PAR_MIN_WORK", "BIN_CHUNK", "BIN_SAMPLE_ROWS", "BIN_CLASSES",
           "BIN_DEFAULT_SMALL", "BIN_DEFAULT_LARGE", "bin_class", "OP_LINEAR", "OP_SIGMOID",
           "OP_SAMPLE", "OP_ACCUMULATE", "gibbs_chains", "cd_step", "cd_minibatches", "MODE_CD",
           "MODE_PCD", "MODE_PCD_HIDDEN", "single_site_gibbs", "SCAN_RANDOM", "SCAN_SYSTEMATIC",
           "SCAN_ALIAS", "ais", "ais_tile_rows", "expneg", "expneg_array", "AIS_MAX_TILE",
           "pseudo_likelihood", "PL_TILE", "parallel_tempering", "pt_blocks_per_sweep"]


cpdef enum:
    # ``op`` of the layer kernels (_layer, _bin_layer, binary_layer): what
    # happens to out = X W after the product (same values as the Numba backend)
    OP_LINEAR = 0      # nothing: out = X W
    OP_SIGMOID = 1     # out = sigmoid(X W + bias)
    OP_SAMPLE = 2      # out = Bernoulli(sigmoid(X W + bias)) (probs optional)
    OP_ACCUMULATE = 3  # out += X W (binary layers only: the scatter-add of a gradient)


include "_rbm_layers.pxi"
include "_rbm_chains.pxi"
include "_rbm_cd.pxi"

# single-site Gibbs, AIS, pseudo-likelihood
include "_rbm_single_site.pxi"
include "_rbm_ais.pxi"
include "_rbm_pl.pxi"

# parallel tempering (its own file; part of this family module)
include "_rbm_pt.pxi"
