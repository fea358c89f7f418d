"""Fixtures for the pytest-benchmark suite."""
import pytest

from fastxent import _bench


@pytest.fixture
def impl(request):
    """The implementation named by the (indirect) `impl` parameter; SciPy/PyTorch skip when absent."""
    key = request.param
    if key == "scipy":
        pytest.importorskip("scipy.special")
    elif key.startswith("torch"):
        pytest.importorskip("torch")
    return _bench.get_impl(key)
