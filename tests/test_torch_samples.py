"""PyTorch's own sample inputs for the functions fastxent shares with it, against torch autograd.

Optional: the module is skipped (with the reason) when torch, or the ``expecttest`` package that
``torch.testing._internal`` imports, is missing.  With FASTXENT_REQUIRE_TORCH=1 in the environment
(the torch job of .ci/run) a missing torch is a failure instead, so that CI cannot pass by skipping.

Where the inputs come from
--------------------------
``torch.testing._internal.common_methods_invocations.op_db``: the OpInfo ``reference_inputs`` (a
superset of ``sample_inputs``) of nn.functional.cross_entropy, nn.functional.nll_loss, log_softmax
and softmax (both variants: plain and ``with_dtype``) and logsumexp; and
``torch.testing._internal.common_modules.module_db``: the ModuleInfo inputs of nn.CrossEntropyLoss
(label smoothing, probability targets, ignore_index, no batch dim), nn.NLLLoss, nn.LogSoftmax and
nn.Softmax.  Each in float32, float64, float16 and bfloat16, drawn after ``torch.manual_seed(0)``,
so that a group holds the same values on every run (with the pinned torch, 2.13.0).

How torch's calls map to fastxent's
-----------------------------------
- cross_entropy, CrossEntropyLoss: the class dim is 1 for (N, C, d1, ...) input and 0 for
  unbatched (C,) input: that is `axis`; `weight`, `ignore_index`, `reduction` and
  `label_smoothing` keep their names; integer or probability targets as given.  The gradient is
  ``cross_entropy(..., return_grad=True)`` against autograd of ``loss.sum()``.
- nll_loss, NLLLoss: fastxent has no nll_loss, and ``nll_loss(log_softmax(x, dim), t)`` is
  ``cross_entropy(x, t)``: torch computes the former, fastxent the latter, on the sample's input.
- log_softmax, softmax, LogSoftmax, Softmax: ``dim`` is `axis`; ``dtype=`` (the with_dtype
  variant) casts the input first, as torch does.  logsumexp: ``dim`` is `axis`, ``keepdim`` is
  `keepdims`.  Forward values.
- bfloat16 tensors reach fastxent as ml_dtypes.bfloat16 arrays, float16 ones as float16 arrays
  (`to_numpy`, the one conversion helper).

What is compared, per sample (the check names used in DOCUMENTED)
-----------------------------------------------------------------
``call``       fastxent returns instead of raising;
``type``       result dtype (float64 for float64 input, float32 for everything else) and torch's
               shapes, for the result and the gradient;
``oracle``     fastxent within its own tolerance (conftest's RTOL/UNIT per result dtype; the bounds
               of `check_xent` for the losses) of the float64 truth on the same values (16-bit
               values widen exactly): torch in float64 for every result, and for the gradient
               fastxent.reference, because torch's float64 autograd forms the target entry
               ``p_t - 1`` by cancellation (its error is eps64 times 1, not times the entry: up to
               1e-7 relative on these samples, where fastxent keeps the entry's precision);
``torch``      fastxent against torch's result in the sample's dtype, within fastxent's bound plus
               torch's own error: the float32 bound with eps32 replaced by the eps of torch's dtype
               (so twice the bound for float32), for the gradient plus eps times the terms that
               cancel, and for 16-bit dtypes plus their subnormal spacing (torch's float16
               gradients of 2e-8 are 0 or 6e-8);
``reference``  fastxent.reference (the oracle of the rest of the suite) against torch in float64,
               within the float64 bound plus torch's float64 error as above: the reference means
               what torch means;
``same_loss``  the loss returned with ``return_grad=True`` is bitwise the loss without it.

A sample whose weights have a negative entry (torch's samples draw weights from [-9, 9]) is also
run a second time, by torch and by fastxent, with the weights' absolute values ("|w|" in its key),
since fastxent refuses negative weights (see NEGATIVE_WEIGHT below).  The "edge" group adds a few
hand-made F.cross_entropy calls on special values (zero total weight, -inf, +inf, NaN, huge
logits), which torch's samples do not hold, to pin the README's special-value rules against torch.

Every check that fails must be listed in DOCUMENTED, with its reason, and every listed check must
fail: the test compares the two sets exactly, so a fixed difference fails the test and asks for
its entry to be removed.  Entries tagged "item N" are issue 13's items being fixed by other
branches at the time of writing.  The ``same_loss`` entries name samples by their index, which
holds for the pinned torch only: with another torch version that check is not compared.
"""
import dataclasses
import os
import re

