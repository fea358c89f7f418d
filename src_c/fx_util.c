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
