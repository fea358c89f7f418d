"""Cross-entropy for PyTorch code: ``F.cross_entropy``'s names and conventions, fastxent's kernel.

``fastxent.torch.cross_entropy`` and ``CrossEntropyLoss`` take and return torch tensors, with
the class dimension 1 of (N, C, d1, ...) inputs (or 0 of an unbatched (C,) input) as
``torch.nn.functional.cross_entropy``.  The logits are read zero-copy over DLPack (bfloat16
and float16 included); the forward pass computes the loss and its gradient in one read of the
logits, the gradient is kept for backward (only when the input requires grad and grad mode is
on) and scaled there by the incoming gradient.  The operation is the ``torch.library`` custom
op ``fastxent::cross_entropy`` with a fake (meta) implementation, so ``torch.compile`` traces
it without a graph break.  CPU tensors only; double backward is not supported.

Importing ``fastxent`` never imports torch; importing this module needs it.
"""
from typing import Any, Dict, Optional, Tuple

try:
    import torch
except ImportError as e:  # pragma: no cover - exercised without torch
    raise ImportError("fastxent.torch needs PyTorch: `pip install torch` (the CPU build is enough)") from e

import numpy as np

from . import losses as _losses
from ._validate import REDUCTIONS

__all__ = ["cross_entropy", "CrossEntropyLoss"]


def _class_axis(ndim: int) -> int:
    return 1 if ndim >= 2 else 0


@torch.library.custom_op("fastxent::cross_entropy", mutates_args=())
def _xent_op(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
             ignore_index: int, reduction: str, label_smoothing: float, z_loss: float,
             softcap: float, need_grad: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss in input's dtype, gradient in float32/float64 or an empty tensor)."""
    kw: Dict[str, Any] = dict(axis=_class_axis(input.dim()), weight=weight, ignore_index=ignore_index,
                              reduction=reduction, label_smoothing=label_smoothing, z_loss=z_loss,
                              softcap=softcap if softcap > 0 else None)
    if need_grad:
        loss, grad = _losses.cross_entropy(input, target, return_grad=True, **kw)
        g = torch.from_numpy(np.asarray(grad))
    else:
        loss = _losses.cross_entropy(input, target, **kw)
        g = input.new_empty((0,), dtype=torch.float64 if input.dtype == torch.float64 else torch.float32)
    return torch.from_numpy(np.array(loss, copy=True)).to(input.dtype), g


@_xent_op.register_fake
def _xent_fake(input, target, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
               need_grad):
    if reduction == "none":
        shape = target.shape if not target.dtype.is_floating_point else \
            input.shape[:_class_axis(input.dim())] + input.shape[_class_axis(input.dim()) + 1:]
    else:
        shape = ()
    gdt = torch.float64 if input.dtype == torch.float64 else torch.float32
    if need_grad:  # the strides of the real gradient: classes-last memory, class dim moved back
        cls = _class_axis(input.dim())
        g = input.new_empty(input.shape[:cls] + input.shape[cls + 1:] + input.shape[cls:cls + 1],
                            dtype=gdt).movedim(-1, cls)
    else:
        g = input.new_empty((0,), dtype=gdt)
    return input.new_empty(shape), g


def _setup_context(ctx, inputs, output):
    input = inputs[0]
    ctx.class_axis = _class_axis(input.dim())
    ctx.input_dtype = input.dtype
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_loss, _grad_grad):
    if torch.is_grad_enabled():
        raise RuntimeError("fastxent.torch.cross_entropy does not support double backward "
                           "(create_graph=True); use torch.nn.functional.cross_entropy for that")
    (g,) = ctx.saved_tensors
    if g.numel() == 0 and grad_loss.numel():
        raise RuntimeError("fastxent.torch.cross_entropy: no gradient was kept in the forward pass "
                           "(the input did not require grad, or grad mode was off)")
    scale = grad_loss.to(g.dtype)
    if scale.dim():  # reduction="none": one incoming gradient per position
        scale = scale.unsqueeze(ctx.class_axis)
    return (g * scale).to(ctx.input_dtype), None, None, None, None, None, None, None, None


_xent_op.register_autograd(_backward, setup_context=_setup_context)


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
    float32 (float64) array of the input's shape until backward.  ``fastxent.cross_entropy``
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
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'mean', 'sum', got {reduction!r}")
    if input.device.type != "cpu":
        raise ValueError(f"`input` is on device {input.device}; fastxent computes on the CPU: "
                         "pass `input.cpu()` (and `target.cpu()`)")
    if softcap is not None and not softcap > 0:
        raise ValueError(f"`softcap` must be a finite number in (0.0, inf], got {softcap!r}")
    if torch.is_grad_enabled():  # a gradient that would silently be missing: refused
        if target.requires_grad:
            raise RuntimeError("`target` requires grad, but fastxent.torch.cross_entropy is "
                               "differentiable with respect to `input` only: pass `target.detach()` "
                               "(F.cross_entropy differentiates probability targets)")
        if weight is not None and weight.requires_grad:
            raise RuntimeError("`weight` requires grad; the loss is not differentiable with respect to "
                               "`weight` (as in F.cross_entropy): pass `weight.detach()`")
    need_grad = torch.is_grad_enabled() and input.requires_grad
    loss, _ = _xent_op(input, target, weight, int(ignore_index), reduction, float(label_smoothing),
                       float(z_loss), 0.0 if softcap is None else float(softcap), need_grad)
    return loss


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
