"""The gradient of cross_entropy (return_grad, grad_out): against the reference's analytic
gradient, against central finite differences of the reference loss, in place, across threads,
near-certain targets, and against golden values of PyTorch's autograd (tests/data, made by
tests/make_torch_golden.py)."""

import json
import pathlib
import zlib

import numpy as np
import pytest

from fastxent import reference
from conftest import (EPS32, THREADS, check_xent, float16_dtypes, logits_like, options, place,
                      probs_like, result_dtype_of, targets_for)

REDUCTIONS = ["none", "sum", "mean"]
NAN = np.nan
GOLDEN = pathlib.Path(__file__).parent / "data" / "torch_golden.npz"


# --------------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("opt", ["weight_smooth", "smooth_z_softcap", "all"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_every_axis(fx, rng, axis, opt, dtype):
    logits = logits_like(rng, (6, 7, 9), dtype)
    n_classes = logits.shape[axis]
    opts = options(opt, rng, n_classes)
    target = targets_for(rng, logits.shape, axis, ignore_frac=0.2)
    prob = probs_like(rng, logits.shape, axis, result_dtype_of(logits), zero_frac=0.2)
    for reduction in REDUCTIONS:
        for t in (target, prob):
            check_xent(fx, logits, t, axis=axis, reduction=reduction, **opts)


@pytest.mark.parametrize("extra", [0, 1], ids=["at_limit", "beyond"])
@pytest.mark.parametrize("kind", ["index", "smooth"])
def test_gradient_at_the_stored_blocks_limit(fx, isa, rng, extra, kind):
    """Rows of up to MAX_STORED_BLOCKS blocks keep each block's exps in the gradient
    (one exp per element); one class more takes the two-exp path: both against the
    reference, also in place."""
    from fastxent import _core
    n = _core.MAX_STORED_BLOCKS * _core.BLOCK + extra
    logits = logits_like(rng, (2, n), np.float32)
    logits[1, :_core.BLOCK] -= 30.0  # a first block far below the row max
    target = np.array([n - 1, 7])
    opts = {} if kind == "index" else {"label_smoothing": 0.1}
    check_xent(fx, logits, target, reduction="sum", **opts)
    _, grad = fx.cross_entropy(logits, target, return_grad=True, **opts)
    buf = logits.copy()
    fx.cross_entropy(buf, target, return_grad=True, grad_out=buf, **opts)
    assert np.array_equal(buf, grad)


# --------------------------------------------------------------------------- finite differences
FD_OPTIONS = {
    "plain": {},
    "weight": dict(weight=True),
    "smooth": dict(label_smoothing=0.2),
    "weight_smooth": dict(weight=True, label_smoothing=0.3),
    "z": dict(z_loss=0.1),
    "softcap": dict(softcap=2.0),
    "all": dict(weight=True, label_smoothing=0.1, z_loss=0.05, softcap=3.0),
}


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opt", list(FD_OPTIONS))
def test_finite_differences(fx, rng, opt, reduction, kind):
    """Central differences (h = 1e-6) of the reference loss agree with both gradients to 1e-6:
    truncation ~h^2 and rounding ~eps/h are both far below that."""
    x = rng.standard_normal((2, 5, 3)) * 2  # classes on axis 1
    opts = dict(FD_OPTIONS[opt], axis=1, reduction=reduction)
    if opts.get("weight"):
        opts["weight"] = rng.uniform(0.25, 2.0, 5)
    if kind == "index":
        target = targets_for(rng, x.shape, 1)
        target[1, 2] = -100
    else:
        target = probs_like(rng, x.shape, 1, zero_frac=0.2)

    def f(v):
        return float(np.sum(reference.cross_entropy(v, target, **opts)))

    h = 1e-6
    fd = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[i] = (f(xp) - f(xm)) / (2 * h)
    _, g_ref = reference.cross_entropy(x, target, return_grad=True, **opts)
    _, g_fx = fx.cross_entropy(x, target, return_grad=True, **opts)
    atol = 1e-9 * max(1.0, abs(f(x)))
    np.testing.assert_allclose(g_ref, fd, rtol=1e-6, atol=atol, err_msg="reference gradient")
    np.testing.assert_allclose(g_fx, fd, rtol=1e-6, atol=atol, err_msg="fastxent gradient")
    if kind == "index":
        assert (g_fx[1, :, 2] == 0).all()


