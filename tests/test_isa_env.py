"""``FASTXENT_ISA`` read at import: a valid name caps the instruction set; an unknown one warns
(RuntimeWarning naming the value and the valid names) and leaves the automatic choice, instead of
making ``import fastxent`` fail.  Each case imports fastxent in a fresh interpreter."""
import json
import os
import subprocess
import sys

import pytest

import fastxent

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
