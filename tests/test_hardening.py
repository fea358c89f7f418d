"""Hardening: Python threads, the GIL, fork, 64-bit indexing, reads past the ends of arrays.

* Many Python threads calling fastxent at once (each with n_threads > 1) get the bits of serial calls.
* The GIL is released around the kernels: another Python thread runs (and completes a fastxent call)
  while each public entry point is inside its kernel; decided by what that thread can do, not by timing.
* A child made by os.fork after fastxent used OpenMP threads can call fastxent (bounded by a timeout).
* Arrays of more than 2**31 elements, rows longer than 2**31 bytes and row offsets beyond 2**31
  elements are indexed correctly.  The inputs are zero-filled arrays (calloc: untouched pages are
  the kernel's shared zero page, so an 8 GiB input costs no memory) with a few nonzero "sentinel"
  values, or broadcast views with a row stride of 0; results are checked against closed forms.
  Tests that write more than 2**31 bytes of real output are skipped when memory is short; the one
  that writes 2**31 elements (8 GiB) runs only with FASTXENT_TEST_HUGE=1.
* The target check finds the first bad target in any run of the vectorised check, and the loss
  kernels never read a class a target outside [0, C) would name.
* No kernel reads before the first or past the last byte of an input, on every ISA: the inputs are
  placed against PROT_NONE guard pages (AddressSanitizer cannot see the AVX2/AVX-512 masked loads).
* Unaligned and byte-swapped inputs give the aligned results, through one copy (no undefined
  behaviour in the sanitizer build).

Extreme and non-finite values are in test_extreme_values.py; argument extremes in test_threads.py
(`n_threads`) and test_errors.py (integers beyond int64).
"""
import json
import math
import os
import sys
import threading

import numpy as np
import pytest

import fastxent
from conftest import run_python as _run_python

SANITIZED = os.environ.get("FASTXENT_SANITIZED", "0") not in ("", "0")
LINUX = sys.platform.startswith("linux")
HUGE = os.environ.get("FASTXENT_TEST_HUGE", "0") not in ("", "0")


def _ml_dtypes():
    try:
        import ml_dtypes
    except ImportError:
        return None
    return ml_dtypes


# --------------------------------------------------------------------------- Python threads
def _thread_workload(seed):
    """(name, call(n_threads) -> tuple of arrays) for a mix of every public function and path."""
    rng = np.random.default_rng(seed)
    x32 = (rng.standard_normal((67, 3001)) * 4).astype(np.float32)
    x64 = (rng.standard_normal((5, 9, 130)) * 4)
    x64[1, 2, 3] = -np.inf
    small = (rng.standard_normal((4099, 10)) * 3).astype(np.float32)
    t32 = rng.integers(0, 3001, 67)
    t32[::5] = -100
    t64 = rng.integers(0, 130, (5, 9))
    ts = rng.integers(0, 10, 4099)
    w = rng.random(3001).astype(np.float32)
    b = rng.standard_normal(130)
    prob = rng.random(small.shape).astype(np.float32)
    calls = [
        ("lse", lambda n: (fastxent.logsumexp(x32, axis=-1, n_threads=n),)),
        ("lse_axes", lambda n: (fastxent.logsumexp(x64, axis=(0, 2), n_threads=n),)),
        ("lse_b", lambda n: fastxent.logsumexp(x64, axis=-1, b=b, return_sign=True, n_threads=n)),
        ("softmax", lambda n: (fastxent.softmax(small, axis=-1, n_threads=n),)),
        ("log_softmax_axis0", lambda n: (fastxent.log_softmax(x64, axis=0, n_threads=n),)),
        ("xent_none", lambda n: (fastxent.cross_entropy(x32, t32, reduction="none", n_threads=n),)),
        ("xent_small_mean", lambda n: (fastxent.cross_entropy(small, ts, n_threads=n),)),
        ("xent_opts_grad", lambda n: fastxent.cross_entropy(
            x32, t32, weight=w, label_smoothing=0.1, z_loss=1e-3, softcap=15.0, return_z_loss=True,
            return_grad=True, n_threads=n)),
        ("xent_prob_grad", lambda n: fastxent.cross_entropy(small, prob, reduction="sum", return_grad=True,
                                                            n_threads=n)),
        ("ppl_seq", lambda n: (fastxent.perplexity(x64, t64, per_sequence=True, n_threads=n),)),
        ("token_stats", lambda n: tuple(fastxent.token_stats(x32, t32, ref_logits=x32 * 0.5,
                                                             n_threads=n).as_dict().values())),
        ("kl_divergence", lambda n: (fastxent.kl_divergence(x32, x32[::-1], n_threads=n),)),
    ]

    def inplace(n):
        c = x64.copy()
        loss, g = fastxent.cross_entropy(c, t64, label_smoothing=0.2, return_grad=True, grad_out=c, n_threads=n)
        assert g is c
        return loss, c
    calls.append(("xent_grad_out_is_logits", inplace))
    return calls


