"""Argument validation over grids of bad inputs: fastxent and fastxent.reference agree.

Every check runs on fastxent and on fastxent.reference: where both raise, they raise the same
exception type and name the same argument (dtypes, axes, target values and shapes, options, in
many layouts).  The exact message of each bad input, and that nothing is written before it is
raised, are in tests/test_catalogue.py (docs/bad_inputs.md); this file holds no call of it again.
The last test is fastxent's alone: integers beyond int64 give a documented error, never an
OverflowError.
"""

import math
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


# (were OverflowErrors found by fuzzing: ignore_index must now fit int64 -- ValueError -- and
# n_threads is capped at fastxent._config.MAX_THREADS)
@pytest.mark.parametrize("case", [
    "ignore_index=2**63", "ignore_index=-2**63-1", "ignore_index=2**63 (options)", "n_threads=2**31",
])
def test_out_of_range_integers_give_documented_errors_or_results(case):
    x = np.zeros((2, 3))
    t = np.array([0, 2])
    call = {
        "ignore_index=2**63": lambda: fastxent.cross_entropy(x, t, ignore_index=2**63),
        "ignore_index=-2**63-1": lambda: fastxent.perplexity(x, t, ignore_index=-2**63 - 1),
        "ignore_index=2**63 (options)": lambda: fastxent.cross_entropy(x, t, ignore_index=2**63, label_smoothing=0.1),
        "n_threads=2**31": lambda: fastxent.logsumexp(x, n_threads=2**31),
    }[case]
    try:
        got = call()
    except (TypeError, ValueError) as e:
        assert "`n_threads`" in str(e) or "`ignore_index`" in str(e)
        return
    if case.startswith("ignore_index"):
        assert np.allclose(got, math.log(3))
