"""Benchmark behind ``python -m fastxent bench``: fastxent beside its peers.

The peers are what a user would otherwise write or call: plain stable NumPy in
the input dtype (below; float32 after ``astype`` for 16-bit input, which NumPy
cannot compute in), ``scipy.special.logsumexp`` and PyTorch's
``F.cross_entropy`` / ``torch.logsumexp`` / ``loss.backward()`` on
``torch.from_numpy`` views.  SciPy, PyTorch and ml_dtypes (bfloat16) are
optional; each joins the table only when it imports.

All implementations of one case are timed interleaved (one call of each per
round, round-robin) and the median of the rounds is reported, so that a noisy
shared machine slows all of them alike; the first round's results are checked
against NumPy's.  The
"speed" column is NumPy time / that implementation's time, as bottleneck's
``bn.bench()`` prints it.  "%bw" is the logits read rate as a fraction of the
machine's memory read bandwidth, measured in the same run by a plain C sum
(`fastxent._core.read_probe`) with the same number of threads.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

import fastxent
from fastxent import _core

OPS = ("cross_entropy", "logsumexp")
GRAD_OP = "xent_grad"   # cross-entropy (mean) forward and gradient w.r.t. the logits


@dataclass(frozen=True)
class Plan:
    """What one run times; `roles` name the cases that the summary ratios compare."""
    cases: tuple             # (shape, dtype name) pairs, each timed for every op in OPS
    grad_case: tuple         # (shape, dtype) also timed for GRAD_OP, and for peak memory
    probe_mib: int           # size of the float32 array of the bandwidth probe
    large_vocab: tuple       # shapes of the large-vocabulary float32 targets
    small_classes: tuple     # shape of the many-rows / few-classes target
    dtype_case: tuple        # shape where float32 / float16 / bfloat16 rates are compared
    threads_case: tuple      # shape where all threads are compared with one
    targets: bool = True     # judge the ratios against the targets (stated for FULL's shapes)


FULL = Plan(
    cases=(((2048, 32000), "float32"), ((512, 128256), "float32"), ((512, 128256), "float16"),
           ((512, 128256), "bfloat16"), ((512, 128256), "float64"), ((65536, 1000), "float32"),
           ((1000000, 10), "float32")),
    grad_case=((2048, 32000), "float32"), probe_mib=512,
    large_vocab=((2048, 32000), (512, 128256)), small_classes=(1000000, 10),
    dtype_case=(512, 128256), threads_case=(512, 128256))
QUICK = Plan(
    cases=(((256, 32000), "float32"), ((64, 32000), "float32"), ((64, 32000), "float16"),
           ((64, 32000), "bfloat16"), ((64, 32000), "float64"), ((100000, 10), "float32")),
    grad_case=((256, 32000), "float32"), probe_mib=256,
    large_vocab=((256, 32000),), small_classes=(100000, 10),
    dtype_case=(64, 32000), threads_case=(256, 32000), targets=False)
# Kept for callers of the previous interface.
CASES, QUICK_CASES = list(FULL.cases), list(QUICK.cases)

# Agreement with the NumPy implementation that the warm-up results must meet
# (normwise relative); 16-bit inputs are computed in float32 by fastxent and NumPy.
RTOL = {"float32": 1e-5, "float64": 1e-12, "float16": 1e-5, "bfloat16": 1e-5}
# PyTorch computes 16-bit input partly in that dtype and returns it (the mean loss of
# bfloat16 logits lands ~1 ulp from the exact value): allow two ulps (2 eps).
RTOL_16BIT_OUT = {"float16": 2.0 ** -9, "bfloat16": 2.0 ** -6}
# PyTorch's float32 softmax gradient is ~100 ulp off in places (1.3e-5 normwise from the
# float64 reference on the (2048, 32000) case, against 6e-8 for fastxent).
RTOL_TORCH_GRAD_F32 = 4e-5
FOOTNOTES = (
    "16-bit input: NumPy has no float16/bfloat16 maths worth timing, so the NumPy column "
    "is x.astype(float32) (timed) followed by the float32 code; fastxent reads the 16-bit "
    "data directly and computes in float32; PyTorch computes in the input dtype.",
    "%bw: GB/s of logits read / the memory read bandwidth measured above with the same "
    "number of threads (NumPy and SciPy are single-threaded).",
    "SciPy is timed for logsumexp on float32 only, to keep the run short.",
)


# --- dtypes --------------------------------------------------------------------

def dtype_of(name: str) -> Optional[np.dtype]:
    """The NumPy dtype called `name`; bfloat16 from ml_dtypes, None when it is missing."""
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            return None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _is_16bit(x) -> bool:
    return x.dtype.itemsize == 2


def make_data(shape, dtype, seed=0, _cache=None):
    """Logits ~ 3 * N(0, 1) drawn in float32 and converted to `dtype`, and uniform integer
    targets (int64).  `_cache` (a dict) lets a run reuse the float32 draw of the last size."""
    dt = dtype_of(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    if dt is None:
        raise ImportError(f"dtype {dtype} needs the ml_dtypes package")
    size = int(np.prod(shape))
    key = (size, seed)
    if _cache is not None and key in _cache:
        base = _cache[key]
    else:
        rng = np.random.default_rng(seed)
        base = rng.standard_normal(size, dtype=np.float32)
        base *= np.float32(3)
        if _cache is not None:
            _cache.clear()
            _cache[key] = base
    x = base.reshape(shape)       # float32: the draw itself (no implementation writes to it)
    x = x if dt == np.float32 else x.astype(dt)
    rng = np.random.default_rng([seed, 1])
    target = rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)
    return x, target


# --- NumPy peers: what a user would write, in the input dtype -----------------

def _numpy_input(x):
    """NumPy computes 16-bit logits in float32 (a copy); float32/float64 as they are."""
    return x.astype(np.float32) if _is_16bit(x) else x


def numpy_logsumexp(x):
    """Stable log-sum-exp over the last axis: max-shift, exp, sum, log."""
    x = _numpy_input(x)
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def numpy_cross_entropy(x, target):
    """Mean cross-entropy: log-sum-exp minus the target logit, averaged."""
    x = _numpy_input(x)
    picked = np.take_along_axis(x, target[..., None], axis=-1)[..., 0]
    return (numpy_logsumexp(x) - picked).mean()


def numpy_cross_entropy_grad(x, target):
    """Mean cross-entropy and its gradient (softmax - onehot) / rows, in the input dtype."""
    x = _numpy_input(x)
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(x, target[..., None], axis=-1)[..., 0]
    loss = (np.log(s[..., 0]) + m[..., 0] - picked).mean()
    n = target.size
    e /= s
    grad = e.reshape(n, x.shape[-1])
    grad[np.arange(n), target.reshape(n)] -= 1
    grad *= x.dtype.type(1.0 / n)
    return loss, e


def scipy_logsumexp(x):
    from scipy.special import logsumexp
    return logsumexp(_numpy_input(x), axis=-1)


def scipy_cross_entropy(x, target):
    from scipy.special import logsumexp
    x = _numpy_input(x)
    picked = np.take_along_axis(x, target[..., None], axis=-1)[..., 0]
    return (logsumexp(x, axis=-1) - picked).mean()


# --- PyTorch peers: zero-copy views of the same arrays ---------------------------

def _to_torch(x):
    import torch
    if x.dtype.name == "bfloat16":   # ml_dtypes: same bits, unknown to torch.from_numpy
        return torch.from_numpy(x.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def _from_torch(t):
    import torch
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def torch_logsumexp(x):
    import torch
    return _from_torch(torch.logsumexp(_to_torch(x), dim=-1))


def torch_cross_entropy(x, target):
    import torch
    import torch.nn.functional as F
    return _from_torch(F.cross_entropy(_to_torch(x), torch.from_numpy(target)))


def torch_cross_entropy_grad(x, target):
    """Forward and backward as in training: a leaf tensor with requires_grad, loss.backward()."""
    import torch
    import torch.nn.functional as F
    xt = _to_torch(x).requires_grad_(True)
    loss = F.cross_entropy(xt, torch.from_numpy(target))
    loss.backward()
    return _from_torch(loss), _from_torch(xt.grad)


# --- The implementations compared ---------------------------------------------

@dataclass
class Impl:
    """One implementation; an op it does not provide is None. `threads` wraps its calls untimed."""
    key: str
    label: str
    n_threads: int            # threads it uses (the bandwidth it is compared with)
    logsumexp: Optional[Callable] = None
    cross_entropy: Optional[Callable] = None
    xent_grad: Optional[Callable] = None   # (x, target) -> (loss, grad or None)
    threads: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def op(self, name: str) -> Optional[Callable]:
        return getattr(self, name)


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _expect_fastxent_threads(n: int):
    # torch.set_num_threads sets the OpenMP default that fastxent shares when both
    # load the same libgomp.  fastxent is always called with an explicit n_threads,
    # but make sure a torch context did not leak into the next implementation.
    got = fastxent.get_num_threads()
    if got != n:
        raise RuntimeError(f"fastxent would use {got} threads, not {n}: "
                           "a thread setting leaked from another implementation")
    yield


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


IMPL_KEYS = ("fastxent-1", "fastxent-all", "fastxent-fwd-1", "fastxent-fwd-all", "numpy", "scipy",
             "torch-1", "torch-all")


def _fastxent(key, n, label, check, fwd_only=False):
    def grad(x, t):
        if fwd_only:
            return fastxent.cross_entropy(x, t, n_threads=n), None
        return fastxent.cross_entropy(x, t, return_grad=True, n_threads=n)
    if fwd_only:
        return Impl(key, label, n, xent_grad=grad, threads=check)
    return Impl(key, label, n,
                lambda x: fastxent.logsumexp(x, axis=-1, n_threads=n),
                lambda x, t: fastxent.cross_entropy(x, t, n_threads=n),
                grad, check)


def get_impl(key: str, n_all: Optional[int] = None) -> Impl:
    """The implementation named `key` (one of `IMPL_KEYS`); peers import lazily.

    "-all" uses `n_all` threads (default ``fastxent.get_num_threads()``), always
    passed explicitly: torch and fastxent may share one OpenMP runtime.
    """
    n_all = fastxent.get_num_threads() if n_all is None else n_all
    check = lambda: _expect_fastxent_threads(n_all)  # noqa: E731
    if key == "fastxent-1":
        return _fastxent(key, 1, "fastxent 1 thr", check)
    if key == "fastxent-all":
        return _fastxent(key, n_all, f"fastxent {n_all} thr", check)
    if key == "fastxent-fwd-1":
        return _fastxent(key, 1, "fastxent 1 thr fwd only", check, fwd_only=True)
    if key == "fastxent-fwd-all":
        return _fastxent(key, n_all, f"fastxent {n_all} thr fwd only", check, fwd_only=True)
    if key == "numpy":
        return Impl(key, "numpy", 1, numpy_logsumexp, numpy_cross_entropy, numpy_cross_entropy_grad)
    if key == "scipy":
        return Impl(key, "scipy", 1, scipy_logsumexp, scipy_cross_entropy)
    if key == "torch-1":
        return Impl(key, "torch 1 thr", 1, torch_logsumexp, torch_cross_entropy,
                    torch_cross_entropy_grad, lambda: _torch_threads(1))
    if key == "torch-all":
        return Impl(key, f"torch {n_all} thr", n_all, torch_logsumexp, torch_cross_entropy,
                    torch_cross_entropy_grad, lambda: _torch_threads(n_all))
    raise ValueError(f"`key` must be one of {IMPL_KEYS}, got {key!r}")


def impl_keys(op: str) -> list:
    """Keys of the implementations that provide `op` (whether or not their module imports)."""
    probe = {k: get_impl(k, 1) for k in IMPL_KEYS}
    return [k for k in IMPL_KEYS if probe[k].op(op) is not None]


def available_impls(n_all: Optional[int] = None) -> list:
    """fastxent and NumPy always; SciPy and PyTorch when they import."""
    keys = ["fastxent-1", "fastxent-all", "fastxent-fwd-1", "fastxent-fwd-all", "numpy"]
    if _have("scipy.special"):
        keys.append("scipy")
    if _have("torch"):
        keys += ["torch-1", "torch-all"]
    return [get_impl(k, n_all) for k in keys]


def impls_for(op: str, dtype: str, impls) -> list:
    """The implementations timed for `op` on `dtype` (SciPy: logsumexp on float32 only)."""
    out = []
    for im in impls:
        if im.op(op) is None:
            continue
        if im.key == "scipy" and (op != "logsumexp" or dtype != "float32"):
            continue
        out.append(im)
    return out


# --- Timing --------------------------------------------------------------------

def _call(impl: Impl, op: str, x, target):
    fn = impl.op(op)
    return fn(x) if op == "logsumexp" else fn(x, target)


def time_case(impls, op, x, target, repeat):
    """Median seconds per implementation over `repeat` interleaved rounds, and the results
    of the first round (which also serves as the warm-up: the median discards a slow first
    call, and the run stays short)."""
    results, times = {}, {im.key: [] for im in impls}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeat):
            for im in impls:
                with im.threads():
                    t0 = time.perf_counter()
                    res = _call(im, op, x, target)
                    times[im.key].append(time.perf_counter() - t0)
                if i == 0:
                    results[im.key] = res
                del res
    finally:
        if gc_was_enabled:
            gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}, results


def read_bandwidth(mib: int, threads, repeat: int = 5) -> dict:
    """Memory read bandwidth in GB/s (best and median of `repeat`) per thread count.

    Sums a `mib` MiB float32 array (far larger than the caches) with `_core.read_probe`,
    thread counts interleaved.
    """
    a = np.ones((mib << 20) // 4, dtype=np.float32)   # written once: pages mapped
    out = {}
    try:
        times = {n: [] for n in threads}
        for n in threads:
            _core.read_probe(a, n)                     # warm-up (and OpenMP thread start)
        for _ in range(repeat):
            for n in threads:
                t0 = time.perf_counter()
                _core.read_probe(a, n)
                times[n].append(time.perf_counter() - t0)
        for n, ts in times.items():
            out[n] = {"best_gb_per_s": a.nbytes / min(ts) / 1e9,
                      "median_gb_per_s": a.nbytes / statistics.median(ts) / 1e9}
    finally:
        del a
    return out


def peak_extra_memory(fn) -> int:
    """Peak bytes allocated during ``fn()`` as tracemalloc sees them (NumPy reports its
    buffers to tracemalloc; C-level malloc of the kernels and PyTorch's allocator do not)."""
    gc.collect()
    tracemalloc.start()
    try:
        res = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del res
    return peak


# --- Rows, checks and the table -------------------------------------------------

@dataclass
class Row:
    op: str
    shape: tuple
    dtype: str
    impl: str
    impl_key: str
    n_threads: int
    median_ms: float
    gb_per_s: float                 # logits bytes / time
    gelem_per_s: float              # logits elements / time (1e9)
    speed: Optional[float]          # NumPy time / this time (None for "fwd only" rows)
    pct_bw: Optional[float]         # gb_per_s / read bandwidth with n_threads, in %
    err_vs_numpy: float = field(default=0.0)  # max|got - numpy| / max|numpy|


def _rel_err(got, ref) -> float:
    """Normwise relative difference max|got - ref| / max|ref| (robust to ref near 0).

    Computed in float32 when both are float32 (or narrower): the difference of two
    float32 values is exact to within one rounding, and this avoids float64 copies
    of the gradients.
    """
    got, ref = np.asarray(got), np.asarray(ref)
    dt = np.float64 if np.float64 in (got.dtype, ref.dtype) else np.float32
    got, ref = got.astype(dt, copy=False), ref.astype(dt, copy=False)
    if got.shape != ref.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))),
                                                  np.finfo(np.float64).tiny))


