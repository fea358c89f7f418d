"""Evaluation toolkit: per-token statistics, KL divergence and a streaming accumulator.

`token_stats` gives, per position and from one read of each row, the negative
log-likelihood, the entropy of the predicted distribution, whether the top
class is the target and the target's probability; with reference logits also
KL(reference || model), whether both top classes agree and the reference's
own NLL and target probability.  `Evaluator` accumulates them over batches or
shards (exact totals, mergeable, serialisable) into the report that
llama.cpp's ``perplexity --kl-divergence`` prints.  The plain NumPy meaning of
everything here is in `fastxent.reference` (``token_stats``,
``kl_divergence``, ``evaluate_reference``).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any, Dict, Generic, Literal, Mapping, SupportsIndex, TypeVar, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import as_rows, asarray, float_dtype, pair_dtype, result_dtype, row_blocks, to_dtype
from ._config import resolve_n_threads
from .losses import _check_ignore_index, _check_target, _class_axis
from .typing import EvaluatorReport

__all__ = ["TokenStats", "token_stats", "kl_divergence", "Evaluator", "format_report"]

REDUCTIONS = ("none", "sum", "mean")
# (report key, percentile) in the order llama.cpp prints them
PERCENTILES = (("max", 100.0), ("p99.9", 99.9), ("p99", 99.0), ("p95", 95.0), ("p90", 90.0),
               ("median", 50.0), ("p10", 10.0), ("p5", 5.0), ("p1", 1.0), ("p0.1", 0.1),
               ("min", 0.0))
_Z95 = 1.959963984540054  # two-sided 95% normal quantile
_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]
#: the types of TokenStats' float and bool fields: NumPy arrays from `token_stats`, dask
#: arrays from `fastxent.dask.token_stats`
_F = TypeVar("_F")
_B = TypeVar("_B")


# --------------------------------------------------------------------------- validation
def _logits(x, name: str) -> np.ndarray:
    a = asarray(x, name, keep_bf16=True)
    kdt = float_dtype(a.dtype, name, promote_int=False)
    if a.dtype != kdt or not a.dtype.isnative:
        a = a.astype(kdt)
    return a


def _ref_like(ref, x: np.ndarray, name: str, other: str) -> np.ndarray:
    """`ref` with the shape of `x`, in its own (supported) dtype."""
    r = _logits(ref, name)
    if r.shape != x.shape:
        raise ValueError(f"`{name}` has shape {r.shape} but `{other}` has shape {x.shape}; "
                         "they must be equal")
    return r


_OUTPUTS = ("nll", "entropy", "p_target", "correct", "kl", "same_top", "ref_nll", "ref_p_target")
_BOOL = ("correct", "same_top")
_NEED_REF = ("kl", "same_top", "ref_nll", "ref_p_target")
_WIDEN_ELEMS = 1 << 20   # elements per side widened at a time when the two dtypes differ


def _stats(x: np.ndarray, ax: int, t64, ignore_index: int, ref, out: dict, nt: int) -> np.dtype:
    """Run the statistics kernel on x (and ref) into the flat outputs `out`; returns the
    dtype the rows were read in.

    The two sides are read by `_arrays.pair_dtype`'s rule: equal dtypes as they are (one
    kernel call, no copy); different ones with the narrower side widened exactly to the
    pair dtype a block of rows at a time (at most `_WIDEN_ELEMS` elements per side), so
    that the wider side is never rounded and no whole-array copy is made.
    """
    args = [out.get(k) for k in _OUTPUTS]
    if ref is None or ref.dtype == x.dtype:
        base, layout, _, _ = as_rows(x, (ax,))
        rbase = rlayout = None
        if ref is not None:
            rbase, rlayout, _, _ = as_rows(ref, (ax,))
        # (mypy cannot count the starred outputs: nll ... ref_p_target, nine in all)
        _core.token_stats(base, layout, t64, ignore_index, rbase, rlayout, *args, nt)  # type: ignore[call-arg, arg-type]
        return x.dtype
    kdt = pair_dtype(x.dtype, ref.dtype)
    xm, rm = np.moveaxis(x, ax, -1), np.moveaxis(ref, ax, -1)
    batch = xm.shape[:-1]
    tb = None if t64 is None else t64.reshape(batch)
    ob = [None if a is None else a.reshape(batch) for a in args]
    for idx in row_blocks(batch, xm.shape[-1], _WIDEN_ELEMS):
        idx = idx + (Ellipsis,)
        xc, rc = xm[idx], rm[idx]
        xc = xc if xc.dtype == kdt else to_dtype(xc, kdt)
        rc = rc if rc.dtype == kdt else to_dtype(rc, kdt)
        base, layout, _, _ = as_rows(xc, (xc.ndim - 1,))
        rbase, rlayout, _, _ = as_rows(rc, (rc.ndim - 1,))
        if layout[0] * layout[1] == 0:
            continue
        outs = [None if a is None else a[idx].reshape(-1) for a in ob]
        _core.token_stats(base, layout, None if tb is None else tb[idx].reshape(-1), ignore_index,  # type: ignore[call-arg]
                          rbase, rlayout, *outs, nt)  # type: ignore[arg-type]
    return kdt


def _raw(logits, target, ref_logits, axis, ignore_index, n_threads, want):
    """Validate and run the kernel once.

    Returns (outputs: name -> flat float64/bool array, counted mask (flat), batch shape,
    result dtype); `want` names the outputs to compute (reference ones only with a reference).
    """
    nt = resolve_n_threads(n_threads)
    ignore_index = _check_ignore_index(ignore_index)
    x = _logits(logits, "logits")
    ax = _class_axis(axis, x.ndim)
    ref = None if ref_logits is None else _ref_like(ref_logits, x, "ref_logits", "logits")
    t64, _ = _check_target(target, x, ax, ignore_index)
    batch = x.shape[:ax] + x.shape[ax + 1:]
    kdt = x.dtype if ref is None else pair_dtype(x.dtype, ref.dtype)
    if ref is None:
        want = [w for w in want if w not in _NEED_REF]
    rows = t64.size
    out = {k: np.empty(rows, dtype=bool if k in _BOOL else np.float64) for k in want}
    if rows:
        _stats(x, ax, t64, ignore_index, ref, out, nt)
    return out, t64 != ignore_index, batch, result_dtype(kdt)


# --------------------------------------------------------------------------- token_stats
@dataclass(frozen=True)
class TokenStats(Generic[_F, _B]):
    """Per-position statistics returned by `token_stats` (arrays of the target's shape).

    Float fields are float32 (float64 when float64 logits are involved, see `token_stats`);
    ignored positions hold NaN in
    float fields and False in boolean ones.  The reference fields are None without
    `ref_logits`.

    Attributes
    ----------
    nll : ndarray
        Negative log-likelihood of the target, ``logsumexp(x) - x[t]``.
    entropy : ndarray
        Entropy of the model's distribution ``Q = softmax(x)``, ``-sum(Q log Q)`` (nats).
    p_target : ndarray
        ``Q[t] = exp(-nll)``.
    correct : ndarray of bool
        The target is the model's top class (first maximum, as `numpy.argmax`).
    counted : ndarray of bool
        The target is not `ignore_index`.
    kl : ndarray or None
        ``KL(P || Q) = sum(P (log P - log Q))`` with ``P = softmax(ref_logits)``.
    same_top : ndarray of bool or None
        Model and reference have the same top class.
    ref_nll, ref_p_target : ndarray or None
        The reference's NLL of the target and ``P[t]``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import token_stats
    >>> s = token_stats(np.log(np.array([[0.5, 0.25, 0.25]])), np.array([1]))
    >>> s.p_target, s.correct, s.kl is None
    (array([0.25]), array([False]), True)
    """

    nll: _F
    entropy: _F
    p_target: _F
    correct: _B
    counted: _B
    kl: _F | None = None
    same_top: _B | None = None
    ref_nll: _F | None = None
    ref_p_target: _F | None = None

    def as_dict(self) -> Dict[str, _F | _B]:
        """The fields as a dict (reference fields only when present).

        Returns
        -------
        dict
            Field name -> array, without the reference fields that are None.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import token_stats
        >>> s = token_stats(np.zeros((2, 4)), np.array([0, -100]))
        >>> sorted(s.as_dict())
        ['correct', 'counted', 'entropy', 'nll', 'p_target']
        >>> s.as_dict()["nll"]                    # NaN where the target is ignored
        array([1.38629436,        nan])
        """
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def token_stats(logits: ArrayLike, target: ArrayLike, *, ref_logits: ArrayLike | None = None,
                axis: SupportsIndex = -1, ignore_index: SupportsIndex = -100, n_threads: int | None = None
                ) -> TokenStats[_FloatArray, NDArray[np.bool_]]:
    r"""Per-token evaluation statistics in one pass over the logits.

    For each position, with ``Q = softmax(logits)`` over `axis` and target ``t``: the
    negative log-likelihood, the entropy of ``Q``, whether ``t`` is the top class, and
    ``Q[t]``; with `ref_logits` (``P = softmax(ref_logits)``) also ``KL(P || Q)``,
    whether the two top classes agree, and the reference's NLL and ``P[t]``.

    Parameters
    ----------
    logits : array_like of float32, float64, float16 or bfloat16
        Model logits, classes along `axis`, e.g. (tokens, vocab) or (batch, seq, vocab).
    target : array_like of int
        Class indices with the shape of `logits` without `axis`: values in ``[0, C)``
        or `ignore_index`.
    ref_logits : array_like, optional
        Reference logits of the same shape, of any supported dtype.  Each side is read
        in its own precision: with different dtypes the narrower side is widened
        exactly (to float64 when either is float64, else float32), a block of rows
        at a time; the wider side is never rounded.
    axis : int, optional
        The class axis (default: last).
    ignore_index : int, optional
        Target value of positions to skip (default -100).  Their rows are not read;
        they get NaN in every float field and False in `correct` and `same_top`.
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    TokenStats
        Arrays of the target's shape (0-d input gives NumPy scalars): float32 for
        float32/float16/bfloat16 logits, float64 for float64 (float64 also when
        `ref_logits` is float64); bool for `correct`, `same_top` and `counted`.

    Raises
    ------
    TypeError
        If a logits dtype is not supported, `target` is not integer or `axis` is
        not one integer.
    ValueError
        If `target` or `ref_logits` has the wrong shape.
    IndexError
        If a target is out of range (the first bad position and value are named).
    numpy.exceptions.AxisError
        If `axis` is out of range.

    See Also
    --------
    Evaluator : accumulate these statistics over batches into a report.
    kl_divergence : KL(P || Q) alone, without targets.

    Notes
    -----
    One kernel call reads each row of `logits` (and of `ref_logits`) once, in blocks
    of 2048 classes kept in L1: a max pass, then one ``exp`` pass accumulating in
    double, per block with ``a = x - max(x)``, ``b = y - max(y)``::

        s_x = sum e^a,  u_x = sum e^a a,  s_y = sum e^b,  w = sum e^b (b - a)

    Block states are combined with the usual rescaling, and per row::

        nll = max(x) - x[t] + log s_x            entropy = log s_x - u_x / s_x
        KL  = log s_x - log s_y + w / s_y

    Every exponent is <= 0, so nothing overflows; ``w`` is a sum of shifted
    differences, so a constant offset between the two sets of logits cancels.
    Nothing of size rows x classes is allocated.  A class with ``P = 0`` (a -inf
    reference logit) contributes 0 to KL; ``P > 0`` where ``Q = 0`` (a -inf model
    logit) gives ``+inf``.  Rounding can not make KL negative (it is clamped at 0).
    A row containing NaN, or all -inf, or a +inf, is not a distribution: its entropy
    and KL are NaN (NLL as in `cross_entropy`), and it is never `correct` or
    `same_top` (a +inf row still has a top class).  Results do not depend on
    `n_threads`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import token_stats
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]]))
    >>> s = token_stats(logits, np.array([0, 2]))
    >>> s.nll.round(4), s.correct
    (array([0.3567, 0.6931]), array([ True,  True]))
    >>> s.entropy.round(4)
    array([0.8018, 1.0397])
    >>> s = token_stats(logits, np.array([0, -100]), ref_logits=logits[::-1])
    >>> s.kl.round(4), s.same_top
    (array([0.6031,    nan]), array([False, False]))
    """
    out, counted, batch, dt = _raw(logits, target, ref_logits, axis, ignore_index, n_threads,
                                   list(_OUTPUTS))

    def shaped(a, float_field=True):
        a = a.reshape(batch)
        if float_field:
            with np.errstate(over="ignore"):  # beyond the float32 range: inf
                a = a.astype(dt, copy=False)
        return a[()] if a.ndim == 0 else a

    kw = {k: shaped(v, k not in _BOOL) for k, v in out.items()}
    return TokenStats(counted=shaped(counted, False), **kw)


@overload  # per position (0-d: a NumPy scalar)
def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, *, axis: SupportsIndex = -1,
                  reduction: Literal["none"] = "none", n_threads: int | None = None) -> _FloatArray: ...
@overload  # "sum"/"mean": a NumPy scalar
def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, *, axis: SupportsIndex = -1,
                  reduction: Literal["sum", "mean"], n_threads: int | None = None) -> _Float: ...
@overload
def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, *, axis: SupportsIndex = -1,
                  reduction: str = "none", n_threads: int | None = None) -> _Float | _FloatArray: ...


def kl_divergence(p_logits: ArrayLike, q_logits: ArrayLike, *, axis: SupportsIndex = -1,
                  reduction: str = "none", n_threads: int | None = None) -> _Float | _FloatArray:
    r"""Kullback-Leibler divergence ``KL(P || Q)`` between two sets of logits.

    ``P = softmax(p_logits)`` and ``Q = softmax(q_logits)`` along `axis`;
    ``KL(P || Q) = sum(P * (log P - log Q))`` per position, in nats.

    Parameters
    ----------
    p_logits, q_logits : array_like of float32, float64, float16 or bfloat16
        Logits of the same shape.  Each is read in its own precision: when their
        dtypes differ, the narrower one is widened exactly (to float64 if either is
        float64, else float32), a block of rows at a time; nothing is rounded.
    axis : int, optional
        The class axis (default: last).
    reduction : {"none", "sum", "mean"}, optional
        ``"none"`` (default): one value per position; ``"sum"``; ``"mean"`` over the
        positions (NaN when there are none).
    n_threads : int, optional
        Threads to use (None: `get_num_threads`; -1: all CPUs).

    Returns
    -------
    ndarray or scalar
        float32 (float64 when computed in float64); totals are summed in double in a
        fixed order and rounded once; ``"sum"``/``"mean"`` and 1-d input give a scalar.

    Raises
    ------
    TypeError
        If a dtype is not supported or `axis` is not one integer.
    ValueError
        If the shapes differ or `reduction` is unknown.
    numpy.exceptions.AxisError
        If `axis` is out of range.

    Notes
    -----
    The same kernel as `token_stats` (one read of each row of both inputs, every
    exponent <= 0), so large magnitudes are safe: ``KL`` is computed from the
    shifted logits and ``log`` of the two normalisers.  A class with ``P = 0``
    contributes 0 (even where ``Q = 0``); ``P > 0`` where ``Q = 0`` gives ``+inf``.
    A position where either row is not a distribution (a NaN, a +inf, or all -inf)
    gives NaN.  Values are clamped at 0 against rounding.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import kl_divergence
    >>> p = np.log(np.array([0.5, 0.5]))
    >>> q = np.log(np.array([0.9, 0.1]))
    >>> round(float(kl_divergence(p, q)), 6)  # 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1)
    0.510826
    >>> float(kl_divergence(p, np.array([0.0, -np.inf])))
    inf
    >>> kl = kl_divergence(np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32), reduction="sum")
    >>> kl.dtype, float(kl)                   # shifted logits: the same distribution
    (dtype('float32'), 0.0)
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'sum', 'mean', got {reduction!r}")
    nt = resolve_n_threads(n_threads)
    p = _logits(p_logits, "p_logits")
    q = _logits(q_logits, "q_logits")
    if p.shape != q.shape:
        raise ValueError(f"`p_logits` has shape {p.shape} but `q_logits` has shape {q.shape}; "
                         "they must be equal")
    ax = _class_axis(axis, q.ndim)
    batch = q.shape[:ax] + q.shape[ax + 1:]
    rows = int(np.prod(batch, dtype=np.int64))
    kl = np.empty(rows, dtype=np.float64)
    if rows:
        _stats(q, ax, None, 0, p, {"kl": kl}, nt)
    dt = result_dtype(pair_dtype(q.dtype, p.dtype))
    if reduction == "none":
        with np.errstate(over="ignore"):
            res = kl.reshape(batch).astype(dt, copy=False)
        return res[()] if res.ndim == 0 else res
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.sum(kl, dtype=np.float64)
        if reduction == "mean":
            s = s / np.float64(rows)
        return dt.type(s)