import numpy as np
import pytest

import fastxent
from fastxent import reference
from conftest import (EPS32, EPS64, assert_log_close, assert_prob_close, assert_result_type, assert_within,
                      row_scale, widen, xent_bounds)

if os.environ.get("FASTXENT_REQUIRE_TORCH") == "1":
    import torch
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db
else:
    torch = pytest.importorskip("torch", reason="torch is not installed (optional)")
    try:
        from torch.testing._internal.common_methods_invocations import op_db
        from torch.testing._internal.common_modules import module_db
    except ImportError as exc:  # torch.testing._internal imports expecttest
        pytest.skip(f"torch.testing._internal does not import ({exc}); `pip install expecttest`",
                    allow_module_level=True)
import torch.nn.functional as F  # noqa: E402

try:
    import ml_dtypes
except ImportError:  # in the test extras; without it only the bfloat16 groups are skipped
    ml_dtypes = None

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                "bfloat16": torch.bfloat16}
EPS16 = {"float16": float(np.finfo(np.float16).eps), "bfloat16": 2.0 ** -7}
LOSSES = ("ce", "nll")

# (source, name, variant) -> kind; sources: OpInfo in op_db, ModuleInfo in module_db
OPS = {
    ("op_db", "nn.functional.cross_entropy", ""): "ce",
    ("op_db", "nn.functional.nll_loss", ""): "nll",
    ("op_db", "log_softmax", ""): "lsm",
    ("op_db", "log_softmax", "with_dtype"): "lsm",
    ("op_db", "softmax", ""): "sm",
    ("op_db", "softmax", "with_dtype"): "sm",
    ("op_db", "logsumexp", ""): "lse",
    ("module_db", "nn.CrossEntropyLoss", ""): "ce",
    ("module_db", "nn.NLLLoss", ""): "nll",
    ("module_db", "nn.LogSoftmax", ""): "lsm",
    ("module_db", "nn.Softmax", ""): "sm",
    ("edge", "cross_entropy", ""): "ce",
}


