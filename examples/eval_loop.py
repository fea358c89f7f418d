"""Replace a NumPy evaluation loop by fastxent.Evaluator.

A model is evaluated batch by batch against a reference (e.g. a quantised model against the
full-precision one): perplexity with its error, top-1 accuracy, KL(reference || model) and the
share of tokens whose top prediction is unchanged.  Run: ``python examples/eval_loop.py``.
"""
import numpy as np

import fastxent

VOCAB, BATCH, SEQ = 8000, 4, 128


def batches(n=6, seed=0):
    """Synthetic (model logits, reference logits, targets); padding marked with -100."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        ref = rng.standard_normal((BATCH, SEQ, VOCAB), dtype=np.float32) * 3
        model = ref + rng.standard_normal(ref.shape, dtype=np.float32) * 0.3  # "quantised"
        target = np.where(rng.random((BATCH, SEQ)) < 0.6, ref.argmax(-1),
                          rng.integers(0, VOCAB, (BATCH, SEQ)))
        target[:, -8:] = -100
        yield model, ref, target


# ---- before: NumPy, several (batch, seq, vocab) temporaries per statistic
def log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


nll, kl, same, correct = [], [], [], []
for model, ref, target in batches():
    mask = target != -100
    logq, logp = log_softmax(model), log_softmax(ref)
    t = np.where(mask, target, 0)[..., None]
    nll.append(-np.take_along_axis(logq, t, axis=-1)[..., 0][mask])
    kl.append((np.exp(logp) * (logp - logq)).sum(axis=-1)[mask])
    same.append((model.argmax(-1) == ref.argmax(-1))[mask])
    correct.append((model.argmax(-1) == target)[mask])
nll, kl = np.concatenate(nll).astype(np.float64), np.concatenate(kl)
ppl = np.exp(nll.mean())
print(f"NumPy   : PPL {ppl:.3f} ± {ppl * nll.std(ddof=1) / np.sqrt(nll.size):.3f}, "
      f"mean KL {kl.mean():.5f}, same top {np.concatenate(same).mean():.2%}, "
      f"top-1 {np.concatenate(correct).mean():.2%}")

# ---- after: one fused kernel call per batch, exact totals, no (batch, seq, vocab) temporaries
ev = fastxent.Evaluator(ignore_index=-100)
for model, ref, target in batches():
    ev.update(model, target, ref_logits=ref)
r = ev.report()
print(f"fastxent: PPL {r['ppl']:.3f} ± {r['ppl_err']:.3f}, mean KL {r['kl_mean']:.5f}, "
      f"same top {r['same_top']:.2%}, top-1 {r['top1_accuracy']:.2%}")

# Shards (processes, hosts) each keep an Evaluator; their states are plain arrays, and merging
# them gives exactly the report of a single pass.
state = ev.state_dict()                      # e.g. np.savez("shard0.npz", **state)
total = fastxent.Evaluator.from_state_dict(state).merge(fastxent.Evaluator())
assert total.report() == r
print()
print(fastxent.evaluate.format_report(r))
