"""Cross-entropy and perplexity from logits and integer class targets."""
from __future__ import annotations

import operator
from typing import Any, Literal, SupportsIndex, Tuple, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import (as_rows, asarray, float_dtype, float_operand, is_bfloat16, normalize_axes,
                      note_written, output_view, result_dtype)
from ._config import resolve_n_threads

REDUCTIONS = ("none", "sum", "mean")
_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]
_Total = Literal["mean", "sum"]
_Loss = Union[_Float, _FloatArray]


def _check_logits(logits) -> np.ndarray:
    x = asarray(logits, "logits", keep_bf16=True)
    kdt = float_dtype(x.dtype, "logits", promote_int=False)
    if x.dtype != kdt or not x.dtype.isnative:
        x = x.astype(kdt)
    return x


def _class_axis(axis, ndim: int) -> int:
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


def _check_target(target, logits: np.ndarray, ax: int, ignore_index: int):
    """Integer targets of the right shape and range, as contiguous int64 (plus the count)."""
    t = asarray(target, "target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, got dtype {t.dtype}")
    expected = logits.shape[:ax] + logits.shape[ax + 1:]
    if t.shape != expected:
        raise ValueError(f"`target` has shape {t.shape} but `logits` with shape {logits.shape} "
                         f"and axis={ax} needs target shape {expected}")
    n_cols = logits.shape[ax]
    if t.dtype.kind == "u" and t.dtype.itemsize == 8 and t.size and int(t.max()) > np.iinfo(np.int64).max:
        _raise_bad_target(t, int(np.argmax(t > np.iinfo(np.int64).max)), n_cols)
    t64 = aligned_c(t, np.int64)
    bad, counted = _core.check_targets(t64.reshape(-1), n_cols, ignore_index)
    if bad >= 0:
        _raise_bad_target(t, bad, n_cols)
    return t64.reshape(-1), counted


def _raise_bad_target(t: np.ndarray, flat: int, n_cols: int):
    pos = tuple(int(i) for i in np.unravel_index(flat, t.shape))
    raise IndexError(f"`target` value {t[pos]} at position {pos} is out of range for "
                     f"{n_cols} classes (valid: 0..{n_cols - 1} or ignore_index)")


def _check_ignore_index(ignore_index) -> int:
    try:
        value = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}") from None
    if not -2**63 <= value < 2**63:
        raise ValueError(f"`ignore_index` must fit in int64, got {value}")
    return value


