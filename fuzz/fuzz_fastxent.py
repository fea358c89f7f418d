"""Fuzz every public fastxent function against fastxent.reference.

Functions: logsumexp, softmax, log_softmax, cross_entropy, perplexity, and from the evaluation
module token_stats, kl_divergence and Evaluator (update + report), which have no version in
fastxent.reference: plain NumPy float64 oracles written from their docstrings are in this file.

Each input (a byte string) is decoded into one call: a function, an array (dtype supported or
not, shapes with zero sizes, strides: negative, stepped, transposed storage, Fortran order,
broadcast rows, read-only, unaligned, byte-swapped), NaN/inf/huge values, an axis (valid or
not), and for the losses targets (in range, out of range, ignore_index, probabilities, wrong
dtypes/shapes), every cross_entropy option valid or not, a `grad_out` (fresh, the logits
themselves, overlapping, read-only, wrong dtype/shape/layout), `n_threads` and the ISA.

The property: the call either raises one of the documented exceptions (TypeError, ValueError,
IndexError, numpy.exceptions.AxisError) -- then nothing was written to any argument, and the
reference raises too (fastxent-only checks aside: `grad_out`'s layout, `n_threads`, an `ignore_index`
that is not an integer or does not fit int64, an object-dtype `b`; with several bad arguments the two may report different ones)
-- or it returns what `fastxent.reference` returns: same structure, dtypes and shapes, NaN and
inf at the same places, and finite values within

    |got - ref| <= TOL[dtype] * (|ref| + S * M)

where S = 1 + max|finite logits| (+ log of the row length) and M = max(1, max|ref| of that output),
TOL = 1e-9 for float64 results and 2e-5 for float32 results (float32, float16, bfloat16 inputs),
plus one unit in the last place for a gradient in a 16-bit `grad_out` (2^-10 float16, 2^-7 bfloat16).
This catches wrong elements, wrong rows and garbage, not last-ulp differences (tests/ does that).
Inputs are never modified unless they are the `grad_out` (in-place gradient).

Run (atheris, coverage-guided on the Python layer; the C kernels run but are not instrumented):

    pip install atheris
    python fuzz/fuzz_fastxent.py -max_total_time=60            # CI: one minute
    python fuzz/fuzz_fastxent.py -max_total_time=3600 -jobs=2 fuzz/corpus   # longer, keep a corpus
    python fuzz/fuzz_fastxent.py crash-<sha1>                   # replay one failing input

Without atheris (or with --plain) the same decoder runs on seeded random bytes:

    python fuzz/fuzz_fastxent.py --plain -max_total_time=60 -seed=1
    python fuzz/fuzz_fastxent.py --plain --repro crash-<sha1>

A failing input is written to crash-<sha1> (atheris: by libFuzzer; plain: by this script, and the
input being run is kept in fuzz-last-input so that a hard crash can be replayed).
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import sys
import time
import warnings

import numpy as np

try:
    from numpy.exceptions import AxisError
except ImportError:  # numpy < 1.25
    from numpy import AxisError

# atheris only as a script: tests/test_differential.py imports the decoders below
_USE_ATHERIS = __name__ == "__main__" and "--plain" not in sys.argv
if _USE_ATHERIS:
    try:
        import atheris
    except ImportError:
        _USE_ATHERIS = False
        print("fuzz_fastxent: atheris is not installed; running the plain seeded loop", file=sys.stderr)

if _USE_ATHERIS:
    with atheris.instrument_imports(include=["fastxent"]):
        import fastxent
        from fastxent import reference
else:
    import fastxent
    from fastxent import reference

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    BF16 = None

DOCUMENTED = (TypeError, ValueError, IndexError, AxisError)
MAX_ELEMENTS = 20_000
ISAS = fastxent.available_isas()
TOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 2e-5,
       # a gradient written in the 16-bit logits' dtype: each side rounds its float32 value, so
       # the float32 bound plus one unit in the last place of the 16-bit type
       np.dtype(np.float16): 2e-5 + 2.0 ** -10}
if BF16 is not None:
    TOL[BF16] = 2e-5 + 2.0 ** -7

# Known differences, counted in the summary instead of stopping the run so that fuzzing goes on
# finding new ones: reported bugs (the regression test named is a strict xfail in the test file
# of what the bug breaks, e.g. tests/test_extreme_values.py; drop the entry when it is fixed), conventions where fastxent and the
# reference legitimately differ, and bugs of the reference itself.
KNOWN_BUGS = {
    # open bugs
    "huge-z-loss-in-place": "z_loss above the float32 range (e.g. 1e300) with float32/16-bit logits and the "
                            "gradient written over the logits: entries whose exp underflowed within their "
                            "block (_core.BLOCK elements) are 0 where p K (huge K) is not (a separate buffer gives the "
                            "reference's values: test_huge_z_loss_gradient_float32)",
    "inf-row-zero-coef": "rows holding a NaN under probability targets or class weights: fastxent's loss is NaN "
                         "(the README's rule), the reference's 0 or +inf where the NaN class has coefficient 0",
    "kl-overflow-1e308": "float64 logits near +-1e308: fastxent's KL and the oracle's disagree by overflowing "
                         "(inf or NaN against a value ~1e308); not resolved which is right",
    # conventions: fastxent and the reference differ on purpose
    "grad-nonfinite-row": "a row holding +inf or NaN gets an all-NaN gradient (as softmax); the reference has "
                          "NaN only where exp(x - lse) is NaN",
    "mean-zero-weight-grad": "reduction='mean' whose counted targets have total weight 0: fastxent's gradient is "
                             "all NaN (PyTorch), the reference's has +-inf where its numerator is not 0",
    "list-axis": "fastxent accepts a list of axes (and for the losses a 1-tuple, or None with 1-d logits), the "
                 "reference (and SciPy) raise TypeError",
    # bugs of the reference
    "reference-f32-fallback": "for float32 input with weights `b` the reference runs SciPy's fallback (direct sum "
                              "where the shifted one is not finite) in float64, SciPy and fastxent in float32 (e.g. "
                              "a=[549.6, 0], b=0: SciPy/fastxent NaN, reference -inf)",
    "reference-overflow": "the reference's z-loss gradient 2 * z * lse * p / n overflows to inf/NaN for float64 "
                          "logits near 1e308 where fastxent's is finite",
}


class Bytes:
    """Deterministic choices from a byte string (zeros once it is used up)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, lo: int, hi: int) -> int:
        """Integer in [lo, hi]."""
        span = hi - lo + 1
        if span <= 1:
            return lo
        v, n = 0, 0
        while (1 << (8 * n)) < span:
            v, n = (v << 8) | self.u8(), n + 1
        return lo + v % span

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, num: int, den: int = 8) -> bool:
        return self.int(0, den - 1) < num

    def unit(self) -> float:
        return self.int(0, 65535) / 65535.0

    def seed(self) -> int:
        return self.int(0, 2**31 - 1)


