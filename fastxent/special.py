"""Drop-in replacements for scipy.special.logsumexp, softmax and log_softmax."""
from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, SupportsIndex, Tuple, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import (F32, F64, as_rows, asarray, float_array, float_dtype, float_operand, is_bfloat16,
                      normalize_axes, result_dtype, strided_layout)
from ._config import resolve_n_threads

_Axes = Optional[Union[SupportsIndex, Sequence[SupportsIndex]]]
_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]


@overload  # axis=None and keepdims=False: always a NumPy scalar
def logsumexp(a: ArrayLike, axis: None = None, b: ArrayLike | None = None, keepdims: Literal[False] = False,
              return_sign: Literal[False] = False, *, n_threads: int | None = None) -> _Float: ...
@overload  # an array (a NumPy scalar when the result is 0-d, e.g. 1-d `a` with an axis)
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: Literal[False] = False, *, n_threads: int | None = None) -> _FloatArray: ...
@overload
def logsumexp(a: ArrayLike, axis: None = None, b: ArrayLike | None = None, keepdims: Literal[False] = False,
              *, return_sign: Literal[True], n_threads: int | None = None) -> Tuple[_Float, _Float]: ...
@overload
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              *, return_sign: Literal[True], n_threads: int | None = None) -> Tuple[_FloatArray, _FloatArray]: ...
@overload
def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: bool = False, *, n_threads: int | None = None
              ) -> _Float | _FloatArray | Tuple[_Float | _FloatArray, _Float | _FloatArray]: ...