# --------------------------------------------------------------------------- grad_out, in place
@pytest.mark.parametrize("layout", ["c", "class_axis_1", "rows_gap"])
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_equals_separate_buffer(fx, rng, layout, kind, dtype):
    values = logits_like(rng, (3, 5, 37), dtype)
    logits, axis = place(values, layout)
    opts = options("all", rng, 37)
    if kind == "index":
        target = targets_for(rng, logits.shape, axis, ignore_frac=0.2)
    else:
        target = place(probs_like(rng, values.shape, -1, dtype), layout)[0]
    for reduction in REDUCTIONS:
        kw = dict(axis=axis, reduction=reduction, return_z_loss=True, return_grad=True, **opts)
        loss, z, grad = fx.cross_entropy(logits, target, **kw)
        buf, _ = place(values.copy(), layout)
        got = fx.cross_entropy(buf, target, grad_out=buf, **kw)
        assert got[2] is buf
        assert np.array_equal(got[0], loss) and np.array_equal(got[1], z)
        assert np.array_equal(buf, grad), "in-place gradient differs from a separate buffer"
        if layout == "rows_gap":  # the row outside the view is untouched
            assert np.isnan(buf.base[:, -1]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_needs_a_contiguous_class_axis(fx, rng, dtype):
    logits, axis = place(logits_like(rng, (3, 5, 37), dtype), "class_axis_1_strided")
    target = targets_for(rng, logits.shape, axis)
    saved = logits.copy()
    with pytest.raises(ValueError, match="`grad_out`.*contiguous class axis"):
        fx.cross_entropy(logits, target, axis=axis, return_grad=True, grad_out=logits)
    assert np.array_equal(logits, saved)


def _grad_out_like(shape, axis, dtype, layout):
    """A NaN-filled writable gradient buffer of `shape` (classes on `axis`) in a layout."""
    moved = tuple(np.delete(shape, axis)) + (shape[axis],)
    if layout == "c":
        g = np.full(moved, NAN, dtype)
    elif layout == "rows_gap":
        g = np.full(moved[:-2] + (moved[-2] + 1, moved[-1]), 123.0, dtype)[..., :-1, :]
        g[...] = NAN
    elif layout == "neg_rows":
        g = np.full(moved, NAN, dtype)[::-1]
    else:
        raise ValueError(layout)
    return np.moveaxis(g, -1, axis)


@pytest.mark.parametrize("out_layout", ["c", "rows_gap", "neg_rows"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64] + float16_dtypes(),
                         ids=lambda d: np.dtype(d).name)
def test_grad_out_filled_exactly(fx, rng, out_layout, axis, dtype):
    logits = logits_like(rng, (3, 5, 37) if axis == -1 else (3, 37, 5), dtype)
    target = targets_for(rng, logits.shape, axis, ignore_frac=0.3)
    target[0, 0] = -100
    opts = options("all", rng, 37)
    gdt = result_dtype_of(logits)
    for reduction in REDUCTIONS:
        _, want = fx.cross_entropy(logits, target, axis=axis, reduction=reduction,
                                   return_grad=True, **opts)
        out = _grad_out_like(logits.shape, axis, gdt, out_layout)
        _, got = fx.cross_entropy(logits, target, axis=axis, reduction=reduction,
                                  return_grad=True, grad_out=out, **opts)
        assert got is out and got.dtype == gdt
        assert not np.isnan(out).any(), "grad_out has entries the call did not write"
        assert np.array_equal(out, want)
        ign = np.moveaxis(out, axis, -1)[target == -100]
        assert ign.size and (ign == 0).all()
        if out_layout == "rows_gap":
            assert (np.moveaxis(out, axis, -1).base[..., -1, :] == 123.0).all()


def _rounded(g, dtype):
    """The float32 gradient `g` rounded to nearest even in `dtype` (NumPy's / ml_dtypes' cast)."""
    with np.errstate(over="ignore"):
        return g.astype(dtype)


def _same_bits(a, b):
    """Equal bit patterns, except that any NaN matches any NaN."""
    nan = np.isnan(a.astype(np.float32))
    return np.array_equal(nan, np.isnan(b.astype(np.float32))) and np.array_equal(
        a.view(np.uint16)[~nan], b.view(np.uint16)[~nan])


@pytest.mark.parametrize("out_layout", ["c", "rows_gap", "neg_rows"])
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("opt", ["plain", "all", "weight_smooth"])
@pytest.mark.parametrize("dtype", float16_dtypes(), ids=lambda d: np.dtype(d).name)
def test_grad_out_in_the_16bit_logits_dtype(fx, isa, rng, out_layout, axis, opt, dtype):
    """A float16/bfloat16 `grad_out` gets the float32 gradient rounded once (bitwise NumPy's /
    ml_dtypes' round to nearest even), ignored rows 0, nothing left unwritten."""
    logits = logits_like(rng, (3, 5, 37) if axis == -1 else (3, 37, 5), dtype)
    target = targets_for(rng, logits.shape, axis, ignore_frac=0.3)
    target[0, 0] = -100
    prob = probs_like(rng, logits.shape, axis, np.float32, zero_frac=0.2)
    opts = options(opt, rng, 37)
    for t in (target, prob):
        for reduction in REDUCTIONS:
            loss, want = fx.cross_entropy(logits, t, axis=axis, reduction=reduction, return_grad=True, **opts)
            out = _grad_out_like(logits.shape, axis, dtype, out_layout)
            got_loss, got = fx.cross_entropy(logits, t, axis=axis, reduction=reduction, return_grad=True,
                                             grad_out=out, **opts)
            assert got is out and got.dtype == dtype
            assert np.array_equal(got_loss, loss)
            assert not np.isnan(out.astype(np.float32)).any(), "grad_out has entries the call did not write"
            assert _same_bits(out, _rounded(want, dtype))
            if t is target:
                ign = np.moveaxis(out, axis, -1)[target == -100]
                assert ign.size and (ign.view(np.uint16) == 0).all()  # +0
            if out_layout == "rows_gap":
                assert (np.moveaxis(out, axis, -1).base[..., -1, :].astype(np.float32) == 123.0).all()


@pytest.mark.parametrize("case", ["stored", "beyond_stored", "softcap", "specials", "huge_z"])
@pytest.mark.parametrize("dtype", float16_dtypes(), ids=lambda d: np.dtype(d).name)
def test_16bit_grad_out_paths_threads_in_place(fx, isa, rng, case, dtype):
    """Every gradient path of the kernel (stored exps, recomputed exps beyond the stored-blocks
    limit, softcap, NaN/inf rows, a z-loss gradient beyond float16's range) gives the rounded
    float32 gradient, with 1 or 2 threads, and in place over the logits."""
    from fastxent import _core
    rows, cols = {"stored": (64, 600), "beyond_stored": (2, _core.MAX_STORED_BLOCKS * _core.BLOCK + 1),
                  "softcap": (64, 600), "specials": (40, 1000), "huge_z": (2048, 17)}[case]
    logits = logits_like(rng, (rows, cols), dtype)
    kw = dict(softcap=3.0) if case == "softcap" else dict(z_loss=1e4) if case == "huge_z" else {}
    if case == "specials":
        logits[1, 7] = np.nan
        logits[2, 3] = np.inf
        logits[3, :] = -np.inf
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.1)
    if case == "specials":
        target[2] = 3  # the +inf logit is the target's: a NaN-free row, as far as the kernel goes
    _, want = fx.cross_entropy(logits, target, reduction="sum", return_grad=True, **kw)
    want = _rounded(want, dtype)
    if case == "huge_z" and dtype == np.float16:
        assert np.isinf(want.astype(np.float32)).any()  # the case reaches float16's overflow
    for n_threads in (1, 2):
        out = np.full(logits.shape, np.nan, dtype)
        fx.cross_entropy(logits, target, reduction="sum", return_grad=True, grad_out=out, n_threads=n_threads, **kw)
        assert _same_bits(out, want), f"n_threads={n_threads}"
    buf = logits.copy()
    fx.cross_entropy(buf, target, reduction="sum", return_grad=True, grad_out=buf, **kw)
    assert _same_bits(buf, want), "in place over the logits"


