/* fx_vmath.h -- vector exp, tanh and log1p over the ISA vocabulary (isa/fx_vec.h), no libm.
 * Included once per ISA translation unit after its ISA header; ISA-free but for the choices
 * the vocabulary's flags make (FX_HAVE_PERMUTE: the table form of fx_expf_neg; FX_HAVE_FMA:
 * the fma-exact correction of the softcap gradient).
 * exp: range reduction x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r and 2^n built in the
 * exponent bits as 2^n1 * 2^n2 so that the whole range, gradual underflow included, is handled
 * without branches.
 *   float : degree 6, max error ~1.5 ulp; exact 0 below -104, +inf above 88.73
 *           (the x <= 0 form: 1.31 ulp over [-87.3, 0], Estrin's scheme)
 *   double: degree 11, max error ~2 ulp;  0 below -746, +inf above 709.79
 * NaN in, NaN out; exp(0) == 1 exactly.
 */
#ifndef FX_VMATH_H
#define FX_VMATH_H

#include <math.h>

/* Constants of the exp kernels (ours: fitted on [-ln2/2, ln2/2] by
 * Chebyshev-node least squares, see tests/test_exp.py for the measured error). */
#define FX_LOG2E   1.44269504088896340736
#define FX_EXPF_SHIFT 12582912.0f            /* 1.5 * 2^23: adding it rounds to an integer */
#define FX_EXPF_LN2_HI 0.693359375f          /* 355/512, exact times any |n| <= 2^14 */
#define FX_EXPF_LN2_LO -2.12194440e-4f
#define FX_EXP_SHIFT 6755399441055744.0      /* 1.5 * 2^52 */
#define FX_EXP_LN2_HI 6.93147180369123816490e-01 /* low 32 bits zero */
#define FX_EXP_LN2_LO 1.90821492927058770002e-10


FX_INLINE fx_vf fx_expf(fx_vf x)
{
    const fx_vf lo = (fx_vf){0} - 104.0f, hi = (fx_vf){0} + 88.75f;
    x = fx_self(x < lo, lo, x);
    x = fx_self(x > hi, hi, x);
    fx_vf t = x * (float)FX_LOG2E + FX_EXPF_SHIFT;
    fx_vi n = (fx_vi)t - 0x4B400000;  /* bits of FX_EXPF_SHIFT */
    fx_vf nf = t - FX_EXPF_SHIFT;
    fx_vf r = x - nf * FX_EXPF_LN2_HI;
    r = r - nf * FX_EXPF_LN2_LO;
    fx_vf q = r * 0.0013933643931522965f + 0.008363175205886364f;
    q = q * r + 0.04166646674275398f;
    q = q * r + 0.16666576266288757f;
    q = q * r + 0.5f;
    fx_vf p = (r * r) * q + r + 1.0f;
    fx_vi n1 = ((n + 256) >> 1) - 128;
    fx_vi n2 = n - n1;
    fx_vf s1 = (fx_vf)((n1 + 127) << 23);
    fx_vf s2 = (fx_vf)((n2 + 127) << 23);
    return (p * s1) * s2;
}

FX_INLINE fx_vd fx_exp(fx_vd x)
{
    const fx_vd lo = (fx_vd){0} - 746.0, hi = (fx_vd){0} + 709.8;
    x = fx_seld(x < lo, lo, x);
    x = fx_seld(x > hi, hi, x);
    fx_vd t = x * FX_LOG2E + FX_EXP_SHIFT;
    fx_vl n = (fx_vl)t - 0x4338000000000000LL;  /* bits of FX_EXP_SHIFT */
    fx_vd nf = t - FX_EXP_SHIFT;
    fx_vd r = x - nf * FX_EXP_LN2_HI;
    r = r - nf * FX_EXP_LN2_LO;
    fx_vd q = r * 2.5087254801087637e-08 + 2.76091142427205e-07;
    q = q * r + 2.755731128564274e-06;
    q = q * r + 2.4801550397014158e-05;
    q = q * r + 0.00019841269807848334;
    q = q * r + 0.0013888888891561682;
    q = q * r + 0.008333333333363661;
    q = q * r + 0.04166666666670971;
    q = q * r + 0.1666666666666662;
    q = q * r + 0.49999999999999983;
    fx_vd p = (r * r) * q + r + 1.0;
    /* n in [-1076, 1024]; split with a logical shift (no 64-bit arithmetic shift before AVX-512) */
    fx_vl n1 = (fx_vl)((fx_vu)(n + 2048) >> 1) - 1024;
    fx_vl n2 = n - n1;
    fx_vd s1 = (fx_vd)((n1 + 1023) << 52);
    fx_vd s2 = (fx_vd)((n2 + 1023) << 52);
    return (p * s1) * s2;
}

