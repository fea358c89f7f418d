"""DLPack input: any CPU `__dlpack__` producer is read zero-copy by every public function.

Without torch, NumPy arrays wrapped so that only `__dlpack__`/`__dlpack_device__` are visible
exercise fastxent's own capsule reader (versioned and legacy protocol, deleter, read-only flag,
device check).  With torch (optional), tensors of every float dtype incl. bfloat16, strided
views and requires-grad tensors go through every public function with NumPy's results, bitwise.
"""
import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import fastxent as fx
from fastxent import _arrays, _core


class Producer:
    """Exposes an ndarray through DLPack only (no __array__, no buffer protocol)."""

    def __init__(self, a, legacy=False):
        self.a = a
        self.legacy = legacy

    def __dlpack__(self, *, stream=None, max_version=None, **kw):
        if self.legacy:
            if max_version is not None:
                raise TypeError("legacy producer: no max_version")
            return self.a.__dlpack__()
        if max_version is None:  # the legacy call (fastxent's fallback; NumPy < 2.1 knows no max_version)
            return self.a.__dlpack__()
        return self.a.__dlpack__(max_version=max_version)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class OnGPU:
    def __dlpack__(self, **kw):  # pragma: no cover - must never be called
        raise AssertionError("__dlpack__ called for a non-CPU tensor")

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA


def _versioned_numpy():
    try:
        np.zeros(1).__dlpack__(max_version=(1, 0))
    except TypeError:
        return False
    return True


DTYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "bool"]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_view_of_every_dtype_is_zero_copy(dtype, legacy):
    if not legacy and not _versioned_numpy():
        pytest.skip("this NumPy exports the legacy protocol only")
    base = (np.arange(24) % 7).astype(dtype).reshape(4, 6)
    a = base[:, 1:5]  # strided: the strides are carried over
    v = _arrays.asarray(Producer(a, legacy), "x")
    assert v.dtype == a.dtype and v.shape == a.shape and v.strides == a.strides
    assert v.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    np.testing.assert_array_equal(v, a)


def test_deleter_runs_exactly_once_when_the_view_dies():
    a = np.arange(12.0).reshape(3, 4)
    ref = weakref.ref(a)
    p = Producer(a)
    v = _arrays.asarray(p, "x")
    del a, p
    gc.collect()
    assert ref() is not None  # the view keeps the producer's memory alive
    w = v[1:]
    del v
    gc.collect()
    assert ref() is not None  # ... through any view of the view
    assert float(w.sum()) == sum(range(4, 12))
    del w
    gc.collect()
    assert ref() is None  # deleter ran (a second run would have crashed: NumPy decrefs twice)


def test_read_only_flag_gives_read_only_array():
    if not _versioned_numpy():
        pytest.skip("read-only export needs the versioned protocol")
    a = np.arange(6.0)
    a.flags.writeable = False
    v = _arrays.asarray(Producer(a), "x")
    assert not v.flags.writeable
    b = np.zeros(6)
    assert _arrays.asarray(Producer(b), "x").flags.writeable


def test_non_cpu_device_is_a_clear_error():
    with pytest.raises(ValueError, match=r"`logits` is on a non-CPU device \(DLPack device type 2.*\.cpu\(\)"):
        fx.cross_entropy(OnGPU(), np.array([0]))
    with pytest.raises(ValueError, match="`target` is on a non-CPU device"):
        fx.cross_entropy(np.zeros((1, 3)), OnGPU())


def test_ndarrays_are_not_rerouted():
    a = np.arange(3.0)
    assert _arrays.from_dlpack_if_needed(a, "x") is a


RNG = np.random.default_rng(15)
X = RNG.standard_normal((3, 7, 11)).astype(np.float32)
T = RNG.integers(0, 11, (3, 7))
T[0, 0] = -100


def _all_results(x, t, ref):
    out = {
        "lse": fx.logsumexp(x, axis=-1), "softmax": fx.softmax(x), "log_softmax": fx.log_softmax(x),
        "xent": fx.cross_entropy(x, t), "xent_none": fx.cross_entropy(x, t, reduction="none"),
        "xent_grad": fx.cross_entropy(x, t, label_smoothing=0.1, return_grad=True)[1],
        "ppl": fx.perplexity(x, t), "nll": fx.token_stats(x, t).nll,
        "kl": fx.kl_divergence(x, ref),
    }
    e = fx.Evaluator()
    e.update(x, t, ref)
    out["report"] = e.report()["nll_mean"]
    return out


