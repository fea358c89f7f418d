"""pytest plugin of tests/test_scipy_suite.py: SciPy's own test_logsumexp.py run on fastxent's functions.

Not a test file (pytest collects ``test_*.py`` only). test_scipy_suite.py starts
``python -m pytest --pyargs scipy.special.tests.test_logsumexp [...test_log_softmax] -p
_scipy_swap_plugin`` in a subprocess with this folder on PYTHONPATH and FASTXENT_SCIPY_SUITE_OUT
naming a JSON file, and this plugin

- after collection, in each of SciPy's test modules collected, rebinds every reference to
  scipy.special's ``logsumexp``, ``softmax`` and ``log_softmax``: a module-level name bound to one
  of them (``from scipy.special import logsumexp``, SciPy's files of every version) becomes a thin
  wrapper of fastxent's function, and a name bound to the scipy.special module itself (``import
  scipy.special as sc``, test_log_softmax.py up to SciPy 1.15) becomes a view of scipy.special
  with those three attributes replaced.  The wrappers call fastxent's functions and note, per
  test, the calls made and whether any argument was complex (the one documented difference:
  fastxent handles real input only);
- records each test's outcome, with the type and first line of the exception of a failure;
- writes all of it to the JSON file at the end of the session, with the versions, the files run,
  where fastxent was imported from and the ISA it uses, which names were rebound and the array
  backend (the `xp` parameter) of each test.
"""
import functools
import json
import os
import sys
import types

import numpy as np
import pytest

import fastxent

TARGETS = ("scipy.special.tests.test_logsumexp", "scipy.special.tests.test_log_softmax")
SWAPPED = ("logsumexp", "softmax", "log_softmax")

_current = None          # the key of the test running now
_tests = {}              # key -> record
_swap = {}               # module name -> {"file", "bound": {name: how}}
_collect_errors = []


def key(item):
    """``test_logsumexp::TestLogSumExp::test_dtypes_a[numpy-complex64]``, whatever the pytest
    version makes of the node id of a file outside the rootdir."""
    return item.module.__name__.rsplit(".", 1)[1] + "::" + item.nodeid.split("::", 1)[1]


def _is_complex(value):
    if value is None:
        return False
    try:
        return bool(np.iscomplexobj(value))
    except Exception:  # an object NumPy cannot read: not complex input as far as we know
        return False


def _wrap(name):
    fast = getattr(fastxent, name)

    @functools.wraps(fast)
    def call(*args, **kwargs):
        if _current is not None:
            rec = _tests.setdefault(_current, {})
            rec.setdefault("calls", {}).setdefault(name, 0)
            rec["calls"][name] += 1
            if any(_is_complex(v) for v in list(args) + list(kwargs.values())):
                rec["complex_input"] = True
        return fast(*args, **kwargs)

    call.__wrapped_fastxent__ = fast
    return call


class _SpecialView(types.ModuleType):
    """scipy.special with logsumexp, softmax and log_softmax bound to fastxent's."""

    def __init__(self, special, wrappers):
        super().__init__(special.__name__)
        self.__dict__.update(wrappers)
        self._special = special

    def __getattr__(self, attr):
        return getattr(self._special, attr)


def _swap_module(module):
    import scipy.special
    wrappers = {name: _wrap(name) for name in SWAPPED}
    bound = {}
    for attr, value in list(vars(module).items()):
        for name in SWAPPED:
            if value is getattr(scipy.special, name):
                setattr(module, attr, wrappers[name])
                bound[name] = attr
        if value is scipy.special:
            setattr(module, attr, _SpecialView(scipy.special, wrappers))
            for name in SWAPPED:
                if getattr(getattr(module, attr), name).__wrapped_fastxent__ is getattr(fastxent, name):
                    bound.setdefault(name, f"{attr}.{name}")
    _swap[module.__name__] = {"file": module.__file__, "bound": bound}


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in TARGETS and module.__name__ not in _swap:
            _swap_module(module)


def pytest_collectreport(report):
    if report.failed:
        _collect_errors.append({"nodeid": report.nodeid, "message": str(report.longrepr)[-2000:]})


def pytest_runtest_setup(item):
    global _current
    _current = key(item)
    rec = _tests.setdefault(_current, {})
    spec = getattr(item, "callspec", None)
    xp = spec.params.get("xp") if spec is not None else None
    rec["xp"] = getattr(xp, "__name__", None if xp is None else repr(xp))


def pytest_runtest_teardown(item):
    global _current
    _current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    rec = _tests.setdefault(key(item), {})
    if report.failed:
        if rec.get("outcome") in (None, "passed", "xpassed"):  # the first failure of the test counts
            rec["outcome"] = "failed" if report.when == "call" else "error in " + report.when
            exc = call.excinfo
            rec["exc_type"] = exc.typename if exc is not None else None
            text = str(exc.value).strip() if exc is not None else str(report.longrepr)
            rec["message"] = text.splitlines()[0] if text else ""
    elif report.skipped:
        rec["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call":
        rec["outcome"] = "xpassed" if hasattr(report, "wasxfail") else "passed"


def pytest_sessionfinish(session, exitstatus):
    import scipy
    out = os.environ["FASTXENT_SCIPY_SUITE_OUT"]
    data = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pytest": pytest.__version__,
        "fastxent_file": fastxent.__file__,
        "isa": fastxent.show_config(print_out=False)["isa"],
        "scipy_array_api": os.environ.get("SCIPY_ARRAY_API"),
        "swap": _swap,
        "collect_errors": _collect_errors,
        "tests": _tests,
    }
    with open(out, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
