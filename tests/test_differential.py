"""Differential tests on seeded random inputs (issue 13 item 8): fastxent against SciPy and a
float64 oracle, every case drawn from a fixed seed, a few seconds in all.

* `logsumexp` (axis, keepdims, `b`, `return_sign`), `softmax` and `log_softmax` against
  ``scipy.special`` (``conftest.scipy_special()``: `fastxent.reference`, which transcribes SciPy
  1.17, where the installed SciPy is older or runs on NumPy 1.x);
* `cross_entropy` with ``return_grad=True`` (weight, label_smoothing, ignore_index, probability
  targets, every reduction, z_loss, softcap, return_z_loss, grad_out, in place) against
  `fastxent.reference` evaluated in float64 on the same values.

The inputs come from fuzz/fuzz_fastxent.py's decoders (imported, not copied): shapes with zero
sizes and long class rows; values at many scales with NaN, +-inf, huge, subnormal entries and
whole rows of -inf, +inf or NaN; layouts (negative strides, steps, transposed storage, Fortran
order, broadcast rows, read-only, unaligned, byte-swapped); float16, bfloat16 (with ml_dtypes),
float32, float64.  On top of those, some arrays get rows with one dominant logit (the rest 20-40
below it), several equal maxima, values on a coarse grid, a tiny spread or a large offset.  The
ISA and `n_threads` are drawn per case as well.

Asserted, per case:
* type, dtype and shape as SciPy (float32/float64 input) or the reference (16-bit input:
  float32 results, README "dtypes");
* NaN and +-inf exactly where SciPy, computing in the result dtype, has them (empty input:
  where the reference has them, since SciPy 1.17.1 raises there); the losses: where the
  reference has them, with the README's special-value rules (a row holding NaN or only -inf
  gives NaN for that position, a row whose logsumexp is not finite an all-NaN gradient row);
* finite values within the tolerances stated in tests/conftest.py of the exact answer (SciPy
  or the reference on the inputs widened to float64), plus, on the SSE2 baseline ISA with
  `softcap`, the README's ~2|x|/softcap ulp of the chain factor;
* the README's accuracy contract: the per-row logsumexp of 16/32-bit input within 2 ulp of the
  float32 rounding of the exact value, the plain cross-entropy loss within 2 ulp plus 2 ulp of
  its logsumexp (tests/test_accuracy.py's rule), where ``max + log(sum)`` does not cancel
  (see `test_readme_two_ulp_logsumexp_with_cancellation` for the rows where it does), with the
  README's flush to zero of terms below FLT_MIN;
* the loss without `return_grad` is bitwise the loss with it (README "Accuracy").

Run longer, on other seeds: ``python fuzz/fuzz_differential.py -max_total_time=600``.
"""
import importlib.util
import os
import sys
import warnings

import numpy as np
import pytest

