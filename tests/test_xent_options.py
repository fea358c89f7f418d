"""cross_entropy options (weight, label_smoothing, probability targets, z_loss, softcap,
return_z_loss) against fastxent.reference: values, dtypes, layouts, threads, special values and
argument validation. Bounds: `xent_bounds` in conftest.py."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent
from fastxent import reference
from conftest import (OPTIONS, assert_within, check_xent, float16_dtypes, logits_like, options,
                      place, probs_like, result_dtype_of, targets_for, widen, xent_bounds)

REDUCTIONS = ["none", "sum", "mean"]
DTYPES_ALL = [np.float32, np.float64] + float16_dtypes()
INF, NAN = np.inf, np.nan

# --------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("layout", ["c", "class_axis_1", "class_axis_1_strided", "rows_gap"])
@pytest.mark.parametrize("dtype", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("opt", list(OPTIONS))
def test_options_grid(fx, rng, opt, kind, dtype, layout):
    values = logits_like(rng, (3, 5, 37), dtype)
    logits, axis = place(values, layout)
    opts = options(opt, rng, 37)
    if kind == "index":
        target = targets_for(rng, logits.shape, axis, ignore_frac=0.2)
    else:
        tdt = np.float64 if dtype == np.float64 else np.float32
        target = place(probs_like(rng, values.shape, -1, tdt, zero_frac=0.1), layout)[0]
    before = np.array(widen(logits))
    for reduction in REDUCTIONS:
        results = [check_xent(fx, logits, target, axis=axis, reduction=reduction, n_threads=k,
                              **opts) for k in (1, 2)]
        for a, b in zip(*results):
            assert np.array_equal(a, b, equal_nan=True), "n_threads=2 differs from n_threads=1"
        # the loss alone: the same number as with return_z_loss/return_grad where that is the
        # same kernel; without options a plain-loss kernel runs (may differ by an ulp)
        alone = fx.cross_entropy(logits, target, axis=axis, reduction=reduction, **opts)
        if opt == "plain" and kind == "index":
            (loss_r, _, _), (e_loss, _, _) = xent_bounds(logits, target, axis=axis,
                                                         reduction=reduction, **opts)
            assert_within(alone, loss_r, e_loss, result_dtype_of(logits), "loss alone")
        else:
            assert np.array_equal(alone, results[0][0])
    assert np.array_equal(widen(logits), before, equal_nan=True)  # input untouched


def test_probability_targets_in_float64_with_float32_logits(fx, rng):
    """The targets are rounded to float32 for float32 logits: within float32's bound."""
    logits = logits_like(rng, (6, 11), np.float32)
    target = probs_like(rng, logits.shape, -1)
    for reduction in REDUCTIONS:
        check_xent(fx, logits, target, reduction=reduction, weight=rng.uniform(0.5, 2, 11),
                   label_smoothing=0.2)


