"""pytest-benchmark suite: fastxent beside NumPy, SciPy and PyTorch, grouped per case.

Run with ``pytest bench/ --benchmark-only``.  Each group is one operation, shape and
dtype, holding every implementation from `fastxent._bench` (SciPy and PyTorch are
skipped when they do not import).  Every benchmark also checks its result against the
plain NumPy implementation, so a fast wrong answer fails.
"""
import functools
import math

import numpy as np
import pytest

from fastxent import _bench

CASES = [((256, 32000), "float32"), ((64, 128256), "float64"), ((100000, 10), "float32")]
# |got - numpy| <= RTOL * |numpy| + UNIT * (1 + max|x| + log n): the NumPy peer works in the
# input dtype, so the float32 term covers its own rounding too (4 eps per unit of scale).
RTOL = {"float32": 1e-5, "float64": 1e-12}
UNIT = {"float32": 4 * float(np.finfo(np.float32).eps), "float64": 1e-13}



@functools.lru_cache(maxsize=None)
def case_data(shape, dtype):
    """Seeded logits and targets, built once per case (left writable: ``torch.from_numpy``
    warns on read-only arrays)."""
    return _bench.make_data(shape, dtype)


ids = [f"{'x'.join(map(str, s))}-{d}" for s, d in CASES]
impls = pytest.mark.parametrize("impl", _bench.IMPL_KEYS, indirect=True)
cases = pytest.mark.parametrize("shape, dtype", CASES, ids=ids)


def check(got, x, expected, dtype):
    scale = 1 + float(np.max(np.abs(x))) + math.log(x.shape[-1])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=RTOL[dtype],
                               atol=UNIT[dtype] * scale)


@cases
@impls
def test_logsumexp(benchmark, impl, shape, dtype):
    x, _ = case_data(shape, dtype)
    benchmark.group = f"logsumexp axis=-1 {shape} {dtype}"
    benchmark.extra_info["logits_bytes"] = x.nbytes
    with impl.threads():
        got = benchmark(impl.logsumexp, x)
    check(got, x, _bench.numpy_logsumexp(x), dtype)
    assert np.asarray(got).shape == shape[:-1]


@cases
@impls
def test_cross_entropy(benchmark, impl, shape, dtype):
    x, target = case_data(shape, dtype)
    benchmark.group = f"cross_entropy mean {shape} {dtype}"
    benchmark.extra_info["logits_bytes"] = x.nbytes
    with impl.threads():
        got = benchmark(impl.cross_entropy, x, target)
    check(got, x, _bench.numpy_cross_entropy(x, target), dtype)
    assert np.asarray(got).shape == ()
