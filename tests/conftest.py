"""Shared tolerances, layout factories and comparison helpers for the fastxent tests.

Tolerances (stated once, here; a failure is a bug to find, never a reason to raise them)
-----------------------------------------------------------------------------------------
Every fast result is compared with ``fastxent.reference`` evaluated in float64 on the *same
values* (float32 input is widened exactly), i.e. with the exact answer to ~1e-15.

Log-space results (logsumexp, log_softmax, losses, log of perplexity) must satisfy

    |got - ref| <= RTOL[dt] * |ref| + UNIT[dt] * scale,   scale = 1 + max|x| + log(n)

where max|x| is over the finite inputs of the reduced row and n its length. The RTOL term is
the rounding of the result itself. The UNIT * scale term is cancellation: a log-space result
is assembled as ``m + log(s)`` or ``x_i - m - log(s)``, and the terms m ~ max|x| and
log(s) <= log(n) each carry a rounding error of a few ulp of *their* size, which can be far
larger than the result (lse near 0, the loss of a confident correct prediction). For float32
that is 4 float32 eps per unit of scale (the terms may be rounded to float32 once or twice);
for float64 it is 1e-13 (~450 eps), which also covers the kernel summing up to ~1e5 terms in
another order than NumPy's pairwise sum.

Probabilities (softmax) must satisfy

    |got - ref| <= (RTOL[dt] + UNIT[dt] * scale) * |ref| + PROB_ATOL[dt]

since an absolute error e in log space is a relative error e in exp(.). PROB_ATOL is one
float32 eps (values are < 1, so that is about one ulp of the largest) and 1e-15 for float64.

With weights ``b`` the scale grows by log max(1, |b|) and is multiplied by the condition number
sum|b e^a| / |sum b e^a| of the signed sum (cancellation of negative weights).

Inf and NaN must appear at exactly the same places and infinities with the same sign.
"""

import importlib
import itertools
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import fastxent
from fastxent import reference
from fastxent._compat import normalize_axis_tuple

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
EPS64 = float(np.finfo(np.float64).eps)  # 2.22e-16
RTOL = {np.dtype(np.float32): 4 * EPS32, np.dtype(np.float64): 1e-12}
UNIT = {np.dtype(np.float32): 4 * EPS32, np.dtype(np.float64): 1e-13}
PROB_ATOL = {np.dtype(np.float32): EPS32, np.dtype(np.float64): 1e-15}

DTYPES = [np.float32, np.float64]
LAYOUTS = ["c", "rows_gap", "fortran", "neg_rows", "neg_cols", "strided", "readonly", "memmap"]
THREADS = [None, 1, 2, 3]
# Vocabulary sizes from tiny to Llama-3's, with row counts that keep the suite fast.
VOCABS = [(1, 5), (2, 5), (3, 5), (7, 4), (1000, 4), (32000, 3), (128256, 2)]


# --------------------------------------------------------------------------- versions of the stack
# The support window (pyproject.toml) runs from NumPy 1.26 and the `test` extra's SciPy floor to the
# newest releases. fastxent.special follows scipy.special's logsumexp/softmax/log_softmax as of
# SciPy 1.17 on NumPy 2 (fastxent.reference transcribes that version step by step). Older SciPy
# differs: other result dtypes (before 1.15's rewrite it promotes `b` by NumPy's rules; on NumPy 1.x
# value-based casting changes them again), bool input refused, empty input raising, zero weights
# dropping inf/nan terms. A test that compares with SciPy calls `scipy_special()`: the installed
# scipy.special when it has the behaviour fastxent follows, else fastxent.reference, which stands for
# SciPy 1.17 (the newest-versions CI job compares with the real SciPy).
SCIPY_FOLLOWED = (1, 17)


def _version_tuple(v):
    return tuple(int(p) for p in v.split(".")[:2])


try:
    import scipy
    SCIPY_VERSION = _version_tuple(scipy.__version__)
