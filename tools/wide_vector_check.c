/* wide_vector_check.c -- the AVX-512 variant's portable code, run on a CPU without AVX-512.
 *
 * The kernels are one source (src_c/templates/) instantiated per ISA; the AVX-512 variant
 * (64-byte vectors, 16 float lanes) cannot run on a CPU without AVX-512, yet everything in it
 * but a few vocabulary entries (gathers, max, movemask, F16C) is GCC vector extension code.
 * The tools-only ISA emu512 of src_c/fx_build.py is that code: the templates over the portable
 * vocabulary (src_c/isa/fx_isa_generic.h) with 64-byte vectors, compiled for AVX2 (GCC lowers
 * them to pairs of 32-byte operations).  It is compared with the AVX2 kernels on the shapes
 * that exercise the lane counts: small-class groups of 16 rows with partial tails, blocks and
 * their tails, the split path, slabs of summed losses, the gradient at the stored-blocks
 * limit, and rows with -inf/NaN/+inf. Results differ in the last bits (the AVX2 exp is a
 * different polynomial), so they are compared to 1e-6 (float) / 1e-13 (double).
 * .ci/run builds and runs it with AddressSanitizer + UBSan:
 *
 *   F="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-math-errno -Wno-psabi"
 *   python src_c/fx_build.py --lib --openmp --isa emu512 --cflags "$F" /tmp/wvc
 *   gcc $F -fopenmp -Isrc_c tools/wide_vector_check.c /tmp/wvc/libfastxent.a \
 *       -o /tmp/wide_vector_check -lm && /tmp/wide_vector_check
 *
 * Exit status 0 when every value agrees, 1 otherwise, 2 without AVX2. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fastxent.h"
#include "fx_ops.h"

/* the emu512 rows of the generated fx_kernels_emu512.c */
extern const fx_ops fx_ops_float32_emu512, fx_ops_float64_emu512, fx_ops_bfloat16_emu512;

static uint64_t s = 88172645463325252ULL;
static double unif(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (double)(s >> 11) / 9007199254740992.0; }
static double gauss(void) { return sqrt(-2.0 * log(unif() + 1e-12)) * cos(6.283185307179586 * unif()); }

static int fails = 0, checks = 0;
static void cmp(const char *what, const double *a, const double *b, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        checks++;
        int ok = (isnan(a[i]) && isnan(b[i])) || a[i] == b[i] || fabs(a[i] - b[i]) <= tol * (1.0 + fabs(b[i]));
        if (!ok) { if (fails < 20) printf("FAIL %s [%lld]: emu512 %.17g avx2 %.17g\n", what, (long long)i, a[i], b[i]); fails++; }
    }
}

