"""DLPack input: any CPU `__dlpack__` producer is read zero-copy by every public function.

Without torch, NumPy arrays wrapped so that only `__dlpack__`/`__dlpack_device__` are visible
exercise fastxent's own capsule reader (versioned and legacy protocol, deleter, read-only flag,
device check), and capsules built with ctypes count the calls of their deleter and produce the
malformed cases (another DLPack major version, vector lanes, a tensor on another device).  With
torch (optional; FASTXENT_REQUIRE_TORCH=1 makes it required), tensors of every float dtype incl.
bfloat16, strided views and requires-grad tensors go through every public function with NumPy's
results, bitwise.  JAX arrays: tests/test_jax.py.
"""
import ctypes
import gc
import re
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import fastxent as fx
from fastxent import _arrays, _core
from conftest import all_public_results, assert_same_results, optional_import


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
    """A tensor on another device: `__dlpack__` must never be called (no copy behind the back)."""

    def __init__(self, device=(2, 0)):  # kDLCUDA, device 0
        self.device = device

    def __dlpack__(self, **kw):  # pragma: no cover - must never be called
        raise AssertionError("__dlpack__ called for a non-CPU tensor")

    def __dlpack_device__(self):
        return self.device


# ctypes mirrors of dlpack.h (ABI 1.0): capsules whose deleter counts its calls
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManaged(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]


class _DLVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _DLManagedVersioned(ctypes.Structure):
    _fields_ = [("version", _DLVersion), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER),
                ("flags", ctypes.c_uint64), ("dl_tensor", _DLTensor)]


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype, _capsule_new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_valid.restype, _capsule_valid.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
_NAMES = {False: b"dltensor", True: b"dltensor_versioned"}


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(cap):
    """The protocol's rule: a capsule that nobody consumed (not renamed "used_...") calls the
    deleter when it dies; a consumed one leaves that to the consumer."""
    for versioned, name in _NAMES.items():
        if _capsule_valid(cap, name):
            m = _capsule_pointer(cap, name)
            struct = _DLManagedVersioned if versioned else _DLManaged
            struct.from_address(m).deleter(m)


class CapsuleProducer:
    """An ndarray exported through a DLPack capsule built here; `calls` counts deleter calls."""

    def __init__(self, a, versioned=True, version=(1, 0), flags=0, lanes=1, tensor_device=1,
                 byte_offset=0):
        self.a, self.versioned, self.calls = a, versioned, 0
        item = a.itemsize
        self._shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        self._strides = (ctypes.c_int64 * a.ndim)(*(s // item for s in a.strides))
        code = {"f": 2, "i": 0, "u": 1, "b": 6}[a.dtype.kind]
        t = _DLTensor(data=a.__array_interface__["data"][0] - byte_offset, device=_DLDevice(tensor_device, 0),
                      ndim=a.ndim, dtype=_DLDataType(code, 8 * item, lanes), shape=self._shape,
                      strides=self._strides, byte_offset=byte_offset)
        self._deleter = _DELETER(self._delete)
        if versioned:
            self._m = _DLManagedVersioned(version=_DLVersion(*version), deleter=self._deleter, flags=flags,
                                          dl_tensor=t)
        else:
            self._m = _DLManaged(dl_tensor=t, deleter=self._deleter)

    def _delete(self, _ptr):
        self.calls += 1

    def __dlpack__(self, *, stream=None, max_version=None, **kw):
        if self.versioned and max_version is None:
            raise AssertionError("fastxent asks for the versioned protocol first")
        return _capsule_new(ctypes.addressof(self._m), _NAMES[self.versioned], _capsule_destructor)

    def __dlpack_device__(self):
        return (1, 0)


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


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "legacy"])
def test_deleter_called_exactly_once(versioned):
    a = np.arange(24.0).reshape(4, 6)[:, 1:]
    p = CapsuleProducer(a, versioned=versioned)
    v = _arrays.asarray(p, "x")
    assert v.__array_interface__["data"][0] == a.__array_interface__["data"][0] and v.strides == a.strides
    w = v[1:]
    del v
    gc.collect()
    assert p.calls == 0  # the view keeps the tensor (through any view of the view)
    np.testing.assert_array_equal(w, a[1:])
    del w
    gc.collect()
    assert p.calls == 1
    # a whole call: the capsule is consumed (renamed), so only fastxent calls the deleter, once
    p = CapsuleProducer(a, versioned=versioned)
    assert fx.logsumexp(p) == fx.logsumexp(a)
    gc.collect()
    assert p.calls == 1
    # a capsule nobody consumes: the producer's own destructor calls it (the control for the above)
    p = CapsuleProducer(a, versioned=versioned)
    p.__dlpack__(max_version=(1, 0))
    gc.collect()
    assert p.calls == 1


