"""Slow, obviously-right NumPy versions of every public function: the test oracle.

Every function has the signature of its public counterpart (``n_threads`` is accepted and
ignored), works in float64 internally and returns the dtype the public function returns.
``logsumexp``, ``softmax`` and ``log_softmax`` follow ``scipy.special`` (1.17) step by step,
including its handling of infinities, NaN, zero weights and empty input; the losses follow
PyTorch (``ignore_index``, ``reduction``).
"""

import numpy as np
from numpy.exceptions import AxisError
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "perplexity"]

_REDUCTIONS = ("none", "sum", "mean")


def _float_input(x, name, promote_int=True):
    """Return ``x`` as an array of a supported dtype.

    float32/float64 as they are; float16 and bfloat16 (ml_dtypes) widened to float32,
    the dtype of their results; integers and bool become float64 when `promote_int`
    (the scipy.special functions), else they are refused (the losses).
    """
    x = np.asarray(x)
    if x.dtype.kind in "biu" and promote_int:
        return x.astype(np.float64)
    if x.dtype.kind == "c":
        raise TypeError(f"`{name}` must be real: complex input ({x.dtype}) is not supported")
    if x.dtype == np.float16 or (x.dtype.name == "bfloat16" and x.dtype.itemsize == 2):
        return x.astype(np.float32)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"`{name}` has dtype {x.dtype}; supported dtypes are float32, float64, "
                        "float16 and bfloat16")
    return x


def _result(values, dtype):
    """Cast to ``dtype``; a 0-d result becomes a NumPy scalar."""
    return np.asarray(values, dtype=dtype)[()]


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, n_threads=None):
    """Log of the sum of exponentials, ``log(sum(b * exp(a)))``, as ``scipy.special.logsumexp``.

    Parameters
    ----------
    a : array_like
        Input (float32, float64; integers and bool are promoted to float64).
    axis : None or int or tuple of ints, optional
        Axes to reduce; None reduces all.
    b : array_like, optional
        Weights broadcast against `a`; a zero weight drops its term (but see Notes).
    keepdims : bool, optional
        Keep the reduced axes with length one.
    return_sign : bool, optional
        Also return the sign of the sum; otherwise a negative sum gives NaN.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    res : ndarray or scalar
        ``log(abs(sum))``; -inf for an empty reduction.
    sgn : ndarray or scalar
        Only if `return_sign`: the sign of the sum (scipy gives -1 for an empty reduction).

    Notes
    -----
    Shifting by the maximum keeps every ``exp`` in [0, 1]. As in scipy 1.17, where that result
    is not finite the direct ``log(sum(b * exp(a)))`` decides instead, so a zero weight does not
    drop an infinite or NaN term there (``[inf, inf]`` with ``b=[0, 2]`` gives nan, ``[inf]``
    with ``b=[0]`` gives nan) and a negative sum whose ``exp`` underflows gives -inf
    (``[-750]`` with ``b=[-1]``). Unlike scipy, empty input of two or more dimensions with
    ``axis=None`` gives -inf (scipy raises IndexError).
    """
    a = _float_input(a, "a")
    dtype = a.dtype
    if b is not None:
        if np.asarray(b).dtype.kind == "c":
            raise TypeError("`b` must be real: complex input is not supported")
        # Python scalars take part in promotion as "weak" types, as in scipy.
        dtype = np.result_type(dtype, b if isinstance(b, (int, float)) else np.asarray(b))
        a, b = np.broadcast_arrays(a, np.asarray(b, dtype=np.float64))
        b = np.atleast_1d(b)
    a = np.atleast_1d(a).astype(np.float64)  # scipy treats 0-d input as 1-d
    axis = normalize_axis_tuple(tuple(range(a.ndim)) if axis is None else axis, a.ndim)

    if a.size == 0:
        out = np.full(np.sum(a, axis=axis, keepdims=True).shape, -np.inf)
        sgn = np.sign(out)
    else:
        with np.errstate(all="ignore"):
            kept = a if b is None else np.where(b == 0, -np.inf, a)  # zero weight: no term
            m = np.max(kept, axis=axis, keepdims=True)
            m = np.where(np.isfinite(m), m, 0.0)
            terms = np.exp(kept - m) if b is None else b * np.exp(kept - m)
            s = np.sum(terms, axis=axis, keepdims=True)
            sgn = np.sign(s)
            out = np.log(np.abs(s)) + m
            if not return_sign:
                out = np.where(s < 0, np.nan, out)
            # scipy's fallback: the direct formula wherever the shifted one is not finite
            direct = np.sum(np.exp(a) if b is None else b * np.exp(a), axis=axis, keepdims=True)
            finite = np.isfinite(out)
            sgn = np.where(finite, sgn, np.sign(direct))
            out = np.where(finite, out, np.log(np.abs(direct) if return_sign else direct))

    if not keepdims:
        out, sgn = np.squeeze(out, axis=axis), np.squeeze(sgn, axis=axis)
    if return_sign:
        return _result(out, dtype), _result(sgn, dtype)
    return _result(out, dtype)


