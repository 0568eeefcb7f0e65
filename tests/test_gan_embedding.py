"""The GAN kernels from a user's own compiled code: the Numba kernels from an
``@njit`` function, the Cython C-level exports (``gan.__pyx_capi__``) through
ctypes; both equal the public functions."""
import ctypes

import numpy as np
import pytest
from numba import njit

from dlkernels import gan

FAMILY = "gan"


def _layer_inputs(dtype, p=3):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4)).astype(dtype)
    W = rng.standard_normal((4, 6 * p)).astype(dtype)
    b = rng.standard_normal(6 * p).astype(dtype)
    return x, W, b


def test_njit_user_calls_layer_kernels(dtype):
    from dlkernels.engine.numba import gan as eng

    @njit
    def user(x, W, b, pre, y, idx, gy, gpre, gx, gW, gb):
        eng.layer_forward(x, W, b, eng.MAXOUT, W[0, 0] * 0, pre, y, y, idx, True)
        for i in range(y.shape[0]):
            for j in range(y.shape[1]):
                gy[i, j] = y[i, j]
        eng.layer_backward(x, W, gy, y, idx, eng.MAXOUT, gpre, gx, gW, gb, True, True)
        return y.sum()

    x, W, b = _layer_inputs(dtype)
    pre, y = np.empty((5, 18), dtype), np.empty((5, 6), dtype)
    idx, gy, gpre = np.empty((5, 6), np.int32), np.empty((5, 6), dtype), np.empty((5, 18), dtype)
    gx, gW, gb = np.empty((5, 4), dtype), np.empty((4, 18), dtype), np.empty(18, dtype)
    user(x, W, b, pre, y, idx, gy, gpre, gx, gW, gb)
    y_ref, arg = gan.dense_forward(x, W, b, "maxout", pieces=3, backend="numba")
    np.testing.assert_array_equal(y, y_ref)
    gx_ref, gW_ref, gb_ref = gan.dense_backward(x, W, y_ref, arg, "maxout", pieces=3,
                                                backend="numba")
    np.testing.assert_array_equal(gx, gx_ref)
    np.testing.assert_array_equal(gW, gW_ref)
    np.testing.assert_array_equal(gb, gb_ref)


_get_name = ctypes.pythonapi.PyCapsule_GetName
_get_name.restype = ctypes.c_char_p
_get_name.argtypes = [ctypes.py_object]
_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _capi(mod, name, restype, *argtypes):
    cap = mod.__pyx_capi__[name]
    addr = _get_pointer(cap, _get_name(cap))
    return ctypes.CFUNCTYPE(restype, *argtypes)(addr)


def _p(a):
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_cython_capi_layer_and_loss(dtype):
    cg = pytest.importorskip("dlkernels.engine.cython.gan")
    sfx = "f32" if dtype == np.float32 else "f64"
    real = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    vp, i = ctypes.c_void_p, ctypes.c_int
    names = {f"layer_forward_{sfx}", f"layer_backward_{sfx}", f"logit_loss_{sfx}"}
    assert names <= set(cg.__pyx_capi__)
    fwd = _capi(cg, f"layer_forward_{sfx}", None, vp, vp, vp, i, i, i, i, i, real, vp, vp, vp,
                vp, ctypes.c_int)
    bwd = _capi(cg, f"layer_backward_{sfx}", None, vp, vp, vp, vp, vp, i, i, i, i, i, vp, vp, vp,
                vp, ctypes.c_int, ctypes.c_int)
    loss = _capi(cg, f"logit_loss_{sfx}", ctypes.c_double, vp, i, i, i, vp)
    x, W, b = _layer_inputs(dtype)
    pre, y = np.empty((5, 18), dtype), np.empty((5, 6), dtype)
    idx = np.empty((5, 6), np.int32)
    fwd(_p(x), _p(W), _p(b), 5, 4, 6, 3, 5, 0.0, _p(pre), _p(y), None, _p(idx), 1)
    y_ref, arg = gan.dense_forward(x, W, b, "maxout", pieces=3, backend="cython")
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, arg)
    gy = y.copy()
    gpre, gx = np.empty((5, 18), dtype), np.empty((5, 4), dtype)
    gW, gb = np.empty((4, 18), dtype), np.empty(18, dtype)
    bwd(_p(x), _p(W), _p(gy), None, _p(idx), 5, 4, 6, 3, 5, _p(gpre), _p(gx), _p(gW), _p(gb), 1, 1)
    for a, r in zip((gx, gW, gb), gan.dense_backward(x, W, y_ref, arg, "maxout", pieces=3,
                                                     backend="cython")):
        np.testing.assert_array_equal(a, r)
    L = np.array([[3.0], [-2.0], [40.0], [-1e4]], dtype)
    G = np.empty_like(L)
    val = loss(_p(L), 4, 2, 0, _p(G))
    sp = lambda t: np.logaddexp(0, t)  # noqa: E731
    np.testing.assert_allclose(val, (sp(-3.0) + sp(2.0) + sp(40.0) + sp(-1e4)) / 2, rtol=1e-6)
