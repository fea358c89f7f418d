"""Argument validation: exception types and the content of their messages.

Every check runs on fastxent and on fastxent.reference: where both raise, they agree.
"""

import re

import numpy as np
import pytest
from numpy.exceptions import AxisError

import fastxent

SPECIAL = ["logsumexp", "softmax", "log_softmax"]
LOSSES = ["cross_entropy", "perplexity"]


@pytest.fixture(params=["fastxent", "reference"])
def mod(request):
    return fastxent if request.param == "fastxent" else fastxent.reference


def call(mod, name, x, **kw):
    """Call any public function on logits `x`; losses get a valid target (class 0)."""
    if name in LOSSES:
        return getattr(mod, name)(x, np.zeros(np.shape(x)[:-1], np.int64), **kw)
    return getattr(mod, name)(x, **kw)


def number(value):
    """Regex: `value` as a whole number (not part of a longer one)."""
    return rf"(?<![\d.-]){re.escape(str(value))}(?![\d.])"


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("name", SPECIAL + LOSSES)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_rejected(mod, name, dtype):
    with pytest.raises(TypeError, match="complex"):
        call(mod, name, np.ones((2, 3), dtype))


@pytest.mark.parametrize("name", SPECIAL + LOSSES)
@pytest.mark.parametrize("values", [
    np.ones((2, 3), np.longdouble),
    np.ones((2, 3), object),
    np.array([["a", "b", "c"], ["d", "e", "f"]]),
    np.ones((2, 3), "datetime64[s]"),
], ids=["longdouble", "object", "str", "datetime64"])
def test_unsupported_dtypes_name_the_supported_ones(mod, name, values):
    if values.dtype == np.longdouble and np.finfo(np.longdouble).bits == 64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match="float32") as err:
        call(mod, name, values)
    err.match("float64")


def test_complex_weights_rejected(mod):
    with pytest.raises(TypeError, match="complex"):
        mod.logsumexp(np.ones(3), b=np.ones(3, np.complex128))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("tdtype", [np.float32, np.float64, np.complex128])
def test_non_integer_target_rejected(mod, name, tdtype):
    with pytest.raises(TypeError, match="`target`"):
        getattr(mod, name)(np.zeros((2, 3)), np.zeros(2, tdtype))


# --------------------------------------------------------------------------- axes
@pytest.mark.parametrize("name", SPECIAL)
@pytest.mark.parametrize("axis", [2, -3, (0, 2), (-3,)])
def test_axis_out_of_range(mod, name, axis):
    with pytest.raises(AxisError):
        call(mod, name, np.zeros((2, 3)), axis=axis)


@pytest.mark.parametrize("name", SPECIAL)
def test_repeated_axis(mod, name):
    with pytest.raises(ValueError):
        call(mod, name, np.zeros((2, 3)), axis=(1, -1))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_loss_axis_out_of_range(mod, name, axis):
    with pytest.raises(AxisError):
        getattr(mod, name)(np.zeros((2, 3)), np.zeros(2, np.int64), axis=axis)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_needs_a_class_axis(mod, name):
    with pytest.raises(AxisError):
        getattr(mod, name)(np.array(1.0), np.array(0))


# --------------------------------------------------------------------------- target values
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("bad", [7, 123456, -3, -101])
@pytest.mark.parametrize("order", ["C", "F"])
def test_target_out_of_range(mod, name, bad, order):
    logits = np.zeros((3, 4, 7))
    target = np.zeros((3, 4), np.int64)
    target[0, 1] = -100  # ignored, fine
    target[1, 2] = bad
    target[2, 0] = 9  # also bad, but later in C order
    target = np.asarray(target, order=order)
    with pytest.raises(IndexError, match="`target`") as err:
        getattr(mod, name)(logits, target)
    err.match(re.escape("(1, 2)"))
    err.match(number(bad))


@pytest.mark.parametrize("name", LOSSES)
def test_target_out_of_range_class_axis_first(mod, name):
    logits = np.zeros((5, 3, 4))  # classes on axis 0: target has shape (3, 4)
    target = np.zeros((3, 4), np.int16)
    target[2, 3] = 5
    with pytest.raises(IndexError, match="`target`") as err:
        getattr(mod, name)(logits, target, axis=0)
    err.match(re.escape("(2, 3)"))
    err.match(number(5))