@pytest.mark.parametrize("case, exc, match", [
    (dict(version=(2, 0)), BufferError, r"`logits` exports DLPack 2\.0; fastxent reads version 1"),
    (dict(lanes=4), TypeError, r"`logits` has DLPack dtype float64 x 4 lanes, which fastxent does not read"),
    (dict(tensor_device=2), ValueError, r"`logits` is on a non-CPU device \(CUDA:0"),
    (dict(versioned=False, tensor_device=2), ValueError, r"`logits` is on a non-CPU device \(CUDA:0"),
])
def test_refused_capsule_is_released_once(case, exc, match):
    p = CapsuleProducer(np.arange(6.0).reshape(2, 3), **case)
    with pytest.raises(exc, match=match):
        fx.cross_entropy(p, np.array([0, 2]))
    gc.collect()
    assert p.calls == 1


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "legacy"])
def test_byte_offset_and_read_only_flag_of_the_capsule(versioned):
    base = np.arange(10.0)
    p = CapsuleProducer(base[3:], versioned=versioned, byte_offset=3 * 8, flags=1 if versioned else 0)
    v = _arrays.asarray(p, "x")
    np.testing.assert_array_equal(v, base[3:])
    assert v.flags.writeable is not versioned  # DLPACK_FLAG_BITMASK_READ_ONLY (versioned only)
    with pytest.raises(ValueError, match="`grad_out` is read-only"):
        fx.cross_entropy(np.zeros((1, 7)), np.array([0]), return_grad=True,
                         grad_out=CapsuleProducer(np.zeros((1, 7)), flags=1))
    del v
    gc.collect()
    assert p.calls == 1


def test_read_only_flag_gives_read_only_array():
    if not _versioned_numpy():
        pytest.skip("read-only export needs the versioned protocol")
    a = np.arange(6.0)
    a.flags.writeable = False
    v = _arrays.asarray(Producer(a), "x")
    assert not v.flags.writeable
    b = np.zeros(6)
    assert _arrays.asarray(Producer(b), "x").flags.writeable


_X3, _T1 = np.zeros((1, 3), np.float32), np.array([0])
ARGUMENTS = {  # argument name -> a call with a non-CPU tensor `g` given as that argument
    "logits": lambda g: fx.cross_entropy(g, _T1),
    "target": lambda g: fx.cross_entropy(_X3, g),
    "weight": lambda g: fx.cross_entropy(_X3, _T1, weight=g),
    "grad_out": lambda g: fx.cross_entropy(_X3, _T1, return_grad=True, grad_out=g),
    "a": lambda g: fx.logsumexp(g),
    "x": lambda g: fx.softmax(g),
    "b": lambda g: fx.logsumexp(_X3, b=g),
    "p_logits": lambda g: fx.kl_divergence(g, _X3),
    "q_logits": lambda g: fx.kl_divergence(_X3, g),
    "ref_logits": lambda g: fx.token_stats(_X3, _T1, ref_logits=g),
    "Evaluator.update logits": lambda g: fx.Evaluator().update(g, _T1),
    "Evaluator.update ref_logits": lambda g: fx.Evaluator().update(_X3, _T1, ref_logits=g),
}


