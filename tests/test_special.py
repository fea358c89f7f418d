"""logsumexp, softmax and log_softmax against fastxent.reference and scipy.special."""

import math

import numpy as np
import pytest

import fastxent
from fastxent import reference
from conftest import (DTYPES, LAYOUTS, VOCABS, assert_bitwise_equal_over_threads,
                      assert_log_close, assert_prob_close, assert_result_type, has_ml_dtypes,
                      logits_like, ref64, row_scale, scipy_special)

pytest.importorskip("scipy")
sps = scipy_special()  # scipy.special when it behaves as SciPy 1.17 (the version followed), else the reference

FUNCS = ["logsumexp", "softmax", "log_softmax"]


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def check(fx, name, x, **kw):
    """Compare ``fx.<name>(x, **kw)`` with the reference: type, dtype, shape, values."""
    got = getattr(fx, name)(x, **kw)
    ref_kw = {k: v for k, v in kw.items() if k != "n_threads"}
    expected = getattr(reference, name)(x, **ref_kw)
    exact = ref64(name, x, **ref_kw)
    axis, keepdims = kw.get("axis"), kw.get("keepdims", False)
    if name == "logsumexp" and kw.get("return_sign"):
        assert isinstance(got, tuple) and len(got) == 2
        for g, e in zip(got, expected):
            assert_result_type(g, e.dtype, np.shape(e))
        assert_log_close(got[0], exact[0], np.asarray(expected[0]).dtype,
                         row_scale(x, axis, keepdims, kw.get("b")))
        assert np.array_equal(np.asarray(got[1]), np.asarray(exact[1]), equal_nan=True)
        return got
    dtype = np.asarray(expected).dtype
    assert_result_type(got, dtype, np.shape(expected))
    if name == "logsumexp":
        assert_log_close(got, exact, dtype, row_scale(x, axis, keepdims, kw.get("b")))
    elif name == "softmax":
        assert_prob_close(got, exact, dtype, row_scale(x, axis) if np.ndim(x) else 1.0)
    else:
        assert_log_close(got, exact, dtype, row_scale(x, axis) if np.ndim(x) else 1.0)
    return got


# --------------------------------------------------------------------------- layouts and axes
@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("axis", [-1, 0, 1, None, (0, 2)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layouts_and_axes(fx, make_layout, rng, name, axis, layout, dtype):
    values = logits_like(rng, (3, 4, 67), dtype)
    x = make_layout(values, layout)
    before = np.array(x)
    check(fx, name, x, axis=axis)
    assert np.array_equal(np.asarray(x), before), "input was modified"


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -2, (0, 1), (1, 2), (2, 0), (0, 1, 2), ()])
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_axes_keepdims(fx, rng, axis, keepdims, dtype):
    x = logits_like(rng, (2, 3, 5), dtype)
    check(fx, "logsumexp", x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [(0, 1), (1, 2), (0, 1, 2), ()])
def test_softmax_tuple_axes(fx, rng, name, axis):
    check(fx, name, logits_like(rng, (2, 3, 5), np.float64), axis=axis)