def to_numpy(t):
    """A torch tensor as a NumPy array with the same dtype, shape, strides and values (no copy).

    bfloat16 goes through its bits (NumPy has no bfloat16; ml_dtypes provides it).  The one place
    where tensors become arrays, to be replaced by DLPack input when fastxent accepts it."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _as_given(obj):
    """Tensors in `obj` (nested lists, tuples, dicts) detached."""
    return _map_tensors(obj, lambda t: t.detach())


def _as_float64(obj):
    """Floating tensors in `obj` widened to float64 (exactly), others unchanged; detached."""
    return _map_tensors(obj, lambda t: t.detach().to(torch.float64) if t.is_floating_point()
                        else t.detach())


@dataclasses.dataclass
class Case:
    """One sample, with what torch calls and what fastxent is given."""
    key: str
    desc: str
    kind: str                      # ce, nll, lsm, sm, lse
    x: "torch.Tensor"
    call: object                   # call(x, conv) -> torch result; conv maps the other tensors
    target: object = None          # losses: integer or probability target tensor
    weight: object = None
    opts: dict = dataclasses.field(default_factory=dict)   # ignore_index, reduction, label_smoothing
    dim: object = None
    keepdim: bool = False
    cast: object = None            # with_dtype: the dtype torch casts the input to

    @property
    def axis(self):
        return 0 if self.x.ndim == 1 else 1


def _describe(x, target=None, weight=None, **extra):
    parts = [f"x{tuple(x.shape)}"]
    if target is not None:
        parts.append(f"{'prob' if target.is_floating_point() else 'index'}{tuple(target.shape)}")
    if weight is not None:
        parts.append("weight" + ("<0" if bool((weight < 0).any()) else ""))
    parts += [f"{k}={v}" for k, v in extra.items() if v is not None]
    return " ".join(parts)


def _loss_case(key, kind, x, target, weight, opts, call):
    opts = {k: v for k, v in opts.items() if k in ("ignore_index", "reduction", "label_smoothing")}
    return Case(key, _describe(x, target, weight, **opts), kind, x, call, target=target,
                weight=weight, opts=opts)


def _with_abs_weight(case, make_call):
    """The same loss sample with |weight|, for torch (through make_call) and fastxent."""
    w = case.weight.detach().abs()
    return dataclasses.replace(case, key=case.key + "|w|", desc=case.desc.replace("weight<0", "|weight|"),
                               weight=w, call=make_call(w))


def _dname(torch_dtype):
    return str(torch_dtype).replace("torch.", "")


def op_cases(name, variant, kind, dtype):
    """The reference inputs of one OpInfo as Cases."""
    (op,) = [o for o in op_db if o.name == name and o.variant_test_name == variant]
    torch.manual_seed(0)
    cases = []
    for i, s in enumerate(op.reference_inputs("cpu", dtype, requires_grad=kind in LOSSES)):
        key = f"{name}{'.' + variant if variant else ''}/{_dname(dtype)}/{i}"
        args, kwargs = s.args, dict(s.kwargs)
        if kind in LOSSES:
            def make_call(weight, s=s, kwargs=kwargs, kind=kind):
                def call(x, conv):
                    kw = conv(dict(kwargs, weight=weight) if weight is not None else kwargs)
                    inp = F.log_softmax(x, 0 if x.ndim == 1 else 1) if kind == "nll" else x
                    return op.op(inp, *conv(s.args), **kw)
                return call
            c = _loss_case(key, kind, s.input, args[0], kwargs.get("weight"), kwargs,
                           make_call(kwargs.get("weight")))
            cases.append(c)
            if c.weight is not None and bool((c.weight < 0).any()):
                cases.append(_with_abs_weight(c, make_call))
        else:
            dim = args[0] if args else kwargs["dim"]
            keepdim = bool(args[1]) if len(args) > 1 else bool(kwargs.get("keepdim", False))
            cast = kwargs.get("dtype")

            def call(x, conv, s=s):
                return op.op(x, *conv(s.args), **conv(s.kwargs))
            desc = _describe(s.input, dim=dim, keepdim=keepdim if kind == "lse" else None, dtype=cast)
            cases.append(Case(key, desc, kind, s.input, call, dim=dim, keepdim=keepdim, cast=cast))
    return cases


def module_cases(name, kind, dtype):
    """The inputs of one ModuleInfo as Cases."""
    (mi,) = [m for m in module_db if m.name == name]
    torch.manual_seed(0)
    cases = []
    for i, m in enumerate(mi.module_inputs_func(mi, device="cpu", dtype=dtype, requires_grad=True,
                                                training=True)):
        key = f"{name}/{_dname(dtype)}/{i}:{m.desc}"
        cargs, ckw = m.constructor_input.args, m.constructor_input.kwargs
        fargs = m.forward_input.args
        if kind in LOSSES:
            def make_call(weight, cargs=cargs, ckw=ckw, fargs=fargs, kind=kind):
                def call(x, conv):
                    kw = conv(dict(ckw, weight=weight) if weight is not None else ckw)
                    module = mi.module_cls(*conv(cargs), **kw)
                    inp = F.log_softmax(x, 0 if x.ndim == 1 else 1) if kind == "nll" else x
                    return module(inp, *conv(fargs[1:]))
                return call
            c = _loss_case(key, kind, fargs[0], fargs[1], ckw.get("weight"), ckw,
                           make_call(ckw.get("weight")))
            cases.append(c)
            if c.weight is not None and bool((c.weight < 0).any()):
                cases.append(_with_abs_weight(c, make_call))
        else:
            dim = cargs[0] if cargs else ckw["dim"]

            def call(x, conv, cargs=cargs, ckw=ckw):
                return mi.module_cls(*conv(cargs), **conv(ckw))(x)
            cases.append(Case(key, _describe(fargs[0], dim=dim), kind, fargs[0], call, dim=dim))
    return cases


def edge_cases(dtype):
    """A few hand-made F.cross_entropy calls on special values, which torch's samples do not hold:
    each README rule for them, side by side with what torch does."""
    inf, nan = float("inf"), float("nan")
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
    rows = [  # (name, logits, target, options)
        ("zero_total_weight_smoothing", x, [1, 1], dict(weight=[1.0, 0.0, 1.0], label_smoothing=0.1)),
        ("zero_total_weight", x, [1, 1], dict(weight=[1.0, 0.0, 1.0])),
        ("all_ignored_smoothing", x, [1, 1], dict(ignore_index=1, label_smoothing=0.1)),
        ("neg_inf_other_class", [[1.0, -inf, 3.0], [0.5, -1.0, 2.0]], [0, 2], {}),
        ("neg_inf_other_class_smoothing", [[1.0, -inf, 3.0], [0.5, -1.0, 2.0]], [0, 2],
         dict(label_smoothing=0.1)),
        ("neg_inf_zero_probability", [[1.0, -inf, 3.0], [0.5, -1.0, 2.0]],
         [[1.0, 0.0, 0.0], [0.0, 0.25, 0.75]], dict(reduction="none")),
        ("neg_inf_target", [[1.0, -inf, 3.0], [0.5, -1.0, 2.0]], [1, 2], dict(reduction="none")),
        ("all_neg_inf_row", [[-inf, -inf, -inf], [0.5, -1.0, 2.0]], [0, 2], dict(reduction="none")),
        ("pos_inf", [[1.0, inf, 3.0], [0.5, -1.0, 2.0]], [0, 2], dict(reduction="none")),
        ("nan", [[1.0, nan, 3.0], [0.5, -1.0, 2.0]], [0, 2], dict(reduction="none")),
        ("huge", [[3e4, -3e4, 3.0], [0.5, -1.0, 2.0]], [1, 2], dict(reduction="none")),
    ]
    cases = []
    for name, logits, target, opts in rows:
        xt = torch.tensor(logits, dtype=dtype)
        tt = torch.tensor(target, dtype=dtype if isinstance(target[0], list) else torch.int64)
        weight = opts.pop("weight", None)
        w = None if weight is None else torch.tensor(weight, dtype=dtype)

        def make_call(weight, tt=tt, opts=opts):
            def call(x, conv):
                kw = dict(opts, weight=weight) if weight is not None else opts
                return F.cross_entropy(x, *conv((tt,)), **conv(kw))
            return call
        cases.append(_loss_case(f"edge/{_dname(dtype)}/{name}", "ce", xt, tt, w, opts, make_call(w)))
    return cases


# --------------------------------------------------------------------------- evaluation
def run_torch(case, wide):
    """torch's result (and, for the losses, autograd's gradient of its sum) as float64 arrays;
    in float64 when `wide`, else in the sample's dtype."""
    x = case.x.detach()
    x = (x.to(torch.float64) if wide else x.clone()).requires_grad_(case.kind in LOSSES)
    out = case.call(x, _as_float64 if wide else _as_given)
    grad = None
    if case.kind in LOSSES:
        out.sum().backward()
        grad = widen(to_numpy(x.grad))
    return widen(to_numpy(out)), grad


