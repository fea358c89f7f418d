# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin layer over the C kernels of src_c/: arrays -> pointers, GIL released.

Callers (fastxent/*.py) have validated every argument; the checks here only
guard the C calls against a misuse of this private module (wrong dtype or a
too-small output), raising instead of reading or writing out of bounds.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t
from cpython.mem cimport PyMem_Malloc, PyMem_Free
# the C declarations (src_c/fastxent.h) are in _core.pxd

cnp.import_array()

# the kernels' blocking (for tests and docs: results are defined by it)
BLOCK = FX_BLOCK                      # elements per block of a row (lse, losses, softmax)
PAIR_BLOCK = FX_PAIR_BLOCK            # token_stats / Evaluator: blocks of two arrays at once
MAX_STORED_BLOCKS = FX_MAX_STORED_BLOCKS  # gradient rows up to this many blocks: one exp each
SMALL_COLS = FX_SMALL_COLS            # rows up to this many classes: one row per vector lane

ISA_COUNT = FX_ISA_COUNT


def isa_name(int isa):
    return fx_isa_name(isa).decode()


def isa_compiled(int isa):
    return bool(fx_isa_compiled(isa))


def isa_supported(int isa):
    return bool(fx_isa_supported(isa))


def isa_emulated(int isa):
    return bool(fx_isa_emulated(isa))


def isa_select(int cap):
    return fx_isa_select(cap)


def isa_current():
    return fx_isa_current()


def openmp_enabled():
    return bool(fx_openmp_enabled())


def omp_max_threads():
    return fx_omp_max_threads()


cdef int _code(cnp.ndarray x) except -1:
    """The fx_dtype of x (FX_FLOAT32, FX_FLOAT64, FX_FLOAT16, FX_BFLOAT16), recognised by type
    number, or by name for the others (the name is a Python-level property: microseconds a call)."""
    cdef int num = cnp.PyArray_TYPE(x)
    if num == cnp.NPY_FLOAT32:
        return FX_FLOAT32
    if num == cnp.NPY_FLOAT64:
        return FX_FLOAT64
    if num == cnp.NPY_FLOAT16:
        return FX_FLOAT16
    name = x.dtype.name
    if name == "float32":
        return FX_FLOAT32
    if name == "float64":
        return FX_FLOAT64
    if name == "float16":
        return FX_FLOAT16
    if name == "bfloat16" and x.dtype.itemsize == 2:
        return FX_BFLOAT16
    if name == "uint16" and x.dtype.metadata is not None and x.dtype.metadata.get("fastxent") == "bfloat16":
        return FX_BFLOAT16  # bfloat16 read over DLPack without ml_dtypes (fastxent._arrays.BF16_RAW)
    raise TypeError(f"internal: unsupported dtype {x.dtype}")


cdef int _done(int rc, cnp.ndarray x, str what) except -1:
    """Raise for a kernel's error code (fastxent.h: FX_ENOMEM, FX_ENOKERNEL)."""
    if rc == FX_ENOMEM:
        raise MemoryError(f"fastxent: out of memory for {what}")
    if rc == FX_ENOKERNEL:
        raise TypeError(f"internal: unsupported dtype {x.dtype}")
    return 0


def compute_dtype(dtype):
    """The dtype kernels compute in and write per-position results in."""
    return "float64" if dtype == "float64" else "float32"


cdef fx_rows _rows(cnp.ndarray a, tuple layout) except *:
    """layout = (n_outer, n_inner, n_cols, s_outer, s_inner, s_col), strides in elements."""
    cdef fx_rows r
    r.data = cnp.PyArray_DATA(a)
    r.n_outer, r.n_inner, r.n_cols, r.s_outer, r.s_inner, r.s_col = layout
    if r.n_outer < 0 or r.n_inner < 0 or r.n_cols < 0:
        raise ValueError("negative size in layout")
    return r


cdef inline int64_t _nrows(const fx_rows *r) noexcept nogil:
    return r.n_outer * r.n_inner


cdef _need(cnp.ndarray a, dtype, Py_ssize_t n, str name):
    if a.dtype != dtype or not cnp.PyArray_IS_C_CONTIGUOUS(a) or a.size < n:
        raise ValueError(f"internal: {name} must be a contiguous {dtype} array of >= {n} elements")


cdef const int64_t *_checked_targets(cnp.ndarray target, int64_t rows, int64_t n_cols,
                                     int64_t ignore_index) except? NULL:
    """The data of a contiguous int64 target array, every value checked (never read out of bounds)."""
    _need(target, "int64", rows, "target")
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef int64_t counted = 0, bad
    with nogil:
        bad = fx_check_targets(t, rows, n_cols, ignore_index, &counted)
    if bad >= 0:
        raise IndexError(f"internal: target {bad} out of range")
    return t


def check_targets(cnp.ndarray target, int64_t n_cols, int64_t ignore_index):
    """(first bad position or -1, count of non-ignored targets before it / in all)"""
    _need(target, "int64", target.size, "target")
    cdef int64_t counted = 0, bad
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef int64_t n = target.size
    with nogil:
        bad = fx_check_targets(t, n, n_cols, ignore_index, &counted)
    return bad, counted


def lse(cnp.ndarray x, tuple layout, cnp.ndarray out, int n_threads):
    cdef fx_rows r = _rows(x, layout)
    cdef int code = _code(x), rc
    _need(out, "float64", _nrows(&r), "out")
    cdef double *o = <double *>cnp.PyArray_DATA(out)
    with nogil:
        rc = fx_lse(code, &r, o, n_threads)
    _done(rc, x, "per-row states")


def row_states(cnp.ndarray x, tuple layout, int n_threads):
    """The row-pass states (fx_row_states) of the rows of x: a (rows, 4) float64 array of
    (m, c, r, nan) per row."""
    cdef fx_rows r = _rows(x, layout)
    cdef int code = _code(x), rc
    cdef int64_t rows = _nrows(&r), i
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(2, [rows, 4], cnp.NPY_FLOAT64, 0)
    cdef double *o = <double *>cnp.PyArray_DATA(out)
    cdef fx_state *st = <fx_state *>PyMem_Malloc(<size_t>(rows if rows > 0 else 1) * sizeof(fx_state))
    if st == NULL:
        raise MemoryError("fastxent: out of memory for the row states")
    try:
        with nogil:
            rc = fx_row_states(code, &r, st, n_threads)
        _done(rc, x, "per-block states")
        for i in range(rows):
            o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3] = st[i].m, st[i].c, st[i].r, st[i].nan
    finally:
        PyMem_Free(st)
    return out


cdef fx_state _state(const double *p) noexcept nogil:
    cdef fx_state s
    s.m, s.c, s.r, s.nan = p[0], p[1], p[2], p[3] != 0.0
    return s


def state_merge(cnp.ndarray a, cnp.ndarray b):
    """fx_state_merge of two (m, c, r, nan) float64 rows of 4."""
    _need(a, "float64", 4, "a")
    _need(b, "float64", 4, "b")
    cdef fx_state s = fx_state_merge(_state(<double *>cnp.PyArray_DATA(a)), _state(<double *>cnp.PyArray_DATA(b)))
    return (s.m, s.c, s.r, float(s.nan))


def state_lse(str dtype, cnp.ndarray states):
    """fx_state_lse of `dtype` over the (m, c, r, nan) rows of a (k, 4) float64 array."""
    _need(states, "float64", 4 * states.shape[0], "states")
    cdef int64_t k = states.shape[0], i
    cdef const double *p = <const double *>cnp.PyArray_DATA(states)
    cdef int code = {"float32": FX_FLOAT32, "float64": FX_FLOAT64, "float16": FX_FLOAT16,
                     "bfloat16": FX_BFLOAT16}[dtype]
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, [k], cnp.NPY_FLOAT64, 0)
    cdef fx_state *st = <fx_state *>PyMem_Malloc(<size_t>(k if k > 0 else 1) * sizeof(fx_state))
    if st == NULL:
        raise MemoryError("fastxent: out of memory for the row states")
    for i in range(k):
        st[i] = _state(p + 4 * i)
    rc = fx_state_lse(code, st, k, <double *>cnp.PyArray_DATA(out))
    PyMem_Free(st)
    _done(rc, states, "state_lse")
    return out


def softmax(cnp.ndarray x, tuple layout, cnp.ndarray out, bint log, int n_threads):
    cdef fx_rows r = _rows(x, layout)
    cdef int code = _code(x), rc
    _need(out, compute_dtype(x.dtype.name), _nrows(&r) * r.n_cols, "out")
    cdef void *o = cnp.PyArray_DATA(out)
    with nogil:
        rc = fx_softmax(code, &r, o, log, n_threads)
    _done(rc, x, "softmax")


def xent(cnp.ndarray x, tuple layout, cnp.ndarray target, int64_t ignore_index,
         cnp.ndarray loss, int n_threads):
    """Per-row losses; targets must have passed check_targets (the kernel reads no
    other target: NaN there)."""
    cdef fx_rows r = _rows(x, layout)
    cdef int code = _code(x), rc
    _need(target, "int64", _nrows(&r), "target")
    _need(loss, "float64", _nrows(&r), "loss")
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef double *o = <double *>cnp.PyArray_DATA(loss)
    with nogil:
        rc = fx_xent(code, &r, t, ignore_index, o, n_threads)
    _done(rc, x, "per-row states")


def xent_sum(cnp.ndarray x, tuple layout, cnp.ndarray target, int64_t ignore_index, int n_threads):
    """The sum of xent's per-row losses (float), in an order fixed by the row count alone;
    targets as for xent."""
    cdef fx_rows r = _rows(x, layout)
    cdef int code = _code(x), rc
    _need(target, "int64", _nrows(&r), "target")
    cdef const int64_t *t = <const int64_t *>cnp.PyArray_DATA(target)
    cdef double total = 0.0
    with nogil:
        rc = fx_xent_sum(code, &r, t, ignore_index, &total, n_threads)
    _done(rc, x, "a slab of row losses or per-row states")
    return total


def sum_losses(cnp.ndarray a):
    """The sum of a contiguous float64 array in xent_sum's order (a float)."""
    _need(a, "float64", a.size, "a")
    cdef const double *p = <const double *>cnp.PyArray_DATA(a)
    cdef int64_t n = a.size
    cdef double total = 0.0
    cdef int rc
    with nogil:
        rc = fx_sum_losses(p, n, &total)
    _done(rc, a, "slab totals")
    return total


def lse_b(cnp.ndarray x, tuple layout, cnp.ndarray b, tuple b_layout, bint return_sign,
          cnp.ndarray out, cnp.ndarray sign, int n_threads):
    cdef fx_rows r = _rows(x, layout)
    cdef fx_rows rb = _rows(b, b_layout)
    cdef int code = _code(x), rc
    if b.dtype != "float64" or rb.n_outer != r.n_outer or rb.n_inner != r.n_inner or rb.n_cols != r.n_cols:
        raise ValueError("internal: b must be float64 with the layout of x")
    _need(out, "float64", _nrows(&r), "out")
    _need(sign, "float64", _nrows(&r), "sign")
    cdef double *o = <double *>cnp.PyArray_DATA(out)
    cdef double *s = <double *>cnp.PyArray_DATA(sign)
    with nogil:
        rc = fx_lse_b(code, &r, &rb, return_sign, o, s, n_threads)
    _done(rc, x, "lse_b")


def xent_ex(cnp.ndarray x, tuple layout, target, prob, tuple prob_layout, weight,
            int64_t ignore_index, double smoothing, double z_loss, double softcap,
            grad, tuple grad_layout, double grad_scale, double zgrad_scale,
            cnp.ndarray loss, zloss, int n_threads):
    """Full cross-entropy; the caller has validated shapes, ranges and aliasing."""
    cdef fx_rows r = _rows(x, layout)
    cdef fx_xent_opts o
    cdef int64_t rows = _nrows(&r)
    cdef int code = _code(x), rc
    cdt = compute_dtype(x.dtype.name)
    _need(loss, "float64", rows, "loss")
    o.target = NULL
    o.prob = NULL
    o.weight = NULL
    o.grad = NULL
    o.prob_rows = r
    o.grad_rows = r
    o.grad_narrow = 0
    if target is not None:
        o.target = _checked_targets(target, rows, r.n_cols, ignore_index)
    elif prob is not None:
        if prob.dtype != cdt:
            raise ValueError("internal: prob must have the compute dtype")
        o.prob_rows = _rows(prob, prob_layout)
        if _nrows(&o.prob_rows) != rows or o.prob_rows.n_cols != r.n_cols:
            raise ValueError("internal: prob layout does not match")
        o.prob = cnp.PyArray_DATA(prob)
    else:
        raise ValueError("internal: target or prob needed")
    if weight is not None:
        _need(weight, cdt, r.n_cols, "weight")
        o.weight = cnp.PyArray_DATA(weight)
    if grad is not None:
        # the compute dtype, or 16-bit logits' own dtype (written rounded: grad_narrow)
        o.grad_narrow = (code == FX_FLOAT16 or code == FX_BFLOAT16) and grad.dtype.itemsize == 2 \
            and _code(grad) == code
        if not (o.grad_narrow or grad.dtype == cdt) or not grad.flags.writeable:
            raise ValueError("internal: grad must be writable in the compute dtype or the 16-bit logits' dtype")
        o.grad_rows = _rows(grad, grad_layout)
        if _nrows(&o.grad_rows) != rows or o.grad_rows.n_cols != r.n_cols:
            raise ValueError("internal: grad layout does not match")
        o.grad = cnp.PyArray_DATA(grad)
    o.ignore_index = ignore_index
    o.smoothing = smoothing
    o.z_loss = z_loss
    o.softcap = softcap
    o.grad_scale = grad_scale
    o.zgrad_scale = zgrad_scale
    cdef double *zl = NULL
    if zloss is not None:
        _need(zloss, "float64", rows, "zloss")
        zl = <double *>cnp.PyArray_DATA(zloss)
    cdef double *lo = <double *>cnp.PyArray_DATA(loss)
    with nogil:
        rc = fx_xent_ex(code, &r, &o, lo, zl, n_threads)
    _done(rc, x, "xent_ex")


def vexp(cnp.ndarray x, cnp.ndarray out, bint neg):
    """Test hook: the kernels' own exp over a contiguous float32/float64 array."""
    _need(x, x.dtype, x.size, "x")
    _need(out, x.dtype, x.size, "out")
    cdef int code = _code(x), rc
    cdef int64_t n = x.size
    cdef void *xp = cnp.PyArray_DATA(x)
    cdef void *op = cnp.PyArray_DATA(out)
    with nogil:
        rc = fx_vexp(code, xp, op, n, neg)
    _done(rc, x, "vexp")


def read_probe(cnp.ndarray x, int n_threads):
    """Benchmark hook: sum a contiguous float32 array, reading it once (memory bandwidth probe)."""
    _need(x, "float32", x.size, "x")
    cdef int64_t n = x.size
    cdef const float *p = <const float *>cnp.PyArray_DATA(x)
    cdef double s
    with nogil:
        s = fx_read_bandwidth_probe(p, n, n_threads)
    return s


# ---- evaluation statistics (fastxent/evaluate.py) --------------------------------------
cdef void *_out(a, str dtype, int64_t rows, str name) except? NULL:
    """Data of an optional writable per-row output of `dtype` (NULL for None)."""
    if a is None:
        return NULL
    _need(a, dtype, rows, name)
    if not a.flags.writeable:
        raise ValueError(f"internal: {name} is read-only")
    return cnp.PyArray_DATA(a)


def token_stats(cnp.ndarray x, tuple layout, target, int64_t ignore_index, ref, tuple ref_layout,
                nll, entropy, p_target, correct, kl, same_top, ref_nll, ref_p_target, int n_threads):
    """Per-row statistics of x (and of the reference `ref`, same dtype and rows) into
    the given float64 / bool outputs (None: not computed)."""
    cdef fx_rows r = _rows(x, layout)
    cdef fx_stats_opts o
    cdef int64_t rows = _nrows(&r)
    cdef int code = _code(x), rc
    o.target = NULL
    o.ref = NULL
    o.ref_rows = r
    o.ignore_index = ignore_index
    if target is not None:
        o.target = _checked_targets(target, rows, r.n_cols, ignore_index)
    if ref is not None:
        if ref.dtype != x.dtype:
            raise ValueError("internal: ref must have the logits' dtype")
        o.ref_rows = _rows(ref, ref_layout)
        if _nrows(&o.ref_rows) != rows or o.ref_rows.n_cols != r.n_cols:
            raise ValueError("internal: ref layout does not match")
        o.ref = cnp.PyArray_DATA(ref)
    o.nll = <double *>_out(nll, "float64", rows, "nll")
    o.entropy = <double *>_out(entropy, "float64", rows, "entropy")
    o.p_target = <double *>_out(p_target, "float64", rows, "p_target")
    o.correct = <uint8_t *>_out(correct, "bool", rows, "correct")
    o.kl = <double *>_out(kl, "float64", rows, "kl")
    o.same_top = <uint8_t *>_out(same_top, "bool", rows, "same_top")
    o.ref_nll = <double *>_out(ref_nll, "float64", rows, "ref_nll")
    o.ref_p_target = <double *>_out(ref_p_target, "float64", rows, "ref_p_target")
    if o.target == NULL and (o.nll != NULL or o.p_target != NULL or o.correct != NULL
                             or o.ref_nll != NULL or o.ref_p_target != NULL):
        raise ValueError("internal: target outputs need a target")
    with nogil:
        rc = fx_token_stats(code, &r, &o, n_threads)
    _done(rc, x, "token_stats")


# --------------------------------------------------------------------------- DLPack import
# A zero-copy NumPy view of any CPU object exporting `__dlpack__` (torch, JAX, NumPy, ...),
# read here because NumPy cannot import every DLPack tensor (bfloat16 before NumPy 2.5, the
# versioned protocol before NumPy 2.1).  The DLPack structs as in dlpack.h (ABI v1.0).
from cpython.pycapsule cimport PyCapsule_IsValid, PyCapsule_GetPointer, PyCapsule_SetName
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
import sys
import numpy as np

cdef extern from *:
    """
    typedef struct { int device_type; int32_t device_id; } fxdl_device;
    typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } fxdl_dtype;
    typedef struct {
        void *data; fxdl_device device; int32_t ndim; fxdl_dtype dtype;
        int64_t *shape; int64_t *strides; uint64_t byte_offset;
    } fxdl_tensor;
    typedef struct fxdl_managed {
        fxdl_tensor dl_tensor; void *manager_ctx; void (*deleter)(struct fxdl_managed *);
    } fxdl_managed;
    typedef struct { uint32_t major; uint32_t minor; } fxdl_version;
    typedef struct fxdl_managed_v {
        fxdl_version version; void *manager_ctx; void (*deleter)(struct fxdl_managed_v *);
        uint64_t flags; fxdl_tensor dl_tensor;
    } fxdl_managed_v;
    static void fxdl_delete(void *m, int versioned) {
        if (versioned) { fxdl_managed_v *v = (fxdl_managed_v *)m; if (v->deleter) v->deleter(v); }
        else { fxdl_managed *t = (fxdl_managed *)m; if (t->deleter) t->deleter(t); }
    }
    """
    ctypedef struct fxdl_device:
        int device_type
        int32_t device_id
    ctypedef struct fxdl_dtype:
        uint8_t code
        uint8_t bits
        uint16_t lanes
    ctypedef struct fxdl_tensor:
        void *data
        fxdl_device device
        int32_t ndim
        fxdl_dtype dtype
        int64_t *shape
        int64_t *strides
        uint64_t byte_offset
    ctypedef struct fxdl_managed:
        fxdl_tensor dl_tensor
    ctypedef struct fxdl_version:
        uint32_t major
        uint32_t minor
    ctypedef struct fxdl_managed_v:
        fxdl_version version
        uint64_t flags
        fxdl_tensor dl_tensor
    void fxdl_delete(void *m, int versioned)

DLPACK_CPU = 1
_DL_READ_ONLY = 1
_DL_KINDS = {0: "i", 1: "u", 2: "f", 4: "bf", 6: "b"}  # kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool
_DL_NAMES = {0: "int", 1: "uint", 2: "float", 3: "opaque handle", 4: "bfloat", 5: "complex", 6: "bool"}
# DLDeviceType of dlpack.h, for the message of a tensor fastxent cannot read
_DL_DEVICES = {2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 9: "VPI", 10: "ROCm",
               11: "ROCm host", 12: "ext_dev", 13: "CUDA managed", 14: "oneAPI", 15: "WebGPU",
               16: "Hexagon", 17: "MAIA"}


def _device_error(str name, int dev_type, int dev_id):
    dev = _DL_DEVICES.get(dev_type, "unknown")
    return ValueError(f"`{name}` is on a non-CPU device ({dev}:{dev_id}, DLPack device type {dev_type}); "
                      "fastxent reads CPU memory only: move it first (e.g. `x.cpu()` for a torch tensor, "
                      "`jax.device_put(x, jax.devices('cpu')[0])` for a JAX array)")


def _export_error(str name, obj, str what, e):
    """The producer's own exception from `what`, re-raised naming the argument (BufferError and
    ValueError keep their type, as the array API's DLPack protocol uses them; others TypeError)."""
    cls = BufferError if isinstance(e, BufferError) else ValueError if isinstance(e, ValueError) else TypeError
    return cls(f"`{name}` ({type(obj).__module__}.{type(obj).__qualname__}) could not be read over "
               f"DLPack: its {what} raised {type(e).__name__}: {e}")


cdef class DLPackOwner:
    """Owns one DLPack managed tensor: the base of the NumPy view over its memory, calling the
    producer's deleter exactly once, when the last view dies."""
    cdef void *_managed
    cdef bint _versioned
    cdef dict _iface

    @property
    def __array_interface__(self):
        return self._iface

    def __dealloc__(self):
        if self._managed is not NULL:
            fxdl_delete(self._managed, self._versioned)
            self._managed = NULL


def dlpack_view(obj, str name):
    """A zero-copy view of `obj`'s DLPack tensor: (ndarray, is_bfloat16).

    bfloat16 comes back as raw uint16 storage with is_bfloat16 True (the caller picks the
    dtype); a read-only tensor gives a read-only array.  Non-CPU devices are a ValueError
    naming `name` (nothing is imported, nothing is copied).
    """
    try:
        dev = obj.__dlpack_device__()
        dev_type, dev_id = int(dev[0]), int(dev[1])
    except Exception as e:  # torch's meta device, a JAX tracer, ...
        raise _export_error(name, obj, "__dlpack_device__()", e) from e
    if dev_type != DLPACK_CPU:
        raise _device_error(name, dev_type, dev_id)
    try:
        try:
            cap = obj.__dlpack__(max_version=(1, 0))
        except TypeError:  # a producer of the legacy protocol only
            cap = obj.__dlpack__()
    except Exception as e:  # sparse tensors, dtypes without a DLPack code (int4), ...
        raise _export_error(name, obj, "__dlpack__()", e) from e
    cdef void *m
    cdef bint versioned
    cdef fxdl_tensor *t
    cdef fxdl_managed_v *mv
    if PyCapsule_IsValid(cap, b"dltensor_versioned"):
        m = PyCapsule_GetPointer(cap, b"dltensor_versioned")
        versioned = True
        PyCapsule_SetName(cap, b"used_dltensor_versioned")
        mv = <fxdl_managed_v *>m
        t = &mv.dl_tensor
    elif PyCapsule_IsValid(cap, b"dltensor"):
        m = PyCapsule_GetPointer(cap, b"dltensor")
        versioned = False
        PyCapsule_SetName(cap, b"used_dltensor")
        t = &(<fxdl_managed *>m).dl_tensor
    else:
        raise TypeError(f"`{name}`.__dlpack__() did not return a DLPack capsule")
    del cap  # consumed: released now, not while one of the errors below is being raised
    cdef DLPackOwner owner = DLPackOwner.__new__(DLPackOwner)
    owner._managed = m  # from here on the deleter runs exactly once, when `owner` dies
    owner._versioned = versioned
    readonly = False
    if versioned:
        if mv.version.major != 1:
            raise BufferError(f"`{name}` exports DLPack {mv.version.major}.{mv.version.minor}; "
                              "fastxent reads version 1")
        readonly = bool(mv.flags & _DL_READ_ONLY)
    if t.device.device_type != DLPACK_CPU:  # a producer whose tensor contradicts __dlpack_device__
        raise _device_error(name, t.device.device_type, t.device.device_id)
    code, bits, lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
    kind = _DL_KINDS.get(code)
    if lanes != 1 or kind is None or bits % 8 or (kind == "bf" and bits != 16) or (kind == "b" and bits != 8):
        dt = (f"{_DL_NAMES[code]}{bits}" if code in _DL_NAMES else f"of type code {code} with {bits} bits") + \
            ("" if lanes == 1 else f" x {lanes} lanes")
        raise TypeError(f"`{name}` has DLPack dtype {dt}, which fastxent does not read (it reads "
                        f"float16/32/64, bfloat16, integers and bool)")
    cdef int64_t item = bits // 8, i
    cdef int nd = t.ndim
    shape = tuple([t.shape[i] for i in range(nd)])
    if t.strides is NULL:
        strides = None  # C-contiguous
    else:
        strides = tuple([t.strides[i] * item for i in range(nd)])
    cdef int64_t size = 1
    for i in range(nd):
        size *= t.shape[i]
    bf16 = kind == "bf"
    endian = "|" if item == 1 else ("<" if sys.byteorder == "little" else ">")
    typestr = endian + ("u" if bf16 else ("b" if kind == "b" else kind)) + str(item)
    if size == 0:
        return np.empty(shape, dtype=typestr), bf16  # no memory to share (the pointer may be NULL)
    owner._iface = {"version": 3, "shape": shape, "typestr": typestr, "strides": strides,
                    "data": (<size_t>t.data + <size_t>t.byte_offset, readonly)}
    return np.asarray(owner), bf16