import fastxent
from fastxent import reference
from conftest import (RTOL, UNIT, assert_log_close, assert_prob_close, assert_result_type,
                      assert_within, row_scale, scipy_special, widen, xent_bounds)

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_fuzz_decoders():
    path = os.path.join(os.path.dirname(HERE), "fuzz", "fuzz_fastxent.py")
    if "fuzz_fastxent" in sys.modules:
        return sys.modules["fuzz_fastxent"]
    spec = importlib.util.spec_from_file_location("fuzz_fastxent", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_fastxent"] = mod
    spec.loader.exec_module(mod)
    return mod


fz = _load_fuzz_decoders()
Bytes, gen_shape, gen_values, relayout = fz.Bytes, fz.gen_shape, fz.gen_values, fz.relayout
BF16 = fz.BF16
FLOATS = [np.dtype(d) for d in [np.float32, np.float64] * 3 + [np.float16] * 2] + (
    [BF16, BF16] if BF16 is not None else [])
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
FLT_MIN = float(np.finfo(np.float32).tiny)
N_SPECIAL = 600   # cases of logsumexp/softmax/log_softmax
N_XENT = 300      # cases of cross_entropy
sps = scipy_special()


# --------------------------------------------------------------------------- inputs
def decoder(kind: str, seed: int) -> Bytes:
    """The byte string of one case: a function of the case kind and the seed only."""
    return Bytes(np.random.default_rng([seed, sum(map(ord, kind))]).bytes(1024))


def shape_rows(d: Bytes, v: np.ndarray) -> np.ndarray:
    """Adversarial rows along the last axis of float64 values (sometimes; else `v` unchanged)."""
    if v.ndim == 0 or v.size == 0 or not d.chance(3):
        return v
    rng = np.random.default_rng(d.seed())
    rows = np.array(v, dtype=np.float64).reshape(-1, v.shape[-1])
    n, n_cls = rows.shape
    kind = d.pick(["dominant", "dominant", "ties", "grid", "tiny", "offset"])
    with np.errstate(all="ignore"):
        if kind == "dominant":  # on a 1/256 grid: x - max exact in every dtype
            m = np.round(rng.uniform(-8, 8, (n, 1)) * 256) / 256
            m[: max(1, n // 4)] = 0.0  # logsumexp is then the tiny log1p itself
            rows = m - np.round(rng.uniform(20, 40, (n, n_cls)) * 256) / 256
            rows[np.arange(n), rng.integers(0, n_cls, n)] = m[:, 0]
        elif kind == "ties":  # several (or all) entries equal to the row's max
            k = int(rng.integers(1, n_cls + 1))
            cols = rng.choice(n_cls, size=k, replace=False)
            rows[:, cols] = np.max(rows, axis=1, keepdims=True)
        elif kind == "grid":
            rows = np.round(rows * 2) / 2
        elif kind == "tiny":
            rows = rows * d.pick([1e-30, 1e-6, 1e-3])
        else:
            rows = rows + d.pick([88.0, -88.0, 700.0, -1e4, 3e4])
    return rows.reshape(v.shape)


def cast(v, dtype):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(v).astype(dtype)


def gen_logits(d: Bytes, shape, dtype):
    return relayout(d, cast(shape_rows(d, gen_values(d, shape, F64)), dtype))


def gen_axis(d: Bytes, ndim: int):
    """A valid `axis`: None, an int (negative too), or a tuple of distinct axes (maybe empty)."""
    r = d.int(0, 9)
    if r < 3 or ndim == 0:
        return None
    if r < 7:
        return d.int(-ndim, ndim - 1)
    axes = sorted({d.int(0, ndim - 1) for _ in range(d.int(0, ndim))})
    return tuple(a - ndim if d.chance(2) else a for a in axes)


def gen_b(d: Bytes, shape):
    """Weights that broadcast to `shape`: positive, sometimes of both signs, some exact zeros."""
    rng = np.random.default_rng(d.seed())
    if d.chance(1):
        return d.pick([2.0, 0.5, -1.0, 0.0])
    k = d.int(0, len(shape))
    bshape = tuple(s if d.chance(5) else 1 for s in shape[k:])
    b = rng.uniform(0.25, 4.0, bshape) if d.chance(5) else rng.standard_normal(bshape)
    if b.size and d.chance(3):
        b.flat[rng.integers(0, b.size, max(1, b.size // 4))] = 0.0
    return relayout(d, cast(b, d.pick([F64, F64, F32, F32, np.dtype(np.float16)]
                                      + ([BF16] if BF16 is not None else []))))


def special_case(seed: int):
    """(function name, x, keyword arguments, isa) of case `seed`."""
    d = decoder("special", seed)
    name = d.pick(["logsumexp", "logsumexp", "softmax", "log_softmax"])
    x = gen_logits(d, gen_shape(d), d.pick(FLOATS))
    kw = {}
    axis = gen_axis(d, x.ndim)
    if axis is not None or d.chance(2):
        kw["axis"] = axis
    if name == "logsumexp":
        if d.chance(3):
            kw["keepdims"] = True
        if d.chance(3):
            kw["b"] = gen_b(d, x.shape)
        if d.chance(2):
            kw["return_sign"] = True
    if d.chance(3):
        kw["n_threads"] = d.pick([1, 2, 3])
    return name, x, kw, d.pick(fastxent.available_isas())


def gen_target(d: Bytes, x, axis, ignore_index):
    """Class indices (some ignored) of any integer dtype, or class probabilities."""
    rng = np.random.default_rng(d.seed())
    ax = axis % x.ndim
    n_cls = x.shape[ax]
    tshape = x.shape[:ax] + x.shape[ax + 1:]
    if d.chance(2) and n_cls:
        q = rng.random(x.shape) ** 3
        if d.chance(2):  # some exact zeros (also where the logit is -inf)
            q[rng.random(x.shape) < 0.3] = 0.0
        if d.chance(5):
            with np.errstate(all="ignore"):
                s = np.sum(q, axis=ax, keepdims=True)
                q = np.where(s > 0, q / np.where(s > 0, s, 1.0), q)
        return relayout(d, cast(q, d.pick(FLOATS)))
    t = rng.integers(0, max(n_cls, 1), tshape) if n_cls else np.full(tshape, ignore_index)
    if t.size and d.chance(3):
        t[rng.random(tshape) < 0.3] = ignore_index
    tdt = d.pick([np.int64, np.int64, np.int32, np.int16, np.uint8, np.intp] if 0 <= ignore_index < 256
                 else [np.int64, np.int64, np.int32, np.int16, np.intp])
    if tdt == np.uint8 and n_cls > 255:
        tdt = np.int64
    return relayout(d, t.astype(tdt))


def xent_case(seed: int):
    """(logits, target, keyword arguments, isa) of cross_entropy case `seed`."""
    d = decoder("xent", seed)
    shape = gen_shape(d)
    if not shape:
        shape = (d.pick(fz.CLASS_DIMS),)
    dt = d.pick(FLOATS)
    axis = -1 if d.chance(5) else d.int(-len(shape), len(shape) - 1)
    if shape[axis] == 0:  # at least one class
        shape = shape[:axis % len(shape)] + (d.pick([1, 2, 7, 65]),) + shape[axis % len(shape) + 1:]
    x = gen_logits(d, shape, dt)
    kw = {}
    if axis != -1:
        kw["axis"] = axis
    ignore = -100
    if d.chance(1):
        ignore = d.int(0, max(0, x.shape[axis] - 1))
        kw["ignore_index"] = ignore
    t = gen_target(d, x, axis, ignore)
    n_cls = x.shape[axis]
    if d.chance(3):
        rng = np.random.default_rng(d.seed())
        w = rng.uniform(0.0, 3.0, n_cls)
        if d.chance(3):
            w[rng.random(n_cls) < 0.3] = 0.0
        kw["weight"] = relayout(d, cast(w, d.pick(FLOATS)))
    if d.chance(3):
        kw["label_smoothing"] = d.pick([0.1, 0.5, 1.0, d.unit()])
    if d.chance(3):
        kw["z_loss"] = d.pick([1e-4, 1e-2, 1.0])
    if d.chance(3):
        kw["softcap"] = d.pick([0.5, 5.0, 30.0])
    kw["reduction"] = d.pick(["none", "none", "sum", "mean"])
    if d.chance(4):
        kw["return_z_loss"] = True
    g = d.int(0, 7)
    gdt = F64 if x.dtype.newbyteorder("=") == F64 else F32
    if g < 2:  # grad_out: a buffer with a contiguous class axis, or the logits themselves
        buf = np.moveaxis(np.full(np.moveaxis(x, axis, -1).shape, 7.0, gdt), -1, axis)
        if g == 1 and x.dtype == gdt:
            buf[...] = x
            x = buf
        kw["grad_out"] = buf
    if d.chance(3):
        kw["n_threads"] = d.pick([1, 2, 3])
    return x, t, kw, d.pick(fastxent.available_isas())


# --------------------------------------------------------------------------- oracles
def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else axis
    return tuple(sorted(a % ndim for a in axes)) if ndim else ()


def _scipy_kw(kw, to):
    """SciPy's keyword arguments, with `b` cast to `to` (16-bit `b` widens exactly)."""
    out = {k: v for k, v in kw.items() if k != "n_threads"}
    if "b" in out:
        out["b"] = cast(widen(out["b"]), to) if np.ndim(out["b"]) else float(out["b"])
    return out


def _scipy_dtype(a) -> bool:
    return np.asarray(a).dtype in (F32, F64) or np.isscalar(a)


def native_order(a):
    """`a` in native byte order (the reference refuses byte-swapped arrays; fastxent does not)."""
    if isinstance(a, np.ndarray) and not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def _expect(exact, at_precision):
    """The exact values where SciPy in the result dtype is finite; its NaN/+-inf elsewhere."""
    exact, at_precision = np.asarray(exact, np.float64), np.asarray(at_precision, np.float64)
    return np.where(np.isfinite(at_precision), exact, at_precision)


def _ulps(got, exact):
    """|got - float32(exact)| in ulps of float32(exact)."""
    want = cast(np.asarray(exact, np.float64), F32).astype(np.float64)
    return np.abs(np.asarray(got, np.float64) - want) / np.spacing(np.abs(want).astype(F32)).astype(np.float64)


def _row_terms(xw, axes):
    """Per reduced row of float64 values: the max, the exact logsumexp (as max + log1p(k - 1 +
    rest), k the count of maxima: full precision where one logit dominates) and the number of
    finite terms exp(x - max) < FLT_MIN, which the README lets the kernels flush to zero (each
    then moves the result by less than FLT_MIN).  Results keepdims."""
    with np.errstate(all="ignore"):
        m = np.max(xw, axis=axes, keepdims=True)
        m0 = np.where(np.isfinite(m), m, 0.0)
        e = np.exp(xw - m0)
        at_max = xw == m
        rest = np.sum(np.where(at_max, 0.0, e), axis=axes, keepdims=True)
        k = np.sum(at_max, axis=axes, keepdims=True)
        flushed = np.sum(np.isfinite(xw) & ~at_max & (e < FLT_MIN), axis=axes, keepdims=True)
        lse = m0 + np.log1p((k - 1) + rest)
    return m, lse, flushed


def check_two_ulp_lse(got, x, kw):
    """README: 16/32-bit logsumexp within 2 ulp of the float32 rounding of the exact value, on the
    rows where max + log(sum) does not cancel (max >= 0 or |lse| >= 1)."""
    xw = widen(x)
    if xw.ndim == 0:
        xw = xw.reshape(1)
    axes = _axes(kw.get("axis"), xw.ndim)
    if xw.size == 0 or any(xw.shape[a] == 0 for a in axes):
        return
    m, lse, flushed = _row_terms(xw, axes)
    if not kw.get("keepdims"):
        m, lse, flushed = (np.squeeze(v, axis=axes) for v in (m, lse, flushed))
    ok = np.isfinite(lse) & np.isfinite(m) & ((m >= 0) | (np.abs(lse) >= 1))
    err = np.abs(np.asarray(got, np.float64) - cast(lse, F32).astype(np.float64))
    bound = 2 * np.spacing(np.abs(cast(lse, F32))).astype(np.float64) + flushed * FLT_MIN
    bad = ok & (err > bound)
    assert not bad.any(), (
        f"README 2-ulp logsumexp contract: {int(bad.sum())} rows off; worst "
        f"{float(np.max(np.where(bad, _ulps(got, lse), 0))):.1f} ulp: got "
        f"{np.asarray(got)[bad][:3]}, exact {np.asarray(lse)[bad][:3]}")


def check_special(name, x, kw):
    got = getattr(fastxent, name)(x, **kw)
    xn = native_order(x)
    rkw = {k: native_order(v) for k, v in kw.items() if k != "n_threads"}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        struct = getattr(reference, name)(xn, **rkw)         # dtypes, shapes, scalars
        rdt = np.asarray(struct[0] if isinstance(struct, tuple) else struct).dtype
        # SciPy 1.17.1 raises on empty input to softmax/log_softmax and, with more than one
        # dimension, to logsumexp over all of it (IndexError): there the reference (README:
        # empty reductions give -inf, the softmax of an empty array is empty)
        oracle = sps if np.size(x) else reference
        if _scipy_dtype(xn) and _scipy_dtype(rkw.get("b", 1.0)):   # SciPy's own result types
            theirs = getattr(oracle, name)(xn, **rkw)
            tdt = np.asarray(theirs[0] if isinstance(theirs, tuple) else theirs).dtype
            assert tdt == rdt, f"result dtype {rdt}, SciPy's {tdt}"
        exact = getattr(oracle, name)(widen(x), **_scipy_kw(kw, F64))
        at_prec = getattr(oracle, name)(cast(widen(x), rdt), **_scipy_kw(kw, rdt))
    sign = None
    if isinstance(struct, tuple):
        assert isinstance(got, tuple) and len(got) == 2
        for g, s in zip(got, struct):
            assert_result_type(g, np.asarray(s).dtype, np.shape(s))
        got, sign = got
        exact, exact_sign = exact
        at_prec = at_prec[0]
    else:
        assert_result_type(got, rdt, np.shape(struct))
    want = _expect(exact, at_prec)
    xw = widen(x)
    if name == "logsumexp":
        scale = row_scale(xw, kw.get("axis"), kw.get("keepdims", False),
                          None if "b" not in kw else widen(kw["b"]))
        assert_log_close(got, want, rdt, scale)
        if sign is not None:  # the sign of the sum wherever its log is known within 0.5
            bound = RTOL[rdt] * np.abs(np.where(np.isfinite(want), want, 0)) + UNIT[rdt] * scale
            known = np.isfinite(want) & (bound < 0.5)
            assert np.array_equal(np.asarray(sign)[known], np.asarray(exact_sign)[known]), "sign"
        if "b" not in kw and x.dtype != F64:
            check_two_ulp_lse(got, x, kw)
    else:
        scale = row_scale(xw, kw.get("axis")) if xw.ndim else 1.0
        (assert_prob_close if name == "softmax" else assert_log_close)(got, want, rdt, scale)


def _nonfinite_rows(xw_last, softcap):
    """Positions (classes last) whose (capped) row holds a NaN or only -inf (README: the loss is
    NaN, whatever the coefficients), and those whose logsumexp is not finite (README: the
    gradient row is NaN)."""
    with np.errstate(all="ignore"):
        capped = xw_last if softcap is None else softcap * np.tanh(xw_last / softcap)
        nan = np.any(np.isnan(capped), axis=-1) | np.all(np.isneginf(capped), axis=-1)
        bad = nan | np.any(np.isposinf(capped), axis=-1)
    return nan, bad


def _bound(bound, ref):
    """conftest's error bound where the value is finite (non-finite values must match exactly).
    At |logits| ~ 1e300 with z_loss the bound itself overflows double: there it allows any
    finite value (the largest double), as it states."""
    bound = np.where(np.isfinite(bound), bound, np.finfo(np.float64).max)
    return np.where(np.isfinite(ref), bound, 0.0)


def check_xent(x, t, kw):
    x0 = native_order(np.array(x))   # the values, before an in-place gradient overwrites them
    opts = {k: kw[k] for k in ("axis", "weight", "ignore_index", "label_smoothing", "softcap",
                               "reduction", "z_loss") if k in kw}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (loss_r, z_r, grad_r), (e_loss, e_z, e_grad) = xent_bounds(x0, t, **opts)
    plain = fastxent.cross_entropy(x, t, **{k: v for k, v in kw.items() if k != "grad_out"})
    got = fastxent.cross_entropy(x, t, **kw, return_grad=True)
    rz = kw.get("return_z_loss", False)
    assert isinstance(got, tuple) and len(got) == (3 if rz else 2)
    loss, grad = got[0], got[-1]
    if "grad_out" in kw:
        assert grad is kw["grad_out"]
    # the loss (and z) without return_grad: bitwise the same (README "Accuracy")
    for a, b in zip(plain if rz else (plain,), got[:-1]):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), (
            f"loss with return_grad differs from the loss without: {a!r} vs {b!r}")
    dt = F64 if x0.dtype == F64 else F32
    assert_result_type(loss, dt, np.shape(loss_r))
    assert_result_type(grad, dt, x0.shape)
    # README special values: a row holding NaN, or only -inf, gives NaN for its position (the
    # reference gives 0 where all coefficients are 0: fuzz_fastxent.py's "inf-row-zero-coef"),
    # a row whose logsumexp is not finite an all-NaN gradient row
    ax = kw.get("axis", -1) % x0.ndim
    xw_last = np.moveaxis(widen(x0), ax, -1)
    nan_rows, bad_rows = _nonfinite_rows(xw_last, kw.get("softcap"))
    counted = reference._terms(widen(x0), t, **{k: v for k, v in opts.items()
                                                if k not in ("reduction", "z_loss")})["counted"]
    reduction = kw.get("reduction", "mean")
    loss_w, z_w = np.asarray(loss_r, np.float64), np.asarray(z_r, np.float64)
    if reduction == "none":
        loss_w = np.where(nan_rows & counted, np.nan, loss_w)
    elif np.any(nan_rows & counted):
        loss_w = np.float64(np.nan)
    grad_w = np.moveaxis(np.asarray(grad_r, np.float64), ax, -1)
    grad_w = np.where((bad_rows & counted)[..., None], np.nan, grad_w)
    grad_w = np.moveaxis(grad_w, -1, ax)
    cap = kw.get("softcap")
    if cap is not None and fastxent.show_config(print_out=False)["isa"] == "baseline":
        # README (cross_entropy options): without fma the SSE2 baseline's softcap chain factor
        # loses ~2|x|/softcap ulp beyond the cap
        with np.errstate(all="ignore"):
            e_grad = e_grad + np.abs(np.asarray(grad_r, np.float64)) * 2 * np.abs(widen(x0)) / cap \
                * float(np.finfo(dt).eps)
    assert_within(loss, loss_w, _bound(e_loss, loss_w), dt, "loss")
    if rz:
        assert_within(got[1], z_w, _bound(e_z, z_w), dt, "z-loss")
    assert_within(grad, grad_w, _bound(e_grad, grad_w), dt, "gradient")
    # README 2-ulp rule of the plain loss (tests/test_accuracy.py), 16/32-bit logits
    plain_opts = not (set(kw) & {"weight", "label_smoothing", "z_loss", "softcap"})
    if plain_opts and reduction == "none" and x0.dtype != F64 and np.asarray(t).dtype.kind in "iu":
        m, lse, flushed = (v[..., 0] for v in _row_terms(xw_last, (xw_last.ndim - 1,)))
        ok = counted & np.isfinite(loss_w) & np.isfinite(lse) & ((m >= 0) | (np.abs(lse) >= 1))
        sp = lambda v: np.spacing(np.abs(cast(v, F32))).astype(np.float64)  # noqa: E731
        err = np.abs(np.asarray(loss, np.float64) - loss_w)
        bound = 2 * sp(loss_w) + 2 * sp(lse) + flushed * FLT_MIN
        bad = ok & (err > bound)
        assert not bad.any(), (f"README 2-ulp loss rule: {int(bad.sum())} positions off: got "
                               f"{np.asarray(loss)[bad][:3]}, exact {loss_w[bad][:3]}")


# --------------------------------------------------------------------------- the tests
def _run(isa, fn, *args):
    before = fastxent.show_config(print_out=False)["isa"]
    fastxent.set_isa(isa)
    try:
        with np.errstate(all="ignore"):
            fn(*args)
    finally:
        fastxent.set_isa(before)


@pytest.mark.skipif(sps is None, reason="SciPy is not installed")
@pytest.mark.parametrize("seed", range(N_SPECIAL))
def test_special_functions_against_scipy(seed):
    name, x, kw, isa = special_case(seed)
    _run(isa, check_special, name, x, kw)


@pytest.mark.parametrize("seed", range(N_XENT))
def test_cross_entropy_against_float64_reference(seed):
    x, t, kw, isa = xent_case(seed)
    _run(isa, check_xent, x, t, kw)


def test_logsumexp_with_cancellation_is_within_its_absolute_bound(isa):
    """README 'Accuracy': where max < 0 and |lse| < 1, `max + log(sum)` cancels and each term's
    float32 exp rounding becomes an absolute error: the contract there is 2 eps32 (1 + |max|)
    absolute, not 2 ulp of a result near 0 (found by this file's differential cases:
    logsumexp(float32([-1.0808556, -0.4144631])) is -3.05e-08 on avx512/baseline, 8.8e-09 on
    avx2, exact 1.17e-12; SciPy in float32 gives 2.98e-08). Measured worst: 0.57 of the bound."""
    eps = float(np.finfo(np.float32).eps)
    rng = np.random.default_rng(20261202)
    x = np.array([[-1.0808556, -0.4144631]], np.float32)
    rows = [x]
    for v in [2, 3, 7, 16, 17, 33, 64, 65, 200, 4097, 70000]:
        n = max(2, 4000 // v)
        r = rng.standard_normal((n, v)) * rng.choice([0.5, 3.0, 20.0], (n, 1))
        r -= reference.logsumexp(r, axis=-1, keepdims=True) + rng.uniform(-0.9, 0.9, (n, 1))
        rows.append(r.astype(np.float32))
    for r in rows:
        exact = reference.logsumexp(r.astype(np.float64), axis=-1)
        top = r.max(-1).astype(np.float64)
        sel = (top < 0) & (np.abs(exact) < 1)
        assert sel.any()
        got = fastxent.logsumexp(r, axis=-1).astype(np.float64)
        err = np.abs(got - exact)[sel] / (2 * eps * (1 + np.abs(top[sel])))
        assert err.max() <= 1.0, (r.shape, float(err.max()))
