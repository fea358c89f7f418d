"""Arrays as the kernels read them: dtypes (bfloat16, DLPack), conversions and the row view.

The argument checks built on these are in `_validate`.  `as_rows` turns an array and the axes
to reduce into the (n_outer, n_inner, n_cols) row layout of src_c/fastxent.h without copying
whenever the reduced elements of a row are contiguous and the rows fold into at most two
strided levels (C-contiguous input, `x[:, :-1, :]`, negative row strides, read-only arrays,
memmaps).  Any other layout is copied once to C order.
"""
from __future__ import annotations

import operator
from typing import Any, Dict, Optional, Sequence, SupportsIndex, Tuple, Union

import numpy as np

from ._compat import AxisError

#: (n_outer, n_inner, n_cols, s_outer, s_inner, s_col) of src_c/fastxent.h, strides in elements
Layout = Tuple[int, int, int, int, int, int]
SUPPORTED_NAMES = "float32, float64, float16, bfloat16"
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOATS: Dict[int, np.dtype] = {2: np.dtype(np.float16), 4: F32, 8: F64}   # native floats by item size


def is_bfloat16(dtype: np.dtype) -> bool:
    """The ml_dtypes bfloat16 dtype, recognised without importing ml_dtypes (or BF16_RAW)."""
    if dtype.isbuiltin == 1:  # a NumPy type without metadata (float32, int64, ...): never
        return False          # (`dtype.name` is slow: this is on every call's path)
    return (dtype.name == "bfloat16" and dtype.itemsize == 2) or _is_raw(dtype)


#: bfloat16 read over DLPack when ml_dtypes is not installed: uint16 storage the kernels read
#: as bfloat16 (a dtype that NumPy's own operations treat as uint16)
BF16_RAW = np.dtype(np.uint16, metadata={"fastxent": "bfloat16"})
_bf16: Optional[np.dtype] = None


def _bfloat16_dtype() -> np.dtype:
    global _bf16
    if _bf16 is None:
        try:
            import ml_dtypes
            _bf16 = np.dtype(ml_dtypes.bfloat16)
        except ImportError:
            _bf16 = BF16_RAW
    return _bf16


def from_dlpack_if_needed(x: Any, name: str) -> Any:
    """`x` as a zero-copy ndarray view when it is a DLPack producer that is not an ndarray.

    Torch tensors, JAX arrays and the like go through DLPack (bfloat16 included, whether or
    not ml_dtypes is installed); a torch tensor that requires grad is read through
    ``detach()`` (its values, not its graph); a view of a JAX array is read-only.  Anything
    else is returned unchanged.
    """
    if isinstance(x, np.ndarray) or not hasattr(type(x), "__dlpack__"):
        return x
    if _is_torch(x) and getattr(x, "requires_grad", False):
        x = x.detach()
    if _is_jax(x) and any(c.__name__ == "Tracer" for c in type(x).__mro__):
        raise TypeError(f"`{name}` is a JAX tracer ({type(x).__name__}): fastxent was called inside "
                        "jax.jit, jax.grad or jax.vmap, but it computes on concrete arrays; call it "
                        "outside the transformed function (or inside it through `jax.pure_callback`)")
    from . import _core

    a, bf16 = _core.dlpack_view(x, name)
    if bf16:
        a = a.view(_bfloat16_dtype())
    if _is_jax(x):  # immutable, but JAX exports the legacy protocol (no read-only flag)
        a.flags.writeable = False
    return a


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _is_jax(x: Any) -> bool:
    return type(x).__module__.split(".")[0] in ("jax", "jaxlib")


def output_view(x: Any, name: str) -> Any:
    """`x`, an output argument (`grad_out`), as a writable ndarray view when it is a DLPack
    producer; refuses what must not be written behind its owner's back (JAX arrays are
    immutable; a torch tensor that requires grad is autograd's).  See `note_written`."""
    if _is_jax(x):
        raise TypeError(f"`{name}` is a JAX array; JAX arrays are immutable, so fastxent cannot write "
                        f"into one: leave `{name}` out (the result comes back as a NumPy array, which "
                        "`jnp.asarray` turns into a JAX array) or pass a NumPy array")
    if _is_torch(x) and getattr(x, "requires_grad", False):
        raise ValueError(f"`{name}` requires grad; fastxent writes into it in place, which autograd "
                         "cannot record: pass a tensor that does not require grad (for example "
                         "`torch.empty_like(logits, dtype=torch.float32)`), or use "
                         "fastxent.torch.cross_entropy, which is differentiable")
    return from_dlpack_if_needed(x, name)


def note_written(x: Any) -> None:
    """After writing into the output argument `x`: a torch tensor's version counter goes up (as
    torch's own in-place operations do), so that autograd refuses a backward through a graph
    that saved its old values instead of silently using the new ones."""
    if _is_torch(x):
        import torch

        torch.autograd.graph.increment_version(x)


