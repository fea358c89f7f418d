/* fastxent.h -- the C interface of fastxent: every operation, one entry point each.
 *
 * The kernels behind the entry points are generated per ISA and dtype from the templates in
 * src_c/templates/ (docs/ARCHITECTURE.md: how to find one by name, how to add one).
 *
 * Data layout shared by all kernels: a batch of rows of `n_cols` elements.
 * Row r = o * n_inner + i (0 <= o < n_outer, 0 <= i < n_inner) starts at
 *   data + o * s_outer + i * s_inner            (strides in ELEMENTS, may be negative)
 * and its elements are contiguous (column stride 1) for logits; only the `b`
 * operand of fx_lse_b uses `s_col`.  Two row levels cover C-contiguous arrays
 * and the usual causal shift logits[:, :-1, :] without a copy.
 *
 * Per-row results are written to dense arrays indexed by r.  Kernels never
 * allocate per element; totals are reduced by the caller in double, in a fixed
 * order, so results do not depend on the number of threads.
 */
#ifndef FASTXENT_H
#define FASTXENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const void *data;      /* address of element [0, 0, 0] */
    int64_t n_outer;       /* rows = n_outer * n_inner */
    int64_t n_inner;
    int64_t n_cols;        /* classes per row */
    ptrdiff_t s_outer;     /* stride between outer rows, in elements */
    ptrdiff_t s_inner;     /* stride between inner rows, in elements */
    ptrdiff_t s_col;       /* stride between columns (1 for logits; 0 or 1 for a broadcast b) */
} fx_rows;

/* ---- configuration ------------------------------------------------------ */
enum { FX_ISA_BASELINE = 0, FX_ISA_AVX2 = 1, FX_ISA_AVX512 = 2, FX_ISA_COUNT = 3 };
int  fx_isa_compiled(int isa);      /* 1 if this build contains the `isa` variant */
int  fx_isa_supported(int isa);     /* 1 if compiled and the running CPU can execute it */
int  fx_isa_emulated(int isa);      /* 1 if its intrinsics are emulated (FASTXENT_SIMDE=1 build) */
int  fx_isa_select(int cap);        /* use the best supported ISA <= cap; returns it */
int  fx_isa_current(void);          /* the ISA the kernels run now */
const char *fx_isa_name(int isa);   /* "baseline", "avx2", "avx512" */
int  fx_openmp_enabled(void);       /* 1 when built with OpenMP */
int  fx_omp_max_threads(void);      /* omp_get_max_threads(), 1 without OpenMP */

/* ---- validation --------------------------------------------------------- */
/* First r with target[r] neither ignore_index nor in [0, n_cols), or -1; counts the rest. */
int64_t fx_check_targets(const int64_t *target, int64_t n, int64_t n_cols,
                         int64_t ignore_index, int64_t *n_counted);

/* ---- kernels: one entry point per operation, the dtype an argument -------------------------
 * `dtype` is an fx_dtype: float32, float64, float16 (IEEE half) and bfloat16 logits; 16-bit
 * logits are widened block by block in registers/L1 and computed in float (outputs float).
 * Every entry point looks its kernel up in the one table [ISA][dtype] of fx_dispatch.c (the
 * ISA chosen by fx_isa_select) and returns 0, FX_ENOMEM (-1) when a per-call buffer cannot
 * be allocated, or FX_ENOKERNEL (-2) for a dtype the operation has no kernel for. */
typedef enum { FX_FLOAT32 = 0, FX_FLOAT64 = 1, FX_FLOAT16 = 2, FX_BFLOAT16 = 3, FX_DTYPE_COUNT = 4 } fx_dtype;
enum { FX_ENOMEM = -1, FX_ENOKERNEL = -2 };

/* out[r] = log(sum_j exp(x[r, j])) in double; -inf for empty or all -inf rows, NaN if any NaN.
 * Allocates (a state per block) only where few long rows are split over threads. */
int fx_lse(int dtype, const fx_rows *x, double *out, int n_threads);

/* out[r, j] = softmax (log_softmax when `log`) of row r; `out` is dense rows x n_cols of the
 * compute type (float, double for float64). */
int fx_softmax(int dtype, const fx_rows *x, void *out, int log, int n_threads);

/* loss[r] = lse(row r) - x[r, target[r]] in double, 0 where target[r] == ignore_index.
 * Targets are to be checked with fx_check_targets first; one outside [0, n_cols) is
 * never read (its loss is NaN). */
int fx_xent(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
            double *loss, int n_threads);

/* *total = the sum of xent's losses over all rows, in double, in an order fixed by the
 * row count alone (slabs of 65536 rows); no rows-long array. */
int fx_xent_sum(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
                double *total, int n_threads);

/* *total = the sum of a[0..n) in the order fx_xent_sum adds its losses (so that a sum
 * of per-row losses equals fx_xent_sum's over the same rows, bitwise).  0, or -1 out of memory. */
int fx_sum_losses(const double *a, int64_t n, double *total);

/* ---- the row-pass primitive (docs/ARCHITECTURE.md "The row pass") ------------------------
 * The log-sum-exp state of a run of a row's elements: m = their max (NaN ignored); the sum of
 * exp(x - m) held as c (how many elements equal m: each adds exactly 1) plus r (the rest), so
 * that log(sum exp) = m + log1p((c - 1) + r) and 1 - p(max) keep full precision when the largest
 * term dominates; nan = some element was NaN.  m = -inf (c = r = 0) for no elements or only
 * -inf; m = +inf (c = 1, r = 0) when one is +inf.  Every kernel reduces rows to these states
 * block by block (FX_BLOCK = 4096 elements) and merges them left to right. */
