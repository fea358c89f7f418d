"""The accuracy contract of the speed engine (README): for float32 input the per-row
log-sum-exp is within 2 ulp of the float32 rounding of the float64 reference, for V up
to 256k, on every ISA; 16-bit inputs are compared with the reference on the same values
widened to float64."""
import math

import numpy as np
import pytest

import fastxent
from fastxent import _accuracy, reference

VOCABS = [1, 7, 64, 65, 1000, 2049, 32000, 128256, 262144]


def _rows(rng, n_rows, vocab, kind):
    if kind == "normal":       # typical logits
        return rng.standard_normal((n_rows, vocab)) * 3
    if kind == "dominant":     # one logit far above the rest: lse ~ max + tiny
        x = rng.standard_normal((n_rows, vocab)) - 25.0
        x[:, rng.integers(0, vocab)] = rng.uniform(-1, 1, n_rows)
        return x
    if kind == "flat":         # nearly equal logits around a large offset
        return 1000.0 + rng.standard_normal((n_rows, vocab)) * 1e-3
    raise ValueError(kind)


def _ulps(got32, exact64):
    want = exact64.astype(np.float32)
    return np.abs(got32.astype(np.float64) - want.astype(np.float64)) / np.spacing(np.abs(want)).astype(np.float64)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("kind", ["normal", "dominant", "flat"])