def logsumexp(a: ArrayLike, axis: _Axes = None, b: ArrayLike | None = None, keepdims: bool = False,
              return_sign: bool = False, *, n_threads: int | None = None
              ) -> _Float | _FloatArray | Tuple[_Float | _FloatArray, _Float | _FloatArray]:
    r"""Compute the log of the sum of exponentials of input elements.

    Same signature, defaults and results as :func:`scipy.special.logsumexp`
    for real input, computed by fastxent's C kernels.

    Parameters
    ----------
    a : array_like
        Input array: float32, float64, float16 or bfloat16 (ml_dtypes);
        integer and bool input is converted to float64.
    axis : None or int or tuple of ints, optional
        Axis or axes over which the sum is taken.  By default all elements
        are summed.
    b : array_like, optional
        Scaling factor for ``exp(a)``, broadcast against `a`.  Terms with
        ``b == 0`` are dropped (even where `a` is infinite or NaN); negative
        values implement subtraction.
    keepdims : bool, optional
        Keep the reduced axes as dimensions of size one.
    return_sign : bool, optional
        Also return the sign of the sum.  Without it a negative sum gives NaN.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    res : ndarray or scalar
        ``log(sum(b * exp(a)))`` (its absolute value's log with
        `return_sign`); a 0-d result is returned as a NumPy scalar.  An empty
        reduction gives ``-inf``.  Without `b`: float64 for float64, integer and
        bool input, float32 for float32, float16 and bfloat16.  With `b`:
        SciPy's dtype, ``np.result_type(a, b, 1.0)`` in which a Python number
        is weak (NEP 50), with float16 and bfloat16 operands counted as
        float32.  So float32 `a` stays float32 with a bool, int8, int16, uint8,
        uint16 or float16 `b` and with ``b=2.0``, and gives float64 with an
        int32, int64 or float64 `b` (NumPy scalars and 0-d arrays included);
        bool, int8 or int16 `a` with a float32 `b` gives float32.
    sgn : ndarray or scalar
        The sign (+1, 0, -1, or NaN) of the sum, when `return_sign` is True.

    Raises
    ------
    TypeError
        If an input is complex or of an unsupported dtype.
    numpy.exceptions.AxisError
        If an axis is out of range.
    ValueError
        If `b` does not broadcast against `a`.

    Notes
    -----
    Each row is reduced in blocks that stay in the L1 cache: a max pass, then
    ``sum(exp(x - max))`` accumulated in double, and block results are merged
    with the usual rescaling, so that ``exp`` never overflows and the logits
    are read from memory once.  The result is ``max + log(sum)``.  A ``-inf``
    element is a term of zero; a row of only ``-inf`` gives ``-inf``; a NaN
    makes its row NaN; ``+inf`` gives ``+inf``.  Without `b` the kernel is
    vectorised (see ``fastxent.show_config``); the weighted form follows
    SciPy's algorithm step by step in scalar double precision.

    The result dtype is SciPy's except for 16-bit floats: where SciPy returns
    float16 (float16 input, alone or with a bool, 8-bit integer or float16
    `b`) fastxent returns float32, the dtype it returns for 16-bit input
    everywhere, as its kernels compute in double.  SciPy does not support
    bfloat16 (NumPy cannot promote it with SciPy's Python ``1.0``: SciPy
    returns float64 or raises TypeError); fastxent promotes it as it
    promotes float16.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import logsumexp
    >>> float(logsumexp(np.arange(10.0)))  # doctest: +ELLIPSIS
    9.45862974442671...
    >>> logsumexp(np.array([[0.0, 0.0], [1000.0, 1000.0]]), axis=1)
    array([6.93147181e-01, 1.00069315e+03])
    >>> logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)  # doctest: +ELLIPSIS
    (np.float64(1.54132485461291...), np.float64(-1.0))
    """
    nt = resolve_n_threads(n_threads)
    a_raw, a = a, asarray(a, "a", keep_bf16=b is None)
    kdt = float_dtype(a.dtype, "a")
    if b is not None:
        b_raw, b = b, float_operand(b, "b")
        # the weighted kernel reads `a` converted to the result dtype (float32 or float64), as
        # SciPy converts it (exactly, except int64 beyond 2**53 as in SciPy)
        kdt = _weighted_result_dtype(a_raw, a, b_raw, b)
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            raise ValueError(f"`b` with shape {b.shape} does not broadcast against `a` with shape {a.shape}") from None
    dt = result_dtype(kdt)
    a = float_array(np.atleast_1d(a), "a", kdt)
    axes = normalize_axes(axis, a.ndim)
    kept_shape = tuple(1 if i in axes else n for i, n in enumerate(a.shape))

    if a.size == 0:
        out = np.full(kept_shape, -np.inf, dtype=dt)
        sgn = np.sign(out)
    elif b is None:
        base, layout, batch, n_cols = as_rows(a, axes)
        res = np.empty(layout[0] * layout[1], dtype=np.float64)
        _core.lse(base, layout, res, nt)
        out = res.astype(dt, copy=False).reshape(kept_shape)
        if return_sign:
            sgn = np.where(np.isnan(res), np.nan, np.where(res == -np.inf, 0.0, 1.0))
            sgn = sgn.astype(dt, copy=False).reshape(kept_shape)
    else:
        b = np.atleast_1d(b).astype(np.float64, copy=False)
        if not b.flags.aligned:
            b = b.copy()
        base, _, batch, n_cols = as_rows(a, axes)
        rows = int(np.prod(batch, dtype=np.int64))
        a2 = base.reshape(rows, n_cols)
        b2 = _rows_like(b, axes).reshape(rows, n_cols)
        res = np.empty(rows, dtype=np.float64)
        sgn = np.empty(rows, dtype=np.float64)
        _core.lse_b(a2, strided_layout(a2), b2, strided_layout(b2), bool(return_sign), res, sgn, nt)
        out = res.astype(dt, copy=False).reshape(kept_shape)
        sgn = sgn.astype(dt, copy=False).reshape(kept_shape)

    if not keepdims:
        out = out.reshape(tuple(n for i, n in enumerate(kept_shape) if i not in axes))
        if return_sign:
            sgn = sgn.reshape(out.shape)
    out = out[()] if out.ndim == 0 else out
    if return_sign:
        sgn = sgn[()] if sgn.ndim == 0 else sgn
        return out, sgn
    return out


def _promotion_operand(raw, arr: np.ndarray):
    """How an argument takes part in SciPy's promotion: a Python bool/int/float as itself
    (a "weak" scalar under NEP 50), anything else by its array dtype, 16-bit floats as float32."""
    if isinstance(raw, (bool, int, float)) and not isinstance(raw, np.generic):
        return raw
    if arr.dtype.itemsize == 2 and (arr.dtype.kind == "f" or is_bfloat16(arr.dtype)):
        return F32
    return arr.dtype


