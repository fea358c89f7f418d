"""``python -m fastxent selftest``: every ISA this CPU runs, checked against the float64 reference
and against the baseline variant on a fixed grid, plus the adversarial accuracy catalogue.

The ISAs are the package's (`fastxent.available_isas`), so a new variant is checked without
touching this file.  The grid: every public operation (logsumexp with and without ``b``,
softmax, log_softmax, cross_entropy with its options, reductions and gradient, perplexity,
token_stats with reference logits, kl_divergence) x float32 / float64 / float16 / bfloat16 x
four layouts (every cross_entropy option on C-ordered rows) x V from the lane path to the block
edges, 1 thread, and 2 threads on C-ordered rows and one long row (split across the threads).
Results are compared within the test suite's tolerances (tests/conftest.py: log-space results
within ``RTOL |ref| + UNIT (1 + max|x| + log n)`` of the float64 reference, probabilities and
gradients within ``(RTOL + UNIT scale) |ref| + PROB_ATOL``), not bitwise: ISAs sum in different
orders.  Against the baseline the allowance is twice that (both within it of the exact value);
NaN and infinities must sit at the same places, booleans must agree.  The catalogue
(fastxent._accuracy) holds logsumexp, cross_entropy and log_softmax to the README's 2-ulp
contract.  A check's "units" are its error divided by its allowance: above 1 is a failure.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

import numpy as np

from . import _accuracy, _arrays, _config, reference
from .losses import cross_entropy, perplexity
from .special import log_softmax, logsumexp, softmax
from ._per_token import kl_divergence, token_stats

ref64: Any = reference   # the float64 oracle (typed loosely: its results are arrays or scalars)
EPS32 = float(np.finfo(np.float32).eps)
RTOL = {"float32": 4 * EPS32, "float64": 1e-12}
UNIT = {"float32": 4 * EPS32, "float64": 1e-13}
PROB_ATOL = {"float32": EPS32, "float64": 1e-15}
DTYPES = ("float32", "float64", "float16", "bfloat16")
LAYOUTS = ("c", "strided", "transposed", "reversed")
#: (rows, V): the lane path (V <= 64), the first block-path width, a typical row, the block edge
SHAPES = ((33, 7), (9, 65), (5, 1000), (3, 4097))
LONG_ROW = (1, 3 * 4096 + 5)   # split across threads (n_threads=2)
THREADS = (1, 2)
CATALOGUE_VOCABS = _accuracy.VOCABS
XENT_OPTIONS: Tuple[Tuple[str, Dict[str, Any]], ...] = (
    ("", {}),
    ("weight", {"weight": "w"}),
    ("ignore_index", {"ignore": True}),
    ("label_smoothing=0.1", {"label_smoothing": 0.1}),
    ("z_loss=1e-4", {"z_loss": 1e-4}),
    ("softcap=5", {"softcap": 5.0}),
    ("probability targets", {"prob": True}),
    ("weight+smoothing+z_loss+ignore", {"weight": "w", "label_smoothing": 0.05, "z_loss": 1e-4,
                                         "ignore": True}),
)


# --------------------------------------------------------------------------- inputs
def _bf16(x32: np.ndarray) -> np.ndarray:
    """`x32` rounded to bfloat16 (to nearest even): the ml_dtypes dtype, or without ml_dtypes
    the uint16 storage fastxent reads as bfloat16 (what DLPack gives it)."""
    dt = _arrays._bfloat16_dtype()
    if dt is not _arrays.BF16_RAW:
        return x32.astype(dt)
    u = np.ascontiguousarray(x32, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r.view(dt).reshape(x32.shape)


def _widen(x: np.ndarray) -> np.ndarray:
    if _arrays._is_raw(x.dtype):
        return (x.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return x.astype(np.float64)


def _in_dtype(x64: np.ndarray, dtype: str) -> np.ndarray:
    return _bf16(x64.astype(np.float32)) if dtype == "bfloat16" else x64.astype(dtype)


def _layout(x: np.ndarray, layout: str) -> Tuple[np.ndarray, int]:
    """`x` (rows, V) in `layout`, and the class axis."""
    if layout == "c":
        return np.ascontiguousarray(x), -1
    if layout == "strided":                 # rows and classes strided (every other column)
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2], -1
    if layout == "transposed":              # classes on axis 0
        return np.ascontiguousarray(x.T), 0
    if layout == "reversed":                # negative strides on both axes
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1], -1
    raise ValueError(layout)


class _Point:
    """One grid point: its inputs in the dtype and layout, and their float64 widening."""

    def __init__(self, dtype: str, layout: str, shape: Tuple[int, int], seed: int) -> None:
        rng = np.random.default_rng(seed)
        rows, vocab = shape
        x = _in_dtype(rng.standard_normal(shape) * 3, dtype)
        y = _in_dtype(rng.standard_normal(shape) * 3, dtype)       # reference logits
        self.dtype, self.layout, self.shape = dtype, layout, shape
        self.x, self.axis = _layout(x, layout)
        self.y, _ = _layout(y, layout)
        self.x64, self.y64 = _widen(self.x), _widen(self.y)
        self.target = rng.integers(0, vocab, rows)
        self.ignored = self.target.copy()
        self.ignored[1::4] = -100
        w = np.round(rng.uniform(0.5, 2.0, vocab) * 64) / 64
        self.weight = w.astype(np.float32 if dtype != "float64" else np.float64)
        q = rng.uniform(0, 1, shape)
        q /= q.sum(axis=1, keepdims=True)
        self.prob, _ = _layout(q.astype(np.float32 if dtype != "float64" else np.float64), layout)
        self.res = "float64" if dtype == "float64" else "float32"
        self.label = f"{dtype} {layout} {rows}x{vocab}"

    def scale(self, x64: Optional[np.ndarray] = None) -> np.ndarray:
        """Per row: 1 + max|x| over the finite values + log(n)."""
        x = np.moveaxis(self.x64 if x64 is None else x64, self.axis, -1)
        return 1 + np.max(np.abs(x), axis=-1) + np.log(x.shape[-1])

    def per_class(self, row_values: np.ndarray) -> np.ndarray:
        """Per-row values broadcast over the classes, in the layout's shape."""
        return np.expand_dims(row_values, self.axis)