except ImportError:  # scipy is a test-only dependency
    SCIPY_VERSION = None
NUMPY_VERSION = _version_tuple(np.__version__)


def scipy_follows():
    """True when the installed SciPy (and NumPy) behave as the SciPy version fastxent follows."""
    return SCIPY_VERSION is not None and SCIPY_VERSION >= SCIPY_FOLLOWED and NUMPY_VERSION >= (2, 0)


def scipy_special():
    """The logsumexp/softmax/log_softmax a test compares with: scipy.special if it behaves as
    SciPy 1.17 on NumPy 2 (`scipy_follows()`), else fastxent.reference; None without SciPy."""
    if SCIPY_VERSION is None:
        return None
    if scipy_follows():
        import scipy.special
        return scipy.special
    return reference


# Hypothesis' too_slow health check measures wall time of data generation, which on a loaded
# shared machine (and with older Hypothesis) fails tests at random: a flaky check, not a finding.
try:
    from hypothesis import HealthCheck, settings as _hyp_settings
    _hyp_settings.register_profile("fastxent", suppress_health_check=[HealthCheck.too_slow])
    _hyp_settings.load_profile("fastxent")
except ImportError:
    pass


def run_python(code: str, timeout: float, env=None):
    """Run `code` in a fresh interpreter (new session, killed as a group on timeout)."""
    e = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))  # tests/: `import test_hardening` works
    e["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(fastxent.__file__)),
                                                  here, e.get("PYTHONPATH", "")] if p)
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=e, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        return None, out, err
    return p.returncode, out, err


# --------------------------------------------------------------------------- optional packages
_REQUIRED_BY = {"torch": "FASTXENT_REQUIRE_TORCH", "jax": "FASTXENT_REQUIRE_JAX"}


def optional_import(module):
    """`module`, imported; or the calling test (or test module) skipped when it is not installed.

    With FASTXENT_REQUIRE_TORCH=1 (torch) or FASTXENT_REQUIRE_JAX=1 (jax) in the environment, as
    in the CI job that installs them, a missing package is an ImportError instead: that job
    cannot pass by skipping.
    """
    env = _REQUIRED_BY.get(module.split(".")[0])
    if env is not None and os.environ.get(env) == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (optional)")


# --------------------------------------------------------------------------- DLPack input
def all_public_results(x, t, ref, w):
    """Every public function (and `Evaluator.update`) of logits `x`, targets `t`, reference
    logits `ref` (also the weights `b` of logsumexp) and class weights `w`, which may be NumPy
    arrays or any DLPack producers: name -> result."""
    out = {
        "lse": fastxent.logsumexp(x, axis=-1), "lse_b": fastxent.logsumexp(x, axis=-1, b=ref),
        "softmax": fastxent.softmax(x), "log_softmax": fastxent.log_softmax(x),
        "xent": fastxent.cross_entropy(x, t), "xent_none": fastxent.cross_entropy(x, t, reduction="none"),
        "xent_opts": fastxent.cross_entropy(x, t, weight=w, label_smoothing=0.1, z_loss=1e-3,
                                            softcap=5.0, reduction="none"),
        "xent_grad": fastxent.cross_entropy(x, t, label_smoothing=0.1, return_grad=True)[1],
        "ppl": fastxent.perplexity(x, t), "ppl_seq": fastxent.perplexity(x, t, per_sequence=True),
        "nll": fastxent.token_stats(x, t).nll, "kl_ts": fastxent.token_stats(x, t, ref_logits=ref).kl,
        "kl": fastxent.kl_divergence(x, ref),
    }
    e = fastxent.Evaluator()
    e.update(x, t, ref)
    out["report"] = e.report()
    return out


@pytest.fixture(params=["ml_dtypes", "raw"])
def bf16_mode(request, monkeypatch):
    """bfloat16 read over DLPack as the ml_dtypes dtype, and (as without ml_dtypes) as raw uint16
    storage (`fastxent._arrays.BF16_RAW`)."""
    from fastxent import _arrays
    if request.param == "ml_dtypes":
        pytest.importorskip("ml_dtypes")
        monkeypatch.setattr(_arrays, "_bf16", None)
    else:
        monkeypatch.setattr(_arrays, "_bf16", _arrays.BF16_RAW)
    return request.param


