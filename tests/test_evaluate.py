"""token_stats, kl_divergence and Evaluator against fastxent.reference.

Bounds (conftest constants, per result dtype; reference evaluated on the widened values):
  nll, ref_nll   log-space: RTOL |ref| + UNIT scale            (scale of the row, as cross_entropy)
  entropy        log-space: log s - u / s, u / s a mean of x - max under Q, |x - max| <= the scale
  p_target, ...  probability: (RTOL + UNIT scale) |ref| + PROB_ATOL
  kl             RTOL |ref| + UNIT (scale_x + scale_y): w / s_y is a mean under P of differences of
                 the two shifted rows, each rounded at the size of its own row's scale
  correct, same_top, counted   exactly
Report figures are compared with `reference.evaluate_reference` on the same values: means and
errors within REPORT_RTOL[dt] (per-token errors are at most a few ulp of the result dtype relative
to the token's scale), percentiles within 2^-24 relative plus that (kept values are float32).
"""
import math
import pickle
import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastxent
from fastxent import reference
from fastxent._exact import ExactSum
from fastxent.evaluate import Evaluator, format_report
from conftest import (PROB_ATOL, RTOL, UNIT, assert_bitwise_equal_over_threads, assert_log_close,
                      assert_result_type, assert_within, ce_scale, float16_dtypes, logits_like,
                      has_ml_dtypes, place, result_dtype_of, widen)

DTYPES_ALL = [np.float32, np.float64] + float16_dtypes()
FLOATS = ("nll", "entropy", "p_target", "kl", "ref_nll", "ref_p_target")
BOOLS = ("correct", "same_top", "counted")
INF, NAN = np.inf, np.nan


def ref_like(rng, x, noise=0.5):
    """Reference logits close to `x` (as a quantised model's would be), in x's dtype."""
    y = widen(x) + rng.standard_normal(np.shape(x)) * noise + 1.25
    return y.astype(np.asarray(x).dtype)


def targets(rng, shape, n_classes, ignore_frac=0.2):
    t = rng.integers(0, n_classes, size=shape)
    t[rng.random(shape) < ignore_frac] = -100
    return t


def check_stats(got, x, t, y=None, axis=-1, **kw):
    """Every field of `got` (a TokenStats) against the reference on the widened values."""
    exp = reference.token_stats(widen(x), t, ref_logits=None if y is None else widen(y), axis=axis, **kw)
    dt = result_dtype_of(x)
    shape = np.shape(t)
    sx = ce_scale(widen(x), axis)
    sy = ce_scale(widen(y), axis) if y is not None else None
    ref_only = ("kl", "same_top", "ref_nll", "ref_p_target")
    names = [f for f in FLOATS + BOOLS if y is not None or f not in ref_only]
    assert set(got.as_dict()) == set(names)
    for f in names:
        g, e = getattr(got, f), exp[f]
        if f in BOOLS:
            assert_result_type(g, np.bool_, shape)
            assert np.array_equal(g, e), f"{f}: {np.argwhere(np.asarray(g) != e)[:5].tolist()}"
            continue
        assert_result_type(g, dt, shape)
        if f in ("nll", "entropy"):
            assert_log_close(g, e, dt, sx)
        elif f == "ref_nll":
            assert_log_close(g, e, dt, sy)
        elif f == "kl":
            assert_log_close(g, e, dt, np.where(np.isfinite(sx + sy), sx + sy, 1.0))
        else:
            sc = sx if f == "p_target" else sy
            assert_within(g, e, (RTOL[dt] + UNIT[dt] * sc) * np.abs(np.nan_to_num(e)) + PROB_ATOL[dt],
                          dt, f)
    if y is None:
        assert got.kl is None and got.same_top is None and got.ref_nll is None


