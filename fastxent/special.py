"""Drop-in replacements for scipy.special.logsumexp, softmax and log_softmax."""
from __future__ import annotations

import numpy as np

from . import _core
from ._arrays import as_float_array, as_rows, float_dtype, normalize_axes, result_dtype, strided_layout
from ._config import resolve_n_threads


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, n_threads=None):
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
        `return_sign`).  float64 input gives float64, float32/float16/bfloat16 give
        float32, integers and bool float64;
        a 0-d result is returned as a NumPy scalar.  An empty reduction gives
        ``-inf``.
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

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import logsumexp
    >>> float(logsumexp(np.arange(10.0)))  # doctest: +ELLIPSIS
    9.45862974442671...
    >>> logsumexp(np.array([[0.0, 0.0], [1000.0, 1000.0]]), axis=1)
    array([   0.69314718, 1000.69314718])
    >>> logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)  # doctest: +ELLIPSIS
    (np.float64(1.54132485461291...), np.float64(-1.0))
    """
    nt = resolve_n_threads(n_threads)
    a = np.asarray(a)
    kdt = float_dtype(a.dtype, "a")
    if b is not None:
        weak = np.ndim(b) == 0 and not isinstance(b, (np.ndarray, np.generic))
        b = np.asarray(b)
        bdt = float_dtype(b.dtype, "b")
        # a and b promoted together as SciPy does, with NumPy's rule that a Python number
        # is weak (float32 a with b=2.0 stays float32; an int64 array b gives float64);
        # 16-bit floats compute in float32
        f64 = np.dtype(np.float64)
        kdt = f64 if kdt == f64 or (not weak and bdt == f64) else np.dtype(np.float32)
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            raise ValueError(f"`b` with shape {b.shape} does not broadcast against `a` with shape {a.shape}") from None
    dt = result_dtype(kdt)
    a = as_float_array(np.atleast_1d(a), "a", kdt)
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


def _rows_like(b: np.ndarray, axes) -> np.ndarray:
    keep = [i for i in range(b.ndim) if i not in axes]
    return b.transpose(keep + list(axes))


def _softmax(x, axis, log: bool, n_threads):
    nt = resolve_n_threads(n_threads)
    x = np.asarray(x)
    scalar = x.ndim == 0
    x = as_float_array(np.atleast_1d(x), "x")
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


def softmax(x, axis=None, *, n_threads=None):
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


def log_softmax(x, axis=None, *, n_threads=None):
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