def _err(op, got, ref) -> float:
    if op != GRAD_OP:
        return _rel_err(got, ref)
    err = _rel_err(got[0], ref[0])
    return err if got[1] is None else max(err, _rel_err(got[1], ref[1]))


def _tolerance(impl: Impl, op: str, dtype: str) -> float:
    if impl.key.startswith("torch"):
        if dtype in RTOL_16BIT_OUT:
            return RTOL_16BIT_OUT[dtype]
        if op == GRAD_OP and dtype == "float32":
            return RTOL_TORCH_GRAD_F32
    return RTOL[dtype]


_OP_LABEL = {"cross_entropy": "cross_entropy", "logsumexp": "logsumexp", GRAD_OP: "xent fwd+grad"}
_HEAD = (f"{'op':<14} {'shape':<14} {'dtype':<9} {'impl':<24} {'ms':>9} {'GB/s':>6} "
         f"{'Gel/s':>6} {'speed':>6} {'%bw':>5}")


def _fmt(r: Row) -> str:
    speed = "-" if r.speed is None else f"{r.speed:.2f}"
    pct = "-" if r.pct_bw is None else f"{r.pct_bw:.0f}"
    return (f"{_OP_LABEL[r.op]:<14} {_shape(r.shape):<14} {r.dtype:<9} {r.impl:<24} "
            f"{r.median_ms:>9.2f} {r.gb_per_s:>6.2f} {r.gelem_per_s:>6.2f} {speed:>6} {pct:>5}")


