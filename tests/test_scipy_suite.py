"""SciPy's own tests of logsumexp, softmax and log_softmax, run on fastxent's functions.

SciPy wheels ship ``scipy/special/tests/test_logsumexp.py`` (and, up to SciPy 1.15,
``test_log_softmax.py``); this test runs the installed copies (never a copy in this repository)
in a subprocess, once per ISA this CPU has (``FASTXENT_ISA``),

    python -m pytest --pyargs scipy.special.tests.test_logsumexp [...] -p _scipy_swap_plugin

with ``SCIPY_ARRAY_API`` unset, so that SciPy's ``xp`` fixture is NumPy only.  The plugin
(tests/_scipy_swap_plugin.py) rebinds the test modules' ``logsumexp``, ``softmax`` and
``log_softmax`` to fastxent's functions after collection and writes every test's outcome to a JSON
file, which is checked here:

- the swap took effect: the three names were SciPy's functions and are fastxent's (the fastxent
  this process imports, with the ISA asked for), and each of them is called by a test that passes;
- at least MIN_TESTS tests ran, every one of them with the NumPy backend;
- every failure is a documented difference (DOCUMENTED: what selects the tests it covers, the
  exception they must fail with, the reason), and every test a documented difference selects
  fails that way.  So a new failure fails this test, and so does a documented difference that
  starts passing (its entry must then go, and the README's list with it).

Skipped, with the reason, when SciPy or its test file is not installed, and for the one
combination of the support window in which SciPy's file cannot run (INCOMPATIBLE).

Counts, per ISA (each run prints them; ``test_wrap_radians``, of a SciPy helper that calls no
fastxent function, included where the file has it):

    SciPy   Python  NumPy   pytest  ran  passed  failed  documented
    1.11.1  3.10    1.26.0  7.0.0    20      20       0           0   (10 of them test_log_softmax.py)
    1.12.0  3.10    1.26.0  7.0.0    20      20       0           0
    1.13.1  3.10    1.26.0  7.0.0    21      20       1           1
    1.14.1  3.10    1.26.0  7.0.0    21      20       1           1
    1.15.3  3.10    1.26.0  7.1.3    72      46      26          26   (skipped on pytest 7.0)
    1.16.3  3.11    2.4.6   9.2.0   405      58     347         347
    1.17.1  3.11    2.4.6   9.2.0   407      60     347         347
    1.18.1  3.13    2.5.5   9.2.0   407      60     347         347
"""
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

import fastxent

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = "scipy.special.tests.test_logsumexp"
# SciPy up to 1.15 tests log_softmax in a file of its own, run too where it is installed
OPTIONAL_MODULES = ("scipy.special.tests.test_log_softmax",)
SWAPPED = ("logsumexp", "softmax", "log_softmax")
MIN_TESTS = 20   # the fewest of the SciPy versions supported (1.11, 1.12): see the counts above
# (SciPy (major, minor), the first pytest that runs its file, why): combinations of the support
# window (pyproject.toml: SciPy >= 1.11.1, pytest >= 7) in which SciPy's own file cannot run.
INCOMPATIBLE = [
    ((1, 15), (7, 1), "SciPy 1.15's conftest.py (fixture skip_xp_backends) reads "
                      "request.keywords[...].args, which pytest 7.0 gives as True, not the marker: "
                      "every test errors in setup, before it calls anything"),
]


@dataclasses.dataclass(frozen=True)
class Difference:
    """A documented way in which fastxent fails tests of SciPy's file.

    `selects(record)` says which tests it covers, from what the plugin recorded of the test's
    calls; each of them must fail with `exc_type` and a message whose first line matches
    `message`."""
    key: str
    reason: str
    selects: object
    exc_type: str
    message: str


DOCUMENTED = [
    Difference(
        key="complex input",
        reason="fastxent handles real input only (README, dtypes): a complex `a`, `b` or `x` raises "
               "TypeError naming the argument, where SciPy computes the complex logarithm (its "
               "phase wrapped to (-pi, pi]). Covers every test that gives complex input to one of "
               "the three functions: test_logsumexp_complex_sign, test_gh21610, "
               "test_gh21709_small_imaginary and the complex cases of test_dtypes_a, test_dtypes_ab, "
               "test_gh22601_infinite_elements and test_device.",
        selects=lambda rec: bool(rec.get("complex_input")),
        exc_type="TypeError",
        message=r"`(a|b|x)` is complex \(complex(64|128)\); fastxent handles real input only ",
    ),
]


def _version(v):
    return tuple(int(p) for p in re.findall(r"\d+", v)[:2])


def _find(module):
    """The file of `module`, or None, and why not."""
    try:
        spec = importlib.util.find_spec(module)
    except ImportError as exc:   # scipy.special.tests itself missing (a distribution that strips tests)
        return None, str(exc)
    if spec is None or spec.origin is None or not os.path.isfile(spec.origin):
        return None, "no such module"
    return spec.origin, None


def _locate():
    """The installed SciPy and {module: file} of its test files: test_logsumexp.py (else skip,
    saying why) and those of OPTIONAL_MODULES it has."""
    scipy = pytest.importorskip("scipy", reason="SciPy is not installed (a test dependency)")
    path, why = _find(MODULE)
    if path is None:
        pytest.skip(f"SciPy {scipy.__version__} at {os.path.dirname(scipy.__file__)} does not ship "
                    f"{MODULE.replace('.', '/')}.py ({why})")
    files = {MODULE: path}
    for module in OPTIONAL_MODULES:
        path, _ = _find(module)
        if path is not None:
            files[module] = path
    return scipy, files