# --------------------------------------------------------------------------- array generation
def _dtypes():
    common = [np.float32, np.float64] * 12 + [np.float16] * 4 + ([BF16] * 4 if BF16 is not None else [])
    odd = [np.int32, np.int8, np.uint8, np.int64, np.bool_, np.complex64, np.longdouble, object,
           np.dtype(">f4"), np.dtype(">f8"), np.dtype("datetime64[s]")]
    return [np.dtype(d) for d in common] + [np.dtype(d) for d in odd]


DTYPES = _dtypes()
SMALL_DIMS = [0, 1, 1, 2, 2, 3, 3, 4, 5, 7, 8, 9, 16, 17]
CLASS_DIMS = [0, 1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 64, 65, 127, 129, 1000, 2047, 2049, 4100]
SCALES = [1e-3, 1.0, 3.0, 3.0, 30.0, 1e4, 1e30, 1e300]


def gen_shape(d: Bytes):
    ndim = d.pick([0, 1, 1, 2, 2, 2, 2, 3, 3, 4])
    shape = [d.pick(SMALL_DIMS) for _ in range(ndim)]
    if ndim and d.chance(3):
        shape[d.int(0, ndim - 1)] = d.pick(CLASS_DIMS)
    while int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        shape[int(np.argmax(shape))] //= 2
    return tuple(shape)


def gen_values(d: Bytes, shape, dtype: np.dtype):
    rng = np.random.default_rng(d.seed())
    if dtype.kind in "biu":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        lo, hi = (0, 2) if info is None else (max(info.min, -50), min(info.max, 50))
        return rng.integers(lo, hi, size=shape, endpoint=False).astype(dtype)
    if dtype.kind == "M":
        return np.zeros(shape, dtype)
    if dtype.kind == "O":
        return rng.standard_normal(shape).astype(object)
    v = rng.standard_normal(shape) * d.pick(SCALES) + (d.pick([0.0, 0.0, 5.0, -1e3]))
    if dtype.kind == "c":
        v = v + 1j * rng.standard_normal(shape)
    n = v.size
    if n and d.chance(4):
        specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e38, -1e38, 1e308, -1e308, 6e4, 5e-324, 1e-45]
        for _ in range(d.int(1, 6)):
            v.flat[d.int(0, n - 1)] = d.pick(specials)
    if n and v.ndim and d.chance(1):  # a whole row of -inf (or +inf)
        idx = tuple(d.int(0, s - 1) if s else 0 for s in v.shape[:-1])
        v[idx] = d.pick([-np.inf, -np.inf, np.inf, np.nan])
    with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return v.astype(dtype)


def relayout(d: Bytes, a: np.ndarray) -> np.ndarray:
    """The same values in another memory layout (or broadcast/read-only/unaligned/byte-swapped)."""
    a = np.asarray(a)
    for _ in range(d.pick([0, 0, 1, 1, 2, 3])):
        kind = d.pick(["neg", "step", "fortran", "perm", "broadcast", "readonly", "unaligned", "swap"])
        if a.ndim == 0 and kind not in ("readonly", "swap"):
            continue
        ax = d.int(0, a.ndim - 1) if a.ndim else 0
        if kind == "neg":
            a = np.flip(np.flip(a, ax).copy(), ax)
        elif kind == "step":
            big = np.empty(a.shape[:ax] + (2 * a.shape[ax],) + a.shape[ax + 1:], a.dtype)
            sl = (slice(None),) * ax + (slice(None, None, 2),)
            big[sl] = a
            a = big[sl]
        elif kind == "fortran":
            a = np.asfortranarray(a)
        elif kind == "perm":
            perm = list(np.random.default_rng(d.seed()).permutation(a.ndim))
            a = np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))
        elif kind == "broadcast" and a.shape[ax] > 0:
            i = d.int(0, a.shape[ax] - 1)
            a = np.broadcast_to(np.take(a, [i], axis=ax), a.shape)
        elif kind == "readonly":
            a = a.view()
            a.flags.writeable = False
        elif kind == "unaligned" and a.dtype.kind != "O" and a.dtype.itemsize > 1:
            buf = np.empty(a.nbytes + 1, np.uint8)[1:]
            u = buf.view(a.dtype).reshape(a.shape)
            u[...] = a
            a = u
        elif kind == "swap" and a.dtype.kind in "fiuc" and a.dtype.itemsize > 1:
            a = a.astype(a.dtype.newbyteorder())
    return a


def gen_axis(d: Bytes, ndim: int, loss: bool):
    r = d.int(0, 15)
    if loss:
        if r < 10:
            return -1 if r < 6 else d.int(-max(ndim, 1), max(ndim, 1) - 1)
        return d.pick([ndim, -ndim - 1, 7, 1.5, None, "0", np.int64(0), (0,)])
    if r < 5:
        return None
    if r < 10:
        return d.int(-max(ndim, 1), max(ndim, 1) - 1)
    if r < 13 and ndim:
        return tuple(d.int(-ndim, ndim - 1) for _ in range(d.int(0, min(ndim, 3))))
    return d.pick([ndim, -ndim - 1, 1.5, "0", np.int64(0), [0], (0, 0), ()])


def gen_n_threads(d: Bytes):
    return d.pick([None] * 4 + [1, 1, 2, 2, 2, 3, 3, 8, -1, np.int64(2), 0, 1.5, "2", True, 2**31])


