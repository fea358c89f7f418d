"""cross_entropy and its gradient on extreme and non-finite inputs, against the reference.

The README's promise "finite wherever the exact answer is finite", and NaN or inf exactly where
the exact answer has them: rows with NaN, +inf or all--inf blocks (of `_core.BLOCK` classes),
logits near the float32 range, z-loss coefficients beyond double, zero total weight.  Each test
names the bug it was written for; most were found by fuzz/fuzz_fastxent.py.
"""
import math

import numpy as np
import pytest

import fastxent
from fastxent import reference


def _reference_losses(x, target, **kw):
    return reference.cross_entropy(x, target, **kw)


@pytest.mark.parametrize("case", ["zero_z_nan_row", "zero_z_inf_row", "empty_classes_prob", "empty_classes_prob_z"])
def test_loss_on_rows_with_nonfinite_logsumexp(case):
    x = np.array([[np.nan, 0.0], [0.0, 1.0], [np.inf, 0.0]])
    t = np.array([0, 1, 1])
    if case == "zero_z_nan_row":
        loss, z = fastxent.cross_entropy(x, t, reduction="none", return_z_loss=True)
        np.testing.assert_array_equal(z, [0.0, 0.0, 0.0])
    elif case == "zero_z_inf_row":
        loss, z = fastxent.cross_entropy(x, t, reduction="none", return_z_loss=True)
        assert loss[2] == np.inf
    else:
        zc = 1e-3 if case.endswith("_z") else 0.0
        got = fastxent.cross_entropy(np.zeros((2, 0)), np.zeros((2, 0)), reduction="none", z_loss=zc)
        want = fastxent.reference.cross_entropy(np.zeros((2, 0)), np.zeros((2, 0)), reduction="none", z_loss=zc)
        np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("opts", [{}, {"softcap": 30.0}, {"softcap": 0.5, "label_smoothing": 0.1},
                                  {"label_smoothing": 0.1}, {"weight": np.array([1.0, 2.0, 0.5])}])
def test_huge_z_loss_gradient_float32(opts, isa):
    """Found by fuzzing: a z_loss beyond the float32 range (accepted: any finite value) made
    pk overflow in the float32 kernel, and an underflowed exp times inf gave NaN gradient
    entries; the exact entries are huge (inf in float32), as the reference gives them."""
    x = np.array([[0.0, 1.0, -200.0], [3.0, -1.0, 0.5], [-2017.0, 39.5, 3.0]], np.float32)
    t = np.array([1, 0, 0])   # the last target is far below the softcap's range: sech^2 ~ 1e-58
    kw = dict(opts, z_loss=1e300, return_grad=True, reduction="sum")
    if "weight" in kw:
        kw["weight"] = kw["weight"].astype(np.float32)
    loss, g = fastxent.cross_entropy(x, t, **kw)
    rl, rg = _reference_losses(x, t, **kw)
    assert not np.any(np.isnan(g)), g
    np.testing.assert_array_equal(np.isinf(g), np.isinf(rg))
    np.testing.assert_array_equal(np.sign(g), np.sign(rg))
    assert loss == rl