# --------------------------------------------------------------------------- token_stats
@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("layout", ["c", "class_axis_1", "class_axis_1_strided", "rows_gap"])
@pytest.mark.parametrize("dtype", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
def test_token_stats_layouts_and_dtypes(rng, dtype, layout, with_ref):
    values = logits_like(rng, (2, 5, 2500), dtype)  # two blocks of classes per row
    ref_values = ref_like(rng, values)
    x, axis = place(values, layout)
    y, _ = place(ref_values, layout)
    t = targets(rng, (2, 5), 2500)
    t[0, 0] = int(np.argmax(widen(values[0, 0])))  # one certainly correct token
    got = fastxent.token_stats(x, t, ref_logits=y if with_ref else None, axis=axis)
    check_stats(got, x, t, y if with_ref else None, axis=axis)
    assert got.correct[0, 0] and not got.counted[t == -100].any()
    assert np.isnan(got.nll[t == -100]).all() and not got.correct[t == -100].any()


@pytest.mark.parametrize("n_classes", [1, 3, 64, 2048, 2049, 40000])
def test_token_stats_class_counts(rng, n_classes):
    x = logits_like(rng, (6, n_classes), np.float32)
    y = ref_like(rng, x)
    t = rng.integers(0, n_classes, 6)
    check_stats(fastxent.token_stats(x, t, ref_logits=y), x, t, y)


def test_token_stats_isas(rng, isa):
    for dtype in DTYPES_ALL:
        x = logits_like(rng, (5, 3001), dtype, spread=8.0)
        y = ref_like(rng, x, noise=2.0)
        t = targets(rng, 5, 3001)
        check_stats(fastxent.token_stats(x, t, ref_logits=y), x, t, y)


def test_token_stats_special_values():
    n = 4100  # three blocks, so the special values sit in different blocks
    base = np.linspace(-5, 5, n)
    rows = {
        "plain": (base, base[::-1]),
        "-inf in x (P > 0 = Q): kl inf": (np.where(np.arange(n) == 3000, -INF, base), base),
        "P = e^-800 > 0 (exp underflows) where Q = 0: kl inf": (
            np.where(np.arange(n) == 3000, -INF, base), np.where(np.arange(n) == 3000, -800.0, base)),
        "-inf in both at the same class": (np.where(np.arange(n) == 10, -INF, base),
                                           np.where(np.arange(n) == 10, -INF, base[::-1])),
        "-inf in y only": (base, np.where(np.arange(n) < 2048, -INF, base)),
        "x -inf where y -inf, whole first block": (np.where(np.arange(n) < 2048, -INF, base),
                                                   np.where(np.arange(n) < 2048, -INF, base)),
        "all -inf x": (np.full(n, -INF), base),
        "all -inf y": (base, np.full(n, -INF)),
        "+inf in x": (np.where(np.arange(n) == 4000, INF, base), base),
        "+inf in y": (base, np.where(np.arange(n) == 5, INF, base)),
        "NaN in x": (np.where(np.arange(n) == 2500, NAN, base), base),
        "NaN in y": (base, np.where(np.arange(n) == 1, NAN, base)),
        "huge opposite magnitudes": (np.where(np.arange(n) % 2, 3e38, -3e38),
                                     np.where(np.arange(n) % 3, -3e38, 3e38)),
        "huge, same": (np.where(np.arange(n) % 2, 1e38, -1e38), np.where(np.arange(n) % 2, 1e38, -1e38)),
        "tie for the max across blocks": (np.where(np.isin(np.arange(n), [100, 3000]), 9.0, base % 3),
                                          np.where(np.arange(n) == 3000, 9.0, base % 3)),
    }
    names = list(rows)
    x = np.stack([rows[k][0] for k in names]).astype(np.float32)
    y = np.stack([rows[k][1] for k in names]).astype(np.float32)
    t = np.full(len(names), 3000)
    t[names.index("+inf in x")] = 4000      # the target is the +inf: nll NaN (as cross_entropy)
    t[names.index("tie for the max across blocks")] = 100
    got = fastxent.token_stats(x, t, ref_logits=y)
    check_stats(got, x, t, y)
    kl = dict(zip(names, got.kl.tolist()))
    assert kl["-inf in x (P > 0 = Q): kl inf"] == INF
    assert kl["P = e^-800 > 0 (exp underflows) where Q = 0: kl inf"] == INF
    assert kl["-inf in both at the same class"] > 0 and math.isfinite(kl["-inf in both at the same class"])
    assert math.isnan(kl["all -inf x"]) and math.isnan(kl["NaN in y"]) and math.isnan(kl["+inf in x"])
    assert kl["huge, same"] == 0.0
    i = names.index("tie for the max across blocks")
    assert got.correct[i] and not got.same_top[i]  # first maximum: class 100 vs class 3000
    x64, y64 = x.astype(np.float64), y.astype(np.float64)  # the same values in float64
    check_stats(fastxent.token_stats(x64, t, ref_logits=y64), x64, t, y64)


def test_token_stats_float64_huge():
    x = np.array([[1e300, -1e300, 0.0, 5.0], [-1e300, -1e300, 1.0, 2.0]])
    y = np.array([[-1e300, 1e300, 0.0, 5.0], [0.0, 0.0, 1.0, 2.0]])
    t = np.array([0, 3])
    got = fastxent.token_stats(x, t, ref_logits=y)
    check_stats(got, x, t, y)
    assert np.isfinite(got.kl).all() and got.kl[0] > 1e300


# --------------------------------------------------------------------------- mixed dtypes
# Model and reference logits of different dtypes are each read in their own precision (the rule
# of fastxent._arrays.pair_dtype); the oracle here is plain NumPy float64 on the arrays as given.
def pair_result_dtype(x, y):
    """float64 when either side is float64, else float32."""
    return np.dtype(np.float64 if np.float64 in (np.asarray(x).dtype, np.asarray(y).dtype) else np.float32)


def np_pair_stats(x, t, y):
    """Plain NumPy float64 statistics of (rows, V) model logits x and reference y, as given."""
    X, Y = widen(x), widen(y)

    def log_softmax(a):
        m = a.max(axis=-1, keepdims=True)
        return a - m - np.log(np.exp(a - m).sum(axis=-1, keepdims=True))

    lq, lp = log_softmax(X), log_softmax(Y)
    q, pr = np.exp(lq), np.exp(lp)
    r = np.arange(X.shape[0])
    return {"nll": -lq[r, t], "entropy": -(q * lq).sum(-1), "p_target": q[r, t],
            "correct": X.argmax(-1) == t, "kl": np.maximum((pr * (lp - lq)).sum(-1), 0.0),
            "same_top": X.argmax(-1) == Y.argmax(-1), "ref_nll": -lp[r, t], "ref_p_target": pr[r, t]}


def quantised_pair(rng, shape, model_dt, ref_dt):
    """The same float64 values rounded to each dtype: they differ wherever the dtypes do."""
    base = rng.standard_normal(shape) * 3
    return base.astype(model_dt), base.astype(ref_dt)


def check_pair_stats(got, x, t, y):
    exp = np_pair_stats(x, t, y)
    dt = pair_result_dtype(x, y)
    sx, sy = ce_scale(widen(x)), ce_scale(widen(y))
    for f, e in exp.items():
        g = getattr(got, f)
        if f in BOOLS:
            assert g.dtype == np.bool_ and np.array_equal(g, e), f
            continue
        assert g.dtype == dt, (f, g.dtype, dt)
        if f in ("nll", "entropy"):
            assert_log_close(g, e, dt, sx)
        elif f == "ref_nll":
            assert_log_close(g, e, dt, sy)
        elif f == "kl":
            assert_log_close(g, e, dt, sx + sy)
        else:
            sc = sx if f == "p_target" else sy
            assert_within(g, e, (RTOL[dt] + UNIT[dt] * sc) * e + PROB_ATOL[dt], dt, f)


@pytest.mark.parametrize("ref_dt", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("model_dt", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
def test_token_stats_each_side_in_its_own_dtype(rng, model_dt, ref_dt):
    x, y = quantised_pair(rng, (64, 300), model_dt, ref_dt)
    t = rng.integers(0, 300, 64)
    got = fastxent.token_stats(x, t, ref_logits=y)
    check_pair_stats(got, x, t, y)
    kl = fastxent.kl_divergence(y, x)  # KL(ref || model): the same rule
    assert np.array_equal(kl, got.kl)
    mean = fastxent.kl_divergence(y, x, reduction="mean")
    assert type(mean) is pair_result_dtype(x, y).type
    e = np_pair_stats(x, t, y)["kl"].mean()
    dt = pair_result_dtype(x, y)
    assert abs(float(mean) - e) <= RTOL[dt] * e + UNIT[dt] * float(np.mean(ce_scale(widen(x)) + ce_scale(widen(y))))


@pytest.mark.skipif(not has_ml_dtypes(), reason="needs ml_dtypes")
def test_bf16_model_vs_float32_reference_is_not_identical():
    """issue 13 item 2: the reference was rounded to bfloat16 first, giving KL 0 and same_top 1."""
    import ml_dtypes
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((64, 1000), dtype=np.float32) * 3
    model = ref.astype(ml_dtypes.bfloat16)
    t = rng.integers(0, 1000, 64)
    exp = np_pair_stats(model, t, ref)
    want_kl, want_top = exp["kl"].mean(), exp["same_top"].mean()
    assert 6.7e-05 < want_kl < 6.9e-05 and want_top == 0.984375  # the figures of the issue
    assert float(fastxent.kl_divergence(ref, model, reduction="mean")) == pytest.approx(want_kl, rel=1e-3)
    s = fastxent.token_stats(model, t, ref_logits=ref)
    assert float(s.kl.mean()) == pytest.approx(want_kl, rel=1e-3)
    assert s.same_top.mean() == want_top
    ev = Evaluator()
    ev.update(model, t, ref_logits=ref)
    r = ev.report()
    assert r["kl_mean"] == pytest.approx(want_kl, rel=1e-3) and r["same_top"] == want_top
    assert r["ref_nll_mean"] == pytest.approx(exp["ref_nll"].mean(), rel=1e-6)
    assert r["nll_mean"] == pytest.approx(exp["nll"].mean(), rel=1e-6)
    assert r["nll_mean"] != r["ref_nll_mean"]


@pytest.mark.parametrize("model_dt, ref_dt", [(np.float16, np.float32), (np.float32, np.float64),
                                              (np.float64, np.float16), (np.float16, "bfloat16")])
def test_mixed_dtypes_widened_block_by_block(rng, monkeypatch, model_dt, ref_dt):
    """Blocks of a few rows (any layout) give bitwise the one-block result and bounded temporaries."""
    import tracemalloc
    import fastxent._per_token as per_token
    if ref_dt == "bfloat16":
        if not has_ml_dtypes():
            pytest.skip("needs ml_dtypes")
        import ml_dtypes
        ref_dt = ml_dtypes.bfloat16
    xv, yv = quantised_pair(rng, (5, 7, 2100), model_dt, ref_dt)
    t = targets(rng, (5, 7), 2100)
    x, axis = place(xv, "class_axis_1_strided")
    y, _ = place(yv, "class_axis_1")
    whole = fastxent.token_stats(x, t, ref_logits=y, axis=axis)
    check_pair_stats(fastxent.token_stats(xv.reshape(35, -1), np.where(t < 0, 0, t).reshape(-1),
                                          ref_logits=yv.reshape(35, -1)),
                     xv.reshape(35, -1), np.where(t < 0, 0, t).reshape(-1), yv.reshape(35, -1))
    monkeypatch.setattr(per_token, "_WIDEN_ELEMS", 3 * 2100)  # 3 rows a block: splits the 7-row axis
    parts = fastxent.token_stats(x, t, ref_logits=y, axis=axis)
    for f in FLOATS + BOOLS:
        assert np.array_equal(getattr(parts, f), getattr(whole, f), equal_nan=f in FLOATS), f
    kl = fastxent.kl_divergence(y, x, axis=axis)
    assert np.array_equal(kl, np.where(t == -100, kl, whole.kl), equal_nan=True)
    # no whole-array copy: the largest temporary is a block, not the (5, 7, 2100) array
    big = np.ascontiguousarray(np.broadcast_to(xv, (8,) + xv.shape)).reshape(-1, 2100)
    ybig = np.ascontiguousarray(np.broadcast_to(yv, (8,) + yv.shape)).reshape(-1, 2100)
    tbig = rng.integers(0, 2100, big.shape[0])
    full = big.shape[0] * 2100 * 8
    tracemalloc.start()
    try:
        fastxent.token_stats(big, tbig, ref_logits=ybig)
        fastxent.kl_divergence(ybig, big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < full / 8, (peak, full)


def test_row_blocks_cover_rows_once_in_order():
    from fastxent._arrays import row_blocks
    for batch, n, budget in [((), 5, 1), ((7,), 3, 6), ((4, 5, 3), 10, 70), ((4, 5, 3), 10, 1),
                             ((2, 3), 4, 10 ** 6), ((3, 0, 2), 4, 8)]:
        ids = np.arange(int(np.prod(batch))).reshape(batch)
        seen = []
        for idx in row_blocks(batch, n, budget):
            block = ids[idx + (Ellipsis,)]
            assert block.flags.c_contiguous
            assert block.size * n <= max(n, budget)
            seen += block.reshape(-1).tolist()
        assert seen == list(range(ids.size)), (batch, n, budget)


def test_token_stats_zero_d_and_empty(rng):
    x = logits_like(rng, (7,), np.float32)
    got = fastxent.token_stats(x, 3, ref_logits=x)
    assert isinstance(got.nll, np.float32) and isinstance(got.correct, np.bool_)
    assert got.kl == 0.0 and got.same_top
    empty = fastxent.token_stats(np.zeros((0, 5)), np.zeros(0, int), ref_logits=np.zeros((0, 5)))
    assert empty.nll.shape == (0,) and empty.kl.dtype == np.float64


@pytest.mark.parametrize("with_ref", [False, True])
def test_token_stats_threads_bitwise(rng, with_ref):
    x = logits_like(rng, (41, 3000), np.float32)
    y = ref_like(rng, x) if with_ref else None
    t = targets(rng, 41, 3000)
    results = [fastxent.token_stats(x, t, ref_logits=y, n_threads=k) for k in (1, 2, 3, None)]
    for r in results[1:]:
        for f, v in r.as_dict().items():
            assert np.array_equal(v, getattr(results[0], f), equal_nan=True), f


def test_token_stats_errors(rng):
    x = logits_like(rng, (2, 3, 5), np.float32)
    t = np.zeros((2, 3), int)
    with pytest.raises(TypeError, match=r"`target` must hold integer class indices, got dtype float64"):
        fastxent.token_stats(x, t.astype(float))
    msg = "`target` value 5 at position (1, 2) is out of range for 5 classes"
    with pytest.raises(IndexError, match=re.escape(msg)):
        fastxent.token_stats(x, np.where(np.arange(6).reshape(2, 3) == 5, 5, t))
    msg = "`target` has shape (3,) but `logits` with shape (2, 3, 5)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        fastxent.token_stats(x, np.zeros(3, int))
    msg = "`ref_logits` has shape (2, 3, 4) but `logits` has shape (2, 3, 5)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        fastxent.token_stats(x, t, ref_logits=x[..., :4])
    with pytest.raises(TypeError, match=re.escape("`ref_logits` is complex (complex128)")):
        fastxent.token_stats(x, t, ref_logits=x.astype(complex))
    with pytest.raises(TypeError, match="`logits` has dtype int64"):
        fastxent.token_stats(t, t[..., 0])
    with pytest.raises(np.exceptions.AxisError):
        fastxent.token_stats(x, t, axis=3)
    with pytest.raises(TypeError, match="`ignore_index` must be an integer"):
        fastxent.token_stats(x, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="`n_threads` must be a non-zero integer"):
        fastxent.token_stats(x, t, n_threads=0)


# --------------------------------------------------------------------------- kl_divergence
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", DTYPES_ALL, ids=lambda d: np.dtype(d).name)
def test_kl_divergence(rng, dtype, reduction):
    q_values = logits_like(rng, (3, 4, 2100), dtype)
    p_values = ref_like(rng, q_values)
    p, axis = place(p_values, "class_axis_1")
    q, _ = place(q_values, "class_axis_1")
    got = fastxent.kl_divergence(p, q, axis=axis, reduction=reduction)
    exp = reference.kl_divergence(widen(p), widen(q), axis=axis, reduction=reduction)
    dt = result_dtype_of(q)
    assert_result_type(got, dt, np.shape(exp))
    scale = ce_scale(widen(p), axis) + ce_scale(widen(q), axis)
    scale = {"none": scale, "sum": scale.sum(), "mean": scale.mean()}[reduction]
    assert_log_close(got, exp, dt, scale)


def test_kl_divergence_values_and_specials():
    p = np.array([math.log(0.5), math.log(0.5), -INF])
    q = np.array([math.log(0.9), math.log(0.1), -INF])
    assert fastxent.kl_divergence(p, q) == pytest.approx(0.5 * math.log(5 / 9) + 0.5 * math.log(5), rel=1e-14)
    assert fastxent.kl_divergence(p, np.array([0.0, -INF, 0.0])) == INF  # P > 0 where Q = 0
    assert fastxent.kl_divergence(np.array([0.0, -INF]), np.array([0.0, -INF])) == 0.0  # P = 0 = Q
    assert math.isnan(fastxent.kl_divergence(p, np.array([0.0, NAN, 1.0])))
    x = np.array([[3e38, -3e38, 1.0], [-3e38, -3e38, -3e38]], np.float32)
    got = fastxent.kl_divergence(x[::-1], x)
    exp = reference.kl_divergence(x[::-1].astype(np.float64), x.astype(np.float64))
    assert np.array_equal(got, exp.astype(np.float32))  # inf (overflow) and 0


def test_kl_divergence_mixed_dtypes_and_errors(rng):
    p = logits_like(rng, (3, 50), np.float32)
    q = ref_like(rng, p).astype(np.float64)
    got = fastxent.kl_divergence(p, q)
    assert got.dtype == np.float64
    assert np.array_equal(got, fastxent.kl_divergence(p.astype(np.float64), q))
    assert fastxent.kl_divergence(p, p.astype(np.float16).astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"`reduction` must be one of 'none', 'sum', 'mean', got 'max'"):
        fastxent.kl_divergence(p, p, reduction="max")
    msg = "`p_logits` has shape (3, 50) but `q_logits` has shape (3, 49)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        fastxent.kl_divergence(p, p[:, 1:])
    assert math.isnan(fastxent.kl_divergence(np.zeros((0, 4)), np.zeros((0, 4)), reduction="mean"))


_EIGHTHS = st.integers(-800, 800).map(lambda k: k / 8)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shift=st.integers(-500, 500), n=st.integers(1, 3000))
def test_kl_of_shifted_logits_is_exactly_zero(data, shift, n):
    """Softmax is shift invariant, and the kernel's differences of shifted logits cancel a
    shift exactly (multiples of 1/8 shift exactly): KL(P || P) = 0 exactly, and nll agrees."""
    x = np.array(data.draw(st.lists(_EIGHTHS, min_size=n, max_size=n)), np.float32)
    y = x + np.float32(shift)
    assert fastxent.kl_divergence(y, x) == 0.0
    s = fastxent.token_stats(x, 0, ref_logits=y)
    assert s.kl == 0.0 and s.same_top


def test_kl_threads_bitwise(rng):
    p = logits_like(rng, (40, 2000), np.float32)
    q = ref_like(rng, p)
    assert_bitwise_equal_over_threads(fastxent.kl_divergence, p, q)


# --------------------------------------------------------------------------- exact sums
def test_exact_sum_is_exact_and_order_independent(rng):
    v = rng.standard_normal(5000) * np.exp(rng.uniform(-700, 700, 5000))
    v = np.concatenate([v, [5e-324, -1e-310, 1e308, 1e308, -1e308, 0.0, -0.0]])
    a, b = ExactSum(), ExactSum()
    a.add(v)
    for part in np.array_split(rng.permutation(v), 7):
        b.add(part)
    assert a.k == b.k and a.value() == float(sum(Fraction(f) for f in v.tolist()))  # exact, rounded once
    c = ExactSum.decode(a.encode())
    assert c.k == a.k and c.value() == a.value()
    a.add([INF, 1.0])
    assert a.value() == INF and a.fraction() is None
    a.add([-INF])
    assert math.isnan(a.value())
    big = ExactSum()
    big.add(np.full(3, 1.7e308))
    assert big.value() == INF


# --------------------------------------------------------------------------- Evaluator
def compare_reports(got, exp, dt, *, percentiles=True, x=None, y=None, axis=-1):
    """Evaluator.report() against reference.evaluate_reference().

    With the logits `x` and `y`, the KL and delta-p fields are held to the per-token contract that
    `check_stats` applies to `token_stats` (an absolute error of ``UNIT * (sx + sy)`` for KL, the
    row scales of both sides): a mean or a percentile of values that are each within ``d`` of
    the exact ones is within ``max d`` of the exact mean or percentile. The summation order of a
    row, and so the rounding of a small KL, differs between ISAs (8 or 16 float lanes)."""
    rtol = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-5}[np.dtype(dt)]
    side = {}
    if x is not None and y is not None:
        s = ce_scale(widen(x), axis) + ce_scale(widen(y), axis)
        d = UNIT[np.dtype(dt)] * float(np.max(s[np.isfinite(s)], initial=0.0))
        side = {"kl_mean": d, "kl_percentiles": d, "delta_p_mean": d, "delta_p_percentiles": d}
    keys = set(exp) if percentiles else {k for k in exp if not k.endswith("_percentiles")}
    assert set(got) == keys
    for k in keys:
        g, e = got[k], exp[k]
        if isinstance(e, dict):
            for q in e:  # float32 kept values: 2^-24 relative, plus the per-token error
                assert g[q] == pytest.approx(e[q], rel=2.0**-24 + rtol, abs=max(rtol * 1e-3, side.get(k, 0.0))), (k, q)
        elif isinstance(e, list):
            assert g == pytest.approx(e, rel=rtol), k
        elif isinstance(e, int):
            assert g == e, k
        elif k in side:
            assert g == pytest.approx(e, rel=rtol, abs=max(rtol * 1e-3, side[k]), nan_ok=True), k
        else:
            assert g == pytest.approx(e, rel=rtol, abs=rtol * 1e-3, nan_ok=True), k


@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_evaluator_report_matches_reference(rng, dtype, with_ref):
    x = logits_like(rng, (6, 30, 200), dtype)
    y = ref_like(rng, x, noise=0.8) if with_ref else None
    t = targets(rng, (6, 30), 200)
    ev = Evaluator()
    for i in range(0, 6, 2):  # three batches
        ev.update(x[i:i + 2], t[i:i + 2], None if y is None else y[i:i + 2])
    got = ev.report()
    exp = reference.evaluate_reference(widen(x), t, None if y is None else widen(y))
    compare_reports(got, exp, result_dtype_of(x), x=x, y=y)
    assert got["tokens"] == int((t != -100).sum())
    assert got["ppl_ci95"][0] < got["ppl"] < got["ppl_ci95"][1]
    text = format_report(got)
    assert f"tokens                      : {got['tokens']}" in text and "perplexity" in text
    assert ("KL p99.9" in text) == with_ref


@pytest.mark.parametrize("layout", ["class_axis_1", "rows_gap"])
@pytest.mark.parametrize("dtype", float16_dtypes(), ids=lambda d: np.dtype(d).name)
def test_evaluator_16bit_and_layouts(rng, dtype, layout):
    values = logits_like(rng, (3, 7, 90), dtype)
    x, axis = place(values, layout)
    y, _ = place(ref_like(rng, values), layout)
    t = targets(rng, (3, 7), 90)
    ev = Evaluator(axis=axis)
    ev.update(x, t, y)
    exp = reference.evaluate_reference(widen(x), t, widen(y), axis=axis)
    compare_reports(ev.report(), exp, np.float32, x=x, y=y, axis=axis)


def shard_stream(rng, n_batches=5, with_ref=True):
    out = []
    for i in range(n_batches):
        rows = int(rng.integers(1, 9))
        x = logits_like(rng, (rows, 300), np.float32)
        out.append((x, targets(rng, rows, 300, 0.3), ref_like(rng, x) if with_ref else None))
    return out


@pytest.mark.parametrize("with_ref", [False, True])
def test_merge_equals_single_pass(rng, with_ref):
    stream = shard_stream(rng, 7, with_ref)
    one = Evaluator(n_threads=1)
    for b in stream:
        one.update(*b)
    shards = [Evaluator(n_threads=k) for k in (2, 1, 3)]
    for i, b in enumerate(stream[::-1]):  # another order, other thread counts
        shards[i % 3].update(*b)
    merged = Evaluator().merge(shards[2]).merge(shards[0]).merge(Evaluator()).merge(shards[1])
    assert merged.report() == one.report()  # bitwise, percentiles included
    assert merged.tokens == one.tokens


def test_state_dict_round_trip(rng, tmp_path):
    stream = shard_stream(rng, 6)
    full = Evaluator()
    part = Evaluator()
    for b in stream:
        full.update(*b)
    for b in stream[:3]:
        part.update(*b)
    state = part.state_dict()
    for k, v in state.items():
        assert isinstance(v, (int, bool, np.ndarray)), (k, type(v))
    np.savez(tmp_path / "ev.npz", **state)
    with np.load(tmp_path / "ev.npz") as f:
        restored = Evaluator.from_state_dict(f)
    restored2 = pickle.loads(pickle.dumps(Evaluator.from_state_dict(state)))
    assert restored.report() == part.report() == restored2.report()
    for b in stream[3:]:
        restored.update(*b)
    assert restored.report() == full.report()
    with pytest.raises(ValueError, match="no entry 'tokens'"):
        Evaluator.from_state_dict({k: v for k, v in state.items() if k != "tokens"})
    with pytest.raises(ValueError, match="has version 99"):
        Evaluator.from_state_dict({**state, "version": 99})


def test_keep_per_token_false(rng):
    stream = shard_stream(rng, 3)
    a, b = Evaluator(keep_per_token=True), Evaluator(keep_per_token=False)
    for s in stream:
        a.update(*s)
        b.update(*s)
    ra, rb = a.report(), b.report()
    assert "kl_percentiles" in ra and "kl_percentiles" not in rb and "delta_p_percentiles" not in rb
    assert {k: v for k, v in ra.items() if not k.endswith("_percentiles")} == rb
    assert b.state_dict()["kl_values"].size == 0
    with pytest.raises(ValueError, match="keep_per_token"):
        a.merge(b)


def test_evaluator_rules(rng):
    ev = Evaluator()
    rep = ev.report()
    assert rep["tokens"] == 0 and math.isnan(rep["ppl"]) and "ref_ppl" not in rep
    x = logits_like(rng, (4, 10), np.float32)
    assert ev.update(x, np.full(4, -100)) == 0 and ev.has_ref is None  # nothing counted
    assert ev.update(x, np.array([1, 2, -100, 3]), x) == 3 and ev.has_ref
    msg = "`ref_logits` was given in earlier updates but not given in this one"
    with pytest.raises(ValueError, match=msg):
        ev.update(x, np.zeros(4, int))
    assert ev.tokens == 3  # nothing added by the failed update
    rep = ev.report()
    assert rep["kl_mean"] == 0.0 and rep["same_top"] == 1.0 and rep["ppl_ratio"] == 1.0
    assert rep["delta_p_rms"] == 0.0 and rep["kl_percentiles"]["max"] == 0.0
    plain = Evaluator()
    plain.update(x, np.zeros(4, int))
    with pytest.raises(ValueError, match="`other` was fed without reference logits"):
        ev.merge(plain)
    with pytest.raises(TypeError, match="`other` must be an Evaluator"):
        ev.merge({})
    with pytest.raises(IndexError, match=re.escape("position (0,)")):
        ev.update(x, np.array([10, 0, 0, 0]), x)
    one = Evaluator()
    one.update(x[:1], np.array([0]))
    assert one.report()["tokens"] == 1 and math.isnan(one.report()["nll_err"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_percentiles_with_an_infinite_kl(rng, dtype):
    """One token's KL is +inf (reference mass on a class whose model logit is -inf).  NumPy's
    np.percentile gives NaN for every percentile that touches it (inf - inf in its interpolation
    formula, even for the maximum), which the report used to show.  The percentile is the limit of
    the interpolation: with 10 tokens (virtual index 9 q / 100) max, p99.9, p99, p95 and p90 put a
    positive weight on the +inf and are +inf; the median and below are finite, NumPy's values."""
    x = rng.standard_normal((10, 5)).astype(dtype)
    y = (x + rng.standard_normal((10, 5)) * 0.5).astype(dtype)
    x[3, 1] = -np.inf
    t = np.array([0, 1, 2, 0, 4, 3, 2, 1, 0, 4])
    ev = Evaluator()
    ev.update(x, t, y)
    got = ev.report()
    kl = got["kl_percentiles"]
    assert [k for k, v in kl.items() if v == INF] == ["max", "p99.9", "p99", "p95", "p90"]
    finite = {k: v for k, v in kl.items() if v != INF}
    assert all(math.isfinite(v) for v in finite.values()), kl
    kls = fastxent.token_stats(x, t, ref_logits=y).kl.astype(np.float32).astype(np.float64)  # as kept
    assert kls[3] == INF and np.isfinite(np.delete(kls, 3)).all()
    qs = dict(fastxent.evaluate.PERCENTILES)
    for k, v in finite.items():  # NumPy is right where the +inf has no weight
        assert v == np.percentile(kls, qs[k]), k
    assert math.isfinite(got["delta_p_percentiles"]["max"])
    compare_reports(got, reference.evaluate_reference(widen(x), t, widen(y)), result_dtype_of(x), x=x, y=y)


def test_percentiles_next_to_infinities():
    """The interpolation's limit wherever an infinity is an endpoint; NaN only between -inf and +inf
    with both weighted, or when a value is NaN (as NumPy); finite samples give np.percentile's bits."""
    from fastxent._report import percentiles as _percentiles
    from fastxent.evaluate import PERCENTILES
    qs = [q for _, q in PERCENTILES]
    cases = [
        ([0.1, 0.2, 0.3, INF], [INF] * 5 + [0.25, 0.13, 0.115, 0.103, 0.1003, 0.1]),
        ([INF, INF], [INF] * 11),
        ([-INF, 0.0, INF], [INF] * 5 + [0.0] + [-INF] * 5),   # median: index 1 exactly, no weight on +-inf
        ([-INF, INF], [INF] + [NAN] * 9 + [-INF]),              # p99.9 .. p0.1 weigh both
        ([0.5, NAN, INF], [NAN] * 11),
    ]
    for values, expected in cases:
        got = np.array(list(_percentiles(np.array(values)).values()))
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(reference._percentiles(np.array(values), qs), got)
    v = np.random.default_rng(1).standard_normal(37)
    assert list(_percentiles(v).values()) == list(np.percentile(v, qs))