def assert_same_results(got, want):
    """`all_public_results` of two inputs: the same values (bitwise) and types."""
    assert got.keys() == want.keys()
    for k in want:
        if k == "report":
            assert got[k] == want[k], k
            continue
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert type(got[k]) is type(want[k]), k
        assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k


# --------------------------------------------------------------------------- data and layouts
@pytest.fixture
def rng(request):
    """A generator seeded from the test id, so every test is reproducible on its own."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def logits_like(rng, shape, dtype, spread=3.0):
    """Random logits of a given dtype, rounded to that dtype."""
    return (rng.standard_normal(shape) * spread).astype(dtype)


def targets_for(rng, logits_shape, axis, dtype=np.int64, ignore_frac=0.0, ignore_index=-100):
    """Valid class indices for `logits_shape` along `axis`, some set to `ignore_index`."""
    axis = axis % len(logits_shape)
    n_classes = logits_shape[axis]
    shape = logits_shape[:axis] + logits_shape[axis + 1:]
    t = rng.integers(0, n_classes, size=shape)
    if ignore_frac:
        t[rng.random(shape) < ignore_frac] = ignore_index
    return t.astype(dtype)


def _fill_value(dtype):
    """What padding outside a view holds: NaN for floats, an invalid class for integers."""
    dtype = np.dtype(dtype)
    return np.nan if dtype.kind == "f" else np.iinfo(dtype).max


def relayout(x, layout, tmp_path=None):
    """An array equal to `x` element for element, stored with the named memory layout.

    Padding that a correct implementation never reads holds NaN (or an out-of-range class),
    so reading outside the view shows up as a wrong answer.
    """
    x = np.asarray(x)
    if layout == "c":
        return np.ascontiguousarray(x)
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "rows_gap":  # x[:, :-1, :] of a (batch, seq + 1, vocab) array
        if x.ndim < 2:
            return relayout(x, "strided")
        big = np.full(x.shape[:-2] + (x.shape[-2] + 1, x.shape[-1]), _fill_value(x.dtype), x.dtype)
        big[..., :-1, :] = x
        return big[..., :-1, :]
    if layout == "neg_rows":
        return np.flip(np.flip(x, 0).copy(), 0) if x.ndim else x.copy()
    if layout == "neg_cols":
        return np.flip(np.flip(x, -1).copy(), -1) if x.ndim else x.copy()
    if layout == "strided":  # every other element along every axis
        big = np.full(tuple(2 * n for n in x.shape), _fill_value(x.dtype), x.dtype)
        view = big[(slice(None, None, 2),) * x.ndim]
        view[...] = x
        return view
    if layout == "readonly":
        y = x.copy()
        y.setflags(write=False)
        return y
    if layout == "memmap":
        assert tmp_path is not None and x.size > 0
        path = tmp_path / f"mm_{next(_memmap_ids)}.dat"
        mm = np.memmap(path, dtype=x.dtype, mode="w+", shape=x.shape)
        mm[...] = x
        mm.flush()
        del mm
        return np.memmap(path, dtype=x.dtype, mode="r", shape=x.shape)
    raise ValueError(layout)


_memmap_ids = itertools.count()


@pytest.fixture
def make_layout(tmp_path):
    """``make_layout(x, layout)``: see `relayout`; memmaps live in the test's tmp_path."""
    def make(x, layout):
        y = relayout(x, layout, tmp_path)
        assert np.array_equal(y, x, equal_nan=True) and y.dtype == np.asarray(x).dtype
        return y
    return make


