"""Shared tolerances, layout factories and comparison helpers for the fastxent tests.

Tolerances (stated once, here; a failure is a bug to find, never a reason to raise them)
-----------------------------------------------------------------------------------------
Every fast result is compared with ``fastxent.reference`` evaluated in float64 on the *same
values* (float32 input is widened exactly), i.e. with the exact answer to ~1e-15.

Log-space results (logsumexp, log_softmax, losses, log of perplexity) must satisfy

    |got - ref| <= RTOL[dt] * |ref| + UNIT[dt] * scale,   scale = 1 + max|x| + log(n)

where max|x| is over the finite inputs of the reduced row and n its length. The RTOL term is
the rounding of the result itself. The UNIT * scale term is cancellation: a log-space result
is assembled as ``m + log(s)`` or ``x_i - m - log(s)``, and the terms m ~ max|x| and
log(s) <= log(n) each carry a rounding error of a few ulp of *their* size, which can be far
larger than the result (lse near 0, the loss of a confident correct prediction). For float32
that is 4 float32 eps per unit of scale (the terms may be rounded to float32 once or twice);
for float64 it is 1e-13 (~450 eps), which also covers the kernel summing up to ~1e5 terms in
another order than NumPy's pairwise sum.

Probabilities (softmax) must satisfy

    |got - ref| <= (RTOL[dt] + UNIT[dt] * scale) * |ref| + PROB_ATOL[dt]

since an absolute error e in log space is a relative error e in exp(.). PROB_ATOL is one
float32 eps (values are < 1, so that is about one ulp of the largest) and 1e-15 for float64.

With weights ``b`` the scale grows by log max(1, |b|) and is multiplied by the condition number
sum|b e^a| / |sum b e^a| of the signed sum (cancellation of negative weights).

Inf and NaN must appear at exactly the same places and infinities with the same sign.
"""

import itertools
import math
import zlib

import numpy as np
import pytest
from numpy.lib.array_utils import normalize_axis_tuple

import fastxent
from fastxent import reference

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16
RTOL = {np.dtype(np.float32): 4 * EPS32, np.dtype(np.float64): 1e-12}
UNIT = {np.dtype(np.float32): 4 * EPS32, np.dtype(np.float64): 1e-13}
PROB_ATOL = {np.dtype(np.float32): EPS32, np.dtype(np.float64): 1e-15}

DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "rows_gap", "fortran", "neg_rows", "neg_cols", "strided", "readonly", "memmap"]
THREADS = [None, 1, 2, 3]
# Vocabulary sizes from tiny to Llama-3's, with row counts that keep the suite fast.
VOCABS = [(1, 5), (2, 5), (3, 5), (7, 4), (1000, 4), (32000, 3), (128256, 2)]


