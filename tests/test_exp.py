"""The kernels' own exp (src_c/fx_vmath.h) against float64/longdouble np.exp, on every ISA.

Contract (README): float32 <= 2 ulp over the normal range, denormal results within
one denormal step, overflow to +inf, 0 for -inf; the x <= 0 form used after the
max shift flushes results below FLT_MIN to 0.  float64 <= 2 ulp over the normal range.
"""
import numpy as np
import pytest

import fastxent
from fastxent import _core

ISAS = fastxent.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    fastxent.set_isa(request.param)
    yield request.param
    fastxent.set_isa(None)


def _all_float32(step=997):
    bits = np.arange(0, 2**32, step, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    return x[np.isfinite(x)]


def _ulp_err(got, exact, dtype):
    r = exact.astype(dtype)
    return np.abs(got.astype(np.longdouble) - exact) / np.spacing(np.abs(r)).astype(np.longdouble)


def test_expf_full_range(isa):
    x = _all_float32()
    out = np.empty_like(x)
    _core.vexp(x, out, False)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.longdouble))
    with np.errstate(over="ignore"):
        r32 = exact.astype(np.float32)
    normal = np.isfinite(r32) & (r32 >= np.finfo(np.float32).tiny)
    assert _ulp_err(out[normal], exact[normal], np.float32).max() <= 2.0
    assert np.all(np.isinf(out[np.isinf(r32)]))
    sub = r32 < np.finfo(np.float32).tiny
    assert np.abs(out[sub].astype(np.float64) - r32[sub]).max() <= np.finfo(np.float32).smallest_subnormal


def test_expf_neg_form(isa):
    x = _all_float32()
    x = x[x <= 0]
    out = np.empty_like(x)
    _core.vexp(x, out, True)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.longdouble))
    r32 = exact.astype(np.float32)
    normal = r32 >= np.finfo(np.float32).tiny
    assert _ulp_err(out[normal], exact[normal], np.float32).max() <= 2.0
    assert np.all(out[~normal] == 0.0)


@pytest.mark.parametrize("neg", [False, True])
def test_exp_float64(isa, neg):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-745.0, 709.78, 400_001), rng.uniform(-40, 40, 200_000)])
    if neg:
        x = x[x <= 0]
    out = np.empty_like(x)
    _core.vexp(x, out, neg)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.longdouble))
    normal = exact >= np.finfo(np.float64).tiny
    assert _ulp_err(out[normal], exact[normal], np.float64).max() <= 2.0
    if neg:
        assert np.all(out[~normal] == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(isa, dtype):
    x = np.array([0.0, -0.0, -np.inf, np.inf, np.nan, 1.0, -1.0] * 5, dtype=dtype)
    out = np.empty_like(x)
    _core.vexp(x, out, False)
    np.testing.assert_array_equal(out[:5], np.array([1.0, 1.0, 0.0, np.inf, np.nan], dtype=dtype))
    neg = np.array([0.0, -np.inf, np.nan] * 7, dtype=dtype)
    out = np.empty_like(neg)
    _core.vexp(neg, out, True)
    np.testing.assert_array_equal(out[:3], np.array([1.0, 0.0, np.nan], dtype=dtype))