def _assert_same(got, want):
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k


def test_every_public_function_reads_dlpack_input_bitwise():
    ref = X[::-1].copy()
    want = _all_results(X, T, ref)
    got = _all_results(Producer(X), Producer(T), Producer(ref))
    _assert_same(got, want)


def test_grad_out_is_written_through_its_dlpack_view():
    g = np.zeros(X.shape, dtype=np.float32)
    res = fx.cross_entropy(X, T, return_grad=True, grad_out=Producer(g))
    want = fx.cross_entropy(X, T, return_grad=True)[1]
    np.testing.assert_array_equal(g, want)
    assert isinstance(res[1], Producer)  # the object given is returned


# ------------------------------------------------------------------------------ torch
@pytest.fixture(params=["ml_dtypes", "raw"])
def bf16_mode(request, monkeypatch):
    """bfloat16 read as the ml_dtypes dtype, and (as without ml_dtypes) as raw uint16 storage."""
    if request.param == "ml_dtypes":
        pytest.importorskip("ml_dtypes")
        monkeypatch.setattr(_arrays, "_bf16", None)
    else:
        monkeypatch.setattr(_arrays, "_bf16", _arrays.BF16_RAW)
    return request.param


def _np_of(t):
    """The NumPy array of a torch tensor's data (bfloat16 via ml_dtypes), the reference input."""
    import torch
    t = t.detach()
    if t.dtype == torch.bfloat16:
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("tdtype", ["int64", "int32"])
def test_torch_tensors_through_every_function(dtype, tdtype, bf16_mode):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(RNG.standard_normal((3, 8, 11)).astype(np.float32)).to(getattr(torch, dtype))
    x.requires_grad_(True)
    xs = x[:, :-1]  # the causal shift: a strided view
    t = torch.from_numpy(T).to(getattr(torch, tdtype))
    ref = torch.flip(xs, (0,)).detach()
    want = _all_results(_np_of(xs), _np_of(t), _np_of(ref))
    got = _all_results(xs, t, ref)
    _assert_same(got, want)


def test_torch_view_is_zero_copy():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 9, 5, dtype=torch.bfloat16)[:, 1:]
    v = _arrays.asarray(x, "logits", keep_bf16=True)
    assert v.__array_interface__["data"][0] == x.data_ptr()
    # a call on a 64 MB tensor allocates no copy of it (NumPy's allocations are traced)
    big = torch.randn(4096, 4096)
    tgt = torch.randint(0, 4096, (4096,))
    tracemalloc.start()
    try:
        fx.cross_entropy(big, tgt, reduction="none")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_torch_grad_out_written_in_place():
    torch = pytest.importorskip("torch")
    x = torch.randn(5, 7, dtype=torch.bfloat16)
    t = torch.randint(0, 7, (5,))
    g = torch.zeros(5, 7)
    loss, g2 = fx.cross_entropy(x, t, return_grad=True, grad_out=g)
    assert g2 is g
    want = fx.cross_entropy(_np_of(x), t.numpy(), return_grad=True)[1]
    np.testing.assert_array_equal(g.numpy(), want)


def test_bfloat16_raw_probability_targets_and_ref(monkeypatch):
    """Without ml_dtypes, bf16 targets/ref/b are converted by value, not as uint16 integers."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    monkeypatch.setattr(_arrays, "_bf16", _arrays.BF16_RAW)
    x = torch.randn(4, 6)
    p = torch.softmax(torch.randn(4, 6), -1).to(torch.bfloat16)
    want = fx.cross_entropy(x.numpy(), _np_of(p).astype(np.float32))
    assert fx.cross_entropy(x, p) == want
    xb = x.to(torch.bfloat16)
    want_kl = fx.kl_divergence(_np_of(xb), x.numpy())  # ml_dtypes bfloat16 vs float32
    np.testing.assert_array_equal(fx.kl_divergence(xb, x), want_kl)
    np.testing.assert_array_equal(fx.kl_divergence(x, xb), fx.kl_divergence(x.numpy(), _np_of(xb)))
