"""Shared fixtures of the dlkernels test suite (keep this file small)."""
import numpy as np
import pytest

import dlkernels
from dlkernels.bindings import _backend

BACKENDS = ("numba", "cython")
DTYPES = (np.float32, np.float64)


def require_backend(name, family="rng"):
    """Skip the calling test when ``name`` cannot be imported for ``family``."""
    if name not in _backend.available_backends(family):
        pytest.skip(f"backend {name!r} unavailable for {family!r}")
    return name


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each compiled backend in turn ("numba", "cython"); skipped when not built."""
    return require_backend(request.param)


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
