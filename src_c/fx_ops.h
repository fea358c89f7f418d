/* fx_ops.h -- what a generated kernel translation unit gives the dispatcher (fx_dispatch.c):
 * one fx_ops per (dtype, ISA), named fx_ops_<dtype>_<isa> (e.g. fx_ops_float32_avx2), whose
 * members are that dtype's and ISA's kernels (e.g. fx_xent_float32_avx2).  Internal: not part
 * of the interface of fastxent.h. */
#ifndef FX_OPS_H
#define FX_OPS_H

#include "fastxent.h"

typedef struct {
    int (*lse)(const fx_rows *x, double *out, int n_threads);
    int (*softmax)(const fx_rows *x, void *out, int log, int n_threads);
    int (*xent)(const fx_rows *x, const int64_t *target, int64_t ignore_index, double *loss,
                int n_threads);
    int (*xent_sum)(const fx_rows *x, const int64_t *target, int64_t ignore_index,
                    double *total, int n_threads);
    int (*xent_ex)(const fx_rows *x, const fx_xent_opts *o, double *loss, double *zloss,
                   int n_threads);
    int (*token_stats)(const fx_rows *x, const fx_stats_opts *o, int n_threads);
    /* NULL where the dtype has none (16-bit types) */
    int (*lse_b)(const fx_rows *x, const fx_rows *b, int return_sign, double *out,
                 double *sign, int n_threads);
    int (*vexp)(const void *x, void *out, int64_t n, int neg);
    int (*row_states)(const fx_rows *x, fx_state *out, int n_threads);
    int (*state_lse)(const fx_state *s, int64_t n, double *out);
    /* dtype-free, the same in every dtype's row of an ISA */
    int64_t (*check_targets)(const int64_t *target, int64_t n, int64_t n_cols,
                             int64_t ignore_index, int64_t *n_counted);
    fx_state (*state_merge)(fx_state a, fx_state b);
} fx_ops;

/* the scalar (ISA-free) kernels of the generated fx_kernels_scalar.c */
int fx_lse_b_float32(const fx_rows *x, const fx_rows *b, int return_sign, double *out,
                     double *sign, int n_threads);
int fx_lse_b_float64(const fx_rows *x, const fx_rows *b, int return_sign, double *out,
                     double *sign, int n_threads);

#endif
