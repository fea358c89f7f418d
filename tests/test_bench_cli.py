"""``python -m fastxent bench`` as a user sees it: the machine, the bandwidth, how to read the table,
speedups and no internal verdicts; ``--plot`` draws a PNG (or says how to install matplotlib);
``bench/targets.py`` judges a report against the project's targets.

The command runs on a tiny plan (patched in for QUICK) so that these tests take seconds; the CI
smoke run ``python -m fastxent bench --quick`` runs the real one."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastxent
from fastxent import _bench
from fastxent.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the tree holding tests/ and bench/
TARGETS = os.path.join(ROOT, "bench", "targets.py")

TINY = _bench.Plan(
    cases=(((8, 64), "float32"), ((4, 64), "float32"), ((4, 64), "bfloat16"), ((16, 4), "float32")),
    grad_case=((8, 64), "float32"), probe_mib=1, large_vocab=((8, 64),), small_classes=(16, 4),
    dtype_case=(4, 64), threads_case=(8, 64), sweep_vocab=(16, 64, 256), sweep_elements=1024,
    name="quick")


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(_bench, "QUICK", TINY)


def run_bench(capsys, *argv):
    rc = main(["bench", "--quick", "--repeat", "1", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_bench_output_speaks_to_users(tiny, capsys, tmp_path):
    out_json = str(tmp_path / "b.json")
    rc, out, err = run_bench(capsys, "--json", out_json)
    assert rc == 0, err
    # the project's internal goals are not the user's business (bench/targets.py has them)
    assert "target" not in out.lower() and "MISSED" not in out and not re.search(r"\bmet\b", out)
    cfg = fastxent.show_config(print_out=False)
    machine = next(line for line in out.splitlines() if line.startswith("machine:"))
    assert _bench.cpu_model() in machine and cfg["isa"] in machine
    assert f"{os.cpu_count()} logical CPUs" in machine and f"{cfg['n_threads']} thread" in machine
    assert re.search(r"^memory read bandwidth, measured now .*: [0-9.]+ GB/s with 1 thread", out, re.M)
    assert "How to read the table:" in out and "speed = NumPy's time / this row's time" in out
    assert re.search(r"^  cross_entropy \(8,64\) float32: fastxent 1 thr vs NumPy +[0-9.]+x$", out, re.M)
    assert "peers:    NumPy " in out
    doc = json.load(open(out_json))
    assert doc["plan"] == "quick" and doc["sweep"] == []
    assert doc["ratios"] and all(set(r) == {"kind", "threads", "name", "value", "shape", "dtype"}
                                 for r in doc["ratios"])
    assert {r["kind"] for r in doc["ratios"]} >= {"ce_vs_numpy", "small_ce_vs_numpy", "grad_cost"}
    # every row was checked against NumPy; no warning on stderr
    assert err == "" and not doc["warnings"]


def test_plot_writes_png(tiny, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png, out_json = str(tmp_path / "bench.png"), str(tmp_path / "b.json")
    rc, out, err = run_bench(capsys, "--plot", png, "--json", out_json)
    assert rc == 0, err
    assert f"wrote the chart to {png}" in out
    assert "cross_entropy float32 throughput (G elements/s) by vocabulary size" in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    img = imread(png)
    assert img.shape[0] >= 300 and img.shape[1] >= 600
    assert float(np.std(img[..., :3])) > 0.05          # not a blank canvas
    sweep = json.load(open(out_json))["sweep"]
    vocabs = sorted({r["shape"][1] for r in sweep})
    assert vocabs == [16, 64, 256]
    assert all(r["shape"][0] * r["shape"][1] == 1024 for r in sweep)   # fixed total size
    keys = {(r["op"], r["impl_key"]) for r in sweep}
    assert {("cross_entropy", "fastxent-1"), ("cross_entropy", "numpy"), ("logsumexp", "fastxent-all")} <= keys
    # the chart can be redrawn from the saved report alone
    _bench.plot(json.load(open(out_json)), str(tmp_path / "again.png"))
    assert os.path.getsize(tmp_path / "again.png") > 10_000


def test_plot_without_matplotlib(tiny, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # import matplotlib raises ImportError
    png = tmp_path / "bench.png"
    rc, out, err = run_bench(capsys, "--plot", str(png))
    assert rc == 2 and out == "" and not png.exists()        # nothing was timed
    assert err == ('fastxent bench: error: the --plot chart needs matplotlib: pip install '
                   '"fastxent[plot]" (or pip install matplotlib)\n')


def test_plot_bad_directory(capsys, tmp_path):
    rc = main(["bench", "--quick", "--plot", str(tmp_path / "no" / "x.png")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("fastxent bench: error: --plot: no directory for ")


def targets(*argv):
    return subprocess.run([sys.executable, TARGETS, *argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")))


@pytest.mark.parametrize("value, verdict, status", [(6.5, "met", 0), (5.9, "MISSED", 1)])
def test_targets_script_judges_a_report(tmp_path, value, verdict, status):
    report = {"plan": "full", "date": "d", "ratios": [
        {"kind": "ce_vs_numpy", "threads": "1", "name": "CE vs NumPy", "value": value},
        {"kind": "ce_vs_numpy", "threads": "all", "name": "CE 2 thr vs NumPy", "value": 1.0},  # no target
        {"kind": "grad_cost", "threads": "1", "name": "fwd+grad / fwd", "value": 1.9}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    res = targets("--from-json", str(path))
    assert res.returncode == status, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "targets (full run of d):"
    assert f"  CE vs NumPy    {value:6.2f}x  target >= 6: {verdict}" in lines
    assert "  fwd+grad / fwd   1.90x  target <= 2: met" in lines
    assert not any("CE 2 thr" in line for line in lines)
    assert "  ce_vs_torch (1 thr): not measured in this run (a peer is not installed, or one thread only)" in lines


def test_targets_script_reads_a_bench_report(tiny, capsys, tmp_path):
    out_json = str(tmp_path / "b.json")
    assert run_bench(capsys, "--json", out_json)[0] == 0
    res = targets("--from-json", out_json)
    assert res.returncode in (0, 1), res.stderr
    assert "indicative only" in res.stdout.splitlines()[0]
    value = next(r["value"] for r in json.load(open(out_json))["ratios"]
                 if (r["kind"], r["threads"]) == ("ce_vs_numpy", "1"))
    line = next(x for x in res.stdout.splitlines() if "(8,64) float32: fastxent 1 thr vs NumPy" in x)
    assert line.endswith("target >= 6: " + ("met" if value >= 6 else "MISSED"))