/* tanh from the exp above: an odd polynomial (Taylor to u^13) for |u| < 0.1,
 * else sign(u) (1 - e) / (1 + e) with e = exp(-2|u|) (no overflow); _e takes
 * a = |u| and e (shared with the softcap gradient, which needs e as well) */
FX_INLINE fx_vf fx_tanhf_e(fx_vf u, fx_vf a, fx_vf e)
{
    fx_vf big = (1.0f - e) / (1.0f + e);
    fx_vf u2 = u * u;
    fx_vf p = u2 * (21844.0f / 6081075.0f) - 1382.0f / 155925.0f;
    p = p * u2 + 62.0f / 2835.0f;
    p = p * u2 - 17.0f / 315.0f;
    p = p * u2 + 2.0f / 15.0f;
    p = p * u2 - 1.0f / 3.0f;
    fx_vf small = u + u * u2 * p;
    big = fx_self(u < 0.0f, -big, big);
    return fx_self(a < 0.1f, small, big);
}

FX_INLINE fx_vf fx_tanhf(fx_vf u)
{
    fx_vf a = fx_self(u < 0.0f, -u, u);
    return fx_tanhf_e(u, a, fx_expf(a * -2.0f));
}

FX_INLINE fx_vd fx_tanh_e(fx_vd u, fx_vd a, fx_vd e)
{
    fx_vd big = (1.0 - e) / (1.0 + e);
    fx_vd u2 = u * u;
    fx_vd p = u2 * (21844.0 / 6081075.0) - 1382.0 / 155925.0;
    p = p * u2 + 62.0 / 2835.0;
    p = p * u2 - 17.0 / 315.0;
    p = p * u2 + 2.0 / 15.0;
    p = p * u2 - 1.0 / 3.0;
    fx_vd small = u + u * u2 * p;
    big = fx_seld(u < 0.0, -big, big);
    return fx_seld(a < 0.1, small, big);
}

FX_INLINE fx_vd fx_tanh(fx_vd u)
{
    fx_vd a = fx_seld(u < 0.0, -u, u);
    return fx_tanh_e(u, a, fx_exp(a * -2.0));
}

/* exp for x <= 0 (the shifted logits x - max).  x < ln(FLT_MIN) (incl. -inf)
 * gives exactly 0 (results below 1.2e-38 are flushed, where they are < 1e-38 of
 * the row's largest term); NaN stays NaN.  fx_expf_neg0 is the same but for
 * x == +0, where it gives 0 instead of 1: the block sums leave the row maxima out
 * (they are counted exactly) and use it to save the mask; at x == -0 it gives 1
 * (AVX2) or 0 (elsewhere), so callers subtract a zero maximum as -0: x - max is
 * then +0, never -0, at every maximum. */
#if FX_HAVE_PERMUTE
/* 2^(n8/8) e^r with n8 = round(8 x / ln2), |r| <= ln2/16: 2^(j/8) (j = n8 mod 8)
 * from an 8-entry table held in one register (one lane permute), so that
 * e^r - 1 ~ r + r^2 (c2 + c3 r) suffices, and the scale is applied with one fma,
 * s + (e^r - 1) s: max error 1.13 ulp over [-87.3, 0] (Horner/Estrin forms of a
 * degree-6 polynomial on |r| <= ln2/2: 1.31 ulp and ~30% more operations,
 * which bound the kernels).  The clamp at -88 keeps r finite for -inf. */
FX_INLINE fx_vf fx_expf_neg_k(fx_vf x, const int drop_zero)
{
    /* bits(2^(j/8) rounded to float) - (j << 20): with E = n8 << 20 = (n << 23) +
     * (j << 20), E + tab[j] = bits(2^n 2^(j/8)) */
    const fx_vi tab = {0x3f800000, 0x3f7b95c2, 0x3f7837f0, 0x3f75fed7,
                       0x3f7504f3, 0x3f75672a, 0x3f7744fd, 0x3f7ac0c7};
    const float sh = FX_EXPF_SHIFT; /* bits(t) = bits(1.5 * 2^23) + n8; << 20 drops the former */
    x = fx_maxf((fx_vf){0} - 88.0f, x); /* keeps a NaN in x */
    fx_vf t = x * (float)(8.0 * FX_LOG2E) + sh;
    fx_vf nf = t - sh;
    fx_vf r = x - nf * (FX_EXPF_LN2_HI / 8.0f); /* exact: 355/4096 times |n8| <= 1016 */
    r = r - nf * (FX_EXPF_LN2_LO / 8.0f);
    fx_vf u = (r * r) * (r * 0.1666697859764099f + 0.5000645518302917f) + r;
    fx_vi ti = (fx_vi)t;
    fx_vi sb = (ti << 20) + fx_permute_i(tab, ti); /* lanes index modulo 8 */
    /* below ln(FLT_MIN), where the scale would need exponent 0: as integers the
     * bits of negative floats grow towards zero, so one compare with the bits of
     * -87.33654f (the least float above ln(FLT_MIN) = -87.3365447...) also takes +0
     * (and NaN, which u keeps) */
    fx_vi k = drop_zero ? (fx_vi)x > -1028740017 /* int32 of bits(-87.33654f) */
                        : x < -87.33654f;
    fx_vf s = (fx_vf)(~k & sb);
    return u * s + s;
}

