"""The shared fast math (engine/numba/_fastmath.py, engine/cython/dlk_fastmath.h).

Accuracy is measured in ulp of the exact result, with a long-double (x87,
64-bit mantissa) reference: its own error is ~2**-11 float64 ulp, far below
the bounds tested.  float32 inputs cover the whole range by a stride over
all 2**32 bit patterns plus a dense grid over [-110, 110]; float64 inputs are
random bit patterns (every exponent) plus a dense grid over [-750, 750].
The bounds asserted are the ones documented in the module docstring.
"""
import numpy as np
import pytest
from conftest import require_backend

from dlkernels.engine.numba import _fastmath as nf

FAMILY = "rng"
L = np.longdouble
OPS = {"exp": nf.OP_EXP, "sigmoid": nf.OP_SIGMOID, "tanh": nf.OP_TANH,
       "softplus": nf.OP_SOFTPLUS, "log_sigmoid": nf.OP_LOG_SIGMOID}
# documented bounds (ulp), float32 / float64
BOUNDS = {"exp": (1.0, 2.0), "sigmoid": (3.0, 2.5), "tanh": (1.5, 1.5),
          "softplus": (2.0, 2.0), "log_sigmoid": (2.0, 2.0)}

pytestmark = pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63,
                                reason="needs an 80-bit long double reference")


def _softplus_ref(x):
    return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(-np.abs(x))))


def _reference(name, x):
    xl = x.astype(L)
    with np.errstate(all="ignore"):
        if name == "exp":
            return np.exp(xl)
        if name == "sigmoid":
            return 1 / (1 + np.exp(-xl))
        if name == "tanh":
            return np.tanh(xl)
        if name == "softplus":
            return _softplus_ref(xl)
        return -_softplus_ref(-xl)


def _inputs(dtype):
    if dtype == np.float32:
        bits = np.arange(0, 2**32, 19997, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        x = np.concatenate([x[np.isfinite(x)], np.linspace(-110, 110, 200_001, dtype=np.float32)])
    else:
        g = np.random.default_rng(7)
        x = g.integers(0, 2**63, 200_000, dtype=np.uint64).view(np.float64)
        x = x[np.isfinite(x)] * np.where(g.random(np.isfinite(x).sum()) < 0.5, -1.0, 1.0)
        x = np.concatenate([x, np.linspace(-750, 750, 200_001)])
    return np.ascontiguousarray(x)


def _ulp_errors(res, ref, dtype):
    """|res - ref| in ulp of the exact result (ulp of its rounding to dtype)."""
    with np.errstate(over="ignore"):
        rounded = ref.astype(dtype)
    ok = np.isfinite(rounded)
    assert np.array_equal(np.isfinite(res[ok]), ok[ok]), "a finite result became inf/nan"
    spacing = np.spacing(np.abs(rounded[ok])).astype(L)
    return np.abs(res[ok].astype(L) - ref[ok]) / spacing, ok


def _map(backend, op, x):
    out = np.empty_like(x)
    if backend == "numba":
        nf.map_unary(op, x, out)
    else:
        from dlkernels.engine.cython import _fastmath_ops as cf

        cf.map_unary(op, x, out)
    return out


@pytest.mark.parametrize("name", sorted(OPS))
def test_accuracy_whole_range(name, dtype):
    x = _inputs(dtype)
    res = _map("numba", OPS[name], x)
    ref = _reference(name, x)
    err, ok = _ulp_errors(res, ref, dtype)
    bound = BOUNDS[name][0 if dtype == np.float32 else 1]
    if name == "sigmoid":
        # bound documented for normal results; below, an absolute bound
        tiny = np.finfo(dtype).tiny
        normal = ref[ok] >= tiny
        assert err[normal].max() <= bound
        assert np.abs(res[ok][~normal].astype(L) - ref[ok][~normal]).max() <= tiny
    else:
        assert err.max() <= bound, (name, float(err.max()))
    # results whose exact value overflows the dtype are +inf (exp only)
    with np.errstate(over="ignore"):
        over = ~np.isfinite(ref.astype(dtype)) & ~np.isnan(x)
    assert np.all(res[over] == np.inf)


SPECIAL = {
    # name: [(x, expected)] exact expectations from the definitions
    "exp": [(np.inf, np.inf), (-np.inf, 0.0), (0.0, 1.0), (-0.0, 1.0), (1e3, np.inf), (-1e3, 0.0)],
    "sigmoid": [(np.inf, 1.0), (-np.inf, 0.0), (0.0, 0.5), (-0.0, 0.5), (200.0, 1.0)],
    "tanh": [(np.inf, 1.0), (-np.inf, -1.0), (0.0, 0.0), (30.0, 1.0), (-30.0, -1.0)],
    "softplus": [(np.inf, np.inf), (-np.inf, 0.0), (200.0, 200.0)],
    "log_sigmoid": [(np.inf, 0.0), (-np.inf, -np.inf), (-200.0, -200.0)],
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_special_values(name, dtype, backend):
    cases = SPECIAL[name]
    x = np.array([c[0] for c in cases] + [np.nan], dtype=dtype)
    out = _map(backend, OPS[name], x)
    np.testing.assert_array_equal(out[:-1], np.array([c[1] for c in cases], dtype=dtype))
    assert np.isnan(out[-1])


def test_tanh_keeps_sign_of_zero_and_subnormals(dtype, backend):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-0.0, 0.0, tiny, -tiny, 3 * tiny], dtype=dtype)
    out = _map(backend, OPS["tanh"], x)
    np.testing.assert_array_equal(out, x)  # tanh(x) rounds to x for |x| this small
    assert np.signbit(out[0]) and not np.signbit(out[1])


