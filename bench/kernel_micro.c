/* kernel_micro.c -- the C kernels alone, without Python: ns per element of
 * fx_lse and fx_xent on float32, fx_lse on bfloat16 and float64, best of 5 rounds.
 * For comparing kernel changes on a noisy machine (the best of several hot
 * rounds moves far less than a median of single Python calls).
 *
 *   python src_c/fx_build.py --lib --openmp /tmp/fxk     # the kernels, as setup.py builds them
 *   gcc -O3 -fopenmp -Isrc_c bench/kernel_micro.c /tmp/fxk/libfastxent.a -o /tmp/kernel_micro -lm
 *   /tmp/kernel_micro [isa] [case] [threads]
 *
 * isa: 0 baseline, 1 avx2 (default), 2 avx512 (capped at what the CPU has);
 * case: 0 (128, 2048), 1 (512, 128256), 2 (2048, 32000), 3 (1000000, 10), -1 all;
 * threads: n_threads of the calls (default 1). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastxent.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ULL;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(void)
{
    return sqrt(-2.0 * log(uniform() + 1e-12)) * cos(6.283185307179586 * uniform());
}

int main(int argc, char **argv)
{
    const int isa = argc > 1 ? atoi(argv[1]) : 1;
    const int only = argc > 2 ? atoi(argv[2]) : -1;
    const int nt = argc > 3 ? atoi(argv[3]) : 1;
    static const int64_t shapes[][2] = {{128, 2048}, {512, 128256}, {2048, 32000}, {1000000, 10}};
    printf("isa %s, %d thread(s)\n", fx_isa_name(fx_isa_select(isa)), nt);
    for (int c = 0; c < 4; c++) {
        if (only >= 0 && c != only) continue;
        const int64_t rows = shapes[c][0], cols = shapes[c][1], n = rows * cols;
        float *x = malloc((size_t)n * sizeof *x);
        uint16_t *h = malloc((size_t)n * sizeof *h);
        double *d = malloc((size_t)n * sizeof *d);
        double *out = malloc((size_t)rows * sizeof *out);
        int64_t *target = calloc((size_t)rows, sizeof *target);
        if (!x || !h || !d || !out || !target) return 1;
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            x[i] = (float)(3.0 * normal());
            memcpy(&u, &x[i], sizeof u);
            h[i] = (uint16_t)(u >> 16); /* bfloat16 by truncation */
            d[i] = (double)x[i];
        }
        const fx_rows rx = {.data = x, .n_outer = 1, .n_inner = rows, .n_cols = cols,
                            .s_outer = (ptrdiff_t)n, .s_inner = (ptrdiff_t)cols, .s_col = 1};
        fx_rows rh = rx, rd = rx;
        rh.data = h;
        rd.data = d;
        const int reps = c == 0 ? 2000 : c == 3 ? 20 : 10;
        double best[4] = {1e30, 1e30, 1e30, 1e30};
        for (int round = 0; round < 5; round++) {
            double t[5];
            t[0] = now();
            for (int i = 0; i < reps; i++) fx_lse(FX_FLOAT32, &rx, out, nt);
            t[1] = now();
            for (int i = 0; i < reps; i++) fx_xent(FX_FLOAT32, &rx, target, -100, out, nt);
            t[2] = now();
            for (int i = 0; i < reps; i++) fx_lse(FX_BFLOAT16, &rh, out, nt);
            t[3] = now();
            for (int i = 0; i < reps; i++) fx_lse(FX_FLOAT64, &rd, out, nt);
            t[4] = now();
            for (int k = 0; k < 4; k++)
                if (t[k + 1] - t[k] < best[k]) best[k] = t[k + 1] - t[k];
        }
        const double per = 1e9 / ((double)reps * (double)n);
        printf("(%7lld, %6lld)  lse f32 %.3f  xent f32 %.3f  lse bf16 %.3f  lse f64 %.3f  ns/element\n",
               (long long)rows, (long long)cols, best[0] * per, best[1] * per, best[2] * per, best[3] * per);
        free(x);
        free(h);
        free(d);
        free(out);
        free(target);
    }
    return 0;
}