# --------------------------------------------------------------------------- cases
def gen_case(d: Bytes):
    """(function name, positional args, keyword args)."""
    fname = d.pick(["logsumexp", "logsumexp", "softmax", "log_softmax",
                    "cross_entropy", "cross_entropy", "cross_entropy", "perplexity",
                    "token_stats", "kl_divergence", "Evaluator"])
    loss = fname in ("cross_entropy", "perplexity")
    shape = gen_shape(d)
    dt = d.pick(DTYPES)
    x = relayout(d, gen_values(d, shape, dt))
    if d.chance(1, 16):
        x = x.tolist() if x.dtype.kind == "f" and x.dtype.isnative else x  # array_like
    kw = {}
    if d.chance(3):
        kw["n_threads"] = gen_n_threads(d)
    nd = np.ndim(x)
    if fname == "logsumexp":
        if d.chance(5):
            kw["axis"] = gen_axis(d, nd, False)
        if d.chance(3):
            kw["b"] = gen_b(d, np.shape(x))
        if d.chance(3):
            kw["keepdims"] = True
        if d.chance(3):
            kw["return_sign"] = True
        return fname, (x,), kw
    if fname in ("softmax", "log_softmax"):
        if d.chance(6):
            kw["axis"] = gen_axis(d, nd, False)
        return fname, (x,), kw
    axis = gen_axis(d, nd, True) if d.chance(2) else -1
    if axis != -1:
        kw["axis"] = axis
    if fname == "kl_divergence":
        if d.chance(3):
            kw["reduction"] = d.pick(["none", "sum", "mean", "batchmean"])
        return fname, (x, gen_other_logits(d, x)), kw
    ignore = d.pick([-100] * 12 + [0, 1, -1, 3, 2**40, np.int64(-100), np.uint8(1), 1.5, "x", 2**63])
    if ignore != -100 or d.chance(1):
        kw["ignore_index"] = ignore
    t = gen_target(d, np.shape(x), axis, ignore, probs_ok=fname == "cross_entropy")
    if fname in ("token_stats", "Evaluator"):
        if d.chance(4):
            kw["ref_logits"] = gen_other_logits(d, x)
        return fname, (x, t), kw
    if fname == "perplexity":
        if d.chance(3):
            kw["per_sequence"] = True
        return fname, (x, t), kw
    n_cls = _n_classes(np.shape(x), axis)
    if d.chance(3):
        kw["weight"] = gen_weight(d, n_cls)
    if d.chance(3):
        kw["reduction"] = d.pick(["none", "none", "none", "sum", "sum", "mean", "mean", "avg", None])
    if d.chance(3):
        kw["label_smoothing"] = d.pick([0.0, 0.1, 0.5, 1.0, d.unit(), 0.1, 0.05, True, -0.1, 1.5, float("nan"), "a"])
    if d.chance(3):
        kw["z_loss"] = d.pick([0.0, 1e-4, 1e-2, 1.0, 1e-4, 1e-3, -1.0, float("inf"), 1e300])
    if d.chance(3):
        kw["softcap"] = d.pick([None, 0.5, 5.0, 30.0, 30.0, 15.0, 1e-30, 0.0, -1.0, float("nan")])
    if d.chance(2):
        kw["return_z_loss"] = True
    if d.chance(4):
        kw["return_grad"] = True
        if d.chance(5):
            x, kw["grad_out"] = gen_grad_out(d, x)
    elif d.chance(1, 16):
        x, kw["grad_out"] = gen_grad_out(d, x)
    return fname, (x, t), kw


def gen_other_logits(d: Bytes, x):
    """Second logits (reference / q) of the shape of `x`, sometimes another dtype or a wrong shape."""
    shape = np.shape(x)
    if d.chance(1, 16):
        shape = shape[:-1] + (shape[-1] + 1,) if shape else (2,)
    dt = np.asarray(x).dtype if d.chance(5) else d.pick(DTYPES)
    if dt.kind == "O":
        dt = np.dtype(np.float64)
    return relayout(d, gen_values(d, shape, dt))


def _n_classes(shape, axis):
    try:
        return shape[axis] if shape else 0
    except (IndexError, TypeError):
        return 3


def gen_b(d: Bytes, shape):
    r = d.int(0, 9)
    if r == 0:
        return d.pick([2.0, -1.0, 0.0, 3, np.float32(0.5), float("nan")])
    if r == 1:
        return np.ones((2, 3, 4, 5, 6)[: d.int(1, 3)])  # usually does not broadcast
    if r == 2:
        return np.ones(shape, d.pick([np.complex128, np.int32, np.bool_, np.float16, object]))
    bshape = tuple(s if d.chance(5) else 1 for s in shape)[d.int(0, len(shape)):] if shape else ()
    rng = np.random.default_rng(d.seed())
    b = rng.standard_normal(bshape) if d.chance(3) else rng.random(bshape)
    if b.size and d.chance(3):
        b.flat[d.int(0, b.size - 1)] = 0.0
    return relayout(d, b.astype(d.pick([np.float64, np.float64, np.float32])))


def gen_target(d: Bytes, shape, axis, ignore, probs_ok: bool):
    rng = np.random.default_rng(d.seed())
    try:
        ax = axis % len(shape) if shape and isinstance(axis, (int, np.integer)) else len(shape) - 1
    except (TypeError, ZeroDivisionError):
        ax = 0
    tshape = tuple(shape[:ax]) + tuple(shape[ax + 1:]) if shape else ()
    n_cls = shape[ax] if shape else 0
    r = d.int(0, 15)
    if r < 10:
        t = rng.integers(0, max(n_cls, 1), size=tshape) if n_cls else np.full(tshape, -100)
        if t.size and d.chance(3):
            t[rng.random(tshape) < 0.3] = ignore if isinstance(ignore, (int, np.integer)) and abs(int(ignore)) < 2**62 else -100
        if t.size and d.chance(2):
            t.flat[d.int(0, t.size - 1)] = d.pick([n_cls, -1, -101, 2**40, n_cls + 5])
        tdt = d.pick([np.int64] * 4 + [np.int32, np.int16, np.int8, np.uint8, np.uint64, np.intp])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = t.astype(tdt)  # may wrap: still an integer target
        return relayout(d, t)
    if r < 13 and probs_ok:
        p = rng.random(shape)
        if d.chance(5) and p.size:
            p = p / np.sum(p, axis=ax, keepdims=True) if n_cls else p
        pdt = d.pick([np.float32, np.float64, np.float16])
        return relayout(d, p.astype(pdt))
    return d.pick([np.zeros(tshape, np.float64), np.zeros(tshape, np.bool_), np.zeros(tshape + (1,), np.int64),
                   np.zeros((3, 2), np.int64), 0, [0, 1], np.zeros(tshape, np.complex64)])


