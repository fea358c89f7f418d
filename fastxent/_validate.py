"""Argument checks of the public functions, and `prepare`: the one path from arguments to kernel inputs.

Every function over logits and class targets -- `cross_entropy`, `perplexity`, `token_stats`,
`kl_divergence`, `Evaluator.update` (and so ``fastxent eval``), the blocks of `fastxent.dask` --
validates through `prepare` (or `prepare_pair` for two sets of logits), in one order: threads,
`ignore_index`, logits, the class axis, reference logits, `weight`, targets.  A bad argument
therefore raises the same exception with the same message everywhere (docs/bad_inputs.md, made
from tests/test_catalogue.py), and before any kernel runs or any output is written.

`prepare` returns a `Prepared` record: the logits as the kernels read them with their row
layout, the batch shape and class axis, the checked targets with their count, the reference
logits, the weights, the dtypes and the thread count.  The targets are scanned once per call:
`check_targets` checks their range and counts them in one kernel pass.  The checks that do not
need the arrays' values (option values, dtypes and shapes) are functions of their own here,
shared with `fastxent.dask` (which sees dask arrays) and ``fastxent eval``.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._arrays import (Layout, aligned_c, as_rows, asarray, float_array, float_operand, is_bfloat16,
                      normalize_axes, output_view, pair_dtype, result_dtype, row_layout)
from ._config import resolve_n_threads

#: the values of `reduction` (PyTorch's)
REDUCTIONS = ("none", "sum", "mean")
_INT64_MAX = np.iinfo(np.int64).max


# --------------------------------------------------------------------------- options
def check_reduction(reduction: Any) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', got {reduction!r}")


def check_scalar(value: Any, name: str, lo: float, hi: float = np.inf, lo_open: bool = False) -> float:
    """`value` as a float in [lo, hi] ((lo, hi] with `lo_open`), finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number, got {value!r}") from None
    if not np.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ValueError(f"`{name}` must be a finite number in {rng}, got {value!r}")
    return v


def check_ignore_index(ignore_index: Any) -> int:
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}") from None
    if not -2**63 <= value < 2**63:
        raise ValueError(f"`ignore_index` must fit in int64, got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return bool(value)


def class_axis(axis: Any, ndim: int) -> int:
    """The class axis as a non-negative integer.

    One integer only: a tuple, list or None is a TypeError naming `axis` (the losses reduce
    over exactly one axis), an out-of-range one an AxisError.
    """
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"`axis` must be an integer (the class axis), got {axis!r}") from None
    (ax,) = normalize_axes(ax, ndim)
    return ax