@pytest.mark.parametrize("layout", ["rows_gap", "neg_cols", "strided", "fortran"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_weights_on_layouts(fx, make_layout, rng, layout, dtype):
    a = make_layout(logits_like(rng, (4, 6, 33), dtype), layout)
    b = make_layout(rng.uniform(0.25, 4.0, size=(4, 6, 33)).astype(dtype), layout)
    for axis in (-1, 0, None):
        check(fx, "logsumexp", a, axis=axis, b=b)
        check(fx, "logsumexp", a, axis=axis, b=b[:1, :1, :], keepdims=True)


# --------------------------------------------------------------------------- vocabulary sizes
@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("n_classes,n_rows", VOCABS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vocab_sizes(fx, rng, name, n_classes, n_rows, dtype):
    x = logits_like(rng, (n_rows, n_classes), dtype)
    check(fx, name, x, axis=-1)
    check(fx, name, x.T, axis=0)  # class axis strided


# --------------------------------------------------------------------------- scipy agreement
_R = np.random.default_rng(20240601)
_A = _R.standard_normal((4, 5)) * 3
_B3 = _R.standard_normal((2, 3, 4))
_W = _R.uniform(0.5, 2.0, (4, 5))
INF, NAN = np.inf, np.nan
SCIPY_CASES = [
    (_A, {}), (_A, {"axis": 0}), (_A, {"axis": 1}), (_A, {"axis": -1, "keepdims": True}),
    (_A, {"axis": (0, 1)}), (_A, {"axis": None, "keepdims": True}),
    (_B3, {"axis": (0, 2)}), (_B3, {"axis": (2, 0), "keepdims": True}), (_B3, {"axis": ()}),
    (_B3, {"axis": (1,)}), (_B3, {"axis": -2, "keepdims": True}),
    (_A, {"b": _W}), (_A, {"b": _W, "axis": 1}), (_A, {"b": _W[:1], "axis": 0}),
    (_A, {"b": 2.0, "axis": 1}), (_A, {"b": _W[:, :1], "axis": 1, "keepdims": True}),
    (_A[0], {"b": _W, "axis": -1}),  # b broadcasts a to a bigger shape
    (_A, {"b": np.where(_W > 1, _W, 0.0), "axis": 1}),
    (_A, {"b": _W, "axis": 1, "return_sign": True}),
    ([1.0, 2.0], {"b": [1.0, -1.0], "return_sign": True}),
    ([1.0, 2.0], {"b": [1.0, -2.0]}),  # negative sum without return_sign: nan
    ([1.0, 2.0], {"b": [-1.0, -1.0], "return_sign": True}),
    ([2.0, 2.0], {"b": [1.0, -1.0], "return_sign": True}),  # exact cancellation: -inf, sign 0
    ([2.0, 2.0], {"b": [1.0, -1.0]}),
    ([1.0, 2.0], {"b": [0.0, 0.0]}), ([1.0, 2.0], {"b": [0.0, 0.0], "return_sign": True}),
    ([NAN, 1.0], {"b": [0.0, 1.0]}), ([INF, 1.0], {"b": [0.0, 1.0]}),
    # scipy's direct-formula fallback where the shifted result is not finite: a zero weight
    # does not drop an inf/nan term there, and an underflowing negative sum gives -inf
    ([INF, INF], {"b": [0.0, 2.0]}), ([INF], {"b": [0.0]}), ([2.5, INF], {"b": [0.0, 0.0]}),
    ([-INF, NAN], {"b": [1.0, 0.0], "return_sign": True}), ([-750.0], {"b": [-1.0]}),
    ([[1.0, 2.0], [3.0, 4.0]], {"b": [1.0, -1.0], "axis": 0, "return_sign": True}),
    ([-INF, -INF], {}), ([-INF, -INF], {"return_sign": True}), ([-INF, 0.0], {}),
    ([INF, 1.0], {}), ([INF, INF], {}), ([INF, -INF], {}), ([NAN, 1.0], {}), ([NAN, INF], {}),
    ([-INF, NAN], {}), ([INF, INF], {"b": [1.0, -1.0], "return_sign": True}),
    ([1e308, 1e308], {}), ([1e308, -1e308], {}), ([-1e308, -1e308], {}), ([3.0], {}),
    (np.array(3.0), {}), (np.array(3.0), {"keepdims": True}), (3.0, {}), ([1, 2, 3], {}),
    ([], {}), ([], {"return_sign": True}), (np.zeros((0, 3)), {"axis": 1}),
    (np.zeros((0, 3)), {"axis": 0}), (np.zeros((2, 0)), {"axis": 1}),
    (np.zeros((2, 0)), {"axis": 1, "keepdims": True}),
]


def _as_dtype(a, dtype):
    """Case values to `dtype`; +-1e308 stands for a huge value, 1e38 in float32."""
    a = np.asarray(a)
    if a.dtype.kind != "f":
        return a
    if dtype == np.float32:
        a = np.where(np.abs(a) == 1e308, np.sign(a) * 1e38, a)
    return a.astype(dtype)


def _widen(v):
    v = np.asarray(v)
    return v.astype(np.float64) if v.dtype.kind == "f" else v


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a,kw", SCIPY_CASES, ids=[f"case{i}" for i in range(len(SCIPY_CASES))])
def test_logsumexp_matches_scipy(fx, a, kw, dtype):
    a = _as_dtype(a, dtype)
    kw = {k: (np.asarray(v, dtype) if k == "b" and not np.isscalar(v) else v)
          for k, v in kw.items()}
    with np.errstate(all="ignore"):
        theirs = sps.logsumexp(a, **kw)  # dtype, shape and type of result
        exact = sps.logsumexp(_widen(a), **{k: _widen(v) if k == "b" else v
                                             for k, v in kw.items()})
    ours = fx.logsumexp(a, **kw)
    scale = row_scale(a, kw.get("axis"), kw.get("keepdims", False), kw.get("b"))
    if kw.get("return_sign"):
        for o, t in zip(ours, theirs):
            assert_result_type(o, t.dtype, np.shape(t))
        assert_log_close(ours[0], exact[0], theirs[0].dtype, scale)
        assert np.array_equal(np.asarray(ours[1]), np.asarray(exact[1]), equal_nan=True)
    else:
        assert_result_type(ours, theirs.dtype, np.shape(theirs))
        assert_log_close(ours, exact, theirs.dtype, scale)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a,kw", [c for c in SCIPY_CASES if set(c[1]) <= {"axis"}
                                  and np.size(c[0]) > 0])
def test_softmax_matches_scipy(fx, name, a, kw, dtype):
    a = _as_dtype(a, dtype)
    with np.errstate(all="ignore"):
        theirs = getattr(sps, name)(a, **kw)
        exact = getattr(sps, name)(_widen(a), **kw)
    ours = getattr(fx, name)(a, **kw)
    assert_result_type(ours, theirs.dtype, np.shape(theirs))
    scale = row_scale(a, kw.get("axis")) if a.ndim else 1.0
    if name == "softmax":
        assert_prob_close(ours, exact, theirs.dtype, scale)
    else:
        assert_log_close(ours, exact, theirs.dtype, scale)


@pytest.mark.parametrize("b,expected", [
    (np.float32([1, 1]), np.float32), (2.0, np.float32), (2, np.float32),
    (np.float64([1, 1]), np.float64), ([1.0, 1.0], np.float64),
])
def test_logsumexp_result_dtype_with_weights_as_scipy(fx, b, expected):
    a = np.float32([1.0, 2.0])
    assert np.asarray(sps.logsumexp(a, b=b)).dtype == expected  # scipy's promotion rule
    assert_result_type(fx.logsumexp(a, b=b), expected, ())


# --------------------------------------------------------------------------- special values
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_value_rows(fx, dtype):
    big = float(np.finfo(dtype).max)
    rows = np.array([
        [-INF, -INF, -INF, -INF, -INF],
        [-INF, 1.0, -INF, 2.0, -INF],
        [INF, 1.0, 2.0, 3.0, 4.0],
        [INF, INF, 1.0, -INF, 0.0],
        [NAN, 1.0, 2.0, 3.0, 4.0],
        [1.0, 2.0, NAN, -INF, INF],
        [big, big, big, big, big],
        [big, -big, 0.0, -big, big],
        [-big, -big, -big, -big, -big],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [1.0, 2.0, 3.0, 4.0, 5.0],
    ], dtype=dtype)
    for axis, x in ((1, rows), (0, np.ascontiguousarray(rows.T))):
        with np.errstate(all="ignore"):
            lse = check(fx, "logsumexp", x, axis=axis)
            sm = check(fx, "softmax", x, axis=axis)
            lsm = check(fx, "log_softmax", x, axis=axis)
        if axis == 0:
            sm, lsm = sm.T, lsm.T
        assert lse[0] == -INF and np.isnan(lsm[0]).all() and np.isnan(sm[0]).all()
        assert sm[1, 0] == 0 and lsm[1, 0] == -INF and np.isfinite(lsm[1, [1, 3]]).all()
        assert lse[2] == INF and lse[3] == INF
        assert np.isnan(lse[4]) and np.isnan(lse[5]) and np.isnan(sm[4:6]).all()
        assert np.isfinite(lse[6]) and lse[6] == big  # big + log(5) rounds to big
        assert np.isfinite(lse[7]) and lse[7] == big
        assert np.isfinite(lse[8]) and np.isfinite(lsm[[6, 8]]).all()
        assert np.allclose(sm[6], 0.2, rtol=2 * _eps(dtype), atol=0)
        assert np.allclose(sm[7], [0.5, 0, 0, 0, 0.5], rtol=2 * _eps(dtype), atol=0)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("bad", [NAN, INF, -INF])
@pytest.mark.parametrize("dtype", DTYPES)
def test_special_value_stays_in_its_row(fx, rng, name, axis, bad, dtype):
    clean = logits_like(rng, (6, 40), dtype)
    x = clean.copy()
    x[3, 17] = bad
    if axis == 0:
        clean, x = clean.T.copy(), x.T.copy()
    with np.errstate(all="ignore"):
        got = np.asarray(check(fx, name, x, axis=axis))
    if axis == 0:
        got = got.T
    # check() compared every row with the reference; spelled out: the other rows are finite.
    assert np.isfinite(got[[0, 1, 2, 4, 5]]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_magnitudes_stay_finite(fx, dtype):
    big = 1e38 if dtype == np.float32 else 1e308
    x = np.array([[big, big], [big, big / 2], [-big, -big], [big, -big]], dtype=dtype)
    lse = check(fx, "logsumexp", x, axis=1)
    assert np.isfinite(lse).all()
    sm = check(fx, "softmax", x, axis=1)
    assert np.array_equal(sm[3], np.array([1, 0], dtype))
    check(fx, "log_softmax", x, axis=1)
    assert np.isfinite(fx.logsumexp(np.full(1000, np.finfo(dtype).max, dtype)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_element_row_is_exact(fx, rng, dtype):
    x = logits_like(rng, (5, 1), dtype) * 1000
    assert np.array_equal(fx.logsumexp(x, axis=1), x[:, 0])
    assert np.array_equal(fx.softmax(x, axis=1), np.ones_like(x))
    check(fx, "log_softmax", x, axis=1)


# --------------------------------------------------------------------------- empties, dtypes
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_inputs(fx, dtype):
    r = fx.logsumexp(np.zeros(0, dtype))
    assert_result_type(r, dtype, ())
    assert r == -INF
    r = fx.logsumexp(np.zeros((0, 2), dtype))  # scipy 1.17 raises IndexError here
    assert_result_type(r, dtype, ())
    assert r == -INF
    r = fx.logsumexp(np.zeros((2, 0), dtype), axis=1)
    assert_result_type(r, dtype, (2,))
    assert (r == -INF).all()
    r = fx.logsumexp(np.zeros((0, 3), dtype), axis=1)
    assert_result_type(r, dtype, (0,))
    r = fx.logsumexp(np.zeros((0, 3), dtype), axis=1, keepdims=True)
    assert_result_type(r, dtype, (0, 1))
    r, s = fx.logsumexp(np.zeros((2, 0), dtype), axis=1, return_sign=True)
    assert (r == -INF).all() and s.dtype == dtype
    for name in ("softmax", "log_softmax"):
        for shape, axis in (((0, 3), 1), ((0, 3), 0), ((2, 0), 1), ((0,), None)):
            # scipy raises for a zero-length normalisation axis; an empty result is the
            # natural answer (and what fastxent.reference gives).
            assert_result_type(getattr(fx, name)(np.zeros(shape, dtype), axis=axis), dtype, shape)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("kind", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_])
def test_integer_and_bool_promote_to_float64(fx, rng, name, kind):
    x = rng.integers(0, 2 if kind is np.bool_ else 50, size=(3, 9)).astype(kind)
    got = check(fx, name, x, axis=1)
    assert got.dtype == np.float64
    assert np.array_equal(got, getattr(fx, name)(x.astype(np.float64), axis=1))


@pytest.mark.parametrize("name", FUNCS)
def test_array_likes_and_scalars(fx, name):
    check(fx, name, [[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]], axis=1)
    check(fx, name, [1, 2, 3])
    check(fx, name, 2.5)
    check(fx, name, np.float32(2.5))
    check(fx, name, np.array(-1.5, np.float32))


# --------------------------------------------------------------------------- threads
@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_full_reduction_is_deterministic_across_threads(fx, rng, dtype):
    x = logits_like(rng, 300_001, dtype)
    r = assert_bitwise_equal_over_threads(fx.logsumexp, x)
    assert_log_close(r, ref64("logsumexp", x), dtype, row_scale(x, None, False))
    x2 = logits_like(rng, (97, 3001), dtype)
    r = assert_bitwise_equal_over_threads(fx.logsumexp, x2, axis=(0, 1))
    assert_log_close(r, ref64("logsumexp", x2), dtype, row_scale(x2, None, False))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_are_deterministic_across_threads(fx, rng, name, axis, dtype):
    x = logits_like(rng, (67, 2049), dtype)
    if axis == 0:
        x = x.T
    r = assert_bitwise_equal_over_threads(getattr(fx, name), x, axis=axis)
    assert np.array_equal(r, check(fx, name, x, axis=axis))


def test_thread_settings(fx):
    assert isinstance(fx.openmp_enabled(), bool)
    original = fx.get_num_threads()
    assert isinstance(original, int) and original >= 1
    # set_num_threads returns the previous *setting*: None while none was made (documented
    # in fastxent._config), so that passing it back restores the default.
    previous = fx.set_num_threads(2)
    try:
        assert previous is None or previous == original
        assert fx.get_num_threads() == (2 if fx.openmp_enabled() else 1)
        assert fx.set_num_threads(1) == 2
        assert fx.get_num_threads() == 1
        x = logits_like(np.random.default_rng(0), (40, 1000), np.float64)
        one = fx.log_softmax(x, axis=1)
        assert fx.set_num_threads(3) == 1
        assert np.array_equal(one, fx.log_softmax(x, axis=1))
    finally:
        fx.set_num_threads(previous)
    assert fx.get_num_threads() == original


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("layout", ["c", "neg_cols", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_instruction_set(fx, make_layout, rng, isa, name, layout, dtype):
    # lengths around every SIMD width (4, 8, 16 lanes, unrolled) and their tails
    for n_classes in (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129, 1000):
        x = make_layout(logits_like(rng, (3, n_classes), dtype), layout)
        x[1, n_classes // 2] = -INF
        check(fx, name, x, axis=-1)
        check(fx, name, x.T, axis=0)
    x = make_layout(logits_like(rng, (5, 40), dtype), layout)
    x[2, 7] = NAN
    check(fx, name, x, axis=-1)


# --------------------------------------------------------------------------- the result dtype of logsumexp(a, b=b)
@pytest.mark.skipif(not has_ml_dtypes(), reason="needs ml_dtypes")
@pytest.mark.parametrize("b", ["python_float", "float16_array"])
def test_logsumexp_bfloat16_with_b(b):
    import ml_dtypes
    a = np.ones(3, ml_dtypes.bfloat16)
    bb = 2.0 if b == "python_float" else np.full(3, 2.0, np.float16)
    got = fastxent.logsumexp(a, b=bb)
    assert got.dtype == np.float32
    assert abs(float(got) - (1.0 + math.log(6.0))) < 1e-6


@pytest.mark.parametrize("bdt", [np.bool_, np.int8, np.uint8, np.int16])
def test_logsumexp_float32_with_small_int_b_stays_float32(bdt):
    """Found by fuzzing (a regression of 2ab3fc0's dtype fix): float32 `a` with a bool/int8/int16/uint8
    `b` array gave float64; scipy.special.logsumexp and the reference keep float32
    (np.result_type(float32, bool, 1.0) is float32; int32/int64 `b` give float64 in all three)."""
    got = fastxent.logsumexp(np.zeros(3, np.float32), b=np.ones(3, bdt))
    assert got.dtype == np.float32
    assert fastxent.reference.logsumexp(np.zeros(3, np.float32), b=np.ones(3, bdt)).dtype == np.float32


def test_logsumexp_bool_a_with_float32_scalar_b_is_float32():
    """Found by fuzzing: bool (or int8) `a` with ``b=np.float32(0.5)``: scipy promotes to float32
    (a NumPy scalar is not weak under NEP 50) and so do fastxent and the reference now; the
    reference used to convert `a` to float64 before promoting and said float64."""
    for a in (np.array([True, False]), np.array([1, 0], np.int8)):
        got = fastxent.logsumexp(a, b=np.float32(0.5), return_sign=True)
        want = fastxent.reference.logsumexp(a, b=np.float32(0.5), return_sign=True)
        assert type(got[0]) is type(got[1]) is type(want[0]) is type(want[1]) is np.float32
        assert abs(float(got[0]) - math.log(0.5 * (math.e + 1.0))) < 1e-6


# The dtype grid of logsumexp(a, b=b): every array dtype fastxent accepts, as an array, a NumPy
# scalar and a 0-d array, plus Python numbers and lists (Python numbers are weak under NEP 50).
_GRID_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64", "bfloat16"]


def _grid_dtype(name):
    if name == "bfloat16":
        if not has_ml_dtypes():
            pytest.skip("needs ml_dtypes")
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _grid_operand(kind, values):
    """An operand of the grid: "<dtype>" array, "<dtype>_scalar", "<dtype>_0d", or a Python one."""
    python = {"py_int": int(values[0]), "py_float": float(values[0]) + 0.5, "py_bool": True,
              "list_float": [float(v) for v in values], "list_int": [int(v) for v in values]}
    if kind in python:
        return python[kind]
    name, _, form = kind.partition("_")
    v = np.asarray(values).astype(_grid_dtype(name))
    return {"": v, "scalar": v[0], "0d": v[:1].reshape(())}[form]


_GRID_A = _GRID_DTYPES + ["float32_scalar", "bool_scalar", "float64_0d", "int8_0d",
                          "py_int", "py_float", "py_bool", "list_int"]


_GRID_B = ([d for d in _GRID_DTYPES] + [d + "_scalar" for d in _GRID_DTYPES] + [d + "_0d" for d in _GRID_DTYPES]
           + ["py_int", "py_float", "py_bool", "list_float", "list_int", None])


@pytest.mark.parametrize("b_kind", _GRID_B, ids=str)
@pytest.mark.parametrize("a_kind", _GRID_A)
def test_logsumexp_result_dtype_grid(a_kind, b_kind):
    """fastxent and the reference give the same dtype (and values), which is SciPy's with 16-bit
    floats widened to float32 (SciPy gives float16 for float16; it does not support bfloat16, which
    fastxent promotes as float16: checked by substituting float16)."""
    a = _grid_operand(a_kind, [0.0, 1.0, 1.0])
    b = None if b_kind is None else _grid_operand(b_kind, [1.0, 2.0, 1.0])
    for return_sign in (False, True):
        got = fastxent.logsumexp(a, b=b, return_sign=return_sign)
        want = fastxent.reference.logsumexp(a, b=b, return_sign=return_sign)
        got, want = (got, want) if return_sign else ((got,), (want,))
        for g, w in zip(got, want):
            assert type(g) is type(w) and np.asarray(g).dtype == np.asarray(w).dtype, (g, w)
            np.testing.assert_allclose(np.float64(g), np.float64(w), rtol=2e-7)
        dtype = np.asarray(got[0]).dtype
        assert dtype in (np.float32, np.float64)
        assert np.asarray(got[-1]).dtype == dtype  # the sign has the result's dtype
        if "bfloat16" in (a_kind + str(b_kind)):
            a16 = _grid_operand(a_kind.replace("bfloat16", "float16"), [0.0, 1.0, 1.0])
            b16 = None if b_kind is None else _grid_operand(b_kind.replace("bfloat16", "float16"), [1.0, 2.0, 1.0])
            assert dtype == np.asarray(fastxent.logsumexp(a16, b=b16)).dtype
            continue
        theirs = np.asarray(sps.logsumexp(a, b=b, return_sign=return_sign)[0] if return_sign
                            else sps.logsumexp(a, b=b)).dtype
        assert dtype == (np.float32 if theirs == np.float16 else theirs), (dtype, theirs)