typedef struct {
    double m;
    double c;
    double r;
    int nan;
} fx_state;

/* out[r] = the state of row r of x over its n_cols columns, as the kernels compute it (fx_lse
 * is fx_state_lse of these, bitwise).  A range of columns [c0, c1) of the rows is the fx_rows
 * whose data starts at column c0 and whose n_cols is c1 - c0: a fused linear + cross-entropy
 * takes the states of one vocabulary chunk of logits at a time and merges them across chunks
 * with fx_state_merge.  Merged left to right over chunks that start at multiples of FX_BLOCK, the
 * states of rows longer than 64 columns are bitwise those of the whole rows; other chunkings
 * (and rows of up to 64 columns, summed in another order) agree to rounding.  Allocates (a
 * state per block) only where few long rows are split over threads. */
int fx_row_states(int dtype, const fx_rows *x, fx_state *out, int n_threads);

/* the state of a's elements followed by b's (the kernels' combine, rounded as theirs) */
fx_state fx_state_merge(fx_state a, fx_state b);

/* out[i] = the log-sum-exp of s[i] in double, as fx_lse of `dtype` finishes a row: NaN for a
 * state with nan, +-inf for m = +-inf, else m + log1p((c - 1) + r). */
int fx_state_lse(int dtype, const fx_state *s, int64_t n, double *out);

/* Options of the full cross-entropy kernel (PyTorch's and Liger's meaning):
 * loss[r] = g (lse - x'[t]) + sum_c coef_c (lse - x'_c), with x' = softcap * tanh(x / softcap)
 * (or x), g = (1 - eps) w[t] for class-index targets (0 for probability targets) and
 * coef_c = w_c (eps / n_cols + (1 - eps) q_c) (q = probability target, 0 without).
 * zloss[r] = z_loss * lse^2.  Terms with a zero coefficient contribute 0. */
typedef struct {
    const int64_t *target;  /* class-index targets (checked), or NULL with `prob` */
    const void *prob;       /* probability targets in the compute dtype, laid out as prob_rows */
    fx_rows prob_rows;
    const void *weight;     /* n_cols class weights in the compute dtype, or NULL (all 1) */
    int64_t ignore_index;
    double smoothing;       /* label smoothing in [0, 1] */
    double z_loss;          /* >= 0 */
    double softcap;         /* > 0 to cap the logits; 0 = off */
    void *grad;             /* d total / d logits (laid out as grad_rows), or NULL: in the compute
                             * type, or with grad_narrow in the 16-bit logits' own type */
    fx_rows grad_rows;
    int grad_narrow;        /* float16/bfloat16 logits: write grad as float16/bfloat16, each entry the
                             * float one rounded to nearest even (may be the logits themselves) */
    double grad_scale;      /* d total / d loss[r] */
    double zgrad_scale;     /* d total / d zloss[r] */
} fx_xent_opts;

/* Full cross-entropy (weights, smoothing, probability targets, z-loss, softcap) and
 * its gradient in one call; the gradient may be written over the logits themselves.
 * A gradient of >= 16 MiB in memory of its own is written with non-temporal stores; with
 * grad_narrow or such a streamed gradient each thread builds a row in a gradient row of its own
 * (4 or 8 bytes a class): FX_ENOMEM when those cannot be allocated. */
int fx_xent_ex(int dtype, const fx_rows *x, const fx_xent_opts *o, double *loss, double *zloss,
               int n_threads);

/* SciPy's logsumexp with weights: out[r] = log|sum_j b[r,j] exp(x[r,j])|, sign[r] its sign;
 * without return_sign a negative sum gives NaN.  b is double with any strides (incl. 0). */
int fx_lse_b(int dtype, const fx_rows *x, const fx_rows *b, int return_sign,
             double *out, double *sign, int n_threads);        /* float32, float64 */

/* Test hook: out[i] = the kernels' exp(x[i]) (x, out: float32 or float64); neg selects the
 * x <= 0 form used after the max shift. */
int fx_vexp(int dtype, const void *x, void *out, int64_t n, int neg);  /* float32, float64 */

/* Benchmark probe: sum of x[0..n) with independent vector accumulators (threads when n_threads > 1);
 * timed by `python -m fastxent bench` as the machine's memory read bandwidth. */
double fx_read_bandwidth_probe(const float *x, int64_t n, int n_threads);

/* ---- evaluation statistics (templates/fx_stats.c.src) --------------------------------------
 * Per row r of the logits x (Q = softmax(x)) and, optionally, of reference logits y
 * (P = softmax(y)), from one read of each row; any output pointer may be NULL.
 * Rows whose target is ignore_index are not read: NaN / 0 outputs. */
typedef struct {
    const int64_t *target;  /* class indices (checked), or NULL: every row, no target outputs */
    int64_t ignore_index;
    const void *ref;        /* reference logits in the logits' dtype, laid out as ref_rows, or NULL */
    fx_rows ref_rows;
    double *nll;            /* lse(x) - x[t] */
    double *entropy;        /* -sum q log q */
    double *p_target;       /* q[t] */
    uint8_t *correct;       /* first argmax of x == t (0 for rows with NaN or only -inf) */
    double *kl;             /* KL(P || Q) = sum p (log p - log q), needs ref */
    uint8_t *same_top;      /* first argmax of x == first argmax of y, needs ref */
    double *ref_nll;        /* lse(y) - y[t], needs ref */
    double *ref_p_target;   /* p[t], needs ref */
} fx_stats_opts;

/* Per-token statistics: nll, entropy, p_target, correct and, with a reference, KL, same_top, ref_nll, ref_p_target. */
int fx_token_stats(int dtype, const fx_rows *x, const fx_stats_opts *o, int n_threads);

#endif
