"""``python -m fastxent selftest`` (fastxent/_selftest.py): it passes here on every ISA, and it
fails -- exit status 1, naming the ISA and the operation -- when one variant gives a wrong result,
raises, or is off by a few ulp only where the accuracy catalogue looks (a wrong variant is made
by wrapping one `fastxent._core` kernel so that it misbehaves on one ISA only)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent
from fastxent import _core, _selftest
from fastxent.__main__ import main

ISAS = fastxent.available_isas()
WRONG = ISAS[-1]   # the variant made wrong: the best one (the baseline on a machine without SIMD)


def _on(isa):
    return _core.isa_name(_core.isa_current()) == isa


@pytest.fixture
def small_grid(monkeypatch):
    """A grid of a few points (the full one is run once, by test_selftest_passes_on_every_isa)."""
    monkeypatch.setattr(_selftest, "DTYPES", ("float32", "float16"))
    monkeypatch.setattr(_selftest, "LAYOUTS", ("c", "transposed"))
    monkeypatch.setattr(_selftest, "SHAPES", ((9, 65),))
    monkeypatch.setattr(_selftest, "LONG_ROW", (1, 70))
    monkeypatch.setattr(_selftest, "CATALOGUE_VOCABS", (10, 65))


def _lines(out):
    return {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()[0] in ISAS}


def test_selftest_passes_on_every_isa(capsys):
    before = fastxent.show_config(print_out=False)["isa"]
    assert main(["selftest"]) == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    assert sorted(lines) == sorted(ISAS), out
    for isa, line in lines.items():
        assert line.split()[1] == "ok", line
    assert out.splitlines()[-1].startswith(f"selftest passed: {', '.join(ISAS)} within the accuracy contract")
    assert fastxent.show_config(print_out=False)["isa"] == before


def test_a_wrong_variant_fails_and_is_named(monkeypatch, small_grid, capsys):
    real = _core.lse

    def lse(x, layout, out, n_threads):   # 1e-5 relative (~80 ulp of float32) on one ISA
        real(x, layout, out, n_threads)
        if _on(WRONG):
            out *= 1 + 1e-5
    monkeypatch.setattr(_core, "lse", lse)
    assert main(["selftest"]) == 1
    out = capsys.readouterr().out
    lines = _lines(out)
    assert lines[WRONG].split()[1] == "FAIL" and "logsumexp" in lines[WRONG], out
    assert "against the float64 reference" in lines[WRONG]
    for isa in ISAS:
        if isa != WRONG:
            assert lines[isa].split()[1] == "ok", out
    assert out.splitlines()[-1].startswith(f"selftest FAILED on {WRONG} ")


@pytest.mark.skipif(len(ISAS) < 2, reason="needs an ISA besides the baseline")
def test_a_wrong_baseline_fails_every_comparison_with_it(monkeypatch, small_grid, capsys):
    real = _core.softmax

    def softmax(x, layout, out, log, n_threads):
        real(x, layout, out, log, n_threads)
        if _on("baseline") and not log:
            out[...] = out * (1 + 1e-4)
    monkeypatch.setattr(_core, "softmax", softmax)
    assert main(["selftest", "--verbose"]) == 1
    out = capsys.readouterr().out
    lines = _lines(out)
    assert lines["baseline"].split()[1] == "FAIL" and "softmax" in lines["baseline"]
    for isa in ISAS[1:]:   # right against float64, wrong against the baseline
        assert lines[isa].split()[1] == "FAIL" and "against the baseline" in lines[isa], out


def test_a_variant_that_raises_fails(monkeypatch, small_grid, capsys):
    real = _core.token_stats

    def token_stats(*args, **kwargs):
        if _on(WRONG):
            raise RuntimeError("broken kernel")
        return real(*args, **kwargs)
    monkeypatch.setattr(_core, "token_stats", token_stats)
    assert main(["selftest", "--isa", WRONG]) == 1
    line = _lines(capsys.readouterr().out)[WRONG]
    assert "token_stats" in line and "raised RuntimeError: broken kernel" in line


def test_three_ulp_off_only_the_catalogue_sees(monkeypatch, small_grid, capsys):
    """4 ulp on the per-row loss is inside the grid's tolerances (4 eps32 relative) but beyond
    the catalogue's 2-ulp contract."""
    real = _core.xent

    def xent(x, layout, target, ignore_index, loss, n_threads):
        real(x, layout, target, ignore_index, loss, n_threads)
        if _on(WRONG):
            loss *= 1 + 4 * 2.0 ** -23
    monkeypatch.setattr(_core, "xent", xent)
    assert main(["selftest", "--isa", WRONG, "-v"]) == 1
    out = capsys.readouterr().out
    failures = [f for f in out.splitlines() if "x the tolerance" in f or "ulp (contract: 2)" in f]
    assert failures and all("cross_entropy catalogue" in f for f in failures), out


def test_cli_errors_and_help(capsys):
    assert main(["selftest", "--isa", "avx9"]) == 2
    assert "--isa 'avx9' is not available here" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["selftest", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "float64 reference" in text and "baseline" in text and "exit status" in text


def test_python_m_fastxent_selftest_in_a_subprocess():
    """The command users run, from the repository root (the baseline alone keeps it short; the
    full run is test_selftest_passes_on_every_isa)."""
    r = subprocess.run([sys.executable, "-m", "fastxent", "selftest", "--isa", "baseline"],
                       capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("selftest passed: baseline within the accuracy contract")
    assert list(_lines(r.stdout)) == ["baseline"]


def test_bfloat16_without_ml_dtypes(monkeypatch, small_grid, capsys):
    """Without ml_dtypes the grid's bfloat16 inputs are the raw uint16 storage fastxent reads as
    bfloat16 (what DLPack hands it), widened bit by bit for the reference."""
    from fastxent import _arrays

    monkeypatch.setattr(_arrays, "_bf16", _arrays.BF16_RAW)   # as if ml_dtypes were missing
    monkeypatch.setattr(_selftest, "DTYPES", ("bfloat16",))
    x = _selftest._bf16(np.array([[1.0, 2.5, -3.0, 1.00390625]], np.float32))
    assert x.dtype == _arrays.BF16_RAW
    assert _selftest._widen(x).tolist() == [[1.0, 2.5, -3.0, 1.0]]   # ties to even
    assert main(["selftest"]) == 0, capsys.readouterr().out
