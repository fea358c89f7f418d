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
import functools
import gc
import json
import os
import platform
import statistics
import sys
import textwrap
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

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
    sweep_vocab: tuple = ()  # vocabulary sizes of the `--plot` sweep (float32, fixed total size)
    sweep_elements: int = 0  # logits elements per call in the sweep (rows = this // vocab)
    name: str = "full"


FULL = Plan(
    cases=(((2048, 32000), "float32"), ((512, 128256), "float32"), ((512, 128256), "float16"),
           ((512, 128256), "bfloat16"), ((512, 128256), "float64"), ((65536, 1000), "float32"),
           ((1000000, 10), "float32")),
    grad_case=((2048, 32000), "float32"), probe_mib=512,
    large_vocab=((2048, 32000), (512, 128256)), small_classes=(1000000, 10),
    dtype_case=(512, 128256), threads_case=(512, 128256),
    sweep_vocab=(1024, 4096, 16384, 32000, 65536, 128256, 262144), sweep_elements=1 << 24)
QUICK = Plan(
    cases=(((256, 32000), "float32"), ((64, 32000), "float32"), ((64, 32000), "float16"),
           ((64, 32000), "bfloat16"), ((64, 32000), "float64"), ((100000, 10), "float32")),
    grad_case=((256, 32000), "float32"), probe_mib=256,
    large_vocab=((256, 32000),), small_classes=(100000, 10),
    dtype_case=(64, 32000), threads_case=(256, 32000),
    sweep_vocab=(1024, 4096, 16384, 32000, 65536, 128256, 262144), sweep_elements=1 << 22,
    name="quick")
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
    assert fn is not None, (impl.key, op)       # callers time only the ops an impl has
    return fn(x) if op == "logsumexp" else fn(x, target)


def interleaved(fns: Mapping[Any, Callable[[], Any]], repeat: int, number: int = 1, *,
                contexts: Optional[Mapping[Any, Callable[[], contextlib.AbstractContextManager]]] = None,
                warmup: bool = False) -> Tuple[Dict[Any, List[float]], Dict[Any, Any]]:
    """The one timing loop of every benchmark (``python -m fastxent bench``, bench/*.py).

    Times each of `fns` (key -> zero-argument callable) in `repeat` interleaved rounds: a round
    calls every function once in turn, so that a change of machine load slows all of them
    alike.  A timing is the mean of `number` back-to-back calls.  The garbage collector is off
    while timing.  ``contexts[key]()`` (e.g. a thread setting) is entered around a function's
    timing without being timed; `warmup` makes one untimed call of each function first.

    Returns ``(times, first)``: key -> the `repeat` timings in seconds, and key -> the result
    of the function's first timed call (later results are dropped at once).  Summarise with
    `statistics.median` (the first round then doubles as the warm-up) or `min`.
    """
    times: Dict[Any, List[float]] = {k: [] for k in fns}
    first: Dict[Any, Any] = {}
    ctx = contexts or {}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if warmup:
            for k, fn in fns.items():
                with ctx.get(k, contextlib.nullcontext)():
                    fn()
        for i in range(repeat):
            for k, fn in fns.items():
                with ctx.get(k, contextlib.nullcontext)():
                    t0 = time.perf_counter()
                    for _ in range(number):
                        res = fn()
                    times[k].append((time.perf_counter() - t0) / number)
                if i == 0:
                    first[k] = res
                del res
    finally:
        if gc_was_enabled:
            gc.enable()
    return times, first


def time_case(impls, op, x, target, repeat):
    """Median seconds per implementation over `repeat` interleaved rounds, and the results
    of the first round (which also serves as the warm-up: the median discards a slow first
    call, and the run stays short)."""
    times, results = interleaved({im.key: functools.partial(_call, im, op, x, target) for im in impls}, repeat,
                                 contexts={im.key: im.threads for im in impls})
    return {k: statistics.median(v) for k, v in times.items()}, results


