/* fx_common.h -- the ISA-free helpers every kernel instantiation shares: the row states and
 * their combines, blocking constants, row offsets, fixed-order sums, 16-bit conversions.
 * Inline functions here are compiled into each ISA's translation unit (with its flags);
 * fx_tstate_fold is compiled once, without ISA flags (fx_state.c). */
#ifndef FX_COMMON_H
#define FX_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "fastxent.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* fx_state, the log-sum-exp state of a run of elements, is fastxent.h's (the row-pass
 * primitive's interface).  Blocks are reduced to states and states are combined left to
 * right, so a row's result depends only on its values. */

#define FX_BLOCK 4096 /* elements per block: a block is re-read from L1/L2 for the exp pass
                       * (4096 float32: 2.5% faster than 2048 on Zen 4, float64 the same) */
#define FX_PAIR_BLOCK 2048 /* token_stats: blocks of two arrays (x and y) at once */
#define FX_SMALL_COLS 64 /* rows up to this many classes are computed FX_W rows at a time */
#define FX_XL 64 /* xent_ex: short rows whose states the small-row lanes compute at once (a multiple of every FX_W) */
#define FX_MAX_STORED_BLOCKS 64 /* rows up to 64 blocks: the gradient pass rescales stored exps */
#define FX_STREAM_MIN_BYTES (16 << 20) /* a gradient output this large: non-temporal stores */

static inline fx_state fx_state_combine(fx_state a, fx_state b)
{
    fx_state x = {0.0, 0.0, 0.0, 0};
    x.nan = a.nan | b.nan;
    if (b.m == -INFINITY) { x.m = a.m; x.c = a.c; x.r = a.r; return x; }
    if (a.m == -INFINITY) { x.m = b.m; x.c = b.c; x.r = b.r; return x; }
    if (a.m == INFINITY || b.m == INFINITY) { x.m = INFINITY; x.c = 1.0; x.r = 0.0; return x; }
    if (a.m > b.m)      { x.m = a.m; x.c = a.c; x.r = a.r + (b.c + b.r) * exp(b.m - a.m); }
    else if (b.m > a.m) { x.m = b.m; x.c = b.c; x.r = b.r + (a.c + a.r) * exp(a.m - b.m); }
    else                { x.m = a.m; x.c = a.c + b.c; x.r = a.r + b.r; }
    return x;
}

/* the sum exp(x - m) of a state (its log is fx_logsum_<dtype>_<isa>, one log1p for every path) */
static inline double fx_state_sum(fx_state st) { return st.c + st.r; }

/* scalar 16-bit conversions (the vector ones are the ISA vocabulary's, src_c/isa/) */
static inline float fx_bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float fx_f16_to_float(uint16_t h)
{
    uint32_t em = h & 0x7fffu, u;
    float f;
    u = em << 13;
    memcpy(&f, &u, sizeof f);
    f *= 0x1p112f;
    memcpy(&u, &f, sizeof u);
    if (em >= 0x7c00u) u |= 0x7f800000u;
    u |= (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* scalar float -> 16-bit conversions, rounding to nearest even (the gradient written
 * in the logits' own 16-bit type; the vector ones are the ISA vocabulary's, src_c/isa/); NaN gives
 * the quiet NaN 0x7fc0 / 0x7e00 */
static inline uint16_t fx_float_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline uint16_t fx_float_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return 0x7e00u;                /* NaN */
    if (u >= 0x477ff000u) return sign | 0x7c00u;        /* >= 65520 (the midpoint above 65504): inf */
    if (u < 0x38800000u) {
        /* below 2^-14: a subnormal half (or 0, or the smallest normal when rounding up),
         * counted in units of 2^-24 = the spacing of floats in [0.5, 1): the float sum
         * 0.5f + |f| rounds to nearest even there, its low bits are the half */
        float a;
        memcpy(&a, &u, sizeof a);
        a += 0.5f;
        memcpy(&u, &a, sizeof u);
        return sign | (uint16_t)(u - 0x3f000000u);
    }
    /* normal: exponent bias 127 -> 15, then the 13 dropped bits rounded to nearest even */
    u = u - 0x38000000u + 0xfffu + ((u >> 13) & 1u);
    return sign | (uint16_t)(u >> 13);
}

/* this thread's number in a parallel region (0 without OpenMP) */
static inline int fx_thread_num(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* element offset of row r */
static inline ptrdiff_t fx_row_offset(const fx_rows *x, int64_t r)
{
    int64_t o = r / x->n_inner;
    int64_t i = r - o * x->n_inner;
    return (ptrdiff_t)(o * x->s_outer + i * x->s_inner);
}

#define FX_SUM_SLAB 65536 /* rows per slab of a summed loss (xent_sum): 512 KB of losses */

/* sum of a[0..n) in an order fixed by n: pairwise halving down to runs of at most
 * 128, each summed as four interleaved partial sums and (s0 + s1) + (s2 + s3)
 * (rounding error O(log n) ulp, as NumPy's pairwise sum) */
static inline double fx_sum_fixed(const double *a, int64_t n)
{
    if (n > 128) {
        const int64_t h = (n / 2 + 3) / 4 * 4;
        return fx_sum_fixed(a, h) + fx_sum_fixed(a + h, n - h);
    }
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i];
        s1 += a[i + 1];
        s2 += a[i + 2];
        s3 += a[i + 3];
    }
    for (; i < n; i++) s0 += a[i];
    return (s0 + s1) + (s2 + s3);
}

/* threads worth starting for `rows` rows of `cols` elements (1 = stay serial) */
static inline int fx_threads_for(int64_t rows, int64_t cols, int n_threads)
{
    if (n_threads <= 1 || rows < 2) return 1;
    if (rows * (cols > 0 ? cols : 1) < 32768) return 1;
    return (int64_t)n_threads > rows ? (int)rows : n_threads;
}

/* ---- token_stats (templates/fx_stats.c.src) ---- */
/* state of a run of a row: maxima (NaN ignored), sums relative to fx_stats_h(max),
 * first index of each maximum, and flags */
typedef struct {
    double mx, sx, ux;  /* x: max, sum e^a, sum e^a a */
    double my, sy, w;   /* y: max, sum e^b, sum e^b (b - a) */
    int64_t ix, iy;     /* first index of the max of x, of y */
    int nanx, nany;     /* a NaN in x, in y */
    int kinf;           /* some class has y > -inf and x = -inf */
} fx_tstate;

/* the shift a block was computed with: its max, or 0 when that is not finite */
static inline double fx_stats_h(double m) { return m > -INFINITY && m < INFINITY ? m : 0.0; }

/* fold the state b of the next block into the running state a (b lies right of a); compiled
 * once without ISA flags (fx_state.c), so that its products round alike on every ISA */
void fx_tstate_fold(fx_tstate *a, const fx_tstate *b);

/* -log of the target's probability; +-inf maxima and NaN as cross_entropy gives them */
static inline double fx_stats_nll(double m, double s, int nan, double xt)
{
    if (nan) return NAN;
    if (m == INFINITY || m == -INFINITY) return m - xt;
    return (m - xt) + log(s);
}

/* above this a block maximum may make x - max overflow (half an ulp of the largest
 * finite value, halved again): such blocks are computed in double */
#define FX_STATS_BIG(C) (sizeof(C) == 4 ? 0x1p102 : 0x1p969)

#endif
