"""Slow, obviously-right NumPy versions of every public function: the test oracle.

Every function has the signature of its public counterpart (``n_threads`` is accepted and
ignored), works in float64 internally and returns the dtype the public function returns.
``logsumexp``, ``softmax`` and ``log_softmax`` follow ``scipy.special`` (1.17) step by step,
including its handling of infinities, NaN, zero weights and empty input; the losses follow
PyTorch (``ignore_index``, ``reduction``, ``weight``, ``label_smoothing``, class-probability
targets) and Liger-Kernel (``z_loss``, ``softcap``), with the gradient in closed form.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Dict, Literal, Optional, Sequence, SupportsIndex, Tuple, Union, overload

import numpy as np
from ._compat import AxisError, normalize_axis_index, normalize_axis_tuple

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "perplexity"]

_REDUCTIONS = ("none", "sum", "mean")

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .typing import EvaluatorReport

    _Axes = Optional[Union[int, Sequence[int]]]
    _FloatArray = NDArray[np.floating[Any]]
    # an array, or a NumPy scalar where the result is 0-d or a total
    _Loss = Union[np.floating[Any], _FloatArray]


def _float_input(x: ArrayLike, name: str, promote_int: bool = True) -> NDArray[Any]:
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


def _promoted(x):
    """`x` as an operand of ``np.result_type`` in scipy's promotion of `a` and `b`.

    A Python bool, int or float stays itself: a "weak" scalar (NEP 50) that takes the other
    operand's dtype. Anything else (NumPy scalars and 0-d arrays too) counts by its array dtype,
    16-bit floats as float32.
    """
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return x
    dtype = np.asarray(x).dtype
    sixteen_bit = (dtype.kind == "f" or dtype.name == "bfloat16") and dtype.itemsize == 2
    return np.dtype(np.float32) if sixteen_bit else dtype


@overload  # as fastxent.logsumexp
def logsumexp(a: ArrayLike, axis: None = None, b: ArrayLike | None = None, keepdims: Literal[False] = False,
              return_sign: Literal[False] = False, *, n_threads: int | None = None) -> np.floating[Any]: ...
@overload
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: Literal[False] = False, *, n_threads: int | None = None) -> _FloatArray: ...
@overload
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              *, return_sign: Literal[True], n_threads: int | None = None) -> Tuple[_Loss, _Loss]: ...
@overload
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: bool = False, *, n_threads: int | None = None
              ) -> _Loss | Tuple[_Loss, _Loss]: ...


def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: bool = False, *, n_threads: int | None = None
              ) -> _Loss | Tuple[_Loss, _Loss]:
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
        ``log(abs(sum))``; -inf for an empty reduction. Its dtype is that of `a` as converted
        above, or with `b` scipy's ``np.result_type(a, b, 1.0)`` (Python numbers weak), where
        16-bit floats count as float32 (scipy returns float16 for float16 and does not
        support bfloat16).
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
    a_raw, a = a, _float_input(a, "a")
    dtype = a.dtype
    if b is not None:
        if np.asarray(b).dtype.kind == "c":
            raise TypeError("`b` must be real: complex input is not supported")
        _float_input(b, "b")
        dtype = np.result_type(_promoted(a_raw), _promoted(b), 1.0)  # scipy's xp_promote
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
            # without b: log(s) as log1p((count of maxima - 1) + the rest), which keeps its
            # relative precision when one term dominates (log(1 + 1e-18) would be 0)
            out = (_log_shifted_sum(kept - m, axis) if b is None else np.log(np.abs(s))) + m
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


def softmax(x: ArrayLike, axis: _Axes = None, *, n_threads: int | None = None) -> _FloatArray:
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


def _log_shifted_sum(shifted, axis):
    """log(sum(exp(shifted))) over `axis` (kept) for shifted = x - max: log1p of (the number of
    zeros - 1) + the sum of the other terms, exact in relative terms when one term dominates."""
    top = shifted == 0
    rest = np.sum(np.where(top, 0.0, np.exp(shifted)), axis=axis, keepdims=True)
    return np.log1p((np.sum(top, axis=axis, keepdims=True) - 1.0) + rest)


def log_softmax(x: ArrayLike, axis: _Axes = None, *, n_threads: int | None = None) -> _FloatArray:
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
        return _result(shifted - _log_shifted_sum(shifted, axis), dtype)


def _logits_last(logits, axis):
    """Validate `logits` and `axis`; return (float64 logits, classes last), result dtype, axis."""
    x = _float_input(logits, "logits", promote_int=False)
    dtype = x.dtype
    if x.ndim == 0:
        raise AxisError("`logits` must have at least one dimension (the class axis)")
    try:
        axis = operator.index(axis)  # one class axis: not a tuple, not None
    except TypeError:
        raise TypeError(f"`axis` must be an integer (the class axis), got {axis!r}") from None
    axis = normalize_axis_index(axis, x.ndim)
    return np.moveaxis(x, axis, -1).astype(np.float64), dtype, axis


def _class_targets(t, x, axis, ignore_index):
    """Validate integer targets for logits `x` (classes last); return the counted mask."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"`target` must hold integer class indices, not {t.dtype}")
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
    return counted


