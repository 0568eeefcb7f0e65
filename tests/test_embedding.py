"""The three ways to embed dlkernels' Philox RNG in a user's own compiled code.

(a) a user's ``@njit`` function calls ``dlkernels.engine.numba.rng``;
(b) a downstream Cython extension, built here against the installed package,
    ``cimport``s ``dlkernels.engine.cython.rng`` (inline C core + exported
    functions);
(c) the C function pointers in ``dlkernels.engine.cython.rng.__pyx_capi__``,
    called through ctypes and from a Numba ``@njit`` function.
Each must give numpy's Philox words and floats bit for bit.
"""
import ctypes
import functools
import glob
import importlib.util
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit, prange

import dlkernels
from dlkernels import rng
from dlkernels.engine.numba import rng as nrng

from conftest import require_backend

FAMILY = "rng"

M64 = (1 << 64) - 1
M256 = (1 << 256) - 1
KEY = 0x0123456789ABCDEF_FEDCBA9876543210
CTRS = [0, 7, M64 - 2, M256 - 1, (3 << 128) | (M64 - 1)]


def words(x, n):
    return np.array([(x >> (64 * i)) & M64 for i in range(n)], dtype=np.uint64)


def np_raw(key, ctr, n):
    return np.random.Philox(key=key, counter=ctr).random_raw(n)


def np_uniform(key, ctr, n, dtype):
    return np.random.Generator(np.random.Philox(key=key, counter=ctr)).random(n, dtype=dtype)


def assert_same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


# ---- (a) a user's own @njit code -------------------------------------------

@njit
def user_raw(key, ctr, n):
    """The stream's words, block by block, written the way a user would."""
    out = np.empty(n, np.uint64)
    c0, c1, c2, c3 = ctr[0], ctr[1], ctr[2], ctr[3]
    i = 0
    while i < n:
        c0, c1, c2, c3 = nrng.ctr_add(c0, c1, c2, c3, 1, 0)
        b = nrng.philox4x64_10(c0, c1, c2, c3, key[0], key[1])
        for j in range(4):
            if i < n:
                out[i] = b[j]
                i += 1
    return out


@njit
def user_fill(key, ctr, first_block, n32, n64):
    a = np.empty(n32, np.float32)
    b = np.empty(n64, np.float64)
    nrng.stream_fill_f32(key, ctr, first_block, a)
    nrng.stream_fill_f64(key, ctr, first_block, b)
    blk = nrng.stream_block(key, ctr, first_block)
    return a, b, nrng.u64_to_f64(blk[0]), nrng.u32_to_f32(blk[0]), nrng.u32_to_f32(blk[0] >> np.uint64(32))


@njit(parallel=True)
def user_rows(key, ctr, out):
    """One stream per row (ctr + r * 2**128), in a prange loop: the documented
    per-chain convention, so the rows equal rng.uniform_streams."""
    for r in prange(out.shape[0]):
        c0, c1, c2, c3 = nrng.ctr_add(ctr[0], ctr[1], ctr[2], ctr[3], r, 2)
        c = np.empty(4, np.uint64)
        c[0], c[1], c[2], c[3] = c0, c1, c2, c3
        nrng.stream_fill_f32(key, c, 0, out[r])


@pytest.mark.parametrize("ctr", CTRS)
def test_njit_user_raw(ctr):
    for n in (0, 1, 5, 8, 13):
        assert_same(user_raw(words(KEY, 2), words(ctr, 4), n), np_raw(KEY, ctr, n))


@pytest.mark.parametrize("ctr", CTRS)
@pytest.mark.parametrize("first_block", [0, 1, 3])
def test_njit_user_fill(ctr, first_block):
    n32, n64 = 29, 13
    a, b, f64, f32lo, f32hi = user_fill(words(KEY, 2), words(ctr, 4), first_block, n32, n64)
    ref32 = np_uniform(KEY, ctr, 8 * first_block + n32, np.float32)[8 * first_block:]
    ref64 = np_uniform(KEY, ctr, 4 * first_block + n64, np.float64)[4 * first_block:]
    assert_same(a, ref32)
    assert_same(b, ref64)
    assert f64 == ref64[0] and f32lo == ref32[0] and f32hi == ref32[1]


def test_njit_user_prange_rows(restore_threads):
    key = rng.make_key(5)
    ctr = rng.counter(4, 9)  # streams 4.. at epoch 9
    out1 = np.empty((6, 37), np.float32)
    dlkernels.set_num_threads(1)
    user_rows(key, ctr, out1)
    out2 = np.empty_like(out1)
    dlkernels.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    user_rows(key, ctr, out2)
    assert_same(out1, out2)
    assert_same(out1, rng.uniform_streams(key, 37, (4, 10), epoch=9, dtype=np.float32))


# ---- (b) a downstream Cython extension -------------------------------------

