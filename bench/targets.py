"""The project's performance targets, judged on one run of ``python -m fastxent bench`` (for developers).

The user-facing benchmark prints measurements and speedups only; the goals the project sets itself
live here.  This script runs the same measurement (`fastxent._bench.run`, the same timing loop and
cases) and prints a verdict per target, or judges a report saved earlier with ``--json``:

    python bench/targets.py                        # full run (~3 min), table then verdicts
    python bench/targets.py --repeat 7
    python bench/targets.py --from-json out.json   # a report of `python -m fastxent bench --json`
    python bench/targets.py --quick                # small shapes: indicative only

The targets are stated for the full run's shapes; on a quick run the verdicts are printed but are
only indicative.  On a shared machine ratios move from run to run: quote a verdict with the run it
came from, and judge a target over several runs (the README quotes the median of three).
Exit status: 0 when every target found in the report is met, 1 otherwise (2 for bad arguments).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# (kind, threads) of a `fastxent._bench.ratios` entry -> (">=" or "<=", value).  "threads" is "1"
# or "all" (fastxent.get_num_threads() threads).  Each applies to every entry of that kind, e.g.
# ce_vs_numpy to both large-vocabulary shapes of the full plan.
TARGETS = {
    ("ce_vs_numpy", "1"): (">=", 6.0),          # cross_entropy, large vocab, float32, vs NumPy
    ("ce_vs_torch", "1"): (">=", 8.0),          # ... vs PyTorch, 1 thread each
    ("small_ce_vs_numpy", "1"): (">=", 10.0),   # (1000000, 10): many rows, few classes
    ("bf16_rate", "1"): (">=", 1.5),            # bfloat16 elements/s vs float32
    ("ce_threads", "all"): (">=", 1.7),         # all threads vs 1
    ("grad_cost", "1"): ("<=", 2.0),            # forward + gradient time / forward time
    ("grad_cost", "all"): ("<=", 2.0),
    ("grad_vs_torch", "1"): (">=", 3.0),        # PyTorch forward + backward / fastxent fwd+grad
    ("grad_vs_torch", "all"): (">=", 3.0),
}


def verdicts(report: dict) -> list:
    """(name, value, target text, met) for every ratio of `report` that has a target."""
    out = []
    for r in report["ratios"]:
        target = TARGETS.get((r["kind"], r["threads"]))
        if target is None:
            continue
        op, bound = target
        met = r["value"] >= bound if op == ">=" else r["value"] <= bound
        out.append((r["name"], r["value"], f"{op} {bound:g}", met))
    return out


def missing(report: dict) -> list:
    """Targets that no ratio of `report` measured (e.g. the PyTorch ones without torch)."""
    seen = {(r["kind"], r["threads"]) for r in report["ratios"]}
    return [k for k in TARGETS if k not in seen]


def print_verdicts(report: dict, out=sys.stdout) -> bool:
    quick = report.get("plan") != "full"
    print(f"targets ({report.get('plan', '?')} run of {report.get('date', '?')}"
          + ("; the targets are stated for the full run's shapes: indicative only" if quick else "")
          + "):", file=out)
    ok = True
    found = verdicts(report)
    width = max((len(v[0]) for v in found), default=0)
    for name, value, target, met in found:
        ok &= met
        print(f"  {name:<{width}} {value:6.2f}x  target {target}: {'met' if met else 'MISSED'}", file=out)
    for kind, threads in missing(report):
        print(f"  {kind} ({threads} thr): not measured in this run (a peer is not installed, or "
              "one thread only)", file=out)
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench/targets.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (indicative only)")
    parser.add_argument("--repeat", type=int, default=None, metavar="N", help="calls per implementation")
    parser.add_argument("--from-json", metavar="PATH",
                        help="judge a report written by `python -m fastxent bench --json PATH` instead "
                             "of running the benchmark")
    parser.add_argument("--json", metavar="PATH", help="also write the run's report to PATH")
    args = parser.parse_args(argv)
    if args.from_json:
        if not os.path.isfile(args.from_json):
            parser.error(f"--from-json: no such file {args.from_json!r}")
        with open(args.from_json) as f:
            report = json.load(f)
        if not all("kind" in r for r in report.get("ratios", [])):
            parser.error(f"--from-json: {args.from_json!r} was written by an older fastxent bench "
                         "(its ratios have no `kind`)")
    else:
        from fastxent import _bench

        repeat = args.repeat if args.repeat is not None else (3 if args.quick else 5)
        report = _bench.run(plan=_bench.QUICK if args.quick else _bench.FULL, repeat=repeat)
        if args.json:
            _bench.write_json(args.json, report)
    return 0 if print_verdicts(report) else 1


if __name__ == "__main__":
    sys.exit(main())
