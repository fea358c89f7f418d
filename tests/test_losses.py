"""cross_entropy and perplexity against fastxent.reference."""

import numpy as np
import pytest

from fastxent import reference
from conftest import (DTYPES, LAYOUTS, VOCABS, assert_bitwise_equal_over_threads,
                      assert_log_close, assert_prob_close, assert_result_type, ce_scale,
                      logits_like, ref64, targets_for)

REDUCTIONS = ["none", "sum", "mean"]
INF, NAN = np.inf, np.nan


def check_ce(fx, logits, target, **kw):
    """Compare ``fx.cross_entropy`` with the reference: type, dtype, shape and values."""
    got = fx.cross_entropy(logits, target, **kw)
    kw.pop("n_threads", None)
    expected = reference.cross_entropy(logits, target, **kw)
    exact = ref64("cross_entropy", logits, target, **kw)
    dtype = np.asarray(expected).dtype
    assert_result_type(got, dtype, np.shape(expected))
    scale = ce_scale(logits, kw.get("axis", -1))
    counted = np.asarray(target) != kw.get("ignore_index", -100)
    reduction = kw.get("reduction", "mean")
    if reduction == "sum":
        scale = np.sum(scale[counted]) + 1.0
    elif reduction == "mean":
        scale = np.mean(scale[counted]) if counted.any() else 1.0
    assert_log_close(got, exact, dtype, scale)
    return got


def check_ppl(fx, logits, target, **kw):
    """Compare ``fx.perplexity`` with the reference. exp() turns an absolute error e of the
    mean loss into a relative error e, hence the probability-style (relative) bound."""
    got = fx.perplexity(logits, target, **kw)
    kw.pop("n_threads", None)
    expected = reference.perplexity(logits, target, **kw)
    exact = ref64("perplexity", logits, target, **kw)
    dtype = np.asarray(expected).dtype
    assert_result_type(got, dtype, np.shape(expected))
    scale = ce_scale(logits, kw.get("axis", -1))
    counted = np.asarray(target) != kw.get("ignore_index", -100)
    sum_axis = -1 if kw.get("per_sequence") else None
    with np.errstate(invalid="ignore"):
        scale = np.sum(np.where(counted, scale, 0.0), axis=sum_axis) / np.sum(counted, sum_axis)
    scale = np.where(np.isfinite(scale), scale, 1.0)
    assert_prob_close(got, exact, dtype, scale)
    return got


# --------------------------------------------------------------------------- layouts and axes
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_layouts_and_axes(fx, make_layout, rng, reduction, axis, layout, dtype):
    values = logits_like(rng, (3, 4, 67), dtype)
    target_values = targets_for(rng, values.shape, axis, ignore_frac=0.2)
    logits, target = make_layout(values, layout), make_layout(target_values, layout)
    before, t_before = np.array(logits), np.array(target)
    check_ce(fx, logits, target, axis=axis, reduction=reduction)
    assert np.array_equal(np.asarray(logits), before) and np.array_equal(target, t_before)


@pytest.mark.parametrize("per_sequence", [False, True])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_perplexity_layouts_and_axes(fx, make_layout, rng, per_sequence, axis, layout, dtype):
    values = logits_like(rng, (3, 5, 37), dtype)
    target_values = targets_for(rng, values.shape, axis, ignore_frac=0.2)
    check_ppl(fx, make_layout(values, layout), make_layout(target_values, layout), axis=axis,
              per_sequence=per_sequence)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.int64, np.intp,
                                    np.uint8, np.uint16, np.uint32, np.uint64])
def test_target_integer_dtypes(fx, rng, dtype, tdtype):
    logits = logits_like(rng, (6, 11), dtype)
    signed = np.dtype(tdtype).kind == "i"
    ignore_index = -100 if signed else 5
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.3, ignore_index=ignore_index)
    for reduction in REDUCTIONS:
        want = fx.cross_entropy(logits, target, reduction=reduction, ignore_index=ignore_index)
        got = check_ce(fx, logits, target.astype(tdtype), reduction=reduction,
                       ignore_index=ignore_index)
        assert np.array_equal(got, want, equal_nan=True)
    check_ppl(fx, logits, target.astype(tdtype), ignore_index=ignore_index)


