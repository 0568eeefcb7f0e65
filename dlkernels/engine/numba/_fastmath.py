"""Scalar math for the Numba kernels of every family (shared).

Twin of ``dlkernels/engine/cython/dlk_fastmath.h`` (cimported through
``_fastmath.pxd``): every function performs the same IEEE operations in the
same order as its C twin, so both backends give bit-identical results (the
Cython builds use ``-ffp-contract=off``; LLVM does not contract either).
All functions are ``@njit(inline="always")`` scalars, usable in a user's own
``@njit`` code; they contain only +, -, *, /, comparisons-as-selects, bit
casts and integer ops, so loops over them vectorize (libm calls do not).

Error bounds (ulp of the correctly rounded result; measured by
``tests/test_fastmath.py`` over the whole range of each dtype, against a
long-double reference):

==================  =========  =========  ========================================
function            float32    float64    notes
==================  =========  =========  ========================================
exp                 <= 1       <= 2       Cody-Waite reduction; Cephes' expf
                                          polynomial (f32) and exp rational (f64);
                                          2**k applied in two steps, so results
                                          are right down to the subnormals
sigmoid             <= 3       <= 2.5     f32: ``1 / (1 + exp(-x))`` with the
                                          polynomial exp clamped to [-87, 88] (the
                                          RBM's historical form); f64: libm exp.
                                          Bound for results >= the smallest normal;
                                          below it the absolute error is < 2**-126
                                          (f32) / 2**-1022 (f64)
tanh                <= 1.5     <= 1.5     odd Cephes polynomial / rational for
                                          |x| < 0.625, ``1 - 2 / (exp(2|x|) + 1)``
                                          above, sign restored with copysign
tanh_pair           <= 2.5     <= 2.5     tanh(q + k) from exp(+-2q) exp(+-2k) made
                                          by the caller (|q|, |k| <= 20): tanh's
                                          small-argument form, else
                                          ``1 - 2 / (exp(2|x|) + 1)`` with one
                                          product for the exp (attention)
softplus            <= 2       <= 2       ``max(x,0) + log1p(exp(-|x|))``, libm
log_sigmoid         <= 2       <= 2       ``-softplus(-x)``
==================  =========  =========  ========================================

Special values: NaN -> NaN for every function; exp(+inf) = +inf,
exp(-inf) = 0; sigmoid(+-inf) = 1 / 0; tanh(+-inf) = +-1, tanh(-0) = -0;
subnormal inputs behave as the tiny numbers they are.

``sigmoid64`` / ``softplus*`` keep libm's exp / log1p: they are the RBM
family's historical forms (changing them would change recorded bits); the
polynomial ``exp64`` is there for kernels that need a vectorizable exp.
The coefficients are the published Cephes minimax fits (S. L. Moshier,
*Methods and Programs for Mathematical Functions*, 1989).
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

__all__ = ["exp32", "exp64", "sigmoid32", "sigmoid64", "softplus32", "softplus64",
           "log_sigmoid32", "log_sigmoid64", "tanh32", "tanh64", "tanh_pair32", "tanh_pair64",
           "TANH_PAIR_MAX", "f32_from_bits",
           "f64_from_bits", "map_unary", "pmap_unary", "OP_EXP", "OP_SIGMOID", "OP_TANH",
           "OP_SOFTPLUS", "OP_LOG_SIGMOID", "sigmoid64_split", "expneg64", "f64_bits",
           "f64_from_ubits", "all_finite", "sigmoid", "softplus", "tanh", "exp", "tanh_pair",
           "log_sigmoid"]


def _bitcast(name, doc, arg_kind, src, dst, ir_type):
    """An intrinsic ``name(x)``: x (any ``arg_kind``, converted to ``src``)
    with its bits read as ``dst`` (one LLVM bitcast; vectorizable)."""
    def typer(typingctx, x):
        if not isinstance(x, arg_kind):
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir_type)

        return dst(src), codegen

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


f32_from_bits = _bitcast("f32_from_bits", "The float32 whose bits are the int32 ``i``.",
                         types.Integer, types.int32, types.float32, ir.FloatType())
f64_from_bits = _bitcast("f64_from_bits", "The float64 whose bits are the int64 ``i``.",
                         types.Integer, types.int64, types.float64, ir.DoubleType())


_ONE32 = np.float32(1.0)
_TWO32 = np.float32(2.0)
_ZERO32 = np.float32(0.0)
_INF32 = np.float32(np.inf)
_LOG2E32 = np.float32(1.44269504088896341)
_MAGIC32 = np.float32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_LN2_HI32 = np.float32(0.693359375)
_LN2_LO32 = np.float32(-2.12194440e-4)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
# sigmoid32's historical clamp of exp's argument
_SIG_HI32 = np.float32(88.0)
_SIG_LO32 = np.float32(-87.0)
# exp32's clamp: below -104 the result rounds to 0, above 88.75 to +inf
_EXP_HI32 = np.float32(88.75)
_EXP_LO32 = np.float32(-104.0)
_I127 = np.int32(127)
_I23 = np.int32(23)
_I1 = np.int32(1)


@njit(cache=True, error_model="numpy", inline="always")
def _exp32_poly(r):
    """exp(r) for |r| <= ln2 / 2 (Cephes' expf polynomial)."""
    return (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r * r + r + _ONE32


@njit(cache=True, error_model="numpy", inline="always")
def exp32(x):
    """exp(x) in float32, vectorizable, <= 1 ulp (subnormal results included)."""
    t = x if x < _EXP_HI32 else _EXP_HI32
    t = t if t > _EXP_LO32 else _EXP_LO32
    kf = (t * _LOG2E32 + _MAGIC32) - _MAGIC32
    r = (t - kf * _LN2_HI32) - kf * _LN2_LO32
    k = np.int32(kf)
    k1 = k >> _I1
    k2 = k - k1
    e = (_exp32_poly(r) * f32_from_bits((k1 + _I127) << _I23)) * f32_from_bits((k2 + _I127) << _I23)
    return x if x != x else e


@njit(cache=True, error_model="numpy", inline="always")
def sigmoid32(x):
    """1 / (1 + exp(-x)) in float32 with the polynomial exp (<= 3 ulp); exactly
    0 below -88 and 1 above 87; NaN -> NaN."""
    t = -x
    tc = t if t < _SIG_HI32 else _SIG_HI32
    tc = tc if tc > _SIG_LO32 else _SIG_LO32
    kf = (tc * _LOG2E32 + _MAGIC32) - _MAGIC32
    r = (tc - kf * _LN2_HI32) - kf * _LN2_LO32
    e = _exp32_poly(r) * f32_from_bits((np.int32(kf) + _I127) << _I23)
    e = _INF32 if t > _SIG_HI32 else e
    s = _ONE32 / (_ONE32 + e)
    return x if x != x else s


@njit(cache=True, error_model="numpy", inline="always")
def sigmoid64(x):
    """1 / (1 + exp(-x)) in float64 with libm's exp (<= 2.5 ulp); NaN -> NaN."""
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True, error_model="numpy", inline="always")
def softplus32(x):
    """log(1 + exp(x)) in float32, stable: x + log1p(exp(-x)) for x > 0."""
    if x > _ZERO32:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, error_model="numpy", inline="always")