@pytest.mark.parametrize("opt", ["plain", "smooth_z_softcap"])
@pytest.mark.parametrize("dtype,gdtype", [(np.float32, np.float32), (np.float64, np.float64)]
                         + [(d, np.float32) for d in float16_dtypes()] + [(d, d) for d in float16_dtypes()],
                         ids=lambda d: np.dtype(d).name)
def test_large_gradient_streamed_as_in_row_chunks(fx, rng, opt, dtype, gdtype):
    """A gradient of 16 MiB or more (written with non-temporal stores, through a per-thread
    row) holds the bits of the same rows computed in calls below that size, with 1 or 2
    threads, rows starting at any alignment (4099 classes), in a strided-rows grad_out."""
    _check_streamed(fx, rng, opt, dtype, gdtype)


@pytest.mark.parametrize("gdtype", [np.float32] + float16_dtypes()[-1:], ids=lambda d: np.dtype(d).name)
def test_large_gradient_streamed_every_isa(fx, isa, rng, gdtype):
    """The same with each instruction set's non-temporal stores (16, 32 or 64 bytes)."""
    _check_streamed(fx, rng, "plain", gdtype, gdtype)


def _check_streamed(fx, rng, opt, dtype, gdtype):
    rows, cols = 2100, 4099
    assert rows * cols * np.dtype(gdtype).itemsize >= 16 << 20  # the streamed size
    logits = logits_like(rng, (rows, cols), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.1)
    opts = options(opt, rng, cols)
    want_loss = np.empty(rows)
    want = np.empty((rows, cols), gdtype)
    for r0 in range(0, rows, 256):  # 256 rows: at most 8.4 MB
        sl = slice(r0, r0 + 256)
        loss, _ = fx.cross_entropy(logits[sl], target[sl], reduction="none", return_grad=True,
                                   grad_out=want[sl], **opts)
        want_loss[sl] = loss
    for n_threads in (1, 2):
        big = np.full((rows, cols + 3), np.nan, gdtype)  # rows 4102 elements apart
        out = big[:, :cols]
        loss, _ = fx.cross_entropy(logits, target, reduction="none", return_grad=True, grad_out=out,
                                   n_threads=n_threads, **opts)
        assert np.array_equal(loss, want_loss.astype(loss.dtype))
        if np.dtype(gdtype).itemsize == 2:
            assert _same_bits(out, want), f"n_threads={n_threads}"
        else:
            assert np.array_equal(out, want, equal_nan=True), f"n_threads={n_threads}"
        assert np.isnan(big[:, cols:].astype(np.float32)).all()  # nothing written past a row


