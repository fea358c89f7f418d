"""A user's script calling every function of fastxent.dask (checked like user_script.py).

dask's own API is not annotated, so mypy checks this one with ``--allow-untyped-calls``.
"""
from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np

import fastxent
from fastxent import dask as fxd
from fastxent.evaluate import TokenStats

rng = np.random.default_rng(0)
logits = da.from_array(rng.standard_normal((8, 30), dtype=np.float32), chunks=(4, 30))
target = da.from_array(rng.integers(0, 30, size=8), chunks=4)

loss = fxd.cross_entropy(logits, target)
per_token = fxd.cross_entropy(logits, target, reduction="none", label_smoothing=0.1)
ppl = fxd.perplexity(logits, target)
stats = fxd.token_stats(logits, target, ref_logits=logits * 0.9)
report_later = fxd.evaluate(logits, target, ref_logits=logits * 0.9)
with tempfile.TemporaryDirectory() as tmp:
    np.save(os.path.join(tmp, "shard0.npy"), np.zeros((6, 30), np.float32))
    np.save(os.path.join(tmp, "shard1.npy"), np.zeros((2, 30), np.float32))
    shards = fxd.from_npy(os.path.join(tmp, "shard*.npy"), rows_per_chunk=4)
    t_shards = target.rechunk(shards.chunks[:-1])
    assert shards.shape == (8, 30) and float(fxd.cross_entropy(shards, t_shards).compute()) > 0
assert isinstance(loss, da.Array) and isinstance(per_token, da.Array) and isinstance(ppl, da.Array)
assert isinstance(stats, TokenStats) and isinstance(stats.nll, da.Array) and isinstance(shards, da.Array)
report = report_later.compute()
local = fastxent.Evaluator()
local.update(np.asarray(logits), np.asarray(target), np.asarray(logits) * 0.9)
assert report["tokens"] == local.report()["tokens"] == 8
assert abs(float(loss.compute()) - float(fastxent.cross_entropy(np.asarray(logits), np.asarray(target)))) < 1e-6

if TYPE_CHECKING:
    reveal_type(loss)  # R: dask_cross_entropy
    reveal_type(stats)  # R: dask_token_stats
    reveal_type(stats.same_top)  # R: dask_token_stats_same_top
    reveal_type(report_later)  # R: dask_evaluate
    reveal_type(fxd.from_npy("shards/*.npy"))  # R: dask_from_npy
