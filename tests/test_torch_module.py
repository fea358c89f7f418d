"""fastxent.torch: PyTorch's cross_entropy conventions, autograd, torch.compile (needs torch).

Tolerances: float64 against F.cross_entropy + autograd to 1e-12 (loss) and 1e-10 (gradient),
relative; float32 against the float64 truth to 1e-5 relative + 1e-6; bfloat16 and float16 to
one rounding of the result to that dtype (2^-8 and 2^-11 relative): fastxent computes in
float32 and rounds once (`TOL` below).  z-loss and softcap, which F.cross_entropy has not, are
compared with their definition composed of torch operations (`_torch_loss`).
"""
import shutil
import subprocess
import sys
import tracemalloc

import pytest

from conftest import optional_import

torch = optional_import("torch")
F = torch.nn.functional
import fastxent.torch as fxt  # noqa: E402


def _case(shape, n_classes_dim=1, seed=0, dtype=torch.float64, prob=False, ignore=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    C = shape[n_classes_dim] if len(shape) > 1 else shape[0]
    if prob:
        t = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), dim=1 if len(shape) > 1 else 0)
    else:
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        t = torch.randint(0, C, tshape, generator=g)
        if ignore and t.numel() > 1:
            t.view(-1)[0] = -100
    w = torch.rand(C, generator=g, dtype=torch.float64) + 0.5
    return x.to(dtype), t, w


OPTIONS = [dict(), dict(weight=True), dict(label_smoothing=0.2), dict(weight=True, label_smoothing=0.1),
           dict(ignore_index=1), dict(z_loss=1e-2), dict(softcap=3.0), dict(prob=True),
           dict(prob=True, weight=True, label_smoothing=0.1),
           dict(weight=True, label_smoothing=0.1, z_loss=1e-2, softcap=3.0),
           dict(ignore_index=1, z_loss=5e-2, softcap=2.0),
           dict(prob=True, weight=True, z_loss=1e-2, softcap=3.0)]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("shape", [(5, 7), (3, 6, 4), (6,)])
def test_gradcheck_float64(shape, opts, reduction):
    opts = dict(opts)
    prob = opts.pop("prob", False)
    x, t, w = _case(shape, prob=prob, ignore="ignore_index" not in opts)
    if opts.pop("weight", False):
        opts["weight"] = w
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: fxt.cross_entropy(x, t, reduction=reduction, **opts), (x,))


def _parity_opts(opts, w):
    opts = dict(opts)
    prob = opts.pop("prob", False)
    if opts.pop("weight", False):
        opts["weight"] = w
    return prob, opts


def _torch_loss(x, t, reduction="mean", z_loss=0.0, softcap=None, **kw):
    """fastxent.torch.cross_entropy's definition in torch operations: F.cross_entropy of the
    capped logits ``softcap * tanh(x / softcap)``, plus ``z_loss * logsumexp**2`` per counted
    position ("mean": the z-loss total over the number of counted positions)."""
    cls = 1 if x.dim() >= 2 else 0
    xc = x if softcap is None else softcap * torch.tanh(x / softcap)
    loss = F.cross_entropy(xc, t, reduction=reduction, **kw)
    if z_loss:
        lse = torch.logsumexp(xc, dim=cls)
        counted = torch.ones_like(lse, dtype=torch.bool) if t.dtype.is_floating_point else \
            t != kw.get("ignore_index", -100)
        z = z_loss * torch.where(counted, lse, 0.0) ** 2
        loss = loss + (z if reduction == "none" else z.sum() if reduction == "sum" else z.sum() / counted.sum())
    return loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("shape", [(64, 50), (4, 33, 9), (17,)])
def test_matches_torch_float64(shape, opts, reduction):
    """Same numbers as F.cross_entropy (with z-loss and softcap: `_torch_loss`) + autograd in
    float64 (1e-12 relative)."""
    x, t, w = _case(shape, prob=opts.get("prob", False), ignore="ignore_index" not in opts)
    prob, kw = _parity_opts(opts, w.double())
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = fxt.cross_entropy(a, t, reduction=reduction, **kw), _torch_loss(b, t, reduction=reduction, **kw)
    assert la.dtype == lb.dtype and la.shape == lb.shape
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-12)
    gout = torch.rand_like(la) + 0.5
    (la * gout).sum().backward()
    (lb * gout).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