def test_many_python_threads_match_serial_calls():
    n_py = 8
    work = [_thread_workload(seed) for seed in range(n_py)]
    expected = [[tuple(np.asarray(r) for r in call(1)) for _, call in w] for w in work]
    errors = []
    barrier = threading.Barrier(n_py)

    def worker(k):
        try:
            barrier.wait()
            for rep in range(3):
                for j, (name, call) in enumerate(work[k]):
                    got = call(2 + (k + rep + j) % 2)  # 2 or 3 OpenMP threads per call
                    for a, b in zip(expected[k][j], got):
                        if not np.array_equal(a, np.asarray(b), equal_nan=True) or a.dtype != np.asarray(b).dtype:
                            errors.append(f"thread {k} rep {rep} {name}: differs from the serial call")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_py)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish within 120 s"
    assert not errors, "\n".join(errors[:10])


# --------------------------------------------------------------------------- the GIL
# Whether a call releases the GIL is decided by what another thread can do during it, not by
# timing.  In a fresh interpreter with sys.setswitchinterval(1000) the GIL changes hands only
# where its holder blocks or releases it (no forced switch every 5 ms).  Every kernel entry of
# fastxent._core is wrapped: the wrapper notes which kernel is running and wakes a watcher
# thread (threading.Event), which needs the GIL to take a single step.  The watcher records the
# kernel it finds running, and completes one small fastxent call of its own while that same
# call is still running.  A kernel that holds the GIL can therefore never be seen, however
# often it runs (the GIL-holding control, sorted() in place of the kernel, must be seen 0
# times); one that releases it is seen as soon as the OS runs the watcher during one call:
# each public entry point is called up to 300 times (or 20 s) until that happens (at most 3
# calls were needed in 20 runs with both cores busy), so load can only delay a pass.
GIL_PROBE = r"""
import json, sys, threading, time
import numpy as np
import fastxent
from fastxent import _core

sys.setswitchinterval(1000.0)
MAIN = threading.get_ident()
KERNELS = ["check_targets", "lse", "lse_b", "softmax", "xent", "xent_sum", "xent_ex", "sum_losses",
           "token_stats"]
state = {"inside": None, "call": 0, "seen": {}, "during": {}, "stop": False}
wake = threading.Event()
small = np.linspace(-3.0, 3.0, 8 * 64, dtype=np.float32).reshape(8, 64)
small_lse = fastxent.logsumexp(small, axis=-1, n_threads=1)


def watcher():
    while True:
        wake.wait()                      # blocks without the GIL
        wake.clear()
        if state["stop"]:
            return
        name, call = state["inside"], state["call"]
        if name is None:                 # woken outside a kernel (the GIL was released elsewhere)
            continue
        state["seen"][name] = state["seen"].get(name, 0) + 1
        got = fastxent.logsumexp(small, axis=-1, n_threads=1)
        if state["inside"] == name and state["call"] == call and np.array_equal(got, small_lse):
            state["during"][name] = state["during"].get(name, 0) + 1


def instrument(name, fn):
    def kernel(*args, **kwargs):
        if threading.get_ident() != MAIN:          # the watcher's own calls: the real kernels
            return real[name](*args, **kwargs)
        state["call"] += 1
        state["inside"] = name
        wake.set()                       # the watcher is runnable now, but needs the GIL to go on
        try:
            return fn(*args, **kwargs)
        finally:
            state["inside"] = None
    return kernel


real = {k: getattr(_core, k) for k in KERNELS}
for k in KERNELS:
    setattr(_core, k, instrument(k, real[k]))

rng = np.random.default_rng(0)
x = (rng.standard_normal((256, 32768)) * 3).astype(np.float32)   # ~10-30 ms per call, 1 thread
t = rng.integers(0, x.shape[1], x.shape[0])
b = rng.uniform(-1.0, 2.0, x.shape[1]).astype(np.float32)
w = rng.uniform(0.5, 2.0, x.shape[1]).astype(np.float32)
x2 = (rng.standard_normal((1 << 19, 2)) * 3).astype(np.float32)  # many positions, 2 classes
t2 = rng.integers(0, 2, x2.shape[0])
ref64 = x.astype(np.float64)[:64]
ev = fastxent.Evaluator(keep_per_token=False, n_threads=1)
one = dict(n_threads=1)
ENTRIES = {  # public call -> the kernel it must be seen inside
    "logsumexp": ("lse", lambda: fastxent.logsumexp(x, axis=-1, **one)),
    "logsumexp_b_sign": ("lse_b", lambda: fastxent.logsumexp(x[:32], axis=-1, b=b, return_sign=True, **one)),
    "softmax": ("softmax", lambda: fastxent.softmax(x, axis=-1, **one)),
    "log_softmax": ("softmax", lambda: fastxent.log_softmax(x, axis=-1, **one)),
    "cross_entropy_none": ("xent", lambda: fastxent.cross_entropy(x, t, reduction="none", **one)),
    "cross_entropy_mean": ("xent_sum", lambda: fastxent.cross_entropy(x, t, **one)),
    "cross_entropy_options_grad": ("xent_ex", lambda: fastxent.cross_entropy(
        x, t, weight=w, label_smoothing=0.1, z_loss=1e-4, softcap=30.0, return_grad=True, **one)),
    "cross_entropy_targets_check": ("check_targets", lambda: fastxent.cross_entropy(x2, t2, **one)),
    "cross_entropy_sum_of_losses": ("sum_losses", lambda: fastxent.cross_entropy(
        x2, t2, label_smoothing=0.1, reduction="sum", **one)),
    "perplexity": ("xent_sum", lambda: fastxent.perplexity(x, t, **one)),
    "token_stats": ("token_stats", lambda: fastxent.token_stats(x, t, ref_logits=x[::-1], **one)),
    "token_stats_pair_widened": ("token_stats", lambda: fastxent.token_stats(
        x[:64], t[:64], ref_logits=ref64, **one)),
    "kl_divergence": ("token_stats", lambda: fastxent.kl_divergence(x, x[::-1], **one)),
    "Evaluator.update": ("token_stats", lambda: ev.update(x, t, ref_logits=x[::-1])),
}
assert {k for k, _ in ENTRIES.values()} == set(KERNELS), "every kernel has a public entry point here"
big = [int(v) for v in np.random.default_rng(1).permutation(100_000)]
CONTROLS = {  # stand-ins for _core.lse under fastxent.logsumexp
    "control_holds_gil": lambda *a: sorted(big),        # C code that keeps the GIL, ~30 ms
    "control_releases_gil": lambda *a: time.sleep(0.02),
}
th = threading.Thread(target=watcher, daemon=True)
th.start()
report = {}
if MODE == "kernels":
    todo = [(name, kern, f) for name, (kern, f) in ENTRIES.items()]
else:
    todo = []
    for name, stand_in in CONTROLS.items():
        def f(stand_in=stand_in):
            setattr(_core, "lse", instrument("lse", stand_in))
            try:
                fastxent.logsumexp(x, axis=-1, **one)
            finally:
                setattr(_core, "lse", instrument("lse", real["lse"]))
        todo.append((name, "lse", f))
for name, kern, f in todo:
    state["seen"].clear()
    state["during"].clear()
    t0, n = time.monotonic(), 0
    limit = 10 if name == "control_holds_gil" else 300
    while n < limit and time.monotonic() - t0 < 20 and not state["during"].get(kern):
        f()
        n += 1
    report[name] = dict(kernel=kern, calls=n, seen=dict(state["seen"]), during=dict(state["during"]),
                        seconds=round(time.monotonic() - t0, 3))
state["stop"] = True
wake.set()
th.join(30)
print(json.dumps(report))
"""


