#!/usr/bin/env python3
"""Golden digests: every public function's output bits over a fixed grid (issue 16).

The restructuring of the kernel core must not move any number.  This tool computes every
public function of fastxent (`fastxent.__all__`'s numeric functions, the `Evaluator`, the
`fastxent eval` CLI and `fastxent.dask` when dask is installed) over a fixed grid of inputs --
dtypes x class counts (1-262145: the lane, run, block, pair-block, split and stored-exp edges
of src_c, each +-1) x options x layouts x thread counts -- under every instruction set this
CPU runs, and compares a digest of each output with the one committed in
``tests/data/golden.json``:

    python tools/golden.py record              # (re)write the golden file: on purpose only
    python tools/golden.py check               # compare; exit 1 and name what changed (CI)
    python tools/golden.py check --quick       # one case in four (--every N: one in N)
    python tools/golden.py check -k 'softmax/float16' --ref        # + ulp against reference
    python tools/golden.py dump old.npz -k 'ce_grad/bfloat16'      # values of the cases, to
    python tools/golden.py check -k 'ce_grad/bfloat16' --against old.npz  # compare builds
    python tools/golden.py isas --every 4      # ulp of every ISA against the reference
    python tools/golden.py list                # the case names

A digest is the first 16 hex digits of the sha256 of each output's dtype, shape and bytes
(NaN canonicalised: its sign and payload are not compared; -0.0 and +0.0 are); a case's
outputs are digested in a fixed order.  Each case runs with n_threads = 1, 2, 3 and None
(the default): every thread count must give the digest of n_threads=1 (fastxent promises
results that do not depend on the thread count), otherwise check fails and says which.
The golden file holds, per case, its output summary and one digest per ISA; a machine
without an ISA checks the others and says which it skipped.

Inputs are made by this file alone (PCG64's raw stream, stable across NumPy versions by
NEP 19, turned into floats by exact arithmetic; bfloat16 rounded here), never by the code
under test.  Rows of every case include the adversarial ones: a dominant logit (the others
underflow), equal maxima, -inf entries, an all -inf row, +inf, NaN, a constant row, large
and tiny spreads, and -inf at the target.

The digests depend on the toolchain as well as on the code: the compiler (FMA contraction),
libm and NumPy (whose own SIMD exp/log, chosen by CPU, are used after some kernels).  The
golden file records that environment; check prints what differs from it when a case fails.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

# Idle OpenMP threads sleep instead of spinning: on a shared machine a spinning team of 2
# threads on 2 busy cores made each threaded call ~20 ms (8x the whole record's time).
# How threads wait changes no result.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
import fastxent  # noqa: E402

try:
    import ml_dtypes
    BF16: Optional[np.dtype] = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a test dependency
    ml_dtypes = None
    BF16 = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "data", "golden.json")
FORMAT = 1
THREADS: Tuple[Optional[int], ...] = (1, 2, 3, None)
DTYPES = ("float32", "float64", "float16", "bfloat16")

# Class counts: src_c's edges.  FX_SMALL_COLS = 64 (the small-row lane path), runs of 16
# vectors and vmax's 4 vectors (64/128/256 float32 lanes per ISA), FX_PAIR_BLOCK = 2048
# (token_stats), FX_BLOCK = 4096 (blocks), 2 FX_BLOCK = 8192 (the split path of rows fewer
# than the threads), FX_MAX_STORED_BLOCKS * FX_BLOCK = 262144 (softmax and the gradient
# store their exps up to there: SPLIT_V).
SWEEP_V = (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129,
           255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048, 2049,
           4095, 4096, 4097, 8191, 8192, 8193, 9000)
LAYOUT_V = (7, 64, 65, 4097)
OPTION_V = (1, 2, 17, 64, 65, 4096, 4097)
SPLIT_V = (8191, 8192, 8193, 16385, 65537, 262143, 262144, 262145)
MIN_ELEMENTS = 36000  # rows * classes above fx_threads_for's 32768: the threads really run
IGNORE = -100


# --------------------------------------------------------------------------- inputs
def _seed(key: str) -> int:
    return zlib.crc32(key.encode())


def _uniform(key: str, n: int) -> np.ndarray:
    """n doubles in [0, 1) from PCG64's raw stream (NEP 19: stable across NumPy versions)."""
    raw = np.random.PCG64(_seed(key)).random_raw(n)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def _ints(key: str, n: int, k: int) -> np.ndarray:
    return (np.random.PCG64(_seed(key)).random_raw(n) % np.uint64(k)).astype(np.int64)


def _normal(key: str, shape: Tuple[int, ...], scale: float) -> np.ndarray:
    """Irwin-Hall(4) standardised (mean 0, sd 1, |z| <= 3.5) times scale; a new array."""
    return _normal_cached(key, tuple(shape), scale).copy()


@functools.lru_cache(maxsize=8)
def _normal_cached(key: str, shape: Tuple[int, ...], scale: float) -> np.ndarray:
    n = int(np.prod(shape))
    u = _uniform(key, 4 * n).reshape(4, n)
    z = ((u[0] + u[1] + u[2] + u[3] - 2.0) * (scale * math.sqrt(3.0))).reshape(shape)
    z.flags.writeable = False
    return z


