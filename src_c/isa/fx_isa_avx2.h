/* fx_isa_avx2.h -- the vocabulary (isa/fx_vec.h) for AVX2 + FMA + F16C: 32-byte vectors.
 * Compiled with -mavx2 -mfma -mf16c (src_c/fx_build.py); run where cpuid reports all three. */
#ifndef FX_ISA_AVX2_H
#define FX_ISA_AVX2_H

#define FX_VBYTES 32
#include "fx_vec.h"
#include <immintrin.h>

FX_INLINE fx_vf fx_maxf(fx_vf v, fx_vf m) { return (fx_vf)_mm256_max_ps((__m256)v, (__m256)m); }
FX_INLINE fx_vd fx_maxd(fx_vd v, fx_vd m) { return (fx_vd)_mm256_max_pd((__m256d)v, (__m256d)m); }

FX_INLINE void fx_widen_add(fx_vd *a0, fx_vd *a1, fx_vf e)
{
    *a0 += (fx_vd)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)e));
    *a1 += (fx_vd)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)e, 1));
}

FX_INLINE void fx_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b) { fx_interleave_load2_bf16(p, a, b); }

FX_INLINE fx_vf fx_load_f16(const uint16_t *p)
{
    __m128i h;
    memcpy(&h, p, sizeof h);
    return (fx_vf)_mm256_cvtph_ps(h);
}

FX_INLINE void fx_store_f16(uint16_t *p, fx_vf v)
{
    const __m128i h = _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    memcpy(p, &h, sizeof h);
}

FX_INLINE void fx_stream_line_avx2(char *d, const char *s)
{
    __m256i v0, v1;
    memcpy(&v0, s, 32);
    memcpy(&v1, s + 32, 32);
    _mm256_stream_si256((__m256i *)d, v0);
    _mm256_stream_si256((__m256i *)(d + 32), v1);
}
FX_INLINE void fx_stream_copy(void *dst, const void *src, size_t nbytes)
{
    fx_stream_copy_lines(dst, src, nbytes, fx_stream_line_avx2);
}
FX_INLINE void fx_stream_fence(void) { _mm_sfence(); }

FX_INLINE unsigned fx_bits_l(fx_vl m) { return (unsigned)_mm256_movemask_pd((__m256d)m); }

/* one vpermd: the 8-entry table of fx_expf_neg (fx_vmath.h) held in a register */
#define FX_HAVE_PERMUTE 1
FX_INLINE fx_vi fx_permute_i(fx_vi tab, fx_vi idx)
{
    return (fx_vi)_mm256_permutevar8x32_epi32((__m256i)tab, (__m256i)idx);
}

#define FX_HAVE_FMA 1

#define FX_HAVE_GATHER 1
FX_INLINE fx_vf fx_gatherf(const float *p, const int32_t *idx)
{ __m256i i; memcpy(&i, idx, sizeof i); return (fx_vf)_mm256_i32gather_ps(p, i, 4); }
FX_INLINE fx_vd fx_gatherd(const double *p, const int32_t *idx)
{ __m128i i; memcpy(&i, idx, sizeof i); return (fx_vd)_mm256_i32gather_pd(p, i, 8); }

/* Small-class tiles: 8 (float) / 4 (double) rows (pointers p[j]) of n <= FX_SMALL_COLS values
 * to tile[c * lanes + j], by masked row loads (nothing read past a row) and in-register
 * transposes -- much cheaper than gathers on current x86 cores. */
#define FX_HAVE_TILE 1
FX_INLINE void fx_tilef(const float *const *p, int64_t n, float *tile)
{
    for (int64_t c0 = 0; c0 < n; c0 += 8) {
        const int64_t left = n - c0;
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(left < 8 ? left : 8)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 r[8], t[8], u[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_maskload_ps(p[j] + c0, mask);
        for (int j = 0; j < 8; j += 2) {
            t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
            t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
        }
        for (int j = 0; j < 8; j += 4) {
            u[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
            u[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
            u[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
            u[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
        }
        for (int j = 0; j < 4; j++) {
            r[j] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x20);
            r[j + 4] = _mm256_permute2f128_ps(u[j], u[j + 4], 0x31);
        }
        for (int j = 0; j < 8 && j < left; j++) _mm256_storeu_ps(tile + (c0 + j) * 8, r[j]);
    }
}

FX_INLINE void fx_tiled(const double *const *p, int64_t n, double *tile)
{
    for (int64_t c0 = 0; c0 < n; c0 += 4) {
        const int64_t left = n - c0;
        __m256i mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(left < 4 ? left : 4),
                                          _mm256_setr_epi64x(0, 1, 2, 3));
        __m256d r[4], t[4];
        for (int j = 0; j < 4; j++) r[j] = _mm256_maskload_pd(p[j] + c0, mask);
        t[0] = _mm256_unpacklo_pd(r[0], r[1]);
        t[1] = _mm256_unpackhi_pd(r[0], r[1]);
        t[2] = _mm256_unpacklo_pd(r[2], r[3]);
        t[3] = _mm256_unpackhi_pd(r[2], r[3]);
        r[0] = _mm256_permute2f128_pd(t[0], t[2], 0x20);
        r[1] = _mm256_permute2f128_pd(t[1], t[3], 0x20);
        r[2] = _mm256_permute2f128_pd(t[0], t[2], 0x31);
        r[3] = _mm256_permute2f128_pd(t[1], t[3], 0x31);
        for (int j = 0; j < 4 && j < left; j++) _mm256_storeu_pd(tile + (c0 + j) * 4, r[j]);
    }
}

#endif