def _np_dtype(torch_dtype):
    return np.dtype(str(torch_dtype).replace("torch.", ""))


def fastxent_inputs(case):
    x = to_numpy(case.x)
    if case.cast is not None:
        x = x.astype(_np_dtype(case.cast))
    target = None if case.target is None else to_numpy(case.target)
    weight = None if case.weight is None else to_numpy(case.weight)
    return x, target, weight


def _result_dtype(x):
    return np.dtype(np.float64 if x.dtype == np.float64 else np.float32)


def _torch_precision(case):
    """(unit, subnormal) of the precision torch computes the sample in: its dtype's eps (the
    with_dtype variants compute in the cast dtype) and, for 16-bit dtypes, the spacing of its
    subnormal numbers (an absolute precision below the smallest normal; 0 otherwise)."""
    dtype = case.cast if case.cast is not None else case.x.dtype
    name = str(dtype).replace("torch.", "")
    if name == "bfloat16":
        return 2.0 ** -7, float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_subnormal)
    info = np.finfo(np.dtype(name))
    return float(info.eps), (float(info.smallest_subnormal) if info.bits == 16 else 0.0)


def _torch_grad_terms(x, target, reduction="mean", **opts):
    """Per gradient entry, the magnitude of the terms torch adds up for it: autograd forms
    ``g * p - g * onehot`` (and the smoothing parts) in its own precision, so an entry where they
    cancel (the target's ``p_t - 1`` with ``p_t`` near 1) has an error of its dtype's eps times
    this, not times the entry (float64 included: there fastxent and its reference keep the
    entry's relative precision, torch does not)."""
    r = reference._terms(widen(x), target, **opts)
    gs = 1.0 / r["denom"] if reduction == "mean" and r["denom"] else 1.0
    p = np.where(np.isfinite(r["p"]), r["p"], 0.0)
    a, b = r["a"][..., None], r["b"]
    terms = gs * (a * (p + r["onehot"]) + b.sum(-1, keepdims=True) * p + b)
    return np.moveaxis(terms, -1, r["axis"])


