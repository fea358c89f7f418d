"""fastxent over dask arrays: logits larger than memory, on one machine or a cluster.

`cross_entropy`, `perplexity`, `token_stats` and `evaluate` take `dask.array` inputs
chunked along the rows (any chunking of the leading axes; the class axis in one
chunk).  Each block is handed to the C kernels of fastxent as it is (no copy of the
logits): a NumPy array, or any CPU object with ``__dlpack__`` (a torch tensor, a JAX
array; bfloat16 blocks need ml_dtypes only to give the dask array its dtype); totals are combined in a tree of per-block exact partial sums
(`fastxent.Evaluator` states), so the result does not depend on the chunking or
on the order in which blocks finish.  `from_npy` builds such an array from
``.npy`` shards, memory-mapped by the tasks that read them.

Everything is lazy: the functions return dask arrays or a `dask.delayed` report;
``.compute()`` (or ``dask.compute``) runs them on the current scheduler
(threads by default, a ``dask.distributed.Client`` when one is active).

Threads: every task calls fastxent with ``n_threads=1`` by default and the
scheduler provides the parallelism (one task per worker thread).  With W workers
of T threads each on a machine with C cores, ``n_threads=max(1, C // (W * T))``
keeps W x T x n_threads <= C; more oversubscribes the cores and is slower.

This module needs dask and distributed: ``pip install "fastxent[dask]"``.
"""
from __future__ import annotations

import glob as _glob
import math
import operator
import os
from typing import Sequence, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike

try:
    import dask
    import dask.array as da
    from dask.delayed import Delayed
except ImportError as _e:  # pragma: no cover - exercised only without dask
    raise ImportError('fastxent.dask needs dask: install it with pip install "fastxent[dask]" '
                      f"({_e})") from _e

from . import _xent
from ._arrays import _bfloat16_dtype, float_dtype, from_dlpack_if_needed, pair_dtype, result_dtype
from ._exact import ExactSum
from ._per_token import BOOL_OUTPUTS, OUTPUTS, REF_OUTPUTS
from ._validate import (check_bool, check_ignore_index, check_reduction, check_same_shape, check_scalar,
                        check_target_meta, check_weight, class_axis, prepare)
from .evaluate import Evaluator, TokenStats
from .evaluate import token_stats as _token_stats
from .losses import cross_entropy as _cross_entropy
from .losses import perplexity as _perplexity

__all__ = ["cross_entropy", "perplexity", "token_stats", "evaluate", "from_npy"]


# --------------------------------------------------------------------------- validation
def _need_dask(a, name: str, hint: str):
    if not isinstance(a, da.Array):
        raise TypeError(f"`{name}` must be a dask array, got {type(a).__module__}."
                        f"{type(a).__qualname__}; {hint}")


def _known(a, name: str):
    if any(math.isnan(c) for cs in a.chunks for c in cs):
        raise ValueError(f"`{name}` has unknown chunk sizes; call `{name}.compute_chunk_sizes()` "
                         "first")


def _numpy_meta(a, name):
    """`a`, or, when its meta is not a NumPy array (blocks made by torch, as
    ``x.map_blocks(torch.from_numpy)`` makes them, give a dask array whose dtype is a
    ``torch.dtype``), the same graph with a NumPy meta of the same dtype."""
    if isinstance(a.dtype, np.dtype):
        return a
    kind = str(a.dtype).rsplit(".", 1)[-1]  # torch.float32 -> float32
    try:
        dt = _bfloat16_dtype() if kind == "bfloat16" else np.dtype(kind)
    except TypeError:
        raise TypeError(f"`{name}` is a dask array of dtype {a.dtype!r} (its meta is a "
                        f"{type(a._meta).__module__}.{type(a._meta).__qualname__}), which fastxent "
                        "does not read") from None
    return da.Array(a.dask, a.name, a.chunks, meta=np.empty((0,) * a.ndim, dtype=dt))


def _ndarray_block(b, arg):
    return from_dlpack_if_needed(b, arg)


def _class_axis_last(a, ax, arg):
    """`a` with axis `ax` moved last.  Its blocks are read as NumPy views first (zero-copy):
    dask's transpose applies NumPy's to each block, which torch tensors support only through
    a deprecated NumPy interface."""
    a = a.map_blocks(_ndarray_block, arg=arg, dtype=a.dtype, meta=np.empty((0,) * a.ndim, dtype=a.dtype))
    return da.moveaxis(a, ax, -1)