@pytest.mark.parametrize("name", LOSSES)
def test_target_out_of_range_1d_and_unsigned(mod, name):
    target = np.array([0, 1, 2**64 - 1, 1], np.uint64)
    with pytest.raises(IndexError, match="`target`") as err:
        getattr(mod, name)(np.zeros((4, 3), np.float32), target)
    err.match(re.escape("(2,)"))
    err.match(number(2**64 - 1))


@pytest.mark.parametrize("name", LOSSES)
def test_ignore_index_outside_the_classes_is_not_an_error(mod, name):
    target = np.array([0, 50, 2])
    getattr(mod, name)(np.zeros((3, 3)), target, ignore_index=50)
    with pytest.raises(IndexError):
        getattr(mod, name)(np.zeros((3, 3)), target)


# --------------------------------------------------------------------------- shapes, options
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("tshape", [(4, 3), (3,), (3, 4, 1), (3, 5)])
def test_shape_mismatch_shows_both_shapes(mod, name, tshape):
    logits = np.zeros((3, 4, 7))
    with pytest.raises(ValueError, match="`target`") as err:
        getattr(mod, name)(logits, np.zeros(tshape, np.int64))
    err.match(re.escape(str(tshape)))
    err.match(f"{re.escape(str(logits.shape))}|{re.escape(str(logits.shape[:-1]))}")


def test_shape_mismatch_with_class_axis_first(mod):
    with pytest.raises(ValueError, match=re.escape("(3, 5)")) as err:
        mod.cross_entropy(np.zeros((7, 3, 4)), np.zeros((3, 5), np.int64), axis=0)
    err.match(r"\(7, 3, 4\)|\(3, 4\)")


@pytest.mark.parametrize("reduction", ["avg", "Mean", "", None, "elementwise_mean"])
def test_unknown_reduction(mod, reduction):
    with pytest.raises(ValueError, match="`reduction`") as err:
        mod.cross_entropy(np.zeros((2, 3)), np.zeros(2, np.int64), reduction=reduction)
    for r in ("none", "sum", "mean"):
        err.match(f"'{r}'")


def test_weights_that_do_not_broadcast(mod):
    with pytest.raises(ValueError):
        mod.logsumexp(np.zeros((2, 3)), b=np.ones((2, 2)))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_])
def test_integer_logits_rejected_by_losses(mod, name, dtype):
    """Integer logits are almost always a mistake (targets passed as logits): TypeError."""
    with pytest.raises(TypeError, match="`logits`") as err:
        call(mod, name, np.ones((2, 3), dtype))
    err.match("float32")


# --------------------------------------------------------------------------- the class axis, grad_out
@pytest.mark.parametrize("name", LOSSES + ["token_stats"])
@pytest.mark.parametrize("axis", [(0, 1), (1,), [2], None, 1.5])
def test_class_axis_must_be_one_integer(mod, name, axis):
    """The losses reduce over exactly one axis: a tuple (even of one axis), a list, None or a float
    is a TypeError naming `axis` and showing the value (a tuple was an unpacking error)."""
    logits = np.zeros((2, 3, 4))
    with pytest.raises(TypeError, match="`axis`") as err:
        getattr(mod, name)(logits, np.zeros(4, np.int64), axis=axis)
    err.match(re.escape(repr(axis)))


@pytest.mark.parametrize("axis", [(0, 1), None])
def test_kl_divergence_class_axis_must_be_one_integer(mod, axis):
    with pytest.raises(TypeError, match="`axis`") as err:
        mod.kl_divergence(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), axis=axis)
    err.match(re.escape(repr(axis)))


def test_tuple_class_axis_raises_before_writing_in_place():
    x = np.arange(24.0).reshape(2, 3, 4)
    before = x.copy()
    with pytest.raises(TypeError, match=re.escape("`axis` must be an integer (the class axis), got (0, 1)")):
        fastxent.cross_entropy(x, np.zeros(4, np.int64), axis=(0, 1), return_grad=True, grad_out=x)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_unaligned_grad_out_names_grad_out(dtype, axis):
    """A grad_out that is C-contiguous but unaligned (a view at byte offset 1 of a uint8 buffer) was
    reported as a bad class axis; the message names `grad_out` and alignment, and nothing is
    written.  (The reference writes into any writeable array: only fastxent raises.)"""
    x = np.zeros((2, 3), dtype)
    t = np.array([0, 2])
    buf = np.full(x.nbytes + 1, 7, np.uint8)
    g = buf[1:].view(dtype).reshape(x.shape)
    assert not g.flags.aligned and g.flags.c_contiguous
    before = buf.copy()
    with pytest.raises(ValueError, match=r"^`grad_out` is not aligned") as err:
        fastxent.cross_entropy(x if axis == -1 else x.T, t, axis=axis, return_grad=True,
                               grad_out=g if axis == -1 else g.T)
    err.match(f"multiples of {np.dtype(dtype).itemsize} bytes")
    err.match("C-contiguous class axis")
    assert "class axis and rows" not in str(err.value)
    np.testing.assert_array_equal(buf, before)


