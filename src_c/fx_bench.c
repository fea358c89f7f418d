/* fx_bench.c -- the memory read bandwidth probe of `python -m fastxent bench`.
 *
 * The benchmark reports each kernel's logits read rate as a fraction of what this
 * machine can read at all, measured in the same run by the simplest possible
 * reader: a sum with independent accumulators that the compiler vectorises at -O3
 * (no exp, no max), over an array much larger than the last-level cache.
 */
#include "fastxent.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Enough independent partial sums to keep the adds off the critical path
 * (8 SSE / 4 AVX vectors) so that only the memory system limits the loop. */
#define FX_PROBE_LANES 32

static double fx_probe_sum(const float *x, int64_t n)
{
    float acc[FX_PROBE_LANES] = {0.0f};
    int64_t i = 0;
    for (; i + FX_PROBE_LANES <= n; i += FX_PROBE_LANES)
        for (int j = 0; j < FX_PROBE_LANES; j++)
            acc[j] += x[i + j];
    double total = 0.0;
    for (; i < n; i++)
        total += x[i];
    for (int j = 0; j < FX_PROBE_LANES; j++)
        total += acc[j];
    return total;
}

double fx_read_bandwidth_probe(const float *x, int64_t n, int n_threads)
{
    double total = 0.0;
#ifdef _OPENMP
    if (n_threads > 1) {
        /* one contiguous slice per thread, as the kernels split rows */
        #pragma omp parallel num_threads(n_threads) reduction(+:total)
        {
            int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
            total += fx_probe_sum(x + lo, hi - lo);
        }
        return total;
    }
#endif
    (void)n_threads;
    return fx_probe_sum(x, n);
}
