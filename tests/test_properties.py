"""Hypothesis properties of the fast functions, checked against each other.

Logits are multiples of 1/8 with |x| <= 128 (and the odd -inf), so shifting them by an integer
is exact in float32 and float64: any difference is the library's own rounding. Two computed
values that are each within the conftest bound of the truth are compared with twice it.
"""

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fastxent as fx
from conftest import DTYPES, RTOL, UNIT, assert_log_close, relayout, row_scale

SETTINGS = settings(max_examples=50, deadline=None)
NO_MEMMAP = ["c", "rows_gap", "fortran", "neg_rows", "neg_cols", "strided", "readonly"]

# k / 8 for |k| <= 1024; the few values past the end become -inf (a class of probability 0)
_ELEMENT = st.integers(-1024, 1024 + 12).map(lambda k: k / 8 if k <= 1024 else -np.inf)


@st.composite
def logits(draw, max_rows=6, max_classes=70):
    dtype = draw(st.sampled_from(DTYPES))
    shape = (draw(st.integers(1, max_rows)), draw(st.integers(1, max_classes)))
    x = draw(hnp.arrays(dtype, shape, elements=_ELEMENT))
    return relayout(x, draw(st.sampled_from(NO_MEMMAP)))


@st.composite
def logits_and_target(draw):
    x = draw(logits())
    n_rows, n_classes = x.shape
    t = draw(hnp.arrays(np.int64, n_rows, elements=st.integers(0, n_classes - 1)))
    ignored = draw(hnp.arrays(bool, n_rows))
    return x, np.where(ignored & draw(st.booleans()), -100, t)


def _f64(v):
    return np.asarray(v, dtype=np.float64)


@SETTINGS
@given(x=logits(), shift=st.integers(-1000, 1000), axis=st.sampled_from([0, 1, -1]))
def test_log_softmax_shift_invariance(x, shift, axis):
    y = x + x.dtype.type(shift)  # exact
    assert_log_close(fx.log_softmax(y, axis=axis), fx.log_softmax(x, axis=axis), x.dtype,
                     row_scale(y, axis), factor=2)


@SETTINGS
@given(x=logits(), shift=st.integers(-1000, 1000))
def test_logsumexp_shift_equivariance(x, shift):
    y = x + x.dtype.type(shift)
    assert_log_close(fx.logsumexp(y, axis=1), _f64(fx.logsumexp(x, axis=1)) + shift, x.dtype,
                     row_scale(y, 1, keepdims=False), factor=2)


@SETTINGS
@given(x=logits(), axis=st.sampled_from([0, 1]))
def test_softmax_rows_sum_to_one(x, axis):
    p = _f64(fx.softmax(x, axis=axis))
    assert ((p >= 0) & (p <= 1))[~np.isnan(p)].all()
    live = np.isfinite(x).any(axis=axis)  # a row of only -inf has no distribution (nan)
    total = p.sum(axis=axis)
    assert np.isnan(total[~live]).all()
    bound = RTOL[x.dtype] + UNIT[x.dtype] * row_scale(x, axis, keepdims=False)
    assert (np.abs(total - 1) <= bound)[live].all(), (total[live], bound)


@SETTINGS
@given(data=logits_and_target())
def test_cross_entropy_is_minus_log_softmax_at_target(data):
    x, t = data
    loss = fx.cross_entropy(x, t, reduction="none")
    counted = t != -100
    picked = -_f64(fx.log_softmax(x, axis=1))[np.arange(len(t)), np.where(counted, t, 0)]
    expected = np.where(counted, picked, 0.0)
    assert_log_close(loss, expected, x.dtype, np.squeeze(row_scale(x, 1), 1), factor=2)
    # the class axis first gives the same losses
    assert_log_close(fx.cross_entropy(x.T, t, axis=0, reduction="none"), loss, x.dtype,
                     np.squeeze(row_scale(x, 1), 1), factor=2)


