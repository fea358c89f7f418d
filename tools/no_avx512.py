#!/usr/bin/env python3
"""Count the AVX-512 instructions in compiled code: the proof that a FASTXENT_SIMDE=1 build emulates.

    python tools/no_avx512.py fastxent/_core*.so            # exit 1 if any AVX-512 instruction
    python tools/no_avx512.py --expect-some build/.../fx_kernels_avx512.o   # the reverse (a
                                                             # native build: the check sees them)

An instruction counts as AVX-512 when it is EVEX-encoded (its first byte after segment or
address-size prefixes is 0x62, which in 64-bit mode is only EVEX) or when it names a zmm
register, an opmask register %k0-%k7 (the VEX-encoded kmov/kand/... are AVX-512 too) or one of
xmm16-31/ymm16-31.  The disassembly is objdump's (binutils).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

PREFIXES = {"26", "2e", "36", "3e", "64", "65", "67", "f0"}
REGS = re.compile(r"%(zmm\d+|k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b)")


def avx512_instructions(path: str) -> tuple[int, int, list[str]]:
    """(instructions, AVX-512 instructions, the first few of them) in the code of `path`."""
    out = subprocess.run(["objdump", "-d", "--insn-width=15", path], capture_output=True, text=True,
                         check=True).stdout
    total, found = 0, []
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or not fields[0].strip().endswith(":"):
            continue
        total += 1
        code = fields[1].split()
        i = 0
        while i < len(code) and code[i] in PREFIXES:
            i += 1
        if (i < len(code) and code[i] == "62") or REGS.search(fields[2]):
            found.append(line.strip())
    return total, len(found), found[:5]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--expect-some", action="store_true",
                   help="fail unless every file has AVX-512 instructions (a native build)")
    a = p.parse_args(argv)
    if shutil.which("objdump") is None:
        print("no_avx512: objdump (binutils) not found", file=sys.stderr)
        return 2
    bad = False
    for f in a.files:
        total, n, first = avx512_instructions(f)
        print(f"{f}: {n} AVX-512 instructions of {total}")
        for line in first:
            print("    " + line)
        if total == 0 or (n == 0) == a.expect_some:
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
