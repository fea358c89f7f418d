"""fastxent.dask: results equal the local functions for any row chunking; clear errors."""
import os
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
from dask.delayed import Delayed  # noqa: E402

import fastxent  # noqa: E402
import fastxent.dask as fxd  # noqa: E402
from conftest import optional_import  # noqa: E402

V = 37


def _data(shape=(3, 50), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape + (V,))).astype(dtype)
    r = (x + rng.standard_normal(x.shape)).astype(dtype)
    t = rng.integers(0, V, size=shape)
    t[0, :7] = -100
    t.flat[-3] = -100
    return x, r, t


# (leading-axes chunks) for logits of shape (3, 50, V): uneven last chunk, two chunked axes,
# one chunk, one row per chunk along the first axis
CHUNKINGS = [(3, 16), (2, 17), (1, 50), (3, 50), (1, 7)]


def _dask(x, t, r, ch):
    return (da.from_array(x, chunks=ch + (-1,)), da.from_array(t, chunks=ch),
            da.from_array(r, chunks=ch + (-1,)))


@pytest.fixture(autouse=True)
def _threads():
    with dask.config.set(scheduler="threads"):
        yield


@pytest.mark.parametrize("ch", CHUNKINGS)
def test_evaluate_report_is_identical(ch):
    x, r, t = _data()
    X, T, R = _dask(x, t, r, ch)
    ev = fastxent.Evaluator()
    ev.update(x, t, ref_logits=r)
    lazy = fxd.evaluate(X, T, R, split_every=2)
    assert isinstance(lazy, Delayed)
    assert lazy.compute() == ev.report()           # bitwise, percentiles included
    ev0 = fastxent.Evaluator(keep_per_token=False)
    ev0.update(x, t)
    assert fxd.evaluate(X, T, keep_per_token=False).compute() == ev0.report()
    merged = fxd.evaluate(X, T, R, return_evaluator=True).compute()
    assert isinstance(merged, fastxent.Evaluator) and merged.tokens == ev.tokens


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ch", CHUNKINGS)
def test_losses_equal_local(ch, dtype):
    x, r, t = _data(dtype=dtype)
    X, T, _ = _dask(x, t, r, ch)
    none = fxd.cross_entropy(X, T, reduction="none")
    assert isinstance(none, da.Array) and none.chunks == T.chunks
    got = none.compute()
    want = fastxent.cross_entropy(x, t, reduction="none")
    assert got.dtype == want.dtype and np.array_equal(got, want)
    w = np.random.default_rng(1).random(V)
    opts = [{}, dict(weight=w), dict(label_smoothing=0.1, z_loss=1e-3, softcap=4.0),
            dict(weight=w, z_loss=1e-2)]
    for kw in opts:
        for red in ("mean", "sum"):
            got = fxd.cross_entropy(X, T, reduction=red, **kw).compute()
            want = fastxent.cross_entropy(x, t, reduction=red, **kw)
            # exact per-block sums rounded once vs the local double sum: equal after
            # rounding to float32; within 2 ulp of float64
            assert got.dtype == want.dtype
            np.testing.assert_array_max_ulp(got, want, maxulp=0 if dtype == np.float32 else 2)
    got = fxd.perplexity(X, T).compute()
    np.testing.assert_array_max_ulp(got, fastxent.perplexity(x, t),
                                    maxulp=0 if dtype == np.float32 else 2)


@pytest.mark.parametrize("ch", CHUNKINGS)
def test_token_stats_equal_local(ch):
    x, r, t = _data()
    X, T, R = _dask(x, t, r, ch)
    s = fxd.token_stats(X, T, ref_logits=R)
    assert isinstance(s.kl, da.Array) and s.kl.chunks == T.chunks
    got = dask.compute(s.as_dict())[0]
    want = fastxent.token_stats(x, t, ref_logits=r).as_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert np.array_equal(got[k], want[k], equal_nan=True), k
    assert fxd.token_stats(X, T).kl is None


