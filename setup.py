"""Build fastxent: one Cython extension over the hand-written C kernels in src_c/.

Environment:
  FASTXENT_NO_OPENMP=1   build without OpenMP (serial kernels).
  FASTXENT_SANITIZE=1    add AddressSanitizer + UndefinedBehaviorSanitizer (-O1 -g); the module then
                         needs libasan preloaded (tools/run_sanitized_tests.sh does it).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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


def _compiler_works(compiler, source, flags):
    """Compile, link and run `source` with `flags`; True when it prints 1."""
    tmp = tempfile.mkdtemp(prefix="fastxent-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
        out = subprocess.run([exe], capture_output=True, text=True, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "1"
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SANITIZE = os.environ.get("FASTXENT_SANITIZE", "0") not in ("", "0")
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]


class BuildExt(build_ext):
    """build_ext that probes for OpenMP before compiling."""

    def build_extensions(self):
        use_omp = False
        if os.environ.get("FASTXENT_NO_OPENMP", "0") not in ("", "0"):
            print("fastxent: FASTXENT_NO_OPENMP is set, building serial kernels", file=sys.stderr)
        else:
            omp_cflags, omp_lflags = ["-fopenmp"], ["-fopenmp"]
            use_omp = _compiler_works(self.compiler, OPENMP_PROBE, omp_cflags)
            if not use_omp:
                print("fastxent: OpenMP not found, building serial kernels", file=sys.stderr)
        if use_omp:
            print("fastxent: building with OpenMP", file=sys.stderr)
        if SANITIZE:
            print("fastxent: FASTXENT_SANITIZE is set, building with " + " ".join(SANITIZE_FLAGS), file=sys.stderr)
        for ext in self.extensions:
            ext.extra_compile_args += ["-O3", "-fno-math-errno", "-Wno-psabi"]  # GCC/Clang only (src_c #errors otherwise)
            if use_omp:
                ext.extra_compile_args += omp_cflags
                ext.extra_link_args += omp_lflags
            if SANITIZE:  # last, so that -O1 overrides -O3
                ext.extra_compile_args += SANITIZE_FLAGS
                ext.extra_link_args += SANITIZE_FLAGS
        super().build_extensions()


ext = Extension(
    "fastxent._core",
    sources=["fastxent/_core.pyx"] + sorted(glob.glob("src_c/*.c")),
    include_dirs=[np.get_include(), "src_c"],
    depends=sorted(glob.glob("src_c/*.h") + glob.glob("src_c/*.inc")),
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
)

setup(
    ext_modules=cythonize([ext], language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
