"""pytest-benchmark suite: fastxent beside NumPy, SciPy and PyTorch, grouped per case.

Run with ``pytest bench --benchmark-only``.  Each group is one operation, shape and
dtype, holding every implementation from `fastxent._bench` that provides it (SciPy,
PyTorch and ml_dtypes' bfloat16 are skipped when they do not import).  Every benchmark
also checks its result against `fastxent.reference` (float64), so a fast wrong answer
fails.
"""
import functools
import math

import numpy as np
import pytest

from fastxent import _bench, reference

CASES = [((256, 32000), "float32"), ((64, 128256), "float64"), ((64, 128256), "bfloat16"),
         ((100000, 10), "float32")]
GRAD_CASES = [((256, 32000), "float32")]
# |got - ref| <= RTOL * |ref| + UNIT * scale: fastxent and the NumPy peer compute 16-bit
# input in float32, so float32's terms hold for them (4 eps per unit of scale covers the
# NumPy peer's own rounding); PyTorch's 16-bit results are in the 16-bit dtype
# (`_bench.RTOL_16BIT_OUT`).
RTOL = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 1e-5}
UNIT = {"float32": 4 * float(np.finfo(np.float32).eps), "float64": 1e-13,
        "bfloat16": 4 * float(np.finfo(np.float32).eps)}


@functools.lru_cache(maxsize=None)
def case_data(shape, dtype):
    """Seeded logits and targets, built once per case (left writable: ``torch.from_numpy``
    warns on read-only arrays)."""
    return _bench.make_data(shape, dtype)


def _ids(cases):
    return [f"{'x'.join(map(str, s))}-{d}" for s, d in cases]


def _data(shape, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    return case_data(shape, dtype)


cases = pytest.mark.parametrize("shape, dtype", CASES, ids=_ids(CASES))
grad_cases = pytest.mark.parametrize("shape, dtype", GRAD_CASES, ids=_ids(GRAD_CASES))


def impls(op):
    return pytest.mark.parametrize("impl", _bench.impl_keys(op), indirect=True)


def check(got, x, expected, dtype, impl):
    scale = 1 + float(np.max(np.abs(x.astype(np.float64)))) + math.log(x.shape[-1])
    rtol = RTOL[dtype]
    if impl.key.startswith("torch") and dtype in _bench.RTOL_16BIT_OUT:
        rtol = _bench.RTOL_16BIT_OUT[dtype]   # results in the 16-bit dtype
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected,
                               rtol=rtol, atol=UNIT[dtype] * scale)


@cases
@impls("logsumexp")
def test_logsumexp(benchmark, impl, shape, dtype):
    x, _ = _data(shape, dtype)
    benchmark.group = f"logsumexp axis=-1 {shape} {dtype}"
    benchmark.extra_info["logits_bytes"] = x.nbytes
    with impl.threads():
        got = benchmark(impl.logsumexp, x)
    assert np.asarray(got).shape == shape[:-1]
    check(got, x, reference.logsumexp(x, axis=-1), dtype, impl)


@cases
@impls("cross_entropy")
def test_cross_entropy(benchmark, impl, shape, dtype):
    x, target = _data(shape, dtype)
    benchmark.group = f"cross_entropy mean {shape} {dtype}"
    benchmark.extra_info["logits_bytes"] = x.nbytes
    with impl.threads():
        got = benchmark(impl.cross_entropy, x, target)
    assert np.asarray(got).shape == ()
    check(got, x, reference.cross_entropy(x, target), dtype, impl)


@grad_cases
@impls(_bench.GRAD_OP)
def test_cross_entropy_grad(benchmark, impl, shape, dtype):
    """Forward + gradient: fastxent (return_grad), NumPy, PyTorch forward + loss.backward();
    "fwd only" rows time the forward alone (their gradient is None)."""
    x, target = _data(shape, dtype)
    benchmark.group = f"cross_entropy mean forward+grad {shape} {dtype}"
    benchmark.extra_info["logits_bytes"] = x.nbytes
    with impl.threads():
        loss, grad = benchmark(impl.xent_grad, x, target)
    ref_loss, ref_grad = reference.cross_entropy(x, target, return_grad=True)
    check(loss, x, ref_loss, dtype, impl)
    if impl.key.startswith("fastxent-fwd"):
        assert grad is None
        return
    assert grad.shape == x.shape and grad.dtype == x.dtype
    # Each entry is softmax / rows (minus 1 / rows at the target), a few roundings in float32;
    # PyTorch's softmax gradient is less exact (`_bench.RTOL_TORCH_GRAD_F32`).
    rtol = _bench.RTOL_TORCH_GRAD_F32 if impl.key.startswith("torch") else RTOL[dtype]
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol,
                               atol=UNIT[dtype] * float(np.max(np.abs(ref_grad))))
    np.testing.assert_allclose(grad.sum(axis=-1, dtype=np.float64), 0.0,
                               atol=UNIT[dtype] * x.shape[-1] / target.size)