def _prepare(logits, target, ref_logits, axis):
    """Checked inputs with the class axis last: (x, t, ref or None, kernel dtype of the pair)."""
    _need_dask(logits, "logits", "for NumPy arrays use the functions of `fastxent`, or wrap "
               "them with `dask.array.from_array(logits, chunks=(rows, -1))`")
    logits = _numpy_meta(logits, "logits")
    kdt = float_dtype(logits.dtype, "logits", promote_int=False)
    if logits.ndim < 2:
        raise ValueError(f"`logits` must have rows and classes (ndim >= 2), got shape "
                         f"{logits.shape}; use `fastxent` for a single row")
    ax = class_axis(axis, logits.ndim)
    x = logits if ax == logits.ndim - 1 else _class_axis_last(logits, ax, "logits")
    _known(x, "logits")
    if len(x.chunks[-1]) != 1:
        raise ValueError(f"`logits` has its class axis (axis {ax}, {x.shape[-1]} classes) split "
                         f"into {len(x.chunks[-1])} chunks {x.chunks[-1]}; each row must be in one "
                         f"chunk: rechunk with `logits.rechunk({{{ax}: -1}})`")
    _need_dask(target, "target", "wrap it with `dask.array.from_array(target, "
               "chunks=logits.chunks[:-1])` (the logits' row chunks)")
    target = _numpy_meta(target, "target")
    check_target_meta(target.dtype, target.shape, logits.shape, ax)
    _known(target, "target")
    if target.chunks != x.chunks[:-1]:
        raise ValueError(f"`target` is chunked {target.chunks} but the rows of `logits` are "
                         f"chunked {x.chunks[:-1]}; they must match: "
                         "`target = target.rechunk(logits.chunks[:-1])` (class axis last)")
    ref = None
    if ref_logits is not None:
        _need_dask(ref_logits, "ref_logits", "wrap it with `dask.array.from_array` chunked "
                   "like `logits`")
        ref_logits = _numpy_meta(ref_logits, "ref_logits")
        rdt = float_dtype(ref_logits.dtype, "ref_logits", promote_int=False)
        check_same_shape(ref_logits, logits, "ref_logits", "logits")
        ref = ref_logits if ax == logits.ndim - 1 else _class_axis_last(ref_logits, ax, "ref_logits")
        _known(ref, "ref_logits")
        if ref.chunks != x.chunks:
            raise ValueError(f"`ref_logits` is chunked {ref_logits.chunks} but `logits` is "
                             f"chunked {logits.chunks}; they must match: "
                             "`ref_logits = ref_logits.rechunk(logits.chunks)`")
        kdt = pair_dtype(kdt, rdt)  # the pair is read by fastxent.token_stats's rule
    return x, target, ref, kdt


def _blocks(*arrays):
    """Per-block Delayed objects of each array (None stays None), in the same row order.

    The blocks keep the arrays' own, unoptimized graph (``optimize_graph=False``): every
    graph built here is optimized once, by dask.array's optimizer, when it is computed
    (`_scalar`) or before it is returned (`_optimized_delayed`).  Optimizing the inputs
    twice (``to_delayed()``'s default, then again in a dask array) fuses an already fused
    chain a second time, so that an input key such as ``('concatenate-...', 2, 0)``
    became an alias of a differently named task depending on the graph around it; two
    graphs over the same arrays then sent the scheduler different specs under one key
    ("Detected different `run_spec`").
    """
    return [None if a is None else a.to_delayed(optimize_graph=False).ravel().tolist()
            for a in arrays]


def _optimized_delayed(value):
    """`value` with its graph optimized as a dask array's graph is (see `_blocks`): a
    Delayed result then holds the same specs under the input keys as the dask arrays
    that the other functions of this module return (dask does not optimize a Delayed
    graph again unless ``optimization.fuse.delayed`` is set)."""
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    key = value.key
    graph = da.Array.__dask_optimize__(value.__dask_graph__(), [key])
    layer = f"fastxent-{key}" if isinstance(key, str) else f"fastxent-{dask.base.tokenize(key)}"
    return Delayed(key, HighLevelGraph.from_collections(layer, graph, dependencies=()),
                   layer=layer)


