/* fx_kernels.c -- instantiates the vector kernels once per ISA and dispatches.
 *
 * The build has no -march flag: the baseline variant runs on any CPU of the
 * target architecture, and on x86-64 the AVX2+FMA and AVX-512 variants are
 * compiled with `#pragma GCC target` and chosen at run time from cpuid. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastxent.h"
#include "fx_common.h"
#include "fx_simd.h"

#define FX_ISA baseline
#define FX_VBYTES 16
#include "fx_isa_body.inc"
#undef FX_ISA
#undef FX_VBYTES

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(FASTXENT_BASELINE_ONLY)
#define FX_X86 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define FX_ISA avx2
#define FX_VBYTES 32
#include "fx_isa_body.inc"
#undef FX_ISA
#undef FX_VBYTES
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#endif
#define FX_ISA avx512
#define FX_VBYTES 64
#include "fx_isa_body.inc"
#undef FX_ISA
#undef FX_VBYTES
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#define FX_X86 0
#endif

/* ---- dispatch ------------------------------------------------------------ */
#define FX_DTYPE_FNS(d, C)                                                        \
    int (*lse_##d)(const fx_rows *, double *, int);                               \
    void (*softmax_##d)(const fx_rows *, C *, int, int);                          \
    int (*xent_##d)(const fx_rows *, const int64_t *, int64_t, double *, int);   \
    int (*xent_sum_##d)(const fx_rows *, const int64_t *, int64_t, double *, int); \
    int (*xent_ex_##d)(const fx_rows *, const fx_xent_opts *, double *, double *, int);
typedef struct {
    FX_DTYPE_FNS(float32, float)
    FX_DTYPE_FNS(float64, double)
    FX_DTYPE_FNS(float16, float)
    FX_DTYPE_FNS(bfloat16, float)
    void (*vexp_float32)(const float *, float *, int64_t, int);
    void (*vexp_float64)(const double *, double *, int64_t, int);
    int64_t (*check_targets)(const int64_t *, int64_t, int64_t, int64_t, int64_t *);
} fx_table;

#define FX_DTYPE_ENTRIES(d, isa) lse_##d##_##isa, softmax_##d##_##isa, xent_##d##_##isa, \
                                 xent_sum_##d##_##isa, xent_ex_##d##_##isa
#define FX_TABLE(isa) {                                                                   \
        FX_DTYPE_ENTRIES(float32, isa), FX_DTYPE_ENTRIES(float64, isa),                   \
        FX_DTYPE_ENTRIES(float16, isa), FX_DTYPE_ENTRIES(bfloat16, isa),                  \
        vexp_float32_##isa, vexp_float64_##isa, check_targets_##isa }

static const fx_table fx_tables[FX_ISA_COUNT] = {
    FX_TABLE(baseline),
#if FX_X86
    FX_TABLE(avx2),
    FX_TABLE(avx512),
#endif
};
static const char *const fx_isa_names[FX_ISA_COUNT] = {"baseline", "avx2", "avx512"};
static int fx_isa = FX_ISA_BASELINE;

int fx_isa_compiled(int isa)
{
    if (isa == FX_ISA_BASELINE) return 1;
    return FX_X86 && (isa == FX_ISA_AVX2 || isa == FX_ISA_AVX512);
}

int fx_isa_supported(int isa)
{
    if (!fx_isa_compiled(isa)) return 0;
#if FX_X86 && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (isa == FX_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("f16c");
    if (isa == FX_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("f16c");
#endif
    return isa == FX_ISA_BASELINE;
}

int fx_isa_select(int cap)
{
    int best = FX_ISA_BASELINE;
    for (int isa = FX_ISA_BASELINE; isa < FX_ISA_COUNT && isa <= cap; isa++)
        if (fx_isa_supported(isa)) best = isa;
    fx_isa = best;
    return best;
}

int fx_isa_current(void) { return fx_isa; }

const char *fx_isa_name(int isa)
{
    return isa >= 0 && isa < FX_ISA_COUNT ? fx_isa_names[isa] : "unknown";
}

#define FX_DTYPE_WRAPPERS(d, C)                                                               \
    int fx_lse_##d(const fx_rows *x, double *out, int nt)                                     \
    { return fx_tables[fx_isa].lse_##d(x, out, nt); }                                           \
    void fx_softmax_##d(const fx_rows *x, C *out, int lg, int nt)                               \
    { fx_tables[fx_isa].softmax_##d(x, out, lg, nt); }                                          \
    int fx_xent_##d(const fx_rows *x, const int64_t *t, int64_t ig, double *loss, int nt)     \
    { return fx_tables[fx_isa].xent_##d(x, t, ig, loss, nt); }                                  \
    int fx_xent_sum_##d(const fx_rows *x, const int64_t *t, int64_t ig, double *total, int nt) \
    { return fx_tables[fx_isa].xent_sum_##d(x, t, ig, total, nt); }                             \
    int fx_xent_ex_##d(const fx_rows *x, const fx_xent_opts *o, double *loss, double *zl, int nt) \
    { return fx_tables[fx_isa].xent_ex_##d(x, o, loss, zl, nt); }
FX_DTYPE_WRAPPERS(float32, float)
FX_DTYPE_WRAPPERS(float64, double)
FX_DTYPE_WRAPPERS(float16, float)
FX_DTYPE_WRAPPERS(bfloat16, float)

void fx_vexp_float32(const float *x, float *out, int64_t n, int neg) { fx_tables[fx_isa].vexp_float32(x, out, n, neg); }
void fx_vexp_float64(const double *x, double *out, int64_t n, int neg) { fx_tables[fx_isa].vexp_float64(x, out, n, neg); }
int64_t fx_check_targets(const int64_t *target, int64_t n, int64_t n_cols, int64_t ignore_index,
                         int64_t *n_counted)
{
    return fx_tables[fx_isa].check_targets(target, n, n_cols, ignore_index, n_counted);
}

/* ---- evaluation statistics (fx_stats.inc): their own table and wrappers ---- */
typedef struct {
    void (*token_stats_float32)(const fx_rows *, const fx_stats_opts *, int);
    void (*token_stats_float64)(const fx_rows *, const fx_stats_opts *, int);
    void (*token_stats_float16)(const fx_rows *, const fx_stats_opts *, int);
    void (*token_stats_bfloat16)(const fx_rows *, const fx_stats_opts *, int);
} fx_stats_table;

#define FX_STATS_TABLE(isa) {                                                     \
        token_stats_float32_##isa, token_stats_float64_##isa,                     \
        token_stats_float16_##isa, token_stats_bfloat16_##isa }

static const fx_stats_table fx_stats_tables[FX_ISA_COUNT] = {
    FX_STATS_TABLE(baseline),
#if FX_X86
    FX_STATS_TABLE(avx2),
    FX_STATS_TABLE(avx512),
#endif
};

#define FX_STATS_WRAPPER(d)                                                       \
    void fx_token_stats_##d(const fx_rows *x, const fx_stats_opts *o, int nt)     \
    { fx_stats_tables[fx_isa].token_stats_##d(x, o, nt); }
FX_STATS_WRAPPER(float32)
FX_STATS_WRAPPER(float64)
FX_STATS_WRAPPER(float16)
FX_STATS_WRAPPER(bfloat16)