def _nll(logits, target, axis, ignore_index):
    """Validate; return (per-position loss in float64, counted mask, result dtype)."""
    x, dtype, axis = _logits_last(logits, axis)
    t = np.asarray(target)
    counted = _class_targets(t, x, axis, ignore_index)
    loss = np.zeros(t.shape)
    if x.shape[-1] > 0:
        idx = np.where(counted, t, 0).astype(np.intp)[..., None]
        picked = np.take_along_axis(log_softmax(x, axis=-1), idx, axis=-1)[..., 0]
        loss = np.where(counted, -picked, 0.0)
    return loss, counted, dtype


def _option(value, name, lo, hi=np.inf, lo_open=False):
    """A finite real number in [lo, hi] (or (lo, hi]), else TypeError/ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number, not {value!r}") from None
    if not (np.isfinite(v) and lo <= v <= hi) or (lo_open and v == lo):
        interval = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise ValueError(f"`{name}` must be a finite number in {interval}, not {value!r}")
    return v


def _class_weights(weight, n_classes):
    """`weight` as float64 of shape (C,), finite and >= 0; all ones when None."""
    if weight is None:
        return np.ones(n_classes)
    w = np.asarray(weight)
    if w.dtype.kind not in "iuf" and not (w.dtype.name == "bfloat16" and w.dtype.itemsize == 2):
        raise TypeError(f"`weight` must be a real array, not {w.dtype}")
    if w.shape != (n_classes,):
        raise ValueError(f"`weight` has shape {w.shape}; expected ({n_classes},), one per class")
    w = w.astype(np.float64)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"`weight` must be finite and >= 0; weight[{i}] is {w[i]}")
    return w


def _check_grad_out(grad_out, shape, grad_dtype, logits):
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"`grad_out` must be a NumPy array, not {type(grad_out).__name__}")
    if grad_out.shape != shape:
        raise ValueError(f"`grad_out` has shape {grad_out.shape}; `logits` has shape {shape}")
    own = np.asarray(logits).dtype  # 16-bit logits: their own dtype too (the gradient rounded to it)
    if grad_out.dtype != grad_dtype and not (own.itemsize == 2 and grad_out.dtype == own):
        raise TypeError(f"`grad_out` has dtype {grad_out.dtype}; the gradient is {grad_dtype}")
    if not grad_out.flags.writeable:
        raise ValueError("`grad_out` is read-only")
    same = (isinstance(logits, np.ndarray) and logits.strides == grad_out.strides
            and logits.__array_interface__["data"][0] == grad_out.__array_interface__["data"][0])
    if isinstance(logits, np.ndarray) and np.shares_memory(grad_out, logits) and not same:
        raise ValueError("`grad_out` overlaps `logits` without being the logits array itself")


def _terms(logits, target, *, axis=-1, weight=None, ignore_index=-100, label_smoothing=0.0,
           softcap=None):
    """Everything `cross_entropy` is made of, per position, classes on the last axis.

    Returns a dict with
    ``x``        the logits used (float64, after `softcap`), classes last;
    ``chain``    d x / d logits (1 / cosh(logits / softcap)**2 with `softcap`, else ones);
    ``lse``      logsumexp of each row;
    ``p``        softmax of each row;
    ``coef``     the target distribution times the class weights, ``loss = sum(coef * (lse - x))``;
                 zero at ignored positions;
    ``onehot``   the one-hot part of ``coef`` is ``a * onehot`` (integer targets), the rest
    ``a``, ``b`` is ``b``; for probability targets ``a`` is 0 and ``b`` is ``coef``;
    ``counted``  positions that count (not `ignore_index`);
    ``denom``    what "mean" divides the cross-entropy by (sum of w[t] over counted positions, or
                 their number; the number of positions for probability targets);
    ``gap``      ``lse - x`` per class, as ``(max - x) + log(sum(exp(x - max)))`` in finite rows;
    ``dtype``    the result dtype, ``axis`` the normalised class axis.
    Also used by the tests to state error bounds.
    """
    x, dtype, axis = _logits_last(logits, axis)
    eps = _option(label_smoothing, "label_smoothing", 0.0, 1.0)
    cap = None if softcap is None else _option(softcap, "softcap", 0.0, lo_open=True)
    n_classes = x.shape[-1]
    t = np.asarray(target)
    if t.dtype.kind == "f" or (t.dtype.name == "bfloat16" and t.dtype.itemsize == 2):
        if t.shape != np.moveaxis(x, -1, axis).shape:
            raise TypeError(f"`target` of dtype {t.dtype} holds class probabilities and must have "
                            f"the shape of `logits` {np.moveaxis(x, -1, axis).shape}, "
                            f"not {t.shape}")
        w = _class_weights(weight, n_classes)
        q = np.moveaxis(t.astype(np.float64), axis, -1)
        counted = np.ones(x.shape[:-1], bool)
        onehot = np.zeros(x.shape, bool)
        a = np.zeros(x.shape[:-1])
        b = w * ((1 - eps) * q + eps / max(n_classes, 1))
        denom = float(counted.sum())
    else:
        counted = _class_targets(t, x, axis, ignore_index)
        w = _class_weights(weight, n_classes)
        onehot = (np.arange(n_classes) == t[..., None]) & counted[..., None]
        a = np.where(counted, (1 - eps) * w[np.where(counted, t, 0)], 0.0) if n_classes else \
            np.zeros(t.shape)
        b = np.where(counted[..., None], eps / max(n_classes, 1) * w, 0.0)
        denom = float(np.sum(w[t[counted]])) if n_classes else 0.0
    coef = a[..., None] * onehot + b

    chain = np.ones_like(x)
    if cap is not None:
        with np.errstate(over="ignore"):
            # 1 / cosh^2 rather than 1 - tanh^2, which loses precision where tanh is near +-1
            x, chain = cap * np.tanh(x / cap), 1 / np.cosh(x / cap) ** 2
    with np.errstate(all="ignore"):
        lse = logsumexp(x, axis=-1) if n_classes else np.full(x.shape[:-1], -np.inf)
        # lse - x as (max - x) + log(sum exp(x - max)): lse - x alone would round the tiny
        # log-sum away at a dominant target (lse = 100 + 4e-18 == 100)
        m = np.max(x, axis=-1, keepdims=True) if n_classes else np.zeros(x.shape[:-1] + (1,))
        fin = np.isfinite(m)
        m0 = np.where(fin, m, 0.0)
        gap = np.where(fin, (m0 - x) + _log_shifted_sum(x - m0, -1), lse[..., None] - x)
        # p = exp(-gap), not exp(x - lse): near 1e308, lse = max + log(sum) rounds to max, which
        # made p = 1 for each of several equal maxima (found by tests/test_differential.py)
        p = np.exp(-gap)
    return dict(x=x, chain=chain, lse=lse, p=p, coef=coef, onehot=onehot, a=a, b=b,
                counted=counted, denom=denom, dtype=dtype, axis=axis, gap=gap)


def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, return_z_loss: bool = False, return_grad: bool = False,
                  grad_out: _FloatArray | None = None, n_threads: int | None = None
                  ) -> _Loss | Tuple[_Loss, _Loss] | Tuple[_Loss, _Loss, _FloatArray]:
    """Cross-entropy of class targets against logits, as PyTorch's ``cross_entropy``.

    Per position, with ``x`` the logits (after `softcap`) and ``lse = logsumexp(x)``::

        loss = sum_c coef[c] * (lse - x[c]) + z_loss * lse**2
        coef = (1 - eps) * w[t] * onehot(t) + eps / C * w      (class index t)
        coef = w * ((1 - eps) * q + eps / C)                   (class probabilities q)

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities (float32, float64, float16, bfloat16).
    target : array_like
        Integer class indices of shape ``logits.shape`` without `axis`, or floating class
        probabilities of the shape of `logits`.
    axis : int, optional
        The class axis of `logits`.
    weight : array_like, optional
        Class weights ``w`` of shape (C,), finite and >= 0 (default: ones).
    ignore_index : int, optional
        Positions whose (integer) target equals this count for nothing: loss, z-loss and
        gradient 0.
    reduction : {'none', 'sum', 'mean'}, optional
        'none': per-position losses; 'sum'; 'mean': the cross-entropy total divided by the sum
        of ``w[t]`` over counted positions (the number of positions for probability targets,
        as PyTorch) plus the z-loss total divided by the number of counted positions. NaN when
        nothing is counted.
    label_smoothing : float, optional
        ``eps`` in [0, 1].
    z_loss : float, optional
        Coefficient (>= 0) of ``lse**2``.
    softcap : float, optional
        If given (> 0), ``x = softcap * tanh(logits / softcap)``.
    return_z_loss : bool, optional
        Also return the z-loss part, reduced like the loss.
    return_grad : bool, optional
        Also return the gradient of the returned loss with respect to `logits` (for 'none', of
        the sum of the per-position losses): float64 for float64 logits, else float32.
    grad_out : ndarray, optional
        Written with the gradient and returned in its place (needs `return_grad`); may be the
        `logits` array itself. For float16/bfloat16 logits it may also have their dtype: the
        float32 gradient is then rounded to it.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    loss : ndarray or scalar
    z : ndarray or scalar, if `return_z_loss`
    grad : ndarray, if `return_grad`

    Raises
    ------
    TypeError, ValueError, IndexError, numpy.exceptions.AxisError
        Bad dtypes, shapes, option values, target values, `grad_out` or `axis`.

    Notes
    -----
    A term whose coefficient ``coef[c]`` is exactly 0 contributes 0 even when ``x[c]`` is -inf
    (PyTorch gives NaN there). The gradient of one position's loss is
    ``(sum(coef) * p - coef + 2 * z_loss * lse * p) * chain`` with ``p = softmax(x)`` and
    ``chain = 1 - tanh(logits / softcap)**2``, computed as ``1 / cosh(logits / softcap)**2``;
    'mean' scales its two parts as the loss. The one-hot part ``p[t] - 1`` is written as minus
    the sum of the other probabilities; both keep their relative precision where ``p[t]`` is
    near 1 or ``|logits| >> softcap``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', not {reduction!r}")
    zc = _option(z_loss, "z_loss", 0.0)
    if grad_out is not None and not return_grad:
        raise ValueError("`grad_out` is given but `return_grad` is False")
    r = _terms(logits, target, axis=axis, weight=weight, ignore_index=ignore_index,
               label_smoothing=label_smoothing, softcap=softcap)
    x, lse, p, coef, counted = r["x"], r["lse"], r["p"], r["coef"], r["counted"]
    dtype, grad_dtype = r["dtype"], np.dtype(np.float64 if r["dtype"] == np.float64 else np.float32)
    shape = np.moveaxis(x, -1, r["axis"]).shape
    if grad_out is not None:
        _check_grad_out(grad_out, shape, grad_dtype, logits)

    with np.errstate(all="ignore"):
        terms = np.where(coef == 0, 0.0, coef * r["gap"])  # 0 * inf counts as 0
        ce = terms.sum(axis=-1)
        z = np.where(counted, zc * lse**2, 0.0) if zc else np.zeros(counted.shape)
        n_counted = counted.sum()
        if reduction == "none":
            loss, zpart = ce + z, z
        elif reduction == "sum":
            loss, zpart = ce.sum() + z.sum(), z.sum()
        else:
            zpart = z.sum() / n_counted
            # a zero total weight: NaN, whatever the smoothing part adds (PyTorch: nll is 0 / 0)
            loss = (ce.sum() / r["denom"] if r["denom"] else np.nan) + zpart
        out = [_result(loss, dtype)]
        if return_z_loss:
            out.append(_result(zpart, dtype))
        if not return_grad:
            return out[0] if len(out) == 1 else tuple(out)

        # d ce / d x = sum(coef) * p - coef = a * (p - onehot) + sum(b) * p - b
        a, b, onehot = r["a"][..., None], r["b"], r["onehot"]
        others = np.where(onehot, 0.0, p).sum(axis=-1, keepdims=True)
        p_minus_onehot = np.where(onehot, -others, p)  # p[t] - 1 = -sum of the others, exactly
        g_ce = a * p_minus_onehot + b.sum(axis=-1, keepdims=True) * p - b
        g_z = np.zeros_like(p)
        if zc:
            # scaled before the product: 2 z lse may overflow where the mean's share of it
            # does not; where even that is beyond double (z_loss ~ 1e300), p * K as
            # sign * exp(log p + log|K|): a tiny p times a huge K is neither 0 * inf nor inf
            kz = 2 * zc / n_counted if reduction == "mean" else 2 * zc
            K = lse[..., None] * kz
            g_z = K * p
            big = ~np.isfinite(K) & np.isfinite(lse)[..., None]
            if np.any(big):
                lk = np.log(2.0) + np.log(zc) - np.log(float(n_counted) if reduction == "mean" else 1.0)
                lk = lk + np.log(np.abs(lse))[..., None]
                g_z = np.where(big, np.sign(lse)[..., None] * np.exp(lk - r["gap"]), g_z)
        if reduction == "mean":
            g_ce = g_ce / r["denom"] if r["denom"] else g_ce * np.nan  # as the loss: NaN
        grad = np.where(counted[..., None], (g_ce + g_z) * r["chain"], 0.0)
    grad = np.moveaxis(grad, -1, r["axis"]).astype(grad_dtype)
    if grad_out is not None:
        grad_out[...] = grad
        grad = grad_out
    return (*out, grad)