@pytest.mark.parametrize("arg", ARGUMENTS)
@pytest.mark.parametrize("device, label", [((2, 0), "CUDA:0"), ((10, 3), "ROCm:3"), ((8, 0), "Metal:0"),
                                           ((99, 1), "unknown:1")])
def test_non_cpu_device_is_a_clear_error(arg, device, label):
    name = arg.split()[-1]
    with pytest.raises(ValueError, match=rf"^`{name}` is on a non-CPU device \({label}, DLPack device type "
                                         rf"{device[0]}\); fastxent reads CPU memory only: .*`x\.cpu\(\)`"):
        ARGUMENTS[arg](OnGPU(device))


class BadExport:
    """A producer whose export fails, as torch's meta and sparse tensors, JAX's int4 arrays do."""

    def __init__(self, where, exc):
        self.where, self.exc = where, exc

    def __dlpack_device__(self):
        if self.where == "device":
            raise self.exc
        return (1, 0)

    def __dlpack__(self, **kw):
        raise self.exc


@pytest.mark.parametrize("where", ["device", "dlpack"])
@pytest.mark.parametrize("exc, want", [(ValueError("Unknown device type meta"), ValueError),
                                       (BufferError("layout other than strided"), BufferError),
                                       (RuntimeError("no DLPack equivalent"), TypeError),
                                       (AttributeError("no __dlpack_device__"), TypeError)])
def test_failing_export_names_the_argument(where, exc, want):
    what = "__dlpack_device__()" if where == "device" else "__dlpack__()"
    with pytest.raises(want, match="^" + re.escape(f"`target` (test_dlpack.BadExport) could not be read over "
                                                   f"DLPack: its {what} raised {type(exc).__name__}: {exc}") + "$"):
        fx.cross_entropy(_X3, BadExport(where, exc))


def test_ndarrays_are_not_rerouted():
    a = np.arange(3.0)
    assert _arrays.from_dlpack_if_needed(a, "x") is a


RNG = np.random.default_rng(15)
X = RNG.standard_normal((3, 7, 11)).astype(np.float32)
T = RNG.integers(0, 11, (3, 7))
T[0, 0] = -100
W = RNG.uniform(0.5, 2.0, 11)


def test_every_public_function_reads_dlpack_input_bitwise():
    ref = X[::-1].copy()
    want = all_public_results(X, T, ref, W)
    got = all_public_results(Producer(X), Producer(T), Producer(ref), Producer(W))
    assert_same_results(got, want)
    got = all_public_results(Producer(X, legacy=True), Producer(T, legacy=True), Producer(ref, legacy=True),
                             Producer(W, legacy=True))
    assert_same_results(got, want)


def test_grad_out_is_written_through_its_dlpack_view():
    g = np.zeros(X.shape, dtype=np.float32)
    res = fx.cross_entropy(X, T, return_grad=True, grad_out=Producer(g))
    want = fx.cross_entropy(X, T, return_grad=True)[1]
    np.testing.assert_array_equal(g, want)
    assert isinstance(res[1], Producer)  # the object given is returned


# ------------------------------------------------------------------------------ torch
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
    torch = optional_import("torch")
    x = torch.from_numpy(RNG.standard_normal((3, 8, 11)).astype(np.float32)).to(getattr(torch, dtype))
    x.requires_grad_(True)
    xs = x[:, :-1]  # the causal shift: a strided view
    t = torch.from_numpy(T).to(getattr(torch, tdtype))
    ref = torch.flip(xs, (0,)).detach()
    w = torch.from_numpy(W).to(getattr(torch, dtype))
    want = all_public_results(_np_of(xs), _np_of(t), _np_of(ref), _np_of(w))
    assert_same_results(all_public_results(xs, t, ref, w), want)
    # the same through the legacy protocol (fastxent asks for the versioned one, torch gives it)
    assert _capsule_valid(id(torch.zeros(1).__dlpack__(max_version=(1, 0))), b"dltensor_versioned")
    got = all_public_results(*(Producer(a.detach(), legacy=True) for a in (xs, t, ref, w)))
    assert_same_results(got, want)