@pytest.mark.parametrize("logits, target, kw, want", [
    ([[np.inf, 0.0]], [[0.0, 1.0]], {}, np.inf),                 # the +inf class has coefficient 0
    ([[np.inf, 0.0]], [[1.0, 0.0]], {}, np.nan),                 # coef (+inf - +inf)
    ([[np.inf, 0.0]], [[0.5, 0.5]], {}, np.nan),
    ([[np.inf, 0.0]], [[0.0, 0.0]], {}, 0.0),                    # an empty sum
    ([[np.inf, -np.inf, 0.0]], [[0.0, 0.5, 0.5]], {}, np.inf),
    ([[np.inf, 0.0]], [1], {}, np.inf),
    ([[np.inf, 0.0]], [1], {"label_smoothing": 0.1}, np.nan),    # smoothing puts weight on +inf
    ([[np.inf, 0.0]], [[0.0, 1.0]], {"label_smoothing": 0.1}, np.nan),
    ([[np.inf, 0.0, 1.0]], [[0.0, 1.0, 0.0]], {"weight": [1.0, 2.0, 3.0]}, np.inf),
    # class-index targets whose weight is 0 (found by tests/test_differential.py: NaN, 0 * inf)
    ([[np.inf, 0.0, 1.0]], [1], {"weight": [1.0, 0.0, 1.0]}, 0.0),
    ([[np.inf, 0.0, 1.0]], [0], {"weight": [0.0, 1.0, 1.0]}, 0.0),  # the +inf class itself
    ([[np.inf, 0.0, 1.0]], [1], {"weight": [1.0, 0.0, 1.0], "z_loss": 1e-3}, np.inf),  # z lse**2
    ([[np.inf, 0.0, 1.0]], [1], {"weight": [0.0, 0.0, 0.0], "label_smoothing": 0.1}, 0.0),
    ([[np.inf, 0.0, 1.0]], [1], {"weight": [0.0, 1.0, 1.0], "label_smoothing": 0.1}, np.inf),
    ([[np.inf, 0.0, 1.0]], [1], {"weight": [1.0, 0.0, 1.0], "label_smoothing": 0.1}, np.nan),
])
def test_inf_row_with_probability_targets(logits, target, kw, want):
    """Found by fuzzing: a row with a +inf logit under probability targets (or label
    smoothing) got loss NaN from the options kernel whatever the coefficients; each class
    with a nonzero coefficient adds coef * (+inf - x_c), a zero coefficient adds 0."""
    x = np.array(logits)
    t = np.array(target)
    kw = {k: np.array(v) if isinstance(v, list) else v for k, v in kw.items()}
    got = fastxent.cross_entropy(x, t, reduction="none", **kw)[0]
    with np.errstate(invalid="ignore"):
        ref = _reference_losses(x, t, reduction="none", **kw)[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [{}, {"label_smoothing": 0.1}, {"z_loss": 1e-3},
                                  {"weight": "random"}, {"label_smoothing": 0.1, "softcap": 20.0},
                                  {"prob": True}])
def test_rows_with_all_minus_inf_blocks(dtype, opts, isa):
    """Rows whose first, middle or last block (of _core.BLOCK elements) is all -inf (the
    block max is -inf while the row max is finite): with label smoothing a leading such
    block gave a NaN loss (the reference: +inf); the gradient (whose first pass stores
    each block's exps) must match the reference and be bitwise the same in place."""
    from fastxent import _core
    b = _core.BLOCK
    n = 2 * b + 904
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, n)).astype(dtype)
    x[0, :b] = -np.inf
    x[1, b:2 * b] = -np.inf
    x[2, 2 * b + 452:] = -np.inf
    kw = dict(opts)
    if kw.pop("prob", False):
        t = rng.random((3, n)).astype(dtype)
        t[:, :b] = 0.0   # no weight on row 0's -inf block: a finite loss there
        t /= t.sum(axis=1, keepdims=True)
    else:
        t = np.array([b + 952, 5, 100])
    if kw.get("weight") == "random":
        kw["weight"] = rng.random(n).astype(dtype)
    loss, g = fastxent.cross_entropy(x, t, return_grad=True, reduction="none", **kw)
    with np.errstate(all="ignore"):
        rloss, rg = _reference_losses(x, t, return_grad=True, reduction="none", **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, rloss, rtol=tol)
    np.testing.assert_allclose(g, rg, rtol=tol, atol=tol * np.abs(rg).max())
    assert np.all(g[x == -np.inf][np.asarray(rg)[x == -np.inf] == 0] == 0)
    xi = x.copy()
    _, gi = fastxent.cross_entropy(xi, t, return_grad=True, grad_out=xi, reduction="none", **kw)
    np.testing.assert_array_equal(gi, g)