# float32: both compute in float32 (fastxent with float64 totals); bf16/f16: fastxent rounds its
# float32 result once, so it is within one unit in the last place of the float64 truth.
TOL = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (2 ** -8, 2 ** -8), torch.float16: (2 ** -11, 2 ** -14)}


LOW_OPTIONS = [dict(), dict(label_smoothing=0.1), dict(weight=True), dict(ignore_index=1),
               dict(prob=True, label_smoothing=0.1), dict(z_loss=1e-3, softcap=15.0),
               dict(weight=True, label_smoothing=0.1, z_loss=1e-2, softcap=5.0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("opts", LOW_OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("shape", [(128, 300), (4, 300, 16)])
def test_low_precision_against_float64_truth(dtype, reduction, opts, shape):
    x, t, w = _case(shape, dtype=dtype, prob=opts.get("prob", False), ignore="ignore_index" not in opts)
    if opts.get("prob"):
        t = t.to(dtype)  # probability targets in the input's dtype, as F.cross_entropy wants them
    prob, kw = _parity_opts(opts, w.to(dtype))
    a = x.clone().requires_grad_()
    la = fxt.cross_entropy(a, t, reduction=reduction, **kw)
    assert la.dtype == dtype  # torch's result dtype
    x64 = x.double().requires_grad_()
    kw64 = dict(kw, weight=kw["weight"].double()) if "weight" in kw else kw
    l64 = _torch_loss(x64, t.double() if prob else t, reduction=reduction, **kw64)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(la.double(), l64.detach(), rtol=rtol, atol=atol)
    la.sum().backward()
    l64.sum().backward()
    assert a.grad.dtype == dtype
    torch.testing.assert_close(a.grad.double(), x64.grad, rtol=rtol, atol=atol * float(x64.grad.abs().max()))
    if dtype != torch.float32 and "z_loss" not in kw:
        # and at least as close to the truth as PyTorch's own bf16/f16 result
        b = x.clone().requires_grad_()
        lb = F.cross_entropy(b, t, reduction=reduction, **kw)
        assert (la.double() - l64).abs().max() <= (lb.double() - l64).abs().max() + 1e-12


def test_class_dim_is_one_like_torch():
    """The issue's case: (4, 16, 16) where fastxent.cross_entropy's axis -1 differs."""
    x, t, _ = _case((4, 16, 16))
    torch.testing.assert_close(fxt.cross_entropy(x, t), F.cross_entropy(x, t), rtol=1e-12, atol=0)


def test_strided_causal_view_and_module():
    x, t, w = _case((3, 9, 5), dtype=torch.float32)
    xs = x.transpose(1, 2)[:, :, :-1]  # a (3, 5, 8) strided view: class dim 1, causal shift
    ts = torch.randint(0, 5, (3, 8))
    w = w[:5].float()
    m = fxt.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    ref = torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    torch.testing.assert_close(m(xs, ts), ref(xs, ts), rtol=1e-5, atol=1e-6)


def _traced(f):
    """(peak, still allocated after `f`) bytes of NumPy/Python memory during `f()`, and its result."""
    tracemalloc.start()
    try:
        out = f()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, current, out


def test_no_grad_keeps_no_gradient_and_backward_needs_it():
    x, t, _ = _case((2048, 1000), dtype=torch.float32)  # an 8 MB gradient
    x.requires_grad_(True)
    mb = 1 << 20
    # grad mode: the gradient (8 MB) is computed in the forward pass and kept until backward
    peak, kept, loss = _traced(lambda: fxt.cross_entropy(x, t))
    assert loss.grad_fn is not None and kept >= 4 * x.numel()
    loss.backward()
    torch.testing.assert_close(x.grad, torch.func.grad(lambda x: F.cross_entropy(x, t))(x.detach()),
                               rtol=1e-5, atol=1e-9)
    # no_grad, inference_mode, an input that does not require grad: never computed, nothing kept
    for mode, inp in ((torch.no_grad, x), (torch.inference_mode, x), (torch.enable_grad, x.detach())):
        with mode():
            peak, kept, loss = _traced(lambda: fxt.cross_entropy(inp, t))
        assert loss.grad_fn is None and not loss.requires_grad, mode
        assert peak < mb and kept < mb, (mode, peak, kept)
        assert loss.item() == pytest.approx(F.cross_entropy(x.detach(), t).item(), rel=1e-6)


def test_double_backward_is_a_clear_error():
    x, t, _ = _case((8, 5))
    x.requires_grad_(True)
    loss = fxt.cross_entropy(x, t)
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


def test_errors():
    x, t, w = _case((8, 5))
    with pytest.raises(ValueError, match="`reduction`"):
        fxt.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match=r"^`input` is on device meta; fastxent computes on the CPU: pass `input\.cpu\(\)`"):
        fxt.cross_entropy(torch.empty(8, 5, device="meta"), t)
    # gradients fastxent does not compute are refused, not silently missing
    xg, p = x.clone().requires_grad_(), torch.softmax(x, 1).requires_grad_()
    with pytest.raises(RuntimeError, match=r"^`target` requires grad, but fastxent\.torch\.cross_entropy is "
                                           r"differentiable with respect to `input` only"):
        fxt.cross_entropy(xg, p)
    wg = w.clone().requires_grad_()
    with pytest.raises(RuntimeError, match=r"^`weight` requires grad"):
        fxt.cross_entropy(xg, t, wg)
    with torch.no_grad():  # no gradient wanted: fine
        torch.testing.assert_close(fxt.cross_entropy(xg, p, wg), F.cross_entropy(xg, p, wg), rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="`input` and `target` must be torch tensors"):
        fxt.cross_entropy(x.numpy(), t)
    with pytest.raises(IndexError, match="`target` value 7"):
        fxt.cross_entropy(x, torch.full((8,), 7))
    with pytest.raises(TypeError, match="`ignore_index` must be an integer, got 1.5"):
        fxt.cross_entropy(x, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="`label_smoothing` must be a finite number in"):
        fxt.cross_entropy(x.float().requires_grad_(), t, label_smoothing=float("nan"))
    with pytest.raises(ValueError, match="`softcap` must be a finite number in"):
        fxt.cross_entropy(x, t, softcap=0.0)
    with pytest.raises(ValueError, match="`ignore_index` must fit in int64"):
        fxt.cross_entropy(x, t, ignore_index=2 ** 63)


def _compiled_graphs(f, *args):
    """The forward and backward graphs AOTAutograd makes of `f` (compiled with fullgraph=True, so a
    graph break is an error), run eagerly; and the compiled `f`."""
    from torch._dynamo.backends.common import aot_autograd

    graphs = {}

    def keep(name):
        def compiler(gm, example_inputs):
            graphs[name] = gm
            return gm.forward
        return compiler

    torch._dynamo.reset()
    cf = torch.compile(f, fullgraph=True, backend=aot_autograd(fw_compiler=keep("forward"),
                                                               bw_compiler=keep("backward")))
    return cf, graphs


def _ops(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def _f(x, t):
    return fxt.cross_entropy(x * 2.0, t, label_smoothing=0.1, z_loss=1e-3)


def test_compile_is_one_graph_with_the_op_and_a_backward_without_it():
    """torch.compile traces fastxent::cross_entropy without a graph break (dynamo's explain: one
    graph, no break); the forward graph calls the op once, the backward only scales the gradient
    the forward kept (the op is not run again, nor decomposed)."""
    x, t, _ = _case((16, 10), dtype=torch.float32)
    torch._dynamo.reset()
    ex = torch._dynamo.explain(_f)(x.clone().requires_grad_(), t)
    assert (ex.graph_count, ex.graph_break_count) == (1, 0), ex
    cf, graphs = _compiled_graphs(_f)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la = cf(a, t)
    la.backward()
    lb = _f(b, t)
    lb.backward()
    assert _ops(graphs["forward"]).count("fastxent.cross_entropy.default") == 1
    assert not any("fastxent" in op for op in _ops(graphs["backward"])), _ops(graphs["backward"])
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph(backend):
    """The default backend (inductor: needs a C++ compiler) and aot_eager, fullgraph=True, with
    dynamic shapes: (N, C, L) inputs (gradient strides that differ from the input's) of two
    sizes, and with aot_eager also (N, C) inputs."""
    if backend == "inductor" and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("inductor needs a C++ compiler")
    torch._dynamo.reset()
    cf = torch.compile(_f, fullgraph=True, backend=backend, dynamic=True)
    # no cached kernels: inductor's cache key does not cover the op's fake implementation, so a
    # graph compiled with another version of fastxent.torch would be reused
    shapes = [(3, 10, 6), (2, 10, 9)] + ([(16, 10), (5, 10)] if backend == "aot_eager" else [])  # time
    with torch._inductor.config.patch(force_disable_caches=True):
        for shape in shapes:
            x, t, _ = _case(shape, dtype=torch.float32)
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            la = cf(a, t)
            la.backward()
            lb = _f(b, t)
            lb.backward()
            torch.testing.assert_close(la, lb, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("need_grad", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shape, prob", [((7,), False), ((6, 7), False), ((3, 7, 5), False), ((3, 7, 5), True),
                                         ((2, 7, 3, 4), False)])
def test_opcheck(shape, prob, reduction, need_grad):
    """torch.library.opcheck: schema, autograd registration, and a fake implementation whose
    outputs have the real ones' shapes, dtypes and strides (which inductor relies on)."""
    x, t, w = _case(shape, dtype=torch.float32, prob=prob)
    args = (x.requires_grad_(need_grad), t.float() if prob else t, w.float(), -100, reduction, 0.1, 1e-3,
            4.0, need_grad)
    torch.library.opcheck(fxt._xent_op, args)


def test_training_loop_matches_torch_step_for_step():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(256, 20, generator=g)
    W_true = torch.randn(20, 7, generator=g)
    y = (X @ W_true + 0.5 * torch.randn(256, 7, generator=g)).argmax(1)
    curves = []
    for loss_fn in (fxt.cross_entropy, F.cross_entropy):
        torch.manual_seed(0)
        model = torch.nn.Linear(20, 7)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        curve = []
        for step in range(200):
            idx = torch.arange(step * 32, step * 32 + 32) % 256
            loss = loss_fn(model(X[idx]), y[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(torch.tensor(curve))
    assert curves[1][-20:].mean() < 0.6 * curves[1][:5].mean()  # it does learn
    torch.testing.assert_close(curves[0], curves[1], rtol=1e-4, atol=1e-5)


def test_importing_fastxent_does_not_import_torch_and_module_needs_it():
    code = ("import sys, fastxent; assert 'torch' not in sys.modules; sys.modules['torch'] = None\n"
            "try:\n    import fastxent.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install torch" in out


# --------------------------------------------------------------------------- the fast routes
import numpy as np  # noqa: E402

import fastxent  # noqa: E402

_DIRECT_OPTS = [dict(), dict(label_smoothing=0.2), dict(z_loss=1e-2), dict(softcap=3.0), dict(ignore_index=1),
                dict(label_smoothing=0.1, z_loss=1e-3, softcap=5.0), dict(weight=True)]


def _views(shape, dtype):
    """(input, target) pairs: contiguous, a row-strided causal view, classes on dim 1."""
    g = torch.Generator().manual_seed(len(shape))
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    if len(shape) == 2:
        yield x, torch.randint(0, shape[1], shape[:1], generator=g)
        xs = x[:, :-1]  # rows of C - 1 classes, C apart
        yield xs, torch.randint(0, shape[1] - 1, shape[:1], generator=g)
    elif len(shape) == 3:
        yield x, torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    else:
        yield x, torch.tensor(3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", _DIRECT_OPTS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("shape", [(33, 70), (4, 9, 5), (11,)])
def test_same_bits_as_fastxent_cross_entropy(shape, opts, reduction, dtype):
    """Loss and gradient are bitwise fastxent.cross_entropy's on the same data (class axis 1):
    the loss rounded to torch's dtype, the gradient for 16-bit input its float32 one rounded
    once, whichever route the call takes (the direct kernel call or fastxent.cross_entropy)."""
    for x, t in _views(shape, dtype):
        kw = dict(opts)
        if kw.pop("weight", False):
            kw["weight"] = torch.rand(x.shape[1 if x.dim() > 1 else 0], dtype=torch.float64) + 0.5
        if "ignore_index" in kw and t.dim():
            t[: t.shape[0] // 2] = kw["ignore_index"]
        a = x.detach().clone().requires_grad_()
        loss = fxt.cross_entropy(a, t, reduction=reduction, **kw)
        loss.sum().backward()
        want_loss, want_grad = fastxent.cross_entropy(x, t, axis=1 if x.dim() > 1 else 0, reduction=reduction,
                                                      return_grad=True, **kw)
        want_loss = torch.from_numpy(np.array(want_loss)).to(dtype)
        want_grad = torch.from_numpy(np.asarray(want_grad)).to(dtype)
        assert loss.dtype == dtype and loss.shape == want_loss.shape
        assert a.grad.dtype == dtype and a.grad.shape == x.shape
        torch.testing.assert_close(loss, want_loss, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(a.grad, want_grad, rtol=0, atol=0, equal_nan=True)


def _saved_gradient_ptr(loss):
    return loss.grad_fn.grad.data_ptr()  # the eager route keeps it as the node's attribute


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_hands_over_the_forward_gradient(dtype):
    """Without retain_graph, x.grad is the forward's gradient buffer itself (scaled in place);
    with it, backward returns a scaled copy and the kept gradient stays intact for the next one."""
    x, t, _ = _case((64, 40), dtype=dtype)
    x.requires_grad_(True)
    loss = fxt.cross_entropy(x, t)
    ptr = _saved_gradient_ptr(loss)
    loss.backward()
    assert x.grad.data_ptr() == ptr
    g1 = x.grad.clone()

    x.grad = None
    loss = fxt.cross_entropy(x, t)
    ptr = _saved_gradient_ptr(loss)
    (loss * 0.5).backward()  # the incoming gradient scales the kept one in place
    assert x.grad.data_ptr() == ptr
    torch.testing.assert_close(x.grad, g1 * 0.5, rtol=0, atol=0)

    x.grad = None
    loss = fxt.cross_entropy(x, t)
    ptr = _saved_gradient_ptr(loss)
    loss.backward(retain_graph=True)
    assert x.grad.data_ptr() != ptr
    torch.testing.assert_close(x.grad, g1, rtol=0, atol=0)
    x.grad.zero_()  # in place on x.grad: the kept gradient is not x.grad
    (loss * 3.0).backward(retain_graph=True)
    torch.testing.assert_close(x.grad, g1 * 3.0, rtol=0, atol=0)
    loss.backward()
    torch.testing.assert_close(x.grad, g1 * 3.0 + g1, rtol=0, atol=0)
    (ga,) = torch.autograd.grad(fxt.cross_entropy(x, t), x)
    torch.testing.assert_close(ga, g1, rtol=0, atol=0)


def test_backward_copies_without_torchs_keep_graph_query(monkeypatch):
    """The hand-over asks torch whether the graph is kept (a private query AOTAutograd uses);
    without it (a torch that lacks it), backward copies: the same values, a buffer of its own."""
    assert fxt._KEEP_GRAPH is not None  # torch 2.13 has it
    monkeypatch.setattr(fxt, "_KEEP_GRAPH", None)
    x, t, _ = _case((16, 9), dtype=torch.float32)
    x.requires_grad_(True)
    loss = fxt.cross_entropy(x, t)
    ptr = _saved_gradient_ptr(loss)
    loss.backward()
    assert x.grad.data_ptr() != ptr
    b = x.detach().clone().requires_grad_()
    F.cross_entropy(b, t).backward()
    torch.testing.assert_close(x.grad, b.grad, rtol=1e-6, atol=1e-7)


def test_released_gradient_memory_is_reused_and_held_memory_never():
    """The last released gradient of >= 16 MiB becomes the next one; a gradient still held by
    someone is never handed out again (its values stay), and empty_cache frees the kept one."""
    x = torch.randn(4096, 1024, generator=torch.Generator().manual_seed(0)).requires_grad_()
    t = torch.randint(0, 1024, (4096,), generator=torch.Generator().manual_seed(1))
    fxt.empty_cache()
    fxt.cross_entropy(x, t).backward()
    first = x.grad.data_ptr()
    kept = x.grad  # held by the caller
    saved = kept.clone()
    x.grad = None
    y = (x * 2).detach().requires_grad_()
    fxt.cross_entropy(y, t).backward()
    assert y.grad.data_ptr() != first
    torch.testing.assert_close(kept, saved, rtol=0, atol=0)
    second = y.grad.data_ptr()
    y.grad = None  # released: kept for the next step
    fxt.cross_entropy(x, t).backward()
    assert x.grad.data_ptr() == second
    del kept
    x.grad = None
    assert fxt.empty_cache() == 4096 * 1024 * 4
    assert fxt.empty_cache() == 0


def test_routes_eager_function_and_custom_op_under_a_mode():
    """Eager calls take the autograd.Function; under a dispatch mode the custom op (which the
    mode sees), with the same numbers."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    x, t, _ = _case((12, 7), dtype=torch.float32)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la = fxt.cross_entropy(a, t, label_smoothing=0.1)
    assert type(la.grad_fn).__name__ == "_XentBackward"
    with Seen() as mode:
        lb = fxt.cross_entropy(b, t, label_smoothing=0.1)
    assert "fastxent.cross_entropy.default" in mode.ops
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_scalar_loss_rounds_as_the_cast_chain(dtype):
    """A 0-d loss is the float64 total rounded to float32, then to the input's dtype (what
    fastxent.cross_entropy's float32 result cast by torch gives), also for totals just off a
    16-bit rounding midpoint (where rounding float64 directly would differ) and beyond the
    dtype's range."""
    rng = np.random.default_rng(0)
    vals = [1e300, -1e300, 3.4028235e38, 3.402823567e38, 65519.0, 65520.0, 3.3895e38, float("inf"),
            float("-inf")]
    for f in (rng.standard_normal(300) * 50).astype(np.float32):
        bits = int(np.float32(f).view(np.uint32)) & 0xFFFF0000
        mid = float(np.uint32(bits | 0x8000).view(np.float32))  # a bfloat16 midpoint
        half = np.float16(f)
        hmid = (float(half) + float(np.nextafter(half, np.float16(np.inf)))) / 2  # a float16 one
        for m in (mid, hmid):
            vals += [m, float(np.nextafter(m, np.inf)), float(np.nextafter(m, -np.inf))]
    ibits = torch.int32 if dtype == torch.float32 else torch.int16
    for v in vals:
        got = fxt._scalar(v, dtype, torch.float32)
        want = torch.tensor(v, dtype=torch.float64).to(torch.float32).to(dtype)
        assert got.dtype == dtype and got.shape == ()
        assert got.view(ibits).item() == want.view(ibits).item(), (v, got, want)
    assert torch.isnan(fxt._scalar(float("nan"), dtype, torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_the_kernel_reads_the_tensor_itself(dtype):
    """The direct route hands the kernel a view of the input's memory (a strided one too), not a copy."""
    x = torch.randn(6, 9, dtype=torch.float64).to(dtype).requires_grad_()
    for v in (x, x[:, 1:]):
        a = fxt._as_numpy(v)
        assert a.__array_interface__["data"][0] == v.data_ptr() and a.strides == tuple(
            s * v.element_size() for s in v.stride())
