"""Cross-entropy for PyTorch code: ``F.cross_entropy``'s names and conventions, fastxent's kernel.

``fastxent.torch.cross_entropy`` and ``CrossEntropyLoss`` take and return torch tensors, with
the class dimension 1 of (N, C, d1, ...) inputs (or 0 of an unbatched (C,) input) as
``torch.nn.functional.cross_entropy``.  The logits are read zero-copy (bfloat16 and float16
included); the forward pass computes the loss and its gradient in one read of the logits,
writing the gradient in the input's dtype (16-bit: each entry rounded once from float32).
The gradient is kept for backward only when the input requires grad and grad mode is on;
backward scales it by the incoming gradient and hands it to autograd without a copy when no
other backward can read it (``retain_graph`` off), else returns a scaled copy.

Two routes to the same forward and backward: eager calls on plain CPU tensors go through a
``torch.autograd.Function`` (the cheapest dispatch); under ``torch.compile``, with a torch
function/dispatch mode active, or for tensor subclasses, the ``torch.library`` custom op
``fastxent::cross_entropy`` (with a fake implementation, so that ``torch.compile`` traces it
without a graph break).  Integer targets without class weights call the kernel directly
once their values are known good; any other call (and any invalid one, for its error) goes
through :func:`fastxent.cross_entropy`, which checks everything.  CPU tensors only; double
backward is not supported.

Importing ``fastxent`` never imports torch; importing this module needs it.
"""
import collections
import math
import operator
import weakref
from typing import Any, Dict, Optional, Tuple

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised without torch
    raise ImportError("fastxent.torch needs PyTorch: `pip install torch` (the CPU build is enough)") from e

import numpy as np

from . import _core
from . import losses as _losses
from ._arrays import BF16_RAW, as_rows
from ._config import resolve_n_threads
from ._validate import REDUCTIONS

__all__ = ["cross_entropy", "CrossEntropyLoss", "empty_cache"]

# torch dtype -> (NumPy dtype of the storage the kernels read, torch dtype they compute the loss in)
_KERNEL_DTYPES: Dict[Any, Tuple[np.dtype, Any]] = {
    torch.float32: (np.dtype(np.float32), torch.float32), torch.float64: (np.dtype(np.float64), torch.float64),
    torch.float16: (np.dtype(np.float16), torch.float32), torch.bfloat16: (BF16_RAW, torch.float32)}
_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
_I64 = (-2 ** 63, 2 ** 63)
_INT64 = np.dtype(np.int64)
_INT16 = np.dtype(np.int16)


def _class_axis(ndim: int) -> int:
    return 1 if ndim >= 2 else 0


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A zero-copy NumPy view of a CPU tensor without torch's lazy negation bit (bfloat16 as
    fastxent's raw bfloat16 storage)."""
    if t.dtype == torch.bfloat16:
        return t.detach().view(torch.int16).numpy().view(BF16_RAW)
    return t.numpy(force=True)  # = detach().numpy() here (a real CPU tensor, no negation bit)


