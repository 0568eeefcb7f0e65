"""GAN minibatch gradients and training (Goodfellow et al. 2014): MLPs with one
flat parameter buffer, fused dense layers, stable losses from logits,
Algorithm 1 with checkpoints, and evaluation on Gaussian mixtures; see
:mod:`dlkernels.bindings.gan` and :mod:`dlkernels.bindings.gan_train`."""
from .bindings.gan import (ACTIVATIONS, MLP, dense_backward, dense_forward,  # noqa: F401
                           discriminator_gradients, generator_gradients, grid_modes,
                           mode_metrics, parzen_log_likelihood, ring_modes, sample_grid,
                           sample_ring)
from .bindings.gan_train import GANTrainer, GANTrainingError, train_gan  # noqa: F401

__all__ = ["MLP", "ACTIVATIONS", "discriminator_gradients", "generator_gradients",
           "dense_forward", "dense_backward", "train_gan", "GANTrainer", "GANTrainingError",
           "ring_modes", "grid_modes", "sample_ring", "sample_grid", "mode_metrics",
           "parzen_log_likelihood"]