@pytest.mark.parametrize("in_place", [False, True])
def test_grad_out_message_with_the_class_axis_not_last(in_place):
    """Found by tests/test_differential.py: with axis=1 a C-contiguous grad_out of the logits'
    shape (or the C-contiguous logits themselves, in place) was refused with "a C-contiguous array
    of the logits' shape always works"; the message now names the layout that does."""
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    t = np.zeros((3, 4), np.int64)
    g = x if in_place else np.zeros(x.shape)
    before = g.copy()
    with pytest.raises(ValueError, match=r"^`grad_out` must have a contiguous class axis") as err:
        fastxent.cross_entropy(x, t, axis=1, return_grad=True, grad_out=g)
    err.match(re.escape("a C-contiguous array of the logits' shape does not qualify; "
                        "np.moveaxis(np.empty((3, 4, 5), np.float64), -1, 1) always works"))
    np.testing.assert_array_equal(g, before)
    good = np.moveaxis(np.empty((3, 4, 5)), -1, 1)
    loss, grad = fastxent.cross_entropy(x, t, axis=1, return_grad=True, grad_out=good)
    assert grad is good
    np.testing.assert_array_equal(grad, fastxent.cross_entropy(x, t, axis=1, return_grad=True)[1])


@pytest.mark.parametrize("isa", fastxent.available_isas())
def test_check_targets_runs(isa):
    """The target check works in runs of 4096 (vectorised per ISA): the first bad
    position and the count of counted targets before it, in any run, against Python."""
    from fastxent import _core
    rng = np.random.default_rng(7)
    t = rng.integers(0, 50, 10_000)
    t[rng.random(t.size) < 0.2] = -100
    fastxent.set_isa(isa)
    try:
        assert _core.check_targets(t, 50, -100) == (-1, int(np.sum(t != -100)))
        for pos, value in [(0, 50), (4095, -1), (4096, 10**12), (9999, -101), (6000, -(2**63))]:
            bad = t.copy()
            bad[pos] = value
            bad[pos + 1:pos + 50] = 77  # later bad values do not matter
            assert _core.check_targets(bad, 50, -100) == (pos, int(np.sum(bad[:pos] != -100)))
        # ignore_index outside the class range, and a huge one
        assert _core.check_targets(np.full(5000, 2**62), 50, 2**62) == (-1, 0)
    finally:
        fastxent.set_isa(None)


@pytest.mark.parametrize("shape", [(1003, 10), (5, 3000)], ids=str)
def test_kernels_never_read_an_unchecked_target(isa, shape):
    """The plain loss kernels (per row and summed) are only given checked targets, yet a
    target outside [0, n_cols) is never read: its loss is NaN (reading it would give a
    number, or an out-of-bounds read for the last row); the other rows are untouched."""
    from fastxent import _core
    from fastxent._arrays import as_rows
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(np.float32)
    n = shape[1]
    t = rng.integers(0, n, shape[0])
    t[1] = -100
    good = fastxent.cross_entropy(x, t, reduction="none").astype(np.float64)
    bad = t.copy()
    bad[[0, 2, 3, -1]] = [n, -5, 2**40 + 3, n + 1]  # 2**40 + 3: its low 32 bits name a class
    base, layout, _, _ = as_rows(x, (1,))
    loss = np.empty(shape[0])
    fastxent.set_isa(isa)
    try:
        _core.xent(base, layout, bad, -100, loss, 1)
        total = _core.xent_sum(base, layout, bad, -100, 1)
    finally:
        fastxent.set_isa(None)
    assert np.isnan(loss[[0, 2, 3, -1]]).all()
    assert loss[1] == 0.0
    np.testing.assert_allclose(loss[4:-1], good[4:-1], rtol=1e-6)
    assert np.isnan(total)