def _run(tmp_path, modules, isa):
    """Run SciPy's files with the plugin; the plugin's JSON record and pytest's output."""
    out = tmp_path / "scipy_suite.json"
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")   # the rootdir: neither this repository's pytest configuration nor SciPy's
    env = {k: v for k, v in os.environ.items() if k not in ("SCIPY_ARRAY_API", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(fastxent.__file__)),
                                                    HERE, os.environ.get("PYTHONPATH", "")] if p)
    env["FASTXENT_SCIPY_SUITE_OUT"] = str(out)
    env["FASTXENT_ISA"] = isa
    cmd = [sys.executable, "-m", "pytest", "--pyargs", *modules, "-p", "_scipy_swap_plugin",
           "-c", str(ini), "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", "--tb=no"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    output = f"$ {' '.join(cmd)}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode in (0, 1), f"pytest did not run SciPy's tests:\n{output}"
    assert out.is_file(), f"the plugin wrote no record:\n{output}"
    return json.loads(out.read_text()), output


@pytest.mark.parametrize("isa", fastxent.available_isas())
def test_scipy_logsumexp_suite(tmp_path, isa):
    scipy, files = _locate()
    for scipy_version, pytest_version, why in INCOMPATIBLE:
        if _version(scipy.__version__) == scipy_version and _version(pytest.__version__) < pytest_version:
            pytest.skip(f"SciPy {scipy.__version__}'s tests need pytest >= "
                        f"{'.'.join(map(str, pytest_version))} (installed: {pytest.__version__}): {why}")
    data, output = _run(tmp_path, list(files), isa)
    assert data["scipy"] == scipy.__version__
    assert data["scipy_array_api"] is None
    assert not data["collect_errors"], data["collect_errors"]

    # The swap took effect, in the files located here, with the fastxent imported here: each of the
    # three functions rebound in some file (the plugin rebinds only names bound to SciPy's own),
    # test_logsumexp.py's logsumexp among them.
    swap = data["swap"]
    assert set(swap) == set(files), (swap, files)
    for module, path in files.items():
        assert os.path.realpath(swap[module]["file"]) == os.path.realpath(path), swap
    assert "logsumexp" in swap[MODULE]["bound"], swap
    assert {n for s in swap.values() for n in s["bound"]} == set(SWAPPED), swap
    assert os.path.realpath(data["fastxent_file"]) == os.path.realpath(fastxent.__file__)
    assert data["isa"] == isa

    tests = data["tests"]
    assert len(tests) >= MIN_TESTS, f"only {len(tests)} tests ran:\n{output}"
    backends = Counter(rec.get("xp") for rec in tests.values())
    assert set(backends) <= {"numpy", None}, backends

    problems, per_rule, per_test = [], Counter(), Counter()
    for name, rec in sorted(tests.items()):
        outcome = rec.get("outcome")
        rules = [d for d in DOCUMENTED if d.selects(rec)]
        assert len(rules) <= 1, (name, [d.key for d in rules])
        if rules:
            (d,) = rules
            per_rule[d.key] += 1
            per_test[name.split("[")[0].rsplit("::", 1)[1]] += 1
            if outcome != "failed":
                problems.append(f"{name}: documented difference {d.key!r}, but {outcome}: if fastxent "
                                "now passes it, narrow or remove the entry (DOCUMENTED and the README)")
            elif rec["exc_type"] != d.exc_type or not re.match(d.message, rec["message"]):
                problems.append(f"{name}: documented difference {d.key!r}, but it failed with "
                                f"{rec['exc_type']}: {rec['message']}")
        elif outcome != "passed":
            problems.append(f"{name}: {outcome}, {rec.get('exc_type')}: {rec.get('message')} "
                            f"(calls: {rec.get('calls')})")

    outcomes = Counter(rec.get("outcome") for rec in tests.values())
    others = {k: v for k, v in outcomes.items() if k not in ("passed", "failed")}
    print(f"\nSciPy {data['scipy']} (Python {data['python']}, NumPy {data['numpy']}, pytest "
          f"{data['pytest']}, ISA {data['isa']}), {', '.join(m.rsplit('.', 1)[1] for m in files)}: "
          f"{len(tests)} ran, {outcomes['passed']} passed, {outcomes['failed']} failed, "
          f"{sum(per_rule.values())} documented ({dict(per_rule)}; per test {dict(per_test.most_common())})"
          + (f", other outcomes {others}" if others else ""))
    assert not problems, "\n".join(problems)
    # each of the three is called by a test that passes (a swap that reached nothing cannot pass)
    passing_calls = Counter(n for rec in tests.values() if rec.get("outcome") == "passed"
                            for n in rec.get("calls", {}))
    assert set(passing_calls) == set(SWAPPED), passing_calls


@pytest.mark.parametrize("missing", ["scipy", "file", "package"])
def test_skips_with_the_reason(monkeypatch, missing):
    """No SciPy, or a SciPy without its tests: a skip that says what is missing, not a failure."""
    pytest.importorskip("scipy")
    if missing == "scipy":
        monkeypatch.setitem(sys.modules, "scipy", None)   # `import scipy` raises ImportError
        match = "SciPy is not installed"
    elif missing == "file":
        monkeypatch.setattr(sys.modules[__name__], "MODULE", "scipy.special.tests.test_not_shipped")
        match = r"does not ship scipy/special/tests/test_not_shipped\.py \(no such module\)"
    else:
        monkeypatch.setattr(sys.modules[__name__], "MODULE", "scipy.special.no_tests.test_logsumexp")
        match = r"does not ship scipy/special/no_tests/test_logsumexp\.py \(No module named"
    with pytest.raises(pytest.skip.Exception, match=match):
        _locate()
