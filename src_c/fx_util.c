/* fx_util.c -- the OpenMP configuration and the fixed-order sum of per-row losses. */
#include <math.h>
#include <stdlib.h>

#include "fastxent.h"
#include "fx_common.h"

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

int fx_sum_losses(const double *a, int64_t n, double *total)
{
    /* the order of fx_xent_sum: slabs of FX_SUM_SLAB, each and then their totals by fx_sum_fixed */
    const int64_t slabs = (n + FX_SUM_SLAB - 1) / FX_SUM_SLAB;
    double *st = (double *)malloc((size_t)(slabs > 0 ? slabs : 1) * sizeof(double));
    if (!st) return -1;
    for (int64_t s = 0; s < slabs; s++) {
        const int64_t b = s * FX_SUM_SLAB, e = n - b < FX_SUM_SLAB ? n : b + FX_SUM_SLAB;
        st[s] = fx_sum_fixed(a + b, e - b);
    }
    *total = fx_sum_fixed(st, slabs);
    free(st);
    return 0;
}