def asarray(x: Any, name: str, keep_bf16: bool = False) -> np.ndarray:
    """np.asarray(x), reading DLPack producers (torch, JAX) zero-copy first.

    Raw bfloat16 storage (BF16_RAW: no ml_dtypes) is widened to float32 unless `keep_bf16`
    (the callers whose kernels read bfloat16 directly: logits)."""
    a = np.asarray(from_dlpack_if_needed(x, name))
    return a if keep_bf16 else to_dtype(a, None)


def _is_raw(dtype: np.dtype) -> bool:
    return dtype.metadata is not None and dtype.name == "uint16" and dtype.metadata.get("fastxent") == "bfloat16"


def to_dtype(a: np.ndarray, dtype: Optional[np.dtype]) -> np.ndarray:
    """`a.astype(dtype)` that also converts BF16_RAW storage by value (None: BF16_RAW ->
    float32, anything else unchanged)."""
    if _is_raw(a.dtype):
        a = (a.astype(np.uint32) << 16).view(np.float32)
    if dtype is None or a.dtype == dtype:
        return a
    if _is_raw(dtype):  # round to nearest even, NaN kept NaN
        bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        out = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        out[np.isnan(a)] = 0x7FC0
        return out.view(BF16_RAW)
    return a.astype(dtype)


def float_dtype(dtype: np.dtype, name: str, promote_int: bool = True) -> np.dtype:
    """The dtype the kernels read for an input dtype.

    float32/float64/float16/bfloat16 as they are (native byte order); integers and
    bool -> float64 when `promote_int`; anything else is a TypeError naming `name`.
    """
    if is_bfloat16(dtype):
        return dtype
    if dtype.kind in "iub" and promote_int:
        return F64
    if dtype.kind == "c":
        raise TypeError(f"`{name}` is complex ({dtype}); fastxent handles real input only "
                        f"(supported dtypes: {SUPPORTED_NAMES})")
    if dtype.kind == "f" and dtype.itemsize in _FLOATS:
        return _FLOATS[dtype.itemsize]
    extra = " (integers and bool are converted to float64)" if promote_int else ""
    raise TypeError(f"`{name}` has dtype {dtype}; supported dtypes are {SUPPORTED_NAMES}{extra}")


def float_operand(x, name: str, dtype: np.dtype | None = None, promote_int: bool = True) -> np.ndarray:
    """A floating argument beside the logits (`weight`, probability targets, `b`), checked.

    The one check of every such argument: it accepts every logits dtype (float16,
    bfloat16, float32, float64) plus, with `promote_int`, integers and bool, and raises
    the TypeError of `float_dtype` naming `name` for anything else (complex, longdouble,
    object, ...).  The values are then converted to `dtype` when given: the dtype the
    kernel reads them in (the result dtype, float32 or float64, into which every 16-bit
    value widens exactly); None returns the array in its own dtype.
    """
    a = asarray(x, name)             # DLPack producers too; raw bfloat16 widened to float32
    float_dtype(a.dtype, name, promote_int=promote_int)
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


def pair_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    """The dtype two sets of logits (model and reference) are compared in.

    The one rule of `kl_divergence`, `token_stats`, `Evaluator`, `fastxent.dask` and
    ``fastxent eval --ref-logits``: each side is read in its own precision, never
    rounded.  Equal dtypes are read as they are; otherwise the narrower side is
    widened (exactly) to the smallest kernel dtype holding both: float64 when either
    is float64, else float32 (float16 with bfloat16 widens both to float32).
    """
    if a == b:
        return a
    return F64 if F64 in (a, b) else F32


