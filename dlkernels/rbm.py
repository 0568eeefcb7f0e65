"""dlkernels.rbm: Bernoulli restricted Boltzmann machines.

* energies, conditionals, fused samplers, block Gibbs chains and CD-k / PCD
  steps (``dlkernels.bindings.rbm``);
* single-site Gibbs, exact and AIS partition functions, likelihoods
  (``dlkernels.bindings.rbm_mcmc``);
* parallel tempering (``dlkernels.bindings.rbm_pt``);
* ``BernoulliRBM``, a scikit-learn compatible estimator
  (``dlkernels.bindings.rbm_estimator``, imported on first use: it needs
  scikit-learn, the functional API does not).
"""
import importlib as _importlib

from .bindings.rbm import *  # noqa: F401,F403
from .bindings.rbm import __all__ as _core_all
from .bindings.rbm_mcmc import *  # noqa: F401,F403
from .bindings.rbm_mcmc import __all__ as _mcmc_all
from .bindings.rbm_pt import *  # noqa: F401,F403
from .bindings.rbm_pt import __all__ as _pt_all

__all__ = list(_core_all) + list(_mcmc_all) + list(_pt_all) + ["BernoulliRBM"]


def __getattr__(name):
    if name == "BernoulliRBM":
        mod = _importlib.import_module("dlkernels.bindings.rbm_estimator")
        return mod.BernoulliRBM
    raise AttributeError(f"module 'dlkernels.rbm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
