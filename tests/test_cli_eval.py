"""``fastxent eval`` end to end on small .npy files: reports against
`reference.evaluate_reference`, chunking, --shift, --ref-logits, --json, and every kind of bad
input (one line on stderr, non-zero status, never a traceback)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastxent
from fastxent import reference
from fastxent.__main__ import main
from conftest import float16_dtypes, has_ml_dtypes, logits_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))


@pytest.fixture
def files(tmp_path, rng):
    """(B, S, V) = (3, 40, 37) float32 logits, a float16 reference, targets with ignored ones."""
    x = logits_like(rng, (3, 40, 37), np.float32)
    y = (x + rng.standard_normal(x.shape) * 0.5).astype(np.float16)
    t = rng.integers(0, 37, (3, 40))
    t[rng.random(t.shape) < 0.15] = -100
    paths = {}
    for name, a in (("L", x), ("R", y), ("T", t)):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], a)
    return paths, x, y, t


def run(capsys, *argv):
    rc = main(["eval", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def load_report(path):
    with open(path) as f:
        doc = json.load(f)
    return doc


def close(got, exp):
    """JSON report vs reference report: float32 logits, per-token errors of a few float32 ulp."""
    assert set(got) == set(exp)
    for k, e in exp.items():
        g = got[k]
        if isinstance(e, dict):
            for q in e:
                assert g[q] == pytest.approx(e[q], rel=2e-5, abs=1e-7), (k, q)
        elif isinstance(e, list):
            assert g == pytest.approx(e, rel=2e-5), k
        else:
            assert g == pytest.approx(e, rel=2e-5, abs=1e-7), k


def test_eval_shift_ref_json_chunks(capsys, files, tmp_path):
    paths, x, y, t = files
    out_json = str(tmp_path / "report.json")
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--ref-logits", paths["R"],
                       "--shift", "--chunk-rows", "7", "--json", out_json, "--quiet")
    assert rc == 0 and out == "" and err == ""
    doc = load_report(out_json)
    assert doc["inputs"]["logits"] == {"file": paths["L"], "shape": [3, 40, 37], "dtype": "float32"}
    assert doc["inputs"]["ref_logits"]["dtype"] == "float16"
    assert doc["inputs"]["targets"]["shape"] == [3, 40]
    assert doc["options"] == {"shift": True, "ignore_index": -100, "chunk_rows": 7, "threads": None}
    # each file read as given (the float16 reference widens exactly to float32)
    exp = reference.evaluate_reference(x[:, :-1].astype(np.float64), t[:, 1:],
                                       y[:, :-1].astype(np.float32).astype(np.float64))
    close(doc["report"], exp)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # atomic write, no leftovers

    # one chunk, or sequences split across chunks: the same exact totals, bitwise the same report
    for rows in ("1000", "13"):
        out2 = str(tmp_path / f"r{rows}.json")
        assert run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--ref-logits", paths["R"],
                   "--shift", "--chunk-rows", rows, "--json", out2, "--quiet")[0] == 0
        assert load_report(out2)["report"] == doc["report"]


def test_eval_2d_text_report(capsys, files, tmp_path):
    paths, x, _, t = files
    np.save(tmp_path / "L2.npy", x[1])          # (seq, vocab)
    np.save(tmp_path / "T2.npy", t[1])
    rc, out, err = run(capsys, "--logits", str(tmp_path / "L2.npy"), "--targets", str(tmp_path / "T2.npy"),
                       "--shift", "--chunk-rows", "5", "--ignore-index", "-100")
    assert rc == 0 and err == ""  # stderr is not a terminal here: no progress
    exp = reference.evaluate_reference(x[1, :-1].astype(np.float64), t[1, 1:])
    assert f"tokens                      : {exp['tokens']}" in out
    # float32 logits: each token's NLL is within ~1e-7 of the float64 reference (the
    # kernels' float exp), so the printed PPL agrees to ~1e-7 relative, not to all 8 digits
    got = float(re.search(r"^perplexity {18}: ([0-9.]+) ", out, re.M).group(1))
    assert got == pytest.approx(exp["ppl"], rel=1e-6)
    assert "reference perplexity" not in out and "shifted" in out


def test_eval_without_shift_and_4d(capsys, rng, tmp_path):
    x = logits_like(rng, (2, 3, 4, 11), np.float64)
    t = rng.integers(0, 11, (2, 3, 4))
    np.save(tmp_path / "L.npy", x)
    np.save(tmp_path / "T.npy", t)
    out_json = str(tmp_path / "o.json")
    assert run(capsys, "--logits", str(tmp_path / "L.npy"), "--targets", str(tmp_path / "T.npy"),
               "--chunk-rows", "3", "--threads", "2", "--json", out_json, "--quiet")[0] == 0
    got = load_report(out_json)["report"]
    exp = reference.evaluate_reference(x, t)
    for k, e in exp.items():
        assert got[k] == pytest.approx(e, rel=1e-12), k


@pytest.mark.skipif(not has_ml_dtypes(), reason="needs ml_dtypes")
def test_eval_bfloat16_file(capsys, rng, tmp_path):
    bf16 = float16_dtypes()[1]
    x = logits_like(rng, (9, 20), bf16)
    t = rng.integers(0, 20, 9)
    np.save(tmp_path / "L.npy", x)               # stored as raw 'V2'
    np.save(tmp_path / "T.npy", t)
    out_json = str(tmp_path / "o.json")
    assert run(capsys, "--logits", str(tmp_path / "L.npy"), "--targets", str(tmp_path / "T.npy"),
               "--json", out_json, "--quiet")[0] == 0
    doc = load_report(out_json)
    assert doc["inputs"]["logits"]["dtype"] == "bfloat16"
    assert doc["report"]["nll_mean"] == pytest.approx(reference.evaluate_reference(
        x.astype(np.float64), t)["nll_mean"], rel=1e-6)


def bad_input_cases(tmp_path, paths):
    d = str(tmp_path)
    np.save(f"{d}/float_t.npy", np.zeros((3, 40)))
    np.save(f"{d}/short_t.npy", np.zeros((3, 39), int))
    np.save(f"{d}/vocab_r.npy", np.zeros((3, 40, 36), np.float32))
    np.save(f"{d}/shape_r.npy", np.zeros((3, 41, 37), np.float32))
    np.save(f"{d}/int_l.npy", np.zeros((3, 40, 37), np.int32))
    t = np.load(paths["T"])
    t[2, 17] = 37
    np.save(f"{d}/range_t.npy", t)
    t0 = np.load(paths["T"])
    t0[1, 0] = 99                            # never used with --shift
    np.save(f"{d}/first_t.npy", t0)
    with open(f"{d}/garbage.npy", "wb") as f:
        f.write(b"not a numpy file at all")
    np.savez(f"{d}/arch.npz", a=np.zeros(3))
    with open(paths["L"], "rb") as f:
        whole = f.read()
    with open(f"{d}/cut.npy", "wb") as f:    # a download or copy that stopped early
        f.write(whole[:-100])
    with open(f"{d}/cut_r.npy", "wb") as f:
        f.write(whole[:9])
    L, T = paths["L"], paths["T"]
    return {
        "missing": (["--logits", f"{d}/nope.npy", "--targets", T], f"--logits '{d}/nope.npy': no such file"),
        "directory": (["--logits", d, "--targets", T], "is a directory"),
        "garbage": (["--logits", f"{d}/garbage.npy", "--targets", T],
                    f"--logits '{d}/garbage.npy': is not a .npy file (it does not start with the signature "
                    "\\x93NUMPY that numpy.save writes)"),
        "truncated": (["--logits", f"{d}/cut.npy", "--targets", T],
                      f"--logits '{d}/cut.npy': is truncated: its header says shape (3, 40, 37), dtype "
                      f"float32 ({3 * 40 * 37 * 4} bytes of data) but the file holds {3 * 40 * 37 * 4 - 100} "
                      "bytes after the header"),
        "truncated ref": (["--logits", L, "--targets", T, "--ref-logits", f"{d}/cut_r.npy"],
                          f"--ref-logits '{d}/cut_r.npy': is truncated (9 bytes: the .npy header is "
                          "incomplete)"),
        "npz": (["--logits", L, "--targets", f"{d}/arch.npz"], "is an .npz archive"),
        "float targets": (["--logits", L, "--targets", f"{d}/float_t.npy"],
                          "--targets has dtype float64; targets must be integer class indices"),
        "shapes": (["--logits", L, "--targets", f"{d}/short_t.npy"],
                   "--targets has shape (3, 39) but --logits has shape (3, 40, 37)"),
        "vocab": (["--logits", L, "--targets", T, "--ref-logits", f"{d}/vocab_r.npy"],
                  "mismatched vocab: --logits has 37 classes, --ref-logits has 36"),
        "ref shape": (["--logits", L, "--targets", T, "--ref-logits", f"{d}/shape_r.npy"],
                      "--ref-logits has shape (3, 41, 37) but --logits has shape (3, 40, 37)"),
        "int logits": (["--logits", f"{d}/int_l.npy", "--targets", T], "--logits has dtype int32"),
        "range": (["--logits", L, "--targets", f"{d}/range_t.npy"],
                  "--targets value 37 at position (2, 17) is out of range for 37 classes"),
        "range shifted": (["--logits", L, "--targets", f"{d}/range_t.npy", "--shift"],
                          "--targets value 37 at position (2, 17) is out of range"),
        "json dir": (["--logits", L, "--targets", T, "--json", f"{d}/no/such/dir/o.json"], "does not exist"),
    }


def test_eval_bad_inputs(capsys, files, tmp_path):
    paths = files[0]
    for name, (argv, message) in bad_input_cases(tmp_path, paths).items():
        rc, out, err = run(capsys, *argv, "--quiet")
        assert rc == 2, (name, rc, err)
        assert err.startswith("fastxent eval: error: ") and err.count("\n") == 1, (name, err)
        assert message in err, (name, err)
    assert not os.path.exists(tmp_path / "no")
    # a bad target where --shift never looks (position 0 of a sequence) is not an error
    assert run(capsys, "--logits", paths["L"], "--targets", str(tmp_path / "first_t.npy"), "--shift",
               "--quiet")[0] == 0


def test_eval_argparse_errors(capsys):
    for argv in (["eval", "--targets", "t.npy"],
                 ["eval", "--logits", "a", "--targets", "b", "--chunk-rows", "0"],
                 ["eval", "--logits", "a", "--targets", "b", "--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_eval_keyboard_interrupt(capsys, files, tmp_path, monkeypatch):
    paths = files[0]
    calls = []
    real = fastxent.Evaluator.update

    def update(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(fastxent.Evaluator, "update", update)
    out_json = str(tmp_path / "o.json")
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--chunk-rows", "10",
                       "--json", out_json)
    assert rc == 130
    assert "fastxent eval: interrupted after 2 of 12 chunks; no report written" in err
    assert out == "" and not os.path.exists(out_json)
    assert os.listdir(tmp_path) == [f for f in os.listdir(tmp_path) if not f.endswith(".tmp")]


def test_python_m_fastxent_eval(files, tmp_path):
    paths = files[0]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "fastxent", "eval", "--logits", paths["L"], "--targets",
                         paths["T"], "--ref-logits", paths["R"], "--shift"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "mean KL(ref || model)" in ok.stdout and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "fastxent", "eval", "--logits", paths["L"],
                          "--targets", str(tmp_path / "missing.npy")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    expected = f"fastxent eval: error: --targets '{tmp_path}/missing.npy': no such file"
    assert bad.stderr.strip().splitlines() == [expected]


def _cli_pairs():
    ds = [np.float32, np.float64] + float16_dtypes()
    return [(np.float32, np.float64), (np.float64, np.float32)] + [
        (m, r) for m in ds[2:] for r in ds if m != r]


@pytest.mark.parametrize("model_dt, ref_dt", _cli_pairs(), ids=lambda d: np.dtype(d).name)
def test_eval_ref_logits_of_another_dtype(capsys, rng, tmp_path, model_dt, ref_dt):
    """issue 13 item 2: the reference file was rounded to the model's dtype, so a model that is
    the reference rounded printed the model's own perplexity as the reference's and KL 0."""
    base = 3 * rng.standard_normal((2, 30, 300))
    x, y = base.astype(model_dt), base.astype(ref_dt)
    t = rng.integers(0, 300, (2, 30))
    for name, a in (("L", x), ("R", y), ("T", t)):
        np.save(tmp_path / f"{name}.npy", a)
    out_json = str(tmp_path / "r.json")
    rc, _, _ = run(capsys, "--logits", str(tmp_path / "L.npy"), "--targets", str(tmp_path / "T.npy"),
                   "--ref-logits", str(tmp_path / "R.npy"), "--chunk-rows", "7", "--json", out_json,
                   "--quiet")
    assert rc == 0
    rep = load_report(out_json)["report"]
    X, Y = x.astype(np.float64), y.astype(np.float64)  # plain NumPy float64 on the values as given
    lq = X - X.max(-1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
    lp = Y - Y.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    rnll = -np.take_along_axis(lp, t[..., None], -1)[..., 0]
    f64 = np.float64 in (np.dtype(model_dt), np.dtype(ref_dt))
    tol = 1e-12 if f64 else 1e-5
    assert abs(rep["kl_mean"] - kl.mean()) <= tol  # per token: the bound of a row of scale ~ 16
    assert rep["ref_ppl"] == pytest.approx(np.exp(rnll.mean()), rel=tol)
    assert rep["same_top"] == np.mean(X.argmax(-1) == Y.argmax(-1))


def test_eval_reports_ignored_positions(capsys, files, tmp_path):
    paths, _, _, t = files
    ignored, ignored_shifted = int(np.count_nonzero(t == -100)), int(np.count_nonzero(t[:, 1:] == -100))
    assert 0 < ignored_shifted < ignored < t.size       # the fixture ignores some positions
    out_json = str(tmp_path / "o.json")
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--json", out_json)
    assert rc == 0 and err == ""
    assert f"ignored positions           : {ignored} of {t.size} (target == -100)\n" in out
    assert f"tokens                      : {t.size - ignored}\n" in out
    assert load_report(out_json)["positions"] == {"total": t.size, "counted": t.size - ignored,
                                                  "ignored": ignored}
    # with --shift the first target of each sequence is not a position at all
    rc, out, _ = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--shift", "--json", out_json)
    n = t[:, 1:].size
    assert rc == 0 and f"ignored positions           : {ignored_shifted} of {n} (target == -100)" in out
    assert load_report(out_json)["positions"] == {"total": n, "counted": n - ignored_shifted,
                                                  "ignored": ignored_shifted}
    # another --ignore-index: nothing is ignored when no target has that value
    np.save(tmp_path / "T0.npy", np.where(t < 0, 0, t))
    rc, out, _ = run(capsys, "--logits", paths["L"], "--targets", str(tmp_path / "T0.npy"),
                     "--ignore-index", "-1")
    assert rc == 0 and f"ignored positions           : 0 of {t.size} (target == -1)" in out


def test_eval_quiet_without_json_warns(capsys, files, tmp_path):
    paths = files[0]
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--quiet")
    assert rc == 0 and out == ""
    assert err == ("fastxent eval: warning: --quiet without --json: the report is neither printed nor "
                   "written (only the exit status tells the result)\n")
    # with --json there is something to show for the run: no warning
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", paths["T"], "--quiet", "--json",
                       str(tmp_path / "o.json"))
    assert rc == 0 and out == "" and err == ""
    # bad input: only the error line (the warning would only add noise)
    rc, out, err = run(capsys, "--logits", paths["L"], "--targets", str(tmp_path / "nope.npy"), "--quiet")
    assert rc == 2 and err.count("\n") == 1 and err.startswith("fastxent eval: error: ")


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"fastxent {fastxent.__version__}\n"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "fastxent", "--version"], capture_output=True, text=True,
                        env=env, timeout=120)
    assert ok.returncode == 0 and ok.stdout == f"fastxent {fastxent.__version__}\n", ok.stderr
    script = os.path.join(os.path.dirname(sys.executable), "fastxent")
    if os.path.exists(script):           # the console script of an installed package
        ok = subprocess.run([script, "--version"], capture_output=True, text=True, env=env, timeout=120)
        assert ok.returncode == 0 and ok.stdout == f"fastxent {fastxent.__version__}\n", ok.stderr