def perplexity(logits: ArrayLike, target: ArrayLike, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100, per_sequence: bool = False,
               n_threads: int | None = None) -> _Loss:
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


# --------------------------------------------------------------------------- evaluation statistics
__all__ += ["token_stats", "kl_divergence", "evaluate_reference"]

_STAT_FLOATS = ("nll", "entropy", "p_target", "kl", "ref_nll", "ref_p_target")


def _distribution(x):
    """Per row of `x` (float64, classes last): log_softmax, whether the row is a distribution
    (no NaN, finite max), whether it has a top class (no NaN, max > -inf), first argmax."""
    with np.errstate(all="ignore"):
        logp = log_softmax(x, axis=-1) if x.shape[-1] else x.copy()
    nan = np.isnan(x).any(axis=-1)
    m = np.max(np.where(np.isnan(x), -np.inf, x), axis=-1, initial=-np.inf)
    arg = (np.argmax(np.where(np.isnan(x), -np.inf, x), axis=-1) if x.shape[-1]
           else np.zeros(x.shape[:-1], np.intp))
    return logp, ~nan & np.isfinite(m), ~nan & (m > -np.inf), arg


def _kl_rows(y, logp_y, x, logq_x):
    """KL(P || Q) per row, P = softmax(y), Q = softmax(x) (rows already known to be
    distributions where it matters): a class with y = -inf adds 0, y > -inf with x = -inf
    makes it +inf; rounding below 0 is clamped."""
    with np.errstate(all="ignore"):
        p = np.exp(logp_y)
        terms = np.where((y == -np.inf) | (p == 0), 0.0, p * (logp_y - logq_x))
        kl = np.maximum(terms.sum(axis=-1), 0.0)
    return np.where(((y > -np.inf) & (x == -np.inf)).any(axis=-1), np.inf, kl)


