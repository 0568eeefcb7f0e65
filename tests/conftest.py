"""Shared fixtures of the dlkernels test suite (keep this file small).

A test module names its kernel family at the top (``FAMILY = "rbm"``; one of
``dlkernels.bindings._backend.FAMILIES``; default "rng"): the ``backend``
fixture then runs each test with every compiled backend of that family and
skips, with the import error, the ones that are not built.  Tests that need a
backend outside the fixture call ``require_backend(name, FAMILY)``
(``from conftest import require_backend``).

``DLKERNELS_REQUIRE_BACKENDS=numba,cython`` (set by ``.ci/run``) turns such a
skip into a failure for the backends listed: CI must not pass by silently
testing one backend.
"""
import os

# The binary-path rule of the RBM kernels is measured per machine unless this
# is off (dlkernels.bindings.rbm_paths); the suite runs on the fixed default
# rule so that recorded outputs stay the same on every machine (the tests of
# the calibration switch it on with their own cache directory).
os.environ["DLKERNELS_CALIBRATE"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dlkernels  # noqa: E402

BACKENDS = ("numba", "cython")
DTYPES = (np.float32, np.float64)
DEFAULT_FAMILY = "rng"
REQUIRED = {b for b in os.environ.get("DLKERNELS_REQUIRE_BACKENDS", "").split(",") if b}


def require_backend(name, family=DEFAULT_FAMILY):
    """Skip the calling test when backend ``name`` cannot be imported for
    ``family`` (the reason names the import error); returns ``name``."""
    if name not in dlkernels.available_backends(family):
        err = dlkernels.backend_info(family)["backends"][name]["error"]
        msg = f"backend {name!r} unavailable for {family!r}: {err}"
        if name in REQUIRED:
            pytest.fail(msg + " (DLKERNELS_REQUIRE_BACKENDS)")
        pytest.skip(msg)
    return name


def module_family(request):
    """The ``FAMILY`` of the requesting test module (default "rng")."""
    return getattr(request.module, "FAMILY", DEFAULT_FAMILY)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each compiled backend in turn ("numba", "cython") of the test module's
    ``FAMILY``; skipped when not built."""
    return require_backend(request.param, module_family(request))


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):
    """float32 and float64, as np.dtype."""
    return np.dtype(request.param)


@pytest.fixture
def restore_threads():
    """Lets a test change dlkernels.set_num_threads; restores the count after it."""
    n = dlkernels.get_num_threads()
    yield n
    dlkernels.set_num_threads(n)


@pytest.fixture
def restore_backend():
    """Lets a test change the process-wide default backend; restores it after it."""
    old = dlkernels.get_backend()
    yield old
    dlkernels.set_backend(old)