# --------------------------------------------------------------------------- exact totals
_EBIAS = 1100            # frexp exponents are >= -1073
_SPLIT = 26              # integer mantissas (< 2^53) are summed as 27-bit high + 26-bit low parts
_CHUNK = 1 << 26         # values per bincount: every partial sum stays an integer < 2^53
_DIGIT = 62              # state_dict limbs


class _ExactSum:
    """The exact sum of float64 values (an integer multiple of 2^-1074), order independent.

    Stronger than Kahan/Neumaier summation: nothing is rounded until `value`, so a
    billion terms do not drift and merging partial sums in any grouping gives bitwise
    the same total.  Infinities and NaN are counted apart.
    """

    __slots__ = ("k", "nan", "pinf", "ninf")

    def __init__(self):
        self.k = 0          # the sum is k * 2**-1074
        self.nan = self.pinf = self.ninf = 0

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        fin = np.isfinite(v)
        if not fin.all():
            bad = v[~fin]
            self.nan += int(np.count_nonzero(np.isnan(bad)))
            self.pinf += int(np.count_nonzero(bad == np.inf))
            self.ninf += int(np.count_nonzero(bad == -np.inf))
            v = v[fin]
        for start in range(0, v.size, _CHUNK):
            m, e = np.frexp(v[start:start + _CHUNK])       # v = m 2^e, 0.5 <= |m| < 1
            mi = np.ldexp(m, 53).astype(np.int64)          # exact: v = mi 2^(e - 53)
            idx = (e + _EBIAS).astype(np.intp)
            hi = np.bincount(idx, weights=(mi >> _SPLIT).astype(np.float64))
            lo = np.bincount(idx, weights=(mi & ((1 << _SPLIT) - 1)).astype(np.float64))
            for j in np.flatnonzero((hi != 0) | (lo != 0)).tolist():
                s = (int(hi[j]) << _SPLIT) + int(lo[j])
                sh = j - _EBIAS - 53 + 1074                # negative only for subnormals,
                self.k += s << sh if sh >= 0 else s >> -sh  # whose mantissas end in zeros

    def merge(self, other: "_ExactSum") -> None:
        self.k += other.k
        self.nan += other.nan
        self.pinf += other.pinf
        self.ninf += other.ninf

    def fraction(self):
        """The exact sum, or None when a NaN or an infinity was added."""
        if self.nan or self.pinf or self.ninf:
            return None
        return Fraction(self.k, 1 << 1074)

    def value(self) -> float:
        """The sum rounded once to double."""
        if self.nan or (self.pinf and self.ninf):
            return math.nan
        if self.pinf or self.ninf:
            return math.inf if self.pinf else -math.inf
        try:
            return self.k / (1 << 1074)
        except OverflowError:
            return math.inf if self.k > 0 else -math.inf

    def encode(self) -> np.ndarray:
        """int64 array: [nan, +inf, -inf counts, sign, base-2^62 digits of |k|, low first]."""
        mag, digits = abs(self.k), []
        while mag:
            digits.append(mag & ((1 << _DIGIT) - 1))
            mag >>= _DIGIT
        return np.array([self.nan, self.pinf, self.ninf, -1 if self.k < 0 else 1] + digits,
                        dtype=np.int64)

    @classmethod
    def decode(cls, a) -> "_ExactSum":
        a = np.asarray(a)
        if a.ndim != 1 or a.size < 4 or a.dtype.kind not in "iu":
            raise ValueError("an exact sum is stored as a 1-d integer array of >= 4 entries")
        s = cls()
        s.nan, s.pinf, s.ninf = (int(v) for v in a[:3])
        mag = 0
        for d in reversed(a[4:].tolist()):
            mag = (mag << _DIGIT) | int(d)
        s.k = -mag if int(a[3]) < 0 else mag
        return s