# --------------------------------------------------------------------------- references
def ref64(name, x, *args, **kwargs):
    """The reference evaluated on `x` widened to float64 (exact for float32 values)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = x.astype(np.float64)
    return getattr(reference, name)(x, *args, **kwargs)


def _axes(axis, ndim):
    return normalize_axis_tuple(tuple(range(ndim)) if axis is None else axis, ndim)


def row_scale(x, axis=None, keepdims=True, b=None):
    """``1 + max|x| + log(n)`` over each reduced row (finite, non-zero-weight entries only).

    With weights `b` adds log max(1, |b|) and multiplies by the condition number of the signed
    sum.
    Shaped like a logsumexp result with the same `axis`/`keepdims` (0-d input counts as 1-d).
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if b is not None:
        x, b = np.broadcast_arrays(x, np.asarray(b, dtype=np.float64))
        x, b = np.atleast_1d(x), np.atleast_1d(b)
    axes = _axes(axis, x.ndim)
    use = np.isfinite(x) if b is None else np.isfinite(x) & (b != 0)
    n = max(1, math.prod(x.shape[a] for a in axes))
    with np.errstate(all="ignore"):
        big = np.max(np.where(use, np.abs(x), 0.0), axis=axes, keepdims=True, initial=0.0)
        scale = 1.0 + big + math.log(n)
        if b is not None:
            wb = np.where(use, np.abs(b), 0.0)
            scale = scale + np.log(np.max(wb, axis=axes, keepdims=True, initial=1.0))
            m = np.max(np.where(use, x, -np.inf), axis=axes, keepdims=True, initial=-np.inf)
            terms = np.where(use, b * np.exp(x - np.where(np.isfinite(m), m, 0.0)), 0.0)
            kappa = np.sum(np.abs(terms), axis=axes, keepdims=True) / np.abs(
                np.sum(terms, axis=axes, keepdims=True))
            scale = scale * np.where(np.isfinite(kappa) & (kappa > 1), kappa, 1.0)
    return scale if keepdims else np.squeeze(scale, axis=axes)


def ce_scale(logits, axis=-1):
    """`row_scale` of every class row of `logits`, shaped like the target."""
    return np.squeeze(row_scale(np.moveaxis(np.asarray(logits), axis, -1), -1), -1)


# --------------------------------------------------------------------------- assertions
def _check_specials(got, ref, dtype):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    with np.errstate(over="ignore"):  # an exact value beyond the dtype's range rounds to inf
        ref = np.where(np.isinf(ref.astype(dtype)), ref.astype(dtype), ref)
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    nan_g, nan_r = np.isnan(got), np.isnan(ref)
    assert np.array_equal(nan_g, nan_r), (
        f"NaN at {np.argwhere(nan_g != nan_r)[:5].tolist()}: got {got[nan_g != nan_r][:5]}, "
        f"reference {ref[nan_g != nan_r][:5]}")
    inf_r = np.isinf(ref)
    assert np.array_equal(got[inf_r], ref[inf_r]), (
        f"infinities differ: got {got[inf_r][:5]}, reference {ref[inf_r][:5]}")
    return got, ref, np.isfinite(ref)


def _report(got, ref, bound, fin, what):
    err = np.where(fin, np.abs(got - np.where(fin, ref, 0.0)), 0.0)
    bad = np.asarray(err > bound) & fin
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.where(bound > 0, bound, 1), 0)),
                             bad.shape) if bad.ndim else ()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} values out of tolerance; worst at {i}: "
            f"got {got[i]!r}, reference {ref[i]!r}, |diff| {err[i]:.3g} > bound "
            f"{np.broadcast_to(bound, bad.shape)[i]:.3g}")


def assert_log_close(got, ref, dtype, scale, factor=1):
    """Log-space comparison, see module docstring. ``factor=2`` compares two computed values,
    each within the bound of the truth."""
    dtype = np.dtype(dtype)
    got, ref, fin = _check_specials(got, ref, dtype)
    bound = RTOL[dtype] * np.abs(np.where(fin, ref, 0.0)) + UNIT[dtype] * np.asarray(scale)
    _report(got, ref, factor * bound, fin, "log-space")


