"""The report of an `Evaluator`: statistics from exact totals, percentiles, and the text.

`make_report` turns the totals an `Evaluator` holds (token counts and `_exact.ExactSum`s of the
per-token values, their squares and cross products) into the report dict
(`fastxent.typing.EvaluatorReport`): means with standard errors computed exactly and rounded
once, binomial errors, the correlation of two models' NLLs, and the exact percentiles of the
kept per-token values.  `format_report` prints such a report.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ._exact import ExactSum
from .typing import EvaluatorReport

# (report key, percentile) in the order llama.cpp prints them
PERCENTILES = (("max", 100.0), ("p99.9", 99.9), ("p99", 99.0), ("p95", 95.0), ("p90", 90.0),
               ("median", 50.0), ("p10", 10.0), ("p5", 5.0), ("p1", 1.0), ("p0.1", 0.1),
               ("min", 0.0))
_Z95 = 1.959963984540054  # two-sided 95% normal quantile


def mean_se(s1: ExactSum, s2: ExactSum, n: int) -> Tuple[float, float]:
    """Mean of n values from their exact sum and sum of squares, and its standard error
    sqrt(sample variance / n) (NaN for n < 2); computed exactly, rounded once."""
    if n == 0:
        return math.nan, math.nan
    f1, f2 = s1.fraction(), s2.fraction()
    if f1 is None or f2 is None:
        return s1.value() / n, math.nan
    mean = float(f1 / n)
    if n < 2:
        return mean, math.nan
    se2 = (n * f2 - f1 * f1) / (n * n * (n - 1))
    return mean, math.sqrt(max(float(se2), 0.0))


def binomial(k: int, n: int) -> Tuple[float, float]:
    """Proportion k / n and its standard error sqrt(p (1 - p) / (n - 1))."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    return p, (math.sqrt(p * (1.0 - p) / (n - 1)) if n > 1 else math.nan)


def exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def percentiles(values: np.ndarray) -> Dict[str, float]:
    """Exact percentiles (NumPy's linear interpolation, as llama.cpp) of the kept values.

    Percentile q is ``(1 - t) a + t b`` for the sorted values ``a, b`` around the virtual
    index ``(n - 1) q / 100`` (fraction t).  Where a or b is infinite NumPy's formula gives
    NaN (``inf - inf``, even for the maximum); the value is then its limit: the infinity
    when it has a positive weight (``a``, or ``b`` with ``t > 0``), else ``a``; NaN only
    between ``-inf`` and ``+inf``.  So one token with KL = +inf makes ``max`` and the high
    percentiles that reach it +inf and leaves the others finite.  NaN values make every
    percentile NaN, as in NumPy.
    """
    v = values.astype(np.float64)
    qs = [q for _, q in PERCENTILES]
    with np.errstate(invalid="ignore"):
        res = np.percentile(v, qs)
    if np.isinf(v).any() and not np.isnan(v).any():
        srt = np.sort(v)
        h = (srt.size - 1) * (np.asarray(qs, dtype=np.float64) / 100)  # NumPy's virtual index
        lo = np.floor(h).astype(np.intp)
        t = h - lo
        a, b = srt[lo], srt[np.minimum(lo + 1, srt.size - 1)]
        limit = np.where((t == 0) | (a == b), a,
                         np.where(np.isinf(a) & np.isinf(b), np.nan, np.where(np.isinf(a), a, b)))
        res = np.where(np.isinf(a) | np.isinf(b), limit, res)
    return {k: float(v) for (k, _), v in zip(PERCENTILES, res)}



def correlation(s1: ExactSum, s11: ExactSum, s2: ExactSum, s22: ExactSum, s12: ExactSum,
                n: int) -> float:
    """Pearson's correlation of two sets of n values from their exact sums, squares and cross
    products (NaN for n < 2, a non-finite value or no spread)."""
    a, aa, b, bb, ab = (x.fraction() for x in (s1, s11, s2, s22, s12))
    if n < 2 or a is None or aa is None or b is None or bb is None or ab is None:
        return math.nan
    va, vb = n * aa - a * a, n * bb - b * b
    if va <= 0 or vb <= 0:
        return math.nan
    return float(n * ab - a * b) / math.sqrt(float(va) * float(vb))