class _GradBuffers:
    """The memory of the last released large gradient, kept to be the next one.

    A training loop asks for a gradient the size of the logits every step, and a fresh
    buffer costs a page fault per page and the kernel's zeroing of it (a large share of the
    step; more on virtual machines that hand freed memory back to the host).  So the last
    gradient buffer of at least `MIN_BYTES` that autograd and the user have released (the
    last tensor or view on it died) is kept, one buffer at most, and handed out again for a
    gradient of between half its size and its size.  `empty_cache` frees it.
    """

    MIN_BYTES = 16 << 20

    def __init__(self) -> None:
        self._free: "collections.deque[np.ndarray]" = collections.deque(maxlen=1)

    def empty(self, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-contiguous array; a large one is returned to the cache when
        it dies (hand this very object to torch.from_numpy: its storage then owns it)."""
        if math.prod(shape) * dtype.itemsize < self.MIN_BYTES:
            return np.empty(shape, dtype=dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        try:
            raw = self._free.pop()
            if not nbytes <= raw.nbytes <= 2 * nbytes:
                raw = np.empty(nbytes, dtype=np.uint8)  # (the kept one is freed)
        except IndexError:
            raw = np.empty(nbytes, dtype=np.uint8)
        arr = raw[:nbytes].view(dtype).reshape(shape)
        weakref.finalize(arr, self._free.append, raw)
        return arr

    def clear(self) -> int:
        kept = list(self._free)
        self._free.clear()
        return sum(b.nbytes for b in kept)


_BUFFERS = _GradBuffers()


def empty_cache() -> int:
    """Free the gradient memory that `cross_entropy` keeps for reuse.

    The last released gradient buffer of at least 16 MiB (one at most) is kept, so that the
    next step's gradient of the same size costs no page faults; a training loop's peak memory
    is unchanged by it, but the buffer stays allocated between steps and after the last one.

    Returns
    -------
    int
        The bytes freed (0 when nothing was kept).

    Examples
    --------
    >>> import torch
    >>> import fastxent.torch as fxt
    >>> x = torch.zeros(4096, 1024, requires_grad=True)  # a 16 MiB float32 gradient
    >>> fxt.cross_entropy(x, torch.zeros(4096, dtype=torch.long)).backward()
    >>> x.grad = None  # the last tensor on the gradient's memory dies: it is kept
    >>> fxt.empty_cache()
    16777216
    >>> fxt.empty_cache()
    0
    """
    return _BUFFERS.clear()


def _new_grad(input: torch.Tensor, ax: int) -> Tuple[torch.Tensor, np.ndarray]:
    """A gradient in the input's dtype, class dim `ax`, classes contiguous: the tensor and
    its NumPy view in (batch..., C) order.  NumPy allocates it (its large allocations ask for
    transparent huge pages: few page faults), or `_BUFFERS` hands out a released one."""
    shape = tuple(input.shape)
    last = ax == len(shape) - 1
    rows_shape = shape if last else shape[:ax] + shape[ax + 1:] + shape[ax:ax + 1]
    if input.dtype == torch.bfloat16:
        buf = _BUFFERS.empty(rows_shape, _INT16)
        grad, view = torch.from_numpy(buf).view(torch.bfloat16), buf.view(BF16_RAW)
    else:
        view = _BUFFERS.empty(rows_shape, _KERNEL_DTYPES[input.dtype][0])
        grad = torch.from_numpy(view)
    return (grad if last else grad.movedim(-1, ax)), view


def _no_grad(input: torch.Tensor) -> torch.Tensor:
    return input.new_empty((0,))


def _direct(input, target, ignore_index, reduction, eps, zl, softcap, need_grad):
    """(loss, gradient) from the kernel for integer targets without class weights, or None
    when an argument needs the checks (and the error messages) of fastxent.cross_entropy."""
    kinds = _KERNEL_DTYPES.get(input.dtype)
    nd = input.dim()
    ax = 1 if nd >= 2 else 0
    if (kinds is None or target.dtype not in _INT_DTYPES or input.is_neg() or not target.is_cpu
            or reduction not in REDUCTIONS or not 0.0 <= eps <= 1.0 or not 0.0 <= zl < math.inf
            or not (softcap is None or 0.0 < softcap < math.inf) or not _I64[0] <= ignore_index < _I64[1]
            or ((target.dim() != 1 or target.shape[0] != input.shape[0]) if nd == 2
                else target.shape != input.shape[:ax] + input.shape[ax + 1:])):
        return None
    t64 = target.numpy()  # (integer tensors never require grad)
    if t64.ndim != 1:
        t64 = t64.reshape(-1)
    if t64.dtype != _INT64 or not t64.flags.c_contiguous:
        t64 = np.ascontiguousarray(t64, dtype=_INT64)
    x = _as_numpy(input)
    if nd == 2 and x.size and x.strides[1] == x.itemsize and x.flags.aligned:  # rows of classes
        base, layout, batch, n_cols = x, (1, x.shape[0], x.shape[1], 0, x.strides[0] // x.itemsize, 1), \
            x.shape[:1], x.shape[1]
    else:
        base, layout, batch, n_cols = as_rows(x, (ax,))
    bad, counted = _core.check_targets(t64, n_cols, ignore_index)
    if bad >= 0:
        return None  # fastxent.cross_entropy names the position and the value
    rows = layout[0] * layout[1]
    grad, g = _new_grad(input, ax) if need_grad else (None, None)
    loss = np.empty(rows, dtype=np.float64)
    zbuf = np.zeros(rows, dtype=np.float64) if zl > 0.0 else None
    mean = reduction == "mean"
    if rows:
        gscale = (1.0 / counted if counted else math.nan) if mean else 1.0
        zscale = (1.0 / counted if counted else 0.0) if mean else 1.0
        _core.xent_ex(base, layout, t64, None, layout, None, ignore_index, eps, zl,
                      0.0 if softcap is None else softcap, g, (1, rows, n_cols, 0, n_cols, 1),
                      gscale, zscale, loss, zbuf, resolve_n_threads(None))
    # fastxent.cross_entropy's reduction: float64 totals in xent_sum's order, rounded once
    # to the result dtype (float32 or float64), then to the input's dtype
    if reduction == "none":
        out = torch.from_numpy(loss if zbuf is None else loss + zbuf).to(kinds[1]).reshape(batch)
        out = out.to(input.dtype)
    else:
        s = _core.sum_losses(loss) if rows else 0.0
        z = _core.sum_losses(zbuf) if zbuf is not None and rows else 0.0
        if mean:
            s = s / counted if counted else math.nan
            z = (z / counted if counted else math.nan) if zbuf is not None else 0.0
        out = _scalar(s + z, input.dtype, kinds[1])
    return out, (_no_grad(input) if grad is None else grad)


_MAX = {torch.float32: float(torch.finfo(torch.float32).max), torch.float16: float(torch.finfo(torch.float16).max),
        torch.bfloat16: float(torch.finfo(torch.bfloat16).max)}


def _scalar(v: float, dtype: torch.dtype, rdt: torch.dtype) -> torch.Tensor:
    """A 0-d tensor of `dtype`: `v` rounded to `rdt` (float32 or float64), then to `dtype`.
    torch's scalar conversion to a 16-bit dtype goes through float32 (the two roundings of
    the cast chain; tests check it) but refuses values beyond the dtype's largest, which the
    cast chain rounds (to the largest or to inf)."""
    if rdt == torch.float64:
        return torch.scalar_tensor(v, dtype=torch.float64)
    if not (math.isfinite(v) and abs(v) > _MAX[dtype]):
        return torch.scalar_tensor(v, dtype=dtype)
    return torch.scalar_tensor(v, dtype=torch.float64).to(torch.float32).to(dtype)


def _forward(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
             need_grad) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss in the input's dtype, gradient in the input's dtype or an empty tensor)."""
    if weight is None:
        res = _direct(input, target, ignore_index, reduction, label_smoothing, z_loss, softcap, need_grad)
        if res is not None:
            return res
    ax = _class_axis(input.dim())
    kw: Dict[str, Any] = dict(axis=ax, weight=weight, ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap)
    if need_grad and input.dtype in _KERNEL_DTYPES:
        grad, g = _new_grad(input, ax)
        loss, _ = _losses.cross_entropy(input, target, return_grad=True, grad_out=np.moveaxis(g, -1, ax), **kw)
    else:  # without a gradient (or for a dtype fastxent refuses: its error)
        grad = _no_grad(input)
        loss = _losses.cross_entropy(input, target, return_grad=need_grad, **kw)
    return torch.from_numpy(np.array(loss, copy=True)).to(input.dtype), grad