def gen_weight(d: Bytes, n_cls: int):
    rng = np.random.default_rng(d.seed())
    r = d.int(0, 9)
    if r < 6:
        w = rng.random(n_cls) * d.pick([1.0, 1.0, 10.0, 1e-3])
        if n_cls and d.chance(2):
            w[d.int(0, n_cls - 1)] = 0.0
        return relayout(d, w.astype(d.pick([np.float64, np.float32, np.int64])))
    if r == 6 and n_cls:
        w = np.ones(n_cls)
        w[d.int(0, n_cls - 1)] = d.pick([-1.0, np.nan, np.inf])
        return w
    return d.pick([np.ones(n_cls + 1), np.ones((n_cls, 1)), np.ones(n_cls, np.complex64), np.ones(n_cls, bool), 2.0])


def gen_grad_out(d: Bytes, x):
    """(logits, grad_out): the logits are replaced when grad_out must share their memory."""
    if not isinstance(x, np.ndarray):
        return x, np.zeros(np.shape(x))
    gdt = np.dtype(np.float64 if x.dtype == np.float64 else np.float32)
    r = d.int(0, 11)
    if r < 3:
        return x, np.full(x.shape, 7.0, gdt)
    if r < 5:
        return x, x  # in place (legal when x is writable, of the gradient dtype, contiguous classes)
    if r == 5:
        g = np.full(x.shape, 7.0, gdt)
        g.flags.writeable = False
        return x, g
    if r == 6:
        return x, np.full(x.shape, 7.0, d.pick([np.float16, np.float64 if gdt == np.float32 else np.float32,
                                                 np.int64]))
    if r == 7 and x.ndim:
        return x, np.full(x.shape[:-1] + (x.shape[-1] + 1,), 7.0, gdt)
    if r == 8 and x.ndim:
        if d.chance(4):
            return x, np.asfortranarray(np.full(x.shape, 7.0, gdt))
        return x, np.full(x.shape[:-1] + (2 * x.shape[-1],), 7.0, gdt)[..., ::2]
    if r == 9 and x.dtype == gdt and x.flags.writeable:  # another view of exactly the logits' memory
        return x, np.lib.stride_tricks.as_strided(x, x.shape, x.strides)
    if r == 10 and x.dtype == gdt and x.size:  # logits and grad_out overlap, shifted by one element
        base = np.empty(x.size + 1, gdt)
        base[:-1] = x.reshape(-1)
        return base[:-1].reshape(x.shape), base[1:].reshape(x.shape)
    return x, [7.0]


# --------------------------------------------------------------------------- evaluation oracles
# fastxent.reference has no token_stats / kl_divergence / Evaluator: these plain NumPy float64
# versions follow their docstrings (fastxent/_per_token.py, fastxent/_evaluator.py) and reuse the reference's checks.
def _eval_logits(a, name):
    """(float64 array, kernel dtype, result dtype) with fastxent's dtype rules for logits."""
    arr = np.asarray(a)
    reference._float_input(arr, name, promote_int=False)  # TypeError as fastxent
    kdt = arr.dtype.newbyteorder("=") if arr.dtype.kind == "f" else arr.dtype
    rdt = np.dtype(np.float64 if kdt == np.float64 else np.float32)
    return arr, kdt, rdt


def _widen(a):
    a = np.asarray(a)
    return (a.astype(np.float32) if a.dtype == BF16 else a).astype(np.float64)


def _rows_stats(x):
    """Per row (classes last): log-softmax, has-a-distribution, has-a-top-class, argmax."""
    with np.errstate(all="ignore"):
        n = x.shape[-1]
        nan = np.isnan(x).any(axis=-1)
        allneg = np.all(np.isneginf(x), axis=-1)
        dist = ~nan & ~np.isposinf(x).any(axis=-1) & ~allneg
        top = ~nan & ~allneg
        am = np.argmax(x, axis=-1) if n else np.zeros(x.shape[:-1], np.intp)
        lsm = reference.log_softmax(x, axis=-1) if n and x.size else np.zeros(x.shape)
    return lsm, dist, top, am


def _kl_rows(p, q):
    """KL(P || Q) per row of float64 logits (classes last), NaN where either is not a distribution."""
    lp, dp, _, _ = _rows_stats(p)
    lq, dq, _, _ = _rows_stats(q)
    with np.errstate(all="ignore"):
        P = np.exp(lp)
        # P = 0 only for a -inf logit (an underflowing exp(lp) is still P > 0: with Q = 0 that is +inf)
        terms = np.where(np.isneginf(p), 0.0, np.where(np.isneginf(q), np.inf, P * (lp - lq)))
        kl = np.maximum(terms.sum(axis=-1), 0.0)
    return np.where(dp & dq, kl, np.nan)


def oracle_kl_divergence(p_logits, q_logits, *, axis=-1, reduction="none", n_threads=None):
    from fastxent._compat import normalize_axis_index
    if reduction not in ("none", "sum", "mean"):
        raise ValueError("`reduction` must be one of 'none', 'sum', 'mean'")
    p, pk, _ = _eval_logits(p_logits, "p_logits")
    q, qk, _ = _eval_logits(q_logits, "q_logits")
    if p.shape != q.shape:
        raise ValueError("`p_logits` and `q_logits` shapes differ")
    common = np.dtype(np.float64 if np.float64 in (pk, qk) else np.float32)
    ax = normalize_axis_index(operator.index(axis), q.ndim)
    pw = np.moveaxis(_widen(p), ax, -1)
    qw = np.moveaxis(_widen(q), ax, -1)
    if common == np.float32:  # a float16/bfloat16 side is converted to float32 first: exact
        pw, qw = pw.astype(np.float32).astype(np.float64), qw.astype(np.float32).astype(np.float64)
    kl = _kl_rows(pw, qw)
    if reduction == "none":
        return np.asarray(kl).astype(common)[()]
    with np.errstate(all="ignore"):
        tot = np.sum(kl, dtype=np.float64)
        return common.type(tot / kl.size if reduction == "mean" else tot)