def _bf16_bits(f32: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (finite values, infinities, the default NaN)."""
    u = f32.view(np.uint32).astype(np.uint64)
    return ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(np.uint16)


def cast(x64: np.ndarray, dtype: str) -> np.ndarray:
    """float64 -> dtype by IEEE round to nearest (via float32 for the 16-bit types)."""
    if dtype == "float64":
        return x64.copy()
    f32 = x64.astype(np.float32)
    if dtype == "float32":
        return f32
    if dtype == "float16":
        return f32.astype(np.float16)
    if BF16 is None:
        raise RuntimeError("bfloat16 cases need ml_dtypes (pip install ml_dtypes)")
    return _bf16_bits(f32).view(BF16)


#: the adversarial rows whose losses stay finite (for totals: a NaN or inf total hides the rest)
FINITE_KINDS = (0, 1, 6, 7, 8)
#: ... and small enough for exp(mean loss) (perplexity) to stay finite
MILD_KINDS = (0, 1, 6, 8)
#: ... and no element dominating all others (reductions over the whole array)
FLAT_KINDS = (1, 6, 8)


def _adversarial(x: np.ndarray, t: Optional[np.ndarray], key: str, kinds: Sequence[int]) -> None:
    """Overwrite a few rows of x (rows x V, float64) with hard cases, in place."""
    rows, v = x.shape
    picks = sorted({(k * 7919 + _seed(key) % 97) % rows for k in range(len(kinds))})
    for kind, r in zip(kinds, picks):
        row = x[r]
        tc = int(t[r]) if t is not None and 0 <= t[r] < v else 0
        if kind == 0:    # one dominant logit, at the target: the others' exps underflow
            row[tc] = row.max() + 100.0
        elif kind == 1:  # equal maxima (the first, the middle, the last)
            row[[0, v // 2, v - 1]] = np.floor(row.max()) + 1.0
        elif kind == 2:  # -inf entries (one class in three), the target kept finite
            row[::3] = -np.inf
            row[tc] = 0.5
        elif kind == 3:  # a row of -inf
            row[:] = -np.inf
        elif kind == 4:  # +inf
            row[v // 3] = np.inf
        elif kind == 5:  # NaN
            row[(2 * v) // 3] = np.nan
        elif kind == 6:  # constant
            row[:] = 0.0
        elif kind == 7:  # large spread (|x| < 25000: float16 holds 65504)
            row *= 2000.0
        elif kind == 8:  # tiny spread: near uniform
            row *= 1e-3
        else:            # -inf at the target: an infinite loss
            row[tc] = -np.inf


def make_logits(key: str, rows: int, v: int, dtype: str, t: Optional[np.ndarray] = None,
                scale: float = 3.0, kinds: Sequence[int] = tuple(range(10))) -> np.ndarray:
    """Logits with the adversarial rows of `kinds` (every kind by default, FINITE_KINDS for
    inputs of reductions)."""
    x = _normal(key, (rows, v), scale)
    _adversarial(x, t, key, kinds)
    return cast(x, dtype)


def make_targets(key: str, rows: int, v: int) -> np.ndarray:
    t = _ints(key + "/t", rows, v)
    t[_ints(key + "/ign", rows, 16) == 0] = IGNORE
    return t


def make_prob(key: str, rows: int, v: int, dtype: str) -> np.ndarray:
    """Probability rows: u^4 (some 0, column 0 never), over their sum (added in order).

    Only correctly rounded operations (no exp, no SIMD-dispatched sums whose order may
    depend on the CPU), so that the same bits come out on every machine."""
    u = _uniform(key + "/p", rows * v).reshape(rows, v) + 0.05
    p = (u * u) * (u * u)
    p[_ints(key + "/pz", rows * v, 5).reshape(rows, v) == 0] = 0.0  # zero probabilities
    p[:, 0] += 0.01
    return cast(p / np.cumsum(p, axis=1)[:, -1:], dtype)


def make_weight(key: str, v: int) -> np.ndarray:
    w = 0.25 + _uniform(key + "/w", v) * 1.5
    if v > 2:
        w[1] = 0.0  # a class of weight 0
    return w


def rows_for(v: int, minimum: int = 13) -> int:
    """Rows so that rows * v passes the threading threshold, not a multiple of any lane count."""
    r = max(minimum, -(-MIN_ELEMENTS // v))
    return r + (0 if r % 2 else 1) if r % 16 else r + 3


# --------------------------------------------------------------------------- layouts
def with_layout(x2: np.ndarray, layout: str) -> Tuple[np.ndarray, int, Tuple[int, ...]]:
    """(array, class axis, batch shape) holding the rows of x2 (rows x V) in `layout`.

    Row r of x2 is position r of the batch in C order, so one target array serves all."""
    rows, v = x2.shape
    if layout == "C":
        return x2, -1, (rows,)
    if layout == "F":
        return np.asfortranarray(x2), -1, (rows,)
    if layout == "strided":  # every other row of a wider buffer, offset by 3 columns
        buf = np.zeros((2 * rows, v + 5), dtype=x2.dtype)
        buf[::2, 3:3 + v] = x2
        return buf[::2, 3:3 + v], -1, (rows,)
    if layout == "reversed":  # negative row stride
        buf = np.ascontiguousarray(x2[::-1])
        return buf[::-1], -1, (rows,)
    if layout == "T":  # classes first, axis=0: the transposed view (classes still contiguous)
        return x2.T, 0, (rows,)
    if layout == "T_copy":  # (V, rows) C-contiguous, axis=0: classes strided
        return np.ascontiguousarray(x2.T), 0, (rows,)
    b = 3 if rows % 3 == 0 else (2 if rows % 2 == 0 else 1)
    if layout == "3d":
        return x2.reshape(b, rows // b, v), -1, (b, rows // b)
    if layout == "3d_shift":  # logits[:, :-1, :] of (b, T + 1, V): two row levels, no copy
        t = rows // b
        buf = np.zeros((b, t + 1, v), dtype=x2.dtype)
        buf[:, :t, :] = x2.reshape(b, t, v)
        return buf[:, :-1, :], -1, (b, t)
    if layout == "3d_mid":  # (b, V, T), axis=1
        t = rows // b
        return np.ascontiguousarray(x2.reshape(b, t, v).transpose(0, 2, 1)), 1, (b, t)
    raise ValueError(layout)


# --------------------------------------------------------------------------- cases
class Case:
    """One call: `run(module, n_threads)` returns its outputs; `module` is fastxent or
    fastxent.reference (None where the reference has no such function)."""

    def __init__(self, name: str, build: Callable[[], Callable[[Any, Optional[int]], Any]],
                 has_ref: bool = True):
        self.name = name
        self._build = build
        self.has_ref = has_ref

    def runner(self) -> Callable[[Any, Optional[int]], Any]:
        return self._build()


def _fields(ts: Any) -> Dict[str, Any]:
    return ts.as_dict() if hasattr(ts, "as_dict") else dict(ts)


def _ops(d: Dict[str, np.ndarray], ax: int, batch: Tuple[int, ...]
         ) -> Dict[str, Callable[[Any, Optional[int]], Any]]:
    """The operations of the sweep over the inputs `d` (see `_inputs`): x has every adversarial
    row, xf the finite ones (for totals), xm the mild ones (perplexity); y: reference logits."""
    x, xf, xm, y, w, prob = d["x"], d["xf"], d["xm"], d["y"], d["w"], d["p"]
    tb = d["t"].reshape(batch)
    return {
        "lse": lambda m, nt: m.logsumexp(x, axis=ax, n_threads=nt),
        "softmax": lambda m, nt: m.softmax(x, axis=ax, n_threads=nt),
        "log_softmax": lambda m, nt: m.log_softmax(x, axis=ax, n_threads=nt),
        "ce_none": lambda m, nt: m.cross_entropy(x, tb, axis=ax, reduction="none", n_threads=nt),
        "ce_sum": lambda m, nt: m.cross_entropy(xf, tb, axis=ax, reduction="sum", n_threads=nt),
        "ce_mean": lambda m, nt: m.cross_entropy(xf, tb, axis=ax, n_threads=nt),
        "ce_opts": lambda m, nt: m.cross_entropy(x, tb, axis=ax, weight=w, label_smoothing=0.1,
                                                 reduction="none", n_threads=nt),
        "ce_grad": lambda m, nt: m.cross_entropy(xf, tb, axis=ax, return_grad=True, n_threads=nt),
        "ce_grad_none": lambda m, nt: m.cross_entropy(x, tb, axis=ax, return_grad=True, reduction="none",
                                                      n_threads=nt),
        "ce_full": lambda m, nt: m.cross_entropy(xf, tb, axis=ax, weight=w, label_smoothing=0.05,
                                                 z_loss=1e-3, softcap=20.0, return_z_loss=True,
                                                 return_grad=True, reduction="sum", n_threads=nt),
        "ce_prob": lambda m, nt: m.cross_entropy(xf, prob, axis=ax, return_grad=True, n_threads=nt),
        "ppl": lambda m, nt: m.perplexity(xm, tb, axis=ax, n_threads=nt),
        "token_stats": lambda m, nt: _fields(m.token_stats(x, tb, ref_logits=y, axis=ax, n_threads=nt)),
        "kl": lambda m, nt: m.kl_divergence(y, x, axis=ax, n_threads=nt),
    }


@functools.lru_cache(maxsize=4)
def _inputs(key: str, rows: int, v: int, dtype: str, ref_dtype: Optional[str] = None
            ) -> Dict[str, np.ndarray]:
    """The inputs of the cases of one key, read-only (shared by the cases): logits x (every
    adversarial row), xf (FINITE_KINDS), xm (MILD_KINDS), xflat (FLAT_KINDS); targets t; reference
    logits y, ym (MILD_KINDS); class weights w; probability targets p."""
    t = make_targets(key, rows, v)
    ry = ref_dtype or dtype
    d = {"t": t, "x": make_logits(key, rows, v, dtype, t),
         "xf": make_logits(key, rows, v, dtype, t, kinds=FINITE_KINDS),
         "xm": make_logits(key, rows, v, dtype, t, kinds=MILD_KINDS),
         "xflat": make_logits(key, rows, v, dtype, t, kinds=FLAT_KINDS),
         "y": make_logits(key + "/ref", rows, v, ry, t, scale=2.5),
         "ym": make_logits(key + "/ref", rows, v, ry, t, scale=2.5, kinds=MILD_KINDS),
         "w": make_weight(key, v), "p": make_prob(key, rows, v, dtype)}
    for a in d.values():
        a.flags.writeable = False
    return d


def _sweep_case(family: str, op: str, dtype: str, v: int, rows: int, layout: str) -> Case:
    def build():
        key = f"{dtype}/{v}/{rows}"  # the same inputs for every op and layout
        d = dict(_inputs(key, rows, v, dtype))
        for name in ("x", "xf", "xm", "y", "p"):
            d[name], ax, batch = with_layout(d[name], layout)
        return _ops(d, ax, batch)[op]
    return Case(f"{family}/{op}/{dtype}/V{v}/R{rows}/{layout}", build)


SWEEP_OPS = ("lse", "softmax", "log_softmax", "ce_none", "ce_sum", "ce_mean", "ce_opts", "ce_grad",
             "ce_grad_none", "ce_full", "ce_prob", "ppl", "token_stats", "kl")


def sweep_cases() -> Iterator[Case]:
    for dtype in DTYPES:
        for v in SWEEP_V:
            for op in SWEEP_OPS:
                yield _sweep_case("sweep", op, dtype, v, rows_for(v), "C")


LAYOUT_OPS = ("lse", "softmax", "log_softmax", "ce_none", "ce_grad_none", "ce_full", "ce_prob", "ppl",
              "token_stats", "kl")


def layout_cases() -> Iterator[Case]:
    for dtype in DTYPES:
        for v in LAYOUT_V:
            rows = rows_for(v, minimum=30) // 6 * 6  # 3-d batches of 2 and 3
            for layout in ("F", "strided", "reversed", "T", "T_copy", "3d", "3d_shift", "3d_mid"):
                for op in LAYOUT_OPS:
                    yield _sweep_case("layout", op, dtype, v, rows, layout)


def split_cases() -> Iterator[Case]:
    """Rows fewer than the threads (the split path from 2 FX_BLOCK) and the stored-exp limit."""
    ops = ("lse", "softmax", "log_softmax", "ce_none", "ce_grad", "ce_grad_none", "ce_full", "token_stats", "kl")
    for dtype in DTYPES:
        for v in SPLIT_V:
            for rows in (1, 2):
                for op in ops:
                    yield _split_case(op, dtype, v, rows)


def _split_case(op: str, dtype: str, v: int, rows: int) -> Case:
    def build():
        key = f"split/{dtype}/{v}/{rows}"
        t = _ints(key + "/t", rows, v)
        x = cast(_normal(key, (rows, v), 3.0), dtype)
        if rows == 2:  # the second row: +inf-free adversarial blocks (a dominant logit late,
            xr = _normal(key + "/2", (1, v), 3.0)[0]  # an -inf block, equal maxima across blocks)
            xr[v - 2] = 60.0
            xr[4096:min(v, 8192)] = -np.inf
            xr[[0, v // 2]] = 60.0
            x[1] = cast(xr, dtype)
        y = cast(_normal(key + "/ref", (rows, v), 2.5), dtype)
        d = {"x": x, "xf": x, "xm": x, "y": y, "t": t, "w": make_weight(key, v),
             "p": make_prob(key, rows, v, dtype)}
        return _ops(d, -1, (rows,))[op]
    return Case(f"split/{op}/{dtype}/V{v}/R{rows}", build)


def _lse_variants(x, xflat, b_row, b_full):
    """x: every adversarial row (per-row outputs); xflat: FLAT_KINDS, for reductions across rows."""
    x3 = xflat.reshape(6, -1, xflat.shape[-1])
    return {
        "all": lambda m, nt: m.logsumexp(xflat, n_threads=nt),
        "keepdims": lambda m, nt: m.logsumexp(x, axis=-1, keepdims=True, n_threads=nt),
        "axis0": lambda m, nt: m.logsumexp(xflat, axis=0, n_threads=nt),
        "axes01": lambda m, nt: m.logsumexp(x3, axis=(0, 1), n_threads=nt),
        "b_row": lambda m, nt: m.logsumexp(x, axis=-1, b=b_row, n_threads=nt),
        "b_sign": lambda m, nt: m.logsumexp(x, axis=-1, b=b_full, return_sign=True, n_threads=nt),
        "b_all_sign": lambda m, nt: m.logsumexp(xflat, b=b_full, return_sign=True, n_threads=nt),
        "softmax_all": lambda m, nt: m.softmax(xflat, n_threads=nt),
        "log_softmax_axes": lambda m, nt: m.log_softmax(x3, axis=(1, 2), n_threads=nt),
        "softmax_axis0": lambda m, nt: m.softmax(xflat, axis=0, n_threads=nt),
    }


SPECIAL_OPS = ("all", "keepdims", "axis0", "axes01", "b_row", "b_sign", "b_all_sign", "softmax_all",
               "log_softmax_axes", "softmax_axis0")


def special_cases() -> Iterator[Case]:
    for dtype in DTYPES:
        for v in (1, 7, 64, 65, 4097, 9000):
            rows = rows_for(v) // 6 * 6
            for op in SPECIAL_OPS:
                yield _special_case(op, dtype, v, rows)


def _special_case(op: str, dtype: str, v: int, rows: int) -> Case:
    def build():
        key = f"special/{dtype}/{v}/{rows}"
        d = _inputs(key, rows, v, dtype)
        b_row = _uniform(key + "/b", v) * 2.0 - 0.5
        b_row[1::5] = 0.0
        b_full = (_uniform(key + "/bf", rows * v) * 2.0 - 0.6).reshape(rows, v)
        b_full[:, ::7] = 0.0
        return _lse_variants(d["x"], d["xflat"], b_row, b_full)[op]
    return Case(f"special/{op}/{dtype}/V{v}/R{rows}", build)


def _option_variants(d: Dict[str, np.ndarray], v: int):
    """x: every adversarial row, for per-position outputs; xf: the finite ones, for totals;
    xm: the mild ones (perplexity)."""
    x, xf, xm, t, w, prob = d["x"], d["xf"], d["xm"], d["t"], d["w"], d["p"]
    t_none = np.full_like(t, IGNORE)
    t0 = t.copy()
    t0[t0 == IGNORE] = 0
    return {
        "weight_mean": lambda m, nt: m.cross_entropy(xf, t, weight=w, n_threads=nt),
        "weight_sum": lambda m, nt: m.cross_entropy(xf, t, weight=w, reduction="sum", n_threads=nt),
        "weight_none": lambda m, nt: m.cross_entropy(x, t, weight=w, reduction="none", n_threads=nt),
        "smooth_mean": lambda m, nt: m.cross_entropy(xf, t, label_smoothing=0.2, n_threads=nt),
        "smooth_one": lambda m, nt: m.cross_entropy(x, t, label_smoothing=1.0, reduction="none", n_threads=nt),
        "zloss": lambda m, nt: m.cross_entropy(xf, t, z_loss=1e-4, return_z_loss=True, n_threads=nt),
        "zloss_none": lambda m, nt: m.cross_entropy(x, t, z_loss=0.5, return_z_loss=True,
                                                    reduction="none", n_threads=nt),
        "softcap": lambda m, nt: m.cross_entropy(x, t, softcap=5.0, reduction="none", n_threads=nt),
        "softcap_grad": lambda m, nt: m.cross_entropy(xf, t, softcap=30.0, return_grad=True, n_threads=nt),
        "ignore0": lambda m, nt: m.cross_entropy(x, t0, ignore_index=0, reduction="none", n_threads=nt),
        "ignore0_grad": lambda m, nt: m.cross_entropy(xf, t0, ignore_index=0, return_grad=True, n_threads=nt),
        "all_ignored": lambda m, nt: m.cross_entropy(x, t_none, return_grad=True, n_threads=nt),
        "grad_none": lambda m, nt: m.cross_entropy(x, t, return_grad=True, reduction="none", n_threads=nt),
        "grad_sum_w": lambda m, nt: m.cross_entropy(xf, t, weight=w, return_grad=True, reduction="sum",
                                                    n_threads=nt),
        "grad_inplace": lambda m, nt: _inplace(m, xf, t, nt),
        "prob_smooth": lambda m, nt: m.cross_entropy(x, prob, label_smoothing=0.1, weight=w,
                                                     reduction="none", n_threads=nt),
        "prob_grad_sum": lambda m, nt: m.cross_entropy(xf, prob, z_loss=1e-3, return_grad=True,
                                                       reduction="sum", n_threads=nt),
        "ppl_seq": lambda m, nt: m.perplexity(xm.reshape(2, -1, v), t.reshape(2, -1), per_sequence=True,
                                              n_threads=nt),
        "ts_noref": lambda m, nt: _fields(m.token_stats(x, t, n_threads=nt)),
        "kl_sum": lambda m, nt: m.kl_divergence(xf[::-1], xf, reduction="sum", n_threads=nt),
        "kl_mean": lambda m, nt: m.kl_divergence(xf[::-1], xf, reduction="mean", n_threads=nt),
    }


def _inplace(m, x, t, nt):
    if x.dtype not in (np.float32, np.float64):
        return m.cross_entropy(x, t, return_grad=True, n_threads=nt)
    buf = x.copy()  # the gradient overwrites the logits
    loss, g = m.cross_entropy(buf, t, return_grad=True, grad_out=buf, n_threads=nt)
    return loss, g


OPTION_OPS = ("weight_mean", "weight_sum", "weight_none", "smooth_mean", "smooth_one", "zloss", "zloss_none", "softcap",
              "softcap_grad", "ignore0", "ignore0_grad", "all_ignored", "grad_none", "grad_sum_w",
              "grad_inplace", "prob_smooth", "prob_grad_sum", "ppl_seq", "ts_noref", "kl_sum", "kl_mean")


def option_cases() -> Iterator[Case]:
    for dtype in DTYPES:
        for v in OPTION_V:
            rows = rows_for(v) // 2 * 2
            for op in OPTION_OPS:
                yield _option_case(op, dtype, v, rows)


def _option_case(op: str, dtype: str, v: int, rows: int) -> Case:
    def build():
        return _option_variants(_inputs(f"options/{dtype}/{v}/{rows}", rows, v, dtype), v)[op]
    return Case(f"options/{op}/{dtype}/V{v}/R{rows}", build)


def mixed_cases() -> Iterator[Case]:
    """token_stats / kl_divergence of two dtypes (the pair rule: each side in its own precision)
    and the many-rows sums (FX_SUM_SLAB = 65536 rows per slab)."""
    pairs = [("float32", "bfloat16"), ("bfloat16", "float32"), ("float16", "float64"),
             ("float64", "float32"), ("bfloat16", "float16")]
    for dx, dy in pairs:
        for v in (7, 65, 4097):
            rows = rows_for(v)
            for op in ("token_stats", "kl"):
                yield _mixed_case(op, dx, dy, v, rows)
    for dtype in DTYPES:
        for op in ("ce_sum", "ce_mean", "ppl", "ce_full", "kl"):
            yield _sweep_case("slab", op, dtype, 2, 65536 * 2 + 7, "C")


def _mixed_case(op: str, dx: str, dy: str, v: int, rows: int) -> Case:
    def build():
        return _ops(_inputs(f"mixed/{dx}/{dy}/{v}", rows, v, dx, dy), -1, (rows,))[op]
    return Case(f"mixed/{op}/{dx}+{dy}/V{v}/R{rows}", build)


def _report(ev: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"report": ev.report()}
    out.update({"state/" + k: v for k, v in ev.state_dict().items()})
    return out


def evaluator_cases() -> Iterator[Case]:
    for dtype in DTYPES:
        for v in (7, 65, 4097):
            for ref in (False, True):
                yield _evaluator_case(dtype, v, ref)


def _evaluator_case(dtype: str, v: int, ref: bool) -> Case:
    def build():
        rows = rows_for(v)
        d = _inputs(f"eval/{dtype}/{v}", rows, v, dtype)
        x, t, y = d["xm"], d["t"], d["ym"]
        cuts = [0, rows // 3, rows // 3 + 1, rows]

        def run(m, nt):
            ev = m.Evaluator(n_threads=nt)
            other = m.Evaluator(n_threads=nt)
            for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                (ev if i < 2 else other).update(x[a:b], t[a:b], y[a:b] if ref else None)
            return _report(ev.merge(other))
        return run
    return Case(f"evaluator/{dtype}/V{v}/{'ref' if ref else 'noref'}", build, has_ref=False)


def cli_cases() -> Iterator[Case]:
    for dtype, ref, shift in (("float32", True, False), ("bfloat16", False, True), ("float16", True, True)):
        yield _cli_case(dtype, ref, shift)


def _cli_case(dtype: str, ref: bool, shift: bool) -> Case:
    def build():
        v, b, tt = 65, 6, 1003
        t = make_targets(f"cli/{dtype}", b * tt, v)
        x = make_logits(f"cli/{dtype}", b * tt, v, dtype, t, kinds=MILD_KINDS).reshape(b, tt, v)
        y = make_logits(f"cli/{dtype}/ref", b * tt, v, dtype, t, kinds=MILD_KINDS).reshape(b, tt, v)
        tmp = tempfile.mkdtemp(prefix="fastxent-golden-")
        paths = {n: os.path.join(tmp, n + ".npy") for n in ("x", "t", "y", "out")}
        np.save(paths["x"], x)
        np.save(paths["t"], t.reshape(b, tt))
        np.save(paths["y"], y)

        def run(m, nt):
            from fastxent.__main__ import main
            argv = ["eval", "--logits", paths["x"], "--targets", paths["t"], "--json", paths["out"],
                    "--quiet", "--chunk-rows", "2500"]
            if ref:
                argv += ["--ref-logits", paths["y"]]
            if shift:
                argv.append("--shift")
            if nt is not None:
                argv += ["--threads", str(nt)]
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rc = main(argv)
            with open(paths["out"]) as f:
                payload = json.load(f)
            return {"rc": rc, "positions": payload["positions"], "report": payload["report"]}
        return run
    return Case(f"cli/eval/{dtype}/{'ref' if ref else 'noref'}/{'shift' if shift else 'noshift'}", build,
                has_ref=False)


def dask_cases() -> Iterator[Case]:
    try:
        import dask.array  # noqa: F401
    except ImportError:
        return
    for dtype in ("float32", "bfloat16", "float64"):
        for op in ("ce_mean", "ce_opts", "ce_none", "ppl", "ppl_seq", "token_stats", "evaluate"):
            yield _dask_case(op, dtype)


def _dask_case(op: str, dtype: str) -> Case:
    def build():
        import dask
        import dask.array as da
        import fastxent.dask as fxd
        v, b, tt = 65, 4, 1500
        key = f"dask/{dtype}"
        t = make_targets(key, b * tt, v)
        x = make_logits(key, b * tt, v, dtype, t, kinds=MILD_KINDS).reshape(b, tt, v)
        y = make_logits(key + "/ref", b * tt, v, dtype, t, kinds=MILD_KINDS).reshape(b, tt, v)
        w = make_weight(key, v)
        dx = da.from_array(x, chunks=(1, 700, v))
        dy = da.from_array(y, chunks=(1, 700, v))
        dt = da.from_array(t.reshape(b, tt), chunks=(1, 700))

        def run(m, nt):
            with dask.config.set(scheduler="synchronous"):
                if op == "ce_mean":
                    return fxd.cross_entropy(dx, dt, n_threads=nt).compute()
                if op == "ce_opts":
                    return fxd.cross_entropy(dx, dt, weight=w, label_smoothing=0.1, z_loss=1e-3,
                                             softcap=15.0, n_threads=nt).compute()
                if op == "ce_none":
                    return fxd.cross_entropy(dx, dt, reduction="none", n_threads=nt).compute()
                if op == "ppl":
                    return fxd.perplexity(dx, dt, n_threads=nt).compute()
                if op == "ppl_seq":
                    return fxd.perplexity(dx.rechunk({1: -1}), dt.rechunk({1: -1}), per_sequence=True,
                                          n_threads=nt).compute()
                if op == "token_stats":
                    ts = fxd.token_stats(dx, dt, ref_logits=dy, n_threads=nt)
                    return {k: a.compute() for k, a in ts.as_dict().items()}
                return fxd.evaluate(dx, dt, dy, n_threads=nt).compute()
        return run
    return Case(f"dask/{op}/{dtype}", build, has_ref=False)


FAMILIES: Dict[str, Callable[[], Iterator[Case]]] = {
    "sweep": sweep_cases, "layout": layout_cases, "split": split_cases, "special": special_cases,
    "options": option_cases, "mixed": mixed_cases, "evaluator": evaluator_cases, "cli": cli_cases,
    "dask": dask_cases,
}


def all_cases() -> List[Case]:
    cases = [c for fam in FAMILIES.values() for c in fam()]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"
    return cases


# --------------------------------------------------------------------------- digests
def flatten(out: Any, prefix: str = "") -> List[Tuple[str, Any]]:
    """(path, leaf) pairs of a result in a fixed order: tuples by position, dicts by key."""
    if isinstance(out, (tuple, list)) and not isinstance(out, np.ndarray):
        return [p for i, o in enumerate(out) for p in flatten(o, f"{prefix}{i}.")]
    if isinstance(out, dict):
        return [p for k in sorted(out) for p in flatten(out[k], f"{prefix}{k}.")]
    return [(prefix.rstrip(".") or "out", out)]


def _leaf_bytes(v: Any) -> Tuple[str, bytes]:
    """A leaf's description and canonical bytes (NaN canonicalised, -0.0 kept)."""
    if v is None or isinstance(v, (bool, int, str)):
        return f"py:{type(v).__name__}", repr(v).encode()
    if isinstance(v, float):
        return "py:float", (b"nan" if v != v else v.hex().encode())
    a = np.asarray(v)
    kind = "scalar" if isinstance(v, np.generic) else "array"
    desc = f"{kind}:{a.dtype.name}{list(a.shape)}"
    if a.dtype.kind == "f" or a.dtype == BF16:
        wide = a.astype(np.float64) if a.dtype == BF16 else a
        nan = np.isnan(wide)
        if nan.any():
            bits = np.array(a).view(f"u{a.dtype.itemsize}")  # a copy
            bits[nan] = np.array(np.nan, dtype=a.dtype).view(f"u{a.dtype.itemsize}")
            a = bits
    return desc, np.ascontiguousarray(a).tobytes()


def digest(out: Any) -> Tuple[str, str]:
    """(digest, summary) of a result."""
    h = hashlib.sha256()
    summary = []
    for path, leaf in flatten(out):
        desc, data = _leaf_bytes(leaf)
        h.update(f"{path}|{desc}|{len(data)}|".encode())
        h.update(data)
        summary.append(f"{path}={desc}")
    return h.hexdigest()[:16], " ".join(summary)


def _degenerate(out: Any) -> bool:
    """No finite float in any output: such a case cannot tell one build from another."""
    floats = [np.asarray(v, dtype=np.float64) for _, v in flatten(out)
              if isinstance(v, float) or (isinstance(v, (np.ndarray, np.generic)) and _is_float(np.asarray(v).dtype))]
    return bool(floats) and not any(np.isfinite(f).any() for f in floats)


def run_case(case: Case, isas: Sequence[str], threads: Sequence[Optional[int]],
             keep: bool = False) -> Dict[str, Any]:
    """{isa: {"digest", "summary", "threads": {nt: digest} when they differ, "error", "values"}}."""
    res: Dict[str, Any] = {}
    try:
        run = case.runner()
    except Exception as e:  # noqa: BLE001 -- the tool reports, never hides
        return {isa: {"digest": "error", "summary": f"build raised {type(e).__name__}: {e}"} for isa in isas}
    before = fastxent.show_config(print_out=False)["isa"]
    for isa in isas:
        if _SWITCH_ISA and fastxent.set_isa(isa) != isa:
            raise RuntimeError(f"cannot select ISA {isa}")
        per: Dict[str, str] = {}
        entry: Dict[str, Any] = {}
        for nt in threads:
            try:
                out = run(fastxent, nt)
                d, summary = digest(out)
            except Exception as e:  # noqa: BLE001
                out, d, summary = None, "error", f"raised {type(e).__name__}: {e}"
            per[str(nt)] = d
            if nt == threads[0]:
                entry = {"digest": d, "summary": summary, "degenerate": out is not None and _degenerate(out)}
                if keep:
                    entry["values"] = out
        if len(set(per.values())) > 1:
            entry["threads"] = per
        res[isa] = entry
    if _SWITCH_ISA:
        fastxent.set_isa(before)
    return res


# --------------------------------------------------------------------------- ulp
def _ordered(a: np.ndarray) -> np.ndarray:
    bits = a.view(f"i{a.itemsize}").astype(np.int64)
    lim = np.int64(-1) << np.int64(8 * a.itemsize - 1)  # the sign bit alone
    return np.where(bits < 0, lim - bits, bits)


def _is_float(dt: np.dtype) -> bool:
    return dt.kind == "f" or dt == BF16


def leaf_stats(a: np.ndarray, b: np.ndarray) -> Dict[str, Any]:
    """Float arrays a (a result) and b (the same result elsewhere, or the reference, rounded to
    a's dtype): the largest ulp distance (over elements finite in both), the largest over those
    where |b| is a normal number, how many differ, and how many NaN/inf disagree."""
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    if a.dtype != b.dtype:  # a float64 reference against a float32 result: round it
        b = b.astype(a.dtype)
    wa, wb = a.astype(np.float64), b.astype(np.float64)
    special = (np.isnan(wa) != np.isnan(wb)) | ((np.isinf(wa) | np.isinf(wb)) & (wa != wb))
    both = np.isfinite(wa) & np.isfinite(wb)
    ulp = np.where(both, np.abs(_ordered(np.ascontiguousarray(a)) - _ordered(np.ascontiguousarray(b))), 0)
    tiny = float(np.finfo(np.float32 if a.dtype == BF16 else a.dtype).tiny)
    normal = np.where(np.abs(wb) >= tiny, ulp, 0)
    st: Dict[str, Any] = {"ulp": int(ulp.max()) if ulp.size else 0,
                          "ulp_normal": int(normal.max()) if ulp.size else 0,
                          "n_diff": int(np.count_nonzero(ulp)), "n_special": int(np.count_nonzero(special))}
    if st["ulp"]:
        i = np.unravel_index(int(np.argmax(ulp)), ulp.shape)
        st["at"], st["values"] = tuple(int(k) for k in i), (float(wa[i]), float(wb[i]))
    if st["n_special"]:
        i = np.unravel_index(int(np.argmax(special)), special.shape)
        st["special_at"], st["special_values"] = tuple(int(k) for k in i), (float(wa[i]), float(wb[i]))
    return st


def compare_values(new: Any, old: Any) -> str:
    """The largest ulp difference per output, and where specials (NaN/inf) disagree."""
    parts = []
    fo, fn = dict(flatten(old)), dict(flatten(new))
    for path in sorted(set(fo) | set(fn)):
        if path not in fo or path not in fn:
            parts.append(f"{path}: only in {'new' if path in fn else 'old'}")
            continue
        a, b = np.asarray(fn[path]), np.asarray(fo[path])
        if a.shape != b.shape or (a.dtype != b.dtype and not (_is_float(a.dtype) and _is_float(b.dtype))):
            parts.append(f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}")
            continue
        if not _is_float(a.dtype):
            if a.dtype.kind == "O" or a.dtype.kind in "US":
                if not np.array_equal(a, b):
                    parts.append(f"{path}: differs")
            elif np.count_nonzero(a != b):
                parts.append(f"{path}: {int(np.count_nonzero(a != b))} elements differ")
            continue
        st = leaf_stats(a, b)
        if not st["ulp"] and not st["n_special"]:
            continue
        txt = f"{path}: max {st['ulp']} ulp ({st['ulp_normal']} where normal)"
        if st["ulp"]:
            txt += f" at {st['at']} ({st['values'][0]!r} vs {st['values'][1]!r}), {st['n_diff']} differ"
        if st["n_special"]:
            txt += (f", {st['n_special']} NaN/inf disagree (first at {st['special_at']}: "
                    f"{st['special_values'][0]!r} vs {st['special_values'][1]!r})")
        parts.append(txt)
    return "; ".join(parts) or "every output bitwise equal"


def cmd_isas(args) -> int:
    """Cross-ISA accuracy: per case and float output, each ISA's ulp distance to the reference
    (rounded to the output dtype) and to the other ISAs; NaN/inf disagreements in full."""
    isas, _ = _isas(args.isa)
    cases = _select(all_cases(), args.k, 4 if args.quick else args.every)
    worst: Dict[Tuple[str, str], Dict[str, Tuple[int, str]]] = {}
    specials = []
    t0 = time.time()
    for i, case in enumerate(cases):
        _progress(i, len(cases), t0, case.name)
        res = run_case(case, isas, (1,), keep=True)
        outs = {isa: dict(flatten(r.get("values"))) for isa, r in res.items()}
        ref = None
        if case.has_ref:
            try:
                ref = dict(flatten(case.runner()(fastxent.reference, 1)))
            except Exception as e:  # noqa: BLE001
                specials.append(f"{case.name}: the reference raised {type(e).__name__}: {e}")
        fam = "/".join(case.name.split("/")[:3])
        for path in outs[isas[0]]:
            leaves = {isa: np.asarray(outs[isa][path]) for isa in isas}
            if not _is_float(leaves[isas[0]].dtype):
                for isa in isas[1:]:
                    if leaves[isa].shape == leaves[isas[0]].shape and np.count_nonzero(leaves[isa] != leaves[isas[0]]):
                        specials.append(f"{case.name} {path}: {isa} vs {isas[0]}: "
                                        f"{int(np.count_nonzero(leaves[isa] != leaves[isas[0]]))} elements differ")
                continue
            row = worst.setdefault((fam, path.split(".")[0] if "." in path and path[0].isdigit() else path), {})
            for isa in isas:
                for other in isas:
                    if other <= isa:
                        continue
                    st = leaf_stats(leaves[isa], leaves[other])
                    if st["n_special"]:
                        specials.append(f"{case.name} {path}: {isa} vs {other}: {st['n_special']} NaN/inf "
                                        f"disagree, first at {st['special_at']}: {st['special_values']}")
                if ref is not None and path in ref:
                    st = leaf_stats(leaves[isa], np.asarray(ref[path]))
                    key = f"{isa}"
                    if st["ulp_normal"] > row.get(key, (-1, ""))[0]:
                        row[key] = (st["ulp_normal"], f"{case.name} {path} {st.get('at')} {st.get('values')}")
                    if st["n_special"]:
                        specials.append(f"{case.name} {path}: {isa} vs reference: {st['n_special']} NaN/inf "
                                        f"disagree, first at {st['special_at']}: {st['special_values']}")
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"# {len(cases)} cases, ISAs {', '.join(isas)}, {time.time() - t0:.0f} s")
    print("# largest ulp distance to the reference rounded to the output dtype, where it is a normal "
          "number, per op/dtype and output")
    print(f"{'case family':<40} {'output':<22} " + " ".join(f"{i:>9}" for i in isas))
    for (fam, path), row in sorted(worst.items()):
        if not row:
            continue
        print(f"{fam:<40} {path[:22]:<22} " + " ".join(f"{row.get(i, (-1,))[0]:>9}" for i in isas))
    if args.verbose:
        for (fam, path), row in sorted(worst.items()):
            for isa, (u, where) in sorted(row.items()):
                if u > 2:
                    print(f"  {isa} {u} ulp: {where}")
    print(f"# {len(specials)} NaN/inf or integer disagreements")
    for line in specials:
        print("  " + line)
    return 0