@pytest.mark.parametrize("layout", ["neg_rows", "strided", "fortran"])
def test_target_layout_independent_of_logits_layout(fx, make_layout, rng, layout):
    logits = logits_like(rng, (5, 6, 9), np.float64)
    target = make_layout(targets_for(rng, logits.shape, -1, np.int32, 0.25), layout)
    check_ce(fx, logits, target, reduction="none")
    check_ppl(fx, logits, target, per_sequence=True)


@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 5, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ignore_index(fx, rng, ignore_index, dtype):
    logits = logits_like(rng, (4, 8, 7), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.3, ignore_index=ignore_index)
    target[0, 0] = ignore_index
    for reduction in REDUCTIONS:
        r = check_ce(fx, logits, target, reduction=reduction, ignore_index=ignore_index)
        if reduction == "none":
            assert (r[target == ignore_index] == 0).all()
    check_ppl(fx, logits, target, ignore_index=ignore_index)
    check_ppl(fx, logits, target, ignore_index=ignore_index, per_sequence=True)


@pytest.mark.parametrize("ignore_index", [2**32 + 3, -(2**32) + 1, 2**62])
@pytest.mark.parametrize("dtype", DTYPES)
def test_small_class_ignore_index_beyond_int32(fx, isa, rng, ignore_index, dtype):
    """The small-class path picks target logits by comparing 32-bit lanes: an ignore_index
    whose low 32 bits name a class (3, 1, 0 here) still gives 0, and that class's targets
    their own loss."""
    logits = logits_like(rng, (1003, 10), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.3, ignore_index=ignore_index)
    low = ignore_index % 2**32
    assert np.sum(target == low) > 10
    for reduction in REDUCTIONS:
        r = check_ce(fx, logits, target, reduction=reduction, ignore_index=ignore_index)
        if reduction == "none":
            assert (r[target == ignore_index] == 0).all()
            assert (r[target == low] > 0).all()
    check_ppl(fx, logits, target, ignore_index=ignore_index)


