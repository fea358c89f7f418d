/* fx_params.h -- the template parameters of the templates in src_c/templates/ for one dtype: the
 * complete list and its contract.
 *
 * src_c/fx_build.py writes one translation unit per ISA that instantiates the templates once
 * per dtype: it defines FX_PARAMS_<DTYPE> (FLOAT32, FLOAT64, FLOAT16, BFLOAT16), includes this
 * header, then the template text with @dtype@ and @isa@ in every name replaced, then
 * fx_params_end.h, which undefines every parameter below.  This header refuses to start while
 * a parameter is still defined, so nothing leaks from one dtype into the next.  The ISA
 * vocabulary (isa/fx_vec.h) and fx_vmath.h are included before, once per ISA.
 *
 *   FX_T           storage type of one element (float, double; uint16_t bits of a 16-bit float)
 *   FX_C           compute type: float, or double for float64
 *   FX_W           lanes of FX_VC
 *   FX_VC, FX_VM   vector of FX_W compute lanes (fx_vf / fx_vd) and its lane mask (fx_vi / fx_vl)
 *   FX_NATIVE      1 when FX_T is FX_C: blocks are read in place (else widened into L1 scratch)
 *   FX_TOC(v)      one stored element as FX_C
 *   FX_LOADT(p)    FX_W stored elements as an FX_VC
 *   FX_LOADT2(p, a, b)  2 FX_W stored elements into *a, *b (16-bit types only)
 *   FX_FROMC(c)    one FX_C value as a stored element, rounded to nearest even (16-bit types only)
 *   FX_STORET(p, v)  FX_W lanes stored as FX_W stored elements, so rounded (16-bit types only)
 *   FX_LOADV(p)    FX_W compute elements
 *   FX_MAXV(v, m)  lane max, a NaN in v ignored      FX_SEL(m, a, b)  lane select
 *   FX_EXPV(v)     exp of v <= 0                      FX_EXPV0(v)      the same, but 0 at v == +0
 *   FX_EXPFULL(v)  exp over the whole range           FX_TANHV(v)      tanh
 *   FX_TANHS2V(v, cap, inv_cap, &sech2)  tanh(v / cap), and 1 - tanh^2 into sech2
 *   FX_ACC(a0, a1, v)  add the lanes of v to the fx_vd accumulators a0 and a1, in double
 *   FX_TILE(rows, n, tile) or FX_GATHER(p, idx)  the loads of small-class tiles, where the
 *                  ISA has them (native types only; neither: element by element)
 *   FX_EXPS(v)     scalar libm exp in FX_T (native types only: the weighted logsumexp)
 */
#if defined(FX_T) || defined(FX_C) || defined(FX_W) || defined(FX_VC) || defined(FX_NATIVE) \
    || defined(FX_ACC) || defined(FX_TILE) || defined(FX_GATHER)
#error "fx_params.h: parameters of the previous dtype are still defined (fx_params_end.h missing)"
#endif

#if defined(FX_PARAMS_FLOAT32) || defined(FX_PARAMS_FLOAT16) || defined(FX_PARAMS_BFLOAT16)
#define FX_C float
#define FX_W (FX_VBYTES / 4)
#define FX_VC fx_vf
#define FX_VM fx_vi
#define FX_LOADV(p) fx_loadf(p)
#define FX_MAXV(v, m) fx_maxf(v, m)
#define FX_SEL(m, a, b) fx_self(m, a, b)
#define FX_EXPV(v) fx_expf_neg(v)
#define FX_EXPV0(v) fx_expf_neg0(v)
#define FX_EXPFULL(v) fx_expf(v)
#define FX_TANHV(v) fx_tanhf(v)
#define FX_TANHS2V(v, cap, inv_cap, s) fx_tanh_sech2f(v, cap, inv_cap, s)
#define FX_ACC(a0, a1, v) fx_widen_add(&(a0), &(a1), (v))
#elif defined(FX_PARAMS_FLOAT64)
#define FX_C double
#define FX_W (FX_VBYTES / 8)
#define FX_VC fx_vd
#define FX_VM fx_vl
#define FX_LOADV(p) fx_loadd(p)
#define FX_MAXV(v, m) fx_maxd(v, m)
#define FX_SEL(m, a, b) fx_seld(m, a, b)
#define FX_EXPV(v) fx_exp_neg(v)
#define FX_EXPV0(v) fx_exp_neg0(v)
#define FX_EXPFULL(v) fx_exp(v)
#define FX_TANHV(v) fx_tanh(v)
#define FX_TANHS2V(v, cap, inv_cap, s) fx_tanh_sech2(v, cap, inv_cap, s)
#define FX_ACC(a0, a1, v) ((a0) += (v), (void)(a1))
#else
#error "fx_params.h: define FX_PARAMS_FLOAT32, FX_PARAMS_FLOAT64, FX_PARAMS_FLOAT16 or FX_PARAMS_BFLOAT16"
#endif

#if defined(FX_PARAMS_FLOAT32)
#define FX_T float
#define FX_NATIVE 1
#define FX_TOC(v) (v)
#define FX_LOADT(p) fx_loadf(p)
#define FX_EXPS(v) expf(v)
#if FX_HAVE_TILE
#define FX_TILE(rows, n, tile) fx_tilef(rows, n, tile)
#elif FX_HAVE_GATHER
#define FX_GATHER(p, idx) fx_gatherf(p, idx)
#endif
#elif defined(FX_PARAMS_FLOAT64)
#define FX_T double
#define FX_NATIVE 1
#define FX_TOC(v) (v)
#define FX_LOADT(p) fx_loadd(p)
#define FX_EXPS(v) exp(v)
#if FX_HAVE_TILE
#define FX_TILE(rows, n, tile) fx_tiled(rows, n, tile)
#elif FX_HAVE_GATHER
#define FX_GATHER(p, idx) fx_gatherd(p, idx)
#endif
#elif defined(FX_PARAMS_BFLOAT16)
#define FX_T uint16_t
#define FX_NATIVE 0
#define FX_TOC(v) fx_bf16_to_float(v)
#define FX_LOADT(p) fx_load_bf16(p)
#define FX_LOADT2(p, a, b) fx_load2_bf16(p, a, b)
#define FX_FROMC(c) fx_float_to_bf16(c)
#define FX_STORET(p, v) fx_store_bf16(p, v)
#else /* FX_PARAMS_FLOAT16 */
#define FX_T uint16_t
#define FX_NATIVE 0
#define FX_TOC(v) fx_f16_to_float(v)
#define FX_LOADT(p) fx_load_f16(p)
#define FX_LOADT2(p, a, b) (*(a) = fx_load_f16(p), *(b) = fx_load_f16((p) + FX_W))
#define FX_FROMC(c) fx_float_to_f16(c)
#define FX_STORET(p, v) fx_store_f16(p, v)
#endif
