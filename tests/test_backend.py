"""Backend selection and thread control: dlkernels.set_backend / get_backend /
available_backends / set_num_threads and bindings._backend.resolve."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import dlkernels
from dlkernels import rng
from dlkernels.bindings import _backend
from dlkernels.bindings._backend import backend_name, resolve
from conftest import require_backend

FAMILY = "rng"


@pytest.fixture
def loader_cache(monkeypatch):
    """A private copy of the loader cache, so that a test can mark backends
    unavailable (as if their import had failed) without touching the others."""
    monkeypatch.setattr(_backend, "_cache", dict(_backend._cache))
    monkeypatch.setattr(_backend, "_unavailable", dict(_backend._unavailable))
    return _backend


def _make_unavailable(be, backend, family="rng"):
    be._load(backend, family)  # fill the other entries as usual
    be._cache[(backend, family)] = None
    be._unavailable[(backend, family)] = ImportError(f"simulated: no {backend} here")


def test_public_surface():
    for name in ("set_backend", "get_backend", "available_backends", "set_num_threads",
                 "get_num_threads"):
        assert getattr(dlkernels, name) is getattr(_backend, name)
    assert "rng" in dir(dlkernels)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dlkernels.nope


def test_set_get_backend(restore_backend):
    for name in ("numba", "cython", "auto"):
        dlkernels.set_backend(name)
        assert dlkernels.get_backend() == name


@pytest.mark.parametrize("bad,exc,msg", [
    ("torch", ValueError, r"backend: expected one of \['auto', 'numba', 'cython'\], got 'torch'"),
    ("Numba", ValueError, "backend: expected one of .*got 'Numba'"),
    ("", ValueError, "backend: expected one of .*got ''"),
    (None, TypeError, "backend: expected one of .*got NoneType None"),
    (1, TypeError, "backend: expected one of .*got int 1"),
])
def test_set_backend_errors(restore_backend, bad, exc, msg):
    with pytest.raises(exc, match=msg):
        dlkernels.set_backend(bad)
    assert dlkernels.get_backend() == restore_backend
    if bad is not None:  # resolve(None, ...) means the process default
        with pytest.raises(exc, match=msg):
            resolve(bad, "rng")


def test_available_backends():
    av = dlkernels.available_backends()
    assert av == dlkernels.available_backends("rng")
    assert "numba" in av and set(av) <= {"numba", "cython"}


def test_resolve_explicit_and_auto(restore_backend):
    from dlkernels.engine.numba import rng as nrng

    assert resolve("numba", "rng") is nrng
    assert backend_name(resolve("numba", "rng")) == "numba"
    assert resolve("auto", "rng", prefer=("numba", "cython")) is nrng
    if "cython" in dlkernels.available_backends():
        from dlkernels.engine.cython import rng as crng

        assert resolve("cython", "rng") is crng
        assert backend_name(crng) == "cython"
        assert resolve("auto", "rng") is crng  # the default preference order
        assert resolve("auto", "rng", prefer=("cython", "numba")) is crng
    # None = the process-wide default
    dlkernels.set_backend("numba")
    assert resolve(None, "rng") is nrng


def test_auto_falls_back_to_numba(loader_cache, restore_backend):
    _make_unavailable(loader_cache, "cython")
    assert dlkernels.available_backends("rng") == ["numba"]
    mod = resolve("auto", "rng")
    assert backend_name(mod) == "numba"
    assert backend_name(resolve("auto", "rng", prefer=("cython", "numba"))) == "numba"
    ref = np.random.Philox(key=3).random_raw(10)
    assert np.array_equal(rng.raw(3, 10, backend="auto"), ref)
    dlkernels.set_backend("auto")
    assert np.array_equal(rng.raw(3, 10), ref)


def test_explicit_unavailable_backend_raises_with_hint(loader_cache, restore_backend):
    _make_unavailable(loader_cache, "cython")
    with pytest.raises(ImportError, match=r"backend 'cython' is unavailable for 'rng': "
                                          r"simulated: no cython here.*pip install -e \."):
        resolve("cython", "rng")
    with pytest.raises(ImportError, match="backend 'cython' is unavailable"):
        rng.uniform(1, 3, backend="cython")
    dlkernels.set_backend("cython")  # a default that cannot load fails the same way
    with pytest.raises(ImportError, match="backend 'cython' is unavailable"):
        rng.raw(1, 3)


def test_numba_unavailable(loader_cache):
    require_backend("cython")
    _make_unavailable(loader_cache, "numba")
    assert dlkernels.available_backends("rng") == ["cython"]
    assert backend_name(resolve("auto", "rng", prefer=("numba", "cython"))) == "cython"
    with pytest.raises(ImportError, match="backend 'numba' is unavailable for 'rng': simulated"):
        resolve("numba", "rng")


def test_no_backend_at_all(loader_cache):
    _make_unavailable(loader_cache, "cython")
    _make_unavailable(loader_cache, "numba")
    assert dlkernels.available_backends("rng") == []
    with pytest.raises(ImportError, match="no backend for 'rng' could be imported"):
        resolve("auto", "rng")


def test_unknown_family(loader_cache):
    assert dlkernels.available_backends("no_such_family") == []
    with pytest.raises(ImportError, match="backend 'numba' is unavailable for 'no_such_family'"):
        resolve("numba", "no_such_family")
    with pytest.raises(ImportError, match="no backend for 'no_such_family'"):
        resolve("auto", "no_such_family")


@pytest.mark.parametrize("value,expected", [("numba", "numba"), ("cython", "cython"),
                                            ("auto", "auto"), ("bogus", "auto")])
def test_default_from_environment(value, expected):
    env = dict(os.environ, DLKERNELS_BACKEND=value)
    out = subprocess.run([sys.executable, "-c", "import dlkernels; print(dlkernels.get_backend())"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


# ---- threads ---------------------------------------------------------------

def test_set_num_threads(restore_threads):
    dlkernels.set_num_threads(1)
    assert dlkernels.get_num_threads() == 1
    assert numba.get_num_threads() == 1
    omp = _backend._omp()
    if omp is not None:
        assert omp.get_num_threads() == 1
    nmax = numba.config.NUMBA_NUM_THREADS
    dlkernels.set_num_threads(nmax)
    assert dlkernels.get_num_threads() == nmax
    if omp is not None:
        assert omp.get_num_threads() == nmax


@pytest.mark.parametrize("bad,exc,msg", [
    (0, ValueError, "n: expected an integer >= 1, got 0"),
    (-2, ValueError, "n: expected an integer >= 1, got -2"),
    (numba.config.NUMBA_NUM_THREADS + 1, ValueError,
     f"n: expected an integer <= {numba.config.NUMBA_NUM_THREADS}, got {numba.config.NUMBA_NUM_THREADS + 1}"),
    (1.0, TypeError, "n: expected an integer, got float 1.0"),
    (True, TypeError, "n: expected an integer, got bool True"),
    ("2", TypeError, "n: expected an integer, got str '2'"),
    (None, TypeError, "n: expected an integer, got NoneType None"),
])
def test_set_num_threads_errors(restore_threads, bad, exc, msg):
    with pytest.raises(exc, match=msg):
        dlkernels.set_num_threads(bad)
    assert dlkernels.get_num_threads() == restore_threads


# --- backend_info and the thread-control module ------------------------------------------------

def test_thread_control_lives_in_threads_module_old_names_kept():
    from dlkernels.bindings import _threads, rbm as brbm

    assert dlkernels.blas_single_threaded is _threads.blas_single_threaded
    assert brbm.blas_single_threaded is _threads.blas_single_threaded        # old import name
    assert dlkernels.rbm.blas_single_threaded is _threads.blas_single_threaded
    for name in ("set_num_threads", "get_num_threads", "_omp"):
        assert getattr(_backend, name) is getattr(_threads, name)
    assert dlkernels.backend_info is _backend.backend_info


def test_backend_info_lists_backends_and_threads(restore_threads):
    for family in _backend.FAMILIES:
        info = dlkernels.backend_info(family)
        assert info["family"] == family
        assert info["default"] == dlkernels.get_backend()
        assert info["available"] == dlkernels.available_backends(family)
        for b in ("numba", "cython"):
            entry = info["backends"][b]
            assert entry["module"] == f"dlkernels.engine.{b}.{family}"
            assert entry["available"] == (b in info["available"])
            assert (entry["error"] is None) == entry["available"]
    th = dlkernels.backend_info()["threads"]
    assert th["numba"] == dlkernels.get_num_threads() and 1 <= th["numba"] <= th["numba_max"]
    if "cython" in dlkernels.available_backends():
        assert th["openmp"] == th["numba"]
    keys = {"internal_api", "num_threads", "architecture", "used_by_kernels"}
    assert all(keys <= set(lib) for lib in th["blas"])
    dlkernels.set_num_threads(1)
    assert dlkernels.backend_info()["threads"]["numba"] == 1


def test_backend_info_says_why_a_backend_does_not_import(loader_cache):
    _make_unavailable(loader_cache, "cython", "rbm")
    info = dlkernels.backend_info("rbm")
    assert info["available"] == ["numba"]
    assert info["backends"]["cython"] == dict(available=False, module="dlkernels.engine.cython.rbm",
                                              error="ImportError: simulated: no cython here")


def test_backend_info_blas_single_threaded_inside():
    with dlkernels.blas_single_threaded():
        used = [lib for lib in dlkernels.backend_info()["threads"]["blas"] if lib["used_by_kernels"]]
        assert all(lib["num_threads"] == 1 for lib in used)


@pytest.mark.parametrize("bad,exc,msg", [
    ("toy", ValueError, r"family: expected one of \['rng', 'rbm', 'attention', 'gan'\], got 'toy'"),
    (None, TypeError, "family: expected one of .*got NoneType None"),
    (3, TypeError, "family: expected one of .*got int 3"),
])
def test_backend_info_errors(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        dlkernels.backend_info(bad)


def test_conftest_backend_fixture_reads_the_module_family():
    import types

    import conftest

    req = types.SimpleNamespace(module=types.SimpleNamespace(FAMILY="gan"))
    assert conftest.module_family(req) == "gan"
    assert conftest.module_family(types.SimpleNamespace(module=types.SimpleNamespace())) == "rng"
    assert conftest.module_family(types.SimpleNamespace(module=sys.modules[__name__])) == FAMILY


def test_require_backend_skips_with_the_import_error(loader_cache, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "REQUIRED", set())  # as without DLKERNELS_REQUIRE_BACKENDS
    _make_unavailable(loader_cache, "cython", "rbm")
    with pytest.raises(pytest.skip.Exception, match="unavailable for 'rbm': ImportError: simulated"):
        require_backend("cython", "rbm")
    assert require_backend("numba", "rbm") == "numba"


def test_required_backend_fails_instead_of_skipping(loader_cache, monkeypatch):
    # DLKERNELS_REQUIRE_BACKENDS (set by .ci/run): no silent skip of a required backend
    import conftest

    monkeypatch.setattr(conftest, "REQUIRED", {"cython"})
    _make_unavailable(loader_cache, "cython", "rbm")
    with pytest.raises(pytest.fail.Exception, match="DLKERNELS_REQUIRE_BACKENDS"):
        require_backend("cython", "rbm")