@SETTINGS
@given(data=logits_and_target())
def test_mean_and_sum_agree_with_per_position_losses(data):
    x, t = data
    loss = _f64(fx.cross_entropy(x, t, reduction="none"))
    counted = t != -100
    scale = np.squeeze(row_scale(x, 1), 1)
    assert_log_close(fx.cross_entropy(x, t, reduction="sum"), loss.sum(), x.dtype,
                     scale[counted].sum() + 1, factor=2)
    with np.errstate(invalid="ignore"):
        mean = loss.sum() / counted.sum()
    assert_log_close(fx.cross_entropy(x, t), mean, x.dtype,
                     scale[counted].mean() if counted.any() else 1.0, factor=2)


def _log_ppl(ppl):
    with np.errstate(divide="ignore"):
        return np.log(_f64(ppl))


def assert_perplexity(got, mean_loss, dtype, scale):
    """`got` against exp(`mean_loss`), in log space: log(perplexity) carries the perplexity's
    relative bound RTOL + UNIT * scale = UNIT * (scale + RTOL / UNIT). Where exp(mean) is past
    the dtype's largest value the answer is inf (either is fine within the bound of it)."""
    dtype = np.dtype(dtype)
    log_got, mean_loss = np.atleast_1d(_log_ppl(got)), np.atleast_1d(mean_loss)
    scale = np.broadcast_to(scale + RTOL[dtype] / UNIT[dtype], mean_loss.shape)
    bound = 2 * (RTOL[dtype] * np.abs(mean_loss) + UNIT[dtype] * scale)
    log_max = np.log(float(np.finfo(dtype).max))
    with np.errstate(invalid="ignore"):  # mean_loss is nan where nothing is counted
        over = mean_loss - bound > log_max
        edge = np.isposinf(log_got) & (mean_loss + bound >= log_max)
    assert np.isposinf(log_got[over]).all()
    rest = ~over & ~edge
    assert_log_close(log_got[rest], mean_loss[rest], dtype, scale[rest], factor=2)


@SETTINGS
@given(data=logits_and_target())
def test_perplexity_is_exp_of_mean_loss(data):
    x, t = data
    counted = t != -100
    mean_loss = _f64(fx.cross_entropy(x, t))
    scale = np.squeeze(row_scale(x, 1), 1)
    scale = scale[counted].mean() if counted.any() else 1.0
    ppl = fx.perplexity(x, t)
    assert type(ppl) is x.dtype.type
    assert_perplexity(ppl, mean_loss, x.dtype, scale)


@SETTINGS
@given(data=logits_and_target(), n_seq=st.integers(1, 3))
def test_per_sequence_perplexity_is_exp_of_each_sequence_mean(data, n_seq):
    x, t = data
    x3 = np.stack([x] * n_seq)  # (n_seq, T, V)
    t3 = np.stack([t] * n_seq)
    if n_seq > 1:
        t3[0] = -100  # a sequence with nothing counted
    loss = _f64(fx.cross_entropy(x3, t3, reduction="none"))
    counted = t3 != -100
    with np.errstate(invalid="ignore"):
        expected = loss.sum(axis=1) / counted.sum(axis=1)
    scale = np.squeeze(row_scale(x3, -1), -1)
    with np.errstate(invalid="ignore"):
        scale = np.nan_to_num(np.where(counted, scale, 0).sum(1) / counted.sum(1), nan=1.0)
    got = fx.perplexity(x3, t3, per_sequence=True)
    assert got.shape == (n_seq,) and got.dtype == x.dtype
    assert_perplexity(got, expected, x.dtype, scale)


@SETTINGS
@given(x=logits(), split=st.integers(0, 70))
def test_logsumexp_merges_like_a_single_pass(x, split):
    whole = fx.logsumexp(x)
    scale = row_scale(x, None, keepdims=False)
    # the inner results' errors, the outer pass's and the single pass's: three bounds
    assert_log_close(whole, fx.logsumexp(_f64(fx.logsumexp(x, axis=1))), x.dtype, scale,
                     factor=3)
    split = min(split, x.shape[1])
    parts = [fx.logsumexp(x[:, :split]), fx.logsumexp(x[:, split:])]
    assert_log_close(whole, np.logaddexp(*map(_f64, parts)), x.dtype, scale, factor=3)
