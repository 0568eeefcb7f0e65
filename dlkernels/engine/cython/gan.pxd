# cython: language_level=3
"""C-level API of dlkernels' GAN kernels (Cython backend).

``cimport dlkernels.engine.cython.gan`` or take the function pointers from
``gan.__pyx_capi__``.  Row-major C-contiguous arrays given as pointers with
their sizes: X (B, K), W (K, n * p), b (n * p,), PRE (B, n * p), Y / D / idx
(B, n), GY (B, n), GPRE (B, n * p), GX (B, K), GW (K, n * p), gb (n * p,);
L / G (B,) logits and their gradient.  Semantics: the docstring of
``dlkernels.engine.numba.gan`` (activation codes 0..5: identity, relu,
leaky_relu, tanh, sigmoid, maxout).  Unused buffers may be NULL.
"""

cdef void layer_forward_f32(const float* X, const float* W, const float* b, int B, int K, int n,
                            int p, int act, float slope, float* PRE, float* Y, float* D,
                            int* idx, bint need_d) noexcept nogil
cdef void layer_forward_f64(const double* X, const double* W, const double* b, int B, int K,
                            int n, int p, int act, double slope, double* PRE, double* Y,
                            double* D, int* idx, bint need_d) noexcept nogil
cdef void layer_backward_f32(const float* X, const float* W, float* GY, const float* D,
                             const int* idx, int B, int K, int n, int p, int act, float* GPRE,
                             float* GX, float* GW, float* gb, bint need_gx,
                             bint need_gw) noexcept nogil
cdef void layer_backward_f64(const double* X, const double* W, double* GY, const double* D,
                             const int* idx, int B, int K, int n, int p, int act, double* GPRE,
                             double* GX, double* GW, double* gb, bint need_gx,
                             bint need_gw) noexcept nogil
cdef double logit_loss_f32(const float* L, int B, int n_real, int mode, float* G) noexcept nogil
cdef double logit_loss_f64(const double* L, int B, int n_real, int mode, double* G) noexcept nogil