def oracle_token_stats(logits, target, *, ref_logits=None, axis=-1, ignore_index=-100, n_threads=None):
    from fastxent._compat import normalize_axis_index
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError("`ignore_index` must be an integer") from None
    x, kdt, rdt = _eval_logits(logits, "logits")
    ax = normalize_axis_index(operator.index(axis), x.ndim)
    xw = np.moveaxis(_widen(x), ax, -1)
    rw = None
    if ref_logits is not None:
        r = np.asarray(ref_logits)
        if r.shape != x.shape:
            raise ValueError("`ref_logits` shape differs")
        reference._float_input(r, "ref_logits", promote_int=False)
        # each side is read in its own precision (README: the pair rule, fastxent._arrays.pair_dtype);
        # the per-position results then have float64 when either side is float64
        if np.float64 in (kdt, r.dtype.newbyteorder("=")):
            rdt = np.dtype(np.float64)
        rw = np.moveaxis(_widen(r), ax, -1)
    t = np.asarray(target)
    counted = reference._class_targets(t, xw, ax, ignore_index)
    t = t.astype(np.int64)  # (checked: every counted value fits)
    tt = np.where(counted, t, 0).astype(np.intp)
    lsm, dist, top, am = _rows_stats(xw)
    n_cls = xw.shape[-1]
    with np.errstate(all="ignore"):
        nll = reference.cross_entropy(xw, np.where(counted, t, -100).astype(np.int64), reduction="none") \
            if n_cls else np.zeros(t.shape)
        ent = np.where(dist, -np.sum(np.where(np.exp(lsm) == 0, 0.0, np.exp(lsm) * lsm), axis=-1), np.nan)
        out = {"nll": nll, "entropy": ent, "p_target": np.exp(-nll),
               "correct": top & (am == tt) & counted}
        if rw is not None:
            rl, rd, rtop, ram = _rows_stats(rw)
            rnll = reference.cross_entropy(rw, np.where(counted, t, -100).astype(np.int64), reduction="none") \
                if n_cls else np.zeros(t.shape)
            out.update(kl=_kl_rows(rw, xw), same_top=top & rtop & (am == ram) & counted,
                       ref_nll=rnll, ref_p_target=np.exp(-rnll))
    res = []
    for k in ("nll", "entropy", "p_target", "correct", "counted", "kl", "same_top", "ref_nll", "ref_p_target"):
        if k == "counted":
            v = counted
        elif k not in out:
            continue
        else:
            v = out[k]
        if v.dtype != bool:
            v = np.where(counted, v, np.nan).astype(rdt)
        res.append(np.asarray(v)[()])
    return tuple(res)


def fx_token_stats(*args, **kw):
    s = fastxent.token_stats(*args, **kw)
    return tuple(v for k, v in s.as_dict().items())


def fx_evaluator(logits, target, *, ref_logits=None, axis=-1, ignore_index=-100, n_threads=None):
    ev = fastxent.Evaluator(ignore_index=ignore_index, axis=axis, n_threads=n_threads)
    n = ev.update(logits, target, ref_logits)
    r = ev.report()
    dt = _result_type_of(logits)
    return (np.int64(n), np.int64(r["tokens"]), dt(r["nll_mean"]), dt(r["top1_accuracy"]))


def _result_type_of(logits):
    a = np.asarray(logits)
    return np.float64 if a.dtype.kind == "f" and a.dtype.itemsize == 8 else np.float32


def oracle_evaluator(logits, target, *, ref_logits=None, axis=-1, ignore_index=-100, n_threads=None):
    try:
        operator.index(axis)
    except TypeError:
        raise TypeError("`axis` must be an integer") from None
    st = oracle_token_stats(logits, target, ref_logits=ref_logits, axis=axis, ignore_index=ignore_index)
    nll, correct, counted = np.asarray(st[0], np.float64), np.asarray(st[3]), np.asarray(st[4])
    n = int(np.count_nonzero(counted))
    dt = _result_type_of(logits)
    with np.errstate(all="ignore"):
        m = float(np.sum(nll[counted], dtype=np.float64) / n) if n else np.nan
        acc = float(np.count_nonzero(correct[counted]) / n) if n else np.nan
    return (np.int64(n), np.int64(n), dt(m), dt(acc))


FX = {"token_stats": fx_token_stats, "Evaluator": fx_evaluator}
ORACLE = {"token_stats": oracle_token_stats, "kl_divergence": oracle_kl_divergence, "Evaluator": oracle_evaluator}


def fx_call(fname):
    return FX.get(fname) or getattr(fastxent, fname)


def ref_call(fname):
    return ORACLE.get(fname) or getattr(reference, fname)


# --------------------------------------------------------------------------- known differences
def _count(label):
    STATS["known"][label] = STATS["known"].get(label, 0) + 1


def _bad_rows(x, axis):
    """Positions whose logsumexp is not finite: a NaN or +inf logit, only -inf logits, or no classes."""
    try:
        a = np.asarray(x)
        if a.dtype == BF16:
            a = a.astype(np.float32)
        a = a.astype(np.float64)
        return np.any(np.isnan(a) | np.isposinf(a), axis=axis) | np.all(np.isneginf(a), axis=axis)
    except Exception:
        return None


def _accept_nan(g, r, mask, label):
    """fastxent NaN where the reference is not, inside `mask`: replaced by the reference value."""
    orig = g
    g = np.asarray(g)
    r = np.asarray(r)
    if g.shape != r.shape or not (g.dtype.kind == "f" or g.dtype == BF16):
        return orig
    take = np.isnan(g) & ~np.isnan(r) & np.broadcast_to(mask, g.shape)
    if not take.any():
        return orig
    _count(label)
    g = g.copy()
    g[take] = r[take]
    return g[()] if g.ndim == 0 else g


def _zero_weight_denominator(target, kw) -> bool:
    """"mean" divides by the weights of the counted class-index targets, and they sum to 0."""
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        return False
    w = np.asarray(kw["weight"], dtype=np.float64)
    ii = kw.get("ignore_index", -100)
    counted = t.astype(np.int64) != int(ii)
    return bool(np.sum(w[t.astype(np.int64)[counted]]) == 0)


