"""Command line: ``python -m fastxent <command>`` (or the ``fastxent`` script).

Commands
--------
bench   time fastxent beside NumPy (and SciPy / PyTorch when installed)
"""
from __future__ import annotations

import argparse
import os
import sys


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _cmd_bench(args) -> int:
    from . import _bench

    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        print(f"fastxent bench: error: --json: no directory for {args.json!r}", file=sys.stderr)
        return 2
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
    cases = _bench.QUICK_CASES if args.quick else _bench.CASES
    rows = _bench.run(cases=cases, repeat=repeat)
    if args.json:
        _bench.write_json(args.json, rows, repeat)
        print(f"wrote {len(rows)} rows to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastxent",
        description="fastxent: fast, numerically stable log-sum-exp and cross-entropy.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    bench = sub.add_parser(
        "bench", help="time fastxent against NumPy (and SciPy, PyTorch if installed)",
        description="Time cross_entropy (mean) and logsumexp (axis=-1) on synthetic logits "
                    "(seeded, 3 * standard normal) for fastxent with 1 and all threads, plain "
                    "stable NumPy in the input dtype, scipy.special.logsumexp and PyTorch when "
                    "importable. Implementations are timed interleaved; the median of the "
                    "repeats is reported. speed = NumPy time / this time.")
    bench.add_argument("--quick", action="store_true",
                       help="small shapes and 3 repeats (a few seconds; CI smoke test)")
    bench.add_argument("--json", metavar="PATH",
                       help="also write the rows and machine info to PATH as JSON")
    bench.add_argument("--repeat", metavar="N", type=_positive_int, default=None,
                       help="timed calls per implementation (default 5; 3 with --quick)")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
