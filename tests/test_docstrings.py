"""The examples in the public docstrings run and print what they say (doctest).

Run against whichever fastxent is imported (the installed package in CI), so a kernel or
API change that alters a documented output fails here.
"""
import doctest
import importlib

import numpy as np
import pytest

MODULES = ["fastxent.special", "fastxent.losses", "fastxent.evaluate", "fastxent._config",
           "fastxent.dask", "fastxent.torch"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "fastxent.dask":
        pytest.importorskip("dask.array")
    if name == "fastxent.torch":
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name, globs={"np": np}) if t.examples]
    if name != "fastxent.dask":
        assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
