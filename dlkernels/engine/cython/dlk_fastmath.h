/* Scalar math for the Cython kernels of every family (shared; cimported
   through _fastmath.pxd).  Twin of dlkernels/engine/numba/_fastmath.py: each
   function performs the same IEEE operations in the same order as its Numba
   twin (read the accuracy table there), so both backends give bit-identical
   results.  Requires -ffp-contract=off (set in setup.py for every build).
   Constants are double literals rounded to float, as numpy.float32(...) does. */
#ifndef DLK_FASTMATH_H
#define DLK_FASTMATH_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Function attributes shared by the families' hot loops.
   DLK_NOTRAP: GCC keeps FP selects as branches under -ftrapping-math (its
   default), which stops the loop vectorizer; no-trapping-math changes no value.
   DLK_CLONES: AVX-512 / AVX2 / baseline versions chosen at load time (ifunc,
   GCC + glibc on x86-64 only); with -ffp-contract=off every version gives the
   same bits. */
#if defined(__GNUC__) && !defined(__clang__)
#define DLK_NOTRAP __attribute__((optimize("no-trapping-math")))
#else
#define DLK_NOTRAP
#endif
#if defined(__GNUC__) || defined(__clang__)
#define DLK_UNUSED __attribute__((unused))
#else
#define DLK_UNUSED
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define DLK_CLONES DLK_NOTRAP __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DLK_CLONES DLK_NOTRAP
#endif

static inline float dlk_f32_from_bits(int32_t i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline double dlk_f64_from_bits(int64_t i) { double d; memcpy(&d, &i, sizeof d); return d; }

static inline float dlk__exp32_poly(float r) {
    return (((((((float)1.9875691500e-4 * r + (float)1.3981999507e-3) * r
               + (float)8.3334519073e-3) * r + (float)4.1665795894e-2) * r
               + (float)1.6666665459e-1) * r + (float)5.0000001201e-1) * r * r) + r + (float)1.0;
}

static inline float dlk_exp32(float x) {
    float t, kf, r, e;
    int32_t k, k1, k2;
    t = x < (float)88.75 ? x : (float)88.75;
    t = t > (float)-104.0 ? t : (float)-104.0;
    kf = (t * (float)1.44269504088896341 + (float)12582912.0) - (float)12582912.0;
    r = (t - kf * (float)0.693359375) - kf * (float)-2.12194440e-4;
    k = (int32_t)kf;
    k1 = k >> 1;
    k2 = k - k1;
    e = (dlk__exp32_poly(r) * dlk_f32_from_bits((k1 + 127) << 23)) * dlk_f32_from_bits((k2 + 127) << 23);
    return x != x ? x : e;
}

static inline float dlk_sigmoid32(float x) {
    float t = -x, tc, kf, r, e, s;
    tc = t < (float)88.0 ? t : (float)88.0;
    tc = tc > (float)-87.0 ? tc : (float)-87.0;
    kf = (tc * (float)1.44269504088896341 + (float)12582912.0) - (float)12582912.0;
    r = (tc - kf * (float)0.693359375) - kf * (float)-2.12194440e-4;
    e = dlk__exp32_poly(r) * dlk_f32_from_bits(((int32_t)kf + 127) << 23);
    e = t > (float)88.0 ? (float)INFINITY : e;
    s = (float)1.0 / ((float)1.0 + e);
    return x != x ? x : s;
}

static inline double dlk_sigmoid64(double x) { return 1.0 / (1.0 + exp(-x)); }

static inline float dlk_softplus32(float x) {
    if (x > (float)0.0) return x + log1pf(expf(-x));
    return log1pf(expf(x));
}

static inline double dlk_softplus64(double x) {
    if (x > 0.0) return x + log1p(exp(-x));
    return log1p(exp(x));
}

static inline float dlk_log_sigmoid32(float x) { return -dlk_softplus32(-x); }
static inline double dlk_log_sigmoid64(double x) { return -dlk_softplus64(-x); }

static inline float dlk__tanh_small32(float ax) {
    float z = ax * ax;
    return (((((float)-5.70498872745e-3 * z + (float)2.06390887954e-2) * z
             + (float)-5.37397155531e-2) * z + (float)1.33314422036e-1) * z
             + (float)-3.33332819422e-1) * z * ax + ax;
}

static inline float dlk_tanh32(float x) {
    float ax = fabsf(x), ps, axc, t, kf, r, e, pl, res;
    ps = dlk__tanh_small32(ax);
    axc = ax < (float)9.5 ? ax : (float)9.5;
    t = (float)2.0 * axc;
    kf = (t * (float)1.44269504088896341 + (float)12582912.0) - (float)12582912.0;
    r = (t - kf * (float)0.693359375) - kf * (float)-2.12194440e-4;
    e = dlk__exp32_poly(r) * dlk_f32_from_bits(((int32_t)kf + 127) << 23);
    pl = (float)1.0 - (float)2.0 / (e + (float)1.0);
    res = ax < (float)0.625 ? ps : pl;
    res = copysignf(res, x);
    return x != x ? x : res;
}

/* (exp(r), k) with t = k ln2 + r, |r| <= ln2 / 2 (Cephes' exp rational) */
static inline double dlk__exp64_red(double t, int64_t *k) {
    double kf, r, rr, px, qx;
    kf = (t * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    r = (t - kf * 6.93145751953125e-1) - kf * 1.42860682030941723212e-6;
    rr = r * r;
    px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr
              + 9.99999999999999999910e-1);
    qx = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr
          + 2.27265548208155028766e-1) * rr + 2.00000000000000000009e0;
    *k = (int64_t)(int32_t)kf;
    return 1.0 + 2.0 * (px / (qx - px));
}