def test_16bit_grad_out_of_the_other_16bit_dtype_is_refused(fx, rng):
    logits = logits_like(rng, (4, 9), np.float16)
    target = targets_for(rng, logits.shape, -1)
    out = np.zeros((4, 9), np.float64)
    with pytest.raises(TypeError, match="`grad_out` has dtype float64; the gradient of float16 logits is "
                                        "float32 or float16"):
        fx.cross_entropy(logits, target, return_grad=True, grad_out=out)
    assert (out == 0).all()


# --------------------------------------------------------------------------- near-certain targets
def _near_one_cases(tops, sizes):
    for top in tops:
        for n_classes in sizes:
            x = np.zeros(n_classes)
            x[0] = top
            x[1:] = -np.linspace(0, 1, n_classes - 1)  # not all equal
            yield top, x


def _check_target_entry(fx, tops, sizes, dtype, rtol64):
    """The target entry of the gradient is p_t - 1 = -(sum of the other probabilities),
    scaled by w_t / (sum of target weights) under "mean": compared with expm1(-log1p(S)),
    S = sum_{c != t} exp(x_c - x_t), to a few ulp of the result dtype."""
    rtol = rtol64 if dtype == np.float64 else 4 * EPS32
    for top, row in _near_one_cases(tops, sizes):
        x = np.stack([row, row[::-1]]).astype(dtype)  # targets 0 and C - 1: the same loss
        target = np.array([0, row.size - 1])
        w = np.linspace(0.5, 2.0, row.size)
        xs = x.astype(np.float64)
        s = np.sum(np.exp(xs[0, 1:] - xs[0, 0]))
        exact = np.expm1(-np.log1p(s))  # p_t - 1
        for kw, scale in ((dict(reduction="sum"), np.ones(2)),
                          (dict(reduction="mean", weight=w), w[[0, -1]] / (w[0] + w[-1]))):
            for mod in (reference, fx):
                g = mod.cross_entropy(x, target, return_grad=True, **kw)[1]
                got = np.array([g[0, 0], g[1, -1]], np.float64)
                np.testing.assert_allclose(
                    got, exact * scale, rtol=rtol, atol=0,
                    err_msg=f"{mod.__name__}: top {top}, {row.size} classes, {kw}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_target_gradient_precision(fx, dtype):
    _check_target_entry(fx, [0.0, 2.0, 5.0, 10.0], [2, 5, 100, 1000], dtype, rtol64=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_target_probability_near_one(fx, dtype):
    _check_target_entry(fx, [20.0, 30.0, 40.0], [2, 5, 100, 1000], dtype, rtol64=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_chain_factor_relative_precision(fx, dtype):
    cap = 1.0
    x = np.array([[0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0]], dtype)
    target = np.array([0])
    _, got = fx.cross_entropy(x, target, softcap=cap, reduction="sum", return_grad=True)
    th = np.tanh(x.astype(np.float64) / cap)
    p = np.exp(cap * th - reference.logsumexp(cap * th, axis=-1, keepdims=True))
    want = (p - np.eye(x.shape[1])[0]) / np.cosh(x.astype(np.float64) / cap) ** 2
    rtol = 1e-13 if dtype == np.float64 else 8 * EPS32
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_equal_across_threads(fx, rng, kind, dtype):
    logits = logits_like(rng, (8, 48, 1000), dtype)
    if kind == "index":
        target = targets_for(rng, logits.shape, -1, ignore_frac=0.1)
    else:
        target = probs_like(rng, logits.shape, -1, dtype)
    opts = options("all", rng, 1000)
    for reduction in REDUCTIONS:
        kw = dict(reduction=reduction, return_z_loss=True, return_grad=True, **opts)
        results = [fx.cross_entropy(logits, target, n_threads=k, **kw) for k in THREADS]
        for k, r in zip(THREADS[1:], results[1:]):
            for a, b in zip(r, results[0]):
                assert np.array_equal(a, b), f"n_threads={k} differs from n_threads={THREADS[0]}"
        out = np.empty(logits.shape, result_dtype_of(logits))
        fx.cross_entropy(logits, target, n_threads=2, grad_out=out, **kw)
        assert np.array_equal(out, results[0][2])
    # one value against the reference (the grid checks the rest)
    check_xent(fx, logits[:2], target[:2], reduction="mean", n_threads=2, **opts)


# --------------------------------------------------------------------------- PyTorch golden values
def _golden_cases():
    with np.load(GOLDEN, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    cases = json.loads(str(arrays["cases"]))
    return arrays, cases


def test_golden_file_is_complete():
    arrays, cases = _golden_cases()
    assert str(arrays["torch_version"]).startswith("2.")
    assert GOLDEN.stat().st_size < 200_000
    assert len(cases) == 60
    assert {c["reduction"] for c in cases} == set(REDUCTIONS)
    assert {c["label_smoothing"] for c in cases} == {0.0, 0.1}
    assert {c["weight"] for c in cases} == {False, True}
    assert {arrays[f"{c['inputs']}/target"].dtype.kind for c in cases} == {"i", "f"}
    assert {arrays[f"{c['inputs']}/logits"].ndim for c in cases} == {2, 3}


@pytest.mark.parametrize("impl", ["fastxent", "reference"])
def test_matches_pytorch(fx, impl):
    """F.cross_entropy and its autograd gradient (float64, class axis 1) against fastxent and
    the reference: both are float64 evaluations of the same formula, so rtol 1e-12 with an
    absolute floor of 1e-15 per unit of the result's magnitude."""
    mod = fx if impl == "fastxent" else reference
    arrays, cases = _golden_cases()
    for c in cases:
        name = c["inputs"]
        x, t = arrays[f"{name}/logits"], arrays[f"{name}/target"]
        kw = dict(axis=1, reduction=c["reduction"], ignore_index=c["ignore_index"],
                  label_smoothing=c["label_smoothing"],
                  weight=arrays[f"{name}/weight"] if c["weight"] else None)
        loss, grad = mod.cross_entropy(x, t, return_grad=True, **kw)
        want_loss, want_grad = arrays[f"{c['key']}/loss"], arrays[f"{c['key']}/grad"]
        msg = f"{impl} vs torch: {c}"
        assert np.shape(loss) == want_loss.shape and grad.shape == want_grad.shape, msg
        assert np.asarray(loss).dtype == np.float64 and grad.dtype == np.float64, msg
        np.testing.assert_allclose(loss, want_loss, rtol=1e-12,
                                   atol=1e-15 * np.max(np.abs(want_loss)), err_msg=msg)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12,
                                   atol=1e-15 * np.max(np.abs(want_grad)), err_msg=msg)


# --------------------------------------------------------------------------- the same loss with its gradient
# (issue 13, item 5) cross_entropy(x, t, **opts) and cross_entropy(x, t, return_grad=True, **opts)[0]
# are bitwise equal: short rows take one summation order (the lane order of the plain kernel) and
# one log1p on every path, and "sum"/"mean" add the per-row losses in the plain kernel's order.
# The shapes: short rows (lane path, groups with a partial tail), the 64/65 boundary, a row
# over blocks, and one long row (the split path with 2+ threads); rows x V >= 32768 so threads start.
BITWISE_SHAPES = [(5000, 1), (5000, 7), (700, 64), (700, 65), (40, 1000), (1, 9000)]
BITWISE_OPTS = {
    "plain": {}, "ignore": dict(ignore=True), "weight": dict(weight=True),
    "smooth": dict(label_smoothing=0.1), "z": dict(z_loss=1e-3), "softcap": dict(softcap=5.0),
    "prob": dict(prob=True), "prob_weight_smooth": dict(prob=True, weight=True, label_smoothing=0.2),
    "all": dict(ignore=True, weight=True, label_smoothing=0.1, z_loss=0.02, softcap=5.0),
}


def _bitwise_case(rng, shape, dtype, name):
    rows, n = shape
    x = rng.standard_normal(shape) * 3
    x[: rows // 3] -= 30 * (np.arange(n) != 0)  # dominant rows: the tiny log1p
    x[rows // 3: rows // 3 + 3, : min(n, 4)] = 2.5  # ties at the max
    x = x.astype(dtype)
    opts = dict(BITWISE_OPTS[name])
    if opts.pop("weight", False):
        opts["weight"] = rng.uniform(0.25, 2.0, n)
    if opts.pop("prob", False):
        t = probs_like(rng, shape, -1, result_dtype_of(x), zero_frac=0.2)
    else:
        t = rng.integers(0, n, rows)
        if opts.pop("ignore", False):
            t[rng.random(rows) < 0.2] = -100
    return x, t, opts


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape", BITWISE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", [np.float32, np.float64] + float16_dtypes(), ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", list(BITWISE_OPTS))
def test_loss_with_gradient_is_bitwise_the_loss(fx, isa, shape, dtype, name):
    rng = np.random.default_rng(zlib.crc32(repr((shape, name)).encode()))
    x, t, opts = _bitwise_case(rng, shape, dtype, name)
    for reduction in REDUCTIONS:
        base = fx.cross_entropy(x, t, reduction=reduction, n_threads=1, **opts)
        for n_threads in THREADS:
            alone = fx.cross_entropy(x, t, reduction=reduction, n_threads=n_threads, **opts)
            with_grad = fx.cross_entropy(x, t, reduction=reduction, n_threads=n_threads,
                                         return_grad=True, **opts)[0]
            assert _same_bits(alone, base), (reduction, n_threads, "n_threads changes the loss")
            assert _same_bits(with_grad, base), (reduction, n_threads, alone, with_grad)
