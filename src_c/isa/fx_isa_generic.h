/* fx_isa_generic.h -- the vocabulary (isa/fx_vec.h) in portable vector-extension code for
 * vectors of FX_VBYTES bytes (defined by the includer): the baseline of CPUs other than
 * x86-64, and the 64-byte variant that tools/wide_vector_check.c runs on AVX2. */
#ifndef FX_ISA_GENERIC_H
#define FX_ISA_GENERIC_H

#include "fx_vec.h"

FX_INLINE fx_vf fx_maxf(fx_vf v, fx_vf m) { return fx_generic_maxf(v, m); }
FX_INLINE fx_vd fx_maxd(fx_vd v, fx_vd m) { return fx_generic_maxd(v, m); }
FX_INLINE void fx_widen_add(fx_vd *a0, fx_vd *a1, fx_vf e) { fx_generic_widen_add(a0, a1, e); }

FX_INLINE void fx_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b)
{
#if FX_HAVE_INTERLEAVE_BF16
    fx_interleave_load2_bf16(p, a, b);
#else
    fx_generic_load2_bf16(p, a, b);
#endif
}

FX_INLINE fx_vf fx_load_f16(const uint16_t *p) { return fx_generic_load_f16(p); }
FX_INLINE unsigned fx_bits_l(fx_vl m) { return fx_generic_bits_l(m); }
FX_INLINE void fx_store_f16(uint16_t *p, fx_vf v) { fx_generic_store_f16(p, v); }
FX_INLINE void fx_stream_copy(void *dst, const void *src, size_t nbytes) { fx_generic_stream_copy(dst, src, nbytes); }
FX_INLINE void fx_stream_fence(void) { fx_generic_stream_fence(); }

#if defined(__FMA__)
#define FX_HAVE_FMA 1
#else
#define FX_HAVE_FMA 0
#endif
#define FX_HAVE_PERMUTE 0
#define FX_HAVE_GATHER 0
#define FX_HAVE_TILE 0

#endif