def assert_prob_close(got, ref, dtype, scale, factor=1):
    """Probability comparison, see module docstring; `factor` as in `assert_log_close`."""
    dtype = np.dtype(dtype)
    got, ref, fin = _check_specials(got, ref, dtype)
    bound = ((RTOL[dtype] + UNIT[dtype] * np.asarray(scale)) * np.abs(np.where(fin, ref, 0.0))
             + PROB_ATOL[dtype])
    _report(got, ref, factor * bound, fin, "probability")


def assert_result_type(got, dtype, shape):
    """dtype and shape of a result; 0-d results must be NumPy scalars of that dtype."""
    dtype = np.dtype(dtype)
    if shape == ():
        assert type(got) is dtype.type, f"expected a {dtype.type.__name__} scalar, got {type(got)}"
    else:
        assert isinstance(got, np.ndarray), type(got)
        assert got.dtype == dtype, f"dtype {got.dtype} != {dtype}"
        assert got.shape == shape, f"shape {got.shape} != {shape}"


def assert_bitwise_equal_over_threads(fn, *args, **kwargs):
    """``fn(..., n_threads=k)`` must give identical bits for every k in THREADS."""
    results = [fn(*args, n_threads=k, **kwargs) for k in THREADS]
    for k, r in zip(THREADS[1:], results[1:]):
        assert np.asarray(r).dtype == np.asarray(results[0]).dtype
        assert np.array_equal(np.asarray(r), np.asarray(results[0]), equal_nan=True), (
            f"n_threads={k} differs from n_threads={THREADS[0]}")
    return results[0]


@pytest.fixture(scope="session")
def fx():
    return fastxent


#: the ISA the session started on: the best this CPU runs, or the one FASTXENT_ISA caps it at
SESSION_ISA = fastxent.show_config(print_out=False)["isa"]


@pytest.fixture(autouse=True)
def _session_isa():
    """Every test starts (and ends) on SESSION_ISA.  Tests that restore with ``set_isa(None)``
    (the best ISA, whatever FASTXENT_ISA says) used to leave the rest of the suite on AVX-512, so
    that ``FASTXENT_ISA=avx2 pytest`` tested AVX2 only up to the first of them."""
    if fastxent.show_config(print_out=False)["isa"] != SESSION_ISA:
        fastxent.set_isa(SESSION_ISA)
    yield
    if fastxent.show_config(print_out=False)["isa"] != SESSION_ISA:
        fastxent.set_isa(SESSION_ISA)


@pytest.fixture(params=fastxent.available_isas())
def isa(request):
    """Run a test with the kernels capped at each instruction set this CPU can run."""
    before = fastxent.show_config(print_out=False)["isa"]
    assert fastxent.set_isa(request.param) == request.param
    yield request.param
    fastxent.set_isa(before)


# --------------------------------------------------------------------------- cross_entropy options
# Bounds for cross_entropy with weights, label smoothing, probability targets, z-loss and softcap,
# derived from the same two constants per dtype. Per position, with the row scale s of the (capped)
# logits and K = sum_c coef_c (coef = weighted target distribution, see reference._terms):
#   cross-entropy  U * s * K                   (each lse - x_c is log-space, weighted by coef_c)
#   z-loss         U * s * 2 z |lse|           (d(z lse^2) = 2 z lse d(lse))
# plus RTOL * |result| for the final rounding; "sum"/"mean" add up (and divide) the same way.
# Gradient entries are sums of probability-like terms, so each gets a relative bound on the sum of
# their magnitudes, (RTOL + U * s) * M, M = (gs (a |p - onehot| + B p + b) + zs 2 z |lse| p) * chain
# (gs, zs: the "mean" scales; a, b: one-hot and smooth parts of coef, B = sum b), plus the error
# of lse in the z part, U * s * zs 2 z p * chain, plus a few smallest normals for underflow.
# The target entry p_t - 1 must thus be relatively accurate.

