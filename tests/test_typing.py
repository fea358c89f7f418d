"""Types: fastxent ships ``py.typed``, and what its annotations say is what comes back.

* ``mypy --strict`` on tests/typecheck/user_script.py (a user's script calling every public
  function and method) and on user_script_dask.py (fastxent.dask) passes, and the types it
  reveals are the real ones (skipped when mypy, or dask, is not installed);
* the same scripts run, their ``isinstance`` checks confirming those types at run time;
* the TypedDicts of `fastxent.typing` have exactly the keys (and value types) of the dicts
  `Evaluator.report`, `reference.evaluate_reference` and `show_config` return;
* the stub ``fastxent/_core.pyi`` names exactly the functions and constants of the compiled
  module.

mypy checks the fastxent that this test imports: the installed package in CI, which mypy
reads from site-packages only because of its ``py.typed``, as it does for a user.
"""
import ast
import os
import re
import runpy
import subprocess
import sys
import sysconfig
import typing

import numpy as np
import pytest

import fastxent
from fastxent import _core, reference
from fastxent.typing import EvaluatorReport, EvaluatorReportBase, Percentiles, ShowConfig

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "typecheck", "user_script.py")
DASK_SCRIPT = os.path.join(HERE, "typecheck", "user_script_dask.py")
PACKAGE = os.path.dirname(os.path.abspath(fastxent.__file__))

_FLOAT = r"numpy\.floating\[Any\]"
_ARR = r"numpy\.ndarray\[[^\[\]]*(\[[^\]]*\])?[^\[\]]*, numpy\.dtype\[numpy\.floating\[Any\]\]\]"
_BOOLARR = r"numpy\.ndarray\[[^\[\]]*(\[[^\]]*\])?[^\[\]]*, numpy\.dtype\[numpy\.bool(_|\[builtins\.bool\]|\[bool\])?\]\]"
_REPORT = r"TypedDict\('?fastxent\.typing\.EvaluatorReport'?, \{.*\}\)"
_PCT = r"TypedDict\('?fastxent\.typing\.Percentiles'?, \{.*\}\)"
# name (the `# R: name` marker in the script) -> the revealed type, as a regex of the whole text
EXPECTED = {
    "logsumexp": _FLOAT,
    "logsumexp_axis": _ARR,
    "logsumexp_sign": _FLOAT,
    "softmax": _ARR,
    "log_softmax": _ARR,
    "cross_entropy": _FLOAT,
    "cross_entropy_sum": _FLOAT,
    "cross_entropy_none": _ARR,
    "cross_entropy_grad": rf"tuple\[{_FLOAT}, {_ARR}\]",
    "cross_entropy_z_grad": rf"tuple\[{_FLOAT}, {_FLOAT}, {_ARR}\]",
    "perplexity": _FLOAT,
    "perplexity_seq": _ARR,
    "token_stats": rf"fastxent\._per_token\.TokenStats\[{_ARR}, {_BOOLARR}\]",
    "token_stats_kl": rf"({_ARR} \| None|None \| {_ARR})",
    "kl_divergence": _ARR,
    "kl_divergence_mean": _FLOAT,
    "report": _REPORT,
    "report_tokens": r"builtins\.int|int",
    "report_percentiles": rf"({_PCT} \| None|None \| {_PCT})",
    "merge": r"fastxent\._evaluator\.Evaluator",
    "state_dict": r"(builtins\.)?dict\[(builtins\.)?str, Any\]",
    "show_config": r"TypedDict\('?fastxent\.typing\.ShowConfig'?, \{.*\}\)",
    "set_num_threads": r"(builtins\.)?int \| None|None \| (builtins\.)?int",
    "reference_cross_entropy": rf"{_FLOAT} \| {_ARR} \| .*",
    "reference_report": _REPORT,
}
_DASK = r"dask\.array\.core\.Array"
EXPECTED_DASK = {
    "dask_cross_entropy": _DASK,
    "dask_token_stats": rf"fastxent\._per_token\.TokenStats\[{_DASK}, {_DASK}\]",
    "dask_token_stats_same_top": rf"({_DASK} \| None|None \| {_DASK})",
    "dask_evaluate": r"dask\.delayed\.Delayed",
    "dask_from_npy": _DASK,
}


def _markers(script):
    with open(script) as f:
        return {i: m.group(1) for i, line in enumerate(f, 1) if (m := re.search(r"# R: (\w+)\s*$", line))}


def test_py_typed_ships_with_the_package():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    assert os.path.isfile(os.path.join(PACKAGE, "_core.pyi"))


def test_user_script_runs():
    runpy.run_path(SCRIPT, run_name="__main__")


def test_dask_user_script_runs():
    pytest.importorskip("dask.array")
    runpy.run_path(DASK_SCRIPT, run_name="__main__")