# --------------------------------------------------------------------------- environment
def environment() -> Dict[str, Any]:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    try:
        cc_version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                    timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        cc_version = "unknown"
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats  # NumPy 2
    except ImportError:  # pragma: no cover
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            feats = {}
    cfg = fastxent.show_config(print_out=False)
    return {
        "fastxent": fastxent.__version__, "numpy": np.__version__,
        "ml_dtypes": getattr(ml_dtypes, "__version__", None), "python": platform.python_version(),
        "machine": platform.machine(), "libc": " ".join(platform.libc_ver()), "cc": cc_version,
        "openmp": cfg["openmp"], "isas_available": cfg["isas_available"],
        "numpy_simd": sorted(k for k, on in feats.items() if on and k.startswith(("AVX512", "AVX2", "FMA3"))),
    }


# --------------------------------------------------------------------------- commands
def _select(cases: List[Case], pattern: Optional[str], every: int = 1) -> List[Case]:
    """The cases whose name matches `pattern`, then one in `every` (by a hash of the name, so
    that every family, dtype and edge keeps some; the few cli/ and dask/ cases are all kept)."""
    if pattern:
        rx = re.compile(pattern)
        cases = [c for c in cases if rx.search(c.name)]
    if every > 1:
        cases = [c for c in cases
                 if zlib.crc32(c.name.encode()) % every == 0 or c.name.startswith(("cli/", "dask/"))]
    return cases


