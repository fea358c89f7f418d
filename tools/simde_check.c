/* simde_check.c -- every intrinsic src_c/isa/fx_isa_avx512.h uses, emulated as a FASTXENT_SIMDE=1
 * build compiles it (isa/fx_simde_avx512.h: SIMDe, and the six it lacks) against the native
 * AVX-512 instruction, bit for bit, on a CPU with AVX-512.  The float conversions are checked
 * exhaustively (every float32 and every half), the rest on special values and a random stream.
 *
 * This file is compiled twice: once emulated (wrappers emu_*), once native (nat_* and main):
 *   gcc -O2 -mavx2 -mfma -mf16c -DFX_SIMDE=1 -Isrc_c/isa -c tools/simde_check.c -o simde_emu.o
 *   gcc -O2 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -mf16c -Isrc_c/isa \
 *       tools/simde_check.c simde_emu.o -o simde_check && ./simde_check
 * Exit 0: all equal; 1: a difference (printed); 77: this CPU has no AVX-512 (nothing checked). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if FX_SIMDE
#include "fx_simde_avx512.h"
#define FX_CK(name) emu_##name
#else
#include <immintrin.h>
#define FX_CK(name) nat_##name
#endif

#define LOAD(type, v, p) type v; memcpy(&v, (p), sizeof v)
#define STORE(p, v) memcpy((p), &v, sizeof v)

void FX_CK(max_ps)(const float *a, const float *b, float *r)
{ LOAD(__m512, x, a); LOAD(__m512, y, b); __m512 z = _mm512_max_ps(x, y); STORE(r, z); }
void FX_CK(max_pd)(const double *a, const double *b, double *r)
{ LOAD(__m512d, x, a); LOAD(__m512d, y, b); __m512d z = _mm512_max_pd(x, y); STORE(r, z); }
/* fx_widen_add's two conversions: the low half through the cast, the high through the extract */
void FX_CK(widen)(const float *a, double *r)
{
    LOAD(__m512, e, a);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd((__m512d)e, 1)));
    STORE(r, lo);
    STORE(r + 8, hi);
}
void FX_CK(cvtph_ps)(const uint16_t *h, float *r) { LOAD(__m256i, x, h); __m512 z = _mm512_cvtph_ps(x); STORE(r, z); }
void FX_CK(cvtps_ph)(const float *a, uint16_t *r)
{
    LOAD(__m512, x, a);
    __m256i z = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    STORE(r, z);
}
unsigned FX_CK(movepi64_mask)(const int64_t *m) { LOAD(__m512i, x, m); return (unsigned)_mm512_movepi64_mask(x); }
void FX_CK(gather_ps)(const float *p, const int32_t *idx, float *r)
{ LOAD(__m512i, i, idx); __m512 z = _mm512_i32gather_ps(i, p, 4); STORE(r, z); }
void FX_CK(gather_pd)(const double *p, const int32_t *idx, double *r)
{ LOAD(__m256i, i, idx); __m512d z = _mm512_i32gather_pd(i, p, 8); STORE(r, z); }
void FX_CK(stream)(void *dst, const void *src) { LOAD(__m512i, v, src); _mm512_stream_si512(dst, v); _mm_sfence(); }

#if !FX_SIMDE
void emu_max_ps(const float *, const float *, float *);
void emu_max_pd(const double *, const double *, double *);
void emu_widen(const float *, double *);
void emu_cvtph_ps(const uint16_t *, float *);
void emu_cvtps_ph(const float *, uint16_t *);
unsigned emu_movepi64_mask(const int64_t *);
void emu_gather_ps(const float *, const int32_t *, float *);
void emu_gather_pd(const double *, const int32_t *, double *);
void emu_stream(void *, const void *);

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next(void)  /* splitmix64 */
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static long failures;
static void differ(const char *what, uint64_t where, const void *a, const void *b, size_t n)
{
    if (memcmp(a, b, n) == 0) return;
    if (failures++ < 10) {
        size_t k0 = 0;
        while (((const uint8_t *)a)[k0] == ((const uint8_t *)b)[k0]) k0++;
        printf("simde_check: %s differs (case %llu) from byte %zu:", what, (unsigned long long)where, k0);
        for (size_t k = k0; k < n && k < k0 + 8; k++) printf(" %02x/%02x", ((const uint8_t *)a)[k], ((const uint8_t *)b)[k]);
        printf(" (emulated/native)\n");
    }
}

/* float bit patterns that matter to max and the conversions */
static const uint32_t SPECIAL_F[] = {0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x00800000,
                                     0x3f800000, 0xbf800000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,
                                     0x7fc00000, 0xffc00000, 0x7f800001, 0x7fa00000, 0x477fe000, 0x477ff000,
                                     0x33800000, 0x33000000, 0x387fc000, 0xc2aeac50};
#define NSPEC (sizeof SPECIAL_F / sizeof SPECIAL_F[0])

