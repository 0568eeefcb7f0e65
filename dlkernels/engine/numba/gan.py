"""GAN kernels (Numba backend): the family's one importable module.

* ``_gan_layers``: the fused MLP layer kernels ``layer_forward`` /
  ``layer_backward``, the stable ``logit_loss`` and the activation codes (their
  conventions are in that module's docstring);
* ``_gan_train``: ``train_steps``, whole training steps of Algorithm 1 of
  Goodfellow et al. (2014) in one compiled call.

Same names, arguments and semantics as ``dlkernels.engine.cython.gan``.
"""
from ._gan_layers import (IDENTITY, LEAKY_RELU, MAXOUT, PAR_MIN_WORK, RELU, SIGMOID, SMALL_DIM,
                          TANH, TILE_C, TILE_R, layer_backward, layer_forward, logit_loss)
from ._gan_train import (LAY_COLS, L_B, L_CODE, L_D, L_GPRE, L_GX, L_IDX, L_N_IN, L_N_OUT, L_P,
                         L_PRE, L_W, L_Y, PAR_MIN_UPDATE, UPD_BLOCK, train_steps)

__all__ = ["IDENTITY", "RELU", "LEAKY_RELU", "TANH", "SIGMOID", "MAXOUT", "TILE_R", "TILE_C",
           "PAR_MIN_WORK", "SMALL_DIM", "UPD_BLOCK", "PAR_MIN_UPDATE", "LAY_COLS", "L_N_IN", "L_N_OUT", "L_P", "L_CODE", "L_W", "L_B", "L_Y",
           "L_D", "L_PRE", "L_GPRE", "L_GX", "L_IDX", "layer_forward", "layer_backward",
           "logit_loss", "train_steps"]