# The softcap chain factor (1/cosh^2, computed as 4e/(1+e)^2) and the target entry p_t - 1 (from
# the sum of the other terms when the target is a largest logit) keep their relative precision,
# so no extra allowance is made for them (they were KNOWN ISSUES with an allowance before).
SOFTCAP_CHAIN_SLACK = {np.dtype(np.float32): 0.0, np.dtype(np.float64): 0.0}
TARGET_SLACK = 0.0


def has_ml_dtypes():
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        return False
    return True


def float16_dtypes():
    """float16 and, when ml_dtypes is importable, bfloat16."""
    if not has_ml_dtypes():
        return [np.float16]
    import ml_dtypes
    return [np.float16, ml_dtypes.bfloat16]


def widen(x):
    """Floating arrays (bfloat16 included) as float64; anything else unchanged."""
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x


def result_dtype_of(logits):
    """float64 for float64 logits, float32 for every other floating dtype."""
    return np.dtype(np.float64 if np.asarray(logits).dtype == np.float64 else np.float32)


def xent_bounds(logits, target, *, reduction="mean", z_loss=0.0, axis=-1, weight=None,
                ignore_index=-100, label_smoothing=0.0, softcap=None):
    """Reference (loss, z, grad) of cross_entropy on the widened values and their error bounds."""
    dt = result_dtype_of(logits)
    rt, unit, tiny = RTOL[dt], UNIT[dt], float(np.finfo(dt).tiny)
    opts = dict(axis=axis, weight=weight, ignore_index=ignore_index,
                label_smoothing=label_smoothing, softcap=softcap)
    x = widen(logits)
    ref = reference.cross_entropy(x, target, reduction=reduction, z_loss=z_loss,
                                  return_z_loss=True, return_grad=True, **opts)
    r = reference._terms(x, target, **opts)
    fin = lambda v: np.where(np.isfinite(v), v, 0.0)  # noqa: E731  (non-finite: checked apart)
    counted, denom, n = r["counted"], r["denom"], r["counted"].sum()
    s = np.squeeze(row_scale(r["x"], -1), -1)
    alse = np.where(counted, fin(np.abs(r["lse"])), 0.0)
    e_ce = unit * s * r["coef"].sum(-1)
    e_z = unit * s * 2 * z_loss * alse
    with np.errstate(all="ignore"):
        if reduction == "none":
            e_loss, e_zr, gs, zs = e_ce + e_z, e_z, 1.0, 1.0
        elif reduction == "sum":
            e_loss, e_zr, gs, zs = e_ce.sum() + e_z.sum(), e_z.sum(), 1.0, 1.0
        else:
            gs, zs = (1 / denom if denom else 0.0), (1 / n if n else 0.0)
            e_zr = e_z.sum() * zs
            e_loss = e_ce.sum() * gs + e_zr
    p, onehot, a, b = fin(r["p"]), r["onehot"], r["a"][..., None], r["b"]
    others = np.where(onehot, 0.0, p).sum(-1, keepdims=True)
    m = (gs * (a * np.where(onehot, others, p) + b.sum(-1, keepdims=True) * p + b)
         + zs * 2 * z_loss * alse[..., None] * p)
    # (+ tiny: below the smallest normal number the entry itself may flush to zero, as the loss;
    # with small coefficients or a softcap chain the scaled term alone was below one subnormal
    # ulp, found by tests/test_differential.py)
    atol = 4 * tiny * (gs * (a + b.sum(-1, keepdims=True) + b) + zs * 2 * z_loss * alse[..., None]) + tiny
    e_grad = (rt + unit * s[..., None]) * m * fin(r["chain"]) + atol
    # the z part 2 z lse p also carries lse's own error, U * s absolute (not relative to |lse|:
    # where max + log(sum) cancels, |lse| << s; found by tests/test_differential.py)
    e_grad = e_grad + unit * s[..., None] * zs * 2 * z_loss * np.where(counted[..., None], p, 0.0) \
        * fin(r["chain"])
    if softcap is not None:
        e_grad = e_grad + SOFTCAP_CHAIN_SLACK[dt] * m
    e_grad = e_grad + TARGET_SLACK * gs * a * onehot * fin(r["chain"])
    e_grad = np.moveaxis(e_grad, -1, r["axis"])
    loss, z, grad = ref
    # below the smallest normal number a result may flush to zero
    return ref, (rt * fin(np.abs(loss)) + e_loss + tiny, rt * fin(np.abs(z)) + e_zr + tiny, e_grad)