# whether the running backward keeps the graph (torch's own AOTAutograd asks it for the same
# decision); a torch without it gets None: backward always copies
_KEEP_GRAPH = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def _owned(g: torch.Tensor) -> bool:
    """True when the backward running now is the only one that can read the saved gradient
    `g` (a real tensor, the graph freed after this backward): it may then be scaled in place
    and handed to autograd.  Without torch's query, or outside a backward run, this is False
    (a copy: always safe)."""
    return type(g) is torch.Tensor and _KEEP_GRAPH is not None and not _KEEP_GRAPH()


def _grad_input(ctx, grad_loss: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """d loss / d input: the saved gradient `g` times the incoming gradient."""
    if torch.is_grad_enabled():
        raise RuntimeError("fastxent.torch.cross_entropy does not support double backward "
                           "(create_graph=True); use torch.nn.functional.cross_entropy for that")
    if g.numel() == 0 and grad_loss.numel():
        raise RuntimeError("fastxent.torch.cross_entropy: no gradient was kept in the forward pass "
                           "(the input did not require grad, or grad mode was off)")
    scale = grad_loss if grad_loss.dtype == g.dtype else grad_loss.to(g.dtype)
    if scale.dim():  # reduction="none": one incoming gradient per position
        scale = scale.unsqueeze(ctx.class_axis)
    elif _owned(g):
        if float(scale) != 1.0:
            g.mul_(scale)
        return g
    if _owned(g):
        return g.mul_(scale)
    return g * scale


class _Xent(torch.autograd.Function):
    """The eager route: forward and backward of the custom op without its dispatch."""

    @staticmethod
    def forward(ctx, input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                need_grad):
        loss, g = _forward(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                           softcap, need_grad)
        ctx.class_axis = _class_axis(input.dim())
        ctx.grad = g  # an attribute, not save_for_backward: private, and handed over by backward
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        g = _grad_input(ctx, grad_loss, ctx.grad)
        if g is ctx.grad:  # handed over (the graph is not kept): the node no longer holds it
            del ctx.grad
        return g, None, None, None, None, None, None, None, None


@torch.library.custom_op("fastxent::cross_entropy", mutates_args=())
def _xent_op(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
             ignore_index: int, reduction: str, label_smoothing: float, z_loss: float,
             softcap: Optional[float], need_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss in the input's dtype, gradient in the input's dtype or an empty tensor)."""
    return _forward(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
                    need_grad)


@_xent_op.register_fake
def _xent_fake(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
               need_grad):
    ax = _class_axis(input.dim())
    if reduction == "none":
        shape = target.shape if not target.dtype.is_floating_point else input.shape[:ax] + input.shape[ax + 1:]
    else:
        shape = ()
    if need_grad:  # the strides of the real gradient (_new_grad): classes-last memory, class dim moved back
        rows_shape = tuple(input.shape[:ax]) + tuple(input.shape[ax + 1:]) + tuple(input.shape[ax:ax + 1])
        g = input.new_empty(rows_shape).movedim(-1, ax)
    else:
        g = input.new_empty((0,))
    return input.new_empty(shape), g


def _setup_context(ctx, inputs, output):
    ctx.class_axis = _class_axis(inputs[0].dim())
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_loss, _grad_grad):
    (g,) = ctx.saved_tensors
    return _grad_input(ctx, grad_loss, g), None, None, None, None, None, None, None, None


_xent_op.register_autograd(_backward, setup_context=_setup_context)


_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def _eager(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor]) -> bool:
    """Plain tensors outside torch.compile, torch's modes and torch.func transforms: the
    autograd.Function route."""
    return (not torch.compiler.is_compiling() and type(input) in _PLAIN_TYPES and type(target) in _PLAIN_TYPES
            and (weight is None or type(weight) in _PLAIN_TYPES) and not torch._C._len_torch_dispatch_stack()
            and not torch._C._is_torch_function_mode_enabled() and not torch._C._are_functorch_transforms_active()
            and not _wrapped(input) and not _wrapped(target) and (weight is None or not _wrapped(weight)))


# Function.apply's Python part binds default arguments (for Functions with setup_context, not
# this one) and unwraps torch.func wrappers (which _eager has excluded): for the eager route it
# is the C apply it ends in, called here directly (5 us of a ~60 us forward + backward)
_C_APPLY = torch._C._FunctionBase.__dict__.get("apply")
_xent_apply = _C_APPLY.__get__(None, _Xent) if _C_APPLY is not None else _Xent.apply


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0, *,
                  z_loss: float = 0.0, softcap: Optional[float] = None) -> torch.Tensor:
    """Cross-entropy of logits `input` against `target`, as ``F.cross_entropy`` computes it.

    Parameters
    ----------
    input : Tensor
        Logits of shape (C,), (N, C) or (N, C, d1, ...): the class dimension is 1 (0 for an
        unbatched (C,) input), as in PyTorch.  float32, float64, float16 or bfloat16, on the CPU;
        read zero-copy, including strided views such as ``logits[:, :-1]``.
    target : Tensor
        Class indices (an integer tensor of the input's shape without the class dimension, with
        `ignore_index` marking positions left out) or class probabilities (a float tensor of the
        input's shape).
    weight : Tensor, optional
        One weight per class, shape (C,).
    ignore_index : int, default -100
        Target value that contributes neither loss nor gradient.
    reduction : {"mean", "sum", "none"}, default "mean"
        As in PyTorch: "mean" divides by the summed target weights of counted positions.
    label_smoothing : float, default 0.0
        Amount in [0, 1] of the target mass spread uniformly over the classes.
    z_loss : float, default 0.0
        Coefficient of the auxiliary ``logsumexp(x)**2`` term (PaLM), added per position.
    softcap : float, optional
        Logits are read as ``softcap * tanh(x / softcap)`` (Gemma 2).

    Returns
    -------
    Tensor
        The loss in the input's dtype (computed in float32, float64 for float64 input, with
        float64 totals): a 0-d tensor, or one per position with ``reduction="none"``.  It is
        differentiable with respect to `input` (the gradient computed in the forward pass).

    Raises
    ------
    ValueError
        If `input` is not on the CPU, or an option is out of range (see
        :func:`fastxent.cross_entropy`).
    RuntimeError
        On double backward (``create_graph=True``), or if `target` or `weight` requires grad
        (in grad mode): the loss is differentiable with respect to `input` only.

    Notes
    -----
    The gradient is kept only when `input` requires grad and grad mode is on; it costs one
    array of the input's shape and dtype until backward, which hands that array to autograd
    (scaled in place by the incoming gradient) unless the graph is retained.  For 16-bit input
    the gradient is the float32 one rounded once to the input's dtype in the forward pass, and
    an incoming gradient other than 1 rounds it once more.  ``fastxent.cross_entropy``
    (NumPy, class axis -1) is the same computation on arrays.

    Examples
    --------
    >>> import torch
    >>> import fastxent.torch as fxt
    >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    >>> loss = fxt.cross_entropy(logits, torch.tensor([0, 2]))
    >>> round(loss.item(), 4)  # (0.2395 + 1.0986) / 2
    0.6691
    >>> loss.backward()
    >>> logits.grad.sum(dim=1)  # each row of a softmax gradient sums to 0
    tensor([0., 0.])
    """
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"`input` and `target` must be torch tensors, got {type(input).__name__} and "
                        f"{type(target).__name__} (use fastxent.cross_entropy for NumPy arrays)")
    if input.device.type != "cpu":
        raise ValueError(f"`input` is on device {input.device}; fastxent computes on the CPU: "
                         "pass `input.cpu()` (and `target.cpu()`)")
    try:  # an int for the custom op's schema (a float is not silently truncated)
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"`ignore_index` must be an integer, got {ignore_index!r}") from None
    grad_mode = torch.is_grad_enabled()
    if grad_mode:  # a gradient that would silently be missing: refused
        if target.requires_grad:
            raise RuntimeError("`target` requires grad, but fastxent.torch.cross_entropy is "
                               "differentiable with respect to `input` only: pass `target.detach()` "
                               "(F.cross_entropy differentiates probability targets)")
        if weight is not None and weight.requires_grad:
            raise RuntimeError("`weight` requires grad; the loss is not differentiable with respect to "
                               "`weight` (as in F.cross_entropy): pass `weight.detach()`")
    # every other argument is checked by the forward (fastxent.cross_entropy's checks and messages)
    need_grad = grad_mode and input.requires_grad
    args = (input, target, weight, ignore_index, reduction, float(label_smoothing), float(z_loss),
            None if softcap is None else float(softcap), need_grad)
    if _eager(input, target, weight):
        return _xent_apply(*args)
    return _xent_op(*args)[0]


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` computed by :func:`fastxent.torch.cross_entropy`.

    Parameters
    ----------
    weight : Tensor, optional
        One weight per class, shape (C,) (a buffer of the module).
    ignore_index, reduction, label_smoothing, z_loss, softcap
        As in :func:`fastxent.torch.cross_entropy`.

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1)
    >>> logits = torch.zeros(4, 10, 3)  # (N, C, L): class dimension 1, as in PyTorch
    >>> round(loss_fn(logits, torch.zeros(4, 3, dtype=torch.long)).item(), 6)
    2.302585
    """

    def __init__(self, weight: Optional[torch.Tensor] = None, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0, *, z_loss: float = 0.0,
                 softcap: Optional[float] = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.weight: Optional[torch.Tensor]
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                             self.label_smoothing, z_loss=self.z_loss, softcap=self.softcap)
