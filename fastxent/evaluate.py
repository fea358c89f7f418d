"""Evaluation toolkit: per-token statistics, KL divergence and a streaming accumulator.

`token_stats` gives, per position and from one read of each row, the negative
log-likelihood, the entropy of the predicted distribution, whether the top
class is the target and the target's probability; with reference logits also
KL(reference || model), whether both top classes agree and the reference's
own NLL and target probability.  `Evaluator` accumulates them over batches or
shards (exact totals, mergeable, serialisable) into the report that
llama.cpp's ``perplexity --kl-divergence`` prints; `format_report` prints it.
The plain NumPy meaning of everything here is in `fastxent.reference`
(``token_stats``, ``kl_divergence``, ``evaluate_reference``).

This module is the public home of those names.  They are defined in private modules, one
job each: `fastxent._per_token` (per-token statistics and their kernel pass),
`fastxent._evaluator` (the accumulator), `fastxent._exact` (exact sums) and
`fastxent._report` (the report's statistics and text).
"""
from ._evaluator import Evaluator
from ._per_token import TokenStats, kl_divergence, token_stats
from ._report import PERCENTILES, format_report  # noqa: F401  (PERCENTILES: the report's keys)

__all__ = ["TokenStats", "token_stats", "kl_divergence", "Evaluator", "format_report"]