def _shape(shape) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    info = {
        "fastxent": fastxent.show_config(print_out=False),
        "cpu": cpu_model(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for mod in ("scipy", "torch", "ml_dtypes"):
        info[mod] = getattr(sys.modules.get(mod), "__version__", None)
    return info


def run(plan: Plan = FULL, repeat: int = 5, impls=None, out=sys.stdout) -> dict:
    """Time every case, op and implementation of `plan`; print the table and return a
    report: machine, bandwidth, rows, peak memory, summary ratios."""
    start = time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    n_all = fastxent.get_num_threads()      # before any torch call can change it
    impls = available_impls(n_all) if impls is None else impls
    machine = machine_info()
    cfg = machine["fastxent"]
    threads = sorted({1, n_all})
    bw = read_bandwidth(plan.probe_mib, threads)
    p = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    p(f"fastxent {cfg['version']}  isa={cfg['isa']}  openmp={cfg['openmp']}  threads={n_all}  "
      f"numpy {np.__version__}  torch {machine['torch'] or '-'}  scipy {machine['scipy'] or '-'}")
    p(f"cpu: {machine['cpu']} x {os.cpu_count()}  load avg {machine['loadavg'][0]:.2f}"
      if machine["loadavg"] else f"cpu: {machine['cpu']} x {os.cpu_count()}")
    p(f"memory read bandwidth ({plan.probe_mib} MiB float32 sum, best of 5): "
      + ", ".join(f"{n} thr {bw[n]['best_gb_per_s']:.1f} GB/s" for n in threads))
    p(f"repeat={repeat} (median, interleaved); speed = NumPy time / this time; "
      "GB/s and Gel/s = logits bytes and elements (1e9) read per second")
    p(_HEAD)
    p("-" * len(_HEAD))
    rows, bad, memory, skipped, draws = [], [], {}, [], {}
    for shape, dtype in plan.cases:
        if dtype_of(dtype) is None:
            skipped.append(f"{_shape(shape)} {dtype}: ml_dtypes is not installed")
            continue
        x, target = make_data(shape, dtype, _cache=draws)
        ops = OPS + ((GRAD_OP,) if (tuple(shape), dtype) == tuple(plan.grad_case) else ())
        for op in ops:
            these = impls_for(op, dtype, impls)
            med, res = time_case(these, op, x, target, repeat)
            ref = res["numpy"]
            for im in these:
                err = _err(op, res[im.key], ref)
                if not err <= _tolerance(im, op, dtype):
                    bad.append(f"{op} {_shape(shape)} {dtype} {im.label}: "
                               f"max rel err {err:.2e} vs numpy")
                t = med[im.key]
                gbs = x.nbytes / t / 1e9
                fwd_only = im.key.startswith("fastxent-fwd")
                row = Row(op, tuple(shape), dtype, im.label, im.key, im.n_threads, t * 1e3, gbs,
                          x.size / t / 1e9, None if fwd_only else med["numpy"] / t,
                          100 * gbs / bw[im.n_threads]["best_gb_per_s"] if im.n_threads in bw
                          else None, err)
                rows.append(row)
                p(_fmt(row))
        if (tuple(shape), dtype) == tuple(plan.grad_case):
            memory = _peak_memory(x, target, n_all)
        del x, target
    draws.clear()
    p("-" * len(_HEAD))
    for i, note in enumerate(FOOTNOTES, 1):
        p(f"[{i}] {note}")
    for msg in skipped:
        p(f"skipped {msg}")
    if memory:
        p(f"peak extra memory of one call, {_shape(memory['shape'])} {memory['dtype']} "
          f"(logits {memory['logits_mb']:.0f} MB), tracemalloc:")
        for op, d in memory["calls"].items():
            p(f"  {op:<24} fastxent {_bytes(d['fastxent_bytes']):>10}   "
              f"numpy {_bytes(d['numpy_bytes']):>10}")
        p("  (tracemalloc sees NumPy's buffers; the C kernels allocate nothing of size rows: "
          "their per-row state lives on the threads' stacks)")
    summary = ratios(rows, plan, n_all)
    p("ratios (this run)" + ("" if plan.targets else "; targets apply to the full run's shapes") + ":")
    for r in summary:
        target = ""
        if r["target"] and plan.targets:
            target = f"target {r['target']}: {'met' if r['met'] else 'MISSED'}"
        p(f"  {r['name']:<68} {r['value']:6.2f}x  {target}".rstrip())
    elapsed = time.perf_counter() - start
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    p(f"total {elapsed:.0f} s" + (f"; load avg at the end {load_end[0]:.2f} (other work on the "
                                   "machine slows some rows)" if load_end else ""))
    for msg in bad:
        print(f"WARNING: {msg}", file=sys.stderr)
    return {"date": date,
            "machine": machine, "repeat": repeat, "plan": "quick" if plan == QUICK else "full",
            "bandwidth_gb_per_s": {str(n): v for n, v in bw.items()},
            "rows": rows, "peak_memory": memory, "ratios": summary,
            "footnotes": list(FOOTNOTES), "warnings": bad, "skipped": skipped,
            "elapsed_s": elapsed, "loadavg_end": load_end}


def _peak_memory(x, target, n_all) -> dict:
    calls = {
        "cross_entropy (mean)": (lambda: fastxent.cross_entropy(x, target, n_threads=n_all),
                                 lambda: numpy_cross_entropy(x, target)),
        "cross_entropy fwd+grad": (
            lambda: fastxent.cross_entropy(x, target, return_grad=True, n_threads=n_all),
            lambda: numpy_cross_entropy_grad(x, target)),
    }
    out = {"shape": list(x.shape), "dtype": x.dtype.name, "logits_mb": x.nbytes / 1e6, "calls": {}}
    for name, (fx, ref) in calls.items():
        out["calls"][name] = {"fastxent_bytes": peak_extra_memory(fx),
                              "numpy_bytes": peak_extra_memory(ref)}
    return out


def _bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def ratios(rows, plan: Plan, n_all: int) -> list:
    """The comparisons the targets are stated in, from the rows of one run."""
    t = {(r.op, r.shape, r.dtype, r.impl_key): r.median_ms for r in rows}
    out = []

    def add(name, num, den, target=None, at_least=True):
        if num in t and den in t:
            v = t[num] / t[den]
            met = None if target is None else (v >= target if at_least else v <= target)
            tgt = None if target is None else f"{'>=' if at_least else '<='} {target:g}"
            out.append({"name": name, "value": v, "target": tgt, "met": met})

    ce, f32 = "cross_entropy", "float32"
    for s in plan.large_vocab:
        for k in ("1", "all"):
            n = 1 if k == "1" else n_all
            add(f"CE {_shape(s)} f32: fastxent {n} thr vs numpy", (ce, s, f32, "numpy"),
                (ce, s, f32, f"fastxent-{k}"), 6 if k == "1" else None)
            add(f"CE {_shape(s)} f32: fastxent {n} thr vs torch {n} thr", (ce, s, f32, f"torch-{k}"),
                (ce, s, f32, f"fastxent-{k}"), 8 if k == "1" else None)
    s = plan.small_classes
    for op in (ce, "logsumexp"):
        for k in ("1", "all"):
            n = 1 if k == "1" else n_all
            add(f"{'CE' if op == ce else 'LSE'} {_shape(s)} f32: fastxent {n} thr vs numpy",
                (op, s, f32, "numpy"), (op, s, f32, f"fastxent-{k}"),
                10 if (op == ce and k == "1") else None)
            add(f"{'CE' if op == ce else 'LSE'} {_shape(s)} f32: fastxent {n} thr vs torch {n} thr",
                (op, s, f32, f"torch-{k}"), (op, s, f32, f"fastxent-{k}"))
    s = plan.dtype_case
    for dt in ("bfloat16", "float16"):
        for k in ("1", "all"):
            n = 1 if k == "1" else n_all
            add(f"CE {_shape(s)}: {dt} elements/s vs float32, fastxent {n} thr",
                (ce, s, f32, f"fastxent-{k}"), (ce, s, dt, f"fastxent-{k}"),
                1.5 if dt == "bfloat16" else None)
    s = plan.threads_case
    if n_all > 1:
        for op in (ce, "logsumexp"):
            add(f"{'CE' if op == ce else 'LSE'} {_shape(s)} f32: fastxent {n_all} thr vs 1 thr",
                (op, s, f32, "fastxent-1"), (op, s, f32, "fastxent-all"),
                1.7 if op == ce else None)
    s, dt = plan.grad_case
    s = tuple(s)
    for k in ("1", "all"):
        n = 1 if k == "1" else n_all
        add(f"fwd+grad {_shape(s)} {dt}: fastxent time / fwd-only time, {n} thr",
            (GRAD_OP, s, dt, f"fastxent-{k}"), (GRAD_OP, s, dt, f"fastxent-fwd-{k}"), 2,
            at_least=False)
        add(f"fwd+grad {_shape(s)} {dt}: torch fwd+bwd vs fastxent, {n} thr",
            (GRAD_OP, s, dt, f"torch-{k}"), (GRAD_OP, s, dt, f"fastxent-{k}"), 3)
        add(f"fwd+grad {_shape(s)} {dt}: numpy vs fastxent, {n} thr",
            (GRAD_OP, s, dt, "numpy"), (GRAD_OP, s, dt, f"fastxent-{k}"))
    return out


def write_json(path, report: dict) -> None:
    doc = dict(report, rows=[dict(r.__dict__, shape=list(r.shape)) for r in report["rows"]])
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
