"""scikit-learn's own test file for BernoulliRBM, run against dlkernels'.

The source of the installed ``sklearn/neural_network/tests/test_rbm.py`` is
read, its ``from sklearn.neural_network import BernoulliRBM`` swapped for
``from dlkernels.rbm import BernoulliRBM``, and executed into this module, so
pytest collects scikit-learn's tests as ours (a scikit-learn release that
adds a test is run here too).  Skipped when scikit-learn is not installed.

Left out: ``test_fit_gibbs`` -- it asserts numbers drawn from numpy's
RandomState stream, which dlkernels replaces by its Philox streams.
Expected to fail on some machines (not strict): ``test_convergence_dtype_consistency``.
Its float32 and float64 fits of seed 42 make the same random decisions here
(one 32-bit half-word per Bernoulli draw in both dtypes) and agree in every
attribute but one: it asks ``components_`` to agree to rtol 1e-3, and one of
the 1024 weights of our seed-42 fit ends at 4.9e-6, where the float32 GEMM
rounding of the updates (1.3e-7 at most over all weights, AMD EPYC/OpenBLAS
Haswell; scikit-learn's own float32 fit: 1.9e-7) is 0.4% of the value.  The
test passes with seeds 1, 2 and 3; scikit-learn's own fit of seed 42 passes
with its smallest weight at 4.7e-5 (rel. error 4.9e-4, close to the limit).
The property it means -- same decisions, differences of float32 rounding --
is tested over several seeds in ``test_rbm_estimator.py::
test_float32_and_float64_fits_make_the_same_decisions``.  Not strict: another
BLAS rounds differently and the test may pass there.
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
    strict=False, reason="a weight of the seed-42 fit ends at 4.9e-6, where float32 rounding "
    "exceeds rtol 1e-3 (see the module docstring)")(
    test_convergence_dtype_consistency)  # noqa: F821