def test_torch_tensors_are_released():
    """No reference to the tensor (or its storage) outlives a call: the deleter ran, once."""
    torch = optional_import("torch")
    x = torch.randn(6, 9)
    xg = torch.randn(6, 9, requires_grad=True)  # read through .detach(): a new tensor on its storage
    t = torch.randint(0, 9, (6,))
    refs = sys.getrefcount(x), sys.getrefcount(t)
    uses = torch._C._storage_Use_Count(xg.untyped_storage()._cdata)
    for _ in range(20):
        fx.cross_entropy(x, t, return_grad=True)
        fx.token_stats(xg, t, ref_logits=x)
        fx.Evaluator().update(xg, t, x)
    gc.collect()
    assert (sys.getrefcount(x), sys.getrefcount(t)) == refs
    assert torch._C._storage_Use_Count(xg.untyped_storage()._cdata) == uses
    v = _arrays.asarray(xg, "x")  # the control: a live view does hold the storage
    assert torch._C._storage_Use_Count(xg.untyped_storage()._cdata) == uses + 1
    del v
    gc.collect()
    assert torch._C._storage_Use_Count(xg.untyped_storage()._cdata) == uses


def test_torch_meta_tensor_is_a_clear_error():
    torch = optional_import("torch")
    with pytest.raises(ValueError, match=r"^`logits` \(torch\.Tensor\) could not be read over DLPack: "
                                         r"its __dlpack_device__\(\) raised ValueError: .*meta"):
        fx.cross_entropy(torch.empty(2, 3, device="meta"), torch.zeros(2, dtype=torch.long))
    with pytest.raises(BufferError, match=r"^`logits` \(torch\.Tensor\) could not be read over DLPack"):
        fx.cross_entropy(torch.zeros(2, 3).to_sparse(), torch.zeros(2, dtype=torch.long))


def test_torch_view_is_zero_copy():
    torch = optional_import("torch")
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


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_grad_out_written_in_place(dtype):
    torch = optional_import("torch")
    x = torch.randn(5, 7, dtype=getattr(torch, dtype), requires_grad=True)
    t = torch.randint(0, 7, (5,))
    g = torch.zeros(5, 7, dtype=torch.float64 if dtype == "float64" else torch.float32)
    version = g._version
    loss, g2 = fx.cross_entropy(x, t, return_grad=True, grad_out=g)
    assert g2 is g
    want_loss, want = fx.cross_entropy(_np_of(x), t.numpy(), return_grad=True)
    np.testing.assert_array_equal(g.numpy(), want)
    assert loss == want_loss
    assert g._version > version  # torch is told of the write, as by its own in-place ops


def test_torch_grad_out_may_be_the_logits_themselves():
    torch = optional_import("torch")
    x = torch.randn(4, 6, 9)[:, :-1]  # strided: rows 9 apart
    t = torch.randint(0, 9, (4, 5))
    want = fx.cross_entropy(x.clone(), t, return_grad=True)
    got = fx.cross_entropy(x, t, return_grad=True, grad_out=x)
    assert got[0] == want[0] and got[1] is x
    np.testing.assert_array_equal(x.numpy(), want[1])


def test_torch_grad_out_write_is_seen_by_autograd():
    """A tensor saved for backward and then overwritten through grad_out: torch's usual error."""
    torch = optional_import("torch")
    g = torch.zeros(3, 4)
    w = torch.randn(3, 4, requires_grad=True)
    y = (g * w).sum()  # saves g for the gradient of w
    fx.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), return_grad=True, grad_out=g)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_torch_grad_out_that_requires_grad_is_refused():
    torch = optional_import("torch")
    g = torch.zeros(3, 4, requires_grad=True)
    with pytest.raises(ValueError, match=r"^`grad_out` requires grad; fastxent writes into it in place"):
        fx.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), return_grad=True, grad_out=g)
    assert not g.detach().any()  # nothing written


def test_bfloat16_raw_probability_targets_and_ref(monkeypatch):
    """Without ml_dtypes, bf16 targets/ref/b are converted by value, not as uint16 integers."""
    torch = optional_import("torch")
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