def test_exp_subnormal_results(dtype, backend):
    # exp of the log of a subnormal: the result is that subnormal to within an ulp of it
    tiny = np.finfo(dtype).smallest_subnormal
    targets = np.array([tiny * 3, tiny * 1000, np.finfo(dtype).tiny / 2], dtype=dtype)
    x = np.log(targets.astype(L)).astype(dtype)
    out = _map(backend, OPS["exp"], x)
    ref = np.exp(x.astype(L))
    assert np.all(np.abs(out.astype(L) - ref) <= tiny)


@pytest.mark.parametrize("name", sorted(OPS))
def test_backends_bit_identical(name, dtype):
    require_backend("cython", FAMILY)
    x = _inputs(dtype)[::7].copy()
    a = _map("numba", OPS[name], x)
    b = _map("cython", OPS[name], x)
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_parallel_map_equals_serial(dtype, restore_threads):
    import dlkernels
    from dlkernels.engine.cython import _fastmath_ops as cf

    x = np.linspace(-30, 30, 100_003).astype(dtype)
    ser = _map("numba", OPS["tanh"], x)
    for n in (1, 2):
        dlkernels.set_num_threads(n)
        a = np.empty_like(x)
        nf.pmap_unary(OPS["tanh"], x, a)
        b = np.empty_like(x)
        cf.pmap_unary(OPS["tanh"], x, b)
        assert np.array_equal(a, ser) and np.array_equal(b, ser)


def test_usable_from_user_njit():
    from numba import njit

    @njit
    def f(x):
        return nf.tanh32(x) + nf.exp64(1.0)

    assert f(np.float32(0.5)) == pytest.approx(np.tanh(0.5) + np.e, rel=1e-6)


def test_tanh_pair_accuracy(dtype):
    # tanh_pair32/64 (attention's tanh score from per-query and per-key
    # exponentials): <= 2.5 ulp of tanh(q + k) (the rounded sum, what the
    # plain tanh gets) for |q|, |k| <= TANH_PAIR_MAX, the range the kernels
    # use it in (measured max 2.1-2.2 ulp); the sign of a zero sum kept.  The
    # C twins are held to the same bits by the attention kernels' Numba ==
    # Cython tests.
    from numba import njit

    pair, ex = (nf.tanh_pair32, nf.exp32) if dtype == np.float32 else (nf.tanh_pair64, nf.exp64)

    @njit
    def run(q, k, out):
        two = q.dtype.type(2.0)
        for i in range(q.size):
            ep = ex(two * q[i]) * ex(two * k[i])
            en = ex(-two * q[i]) * ex(-two * k[i])
            out[i] = pair(q[i] + k[i], ep, en)

    g = np.random.default_rng(8)
    lim = nf.TANH_PAIR_MAX
    for scale in (0.05, 0.5, 2.0, 8.0, 30.0):
        q = np.clip(g.standard_normal(300_000) * scale, -lim, lim).astype(dtype)
        k = np.clip(g.standard_normal(300_000) * scale, -lim, lim).astype(dtype)
        out = np.empty_like(q)
        run(q, k, out)
        err, ok = _ulp_errors(out, np.tanh((q + k).astype(L)), dtype)
        assert ok.all() and err.max() <= 2.5, (scale, float(err.max()))
    q = np.array([0.5, -0.0, 0.0, -3.0, lim, -lim], dtype)
    k = np.array([-0.5, -0.0, -0.0, 3.0, lim, -lim], dtype)
    out = np.empty_like(q)
    run(q, k, out)
    np.testing.assert_array_equal(np.signbit(out), [False, True, False, False, False, True])
    np.testing.assert_array_equal(out[:4], 0)
    assert out[4] == 1 and out[5] == -1