# --------------------------------------------------------------------------- data and layouts
@pytest.fixture
def rng(request):
    """A generator seeded from the test id, so every test is reproducible on its own."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def logits_like(rng, shape, dtype, spread=3.0):
    """Random logits of a given dtype, rounded to that dtype."""
    return (rng.standard_normal(shape) * spread).astype(dtype)


def targets_for(rng, logits_shape, axis, dtype=np.int64, ignore_frac=0.0, ignore_index=-100):
    """Valid class indices for `logits_shape` along `axis`, some set to `ignore_index`."""
    axis = axis % len(logits_shape)
    n_classes = logits_shape[axis]
    shape = logits_shape[:axis] + logits_shape[axis + 1:]
    t = rng.integers(0, n_classes, size=shape)
    if ignore_frac:
        t[rng.random(shape) < ignore_frac] = ignore_index
    return t.astype(dtype)


def _fill_value(dtype):
    """What padding outside a view holds: NaN for floats, an invalid class for integers."""
    dtype = np.dtype(dtype)
    return np.nan if dtype.kind == "f" else np.iinfo(dtype).max


def relayout(x, layout, tmp_path=None):
    """An array equal to `x` element for element, stored with the named memory layout.

    Padding that a correct implementation never reads holds NaN (or an out-of-range class),
    so reading outside the view shows up as a wrong answer.
    """
    x = np.asarray(x)
    if layout == "c":
        return np.ascontiguousarray(x)
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "rows_gap":  # x[:, :-1, :] of a (batch, seq + 1, vocab) array
        if x.ndim < 2:
            return relayout(x, "strided")
        big = np.full(x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1]), _fill_value(x.dtype), x.dtype)
        big[..., :-1, :] = x
        return big[..., :-1, :]
    if layout == "neg_rows":
        return np.flip(np.flip(x, 0).copy(), 0) if x.ndim else x.copy()
    if layout == "neg_cols":
        return np.flip(np.flip(x, -1).copy(), -1) if x.ndim else x.copy()
    if layout == "strided":  # every other element along every axis
        big = np.full(tuple(2 * n for n in x.shape), _fill_value(x.dtype), x.dtype)
        view = big[(slice(None, None, 2),) * x.ndim]
        view[...] = x
        return view
    if layout == "readonly":
        y = x.copy()
        y.setflags(write=False)
        return y
    if layout == "memmap":
        assert tmp_path is not None and x.size > 0
        path = tmp_path / f"mm_{next(_memmap_ids)}.dat"
        mm = np.memmap(path, dtype=x.dtype, mode="w+", shape=x.shape)
        mm[...] = x
        mm.flush()
        del mm
        return np.memmap(path, dtype=x.dtype, mode="r", shape=x.shape)
    raise ValueError(layout)


_memmap_ids = itertools.count()


@pytest.fixture
def make_layout(tmp_path):
    """``make_layout(x, layout)``: see `relayout`; memmaps live in the test's tmp_path."""
    def make(x, layout):
        y = relayout(x, layout, tmp_path)
        assert np.array_equal(y, x, equal_nan=True) and y.dtype == np.asarray(x).dtype
        return y
    return make


# --------------------------------------------------------------------------- references
def ref64(name, x, *args, **kwargs):
    """The reference evaluated on `x` widened to float64 (exact for float32 values)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    return getattr(reference, name)(x, *args, **kwargs)


def _axes(axis, ndim):
    return normalize_axis_tuple(tuple(range(ndim)) if axis is None else axis, ndim)


def row_scale(x, axis=None, keepdims=True, b=None):
    """``1 + max|x| + log(n)`` over each reduced row (finite, non-zero-weight entries only).

    With weights `b` adds log max(1, |b|) and multiplies by the condition number of the signed
    sum.
    Shaped like a logsumexp result with the same `axis`/`keepdims` (0-d input counts as 1-d).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if b is not None:
        x, b = np.broadcast_arrays(x, np.asarray(b, dtype=np.float64))
        x, b = np.atleast_1d(x), np.atleast_1d(b)
    axes = _axes(axis, x.ndim)
    use = np.isfinite(x) if b is None else np.isfinite(x) & (b != 0)
    n = max(1, math.prod(x.shape[a] for a in axes))
    with np.errstate(all="ignore"):
        big = np.max(np.where(use, np.abs(x), 0.0), axis=axes, keepdims=True, initial=0.0)
        scale = 1.0 + big + math.log(n)
        if b is not None:
            wb = np.where(use, np.abs(b), 0.0)
            scale = scale + np.log(np.max(wb, axis=axes, keepdims=True, initial=1.0))
            m = np.max(np.where(use, x, -np.inf), axis=axes, keepdims=True, initial=-np.inf)
            terms = np.where(use, b * np.exp(x - np.where(np.isfinite(m), m, 0.0)), 0.0)
            kappa = np.sum(np.abs(terms), axis=axes, keepdims=True) / np.abs(
                np.sum(terms, axis=axes, keepdims=True))
            scale = scale * np.where(np.isfinite(kappa) & (kappa > 1), kappa, 1.0)
    return scale if keepdims else np.squeeze(scale, axis=axes)


