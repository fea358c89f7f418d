"""Time `fastxent.token_stats` with reference logits against the NumPy code computing the
same statistics (nll, entropy, top-1, p_target, KL(ref || model), same top, ref p_target).

Run: ``python bench/bench_token_stats.py [--rows 512] [--vocab 128256] [--repeat 5]``.
Both sides use one thread (NumPy's elementwise code is single-threaded; fastxent gets
``n_threads=1``).  Implementations are timed interleaved (`fastxent._bench.interleaved`, the
timing loop of ``python -m fastxent bench``); medians are reported, and the two results are
checked against each other first.
"""
import argparse
import statistics

import numpy as np

import fastxent
from fastxent import _bench


def numpy_token_stats(x, t, y):
    """Plain stable NumPy in the input dtype (what one would write without fastxent)."""
    rows = np.arange(x.shape[0])
    mx = x.max(axis=-1, keepdims=True)
    sx = x - mx
    logq = sx - np.log(np.exp(sx).sum(axis=-1, keepdims=True))
    my = y.max(axis=-1, keepdims=True)
    sy = y - my
    logp = sy - np.log(np.exp(sy).sum(axis=-1, keepdims=True))
    q, p = np.exp(logq), np.exp(logp)
    nll = -logq[rows, t]
    entropy = -(q * logq).sum(axis=-1)
    top_x, top_y = x.argmax(axis=-1), y.argmax(axis=-1)
    kl = (p * (logp - logq)).sum(axis=-1)
    return dict(nll=nll, entropy=entropy, p_target=q[rows, t], correct=top_x == t, kl=kl,
                same_top=top_x == top_y, ref_p_target=p[rows, t])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.vocab), dtype=np.float32) * 3)
    y = x + rng.standard_normal(x.shape, dtype=np.float32) * 0.3
    t = rng.integers(0, args.vocab, args.rows)

    fast = lambda: fastxent.token_stats(x, t, ref_logits=y, n_threads=1)  # noqa: E731
    slow = lambda: numpy_token_stats(x, t, y)  # noqa: E731
    a, b = fast(), slow()
    for k, v in b.items():
        got = getattr(a, k)
        if v.dtype == bool:
            assert np.array_equal(got, v), k
        else:
            np.testing.assert_allclose(got, v, rtol=1e-4, atol=1e-4, err_msg=k)
    times, _ = _bench.interleaved({"fastxent": fast, "numpy": slow}, args.repeat)
    med = {k: statistics.median(v) for k, v in times.items()}
    gb = 2 * x.nbytes / 1e9
    print(f"token_stats with ref_logits, ({args.rows}, {args.vocab}) float32, 1 thread, "
          f"median of {args.repeat}, {fastxent.show_config(print_out=False)['isa']}")
    for k in ("numpy", "fastxent"):
        print(f"  {k:>9}: {med[k] * 1e3:9.1f} ms  {gb / med[k]:6.2f} GB/s of logits")
    print(f"  speed = NumPy time / fastxent time = {med['numpy'] / med['fastxent']:.1f}x")


if __name__ == "__main__":
    main()
