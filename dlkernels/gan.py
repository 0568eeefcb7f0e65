"""GAN minibatch gradients and training (Goodfellow et al. 2014); see
:mod:`dlkernels.bindings.gan` and :mod:`dlkernels.bindings.gan_train`."""
from .bindings.gan import (ACTIVATIONS, MLP, dense_backward, dense_forward,  # noqa: F401
                           discriminator_gradients, generator_gradients, grid_modes,
                           mode_metrics, parzen_log_likelihood, ring_modes, sample_grid,
                           sample_ring)

__all__ = ["MLP", "ACTIVATIONS", "discriminator_gradients", "generator_gradients",
           "dense_forward", "dense_backward", "ring_modes", "grid_modes", "sample_ring",
           "sample_grid", "mode_metrics", "parzen_log_likelihood"]