FX_INLINE fx_vf fx_expf_neg(fx_vf x) { return fx_expf_neg_k(x, 0); }
FX_INLINE fx_vf fx_expf_neg0(fx_vf x) { return fx_expf_neg_k(x, 1); }
#else
/* the range reduction and polynomial of fx_expf with one scale 2^n built from
 * the bits of the rounded value */
FX_INLINE fx_vf fx_expf_neg(fx_vf x)
{
    /* the shift carries the exponent bias: bits(t) = bits(1.5 * 2^23) + n + 127 */
    const float sh = FX_EXPF_SHIFT + 127.0f;
    fx_vf t = x * (float)FX_LOG2E + sh;
    fx_vf nf = t - sh;
    fx_vf r = x - nf * FX_EXPF_LN2_HI;
    r = r - nf * FX_EXPF_LN2_LO;
    /* Estrin's scheme and 1 + r off the critical path: the latency of one element's
     * chain, not the operation count, bounds the kernels (~12% faster than Horner;
     * max error 1.31 ulp instead of 1.05 over [-87.3, 0]) */
    fx_vf r2 = r * r;
    fx_vf qa = r * 0.16666576266288757f + 0.5f;
    fx_vf qb = r * 0.008363175205886364f + 0.04166646674275398f;
    fx_vf q = r2 * (r2 * 0.0013933643931522965f + qb) + qa;
    fx_vf p = r2 * q + (r + 1.0f);
    /* bits(1.5 * 2^23) << 23 == 0 (mod 2^32): s = 2^n */
    fx_vf s = (fx_vf)((fx_vi)t << 23);
    return (fx_vf)(~(x < -87.33654f) & (fx_vi)(p * s));
}

FX_INLINE fx_vf fx_expf_neg0(fx_vf x)
{
    return (fx_vf)(~(x == 0.0f) & (fx_vi)fx_expf_neg(x));
}
#endif

FX_INLINE fx_vd fx_exp_neg(fx_vd x)
{
    const double sh = FX_EXP_SHIFT + 1023.0; /* carries the bias, as in fx_expf_neg */
    fx_vd t = x * FX_LOG2E + sh;
    fx_vd nf = t - sh;
    fx_vd r = x - nf * FX_EXP_LN2_HI;
    r = r - nf * FX_EXP_LN2_LO;
    /* Estrin's scheme (see fx_expf_neg); the last step keeps (r2 q + r) + 1 */
    fx_vd r2 = r * r, r4 = r2 * r2;
    fx_vd e01 = r * 0.1666666666666662 + 0.49999999999999983;
    fx_vd e23 = r * 0.008333333333363661 + 0.04166666666670971;
    fx_vd e45 = r * 0.00019841269807848334 + 0.0013888888891561682;
    fx_vd e67 = r * 2.755731128564274e-06 + 2.4801550397014158e-05;
    fx_vd e89 = r * 2.5087254801087637e-08 + 2.76091142427205e-07;
    fx_vd e03 = r2 * e23 + e01, e47 = r2 * e67 + e45;
    fx_vd e49 = r4 * e89 + e47;
    fx_vd q = r4 * e49 + e03;
    fx_vd p = (r2 * q + r) + 1.0;
    fx_vd s = (fx_vd)((fx_vl)t << 52);
    return (fx_vd)(~(x < -708.3964185322641) & (fx_vl)(p * s));
}

FX_INLINE fx_vd fx_exp_neg0(fx_vd x)
{
    return (fx_vd)(~(x == 0.0) & (fx_vl)fx_exp_neg(x));
}

/* tanh(u) and 1 - tanh(u)^2 = 4e / (1 + e)^2 (e = exp(-2|u|)) for the softcap
 * gradient from one exp: the second form keeps full relative precision where
 * tanh -> +-1. */
