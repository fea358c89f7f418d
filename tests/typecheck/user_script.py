"""A user's script calling every public function and method of fastxent.

tests/test_typing.py type-checks it with ``mypy --strict`` (which must pass) and compares
the types revealed on the lines marked ``# R: <name>`` with the real ones; it also runs it,
and the ``isinstance`` checks below confirm at run time what the annotations say.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import fastxent
from fastxent import (Evaluator, cross_entropy, kl_divergence, log_softmax, logsumexp, perplexity,
                      reference, softmax, token_stats)
from fastxent.evaluate import TokenStats, format_report
from fastxent.typing import EvaluatorReport, FloatArray, ShowConfig

rng = np.random.default_rng(0)
logits = rng.standard_normal((4, 8, 50), dtype=np.float32)
target = rng.integers(0, 50, size=(4, 8))
target[0, :2] = -100


def mean_loss(x: NDArray[np.float32], t: NDArray[np.int64]) -> float:
    return float(cross_entropy(x, t))


# ---- special functions
lse = logsumexp(logits)
lse_rows = logsumexp(logits, axis=-1)
lse_keep = logsumexp(logits, axis=(1, 2), keepdims=True)
lse_signed, sign = logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)
lse_rows_signed, signs = logsumexp(logits, axis=-1, b=0.5, return_sign=True)
probs = softmax(logits, axis=-1)
logp = log_softmax(logits, axis=-1)
assert isinstance(lse, np.floating) and isinstance(lse_signed, np.floating)
assert isinstance(lse_rows, np.ndarray) and isinstance(lse_keep, np.ndarray)
assert isinstance(signs, np.ndarray) and isinstance(probs, np.ndarray) and isinstance(logp, np.ndarray)

# ---- losses
loss = cross_entropy(logits, target)
loss_sum = cross_entropy(logits, target, reduction="sum", label_smoothing=0.1, weight=np.ones(50))
per_token = cross_entropy(logits, target, reduction="none")
loss_g, grad = cross_entropy(logits, target, return_grad=True)
per_token_g, grad2 = cross_entropy(logits, target, reduction="none", return_grad=True)
loss_z, z = cross_entropy(logits, target, z_loss=1e-4, return_z_loss=True)
loss_zg, z2, grad3 = cross_entropy(logits, target, z_loss=1e-4, softcap=30.0, return_z_loss=True,
                                   return_grad=True, grad_out=np.empty_like(logits))
ppl = perplexity(logits, target)
ppl_seq = perplexity(logits, target, per_sequence=True)
assert isinstance(loss, np.floating) and isinstance(loss_sum, np.floating)
assert isinstance(per_token, np.ndarray) and per_token.shape == (4, 8)
assert isinstance(loss_g, np.floating) and isinstance(grad, np.ndarray) and grad.shape == logits.shape
assert isinstance(per_token_g, np.ndarray) and isinstance(grad2, np.ndarray)
assert isinstance(loss_z, np.floating) and isinstance(z, np.floating)
assert isinstance(loss_zg, np.floating) and isinstance(z2, np.floating) and isinstance(grad3, np.ndarray)
assert isinstance(ppl, np.floating) and isinstance(ppl_seq, np.ndarray)
assert mean_loss(logits, target) == float(loss)

# ---- evaluation
stats = token_stats(logits, target, ref_logits=logits * 0.9)
nll: FloatArray = stats.nll
assert stats.kl is not None and stats.same_top is not None
kl_tokens = kl_divergence(logits * 0.9, logits)
kl_mean = kl_divergence(logits * 0.9, logits, reduction="mean")
assert isinstance(stats, TokenStats) and isinstance(nll, np.ndarray) and stats.correct.dtype == bool
assert isinstance(kl_tokens, np.ndarray) and isinstance(kl_mean, np.floating)
fields: dict[str, Any] = dict(stats.as_dict())

ev = Evaluator(ignore_index=-100)
counted: int = ev.update(logits, target, ref_logits=logits * 0.9)
other = Evaluator()
counted_other = other.update(logits[:1], target[:1], ref_logits=logits[:1] * 0.9)
merged = ev.merge(other)
restored = Evaluator.from_state_dict(merged.state_dict())
report = restored.report()
ppl_value: float = report["ppl"]
low, high = report["ppl_ci95"]
kl_pct = report.get("kl_percentiles")
median_kl = kl_pct["median"] if kl_pct is not None else float("nan")
text: str = format_report(report)
has_ref: bool | None = restored.has_ref
assert counted == 30 and isinstance(ppl_value, float) and low <= ppl_value <= high and has_ref
assert median_kl >= 0.0 and "perplexity" in text


def summary(r: EvaluatorReport) -> str:
    return f"{r['tokens']} tokens, PPL {r['ppl']:.3f}"


assert summary(report).startswith(f"{counted + counted_other} tokens")

# ---- configuration
cfg: ShowConfig = fastxent.show_config(print_out=False)
threads: int = fastxent.get_num_threads()
previous = fastxent.set_num_threads(1)
fastxent.set_num_threads(previous)
best: str = fastxent.set_isa(None)      # the best ISA this CPU runs (FASTXENT_ISA aside)
isa: str = fastxent.set_isa(cfg["isa"])  # back to the one in use
isas: list[str] = fastxent.available_isas()
omp: bool = fastxent.openmp_enabled()
assert cfg["isa"] == isa and isa in isas and best == isas[-1] and threads >= 1 and isinstance(omp, bool)

# ---- the NumPy reference
ref_loss = reference.cross_entropy(logits, target)
ref_lse = reference.logsumexp(logits, axis=-1)
ref_probs = reference.softmax(logits, axis=-1)
ref_logp = reference.log_softmax(logits, axis=-1)
ref_ppl = reference.perplexity(logits, target)
ref_kl = reference.kl_divergence(logits * 0.9, logits)
ref_stats = reference.token_stats(logits, target)
ref_report = reference.evaluate_reference(logits, target)
np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
np.testing.assert_allclose(lse_rows, ref_lse, rtol=1e-5)
assert ref_report["tokens"] == 30 and set(ref_stats) >= {"nll", "entropy"}

if TYPE_CHECKING:
    reveal_type(lse)  # R: logsumexp
    reveal_type(lse_rows)  # R: logsumexp_axis
    reveal_type(lse_signed)  # R: logsumexp_sign
    reveal_type(probs)  # R: softmax
    reveal_type(logp)  # R: log_softmax
    reveal_type(loss)  # R: cross_entropy
    reveal_type(loss_sum)  # R: cross_entropy_sum
    reveal_type(per_token)  # R: cross_entropy_none
    reveal_type(cross_entropy(logits, target, return_grad=True))  # R: cross_entropy_grad
    reveal_type(cross_entropy(logits, target, return_z_loss=True, return_grad=True))  # R: cross_entropy_z_grad
    reveal_type(ppl)  # R: perplexity
    reveal_type(ppl_seq)  # R: perplexity_seq
    reveal_type(stats)  # R: token_stats
    reveal_type(token_stats(logits, target).kl)  # R: token_stats_kl
    reveal_type(kl_tokens)  # R: kl_divergence
    reveal_type(kl_mean)  # R: kl_divergence_mean
    reveal_type(report)  # R: report
    reveal_type(report["tokens"])  # R: report_tokens
    reveal_type(kl_pct)  # R: report_percentiles
    reveal_type(merged)  # R: merge
    reveal_type(merged.state_dict())  # R: state_dict
    reveal_type(fastxent.show_config())  # R: show_config
    reveal_type(fastxent.set_num_threads(2))  # R: set_num_threads
    reveal_type(ref_loss)  # R: reference_cross_entropy
    reveal_type(ref_report)  # R: reference_report
