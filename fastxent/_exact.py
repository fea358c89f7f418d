"""Exact sums of float64 values: the totals of `Evaluator` and of `fastxent.dask`'s reductions.

`ExactSum` holds a sum as an integer multiple of 2^-1074 (every finite double is one), so adding
a billion values does not drift, merging partial sums in any grouping gives bitwise the same
total, and the total is rounded once, when it is read.  `encode`/`decode` store it as an int64
array (`Evaluator.state_dict`, the states `fastxent.dask` sends between tasks).
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Optional

import numpy as np

_EBIAS = 1100            # frexp exponents are >= -1073
_SPLIT = 26              # integer mantissas (< 2^53) are summed as 27-bit high + 26-bit low parts
_CHUNK = 1 << 26         # values per bincount: every partial sum stays an integer < 2^53
_DIGIT = 62              # state_dict limbs


class ExactSum:
    """The exact sum of float64 values (an integer multiple of 2^-1074), order independent.

    Stronger than Kahan/Neumaier summation: nothing is rounded until `value`, so a
    billion terms do not drift and merging partial sums in any grouping gives bitwise
    the same total.  Infinities and NaN are counted apart.
    """

    __slots__ = ("k", "nan", "pinf", "ninf")

    def __init__(self) -> None:
        self.k = 0          # the sum is k * 2**-1074
        self.nan = self.pinf = self.ninf = 0

    def add(self, values: Any) -> None:
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

    def merge(self, other: "ExactSum") -> None:
        self.k += other.k
        self.nan += other.nan
        self.pinf += other.pinf
        self.ninf += other.ninf

    def fraction(self) -> Optional[Fraction]:
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
    def decode(cls, a: Any) -> "ExactSum":
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