static inline double dlk_exp64(double x) {
    double t, p, e;
    int64_t k, k1, k2;
    t = x < 709.875 ? x : 709.875;
    t = t > -746.0 ? t : -746.0;
    p = dlk__exp64_red(t, &k);
    k1 = k >> 1;
    k2 = k - k1;
    e = (p * dlk_f64_from_bits((k1 + 1023) << 52)) * dlk_f64_from_bits((k2 + 1023) << 52);
    return x != x ? x : e;
}

static inline double dlk__tanh_small64(double ax) {
    double z = ax * ax;
    return ax + ax * z * (((-9.64399179425052238628e-1 * z + -9.92877231001918586564e1) * z
                           + -1.61468768441708447952e3)
                          / (((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
                             + 4.84406305325125486048e3));
}

static inline double dlk_tanh64(double x) {
    double ax = fabs(x), ps, axc, p, e, pl, res;
    int64_t k;
    ps = dlk__tanh_small64(ax);
    axc = ax < 20.0 ? ax : 20.0;
    p = dlk__exp64_red(2.0 * axc, &k);
    e = p * dlk_f64_from_bits((k + 1023) << 52);
    pl = 1.0 - 2.0 / (e + 1.0);
    res = ax < 0.625 ? ps : pl;
    res = copysign(res, x);
    return x != x ? x : res;
}

/* tanh of x = q + k from ep ~ exp(2q) exp(2k), en ~ exp(-2q) exp(-2k) made by
   the caller (twins of _fastmath.py's tanh_pair32 / tanh_pair64; the caller
   keeps |q|, |k| <= DLK_TANH_PAIR_MAX, _fastmath.py's TANH_PAIR_MAX) */
#define DLK_TANH_PAIR_MAX 20.0
static inline float dlk_tanh_pair32(float x, float ep, float en) {
    float ax = fabsf(x), ps, ee, pl, res;
    ps = dlk__tanh_small32(ax);
    ee = x >= (float)0.0 ? ep : en;
    pl = (float)1.0 - (float)2.0 / (ee + (float)1.0);
    res = ax < (float)0.625 ? ps : pl;
    return copysignf(res, x);
}

static inline double dlk_tanh_pair64(double x, double ep, double en) {
    double ax = fabs(x), ps, ee, pl, res;
    ps = dlk__tanh_small64(ax);
    ee = x >= 0.0 ? ep : en;
    pl = 1.0 - 2.0 / (ee + 1.0);
    res = ax < 0.625 ? ps : pl;
    return copysign(res, x);
}

/* ---- distinct variants kept for the RBM MCMC kernels' recorded bits ----
   Twins of sigmoid64_split / expneg64 of _fastmath.py (see why there). */
static inline double dlk_sigmoid64_split(double x) {
    double e;
    if (x >= 0.0) return 1.0 / (1.0 + exp(-x));
    e = exp(x);
    return e / (1.0 + e);
}

/* exp(x) for x <= 0, clamped at exp(-40); branch-free, vectorizable. */
DLK_NOTRAP static inline double dlk_expneg64(double x) {
    union { double d; uint64_t u; } kd, sc;
    double k, r, p;
    x = x > -40.0 ? x : -40.0;
    kd.d = x * 1.4426950408889634 + 6755399441055744.0;
    k = kd.d - 6755399441055744.0;
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
    p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    sc.u = (kd.u + 1023u) << 52;
    return p * sc.d;
}

/* Whether x[:n] holds only finite values: the largest exponent field over the
   range (an integer max reduction, which vectorizes) is not all ones.  Twin:
   _fastmath.all_finite.  memcpy: the bit cast without type punning. */
#define DLK_ALL_FINITE(T, U, SUF, EXPMASK)                                           \
DLK_CLONES DLK_UNUSED static int dlk_all_finite_##SUF(const T *restrict x, ptrdiff_t n) { \
    U m = 0, t; ptrdiff_t c;                                                         \
    for (c = 0; c < n; c++) { memcpy(&t, x + c, sizeof t); t &= EXPMASK;            \
                              m = t > m ? t : m; }                                  \
    return m != EXPMASK;                                                             \
}
DLK_ALL_FINITE(float, uint32_t, f32, (uint32_t)0x7F800000u)
DLK_ALL_FINITE(double, uint64_t, f64, (uint64_t)0x7FF0000000000000ull)

/* 8-lane sums in a fixed order (twin: Numba's _sdpa._dot_lanes / _rowsum and
   _attn's dot): lane t adds element c + t of every full block of 8 in order,
   then ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), then the tail in
   order.  dlk_dot8 sums x[c] * y[c] (mul and add apart: -ffp-contract=off),
   dlk_sum8 sums x[c].  The lanes are one GCC/clang vector: written as an array,
   GCC vectorized the products but added them into the lanes with scalar adds
   and shuffles (the attention "dot" decoder step ran 2.3x slower); inline, so
   each DLK_CLONES caller gets them at its own width. */
#if defined(__GNUC__) || defined(__clang__)
#define DLK_LANES8(T, SUF)                                                          \
typedef T dlk_v8_##SUF __attribute__((vector_size(8 * sizeof(T))));                 \
DLK_UNUSED static inline T dlk_dot8_##SUF(const T *restrict x, const T *restrict y, \
                                          ptrdiff_t n) {                            \
    dlk_v8_##SUF l = {0}, vx, vy; T a; ptrdiff_t c;                                 \
    for (c = 0; c + 8 <= n; c += 8) {                                               \
        memcpy(&vx, x + c, sizeof vx); memcpy(&vy, y + c, sizeof vy);               \
        l = l + vx * vy;                                                            \
    }                                                                               \
    a = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));          \
    for (; c < n; c++) a = a + x[c] * y[c];                                         \
    return a;                                                                       \
}                                                                                   \
DLK_UNUSED static inline T dlk_sum8_##SUF(const T *restrict x, ptrdiff_t n) {       \
    dlk_v8_##SUF l = {0}, vx; T a; ptrdiff_t c;                                     \
    for (c = 0; c + 8 <= n; c += 8) {                                               \
        memcpy(&vx, x + c, sizeof vx);                                              \
        l = l + vx;                                                                 \
    }                                                                               \
    a = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));          \
    for (; c < n; c++) a = a + x[c];                                                \
    return a;                                                                       \
}
#else
#define DLK_LANES8(T, SUF)                                                          \
DLK_UNUSED static inline T dlk_dot8_##SUF(const T *restrict x, const T *restrict y, \
                                          ptrdiff_t n) {                            \
    T l[8], a; ptrdiff_t c; int t;                                                  \
    for (t = 0; t < 8; t++) l[t] = 0;                                               \
    for (c = 0; c + 8 <= n; c += 8)                                                 \
        for (t = 0; t < 8; t++) l[t] = l[t] + x[c + t] * y[c + t];                  \
    a = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));          \
    for (; c < n; c++) a = a + x[c] * y[c];                                         \
    return a;                                                                       \
}                                                                                   \
DLK_UNUSED static inline T dlk_sum8_##SUF(const T *restrict x, ptrdiff_t n) {       \
    T l[8], a; ptrdiff_t c; int t;                                                  \
    for (t = 0; t < 8; t++) l[t] = 0;                                               \
    for (c = 0; c + 8 <= n; c += 8)                                                 \
        for (t = 0; t < 8; t++) l[t] = l[t] + x[c + t];                             \
    a = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));          \
    for (; c < n; c++) a = a + x[c];                                                \
    return a;                                                                       \
}
#endif
DLK_LANES8(float, f32)
DLK_LANES8(double, f64)

#endif /* DLK_FASTMATH_H */
