/* fx_vec.h -- the vector types every ISA shares and the portable half of the ISA vocabulary.
 *
 * Included first by each ISA header (isa/fx_isa_<isa>.h), which defines FX_VBYTES (the vector
 * size in bytes) before.  Only GCC/Clang vector extensions here, no intrinsics: an ISA header
 * takes these portable forms (fx_generic_*) where its instruction set has nothing better.
 *
 * The vocabulary (what an ISA header must define; the algorithm code uses nothing else):
 *   types   fx_vf / fx_vi  float lanes and their int32 masks       (FX_VBYTES / 4 lanes)
 *           fx_vd / fx_vl / fx_vu  double lanes, int64/uint64 masks (FX_VBYTES / 8 lanes)
 *   load    fx_loadf(p), fx_loadd(p)           one vector from an unaligned pointer
 *   select  fx_self(m, a, b), fx_seld(...)     a where the mask m is set, else b
 *   max     fx_maxf(v, m), fx_maxd(v, m)       lane max, a NaN in v ignored (v > m ? v : m)
 *   widen   fx_widen_add(&a0, &a1, e)          float lanes of e to double, added to a0 (low
 *                                              half) and a1 (high half)
 *           fx_load_bf16(p), fx_load2_bf16(p, &a, &b), fx_load_f16(p)
 *                                              bfloat16 / IEEE half elements widened to fx_vf
 *   narrow  fx_store_bf16(p, v), fx_store_f16(p, v)  float lanes rounded to nearest even and
 *                                              stored as bfloat16 / IEEE half (the bits of
 *                                              fx_common.h's fx_float_to_bf16 / fx_float_to_f16)
 *   stream  fx_stream_copy(dst, src, nbytes)   memcpy, dst's whole 64-byte lines written with
 *                                              non-temporal stores where the ISA has them
 *           fx_stream_fence()                  orders this thread's non-temporal stores before
 *                                              its later ones (a no-op without them)
 *   mask    fx_bits_l(m)                       bit j set where 64-bit lane j of m is set
 *   permute fx_permute_i(tab, idx)             tab[idx[j] mod lanes] (FX_HAVE_PERMUTE only)
 *   gather  fx_gatherf(p, idx), fx_gatherd     p[idx[j]] (FX_HAVE_GATHER only)
 *   tile    fx_tilef(rows, n, tile), fx_tiled  lanes x n transposes (FX_HAVE_TILE only)
 *   flags   FX_HAVE_FMA      a * b + c is contracted into one rounding (-ffp-contract=fast)
 *           FX_HAVE_PERMUTE  the 8-lane table form of fx_expf_neg (fx_vmath.h) is used
 *           FX_HAVE_GATHER, FX_HAVE_TILE  the small-class tiles' loads (fx_params.h)
 * Within one ISA the order of every sum is fixed by the lanes, so results do not depend on
 * the number of threads; ISAs may differ in the last bits. */
#ifndef FX_VEC_H
#define FX_VEC_H

#if !defined(__GNUC__) && !defined(__clang__)
#error "fastxent's kernels need GCC or Clang vector extensions"
#endif
#ifndef FX_VBYTES
#error "fx_vec.h is included by an ISA header (src_c/isa/fx_isa_<isa>.h), which defines FX_VBYTES"
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "fx_common.h" /* the scalar 16-bit conversions of the portable forms */

#define FX_INLINE static inline __attribute__((always_inline))

typedef float    fx_vf __attribute__((vector_size(FX_VBYTES)));
typedef int32_t  fx_vi __attribute__((vector_size(FX_VBYTES)));
typedef double   fx_vd __attribute__((vector_size(FX_VBYTES)));
typedef int64_t  fx_vl __attribute__((vector_size(FX_VBYTES)));
typedef uint64_t fx_vu __attribute__((vector_size(FX_VBYTES)));
/* 16-bit storage: FX_VBYTES / 4 elements (one fx_vf widened), twice that, and their 32-bit lanes */
typedef uint16_t fx_vh16 __attribute__((vector_size(FX_VBYTES / 2)));
typedef uint16_t fx_vw16 __attribute__((vector_size(FX_VBYTES)));
typedef uint32_t fx_vu32 __attribute__((vector_size(FX_VBYTES)));

/* the float lanes of the low and the high half (shuffle indices) */
#if FX_VBYTES == 16
#define FX_HALF_LO 0, 1
#define FX_HALF_HI 2, 3
#elif FX_VBYTES == 32
#define FX_HALF_LO 0, 1, 2, 3
#define FX_HALF_HI 4, 5, 6, 7
#elif FX_VBYTES == 64
#define FX_HALF_LO 0, 1, 2, 3, 4, 5, 6, 7
#define FX_HALF_HI 8, 9, 10, 11, 12, 13, 14, 15
#else
#error "FX_VBYTES must be 16, 32 or 64"
#endif

FX_INLINE fx_vf fx_loadf(const float *p) { fx_vf v; memcpy(&v, p, sizeof v); return v; }
FX_INLINE fx_vd fx_loadd(const double *p) { fx_vd v; memcpy(&v, p, sizeof v); return v; }

FX_INLINE fx_vf fx_self(fx_vi m, fx_vf a, fx_vf b)
{
    return (fx_vf)((m & (fx_vi)a) | (~m & (fx_vi)b));
}

FX_INLINE fx_vd fx_seld(fx_vl m, fx_vd a, fx_vd b)
{
    return (fx_vd)((m & (fx_vl)a) | (~m & (fx_vl)b));
}