FX_INLINE fx_vf fx_tanh_sech2f(fx_vf v, float cap, float inv_cap, fx_vf *sech2)
{
    /* u = v / cap; e = exp(-2|u|) corrected for the rounding of u (its relative error
     * would be 2|u| times that of u: ~2e-6 at |u| = 17 in float): e (1 - 2 sign(u) du)
     * with du = (v - u cap) / cap, v - u cap exact by fma (AVX2 and AVX-512; the
     * SSE2 baseline has no fma and keeps the uncorrected e) */
    fx_vf u = v * inv_cap;
#if FX_HAVE_FMA
    fx_vf du = (v - u * cap) * inv_cap;
    du = (fx_vf)((du - du == 0) & (fx_vi)du); /* v or u infinite (inf - inf, or a tiny cap): none */
#else
    fx_vf du = (fx_vf){0};
    (void)cap;
#endif
    fx_vf a = fx_self(u < 0.0f, -u, u);
    fx_vf sdu = fx_self(u < 0.0f, -du, du);
    fx_vf e = fx_expf(a * -2.0f);
    fx_vf y = fx_tanhf_e(u, a, e); /* bitwise fx_tanhf(u), as in the forward pass */
    e = e - 2.0f * e * sdu;
    fx_vf d = 1.0f + e;
    *sech2 = fx_self(a < 0.1f, 1.0f - y * y, (4.0f * e) / (d * d));
    return y;
}

FX_INLINE fx_vd fx_tanh_sech2(fx_vd v, double cap, double inv_cap, fx_vd *sech2)
{
    fx_vd u = v * inv_cap; /* corrected as in fx_tanh_sech2f */
#if FX_HAVE_FMA
    fx_vd du = (v - u * cap) * inv_cap;
    du = (fx_vd)((du - du == 0) & (fx_vl)du);
#else
    fx_vd du = (fx_vd){0};
    (void)cap;
#endif
    fx_vd a = fx_seld(u < 0.0, -u, u);
    fx_vd sdu = fx_seld(u < 0.0, -du, du);
    fx_vd e = fx_exp(a * -2.0);
    fx_vd y = fx_tanh_e(u, a, e);
    e = e - 2.0 * e * sdu;
    fx_vd d = 1.0 + e;
    *sech2 = fx_seld(a < 0.1, 1.0 - y * y, (4.0 * e) / (d * d));
    return y;
}

/* log1p(x) for x >= 0 (x = (count of maxima - 1) + rest: a log-sum-exp's log of its
 * sum) in double lanes, with no libm: 1 + x = 2^k f, f in [sqrt(1/2), sqrt(2)),
 * log f = 2 atanh(u), u = (f - 1) / (f + 1), |u| <= 0.172 (series to u^23), and the
 * rounding of 1 + x corrected by (x - (y - 1)) / y.  ~1 ulp; x = +inf gives +inf.
 * full = 0 (a constant: for float logits, whose results are float) stops the series
 * at u^13 (relative error below 2e-12) and corrects without the division: for
 * x < 1, log1p(x) ~ log(y) + (x - (y - 1)) with a relative error below 2^-52 (the
 * correction is exact there and y = 1 + O(x)); for x >= 1 the rounding of y moves
 * the result by less than 2^-53.  Both forms keep a RELATIVE precision: x below
 * 2^-53 (y == 1) gives x itself. */
FX_INLINE fx_vd fx_log1p_pos(fx_vd x, const int full)
{
    fx_vd y = 1.0 + x;
    fx_vd corr = full ? (x - (y - 1.0)) / y
                      : (fx_vd)((fx_vl)(x < 1.0) & (fx_vl)(x - (y - 1.0)));
    fx_vl bits = (fx_vl)y;
    fx_vl k = (fx_vl)((fx_vu)bits >> 52) - 1023;
    fx_vd f = (fx_vd)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
    fx_vl big = f > 1.4142135623730951;
    f = fx_seld(big, f * 0.5, f);
    k -= big; /* big is -1 where true */
    fx_vd kd = (fx_vd)(k + 0x4338000000000000LL) - 6755399441055744.0;
    fx_vd u = (f - 1.0) / (f + 1.0), u2 = u * u;
    fx_vd q;
    if (full) {
        q = u2 * (2.0 / 23) + 2.0 / 21;
        q = q * u2 + 2.0 / 19;
        q = q * u2 + 2.0 / 17;
        q = q * u2 + 2.0 / 15;
        q = q * u2 + 2.0 / 13;
        q = q * u2 + 2.0 / 11;
    } else {
        q = u2 * (2.0 / 13) + 2.0 / 11;
    }
    q = q * u2 + 2.0 / 9;
    q = q * u2 + 2.0 / 7;
    q = q * u2 + 2.0 / 5;
    q = q * u2 + 2.0 / 3;
    fx_vd lf = 2.0 * u + u * u2 * q;
    fx_vd r = (kd * 6.93147180369123816490e-01 + (lf + corr)) + kd * 1.90821492927058770002e-10;
    return fx_seld(x == (fx_vd){0} + INFINITY, x, r);
}

#endif