def softplus64(x):
    """log(1 + exp(x)) in float64, stable: x + log1p(exp(-x)) for x > 0."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@njit(cache=True, error_model="numpy", inline="always")
def log_sigmoid32(x):
    """log(sigmoid(x)) = -softplus(-x) in float32."""
    return -softplus32(-x)


@njit(cache=True, error_model="numpy", inline="always")
def log_sigmoid64(x):
    """log(sigmoid(x)) = -softplus(-x) in float64."""
    return -softplus64(-x)


# tanh, float32: Cephes tanhf's odd polynomial on |x| < 0.625
_T0 = np.float32(-5.70498872745e-3)
_T1 = np.float32(2.06390887954e-2)
_T2 = np.float32(-5.37397155531e-2)
_T3 = np.float32(1.33314422036e-1)
_T4 = np.float32(-3.33332819422e-1)
_TSMALL32 = np.float32(0.625)
_TBIG32 = np.float32(9.5)  # tanh rounds to 1 in float32 above ~9.01


@njit(cache=True, error_model="numpy", inline="always")
def _tanh_small32(ax):
    """tanh(ax) for 0 <= ax < 0.625 (Cephes tanhf's odd polynomial)."""
    z = ax * ax
    return ((((_T0 * z + _T1) * z + _T2) * z + _T3) * z + _T4) * z * ax + ax


@njit(cache=True, error_model="numpy", inline="always")
def tanh32(x):
    """tanh(x) in float32, vectorizable, <= 1.5 ulp; tanh(-0) = -0, NaN -> NaN."""
    ax = abs(x)
    ps = _tanh_small32(ax)
    axc = ax if ax < _TBIG32 else _TBIG32
    t = _TWO32 * axc
    kf = (t * _LOG2E32 + _MAGIC32) - _MAGIC32
    r = (t - kf * _LN2_HI32) - kf * _LN2_LO32
    e = _exp32_poly(r) * f32_from_bits((np.int32(kf) + _I127) << _I23)
    pl = _ONE32 - _TWO32 / (e + _ONE32)
    res = ps if ax < _TSMALL32 else pl
    res = math.copysign(res, x)
    return x if x != x else res


# exp, float64: Cephes' rational approximation on |r| <= ln2 / 2
_LOG2E64 = 1.4426950408889634
_MAGIC64 = 6755399441055744.0  # 1.5 * 2**52
_C1 = 6.93145751953125e-1
_C2 = 1.42860682030941723212e-6
_EP0 = 1.26177193074810590878e-4
_EP1 = 3.02994407707441961300e-2
_EP2 = 9.99999999999999999910e-1
_EQ0 = 3.00198505138664455042e-6
_EQ1 = 2.52448340349684104192e-3
_EQ2 = 2.27265548208155028766e-1
_EQ3 = 2.00000000000000000009e0
_EXP_HI64 = 709.875  # above: +inf
_EXP_LO64 = -746.0   # below: 0
_I1023 = np.int64(1023)
_I52 = np.int64(52)
_L1 = np.int64(1)


@njit(cache=True, error_model="numpy", inline="always")
def _exp64_red(t):
    """(exp(r), k) with t = k ln2 + r, |r| <= ln2 / 2, for |t| < 2**30."""
    kf = (t * _LOG2E64 + _MAGIC64) - _MAGIC64
    r = (t - kf * _C1) - kf * _C2
    rr = r * r
    px = r * ((_EP0 * rr + _EP1) * rr + _EP2)
    qx = ((_EQ0 * rr + _EQ1) * rr + _EQ2) * rr + _EQ3
    return 1.0 + 2.0 * (px / (qx - px)), np.int64(np.int32(kf))


@njit(cache=True, error_model="numpy", inline="always")
def exp64(x):
    """exp(x) in float64, vectorizable, <= 2 ulp (subnormal results included)."""
    t = x if x < _EXP_HI64 else _EXP_HI64
    t = t if t > _EXP_LO64 else _EXP_LO64
    p, k = _exp64_red(t)
    k1 = k >> _L1
    k2 = k - k1
    e = (p * f64_from_bits((k1 + _I1023) << _I52)) * f64_from_bits((k2 + _I1023) << _I52)
    return x if x != x else e


# tanh, float64: Cephes tanh's rational form on |x| < 0.625
_TP0 = -9.64399179425052238628e-1
_TP1 = -9.92877231001918586564e1
_TP2 = -1.61468768441708447952e3
_TQ0 = 1.12811678491632931402e2
_TQ1 = 2.23548839060100448583e3
_TQ2 = 4.84406305325125486048e3
_TBIG64 = 20.0  # tanh rounds to 1 in float64 above ~19.06


@njit(cache=True, error_model="numpy", inline="always")
def _tanh_small64(ax):
    """tanh(ax) for 0 <= ax < 0.625 (Cephes tanh's rational form)."""
    z = ax * ax
    return ax + ax * z * (((_TP0 * z + _TP1) * z + _TP2) / (((z + _TQ0) * z + _TQ1) * z + _TQ2))


@njit(cache=True, error_model="numpy", inline="always")
def tanh64(x):
    """tanh(x) in float64, vectorizable, <= 1.5 ulp; tanh(-0) = -0, NaN -> NaN."""
    ax = abs(x)
    ps = _tanh_small64(ax)
    axc = ax if ax < _TBIG64 else _TBIG64
    p, k = _exp64_red(2.0 * axc)
    e = p * f64_from_bits((k + _I1023) << _I52)
    pl = 1.0 - 2.0 / (e + 1.0)
    res = ps if ax < 0.625 else pl
    res = math.copysign(res, x)
    return x if x != x else res


# tanh of a sum x = q + k whose exponentials the caller has made once per q and
# per k (attention's additive score: Tq + Tk rows of exps serve Tq * Tk rows of
# tanh): ep = exp(2q) exp(2k), en = exp(-2q) exp(-2k); then exp(2|x|) is ep
# or en, one product instead of an exp per element.  The caller must keep
# |q|, |k| <= TANH_PAIR_MAX (products within the normal range, no inf * 0).
TANH_PAIR_MAX = 20.0


@njit(cache=True, error_model="numpy", inline="always")
def tanh_pair32(x, ep, en):
    """tanh(x) in float32 from ep ~ exp(2x), en ~ exp(-2x) (see above): the
    small-argument polynomial of tanh32 below 0.625, ``1 - 2 / (exp(2|x|) +
    1)`` above, sign restored; vectorizable, <= 2.5 ulp (tests/test_fastmath.py)."""
    ax = abs(x)
    ps = _tanh_small32(ax)
    ee = ep if x >= _ZERO32 else en
    pl = _ONE32 - _TWO32 / (ee + _ONE32)
    res = ps if ax < _TSMALL32 else pl
    return math.copysign(res, x)


@njit(cache=True, error_model="numpy", inline="always")
def tanh_pair64(x, ep, en):
    """tanh(x) in float64 from ep ~ exp(2x), en ~ exp(-2x) (see tanh_pair32)."""
    ax = abs(x)
    ps = _tanh_small64(ax)
    ee = ep if x >= 0.0 else en
    pl = 1.0 - 2.0 / (ee + 1.0)
    res = ps if ax < 0.625 else pl
    return math.copysign(res, x)


# ---- array maps (tests, benchmarks, users who want a fast ufunc-like call) ----
OP_EXP = 0
OP_SIGMOID = 1
OP_TANH = 2
OP_SOFTPLUS = 3
OP_LOG_SIGMOID = 4


# ---- one name for both dtypes ------------------------------------------------------------
def _per_dtype(name, f32, f64, arity=1):
    """``name(x, ...)`` in Numba code: ``f32(x, ...)`` for a float32 x, else
    ``f64(x, ...)`` (for kernels written once for both dtypes; resolved when
    typed, so it costs nothing at run time).  ``arity``: 1 or 3 (Numba cannot
    inline a closure called with ``*args``)."""
    if arity == 1:
        def stub(x):
            raise NotImplementedError(f"{name}: callable from Numba code only")

        def typer(x):
            f = f32 if x == types.float32 else f64
            return lambda x: f(x)
    else:
        def stub(x, ep, en):
            raise NotImplementedError(f"{name}: callable from Numba code only")

        def typer(x, ep, en):
            f = f32 if x == types.float32 else f64
            return lambda x, ep, en: f(x, ep, en)

    stub.__name__ = stub.__qualname__ = name
    typer.__name__ = typer.__qualname__ = f"_ov_{name}"
    overload(stub)(typer)
    return stub


sigmoid = _per_dtype("sigmoid", sigmoid32, sigmoid64)
softplus = _per_dtype("softplus", softplus32, softplus64)
tanh = _per_dtype("tanh", tanh32, tanh64)
exp = _per_dtype("exp", exp32, exp64)
tanh_pair = _per_dtype("tanh_pair", tanh_pair32, tanh_pair64, arity=3)
log_sigmoid = _per_dtype("log_sigmoid", log_sigmoid32, log_sigmoid64)


@njit(cache=True, error_model="numpy", inline="always")
def _map_range(op, x, out, i0, i1):
    if op == OP_EXP:
        for i in range(i0, i1):
            out[i] = exp(x[i])
    elif op == OP_SIGMOID:
        for i in range(i0, i1):
            out[i] = sigmoid(x[i])
    elif op == OP_TANH:
        for i in range(i0, i1):
            out[i] = tanh(x[i])
    elif op == OP_SOFTPLUS:
        for i in range(i0, i1):
            out[i] = softplus(x[i])
    else:
        for i in range(i0, i1):
            out[i] = log_sigmoid(x[i])


@njit(cache=True, error_model="numpy")
def map_unary(op, x, out):
    """out[i] = f(x[i]) for 1-d contiguous x, out of one float dtype; f by ``op``
    (OP_EXP, OP_SIGMOID, OP_TANH, OP_SOFTPLUS, OP_LOG_SIGMOID).  Serial."""
    _map_range(op, x, out, 0, x.shape[0])


_MAP_CHUNK = 16384


@njit(cache=True, error_model="numpy", parallel=True)
def pmap_unary(op, x, out):
    """``map_unary`` over chunks of 16384 elements in parallel (prange)."""
    n = x.shape[0]
    nchunks = (n + _MAP_CHUNK - 1) // _MAP_CHUNK
    for c in prange(nchunks):
        i0 = c * _MAP_CHUNK
        i1 = min(n, i0 + _MAP_CHUNK)
        # on slices: indexed over the whole arrays inside the prange body the
        # loops are not vectorized -- 0.45-0.49 G elements/s on one thread
        # against 1.6-2.1 G (float32 exp, sigmoid, tanh; AMD Zen 4, AVX-512)
        _map_range(op, x[i0:i1], out[i0:i1], 0, i1 - i0)



# ---- distinct variants kept for the RBM MCMC kernels' recorded bits ----------
# These compute the same functions as above in a different order of IEEE
# operations; merging them into sigmoid64 / exp64 would change the recorded
# outputs of single-site Gibbs and AIS (tests/test_digests.py), so they stay,
# once, here.  Twins in dlk_fastmath.h.

f64_bits = _bitcast("f64_bits", "The IEEE-754 bits of a float64, as uint64.",
                    types.Float, types.float64, types.uint64, ir.IntType(64))
f64_from_ubits = _bitcast("f64_from_ubits", "The float64 whose bits are the uint64 ``u``.",
                          types.Integer, types.uint64, types.float64, ir.DoubleType())


@njit(cache=True, error_model="numpy", inline="always")
def sigmoid64_split(x):
    """sigmoid in float64, two-sided: ``1 / (1 + exp(-x))`` for x >= 0, else
    ``e / (1 + e)`` with ``e = exp(x)`` (libm exp; <= 2.5 ulp either way).

    Why a second float64 sigmoid: it is the form the single-site Gibbs sampler
    has always used (exp never overflows in it); it rounds differently from
    ``sigmoid64`` for x < 0, so replacing it would change recorded chains."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# expneg64: Cody-Waite reduction x = k ln2 + r (|r| <= ln2/2, k by the
# 1.5 * 2**52 shifter, read back from the shifted value's low bits), exp(r) by
# its degree-13 Taylor polynomial (truncation < 5e-18 relative), 2**k put into
# the exponent bits.  <= 2 ulp against the correctly rounded exp on [-40, 0]
# (tests/test_rbm_mcmc.py measures it).
_XN_SHIFT = 6755399441055744.0          # 1.5 * 2**52
_XN_LN2_HI = 0.6931471803691238         # ln2 split (Cody-Waite), hi has 32 bits
_XN_LN2_LO = 1.9082149292705877e-10
_XN_C = (1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
         1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800)
_XN_U1023 = np.uint64(1023)
_XN_U52 = np.uint64(52)


@njit(cache=True, error_model="numpy", inline="always")
def expneg64(x):
    """exp(x) for x <= 0 in float64, clamped at exp(-40); branch-free, vectorizable.

    Why not ``exp64``: the RBM's AIS kernels were recorded with this form (a
    Taylor polynomial, not Cephes' rational); the clamp changes no Bernoulli
    draw (exp(-40) < 2**-53, the spacing of the uniforms) and a softplus by
    < 5e-18.  Inputs > 0 are outside its contract."""
    x = max(x, -40.0)
    kd = x * _LOG2E64 + _XN_SHIFT
    kb = f64_bits(kd)
    k = kd - _XN_SHIFT
    r = (x - k * _XN_LN2_HI) - k * _XN_LN2_LO
    c = _XN_C
    p = c[13]
    for i in range(12, -1, -1):   # Horner, fully unrolled by LLVM (constant trip count)
        p = p * r + c[i]
    return p * f64_from_ubits((kb + _XN_U1023) << _XN_U52)


@njit(cache=True, error_model="numpy")
def _exp_field_max(x, e, m):
    """max(m, x[c] & e) over the bit patterns x (uint32 or uint64)."""
    for c in range(x.shape[0]):
        t = x[c] & e
        m = t if t > m else m
    return m


@njit(cache=True, error_model="numpy")
def all_finite(a, ao, n):
    """Whether a[ao:ao + n] (a flat array) holds only finite values: the
    largest exponent field over the range (an integer max reduction, which
    LLVM vectorizes) is not all ones.  Twin: ``dlk_all_finite_f32/f64``."""
    if a.itemsize == 4:
        e32 = np.uint32(0x7F800000)
        return _exp_field_max(a.view(np.uint32)[ao:ao + n], e32, np.uint32(0)) != e32
    e64 = np.uint64(0x7FF0000000000000)
    return _exp_field_max(a.view(np.uint64)[ao:ao + n], e64, np.uint64(0)) != e64
