"""Every C function in the compiled extension has its full name written in a source (issue 16).

A name that a profiler, a debugger or a sanitizer report shows (``fx_xent_float32_avx2``) is found
with grep: in src_c/ or in the sources that src_c/fx_build.py generates from the templates
(setup.py writes them to build/fx_generated/).
"""
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fastxent._core as core

SRC_C = Path(__file__).resolve().parents[1] / "src_c"
SUFFIX = re.compile(r"(\._omp_fn\.\d+|\.(constprop|isra|part|cold|lto_priv)(\.\d+)?)+$")
#: functions the toolchain adds (crt, libgcc's __builtin_cpu_supports); Cython's start with __pyx
TOOLCHAIN = {"deregister_tm_clones", "register_tm_clones", "frame_dummy", "get_available_features",
             "has_cpu_feature", "set_cpu_feature"}


def _fx_build():
    if not (SRC_C / "fx_build.py").exists():
        pytest.skip("no src_c/ next to the tests")
    spec = importlib.util.spec_from_file_location("fx_build", SRC_C / "fx_build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _function_names():
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    out = subprocess.run([nm, core.__file__], capture_output=True, text=True).stdout
    names = {SUFFIX.sub("", f[2]) for f in map(str.split, out.splitlines())
             if len(f) == 3 and f[1] in ("t", "T") and not f[2].startswith(("_", "Py"))} - TOOLCHAIN
    if not any(n.startswith("fx_") for n in names):
        pytest.skip("the extension has no symbol table (stripped)")
    return names


def test_every_function_name_is_spelled_in_a_source(tmp_path):
    fx_build = _fx_build()
    fx_build.generate(str(tmp_path))
    sources = [p for p in SRC_C.rglob("*") if p.suffix in (".c", ".h", ".src")] + list(tmp_path.glob("*.c"))
    words = set()
    for p in sources:
        words.update(re.findall(r"\w+", p.read_text()))
    names = _function_names()
    # the kernels of the baseline ISA and the entry points are among them (the check sees them)
    assert {"fx_lse", "fx_xent_ex", "fx_rows_out_float32_baseline"} <= names
    missing = sorted(names - words)
    assert missing == [], f"functions whose names no source spells: {missing[:20]}"


def test_generated_units_name_every_dtype_and_isa(tmp_path):
    fx_build = _fx_build()
    paths = fx_build.generate(str(tmp_path))
    for isa in fx_build.ISAS:
        text = Path(paths[isa.name]).read_text()
        for dtype in fx_build.DTYPES:
            for op in ("lse", "xent", "xent_ex", "softmax", "token_stats"):
                assert f"static int fx_{op}_{dtype}_{isa.name}(" in text
            assert f"const fx_ops fx_ops_{dtype}_{isa.name} = {{" in text
        assert "@isa@" not in text and "@dtype@" not in text
