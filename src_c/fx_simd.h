/* fx_simd.h -- portable SIMD vocabulary for the kernels.
 *
 * Kernels are written once with GCC/Clang vector extensions (fixed 64-byte
 * vectors: 16 floats or 8 doubles).  The same source is compiled once per
 * instruction set (see fx_kernels.c), and the compiler lowers each 64-byte
 * operation to 4 SSE2, 2 AVX2 or 1 AVX-512 instruction(s).  The order of every
 * sum is fixed by the 16/8 lanes, not by the hardware vector width.
 */
#ifndef FX_SIMD_H
#define FX_SIMD_H

#include <stdint.h>
#include <string.h>

#define FX_CAT_(a, b) a##b
#define FX_CAT(a, b) FX_CAT_(a, b)

#if defined(__GNUC__) || defined(__clang__)
#define FX_HAVE_VEC 1
typedef float    fx_v16sf __attribute__((vector_size(64)));
typedef int32_t  fx_v16si __attribute__((vector_size(64)));
typedef uint32_t fx_v16su __attribute__((vector_size(64)));
typedef float    fx_v8sf  __attribute__((vector_size(32)));
typedef double   fx_v8df  __attribute__((vector_size(64)));
typedef int64_t  fx_v8di  __attribute__((vector_size(64)));
typedef uint64_t fx_v8du  __attribute__((vector_size(64)));
#define FX_INLINE static inline __attribute__((always_inline))
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