def apply_allowances(fname, args, kw, got, ref, alias=False):
    """Accept the known differences listed in KNOWN_BUGS (counted in the summary)."""
    if fname != "cross_entropy":
        return got
    z = kw.get("z_loss", 0.0)
    if isinstance(z, float) and z > float(np.finfo(np.float32).max) and np.asarray(args[0]).dtype != np.float64 \
            and alias:
        _count("huge-z-loss-in-place")
        return "shapes-only"
    if kw.get("return_grad") and np.asarray(args[0]).dtype == np.float64 and _scale(args[0]) > 1e307:
        g, r = np.asarray(got[-1]), np.asarray(ref[-1])
        if g.shape == r.shape and np.any(np.isfinite(g) & ~np.isfinite(r)):
            _count("reference-overflow")
            return "shapes-only"
    if (kw.get("return_grad") and kw.get("reduction", "mean") == "mean" and isinstance(kw.get("weight"), np.ndarray)
            and _zero_weight_denominator(args[1], kw)):
        g, r = np.asarray(got[-1]), np.asarray(ref[-1])
        if g.shape == r.shape and np.all(np.isnan(g) | ~np.isnan(r)) and np.all(np.isfinite(r) | np.isnan(g)):
            _count("mean-zero-weight-grad")
            return "shapes-only"
    ax = kw.get("axis", -1)
    ax = ax[0] if isinstance(ax, (tuple, list)) and len(ax) == 1 else ax
    bad = _bad_rows(args[0], ax)
    if bad is None or not np.any(bad):
        return got
    outs = list(got) if isinstance(got, tuple) else [got]
    refs = list(ref) if isinstance(ref, tuple) else [ref]
    if kw.get("return_grad"):
        outs[-1] = _accept_nan(outs[-1], refs[-1], np.expand_dims(bad, ax), "grad-nonfinite-row")
    t = np.asarray(args[1])
    if t.dtype.kind == "f" or isinstance(kw.get("weight"), np.ndarray):
        for i in range(2 if kw.get("return_z_loss") else 1):
            m = bad if np.ndim(outs[i]) else np.any(bad)
            outs[i] = _accept_nan(outs[i], refs[i], m, "inf-row-zero-coef")
    if isinstance(got, tuple):
        if kw.get("grad_out") is not None:
            outs[-1] = got[-1] if np.shares_memory(outs[-1], got[-1]) else outs[-1]
        return tuple(outs)
    return outs[0]


# --------------------------------------------------------------------------- checking
class Mismatch(AssertionError):
    pass


def _arrays_in(args, kw):
    out = [("arg%d" % i, a) for i, a in enumerate(args) if isinstance(a, np.ndarray)]
    out += [(k, v) for k, v in kw.items() if isinstance(v, np.ndarray)]
    return out


def _bits(a: np.ndarray) -> bytes:
    if a.dtype.kind == "O":
        return repr(a.tolist()).encode()
    return np.ascontiguousarray(a).tobytes()


def _same_memory(g, x) -> bool:
    """`g` is the array `x` or a view of exactly its elements (the in-place gradient)."""
    return (isinstance(g, np.ndarray) and isinstance(x, np.ndarray) and g.shape == x.shape
            and g.strides == x.strides and g.__array_interface__["data"][0] == x.__array_interface__["data"][0])


def _native(a: np.ndarray) -> np.ndarray:
    """A copy in native byte order: the reference (unlike fastxent) refuses byte-swapped floats."""
    return a.astype(a.dtype.newbyteorder("=")) if not a.dtype.isnative else a.copy()


def _copy_for_reference(args, kw):
    """Deep copies (native byte order), keeping `grad_out is logits` aliasing."""
    x = args[0]
    alias = _same_memory(kw.get("grad_out"), x)
    cx = (x.copy() if alias else _native(x)) if isinstance(x, np.ndarray) else x
    cargs = (cx,) + tuple(_native(a) if isinstance(a, np.ndarray) else a for a in args[1:])
    ckw = {}
    for k, v in kw.items():
        if k == "grad_out" and alias:
            ckw[k] = cx
        elif isinstance(v, np.ndarray):
            c = v.copy() if k == "grad_out" else _native(v)
            if not v.flags.writeable:
                c.flags.writeable = False
            ckw[k] = c
        else:
            ckw[k] = v
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        cx.flags.writeable = False
    return cargs, ckw


def known_bug(exc, fname, args, kw):
    """The KNOWN_BUGS label of an exception fastxent raised, or None (none are open now)."""
    return None


def fastxent_only_error(exc, kw) -> bool:
    """Errors fastxent may raise where the reference does not (documented restrictions)."""
    msg = str(exc)
    if "`n_threads`" in msg:  # the reference ignores n_threads
        return True
    if "`grad_out` must have a contiguous class axis" in msg or "`grad_out` is not aligned" in msg:
        return True
    if "`ignore_index` must be an integer" in msg:  # the reference compares targets with any number
        return True
    if "`b` has dtype object" in msg:  # the reference converts any `b` to float64
        return True
    if "`ignore_index` must fit in int64" in msg:  # the reference compares with any Python integer
        return True
    return False


def _scale(x) -> float:
    try:
        a = np.asarray(x)
        if a.dtype.kind not in "fiub" and a.dtype != BF16:
            return 1.0
        v = np.abs(a.astype(np.float64))
        v = v[np.isfinite(v)]
        s = 1.0 + (float(v.max()) if v.size else 0.0)
        return s + math.log(max(a.size, 1))
    except Exception:
        return 1.0