def assert_within(got, ref, bound, dtype, what):
    """Same non-finite values at the same places, finite ones within `bound`."""
    got, ref, fin = _check_specials(got, ref, np.dtype(dtype))
    bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), np.shape(ref))
    assert np.isfinite(bound).all(), f"{what}: non-finite error bound"
    _report(got, ref, bound, fin, what)


def check_xent(fx, logits, target, **kw):
    """``fx.cross_entropy(..., return_z_loss=True, return_grad=True)`` against the reference on
    the widened values: types, dtypes, shapes and values of loss, z and grad. Returns them."""
    got = fx.cross_entropy(logits, target, return_z_loss=True, return_grad=True, **kw)
    kw.pop("n_threads", None)
    (loss_r, z_r, grad_r), (e_loss, e_z, e_grad) = xent_bounds(logits, target, **kw)
    assert isinstance(got, tuple) and len(got) == 3
    loss, z, grad = got
    dt = result_dtype_of(logits)
    assert_result_type(loss, dt, np.shape(loss_r))
    assert_result_type(z, dt, np.shape(z_r))
    assert_result_type(grad, dt, np.shape(logits))
    assert_within(loss, loss_r, e_loss, dt, "loss")
    assert_within(z, z_r, e_z, dt, "z-loss")
    assert_within(grad, grad_r, e_grad, dt, "gradient")
    return got


# name -> options; "weight" is replaced by per-class weights of the test's class count
OPTIONS = {
    "plain": {},
    "weight": dict(weight=True),
    "smooth": dict(label_smoothing=0.1),
    "weight_smooth": dict(weight=True, label_smoothing=0.25),
    "z": dict(z_loss=0.05),
    "softcap": dict(softcap=4.0),
    "smooth_z_softcap": dict(label_smoothing=0.1, z_loss=1e-3, softcap=6.0),
    "all": dict(weight=True, label_smoothing=0.1, z_loss=0.02, softcap=5.0),
}


def options(name, rng, n_classes):
    opts = dict(OPTIONS[name])
    if opts.get("weight"):
        opts["weight"] = rng.uniform(0.25, 2.0, n_classes)
    return opts


def probs_like(rng, shape, axis, dtype=np.float64, zero_frac=0.0):
    """Random class distributions along `axis` (some entries exactly 0), rounded to `dtype`."""
    e = np.exp(rng.standard_normal(shape) * 2)
    if zero_frac:  # never the largest entry of a row, so every row sums to 1
        e[(rng.random(shape) < zero_frac) & (e < e.max(axis=axis, keepdims=True))] = 0.0
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype)


def place(values, layout):
    """`values` of shape (B, T, C) -> (array, axis) in one of the layouts of the grid."""
    if layout == "c":
        return np.ascontiguousarray(values), -1
    if layout == "class_axis_1":  # (B, C, T) view of (B, T, C) memory: classes contiguous
        return np.moveaxis(values, -1, 1), 1
    if layout == "class_axis_1_strided":  # C-contiguous (B, C, T): classes T elements apart
        return np.ascontiguousarray(np.moveaxis(values, -1, 1)), 1
    if layout == "rows_gap":  # x[:, :-1, :] of a (B, T + 1, C) array, NaN in the gap
        b, t, c = values.shape
        big = np.full((b, t + 1, c), np.nan, values.dtype)
        big[:, :-1] = values
        return big[:, :-1], -1
    raise ValueError(layout)