def _gil_enabled():
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def _gil_probe(mode):
    rc, out, err = _run_python(f"MODE = {mode!r}\n" + GIL_PROBE, timeout=600)
    assert rc == 0, f"GIL probe ({mode}) failed (rc {rc}):\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not _gil_enabled(), reason="free-threaded Python: there is no GIL to release")
def test_gil_probe_tells_holding_from_releasing():
    """The probe itself: a stand-in kernel that holds the GIL (sorting a list in C) is never seen
    by the watcher, one that releases it (time.sleep) is, through fastxent.logsumexp."""
    r = _gil_probe("controls")
    held, freed = r["control_holds_gil"], r["control_releases_gil"]
    assert held["calls"] == 10 and held["seen"] == {} and held["during"] == {}, held
    assert freed["during"].get("lse", 0) >= 1, freed


@pytest.mark.skipif(not _gil_enabled(), reason="free-threaded Python: there is no GIL to release")
def test_gil_is_released_during_kernels():
    """Another Python thread runs, and completes a fastxent call of its own, while each public
    entry point is inside its kernel (see GIL_PROBE above: no timing, no ratio)."""
    r = _gil_probe("kernels")
    held = {name: v for name, v in r.items() if not v["during"].get(v["kernel"])}
    assert not held, f"never saw another thread run inside the kernel (the GIL seems held): {held}"


