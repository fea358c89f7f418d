# The C interface of src_c/fastxent.h (and the blocking constants of src_c/fx_common.h), declared
# once for fastxent/_core.pyx (Cython includes this file into _core.pyx by its name).
from libc.stdint cimport int64_t, uint8_t

cdef extern from "fx_common.h":
    int FX_BLOCK
    int FX_PAIR_BLOCK
    int FX_MAX_STORED_BLOCKS
    int FX_SMALL_COLS

cdef extern from "fastxent.h" nogil:
    ctypedef struct fx_rows:
        const void *data
        int64_t n_outer
        int64_t n_inner
        int64_t n_cols
        Py_ssize_t s_outer
        Py_ssize_t s_inner
        Py_ssize_t s_col

    ctypedef struct fx_xent_opts:
        const int64_t *target
        const void *prob
        fx_rows prob_rows
        const void *weight
        int64_t ignore_index
        double smoothing
        double z_loss
        double softcap
        void *grad
        fx_rows grad_rows
        int grad_narrow
        double grad_scale
        double zgrad_scale

    ctypedef struct fx_stats_opts:
        const int64_t *target
        int64_t ignore_index
        const void *ref
        fx_rows ref_rows
        double *nll
        double *entropy
        double *p_target
        uint8_t *correct
        double *kl
        uint8_t *same_top
        double *ref_nll
        double *ref_p_target

    enum:
        FX_ISA_COUNT
        FX_FLOAT32
        FX_FLOAT64
        FX_FLOAT16
        FX_BFLOAT16
        FX_ENOMEM
        FX_ENOKERNEL

    int fx_isa_compiled(int isa)
    int fx_isa_supported(int isa)
    int fx_isa_emulated(int isa)
    int fx_isa_select(int cap)
    int fx_isa_current()
    const char *fx_isa_name(int isa)
    int fx_openmp_enabled()
    int fx_omp_max_threads()
    int64_t fx_check_targets(const int64_t *target, int64_t n, int64_t n_cols,
                             int64_t ignore_index, int64_t *n_counted)

    int fx_lse(int dtype, const fx_rows *x, double *out, int n_threads)

    ctypedef struct fx_state:
        double m
        double c
        double r
        int nan

    int fx_row_states(int dtype, const fx_rows *x, fx_state *out, int n_threads)
    fx_state fx_state_merge(fx_state a, fx_state b)
    int fx_state_lse(int dtype, const fx_state *s, int64_t n, double *out)
    int fx_softmax(int dtype, const fx_rows *x, void *out, int log, int n_threads)
    int fx_xent(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
                double *loss, int n_threads)
    int fx_xent_sum(int dtype, const fx_rows *x, const int64_t *target, int64_t ignore_index,
                    double *total, int n_threads)
    int fx_sum_losses(const double *a, int64_t n, double *total)
    int fx_xent_ex(int dtype, const fx_rows *x, const fx_xent_opts *o, double *loss,
                   double *zloss, int n_threads)
    int fx_lse_b(int dtype, const fx_rows *x, const fx_rows *b, int return_sign,
                 double *out, double *sign, int n_threads)
    int fx_vexp(int dtype, const void *x, void *out, int64_t n, int neg)
    double fx_read_bandwidth_probe(const float *x, int64_t n, int n_threads)
    int fx_token_stats(int dtype, const fx_rows *x, const fx_stats_opts *o, int n_threads)