@pytest.mark.parametrize("row", [[np.nan], [np.nan, -np.inf], [-np.inf, np.nan, -np.inf, -np.inf]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_gradient_of_nan_rows(row, dtype, isa):
    """Found by fuzzing: in place, the first pass zero-filled a block whose max is -inf
    (NaN is not a max) before looking for NaN in it, so a row of NaN and -inf lost its NaN:
    z-loss +inf instead of NaN."""
    kw = dict(z_loss=0.01, return_z_loss=True, return_grad=True, reduction="none")
    x = np.array([row], dtype)
    loss, z, g = fastxent.cross_entropy(x.copy(), np.array([0]), **kw)
    xi = x.copy()
    li, zi, gi = fastxent.cross_entropy(xi, np.array([0]), grad_out=xi, **kw)
    assert np.isnan(loss[0]) and np.isnan(z[0]) and np.isnan(li[0]) and np.isnan(zi[0])
    assert np.all(np.isnan(g)) and np.all(np.isnan(gi))


@pytest.mark.parametrize("opts", [{"prob": True}, {"label_smoothing": 0.2},
                                  {"prob": True, "weight": [7.0, 7.0, 7.0]}])
def test_coefficient_terms_near_float32_max(opts, isa):
    """Found by fuzzing: with dense coefficients (probability targets, label smoothing) the
    float32 kernel summed coef * (max - x) in float32, which overflows for logits near
    +-FLT_MAX (1e38 - (-1e38)): loss +inf where the exact one (and the reference's) is
    finite.  README: "finite wherever the exact answer is finite"."""
    x = np.array([[1e38, -1e38, 0.0], [3.0e38, 1.0, -3.0e38], [0.5, 1.5, -1.0]], np.float32)
    kw = {k: v for k, v in opts.items() if k != "prob"}
    if "weight" in kw:
        kw["weight"] = np.array(kw["weight"], np.float32)
    t = (np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], np.float32)
         if opts.get("prob") else np.array([0, 2, 1]))
    for reduction in ("none", "sum", "mean"):
        got = fastxent.cross_entropy(x, t, reduction=reduction, **kw)
        with np.errstate(over="ignore"):
            ref = _reference_losses(x, t, reduction=reduction, **kw)
        np.testing.assert_allclose(got, ref, rtol=1e-5)   # inf only where the reference has it
    if "weight" not in kw:   # these means are finite (the bug made them +inf)
        assert np.isfinite(fastxent.cross_entropy(x, t, **kw))


@pytest.mark.parametrize("z_loss", [0.0, 1.0])
@pytest.mark.parametrize("mod", [fastxent, fastxent.reference])
def test_gradient_of_equal_maxima_near_float64_max(mod, z_loss):
    """Found by tests/test_differential.py, in the reference: p = exp(x - lse) with lse = 1e308 +
    log(3) rounded to 1e308 gave p = 1 for each of three equal maxima (gradient [0, 1, 1, 0]
    instead of [-2/3, 1/3, 1/3, 0]), and with z_loss an infinite gradient where 2 lse p is
    6.7e307; p is now exp(-(max - x) - log(sum exp(x - max)))."""
    x = np.array([[1e308, 1e308, 1e308, 5.0]])
    loss, g = mod.cross_entropy(x, [0], reduction="sum", z_loss=z_loss, return_grad=True)
    p = np.array([1 / 3, 1 / 3, 1 / 3, 0.0])
    want = p - [1.0, 0.0, 0.0, 0.0] + 2 * z_loss * (1e308 * p)
    # the z part beyond double is exp(log p + log|2 z lse|): ~709 eps (RTOL[float64] of conftest)
    np.testing.assert_allclose(g[0], want, rtol=1e-12 if z_loss else 4e-16, atol=0)


