# cython: language_level=3
"""Scalar math for the Cython kernels of every family (shared, inline).

``from dlkernels.engine.cython._fastmath cimport dlk_tanh32, ...``.  The C
bodies are in ``dlk_fastmath.h`` (beside this file; a downstream build adds
``dlkernels.engine.cython.get_include()`` to its include path): the same IEEE
operations in the same order as ``dlkernels.engine.numba._fastmath`` (accuracy
table there), so both backends give bit-identical results.
"""
from libc.stdint cimport int32_t, int64_t

cdef extern from "dlk_fastmath.h" nogil:
    float dlk_f32_from_bits(int32_t i) noexcept
    double dlk_f64_from_bits(int64_t i) noexcept
    float dlk_exp32(float x) noexcept
    double dlk_exp64(double x) noexcept
    float dlk_sigmoid32(float x) noexcept
    double dlk_sigmoid64(double x) noexcept
    float dlk_softplus32(float x) noexcept
    double dlk_softplus64(double x) noexcept
    float dlk_log_sigmoid32(float x) noexcept
    double dlk_log_sigmoid64(double x) noexcept
    float dlk_tanh32(float x) noexcept
    double dlk_tanh64(double x) noexcept
    # tanh(x) of x = q + k from ep = exp(2q) exp(2k), en = exp(-2q) exp(-2k)
    float dlk_tanh_pair32(float x, float ep, float en) noexcept
    double dlk_tanh_pair64(double x, double ep, double en) noexcept
    double dlk_sigmoid64_split(double x) noexcept
    double dlk_expneg64(double x) noexcept
    # whether x[:n] holds only finite values (an exponent-field max reduction)
    int dlk_all_finite_f32(const float* x, Py_ssize_t n) noexcept
    int dlk_all_finite_f64(const double* x, Py_ssize_t n) noexcept