DOWNSTREAM_PYX = '''
# cython: language_level=3, boundscheck=False, wraparound=False
"""A user's Cython module that cimports dlkernels' RNG."""
from libc.stdint cimport uint64_t
cimport dlkernels.engine.cython.rng as dlk
from dlkernels.engine.cython.rng cimport dlk_philox4x64_10, dlk_u64_to_f64, dlk_ctr_add


def block(uint64_t k0, uint64_t k1, uint64_t c0, uint64_t c1, uint64_t c2, uint64_t c3):
    """One Philox block through the inline C core."""
    cdef uint64_t out[4]
    dlk_philox4x64_10(c0, c1, c2, c3, k0, k1, out)
    return [out[0], out[1], out[2], out[3]]


def my_uniform(const uint64_t[::1] key, const uint64_t[::1] ctr, double[::1] out):
    """float64 uniforms of the stream, with the user's own loop on the inline core."""
    cdef uint64_t c[4]
    cdef uint64_t blk[4]
    cdef Py_ssize_t i, n = out.shape[0]
    c[0] = ctr[0]; c[1] = ctr[1]; c[2] = ctr[2]; c[3] = ctr[3]
    with nogil:
        for i in range(n):
            if i % 4 == 0:
                dlk_ctr_add(c, 1, 0)
                dlk_philox4x64_10(c[0], c[1], c[2], c[3], key[0], key[1], blk)
            out[i] = dlk_u64_to_f64(blk[i % 4])


def fill_f64(const uint64_t[::1] key, const uint64_t[::1] ctr, uint64_t first_block, double[::1] out):
    """The exported C function of dlkernels' shared object (imported via __pyx_capi__)."""
    if out.shape[0]:
        with nogil:
            dlk.stream_fill_f64(&key[0], &ctr[0], first_block, &out[0], out.shape[0])


def fill_raw(const uint64_t[::1] key, const uint64_t[::1] ctr, uint64_t[::1] out):
    if out.shape[0]:
        dlk.stream_fill_raw(&key[0], &ctr[0], 0, &out[0], out.shape[0])
'''

DOWNSTREAM_SETUP = '''
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

inc = [numpy.get_include(), {root!r}]
setup(
    name="dlk_downstream",
    ext_modules=cythonize(
        [Extension("dlk_downstream", ["dlk_downstream.pyx"], include_dirs=inc,
                   extra_compile_args=["-O1"] if {posix!r} else [])],
        include_path=[{root!r}],
        quiet=True,
    ),
)
'''


