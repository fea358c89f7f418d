"""Per-token statistics: `TokenStats`, `token_stats`, `kl_divergence`, and the kernel pass they
share with `Evaluator.update`.

`token_stats` gives, per position and from one read of each row, the negative log-likelihood,
the entropy of the predicted distribution, whether the top class is the target and the target's
probability; with reference logits also KL(reference || model), whether both top classes agree
and the reference's own NLL and target probability.  `compute` runs that kernel on the inputs
`_validate.prepare` checked.  The public names are re-exported by `fastxent.evaluate`; their
plain NumPy meaning is in `fastxent.reference`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Generic, Literal, Sequence, SupportsIndex, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._arrays import as_rows, row_blocks, to_dtype
from ._validate import Prepared, check_reduction, prepare, prepare_pair

__all__ = ["TokenStats", "token_stats", "kl_divergence"]

_Float = np.floating[Any]
_FloatArray = NDArray[np.floating[Any]]
#: the types of TokenStats' float and bool fields: NumPy arrays from `token_stats`, dask
#: arrays from `fastxent.dask.token_stats`
_F = TypeVar("_F")
_B = TypeVar("_B")

#: the kernel's outputs, in the order of `_core.token_stats`
OUTPUTS = ("nll", "entropy", "p_target", "correct", "kl", "same_top", "ref_nll", "ref_p_target")
BOOL_OUTPUTS = ("correct", "same_top")
REF_OUTPUTS = ("kl", "same_top", "ref_nll", "ref_p_target")    # only with reference logits
_WIDEN_ELEMS = 1 << 20   # elements per side widened at a time when the two dtypes differ


# --------------------------------------------------------------------------- the kernel pass
def compute(p: Prepared, want: Sequence[str]) -> Dict[str, np.ndarray]:
    """The outputs named in `want` (reference ones only with a reference), flat float64 / bool
    arrays of `p.rows` values, from one kernel pass over the rows."""
    if p.ref is None:
        want = [w for w in want if w not in REF_OUTPUTS]
    out = {k: np.empty(p.rows, dtype=bool if k in BOOL_OUTPUTS else np.float64) for k in want}
    if p.rows:
        _run(p, [out.get(k) for k in OUTPUTS])
    return out


def _run(p: Prepared, args: list) -> None:
    """Run the statistics kernel on the logits (and the reference) into the flat outputs `args`.

    The two sides are read by `_arrays.pair_dtype`'s rule: equal dtypes as they are (one
    kernel call, no copy); different ones with the narrower side widened exactly to the
    pair dtype a block of rows at a time (at most `_WIDEN_ELEMS` elements per side), so
    that the wider side is never rounded and no whole-array copy is made.
    """
    if p.base is not None:
        # (mypy cannot count the starred outputs: nll ... ref_p_target, nine in all)
        _core.token_stats(p.base, p.layout, p.t64, p.ignore_index, p.ref_base, p.ref_layout,  # type: ignore[arg-type]
                          *args, p.n_threads)  # type: ignore[call-arg, arg-type]
        return
    assert p.ref is not None
    kdt = p.kdt
    xm, rm = np.moveaxis(p.x, p.ax, -1), np.moveaxis(p.ref, p.ax, -1)
    batch = xm.shape[:-1]
    tb = None if p.t64 is None else p.t64.reshape(batch)
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
        _core.token_stats(base, layout, None if tb is None else tb[idx].reshape(-1), p.ignore_index,  # type: ignore[call-arg]
                          rbase, rlayout, *outs, p.n_threads)  # type: ignore[arg-type]


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
    p = prepare(logits, target, axis=axis, ignore_index=ignore_index, n_threads=n_threads,
                ref_logits=ref_logits)
    out = compute(p, OUTPUTS)
    batch, dt = p.batch, p.rdt

    def shaped(a: np.ndarray, float_field: bool = True) -> Any:
        a = a.reshape(batch)
        if float_field:
            with np.errstate(over="ignore"):  # beyond the float32 range: inf
                a = a.astype(dt, copy=False)
        return a[()] if a.ndim == 0 else a

    kw = {k: shaped(v, k not in BOOL_OUTPUTS) for k, v in out.items()}
    return TokenStats(counted=shaped(p.counted_mask(), False), **kw)


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
    check_reduction(reduction)
    p = prepare_pair(p_logits, q_logits, axis=axis, n_threads=n_threads)
    kl = compute(p, ("kl",))["kl"]
    dt = p.rdt
    if reduction == "none":
        with np.errstate(over="ignore"):
            res = kl.reshape(p.batch).astype(dt, copy=False)
        return res[()] if res.ndim == 0 else res
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.sum(kl, dtype=np.float64)
        if reduction == "mean":
            s = s / np.float64(p.rows)
        return dt.type(s)
