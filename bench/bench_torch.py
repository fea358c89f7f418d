"""Forward + backward of fastxent.torch.cross_entropy vs torch.nn.functional.cross_entropy.

    python bench/bench_torch.py [--repeat 7] [--quick]

One run, side by side: (2048, 32000) and (512, 128256) logits in float32 and bfloat16 with
1 thread and all threads (both libraries set to the same count), then the per-call cost on an
(8, 10) input.  Each step is ``loss_fn(x, t).backward(); x.grad = None`` on a leaf tensor (so
each library allocates its gradient, and frees it, as in training).  The two libraries are timed
interleaved, call by call; times are medians of `--repeat` calls, wall clock and CPU time
(user + system of the process, all threads), and each ratio compares the two medians of the
same run (the one timing loop of the benchmarks, `fastxent._bench.interleaved`, with one
untimed call of each first).  On a shared machine the CPU-time ratio is the steadier one.

The same run measures the machine: the memory read bandwidth (a plain C sum of a large array),
the rate of writing a warm buffer, and of allocating and writing a fresh one (NumPy's
allocation, which asks for transparent huge pages, and torch's, which does not): a fresh
gradient costs its page faults.  "kernel" is fastxent's C kernel alone on the same data
(``fastxent.cross_entropy(..., return_grad=True, grad_out=)`` into a reused buffer); "floor" is
the time to read the logits and write the gradient once at the measured read bandwidth, the
least any implementation can take; "torch / floor" is then the largest ratio possible.
"faults" are minor page faults per step (getrusage).
"""
import argparse
import os
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import fastxent
import fastxent.torch as fxt
from fastxent import _bench
from fastxent._arrays import BF16_RAW as _BF16


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class Usage:
    """A context for `fastxent._bench.interleaved`: the process CPU seconds and minor page faults
    of each timing it surrounds."""

    def __init__(self):
        self.cpu, self.faults = [], []

    def __call__(self):
        return self

    def __enter__(self):
        self._c0, self._f0 = time.process_time(), faults()
        return self

    def __exit__(self, *exc):
        self.cpu.append(time.process_time() - self._c0)
        self.faults.append(faults() - self._f0)


def timed(fns, repeat, number=1):
    """Medians (seconds per call, CPU seconds per call, page faults per call) of each fn, timed
    interleaved after one untimed call each (the one timing loop, `fastxent._bench.interleaved`)."""
    usage = [Usage() for _ in fns]
    times, _ = _bench.interleaved(dict(enumerate(fns)), repeat, number, contexts=dict(enumerate(usage)),
                                  warmup=True)
    med = statistics.median
    return ([med(times[i]) for i in range(len(fns))],
            [med(u.cpu[1:]) / number for u in usage],     # [0]: the warm-up call
            [med(u.faults[1:]) / number for u in usage])


def fwd_bwd(loss_fn, x, t):
    """One step; the gradient is dropped at its end, so that each library pays for freeing its
    own gradient (not the other one's)."""
    def run():
        loss_fn(x, t).backward()
        x.grad = None
    return run


def thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            s = f.read()
        return s[s.index("[") + 1:s.index("]")]
    except (OSError, ValueError):
        return "unknown"