_SWITCH_ISA = True  # False with --isa env: the ISA FASTXENT_ISA chose at import, never switched


def _isas(requested: Optional[str]) -> Tuple[List[str], List[str]]:
    global _SWITCH_ISA
    if requested == "env":
        _SWITCH_ISA = False
        return [fastxent.show_config(print_out=False)["isa"]], []
    avail = fastxent.available_isas()
    want = requested.split(",") if requested else avail
    unknown = [i for i in want if i not in ("baseline", "avx2", "avx512")]
    if unknown:
        raise SystemExit(f"golden: unknown ISA {unknown}; choose from baseline, avx2, avx512")
    return [i for i in want if i in avail], [i for i in want if i not in avail]


def _threads(text: Optional[str]) -> Tuple[Optional[int], ...]:
    if not text:
        return THREADS
    return tuple(None if s == "None" else int(s) for s in text.split(","))


def _progress(i: int, n: int, t0: float, name: str) -> None:
    if sys.stderr.isatty():
        print(f"\r[{i}/{n}] {time.time() - t0:6.1f} s {name[:70]:<70}", end="", file=sys.stderr)


def cmd_record(args) -> int:
    isas, missing = _isas(args.isa)
    if missing:
        print(f"golden: this CPU cannot run {missing}: recording {isas} only", file=sys.stderr)
    threads = _threads(args.threads)
    cases = _select(all_cases(), args.k)
    old: Dict[str, Any] = {}
    if os.path.exists(args.file):
        with open(args.file) as f:
            old = json.load(f)
    entries: Dict[str, Any] = dict(old.get("cases", {})) if (args.k or args.isa) else {}
    problems = []
    degenerate = []
    t0 = time.time()
    for i, case in enumerate(cases):
        _progress(i, len(cases), t0, case.name)
        res = run_case(case, isas, threads)
        e = entries.get(case.name, {"digests": {}})
        e = {"out": e.get("out"), "digests": dict(e.get("digests", {})),
             "alt": {k: d for k, d in e.get("alt", {}).items() if k not in isas}}  # the rest below
        for isa, r in res.items():
            if r["digest"] == "error" or "threads" in r:
                problems.append((case.name, isa, r))
            if r.get("degenerate") and isa == isas[0]:
                degenerate.append(case.name)
            e["digests"][isa] = r["digest"]
            e["out"] = r["summary"]
        entries[case.name] = e
    if sys.stderr.isatty():
        print(file=sys.stderr)
    n_alt = 0
    if not args.no_numpy_variant and _numpy_has_avx512():
        # the same cases with NumPy's AVX-512 loops disabled, as NumPy runs on an AVX2-only CPU:
        # where a result goes through NumPy's own SIMD exp/log it may differ in the last bit
        alt = _variant_digests(args.k, isas)
        for name, per in alt.items():
            e = entries[name]
            diff = {isa: d for isa, d in per.items() if d != e["digests"].get(isa)}
            if diff:
                e["alt"].update(diff)
                n_alt += 1
    for e in entries.values():
        if not e.get("alt"):
            e.pop("alt", None)
    dt = time.time() - t0
    golden = {"format": FORMAT,
              "note": "tools/golden.py record; sha256[:16] of each case's outputs per ISA",
              "threads": [str(t) for t in threads], "environment": environment(),
              "cases": dict(sorted(entries.items()))}
    with open(args.file, "w") as f:
        f.write(_dumps(golden))
    print(f"golden: recorded {len(cases)} cases x {len(isas)} ISAs ({', '.join(isas)}) x "
          f"{len(threads)} thread counts in {dt:.1f} s -> {os.path.relpath(args.file)} "
          f"({os.path.getsize(args.file) / 1e3:.0f} kB)")
    if n_alt:
        print(f"golden: {n_alt} cases give other bits when NumPy runs without AVX-512 (NumPy's own "
              f"SIMD after the kernels): both recorded, as 'alt'")
    if degenerate:
        print(f"golden: {len(degenerate)} cases have no finite output (NaN/inf only): {degenerate}")
    for name, isa, r in problems:
        print(f"  PROBLEM {name} [{isa}]: {r.get('threads') or r['summary']}")
    return 1 if problems else 0