int main(void)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))) {
        printf("simde_check: this CPU has no AVX-512: nothing to compare with (skipped)\n");
        return 77;
    }
    float a[16], b[16], rf[2][16];
    double ad[8], bd[8], rd[2][16];
    uint16_t h[16], rh[2][16];
    long n = 0;

    /* every float32 bit pattern: widening to double, rounding to half */
    for (uint64_t base = 0; base < (1ull << 32); base += 16) {
        uint32_t u[16];
        for (int j = 0; j < 16; j++) u[j] = (uint32_t)(base + j);
        memcpy(a, u, sizeof a);
        emu_widen(a, rd[0]); nat_widen(a, rd[1]);
        differ("_mm512_cvtps_pd (cast/extract halves)", base, rd[0], rd[1], sizeof rd[0]);
        emu_cvtps_ph(a, rh[0]); nat_cvtps_ph(a, rh[1]);
        differ("_mm512_cvtps_ph", base, rh[0], rh[1], sizeof rh[0]);
        n += 2;
    }
    /* every half */
    for (uint32_t base = 0; base < 65536; base += 16) {
        for (int j = 0; j < 16; j++) h[j] = (uint16_t)(base + j);
        emu_cvtph_ps(h, rf[0]); nat_cvtph_ps(h, rf[1]);
        differ("_mm512_cvtph_ps", base, rf[0], rf[1], sizeof rf[0]);
        n++;
    }
    /* max: every pair of special values (in either operand, NaNs included), then random bits */
    for (size_t i = 0; i < NSPEC; i++)
        for (size_t k = 0; k < NSPEC; k++) {
            for (int j = 0; j < 16; j++) { memcpy(&a[j], &SPECIAL_F[i], 4); memcpy(&b[j], &SPECIAL_F[(k + j) % NSPEC], 4); }
            emu_max_ps(a, b, rf[0]); nat_max_ps(a, b, rf[1]);
            differ("_mm512_max_ps", i * NSPEC + k, rf[0], rf[1], sizeof rf[0]);
            for (int j = 0; j < 8; j++) { ad[j] = (double)a[j]; bd[j] = (double)b[(j + (int)i) % 16]; }
            emu_max_pd(ad, bd, rd[0]); nat_max_pd(ad, bd, rd[1]);
            differ("_mm512_max_pd", i * NSPEC + k, rd[0], rd[1], 64);
            n += 2;
        }
    for (uint64_t c = 0; c < 1000000; c++) {
        uint64_t w[16];
        for (int j = 0; j < 16; j++) w[j] = next();
        memcpy(a, w, sizeof a);
        memcpy(b, w + 8, sizeof b);
        emu_max_ps(a, b, rf[0]); nat_max_ps(a, b, rf[1]);
        differ("_mm512_max_ps", c, rf[0], rf[1], sizeof rf[0]);
        memcpy(ad, w, sizeof ad);
        memcpy(bd, w + 8, sizeof bd);
        emu_max_pd(ad, bd, rd[0]); nat_max_pd(ad, bd, rd[1]);
        differ("_mm512_max_pd", c, rd[0], rd[1], 64);
        int64_t m[8];
        for (int j = 0; j < 8; j++) m[j] = (int64_t)(w[j] & ((w[8] >> j) & 1 ? ~0ull : 0x7fffffffffffffffull));
        unsigned k0 = emu_movepi64_mask(m), k1 = nat_movepi64_mask(m);
        differ("_mm512_movepi64_mask", c, &k0, &k1, sizeof k0);
        n += 3;
    }
    /* gathers: indices anywhere in a table, negative ones from its middle */
    static float tf[4096];
    static double td[4096];
    for (int j = 0; j < 4096; j++) { uint64_t w = next(); memcpy(&tf[j], &w, 4); memcpy(&td[j], &w, 8); }
    for (uint64_t c = 0; c < 100000; c++) {
        int32_t idx[16];
        for (int j = 0; j < 16; j++) idx[j] = (int32_t)(next() % 4096) - 2048;
        emu_gather_ps(tf + 2048, idx, rf[0]); nat_gather_ps(tf + 2048, idx, rf[1]);
        differ("_mm512_i32gather_ps", c, rf[0], rf[1], sizeof rf[0]);
        emu_gather_pd(td + 2048, idx, rd[0]); nat_gather_pd(td + 2048, idx, rd[1]);
        differ("_mm512_i32gather_pd", c, rd[0], rd[1], 64);
        n += 2;
    }
    /* non-temporal stores of 64 bytes */
    static uint64_t src[8], dst[2][8] __attribute__((aligned(64)));
    for (uint64_t c = 0; c < 10000; c++) {
        for (int j = 0; j < 8; j++) src[j] = next();
        emu_stream(dst[0], src); nat_stream(dst[1], src);
        differ("_mm512_stream_si512", c, dst[0], dst[1], sizeof dst[0]);
        n++;
    }
    printf("simde_check: %ld vector results of 9 intrinsics compared (every float32 and half "
           "for the conversions): %ld differ\n", n, failures);
    return failures ? 1 : 0;
}
#endif