# --------------------------------------------------------------------------- arrays
def check_logits(x: Any, name: str = "logits") -> np.ndarray:
    """Logits (or reference logits) in the dtype the kernels read; integers are refused."""
    return float_array(x, name, promote_int=False)


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """`a` and `b` (arrays or dask arrays) have one shape."""
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` has shape {a.shape} but `{name_b}` has shape {b.shape}; "
                         "they must be equal")


def check_target_meta(dtype: np.dtype, shape: Tuple[int, ...], logits_shape: Tuple[int, ...],
                      ax: int) -> None:
    """Integer class indices of the shape of the logits without the class axis `ax` (the
    checks that need no values: also those of `fastxent.dask`)."""
    if dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, got dtype {dtype}")
    expected = logits_shape[:ax] + logits_shape[ax + 1:]
    if shape != expected:
        raise ValueError(f"`target` has shape {shape} but `logits` with shape {logits_shape} "
                         f"and axis={ax} needs target shape {expected}")


def first_bad_target(t: np.ndarray, n_cols: int, ignore_index: int) -> Tuple[Optional[np.ndarray], int, int]:
    """One kernel pass over integer targets: ``(t64, bad, counted)``.

    `t64` is `t` as flat C-ordered int64 (None when a uint64 value does not fit), `bad` the
    flat (C order) position of the first value that is neither in ``[0, n_cols)`` nor
    `ignore_index` (-1: none), `counted` the number of values that are not `ignore_index`.
    """
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and int(t.max()) > _INT64_MAX:
        return None, int(np.argmax(t > _INT64_MAX)), 0
    t64 = aligned_c(t, np.int64).reshape(-1)
    bad, counted = _core.check_targets(t64, n_cols, ignore_index)
    return t64, bad, counted


def check_targets(t: np.ndarray, logits_shape: Tuple[int, ...], ax: int,
                  ignore_index: int) -> Tuple[np.ndarray, int]:
    """Integer targets of the right shape and range: (flat contiguous int64, counted)."""
    check_target_meta(t.dtype, t.shape, logits_shape, ax)
    n_cols = logits_shape[ax]
    t64, bad, counted = first_bad_target(t, n_cols, ignore_index)
    if bad >= 0:
        pos = tuple(int(i) for i in np.unravel_index(bad, t.shape))
        raise IndexError(f"`target` value {t[pos]} at position {pos} is out of range for "
                         f"{n_cols} classes (valid: 0..{n_cols - 1} or ignore_index)")
    assert t64 is not None
    return t64, counted


def check_weight(weight: Any, n_cols: int, dt: np.dtype) -> Optional[np.ndarray]:
    """Per-class weights (or None) as a contiguous array of `dt`, finite and >= 0."""
    if weight is None:
        return None
    w = float_operand(weight, "weight")  # every logits dtype and integers
    if w.dtype.kind == "b":  # as the reference and PyTorch (weights are numbers, not a mask)
        raise TypeError("`weight` must be a real array, not bool")
    if w.shape != (n_cols,):
        raise ValueError(f"`weight` must have shape ({n_cols},) (one weight per class), got {w.shape}")
    w = aligned_c(w, dt)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = int(np.argmax(~np.isfinite(w) | (w < 0)))
        raise ValueError(f"`weight` must be finite and >= 0; weight[{bad}] = {w[bad]}")
    return w


def check_grad_out(grad_out: Any, x: np.ndarray, ax: int,
                   sources: Sequence[Tuple[str, Any]]) -> Tuple[np.ndarray, Layout]:
    """`grad_out` checked, with the class axis last, and its row layout (no copy is ever made)."""
    grad_out = output_view(grad_out, "grad_out")
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"`grad_out` must be a NumPy array, got {type(grad_out).__name__}")
    if grad_out.shape != x.shape:
        raise ValueError(f"`grad_out` has shape {grad_out.shape}, `logits` has shape {x.shape}")
    want = result_dtype(x.dtype)
    # 16-bit logits: float32, or their own dtype (the kernel rounds each entry once)
    own = x.dtype.itemsize == 2 and (is_bfloat16(grad_out.dtype) if is_bfloat16(x.dtype) else grad_out.dtype == x.dtype)
    if grad_out.dtype != want and not own:
        also = f" or {x.dtype}" if x.dtype.itemsize == 2 else ""
        raise TypeError(f"`grad_out` has dtype {grad_out.dtype}; the gradient of {x.dtype} logits is {want}{also}")
    if not grad_out.flags.writeable:
        raise ValueError("`grad_out` is read-only")
    # what always works: C order when the class axis is last, else C order with the classes last,
    # moved to `ax` (a C-contiguous array of the logits' shape has strided classes then)
    if ax == x.ndim - 1:
        works = "a C-contiguous array of the logits' shape always works"
    else:
        last = x.shape[:ax] + x.shape[ax + 1:] + (x.shape[ax],)
        works = (f"with the class axis {ax} not last, a C-contiguous array of the logits' shape does not "
                 f"qualify; np.moveaxis(np.empty({last}, np.{want.name}), -1, {ax}) always works")
    if not grad_out.flags.aligned:  # checked here: the layout check below would blame the class axis
        raise ValueError(f"`grad_out` is not aligned (its {grad_out.dtype} elements must start at addresses "
                         f"that are multiples of {grad_out.itemsize} bytes); it must be an aligned array with "
                         f"a C-contiguous class axis ({works})")
    g = np.moveaxis(grad_out, ax, -1)
    layout = row_layout(g)
    if layout is None:
        raise ValueError("`grad_out` must have a contiguous class axis and rows that fold into at most "
                         f"two strided levels ({works})")
    for name, arr in sources:
        if arr is None or not np.shares_memory(grad_out, arr):
            continue
        exact = (name == "logits" and arr.__array_interface__["data"][0] == grad_out.__array_interface__["data"][0]
                 and arr.strides == grad_out.strides)
        if not exact:
            raise ValueError(f"`grad_out` overlaps `{name}`; it may only be the logits array itself "
                             "(in-place) or memory of its own")
    return g, layout


# --------------------------------------------------------------------------- the record
class Prepared:
    """The checked inputs of one call, ready for the kernels (made by `prepare`).

    Attributes
    ----------
    x : ndarray
        The logits in the dtype the kernels read (the caller's array when that needed no
        conversion).
    ax, n_cols, batch, rows : int, int, tuple, int
        The class axis (non-negative), the number of classes, the shape without the class
        axis, and the number of positions (the product of `batch`).
    base, layout : ndarray, tuple or None
        The row view of `x` (`_arrays.as_rows`); None when `x` is read a block of rows at a
        time (reference logits of another dtype, `_per_token`).
    t64 : ndarray or None
        Flat C-ordered int64 class indices, every one checked; None without integer targets.
    counted : int
        Targets that are not `ignore_index` (`rows` for probability targets or none).
    prob, prob_layout : ndarray, tuple or None
        Probability targets in the result dtype, and their row layout.
    ref, ref_base, ref_layout : ndarray, ndarray, tuple or None
        Reference logits of `x`'s shape in their own dtype, and their row view (as `base`).
    weight : ndarray or None
        Per-class weights in the result dtype.
    ignore_index, n_threads : int
        As checked and resolved (`_config.resolve_n_threads`).
    kdt, rdt : numpy.dtype
        The dtype the kernel reads (`_arrays.pair_dtype` of the logits and the reference) and
        the dtype of the results.
    """

    __slots__ = ("x", "ax", "n_cols", "batch", "rows", "base", "layout", "t64", "counted", "prob",
                 "prob_layout", "ref", "ref_base", "ref_layout", "weight", "ignore_index", "n_threads",
                 "kdt", "rdt")

    x: np.ndarray
    ax: int
    n_cols: int
    batch: Tuple[int, ...]
    rows: int
    base: Optional[np.ndarray]
    layout: Optional[Layout]
    t64: Optional[np.ndarray]
    counted: int
    prob: Optional[np.ndarray]
    prob_layout: Optional[Layout]
    ref: Optional[np.ndarray]
    ref_base: Optional[np.ndarray]
    ref_layout: Optional[Layout]
    weight: Optional[np.ndarray]
    ignore_index: int
    n_threads: int
    kdt: np.dtype
    rdt: np.dtype

    def counted_mask(self) -> np.ndarray:
        """Flat bool: the positions whose target is not `ignore_index` (a pass over the
        targets: callers that only need the count use `counted`)."""
        assert self.t64 is not None
        return self.t64 != self.ignore_index


def prepare(logits: Any, target: Any, *, axis: Any, ignore_index: Any, n_threads: Optional[int],
            ref_logits: Any = None, weight: Any = None, probabilities: bool = False) -> Prepared:
    """Check the arguments of one call over logits and targets, in the order of the module
    notes, and return them as the kernels read them.

    `target` holds class indices (any integer dtype) or, with `probabilities`, a floating
    array of the logits' shape (PyTorch's class probabilities); None: no targets.
    `ref_logits` are read in their own dtype (`_arrays.pair_dtype`); `weight` is converted
    to the result dtype.
    """
    nt = resolve_n_threads(n_threads)
    ii = check_ignore_index(ignore_index)
    x = check_logits(logits)
    ax = class_axis(axis, x.ndim)
    ref = None
    if ref_logits is not None:
        ref = check_logits(ref_logits, "ref_logits")
        check_same_shape(ref, x, "ref_logits", "logits")
    return _prepared(x, ax, ref, weight, target, probabilities, ii, nt)


def prepare_pair(p_logits: Any, q_logits: Any, *, axis: Any, n_threads: Optional[int]) -> Prepared:
    """`kl_divergence`'s arguments: Q (`q_logits`) as the logits, P (`p_logits`) as the
    reference, no targets."""
    nt = resolve_n_threads(n_threads)
    p = check_logits(p_logits, "p_logits")
    q = check_logits(q_logits, "q_logits")
    check_same_shape(p, q, "p_logits", "q_logits")
    return _prepared(q, class_axis(axis, q.ndim), p, None, None, False, 0, nt)


def _prepared(x: np.ndarray, ax: int, ref: Optional[np.ndarray], weight: Any, target: Any,
              probabilities: bool, ignore_index: int, n_threads: int) -> Prepared:
    p = Prepared()
    p.x, p.ax, p.ref, p.ignore_index, p.n_threads = x, ax, ref, ignore_index, n_threads
    p.kdt = x.dtype if ref is None else pair_dtype(x.dtype, ref.dtype)
    p.rdt = result_dtype(p.kdt)
    shape = x.shape
    p.n_cols = n_cols = shape[ax]
    p.weight = None if weight is None else check_weight(weight, n_cols, p.rdt)
    p.batch = shape[:ax] + shape[ax + 1:]
    p.rows = p.counted = math.prod(p.batch)
    p.t64 = p.prob = p.prob_layout = None
    if target is not None:
        t = asarray(target, "target")
        if t.dtype.kind in "iu" or not probabilities:
            p.t64, p.counted = check_targets(t, shape, ax, ignore_index)
        elif t.dtype.kind == "f" or is_bfloat16(t.dtype):
            if t.shape != shape:
                raise TypeError(f"`target` of dtype {t.dtype} is read as class probabilities and must "
                                f"have the shape of `logits` {shape}, got {t.shape}; class indices "
                                "must be integers")
            prob = float_operand(t, "target", p.rdt, promote_int=False)
            p.prob, p.prob_layout, _, _ = as_rows(prob, (ax,))
        else:
            raise TypeError(f"`target` must hold integer class indices or floating class probabilities, "
                            f"got dtype {t.dtype}")
    p.base = p.layout = p.ref_base = p.ref_layout = None
    if ref is None or ref.dtype == x.dtype:  # else read a block of rows at a time (`_per_token`)
        p.base, p.layout, _, _ = as_rows(x, (ax,))
        if ref is not None:
            p.ref_base, p.ref_layout, _, _ = as_rows(ref, (ax,))
    return p