# --------------------------------------------------------------------------- checks
class _Check:
    """An operation at a grid point: `run()` calls fastxent, `ref` is the float64 reference
    result, `allow` the allowance (same shape; 0 where values must be equal)."""

    def __init__(self, label: str, run: Callable[[], Any], ref: Any, allow: Any) -> None:
        self.label, self.run = label, run
        self.ref = [np.asarray(r, np.float64) for r in _as_list(ref)]
        self.allow = [np.broadcast_to(np.asarray(a, np.float64), r.shape)
                      for a, r in zip(_as_list(allow), self.ref)]


def _as_list(v: Any) -> List[Any]:
    return list(v) if isinstance(v, (tuple, list)) else [v]


def _units(got: Any, want: np.ndarray, allow: np.ndarray, factor: float = 1.0) -> float:
    """max |got - want| / (factor * allow); 0 where both are the same infinity or both NaN,
    inf where only one is (or the shapes differ; allow 0: the values must be equal)."""
    got = np.asarray(got, np.float64)
    if got.shape != want.shape:
        return np.inf
    if got.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        u = np.abs(got - want) / (factor * allow)
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        worst = float(np.max(np.where(same, 0.0, u)))
    return np.inf if worst != worst else worst


def _log_allow(p: _Point, ref: np.ndarray, scale: np.ndarray, factor: Any = 1.0) -> np.ndarray:
    return RTOL[p.res] * np.abs(ref) + UNIT[p.res] * scale * factor


def _prob_allow(p: _Point, ref: np.ndarray, scale: np.ndarray, mag: Optional[np.ndarray] = None) -> np.ndarray:
    m = np.abs(ref) if mag is None else mag
    return (RTOL[p.res] + UNIT[p.res] * scale) * m + PROB_ATOL[p.res]


