"""Threads: results bitwise identical for any n_threads, on every ISA; the default
thread count follows set_num_threads, OMP_NUM_THREADS and threadpoolctl."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent
from conftest import run_python

THREADS = [1, 2, 3, 8]
SHAPES = [
    (4099, 10),      # small-class path (rows in lanes), a partial last group
    (3, 50_000),     # fewer rows than threads: rows split into blocks
    (1, 130_000),
    (37, 5_000),     # one row per thread
]


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x[0, 1] = -np.inf
    t = rng.integers(0, shape[-1], shape[0])
    t[::7] = -100
    return x, t


CALLS = {
    "logsumexp": lambda x, t, n: fastxent.logsumexp(x, axis=-1, n_threads=n),
    "softmax": lambda x, t, n: fastxent.softmax(x, axis=-1, n_threads=n),
    "log_softmax": lambda x, t, n: fastxent.log_softmax(x, axis=-1, n_threads=n),
    "cross_entropy": lambda x, t, n: fastxent.cross_entropy(x, t, reduction="none", n_threads=n),
    "cross_entropy_mean": lambda x, t, n: fastxent.cross_entropy(x, t, n_threads=n),
    "perplexity": lambda x, t, n: fastxent.perplexity(x, t, n_threads=n),
    "cross_entropy_grad": lambda x, t, n: fastxent.cross_entropy(
        x, t, label_smoothing=0.1, z_loss=1e-3, softcap=20.0, return_grad=True, n_threads=n),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_equal_for_any_thread_count(isa, name, shape, dtype):
    if name == "cross_entropy_grad" and shape[0] * shape[1] > 200_000 and dtype == np.float64:
        shape = (shape[0], shape[1] // 4)
    x, t = _inputs(shape, dtype)
    first = CALLS[name](x, t, 1)
    first = first if isinstance(first, tuple) else (first,)
    for n in THREADS[1:]:
        got = CALLS[name](x, t, n)
        got = got if isinstance(got, tuple) else (got,)
        for a, b in zip(first, got):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(a, b, err_msg=f"n_threads={n} differs from 1")


def test_set_num_threads_returns_previous_and_resolves_negative():
    old = fastxent.set_num_threads(3)
    try:
        want = 3 if fastxent.openmp_enabled() else 1
        assert fastxent.get_num_threads() == want
        assert fastxent.set_num_threads(-1) == 3
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert fastxent.get_num_threads() == (cpus if fastxent.openmp_enabled() else 1)
    finally:
        fastxent.set_num_threads(old)
    with pytest.raises(ValueError, match="`n_threads`"):
        fastxent.set_num_threads(0)
    with pytest.raises(TypeError, match="`n_threads`"):
        fastxent.set_num_threads(1.5)
    with pytest.raises(ValueError, match="`n_threads`"):
        fastxent.logsumexp(np.ones(3), n_threads=0)


@pytest.mark.skipif(not fastxent.openmp_enabled(), reason="serial build")
def test_default_follows_omp_num_threads():
    code = "import fastxent; print(fastxent.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(fastxent.__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


@pytest.mark.skipif(not fastxent.openmp_enabled(), reason="serial build")
def test_threadpoolctl_limits_are_honoured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastxent.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        assert fastxent.get_num_threads() == 2


def test_serial_build_ignores_thread_requests():
    if fastxent.openmp_enabled():
        pytest.skip("OpenMP build")
    assert fastxent.get_num_threads() == 1
    x, t = _inputs((16, 100), np.float32)
    np.testing.assert_array_equal(fastxent.cross_entropy(x, t, n_threads=4),
                                  fastxent.cross_entropy(x, t, n_threads=1))


def test_huge_n_threads_does_not_crash(tmp_path):
    code = textwrap.dedent("""
        import numpy as np, fastxent
        try:
            r = fastxent.logsumexp(np.zeros((200000, 10)), axis=-1, n_threads=100000)
            print("OK" if np.allclose(r, np.log(10)) else "WRONG")
        except (ValueError, TypeError) as e:
            print("OK raised", type(e).__name__, e)
    """)
    # an expected crash must not count as a report of tools/run_sanitized_tests.sh
    env = {"ASAN_OPTIONS": f"detect_leaks=0:log_path={tmp_path}/asan"}
    rc, out, err = run_python(code, timeout=120, env=env)
    assert rc == 0 and out.startswith("OK"), f"rc={rc} out={out!r} err={err[-1000:]!r}"