def _token_stats64(logits, target, ref_logits, axis, ignore_index):
    """token_stats in float64: (dict of arrays, counted mask, result dtype)."""
    raw = np.asarray(logits)
    x, dtype, axis = _logits_last(raw, axis)
    t = np.asarray(target)
    counted = _class_targets(t, x, axis, ignore_index)
    idx = np.where(counted, t, 0).astype(np.intp)[..., None]
    out = {}
    logq, dist_x, top_x, arg_x = _distribution(x)
    with np.errstate(all="ignore"):
        pick = (np.take_along_axis(logq, idx, axis=-1)[..., 0] if x.shape[-1]
                else np.full(t.shape, np.nan))
        out["nll"] = np.where(counted, -pick, np.nan)
        q = np.exp(logq)
        ent = -np.sum(np.where(q > 0, q * logq, 0.0), axis=-1)
        out["entropy"] = np.where(counted & dist_x, ent, np.nan)
        out["p_target"] = np.exp(-out["nll"])
    out["correct"] = counted & top_x & (arg_x == t)
    if ref_logits is not None:
        r = np.asarray(ref_logits)
        if r.shape != raw.shape:
            raise ValueError(f"`ref_logits` has shape {r.shape}; expected {raw.shape}, the shape "
                             "of `logits`")
        _float_input(r, "ref_logits", promote_int=False)
        # each side read as given (never rounded to the other's dtype); float64 results
        # when either side is float64
        y, rdt, _ = _logits_last(r, axis)
        if rdt == np.float64:
            dtype = rdt
        logp, dist_y, top_y, arg_y = _distribution(y)
        with np.errstate(all="ignore"):
            pick = (np.take_along_axis(logp, idx, axis=-1)[..., 0] if y.shape[-1]
                    else np.full(t.shape, np.nan))
            out["ref_nll"] = np.where(counted, -pick, np.nan)
            out["ref_p_target"] = np.exp(-out["ref_nll"])
            kl = _kl_rows(y, logp, x, logq) if y.shape[-1] else np.full(t.shape, np.nan)
        out["kl"] = np.where(counted & dist_x & dist_y, kl, np.nan)
        out["same_top"] = counted & top_x & top_y & (arg_x == arg_y)
    return out, counted, dtype