def write_rates(nbytes, threads, repeat):
    """GB/s of: writing a warm buffer; allocating and writing a fresh one (NumPy, torch)."""
    warm = np.empty(nbytes // 4, dtype=np.float32)
    warm.fill(0.0)
    src = torch.from_numpy(warm)
    out = {}
    for n in threads:
        torch.set_num_threads(n)
        fns = [lambda: src.fill_(1.0),
               lambda: torch.from_numpy(np.empty(nbytes // 4, dtype=np.float32)).fill_(1.0),
               lambda: torch.empty(nbytes // 4, dtype=torch.float32).fill_(1.0)]
        (t_warm, t_np, t_torch), _, _ = timed(fns, repeat)
        out[n] = {"warm": nbytes / t_warm / 1e9, "fresh_numpy": nbytes / t_np / 1e9,
                  "fresh_torch": nbytes / t_torch / 1e9}
    del warm, src
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="the (2048, 32000) rows only, 3 calls each")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    machine = _bench.machine_info()
    n_all = machine["cpus_usable"]
    threads = sorted({1, n_all})
    shapes = [(2048, 32000)] if args.quick else [(2048, 32000), (512, 128256)]
    dtypes = [torch.float32, torch.bfloat16]
    prev_fx, prev_torch = fastxent.get_num_threads(), torch.get_num_threads()
    print(f"machine: {_bench.machine_summary(machine)}; load average {machine['loadavg']}")
    print(f"torch {torch.__version__} (CPU kernels: {torch.backends.cpu.get_cpu_capability()}), "
          f"fastxent {fastxent.__version__} (kernels: {machine['fastxent']['isa']}), numpy {np.__version__}; "
          f"transparent huge pages: {thp_mode()}")
    print(f"threads: each row sets torch.set_num_threads(n) and fastxent.set_num_threads(n); "
          f"n in {threads}; times are medians of {repeat} interleaved calls")

    bw = _bench.read_bandwidth(512, threads, repeat=repeat)
    gbytes = max(s[0] * s[1] for s in shapes) * 4
    wr = write_rates(gbytes, threads, repeat)
    print("\nmemory, measured now (GB/s):")
    print("| threads | read (C sum, 512 MiB) | write, warm buffer | allocate + write, NumPy | "
          "allocate + write, torch |")
    print("|---:|---:|---:|---:|---:|")
    for n in threads:
        print(f"| {n} | {bw[n]['median_gb_per_s']:.1f} | {wr[n]['warm']:.1f} | {wr[n]['fresh_numpy']:.1f} | "
              f"{wr[n]['fresh_torch']:.1f} |")

    print("\nforward + backward, cross_entropy(x, t).backward(); x.grad = None (mean over rows); ms per step:")
    print("| shape | dtype | threads | torch | fastxent.torch | torch / fastxent | torch CPU | fastxent CPU | "
          "CPU ratio | kernel | floor | torch / floor | faults torch | faults fastxent |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    try:
        for shape in shapes:
            x0 = torch.randn(shape, generator=g)
            t = torch.randint(0, shape[1], (shape[0],), generator=g)
            for dt in dtypes:
                x = x0.to(dt, copy=True).requires_grad_()  # a leaf of its own (x0.to(float32) is x0)
                nbytes = x.numel() * x.element_size()
                warm = torch.empty_like(x, dtype=torch.float32 if dt == torch.float32 else dt)
                warm_np = warm.view(torch.int16).numpy().view(_BF16) if dt == torch.bfloat16 else warm.numpy()
                for n in threads:
                    torch.set_num_threads(n)
                    fastxent.set_num_threads(n)
                    # the two results agree before they are timed
                    la, lb = F.cross_entropy(x, t), fxt.cross_entropy(x, t)
                    torch.testing.assert_close(lb, la, rtol=2e-2 if dt == torch.bfloat16 else 1e-5, atol=0)
                    (ta, tb, tk), (ca, cb, _), (fa, fb, _) = timed(
                        [fwd_bwd(F.cross_entropy, x, t), fwd_bwd(fxt.cross_entropy, x, t),
                         lambda: fastxent.cross_entropy(x, t, axis=1, return_grad=True, grad_out=warm_np)],
                        repeat)
                    floor = 2 * nbytes / (bw[n]["median_gb_per_s"] * 1e9)
                    print(f"| {shape} | {str(dt).split('.')[1]} | {n} | {ta * 1e3:.1f} | {tb * 1e3:.1f} | "
                          f"{ta / tb:.2f} | {ca * 1e3:.1f} | {cb * 1e3:.1f} | {ca / cb:.2f} | {tk * 1e3:.1f} | "
                          f"{floor * 1e3:.1f} | {ta / floor:.1f} | {fa:.0f} | {fb:.0f} |", flush=True)
                del x, warm, warm_np
        torch.set_num_threads(1)
        fastxent.set_num_threads(1)
        x = torch.randn(8, 10, requires_grad=True)
        t = torch.randint(0, 10, (8,))
        (ta, tb), _, _ = timed([fwd_bwd(F.cross_entropy, x, t), fwd_bwd(fxt.cross_entropy, x, t)],
                               repeat, number=2000)
        (na, nb), _, _ = timed([lambda: F.cross_entropy(x.detach(), t), lambda: fxt.cross_entropy(x.detach(), t)],
                               repeat, number=2000)
    finally:
        torch.set_num_threads(prev_torch)
        fastxent.set_num_threads(prev_fx)
    print("\nper call, (8, 10) float32, 1 thread:")
    print("| step | torch us | fastxent.torch us | fastxent / torch |")
    print("|---|---:|---:|---:|")
    print(f"| forward + backward | {ta * 1e6:.1f} | {tb * 1e6:.1f} | {tb / ta:.2f} |")
    print(f"| forward, no grad | {na * 1e6:.1f} | {nb * 1e6:.1f} | {nb / na:.2f} |")
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
