/* fx_isa_baseline.h -- the vocabulary (isa/fx_vec.h) for 16-byte vectors: SSE2 on x86-64
 * (which every x86-64 CPU has, so this variant needs no target flags), the portable forms of
 * isa/fx_isa_generic.h elsewhere. */
#ifndef FX_ISA_BASELINE_H
#define FX_ISA_BASELINE_H

#if defined(__x86_64__)
#define FX_VBYTES 16
#include "fx_vec.h"
#include <immintrin.h>

FX_INLINE fx_vf fx_maxf(fx_vf v, fx_vf m) { return (fx_vf)_mm_max_ps((__m128)v, (__m128)m); }
FX_INLINE fx_vd fx_maxd(fx_vd v, fx_vd m) { return (fx_vd)_mm_max_pd((__m128d)v, (__m128d)m); }

FX_INLINE void fx_widen_add(fx_vd *a0, fx_vd *a1, fx_vf e)
{
    *a0 += (fx_vd)_mm_cvtps_pd((__m128)e);
    *a1 += (fx_vd)_mm_cvtps_pd(_mm_movehl_ps((__m128)e, (__m128)e));
}

FX_INLINE void fx_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b) { fx_interleave_load2_bf16(p, a, b); }
FX_INLINE fx_vf fx_load_f16(const uint16_t *p) { return fx_generic_load_f16(p); } /* no F16C */
FX_INLINE unsigned fx_bits_l(fx_vl m) { return (unsigned)_mm_movemask_pd((__m128d)m); }
FX_INLINE void fx_store_f16(uint16_t *p, fx_vf v) { fx_generic_store_f16(p, v); } /* no F16C */

FX_INLINE void fx_stream_line_sse2(char *d, const char *s)
{
    for (int k = 0; k < 64; k += 16) {
        __m128i v;
        memcpy(&v, s + k, 16);
        _mm_stream_si128((__m128i *)(d + k), v);
    }
}
FX_INLINE void fx_stream_copy(void *dst, const void *src, size_t nbytes)
{
    fx_stream_copy_lines(dst, src, nbytes, fx_stream_line_sse2);
}
FX_INLINE void fx_stream_fence(void) { _mm_sfence(); }

#define FX_HAVE_FMA 0
#define FX_HAVE_PERMUTE 0
#define FX_HAVE_GATHER 0
#define FX_HAVE_TILE 0
#else
#define FX_VBYTES 16
#include "fx_isa_generic.h"
#endif

#endif