@pytest.mark.parametrize("shape", [(3, 46_667, 7), (5, 26_215, 65)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_and_mean_over_many_slabs_of_rows(fx, isa, rng, shape, dtype):
    """"sum"/"mean" add the losses in the kernel in slabs of 65536 rows (no per-position
    array): three slabs, the last one partial, ignored targets; rows with a gap between
    them and a layout that is not flat give the same bits."""
    logits = logits_like(rng, shape, dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.1)
    b, t, n = shape
    for reduction in ("sum", "mean"):
        if reduction == "mean" or n < 64:  # the reference's time: one check for long rows
            check_ce(fx, logits, target, reduction=reduction)
        assert_bitwise_equal_over_threads(fx.cross_entropy, logits, target, reduction=reduction)
    if n < 64:
        check_ppl(fx, logits, target)
    gap = np.zeros((b * t, n + 3), dtype)[:, :n]  # rows n + 3 apart (flat)
    gap[...] = logits.reshape(b * t, n)
    walk = np.zeros((b, t + 1, n), dtype)[:, :t]  # batches (t + 1) n apart (not flat)
    walk[...] = logits
    want = fx.cross_entropy(logits, target)
    assert fx.cross_entropy(gap, target.reshape(-1)) == want
    assert fx.cross_entropy(walk, target) == want
    logits[b - 1, t - 5, 2] = np.nan  # in the last slab, at a counted position
    target[b - 1, t - 5] = 1
    assert np.isnan(fx.cross_entropy(logits, target, reduction="sum"))
    assert np.isnan(fx.perplexity(logits, target))


# --------------------------------------------------------------------------- vocabulary sizes
@pytest.mark.parametrize("n_classes,n_rows", VOCABS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vocab_sizes(fx, rng, n_classes, n_rows, dtype):
    logits = logits_like(rng, (n_rows, n_classes), dtype)
    target = targets_for(rng, logits.shape, -1)
    for reduction in REDUCTIONS:
        check_ce(fx, logits, target, reduction=reduction)
        check_ce(fx, logits.T, target, axis=0, reduction=reduction)  # class axis strided
    check_ppl(fx, logits, target)
    check_ppl(fx, logits[None], target[None], per_sequence=True)


# --------------------------------------------------------------------------- empties, shapes
@pytest.mark.parametrize("dtype", DTYPES)
def test_nothing_counted(fx, rng, dtype):
    logits = logits_like(rng, (3, 5), dtype)
    ignored = np.full(3, -100)
    cases = [(logits, ignored), (np.zeros((0, 5), dtype), np.zeros(0, np.int64)),
             (np.zeros((2, 0, 5), dtype), np.zeros((2, 0), np.int64))]
    for x, t in cases:
        none = fx.cross_entropy(x, t, reduction="none")
        assert_result_type(none, dtype, t.shape)
        assert (none == 0).all()
        total = fx.cross_entropy(x, t, reduction="sum")
        assert_result_type(total, dtype, ())
        assert total == 0
        mean = fx.cross_entropy(x, t, reduction="mean")
        assert_result_type(mean, dtype, ())
        assert np.isnan(mean)
        ppl = fx.perplexity(x, t)
        assert_result_type(ppl, dtype, ())
        assert np.isnan(ppl)
    per_seq = fx.perplexity(np.zeros((2, 0, 5), dtype), np.zeros((2, 0), np.int64),
                            per_sequence=True)
    assert_result_type(per_seq, dtype, (2,))
    assert np.isnan(per_seq).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_position_logits_1d(fx, rng, dtype):
    logits = logits_like(rng, 9, dtype)
    for target in (np.int64(4), 4, np.array(4, np.int16)):
        for reduction in REDUCTIONS:
            check_ce(fx, logits, target, reduction=reduction)
        check_ppl(fx, logits, target)
    assert fx.cross_entropy(logits, -100, reduction="none") == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_sequence_shapes(fx, rng, dtype):
    logits = logits_like(rng, (2, 3, 6, 5), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.2)
    target[1, 2, :] = -100  # one sequence with nothing counted
    got = check_ppl(fx, logits, target, per_sequence=True)
    assert got.shape == (2, 3) and np.isnan(got[1, 2])
    assert np.isfinite(np.delete(got.ravel(), 5)).all()
    t1 = targets_for(rng, (6, 5), -1)
    assert_result_type(check_ppl(fx, logits[0, 0], t1, per_sequence=True), dtype, ())
    # class axis first: logits (V, B, T), target (B, T)
    check_ppl(fx, np.moveaxis(logits, -1, 0), target, axis=0, per_sequence=True)


def test_list_and_integer_inputs(fx):
    check_ce(fx, [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [2, 0], reduction="none")
    got = check_ce(fx, np.array([[1, 2, 0], [0, -1, 3]], np.float64), [2, 0])
    assert type(got) is np.float64
    check_ppl(fx, [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], [2, 0])


# --------------------------------------------------------------------------- special values
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(fx, dtype):
    big = 1e38 if dtype == np.float32 else 1e307
    logits = np.array([
        [0.0, -INF, 1.0, 2.0],      # target logit -inf: loss inf
        [-INF, -INF, -INF, -INF],   # all -inf: nan
        [NAN, 0.0, 1.0, 2.0],       # nan: that row only
        [-INF, 0.0, -INF, -INF],    # a single finite class: loss 0 exactly
        [big, -big, 0.0, big],      # huge magnitudes
        [big, big, big, big],
        [-big, -big, -big, -big],
        [1.0, 2.0, 3.0, 4.0],
        [big, -big, 0.0, 0.0],      # loss 2 * big: finite
    ], dtype=dtype)
    target = np.array([1, 0, 2, 1, 0, 3, 2, 3, 1])
    with np.errstate(all="ignore"):
        none = check_ce(fx, logits, target, reduction="none")
    assert none[0] == INF and np.isnan(none[1]) and np.isnan(none[2]) and none[3] == 0
    assert np.isfinite(none[4:]).all() and none[8] == dtype(2 * big)
    assert np.isnan(fx.cross_entropy(logits, target))
    assert fx.cross_entropy(logits[[0, 3, 4, 7]], target[[0, 3, 4, 7]]) == INF
    assert fx.perplexity(logits[[0, 7]], target[[0, 7]]) == INF
    # ignored positions contribute nothing, even on a row of nan or of -inf
    t_ign = target.copy()
    t_ign[[0, 1, 2]] = -100
    with np.errstate(all="ignore"):
        r = check_ce(fx, logits, t_ign, reduction="none")
        assert (r[:3] == 0).all()
        assert np.isfinite(check_ce(fx, logits, t_ign))
        assert np.isfinite(check_ce(fx, logits, t_ign, reduction="sum"))
        assert np.isfinite(check_ppl(fx, logits[:8], t_ign[:8]))  # row 8's loss is 2e38


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_predictions_keep_precision(fx, dtype):
    # loss = log1p(exp(-d)) for two classes d apart: tiny, and must be relatively accurate-ish
    d = np.array([1.0, 5.0, 10.0, 15.0, 20.0, 30.0])
    logits = np.stack([d, np.zeros_like(d)], axis=1).astype(dtype)
    got = check_ce(fx, logits, np.zeros(6, np.int64), reduction="none")
    assert (got > 0).all() or dtype == np.float32  # float32 may round 1 + 1e-13 away


@pytest.mark.parametrize("dtype", DTYPES)
def test_big_vocab_with_one_dominant_class(fx, rng, dtype):
    logits = logits_like(rng, (2, 128256), dtype)
    logits[0, 77] = 40.0
    logits[1, 5] = -INF
    target = np.array([77, 5])
    none = check_ce(fx, logits, target, reduction="none")
    assert none[1] == INF and 0 <= none[0] < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_instruction_set(fx, rng, isa, dtype):
    for n_classes in (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129, 1000):
        logits = logits_like(rng, (2, 5, n_classes), dtype)
        target = targets_for(rng, logits.shape, -1, ignore_frac=0.2)
        for reduction in REDUCTIONS:
            check_ce(fx, logits, target, reduction=reduction)
        check_ce(fx, np.moveaxis(logits, -1, 1), target, axis=1, reduction="none")
        check_ppl(fx, logits, target, per_sequence=True)


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_across_threads(fx, rng, dtype):
    logits = logits_like(rng, (8, 96, 1000), dtype)
    target = targets_for(rng, logits.shape, -1, ignore_frac=0.1)
    for reduction in REDUCTIONS:
        r = assert_bitwise_equal_over_threads(fx.cross_entropy, logits, target,
                                              reduction=reduction)
        assert np.array_equal(r, check_ce(fx, logits, target, reduction=reduction),
                              equal_nan=True)
    t_axis1 = targets_for(rng, logits.shape, 1, ignore_frac=0.1)
    r = assert_bitwise_equal_over_threads(fx.cross_entropy, logits, t_axis1, axis=1)
    assert r == check_ce(fx, logits, t_axis1, axis=1)
    for per_sequence in (False, True):
        r = assert_bitwise_equal_over_threads(fx.perplexity, logits, target,
                                              per_sequence=per_sequence)
        assert np.array_equal(r, check_ppl(fx, logits, target, per_sequence=per_sequence))