def softmax(x, axis=None, *, n_threads=None):
    """``exp(x) / sum(exp(x))`` along `axis`, as ``scipy.special.softmax``.

    Parameters
    ----------
    x : array_like
        Input (float32, float64; integers and bool are promoted to float64).
    axis : None or int or tuple of ints, optional
        Axes along which the result sums to one; None means all.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    ndarray or scalar
        Same shape as `x`. Empty input gives an empty result.
    """
    x = _float_input(x, "x")
    dtype, x = x.dtype, x.astype(np.float64)
    if x.size == 0:
        np.sum(x, axis=axis)  # validates `axis` only
        return _result(x, dtype)
    with np.errstate(all="ignore"):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return _result(e / np.sum(e, axis=axis, keepdims=True), dtype)


def log_softmax(x, axis=None, *, n_threads=None):
    """``x - logsumexp(x)`` along `axis`, as ``scipy.special.log_softmax``.

    Parameters
    ----------
    x : array_like
        Input (float32, float64; integers and bool are promoted to float64).
    axis : None or int or tuple of ints, optional
        Axes of the normalisation; None means all.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    ndarray or scalar
        Same shape as `x`. A row of only -inf gives NaN. Empty input gives an empty result.
    """
    x = _float_input(x, "x")
    dtype, x = x.dtype, x.astype(np.float64)
    if x.size == 0:
        np.sum(x, axis=axis)  # validates `axis` only
        return _result(x, dtype)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        shifted = x - np.where(np.isfinite(m), m, 0.0)
        return _result(shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)), dtype)


def _nll(logits, target, axis, ignore_index):
    """Validate; return (per-position loss in float64, counted mask, result dtype)."""
    x = _float_input(logits, "logits", promote_int=False)
    dtype = x.dtype
    if x.ndim == 0:
        raise AxisError("`logits` must have at least one dimension (the class axis)")
    axis = normalize_axis_index(axis, x.ndim)
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, not {t.dtype}")
    x = np.moveaxis(x, axis, -1).astype(np.float64)
    if t.shape != x.shape[:-1]:
        raise ValueError(f"`target` has shape {t.shape}; expected {x.shape[:-1]} "
                         f"(`logits` shape {np.moveaxis(x, -1, axis).shape} without axis {axis})")
    n_classes = x.shape[-1]
    counted = t != ignore_index  # NumPy compares any integer dtype with a Python int exactly
    bad = counted & ((t < 0) | (t >= n_classes))
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(f"`target` at {pos} is {int(t[pos])}, outside [0, {n_classes}) "
                         f"and not ignore_index={ignore_index}")
    loss = np.zeros(t.shape)
    if n_classes > 0:
        idx = np.where(counted, t, 0).astype(np.intp)[..., None]
        picked = np.take_along_axis(log_softmax(x, axis=-1), idx, axis=-1)[..., 0]
        loss = np.where(counted, -picked, 0.0)
    return loss, counted, dtype


def cross_entropy(logits, target, *, axis=-1, ignore_index=-100, reduction="mean", n_threads=None):
    """Cross-entropy of integer class targets against logits, as PyTorch's ``cross_entropy``.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities (float32, float64; integers and bool become float64).
    target : array_like of int
        Class indices, shape ``logits.shape`` with `axis` removed.
    axis : int, optional
        The class axis of `logits`.
    ignore_index : int, optional
        Positions whose target equals this are not counted.
    reduction : {'none', 'sum', 'mean'}, optional
        'none': per-position losses (ignored positions give 0.0); 'sum'; 'mean' over counted
        positions (NaN when none is counted).
    n_threads : int, optional
        Ignored.

    Returns
    -------
    ndarray or scalar
        ``-log_softmax(logits)[target]`` per position, or its sum or mean.

    Raises
    ------
    TypeError, ValueError, IndexError, numpy.exceptions.AxisError
        Bad dtypes, shapes, `reduction`, target values or `axis`.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', not {reduction!r}")
    loss, counted, dtype = _nll(logits, target, axis, ignore_index)
    if reduction == "none":
        return _result(loss, dtype)
    if reduction == "sum":
        return _result(loss.sum(), dtype)
    with np.errstate(invalid="ignore"):
        return _result(loss.sum() / counted.sum(), dtype)


def perplexity(logits, target, *, axis=-1, ignore_index=-100, per_sequence=False, n_threads=None):
    """``exp(total loss / counted positions)``, overall or per sequence.

    Parameters
    ----------
    logits, target, axis, ignore_index
        As in `cross_entropy`.
    per_sequence : bool, optional
        If True, one perplexity per sequence along the last axis of `target`; the result has
        shape ``target.shape[:-1]``.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    ndarray or scalar
        Perplexity; NaN where no position is counted.
    """
    loss, counted, dtype = _nll(logits, target, axis, ignore_index)
    if per_sequence and loss.ndim == 0:
        raise ValueError("`per_sequence` needs `target` with at least one dimension")
    sum_axis = -1 if per_sequence else None
    with np.errstate(invalid="ignore"):
        return _result(np.exp(loss.sum(axis=sum_axis) / counted.sum(axis=sum_axis)), dtype)