int main(void)
{
    if (fx_isa_select(1) != 1) { printf("no avx2\n"); return 2; }
    static const int64_t shapes[][2] = {{37, 10}, {1003, 7}, {515, 64}, {200, 65}, {17, 1000}, {5, 5000},
                                        {3, 70001}, {1, 130000}, {4, 262145}, {2, 1}, {9, 3}};
    for (int sh = 0; sh < (int)(sizeof shapes / sizeof shapes[0]); sh++) {
        const int64_t rows = shapes[sh][0], cols = shapes[sh][1], n = rows * cols;
        for (int special = 0; special < 2; special++) {
            float *x = malloc(n * sizeof *x); double *d = malloc(n * sizeof *d); uint16_t *h = malloc(n * 2);
            int64_t *t = malloc(rows * sizeof *t);
            double *o1 = malloc(rows * 8), *o2 = malloc(rows * 8);
            for (int64_t i = 0; i < n; i++) { x[i] = (float)(3.0 * gauss()); d[i] = x[i]; }
            for (int64_t r = 0; r < rows; r++) t[r] = r % 5 == 3 ? -100 : (int64_t)(unif() * cols) % cols;
            if (special && rows > 2) {
                for (int64_t c = 0; c < cols; c++) { x[c] = -INFINITY; d[c] = -INFINITY; }   /* row 0 all -inf */
                x[cols + cols / 2] = NAN; d[cols + cols / 2] = NAN;                          /* row 1 NaN */
                x[2 * cols] = INFINITY; d[2 * cols] = INFINITY;                              /* row 2 +inf */
                if (rows > 3) { x[3 * cols + cols - 1] = 80.0f; d[3 * cols + cols - 1] = 80.0; }
            }
            for (int64_t i = 0; i < n; i++) { uint32_t u; memcpy(&u, &x[i], 4); h[i] = (uint16_t)(u >> 16); }
            fx_rows rx = {.data = x, .n_outer = 1, .n_inner = rows, .n_cols = cols, .s_outer = n, .s_inner = cols, .s_col = 1};
            fx_rows rd = rx, rh = rx; rd.data = d; rh.data = h;
            char name[96];
            for (int nt = 1; nt <= 2; nt++) {
                snprintf(name, sizeof name, "lse f32 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_float32_emu512.lse(&rx, o1, nt); fx_lse(FX_FLOAT32, &rx, o2, nt); cmp(name, o1, o2, rows, 1e-6);
                snprintf(name, sizeof name, "xent f32 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_float32_emu512.xent(&rx, t, -100, o1, nt); fx_xent(FX_FLOAT32, &rx, t, -100, o2, nt); cmp(name, o1, o2, rows, 1e-6);
                double s1, s2;
                fx_ops_float32_emu512.xent_sum(&rx, t, -100, &s1, nt); fx_xent_sum(FX_FLOAT32, &rx, t, -100, &s2, nt);
                snprintf(name, sizeof name, "xent_sum f32 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                cmp(name, &s1, &s2, 1, 1e-6);
                snprintf(name, sizeof name, "lse f64 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_float64_emu512.lse(&rd, o1, nt); fx_lse(FX_FLOAT64, &rd, o2, nt); cmp(name, o1, o2, rows, 1e-13);
                snprintf(name, sizeof name, "xent f64 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_float64_emu512.xent(&rd, t, -100, o1, nt); fx_xent(FX_FLOAT64, &rd, t, -100, o2, nt); cmp(name, o1, o2, rows, 1e-13);
                snprintf(name, sizeof name, "lse bf16 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_bfloat16_emu512.lse(&rh, o1, nt); fx_lse(FX_BFLOAT16, &rh, o2, nt); cmp(name, o1, o2, rows, 1e-6);
                snprintf(name, sizeof name, "xent bf16 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                fx_ops_bfloat16_emu512.xent(&rh, t, -100, o1, nt); fx_xent(FX_BFLOAT16, &rh, t, -100, o2, nt); cmp(name, o1, o2, rows, 1e-6);
                if (n <= 2000000) {
                    float *p1 = malloc(n * 4), *p2 = malloc(n * 4);
                    double *q1 = malloc(n * 8), *q2 = malloc(n * 8);
                    for (int lg = 0; lg < 2; lg++) {
                        fx_ops_float32_emu512.softmax(&rx, p1, lg, nt); fx_softmax(FX_FLOAT32, &rx, p2, lg, nt);
                        for (int64_t i = 0; i < n; i++) { q1[i] = p1[i]; q2[i] = p2[i]; }
                        snprintf(name, sizeof name, "softmax%d f32 %lldx%lld sp%d nt%d", lg, (long long)rows, (long long)cols, special, nt);
                        cmp(name, q1, q2, n, 2e-6);
                    }
                    /* full kernel: smoothing + z_loss + gradient */
                    fx_xent_opts o;
                    memset(&o, 0, sizeof o);
                    o.target = t; o.ignore_index = -100; o.smoothing = 0.1; o.z_loss = 1e-3;
                    o.grad = p1; o.grad_rows = (fx_rows){.data = p1, .n_outer = 1, .n_inner = rows, .n_cols = cols, .s_outer = n, .s_inner = cols, .s_col = 1};
                    o.grad_scale = 1.0; o.zgrad_scale = 1.0;
                    double *z1 = malloc(rows * 8), *z2 = malloc(rows * 8);
                    fx_ops_float32_emu512.xent_ex(&rx, &o, o1, z1, nt);
                    o.grad = p2; o.grad_rows.data = p2;
                    fx_xent_ex(FX_FLOAT32, &rx, &o, o2, z2, nt);
                    snprintf(name, sizeof name, "xent_ex loss f32 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                    cmp(name, o1, o2, rows, 1e-6);
                    for (int64_t i = 0; i < n; i++) { q1[i] = p1[i]; q2[i] = p2[i]; }
                    snprintf(name, sizeof name, "xent_ex grad f32 %lldx%lld sp%d nt%d", (long long)rows, (long long)cols, special, nt);
                    cmp(name, q1, q2, n, 2e-6);
                    free(z1); free(z2); free(p1); free(p2); free(q1); free(q2);
                }
            }
            free(x); free(d); free(h); free(t); free(o1); free(o2);
        }
    }
    printf("%d checks, %d failures\n", checks, fails);
    return fails != 0;
}
