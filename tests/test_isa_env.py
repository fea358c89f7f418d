"""``FASTXENT_ISA`` read at import: a valid name caps the instruction set; an unknown one warns
(RuntimeWarning naming the value and the valid names) and leaves the automatic choice, instead of
making ``import fastxent`` fail.  Each case imports fastxent in a fresh interpreter."""
import json
import os
import subprocess
import sys

import pytest

import fastxent
from conftest import SESSION_ISA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
PROBE = ("import json, warnings\n"
         "with warnings.catch_warnings(record=True) as w:\n"
         "    warnings.simplefilter('always')\n"
         "    import fastxent\n"
         "print(json.dumps({'isa': fastxent.show_config(print_out=False)['isa'],\n"
         "                  'warnings': [[c.category.__name__, str(c.message)] for c in w]}))\n")


def import_with(value):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTXENT_ISA", None)
    if value is not None:
        env["FASTXENT_ISA"] = value
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_unknown_isa_warns_and_falls_back():
    auto = import_with(None)
    assert auto["warnings"] == [] and auto["isa"] == fastxent.available_isas()[-1]
    got = import_with("foo")
    assert got["isa"] == auto["isa"]
    assert got["warnings"] == [[
        "RuntimeWarning",
        "FASTXENT_ISA='foo' is not one of baseline, avx2, avx512; ignoring it and choosing the best "
        "instruction set this CPU supports"]]


@pytest.mark.parametrize("value", ["baseline", " Baseline ", ""])
def test_valid_isa_is_used_silently(value):
    got = import_with(value)
    assert got["warnings"] == []
    assert got["isa"] == ("baseline" if value.strip() else fastxent.available_isas()[-1])


def test_session_isa_follows_the_environment():
    """The suite runs on the ISA FASTXENT_ISA names (capped at what this CPU runs)."""
    names = ["baseline", "avx2", "avx512"]
    cap = os.environ.get("FASTXENT_ISA", "").strip().lower()
    limit = names.index(cap) if cap in names else len(names) - 1
    assert SESSION_ISA == [n for n in fastxent.available_isas() if names.index(n) <= limit][-1]


def test_a_test_that_leaves_the_best_isa():
    fastxent.set_isa(None)  # as several tests restore: the best ISA, not the session's
    other = [n for n in fastxent.available_isas() if n != SESSION_ISA]
    if other:
        fastxent.set_isa(other[0])
    assert fastxent.show_config(print_out=False)["isa"] != SESSION_ISA or not other


def test_the_next_test_runs_on_the_session_isa():
    """(after the test above, in file order) the autouse fixture of conftest put the ISA back"""
    assert fastxent.show_config(print_out=False)["isa"] == SESSION_ISA


def test_emulated_isas_are_the_expected_compiled_ones():
    """``isas_emulated`` lists compiled variants only; where the build is known (CI's SIMDe step
    sets FASTXENT_EXPECT_EMULATED=avx512, a native build's runs may set it empty), it is exactly
    that list and each of them runs here, so that a SIMDe job cannot silently test native code."""
    cfg = fastxent.show_config(print_out=False)
    assert set(cfg["isas_emulated"]) <= set(cfg["isas_compiled"])
    expected = os.environ.get("FASTXENT_EXPECT_EMULATED")
    if expected is None:
        pytest.skip("FASTXENT_EXPECT_EMULATED is not set: the build's emulated ISAs are not known")
    assert cfg["isas_emulated"] == [n for n in expected.split(",") if n]
    assert set(cfg["isas_emulated"]) <= set(fastxent.available_isas())