def _bind(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


def _checks(p: _Point, n_threads: int) -> List[_Check]:
    ax, nt, out = p.axis, n_threads, []
    sc = p.scale()
    sc_c = p.per_class(sc)

    def add(op: str, run: Callable[[], Any], ref: Any, allow: Any) -> None:
        out.append(_Check(f"{op} {p.label} n_threads={nt}", run, ref, allow))

    ref = ref64.logsumexp(p.x64, axis=ax)
    add("logsumexp", lambda: logsumexp(p.x, axis=ax, n_threads=nt), ref, _log_allow(p, ref, sc))
    b = np.linspace(0.5, 2.0, p.x.shape[ax])
    b = b if ax == -1 else b[:, None]
    ref = ref64.logsumexp(p.x64, axis=ax, b=b)
    add("logsumexp(b=)", lambda: logsumexp(p.x, axis=ax, b=b, n_threads=nt), ref,
        _log_allow(p, ref, sc + np.log(2.0)))
    ref = ref64.softmax(p.x64, axis=ax)
    add("softmax", lambda: softmax(p.x, axis=ax, n_threads=nt), ref, _prob_allow(p, ref, sc_c))
    ref = ref64.log_softmax(p.x64, axis=ax)
    add("log_softmax", lambda: log_softmax(p.x, axis=ax, n_threads=nt), ref, _log_allow(p, ref, sc_c))

    for name, opt in XENT_OPTIONS:
        if p.layout != "c" and name not in ("", "weight+smoothing+z_loss+ignore"):
            continue   # each option on C rows; the other layouts with none and all of them
        kw: Dict[str, Any] = {k: v for k, v in opt.items() if k not in ("weight", "ignore", "prob")}
        if opt.get("weight"):
            kw["weight"] = p.weight
        t = p.prob if opt.get("prob") else (p.ignored if opt.get("ignore") else p.target)
        z = kw.get("z_loss", 0.0)
        x_used = p.x64 if "softcap" not in kw else kw["softcap"] * np.tanh(p.x64 / kw["softcap"])
        lse = np.moveaxis(ref64.logsumexp(x_used, axis=ax, keepdims=True), ax, -1)[..., 0]
        f = (float(p.weight.max()) if "weight" in kw else 1.0) * (1 + 2 * z * np.abs(lse))
        label = f"cross_entropy({name})" if name else "cross_entropy"
        reductions = ("none", "sum", "mean") if name in ("", "weight+smoothing+z_loss+ignore") else ("none",)
        none = ref64.cross_entropy(p.x64, t, axis=ax, reduction="none", **kw)
        row_allow = _log_allow(p, none, sc, f)
        for red in reductions:
            ref = ref64.cross_entropy(p.x64, t, axis=ax, reduction=red, **kw)
            allow: Any = row_allow
            if red != "none":
                counted = np.ones_like(none) if opt.get("prob") else (np.asarray(t) != -100)
                total = float(np.sum(np.where(counted, row_allow, 0.0)))
                if red == "mean":
                    w_t = (p.weight[np.where(counted, t, 0)] if "weight" in kw and not opt.get("prob")
                           else np.ones_like(none))
                    total /= max(float(np.sum(np.where(counted, w_t, 0.0))), 1e-300)
                allow = RTOL[p.res] * abs(float(ref)) + total
            add(f"{label} reduction={red}",
                _bind(cross_entropy, p.x, t, axis=ax, reduction=red, n_threads=nt, **kw), ref, allow)
        ref_l, ref_g = ref64.cross_entropy(p.x64, t, axis=ax, reduction="sum", return_grad=True, **kw)
        prob = ref64.softmax(x_used, axis=ax)
        add(f"{label} gradient (sum)",
            _bind(lambda *a, **k: cross_entropy(*a, **k)[1], p.x, t, axis=ax, reduction="sum",
                  return_grad=True, n_threads=nt, **kw),
            ref_g, _prob_allow(p, ref_g, sc_c, np.abs(ref_g) + p.per_class(f) * prob))

    ref = ref64.perplexity(p.x64, p.ignored, axis=ax)
    counted = p.ignored != -100
    mean_allow = float(np.mean(_log_allow(p, np.zeros(counted.sum()), sc[counted])))
    add("perplexity", lambda: perplexity(p.x, p.ignored, axis=ax, n_threads=nt), ref,
        abs(float(ref)) * (RTOL[p.res] + mean_allow))

    sy = p.scale(p.y64)
    r = ref64.token_stats(p.x64, p.ignored, ref_logits=p.y64, axis=ax)
    fields = ("nll", "entropy", "p_target", "correct", "kl", "same_top", "ref_nll", "ref_p_target")
    refs = [np.asarray(r[k], np.float64) for k in fields]
    allows = [_log_allow(p, refs[0], sc), _log_allow(p, refs[1], sc), _prob_allow(p, refs[2], sc), 0.0,
              _log_allow(p, refs[4], sc + sy), 0.0, _log_allow(p, refs[6], sy), _prob_allow(p, refs[7], sy)]
    add("token_stats(ref_logits=)", lambda: [getattr(s, k) for s in [token_stats(
        p.x, p.ignored, ref_logits=p.y, axis=ax, n_threads=nt)] for k in fields], refs, allows)
    ref = ref64.kl_divergence(p.y64, p.x64, axis=ax)
    add("kl_divergence", lambda: kl_divergence(p.y, p.x, axis=ax, n_threads=nt), ref,
        _log_allow(p, ref, sc + sy))
    return out


def grid() -> List[Tuple[_Point, int]]:
    """The fixed grid: (point, n_threads) pairs."""
    pts: List[Tuple[_Point, int]] = []
    seed = 0
    for dtype in DTYPES:
        for layout in LAYOUTS:
            for shape in SHAPES:
                seed += 1
                pt = _Point(dtype, layout, shape, seed)
                pts += [(pt, nt) for nt in (THREADS if layout == "c" else (1,))]
        seed += 1
        pts.append((_Point(dtype, "c", LONG_ROW, seed), 2))
    return pts


# --------------------------------------------------------------------------- run
class _Result:
    def __init__(self, isa: str) -> None:
        self.isa, self.n, self.worst_ref, self.worst_base, self.worst_ulp = isa, 0, 0.0, 0.0, 0.0
        self.failures: List[str] = []


def run(isas: Optional[List[str]] = None, out: Optional[TextIO] = None, verbose: bool = False) -> bool:
    """Run the self-test on the baseline and `isas` (default: every available ISA), print one
    line per ISA and a verdict; True when every one is within the contract.  The ISA in use is
    restored afterwards."""
    import sys

    out = sys.stdout if out is None else out
    start = time.perf_counter()
    cfg = _config.show_config(print_out=False)
    available = cfg["isas_available"]
    isas = ["baseline"] + [i for i in (available if isas is None else isas) if i != "baseline"]
    before = cfg["isa"]
    checks = [c for pt, nt in grid() for c in _checks(pt, nt)]
    catalogue = _accuracy.cases("float32", vocabs=CATALOGUE_VOCABS)
    print(f"fastxent {cfg['version']} selftest: ISAs {', '.join(isas)} (available: {', '.join(available)}; "
          f"in use: {before}{'; emulated by SIMDe: ' + ', '.join(cfg['isas_emulated']) if cfg['isas_emulated'] else ''}); OpenMP {'on' if cfg['openmp'] else 'off'}; per ISA {len(checks)} grid checks "
          f"against the float64 reference and the baseline, {3 * len(catalogue)} on the accuracy "
          "catalogue", file=out)
    baseline: Dict[int, List[np.ndarray]] = {}
    results = []
    try:
        for isa in isas:
            if _config.set_isa(isa) != isa:
                raise RuntimeError(f"could not select ISA {isa!r}")
            res = _Result(isa)
            for k, c in enumerate(checks):
                try:
                    got = [np.asarray(g) for g in _as_list(c.run())]
                except Exception as e:  # a variant that raises fails, it does not stop the test
                    res.failures.append(f"{c.label}: raised {type(e).__name__}: {e}")
                    continue
                res.n += 1
                u_ref = max(_units(g, r, a) for g, r, a in zip(got, c.ref, c.allow))
                res.worst_ref = max(res.worst_ref, u_ref)
                if u_ref > 1:
                    res.failures.append(f"{c.label}: {u_ref:.3g} x the tolerance against the float64 reference")
                if isa == "baseline":
                    baseline[k] = got
                elif k in baseline:
                    u_b = max(_units(g, b, a, 2.0) for g, b, a in zip(got, baseline[k], c.allow))
                    res.worst_base = max(res.worst_base, u_b)
                    if u_b > 1:
                        res.failures.append(f"{c.label}: {2 * u_b:.3g} x the tolerance against the baseline")
            for case in catalogue:
                for op, fn in (("logsumexp", lambda: logsumexp(case.x, axis=-1, n_threads=1)),
                               ("cross_entropy", lambda: cross_entropy(case.x, case.target, reduction="none",
                                                                       n_threads=1)),
                               ("log_softmax", lambda: log_softmax(case.x, axis=-1, n_threads=1))):
                    res.n += 1
                    u = float(np.max(case.units(op, fn())))
                    res.worst_ulp = max(res.worst_ulp, u)
                    if not u <= 2:
                        res.failures.append(f"{op} catalogue {case.name}: {u:.3g} ulp (contract: 2)")
            results.append(res)
            status = "ok  " if not res.failures else "FAIL"
            vs = "" if isa == "baseline" else f", {res.worst_base:.2f} against the baseline"
            head = (f"  {isa:<9} {status} {res.n} checks; worst {res.worst_ref:.2f} of the tolerance "
                    f"against float64{vs}; catalogue worst {res.worst_ulp:.2f} ulp (contract 2)")
            if res.failures:
                head += f"; {len(res.failures)} failed: {res.failures[0]}"
            print(head, file=out)
            for f in res.failures[1:] if verbose else res.failures[1:3]:
                print(f"            {f}", file=out)
            if not verbose and len(res.failures) > 3:
                print(f"            ... {len(res.failures) - 3} more (--verbose lists them)", file=out)
    finally:
        _config.set_isa(before)
    bad = [r.isa for r in results if r.failures]
    took = time.perf_counter() - start
    if bad:
        print(f"selftest FAILED on {', '.join(bad)} ({took:.1f} s): please report it with the lines "
              "above and `python -m fastxent --version`", file=out)
    else:
        print(f"selftest passed: {', '.join(isas)} within the accuracy contract ({took:.1f} s)", file=out)
    return not bad
