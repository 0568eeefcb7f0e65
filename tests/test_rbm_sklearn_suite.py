"""scikit-learn's own test file for BernoulliRBM, run against dlkernels'.

The source of the installed ``sklearn/neural_network/tests/test_rbm.py`` is
read, its ``from sklearn.neural_network import BernoulliRBM`` swapped for
``from dlkernels.rbm import BernoulliRBM``, and executed into this module, so
pytest collects scikit-learn's tests as ours (a scikit-learn release that
adds a test is run here too).  Skipped when scikit-learn is not installed.

Left out: ``test_fit_gibbs`` -- it asserts numbers drawn from numpy's
RandomState stream, which dlkernels replaces by its Philox streams.
Expected to fail (strict, so a fix is noticed): ``test_convergence_dtype_consistency``
-- float32 and float64 fits must agree to rtol 1e-6, which needs the float64
kernels to draw one 32-bit half-word per Bernoulli decision as the float32
ones do (a change of the float64 bits, planned in issue 10).
"""
import os
import re

import pytest

FAMILY = "rbm"
sklearn = pytest.importorskip("sklearn")

_PATH = os.path.join(os.path.dirname(sklearn.__file__), "neural_network", "tests", "test_rbm.py")
if not os.path.exists(_PATH):  # pragma: no cover - a scikit-learn build without its tests
    pytest.skip("scikit-learn's test_rbm.py is not installed", allow_module_level=True)

with open(_PATH, encoding="utf-8") as _f:
    _SRC = _f.read()
_SWAPPED, _N = re.subn(r"^from sklearn\.neural_network import BernoulliRBM$",
                       "from dlkernels.rbm import BernoulliRBM", _SRC, flags=re.M)
assert _N == 1, "scikit-learn's test file no longer imports BernoulliRBM the expected way"
exec(compile(_SWAPPED, _PATH, "exec"), globals())  # noqa: S102 - scikit-learn's own tests

from dlkernels.rbm import BernoulliRBM as _Ours  # noqa: E402

assert BernoulliRBM is _Ours  # noqa: F821 - defined by the exec above

del test_fit_gibbs  # noqa: F821 - see the module docstring
test_convergence_dtype_consistency = pytest.mark.xfail(  # noqa: F821
    strict=True, reason="float64 kernels draw float64 uniforms (issue 10)")(
    test_convergence_dtype_consistency)  # noqa: F821