def _tree(parts, combine, split_every):
    """Combine Delayed partial results `split_every` at a time until one is left."""
    if not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"`split_every` must be an integer >= 2, got {split_every!r}")
    f = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [f(*parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def _rowwise(func, out_ndim, x, t, ref=None, dtype=None, **kw):
    """`func(x_block, t_block[, ref_block], **kw)` per block of rows, as a dask array with the
    first `out_ndim` axes of `target` (blockwise with explicit indices: map_blocks would
    align `target` with the trailing axes of `logits`).

    The axes reduced here (classes; the sequence with ``per_sequence``) are single chunks, so
    the blocks are passed as they are (`_one_block`), never through dask's concatenation,
    which would need NumPy blocks: a block may be any DLPack producer (a torch tensor)."""
    xi, ti = tuple(range(x.ndim)), tuple(range(t.ndim))
    args = [func, None, x, xi, t, ti] + ([] if ref is None else [ref, xi])
    return da.blockwise(_one_block, tuple(range(out_ndim)), *args, dtype=dtype, concatenate=False,
                        meta=np.empty((0,) * out_ndim, dtype=dtype), **kw)


def _one_block(func, *blocks, **kw):
    """`func` of the blocks, each given by blockwise as itself or as lists of one block (one
    level per reduced axis, each a single chunk, see `_rowwise`)."""
    args = []
    for b in blocks:
        while isinstance(b, list):
            assert len(b) == 1, "internal: a reduced axis of `_rowwise` is split into chunks"
            b = b[0]
        args.append(b)
    return func(*args, **kw)


def _scalar(delayed_value, dtype):
    return da.from_delayed(delayed_value, shape=(), dtype=dtype)


# --------------------------------------------------------------------------- block tasks
def _enc(values) -> np.ndarray:
    s = ExactSum()
    s.add(values)
    return s.encode()


def _sum_states(*states):
    """Combine tuples of (encoded exact sums..., ints...) element-wise."""
    out = []
    for items in zip(*states):
        if isinstance(items[0], np.ndarray):
            acc = ExactSum.decode(items[0])
            for e in items[1:]:
                acc.merge(ExactSum.decode(e))
            out.append(acc.encode())
        else:
            out.append(sum(items))
    return tuple(out)


def _ce_none_block(xb, tb, **kw):
    return _cross_entropy(xb, tb, axis=-1, reduction="none", **kw)


def _ce_parts_block(xb, tb, **kw):
    loss, zl, wt, counted, _ = _xent.xent_parts(xb, tb, axis=-1, **kw)
    z = np.zeros(0) if zl is None else zl
    w = np.zeros(0) if wt is None else wt
    return _enc(loss), _enc(z), _enc(w), counted


def _ce_finish(state, reduction, weighted, has_z, dt):
    loss, z, w, counted = (ExactSum.decode(state[0]).value(), ExactSum.decode(state[1]).value(),
                           ExactSum.decode(state[2]).value(), state[3])
    denom = w if weighted else float(counted)
    with np.errstate(invalid="ignore", divide="ignore"):
        s, zz = np.float64(loss), np.float64(z)
        if reduction == "mean":
            s = s / np.float64(denom)
            zz = zz / np.float64(counted) if has_z else np.float64(0.0)
        return dt.type(s + zz)


def _nll_block(xb, tb, ignore_index, n_threads):
    p = prepare(xb, tb, axis=-1, ignore_index=ignore_index, n_threads=n_threads)
    return _enc(_xent.nll(p)), p.counted


def _ppl_finish(state, dt):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return dt.type(np.exp(np.float64(ExactSum.decode(state[0]).value()) / np.float64(state[1])))


def _ppl_seq_block(xb, tb, ignore_index, n_threads):
    return _perplexity(xb, tb, axis=-1, ignore_index=ignore_index, per_sequence=True,
                       n_threads=n_threads)


def _ts_block(xb, tb, rb=None, *, ignore_index, n_threads):
    return _token_stats(xb, tb, ref_logits=rb, axis=-1, ignore_index=ignore_index,
                        n_threads=n_threads)


def _eval_block(xb, tb, rb, ignore_index, keep_per_token, n_threads):
    ev = Evaluator(ignore_index, keep_per_token, axis=-1, n_threads=n_threads)
    ev.update(xb, tb, ref_logits=rb)
    return ev.state_dict()


def _eval_merge(*states):
    ev = Evaluator.from_state_dict(states[0])
    for s in states[1:]:
        ev.merge(Evaluator.from_state_dict(s))
    return ev.state_dict()


def _eval_finish(state, as_evaluator):
    ev = Evaluator.from_state_dict(state)
    return ev if as_evaluator else ev.report()


# --------------------------------------------------------------------------- public API
def cross_entropy(logits: da.Array, target: da.Array, *, axis: SupportsIndex = -1,
                  weight: ArrayLike | None = None, ignore_index: SupportsIndex = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, n_threads: int | None = 1, split_every: int = 8
                  ) -> da.Array:
    r"""`fastxent.cross_entropy` of dask arrays, block by block.

    Parameters
    ----------
    logits : dask.array.Array of float32, float64, float16 or bfloat16
        Classes along `axis`, which must be a single chunk; the other axes may be
        chunked in any way.
    target : dask.array.Array of int
        Class indices, shaped and chunked like the rows of `logits`.
    axis, weight, ignore_index, reduction, label_smoothing, z_loss, softcap
        As `fastxent.cross_entropy` (integer targets; the z-loss is included in the loss).
    n_threads : int, optional
        fastxent threads per task (default 1: the scheduler runs one task per worker
        thread; see the module notes on oversubscription).
    split_every : int, optional
        Partial sums combined per node of the reduction tree (default 8).

    Returns
    -------
    dask.array.Array
        ``"none"``: per-position losses shaped and chunked like `target`; ``"sum"`` and
        ``"mean"``: a 0-d array.  ``.compute()`` gives the NumPy result.

    Raises
    ------
    TypeError
        If an input is not a dask array or has an unsupported dtype.
    ValueError
        If the class axis is split across chunks, the chunks of `target` do not match
        the rows of `logits`, or an option is invalid.  Out-of-range targets raise
        IndexError when computed (the position is within the block).

    Notes
    -----
    Per-block totals are exact sums (`Evaluator`'s integer multiples of 2^-1074) and are
    rounded once at the end, so ``"sum"``/``"mean"`` do not depend on the chunking; the
    local function sums in double (a fixed-order pairwise sum), so the two agree to the
    rounding of that double sum (the float32 results are almost always bitwise equal).
    Gradients and probability targets are not supported here.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import fastxent, fastxent.dask as fxd
    >>> x = np.random.default_rng(0).standard_normal((6, 5))
    >>> t = np.array([0, 1, 2, 3, 4, -100])
    >>> X, T = da.from_array(x, chunks=(2, 5)), da.from_array(t, chunks=2)   # 3 blocks of rows
    >>> loss = fxd.cross_entropy(X, T)                 # lazy: nothing is computed yet
    >>> float(loss.compute()) == float(fastxent.cross_entropy(x, t))
    True
    >>> per_row = fxd.cross_entropy(X, T, reduction="none")
    >>> per_row.chunks                                 # chunked like the targets
    ((2, 2, 2),)
    >>> np.allclose(per_row.compute(), fastxent.cross_entropy(x, t, reduction="none"))
    True
    """
    check_reduction(reduction)
    x, t, _, kdt = _prepare(logits, target, None, axis)
    rdt = result_dtype(kdt)
    w = check_weight(weight, x.shape[-1], rdt)
    ii = check_ignore_index(ignore_index)
    eps = check_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    zc = check_scalar(z_loss, "z_loss", 0.0)
    kw = dict(weight=w, ignore_index=ii, label_smoothing=eps, z_loss=zc, softcap=softcap, n_threads=n_threads)
    if softcap is not None:
        check_scalar(softcap, "softcap", 0.0, lo_open=True)
    if reduction == "none":
        return _rowwise(_ce_none_block, t.ndim, x, t, dtype=rdt, **kw)
    xs, ts = _blocks(x, t)
    f = dask.delayed(_ce_parts_block, pure=True)
    parts = [f(xb, tb, **kw) for xb, tb in zip(xs, ts)]
    total = _tree(parts, _sum_states, split_every)
    res = dask.delayed(_ce_finish, pure=True)(total, reduction, w is not None, zc > 0, rdt)
    return _scalar(res, rdt)


def perplexity(logits: da.Array, target: da.Array, *, axis: SupportsIndex = -1,
               ignore_index: SupportsIndex = -100, per_sequence: bool = False,
               n_threads: int | None = 1, split_every: int = 8) -> da.Array:
    r"""`fastxent.perplexity` of dask arrays.

    Parameters
    ----------
    logits, target : dask.array.Array
        As `cross_entropy` of this module.
    axis, ignore_index, per_sequence
        As `fastxent.perplexity`.  With `per_sequence`, the sequence axis (the last
        axis of `target`) must be a single chunk.
    n_threads, split_every : int, optional
        As `cross_entropy` of this module.

    Returns
    -------
    dask.array.Array
        0-d (corpus perplexity, from exact per-block sums), or per sequence shaped
        and chunked like ``target[..., 0]``.

    Raises
    ------
    TypeError, ValueError
        As `cross_entropy` of this module; ValueError also when `per_sequence` is
        True and the sequence axis is split across chunks.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import fastxent, fastxent.dask as fxd
    >>> x = np.random.default_rng(0).standard_normal((6, 5))
    >>> t = np.array([0, 1, 2, 3, 4, -100])
    >>> X, T = da.from_array(x, chunks=(2, 5)), da.from_array(t, chunks=2)   # 3 blocks of rows
    >>> float(fxd.perplexity(X, T).compute()) == float(fastxent.perplexity(x, t))
    True
    >>> uniform = da.zeros((2, 3, 4), chunks=(1, 3, 4))  # 2 sequences of 3 tokens, 4 classes
    >>> fxd.perplexity(uniform, da.zeros((2, 3), dtype=int, chunks=(1, 3)), per_sequence=True).compute()
    array([4., 4.])
    """
    x, t, _, kdt = _prepare(logits, target, None, axis)
    rdt = result_dtype(kdt)
    ii = check_ignore_index(ignore_index)
    if per_sequence:
        if len(t.chunks[-1]) != 1:
            raise ValueError(f"`per_sequence=True` needs each sequence in one chunk, but the "
                             f"sequence axis of `target` is split into {t.chunks[-1]}; rechunk "
                             "both, e.g. `logits.rechunk({-2: -1, -1: -1})` and "
                             "`target.rechunk({-1: -1})`")
        return _rowwise(_ppl_seq_block, t.ndim - 1, x, t, dtype=rdt, ignore_index=ii,
                        n_threads=n_threads)
    xs, ts = _blocks(x, t)
    f = dask.delayed(_nll_block, pure=True)
    total = _tree([f(xb, tb, ii, n_threads) for xb, tb in zip(xs, ts)], _sum_states, split_every)
    return _scalar(dask.delayed(_ppl_finish, pure=True)(total, rdt), rdt)


def token_stats(logits: da.Array, target: da.Array, *, ref_logits: da.Array | None = None,
                axis: SupportsIndex = -1, ignore_index: SupportsIndex = -100, n_threads: int | None = 1
                ) -> TokenStats[da.Array, da.Array]:
    r"""`fastxent.token_stats` of dask arrays: a `TokenStats` of dask arrays.

    Each field is shaped and chunked like `target`; computing several fields together
    (``dask.compute(s.nll, s.kl)``) runs the kernel once per block.

    Parameters
    ----------
    logits, target : dask.array.Array
        As `cross_entropy` of this module.
    ref_logits : dask.array.Array, optional
        Reference logits shaped and chunked like `logits`, of any supported dtype
        (each side read in its own precision, as `fastxent.token_stats`).
    axis, ignore_index
        As `fastxent.token_stats`.
    n_threads : int, optional
        fastxent threads per task (default 1).

    Returns
    -------
    TokenStats
        Of dask arrays (reference fields None without `ref_logits`).

    Raises
    ------
    TypeError, ValueError
        As `cross_entropy` of this module; ValueError also when `ref_logits` is
        shaped or chunked differently from `logits`.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import fastxent, fastxent.dask as fxd
    >>> x = np.random.default_rng(0).standard_normal((6, 5))
    >>> t = np.array([0, 1, 2, 3, 4, -100])
    >>> X, T = da.from_array(x, chunks=(2, 5)), da.from_array(t, chunks=2)   # 3 blocks of rows
    >>> s = fxd.token_stats(X, T, ref_logits=X * 0.5)
    >>> import dask
    >>> nll, kl = dask.compute(s.nll, s.kl)             # one kernel call per block
    >>> local = fastxent.token_stats(x, t, ref_logits=x * 0.5)
    >>> np.allclose(nll, local.nll, equal_nan=True), np.allclose(kl, local.kl, equal_nan=True)
    (True, True)
    """
    x, t, ref, kdt = _prepare(logits, target, ref_logits, axis)
    rdt = result_dtype(kdt)
    ii = check_ignore_index(ignore_index)
    obj = _rowwise(_ts_block, t.ndim, x, t, ref, dtype=np.dtype(object), ignore_index=ii,
                   n_threads=n_threads)
    names = [n for n in OUTPUTS if ref is not None or n not in REF_OUTPUTS] + ["counted"]
    out = {}
    for n in names:
        dt = np.dtype(bool) if n in BOOL_OUTPUTS or n == "counted" else rdt
        out[n] = obj.map_blocks(operator.attrgetter(n), dtype=dt,
                                meta=np.empty((0,) * t.ndim, dtype=dt))
    return TokenStats(**out)


def evaluate(logits: da.Array, target: da.Array, ref_logits: da.Array | None = None, *,
             axis: SupportsIndex = -1, ignore_index: SupportsIndex = -100, keep_per_token: bool = True,
             n_threads: int | None = 1, split_every: int = 8, return_evaluator: bool = False
             ) -> Delayed:
    r"""The `Evaluator` report of dask arrays, as a lazy `dask.delayed` object.

    One `Evaluator` per block; their states are merged in a tree (`split_every` at a
    time).  Because the evaluator's totals are exact and its percentiles come from
    all kept values, the report is **identical** (bitwise) to the one of a single
    local `Evaluator` fed the same data, whatever the chunking.

    Parameters
    ----------
    logits, target : dask.array.Array
        As `cross_entropy` of this module.
    ref_logits : dask.array.Array, optional
        Reference logits shaped and chunked like `logits`, of any supported dtype
        (each side read in its own precision, as `fastxent.token_stats`).
    axis, ignore_index, keep_per_token
        As `Evaluator`.
    n_threads : int, optional
        fastxent threads per task (default 1).
    split_every : int, optional
        States merged per node of the tree (default 8).
    return_evaluator : bool, optional
        Give the merged `Evaluator` instead of its report (to merge with others).

    Returns
    -------
    dask.delayed.Delayed
        ``.compute()`` gives the report dict (or the `Evaluator`).

    Raises
    ------
    TypeError, ValueError
        As `token_stats` of this module.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import fastxent, fastxent.dask as fxd
    >>> x = np.random.default_rng(0).standard_normal((6, 5))
    >>> t = np.array([0, 1, 2, 3, 4, -100])
    >>> X, T = da.from_array(x, chunks=(2, 5)), da.from_array(t, chunks=2)   # 3 blocks of rows
    >>> report = fxd.evaluate(X, T).compute()
    >>> ev = fastxent.Evaluator()
    >>> ev.update(x, t)                                 # the same data, locally
    5
    >>> report["tokens"], report == ev.report()         # bitwise the same report
    (5, True)
    """
    x, t, ref, _ = _prepare(logits, target, ref_logits, axis)
    ii = check_ignore_index(ignore_index)
    keep_per_token = check_bool(keep_per_token, "keep_per_token")
    xs, ts, rs = _blocks(x, t, ref)
    rs = rs or [None] * len(xs)
    f = dask.delayed(_eval_block, pure=True)
    parts = [f(xb, tb, rb, ii, keep_per_token, n_threads) for xb, tb, rb in zip(xs, ts, rs)]
    total = _tree(parts, _eval_merge, split_every)
    return _optimized_delayed(dask.delayed(_eval_finish, pure=True)(total, bool(return_evaluator)))


# --------------------------------------------------------------------------- .npy shards
def _load_rows(path, start, stop):
    return np.load(path, mmap_mode="r")[start:stop]


def from_npy(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
             rows_per_chunk: int | None = None) -> da.Array:
    r"""A dask array of ``.npy`` shards concatenated along their first axis.

    Nothing is read here but the headers; each task memory-maps its file and hands
    the slice of its chunk to the kernels, so a directory of logits is evaluated
    without loading it (on a cluster, the workers must see the same paths).

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        A list of files (in order), a glob pattern (``"shards/logits_*.npy"``,
        sorted by name) or a directory (its ``*.npy`` files, sorted).
    rows_per_chunk : int, optional
        Split each file into chunks of this many rows along the first axis (the
        last chunk of a file may be shorter).  Default: one chunk per file.

    Returns
    -------
    dask.array.Array
        Of the files' dtype; the first axis is the concatenation, the other axes
        (each one chunk) are those of the files.

    Raises
    ------
    FileNotFoundError
        If no file matches.
    ValueError
        If the files differ in dtype or in shape beyond the first axis, are 0-d, or
        `rows_per_chunk` is not a positive integer.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastxent.dask as fxd
    >>> d = tempfile.mkdtemp()
    >>> x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    >>> for i in range(2):                      # two shards of 3 rows each
    ...     np.save(os.path.join(d, f"logits_{i}.npy"), x[3 * i:3 * i + 3])
    ...     np.save(os.path.join(d, f"target_{i}.npy"), np.arange(3 * i, 3 * i + 3) % 5)
    >>> logits = fxd.from_npy(os.path.join(d, "logits_*.npy"))
    >>> target = fxd.from_npy(os.path.join(d, "target_*.npy"))
    >>> logits.shape, logits.chunks
    ((6, 5), ((3, 3), (5,)))
    >>> fxd.evaluate(logits, target).compute()["tokens"]
    6
    >>> fxd.from_npy(os.path.join(d, "logits_*.npy"), rows_per_chunk=2).chunks
    ((2, 1, 2, 1), (5,))
    >>> import shutil; shutil.rmtree(d)
    """
    if isinstance(paths, (str, os.PathLike)):
        p = os.fspath(paths)
        if os.path.isdir(p):
            files = sorted(_glob.glob(os.path.join(_glob.escape(p), "*.npy")))
        elif os.path.exists(p):
            files = [p]
        else:
            files = sorted(_glob.glob(p))
    else:
        files = [os.fspath(q) for q in paths]
    if not files:
        raise FileNotFoundError(f"`paths` matches no .npy file: {paths!r}")
    if rows_per_chunk is not None:
        try:
            rows_per_chunk = operator.index(rows_per_chunk)
        except TypeError:
            raise ValueError(f"`rows_per_chunk` must be a positive integer, got "
                             f"{rows_per_chunk!r}") from None
        if rows_per_chunk < 1:
            raise ValueError(f"`rows_per_chunk` must be a positive integer, got {rows_per_chunk}")
    metas = []
    for f in files:
        m = np.load(f, mmap_mode="r")
        if m.ndim == 0:
            raise ValueError(f"`{f}` holds a 0-d array; shards need a first axis to concatenate")
        metas.append((f, m.shape, m.dtype))
        del m
    _, shape0, dt0 = metas[0]
    for f, shape, dt in metas[1:]:
        if dt != dt0 or shape[1:] != shape0[1:]:
            raise ValueError(f"`{f}` has shape {shape} and dtype {dt} but `{files[0]}` has shape "
                             f"{shape0} and dtype {dt0}; shards must agree beyond the first axis")
    load = dask.delayed(_load_rows, pure=True)
    pieces = []
    for f, shape, dt in metas:
        st = os.stat(f)
        n = shape[0]
        step = n if rows_per_chunk is None else rows_per_chunk
        for a in range(0, n, max(step, 1)):
            b = min(a + step, n)
            d = load(f, a, b, dask_key_name=f"from_npy-{dask.base.tokenize(f, st.st_mtime_ns, st.st_size, a, b)}")
            pieces.append(da.from_delayed(d, shape=(b - a,) + shape[1:], dtype=dt,
                                          meta=np.empty((0,) * len(shape), dtype=dt)))
    if not pieces:
        return da.zeros((0,) + shape0[1:], dtype=dt0, chunks=-1)
    return pieces[0] if len(pieces) == 1 else da.concatenate(pieces, axis=0)
