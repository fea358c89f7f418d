"""Forward + backward of fastxent.torch.cross_entropy vs torch.nn.functional.cross_entropy.

    python bench/bench_torch.py [--repeat 5] [--quick]

One run, side by side: (2048, 32000) and (512, 128256) logits in float32 and bfloat16 with
1 thread and all threads (both libraries set to the same count), then the per-call overhead on
an (8, 10) input.  Times are the best of `--repeat` runs, the two libraries interleaved
(`fastxent._bench.interleaved`); quote the ratio column (same run).
"""
import argparse
import os

import torch
import torch.nn.functional as F

import fastxent
import fastxent.torch as fxt
from fastxent import _bench


def best_times(fns, repeat, number=1):
    """The best of `repeat` interleaved timings of each function (`fastxent._bench.interleaved`)."""
    times, _ = _bench.interleaved(fns, repeat, number)
    return [min(times[k]) for k in fns]


def fwd_bwd(loss_fn, x, t):
    def run():
        x.grad = None
        loss_fn(x, t).backward()
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="the (2048, 32000) float32 row only")
    args = ap.parse_args()
    n_all = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    shapes = [(2048, 32000)] if args.quick else [(2048, 32000), (512, 128256)]
    dtypes = [torch.float32] if args.quick else [torch.float32, torch.bfloat16]
    threads = sorted({1, n_all})
    print(f"torch {torch.__version__}, fastxent {fastxent.__version__}, {n_all} CPUs; best of {args.repeat}")
    print("| shape | dtype | threads | torch F.cross_entropy ms | fastxent.torch ms | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        x0 = torch.randn(shape, generator=g)
        t = torch.randint(0, shape[1], (shape[0],), generator=g)
        for dt in dtypes:
            x = x0.to(dt).requires_grad_()
            for n in threads:
                torch.set_num_threads(n)
                prev = fastxent.set_num_threads(n)
                try:
                    ref, ours = best_times({"torch": fwd_bwd(F.cross_entropy, x, t),
                                            "fastxent": fwd_bwd(fxt.cross_entropy, x, t)}, args.repeat)
                finally:
                    fastxent.set_num_threads(prev)
                print(f"| {shape} | {str(dt).split('.')[1]} | {n} | {ref * 1e3:.1f} | {ours * 1e3:.1f} | "
                      f"{ref / ours:.2f} |")
    torch.set_num_threads(1)
    x = torch.randn(8, 10, requires_grad=True)
    t = torch.randint(0, 10, (8,))
    ref, ours = best_times({"torch": fwd_bwd(F.cross_entropy, x, t), "fastxent": fwd_bwd(fxt.cross_entropy, x, t)},
                           args.repeat, number=2000)
    print(f"\nper-call overhead, (8, 10) float32 fwd+bwd: torch {ref * 1e6:.1f} us, "
          f"fastxent.torch {ours * 1e6:.1f} us (ratio {ours / ref:.2f}x torch's)")


if __name__ == "__main__":
    main()