def make_report(tokens: int, correct: int, same_top: int, sums: Mapping[str, ExactSum],
                has_ref: Optional[bool], kl: Optional[np.ndarray] = None,
                delta_p: Optional[np.ndarray] = None) -> EvaluatorReport:
    """The report of `Evaluator.report` from an evaluator's totals (`sums`: the `ExactSum` of
    each of `_evaluator.SUMS` and, with a reference, `_evaluator.REF_SUMS`); `kl` and `delta_p`
    are the kept per-token values (None: no percentiles)."""
    n, s = tokens, sums
    r: Any = {"tokens": n}  # an EvaluatorReport, filled key by key
    m, se = mean_se(s["nll"], s["nll2"], n)
    r["nll_mean"], r["nll_err"] = m, se
    ppl = exp(m)
    r["ppl"], r["ppl_err"] = ppl, ppl * se
    r["ppl_ci95"] = [exp(m - _Z95 * se), exp(m + _Z95 * se)]
    r["bits_per_token"], r["bits_per_token_err"] = m / math.log(2), se / math.log(2)
    r["top1_accuracy"], r["top1_accuracy_err"] = binomial(correct, n)
    r["entropy_mean"] = s["entropy"].value() / n if n else math.nan
    if not has_ref:
        return r
    rm, rse = mean_se(s["ref_nll"], s["ref_nll2"], n)
    r["ref_nll_mean"] = rm
    r["ref_ppl"] = exp(rm)
    r["ref_ppl_err"] = r["ref_ppl"] * rse
    r["nll_correlation"] = correlation(s["nll"], s["nll2"], s["ref_nll"], s["ref_nll2"],
                                        s["nll_ref_nll"], n)
    dm, dse = mean_se(s["dnll"], s["dnll2"], n)
    r["ln_ppl_ratio"], r["ln_ppl_ratio_err"] = dm, dse
    ratio = exp(dm)
    r["ppl_ratio"], r["ppl_ratio_err"] = ratio, ratio * dse
    r["kl_mean"], r["kl_err"] = mean_se(s["kl"], s["kl2"], n)
    r["same_top"], r["same_top_err"] = binomial(same_top, n)
    r["delta_p_mean"], r["delta_p_err"] = mean_se(s["dp"], s["dp2"], n)
    msq, msq_se = mean_se(s["dp2"], s["dp4"], n)
    rms = math.sqrt(msq) if msq >= 0 else math.nan
    r["delta_p_rms"] = rms
    r["delta_p_rms_err"] = 0.5 * msq_se / rms if rms > 0 else math.nan
    if kl is not None and delta_p is not None and n:
        r["kl_percentiles"] = percentiles(kl)
        r["delta_p_percentiles"] = percentiles(delta_p)
    return r


# --------------------------------------------------------------------------- text
def _pm(v: float, e: float, fmt: str = "{:.6f}", scale: float = 1.0, unit: str = "") -> str:
    return f"{fmt.format(v * scale)} ± {fmt.format(e * scale)}{unit}"


def format_report(report: Mapping[str, Any]) -> str:
    """A report of `Evaluator.report` as readable text with error bars.

    Parameters
    ----------
    report : dict
        As returned by `Evaluator.report` (or `fastxent.reference.evaluate_reference`).

    Returns
    -------
    str
        Several lines, without a trailing newline.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import Evaluator
    >>> from fastxent.evaluate import format_report
    >>> ev = Evaluator()
    >>> _ = ev.update(np.log(np.array([[0.5, 0.5], [0.8, 0.2]])), np.array([0, 0]))
    >>> print(format_report(ev.report()).splitlines()[0])
    tokens                      : 2
    """
    r = report
    lines = [f"tokens                      : {r['tokens']}",
             f"mean NLL                    : {_pm(r['nll_mean'], r['nll_err'])}",
             f"perplexity                  : {_pm(r['ppl'], r['ppl_err'], '{:.4f}')}"
             f"   (95% interval {r['ppl_ci95'][0]:.4f} .. {r['ppl_ci95'][1]:.4f})",
             f"bits per token              : {_pm(r['bits_per_token'], r['bits_per_token_err'], '{:.5f}')}",
             f"top-1 accuracy              : "
             f"{_pm(r['top1_accuracy'], r['top1_accuracy_err'], '{:.3f}', 100, ' %')}",
             f"mean entropy                : {r['entropy_mean']:.6f} nats"]
    if "ref_ppl" in r:
        lines += [
            "",
            f"reference perplexity        : {_pm(r['ref_ppl'], r['ref_ppl_err'], '{:.4f}')}",
            f"Cor(NLL, reference NLL)     : {100 * r['nll_correlation']:.2f} %",
            f"mean ln(PPL / PPL_ref)      : {_pm(r['ln_ppl_ratio'], r['ln_ppl_ratio_err'])}",
            f"PPL / PPL_ref               : {_pm(r['ppl_ratio'], r['ppl_ratio_err'])}",
            f"mean KL(ref || model)       : {_pm(r['kl_mean'], r['kl_err'])}",
        ]
        for key, value in r.get("kl_percentiles", {}).items():
            lines.append(f"  KL {key:<23}: {value:.6f}")
        lines += [
            f"same top token              : {_pm(r['same_top'], r['same_top_err'], '{:.3f}', 100, ' %')}",
            f"mean delta-p                : {_pm(r['delta_p_mean'], r['delta_p_err'], '{:.3f}', 100, ' %')}",
            f"RMS delta-p                 : "
            f"{_pm(r['delta_p_rms'], r['delta_p_rms_err'], '{:.3f}', 100, ' %')}",
        ]
        for key, value in r.get("delta_p_percentiles", {}).items():
            lines.append(f"  delta-p {key:<18}: {100 * value:.3f} %")
    return "\n".join(lines)