def compare(name, got, ref, scale, extra_scale=1.0, values=True):
    if isinstance(ref, tuple) != isinstance(got, tuple):
        raise Mismatch(f"{name}: structure differs: got {type(got)}, reference {type(ref)}")
    if isinstance(ref, tuple):
        if len(ref) != len(got):
            raise Mismatch(f"{name}: got {len(got)} results, reference {len(ref)}")
        for i, (g, r) in enumerate(zip(got, ref)):
            compare(f"{name}[{i}]", g, r, scale, extra_scale, values)
        return
    if isinstance(ref, np.ndarray) != isinstance(got, np.ndarray):
        raise Mismatch(f"{name}: got {type(got).__name__}, reference {type(ref).__name__}")
    g, r = np.asarray(got), np.asarray(ref)
    if g.dtype != r.dtype:
        raise Mismatch(f"{name}: dtype {g.dtype} != reference {r.dtype}")
    if g.shape != r.shape:
        raise Mismatch(f"{name}: shape {g.shape} != reference {r.shape}")
    if not values:
        return
    if r.dtype.kind in "biu":
        if not np.array_equal(g, r):
            i = np.argwhere(np.asarray(g != r).reshape(g.shape or (1,)))[0]
            raise Mismatch(f"{name}: differs at {tuple(i)}: got {g.reshape(-1)[0] if g.ndim == 0 else g[tuple(i)]}, "
                           f"reference {r.reshape(-1)[0] if r.ndim == 0 else r[tuple(i)]}")
        return
    g64, r64 = g.astype(np.float64), r.astype(np.float64)
    gn, rn = np.isnan(g64), np.isnan(r64)
    if not np.array_equal(gn, rn):
        i = np.argwhere(gn != rn)[0]
        raise Mismatch(f"{name}: NaN differs at {tuple(i)}: got {g64[tuple(i)]}, reference {r64[tuple(i)]}")
    gi, ri = np.isinf(g64), np.isinf(r64)
    if not np.array_equal(gi, ri) or not np.array_equal(g64[gi], r64[ri]):
        i = np.argwhere((gi != ri) | (gi & ri & (g64 != r64)))[0]
        raise Mismatch(f"{name}: inf differs at {tuple(i)}: got {g64[tuple(i)]}, reference {r64[tuple(i)]}")
    fin = np.isfinite(r64)
    if not fin.any():
        return
    tol = TOL.get(r.dtype, 2e-5)
    m = max(1.0, float(np.max(np.abs(r64[fin]))))
    bound = tol * (np.abs(r64[fin]) + scale * m * extra_scale)
    err = np.abs(g64[fin] - r64[fin])
    if np.any(err > bound):
        k = int(np.argmax(err - bound))
        raise Mismatch(f"{name}: |got - ref| = {err[k]:.3g} > {bound[k]:.3g} (got {g64[fin][k]!r}, "
                       f"reference {r64[fin][k]!r}, {int(np.sum(err > bound))} of {err.size} values)")


def describe(fname, args, kw) -> str:
    def d(v):
        if isinstance(v, np.ndarray):
            return (f"ndarray(shape={v.shape}, dtype={v.dtype}, strides={v.strides}, "
                    f"writeable={v.flags.writeable}, aligned={v.flags.aligned})")
        if isinstance(v, list):
            return f"list(len={len(v)})"
        return repr(v)
    parts = [d(a) for a in args] + [f"{k}={'<logits>' if v is args[0] and k == 'grad_out' else d(v)}"
                                     for k, v in kw.items()]
    return f"fastxent.{fname}({', '.join(parts)})"


STATS = {"calls": 0, "raised": 0, "returned": 0, "known": {}}


def check_one(data: bytes):
    d = Bytes(data)
    fname, args, kw = gen_case(d)
    isa = d.pick(ISAS)
    fastxent.set_isa(isa)
    where = f"{describe(fname, args, kw)} [isa={isa}]"
    inputs = _arrays_in(args, kw)
    before = [(n, a, _bits(a)) for n, a in inputs]
    rargs, rkw = _copy_for_reference(args, kw)
    x0 = args[0].copy() if isinstance(args[0], np.ndarray) else args[0]  # before an in-place gradient
    scale0 = _scale(x0)
    if fname in ("kl_divergence", "token_stats", "Evaluator"):  # the second set of logits counts too
        other = args[1] if fname == "kl_divergence" else kw.get("ref_logits")
        if other is not None:
            scale0 = max(scale0, _scale(other))
    ref_exc = ref = None
    g = kw.get("grad_out")
    overlap = (isinstance(g, np.ndarray) and isinstance(args[0], np.ndarray) and np.shares_memory(g, args[0])
               and not _same_memory(g, args[0]))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if overlap:  # the copies would not overlap: the reference's answer is this error
                raise ValueError("`grad_out` overlaps `logits` without being the logits array itself")
            ref = ref_call(fname)(*rargs, **rkw)
        except Exception as e:  # noqa: BLE001 - classified below
            ref_exc = e
        exc = got = None
        try:
            got = fx_call(fname)(*args, **kw)
        except Exception as e:  # noqa: BLE001 - classified below
            exc = e
    STATS["calls"] += 1
    alias = _same_memory(kw.get("grad_out"), args[0])
    if exc is not None:
        STATS["raised"] += 1
        label = known_bug(exc, fname, args, kw)
        if label:
            STATS["known"][label] = STATS["known"].get(label, 0) + 1
            return
        if not isinstance(exc, DOCUMENTED):
            raise Mismatch(f"undocumented exception {type(exc).__name__}: {exc}\n  in {where}") from exc
        for n, a, bits in before:
            if _bits(a) != bits:
                raise Mismatch(f"`{n}` was modified before {type(exc).__name__}: {exc}\n  in {where}")
        if ref_exc is None and not fastxent_only_error(exc, kw):
            raise Mismatch(f"fastxent raised {type(exc).__name__}: {exc}, the reference returned\n  in {where}")
        # Both raised: with several bad arguments the two may name different ones first, so the
        # types are not compared here (tests/test_errors.py and test_catalogue.py do, one fault each).
        return
    STATS["returned"] += 1
    if ref_exc is not None and ("axis" in kw and kw["axis"] is None or isinstance(kw.get("axis"), (list, tuple))) and (
            "list" in str(ref_exc) or "tuple" in str(ref_exc) or "NoneType" in str(ref_exc)):
        _count("list-axis")  # fastxent takes a list of axes (and a 1-tuple for the losses); the reference does not
        return
    if ref_exc is not None:
        raise Mismatch(f"fastxent returned, the reference raised {type(ref_exc).__name__}: {ref_exc}\n  in {where}")
    for n, a, bits in before:
        if alias and n in ("arg0", "grad_out"):
            continue
        if n == "grad_out":
            continue
        if _bits(a) != bits:
            raise Mismatch(f"input `{n}` was modified\n  in {where}")
    if kw.get("grad_out") is not None:
        if not isinstance(got, tuple) or got[-1] is not kw["grad_out"]:
            raise Mismatch(f"the gradient returned is not `grad_out`\n  in {where}")
    got = apply_allowances(fname, (x0,) + tuple(args[1:]), kw, got, ref, alias=alias)
    if isinstance(got, str) and got == "shapes-only":
        got = fx_call(fname)(*args, **kw) if not alias else None
        if got is not None:
            try:
                compare(fname, got, ref, 1.0, values=False)  # structure, dtypes and shapes only
            except Mismatch as m:
                raise Mismatch(f"{m}\n  in {where}") from None
        return
    if isinstance(got, str) and got == "cast":  # compare in the lower of the two precisions
        got = fx_call(fname)(*args, **kw)
        low = lambda g, r: np.float32 if np.float32 in (np.asarray(g).dtype, np.asarray(r).dtype) else np.float64  # noqa: E731
        cast = lambda v, dt: np.asarray(v).astype(dt)[()] if isinstance(v, (np.ndarray, np.generic)) else v  # noqa: E731
        if isinstance(got, tuple):
            dts = [low(g, r) for g, r in zip(got, ref)]
            got, ref = tuple(cast(g, t) for g, t in zip(got, dts)), tuple(cast(r, t) for r, t in zip(ref, dts))
        else:
            t = low(got, ref)
            got, ref = cast(got, t), cast(ref, t)
    extra = 1.0
    if fname == "cross_entropy":
        w = kw.get("weight")
        if isinstance(w, np.ndarray) and w.size:
            extra = max(1.0, float(np.max(np.abs(w.astype(np.float64)))))
        z = kw.get("z_loss", 0.0)
        if isinstance(z, float) and z > 0:
            extra *= 1.0 + z * scale0
    try:
        compare(fname, got, ref, scale0, extra)
    except Mismatch as m:
        if fname == "logsumexp" and kw.get("b") is not None and _agrees_with_scipy((x0,), kw, got, ref, extra):
            _count("reference-f32-fallback")
            return
        if fname in ("kl_divergence", "token_stats", "Evaluator") and scale0 > 1e300:
            _count("kl-overflow-1e308")
            return
        raise Mismatch(f"{m}\n  in {where}") from None