NUMPY_NO_AVX512 = ("X86_V4 AVX512_ICL AVX512_SPR "  # NumPy >= 2.3 names; older ones below
                   "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL")


def _numpy_has_avx512() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return bool(feats.get("AVX512F"))


def _variant_digests(pattern: Optional[str], isas: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """{case: {isa: digest}} at n_threads=1 from a subprocess whose NumPy has no AVX-512 loops."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "variant.json")
        cmd = [sys.executable, os.path.abspath(__file__), "_digests", out, "--isa", ",".join(isas)]
        if pattern:
            cmd += ["-k", pattern]
        env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=NUMPY_NO_AVX512)
        subprocess.run(cmd, check=True, env=env)
        with open(out) as f:
            return json.load(f)


def cmd_digests(args) -> int:
    """(internal) {case: {isa: digest}} at n_threads=1, for record's NumPy variant."""
    isas, _ = _isas(args.isa)
    res = {c.name: {isa: r["digest"] for isa, r in run_case(c, isas, (1,)).items()}
           for c in _select(all_cases(), args.k)}
    with open(args.out, "w") as f:
        json.dump(res, f)
    return 0


def _dumps(golden: Dict[str, Any]) -> str:
    """JSON with one case per line (reviewable diffs)."""
    head = {k: v for k, v in golden.items() if k != "cases"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in head.items()]
    lines.append('  "cases": {')
    items = list(golden["cases"].items())
    for i, (k, v) in enumerate(items):
        lines.append(f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True)}{',' if i + 1 < len(items) else ''}")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def cmd_check(args) -> int:
    with open(args.file) as f:
        golden = json.load(f)
    isas, missing = _isas(args.isa)
    recorded = set(isa for e in golden["cases"].values() for isa in e["digests"])
    avail = set(fastxent.available_isas())
    skipped = {i: "this CPU cannot run it" if i not in avail else "not asked for"
               for i in sorted((recorded | set(missing)) - set(isas))}
    threads = _threads(args.threads)
    by_name = {c.name: c for c in all_cases()}
    names = [c.name for c in _select(list(by_name.values()), args.k, 4 if args.quick else args.every)]
    known = [n for n in names if n in golden["cases"]]
    new = [n for n in names if n not in golden["cases"]]
    gone = [n for n in golden["cases"] if n not in by_name and (not args.k or re.search(args.k, n))]
    against = None
    if args.against:
        with np.load(args.against, allow_pickle=True) as z:
            against = {k: z[k].item() for k in z.files}
    failures = 0
    compared = 0
    t0 = time.time()
    for i, name in enumerate(known):
        _progress(i, len(known), t0, name)
        case = by_name[name]
        want = golden["cases"][name]["digests"]
        alt = golden["cases"][name].get("alt", {})
        run_isas = [isa for isa in isas if isa in want]
        res = run_case(case, run_isas, threads, keep=bool(args.ref or against))
        for isa, r in res.items():
            compared += 1
            bad_threads = "threads" in r
            if r["digest"] in (want[isa], alt.get(isa)) and not bad_threads:
                continue
            failures += 1
            if sys.stderr.isatty():
                print(file=sys.stderr)
            what = []
            if r["digest"] not in (want[isa], alt.get(isa)):
                g_out = golden["cases"][name]["out"]
                shapes = ("the golden dtypes and shapes" if r["summary"] == g_out
                          else f"{r['summary']}; golden: {g_out}")
                what.append(f"digest {r['digest']} != golden {want[isa]} ({shapes})")
            if bad_threads:
                what.append(f"differs across thread counts: {r['threads']}")
            print(f"CHANGED {name} [{isa}]: " + "; ".join(what))
            if against is not None and f"{isa}|{name}" in against:
                print(f"    vs --against: {compare_values(r.get('values'), against[f'{isa}|{name}'])}")
            if args.ref and case.has_ref and r.get("values") is not None:
                try:
                    ref_out = case.runner()(fastxent.reference, 1)
                    print(f"    vs reference: {compare_values(r['values'], ref_out)}")
                except Exception as e:  # noqa: BLE001
                    print(f"    vs reference: the reference raised {type(e).__name__}: {e}")
    if sys.stderr.isatty():
        print(file=sys.stderr)
    dt = time.time() - t0
    env = environment()
    diff_env = {k: (golden["environment"].get(k), v) for k, v in env.items()
                if golden["environment"].get(k) != v}
    print(f"golden: {compared} case x ISA digests compared ({len(known)} cases, ISAs {', '.join(isas)}; "
          f"threads {', '.join(map(str, threads))}) in {dt:.1f} s: {failures} changed")
    for i, why in skipped.items():
        print(f"golden: skipped ISA {i} ({why})")
    if new:
        print(f"golden: {len(new)} cases not in the golden file (record them): {new[:5]}...")
    if gone:
        print(f"golden: {len(gone)} golden cases no longer generated: {gone[:5]}...")
    if failures and diff_env:
        print(f"golden: environment differs from the recording (may explain changes): {diff_env}")
    return 1 if failures or new or gone else 0