@pytest.mark.parametrize("n_classes,n_rows", [(1, 3), (2, 5), (3, 4), (17, 4), (1000, 3),
                                              (32000, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vocab_sizes(fx, rng, isa, n_classes, n_rows, dtype):
    logits = logits_like(rng, (n_rows, n_classes), dtype)
    opts = options("all", rng, n_classes)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.2)
    prob = probs_like(rng, logits.shape, -1, result_dtype_of(logits))
    for reduction in REDUCTIONS:
        check_xent(fx, logits, target, reduction=reduction, **opts)
        check_xent(fx, logits, prob, reduction=reduction, **opts)


# --------------------------------------------------------------------------- ignore_index
@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 5, 1000])
@pytest.mark.parametrize("opt", ["weight_smooth", "all"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ignore_index(fx, rng, ignore_index, opt, dtype):
    logits = logits_like(rng, (4, 8, 7), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.3, ignore_index=ignore_index)
    target[0, :2] = ignore_index
    logits[0, 0] = NAN  # what ignored rows hold never reaches the results
    logits[0, 1, 2] = -INF
    opts = options(opt, rng, 7)
    ign = target == ignore_index
    for reduction in REDUCTIONS:
        loss, z, grad = check_xent(fx, logits, target, reduction=reduction,
                                   ignore_index=ignore_index, **opts)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        assert (grad[ign] == 0).all()
        if reduction == "none":
            assert (loss[ign] == 0).all() and (z[ign] == 0).all()
            assert (loss[~ign] > 0).all()


def _check_nothing_counted(fx, x, t, opts):
    for reduction in REDUCTIONS:
        loss, z, grad = check_xent(fx, x, t, reduction=reduction, **opts)
        assert grad.shape == x.shape and (grad == 0).all()
        if reduction == "mean":
            assert np.isnan(loss) and np.isnan(z)
            assert np.isnan(fx.cross_entropy(x, t, reduction="mean", **opts))
        elif reduction == "sum":
            assert loss == 0 and z == 0
        else:
            assert loss.shape == t.shape[:1] and (loss == 0).all() and (z == 0).all()


@pytest.mark.parametrize("opt", list(OPTIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_ignored(fx, rng, opt, dtype):
    x = logits_like(rng, (3, 5), dtype)
    x[1] = NAN
    _check_nothing_counted(fx, x, np.full(3, -100), options(opt, rng, 5))


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("opt", ["plain", "all"])
def test_empty_input(fx, rng, opt, kind):
    x = np.zeros((0, 5), np.float32)
    t = np.zeros(0, np.int64) if kind == "index" else np.zeros((0, 5), np.float32)
    _check_nothing_counted(fx, x, t, options(opt, rng, 5))


def test_zero_weight_classes(fx, rng):
    """Targets of weight 0 count for nothing in the numerator and the mean's denominator."""
    logits = logits_like(rng, (6, 4), np.float64)
    target = np.array([0, 1, 2, 3, 0, -100])
    w = np.array([0.0, 1.0, 0.5, 2.0])
    for reduction in REDUCTIONS:
        for eps in (0.0, 0.3):
            loss, _, grad = check_xent(fx, logits, target, reduction=reduction, weight=w,
                                       label_smoothing=eps)
            if eps == 0:
                assert (grad[[0, 4, 5]] == 0).all()
    # weight 0 on the first class: the mean is the mean over the other targets
    keep = [1, 2, 3]
    sub = reference.cross_entropy(logits[keep], target[keep], weight=w)
    assert fx.cross_entropy(logits, target, weight=w) == pytest.approx(sub, rel=1e-14)


# --------------------------------------------------------------------------- special values
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minus_inf_logit_with_zero_coefficient_counts_nothing(fx, dtype):
    """Documented deviation from PyTorch: 0 * (lse - (-inf)) is 0, not NaN."""
    x = np.array([[0.0, -INF, 1.0, 2.0],
                  [-INF, 0.5, -INF, 1.0],
                  [3.0, -INF, -INF, -INF]], dtype)
    q = np.array([[0.5, 0.0, 0.25, 0.25], [0.0, 0.75, 0.0, 0.25], [1.0, 0, 0, 0]], dtype)
    w = np.array([1.0, 0.0, 2.0, 0.5])
    t = np.array([0, 3, 0])
    cases = [(q, {}), (q, dict(weight=w)), (t, {}), (t, dict(z_loss=0.1)),
             (t, dict(weight=np.array([1.0, 0.0, 0.0, 0.5]), label_smoothing=0.0))]
    for target, opts in cases:
        for reduction in REDUCTIONS:
            loss, z, grad = check_xent(fx, x, target, reduction=reduction, **opts)
            assert np.isfinite(loss).all() and np.isfinite(grad).all()
            assert (grad[np.isneginf(x)] == 0).all()
    # rows 0 and 2 of the probability case: exact values
    got = fx.cross_entropy(x, q, reduction="none")
    lse0 = np.log(np.exp(0.0) + np.exp(1.0) + np.exp(2.0))
    assert got[0] == pytest.approx(0.5 * lse0 + 0.25 * (lse0 - 1) + 0.25 * (lse0 - 2), rel=1e-6)
    assert got[2] == 0
    # weight 0 with smoothing: the smoothing term of that class is 0 too
    w0 = np.array([1.0, 0.0, 2.0, 0.5])
    check_xent(fx, x[:1], np.array([0]), weight=w0, label_smoothing=0.1, reduction="none")
    # a non-zero coefficient on -inf: inf, as PyTorch
    assert fx.cross_entropy(x, t, reduction="none", label_smoothing=0.1)[0] == INF
    assert fx.cross_entropy(x[:1], np.array([1]), reduction="sum") == INF


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_keeps_infinite_logits_finite(fx, dtype):
    x = np.array([[INF, 0.0, -INF, 1.0], [-INF, -INF, 2.0, 0.0]], dtype)
    t = np.array([1, 0])
    for reduction in REDUCTIONS:
        loss, z, grad = check_xent(fx, x, t, reduction=reduction, softcap=3.0, z_loss=0.01)
        assert np.isfinite(loss).all() and np.isfinite(z).all()
        assert (grad[np.isinf(x)] == 0).all()  # the chain factor 1 - tanh^2 is 0 there
    # capped at 3: the row is [3, 0, -3, tanh(1/3) * 3]
    c = 3 * np.tanh(1 / 3)
    want = np.log(np.exp(3) + 1 + np.exp(-3) + np.exp(c))
    assert fx.cross_entropy(x[:1], t[:1], softcap=3.0) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_rows(fx, dtype):
    x = logits_like(np.random.default_rng(1), (3, 6), dtype)
    x[1, 2] = NAN
    with np.errstate(invalid="ignore"):
        for target in (np.array([0, 1, 2]), probs_like(np.random.default_rng(2), x.shape, -1,
                                                           result_dtype_of(x))):
            loss, z, grad = check_xent(fx, x, target, reduction="none", label_smoothing=0.1,
                                       z_loss=0.01)
            assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all()
            assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


# --------------------------------------------------------------------------- return_z_loss
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_loss_part(fx, rng, reduction, dtype):
    logits = logits_like(rng, (5, 9, 13), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.3)
    w = rng.uniform(0.5, 2, 13)
    zc = 0.03
    loss, z = fx.cross_entropy(logits, target, weight=w, reduction=reduction, z_loss=zc,
                               return_z_loss=True)
    no_z = fx.cross_entropy(logits, target, weight=w, reduction=reduction)
    lse = reference.logsumexp(logits.astype(np.float64), axis=-1)
    counted = target != -100
    per = np.where(counted, zc * lse**2, 0.0)
    want = {"none": per, "sum": per.sum(), "mean": per.sum() / counted.sum()}[reduction]
    dt = np.dtype(dtype)
    _, (_, e_z, _) = xent_bounds(logits, target, weight=w, reduction=reduction, z_loss=zc)
    assert_within(z, want, e_z, dt, "z-loss")
    # the loss is the loss without z plus z (z under "mean" is divided by the count, not by w)
    _, (e_loss, _, _) = xent_bounds(logits, target, weight=w, reduction=reduction, z_loss=zc)
    assert_within(loss, np.float64(no_z) + np.float64(z) if reduction != "none"
                  else no_z.astype(np.float64) + z, 2 * e_loss, dt, "loss = ce + z")
    # z_loss=0 with return_z_loss: exactly 0 (NaN under "mean" when nothing is counted)
    _, z0 = fx.cross_entropy(logits, target, reduction=reduction, return_z_loss=True)
    assert np.all(z0 == 0)


@pytest.mark.parametrize("return_z_loss", [False, True])
@pytest.mark.parametrize("return_grad", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_return_structure(fx, rng, return_z_loss, return_grad, reduction):
    logits = logits_like(rng, (4, 6), np.float32)
    target = targets_for(rng, logits.shape, -1)
    got = fx.cross_entropy(logits, target, reduction=reduction, z_loss=0.1,
                           return_z_loss=return_z_loss, return_grad=return_grad)
    want = reference.cross_entropy(logits, target, reduction=reduction, z_loss=0.1,
                                   return_z_loss=return_z_loss, return_grad=return_grad)
    n = 1 + return_z_loss + return_grad
    if n == 1:
        assert not isinstance(got, tuple) and not isinstance(want, tuple)
        got, want = (got,), (want,)
    assert isinstance(got, tuple) and len(got) == len(want) == n
    for g, r in zip(got, want):
        assert type(g) is type(r) and np.shape(g) == np.shape(r)
        assert np.asarray(g).dtype == np.float32
    full = fx.cross_entropy(logits, target, reduction=reduction, z_loss=0.1, return_z_loss=True,
                            return_grad=True)
    assert np.array_equal(got[0], full[0])  # the same numbers whatever is returned
    if return_grad:
        assert np.array_equal(got[-1], full[2])


# --------------------------------------------------------------------------- validation
@pytest.fixture(params=["fastxent", "reference"])
def mod(request):
    return fastxent if request.param == "fastxent" else reference


X = np.zeros((3, 4))
T = np.array([0, 1, 3])


def number(value):
    return rf"(?<![\d.-]){re.escape(str(value))}(?![\d.])"


@pytest.mark.parametrize("weight,exc,shows", [
    (np.ones(3), ValueError, r"\(3,\)"),
    (np.ones((1, 4)), ValueError, r"\(1, 4\)"),
    (np.ones(5), ValueError, r"\(5,\)"),
    (np.array([1.0, -0.5, 1.0, 1.0]), ValueError, number(-0.5)),
    (np.array([1.0, 1.0, NAN, 1.0]), ValueError, "nan"),
    (np.array([1.0, 1.0, 1.0, INF]), ValueError, "inf"),
    (np.array(["a", "b", "c", "d"]), TypeError, "weight"),
])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_bad_weight(mod, weight, exc, shows, kind):
    target = T if kind == "index" else np.full(X.shape, 0.25)
    with pytest.raises(exc, match="`weight`") as err:
        mod.cross_entropy(X, target, weight=weight)
    err.match(shows)


@pytest.mark.parametrize("name,value,exc", [
    ("label_smoothing", -0.1, ValueError), ("label_smoothing", 1.5, ValueError),
    ("label_smoothing", NAN, ValueError), ("label_smoothing", "0.1x", TypeError),
    ("z_loss", -1e-4, ValueError), ("z_loss", INF, ValueError), ("z_loss", None, TypeError),
    ("softcap", 0.0, ValueError), ("softcap", -2.0, ValueError), ("softcap", NAN, ValueError),
])
def test_bad_scalar_options(mod, name, value, exc):
    with pytest.raises(exc, match=f"`{name}`") as err:
        mod.cross_entropy(X, T, **{name: value})
    if exc is ValueError:
        err.match(re.escape(repr(value)))


def test_good_scalar_option_edges(mod):
    for kw in (dict(label_smoothing=0), dict(label_smoothing=1), dict(label_smoothing=True),
               dict(z_loss=0), dict(softcap=1e-3), dict(softcap=None), dict(z_loss=np.float32(2))):
        assert np.isfinite(mod.cross_entropy(X, T, **kw))


@pytest.mark.parametrize("shape", [(3,), (3, 5), (4, 3), (3, 4, 1)])
def test_probability_target_wrong_shape(mod, shape):
    with pytest.raises(TypeError, match="`target`") as err:
        mod.cross_entropy(X, np.full(shape, 0.25))
    err.match(re.escape(str(shape)))


def test_grad_out_errors(mod):
    good = np.empty((3, 4))
    with pytest.raises(ValueError, match="`grad_out`.*`return_grad`|`return_grad`.*`grad_out`"):
        mod.cross_entropy(X, T, grad_out=good)
    with pytest.raises(ValueError, match="`grad_out`") as err:
        mod.cross_entropy(X, T, return_grad=True, grad_out=np.empty((4, 3)))
    err.match(re.escape("(4, 3)"))
    with pytest.raises(TypeError, match="`grad_out`") as err:
        mod.cross_entropy(X, T, return_grad=True, grad_out=np.empty((3, 4), np.float32))
    err.match("float32")
    with pytest.raises(TypeError, match="`grad_out`"):  # float16 logits: float32 or float16
        mod.cross_entropy(X.astype(np.float16), T, return_grad=True,
                          grad_out=np.empty((3, 4), np.float64))
    x16 = (np.arange(12.0).reshape(3, 4) / 7).astype(np.float16)
    g16 = np.full((3, 4), np.nan, np.float16)
    assert mod.cross_entropy(x16, T, return_grad=True, grad_out=g16)[1] is g16
    assert np.array_equal(g16, mod.cross_entropy(x16, T, return_grad=True)[1].astype(np.float16))
    with pytest.raises(TypeError, match="`grad_out`"):
        mod.cross_entropy(X, T, return_grad=True, grad_out=[[0.0] * 4] * 3)
    ro = np.empty((3, 4))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="`grad_out`.*read-only"):
        mod.cross_entropy(X, T, return_grad=True, grad_out=ro)
    x = np.zeros((3, 5))
    with pytest.raises(ValueError, match="`grad_out`.*overlaps"):  # shifted view of the logits
        mod.cross_entropy(x[:, 1:], T, return_grad=True, grad_out=x[:, :-1])


def test_grad_out_layout_and_overlap_errors_fastxent(fx):
    with pytest.raises(ValueError, match="`grad_out`.*contiguous"):  # class axis strided
        fx.cross_entropy(X, T, return_grad=True, grad_out=np.asfortranarray(np.empty((3, 4))))
    with pytest.raises(ValueError, match="`grad_out`.*contiguous"):
        fx.cross_entropy(X, T, return_grad=True, grad_out=np.empty((3, 8))[:, ::2])
    q = np.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="`grad_out` overlaps `target`"):
        fx.cross_entropy(X, q, return_grad=True, grad_out=q)
    w = np.ones(4)
    with pytest.raises(ValueError, match="`grad_out` overlaps `weight`"):
        fx.cross_entropy(X[:1], T[:1], weight=w, return_grad=True, grad_out=w[None])


def _failing_calls():
    """(description, kwargs of a call that must fail) -- grad_out is added by the test."""
    return [
        ("weight shape", dict(weight=np.ones(3))),
        ("weight negative", dict(weight=np.array([1.0, 1.0, -1.0, 1.0]))),
        ("weight nan", dict(weight=np.array([1.0, NAN, 1.0, 1.0]))),
        ("label_smoothing", dict(label_smoothing=2.0)),
        ("z_loss", dict(z_loss=-1.0)),
        ("softcap", dict(softcap=0.0)),
        ("reduction", dict(reduction="avg")),
        ("axis", dict(axis=2)),
        ("ignore_index", dict(ignore_index=1.5)),
        ("target range", dict(target=np.array([0, 4, 1]))),
        ("target shape", dict(target=np.array([0, 1]))),
        ("prob target shape", dict(target=np.full((3, 5), 0.2))),
        ("target dtype", dict(target=np.array(["a", "b", "c"]))),
        ("logits dtype", dict(logits=np.zeros((3, 4), np.int64))),
        ("grad_out overlaps target", dict(target="grad_out")),
    ]


@pytest.mark.parametrize("case", _failing_calls(), ids=lambda c: c[0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nothing_written_when_validation_fails(fx, rng, case, dtype):
    _, kw = case
    kw = dict(kw)
    logits = kw.pop("logits", logits_like(rng, (3, 4), dtype))
    gdt = result_dtype_of(logits)
    grad_out = np.full((3, 4), -7.25, gdt)  # a sentinel no gradient can hold
    target = kw.pop("target", np.array([0, 1, 3]))
    for inplace in (False, True):
        if inplace and logits.dtype != gdt:
            continue
        out = logits.copy() if inplace else grad_out
        x = out if inplace else logits
        t = out if isinstance(target, str) else target
        saved = out.copy()
        with pytest.raises((TypeError, ValueError, IndexError)):
            fx.cross_entropy(x, t, return_grad=True, grad_out=out, **kw)
        assert np.array_equal(out, saved), "grad_out was written by a call that failed"


# --------------------------------------------------------------------------- hypothesis
@st.composite
def xent_cases(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim - 1, max_size=ndim - 1)))
    n_classes = draw(st.integers(1, 40))
    axis = draw(st.integers(-ndim, ndim - 1))
    full = list(shape)
    full.insert(axis % ndim, n_classes)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    spread = draw(st.sampled_from([0.1, 3.0, 20.0]))
    logits = (rng.standard_normal(full) * spread).astype(dtype)
    if draw(st.booleans()):
        target = probs_like(rng, tuple(full), axis, result_dtype_of(logits),
                            zero_frac=draw(st.sampled_from([0.0, 0.3])))
    else:
        target = targets_for(rng, tuple(full), axis, ignore_frac=draw(st.sampled_from([0, 0.3])))
    opts = dict(axis=axis, reduction=draw(st.sampled_from(REDUCTIONS)))
    if draw(st.booleans()):
        opts["weight"] = rng.uniform(0.1, 3.0, n_classes)
    if draw(st.booleans()):
        opts["label_smoothing"] = draw(st.floats(0.0, 1.0))
    if draw(st.booleans()):
        opts["z_loss"] = draw(st.floats(0.0, 0.1))
    if draw(st.booleans()):
        opts["softcap"] = draw(st.floats(0.5, 50.0))
    return logits, target, opts


@settings(max_examples=40, deadline=None)
@given(xent_cases(), st.sampled_from([1, 2]))
def test_random_option_combinations(case, n_threads):
    logits, target, opts = case
    check_xent(fastxent, logits, target, n_threads=n_threads, **opts)


def test_bfloat16_probability_targets(fx, rng):
    """bfloat16 class probabilities are read like float32 ones (widened exactly)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = logits_like(rng, (4, 9), np.float32)
    q = rng.dirichlet(np.ones(9), size=4).astype(ml_dtypes.bfloat16)
    got = fx.cross_entropy(x, q, reduction="none")
    want = fx.cross_entropy(x, q.astype(np.float32), reduction="none")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("isa", [i for i in fastxent.available_isas() if i != "baseline"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_gradient_far_beyond_cap(isa, dtype):
    """sech^2(x / cap) for |x| / cap ~ 17: e = exp(-2|u|) is corrected for the rounding of
    u = x / cap, whose relative error it would multiply by 2|u| (found by hypothesis:
    2.4e-6 off in float32). The SSE2 baseline, without fma, keeps the uncorrected e."""
    x = np.array([[6.911684, 16.432364], [6.6087418, -26.063145]], dtype)
    fastxent.set_isa(isa)
    try:
        check_xent(fastxent, x, np.array([0, 0]), axis=0, reduction="none", softcap=1.5)
        rng = np.random.default_rng(3)
        xs = (rng.standard_normal((64, 7)) * 40).astype(dtype)
        check_xent(fastxent, xs, rng.integers(0, 7, 64), reduction="none", softcap=2.0)
    finally:
        fastxent.set_isa(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_tiny_cap_gradient_finite(dtype):
    """A tiny softcap makes x / cap overflow: the rounding correction of sech^2 is then
    skipped (it gave inf * 0 = NaN; found by fuzzing); every ISA."""
    x = np.array([3.0, -1e300 if dtype == np.float64 else -3e38, 0.5, -2.0, 1e-3], dtype)
    for isa in fastxent.available_isas():
        fastxent.set_isa(isa)
        try:
            _, g = fastxent.cross_entropy(x, 0, softcap=1e-30, return_grad=True)
        finally:
            fastxent.set_isa(None)
        _, r = fastxent.reference.cross_entropy(x, 0, softcap=1e-30, return_grad=True)
        assert not np.isnan(g).any()
        np.testing.assert_array_equal(g, r)  # every |x| / cap saturates tanh: sech^2 is 0


# --------------------------------------------------------------------------- floating arguments
# issue 13 item 3: every floating argument beside the logits (class weights, probability
# targets, `b` of logsumexp) accepts every logits dtype, through one check
# (fastxent._arrays.float_operand); values compared with plain NumPy float64 on the values as given.
FLOAT_ARGS = ["weight", "prob", "prob+weight", "b"]


def _np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("arg_dt", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("dtype", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("arg", FLOAT_ARGS)
def test_floating_arguments_accept_every_logits_dtype(rng, arg, dtype, arg_dt):
    x = logits_like(rng, (6, 37), dtype)
    X = widen(x)
    lsm = _np_log_softmax(X)
    dt = result_dtype_of(x)
    w = (rng.random(37) * 2).astype(arg_dt)          # the values as given, in arg_dt
    W = widen(w)
    t = targets_for(rng, x.shape, -1, ignore_frac=0.0)
    if arg == "b":
        got = fastxent.logsumexp(x, axis=-1, b=w)
        m = X.max(-1, keepdims=True)
        want = np.log((W * np.exp(X - m)).sum(-1)) + m[:, 0]
        rdt = np.result_type(np.float32 if np.dtype(dtype).itemsize == 2 else dtype,
                             np.float32 if np.dtype(arg_dt).itemsize == 2 else arg_dt, 1.0)
        assert got.dtype == rdt
        assert_within(got, want, 4 * np.finfo(rdt).eps * (1 + np.abs(X).max(-1)), rdt, "logsumexp b")
        return
    if arg == "weight":
        got = fastxent.cross_entropy(x, t, weight=w, reduction="mean")
        want = (W[t] * -lsm[np.arange(6), t]).sum() / W[t].sum()
        check_xent(fastxent, x, t, weight=w, reduction="none")
    else:
        p = probs_like(rng, x.shape, -1, np.float64, zero_frac=0.1).astype(arg_dt)
        P = widen(p)
        kw = {"weight": (rng.random(37) + 0.5).astype(arg_dt)} if arg == "prob+weight" else {}
        cw = widen(kw["weight"]) if kw else np.ones(37)
        got = fastxent.cross_entropy(x, p, reduction="mean", **kw)
        want = (cw * P * -lsm).sum() / 6
        check_xent(fastxent, x, p, reduction="none", **kw)
    assert type(got) is dt.type
    scale = 1 + np.abs(X).max() + np.log(37)
    assert abs(float(got) - want) <= 4 * np.finfo(dt).eps * scale * abs(want) + 1e-300


@pytest.mark.parametrize("arg", ["weight", "prob", "b"])
@pytest.mark.parametrize("bad", [np.complex64, np.longdouble, object], ids=["complex", "longdouble", "object"])
def test_floating_arguments_refuse_other_dtypes(rng, arg, bad):
    if bad is np.longdouble and np.finfo(np.longdouble).bits == 64:
        pytest.skip("longdouble is float64 on this platform")
    x = logits_like(rng, (2, 3), np.float32)
    v = np.ones((2, 3) if arg == "prob" else 3, dtype=bad)
    name = {"prob": "target"}.get(arg, arg)
    msg = f"`{name}` .*float32, float64, float16, bfloat16"
    if arg == "prob" and bad is not np.longdouble:  # not floating: neither indices nor probabilities
        msg = "`target` must hold integer class indices or floating class probabilities"
    with pytest.raises(TypeError, match=msg):
        if arg == "b":
            fastxent.logsumexp(x, axis=-1, b=v)
        elif arg == "weight":
            fastxent.cross_entropy(x, [0, 1], weight=v)
        else:
            fastxent.cross_entropy(x, v)


def test_bfloat16_class_weights_reproduction():
    """issue 13 item 3: ``TypeError: `weight` must be a real array, got dtype bfloat16``."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = ml_dtypes.bfloat16
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 11)).astype(bf)
    t = rng.integers(0, 11, 8)
    w = (rng.random(11) + 0.25).astype(bf)
    got = fastxent.cross_entropy(x, t, weight=w)
    lsm = _np_log_softmax(x.astype(np.float64))
    W = w.astype(np.float64)
    want = (W[t] * -lsm[np.arange(8), t]).sum() / W[t].sum()
    assert got.dtype == np.float32 and float(got) == pytest.approx(want, rel=1e-6)
    # the same weights in float32 (exact) give bitwise the same loss and gradient
    a = fastxent.cross_entropy(x, t, weight=w, return_grad=True)
    b = fastxent.cross_entropy(x, t, weight=w.astype(np.float32), return_grad=True)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


# --------------------------------------------------------------------------- "mean" over nothing to divide by
# (issue 13, item 4) PyTorch's mean is sum(w_t * loss) / sum(w_t): NaN when the counted targets'
# weights sum to 0, whatever label smoothing, z-loss or softcap add (its nll part is 0 / 0);
# label smoothing used to make it +inf.
ZERO_DENOM_OPTS = [dict(), dict(label_smoothing=0.1), dict(label_smoothing=1.0),
                   dict(label_smoothing=0.1, z_loss=1e-3), dict(label_smoothing=0.1, softcap=5.0),
                   dict(z_loss=0.1, softcap=3.0)]


@pytest.mark.parametrize("opts", ZERO_DENOM_OPTS, ids=lambda o: ",".join(o) or "none")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_over_zero_total_weight_is_nan(fx, rng, opts, dtype):
    x = logits_like(rng, (2, 2), dtype)
    for target, w in (([1, 1], [1.0, 0.0]), ([1, -100], [1.0, 0.0]), ([-100, -100], [1.0, 1.0])):
        for impl in (fx, reference):
            loss = impl.cross_entropy(x, target, weight=w, **opts)
            assert np.isnan(loss), (impl.__name__, target, opts, loss)
            loss, grad = impl.cross_entropy(x, target, weight=w, return_grad=True, **opts)
            assert np.isnan(loss)
            assert np.isnan(grad[np.asarray(target) != -100]).all()
        # the other reductions are finite (the zero-weight positions count 0 + the smoothing part)
        for reduction in ("sum", "none"):
            got = fx.cross_entropy(x, target, weight=w, reduction=reduction, **opts)
            want = reference.cross_entropy(widen(x), target, weight=w, reduction=reduction, **opts)
            assert np.all(np.isfinite(got))
            np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("opts", [dict(label_smoothing=0.1), dict(z_loss=1e-3, softcap=5.0)],
                         ids=["smooth", "z_softcap"])
def test_mean_over_no_rows_is_nan(fx, opts):
    """Nothing to divide by with probability targets either (no rows)."""
    x = np.zeros((0, 3), np.float32)
    for impl in (fx, reference):
        assert np.isnan(impl.cross_entropy(x, np.zeros((0, 3), np.float32), **opts))
        assert np.isnan(impl.cross_entropy(x, np.zeros(0, np.int64), weight=[1.0, 1.0, 1.0], **opts))
