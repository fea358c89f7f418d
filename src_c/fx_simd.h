/* fx_simd.h -- portable SIMD vocabulary for the kernels.
 *
 * Kernels are written once with GCC/Clang vector extensions over vectors of
 * FX_VBYTES bytes, and the same source is compiled once per instruction set
 * (fx_kernels.c): 16 bytes for the SSE2 baseline, 32 for AVX2, 64 for AVX-512.
 * Within one ISA the order of every sum is fixed by the lanes, so results do
 * not depend on the number of threads; ISAs may differ in the last bits.
 */
#ifndef FX_SIMD_H
#define FX_SIMD_H

#include <stdint.h>
#include <string.h>

#define FX_CAT_(a, b) a##b
#define FX_CAT(a, b) FX_CAT_(a, b)

#if defined(__GNUC__) || defined(__clang__)
#define FX_HAVE_VEC 1
#define FX_INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FX_X86_INTRIN 1
#else
#define FX_X86_INTRIN 0
#endif
#else
#error "fastxent's kernels need GCC or Clang vector extensions"
#endif

/* Constants of the exp kernels (ours: fitted on [-ln2/2, ln2/2] by
 * Chebyshev-node least squares, see tests/test_exp.py for the measured error). */
#define FX_LOG2E   1.44269504088896340736
#define FX_EXPF_SHIFT 12582912.0f            /* 1.5 * 2^23: adding it rounds to an integer */
#define FX_EXPF_LN2_HI 0.693359375f          /* 355/512, exact times any |n| <= 2^14 */
#define FX_EXPF_LN2_LO -2.12194440e-4f
#define FX_EXP_SHIFT 6755399441055744.0      /* 1.5 * 2^52 */
#define FX_EXP_LN2_HI 6.93147180369123816490e-01 /* low 32 bits zero */
#define FX_EXP_LN2_LO 1.90821492927058770002e-10

#endif