def check_case(case):
    """{check name: message} of the checks that fail for one sample."""
    failed = {}

    def check(name, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except AssertionError as exc:
            failed.setdefault(name, " ".join(str(exc).split())[:400])

    x, target, weight = fastxent_inputs(case)
    dt = _result_dtype(x)
    res_t, grad_t = run_torch(case, wide=False)
    res64, grad64 = run_torch(case, wide=True)
    unit, sub = _torch_precision(case)
    try:
        if case.kind in LOSSES:
            kw = dict(axis=case.axis, weight=weight, **case.opts)
            loss = fastxent.cross_entropy(x, target, **kw)
            loss_g, grad = fastxent.cross_entropy(x, target, return_grad=True, **kw)
        elif case.kind == "lse":
            res = fastxent.logsumexp(x, axis=case.dim, keepdims=case.keepdim)
        else:
            res = (fastxent.log_softmax if case.kind == "lsm" else fastxent.softmax)(x, axis=case.dim)
    except Exception as exc:  # noqa: BLE001 -- any exception is a result to compare
        failed["call"] = f"{type(exc).__name__}: {exc}"
        return failed

    if case.kind in LOSSES:
        # fastxent's bounds (its result dtype), the float32 ones (the error model of torch's
        # result: eps32 replaced by torch's unit) and the float64 ones (for the reference); the
        # reference values are the same in all three (float64 on the widened values)
        kb = dict(kw, weight=None if weight is None else widen(weight))
        tb = target if target.dtype.kind in "iu" else widen(target)
        bounds = {d: xent_bounds(widen(x).astype(d), tb, **kb) for d in {dt, np.dtype(np.float32),
                                                                         np.dtype(np.float64)}}
        if x.dtype == np.float64:  # float32 bounds of the rounded values: only their size is used
            bounds[np.dtype(np.float32)] = xent_bounds(x.astype(np.float32), tb, **kb)
        (loss_r, _, grad_r), (e_loss, _, e_grad) = bounds[dt]
        _, (e_loss32, _, e_grad32) = bounds[np.dtype(np.float32)]
        _, (e_loss64, _, e_grad64) = bounds[np.dtype(np.float64)]
        terms = _torch_grad_terms(x, tb, **kb)
        torch_loss = unit / EPS32 * e_loss32 + 4 * sub          # torch's own error, its dtype
        torch_grad = unit / EPS32 * e_grad32 + 4 * unit * terms + 4 * sub
        t64_loss = EPS64 / EPS32 * e_loss32                      # torch's own error in float64
        t64_grad = EPS64 / EPS32 * e_grad32 + 4 * EPS64 * terms
        check("type", assert_result_type, loss, dt, res_t.shape)
        check("type", assert_result_type, loss_g, dt, res_t.shape)
        check("type", assert_result_type, grad, dt, grad_t.shape)
        check("oracle", assert_within, loss, res64, e_loss + t64_loss, dt, "loss vs torch float64")
        check("oracle", assert_within, loss_g, res64, e_loss + t64_loss, dt,
              "loss (return_grad) vs torch float64")
        check("oracle", assert_within, grad, grad_r, e_grad, dt, "gradient vs the reference")
        check("torch", assert_within, loss, res_t, e_loss + torch_loss, dt, "loss vs torch")
        check("torch", assert_within, grad, grad_t, e_grad + torch_grad, dt, "gradient vs torch")
        check("reference", assert_within, loss_r, res64, e_loss64 + t64_loss, np.float64,
              "reference loss vs torch float64")
        check("reference", assert_within, grad_r, grad64, e_grad64 + t64_grad, np.float64,
              "reference gradient vs torch float64")
        if not (np.asarray(loss).dtype == np.asarray(loss_g).dtype
                and np.array_equal(loss, loss_g, equal_nan=True)):
            failed["same_loss"] = (f"loss {np.asarray(loss).tolist()!r} without return_grad, "
                                   f"{np.asarray(loss_g).tolist()!r} with it")
        return failed

    # forward values: bounds in log space or probability (conftest); torch's own error is the
    # float32 bound with eps32 replaced by its unit, added as a multiple of fastxent's
    factor = 1.0 + (unit / EPS32 if dt == np.float32 else 1.0)
    check("type", assert_result_type, res, dt, res_t.shape)
    if case.kind == "lse":
        ref64 = reference.logsumexp(widen(x), axis=case.dim, keepdims=case.keepdim)
        scale = row_scale(x, case.dim, keepdims=True)
    else:
        ref64 = (reference.log_softmax if case.kind == "lsm" else reference.softmax)(widen(x), axis=case.dim)
        scale = (np.broadcast_to(row_scale(x, case.dim, keepdims=True), np.atleast_1d(x).shape)
                 if x.size else 1.0)
    scale = np.reshape(scale, res64.shape) if np.size(scale) == res64.size else scale
    assert_close = assert_prob_close if case.kind == "sm" else assert_log_close
    if np.shape(res) == res_t.shape:  # a shape difference is reported by "type"
        check("oracle", assert_close, res, res64, dt, scale)
        check("torch", assert_close, res, res_t, dt, scale, factor=factor)
    check("reference", assert_close, np.reshape(ref64, res64.shape), res64, np.float64, scale, factor=2)
    return failed


# --------------------------------------------------------------------------- documented differences
def _weight_negative(case):
    return case.weight is not None and bool((case.weight < 0).any())


@dataclasses.dataclass
class Documented:
    tag: str
    reason: str
    applies: object                # applies(case, failed checks) -> bool
    checks: tuple                  # the checks that fail for the cases it applies to
    message: str = ""              # a regex the "call" message must match (when "call" is listed)


# First match wins, per check.
DOCUMENTED = [
    Documented(
        "NEGATIVE_WEIGHT", "fastxent refuses negative class weights (README: finite and >= 0; "
        "torch computes with them, and its 'mean' divides by their possibly negative or zero "
        "total); the |w| copy of each such sample checks the numbers",
        lambda c: _weight_negative(c), ("call",),
        r"ValueError: `weight` must be finite and >= 0; weight\[\d+\] = -"),
    Documented(
        "KEEPDIMS_0D", "logsumexp of a 0-d input with keepdims=True returns shape (1,), as "
        "scipy.special.logsumexp does (fastxent.logsumexp is SciPy's drop-in); torch keeps 0-d",
        lambda c: c.kind == "lse" and c.x.ndim == 0 and c.keepdim, ("type",)),
    Documented(
        "PLUS_INF", "a +inf logit: fastxent's loss is +inf (README special-value table: each "
        "class with a nonzero coefficient adds coef * (+inf - x_c)), torch's is NaN (its "
        "log_softmax row is NaN); the gradient row is NaN in both",
        lambda c: c.key.endswith("/pos_inf"), ("oracle", "torch", "reference")),
    Documented(
        "ZERO_COEF_NEG_INF", "a -inf logit in a class of target probability 0: fastxent adds "
        "nothing for it (README: a term whose coefficient is 0 contributes 0), torch gives NaN "
        "(0 * -inf)",
        lambda c: c.key.endswith("/neg_inf_zero_probability"), ("oracle", "torch", "reference")),
]


def expected_failures(case):
    """{check: Documented} that apply to this case (first match per check)."""
    out = {}
    for d in DOCUMENTED:
        if d.applies(case):
            for name in d.checks:
                out.setdefault(name, d)
    return out


@pytest.fixture(autouse=True)
def one_torch_thread():
    """torch on one thread: its thread pool costs ~20 ms per call on these tiny tensors when the
    machine is busy (15 s instead of 1.7 s for CrossEntropyLoss's 132 samples)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _groups():
    for (source, name, variant), kind in OPS.items():
        for dname in TORCH_DTYPES:
            label = f"{source}:{name}{'.' + variant if variant else ''}:{dname}"
            yield pytest.param(source, name, variant, kind, dname, id=label)


@pytest.mark.parametrize("source,name,variant,kind,dname", list(_groups()))
def test_torch_samples(source, name, variant, kind, dname):
    if dname == "bfloat16" and ml_dtypes is None:
        pytest.skip("ml_dtypes is not installed: no bfloat16 arrays")
    dtype = TORCH_DTYPES[dname]
    cases = (op_cases(name, variant, kind, dtype) if source == "op_db"
             else module_cases(name, kind, dtype) if source == "module_db" else edge_cases(dtype))
    assert cases, f"torch gave no samples for {name} in {dname}"
    problems = []
    for case in cases:
        failed = check_case(case)
        expected = expected_failures(case)
        if "call" in failed:  # no other check ran
            expected = {k: v for k, v in expected.items() if k == "call"}
        for check in sorted(set(failed) | set(expected)):
            doc = expected.get(check)
            if check in failed and doc is None:
                problems.append(f"UNDOCUMENTED {case.key} [{case.desc}] {check}: {failed[check]}")
            elif check not in failed:
                problems.append(f"NOW AGREES {case.key} [{case.desc}] {check}: documented as "
                                f"{doc.tag!r} but passes; remove it from DOCUMENTED")
            elif check == "call" and doc.message and not re.search(doc.message, failed[check]):
                problems.append(f"CHANGED {case.key} [{case.desc}] call: {failed[check]!r} does not "
                                f"match {doc.tag!r}: {doc.message!r}")
    assert not problems, f"{len(problems)} of the checks on {len(cases)} samples:\n" + "\n".join(problems)


def test_conversion_helper_keeps_values_and_dtype():
    """`to_numpy` hands fastxent the tensor's own values in its own dtype (bfloat16 bit for bit)."""
    for dname, t in TORCH_DTYPES.items():
        if dname == "bfloat16" and ml_dtypes is None:
            continue
        x = torch.tensor([[1.0, -2.5, 3.140625], [0.0, -0.0, 65504.0]], dtype=t)[:, ::2]
        a = to_numpy(x)
        assert a.dtype.name == dname and a.shape == (2, 2)
        assert np.array_equal(a.astype(np.float64), x.to(torch.float64).numpy())
