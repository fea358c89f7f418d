/* fx_simde_avx512.h -- the AVX-512 intrinsics of isa/fx_isa_avx512.h emulated, for the
 * FASTXENT_SIMDE=1 build: the AVX-512 unit then compiles for AVX2 + FMA + F16C (no AVX-512
 * flag, so no AVX-512 instruction can be emitted) and runs, and is tested, on CPUs without
 * AVX-512 (CI).  Included by fx_isa_avx512.h in place of <immintrin.h> when FX_SIMDE is 1.
 *
 * SIMDe (libsimde-dev; https://github.com/simd-everywhere/simde) implements the intrinsics
 * with their exact semantics; SIMDE_ENABLE_NATIVE_ALIASES makes the native spellings
 * (_mm512_max_ps, __m512) name its implementations, so that the emulated unit is compiled
 * from the very source text that runs natively.  Debian 12's SIMDe (0.7.4~rc2) lacks six of
 * the intrinsics fastxent uses; they are defined below from their definition in Intel's
 * pseudo-code (each is its two 256-bit halves, or one scalar load per lane), used only where
 * SIMDe has no alias of its own, and compared bit for bit with the native instructions by
 * tools/simde_check.c on a CPU with AVX-512. */
#ifndef FX_SIMDE_AVX512_H
#define FX_SIMDE_AVX512_H

#if defined(__AVX512F__) && !defined(FX_SIMDE_CHECK) /* (tools/simde_check.c compares with native) */
#error "the SIMDe build of the AVX-512 unit must be compiled without -mavx512f (src_c/fx_build.py)"
#endif
#if !defined(__OPTIMIZE__)
/* GCC's immintrin.h defines some intrinsics with immediates as macros at -O0, which the
 * #ifndef tests below would take for SIMDe's aliases */
#error "the SIMDe build of the AVX-512 unit needs optimisation (-O1 or more)"
#endif

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <stddef.h>
#include <string.h>

/* the lanes of two 256-bit values as one 512-bit value (lo in the low half) */
#define FX_SIMDE_JOIN(type512, lo, hi)                                                       \
    __extension__({                                                                          \
        __typeof__(lo) h_[2] = {(lo), (hi)};                                                 \
        type512 r_;                                                                          \
        memcpy(&r_, h_, sizeof r_);                                                          \
        r_;                                                                                  \
    })
/* the low / high 256 bits of a 512-bit value as type256 */
#define FX_SIMDE_HALF(type256, v, k)                                                         \
    __extension__({                                                                          \
        __typeof__(v) v_ = (v);                                                              \
        type256 r_;                                                                          \
        memcpy(&r_, (const char *)&v_ + 32 * (k), sizeof r_);                                \
        r_;                                                                                  \
    })

/* vcvtps2pd zmm, ymm: 8 floats to 8 doubles */
static inline __m512d fx_simde_mm512_cvtps_pd(__m256 a)
{
    return FX_SIMDE_JOIN(__m512d, _mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
}

/* vcvtph2ps zmm, ymm: 16 IEEE halves to 16 floats */
static inline __m512 fx_simde_mm512_cvtph_ps(__m256i a)
{
    return FX_SIMDE_JOIN(__m512, _mm256_cvtph_ps(_mm256_castsi256_si128(a)),
                         _mm256_cvtph_ps(_mm256_extracti128_si256(a, 1)));
}

/* vcvtps2ph ymm, zmm, imm: 16 floats to 16 IEEE halves (rounding as `imm`: an immediate) */
#define fx_simde_mm512_cvtps_ph(a, imm)                                                      \
    FX_SIMDE_JOIN(__m256i, _mm256_cvtps_ph(FX_SIMDE_HALF(__m256, (a), 0), (imm)),             \
                  _mm256_cvtps_ph(FX_SIMDE_HALF(__m256, (a), 1), (imm)))

/* vgatherdps / vgatherdpd: lane j loads base + idx[j] * scale.  One plain load per lane, so
 * that AddressSanitizer checks every lane's address (it does not see a gather instruction's). */
static inline __m512 fx_simde_mm512_i32gather_ps(__m512i idx, const void *base, int scale)
{
    int32_t i[16];
    float r[16];
    memcpy(i, &idx, sizeof i);
    for (int j = 0; j < 16; j++) memcpy(&r[j], (const char *)base + (ptrdiff_t)i[j] * scale, 4);
    __m512 v;
    memcpy(&v, r, sizeof v);
    return v;
}

static inline __m512d fx_simde_mm512_i32gather_pd(__m256i idx, const void *base, int scale)
{
    int32_t i[8];
    double r[8];
    memcpy(i, &idx, sizeof i);
    for (int j = 0; j < 8; j++) memcpy(&r[j], (const char *)base + (ptrdiff_t)i[j] * scale, 8);
    __m512d v;
    memcpy(&v, r, sizeof v);
    return v;
}

/* vmovntdq m512, zmm: a non-temporal store of 64 bytes to a 64-byte aligned address */
static inline void fx_simde_mm512_stream_si512(void *p, __m512i a)
{
    _mm256_stream_si256((__m256i *)p, FX_SIMDE_HALF(__m256i, a, 0));
    _mm256_stream_si256((__m256i *)((char *)p + 32), FX_SIMDE_HALF(__m256i, a, 1));
}

/* the native spellings, where SIMDe has none (it defines its aliases as macros) */
#if !defined(SIMDE_X86_AVX512F_NATIVE)
#ifndef _mm512_cvtps_pd
#define _mm512_cvtps_pd(a) fx_simde_mm512_cvtps_pd(a)
#endif
#ifndef _mm512_cvtph_ps
#define _mm512_cvtph_ps(a) fx_simde_mm512_cvtph_ps(a)
#endif
#ifndef _mm512_cvtps_ph
#define _mm512_cvtps_ph(a, imm) fx_simde_mm512_cvtps_ph(a, imm)
#endif
#ifndef _mm512_i32gather_ps
#define _mm512_i32gather_ps(idx, base, scale) fx_simde_mm512_i32gather_ps(idx, base, scale)
#endif
#ifndef _mm512_i32gather_pd
#define _mm512_i32gather_pd(idx, base, scale) fx_simde_mm512_i32gather_pd(idx, base, scale)
#endif
#ifndef _mm512_stream_si512
#define _mm512_stream_si512(p, a) fx_simde_mm512_stream_si512(p, a)
#endif
#endif

#endif