/* ---- portable forms, for the ISA headers ------------------------------------------------ */
FX_INLINE fx_vf fx_generic_maxf(fx_vf v, fx_vf m) { return fx_self(v > m, v, m); }
FX_INLINE fx_vd fx_generic_maxd(fx_vd v, fx_vd m) { return fx_seld(v > m, v, m); }

FX_INLINE void fx_generic_widen_add(fx_vd *a0, fx_vd *a1, fx_vf e)
{
    *a0 += __builtin_convertvector(__builtin_shufflevector(e, e, FX_HALF_LO), fx_vd);
    *a1 += __builtin_convertvector(__builtin_shufflevector(e, e, FX_HALF_HI), fx_vd);
}

FX_INLINE fx_vf fx_load_bf16(const uint16_t *p)
{
    fx_vh16 h;
    memcpy(&h, p, sizeof h);
    return (fx_vf)(__builtin_convertvector(h, fx_vu32) << 16);
}

/* 2 vectors of bfloat16 as two fx_load_bf16 */
FX_INLINE void fx_generic_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b)
{
    *a = fx_load_bf16(p);
    *b = fx_load_bf16(p + FX_VBYTES / 4);
}

/* 2 vectors of bfloat16 widened in order by interleaving zeros below the elements: one in-lane
 * unpack per vector (after a 64-bit permute of 32-byte vectors that puts the halves in the
 * right lanes) instead of zero-extend and shift: bfloat16 rows 11% faster on Zen 4
 * (kernel_micro).  The same values as fx_generic_load2_bf16; little-endian, 16/32-byte vectors. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && (FX_VBYTES == 16 || FX_VBYTES == 32)
#define FX_HAVE_INTERLEAVE_BF16 1
FX_INLINE void fx_interleave_load2_bf16(const uint16_t *p, fx_vf *a, fx_vf *b)
{
    fx_vw16 h, z = {0};
    memcpy(&h, p, sizeof h);
#if FX_VBYTES == 16
    *a = (fx_vf)__builtin_shufflevector(z, h, 0, 8, 0, 9, 0, 10, 0, 11);
    *b = (fx_vf)__builtin_shufflevector(z, h, 0, 12, 0, 13, 0, 14, 0, 15);
#else
    h = __builtin_shufflevector(h, h, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
    *a = (fx_vf)__builtin_shufflevector(z, h, 0, 16, 0, 17, 0, 18, 0, 19, 0, 24, 0, 25, 0, 26, 0, 27);
    *b = (fx_vf)__builtin_shufflevector(z, h, 0, 20, 0, 21, 0, 22, 0, 23, 0, 28, 0, 29, 0, 30, 0, 31);
#endif
}
#else
#define FX_HAVE_INTERLEAVE_BF16 0
#endif

/* IEEE half -> float in integer lanes: exponent rebias by a multiply by 2^112 (exact, and
 * right for subnormal halves too); inf/NaN get an all-ones exponent */
FX_INLINE fx_vf fx_generic_load_f16(const uint16_t *p)
{
    fx_vh16 h;
    memcpy(&h, p, sizeof h);
    fx_vu32 u = __builtin_convertvector(h, fx_vu32);
    fx_vu32 em = u & 0x7fff;
    fx_vf f = (fx_vf)(em << 13) * 0x1p112f;
    fx_vu32 bits = (fx_vu32)f | ((fx_vu32)(em >= 0x7c00) & 0x7f800000u);
    return (fx_vf)(bits | ((u & 0x8000) << 16));
}

/* float lanes -> bfloat16, rounded to nearest even (fx_float_to_bf16's bits), NaN -> 0x7fc0 */
FX_INLINE void fx_store_bf16(uint16_t *p, fx_vf v)
{
    const fx_vu32 u = (fx_vu32)v;
    const fx_vu32 nan = (fx_vu32)((u & 0x7fffffffu) > 0x7f800000u);
    const fx_vu32 r = (((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) & ~nan) | (nan & 0x7fc0u);
    const fx_vh16 h = __builtin_convertvector(r, fx_vh16);
    memcpy(p, &h, sizeof h);
}

/* float lanes -> IEEE half, one by one with fx_float_to_f16 */
FX_INLINE void fx_generic_store_f16(uint16_t *p, fx_vf v)
{
    float f[FX_VBYTES / 4];
    memcpy(f, &v, sizeof f);
    for (int j = 0; j < FX_VBYTES / 4; j++) p[j] = fx_float_to_f16(f[j]);
}

/* the portable stream: plain copies, nothing to order */
FX_INLINE void fx_generic_stream_copy(void *dst, const void *src, size_t nbytes) { memcpy(dst, src, nbytes); }
FX_INLINE void fx_generic_stream_fence(void) {}

/* dst[0..nbytes) = src[0..nbytes), each whole 64-byte line of dst written by line(d, s) (an
 * ISA's non-temporal line store), the unaligned head and the tail by memcpy */
FX_INLINE void fx_stream_copy_lines(void *dst, const void *src, size_t nbytes,
                                    void (*line)(char *d, const char *s))
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (64 - ((uintptr_t)d & 63)) & 63;
    if (head > nbytes) head = nbytes;
    memcpy(d, s, head);
    d += head, s += head, nbytes -= head;
    for (; nbytes >= 64; nbytes -= 64, d += 64, s += 64) line(d, s);
    memcpy(d, s, nbytes);
}

FX_INLINE unsigned fx_generic_bits_l(fx_vl m)
{
    unsigned b = 0;
    for (int j = 0; j < FX_VBYTES / 8; j++) b |= (unsigned)(m[j] != 0) << j;
    return b;
}

#endif
