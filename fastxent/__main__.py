"""Command line: ``python -m fastxent <command>`` (or the ``fastxent`` script).

Commands
--------
bench   time fastxent beside NumPy (and SciPy / PyTorch when installed); --plot draws a chart
eval    perplexity, accuracy and KL statistics of saved logits
selftest  check every instruction-set variant this CPU runs against the float64 reference
"""
from __future__ import annotations

import argparse
import os
import sys

from ._cli_eval import _positive_int, add_eval_parser


def _version() -> str:
    from . import __version__
    return __version__




def _cmd_bench(args) -> int:
    from . import _bench

    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            print(f"fastxent bench: error: {flag}: no directory for {path!r}", file=sys.stderr)
            return 2
    if args.plot and not _bench.have_matplotlib():
        print(f"fastxent bench: error: {_bench.PLOT_HINT}", file=sys.stderr)
        return 2
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    report = _bench.run(plan=_bench.QUICK if args.quick else _bench.FULL, repeat=repeat,
                        sweep=bool(args.plot))
    if args.json:
        _bench.write_json(args.json, report)
        print(f"wrote {len(report['rows']) + len(report['sweep'])} rows to {args.json}")
    if args.plot:
        _bench.plot(report, args.plot)
        print(f"wrote the chart to {args.plot}")
    return 0


def _cmd_selftest(args) -> int:
    from . import _selftest, available_isas

    isas = available_isas()
    unknown = [i for i in args.isa or [] if i not in isas]
    if unknown:
        print(f"fastxent selftest: error: --isa {unknown[0]!r} is not available here "
              f"(available: {', '.join(isas)})", file=sys.stderr)
        return 2
    return 0 if _selftest.run(isas=args.isa or None, verbose=args.verbose) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastxent",
        description="fastxent: fast, numerically stable log-sum-exp and cross-entropy.")
    parser.add_argument("--version", action="version", version=f"fastxent {_version()}",
                        help="print the version of fastxent and exit")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    bench = sub.add_parser(
        "bench", help="time fastxent against NumPy (and SciPy, PyTorch if installed)",
        description="Time cross_entropy (mean), logsumexp (axis=-1) and cross_entropy forward + "
                    "gradient on synthetic logits (seeded, 3 * standard normal) in float32, "
                    "float64, float16 and bfloat16 (with ml_dtypes), for fastxent with 1 and all "
                    "threads beside plain stable NumPy, scipy.special.logsumexp and PyTorch "
                    "(1 and all threads) when importable. Implementations are timed "
                    "interleaved; the median of the repeats is reported with GB/s, "
                    "speed = NumPy time / this time, and the fraction of the memory read "
                    "bandwidth measured in the same run. Also prints the peak extra memory "
                    "of one call and the speedups that summarise the table. --plot adds a "
                    "sweep of vocabulary sizes and draws it.")
    bench.add_argument("--quick", action="store_true",
                       help="small shapes, 3 repeats, 256 MiB bandwidth probe (a few seconds; CI smoke test)")
    bench.add_argument("--json", metavar="PATH",
                       help="also write the rows, machine info, bandwidth, peak memory and ratios to PATH as JSON")
    bench.add_argument("--repeat", metavar="N", type=_positive_int, default=None,
                       help="timed calls per implementation (default 5; 3 with --quick)")
    bench.add_argument("--plot", metavar="PATH",
                       help="also time cross_entropy and logsumexp (float32) over vocabulary sizes "
                            "1k..256k at a fixed number of elements and draw throughput against "
                            "vocabulary size to PATH (PNG; needs matplotlib: "
                            'pip install "fastxent[plot]")')
    bench.set_defaults(func=_cmd_bench)
    add_eval_parser(sub)
    selftest = sub.add_parser(
        "selftest", help="check every ISA variant this CPU runs (a few seconds; exit status 1 on a failure)",
        description="Check every instruction-set variant this CPU runs (fastxent.available_isas()) "
                    "against the float64 reference (fastxent.reference) and against the baseline "
                    "variant, on a fixed grid: logsumexp (with and without b), softmax, log_softmax, "
                    "cross_entropy (weights, ignore_index, label smoothing, z-loss, softcap, probability "
                    "targets; reductions none/sum/mean; the gradient), perplexity, token_stats with "
                    "reference logits and kl_divergence, in float32, float64, float16 and bfloat16, "
                    "four layouts, 1 and 2 threads; plus the adversarial accuracy catalogue "
                    "(logsumexp, cross_entropy and log_softmax within 2 ulp). Results are compared "
                    "within the test suite's tolerances, not bitwise (ISAs sum in different orders). "
                    "Prints one line per ISA and a verdict; exit status 0 when every ISA passes, 1 "
                    "otherwise.")
    selftest.add_argument("--isa", action="append", metavar="NAME",
                          help="check only this ISA (repeatable; the baseline is always checked, as the "
                               "others are compared with it)")
    selftest.add_argument("-v", "--verbose", action="store_true", help="list every failed check")
    selftest.set_defaults(func=_cmd_selftest)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