@pytest.fixture(scope="module")
def downstream(tmp_path_factory):
    """Builds the downstream extension against the installed dlkernels and imports it."""
    require_backend("cython")
    pytest.importorskip("Cython")
    pytest.importorskip("setuptools")
    d = tmp_path_factory.mktemp("downstream")
    # the directory holding the installed `dlkernels` package: Cython finds
    # dlkernels/engine/cython/rng.pxd below it (on-disk path == import path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(dlkernels.__file__)))
    assert os.path.isfile(os.path.join(root, "dlkernels", "engine", "cython", "rng.pxd"))
    (d / "dlk_downstream.pyx").write_text(DOWNSTREAM_PYX)
    (d / "setup.py").write_text(DOWNSTREAM_SETUP.format(root=root, posix=os.name == "posix"))
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=d,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"downstream build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    so = glob.glob(str(d / "dlk_downstream*.so")) + glob.glob(str(d / "dlk_downstream*.pyd"))
    assert len(so) == 1, so
    spec = importlib.util.spec_from_file_location("dlk_downstream", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("ctr", CTRS)
def test_cython_downstream(downstream, ctr):
    k, c = words(KEY, 2), words(ctr, 4)
    # inline core: block of counter c is numpy's first block of counter c - 1
    got = np.array(downstream.block(*(int(w) for w in k), *(int(w) for w in c)), dtype=np.uint64)
    assert_same(got, np_raw(KEY, (ctr - 1) & M256, 4))
    for n in (1, 3, 8, 21):
        out = np.empty(n)
        downstream.my_uniform(k, c, out)
        assert_same(out, np_uniform(KEY, ctr, n, np.float64))
        for first_block in (0, 2):
            out = np.empty(n)
            downstream.fill_f64(k, c, first_block, out)
            assert_same(out, np_uniform(KEY, ctr, 4 * first_block + n, np.float64)[4 * first_block:])
        raw = np.empty(n, np.uint64)
        downstream.fill_raw(k, c, raw)
        assert_same(raw, np_raw(KEY, ctr, n))


# ---- (c) the C API capsules: ctypes and Numba --------------------------------

U64P = ctypes.POINTER(ctypes.c_uint64)
CAPI = {
    # name: (C signature in the capsule, ctypes prototype)
    "philox4x64_10": ("void (uint64_t const *, uint64_t const *, uint64_t *)",
                      ctypes.CFUNCTYPE(None, U64P, U64P, U64P)),
    "counter_add": ("void (uint64_t *, uint64_t, int)",
                    ctypes.CFUNCTYPE(None, U64P, ctypes.c_uint64, ctypes.c_int)),
    "stream_fill_raw": ("void (uint64_t const *, uint64_t const *, uint64_t, uint64_t *, Py_ssize_t)",
                        ctypes.CFUNCTYPE(None, U64P, U64P, ctypes.c_uint64, U64P, ctypes.c_ssize_t)),
    "stream_fill_f64": ("void (uint64_t const *, uint64_t const *, uint64_t, double *, Py_ssize_t)",
                        ctypes.CFUNCTYPE(None, U64P, U64P, ctypes.c_uint64,
                                         ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)),
    "stream_fill_f32": ("void (uint64_t const *, uint64_t const *, uint64_t, float *, Py_ssize_t)",
                        ctypes.CFUNCTYPE(None, U64P, U64P, ctypes.c_uint64,
                                         ctypes.POINTER(ctypes.c_float), ctypes.c_ssize_t)),
    "stream_fill_f32_f64": ("void (uint64_t const *, uint64_t const *, uint64_t, double *, "
                            "Py_ssize_t)",
                            ctypes.CFUNCTYPE(None, U64P, U64P, ctypes.c_uint64,
                                             ctypes.POINTER(ctypes.c_double), ctypes.c_ssize_t)),
}

_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.restype = ctypes.c_char_p
_get_name.argtypes = [ctypes.py_object]
_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capi_address(name):
    from dlkernels.engine.cython import rng as crng

    cap = crng.__pyx_capi__[name]
    addr = _get_pointer(cap, _get_name(cap))
    assert addr
    return addr


def capi(name):
    return CAPI[name][1](capi_address(name))


def ptr(a, ctype=ctypes.c_uint64):
    return a.ctypes.data_as(ctypes.POINTER(ctype))


def test_capi_signatures():
    require_backend("cython")
    from dlkernels.engine.cython import rng as crng

    assert set(CAPI) <= set(crng.__pyx_capi__)
    for name, (sig, _) in CAPI.items():
        assert _get_name(crng.__pyx_capi__[name]).decode() == sig


@pytest.mark.parametrize("ctr", CTRS)
def test_capi_ctypes(ctr):
    require_backend("cython")
    k, c = words(KEY, 2), words(ctr, 4)
    out = np.empty(4, np.uint64)
    capi("philox4x64_10")(ptr(k), ptr(c), ptr(out))
    assert_same(out, np_raw(KEY, (ctr - 1) & M256, 4))

    cc = c.copy()
    capi("counter_add")(ptr(cc), 5, 0)
    assert_same(cc, words((ctr + 5) & M256, 4))
    cc = c.copy()
    capi("counter_add")(ptr(cc), M64, 2)
    assert_same(cc, words((ctr + (M64 << 128)) & M256, 4))

    for n, first_block in ((1, 0), (7, 0), (9, 1), (33, 2)):
        raw = np.empty(n, np.uint64)
        capi("stream_fill_raw")(ptr(k), ptr(c), first_block, ptr(raw), n)
        assert_same(raw, np_raw(KEY, ctr, 4 * first_block + n)[4 * first_block:])
        f64 = np.empty(n, np.float64)
        capi("stream_fill_f64")(ptr(k), ptr(c), first_block, ptr(f64, ctypes.c_double), n)
        assert_same(f64, np_uniform(KEY, ctr, 4 * first_block + n, np.float64)[4 * first_block:])
        f32 = np.empty(n, np.float32)
        capi("stream_fill_f32")(ptr(k), ptr(c), first_block, ptr(f32, ctypes.c_float), n)
        assert_same(f32, np_uniform(KEY, ctr, 8 * first_block + n, np.float32)[8 * first_block:])
        # the float32 uniforms stored as doubles (the float64 RBM kernels' draws)
        f32d = np.empty(n, np.float64)
        capi("stream_fill_f32_f64")(ptr(k), ptr(c), first_block, ptr(f32d, ctypes.c_double), n)
        assert_same(f32d, np_uniform(KEY, ctr, 8 * first_block + n,
                                     np.float32)[8 * first_block:].astype(np.float64))


@functools.lru_cache(maxsize=None)
def _numba_capi_functions():
    vp = ctypes.c_void_p
    block = ctypes.CFUNCTYPE(None, vp, vp, vp)(capi_address("philox4x64_10"))
    fill32 = ctypes.CFUNCTYPE(None, vp, vp, ctypes.c_uint64, vp, ctypes.c_ssize_t)(
        capi_address("stream_fill_f32"))

    @njit
    def via_capi(key, ctr, n):
        # one block through the capsule's philox4x64_10, then a stream fill
        blk = np.empty(4, np.uint64)
        block(key.ctypes, ctr.ctypes, blk.ctypes)
        out = np.empty(n, np.float32)
        fill32(key.ctypes, ctr.ctypes, 0, out.ctypes, n)
        return blk, out

    return via_capi


@pytest.mark.parametrize("ctr", CTRS[::2])
def test_capi_from_numba(ctr):
    require_backend("cython")
    via_capi = _numba_capi_functions()
    k, c = words(KEY, 2), words(ctr, 4)
    blk, out = via_capi(k, c, 19)
    assert_same(blk, np_raw(KEY, (ctr - 1) & M256, 4))
    assert_same(out, np_uniform(KEY, ctr, 19, np.float32))
