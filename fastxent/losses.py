"""Cross-entropy and perplexity from logits and integer class targets."""
from __future__ import annotations

import operator

import numpy as np

from . import _core
from ._arrays import SUPPORTED_NAMES, as_rows, normalize_axes
from ._config import resolve_n_threads

REDUCTIONS = ("none", "sum", "mean")


def _check_logits(logits) -> np.ndarray:
    x = np.asarray(logits)
    if x.dtype.kind == "c":
        raise TypeError(f"`logits` is complex ({x.dtype}); supported dtypes are {SUPPORTED_NAMES}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
        raise TypeError(f"`logits` has dtype {x.dtype}; supported dtypes are {SUPPORTED_NAMES}")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def _check_target(target, logits: np.ndarray, ax: int, ignore_index: int):
    """Integer targets of the right shape and range, as contiguous int64 (plus the count)."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, got dtype {t.dtype}")
    expected = logits.shape[:ax] + logits.shape[ax + 1:]
    if t.shape != expected:
        raise ValueError(f"`target` has shape {t.shape} but `logits` with shape {logits.shape} "
                         f"and axis={ax} needs target shape {expected}")
    n_cols = logits.shape[ax]
    if t.dtype == np.uint64 and t.size and int(t.max()) > np.iinfo(np.int64).max:
        _raise_bad_target(t, int(np.argmax(t > np.iinfo(np.int64).max)), n_cols)
    t64 = np.ascontiguousarray(t, dtype=np.int64)
    bad, counted = _core.check_targets(t64.reshape(-1), n_cols, ignore_index)
    if bad >= 0:
        _raise_bad_target(t, bad, n_cols)
    return t64.reshape(-1), counted


def _raise_bad_target(t: np.ndarray, flat: int, n_cols: int):
    pos = tuple(int(i) for i in np.unravel_index(flat, t.shape))
    raise IndexError(f"`target` value {t[pos]} at position {pos} is out of range for "
                     f"{n_cols} classes (valid: 0..{n_cols - 1} or ignore_index)")


def _nll(logits, target, axis, ignore_index, n_threads):
    """Per-position negative log-likelihood (float64, target's shape), counted tokens, dtype."""
    nt = resolve_n_threads(n_threads)
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}") from None
    x = _check_logits(logits)
    (ax,) = normalize_axes(axis, x.ndim)
    t64, counted = _check_target(target, x, ax, ignore_index)
    base, layout, batch, n_cols = as_rows(x, (ax,))
    loss = np.empty(t64.size, dtype=np.float64)
    if t64.size:
        _core.xent(base, layout, t64, ignore_index, loss, nt)
    return loss.reshape(batch), t64.reshape(batch), counted, x.dtype


def cross_entropy(logits, target, *, axis=-1, ignore_index=-100, reduction="mean", n_threads=None):
    r"""Cross-entropy loss between logits and integer class targets.

    The meaning of every argument is that of
    :func:`torch.nn.functional.cross_entropy` with class-index targets:
    ``loss[i] = logsumexp(logits[i, :]) - logits[i, target[i]]``.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Unnormalised scores, classes along `axis`, e.g. of shape
        (tokens, vocab) or (batch, seq, vocab).
    target : array_like of int
        Class indices (any integer dtype) with the shape of `logits` without
        `axis`; values in ``[0, n_classes)`` or `ignore_index`.
    axis : int, optional
        The class axis (default: last).
    ignore_index : int, optional
        Target value whose positions contribute nothing (default -100).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: the per-position losses (0 at ignored positions);
        ``"sum"``: their total; ``"mean"``: the total divided by the number
        of positions whose target is not `ignore_index` (NaN when there is
        none, as in PyTorch).
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    loss : ndarray or scalar
        float32 for float32 logits, float64 for float64.  Totals are summed
        in double in a fixed order (the same for any `n_threads`) and
        rounded once; "sum" and "mean" give a NumPy scalar.

    Raises
    ------
    TypeError
        If `logits` is not float32/float64, or `target` is not integer.
    ValueError
        If the shapes do not match, or `reduction` is unknown.
    IndexError
        If a target is out of range (the message names the first bad
        position and value).
    numpy.exceptions.AxisError
        If `axis` is out of range.

    Notes
    -----
    Each row's log-sum-exp is computed stably in one read of the row (see
    `logsumexp`); the loss is formed as ``(max - logits[target]) +
    log(sum(exp(x - max)))`` so that a target of probability near 1 keeps
    full relative precision.  ``log_softmax`` is never materialised: the only
    temporary is one double per position.  A ``-inf`` logit at the target
    gives ``+inf``; a row of only ``-inf`` or holding a NaN gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import cross_entropy
    >>> logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    >>> cross_entropy(logits, np.array([0, 2]), reduction="none")
    array([0.23954106, 1.09861229])
    >>> float(cross_entropy(logits, np.array([0, -100])))  # doctest: +ELLIPSIS
    0.2395410...
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', got {reduction!r}")
    loss, _, counted, dt = _nll(logits, target, axis, ignore_index, n_threads)
    if reduction == "none":
        return loss.astype(dt, copy=False)
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return dt.type(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dt.type(total / np.float64(counted))


def perplexity(logits, target, *, axis=-1, ignore_index=-100, per_sequence=False, n_threads=None):
    r"""Perplexity of a model on integer targets.

    ``exp(total negative log-likelihood / counted tokens)``, counting the
    positions whose target is not `ignore_index`.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Unnormalised scores, classes along `axis`.
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
        float32 for float32 logits, float64 for float64; NaN where no token
        is counted.

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
    >>> float(perplexity(logits, np.zeros((2, 3), dtype=int)))  # doctest: +ELLIPSIS
    4.0000000...
    >>> perplexity(logits, np.array([[0, 1, -100], [2, 3, 0]]), per_sequence=True)
    array([4., 4.])
    """
    if per_sequence and np.ndim(target) == 0:
        raise ValueError("`per_sequence=True` needs `target` with a sequence axis (shape (..., T)), "
                         "got a 0-d target")
    loss, t, counted, dt = _nll(logits, target, axis, ignore_index, n_threads)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if not per_sequence:
            return dt.type(np.exp(np.sum(loss, dtype=np.float64) / np.float64(counted)))
        n = np.count_nonzero(t != ignore_index, axis=-1)
        return np.exp(np.sum(loss, axis=-1) / n).astype(dt, copy=False)