def read_bandwidth(mib: int, threads, repeat: int = 5) -> dict:
    """Memory read bandwidth in GB/s (best and median of `repeat`) per thread count.

    Sums a `mib` MiB float32 array (far larger than the caches) with `_core.read_probe`,
    thread counts interleaved, after one warm-up call each (OpenMP thread start).
    """
    a = np.ones((mib << 20) // 4, dtype=np.float32)   # written once: pages mapped
    out = {}
    try:
        times, _ = interleaved({n: functools.partial(_core.read_probe, a, n) for n in threads}, repeat,
                               warmup=True)
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


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def machine_info() -> dict:
    info = {
        "fastxent": fastxent.show_config(print_out=False),
        "cpu": cpu_model(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": _usable_cpus(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for mod in ("scipy", "torch", "ml_dtypes"):
        info[mod] = _version_of(mod)
    return info


def _version_of(dist: str) -> Optional[str]:
    """Installed version of `dist` without importing it (None when it is not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return getattr(sys.modules.get(dist), "__version__", None)
    try:
        return version(dist)
    except PackageNotFoundError:
        return getattr(sys.modules.get(dist), "__version__", None)


def machine_summary(machine: dict) -> str:
    """One line naming the machine: CPU model, CPUs, instruction set in use, threads."""
    cfg = machine["fastxent"]
    cpus = f"{machine['cpu_count']} logical CPUs"
    if machine.get("cpus_usable") and machine["cpus_usable"] != machine["cpu_count"]:
        cpus += f" ({machine['cpus_usable']} usable)"
    isa = cfg["isa"] + (" (emulated by SIMDe)" if cfg["isa"] in cfg.get("isas_emulated", ()) else "")
    return (f"{machine['cpu']}, {cpus}, {isa}, "
            f"{cfg['n_threads']} thread{'s' if cfg['n_threads'] != 1 else ''}")


HOW_TO_READ = (
    "How to read the table: each row is one implementation on one case, the median of the "
    "repeated calls. speed = NumPy's time / this row's time (2.00: twice as fast as the "
    "NumPy code a user would write; higher is better). GB/s and Gel/s: logits bytes and "
    "elements (1e9) read per second. %bw: GB/s as a share of the memory read bandwidth above "
    "with the same number of threads (100 would be as fast as memory delivers). Other "
    "work on the machine slows some rows: compare rows of one run.")


def _header(p, machine, bw, threads, plan, repeat):
    cfg = machine["fastxent"]
    p(f"fastxent {cfg['version']} benchmark ({plan.name} run, {repeat} calls per row)")
    p(f"machine:  {machine_summary(machine)}")
    p(f"          {machine['platform']}, Python {machine['python']}"
      + (f", load average {machine['loadavg'][0]:.2f}" if machine["loadavg"] else ""))
    p(f"fastxent: instruction set {cfg['isa']} (this CPU runs: {', '.join(cfg['isas_available'])}), "
      f"OpenMP {'on' if cfg['openmp'] else 'off'}, {cfg['n_threads']} threads by default")
    peers = [f"NumPy {machine['numpy']}"]
    for mod, label in (("scipy", "SciPy"), ("torch", "PyTorch"), ("ml_dtypes", "ml_dtypes")):
        peers.append(f"{label} {machine[mod]}" if machine[mod] else f"{label} not installed")
    p(f"peers:    {', '.join(peers)}")
    p(f"memory read bandwidth, measured now ({plan.probe_mib} MiB float32 sum, best of 5): "
      + ", ".join(f"{bw[n]['best_gb_per_s']:.1f} GB/s with {n} thread{'s' if n > 1 else ''}"
                  for n in threads))
    for line in textwrap.wrap(HOW_TO_READ, 100):
        p(line)


def run(plan: Plan = FULL, repeat: int = 5, impls=None, out=None, sweep: bool = False) -> dict:
    """Time every case, op and implementation of `plan`; print the table and return a
    report: machine, bandwidth, rows, peak memory, speedups (and with `sweep`, the
    vocabulary sweep of `--plot`)."""
    start = time.perf_counter()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    n_all = fastxent.get_num_threads()      # before any torch call can change it
    impls = available_impls(n_all) if impls is None else impls
    machine = machine_info()
    threads = sorted({1, n_all})
    bw = read_bandwidth(plan.probe_mib, threads)
    out = sys.stdout if out is None else out   # at call time: redirected stdout is honoured
    p = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    _header(p, machine, bw, threads, plan, repeat)
    p(_HEAD)
    p("-" * len(_HEAD))
    rows: list[Any] = []
    bad: list[Any] = []
    memory: dict[Any, Any] = {}
    skipped: list[Any] = []
    draws: dict[Any, Any] = {}
    for shape, dtype in plan.cases:
        if dtype_of(dtype) is None:
            skipped.append(f"{_shape(shape)} {dtype}: ml_dtypes is not installed")
            continue
        x, target = make_data(shape, dtype, _cache=draws)
        ops = OPS + ((GRAD_OP,) if (tuple(shape), dtype) == tuple(plan.grad_case) else ())
        for op in ops:
            for row in _measure(op, x, target, impls_for(op, dtype, impls), repeat, bw, bad):
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
    p("speedups in this run (one time divided by another, from the rows above):")
    width = max((len(r["name"]) for r in summary), default=0)
    for r in summary:
        p(f"  {r['name']:<{width}} {r['value']:6.2f}x")
    sweep_rows = []
    if sweep:
        sweep_rows = run_sweep(plan, repeat, impls, bw, bad, p)
    elapsed = time.perf_counter() - start
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    p(f"total {elapsed:.0f} s" + (f"; load average at the end {load_end[0]:.2f}" if load_end else ""))
    for msg in bad:
        print(f"WARNING: {msg}", file=sys.stderr)
    return {"date": date,
            "machine": machine, "repeat": repeat, "plan": plan.name,
            "bandwidth_gb_per_s": {str(n): v for n, v in bw.items()},
            "rows": rows, "peak_memory": memory, "ratios": summary, "sweep": sweep_rows,
            "footnotes": list(FOOTNOTES), "warnings": bad, "skipped": skipped,
            "elapsed_s": elapsed, "loadavg_end": load_end}


def _measure(op, x, target, these, repeat, bw, bad) -> list:
    """Rows of `op` on (x, target) for the implementations `these` (timed interleaved),
    each result checked against NumPy's (a disagreement is added to `bad`)."""
    med, res = time_case(these, op, x, target, repeat)
    ref = res["numpy"]
    dtype = _dtype_name(x)
    rows = []
    for im in these:
        err = _err(op, res[im.key], ref)
        if not err <= _tolerance(im, op, dtype):
            bad.append(f"{op} {_shape(x.shape)} {dtype} {im.label}: max rel err {err:.2e} vs numpy")
        t = med[im.key]
        gbs = x.nbytes / t / 1e9
        fwd_only = im.key.startswith("fastxent-fwd")
        rows.append(Row(op, tuple(x.shape), dtype, im.label, im.key, im.n_threads, t * 1e3, gbs,
                        x.size / t / 1e9, None if fwd_only else med["numpy"] / t,
                        100 * gbs / bw[im.n_threads]["best_gb_per_s"] if im.n_threads in bw
                        else None, err))
    return rows


def _dtype_name(x) -> str:
    return x.dtype.name


def run_sweep(plan: Plan, repeat: int, impls, bw, bad, p=None) -> list:
    """cross_entropy and logsumexp of float32 logits over the vocabulary sizes of `plan`, with
    the same number of elements per call (rows = plan.sweep_elements // vocab): the data of
    `--plot`.  Printed as a compact table (G elements/s per implementation) when `p` is given."""
    rows: list[Any] = []
    draws: dict[Any, Any] = {}
    by_vocab: dict[Any, Any] = {}
    for vocab in plan.sweep_vocab:
        n = max(1, plan.sweep_elements // vocab)
        x, target = make_data((n, vocab), "float32", _cache=draws)
        for op in OPS:
            got = _measure(op, x, target, impls_for(op, "float32", impls), repeat, bw, bad)
            rows += got
            by_vocab.setdefault(op, {})[vocab] = got
        del x, target
    draws.clear()
    if p is not None:
        for op in OPS:
            labels = list(dict.fromkeys(r.impl for v in plan.sweep_vocab for r in by_vocab[op][v]))
            p(f"{op} float32 throughput (G elements/s) by vocabulary size, "
              f"{_count(plan.sweep_elements)} elements per call:")
            p(f"  {'vocab':>8} " + " ".join(f"{lb:>15}" for lb in labels))
            for v in plan.sweep_vocab:
                rate = {r.impl: r.gelem_per_s for r in by_vocab[op][v]}
                p(f"  {v:>8} " + " ".join(f"{rate[lb]:>15.3f}" if lb in rate else f"{'-':>15}"
                                         for lb in labels))
    return rows


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


def _count(n: int) -> str:
    """4194304 -> '4.2 M', 1024 -> '1024'."""
    return f"{n / 1e6:.1f} M" if n >= 100_000 else str(n)


def _bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def ratios(rows, plan: Plan, n_all: int) -> list:
    """Speedups from the rows of one run: dicts with ``name`` (what a user reads), ``value``
    (time of the first implementation named / time of the second, or for ``grad_cost`` the
    forward-and-gradient time / the forward time), ``kind`` (what is compared, the same for
    every plan), ``threads`` ("1" or "all") and ``shape`` and ``dtype`` of the case."""
    t = {(r.op, r.shape, r.dtype, r.impl_key): r.median_ms for r in rows}
    out = []

    def add(kind, threads, name, num, den):
        if num in t and den in t:
            out.append({"kind": kind, "threads": threads, "name": name, "value": t[num] / t[den],
                        "shape": list(num[1]), "dtype": num[2]})

    def thr(k):
        return 1 if k == "1" else n_all

    ce, f32 = "cross_entropy", "float32"
    for s in plan.large_vocab:
        for k in ("1", "all"):
            n = thr(k)
            add("ce_vs_numpy", k, f"cross_entropy {_shape(s)} float32: fastxent {n} thr vs NumPy",
                (ce, s, f32, "numpy"), (ce, s, f32, f"fastxent-{k}"))
            add("ce_vs_torch", k, f"cross_entropy {_shape(s)} float32: fastxent {n} thr vs PyTorch {n} thr",
                (ce, s, f32, f"torch-{k}"), (ce, s, f32, f"fastxent-{k}"))
    s = plan.small_classes
    for op, short in ((ce, "ce"), ("logsumexp", "lse")):
        for k in ("1", "all"):
            n = thr(k)
            add(f"small_{short}_vs_numpy", k, f"{op} {_shape(s)} float32: fastxent {n} thr vs NumPy",
                (op, s, f32, "numpy"), (op, s, f32, f"fastxent-{k}"))
            add(f"small_{short}_vs_torch", k,
                f"{op} {_shape(s)} float32: fastxent {n} thr vs PyTorch {n} thr",
                (op, s, f32, f"torch-{k}"), (op, s, f32, f"fastxent-{k}"))
    s = plan.dtype_case
    for dt, short in (("bfloat16", "bf16"), ("float16", "f16")):
        for k in ("1", "all"):
            add(f"{short}_rate", k,
                f"cross_entropy {_shape(s)}: {dt} vs float32 elements per second, fastxent {thr(k)} thr",
                (ce, s, f32, f"fastxent-{k}"), (ce, s, dt, f"fastxent-{k}"))
    s = plan.threads_case
    if n_all > 1:
        for op, short in ((ce, "ce"), ("logsumexp", "lse")):
            add(f"{short}_threads", "all", f"{op} {_shape(s)} float32: fastxent {n_all} thr vs 1 thr",
                (op, s, f32, "fastxent-1"), (op, s, f32, "fastxent-all"))
    s, dt = plan.grad_case
    s = tuple(s)
    for k in ("1", "all"):
        n = thr(k)
        add("grad_cost", k, f"fwd+grad {_shape(s)} {dt}: its time / the forward alone, fastxent {n} thr",
            (GRAD_OP, s, dt, f"fastxent-{k}"), (GRAD_OP, s, dt, f"fastxent-fwd-{k}"))
        add("grad_vs_torch", k, f"fwd+grad {_shape(s)} {dt}: fastxent vs PyTorch fwd+backward, {n} thr",
            (GRAD_OP, s, dt, f"torch-{k}"), (GRAD_OP, s, dt, f"fastxent-{k}"))
        add("grad_vs_numpy", k, f"fwd+grad {_shape(s)} {dt}: fastxent {n} thr vs NumPy",
            (GRAD_OP, s, dt, "numpy"), (GRAD_OP, s, dt, f"fastxent-{k}"))
    return out


def write_json(path, report: dict) -> None:
    doc = dict(report, rows=[_row_json(r) for r in report["rows"]],
               sweep=[_row_json(r) for r in report.get("sweep", [])])
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def _row_json(r) -> dict:
    return dict(r.__dict__, shape=list(r.shape))


# --- The picture ----------------------------------------------------------------

PLOT_HINT = 'the --plot chart needs matplotlib: pip install "fastxent[plot]" (or pip install matplotlib)'


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


_STYLE = {"fastxent-1": ("#1f77b4", "-", "o"), "fastxent-all": ("#1f77b4", "--", "s"),
          "numpy": ("#444444", "-", "^"), "scipy": ("#2ca02c", "-", "v"),
          "torch-1": ("#d62728", "-", "D"), "torch-all": ("#d62728", "--", "d")}


def _vocab_label(v: int) -> str:
    """1024 -> 1k, 65536 -> 64k (powers of two in units of 1024), 32000 -> 32k, 128256 -> 128k."""
    if v < 1000:
        return str(v)
    k = v / 1024 if v & (v - 1) == 0 else v / 1000
    return f"{k:.0f}k"


def plot(report: dict, path: str, dpi: int = 100) -> None:
    """Draw the vocabulary sweep of `report` (``run(..., sweep=True)``, or the JSON that
    `write_json` wrote, loaded) to `path` (PNG):
    one panel per operation, G elements/s (GB/s on the right axis) of every implementation
    against the vocabulary size, with the memory read bandwidth of the run as dotted lines."""
    from matplotlib.figure import Figure   # no pyplot: no GUI backend, no global state
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    rows = [r if isinstance(r, Row) else Row(**dict(r, shape=tuple(r["shape"])))
            for r in report.get("sweep", [])]   # a report of `run` or its JSON
    if not rows:
        raise ValueError("the report has no vocabulary sweep (run with sweep=True)")
    machine = report["machine"]
    ops = [op for op in OPS if any(r.op == op for r in rows)]
    fig = Figure(figsize=(10, 4.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(ops), sharey=True, squeeze=False)[0]
    elements = rows[0].shape[0] * rows[0].shape[1]
    for ax, op in zip(axes, ops):
        these = [r for r in rows if r.op == op]
        for key in dict.fromkeys(r.impl_key for r in these):
            pts = sorted((r.shape[-1], r.gelem_per_s) for r in these if r.impl_key == key)
            label = next(r.impl for r in these if r.impl_key == key)
            color, ls, marker = _STYLE.get(key, (None, "-", "o"))
            ax.plot([v for v, _ in pts], [g for _, g in pts], ls=ls, marker=marker, color=color,
                    label=label, lw=1.6, ms=5)
        for n, d in sorted(report["bandwidth_gb_per_s"].items(), key=lambda kv: int(kv[0])):
            # float32: 4 bytes per element
            ax.axhline(d["best_gb_per_s"] / 4, color="#999999", ls=":" if n == "1" else "-.", lw=1,
                       label=f"memory read bandwidth, {n} thr")
        ax.set_xscale("log")
        ax.set_yscale("log")
        vocabs = sorted({r.shape[-1] for r in these})
        ax.set_xticks(vocabs)
        ax.set_xticklabels([_vocab_label(v) for v in vocabs], fontsize=9)
        ax.minorticks_off()
        ax.set_xlabel("vocabulary size (classes per row)")
        ax.set_title(f"{op}, float32 (mean)" if op == "cross_entropy" else f"{op}, float32, axis=-1",
                     fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
    sec = axes[-1].secondary_yaxis("right", functions=(lambda g: 4 * g, lambda b: b / 4))
    sec.set_ylabel("GB/s of float32 logits read")
    for axis in (axes[0].yaxis, sec.yaxis):      # 1-2-5 ticks as plain numbers, not 10^k
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_locator(NullLocator())
    axes[0].set_ylabel("G elements/s (higher is faster)")
    handles, labels = axes[-1].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[:-1]:
        for h, lb in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lb, h)
    fig.legend(list(seen.values()), list(seen), loc="outside right center", fontsize=9, frameon=False)
    cfg = machine["fastxent"]
    fig.suptitle(f"fastxent {cfg['version']} throughput vs vocabulary size, "
                 f"{_count(elements)} logits per call\n{machine_summary(machine)}", fontsize=11)
    fig.savefig(path, dpi=dpi)
