"""The examples in the public docstrings run and print what they say (doctest), and every public
function, class, method and property has such an example.

Run against whichever fastxent is imported (the installed package in CI), so a kernel or
API change that alters a documented output fails here.  The `fastxent.dask` examples need dask
(the test extra has it) and are skipped cleanly without it.
"""
import doctest
import importlib
import inspect
import io
import re

import numpy as np
import pytest

import fastxent


class _NumPy1Checker(doctest.OutputChecker):
    """The examples are written for NumPy 2's scalar repr (``np.float64(1.5)``, ``np.True_``);
    NumPy 1.x prints ``1.5`` and ``True``: compare with the NumPy 1.x form there."""

    _SCALAR = re.compile(r"np\.(?:float|int|uint|complex)\d*\(([^()]*)\)")
    _BOOL = re.compile(r"np\.(True|False)_")

    def check_output(self, want, got, optionflags):
        want = self._BOOL.sub(r"\1", self._SCALAR.sub(r"\1", want))
        return super().check_output(want, got, optionflags)


CHECKER = _NumPy1Checker() if np.lib.NumpyVersion(np.__version__) < "2.0.0" else None

# the modules that define public functions and classes (fastxent.evaluate re-exports those of
# _per_token, _evaluator and _report)
MODULES = ["fastxent.special", "fastxent.losses", "fastxent._per_token", "fastxent._evaluator",
           "fastxent._report", "fastxent._config", "fastxent.dask", "fastxent.torch"]


def _module(name):
    if name == "fastxent.dask":
        pytest.importorskip("dask.array")
        pytest.importorskip("distributed")
    if name == "fastxent.torch":
        pytest.importorskip("torch")
    return importlib.import_module(name)


def _doctests(module, name):
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, name, globs={"np": np}) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = _module(name)
    tests = _doctests(module, name)
    assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(checker=CHECKER,
                                   optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for t in tests:
        runner.run(t, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, (f"{result.failed} of {result.attempted} examples in {name} failed:\n"
                                + report.getvalue())


def _public_members(cls):
    """Public methods, classmethods, staticmethods and properties defined by `cls` itself."""
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            yield attr


# public types that are returned rather than exported by name
RETURNED_TYPES = ["TokenStats"]


def _public_api():
    """(qualified name, module name) of everything a user is promised: fastxent.__all__,
    fastxent.evaluate.__all__ and fastxent.dask.__all__ (functions and classes), the types they
    return, and the public members of those classes."""
    out = []
    for pkg, names in (("fastxent", list(fastxent.__all__) + RETURNED_TYPES), ("fastxent.evaluate", None),
                       ("fastxent.dask", None)):
        if names is None:
            try:
                mod = importlib.import_module(pkg)
            except ImportError:
                continue
            names = mod.__all__
        else:
            mod = fastxent
        for n in names:
            obj = getattr(mod, n) if hasattr(mod, n) else getattr(fastxent.evaluate, n)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue                     # `reference`, `__version__`
            out.append((f"{obj.__module__}.{obj.__qualname__}", obj.__module__))
            if inspect.isclass(obj):
                out += [(f"{obj.__module__}.{obj.__qualname__}.{m}", obj.__module__)
                        for m in _public_members(obj)]
    return sorted(set(out))


def test_every_public_callable_has_an_example():
    api = _public_api()
    names = {q for q, _ in api}
    # the list covers what it should (so that a change to the collection cannot empty it)
    assert {"fastxent.losses.cross_entropy", "fastxent._evaluator.Evaluator.update",
            "fastxent._evaluator.Evaluator.from_state_dict", "fastxent._evaluator.Evaluator.has_ref",
            "fastxent._per_token.TokenStats.as_dict", "fastxent._report.format_report",
            "fastxent._config.show_config"} <= names
    found = set()
    for mod in {m for _, m in api}:
        found |= {t.name for t in _doctests(importlib.import_module(mod), mod)}
    missing = sorted(names - found)
    assert not missing, f"public callables without a runnable example: {missing}"
    for qual, mod in api:                    # numpydoc: the example sits in an Examples section
        obj = importlib.import_module(mod)
        for part in qual[len(mod) + 1:].split("."):
            obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
        if isinstance(obj, (classmethod, staticmethod)):
            obj = obj.__func__
        doc = inspect.cleandoc(obj.__doc__ or "")
        assert "\nExamples\n--------\n" in doc, f"{qual}: no numpydoc Examples section"


def test_dask_functions_have_examples():
    mod = _module("fastxent.dask")
    found = {t.name.rsplit(".", 1)[-1] for t in _doctests(mod, "fastxent.dask")}
    assert set(mod.__all__) <= found, sorted(set(mod.__all__) - found)
    # and they run: no example is skipped
    for t in _doctests(mod, "fastxent.dask"):
        assert not any(ex.options.get(doctest.SKIP) for ex in t.examples), t.name
