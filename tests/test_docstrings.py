"""The examples in the public docstrings run and print what they say (doctest).

Run against whichever fastxent is imported (the installed package in CI), so a kernel or
API change that alters a documented output fails here.
"""
import doctest
import importlib
import re

import numpy as np
import pytest


class _NumPy1Checker(doctest.OutputChecker):
    """The examples are written for NumPy 2's scalar repr (``np.float64(1.5)``, ``np.True_``);
    NumPy 1.x prints ``1.5`` and ``True``: compare with the NumPy 1.x form there."""

    _SCALAR = re.compile(r"np\.(?:float|int|uint|complex)\d*\(([^()]*)\)")
    _BOOL = re.compile(r"np\.(True|False)_")

    def check_output(self, want, got, optionflags):
        want = self._BOOL.sub(r"\1", self._SCALAR.sub(r"\1", want))
        return super().check_output(want, got, optionflags)


CHECKER = _NumPy1Checker() if np.lib.NumpyVersion(np.__version__) < "2.0.0" else None

MODULES = ["fastxent.special", "fastxent.losses", "fastxent.evaluate", "fastxent._config",
           "fastxent.dask"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "fastxent.dask":
        pytest.importorskip("dask.array")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name, globs={"np": np}) if t.examples]
    if name != "fastxent.dask":
        assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(checker=CHECKER,
                                   optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