@pytest.mark.parametrize("mod", [fastxent, fastxent.reference])
def test_z_loss_gradient_huge_lse_not_in_place(mod):
    """lse = 1e308: 2 z lse overflows, yet each mean gradient entry is finite: the max
    class gets (1 + 2 lse) / 2 = 1e308, the classes whose p underflowed get 0 (not
    inf * 0 = NaN; found by fuzzing, in the reference)."""
    x = np.array([[1e308, -1e308, 0.0, 5.0]] * 2)
    _, g = mod.cross_entropy(x, np.array([2, 2]), z_loss=1.0, return_grad=True)
    np.testing.assert_array_equal(g, [[1e308, 0.0, -0.5, 0.0]] * 2)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_loss_beyond_float32_no_numpy_warning(reduction):
    """A float32 loss beyond FLT_MAX is inf, without NumPy's overflow RuntimeWarning
    from fastxent's own cast or sum (which was printed before)."""
    import warnings
    x = np.array([[3e38, 0.0, 1.0]] * 2, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fastxent.cross_entropy(x, np.array([1, 1]), z_loss=1.0, reduction=reduction)
    assert np.all(np.isposinf(out))


@pytest.mark.parametrize("isa", fastxent.available_isas())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_loss_gradient_coefficient_beyond_double(isa, dtype):
    """z_loss = 1e300: the gradient's coefficient 2 z_loss lse is beyond double, so p_c K is
    taken as exp(log p_c + log K): 0 where p is astronomically small (was inf * 0 = NaN),
    a finite value where a tiny p meets the huge K (was inf), as in the reference
    (found by fuzzing and review)."""
    x = np.array([[2.9e29, 1.4e30, -1.0e30, 1.0e30, -6.7e28],
                  [6.8e29, 1.4e30, 1.3e30, 8.3e29, -9.9e29]], dtype)
    t = np.array([3, 2])
    fastxent.set_isa(isa)
    try:
        _, g = fastxent.cross_entropy(x, t, reduction="sum", z_loss=1e300, return_grad=True)
        _, g2 = fastxent.cross_entropy(np.array([[1e8, 1e8, 1e8 - 744.5]]), np.array([0]),
                                       reduction="sum", z_loss=1e300, return_grad=True)
    finally:
        fastxent.set_isa(None)
    _, r = fastxent.reference.cross_entropy(x, t, reduction="sum", z_loss=1e300, return_grad=True)
    expect = np.array([[0, np.inf, 0, -1, 0], [0, np.inf, -1, 0, 0]], dtype)
    np.testing.assert_array_equal(r, expect)
    np.testing.assert_array_equal(g, expect)
    # p_c K with p = (1, 1, e^-744.5) / (2 + e^-744.5) and K = 2e300 lse, computed in logs:
    # ~1.0e308 for the first two (the target also gets -1, invisible there), ~4.65e-16
    lse = 1e8 + math.log(2.0 + math.exp(-744.5))
    lk = math.log(2e300) + math.log(lse) - math.log(2.0 + math.exp(-744.5))
    want = [math.exp(lk) - 1.0, math.exp(lk), math.exp(lk - 744.5)]
    np.testing.assert_allclose(g2[0], want, rtol=1e-6)


@pytest.mark.parametrize("isa", fastxent.available_isas())
def test_mean_over_zero_weight_gradient_all_nan(isa):
    """"mean" with zero total weight divides by 0: every gradient entry is NaN, also where
    p underflowed."""
    x = np.array([[3.1e29, 2.3e29, -1.2e30, -2.3e30]], np.float32)
    w = np.array([0.5, 1.0, 0.75, 0.0], np.float32)
    fastxent.set_isa(isa)
    try:
        loss, g = fastxent.cross_entropy(x, np.array([3]), weight=w, return_grad=True)
    finally:
        fastxent.set_isa(None)
    assert np.isnan(loss) and np.all(np.isnan(g))