def token_stats(logits: ArrayLike, target: ArrayLike, *, ref_logits: ArrayLike | None = None,
                axis: SupportsIndex = -1, ignore_index: SupportsIndex = -100,
                n_threads: int | None = None) -> Dict[str, NDArray[Any]]:
    """Per-position statistics of a model's logits against integer targets, as a dict.

    With ``Q = softmax(logits)`` and, when `ref_logits` is given, ``P = softmax(ref_logits)``
    along `axis`, and the target ``t`` of each position:

    ``nll``           ``-log Q[t]`` (as `cross_entropy` with ``reduction='none'``)
    ``entropy``       ``-sum(Q log Q)``, a class with ``Q = 0`` adding 0
    ``p_target``      ``Q[t]``
    ``correct``       ``t`` is the first maximum of the logits (``np.argmax``)
    ``counted``       ``t != ignore_index``
    ``kl``            ``KL(P || Q) = sum(P (log P - log Q))``: a class with ``P = 0`` adds 0,
                      one with ``P > 0 = Q`` makes it ``+inf``; clamped at 0 against rounding
    ``same_top``      the first maxima of the two sets of logits are the same class
    ``ref_nll``       ``-log P[t]``
    ``ref_p_target``  ``P[t]``

    A row with a NaN, a +inf or only -inf is not a distribution: its entropy and KL are NaN
    (its NLL is what log_softmax gives), it is never ``correct`` or ``same_top`` (a row with a
    +inf, whose top class is defined, can be). Ignored positions are NaN / False everywhere.

    Parameters
    ----------
    logits : array_like
        float32, float64, float16 or bfloat16 logits, classes along `axis`.
    target : array_like of int
        Class indices of the shape of `logits` without `axis`.
    ref_logits : array_like, optional
        Reference logits of the shape of `logits`, of any supported dtype, read as given
        (float64 results when either is float64).
    axis, ignore_index
        As in `cross_entropy`.
    n_threads : int, optional
        Ignored.

    Returns
    -------
    dict
        Float fields in float32 (float64 for float64 logits), bool fields; the reference
        fields only with `ref_logits`; 0-d results as NumPy scalars.
    """
    out, counted, dtype = _token_stats64(logits, target, ref_logits, axis, ignore_index)
    rdt = np.float64 if dtype == np.float64 else np.float32
    res = {k: (_result(v, rdt) if k in _STAT_FLOATS else np.asarray(v)[()]) for k, v in out.items()}
    res["counted"] = np.asarray(counted)[()]
    return res