# --------------------------------------------------------------------------- fork
FORK_SCRIPT = """
import multiprocessing as mp, sys, numpy as np, fastxent
x = np.random.default_rng(0).standard_normal((256, 3000)).astype(np.float32)
t = np.arange(256) % 3000
want = fastxent.logsumexp(x, axis=-1, n_threads=2)          # the parent's OpenMP pool now exists
want_ce = fastxent.cross_entropy(x, t, return_grad=True, n_threads=2)
def child(q):
    lse = fastxent.logsumexp(x, axis=-1, n_threads={nt})
    ce = fastxent.cross_entropy(x, t, return_grad=True, n_threads={nt})
    q.put(bool(np.array_equal(lse, want) and np.array_equal(ce[0], want_ce[0]) and np.array_equal(ce[1], want_ce[1])))
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join({timeout})
if p.is_alive():
    p.kill(); p.join()
    print("HANG"); sys.exit(3)
print("OK" if p.exitcode == 0 and q.get(timeout=5) else "WRONG", p.exitcode)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forked_child_can_call_fastxent_single_thread():
    rc, out, err = _run_python(FORK_SCRIPT.format(nt="1", timeout=20), timeout=60)
    assert rc == 0 and out.startswith("OK"), f"rc={rc} out={out!r} err={err[-2000:]!r}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forked_child_can_call_fastxent_with_default_threads():
    rc, out, err = _run_python(FORK_SCRIPT.format(nt="None", timeout=6), timeout=60)
    assert rc == 0 and out.startswith("OK"), f"rc={rc} out={out!r} err={err[-2000:]!r}"


# --------------------------------------------------------------------------- argument extremes


# --------------------------------------------------------------------------- 64-bit indexing
def _mem_available_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _zero_pages_ok():
    if not LINUX or sys.maxsize < 2**62:
        return False
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() != "2"
    except OSError:
        return False


needs_zero_pages = pytest.mark.skipif(
    not _zero_pages_ok(), reason="needs 64-bit Linux with memory overcommit (untouched calloc pages cost nothing)")


def _lse_closed(n_zero, specials):
    """log(n_zero * e^0 + sum e^v) in double."""
    return math.log(n_zero + sum(math.exp(v) for v in specials))


@needs_zero_pages
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_row_of_more_than_2_31_elements(dtype):
    n = 2**31 + 17
    x = np.zeros((1, n), dtype)  # 8 GiB (float32) of zero pages: no real memory
    hi = 2**31 + 3
    x[0, 0], x[0, hi], x[0, n - 1] = 1.0, -2.0, 5.0
    lse = _lse_closed(n - 3, [1.0, -2.0, 5.0])
    tol = 2e-6 * abs(lse)
    got = fastxent.logsumexp(x, axis=-1)
    assert got.shape == (1,) and abs(float(got[0]) - lse) <= tol, (got, lse)
    ce = fastxent.cross_entropy(x, np.array([hi]), reduction="none")
    assert abs(float(ce[0]) - (lse + 2.0)) <= tol, (ce, lse + 2.0)
    if dtype == np.float32:
        # the options kernel: label smoothing (every class term) and z-loss; target at the end
        eps, z = 0.1, 1e-3
        mean_x = (1.0 - 2.0 + 5.0) / n
        want = (1 - eps) * (lse - 5.0) + eps * (lse - mean_x) + z * lse**2
        got = fastxent.cross_entropy(x, np.array([n - 1]), label_smoothing=eps, z_loss=z, reduction="sum")
        assert abs(float(got) - want) <= 2e-6 * abs(want), (got, want)


@needs_zero_pages
def test_row_offsets_beyond_2_31_elements_two_levels_and_negative_strides():
    """(3, 2**20 + 1, 1024) float16 viewed as [:, :-1] (outer stride 2**30 + 1024 elements, so row
    (2, j) starts beyond element 2**31) and reversed ([::-1, ::-1]: negative strides of that size)."""
    n_mid, v = 2**20 + 1, 1024
    base = np.zeros((3, n_mid, v), np.float16)  # 6 GiB of zero pages
    sentinels = {(2, n_mid - 2, 7): 4.0, (1, 5, 1000): 3.0, (0, 0, 0): -1.0, (2, 0, 1023): 2.0}
    for pos, val in sentinels.items():
        base[pos] = val
    view = base[:, :-1, :]
    assert view.strides[0] // view.itemsize == n_mid * v
    want = np.full(view.shape[:2], math.log(v))
    for (o, i, c), val in sentinels.items():
        want[o, i] = _lse_closed(v - 1, [val])
    got = fastxent.logsumexp(view, axis=-1)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)

    rev = view[::-1, ::-1]
    assert rev.strides[0] < 0 and rev.strides[1] < 0
    target = np.zeros(rev.shape[:2], np.int64)
    expect = want[::-1, ::-1] - 0.0  # loss = lse - x[t] with x[t] = 0 ...
    for (o, i, c), val in sentinels.items():  # ... except where the target is the sentinel
        ro, ri = 2 - o, (n_mid - 2) - i
        target[ro, ri] = c
        expect[ro, ri] = want[o, i] - val
    got = fastxent.cross_entropy(rev, target, reduction="none")
    np.testing.assert_allclose(got, expect, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32])
def test_broadcast_rows_of_stride_zero_more_than_2_31_elements(dtype):
    """2**21 + 1 rows of 1024 classes (more than 2**31 elements) that are all the same row in memory."""
    rows, v, c = 2**21 + 1, 1024, 1.5
    row = np.full(v, c, dtype)
    row[7] = c + 2.0
    x = np.broadcast_to(row, (rows, v))
    assert x.strides == (0, x.itemsize)
    lse = c + math.log(v - 1 + math.exp(2.0))
    got = fastxent.logsumexp(x, axis=-1)
    assert got.shape == (rows,) and np.all(np.abs(got - lse) <= 4e-7 * lse), got[np.abs(got - lse) > 4e-7 * lse][:5]
    t = np.arange(rows) % v
    t[-1] = -100
    want_mean = lse - float(np.mean(row.astype(np.float64)[t[:-1]]))
    got = fastxent.cross_entropy(x, t)
    assert abs(float(got) - want_mean) <= 1e-6 * want_mean, (got, want_mean)
    ppl = fastxent.perplexity(x, t)
    assert abs(float(ppl) - math.exp(want_mean)) <= 2e-6 * math.exp(want_mean)


@needs_zero_pages
@pytest.mark.skipif(_mem_available_gib() < 8, reason="needs 8 GiB of free memory (writes 2 x 2 GiB)")
def test_row_longer_than_2_31_bytes_softmax_and_gradient():
    """A float64 row of 2**28 + 5 elements (2 GiB + 40 bytes): softmax and the in-place gradient
    written past byte 2**31 land on the right elements."""
    n = 2**28 + 5
    x = np.zeros((1, n))
    x[0, -1], x[0, 2**28] = 3.0, 1.0
    s = (n - 2) + math.exp(3.0) + math.e
    sm = fastxent.softmax(x, axis=-1)
    assert sm.shape == x.shape
    for j, val in [(0, 0.0), (2**28 - 1, 0.0), (2**28, 1.0), (n - 2, 0.0), (n - 1, 3.0)]:
        assert abs(sm[0, j] - math.exp(val) / s) <= 1e-13 * math.exp(val) / s, (j, sm[0, j])
    del sm
    t = np.array([n - 1])
    loss, g = fastxent.cross_entropy(x, t, reduction="sum", return_grad=True, grad_out=x)
    assert g is x
    assert abs(float(loss) - (math.log(s) - 3.0)) <= 1e-12 * math.log(s)
    for j, val in [(0, 0.0), (2**28, 1.0), (n - 2, 0.0)]:
        assert abs(x[0, j] - math.exp(val) / s) <= 1e-13 * math.exp(val) / s, (j, x[0, j])
    assert abs(x[0, n - 1] - (math.exp(3.0) / s - 1.0)) <= 1e-13


@needs_zero_pages
@pytest.mark.skipif(not HUGE, reason="very large (writes 8 GiB, ~20-30 s): run with FASTXENT_TEST_HUGE=1")
@pytest.mark.skipif(_mem_available_gib() < 14, reason="very large: writes an 8 GiB gradient, needs 14 GiB free")
def test_gradient_with_more_than_2_31_elements_written_in_place():
    """The in-place gradient of (2**21 + 1, 1024) float32 logits: element offsets beyond 2**31 are
    written to the right places (p - onehot = 1/1024 - [c == t] for zero logits, "sum")."""
    rows, v = 2**21 + 1, 1024
    x = np.zeros((rows, v), np.float32)
    t = (np.arange(rows) * 7) % v
    t[rows // 3] = -100
    x[-1, 5] = 2.0
    loss, g = fastxent.cross_entropy(x, t, reduction="sum", return_grad=True, grad_out=x)
    assert g is x
    p = np.float32(1.0 / v)
    for r in [0, 1, rows // 2, 2**21 - 1, 2**21 - 2]:
        want = np.full(v, p, np.float32)
        want[t[r]] -= 1
        np.testing.assert_allclose(x[r], want, rtol=1e-6, atol=1e-9, err_msg=f"row {r}")
    assert not np.any(x[rows // 3]), "ignored row must have a zero gradient"
    s = v - 1 + math.exp(2.0)
    want = np.full(v, 1 / s)
    want[5] = math.exp(2.0) / s
    want[t[-1]] -= 1
    np.testing.assert_allclose(x[-1], want, rtol=2e-6, atol=1e-9)
    n_counted = rows - 1
    want_loss = (n_counted - 1) * math.log(v) + (math.log(s) - (2.0 if t[-1] == 5 else 0.0))
    assert abs(float(loss) - want_loss) <= 1e-6 * want_loss


# --------------------------------------------------------------------------- targets: checked, never read unchecked
@pytest.mark.parametrize("isa", fastxent.available_isas())
def test_check_targets_runs(isa):
    """The target check works in runs of 4096 (vectorised per ISA): the first bad
    position and the count of counted targets before it, in any run, against Python."""
    from fastxent import _core
    rng = np.random.default_rng(7)
    t = rng.integers(0, 50, 10_000)
    t[rng.random(t.size) < 0.2] = -100
    fastxent.set_isa(isa)
    try:
        assert _core.check_targets(t, 50, -100) == (-1, int(np.sum(t != -100)))
        for pos, value in [(0, 50), (4095, -1), (4096, 10**12), (9999, -101), (6000, -(2**63))]:
            bad = t.copy()
            bad[pos] = value
            bad[pos + 1:pos + 50] = 77  # later bad values do not matter
            assert _core.check_targets(bad, 50, -100) == (pos, int(np.sum(bad[:pos] != -100)))
        # ignore_index outside the class range, and a huge one
        assert _core.check_targets(np.full(5000, 2**62), 50, 2**62) == (-1, 0)
    finally:
        fastxent.set_isa(None)


@pytest.mark.parametrize("shape", [(1003, 10), (5, 3000)], ids=str)
def test_kernels_never_read_an_unchecked_target(isa, shape):
    """The plain loss kernels (per row and summed) are only given checked targets, yet a
    target outside [0, n_cols) is never read: its loss is NaN (reading it would give a
    number, or an out-of-bounds read for the last row); the other rows are untouched."""
    from fastxent import _core
    from fastxent._arrays import as_rows
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(np.float32)
    n = shape[1]
    t = rng.integers(0, n, shape[0])
    t[1] = -100
    good = fastxent.cross_entropy(x, t, reduction="none").astype(np.float64)
    bad = t.copy()
    bad[[0, 2, 3, -1]] = [n, -5, 2**40 + 3, n + 1]  # 2**40 + 3: its low 32 bits name a class
    base, layout, _, _ = as_rows(x, (1,))
    loss = np.empty(shape[0])
    fastxent.set_isa(isa)
    try:
        _core.xent(base, layout, bad, -100, loss, 1)
        total = _core.xent_sum(base, layout, bad, -100, 1)
    finally:
        fastxent.set_isa(None)
    assert np.isnan(loss[[0, 2, 3, -1]]).all()
    assert loss[1] == 0.0
    np.testing.assert_allclose(loss[4:-1], good[4:-1], rtol=1e-6)
    assert np.isnan(total)


# --------------------------------------------------------------------------- guard pages
def guarded_array(shape, dtype, where="end"):
    """A fresh array whose bytes end at (where="end") or start at (where="start") a PROT_NONE page."""
    import ctypes
    import mmap

    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    page = mmap.PAGESIZE
    span = max(page, -(-nbytes // page) * page)
    m = mmap.mmap(-1, span + 2 * page)
    raw = np.frombuffer(m, np.uint8)
    addr = raw.ctypes.data
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for a in (addr, addr + page + span):
        if libc.mprotect(ctypes.c_void_p(a), page, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    off = page + (span - nbytes if where == "end" else 0)
    return raw[off:off + nbytes].view(dtype).reshape(shape)


def guard_main():
    """Every function on inputs against guard pages, every ISA; prints each case before running it."""
    ml = _ml_dtypes()
    dtypes = [np.float32, np.float64, np.float16] + ([ml.bfloat16] if ml else [])
    from fastxent import _core
    b, pb = _core.BLOCK, _core.PAIR_BLOCK  # block edges of the row kernels and of token_stats
    cols = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 255, 257, 1000,
            pb - 1, pb, pb + 1, 2 * pb + 1, b - 1, b, b + 1, 2 * b + 1, 9000]
    cols = sorted(set(cols))
    rng = np.random.default_rng(0)
    n_cases = 0
    for isa in fastxent.available_isas():
        fastxent.set_isa(isa)
        for dt in dtypes:
            rdt = np.float64 if dt == np.float64 else np.float32
            for v in cols:
                for rows in ([1, 3, 9, 17, 40] if v < 2048 else [1, 2, 5]):
                    vals = (rng.standard_normal((rows, v)) * 3).astype(dt)
                    t = rng.integers(0, v, rows)
                    for where in ("end", "start"):
                        x = guarded_array((rows, v), dt, where)
                        x[...] = vals
                        if where == "start":
                            x = x[::-1]  # negative row stride: reading before row 0 hits the guard
                        tt = t[::-1] if where == "start" else t
                        case = f"isa={isa} dtype={np.dtype(dt).name} shape={(rows, v)} {where}"
                        print(case, flush=True)
                        fastxent.logsumexp(x, axis=-1, n_threads=2)
                        fastxent.softmax(x, axis=-1, n_threads=2)
                        fastxent.log_softmax(x, axis=-1, n_threads=2)
                        fastxent.cross_entropy(x, tt, reduction="none", n_threads=2)
                        fastxent.perplexity(x, tt, n_threads=2)
                        g = guarded_array((rows, v), rdt, where)
                        if where == "start":
                            g = g[::-1]
                        fastxent.cross_entropy(x, tt, label_smoothing=0.1, z_loss=1e-4, softcap=20.0,
                                               weight=np.ones(v), return_grad=True, grad_out=g, n_threads=2)
                        if dt in (np.float32, np.float64):
                            fastxent.cross_entropy(x, tt, return_grad=True, grad_out=x.copy() if where == "end" else None,
                                                   n_threads=2)
                            xin = x.copy()  # in place over a guarded array
                            xg = guarded_array((rows, v), dt, where)
                            xg[...] = xin
                            fastxent.cross_entropy(xg, tt, return_grad=True, grad_out=xg, n_threads=2)
                            prob = guarded_array((rows, v), dt, where)
                            prob[...] = 1.0 / v
                            fastxent.cross_entropy(x, prob, return_grad=True, n_threads=2)
                            if dt == np.float64:
                                b = guarded_array((rows, v), np.float64, where)
                                b[...] = 0.5
                                fastxent.logsumexp(x, axis=-1, b=b, return_sign=True, n_threads=2)
                        n_cases += 1
    print(f"DONE {n_cases}", flush=True)


@pytest.mark.skipif(not LINUX, reason="mprotect guard pages: Linux only")
def test_no_read_or_write_outside_the_arrays_guard_pages():
    rc, out, err = _run_python("import test_hardening as h; h.guard_main()", timeout=600)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    assert rc == 0 and last.startswith("DONE"), (
        f"crashed (rc={rc}, signal {-rc if rc and rc < 0 else None}) in case: {last!r}\n{err[-3000:]}")


# --------------------------------------------------------------------------- unaligned and byte-swapped inputs
def _unaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)[1:]
    u = buf.view(a.dtype).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_unaligned_contiguous_input(dtype):
    """Found by fuzz/fuzz_fastxent.py: an unaligned C-contiguous array raised TypeError
    "'NoneType' object is not subscriptable" in every function (np.ascontiguousarray keeps it
    unaligned).  README: unaligned data gives the same answer through one copy."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7)).astype(dtype)
    t = np.array([0, 6, 3])
    u = _unaligned(x)
    np.testing.assert_array_equal(fastxent.logsumexp(u, axis=-1), fastxent.logsumexp(x, axis=-1))
    np.testing.assert_array_equal(fastxent.softmax(u, axis=-1), fastxent.softmax(x, axis=-1))
    np.testing.assert_array_equal(fastxent.log_softmax(u), fastxent.log_softmax(x))
    np.testing.assert_array_equal(fastxent.cross_entropy(u, t), fastxent.cross_entropy(x, t))
    np.testing.assert_array_equal(fastxent.perplexity(u, t), fastxent.perplexity(x, t))
    a = fastxent.cross_entropy(u, t, label_smoothing=0.1, return_grad=True)
    b = fastxent.cross_entropy(x, t, label_smoothing=0.1, return_grad=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_byteswapped_uint64_target():
    t = np.array([0, 2**64 - 100], dtype=">u8")
    with pytest.raises(IndexError, match="18446744073709551516"):
        fastxent.cross_entropy(np.zeros((2, 3)), t, reduction="none")


UNALIGNED_CALLS = """
import numpy as np, fastxent
def unaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)[1:]
    u = buf.view(a.dtype).reshape(a.shape)
    u[...] = a
    return u
rng = np.random.default_rng(0)
x = rng.standard_normal((5, 4)); t = np.array([0, 1, 2, 3, 0]); w = np.ones(4)
b = rng.random((5, 4))
checks = [
    (fastxent.cross_entropy(x, unaligned(t)), fastxent.cross_entropy(x, t)),
    (fastxent.cross_entropy(x, unaligned(t), label_smoothing=0.1), fastxent.cross_entropy(x, t, label_smoothing=0.1)),
    (fastxent.perplexity(x, unaligned(t)), fastxent.perplexity(x, t)),
    (fastxent.cross_entropy(x, t, weight=unaligned(w)), fastxent.cross_entropy(x, t, weight=w)),
    (fastxent.logsumexp(x, axis=-1, b=unaligned(b)), fastxent.logsumexp(x, axis=-1, b=b)),
    (fastxent.token_stats(x, unaligned(t)).nll, fastxent.token_stats(x, t).nll),
]
for i, (got, want) in enumerate(checks):
    assert np.array_equal(got, want), i
print("OK")
"""


def test_unaligned_targets_weights_and_b_are_copied_before_c(tmp_path):
    """Only meaningful in the sanitizer build (tools/run_sanitized_tests.sh); elsewhere the results
    are checked against aligned copies."""
    # UBSan (GCC) reports go to stderr whatever log_path says; keep going to list them all
    env = {"UBSAN_OPTIONS": "halt_on_error=0:print_stacktrace=0",
           "ASAN_OPTIONS": f"detect_leaks=0:log_path={tmp_path}/asan"}
    rc, out, err = _run_python(UNALIGNED_CALLS, timeout=120, env=env)
    reports = sorted({line.split(": runtime error:")[0] + ": " + line.split("runtime error: ")[1][:60]
                      for line in err.splitlines() if ": runtime error:" in line})
    assert rc == 0 and out.strip() == "OK", f"rc={rc} out={out!r} err={err[-2000:]!r}"
    assert not reports and not list(tmp_path.iterdir()), "sanitizer reports:\n" + "\n".join(reports)


