"""Types of fastxent's results, for annotations in user code (as `numpy.typing` is NumPy's).

The functions themselves are annotated (the package ships ``py.typed``); this module names
the dict types they return, so that user code can annotate with them::

    from fastxent.typing import EvaluatorReport

    def log_report(r: EvaluatorReport) -> None:
        print(r["ppl"], r.get("kl_mean"))

* `EvaluatorReport`: `fastxent.Evaluator.report` (and
  `fastxent.reference.evaluate_reference`).  The keys of `EvaluatorReportBase` are always
  present; the reference keys only with reference logits, and ``kl_percentiles`` /
  ``delta_p_percentiles`` only with ``keep_per_token`` and at least one token.
* `Percentiles`: the percentile dicts of the report (keys ``"max"``, ``"p99.9"``, ...,
  ``"min"``).
* `ShowConfig`: `fastxent.show_config`.
* `FloatArray` / `BoolArray`: the array types of the results.

Results documented as arrays are annotated `FloatArray`; as with NumPy's own functions, a
0-d result (e.g. one position, or 0-d input) is returned as a NumPy scalar instead.  Results
that are always scalars (``reduction="mean"``/``"sum"``, ``axis=None``) are annotated
``numpy.floating[Any]``.
"""
from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

__all__ = ["EvaluatorReport", "EvaluatorReportBase", "Percentiles", "ShowConfig", "FloatArray",
           "BoolArray"]

#: float32 or float64 results (float64 for float64 input)
FloatArray = NDArray[np.floating[Any]]
#: boolean results (`TokenStats.correct`, ...)
BoolArray = NDArray[np.bool_]

#: NumPy's linear-interpolation percentiles of the kept per-token values
Percentiles = TypedDict("Percentiles", {
    "max": float, "p99.9": float, "p99": float, "p95": float, "p90": float, "median": float,
    "p10": float, "p5": float, "p1": float, "p0.1": float, "min": float,
})


class EvaluatorReportBase(TypedDict):
    """The keys of every `Evaluator.report` (NaN where undefined, e.g. no tokens)."""

    tokens: int
    nll_mean: float
    nll_err: float
    ppl: float
    ppl_err: float
    ppl_ci95: list[float]
    bits_per_token: float
    bits_per_token_err: float
    top1_accuracy: float
    top1_accuracy_err: float
    entropy_mean: float


class EvaluatorReport(EvaluatorReportBase, total=False):
    """`Evaluator.report`: the base keys, plus these with reference logits."""

    ref_nll_mean: float
    ref_ppl: float
    ref_ppl_err: float
    nll_correlation: float
    ln_ppl_ratio: float
    ln_ppl_ratio_err: float
    ppl_ratio: float
    ppl_ratio_err: float
    kl_mean: float
    kl_err: float
    same_top: float
    same_top_err: float
    delta_p_mean: float
    delta_p_err: float
    delta_p_rms: float
    delta_p_rms_err: float
    kl_percentiles: Percentiles
    delta_p_percentiles: Percentiles


class ShowConfig(TypedDict):
    """`fastxent.show_config`."""

    version: str
    isa: str
    isas_available: list[str]
    isas_compiled: list[str]
    isas_emulated: list[str]
    openmp: bool
    n_threads: int
