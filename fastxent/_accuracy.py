"""The adversarial accuracy catalogue (issue 17) and its exact reference, in units of the contract.

README "Accuracy": the per-row log-sum-exp of 16/32-bit input is within 2 ulp of the float32
rounding of the exact value (flushed terms aside: after the max shift a term below FLT_MIN
counts as 0), except where ``max + log(sum)`` cancels (max < 0 and |lse| < 1), where it is
within ``2 * eps32 * (1 + |max|)`` absolute.  A per-position loss (``cross_entropy``,
``-log_softmax``) is within 2 ulp of its own float32 rounding plus the 2-ulp allowance of the
lse; at the row's only maximum of a row whose ``x - max`` is exact in float32, the value IS
``log1p(rest)`` and is within 2 ulp of it.

`cases(dtype)` returns the catalogue: named cases of rows, each of one family at one vocabulary
size (the lane path V <= 64, the block edges 4096/4097, 262144).  The reference is exact, not
fastxent's: per row, ``L = log1p(fsum([k - 1] + [exp(x - max) for x < max]))`` with ``math.fsum``
(correctly rounded) over float64 exps (< 1 ulp of float64 each) of the values as given, widened
to float64 (so ``x - max`` is exact), and ``lse = max + L``.  `Case.units` gives
the error of a result in the contract's units: <= 2 everywhere is the contract.  The tests
(tests/test_accuracy.py) and ``python -m fastxent selftest`` use them.
"""
from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Dict, List, Optional

import numpy as np

from . import _arrays

FAMILIES = ("random", "dominant", "ties", "integer", "underflow", "exp_tail")
FAMILY_DOC = {
    "random": "3 * standard normal",
    "dominant": "one max (on a 1/256 grid in [-8, -1] or [0, 8], 0 in the first rows), the rest 20-40 below",
    "ties": "2, V/2 or V equal maxima, the rest 0-10 below (1/256 grid)",
    "integer": "integers in [-20, 20] or [-100, 100]",
    "underflow": "-87.34, -104 (and values straddling ln FLT_MIN and ln of the least subnormal) "
                 "mixed with -inf, with a max of 0 or without; one row of -inf only",
    "exp_tail": "a max of 0, ten logits in [-12, -4], the rest -inf (the exp's own accuracy shows)",
}
#: V per family: 2, the lane path's last widths (63, 64), the block path's first (65), the block
#: edges (BLOCK = 4096), and 262144, the largest V of the contract
VOCABS = (2, 10, 63, 64, 65, 1000, 4096, 4097, 262144)
EPS32 = float(np.finfo(np.float32).eps)
FLT_MIN = float(np.finfo(np.float32).tiny)