def _weighted_result_dtype(a_raw, a: np.ndarray, b_raw, b: np.ndarray) -> np.dtype:
    """Result dtype of ``logsumexp(a, b=b)``: SciPy 1.17's rule with 16-bit floats as float32.

    scipy.special.logsumexp promotes with ``np.result_type(a, b, 1.0)`` (``xp_promote`` with
    ``force_floating``): Python numbers are weak, NumPy scalars and 0-d arrays are not, and
    sequences count as the arrays ``np.asarray`` makes of them.  A float16 operand gives
    float32 here where SciPy gives float16, as without `b` (the same dtype either way
    whenever SciPy's is float32 or float64); bfloat16 counts as float16 (SciPy itself gives
    float64 or fails on bfloat16, which NumPy cannot promote with a Python float).
    """
    res = np.result_type(_promotion_operand(a_raw, a), _promotion_operand(b_raw, b), 1.0)
    return F64 if res.itemsize == 8 else F32


def _rows_like(b: np.ndarray, axes) -> np.ndarray:
    keep = [i for i in range(b.ndim) if i not in axes]
    return b.transpose(keep + list(axes))


def _softmax(x, axis, log: bool, n_threads):
    nt = resolve_n_threads(n_threads)
    x = asarray(x, "x", keep_bf16=True)
    scalar = x.ndim == 0
    x = float_array(np.atleast_1d(x), "x")
    dt = result_dtype(x.dtype)
    axes = normalize_axes(axis, x.ndim)
    if x.size == 0:
        return np.empty(x.shape, dtype=dt)
    base, layout, batch, n_cols = as_rows(x, axes)
    out = np.empty(batch + (n_cols,), dtype=dt)
    _core.softmax(base, layout, out, log, nt)
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    out = out.reshape(tuple(x.shape[i] for i in perm))
    if perm != list(range(x.ndim)):
        out = out.transpose(np.argsort(perm))
    return out[0] if scalar else out


def softmax(x: ArrayLike, axis: _Axes = None, *, n_threads: int | None = None) -> _FloatArray:
    r"""Compute the softmax function.

    Same signature, defaults and results as :func:`scipy.special.softmax` for
    real input: ``exp(x) / sum(exp(x))`` along `axis`.

    Parameters
    ----------
    x : array_like
        Input array: float32, float64, float16 or bfloat16 (ml_dtypes);
        integer and bool input is converted to float64.
    axis : int or tuple of ints, optional
        Axis to compute values along.  Default is None: softmax over the
        entire array.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    s : ndarray
        An array of the shape of `x` (float64 for float64, integer and bool
        input, else float32); the values along `axis` sum to 1.

    Raises
    ------
    TypeError
        If `x` is complex or of an unsupported dtype.
    numpy.exceptions.AxisError
        If an axis is out of range.

    Notes
    -----
    Computed as ``exp(x - max) / sum(exp(x - max))`` with the log-sum-exp
    kernel of `logsumexp`, so large inputs do not overflow.  As in SciPy, a
    row holding NaN, ``+inf``, or only ``-inf`` values gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import softmax
    >>> softmax(np.array([[1.0, 1.0], [0.0, np.log(3.0)]]), axis=1)
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    return _softmax(x, axis, False, n_threads)


def log_softmax(x: ArrayLike, axis: _Axes = None, *, n_threads: int | None = None) -> _FloatArray:
    r"""Compute the logarithm of the softmax function.

    Same signature, defaults and results as :func:`scipy.special.log_softmax`
    for real input: ``x - logsumexp(x)`` along `axis`, computed without ever
    forming ``exp(x)``.

    Parameters
    ----------
    x : array_like
        Input array: float32, float64, float16 or bfloat16 (ml_dtypes);
        integer and bool input is converted to float64.
    axis : int or tuple of ints, optional
        Axis to compute values along.  Default is None: over the entire array.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    s : ndarray
        An array of the shape of `x` (float64 for float64, integer and bool
        input, else float32).

    Raises
    ------
    TypeError
        If `x` is complex or of an unsupported dtype.
    numpy.exceptions.AxisError
        If an axis is out of range.

    Notes
    -----
    ``(x - max) - log(sum(exp(x - max)))`` per row: accurate for tiny and
    huge values alike.  As in SciPy, a row holding NaN or only ``-inf`` gives
    NaN, and a row holding ``+inf`` gives NaN at the ``+inf`` entries and
    ``-inf`` elsewhere.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import log_softmax
    >>> log_softmax(np.array([1000.0, 1000.0]))
    array([-0.69314718, -0.69314718])
    """
    return _softmax(x, axis, True, n_threads)
