"""The cross-entropy kernel calls behind `fastxent.losses` and the blocks of `fastxent.dask`.

Their inputs come checked from `_validate.prepare` (a `Prepared` record): `nll` runs the plain
kernel (per-position losses, or only their sum), `xent` the kernel with every option and the
gradient, `reduce` is the one reduction of the per-position losses, and `xent_parts` gives the
unreduced parts that `fastxent.dask` sums exactly across blocks.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _core
from ._arrays import Layout, aligned_c
from ._validate import Prepared, check_scalar, prepare


def nll(p: Prepared, total: bool = False) -> Any:
    """Per-position negative log-likelihood (float64, of shape `p.batch`); with `total` only
    their sum (a float, in the order of `_core.sum_losses`: no per-position array)."""
    assert p.base is not None and p.layout is not None and p.t64 is not None
    if total:
        return _core.xent_sum(p.base, p.layout, p.t64, p.ignore_index, p.n_threads) if p.rows else 0.0
    loss = np.empty(p.rows, dtype=np.float64)
    if p.rows:
        _core.xent(p.base, p.layout, p.t64, p.ignore_index, loss, p.n_threads)
    return loss.reshape(p.batch)


def xent(p: Prepared, eps: float, zc: float, cap: float, want_z: bool, grad: Any = None,
         grad_layout: Optional[Layout] = None, gscale: float = 1.0,
         zscale: float = 1.0) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Per-position loss and z-loss (flat float64; z None unless `zc` > 0 or `want_z`) of the
    kernel with options (`p.weight`, integer or probability targets, label smoothing `eps`,
    z-loss `zc`, softcap `cap` (0: none)), writing the gradient into `grad` when given."""
    assert p.base is not None and p.layout is not None
    loss = np.empty(p.rows, dtype=np.float64)
    zl = np.empty(p.rows, dtype=np.float64) if (zc > 0.0 or want_z) else None
    if p.rows:
        _core.xent_ex(p.base, p.layout, p.t64, p.prob, p.layout if p.prob_layout is None else p.prob_layout,
                      p.weight, p.ignore_index, eps, zc, cap, grad, grad_layout, gscale, zscale, loss, zl,
                      p.n_threads)
    elif zl is not None:
        zl[:] = 0.0
    return loss, zl


def target_weights(p: Prepared) -> np.ndarray:
    """``weight[t]`` of the counted positions, in their order (`p.weight` is not None)."""
    assert p.weight is not None and p.t64 is not None
    t = p.t64 if p.counted == p.rows else p.t64[p.counted_mask()]
    return p.weight[t]


def reduce(loss: Any, zl: Any, reduction: str, denom: float, counted: int,
           dt: np.dtype) -> Tuple[Any, Any]:
    """(loss [+ z], z) reduced; `denom` divides the loss part, `counted` the z part under "mean".

    For "sum"/"mean", `loss` may also be the losses' total (a float)."""
    # a loss beyond the result dtype's range is inf, as it should be: no NumPy warning
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if reduction == "none":
            total = (loss if zl is None else loss + zl).astype(dt, copy=False)
            z = None if zl is None else zl.astype(dt, copy=False)
            if total.ndim == 0:  # 1-d logits: one position, returned as a NumPy scalar
                return total[()], (None if z is None else z[()])
            return total, z
        # one summation for every path: the order in which the plain kernel sums its
        # losses (xent_sum), so that the total does not depend on the options/gradient path
        s = np.float64(loss if np.ndim(loss) == 0 else _core.sum_losses(aligned_c(loss, np.float64).reshape(-1)))
        z = 0.0 if zl is None else np.float64(_core.sum_losses(aligned_c(zl, np.float64).reshape(-1)))
        if reduction == "mean":
            # a zero total weight makes the loss part NaN whatever the smoothing adds (PyTorch:
            # its nll part is 0 / 0)
            s = s / np.float64(denom) if denom else np.float64(np.nan)
            z = z / np.float64(counted) if zl is not None else 0.0
        return dt.type(s + z), dt.type(z)


def xent_parts(logits: Any, target: Any, *, axis: Any = -1, weight: Any = None, ignore_index: Any = -100,
               label_smoothing: Any = 0.0, z_loss: Any = 0.0, softcap: Any = None,
               n_threads: Optional[int] = None
               ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray], int, np.dtype]:
    """The unreduced parts of `cross_entropy` for integer targets (no gradient), for callers that
    reduce elsewhere (`fastxent.dask`): per-position loss and z-loss in float64 (target's shape;
    z None when `z_loss` is 0), the per-position target weights of counted positions (float64,
    flat; None without `weight`), the counted tokens and the result dtype.  The loss holds the
    z-loss apart (`cross_entropy` adds them in `reduce`)."""
    eps = check_scalar(label_smoothing, "label_smoothing", 0.0, 1.0)
    zc = check_scalar(z_loss, "z_loss", 0.0)
    cap = 0.0 if softcap is None else check_scalar(softcap, "softcap", 0.0, lo_open=True)
    p = prepare(logits, target, axis=axis, ignore_index=ignore_index, n_threads=n_threads, weight=weight)
    loss, zl = xent(p, eps, zc, cap, False)
    wt = None if p.weight is None else target_weights(p).astype(np.float64)
    return loss.reshape(p.batch), None if zl is None else zl.reshape(p.batch), wt, p.counted, p.rdt
