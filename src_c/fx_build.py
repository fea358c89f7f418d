"""What fastxent's C library is made of, and the generator of its per-ISA kernel sources.

The kernels are written once, in templates (src_c/templates/*.c.src): C in which every
function name ends in ``_@dtype@_@isa@`` (or ``_@isa@``, ``_@dtype@``) and whose types and vector
operations are the parameters of src_c/fx_params.h.  `generate` writes one translation unit per
ISA, ``fx_kernels_<isa>.c``, instantiating the templates for every dtype with those markers
replaced, so that each function has its full name in a real source file (``nm`` shows
``fx_xent_float32_avx2``; ``grep -rn fx_xent_float32_avx2 build/fx_generated`` finds it, and
``#line`` directives point compiler messages and debuggers back to the template).  Each of
these units is compiled with its ISA's flags (ISAS below); the ISA-free unit
``fx_kernels_scalar.c`` and the hand-written src_c/*.c with the common flags only.

    python src_c/fx_build.py DIR            # write the generated sources into DIR
    python src_c/fx_build.py --lib DIR      # ... and build DIR/libfastxent.a (for C programs:
                                            # bench/kernel_micro.c, tools/wide_vector_check.c)
        [--cc gcc] [--cflags "-O3 ..."] [--openmp] [--isa emu512] [--simde]

FASTXENT_SIMDE=1 (or --simde) builds the avx512 unit without AVX-512 flags, its intrinsics
emulated by SIMDe (isa/fx_simde_avx512.h): the AVX-512 variant then runs on AVX2 CPUs.

setup.py takes the sources and flags from here (it generates into build/fx_generated/).
"""
import argparse
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: compiler flags of every C file (GCC/Clang: the kernels #error on any other compiler); never -march
COMMON_CFLAGS = ["-O3", "-fno-math-errno", "-Wno-psabi"]

DTYPES = ["float32", "float64", "float16", "bfloat16"]


class Isa:
    def __init__(self, name, prelude, flags, x86, built=True, simde_flags=None):
        self.name = name          # the suffix of every kernel name
        self.prelude = prelude    # lines that select the ISA vocabulary (src_c/isa/)
        self.flags = flags        # its target flags
        self.x86 = x86            # built only where the compiler targets x86-64
        self.built = built        # part of the extension (else: tools only)
        self.simde_flags = simde_flags  # its flags in a SIMDe build (None: built natively there)

    def unit_flags(self, simde=False):
        """The flags of this ISA's unit: its target flags or, in a SIMDe build
        (FASTXENT_SIMDE=1), the flags that compile it with its intrinsics emulated."""
        return self.simde_flags if simde and self.simde_flags is not None else self.flags

    def emulated(self, simde=False):
        return simde and self.simde_flags is not None


#: every ISA variant; the order is fastxent.h's FX_ISA_* (the dispatcher's table rows)
ISAS = [
    Isa("baseline", ['#include "isa/fx_isa_baseline.h"'], [], x86=False),
    Isa("avx2", ['#include "isa/fx_isa_avx2.h"'], ["-mavx2", "-mfma", "-mf16c"], x86=True),
    # SIMDe build: the same unit for AVX2 + FMA + F16C (FMA keeps the contraction of a * b + c
    # that the native unit has), every _mm512_* intrinsic emulated (isa/fx_simde_avx512.h)
    Isa("avx512", ['#include "isa/fx_isa_avx512.h"'],
        ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"], x86=True,
        simde_flags=["-mavx2", "-mfma", "-mf16c"]),
    # the AVX-512 variant's portable code (64-byte vectors, no intrinsics) on AVX2:
    # tools/wide_vector_check.c compares it with the avx2 kernels on CPUs without AVX-512
    Isa("emu512", ["#define FX_VBYTES 64", '#include "isa/fx_isa_generic.h"'],
        ["-mavx2", "-mfma", "-mf16c"], x86=True, built=False),
]

#: templates instantiated in an ISA's unit: once per ISA, then once per dtype, in this order
ISA_TEMPLATES = ["fx_isa.c.src"]
DTYPE_TEMPLATES = ["fx_rows.c.src", "fx_stats.c.src", "fx_ops_row.c.src"]
#: templates of the ISA-free unit fx_kernels_scalar.c (compiled without ISA flags)
SCALAR_TEMPLATES = ["fx_lse_b.c.src"]
SCALAR_DTYPES = ["float32", "float64"]

#: FASTXENT_SIMDE=1: build the ISAs that have simde_flags (avx512) with their intrinsics emulated
#: by SIMDe (libsimde-dev), so that their kernels run, and are tested, on CPUs without them
SIMDE_ENV = "FASTXENT_SIMDE"
SIMDE_PROBE = "#define SIMDE_ENABLE_NATIVE_ALIASES\n#include <simde/x86/avx512.h>\nint fx_probe;\n"


def simde_requested():
    return os.environ.get(SIMDE_ENV, "0") not in ("", "0")


def dispatch_macros(isas, simde=False):
    """The macros of the dispatcher (fx_dispatch.c): which units are built, which emulated."""
    macros = [(f"FX_BUILD_{i.name.upper()}", "1") for i in isas if i.x86]
    macros += [(f"FX_SIMDE_{i.name.upper()}", "1") for i in isas if i.emulated(simde)]
    return macros


#: the hand-written C files of the library (compiled with COMMON_CFLAGS)
HAND_WRITTEN = ["fx_dispatch.c", "fx_state.c", "fx_util.c", "fx_bench.c"]

GENERATED_NOTE = "/* GENERATED by src_c/fx_build.py from src_c/templates/ -- edit the templates, not this file */\n"


def _instance(template, isa, dtype, out_name, out_lines):
    """The template's text with its markers replaced, framed by #line directives."""
    path = os.path.join(HERE, "templates", template)
    with open(path) as f:
        text = f.read()
    if isa is not None:
        text = text.replace("@isa@", isa)
    if dtype is not None:
        text = text.replace("@dtype@", dtype)
    for marker in ("@isa@", "@dtype@"):
        if marker in text:
            raise ValueError(f"{template}: {marker} in a template instantiated without it")
    rel = os.path.relpath(path, ROOT)
    out_lines.append(f'#line 1 "{rel}"\n')
    out_lines.append(text if text.endswith("\n") else text + "\n")
    out_lines.append(f'#line {sum(s.count(chr(10)) for s in out_lines) + 2} "{out_name}"\n')


def _isa_unit(isa, simde):
    name = f"fx_kernels_{isa.name}.c"
    lines = [GENERATED_NOTE,
             f"/* the kernels of ISA {isa.name}: {', '.join(ISA_TEMPLATES)} once, then "
             f"{', '.join(DTYPE_TEMPLATES)} for {', '.join(DTYPES)} */\n"]
    if isa.emulated(simde):  # in the text, not a -D flag: switching builds rewrites the unit
        lines.append(f"#define FX_SIMDE 1 /* {SIMDE_ENV}=1: the intrinsics emulated by SIMDe */\n")
    lines += [p + "\n" for p in isa.prelude]
    lines += ['#include "fx_vmath.h"\n', '#include "fx_common.h"\n', '#include "fx_ops.h"\n']
    for t in ISA_TEMPLATES:
        _instance(t, isa.name, None, name, lines)
    for d in DTYPES:
        lines.append(f"\n/* ---- {d} ---- */\n#define FX_PARAMS_{d.upper()}\n#include \"fx_params.h\"\n")
        for t in DTYPE_TEMPLATES:
            _instance(t, isa.name, d, name, lines)
        lines.append('#include "fx_params_end.h"\n')
    return name, "".join(lines)


def _scalar_unit():
    name = "fx_kernels_scalar.c"
    lines = [GENERATED_NOTE, f"/* the ISA-free kernels: {', '.join(SCALAR_TEMPLATES)} for "
             f"{', '.join(SCALAR_DTYPES)} */\n",
             '#include "fx_common.h"\n', '#include "fx_ops.h"\n']
    for d in SCALAR_DTYPES:
        lines.append(f"\n/* ---- {d} ---- */\n#define FX_PARAMS_{d.upper()}\n#include \"fx_params.h\"\n")
        for t in SCALAR_TEMPLATES:
            _instance(t, None, d, name, lines)
        lines.append('#include "fx_params_end.h"\n')
    return name, "".join(lines)


def generate(out_dir, isas=None, simde=False):
    """Write the generated units into out_dir (unchanged files are not rewritten, so that a
    rebuild compiles only what changed); returns {ISA name or None (ISA-free): path}.
    simde: the units of ISAs with simde_flags emulate their intrinsics (FX_SIMDE)."""
    os.makedirs(out_dir, exist_ok=True)
    units = {None: _scalar_unit()}
    for isa in ISAS if isas is None else isas:
        units[isa.name] = _isa_unit(isa, simde)
    paths = {}
    for key, (name, text) in units.items():
        path = os.path.join(out_dir, name)
        old = None
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        if old != text:
            with open(path, "w") as f:
                f.write(text)
        paths[key] = path
    return paths


def template_files():
    """Every file the generated units are made from (build dependencies)."""
    files = []
    for sub in ("", "templates", "isa"):
        d = os.path.join(HERE, sub)
        files += [os.path.join(d, f) for f in sorted(os.listdir(d))
                  if f.endswith((".h", ".c.src")) or f == "fx_build.py"]
    return files


def build_lib(out_dir, cc, cflags, openmp, extra_isas, simde=False):
    """Compile the whole library into out_dir/libfastxent.a (x86-64 ISAs on x86-64 hosts)."""
    x86 = os.uname().machine in ("x86_64", "amd64")
    isas = [i for i in ISAS if (i.built or i.name in extra_isas) and (x86 or not i.x86)]
    paths = generate(os.path.join(out_dir, "gen"), isas, simde)
    omp = ["-fopenmp"] if openmp else []
    defs = [f"-D{m}={v}" for m, v in dispatch_macros([i for i in isas if i.built], simde)]
    jobs = [(paths[None], [])] + [(paths[i.name], i.unit_flags(simde)) for i in isas]
    jobs += [(os.path.join(HERE, f), []) for f in HAND_WRITTEN]
    objs = []
    for src, flags in jobs:
        obj = os.path.join(out_dir, os.path.basename(src)[:-2] + ".o")
        cmd = [cc, "-c", "-fPIC", *cflags, *omp, *defs, *flags, "-I" + HERE, src, "-o", obj]
        print(" ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
        subprocess.run(cmd, check=True)
        objs.append(obj)
    lib = os.path.join(out_dir, "libfastxent.a")
    if os.path.exists(lib):
        os.remove(lib)
    subprocess.run(["ar", "rcs", lib, *objs], check=True)
    return lib


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--lib", action="store_true", help="also compile DIR/libfastxent.a")
    p.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    p.add_argument("--cflags", default=" ".join(COMMON_CFLAGS),
                   help="flags of every file (default: %(default)s)")
    p.add_argument("--openmp", action="store_true", help="compile with -fopenmp")
    p.add_argument("--isa", action="append", default=[], help="also build this tools-only ISA (emu512)")
    p.add_argument("--simde", action="store_true", default=simde_requested(),
                   help=f"the avx512 unit with SIMDe's emulated intrinsics (default: ${SIMDE_ENV})")
    a = p.parse_args(argv)
    if a.lib:
        print(build_lib(a.dir, a.cc, shlex.split(a.cflags), a.openmp, a.isa, a.simde))
    else:
        for path in generate(a.dir, simde=a.simde).values():
            print(path)


if __name__ == "__main__":
    main()