def _mypy(tmp_path, script, *flags):
    """(exit status, output) of ``mypy --strict`` on `script` against the imported fastxent."""
    cmd = [sys.executable, "-m", "mypy", "--strict", *flags, "--follow-imports=silent", "--no-error-summary",
           "--cache-dir", str(tmp_path / "cache"), "--python-executable", sys.executable, script]
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    parent = os.path.dirname(PACKAGE)
    site_dirs = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    if os.path.realpath(parent) not in site_dirs:
        # an in-place build: mypy reads the source tree (an installed fastxent is found, as a
        # user's mypy finds it, in site-packages, where it is read only because of py.typed)
        env["MYPYPATH"] = parent
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    return res.returncode, res.stdout + res.stderr


def _check_revealed(script, status, out, expected):
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 0 and not errors, out
    name = re.escape(os.path.basename(script))
    revealed = {}
    for line in out.splitlines():
        m = re.match(rf'.*{name}:(\d+): note: Revealed type is "(.*)"$', line)
        if m:
            revealed[int(m.group(1))] = m.group(2)
    markers = _markers(script)
    assert set(markers.values()) == set(expected), "every marker has an expected type"
    assert set(revealed) == set(markers), out
    wrong = {markers[n]: t for n, t in revealed.items() if not re.fullmatch(expected[markers[n]], t)}
    assert not wrong, wrong


def test_mypy_strict_on_a_user_script(tmp_path):
    pytest.importorskip("mypy")
    _check_revealed(SCRIPT, *_mypy(tmp_path, SCRIPT), EXPECTED)


def test_mypy_strict_on_a_dask_user_script(tmp_path):
    pytest.importorskip("mypy")
    pytest.importorskip("dask.array")
    # dask's own functions are not annotated: calling them is allowed, nothing else is relaxed
    _check_revealed(DASK_SCRIPT, *_mypy(tmp_path, DASK_SCRIPT, "--allow-untyped-calls"), EXPECTED_DASK)


def _check_values(d, td):
    """`d` has values of the types `td` annotates (int, float, list of floats, percentile dicts)."""
    hints = typing.get_type_hints(td)
    for k, v in d.items():
        want = hints[k]
        if want is int:
            assert type(v) is int, (k, v)
        elif want is float:
            assert isinstance(v, float), (k, v)
        elif want == typing.List[float] or want == list[float]:
            assert isinstance(v, list) and all(isinstance(e, float) for e in v), (k, v)
        elif want is Percentiles:
            assert set(v) == Percentiles.__required_keys__ and all(isinstance(e, float) for e in v.values())
        elif want == list[str]:
            assert isinstance(v, list) and all(isinstance(e, str) for e in v), (k, v)
        else:
            assert isinstance(v, want), (k, v, want)


def _batch():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 11)).astype(np.float32)
    return x, rng.integers(0, 11, size=(3, 5)), x * 0.8


@pytest.mark.parametrize("keep_per_token", [True, False])
@pytest.mark.parametrize("with_ref", [True, False])
def test_report_typeddict_has_the_report_keys(with_ref, keep_per_token):
    x, t, r = _batch()
    ev = fastxent.Evaluator(keep_per_token=keep_per_token)
    empty = ev.report()
    ev.update(x, t, r if with_ref else None)
    rep = ev.report()
    base = EvaluatorReportBase.__required_keys__
    assert set(empty) == base
    assert EvaluatorReport.__required_keys__ == base
    if not with_ref:
        assert set(rep) == base
    elif keep_per_token:
        assert set(rep) == base | EvaluatorReport.__optional_keys__
    else:
        assert set(rep) == base | EvaluatorReport.__optional_keys__ - {"kl_percentiles", "delta_p_percentiles"}
    _check_values(rep, EvaluatorReport)
    _check_values(empty, EvaluatorReport)
    ref_rep = reference.evaluate_reference(x, t, r if with_ref else None)
    assert set(ref_rep) == set(rep) | ({"kl_percentiles", "delta_p_percentiles"} if with_ref else set())
    _check_values(ref_rep, EvaluatorReport)


def test_show_config_typeddict():
    cfg = fastxent.show_config(print_out=False)
    assert set(cfg) == ShowConfig.__required_keys__ == set(typing.get_type_hints(ShowConfig))
    _check_values(cfg, ShowConfig)


def test_core_stub_matches_the_extension():
    with open(os.path.join(PACKAGE, "_core.pyi")) as f:
        tree = ast.parse(f.read())
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    consts = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    public = {k for k, v in vars(_core).items() if not k.startswith("_") and k != "Layout"}
    compiled_funcs = {k for k in public if callable(getattr(_core, k)) and type(getattr(_core, k)).__name__
                      in ("builtin_function_or_method", "cython_function_or_method", "function")}
    compiled_ints = {k for k in public if isinstance(getattr(_core, k), int) and k.isupper()}
    assert funcs == compiled_funcs
    assert consts == compiled_ints
    # the argument names of the stub are those of the compiled functions (Cython keeps them)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            code = getattr(getattr(_core, node.name), "__code__", None)
            if code is not None:
                names = list(code.co_varnames[:code.co_argcount])
                assert [a.arg for a in node.args.args] == names, node.name