def cmd_dump(args) -> int:
    isas, _ = _isas(args.isa)
    cases = _select(all_cases(), args.k)
    out: Dict[str, Any] = {}
    for case in cases:
        for isa, r in run_case(case, isas, (1,), keep=True).items():
            box = np.empty((), dtype=object)
            box[()] = r.get("values")
            out[f"{isa}|{case.name}"] = box
    np.savez_compressed(args.out, **out)
    print(f"golden: {len(out)} case x ISA results written to {args.out}")
    return 0


def cmd_list(args) -> int:
    cases = _select(all_cases(), args.k, 4 if args.quick else args.every)
    for c in cases:
        print(c.name)
    fams: Dict[str, int] = {}
    for c in cases:
        fams[c.name.split("/")[0]] = fams.get(c.name.split("/")[0], 0) + 1
    print(f"# {len(cases)} cases: {fams}", file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="tools/golden.py", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("record", "check", "dump", "list", "isas", "_digests"):
        s = sub.add_parser(name, help=argparse.SUPPRESS) if name.startswith("_") else sub.add_parser(name)
        s.add_argument("-k", metavar="REGEX", help="only the cases whose name matches")
        if name != "list":
            s.add_argument("--isa", help="comma-separated ISAs (default: every one this CPU runs); "
                           "'env': only the one FASTXENT_ISA selected at import, without set_isa")
        if name in ("record", "check"):
            s.add_argument("--file", default=GOLDEN, help="the golden file (default: %(default)s)")
            s.add_argument("--threads", help="comma-separated thread counts (default: 1,2,3,None)")
        if name in ("check", "list", "isas"):
            s.add_argument("--quick", action="store_true", help="one case in four (--every 4)")
            s.add_argument("--every", type=int, default=1, metavar="N", help="one case in N")
        if name == "check":
            s.add_argument("--ref", action="store_true",
                           help="for changed cases, the ulp difference against fastxent.reference")
            s.add_argument("--against", metavar="NPZ", help="for changed cases, the ulp difference "
                           "against values written by `dump` (e.g. from the build before a change)")
        if name == "dump":
            s.add_argument("out", help="the .npz file to write")
        if name == "_digests":
            s.add_argument("out")
        if name == "isas":
            s.add_argument("-v", "--verbose", action="store_true", help="where each > 2 ulp maximum is")
        if name == "record":
            s.add_argument("--no-numpy-variant", action="store_true",
                           help="skip the second pass with NumPy's AVX-512 loops disabled")
    args = p.parse_args(argv)
    np.seterr(all="ignore")
    import warnings
    warnings.simplefilter("ignore")
    return {"record": cmd_record, "check": cmd_check, "dump": cmd_dump, "list": cmd_list,
            "isas": cmd_isas, "_digests": cmd_digests}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