def _mean_se(s1: _ExactSum, s2: _ExactSum, n: int):
    """Mean of n values from their exact sum and sum of squares, and its standard error
    sqrt(sample variance / n) (NaN for n < 2); computed exactly, rounded once."""
    if n == 0:
        return math.nan, math.nan
    f1, f2 = s1.fraction(), s2.fraction()
    if f1 is None or f2 is None:
        return s1.value() / n, math.nan
    mean = float(f1 / n)
    if n < 2:
        return mean, math.nan
    se2 = (n * f2 - f1 * f1) / (n * n * (n - 1))
    return mean, math.sqrt(max(float(se2), 0.0))


def _binomial(k: int, n: int):
    """Proportion k / n and its standard error sqrt(p (1 - p) / (n - 1))."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    return p, (math.sqrt(p * (1.0 - p) / (n - 1)) if n > 1 else math.nan)


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _percentiles(values: np.ndarray) -> Dict[str, float]:
    """Exact percentiles (NumPy's linear interpolation, as llama.cpp) of the kept values.

    Percentile q is ``(1 - t) a + t b`` for the sorted values ``a, b`` around the virtual
    index ``(n - 1) q / 100`` (fraction t).  Where a or b is infinite NumPy's formula gives
    NaN (``inf - inf``, even for the maximum); the value is then its limit: the infinity
    when it has a positive weight (``a``, or ``b`` with ``t > 0``), else ``a``; NaN only
    between ``-inf`` and ``+inf``.  So one token with KL = +inf makes ``max`` and the high
    percentiles that reach it +inf and leaves the others finite.  NaN values make every
    percentile NaN, as in NumPy.
    """
    v = values.astype(np.float64)
    qs = [q for _, q in PERCENTILES]
    with np.errstate(invalid="ignore"):
        res = np.percentile(v, qs)
    if np.isinf(v).any() and not np.isnan(v).any():
        srt = np.sort(v)
        h = (srt.size - 1) * (np.asarray(qs, dtype=np.float64) / 100)  # NumPy's virtual index
        lo = np.floor(h).astype(np.intp)
        t = h - lo
        a, b = srt[lo], srt[np.minimum(lo + 1, srt.size - 1)]
        limit = np.where((t == 0) | (a == b), a,
                         np.where(np.isinf(a) & np.isinf(b), np.nan, np.where(np.isinf(a), a, b)))
        res = np.where(np.isinf(a) | np.isinf(b), limit, res)
    return {k: float(v) for (k, _), v in zip(PERCENTILES, res)}


# --------------------------------------------------------------------------- Evaluator
_SUMS = ("nll", "nll2", "entropy")
_REF_SUMS = ("ref_nll", "ref_nll2", "nll_ref_nll", "dnll", "dnll2", "kl", "kl2",
             "dp", "dp2", "dp4")
_STATE_VERSION = 1


class Evaluator:
    r"""Streaming accumulator of evaluation statistics, mergeable across shards.

    Feed batches with `update`; `report` gives perplexity with its error, accuracy,
    entropy and, with reference logits, the KL-divergence statistics of llama.cpp's
    ``perplexity --kl-divergence``.

    Parameters
    ----------
    ignore_index : int, optional
        Target value of positions that are not counted (default -100).
    keep_per_token : bool, optional
        Keep the per-token KL and delta-p values (float32, 8 bytes per counted token;
        only with reference logits) so that `report` gives their exact percentiles.
        Without them the percentiles are absent from the report.
    axis : int, optional
        The class axis of the logits passed to `update` (default: last).
    n_threads : int, optional
        Threads for `update` (None: `get_num_threads`).

    Notes
    -----
    Totals (sums of NLL, squares, cross products, KL, delta-p, ...) are kept exactly,
    as integer multiples of 2^-1074, and rounded once when the report is made: there is
    no drift over a billion tokens, and `merge` of shard accumulators gives bitwise the
    report of one pass over everything.  Standard errors are those of the mean,
    ``sqrt(sample variance / n)``; the perplexity error is ``PPL * se(NLL)`` and its 95%
    interval ``exp(mean NLL +- 1.96 se)``; ``ln(PPL / PPL_ref)`` takes its error from the
    per-token differences, which accounts for the correlation of the two models;
    proportions have the binomial error ``sqrt(p (1 - p) / (n - 1))``.  Percentiles are
    NumPy's (linear interpolation) over the kept per-token values.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import Evaluator
    >>> rng = np.random.default_rng(0)
    >>> ev = Evaluator()
    >>> for _ in range(3):
    ...     logits = rng.standard_normal((4, 16, 50), dtype=np.float32)
    ...     n = ev.update(logits, rng.integers(0, 50, size=(4, 16)), ref_logits=logits * 0.9)
    >>> rep = ev.report()
    >>> rep["tokens"], round(rep["ppl"], 2), rep["same_top"]
    (192, 85.91, 1.0)
    >>> a, b = Evaluator(), Evaluator()          # shards, merged
    >>> a.merge(b).report()["tokens"]
    0
    """

    def __init__(self, ignore_index: SupportsIndex = -100, keep_per_token: bool = True, *,
                 axis: SupportsIndex = -1, n_threads: int | None = None) -> None:
        self.ignore_index = _check_ignore_index(ignore_index)
        if not isinstance(keep_per_token, (bool, np.bool_)):
            raise TypeError(f"`keep_per_token` must be a bool, got {keep_per_token!r}")
        self.keep_per_token = bool(keep_per_token)
        try:
            self.axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"`axis` must be an integer, got {axis!r}") from None
        self.n_threads = n_threads
        self._has_ref: bool | None = None      # decided by the first update with tokens: True / False
        self.tokens = 0
        self.correct = 0
        self.same_top = 0
        self._sums = {k: _ExactSum() for k in _SUMS + _REF_SUMS}
        self._kl: list[np.ndarray] = []
        self._dp: list[np.ndarray] = []

    def __repr__(self) -> str:
        ref = {None: "", True: ", with reference", False: ""}[self._has_ref]
        return f"<Evaluator: {self.tokens} tokens{ref}>"

    @property
    def has_ref(self) -> bool | None:
        """True / False once tokens with / without reference logits were added, else None.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> print(ev.has_ref)
        None
        >>> _ = ev.update(logits, np.array([0, 2, 1]), ref_logits=logits)
        >>> ev.has_ref
        True
        """
        return self._has_ref

    def update(self, logits: ArrayLike, target: ArrayLike, ref_logits: ArrayLike | None = None) -> int:
        """Add a batch.

        Parameters
        ----------
        logits : array_like
            Model logits, classes along the evaluator's `axis` (any layout and any
            supported dtype, as `token_stats`).
        target : array_like of int
            Class indices of the shape of `logits` without `axis`; `ignore_index`
            positions are skipped.
        ref_logits : array_like, optional
            Reference logits of the shape of `logits`, of any supported dtype (each side
            read in its own precision, as `token_stats`).  Either every batch that
            counts tokens has them or none does.

        Returns
        -------
        int
            The number of tokens counted from this batch.

        Raises
        ------
        ValueError
            If `ref_logits` is given now but not before (or the reverse), besides the
            errors of `token_stats`.  Nothing is added when an error is raised.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> ev.update(logits, np.array([0, 2, 1]))
        3
        >>> ev.update(logits, np.array([1, -100, -100]))   # -100 (ignore_index) is not counted
        1
        >>> ev
        <Evaluator: 4 tokens>
        """
        has_ref = ref_logits is not None
        self._check_ref(has_ref, "`ref_logits` was {} in earlier updates but {} in this one")
        want = ["nll", "entropy", "correct"]
        if has_ref:
            want += ["p_target", "kl", "same_top", "ref_nll", "ref_p_target"]
        out, counted, _, _ = _raw(logits, target, ref_logits, self.axis, self.ignore_index,
                                  self.n_threads, want)
        n = int(np.count_nonzero(counted))
        if n == 0:
            return 0
        v = {k: a[counted] if counted.size != n else a for k, a in out.items()}
        nll = v["nll"]
        add = self._sums
        add["nll"].add(nll)
        add["nll2"].add(nll * nll)
        add["entropy"].add(v["entropy"])
        self.correct += int(np.count_nonzero(v["correct"]))
        if has_ref:
            rnll, kl = v["ref_nll"], v["kl"]
            d = nll - rnll
            dp = v["p_target"] - v["ref_p_target"]
            dp2 = dp * dp
            for key, val in (("ref_nll", rnll), ("ref_nll2", rnll * rnll), ("nll_ref_nll", nll * rnll),
                             ("dnll", d), ("dnll2", d * d), ("kl", kl), ("kl2", kl * kl),
                             ("dp", dp), ("dp2", dp2), ("dp4", dp2 * dp2)):
                add[key].add(val)
            self.same_top += int(np.count_nonzero(v["same_top"]))
            if self.keep_per_token:
                self._kl.append(kl.astype(np.float32))
                self._dp.append(dp.astype(np.float32))
        self._has_ref = has_ref
        self.tokens += n
        return n

    def _check_ref(self, has_ref, msg):
        if self._has_ref is not None and self._has_ref != has_ref:
            words = ("given", "not given") if self._has_ref else ("not given", "given")
            raise ValueError(msg.format(*words))

    def merge(self, other: "Evaluator") -> "Evaluator":
        """Add the tokens of another evaluator (e.g. of another shard) to this one.

        The report afterwards is bitwise the one a single evaluator fed with both
        streams would give (percentiles included).

        Parameters
        ----------
        other : Evaluator
            Left unchanged.

        Returns
        -------
        Evaluator
            self.

        Raises
        ------
        TypeError
            If `other` is not an Evaluator.
        ValueError
            If one has reference statistics and the other not, or their
            `keep_per_token` differ.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> target = np.array([0, 2, 1])
        >>> a, b, whole = Evaluator(), Evaluator(), Evaluator()
        >>> _ = a.update(logits[:2], target[:2])            # one shard each
        >>> _ = b.update(logits[2:], target[2:])
        >>> _ = whole.update(logits, target)
        >>> a.merge(b) is a, a.report() == whole.report()  # bitwise the one-pass report
        (True, True)
        """
        if not isinstance(other, Evaluator):
            raise TypeError(f"`other` must be an Evaluator, got {type(other).__name__}")
        if other.keep_per_token != self.keep_per_token:
            raise ValueError(f"`other` has keep_per_token={other.keep_per_token} but this "
                             f"evaluator has keep_per_token={self.keep_per_token}")
        if other.tokens == 0:
            return self
        if self._has_ref is not None and self._has_ref != other._has_ref:
            raise ValueError("`other` was fed {} reference logits but this evaluator {}".format(
                *(("with", "without") if other._has_ref else ("without", "with"))))
        for k, s in self._sums.items():
            s.merge(other._sums[k])
        self.tokens += other.tokens
        self.correct += other.correct
        self.same_top += other.same_top
        self._kl.extend(a.copy() for a in other._kl)
        self._dp.extend(a.copy() for a in other._dp)
        self._has_ref = other._has_ref
        return self

    # ---- serialisation
    def state_dict(self) -> Dict[str, Any]:
        """Everything the evaluator holds, as plain NumPy arrays and numbers.

        The dict can be saved with ``np.savez`` (or pickled, or sent between
        processes) and given to `from_state_dict`.  Exact totals are int64 arrays;
        kept per-token values are float32 arrays.

        Returns
        -------
        dict
            Plain ints and bools (``version``, ``tokens``, ...) and NumPy arrays
            (``sum_*``: exact totals; ``kl_values``, ``delta_p_values``).

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]))
        >>> state = ev.state_dict()
        >>> state["tokens"], state["sum_nll"].dtype
        (3, dtype('int64'))
        """
        d: Dict[str, Any] = {
            "version": _STATE_VERSION,
            "ignore_index": self.ignore_index,
            "keep_per_token": self.keep_per_token,
            "axis": self.axis,
            "has_ref": -1 if self._has_ref is None else int(self._has_ref),
            "tokens": self.tokens,
            "correct": self.correct,
            "same_top": self.same_top,
        }
        for k, s in self._sums.items():
            d["sum_" + k] = s.encode()
        d["kl_values"] = _cat(self._kl)
        d["delta_p_values"] = _cat(self._dp)
        return d

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, n_threads: int | None = None) -> "Evaluator":
        """An evaluator restored from `state_dict` (a dict or an ``np.load`` npz file).

        Parameters
        ----------
        state : dict or numpy.lib.npyio.NpzFile
            What `state_dict` returned, possibly saved with ``np.savez`` and loaded.
        n_threads : int, optional
            Threads for later `update` calls (not part of the state).

        Returns
        -------
        Evaluator
            Whose `report` is bitwise the saved evaluator's, and which can be
            updated and merged further.

        Raises
        ------
        ValueError
            If `state` misses entries or has an unknown version.

        Examples
        --------
        >>> import io
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]), ref_logits=logits[::-1])
        >>> buf = io.BytesIO()
        >>> np.savez(buf, **ev.state_dict())
        >>> _ = buf.seek(0)
        >>> back = Evaluator.from_state_dict(np.load(buf))
        >>> back, back.report() == ev.report()
        (<Evaluator: 3 tokens, with reference>, True)
        """
        try:
            version = int(state["version"])
            if version != _STATE_VERSION:
                raise ValueError(f"`state` has version {version}; this fastxent reads version "
                                 f"{_STATE_VERSION}")
            ev = cls(int(state["ignore_index"]), bool(state["keep_per_token"]),
                     axis=int(state["axis"]), n_threads=n_threads)
            has_ref = int(state["has_ref"])
            ev._has_ref = None if has_ref < 0 else bool(has_ref)
            ev.tokens, ev.correct, ev.same_top = (int(state[k]) for k in ("tokens", "correct", "same_top"))
            ev._sums = {k: _ExactSum.decode(state["sum_" + k]) for k in _SUMS + _REF_SUMS}
            kl = np.asarray(state["kl_values"], dtype=np.float32)
            dp = np.asarray(state["delta_p_values"], dtype=np.float32)
        except KeyError as e:
            raise ValueError(f"`state` is not an Evaluator state: no entry {e}") from None
        ev._kl, ev._dp = ([kl.copy()], [dp.copy()]) if kl.size else ([], [])
        return ev

    # ---- report
    def report(self) -> EvaluatorReport:
        """The statistics of every token seen so far.

        Returns
        -------
        dict
            Plain floats and ints (NaN where undefined, e.g. no tokens):

            ``tokens``; ``nll_mean``, ``nll_err``; ``ppl``, ``ppl_err``, ``ppl_ci95``
            (a [low, high] list); ``bits_per_token``, ``bits_per_token_err``;
            ``top1_accuracy``, ``top1_accuracy_err``; ``entropy_mean``.
            With reference logits also: ``ref_nll_mean``, ``ref_ppl``, ``ref_ppl_err``;
            ``nll_correlation`` (of the per-token NLLs of the two models);
            ``ln_ppl_ratio``, ``ln_ppl_ratio_err`` (mean of ``nll - ref_nll``);
            ``ppl_ratio``, ``ppl_ratio_err``; ``kl_mean``, ``kl_err``; ``same_top``,
            ``same_top_err``; ``delta_p_mean``, ``delta_p_err``, ``delta_p_rms``,
            ``delta_p_rms_err`` (delta-p = model minus reference probability of the
            target); and, with `keep_per_token`, ``kl_percentiles`` and
            ``delta_p_percentiles``: dicts with keys ``max``, ``p99.9``, ``p99``,
            ``p95``, ``p90``, ``median``, ``p10``, ``p5``, ``p1``, ``p0.1``, ``min``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]))
        >>> _ = ev.update(logits[:1], np.array([1]))
        >>> rep = ev.report()        # target probabilities 0.7, 0.5, 0.6 and 0.2
        >>> rep["tokens"], rep["top1_accuracy"]
        (4, 0.75)
        >>> round(rep["ppl"], 6) == round(float(np.exp(-np.log([0.7, 0.5, 0.6, 0.2]).mean())), 6)
        True
        >>> Evaluator().report()["ppl"]             # no tokens yet
        nan
        """
        n, s = self.tokens, self._sums
        r: Any = {"tokens": n}  # an EvaluatorReport, filled key by key
        m, se = _mean_se(s["nll"], s["nll2"], n)
        r["nll_mean"], r["nll_err"] = m, se
        ppl = _exp(m)
        r["ppl"], r["ppl_err"] = ppl, ppl * se
        r["ppl_ci95"] = [_exp(m - _Z95 * se), _exp(m + _Z95 * se)]
        r["bits_per_token"], r["bits_per_token_err"] = m / math.log(2), se / math.log(2)
        r["top1_accuracy"], r["top1_accuracy_err"] = _binomial(self.correct, n)
        r["entropy_mean"] = s["entropy"].value() / n if n else math.nan
        if not self._has_ref:
            return r
        rm, rse = _mean_se(s["ref_nll"], s["ref_nll2"], n)
        r["ref_nll_mean"] = rm
        r["ref_ppl"] = _exp(rm)
        r["ref_ppl_err"] = r["ref_ppl"] * rse
        r["nll_correlation"] = _correlation(s["nll"], s["nll2"], s["ref_nll"], s["ref_nll2"],
                                            s["nll_ref_nll"], n)
        dm, dse = _mean_se(s["dnll"], s["dnll2"], n)
        r["ln_ppl_ratio"], r["ln_ppl_ratio_err"] = dm, dse
        ratio = _exp(dm)
        r["ppl_ratio"], r["ppl_ratio_err"] = ratio, ratio * dse
        r["kl_mean"], r["kl_err"] = _mean_se(s["kl"], s["kl2"], n)
        r["same_top"], r["same_top_err"] = _binomial(self.same_top, n)
        r["delta_p_mean"], r["delta_p_err"] = _mean_se(s["dp"], s["dp2"], n)
        msq, msq_se = _mean_se(s["dp2"], s["dp4"], n)
        rms = math.sqrt(msq) if msq >= 0 else math.nan
        r["delta_p_rms"] = rms
        r["delta_p_rms_err"] = 0.5 * msq_se / rms if rms > 0 else math.nan
        if self.keep_per_token and n:
            r["kl_percentiles"] = _percentiles(_cat(self._kl))
            r["delta_p_percentiles"] = _percentiles(_cat(self._dp))
        return r


def _cat(parts) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _correlation(s1, s11, s2, s22, s12, n) -> float:
    f = [x.fraction() for x in (s1, s11, s2, s22, s12)]
    if n < 2 or any(v is None for v in f):
        return math.nan
    a, aa, b, bb, ab = f
    va, vb = n * aa - a * a, n * bb - b * b
    if va <= 0 or vb <= 0:
        return math.nan
    return float(n * ab - a * b) / math.sqrt(float(va) * float(vb))


# --------------------------------------------------------------------------- text report
def _pm(v, e, fmt="{:.6f}", scale=1.0, unit=""):
    return f"{fmt.format(v * scale)} ± {fmt.format(e * scale)}{unit}"


def format_report(report: Mapping[str, Any]) -> str:
    """A report of `Evaluator.report` as readable text with error bars.

    Parameters
    ----------
    report : dict
        As returned by `Evaluator.report` (or `fastxent.reference.evaluate_reference`).

    Returns
    -------
    str
        Several lines, without a trailing newline.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import Evaluator
    >>> from fastxent.evaluate import format_report
    >>> ev = Evaluator()
    >>> _ = ev.update(np.log(np.array([[0.5, 0.5], [0.8, 0.2]])), np.array([0, 0]))
    >>> print(format_report(ev.report()).splitlines()[0])
    tokens                      : 2
    """
    r = report
    lines = [f"tokens                      : {r['tokens']}",
             f"mean NLL                    : {_pm(r['nll_mean'], r['nll_err'])}",
             f"perplexity                  : {_pm(r['ppl'], r['ppl_err'], '{:.4f}')}"
             f"   (95% interval {r['ppl_ci95'][0]:.4f} .. {r['ppl_ci95'][1]:.4f})",
             f"bits per token              : {_pm(r['bits_per_token'], r['bits_per_token_err'], '{:.5f}')}",
             f"top-1 accuracy              : "
             f"{_pm(r['top1_accuracy'], r['top1_accuracy_err'], '{:.3f}', 100, ' %')}",
             f"mean entropy                : {r['entropy_mean']:.6f} nats"]
    if "ref_ppl" in r:
        lines += [
            "",
            f"reference perplexity        : {_pm(r['ref_ppl'], r['ref_ppl_err'], '{:.4f}')}",
            f"Cor(NLL, reference NLL)     : {100 * r['nll_correlation']:.2f} %",
            f"mean ln(PPL / PPL_ref)      : {_pm(r['ln_ppl_ratio'], r['ln_ppl_ratio_err'])}",
            f"PPL / PPL_ref               : {_pm(r['ppl_ratio'], r['ppl_ratio_err'])}",
            f"mean KL(ref || model)       : {_pm(r['kl_mean'], r['kl_err'])}",
        ]
        for key, value in r.get("kl_percentiles", {}).items():
            lines.append(f"  KL {key:<23}: {value:.6f}")
        lines += [
            f"same top token              : {_pm(r['same_top'], r['same_top_err'], '{:.3f}', 100, ' %')}",
            f"mean delta-p                : {_pm(r['delta_p_mean'], r['delta_p_err'], '{:.3f}', 100, ' %')}",
            f"RMS delta-p                 : "
            f"{_pm(r['delta_p_rms'], r['delta_p_rms_err'], '{:.3f}', 100, ' %')}",
        ]
        for key, value in r.get("delta_p_percentiles", {}).items():
            lines.append(f"  delta-p {key:<18}: {100 * value:.3f} %")
    return "\n".join(lines)