def test_per_sequence_and_axis():
    x, r, t = _data()
    X, T, _ = _dask(x, t, r, (2, 50))
    got = fxd.perplexity(X, T, per_sequence=True).compute()
    assert np.array_equal(got, fastxent.perplexity(x, t, per_sequence=True))
    # classes on axis 0: moved to the end lazily, one chunk there
    xt = np.ascontiguousarray(np.moveaxis(x, -1, 0))
    Xt = da.from_array(xt, chunks=(-1, 2, 17))
    got = fxd.cross_entropy(Xt, da.from_array(t, chunks=(2, 17)), axis=0).compute()
    assert got == fastxent.cross_entropy(x, t)


def test_from_npy(tmp_path):
    x, r, t = _data(shape=(23, 5))
    x, t = x.reshape(-1, V), t.reshape(-1)            # 115 rows in shards of 40, 40, 35
    for i, a in enumerate(range(0, 115, 40)):
        np.save(tmp_path / f"logits_{i}.npy", x[a:a + 40])
        np.save(tmp_path / f"target_{i}.npy", t[a:a + 40])
    X = fxd.from_npy(str(tmp_path / "logits_*.npy"))
    T = fxd.from_npy(str(tmp_path / "target_*.npy"))
    assert X.chunks == ((40, 40, 35), (V,)) and X.dtype == np.float32
    ev = fastxent.Evaluator()
    ev.update(x, t)
    assert fxd.evaluate(X, T).compute() == ev.report()
    X2 = fxd.from_npy(sorted(tmp_path.glob("logits_*.npy")), rows_per_chunk=16)
    assert X2.chunks[0] == (16, 16, 8, 16, 16, 8, 16, 16, 3)
    assert np.array_equal(X2.compute(), x)
    with pytest.raises(FileNotFoundError, match="matches no .npy file"):
        fxd.from_npy(str(tmp_path / "nothing_*.npy"))
    np.save(tmp_path / "logits_9.npy", np.zeros((2, V + 1), np.float32))
    with pytest.raises(ValueError, match="shards must agree beyond the first axis"):
        fxd.from_npy(str(tmp_path / "logits_*.npy"))
    with pytest.raises(ValueError, match="`rows_per_chunk` must be a positive integer"):
        fxd.from_npy(str(tmp_path / "target_*.npy"), rows_per_chunk=0)


def test_unaligned_blocks():
    # dask.distributed hands tasks arrays unpickled from network buffers, which may be unaligned
    x, r, t = _data(shape=(4, 5))
    buf = np.zeros(x.nbytes + 1, np.uint8)[1:]
    xu = buf.view(np.float32).reshape(x.shape)
    xu[...] = x
    assert not xu.flags.aligned
    assert fastxent.cross_entropy(xu, t) == fastxent.cross_entropy(x, t)


