"""fastxent.dask overhead: `evaluate` on a dask.distributed LocalCluster vs one local Evaluator.

Data: (4 x 512, 128256) float32 logits (1.05 GB; with --ref also reference logits) written as
four .npy shards to a temporary directory, so both sides read the same page-cached files:
the local side memory-maps each shard and calls `Evaluator.update` (fastxent threads = all
cores), the dask side builds `from_npy` arrays (one chunk per shard) and runs `evaluate` on
a LocalCluster of W worker processes x 1 thread with n_threads = max(1, cores // W) per task
(no oversubscription), and on the threaded scheduler.  Cluster start-up is timed apart.

    python bench/bench_dask.py [--rows 512] [--vocab 128256] [--shards 4] [--ref] [--repeat 3]
"""
import argparse
import os
import tempfile
import time

import numpy as np

import fastxent
import fastxent.dask as fxd
from fastxent import _bench


def best(f, repeat):
    """The best of `repeat` timings of `f` (`fastxent._bench.interleaved`) and its first result."""
    times, first = _bench.interleaved({"f": f}, repeat)
    return min(times["f"]), first["f"]


_count = iter(range(1 << 30))


def fresh(*arrays):
    """The arrays under new keys: the distributed scheduler may still hold the results of the
    previous repeat (keys are released asynchronously) and would hand them back unrecomputed."""
    import dask.array as da
    tok = f"bench-{next(_count)}"
    return [None if a is None else da.map_blocks(_same, a, dtype=a.dtype, token=tok) for a in arrays]


def _same(b):
    return b


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=512, help="rows per shard")
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ref", action="store_true", help="also reference logits (KL statistics)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    from dask.distributed import Client, LocalCluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="fastxent-bench-dask-") as d:
        rng = np.random.default_rng(0)
        names = ["logits"] + (["ref"] if a.ref else [])
        for i in range(a.shards):
            x = rng.standard_normal((a.rows, a.vocab), dtype=np.float32)
            np.save(os.path.join(d, f"logits_{i}.npy"), x)
            if a.ref:
                np.save(os.path.join(d, f"ref_{i}.npy"), x + 0.1 * rng.standard_normal(x.shape, dtype=np.float32))
            np.save(os.path.join(d, f"target_{i}.npy"), rng.integers(0, a.vocab, a.rows))
            del x
        shards = lambda n: [os.path.join(d, f"{n}_{i}.npy") for i in range(a.shards)]  # noqa: E731

        def local():
            ev = fastxent.Evaluator()
            for i in range(a.shards):
                m = {n: np.load(shards(n)[i], mmap_mode="r") for n in names + ["target"]}
                ev.update(m["logits"], m["target"], ref_logits=m.get("ref"))
            return ev.report()

        X, T = fxd.from_npy(shards("logits")), fxd.from_npy(shards("target"))
        R = fxd.from_npy(shards("ref")) if a.ref else None
        nt = max(1, cores // a.workers)
        t_local, rep_local = best(local, a.repeat)
        t_thr, rep_thr = best(lambda: fxd.evaluate(*fresh(X, T, R), n_threads=1)
                              .compute(scheduler="threads"),
                              a.repeat)
        t0 = time.perf_counter()
        with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True,
                          dashboard_address=None, host="127.0.0.1") as cluster, Client(cluster):
            t_start = time.perf_counter() - t0
            t_dist, rep_dist = best(lambda: fxd.evaluate(*fresh(X, T, R), n_threads=nt).compute(),
                                    a.repeat)
        assert rep_local == rep_thr == rep_dist, "reports differ"
        gb = a.shards * a.rows * a.vocab * 4 * len(names) / 1e9
        print(f"fastxent {fastxent.__version__}: evaluate of {a.shards} x ({a.rows}, {a.vocab}) float32 "
              f"({gb:.2f} GB{', with reference' if a.ref else ''}), {cores} cores, best of {a.repeat}")
        rows = [(f"local Evaluator, {fastxent.get_num_threads()} threads", t_local, ""),
                ("dask threaded scheduler, n_threads=1", t_thr, f"({t_thr / t_local:.2f}x local)"),
                (f"LocalCluster {a.workers} procs x 1 thread, n_threads={nt}", t_dist,
                 f"({t_dist / t_local:.2f}x local; target < 2x)"),
                ("LocalCluster start-up (not included)", t_start, "")]
        for label, t, note in rows:
            print(f"  {label:<44}: {t * 1e3:8.1f} ms   {note}")
        print("  reports identical: yes")


if __name__ == "__main__":
    main()
