/* fx_dispatch.c -- the one table of kernels, [ISA][dtype] -> fx_ops (an op per member), and
 * the entry points of fastxent.h, each of which looks its kernel up in fx_kernels().
 *
 * The rows are defined by the generated units fx_kernels_<isa>.c (src_c/fx_build.py).  The
 * build has no -march flag: the baseline variant runs on any CPU of the target architecture;
 * on x86-64 the AVX2 and AVX-512 units (built when setup.py defines FX_BUILD_AVX2 /
 * FX_BUILD_AVX512) are chosen at run time from cpuid.  In a FASTXENT_SIMDE=1 build
 * (FX_SIMDE_AVX512) the AVX-512 unit is compiled for AVX2 + FMA + F16C with its intrinsics
 * emulated, and the CPU needs only those. */
#include <stddef.h>

#include "fastxent.h"
#include "fx_ops.h"

extern const fx_ops fx_ops_float32_baseline, fx_ops_float64_baseline, fx_ops_float16_baseline,
    fx_ops_bfloat16_baseline;
#if FX_BUILD_AVX2
extern const fx_ops fx_ops_float32_avx2, fx_ops_float64_avx2, fx_ops_float16_avx2,
    fx_ops_bfloat16_avx2;
#endif
#if FX_BUILD_AVX512
extern const fx_ops fx_ops_float32_avx512, fx_ops_float64_avx512, fx_ops_float16_avx512,
    fx_ops_bfloat16_avx512;
#endif

/* rows in the order of FX_ISA_*, columns in the order of fx_dtype; NULL: not compiled */
static const fx_ops *const fx_table[FX_ISA_COUNT][FX_DTYPE_COUNT] = {
    [FX_ISA_BASELINE] = {&fx_ops_float32_baseline, &fx_ops_float64_baseline,
                         &fx_ops_float16_baseline, &fx_ops_bfloat16_baseline},
#if FX_BUILD_AVX2
    [FX_ISA_AVX2] = {&fx_ops_float32_avx2, &fx_ops_float64_avx2, &fx_ops_float16_avx2,
                     &fx_ops_bfloat16_avx2},
#endif
#if FX_BUILD_AVX512
    [FX_ISA_AVX512] = {&fx_ops_float32_avx512, &fx_ops_float64_avx512, &fx_ops_float16_avx512,
                       &fx_ops_bfloat16_avx512},
#endif
};
static const char *const fx_isa_names[FX_ISA_COUNT] = {"baseline", "avx2", "avx512"};
static int fx_isa = FX_ISA_BASELINE;

/* the kernels of `dtype` for the current ISA, or NULL for an unknown dtype: the only reader
 * of fx_table */
static const fx_ops *fx_kernels(int dtype)
{
    return dtype >= 0 && dtype < FX_DTYPE_COUNT ? fx_table[fx_isa][dtype] : NULL;
}

int fx_isa_compiled(int isa)
{
    return isa >= 0 && isa < FX_ISA_COUNT && fx_table[isa][0] != NULL;
}

int fx_isa_emulated(int isa)
{
#if FX_SIMDE_AVX512
    if (isa == FX_ISA_AVX512) return fx_isa_compiled(isa);
#endif
    (void)isa;
    return 0;
}

int fx_isa_supported(int isa)
{
    if (!fx_isa_compiled(isa)) return 0;
    if (isa == FX_ISA_BASELINE) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (isa == FX_ISA_AVX2 || (isa == FX_ISA_AVX512 && fx_isa_emulated(isa)))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("f16c");
    if (isa == FX_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("f16c");
#endif
    return 0;
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

/* ---- entry points (fastxent.h) ----------------------------------------------------------- */
#define FX_CALL(dtype, op, ...)                                                               \
    do {                                                                                      \
        const fx_ops *k_ = fx_kernels(dtype);                                                 \
        return k_ && k_->op ? k_->op(__VA_ARGS__) : FX_ENOKERNEL;                             \
    } while (0)

int fx_lse(int dtype, const fx_rows *x, double *out, int n_threads)
{ FX_CALL(dtype, lse, x, out, n_threads); }

int fx_softmax(int dtype, const fx_rows *x, void *out, int log, int n_threads)
{ FX_CALL(dtype, softmax, x, out, log, n_threads); }

int fx_xent(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
            double *loss, int n_threads)
{ FX_CALL(dtype, xent, x, target, ignore_index, loss, n_threads); }

int fx_xent_sum(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
                double *total, int n_threads)
{ FX_CALL(dtype, xent_sum, x, target, ignore_index, total, n_threads); }

int fx_xent_ex(int dtype, const fx_rows *x, const fx_xent_opts *o, double *loss, double *zloss,
               int n_threads)
{ FX_CALL(dtype, xent_ex, x, o, loss, zloss, n_threads); }

int fx_token_stats(int dtype, const fx_rows *x, const fx_stats_opts *o, int n_threads)
{ FX_CALL(dtype, token_stats, x, o, n_threads); }

int fx_lse_b(int dtype, const fx_rows *x, const fx_rows *b, int return_sign, double *out,
             double *sign, int n_threads)
{ FX_CALL(dtype, lse_b, x, b, return_sign, out, sign, n_threads); }

int fx_vexp(int dtype, const void *x, void *out, int64_t n, int neg)
{ FX_CALL(dtype, vexp, x, out, n, neg); }

int fx_row_states(int dtype, const fx_rows *x, fx_state *out, int n_threads)
{ FX_CALL(dtype, row_states, x, out, n_threads); }

int fx_state_lse(int dtype, const fx_state *s, int64_t n, double *out)
{ FX_CALL(dtype, state_lse, s, n, out); }

fx_state fx_state_merge(fx_state a, fx_state b)
{
    return fx_kernels(FX_FLOAT64)->state_merge(a, b);
}

int64_t fx_check_targets(const int64_t *target, int64_t n, int64_t n_cols, int64_t ignore_index,
                         int64_t *n_counted)
{
    return fx_kernels(FX_FLOAT64)->check_targets(target, n, n_cols, ignore_index, n_counted);
}