def test_errors():
    x, r, t = _data()
    X, T, R = _dask(x, t, r, (2, 17))
    with pytest.raises(ValueError, match=r"class axis \(axis 2, 37 classes\) split into 2 chunks"
                                         r".*logits.rechunk\(\{2: -1\}\)"):
        fxd.evaluate(X.rechunk({2: 20}), T)
    with pytest.raises(ValueError, match=r"`target` is chunked .* must match"):
        fxd.cross_entropy(X, T.rechunk((3, 10)))
    with pytest.raises(ValueError, match=r"`ref_logits` is chunked"):
        fxd.token_stats(X, T, ref_logits=R.rechunk((3, 10, -1)))
    with pytest.raises(TypeError, match=r"`logits` must be a dask array, got numpy.ndarray"):
        fxd.cross_entropy(x, T)
    with pytest.raises(TypeError, match=r"`target` must be a dask array, got numpy.ndarray"):
        fxd.evaluate(X, t)
    with pytest.raises(TypeError, match=r"`ref_logits` must be a dask array"):
        fxd.evaluate(X, T, r)
    with pytest.raises(TypeError, match="`target` must hold integer class indices"):
        fxd.perplexity(X, T.astype(np.float32))
    with pytest.raises(ValueError, match=r"`target` has shape \(3, 49\)"):
        fxd.cross_entropy(X, T[:, 1:])
    with pytest.raises(TypeError, match="`logits` has dtype int64"):
        fxd.cross_entropy(X.astype(np.int64), T)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        fxd.cross_entropy(X, T, reduction="avg")
    for bad_axis in [(0, 1), [2], None]:   # one class axis, as fastxent.cross_entropy
        with pytest.raises(TypeError, match=r"`axis` must be an integer \(the class axis\)"):
            fxd.cross_entropy(X, T, axis=bad_axis)
    with pytest.raises(ValueError, match="`per_sequence=True` needs each sequence in one chunk"):
        fxd.perplexity(X, T, per_sequence=True)
    with pytest.raises(ValueError, match="`split_every` must be an integer >= 2"):
        fxd.evaluate(X, T, split_every=1)
    bad = t.copy()
    bad[2, 40] = V
    with pytest.raises(IndexError, match=f"`target` value {V} at position"):
        fxd.evaluate(X, da.from_array(bad, chunks=(2, 17))).compute()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_local_cluster_processes(monkeypatch):
    """A real cluster: 2 worker processes on loopback, started and closed here (~3 s).

    distributed writes OMP_NUM_THREADS=1 (and MKL/OPENBLAS, MALLOC_TRIM_THRESHOLD_,
    PYTHONHASHSEED) into the parent's os.environ when it spawns workers; every variable is
    restored afterwards so later tests (and their subprocesses) see the original environment."""
    for k, v in dict(os.environ).items():
        monkeypatch.setenv(k, v)                   # restored on teardown...
    for k in ("__DASK_PARENT_PID", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED"):
        if k not in os.environ:
            monkeypatch.setenv(k, "x")             # ...and these removed again if new
            monkeypatch.delenv(k)
    distributed = pytest.importorskip("distributed")
    x, r, t = _data()
    X, T, R = _dask(x, t, r, (2, 17))
    t0 = time.monotonic()
    try:
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, host="127.0.0.1")
    except Exception as e:  # sandboxes without process spawning or loopback sockets
        pytest.skip(f"LocalCluster cannot start here: {type(e).__name__}: {e}")
    try:
        with distributed.Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            ev = fastxent.Evaluator()
            ev.update(x, t, ref_logits=r)
            assert fxd.evaluate(X, T, R).compute() == ev.report()
            got = fxd.cross_entropy(X, T, reduction="none").compute()
            assert np.array_equal(got, fastxent.cross_entropy(x, t, reduction="none"))
            assert fxd.cross_entropy(X, T).compute() == fastxent.cross_entropy(x, t)
    finally:
        cluster.close()
    assert time.monotonic() - t0 < 60


# --------------------------------------------------------------------------- mixed dtypes
def _pair_dtypes():
    from conftest import float16_dtypes
    ds = [np.float32, np.float64] + float16_dtypes()
    return [(m, r) for m in ds for r in ds if m != r]


@pytest.mark.parametrize("model_dt, ref_dt", _pair_dtypes(),
                         ids=lambda d: np.dtype(d).name)
