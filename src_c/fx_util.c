/* fx_util.c -- configuration, target validation and the scalar weighted logsumexp. */
#include <math.h>
#include <stdlib.h>

#include "fastxent.h"
#include "fx_common.h"
#include "fx_simd.h"

int fx_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fx_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int64_t fx_check_targets(const int64_t *target, int64_t n, int64_t n_cols,
                         int64_t ignore_index, int64_t *n_counted)
{
    int64_t counted = 0;
    for (int64_t r = 0; r < n; r++) {
        const int64_t t = target[r];
        if (t == ignore_index) continue;
        if (t < 0 || t >= n_cols) {
            *n_counted = counted;
            return r;
        }
        counted++;
    }
    *n_counted = counted;
    return -1;
}

#define FX_T float
#define FX_SUF float32
#define FX_EXPS expf
#include "fx_lse_b.inc"
#undef FX_T
#undef FX_SUF
#undef FX_EXPS

#define FX_T double
#define FX_SUF float64
#define FX_EXPS exp
#include "fx_lse_b.inc"
#undef FX_T
#undef FX_SUF
#undef FX_EXPS