def test_float32_logsumexp_within_two_ulp(isa, vocab, kind):
    rng = np.random.default_rng(vocab)
    n_rows = max(2, min(64, 2_000_000 // vocab))
    x = _rows(rng, n_rows, vocab, kind).astype(np.float32)
    exact = reference.logsumexp(x.astype(np.float64), axis=-1)
    got = fastxent.logsumexp(x, axis=-1)
    assert got.dtype == np.float32
    assert _ulps(got, exact).max() <= 2.0


@pytest.mark.parametrize("vocab", [10, 1000, 128256])
def test_float32_cross_entropy_within_two_ulp_of_its_terms(isa, vocab):
    """loss = lse - x_t: within 2 ulp of the float32 result plus the 2-ulp lse allowance."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((32, vocab)) * 3).astype(np.float32)
    t = rng.integers(0, vocab, 32)
    exact = reference.cross_entropy(x.astype(np.float64), t, reduction="none")
    lse = reference.logsumexp(x.astype(np.float64), axis=-1)
    got = fastxent.cross_entropy(x, t, reduction="none")
    err = np.abs(got.astype(np.float64) - exact)
    allowed = 2 * np.spacing(np.abs(exact).astype(np.float32)) + 2 * np.spacing(np.abs(lse).astype(np.float32))
    assert np.all(err <= allowed)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("vocab", [10, 5000, 128256])
def test_16bit_inputs_match_the_widened_reference(isa, dtype, vocab):
    if dtype == "bfloat16":
        dt = pytest.importorskip("ml_dtypes").bfloat16
    else:
        dt = np.float16
    rng = np.random.default_rng(2)
    n_rows = 1003 if vocab <= 64 else 16  # small-class path: partial last group and vector
    x = (rng.standard_normal((n_rows, vocab)) * 3).astype(dt)
    wide = x.astype(np.float64)
    exact = reference.logsumexp(wide, axis=-1)
    got = fastxent.logsumexp(x, axis=-1)
    assert got.dtype == np.float32
    assert _ulps(got, exact).max() <= 2.0
    t = rng.integers(0, vocab, n_rows)
    ce = fastxent.cross_entropy(x, t, reduction="none")
    ref = reference.cross_entropy(wide, t, reduction="none")
    lse32 = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(ce - ref) <= 2 * np.spacing(np.abs(ref).astype(np.float32)) + 2 * lse32)


# ---- one dominant logit in short rows (issue 13, item 1) ------------------------------------
# log(sum exp(x - max)) = log1p(rest) with rest ~ e^-20..e^-40: the loss of a target at the max
# and log_softmax at the max ARE that tiny value, so an absolute error bound on the log1p is
# no bound at all (it used to give 0 for [0, -40]).  The logits lie on a grid of 1/256, so
# that x - max is exact in float32 (also after rounding to float16/bfloat16): the float64
# reference is then the exact answer for the given values, and every path must be within
# 2 ulp of its float32 rounding.

DOMINANT_VOCABS = list(range(1, 71))


def _dtype(name):
    if name == "bfloat16":
        return pytest.importorskip("ml_dtypes").bfloat16
    return np.dtype(name)


def _dominant_short(rng, n_rows, vocab, dt):
    """Rows of one max (on the 1/256 grid in [-8, 8]) and the rest 20-40 below it; the
    max's column per row, and the values as given to the kernels and widened to float64."""
    m = np.round(rng.uniform(-8, 8, n_rows) * 256) / 256
    m[:2] = 0.0  # lse itself is then the tiny value
    x = m[:, None] - np.round(rng.uniform(20, 40, (n_rows, vocab)) * 256) / 256
    top = rng.integers(0, vocab, n_rows)
    x[np.arange(n_rows), top] = m
    x = x.astype(dt)
    return x, top, x.astype(np.float64)


def _within_2ulp(got, exact):
    got = np.asarray(got)
    assert got.dtype == np.float32
    u = _ulps(got, np.asarray(exact, dtype=np.float64))
    assert u.max() <= 2.0, (float(u.max()), np.argmax(u), got.ravel()[np.argmax(u)],
                            np.asarray(exact).ravel()[np.argmax(u)])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_issue_examples_keep_the_tiny_log1p(isa, dtype):
    dt = _dtype(dtype)
    want = np.float32(math.log1p(math.exp(-40.0)))  # 4.248354e-18
    _within_2ulp(np.asarray(fastxent.logsumexp(np.array([0.0, -40.0], dt))), want)
    _within_2ulp(np.asarray(fastxent.logsumexp(np.array([0.0, -30.0], dt))), math.log1p(math.exp(-30.0)))
    _within_2ulp(fastxent.cross_entropy(np.array([[100.0, 60.0]], dt), [0], reduction="none"), [want])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("vocab", DOMINANT_VOCABS)
def test_dominant_short_rows_within_two_ulp(isa, dtype, vocab):
    """logsumexp, log_softmax at the max and the loss with the target at / off the max, on
    the lane path (V <= 64) and the block path (V >= 65), per row, several draws."""
    dt = _dtype(dtype)
    rng = np.random.default_rng(1000 + vocab)
    n_rows = 67  # groups of lanes and a partial last group
    x, top, wide = _dominant_short(rng, n_rows, vocab, dt)
    _within_2ulp(fastxent.logsumexp(x, axis=-1), reference.logsumexp(wide, axis=-1))
    ls = fastxent.log_softmax(x, axis=-1)
    _within_2ulp(ls[np.arange(n_rows), top], reference.log_softmax(wide, axis=-1)[np.arange(n_rows), top])
    off = (top + 1 + rng.integers(0, max(vocab - 1, 1), n_rows)) % vocab
    for t in (top, off):
        want = reference.cross_entropy(wide, t, reduction="none")
        _within_2ulp(fastxent.cross_entropy(x, t, reduction="none"), want)
        got, g = fastxent.cross_entropy(x, t, reduction="none", return_grad=True)
        _within_2ulp(got, want)
        # the gradient at the target: p_t - 1, tiny where the target is the max
        gw = reference.cross_entropy(wide, t, reduction="none", return_grad=True)[1]
        _within_2ulp(g[np.arange(n_rows), t], gw[np.arange(n_rows), t])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("vocab", [2, 10, 64, 65])
@pytest.mark.parametrize("opts", [dict(weight="w"), dict(label_smoothing=0.1), dict(z_loss=1e-4),
                                  dict(weight="w", label_smoothing=0.05, z_loss=1e-4)],
                         ids=["weight", "smoothing", "z_loss", "all"])
def test_dominant_short_rows_options_path_within_two_ulp(isa, dtype, vocab, opts):
    dt = _dtype(dtype)
    rng = np.random.default_rng(vocab)
    x, top, wide = _dominant_short(rng, 67, vocab, dt)
    if opts.get("weight") == "w":
        opts = dict(opts, weight=(np.round(rng.uniform(0.5, 2.0, vocab) * 64) / 64).astype(np.float32))
    want = reference.cross_entropy(wide, top, reduction="none", **opts)
    _within_2ulp(fastxent.cross_entropy(x, top, reduction="none", **opts), want)
    _within_2ulp(fastxent.cross_entropy(x, top, reduction="none", return_grad=True, **opts)[0], want)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dominant_long_row_split_path_within_two_ulp(isa, n_threads):
    """One row of 3 blocks (the split path with 2 threads): lse = log1p(rest) at max 0."""
    rng = np.random.default_rng(5)
    x, top, wide = _dominant_short(rng, 1, 3 * fastxent._core.BLOCK + 5, np.float32)
    assert x[0, top[0]] == 0.0
    _within_2ulp(fastxent.logsumexp(x, axis=-1, n_threads=n_threads), reference.logsumexp(wide, axis=-1))
    _within_2ulp(fastxent.cross_entropy(x, top, reduction="none", n_threads=n_threads),
                 reference.cross_entropy(wide, top, reduction="none"))


def _exact_lse64(row):
    """log-sum-exp of a float64 row whose differences to its max are exact: the sum of the
    exps by math.fsum (each exp within 1 ulp) and math.log1p."""
    m = float(np.max(row))
    rest = [math.exp(v - m) for v in row.tolist()]
    rest.remove(1.0)
    return m + math.log1p(math.fsum(rest)), math.log1p(math.fsum(rest))


@pytest.mark.parametrize("vocab", [2, 3, 10, 33, 64, 65, 70])
def test_float64_dominant_short_rows_within_a_few_ulp(isa, vocab):
    rng = np.random.default_rng(64 + vocab)
    x, top, _ = _dominant_short(rng, 19, vocab, np.float64)
    lse = np.array([_exact_lse64(r)[0] for r in x])
    tiny = np.array([_exact_lse64(r)[1] for r in x])
    ulp = lambda got, want: np.abs(got - want) / np.spacing(np.abs(want))  # noqa: E731
    assert ulp(fastxent.logsumexp(x, axis=-1), lse).max() <= 4
    assert ulp(fastxent.cross_entropy(x, top, reduction="none"), tiny).max() <= 4
    assert ulp(fastxent.cross_entropy(x, top, reduction="none", return_grad=True)[0], tiny).max() <= 4
    assert ulp(-fastxent.log_softmax(x, axis=-1)[np.arange(19), top], tiny).max() <= 4


# ---- the adversarial catalogue (issue 17), on every ISA ---------------------------------------
# fastxent._accuracy builds it (also for `python -m fastxent selftest`): per family, V from 2 to
# 262144 with the lane (63, 64 / 65) and block (4096 / 4097) edges; the exact reference is
# math.fsum over float64 exps of the given values, never fastxent's output.  Units: <= 2 is the
# README's contract (2 ulp of the float32 rounding; eps32 (1 + |max|) absolute where max + log(sum)
# cancels; the loss and -log_softmax in ulp(value) + ulp(lse), in ulp(value) alone at a row's only
# maximum when x - max is exact in float32).

_CATALOGUE: dict = {}


def _catalogue(dtype):
    _dtype(dtype)  # skips bfloat16 without ml_dtypes
    if dtype not in _CATALOGUE:  # built once: its exact values serve every ISA
        _CATALOGUE[dtype] = _accuracy.cases(dtype)
    return _CATALOGUE[dtype]


def _worst(worst, op, case, n_threads, got):
    units = case.units(op, got)
    i = np.unravel_index(int(np.argmax(units)), units.shape)
    if op not in worst or units[i] > worst[op][0]:
        worst[op] = (float(units[i]), f"{case.name} row {i[0]} n_threads={n_threads}")


@pytest.mark.parametrize("family", _accuracy.FAMILIES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_catalogue_within_the_contract(isa, dtype, family):
    """logsumexp, cross_entropy (with and without the gradient: the same bits) and log_softmax
    of every row of the family; float32 rows of V >= 4096 also with 2 threads (the split path)."""
    worst: dict = {}
    for case in (c for c in _catalogue(dtype) if c.family == family):
        for n_threads in (1, 2) if dtype == "float32" and case.vocab >= 4096 else (1,):
            got = fastxent.logsumexp(case.x, axis=-1, n_threads=n_threads)
            assert got.dtype == np.float32
            _worst(worst, "logsumexp", case, n_threads, got)
            loss = fastxent.cross_entropy(case.x, case.target, reduction="none", n_threads=n_threads)
            _worst(worst, "cross_entropy", case, n_threads, loss)
            with_grad = fastxent.cross_entropy(case.x, case.target, reduction="none", return_grad=True,
                                               n_threads=n_threads)[0]
            assert np.array_equal(with_grad, loss, equal_nan=True), case.name
            _worst(worst, "log_softmax", case, n_threads,
                   fastxent.log_softmax(case.x, axis=-1, n_threads=n_threads))
    assert set(worst) == {"logsumexp", "cross_entropy", "log_softmax"}
    bad = {op: w for op, w in worst.items() if not w[0] <= 2.0}
    assert not bad, f"{isa} {dtype} {family}: beyond the 2-ulp contract: {bad}"


def test_catalogue_is_what_it_says():
    """The families hold their adversarial rows, the exact reference agrees with the float64
    reference to 1e-14, and the units count an error of 3 ulp as 3 (the tests can fail)."""
    by = {c.name: c for c in _catalogue("float32")}
    assert {c.family for c in by.values()} == set(_accuracy.FAMILIES)
    assert {c.vocab for c in by.values()} == set(_accuracy.VOCABS) and max(_accuracy.VOCABS) == 262144
    d = by["dominant/4097"]
    assert np.all(d._terms["count"] == 1) and np.all((d.exact_lse - d.exact_max) < 1e-5)
    assert np.all(d.exact_max[:2] == 0) and np.all(d.exact_log1p[:2] > 0)
    t = by["ties/1000"]
    assert [int(k) for k in t._terms["count"][:3]] == [2, 500, 1000]
    u = by["underflow/4097"]
    assert np.isneginf(u.exact_lse[-1]) and u._terms["flushed"].max() > 0 and np.isneginf(u.x).any()
    e = by["exp_tail/65"]
    assert np.all(np.isfinite(e.x).sum(axis=1) == 11) and np.all(e.exact_max == 0)
    assert np.all(by["integer/64"].x == np.round(by["integer/64"].x))
    for c in by.values():
        fin = np.isfinite(c.exact_lse)
        ref = reference.logsumexp(c.wide, axis=-1)
        assert np.allclose(c.exact_lse[fin], ref[fin], rtol=1e-14, atol=0), c.name
    want = by["random/1000"].exact_lse.astype(np.float32)
    off = want
    for _ in range(3):
        off = np.nextafter(off, np.float32(np.inf))
    assert np.all(by["random/1000"].units("logsumexp", off) == 3.0)
    assert np.all(by["random/1000"].units("logsumexp", want) == 0.0)