def test_mixed_dtypes_read_as_given(model_dt, ref_dt):
    """Model and reference of different dtypes: each read in its own precision (issue 13 item 2).

    Plain NumPy float64 on the arrays as given is the oracle; before, the reference was rounded
    to the model's dtype (KL 0 and ref_nll == nll for a model that is the reference rounded)."""
    rng = np.random.default_rng(3)
    base = 3 * rng.standard_normal((3, 50, V))
    x, r = base.astype(model_dt), base.astype(ref_dt)
    t = rng.integers(0, V, size=(3, 50))
    X, T, R = _dask(x, t, r, (2, 17))
    dt = np.dtype(np.float64 if np.float64 in (np.dtype(model_dt), np.dtype(ref_dt)) else np.float32)
    s = fxd.token_stats(X, T, ref_logits=R)
    assert s.kl.dtype == dt and s.ref_nll.dtype == dt
    kl, rnll, top = dask.compute(s.kl, s.ref_nll, s.same_top)
    assert kl.dtype == dt
    local = fastxent.token_stats(x, t, ref_logits=r)
    assert np.array_equal(kl, local.kl) and np.array_equal(rnll, local.ref_nll)
    X64, R64 = x.astype(np.float64), r.astype(np.float64)
    lq = X64 - np.log(np.exp(X64 - X64.max(-1, keepdims=True)).sum(-1, keepdims=True)) - X64.max(-1, keepdims=True)
    lp = R64 - np.log(np.exp(R64 - R64.max(-1, keepdims=True)).sum(-1, keepdims=True)) - R64.max(-1, keepdims=True)
    want_kl = (np.exp(lp) * (lp - lq)).sum(-1)
    want_rnll = -np.take_along_axis(lp, t[..., None], -1)[..., 0]
    tol = 1e-5 if dt == np.float32 else 1e-12   # per token: the bound of a row of scale ~ 16
    assert np.abs(kl - want_kl).max() <= tol
    assert np.abs(rnll - want_rnll).max() <= tol * (1 + np.abs(want_rnll)).max()
    assert np.array_equal(top, X64.argmax(-1) == R64.argmax(-1))
    rep = fxd.evaluate(X, T, R).compute()
    ev = fastxent.Evaluator()
    ev.update(x, t, ref_logits=r)
    assert rep == ev.report()
    assert abs(rep["kl_mean"] - want_kl.mean()) <= tol
    assert rep["same_top"] == np.mean(X64.argmax(-1) == R64.argmax(-1))