def ce_scale(logits, axis=-1):
    """`row_scale` of every class row of `logits`, shaped like the target."""
    return np.squeeze(row_scale(np.moveaxis(np.asarray(logits), axis, -1), -1), -1)


# --------------------------------------------------------------------------- assertions
def _check_specials(got, ref, dtype):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    with np.errstate(over="ignore"):  # an exact value beyond the dtype's range rounds to inf
        ref = np.where(np.isinf(ref.astype(dtype)), ref.astype(dtype), ref)
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    nan_g, nan_r = np.isnan(got), np.isnan(ref)
    assert np.array_equal(nan_g, nan_r), (
        f"NaN at {np.argwhere(nan_g != nan_r)[:5].tolist()}: got {got[nan_g != nan_r][:5]}, "
        f"reference {ref[nan_g != nan_r][:5]}")
    inf_r = np.isinf(ref)
    assert np.array_equal(got[inf_r], ref[inf_r]), (
        f"infinities differ: got {got[inf_r][:5]}, reference {ref[inf_r][:5]}")
    return got, ref, np.isfinite(ref)


def _report(got, ref, bound, fin, what):
    err = np.where(fin, np.abs(got - np.where(fin, ref, 0.0)), 0.0)
    bad = np.asarray(err > bound) & fin
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.where(bound > 0, bound, 1), 0)),
                             bad.shape) if bad.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values out of tolerance; worst at {i}: "
            f"got {got[i]!r}, reference {ref[i]!r}, |diff| {err[i]:.3g} > bound "
            f"{np.broadcast_to(bound, bad.shape)[i]:.3g}")


def assert_log_close(got, ref, dtype, scale, factor=1):
    """Log-space comparison, see module docstring. ``factor=2`` compares two computed values,
    each within the bound of the truth."""
    dtype = np.dtype(dtype)
    got, ref, fin = _check_specials(got, ref, dtype)
    bound = RTOL[dtype] * np.abs(np.where(fin, ref, 0.0)) + UNIT[dtype] * np.asarray(scale)
    _report(got, ref, factor * bound, fin, "log-space")


def assert_prob_close(got, ref, dtype, scale, factor=1):
    """Probability comparison, see module docstring; `factor` as in `assert_log_close`."""
    dtype = np.dtype(dtype)
    got, ref, fin = _check_specials(got, ref, dtype)
    bound = ((RTOL[dtype] + UNIT[dtype] * np.asarray(scale)) * np.abs(np.where(fin, ref, 0.0))
             + PROB_ATOL[dtype])
    _report(got, ref, factor * bound, fin, "probability")


def assert_result_type(got, dtype, shape):
    """dtype and shape of a result; 0-d results must be NumPy scalars of that dtype."""
    dtype = np.dtype(dtype)
    if shape == ():
        assert type(got) is dtype.type, f"expected a {dtype.type.__name__} scalar, got {type(got)}"
    else:
        assert isinstance(got, np.ndarray), type(got)
        assert got.dtype == dtype, f"dtype {got.dtype} != {dtype}"
        assert got.shape == shape, f"shape {got.shape} != {shape}"


def assert_bitwise_equal_over_threads(fn, *args, **kwargs):
    """``fn(..., n_threads=k)`` must give identical bits for every k in THREADS."""
    results = [fn(*args, n_threads=k, **kwargs) for k in THREADS]
    for k, r in zip(THREADS[1:], results[1:]):
        assert np.asarray(r).dtype == np.asarray(results[0]).dtype
        assert np.array_equal(np.asarray(r), np.asarray(results[0]), equal_nan=True), (
            f"n_threads={k} differs from n_threads={THREADS[0]}")
    return results[0]


@pytest.fixture(scope="session")
def fx():
    return fastxent


@pytest.fixture(params=fastxent.available_isas())
def isa(request):
    """Run a test with the kernels capped at each instruction set this CPU can run."""
    before = fastxent.show_config(print_out=False)["isa"]
    assert fastxent.set_isa(request.param) == request.param
    yield request.param
    fastxent.set_isa(before)