def aligned_c(a, dtype) -> np.ndarray:
    """`a` as a C-contiguous, aligned array of `dtype` (the kernels' only requirement)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.aligned else out.copy()


def _nll(logits, target, axis, ignore_index, n_threads, total=False):
    """Per-position negative log-likelihood (float64, target's shape), counted tokens, dtype.

    With `total`, the loss is only their sum (a float: no per-position array), and
    no targets are returned."""
    nt = resolve_n_threads(n_threads)
    ignore_index = _check_ignore_index(ignore_index)
    x = _check_logits(logits)
    ax = _class_axis(axis, x.ndim)
    t64, counted = _check_target(target, x, ax, ignore_index)
    base, layout, batch, n_cols = as_rows(x, (ax,))
    if total:
        s = _core.xent_sum(base, layout, t64, ignore_index, nt) if t64.size else 0.0
        return s, None, counted, result_dtype(x.dtype)
    loss = np.empty(t64.size, dtype=np.float64)
    if t64.size:
        _core.xent(base, layout, t64, ignore_index, loss, nt)
    return loss.reshape(batch), t64.reshape(batch), counted, result_dtype(x.dtype)


def _check_scalar(value, name: str, lo: float, hi: float = np.inf, lo_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number, got {value!r}") from None
    if not np.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ValueError(f"`{name}` must be a finite number in {rng}, got {value!r}")
    return v


def _check_weight(weight, n_cols: int, dt: np.dtype):
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


def _grad_layout(grad_out, x: np.ndarray, ax: int, sources):
    """Check `grad_out` and return it with its row layout (no copy is ever made)."""
    from ._arrays import _layout

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
    layout = _layout(g)
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


@overload  # "mean"/"sum": a NumPy scalar
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: _Total = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[False] = False,
                  return_grad: Literal[False] = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> _Float: ...
@overload  # per position (0-d: a NumPy scalar)
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[False] = False,
                  return_grad: Literal[False] = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> _FloatArray: ...
@overload  # (loss, grad)
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: _Total = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[False] = False,
                  return_grad: Literal[True], grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_Float, _FloatArray]: ...
@overload
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[False] = False,
                  return_grad: Literal[True], grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_FloatArray, _FloatArray]: ...
@overload  # (loss, z)
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: _Total = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[True],
                  return_grad: Literal[False] = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_Float, _Float]: ...
@overload
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[True],
                  return_grad: Literal[False] = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_FloatArray, _FloatArray]: ...
@overload  # (loss, z, grad)
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: _Total = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[True],
                  return_grad: Literal[True], grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_Float, _Float, _FloatArray]: ...
@overload
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: Literal["none"], label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: Literal[True],
                  return_grad: Literal[True], grad_out: _FloatArray | None = None,
                  n_threads: int | None = None) -> Tuple[_FloatArray, _FloatArray, _FloatArray]: ...
@overload
def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: bool = False,
                  return_grad: bool = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None
                  ) -> _Loss | Tuple[_Loss, _Loss] | Tuple[_Loss, _Loss, _FloatArray]: ...


def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: bool = False,
                  return_grad: bool = False, grad_out: _FloatArray | None = None,
                  n_threads: int | None = None
                  ) -> _Loss | Tuple[_Loss, _Loss] | Tuple[_Loss, _Loss, _FloatArray]:
    r"""Cross-entropy loss between logits and class targets, with its gradient.

    Every option means what it means in :func:`torch.nn.functional.cross_entropy`
    (`weight`, `ignore_index`, `reduction`, `label_smoothing`, probability
    targets) and in Liger-Kernel (`z_loss` = ``lse_square_scale``, `softcap`,
    `return_z_loss`, in-place gradient).  Per position, with
    ``lse = logsumexp(x)`` over the classes::

        loss = (1 - eps) * w[t] * (lse - x[t]) + eps / C * sum_c w[c] * (lse - x[c])
               + z_loss * lse**2

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores, classes along `axis`, e.g. of shape
        (tokens, vocab) or (batch, seq, vocab).  16-bit logits
        (``numpy.float16``, ``ml_dtypes.bfloat16``) are read as they are
        and computed in float32, without a converted copy.
    target : array_like
        Either class indices (any integer dtype) with the shape of `logits`
        without `axis` -- values in ``[0, C)`` or `ignore_index` -- or, as a
        floating array with the shape of `logits`, a distribution over the
        classes per position (PyTorch's "class probabilities").
    axis : int, optional
        The class axis (default: last); exactly one axis, not a tuple.
    weight : array_like, optional
        Per-class weights of shape (C,), finite and >= 0.  A position's loss is
        scaled by the weight of its target class, and ``"mean"`` divides by the
        sum of the weights of the counted targets (PyTorch).  With
        probability targets each class term is scaled by its weight and
        ``"mean"`` divides by the number of positions (PyTorch).
    ignore_index : int, optional
        Target value whose positions contribute nothing to loss, z-loss or
        gradient (default -100).  Not used with probability targets.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: per-position losses (0 at ignored positions); ``"sum"``;
        ``"mean"``: as described under `weight`.  When every position is
        ignored, ``"mean"`` is NaN, as in PyTorch.
    label_smoothing : float, optional
        ``eps`` in [0, 1]: the target becomes ``(1 - eps) * onehot + eps / C``
        (PyTorch's definition, weights included; for probability targets
        ``(1 - eps) * p + eps / C``).
    z_loss : float, optional
        Coefficient (>= 0) of the PaLM auxiliary loss ``z_loss * lse**2``
        added per counted position (Liger's ``lse_square_scale``).  Under
        ``"mean"`` its total is divided by the number of counted positions
        (unweighted, as Liger does).
    softcap : float, optional
        If given (> 0), logits are replaced by ``softcap * tanh(x / softcap)``
        before anything else (Gemma-2), without materialising them.
    return_z_loss : bool, optional
        Also return the z-loss part on its own (reduced like the loss).
    return_grad : bool, optional
        Also return ``d(loss)/d(logits)`` for the chosen reduction (for
        ``"none"``: of the sum of the per-position losses), computed in the
        same kernel call.
    grad_out : ndarray, optional
        Where to write the gradient (requires `return_grad`): an array of the
        logits' shape and of the gradient's dtype (float64 for float64 logits,
        float32 otherwise; for float16 and bfloat16 logits also their own
        dtype, each entry then the float32 one rounded to nearest even),
        aligned, with a contiguous class axis.  It may be the `logits` array
        itself, which is then overwritten in place (as Liger does); the numbers
        are the same as with a separate buffer.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    loss : ndarray or scalar
        float64 for float64 logits, float32 for the others (float32,
        float16, bfloat16).  Totals are summed
        in double in a fixed order (the same for any `n_threads`) and rounded
        once; ``"sum"`` and ``"mean"`` give a NumPy scalar.
    z : ndarray or scalar
        The z-loss part, when `return_z_loss` is True.
    grad : ndarray
        The gradient, when `return_grad` is True (`grad_out` when given),
        float64 for float64 logits and float32 for the others.
        The result is ``(loss, grad)``, ``(loss, z)`` or ``(loss, z, grad)``.

    Raises
    ------
    TypeError
        If `logits` is not float32/float64/float16/bfloat16; `axis` is not one integer (a
        tuple or None included); `target` is neither integer nor floating; a
        float `target` does not have the logits' shape; or `grad_out` has the
        wrong dtype.
    ValueError
        If the shapes do not match, `reduction` is unknown, `weight` has the
        wrong shape or negative/NaN entries, `label_smoothing` is outside
        [0, 1], `z_loss` < 0, `softcap` <= 0, or `grad_out` has the wrong
        shape or layout, is unaligned or read-only, or overlaps an input other than as
        the logits themselves.
    IndexError
        If a class index is out of range (the first bad position and value
        are named).
    numpy.exceptions.AxisError
        If `axis` is out of range.

    Notes
    -----
    Each row is read once for the loss (blocked max and ``exp`` passes from
    L1, see `logsumexp`) and, with `return_grad`, once more to write the
    gradient ``softmax(x) * K - coef`` in place of the row; the target term
    ``p_t - 1`` is computed as ``expm1(-loss_t)`` so it keeps its precision
    when the target's probability is near 1.  No ``rows x classes``
    temporary is created.  A class whose coefficient (weight x target
    probability) is 0 contributes 0 even when its logit is ``-inf`` (PyTorch
    gives NaN there).  With `softcap` the gradient includes the chain factor
    ``1 - tanh(x / softcap)**2``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import cross_entropy
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> cross_entropy(logits, np.array([0, 2]), reduction="none")
    array([0.23954477, 1.09861229])
    >>> float(cross_entropy(logits, np.array([0, -100])))  # doctest: +ELLIPSIS
    0.2395447...
    >>> loss, grad = cross_entropy(logits, np.array([0, 2]), label_smoothing=0.1, return_grad=True)
    >>> grad.shape
    (2, 3)

    16-bit logits are computed in float32 (the result is float32):

    >>> cross_entropy(logits.astype(np.float16), np.array([0, 2]), reduction="none")
    array([0.23954476, 1.0986123 ], dtype=float32)
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', got {reduction!r}")
    eps = _check_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    zc = _check_scalar(z_loss, "z_loss", 0.0)
    cap = 0.0 if softcap is None else _check_scalar(softcap, "softcap", 0.0, lo_open=True)
    if grad_out is not None and not return_grad:
        raise ValueError("`grad_out` is given but `return_grad` is False")
    t_arr = asarray(target, "target")
    plain = (weight is None and eps == 0.0 and zc == 0.0 and cap == 0.0 and not return_grad
             and not return_z_loss and t_arr.dtype.kind in "iu")
    if plain:  # "sum"/"mean": the kernel sums the losses (no per-position array)
        loss, _, counted, dt = _nll(logits, t_arr, axis, ignore_index, n_threads, total=reduction != "none")
        return _reduce(loss, None, reduction, counted, counted, dt)[0]

    nt = resolve_n_threads(n_threads)
    ignore_index = _check_ignore_index(ignore_index)
    x = _check_logits(logits)
    ax = _class_axis(axis, x.ndim)
    n_cols = x.shape[ax]
    rdt = result_dtype(x.dtype)
    w = _check_weight(weight, n_cols, rdt)
    base, layout, batch, _ = as_rows(x, (ax,))
    rows = layout[0] * layout[1]

    t64 = prob = None
    prob_layout = layout
    if t_arr.dtype.kind in "iu":
        t64, counted = _check_target(t_arr, x, ax, ignore_index)
        mask = t64 != ignore_index
        denom = float(np.sum(w[t64[mask]], dtype=np.float64)) if w is not None else float(counted)
    elif t_arr.dtype.kind == "f" or is_bfloat16(t_arr.dtype):
        if t_arr.shape != x.shape:
            raise TypeError(f"`target` of dtype {t_arr.dtype} is read as class probabilities and must "
                            f"have the shape of `logits` {x.shape}, got {t_arr.shape}; class indices "
                            "must be integers")
        prob, prob_layout, _, _ = as_rows(float_operand(t_arr, "target", rdt, promote_int=False), (ax,))
        counted = rows
        denom = float(rows)
    else:
        raise TypeError(f"`target` must hold integer class indices or floating class probabilities, "
                        f"got dtype {t_arr.dtype}")

    grad: Any = None
    grad_layout = None
    if return_grad:
        if grad_out is not None:
            grad, grad_layout = _grad_layout(grad_out, x, ax, [("logits", x), ("target", t_arr), ("weight", w)])
        else:
            grad = np.empty(batch + (n_cols,), dtype=rdt)
            grad_layout = (1, rows, n_cols, 0, n_cols, 1)
    if reduction == "mean":
        # counted positions whose target weights sum to 0: loss and gradient NaN (PyTorch)
        gscale = 1.0 / denom if denom else np.nan
        zscale = 1.0 / counted if counted else 0.0
    else:
        gscale = zscale = 1.0

    loss = np.empty(rows, dtype=np.float64)
    zl = np.empty(rows, dtype=np.float64) if (zc > 0.0 or return_z_loss) else None
    if rows:
        _core.xent_ex(base, layout, t64, prob, prob_layout, w, ignore_index, eps, zc, cap,
                      grad, grad_layout, gscale, zscale, loss, zl, nt)
    elif zl is not None:
        zl[:] = 0.0
    if grad_out is not None:
        note_written(grad_out)
    out = _reduce(loss.reshape(batch), None if zl is None else zl.reshape(batch),
                  reduction, denom, counted, rdt)
    res = [out[0]]
    if return_z_loss:
        res.append(out[1])
    if return_grad:
        res.append(grad_out if grad_out is not None else np.moveaxis(grad.reshape(batch + (n_cols,)), -1, ax))
    return res[0] if len(res) == 1 else tuple(res)


def _xent_parts(logits, target, *, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0,
                z_loss=0.0, softcap=None, n_threads=None):
    """The unreduced parts of `cross_entropy` for integer targets (no gradient), for callers that
    reduce elsewhere (`fastxent.dask`): per-position loss and z-loss in float64 (target's shape;
    z None when `z_loss` is 0), the per-position target weights of counted positions (float64,
    flat; None without `weight`), the counted tokens and the result dtype.  The loss holds the
    z-loss apart (`cross_entropy` adds them in `_reduce`)."""
    eps = _check_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    zc = _check_scalar(z_loss, "z_loss", 0.0)
    cap = 0.0 if softcap is None else _check_scalar(softcap, "softcap", 0.0, lo_open=True)
    nt = resolve_n_threads(n_threads)
    ignore_index = _check_ignore_index(ignore_index)
    x = _check_logits(logits)
    ax = _class_axis(axis, x.ndim)
    rdt = result_dtype(x.dtype)
    w = _check_weight(weight, x.shape[ax], rdt)
    t_arr = asarray(target, "target")
    if t_arr.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, got dtype {t_arr.dtype}")
    t64, counted = _check_target(t_arr, x, ax, ignore_index)
    base, layout, batch, _ = as_rows(x, (ax,))
    rows = layout[0] * layout[1]
    loss = np.empty(rows, dtype=np.float64)
    zl = np.zeros(rows, dtype=np.float64) if zc > 0.0 else None
    if rows:
        _core.xent_ex(base, layout, t64, None, layout, w, ignore_index, eps, zc, cap,
                      None, None, 1.0, 1.0, loss, zl, nt)
    wt = None if w is None else w[t64[t64 != ignore_index]].astype(np.float64)
    return (loss.reshape(batch), None if zl is None else zl.reshape(batch), wt, counted, rdt)


def _reduce(loss, zl, reduction, denom, counted, dt):
    """(loss [+ z], z) reduced; `denom` divides the loss part, `counted` the z part under "mean".

    For "sum"/"mean", `loss` may also be the losses' total (a float)."""
    # a loss beyond the result dtype's range is inf, as it should be: no NumPy warning
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if reduction == "none":
            total = (loss if zl is None else loss + zl).astype(dt, copy=False)
            z = None if zl is None else zl.astype(dt, copy=False)
            if total.ndim == 0:  # 1-d logits: one position, returned as a NumPy scalar
                return total[()], (None if z is None else z[()])
            return total, z
        # one summation for every path: the order in which the plain kernel sums its
        # losses (xent_sum), so that the total does not depend on the options/gradient path
        s = np.float64(loss if np.ndim(loss) == 0 else _core.sum_losses(aligned_c(loss, np.float64).reshape(-1)))
        z = 0.0 if zl is None else np.float64(_core.sum_losses(aligned_c(zl, np.float64).reshape(-1)))
        if reduction == "mean":
            # a zero total weight makes the loss part NaN whatever the smoothing adds (PyTorch:
            # its nll part is 0 / 0)
            s = s / np.float64(denom) if denom else np.float64(np.nan)
            z = z / np.float64(counted) if zl is not None else 0.0
        return dt.type(s + z), dt.type(z)


@overload  # the corpus value: a NumPy scalar
def perplexity(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100,
               per_sequence: Literal[False] = False, n_threads: int | None = None) -> _Float: ...
@overload  # one per sequence (0-d: a NumPy scalar)
def perplexity(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100,
               per_sequence: Literal[True], n_threads: int | None = None) -> _FloatArray: ...
@overload
def perplexity(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100,
               per_sequence: bool = False, n_threads: int | None = None) -> _Loss: ...


def perplexity(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100,
               per_sequence: bool = False, n_threads: int | None = None) -> _Loss:
    r"""Perplexity of a model on integer targets.

    ``exp(total negative log-likelihood / counted tokens)``, counting the
    positions whose target is not `ignore_index`.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Unnormalised scores, classes along `axis` (16-bit logits are computed
        in float32).
    target : array_like of int
        Class indices with the shape of `logits` without `axis`.
    axis : int, optional
        The class axis (default: last).
    ignore_index : int, optional
        Target value to skip (default -100).
    per_sequence : bool, optional
        With target of shape (..., T), return one perplexity per sequence
        (shape ``target.shape[:-1]``) instead of the corpus value.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    ppl : scalar or ndarray
        float64 for float64 logits, float32 for the others; NaN where no
        token is counted.

    Raises
    ------
    TypeError, ValueError, IndexError, numpy.exceptions.AxisError
        As `cross_entropy`; ValueError also when `per_sequence` is True and
        `target` is 0-d.

    Notes
    -----
    The corpus value is the exponential of the mean loss, not the mean of
    per-sequence perplexities.  Losses come from the same kernel as
    `cross_entropy` and are summed in double.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import perplexity
    >>> logits = np.zeros((2, 3, 4))          # uniform over 4 classes
    >>> float(perplexity(logits, np.zeros((2, 3), dtype=int)))
    4.0
    >>> perplexity(logits, np.array([[0, 1, -100], [2, 3, 0]]), per_sequence=True)
    array([4., 4.])
    >>> ppl = perplexity(logits.astype(np.float16), np.zeros((2, 3), dtype=int))
    >>> ppl.dtype, float(ppl)
    (dtype('float32'), 4.0)
    """
    target = asarray(target, "target")  # DLPack producers too: np.ndim would see an object
    if per_sequence and target.ndim == 0:
        raise ValueError("`per_sequence=True` needs `target` with a sequence axis (shape (..., T)), "
                         "got a 0-d target")
    loss, t, counted, dt = _nll(logits, target, axis, ignore_index, n_threads, total=not per_sequence)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if not per_sequence:
            return dt.type(np.exp(np.float64(loss) / np.float64(counted)))
        n = np.count_nonzero(t != ignore_index, axis=-1)
        return np.exp(np.sum(loss, axis=-1) / n).astype(dt, copy=False)