def _rows_for(vocab: int) -> int:
    """At most ~128k elements per case (2 rows of 262144): the catalogue runs in about a second."""
    return int(min(67, max(2, 131072 // vocab)))


def _grid(v: np.ndarray, step: float = 1 / 256) -> np.ndarray:
    return np.round(v / step) * step


def _family_rows(family: str, vocab: int, rng: np.random.Generator) -> np.ndarray:
    n = _rows_for(vocab)
    if family == "random":
        return rng.standard_normal((n, vocab)) * 3
    if family == "dominant":
        m = _grid(rng.uniform(0, 8, n)) * rng.choice([-1.0, 1.0], n)
        m = np.where((m < 0) & (m > -1), m - 1, m)   # no max in (-1, 0): lse ~ max would cancel
        m[:2] = 0.0                                   # lse itself is the tiny log1p(rest)
        x = m[:, None] - _grid(rng.uniform(20, 40, (n, vocab)))
        x[np.arange(n), rng.integers(0, vocab, n)] = m
        return x
    if family == "ties":
        m = _grid(rng.uniform(-4, 4, n))
        x = m[:, None] - _grid(rng.uniform(0, 10, (n, vocab)))
        x = np.where(x == m[:, None], x - 1 / 256, x)  # exactly k maxima
        for i in range(n):
            k = (2, max(2, vocab // 2), vocab)[i % 3] if vocab > 1 else 1
            x[i, rng.permutation(vocab)[:k]] = m[i]
        return x
    if family == "integer":
        hi = np.where(np.arange(n) % 2 == 0, 20, 100)[:, None]
        return np.floor(rng.uniform(-1, 1, (n, vocab)) * (hi + 1)).clip(-hi, hi)
    if family == "underflow":
        # each row mixes -87.34 and -104 with -inf (a quarter of it); row kinds by i % 3:
        # 0: with a max of 0; 1: without (max -87.34, diffs -16.66 and -inf); 2: a max of 0 and
        # values straddling ln FLT_MIN = -87.3365 and ln(least subnormal) = -103.28
        x = rng.choice([-87.34, -104.0], (n, vocab))
        x[rng.uniform(size=(n, vocab)) < 0.25] = -np.inf
        for i in range(n):
            if i % 3 == 2:
                x[i] = np.where(rng.uniform(size=vocab) < 0.5, rng.uniform(-87.5, -87.2, vocab),
                                rng.uniform(-104.5, -103.0, vocab))
            if i % 3 != 1:
                x[i, rng.integers(0, vocab)] = 0.0
            else:
                x[i, rng.integers(0, vocab)] = -87.34
        x[-1] = -np.inf                              # lse = -inf
        return x
    if family == "exp_tail":
        x = np.full((n, vocab), -np.inf)
        for i in range(n):
            cols = rng.permutation(vocab)[:11]
            x[i, cols[0]] = 0.0
            x[i, cols[1:]] = rng.uniform(-12, -4, cols.size - 1)
        return x
    raise ValueError(f"unknown family {family!r}")


class Case:
    """Rows of one family at one V; ``exact_*`` are the exact per-row values (float64)."""

    def __init__(self, family: str, vocab: int, x: np.ndarray, target: np.ndarray) -> None:
        self.family, self.vocab, self.x, self.target = family, vocab, x, target
        self.name = f"{family}/{vocab}"

    def __repr__(self) -> str:
        return f"Case({self.name}, {self.x.dtype}, {self.x.shape})"

    @cached_property
    def wide(self) -> np.ndarray:
        return self.x.astype(np.float64)

    @cached_property
    def _terms(self) -> Dict[str, np.ndarray]:
        x = self.wide
        m = x.max(axis=1)
        n = x.shape[0]
        L = np.full(n, -np.inf)
        count = np.zeros(n, np.int64)
        flushed = np.zeros(n, np.int64)
        tiny = FLT_MIN if self.x.dtype != np.float64 else float(np.finfo(np.float64).tiny)
        for i in range(n):
            if not np.isfinite(m[i]):
                continue                              # -inf rows (+inf/NaN: none here)
            row = x[i]
            at = row == m[i]
            count[i] = int(at.sum())
            e = np.exp(row[~at] - m[i])               # x - max is exact in float64
            flushed[i] = int(np.count_nonzero((e < tiny) & (e > 0)))
            L[i] = math.log1p(math.fsum([float(count[i] - 1)] + e.tolist()))
        with np.errstate(invalid="ignore"):
            lse = np.where(np.isfinite(m), m + L, m)
        x32 = self.x.astype(np.float32)
        m32 = x32.max(axis=1)
        with np.errstate(invalid="ignore"):
            shift_exact = np.all((np.isinf(x) & np.isinf(m[:, None]))
                                 | ((x32 - m32[:, None]).astype(np.float64) == x - m[:, None]), axis=1)
        return dict(max=m, L=L, lse=lse, count=count, flushed=flushed, shift_exact=shift_exact)

    @property
    def exact_max(self) -> np.ndarray:
        return self._terms["max"]

    @property
    def exact_lse(self) -> np.ndarray:
        return self._terms["lse"]

    @property
    def exact_log1p(self) -> np.ndarray:
        """L = lse - max, the log of the shifted sum."""
        return self._terms["L"]

    @cached_property
    def exact_log_softmax(self) -> np.ndarray:
        t = self._terms
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(t["max"])[:, None],
                            (self.wide - t["max"][:, None]) - t["L"][:, None], np.nan)

    @cached_property
    def exact_loss(self) -> np.ndarray:
        """The loss of `target`, per row."""
        return -self.exact_log_softmax[np.arange(self.x.shape[0]), self.target]

    @cached_property
    def cancels(self) -> np.ndarray:
        """The rows where the contract is absolute (max < 0 and |lse| < 1)."""
        t = self._terms
        with np.errstate(invalid="ignore"):
            return np.isfinite(t["max"]) & (t["max"] < 0) & (np.abs(t["lse"]) < 1)

    def at_max(self, cols: np.ndarray) -> np.ndarray:
        """Whether column `cols` (per row, or (rows, V) for every column) is the row's only
        maximum in a row whose ``x - max`` is exact in float32."""
        t = self._terms
        cols = np.asarray(cols)
        shape = (-1,) + (1,) * (cols.ndim - 1)
        rows = np.arange(self.x.shape[0]).reshape(shape)
        return ((self.wide[rows, cols] == t["max"].reshape(shape))
                & (t["count"] == 1).reshape(shape) & t["shift_exact"].reshape(shape))

    @cached_property
    def _expected(self) -> Dict[str, tuple]:
        """Per op: the value to compare with, the contract's unit and the absolute allowance
        (flushed terms), as arrays of the result's shape."""
        t = self._terms
        lse, m = t["lse"], t["max"]
        allow = t["flushed"] * FLT_MIN
        lse_unit = np.where(self.cancels, EPS32 * (1 + np.abs(m)), _ulp32(lse))
        out = {"logsumexp": (np.where(self.cancels, lse, _round32(lse)), lse_unit, allow)}
        cols = np.broadcast_to(np.arange(self.vocab), self.x.shape)
        for op, exact, where in (("cross_entropy", self.exact_loss, self.at_max(self.target)),
                                 ("log_softmax", self.exact_log_softmax, self.at_max(cols))):
            shape = (-1,) + (1,) * (exact.ndim - 1)
            unit = _ulp32(exact) + np.where(where, 0.0, _ulp32(lse).reshape(shape))
            out[op] = (_round32(exact), unit, np.broadcast_to(allow.reshape(shape), exact.shape))
        return out

    def units(self, op: str, got: Any) -> np.ndarray:
        """The error of `got` (fastxent's ``logsumexp(x, axis=-1)``, ``cross_entropy(x, target,
        reduction="none")`` or ``log_softmax(x, axis=-1)`` of this case) in the contract's
        units: <= 2 is the contract.

        logsumexp: ulp of the float32 rounding of the exact value, beyond the flushed terms'
        allowance (each < FLT_MIN); where max + log(sum) cancels, eps32 * (1 + |max|) absolute.
        The loss and log_softmax: from the float32 rounding of the exact value, in ulp(value) +
        ulp(lse); at the row's only maximum of a row whose ``x - max`` is exact in float32, in
        ulp(value) alone.  0 where both are the same infinity or both NaN (a row of -inf),
        inf where only one is."""
        want, unit, allow = self._expected[op]
        got = np.asarray(got, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.maximum(np.abs(got - want) - allow, 0.0) / unit
        bad = ~np.isfinite(err)
        if bad.any():
            same = (got == want) | (np.isnan(got) & np.isnan(want))
            err = np.where(bad, np.where(same, 0.0, np.inf), err)
        return err


def _round32(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(v, np.float64).astype(np.float32).astype(np.float64)


def _ulp32(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.spacing(np.abs(np.asarray(v, np.float64).astype(np.float32))).astype(np.float64)


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        dt = _arrays._bfloat16_dtype()
        if dt is _arrays.BF16_RAW:
            raise ImportError("bfloat16 cases need ml_dtypes")
        return dt
    return np.dtype(name)


def cases(dtype: str = "float32", families: Any = FAMILIES, vocabs: Any = VOCABS,
          seed: int = 17) -> List[Case]:
    """The catalogue in `dtype` (float32, float16, bfloat16 with ml_dtypes, float64): one
    case per family and V, seeded (the same values on every call and machine).  Targets: the
    first maximum on even rows, a random finite column on odd rows."""
    dt = _dtype(dtype)
    out = []
    for fi, family in enumerate(families):
        for vocab in vocabs:
            rng = np.random.default_rng([seed, fi, vocab])
            x = _family_rows(family, vocab, rng).astype(dt)
            wide = x.astype(np.float64)
            target = np.argmax(wide, axis=1)
            for i in range(1, x.shape[0], 2):
                finite = np.flatnonzero(np.isfinite(wide[i]))
                if finite.size:
                    target[i] = finite[rng.integers(0, finite.size)]
            out.append(Case(family, vocab, np.ascontiguousarray(x), target.astype(np.int64)))
    return out