def test_bfloat16_class_weights():
    """issue 13 item 3 through the dask module (the one weight check of fastxent.losses)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, r, t = _data()
    X, T, _ = _dask(x, t, r, (2, 17))
    w = (np.random.default_rng(2).random(V) + 0.5).astype(ml_dtypes.bfloat16)
    got = fxd.cross_entropy(X, T, weight=w).compute()
    assert got == fastxent.cross_entropy(x, t, weight=w.astype(np.float32))


# --------------------------------------------------------------------------- task keys
def _client_graph(coll):
    """The optimized graph a client sends for `coll`, as a {key: spec} dict (dask < 2025:
    ``collections_to_dsk``; later: the expression a `Client` builds)."""
    base = dask.base
    if hasattr(base, "collections_to_dsk"):
        return dict(base.collections_to_dsk([coll], optimize_graph=True))
    from dask._expr import FinalizeCompute
    return dict(FinalizeCompute(base.collections_to_expr([coll], True)).optimize().__dask_graph__())


def _key_inputs(tmp_path):
    """Inputs of every kind: .npy shards (one chunk per file, several chunks per file),
    from_array with several chunks and with one chunk, and classes on axis 0."""
    x, r, t = _data(shape=(23, 5))
    x, r, t = x.reshape(-1, V), r.reshape(-1, V), t.reshape(-1)       # 115 rows
    for i, a in enumerate(range(0, 115, 40)):
        np.save(tmp_path / f"logits_{i}.npy", x[a:a + 40])
        np.save(tmp_path / f"ref_{i}.npy", r[a:a + 40])
        np.save(tmp_path / f"target_{i}.npy", t[a:a + 40])
    npy = lambda kind, **kw: fxd.from_npy(str(tmp_path / f"{kind}_*.npy"), **kw)  # noqa: E731
    return x, r, t, {
        "from_npy": (npy("logits"), npy("target"), npy("ref"), -1),
        "from_npy_rows": (npy("logits", rows_per_chunk=16), npy("target", rows_per_chunk=16),
                          npy("ref", rows_per_chunk=16), -1),
        "from_array": (da.from_array(x, chunks=(30, -1)), da.from_array(t, chunks=30),
                       da.from_array(r, chunks=(30, -1)), -1),
        "one_chunk": (da.from_array(x, chunks=-1), da.from_array(t, chunks=-1),
                      da.from_array(r, chunks=-1), -1),
        "axis0": (da.from_array(np.ascontiguousarray(x.T), chunks=(-1, 30)),
                  da.from_array(t, chunks=30), da.from_array(np.ascontiguousarray(r.T),
                                                             chunks=(-1, 30)), 0),
    }


def _all_results(X, T, R, ax):
    """Every lazy result of fastxent.dask over the same inputs."""
    ts = fxd.token_stats(X, T, ref_logits=R, axis=ax)
    return {"evaluate": fxd.evaluate(X, T, axis=ax),
            "evaluate_ref": fxd.evaluate(X, T, R, axis=ax),
            "evaluator": fxd.evaluate(X, T, axis=ax, return_evaluator=True, split_every=2),
            "ce_mean": fxd.cross_entropy(X, T, axis=ax),
            "ce_sum_opts": fxd.cross_entropy(X, T, axis=ax, reduction="sum", label_smoothing=0.1),
            "ce_none": fxd.cross_entropy(X, T, axis=ax, reduction="none"),
            "ppl": fxd.perplexity(X, T, axis=ax),
            "ts_nll": ts.nll, "ts_kl": ts.kl}


def test_graphs_send_one_spec_per_key(tmp_path):
    """Issue 13 item 6: any two graphs built over the same arrays hold the same task under
    every key they share (the dependencies are what distributed's scheduler compares; a
    mismatch is its "Detected different `run_spec`" warning).  Before the fix the blocks
    were optimized by ``to_delayed()`` and then again in dask-array results, so that
    `evaluate` (a Delayed) and `cross_entropy` (a dask array) aliased the input key
    ``('concatenate-...', i, 0)`` to differently named fused tasks."""
    from dask.core import get_dependencies
    _, _, _, inputs = _key_inputs(tmp_path)
    for kind, (X, T, R, ax) in inputs.items():
        graphs = {name: _client_graph(res) for name, res in _all_results(X, T, R, ax).items()}
        # built again from scratch: the same keys (deterministic names), but for the
        # finalize task that dask names uniquely per computation (and what is fused with it)
        def stable(keys):
            return {k for k in keys if "finalize-" not in str(k)}
        again = {name: stable(_client_graph(res)) for name, res in _all_results(X, T, R, ax).items()}
        assert again == {name: stable(g) for name, g in graphs.items()}, kind
        names = sorted(graphs)
        shared_any = 0
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                shared = set(graphs[a]) & set(graphs[b])
                shared_any += len(shared)
                bad = [k for k in shared
                       if get_dependencies(graphs[a], k) != get_dependencies(graphs[b], k)]
                assert not bad, (f"{kind}: {a} and {b} send different tasks under "
                                 f"{len(bad)} shared keys, e.g. {bad[0]!r}: "
                                 f"{graphs[a][bad[0]]!r} vs {graphs[b][bad[0]]!r}")
        assert shared_any > 0, kind      # the inputs' keys are shared: the check has a subject


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
def test_distributed_no_run_spec_warning(tmp_path):
    """Issue 13 item 6 on a real scheduler: every graph is submitted while the earlier ones'
    tasks are still on the scheduler (no worker yet, so nothing finishes and nothing is
    released: the collision is certain, not a race), then a worker joins and the results
    must equal the local functions'; then the issue's sequence, ``evaluate(...).compute()``
    then ``cross_entropy(...).compute()`` on the same client.  No warning may be logged."""
    distributed = pytest.importorskip("distributed")
    import logging
    import warnings

    class _Records(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    x, r, t, inputs = _key_inputs(tmp_path)
    X, T, R, _ = inputs["from_npy"]
    ev = fastxent.Evaluator()
    ev.update(x, t)
    handler = _Records()
    log = logging.getLogger("distributed")
    log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cluster = distributed.LocalCluster(n_workers=0, processes=False,
                                                   dashboard_address=None)
            except Exception as e:  # sandboxes without an event loop thread or sockets
                pytest.skip(f"LocalCluster cannot start here: {type(e).__name__}: {e}")
            try:
                with distributed.Client(cluster) as client:
                    futures = [client.compute(fxd.evaluate(X, T)),
                               client.compute(fxd.cross_entropy(X, T)),
                               client.compute(fxd.cross_entropy(X, T, reduction="none")),
                               client.compute(fxd.perplexity(X, T)),
                               client.compute(fxd.evaluate(X, T, R)),
                               client.compute(fxd.token_stats(X, T, ref_logits=R).kl)]
                    cluster.scale(1)
                    rep, mean, none, ppl, rep_ref, kl = client.gather(futures)
                    assert rep == ev.report()
                    assert mean == fastxent.cross_entropy(x, t)
                    assert np.array_equal(none, fastxent.cross_entropy(x, t, reduction="none"))
                    assert ppl == fastxent.perplexity(x, t)
                    assert rep_ref["tokens"] == ev.tokens
                    assert np.array_equal(kl, fastxent.token_stats(x, t, ref_logits=r).kl, equal_nan=True)
                    for _ in range(3):   # the sequence
                        assert fxd.evaluate(X, T).compute(scheduler=client) == ev.report()
                        assert (fxd.cross_entropy(X, T).compute(scheduler=client)
                                == fastxent.cross_entropy(x, t))
            finally:
                cluster.close()
    finally:
        log.removeHandler(handler)
    run_spec = [rec.getMessage() for rec in handler.records if "run_spec" in rec.getMessage()]
    assert not run_spec, f"{len(run_spec)} run_spec warnings, e.g. {run_spec[0][:300]}"
    scheduler = [rec.getMessage() for rec in handler.records if rec.name == "distributed.scheduler"]
    assert not scheduler, scheduler[:3]
    relevant = [str(w.message) for w in caught
                if not issubclass(w.category, (DeprecationWarning, ResourceWarning))]
    assert not relevant, relevant[:3]


# --------------------------------------------------------------------------- DLPack blocks
class _DLPackOnly:
    """A block visible through DLPack only (no __array__, no buffer protocol): a stand-in for
    CuPy-like or array-API objects."""

    def __init__(self, a):
        self.a = a
        self.shape, self.ndim, self.dtype = a.shape, a.ndim, a.dtype

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def _block_maker(kind):
    """numpy block -> a block of `kind` holding the same values (bfloat16 included)."""
    if kind == "dlpack-only":
        return _DLPackOnly
    if kind == "torch":
        torch = optional_import("torch")

        def to_torch(b):
            if b.dtype.name == "bfloat16":
                return torch.from_numpy(np.ascontiguousarray(b).view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(np.ascontiguousarray(b))
        return to_torch
    jax = optional_import("jax")
    return lambda b: jax.device_put(b, jax.devices("cpu")[0])


def _as_blocks(a, kind):
    return a.map_blocks(_block_maker(kind), dtype=a.dtype, meta=np.empty((0,) * a.ndim, dtype=a.dtype))


def _bf16_or_skip():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return ml_dtypes.bfloat16


@pytest.mark.parametrize("kind", ["dlpack-only", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("ch", [(3, 16), (1, 7), (3, 50)])
def test_blocks_may_be_dlpack_producers(ch, dtype, kind):
    """Blocks that are torch tensors, JAX arrays or DLPack-only objects: every function of
    fastxent.dask gives the results of the same data in NumPy blocks, bitwise."""
    if kind == "dlpack-only" and dtype == "bfloat16":
        pytest.skip("the stand-in wraps NumPy, which cannot export bfloat16 over DLPack")
    dt = _bf16_or_skip() if dtype == "bfloat16" else np.float32
    x, r, t = _data(dtype=dt)
    X, T, R = _dask(x, t, r, ch)
    Xb, Tb, Rb = _as_blocks(X, kind), _as_blocks(T, kind), _as_blocks(R, kind)
    assert not isinstance(Xb.to_delayed().ravel()[0].compute(), np.ndarray)  # the blocks really are not NumPy arrays
    w = np.linspace(0.5, 2.0, V)
    for kw in (dict(), dict(reduction="sum", weight=w, label_smoothing=0.1),
               dict(reduction="none", z_loss=1e-3, softcap=5.0)):
        got, want = fxd.cross_entropy(Xb, Tb, **kw).compute(), fxd.cross_entropy(X, T, **kw).compute()
        assert np.array_equal(got, want) and got.dtype == want.dtype, kw
    assert fxd.perplexity(Xb, Tb).compute() == fxd.perplexity(X, T).compute()
    if len(X.chunks[1]) == 1:  # per sequence: the sequence axis in one chunk
        assert np.array_equal(fxd.perplexity(Xb, Tb, per_sequence=True).compute(),
                              fxd.perplexity(X, T, per_sequence=True).compute())
    got, want = fxd.token_stats(Xb, Tb, ref_logits=Rb), fxd.token_stats(X, T, ref_logits=R)
    for name in ("nll", "entropy", "correct", "kl", "same_top", "ref_nll", "counted"):
        assert np.array_equal(getattr(got, name).compute(), getattr(want, name).compute(), equal_nan=True), name
    assert fxd.evaluate(Xb, Tb, Rb).compute() == fxd.evaluate(X, T, R).compute()


def test_torch_blocks_with_class_axis_1():
    x, r, t = _data()
    xc = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # (3, V, 50): classes on axis 1
    X = _as_blocks(da.from_array(xc, chunks=(1, -1, 16)), "torch")
    T = _as_blocks(da.from_array(t, chunks=(1, 16)), "torch")
    assert fxd.cross_entropy(X, T, axis=1).compute() == fastxent.cross_entropy(x, t)
    assert fxd.evaluate(X, T, axis=1).compute() == fxd.evaluate(da.from_array(x, chunks=(1, 16, -1)),
                                                                da.from_array(t, chunks=(1, 16))).compute()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dask_arrays_with_a_torch_meta(dtype):
    """``x.map_blocks(torch.from_numpy)`` gives a dask array whose meta is a tensor and whose
    dtype is a torch.dtype: read as the NumPy dtype of that name."""
    torch = optional_import("torch")
    x, r, t = _data(dtype=_bf16_or_skip() if dtype == "bfloat16" else np.float32)
    X, T, R = _dask(x, t, r, (1, 16))
    to_torch = _block_maker("torch")
    Xt, Tt, Rt = X.map_blocks(to_torch), T.map_blocks(to_torch), R.map_blocks(to_torch)
    assert Xt.dtype == getattr(torch, dtype) and isinstance(Xt._meta, torch.Tensor)
    assert fxd.cross_entropy(Xt, Tt).compute() == fxd.cross_entropy(X, T).compute()
    assert np.array_equal(fxd.cross_entropy(Xt, Tt, reduction="none").compute(),
                          fxd.cross_entropy(X, T, reduction="none").compute())
    assert fxd.evaluate(Xt, Tt, Rt).compute() == fxd.evaluate(X, T, R).compute()
    with pytest.raises(TypeError, match=r"^`logits` is complex \(complex64\); fastxent handles real input only"):
        fxd.cross_entropy(X.astype(np.complex64).map_blocks(to_torch), Tt)
    f8 = X.astype(np.float32).map_blocks(lambda b: torch.from_numpy(b).to(torch.float8_e4m3fn))
    # NumPy knows the name when ml_dtypes is imported; else fastxent's own message
    with pytest.raises(TypeError, match=r"^`logits` (has dtype float8_e4m3fn; supported dtypes are|is a dask array "
                                        r"of dtype torch\.float8_e4m3fn \(its meta is a torch\.Tensor\), which "
                                        r"fastxent does not read)"):
        fxd.cross_entropy(f8, Tt)
