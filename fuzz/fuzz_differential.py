"""The differential test of tests/test_differential.py, run on more seeds for longer.

tests/test_differential.py checks a fixed set of seeds in CI (a few seconds): logsumexp,
softmax and log_softmax against scipy.special, cross_entropy and its gradient against the
float64 reference, on inputs drawn by fuzz_fastxent.py's decoders.  This driver runs the same
cases (`special_case`/`xent_case` and `check_special`/`check_xent` of that file, imported) on
seeds from -seed= on, alternating the two kinds, until -max_total_time= seconds or -runs= cases:

    python fuzz/fuzz_differential.py -max_total_time=600            # seeds 1000000, 1000001, ...
    python fuzz/fuzz_differential.py -max_total_time=3600 -seed=5000000
    python fuzz/fuzz_differential.py --repro xent:1000123            # replay one case

A failure prints the case (kind:seed), its inputs and the assertion, and exits with status 1;
`--repro kind:seed` replays it (the case is a function of kind and seed only).
"""
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402

import test_differential as td  # noqa: E402


def _describe(v):
    if isinstance(v, np.ndarray):
        return f"ndarray(shape={v.shape}, dtype={v.dtype}, strides={v.strides})"
    return repr(v)


def case(kind: str, seed: int):
    """(description, thunk) of one case."""
    if kind == "special":
        name, x, kw, isa = td.special_case(seed)
        what = f"fastxent.{name}({_describe(x)}, " + ", ".join(f"{k}={_describe(v)}" for k, v in kw.items())
        return f"{what}) [isa={isa}]", lambda: td._run(isa, td.check_special, name, x, kw)
    if kind == "xent":
        x, t, kw, isa = td.xent_case(seed)
        what = f"fastxent.cross_entropy({_describe(x)}, {_describe(t)}, " + ", ".join(
            f"{k}={'<logits>' if v is x else _describe(v)}" for k, v in kw.items())
        return f"{what}, return_grad=True) [isa={isa}]", lambda: td._run(isa, td.check_xent, x, t, kw)
    raise ValueError(f"unknown case kind {kind!r} (special or xent)")


_flag = td.fz._flag  # fuzz_fastxent's libFuzzer-style option reader, loaded by test_differential


def main(argv):
    if "--repro" in argv:
        kind, seed = argv[argv.index("--repro") + 1].split(":")
        what, run = case(kind, int(seed))
        print(what)
        run()
        print(f"{kind}:{seed}: passes")
        return 0
    max_time = float(_flag(argv, "max_total_time", "60"))
    runs = int(_flag(argv, "runs", "-1"))
    seed = int(_flag(argv, "seed", "1000000"))
    t0, n = time.monotonic(), {"special": 0, "xent": 0}
    while (runs < 0 or sum(n.values()) < runs) and time.monotonic() - t0 < max_time:
        for kind in ("special", "xent"):
            what, run = case(kind, seed)
            try:
                run()
            except Exception:
                print(f"\n== FAILURE {kind}:{seed}\n{what}\n{traceback.format_exc()}\n"
                      f"replay: python {sys.argv[0]} --repro {kind}:{seed}", file=sys.stderr)
                return 1
            n[kind] += 1
        seed += 1
    print(f"fuzz_differential: {n['special']} special-function and {n['xent']} cross_entropy cases "
          f"agreed in {time.monotonic() - t0:.0f} s (next seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
