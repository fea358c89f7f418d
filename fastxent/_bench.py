"""Benchmark behind ``python -m fastxent bench``: fastxent beside its peers.

The peers are what a user would otherwise write or call: plain stable NumPy in
the input dtype (below), ``scipy.special.logsumexp`` and PyTorch's
``F.cross_entropy`` / ``torch.logsumexp`` on ``torch.from_numpy`` views.  SciPy
and PyTorch are optional; each joins the table only when it imports.

All implementations of one case are timed interleaved (one call of each per
repeat, round-robin) after one warm-up call each, and the median of the repeats
is reported, so that a noisy shared machine slows all of them alike.  The
"speed" column is NumPy time / that implementation's time, as bottleneck's
``bn.bench()`` prints it.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastxent

OPS = ("cross_entropy", "logsumexp")
CASES = [((2048, 32000), "float32"), ((512, 128256), "float32"), ((512, 128256), "float64"),
         ((65536, 1000), "float32"), ((1000000, 10), "float32")]
QUICK_CASES = [((256, 32000), "float32"), ((64, 32000), "float64"), ((100000, 10), "float32")]
# Agreement with the NumPy implementation that the warm-up results must meet.
RTOL = {"float32": 1e-5, "float64": 1e-12}


# --- NumPy peers: what a user would write, in the input dtype -----------------

def numpy_logsumexp(x):
    """Stable log-sum-exp over the last axis: max-shift, exp, sum, log."""
    m = x.max(axis=-1, keepdims=True)
    return np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]


def numpy_cross_entropy(x, target):
    """Mean cross-entropy: log-sum-exp minus the target logit, averaged."""
    picked = np.take_along_axis(x, target[..., None], axis=-1)[..., 0]
    return (numpy_logsumexp(x) - picked).mean()


def scipy_logsumexp(x):
    from scipy.special import logsumexp
    return logsumexp(x, axis=-1)


def scipy_cross_entropy(x, target):
    from scipy.special import logsumexp
    picked = np.take_along_axis(x, target[..., None], axis=-1)[..., 0]
    return (logsumexp(x, axis=-1) - picked).mean()


def torch_logsumexp(x):
    import torch
    return torch.logsumexp(torch.from_numpy(x), dim=-1).numpy()


def torch_cross_entropy(x, target):
    import torch
    import torch.nn.functional as F
    return F.cross_entropy(torch.from_numpy(x), torch.from_numpy(target)).numpy()


# --- The implementations compared ---------------------------------------------

@dataclass
class Impl:
    """One implementation of both ops; `threads` wraps its calls untimed."""
    key: str
    label: str
    logsumexp: Callable
    cross_entropy: Callable
    threads: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def op(self, name: str) -> Callable:
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
    # load the same libgomp; make sure a torch context did not leak into this one.
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


IMPL_KEYS = ("fastxent-1", "fastxent-all", "numpy", "scipy", "torch-1", "torch-all")


def get_impl(key: str) -> Impl:
    """The implementation named `key` (one of `IMPL_KEYS`); peers import lazily."""
    n_all = fastxent.get_num_threads()
    if key == "fastxent-1":
        return Impl(key, "fastxent 1 thr",
                    lambda x: fastxent.logsumexp(x, axis=-1, n_threads=1),
                    lambda x, t: fastxent.cross_entropy(x, t, n_threads=1))
    if key == "fastxent-all":
        return Impl(key, f"fastxent {n_all} thr",
                    lambda x: fastxent.logsumexp(x, axis=-1),
                    lambda x, t: fastxent.cross_entropy(x, t),
                    lambda: _expect_fastxent_threads(n_all))
    if key == "numpy":
        return Impl(key, "numpy", numpy_logsumexp, numpy_cross_entropy)
    if key == "scipy":
        return Impl(key, "scipy", scipy_logsumexp, scipy_cross_entropy)
    if key == "torch-1":
        return Impl(key, "torch 1 thr", torch_logsumexp, torch_cross_entropy,
                    lambda: _torch_threads(1))
    if key == "torch-all":
        return Impl(key, f"torch {n_all} thr", torch_logsumexp, torch_cross_entropy,
                    lambda: _torch_threads(n_all))
    raise ValueError(f"`key` must be one of {IMPL_KEYS}, got {key!r}")


def available_impls() -> list[Impl]:
    """fastxent and NumPy always; SciPy and PyTorch when they import."""
    keys = ["fastxent-1", "fastxent-all", "numpy"]
    if _have("scipy.special"):
        keys.append("scipy")
    if _have("torch"):
        keys += ["torch-1", "torch-all"]
    return [get_impl(k) for k in keys]


def make_data(shape, dtype, seed=0):
    """Logits ~ 3 * N(0, 1) in `dtype` and uniform integer targets (int64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape, dtype=np.dtype(dtype)) * np.dtype(dtype).type(3)
    target = rng.integers(0, shape[-1], size=shape[:-1], dtype=np.int64)
    return x, target


