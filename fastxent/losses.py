"""Cross-entropy and perplexity from logits and class targets: the public functions.

Their arguments are checked by `_validate.prepare`; the kernel calls are in `_xent`.
"""
from __future__ import annotations

from typing import Any, Literal, SupportsIndex, Tuple, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _xent
from ._arrays import asarray, note_written
from ._validate import check_grad_out, check_reduction, check_scalar, prepare

_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]
_Total = Literal["mean", "sum"]
_Loss = Union[_Float, _FloatArray]


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
    check_reduction(reduction)
    eps = check_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    zc = check_scalar(z_loss, "z_loss", 0.0)
    cap = 0.0 if softcap is None else check_scalar(softcap, "softcap", 0.0, lo_open=True)
    if grad_out is not None and not return_grad:
        raise ValueError("`grad_out` is given but `return_grad` is False")
    t_arr = asarray(target, "target")
    plain = (weight is None and eps == 0.0 and zc == 0.0 and cap == 0.0 and not return_grad
             and not return_z_loss and t_arr.dtype.kind in "iu")
    p = prepare(logits, t_arr, axis=axis, ignore_index=ignore_index, n_threads=n_threads, weight=weight,
                probabilities=not plain)
    if plain:  # "sum"/"mean": the kernel sums the losses (no per-position array)
        loss = _xent.nll(p, total=reduction != "none")
        return _xent.reduce(loss, None, reduction, p.counted, p.counted, p.rdt)[0]

    x, batch, n_cols, rdt = p.x, p.batch, p.n_cols, p.rdt
    if p.weight is not None and p.t64 is not None:
        denom = float(np.sum(_xent.target_weights(p), dtype=np.float64))
    else:
        denom = float(p.counted)
    grad: Any = None
    grad_layout = None
    if return_grad:
        if grad_out is not None:
            grad, grad_layout = check_grad_out(grad_out, x, p.ax,
                                               [("logits", x), ("target", t_arr), ("weight", p.weight)])
        else:
            grad = np.empty(batch + (n_cols,), dtype=rdt)
            grad_layout = (1, p.rows, n_cols, 0, n_cols, 1)
    if reduction == "mean":
        # counted positions whose target weights sum to 0: loss and gradient NaN (PyTorch)
        gscale = 1.0 / denom if denom else np.nan
        zscale = 1.0 / p.counted if p.counted else 0.0
    else:
        gscale = zscale = 1.0
    loss, zl = _xent.xent(p, eps, zc, cap, return_z_loss, grad, grad_layout, gscale, zscale)
    if grad_out is not None:
        note_written(grad_out)
    out = _xent.reduce(loss.reshape(batch), None if zl is None else zl.reshape(batch),
                       reduction, denom, p.counted, rdt)
    res = [out[0]]
    if return_z_loss:
        res.append(out[1])
    if return_grad:
        res.append(grad_out if grad_out is not None else np.moveaxis(grad.reshape(batch + (n_cols,)), -1, p.ax))
    return res[0] if len(res) == 1 else tuple(res)


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
    p = prepare(logits, target, axis=axis, ignore_index=ignore_index, n_threads=n_threads)
    loss = _xent.nll(p, total=not per_sequence)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if not per_sequence:
            return p.rdt.type(np.exp(np.float64(loss) / np.float64(p.counted)))
        n = np.count_nonzero(p.counted_mask().reshape(p.batch), axis=-1)
        return np.exp(np.sum(loss, axis=-1) / n).astype(p.rdt, copy=False)
