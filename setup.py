"""Build fastxent: one Cython extension over the C kernels in src_c/.

The kernels' per-ISA units are generated from src_c/templates/ into build/fx_generated/ and
compiled each with its ISA's flags; what is built, and with which flags, is src_c/fx_build.py's.

Environment:
  FASTXENT_NO_OPENMP=1   build without OpenMP (serial kernels).
  FASTXENT_SANITIZE=1    add AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g); the module then
                         needs libasan preloaded (tools/run_sanitized_tests.sh does it).
  FASTXENT_SIMDE=1       a test build: the AVX-512 unit compiled without AVX-512 flags (for AVX2 +
                         FMA + F16C), every _mm512_* intrinsic emulated by SIMDe (needs its headers:
                         Debian's libsimde-dev), so that the AVX-512 variant runs on AVX2 CPUs;
                         show_config() lists it under isas_emulated. Slower: not for use.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "src_c"))
import fx_build  # noqa: E402  (src_c/fx_build.py)

GEN_DIR = os.path.join("build", "fx_generated")

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0 && omp_get_max_threads() > 0);
    return 0;
}
"""


def _compiler_works(compiler, source, flags, run=True):
    """Compile, link and run `source` with `flags`; True when it prints 1 (or, with
    run=False, when it compiles)."""
    tmp = tempfile.mkdtemp(prefix="fastxent-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        if not run:
            return True
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
        out = subprocess.run([exe], capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "1"
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


X86_64_PROBE = "#ifndef __x86_64__\n#error not x86-64\n#endif\nint fx_probe;\n"

SANITIZE = os.environ.get("FASTXENT_SANITIZE", "0") not in ("", "0")
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
SIMDE = fx_build.simde_requested()


class BuildExt(build_ext):
    """build_ext that probes for OpenMP and x86-64, then compiles the generated kernel units."""

    def build_extensions(self):
        use_omp, omp_flags = False, ["-fopenmp"]
        if os.environ.get("FASTXENT_NO_OPENMP", "0") not in ("", "0"):
            print("fastxent: FASTXENT_NO_OPENMP is set, building serial kernels", file=sys.stderr)
        else:
            use_omp = _compiler_works(self.compiler, OPENMP_PROBE, omp_flags)
            if not use_omp:
                print("fastxent: OpenMP not found, building serial kernels", file=sys.stderr)
        if use_omp:
            print("fastxent: building with OpenMP", file=sys.stderr)
        if SANITIZE:
            print("fastxent: FASTXENT_SANITIZE is set, building with " + " ".join(SANITIZE_FLAGS), file=sys.stderr)
        cflags = list(fx_build.COMMON_CFLAGS) + (omp_flags if use_omp else [])
        lflags = omp_flags if use_omp else []
        if SANITIZE:  # last, so that -O1 overrides -O3
            cflags += SANITIZE_FLAGS
            lflags += SANITIZE_FLAGS
        # the generated kernel units, each compiled with its ISA's flags (the x86-64 ISAs where
        # the compiler targets x86-64 and takes their flags)
        x86_flags = sorted({f for i in fx_build.ISAS if i.x86 and i.built for f in i.unit_flags(SIMDE)})
        x86 = _compiler_works(self.compiler, X86_64_PROBE, x86_flags, run=False)
        isas = [i for i in fx_build.ISAS if i.built and (x86 or not i.x86)]
        if SIMDE:
            if not x86:
                sys.exit("fastxent: FASTXENT_SIMDE=1 emulates x86-64 AVX-512 on an x86-64 target; this compiler's is not")
            if not _compiler_works(self.compiler, fx_build.SIMDE_PROBE, ["-mavx2", "-mfma", "-mf16c"], run=False):
                sys.exit("fastxent: FASTXENT_SIMDE=1 but <simde/x86/avx512.h> does not compile: install SIMDe "
                         "(Debian/Ubuntu: apt-get install libsimde-dev) or add its directory to CFLAGS as -I...")
            print("fastxent: FASTXENT_SIMDE is set, the " + ", ".join(i.name for i in isas if i.emulated(SIMDE))
                  + " unit with SIMDe's emulated intrinsics (no AVX-512 instructions)", file=sys.stderr)
        units = fx_build.generate(GEN_DIR, isas, SIMDE)
        objs = self.compiler.compile([units[None]], output_dir=self.build_temp, include_dirs=["src_c"],
                                     extra_postargs=cflags, depends=fx_build.template_files())
        for isa in isas:
            objs += self.compiler.compile([units[isa.name]], output_dir=self.build_temp, include_dirs=["src_c"],
                                          extra_postargs=cflags + isa.unit_flags(SIMDE), depends=fx_build.template_files())
        print("fastxent: kernels for " + ", ".join(i.name for i in isas), file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += cflags
            ext.extra_link_args += lflags
            ext.extra_objects += objs
            ext.define_macros += fx_build.dispatch_macros(isas, SIMDE)
            # a unit rewritten by a switch of FASTXENT_SIMDE relinks the extension, and recompiles
            # the dispatcher with its macros
            ext.depends += list(units.values())
        super().build_extensions()


ext = Extension(
    "fastxent._core",
    sources=["fastxent/_core.pyx"] + [os.path.join("src_c", f) for f in fx_build.HAND_WRITTEN],
    include_dirs=[np.get_include(), "src_c"],
    depends=fx_build.template_files() + ["fastxent/_core.pxd"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
)

setup(
    ext_modules=cythonize([ext], language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