# --- Timing --------------------------------------------------------------------

def _call(impl: Impl, op: str, x, target):
    fn = impl.op(op)
    return fn(x, target) if op == "cross_entropy" else fn(x)


def time_case(impls, op, x, target, repeat):
    """Median seconds per implementation (interleaved), plus the warm-up results."""
    results, times = {}, {im.key: [] for im in impls}
    for im in impls:
        with im.threads():
            results[im.key] = np.asarray(_call(im, op, x, target))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for im in impls:
                with im.threads():
                    t0 = time.perf_counter()
                    _call(im, op, x, target)
                    times[im.key].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}, results


@dataclass
class Row:
    op: str
    shape: tuple
    dtype: str
    impl: str
    median_ms: float
    gb_per_s: float
    speed: float
    err_vs_numpy: float = field(default=0.0)  # max|got - numpy| / max|numpy|


def _rel_err(got, ref) -> float:
    """Normwise relative difference max|got - ref| / max|ref| (robust to ref near 0)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), np.finfo(np.float64).tiny))


def run(cases=CASES, repeat=5, ops=OPS, impls=None, out=sys.stdout):
    """Time every op, case and implementation; print the table and return its rows."""
    impls = available_impls() if impls is None else impls
    cfg = fastxent.show_config(print_out=False)
    print(f"fastxent {cfg['version']}  isa={cfg['isa']}  openmp={cfg['openmp']}  "
          f"threads={cfg['n_threads']}  numpy {np.__version__}  cpus={os.cpu_count()}  "
          f"repeat={repeat} (median, interleaved)", file=out)
    print("speed = NumPy time / this time; GB/s = logits bytes read / time", file=out)
    head = f"{'op':<14} {'shape':<16} {'dtype':<8} {'impl':<16} {'ms':>9} {'GB/s':>7} {'speed':>7}"
    print(head, file=out)
    print("-" * len(head), file=out)
    rows, bad = [], []
    start = time.perf_counter()
    for shape, dtype in cases:
        x, target = make_data(shape, dtype)
        for op in ops:
            med, res = time_case(impls, op, x, target, repeat)
            ref = res["numpy"]
            for im in impls:
                err = _rel_err(res[im.key], ref)
                if not err <= RTOL[dtype]:
                    bad.append(f"{op} {shape} {dtype} {im.label}: max rel err {err:.2e} vs numpy")
                row = Row(op, tuple(shape), dtype, im.label, med[im.key] * 1e3,
                          x.nbytes / med[im.key] / 1e9, med["numpy"] / med[im.key], err)
                rows.append(row)
                print(f"{op:<14} {str(shape).replace(' ', ''):<16} {dtype:<8} {im.label:<16} "
                      f"{row.median_ms:>9.2f} {row.gb_per_s:>7.2f} {row.speed:>7.2f}",
                      file=out, flush=True)
        del x, target
    print(f"total {time.perf_counter() - start:.0f} s", file=out)
    for msg in bad:
        print(f"WARNING: {msg}", file=sys.stderr)
    return rows


def machine_info() -> dict:
    info = {
        "fastxent": fastxent.show_config(print_out=False),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for mod in ("scipy", "torch"):
        info[mod] = sys.modules[mod].__version__ if mod in sys.modules else None
    return info


def write_json(path, rows, repeat):
    doc = {"machine": machine_info(), "repeat": repeat,
           "rows": [dict(r.__dict__, shape=list(r.shape)) for r in rows]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