def row_blocks(batch_shape: tuple, n_cols: int, max_elems: int):
    """Index tuples splitting a (*batch_shape, n_cols) array into blocks of whole rows.

    Each block holds at most ``max(n_cols, max_elems)`` elements, blocks follow C order,
    and ``a[idx]`` of a C-contiguous array of shape `batch_shape` (or `batch_shape` plus
    trailing axes) is C-contiguous: integers on leading axes, one slice, then whole
    axes.  One block (``()``) when everything fits.
    """
    rows_per = max(1, max_elems // max(1, n_cols))
    k, inner = len(batch_shape), 1
    while k > 0 and inner * batch_shape[k - 1] <= rows_per:
        k -= 1
        inner *= batch_shape[k]
    if k == 0:
        yield ()
        return
    step = rows_per // inner
    for lead in np.ndindex(*batch_shape[:k - 1]):
        for s in range(0, batch_shape[k - 1], step):
            yield lead + (slice(s, s + step),)


def result_dtype(kernel_dtype: np.dtype) -> np.dtype:
    """Per-position results: float64 for float64 input, float32 for everything else."""
    return F64 if kernel_dtype == F64 else F32


def float_array(x: Any, name: str, dtype: np.dtype | None = None, promote_int: bool = True) -> np.ndarray:
    """`x` as an ndarray in the dtype the kernels read (no copy when it already is one).

    The one conversion of every array the kernels read rows of (logits, reference logits,
    `a`, `x`): DLPack producers zero-copy, bfloat16 kept, `float_dtype`'s check naming
    `name` (integers and bool -> float64 when `promote_int`, else a TypeError), native byte
    order; `dtype` forces the dtype instead (the caller has checked it).
    """
    a = asarray(x, name, keep_bf16=True)
    want = float_dtype(a.dtype, name, promote_int) if dtype is None else dtype
    if a.dtype != want or not a.dtype.isnative:
        a = a.astype(want)
    return a


def aligned_c(a: Any, dtype: Any) -> np.ndarray:
    """`a` as a C-contiguous, aligned array of `dtype` (the kernels' only requirement)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.aligned else out.copy()


def normalize_axes(axis: Optional[Union[SupportsIndex, Sequence[SupportsIndex]]], ndim: int,
                   name: str = "axis") -> tuple[int, ...]:
    """Sorted, unique, non-negative axes; None means all."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = []
        for ax in axis:
            axes.append(_one_axis(ax, ndim, name))
        if len(set(axes)) != len(axes):
            raise ValueError(f"`{name}` contains a repeated axis: {tuple(axis)}")
        return tuple(sorted(axes))
    return (_one_axis(axis, ndim, name),)


def _one_axis(ax: Any, ndim: int, name: str) -> int:
    try:
        ax = operator.index(ax)
    except TypeError:
        raise TypeError(f"`{name}` must be an integer, a tuple of integers or None, got {ax!r}") from None
    if not -ndim <= ax < ndim:
        raise AxisError(ax, ndim)
    return ax % ndim


def as_rows(a: np.ndarray, axes: tuple[int, ...]) -> Tuple[np.ndarray, Layout, Tuple[int, ...], int]:
    """Row view of `a` reducing over `axes`.

    Returns ``(base, layout, batch_shape, n_cols)``: `base` is the array whose
    first element is row 0's first element (kept alive by the caller while the
    kernel runs), `layout` is the tuple the Cython layer wants, `batch_shape`
    the shape of the non-reduced axes in their order.
    """
    nd = a.ndim
    keep = [i for i in range(nd) if i not in axes]
    y = a.transpose(keep + list(axes)) if list(keep) + list(axes) != list(range(nd)) else a
    batch_shape = y.shape[: len(keep)]
    n_cols = 1
    for ax in axes:
        n_cols *= a.shape[ax]
    if len(axes) != 1:
        y = y.reshape(batch_shape + (n_cols,))  # a view when possible, else a copy
    layout = row_layout(y)
    if layout is None:
        # unaligned data (e.g. an array unpickled from a network buffer by dask.distributed)
        # stays unaligned under ascontiguousarray when it is already contiguous: copy it
        y = np.ascontiguousarray(y) if y.flags.aligned else np.array(y, order="C")
        layout = row_layout(y)
        assert layout is not None  # an aligned C-contiguous array always has one
    return y, layout, batch_shape, n_cols


def row_layout(y: np.ndarray) -> Optional[Layout]:
    """(n_outer, n_inner, n_cols, s_outer, s_inner, 1) of a (..., n_cols) array as it is, or None
    when its rows do not fold into that form without a copy."""
    item = y.itemsize
    n_cols = y.shape[-1]
    if y.size == 0:  # nothing is read: any layout of the right sizes
        rows = 1
        for n in y.shape[:-1]:
            rows *= n
        return (1, rows, n_cols, 0, n_cols, 1)
    if not y.flags.aligned:
        return None
    if n_cols > 1 and y.strides[-1] != item:
        return None
    dims: list[tuple[int, int]] = []
    for n, s in zip(y.shape[:-1], y.strides[:-1]):
        if n == 1:
            continue
        if s % item:
            return None
        s //= item
        if dims and dims[-1][1] == s * n:
            dims[-1] = (dims[-1][0] * n, s)  # merge with the outer neighbour
        else:
            dims.append((n, s))
    if len(dims) > 2:
        return None
    while len(dims) < 2:
        dims.insert(0, (1, 0))
    (n_outer, s_outer), (n_inner, s_inner) = dims
    return (n_outer, n_inner, n_cols, s_outer, s_inner, 1)


def strided_layout(b: np.ndarray) -> Layout:
    """Layout of a broadcast (..., n_cols) float64 array with any element strides (for `b`)."""
    item = b.itemsize
    if b.ndim != 2 or any(s % item for s in b.strides):
        raise ValueError("internal: strided_layout wants a 2-d array with element strides")
    n_rows, n_cols = b.shape
    return (1, n_rows, n_cols, 0, b.strides[0] // item, b.strides[1] // item)
