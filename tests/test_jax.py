"""JAX arrays as input: read zero-copy over DLPack by every public function (needs jax).

Optional: skipped without jax; with FASTXENT_REQUIRE_JAX=1 (the torch/JAX job of .ci/run) a
missing jax is a failure.  What is checked, on JAX's CPU backend:

- float32, float16, bfloat16 and (with ``jax_enable_x64``) float64 arrays, int32 and (x64) int64
  targets, through every public function and `Evaluator.update`: the results of the same data
  as NumPy arrays, bitwise; bfloat16 both as the ml_dtypes dtype and as raw storage (as without
  ml_dtypes, which jax itself depends on);
- no copy: fastxent's view starts at the array's own buffer (``unsafe_buffer_pointer()``), and
  a call on a 64 MB array allocates no copy of it;
- JAX has no strided views: a slice or a transpose (``x[:, :-1]``, ``x.T``) is a new dense array
  that JAX computes when it is made, and fastxent reads that array in place like any other;
- JAX arrays are immutable: fastxent's view of one is read-only, and ``grad_out=`` a JAX array
  is refused (a TypeError) before anything is written; a tracer (fastxent called inside
  ``jax.jit``) is a TypeError naming the argument;
- the buffer is released after the call (JAX exports the legacy DLPack protocol, whose deleter
  fastxent calls once).
"""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import fastxent as fx
from fastxent import _arrays
from conftest import all_public_results, assert_same_results, optional_import

jax = optional_import("jax")
jnp = jax.numpy
CPU = jax.devices("cpu")[0]

RNG = np.random.default_rng(1515)
X = RNG.standard_normal((3, 8, 11)).astype(np.float32) * 2
T = RNG.integers(0, 11, (3, 7))
T[0, 0] = -100
W = RNG.uniform(0.5, 2.0, 11).astype(np.float32)


@pytest.fixture
def x64():
    """JAX with 64-bit types (float64 arrays, int64 targets), restored afterwards."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def _np(a):
    """The NumPy copy of a JAX array's values (bfloat16 as ml_dtypes' dtype): the reference input."""
    return np.array(a)


def _jax(a, dtype):
    return jax.device_put(jnp.asarray(a, dtype=dtype), CPU)


def _check_every_function(dtype, tdtype):
    x = _jax(X, dtype)
    assert x.dtype == dtype
    xs = x[:, :-1]  # the causal shift (a new dense array in JAX)
    t = _jax(T, tdtype)
    assert t.dtype == tdtype
    ref = jnp.flip(xs, 0)
    w = _jax(W, dtype)
    want = all_public_results(_np(xs), _np(t), _np(ref), _np(w))
    assert_same_results(all_public_results(xs, t, ref, w), want)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_jax_arrays_through_every_function(dtype, bf16_mode):
    _check_every_function(jnp.dtype(dtype), jnp.dtype("int32"))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_jax_x64_arrays_through_every_function(dtype, x64):
    _check_every_function(jnp.dtype(dtype), jnp.dtype("int64"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("make", ["plain", "slice", "transpose"])
def test_jax_view_is_the_array_buffer_and_read_only(dtype, make, bf16_mode):
    x = _jax(X, dtype)
    x = {"plain": x, "slice": x[:, :-1], "transpose": jnp.swapaxes(x, 1, 2)}[make]
    v = _arrays.asarray(x, "logits", keep_bf16=True)
    assert v.__array_interface__["data"][0] == x.unsafe_buffer_pointer()
    assert v.shape == x.shape and v.flags.c_contiguous  # JAX arrays are dense
    assert not v.flags.writeable  # JAX arrays are immutable
    np.testing.assert_array_equal(_arrays.to_dtype(v, np.dtype(np.float32)), _np(x).astype(np.float32))
    axis = 1 if make == "transpose" else -1
    t = _jax(T if make == "slice" else RNG.integers(0, 11, (3, 8)), "int32")
    assert fx.cross_entropy(x, t, axis=axis) == fx.cross_entropy(_np(x), _np(t), axis=axis)


def test_jax_call_makes_no_copy():
    big = _jax(RNG.standard_normal((4096, 4096)), "float32")  # 64 MB
    t = _jax(RNG.integers(0, 4096, 4096), "int32")
    tracemalloc.start()
    try:
        loss = fx.cross_entropy(big, t, reduction="none")
        nll = fx.token_stats(big, t).nll
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak  # the results (16 KB each) and no 64 MB copy
    x_np, t_np = np.asarray(big), np.asarray(t)
    np.testing.assert_array_equal(loss, fx.cross_entropy(x_np, t_np, reduction="none"))
    np.testing.assert_array_equal(nll, fx.token_stats(x_np, t_np).nll)


def test_jax_grad_out_is_refused_before_anything_is_written():
    x, t = _jax(X, "float32"), _jax(np.maximum(T, 0), "int32")
    g = jnp.zeros((3, 7, 11), jnp.float32)
    with pytest.raises(TypeError, match=r"^`grad_out` is a JAX array; JAX arrays are immutable"):
        fx.cross_entropy(x[:, :-1], t, return_grad=True, grad_out=g)
    assert not np.asarray(g).any()
    # the way that works: the gradient as a NumPy array, then a JAX array
    loss, grad = fx.cross_entropy(x[:, :-1], t, return_grad=True)
    assert isinstance(grad, np.ndarray)
    np.testing.assert_array_equal(jnp.asarray(grad), fx.cross_entropy(X[:, :-1], np.maximum(T, 0),
                                                                      return_grad=True)[1])


def test_jax_tracer_is_a_clear_error():
    @jax.jit
    def f(x):
        return fx.logsumexp(x)

    with pytest.raises(TypeError, match=r"^`a` is a JAX tracer \(\w+\): fastxent was called inside jax\.jit"):
        f(jnp.zeros(3))


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_jax_buffers_are_released():
    """40 calls, each on a new 8 MB array that is then dropped: the process does not grow by
    their 320 MB (it would if fastxent never called the DLPack deleter)."""
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    base = RNG.standard_normal((1024, 2048)).astype(np.float32)
    t = _jax(RNG.integers(0, 2048, 1024), "int32")

    def calls(n):
        for _ in range(n):
            x = jax.device_put(base, CPU)
            fx.cross_entropy(x, t)
            fx.Evaluator().update(x, t)
            del x
        gc.collect()

    calls(10)  # the allocators' caches reach their steady size
    before = rss_mb()
    calls(40)
    assert rss_mb() - before < 100, (before, rss_mb())


def test_jax_pure_callback_inside_jit():
    """The README's way to call fastxent inside jax.jit: a callback on concrete arrays."""
    @jax.jit
    def perplexity(logits, targets):
        return jax.pure_callback(lambda x, t: np.float32(fx.perplexity(x, t)),
                                 jax.ShapeDtypeStruct((), jnp.float32), logits, targets)

    x, t = _jax(X, "bfloat16"), _jax(np.maximum(T, 0), "int32")
    assert float(perplexity(x[:, :-1], t)) == fx.perplexity(_np(x[:, :-1]), _np(t))