def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, *, axis: SupportsIndex = -1,
                  reduction: str = "none", n_threads: int | None = None) -> _Loss:
    """``KL(P || Q) = sum(P (log P - log Q))`` with ``P = softmax(p_logits)``,
    ``Q = softmax(q_logits)`` along `axis` (see `token_stats` for the special values).

    Parameters
    ----------
    p_logits, q_logits : array_like
        Logits of the same shape (float32, float64, float16, bfloat16), each read as given;
        the result is float64 if either is float64, else float32.
    axis : int, optional
        The class axis.
    reduction : {'none', 'sum', 'mean'}, optional
        Per position, summed, or averaged over the positions (NaN for none).
    n_threads : int, optional
        Ignored.

    Returns
    -------
    ndarray or scalar
        float32, or float64 when computed in float64.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', not {reduction!r}")
    p, q = np.asarray(p_logits), np.asarray(q_logits)
    if p.shape != q.shape:
        raise ValueError(f"`p_logits` has shape {p.shape} and `q_logits` has shape {q.shape}; "
                         "they must be equal")
    y, pdt, _ = _logits_last(p, axis)
    x, qdt, _ = _logits_last(q, axis)
    dtype = np.dtype(np.float64 if np.float64 in (pdt, qdt) else np.float32)
    logp, dist_y, _, _ = _distribution(y)
    logq, dist_x, _, _ = _distribution(x)
    kl = _kl_rows(y, logp, x, logq) if x.shape[-1] else np.full(x.shape[:-1], np.nan)
    kl = np.where(dist_x & dist_y, kl, np.nan)
    if reduction == "sum":
        kl = kl.sum()
    elif reduction == "mean":
        with np.errstate(invalid="ignore"):
            kl = kl.sum() / kl.size
    return _result(kl, dtype)


_REPORT_PERCENTILES = (("max", 100.0), ("p99.9", 99.9), ("p99", 99.0), ("p95", 95.0),
                       ("p90", 90.0), ("median", 50.0), ("p10", 10.0), ("p5", 5.0), ("p1", 1.0),
                       ("p0.1", 0.1), ("min", 0.0))


def _percentiles(values, qs):
    """``np.percentile(values, qs)`` (linear interpolation), with infinities handled.

    Percentile q is ``(1 - t) * a + t * b`` for the sorted values ``a``, ``b`` around the
    virtual index ``(n - 1) * q / 100`` with fraction ``t``. Where ``a`` or ``b`` is infinite
    NumPy's formula gives NaN (``inf - inf``, even for the maximum); the value is its limit:
    the infinity among the values with positive weight, ``a`` when that has none, NaN when they
    hold both -inf and +inf. NaN values make every percentile NaN, as in NumPy.
    """
    with np.errstate(invalid="ignore"):
        out = np.percentile(values, qs)
    s = np.sort(values)
    if np.isnan(s).any():
        return out
    for i, q in enumerate(qs):
        h = (len(s) - 1) * (q / 100)
        lo = int(np.floor(h))
        a, b, t = s[lo], s[min(lo + 1, len(s) - 1)], h - lo
        if np.isinf(a) or np.isinf(b):
            infs = {v for v in ([a] if t == 0 else [a, b]) if np.isinf(v)}  # those with weight
            out[i] = a if not infs else infs.pop() if len(infs) == 1 else np.nan
    return out


def evaluate_reference(logits: ArrayLike, target: ArrayLike, ref_logits: ArrayLike | None = None, *,
                       axis: SupportsIndex = -1, ignore_index: SupportsIndex = -100) -> EvaluatorReport:
    """The report of `fastxent.Evaluator` for one batch, from `token_stats` in float64.

    Over the counted positions (n of them): the mean NLL and its standard error
    ``se = std(nll, ddof=1) / sqrt(n)``; perplexity ``exp(mean)`` with error ``ppl * se`` and
    95% interval ``exp(mean -+ 1.959964 se)``; bits per token ``mean / ln 2``; top-1 accuracy
    with error ``sqrt(p (1 - p) / (n - 1))``; mean entropy. With `ref_logits` also the
    reference perplexity, the correlation of the two NLLs, ``mean(nll - ref_nll)`` =
    ln(PPL/PPL_ref) with the standard error of that difference (which accounts for the
    correlation), the PPL ratio, mean KL and its error, KL percentiles (NumPy's linear
    interpolation; an infinity with positive weight gives that infinity, see `_percentiles`),
    same-top proportion with its binomial error, and delta-p = ``p_target - ref_p_target``:
    mean, RMS (error ``se(dp**2) / (2 rms)``) and percentiles.

    Parameters
    ----------
    logits, target, ref_logits, axis, ignore_index
        As in `token_stats`.

    Returns
    -------
    dict
        The keys of `Evaluator.report` (percentiles always included with `ref_logits`).
    """
    s, counted, _ = _token_stats64(logits, target, ref_logits, axis, ignore_index)
    c = np.asarray(counted, bool)
    v = {k: np.asarray(a)[c].astype(np.float64) for k, a in s.items()}
    n = int(c.sum())

    def mean_se(a):
        if n == 0:
            return np.nan, np.nan
        return float(np.mean(a)), (float(np.std(a, ddof=1) / np.sqrt(n)) if n > 1 else np.nan)

    def prop(k):
        if n == 0:
            return np.nan, np.nan
        p = k / n
        return p, (float(np.sqrt(p * (1 - p) / (n - 1))) if n > 1 else np.nan)

    with np.errstate(all="ignore"):
        r: Any = {"tokens": n}  # an EvaluatorReport, filled key by key
        m, se = mean_se(v["nll"])
        r["nll_mean"], r["nll_err"] = m, se
        r["ppl"], r["ppl_err"] = float(np.exp(m)), float(np.exp(m) * se)
        r["ppl_ci95"] = [float(np.exp(m - 1.959963984540054 * se)),
                         float(np.exp(m + 1.959963984540054 * se))]
        r["bits_per_token"], r["bits_per_token_err"] = m / np.log(2), se / np.log(2)
        r["top1_accuracy"], r["top1_accuracy_err"] = prop(int(v["correct"].sum()))
        r["entropy_mean"] = float(np.mean(v["entropy"])) if n else np.nan
        if ref_logits is None:
            return r
        rm, rse = mean_se(v["ref_nll"])
        r["ref_nll_mean"], r["ref_ppl"], r["ref_ppl_err"] = rm, float(np.exp(rm)), float(np.exp(rm) * rse)
        r["nll_correlation"] = float(np.corrcoef(v["nll"], v["ref_nll"])[0, 1]) if n > 1 else np.nan
        dm, dse = mean_se(v["nll"] - v["ref_nll"])
        r["ln_ppl_ratio"], r["ln_ppl_ratio_err"] = dm, dse
        r["ppl_ratio"], r["ppl_ratio_err"] = float(np.exp(dm)), float(np.exp(dm) * dse)
        r["kl_mean"], r["kl_err"] = mean_se(v["kl"])
        r["same_top"], r["same_top_err"] = prop(int(v["same_top"].sum()))
        dp = v["p_target"] - v["ref_p_target"]
        r["delta_p_mean"], r["delta_p_err"] = mean_se(dp)
        msq, msq_se = mean_se(dp * dp)
        rms = float(np.sqrt(msq))
        r["delta_p_rms"] = rms
        r["delta_p_rms_err"] = 0.5 * msq_se / rms if rms > 0 else np.nan
        if n:
            qs = [q for _, q in _REPORT_PERCENTILES]
            for name, vals in (("kl_percentiles", v["kl"]), ("delta_p_percentiles", dp)):
                r[name] = {k: float(x) for (k, _), x in zip(_REPORT_PERCENTILES, _percentiles(vals, qs))}
    return r