def _agrees_with_scipy(args, kw, got, ref, extra):
    """logsumexp with `b` in float32: SciPy itself decides (the reference computes in float64)."""
    try:
        import scipy.special
    except ImportError:
        return False
    a, b = np.asarray(args[0]), np.asarray(kw["b"])
    if np.asarray(ref[0] if isinstance(ref, tuple) else ref).dtype != np.float32:
        return False
    if BF16 is not None and a.dtype == BF16:
        a = a.astype(np.float32)
    if a.dtype.kind not in "fiub" or b.dtype.kind not in "fiub" or b.dtype == BF16:
        return False
    skw = {k: v for k, v in kw.items() if k != "n_threads"}
    if isinstance(skw.get("axis"), list):
        skw["axis"] = tuple(skw["axis"])
    if b.dtype == np.float16:
        skw["b"] = b.astype(np.float32)
    a = a.astype(np.float32) if a.dtype == np.float16 else a  # fastxent computes 16-bit input in float32
    if isinstance(args[0], (float, int)):  # a Python scalar is weak in SciPy's result type too
        a = args[0]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sp = scipy.special.logsumexp(a, **skw)
            if isinstance(a, np.ndarray) and a.dtype.kind in "biu":
                sp = scipy.special.logsumexp(a.astype(np.float32), **skw)
    except Exception:
        return False
    cast = lambda v, r: np.asarray(v).astype(np.asarray(r).dtype)[()]  # noqa: E731
    sp = tuple(cast(v, r) for v, r in zip(sp, ref)) if isinstance(ref, tuple) else cast(sp, ref)
    try:
        compare("logsumexp vs scipy", got, sp, _scale(args[0]), extra)
    except Mismatch:
        return False
    return True


# --------------------------------------------------------------------------- drivers
def _flag(argv, name, default):
    for a in argv:
        if a.startswith(f"-{name}="):
            return a.split("=", 1)[1]
    return default


def plain_main(argv):
    """Seeded random bytes through the same decoder; -max_total_time, -runs, -seed as libFuzzer."""
    if "--repro" in argv:
        path = argv[argv.index("--repro") + 1]
        with open(path, "rb") as f:
            check_one(f.read())
        print(f"{path}: passes")
        return 0
    max_time = float(_flag(argv, "max_total_time", "60"))
    runs = int(_flag(argv, "runs", "-1"))
    seed = int(_flag(argv, "seed", "0"))
    prefix = _flag(argv, "artifact_prefix", "")
    last = prefix + "fuzz-last-input"
    rng = np.random.default_rng(seed)
    t0, i = time.monotonic(), 0
    fd = os.open(last, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while (runs < 0 or i < runs) and time.monotonic() - t0 < max_time:
            data = rng.integers(0, 256, size=int(rng.integers(16, 600)), dtype=np.uint8).tobytes()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            try:
                check_one(data)
            except Exception as e:
                name = prefix + "crash-" + hashlib.sha1(data).hexdigest()
                with open(name, "wb") as f:
                    f.write(data)
                print(f"\n== FAILURE on input {i} (seed {seed}):\n{type(e).__name__}: {e}\n"
                      f"input written to {name}; replay: python {sys.argv[0]} --plain --repro {name}",
                      file=sys.stderr)
                raise
            i += 1
    finally:
        os.close(fd)
    os.unlink(last)
    summary(time.monotonic() - t0)
    return 0


def summary(dt):
    known = ", ".join(f"{k} x{v}" for k, v in sorted(STATS["known"].items())) or "none"
    print(f"fuzz_fastxent: {STATS['calls']} calls in {dt:.0f} s ({STATS['returned']} returned and matched the "
          f"reference, {STATS['raised']} raised documented errors); known differences (KNOWN_BUGS): {known}")


def atheris_main(argv):
    # libFuzzer ends the process itself: no summary (the plain loop prints one)
    atheris.Setup(argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    args = [a for a in sys.argv if a != "--plain"]
    if _USE_ATHERIS:
        atheris_main(args)
    else:
        sys.exit(plain_main(args))
