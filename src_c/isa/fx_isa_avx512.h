/* fx_isa_avx512.h -- the vocabulary (isa/fx_vec.h) for AVX-512 F/DQ/BW/VL (+ AVX2, FMA, F16C):
 * 64-byte vectors.  Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma
 * -mf16c (src_c/fx_build.py); run where cpuid reports all of them.
 *
 * In a FASTXENT_SIMDE=1 build the same text is compiled with -mavx2 -mfma -mf16c and FX_SIMDE 1
 * and every _mm512_* intrinsic below comes from isa/fx_simde_avx512.h (SIMDe's portable
 * implementations): the AVX-512 variant, emulated, runs on AVX2 CPUs and in CI. */
#ifndef FX_ISA_AVX512_H
#define FX_ISA_AVX512_H

#define FX_VBYTES 64
#include "fx_vec.h"
#if FX_SIMDE
#include "fx_simde_avx512.h"
#else
#include <immintrin.h>
#endif

FX_INLINE fx_vf fx_maxf(fx_vf v, fx_vf m) { return (fx_vf)_mm512_max_ps((__m512)v, (__m512)m); }
FX_INLINE fx_vd fx_maxd(fx_vd v, fx_vd m) { return (fx_vd)_mm512_max_pd((__m512d)v, (__m512d)m); }

FX_INLINE void fx_widen_add(fx_vd *a0, fx_vd *a1, fx_vf e)
{
    *a0 += (fx_vd)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)e));
    *a1 += (fx_vd)_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd((__m512d)e, 1)));
}

/* two zero-extends (the interleaving form is written for 16/32-byte vectors) */
FX_INLINE void fx_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b) { fx_generic_load2_bf16(p, a, b); }

FX_INLINE fx_vf fx_load_f16(const uint16_t *p)
{
    __m256i h;
    memcpy(&h, p, sizeof h);
    return (fx_vf)_mm512_cvtph_ps(h);
}

FX_INLINE void fx_store_f16(uint16_t *p, fx_vf v)
{
    const __m256i h = _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    memcpy(p, &h, sizeof h);
}

FX_INLINE void fx_stream_line_avx512(char *d, const char *s)
{
    __m512i v;
    memcpy(&v, s, 64);
    _mm512_stream_si512((void *)d, v);
}
FX_INLINE void fx_stream_copy(void *dst, const void *src, size_t nbytes)
{
    fx_stream_copy_lines(dst, src, nbytes, fx_stream_line_avx512);
}
FX_INLINE void fx_stream_fence(void) { _mm_sfence(); }

FX_INLINE unsigned fx_bits_l(fx_vl m) { return (unsigned)_mm512_movepi64_mask((__m512i)m); }

#define FX_HAVE_FMA 1
#define FX_HAVE_PERMUTE 0 /* the table form of fx_expf_neg is written for 8 lanes */

#define FX_HAVE_GATHER 1
FX_INLINE fx_vf fx_gatherf(const float *p, const int32_t *idx)
{ __m512i i; memcpy(&i, idx, sizeof i); return (fx_vf)_mm512_i32gather_ps(i, p, 4); }
FX_INLINE fx_vd fx_gatherd(const double *p, const int32_t *idx)
{ __m256i i; memcpy(&i, idx, sizeof i); return (fx_vd)_mm512_i32gather_pd(i, p, 8); }

#define FX_HAVE_TILE 0

#endif
