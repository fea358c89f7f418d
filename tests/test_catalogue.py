"""The catalogue of bad inputs (docs/bad_inputs.md): one test per row.

Each row is a call with one bad argument, the exception type it raises (exactly that type) and
its message (exactly that text).  After the error, every array the call could have written to
(`grad_out`, in-place logits, the inputs) holds its old bytes and an `Evaluator` has added nothing;
for the ``fastxent eval`` rows the exit status is 2, stderr is the one-line message and the
``--json`` file was not created.

The table in docs/bad_inputs.md is generated from ROWS and CLI_ROWS:

    python tests/test_catalogue.py --write      # after changing a row
"""
import os
import re
import sys

import numpy as np
import pytest

import fastxent
from fastxent import (Evaluator, cross_entropy, kl_divergence, log_softmax, logsumexp, perplexity,
                      set_isa, set_num_threads, softmax, token_stats)

try:
    from numpy.exceptions import AxisError
except ImportError:  # numpy < 1.25
    from numpy import AxisError

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bad_inputs.md")

# (function, call, exception, message).  Names available to a call (fresh for every row):
#   x  = np.zeros((2, 3))               float64 logits        x32 = the same in float32
#   t  = np.array([0, 2])                class indices         p   = np.full((2, 3), 1/3) probabilities
#   g  = np.full((2, 3), 7.0)            a grad_out            ro  = g, read-only
#   gF = np.full((2, 3), 7.0, order="F") (class axis strided)  g32 = g in float32
#   xs, gs = two overlapping (2, 3) views of one buffer (gs starts one element after xs)
#   gU = a (2, 3) float64 grad_out at byte offset 1 of a uint8 buffer (unaligned)
#   ev = Evaluator()
#   gpu = a DLPack producer on a CUDA device    sparse = one whose export fails (as a torch sparse tensor's)
ROWS = [
    # ---------------------------------------------------------------- logsumexp
    ("logsumexp", "logsumexp(np.ones(3, np.complex64))", TypeError,
     "`a` is complex (complex64); fastxent handles real input only (supported dtypes: float32, float64, "
     "float16, bfloat16)"),
    ("logsumexp", "logsumexp(np.ones(3, object))", TypeError,
     "`a` has dtype object; supported dtypes are float32, float64, float16, bfloat16 (integers and bool "
     "are converted to float64)"),
    ("logsumexp", "logsumexp(x, axis=2)", AxisError, "axis 2 is out of bounds for array of dimension 2"),
    ("logsumexp", "logsumexp(x, axis=(1, -1))", ValueError, "`axis` contains a repeated axis: (1, -1)"),
    ("logsumexp", "logsumexp(x, axis=1.5)", TypeError,
     "`axis` must be an integer, a tuple of integers or None, got 1.5"),
    ("logsumexp", "logsumexp(x, b=np.ones((2, 2)))", ValueError,
     "`b` with shape (2, 2) does not broadcast against `a` with shape (2, 3)"),
    ("logsumexp", "logsumexp(x, b=np.ones(3, np.complex128))", TypeError,
     "`b` is complex (complex128); fastxent handles real input only (supported dtypes: float32, float64, "
     "float16, bfloat16)"),
    ("logsumexp", "logsumexp(x, n_threads=0)", ValueError,
     "`n_threads` must be a non-zero integer or None, got 0"),
    ("logsumexp", "logsumexp(x, n_threads='2')", TypeError, "`n_threads` must be an integer or None, got '2'"),
    # ---------------------------------------------------------------- softmax, log_softmax
    ("softmax", "softmax(np.ones((2, 3), np.complex128))", TypeError,
     "`x` is complex (complex128); fastxent handles real input only (supported dtypes: float32, float64, "
     "float16, bfloat16)"),
    ("softmax", "softmax(np.array(['a', 'b']))", TypeError,
     "`x` has dtype <U1; supported dtypes are float32, float64, float16, bfloat16 (integers and bool are "
     "converted to float64)"),
    ("softmax", "softmax(x, axis=-3)", AxisError, "axis -3 is out of bounds for array of dimension 2"),
    ("log_softmax", "log_softmax(np.ones(3, 'datetime64[s]'))", TypeError,
     "`x` has dtype datetime64[s]; supported dtypes are float32, float64, float16, bfloat16 (integers and "
     "bool are converted to float64)"),
    ("log_softmax", "log_softmax(x, axis=(0, 0))", ValueError, "`axis` contains a repeated axis: (0, 0)"),
    ("log_softmax", "log_softmax(x, n_threads=1.5)", TypeError,
     "`n_threads` must be an integer or None, got 1.5"),
    # ---------------------------------------------------------------- cross_entropy: inputs
    ("cross_entropy", "cross_entropy(np.ones((2, 3), np.int64), t)", TypeError,
     "`logits` has dtype int64; supported dtypes are float32, float64, float16, bfloat16"),
    ("cross_entropy", "cross_entropy(np.array(1.0), np.array(0))", AxisError,
     "axis -1 is out of bounds for array of dimension 0"),
    ("cross_entropy", "cross_entropy(x, t, axis=2)", AxisError, "axis 2 is out of bounds for array of dimension 2"),
    ("cross_entropy", "cross_entropy(x, np.array([0, 1, 2]))", ValueError,
     "`target` has shape (3,) but `logits` with shape (2, 3) and axis=1 needs target shape (2,)"),
    ("cross_entropy", "cross_entropy(x, np.array([0, 3]))", IndexError,
     "`target` value 3 at position (1,) is out of range for 3 classes (valid: 0..2 or ignore_index)"),
    ("cross_entropy", "cross_entropy(x, np.array([-1, 0]))", IndexError,
     "`target` value -1 at position (0,) is out of range for 3 classes (valid: 0..2 or ignore_index)"),
    ("cross_entropy", "cross_entropy(x, np.array([0.0, 2.0]))", TypeError,
     "`target` of dtype float64 is read as class probabilities and must have the shape of `logits` (2, 3), "
     "got (2,); class indices must be integers"),
    ("cross_entropy", "cross_entropy(x, np.array([True, False]))", TypeError,
     "`target` must hold integer class indices or floating class probabilities, got dtype bool"),
    ("cross_entropy", "cross_entropy(np.zeros((2, 3, 4)), np.zeros(4, np.int64), axis=(0, 1))", TypeError,
     "`axis` must be an integer (the class axis), got (0, 1)"),
    ("cross_entropy", "cross_entropy(x, t, ignore_index=1.5)", TypeError,
     "`ignore_index` must be an integer, got 1.5"),
    ("cross_entropy", "cross_entropy(x, t, ignore_index=2**63)", ValueError,
     "`ignore_index` must fit in int64, got 9223372036854775808"),
    # ---------------------------------------------------------------- cross_entropy: options
    ("cross_entropy", "cross_entropy(x, t, reduction='avg')", ValueError,
     "`reduction` must be one of 'none', 'sum', 'mean', got 'avg'"),
    ("cross_entropy", "cross_entropy(x, t, label_smoothing=1.5)", ValueError,
     "`label_smoothing` must be a finite number in [0.0, 1.0], got 1.5"),
    ("cross_entropy", "cross_entropy(x, t, label_smoothing='a')", TypeError,
     "`label_smoothing` must be a real number, got 'a'"),
    ("cross_entropy", "cross_entropy(x, t, z_loss=-1.0)", ValueError,
     "`z_loss` must be a finite number in [0.0, inf], got -1.0"),
    ("cross_entropy", "cross_entropy(x, t, softcap=0.0)", ValueError,
     "`softcap` must be a finite number in (0.0, inf], got 0.0"),
    ("cross_entropy", "cross_entropy(x, t, weight=np.ones(4))", ValueError,
     "`weight` must have shape (3,) (one weight per class), got (4,)"),
    ("cross_entropy", "cross_entropy(x, t, weight=np.array([1.0, -1.0, 1.0]))", ValueError,
     "`weight` must be finite and >= 0; weight[1] = -1.0"),
    ("cross_entropy", "cross_entropy(x, t, weight=np.ones(3, np.complex64))", TypeError,
     "`weight` is complex (complex64); fastxent handles real input only (supported dtypes: float32, "
     "float64, float16, bfloat16)"),
    # ---------------------------------------------------------------- cross_entropy: grad_out
    ("cross_entropy", "cross_entropy(x, t, grad_out=g)", ValueError,
     "`grad_out` is given but `return_grad` is False"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=g32)", TypeError,
     "`grad_out` has dtype float32; the gradient of float64 logits is float64"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=np.full((3, 2), 7.0))", ValueError,
     "`grad_out` has shape (3, 2), `logits` has shape (2, 3)"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=ro)", ValueError, "`grad_out` is read-only"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=[7.0] * 6)", TypeError,
     "`grad_out` must be a NumPy array, got list"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=gF)", ValueError,
     "`grad_out` must have a contiguous class axis and rows that fold into at most two strided levels "
     "(a C-contiguous array of the logits' shape always works)"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=gU)", ValueError,
     "`grad_out` is not aligned (its float64 elements must start at addresses that are multiples of 8 bytes); "
     "it must be an aligned array with a C-contiguous class axis (a C-contiguous array of the logits' shape "
     "always works)"),
    ("cross_entropy", "cross_entropy(x, t, axis=(0, 1), return_grad=True, grad_out=x)", TypeError,
     "`axis` must be an integer (the class axis), got (0, 1)"),
    ("cross_entropy", "cross_entropy(xs, t, return_grad=True, grad_out=gs)", ValueError,
     "`grad_out` overlaps `logits`; it may only be the logits array itself (in-place) or memory of its own"),
    ("cross_entropy", "cross_entropy(x, p, return_grad=True, grad_out=p)", ValueError,
     "`grad_out` overlaps `target`; it may only be the logits array itself (in-place) or memory of its own"),
    ("cross_entropy", "cross_entropy(x, np.array([0, 5]), return_grad=True, grad_out=x)", IndexError,
     "`target` value 5 at position (1,) is out of range for 3 classes (valid: 0..2 or ignore_index)"),
    ("cross_entropy", "cross_entropy(x, t, z_loss=float('nan'), return_grad=True, grad_out=x)", ValueError,
     "`z_loss` must be a finite number in [0.0, inf], got nan"),
    # ---------------------------------------------------------------- perplexity
    ("perplexity", "perplexity(x[0], np.array(0), per_sequence=True)", ValueError,
     "`per_sequence=True` needs `target` with a sequence axis (shape (..., T)), got a 0-d target"),
    ("perplexity", "perplexity(x, np.array([0, 2**64 - 1], np.uint64))", IndexError,
     "`target` value 18446744073709551615 at position (1,) is out of range for 3 classes (valid: 0..2 or "
     "ignore_index)"),
    ("perplexity", "perplexity(x, np.array([0.0, 1.0]))", TypeError,
     "`target` must hold integer class indices, got dtype float64"),
    ("perplexity", "perplexity(x32, np.zeros((2, 1), np.int64))", ValueError,
     "`target` has shape (2, 1) but `logits` with shape (2, 3) and axis=1 needs target shape (2,)"),
    # ---------------------------------------------------------------- configuration
    ("set_num_threads", "set_num_threads(0)", ValueError, "`n_threads` must be a non-zero integer or None, got 0"),
    ("set_isa", "set_isa('sse4')", ValueError,
     "`isa` must be one of ['baseline', 'avx2', 'avx512'] or None, got 'sse4'"),
    # ---------------------------------------------------------------- evaluation
    ("token_stats", "token_stats(x, np.array([0, 3]))", IndexError,
     "`target` value 3 at position (1,) is out of range for 3 classes (valid: 0..2 or ignore_index)"),
    ("token_stats", "token_stats(x, t, ref_logits=np.zeros((2, 4)))", ValueError,
     "`ref_logits` has shape (2, 4) but `logits` has shape (2, 3); they must be equal"),
    ("kl_divergence", "kl_divergence(x, np.zeros((2, 4)))", ValueError,
     "`p_logits` has shape (2, 3) but `q_logits` has shape (2, 4); they must be equal"),
    ("kl_divergence", "kl_divergence(x, x, reduction='batchmean')", ValueError,
     "`reduction` must be one of 'none', 'sum', 'mean', got 'batchmean'"),
    ("Evaluator", "ev.update(x, np.array([0, 9]))", IndexError,
     "`target` value 9 at position (1,) is out of range for 3 classes (valid: 0..2 or ignore_index)"),
    ("Evaluator", "Evaluator(keep_per_token='yes')", TypeError, "`keep_per_token` must be a bool, got 'yes'"),
    ("Evaluator", "Evaluator(ignore_index=-2**63 - 1)", ValueError,
     "`ignore_index` must fit in int64, got -9223372036854775809"),
    ("Evaluator", "ev.merge({})", TypeError, "`other` must be an Evaluator, got dict"),
    # ---------------------------------------------------------------- DLPack input (torch, JAX, ...)
    ("cross_entropy", "cross_entropy(gpu, t)", ValueError,
     "`logits` is on a non-CPU device (CUDA:0, DLPack device type 2); fastxent reads CPU memory only: move it first (e.g. `x.cpu()` for a torch tensor, `jax.device_put(x, jax.devices('cpu')[0])` for a JAX array)"),
    ("cross_entropy", "cross_entropy(x, t, return_grad=True, grad_out=gpu)", ValueError,
     "`grad_out` is on a non-CPU device (CUDA:0, DLPack device type 2); fastxent reads CPU memory only: move it first (e.g. `x.cpu()` for a torch tensor, `jax.device_put(x, jax.devices('cpu')[0])` for a JAX array)"),
    ("Evaluator", "ev.update(x, t, ref_logits=gpu)", ValueError,
     "`ref_logits` is on a non-CPU device (CUDA:0, DLPack device type 2); fastxent reads CPU memory only: move it first (e.g. `x.cpu()` for a torch tensor, `jax.device_put(x, jax.devices('cpu')[0])` for a JAX array)"),
    ("softmax", "softmax(sparse)", BufferError,
     "`x` (test_catalogue.Unexportable) could not be read over DLPack: its __dlpack__() raised BufferError: "
     "Can't export tensors with layout other than torch.strided"),
]

# (bad input, argv after "eval" ({d}: a temporary directory holding the files below), message;
# "<NumPy's reason>" stands for the text of NumPy's own error, which varies between versions).
# Files in {d}: x.npy (4, 5) float32 logits, t.npy (4,) int64 targets, tf.npy (4,) float64,
# t3.npy (3,) int64, tbad.npy (4,) int64 with a 7 at position 2, r6.npy (4, 6) float32,
# x1.npy (5,) float32, z.npz, t.npy.txt (text), empty.npy (0 bytes), xcut.npy (x.npy without the
# last 40 bytes), hcut.npy (its first 20 bytes), hbad.npy (a header that is not a dict).  Every call
# also asks for --json {d}/out.json, which must not appear.
CLI_ROWS = [
    ("missing file", "--logits {d}/nope.npy --targets {d}/t.npy",
     "fastxent eval: error: --logits '{d}/nope.npy': no such file"),
    ("not a .npy file", "--logits {d}/t.npy.txt --targets {d}/t.npy",
     "fastxent eval: error: --logits '{d}/t.npy.txt': is not a .npy file (it does not start with the "
     "signature \\x93NUMPY that numpy.save writes)"),
    ("empty file", "--logits {d}/x.npy --targets {d}/empty.npy",
     "fastxent eval: error: --targets '{d}/empty.npy': is not a .npy file (it is empty)"),
    ("truncated data", "--logits {d}/xcut.npy --targets {d}/t.npy",
     "fastxent eval: error: --logits '{d}/xcut.npy': is truncated: its header says shape (4, 5), dtype "
     "float32 (80 bytes of data) but the file holds 40 bytes after the header"),
    ("truncated header", "--logits {d}/x.npy --targets {d}/t.npy --ref-logits {d}/hcut.npy",
     "fastxent eval: error: --ref-logits '{d}/hcut.npy': is truncated (20 bytes: the .npy header is "
     "incomplete)"),
    ("malformed header", "--logits {d}/hbad.npy --targets {d}/t.npy",
     "fastxent eval: error: --logits '{d}/hbad.npy': cannot be read as a .npy file (<NumPy's reason>)"),
    (".npz archive", "--logits {d}/z.npz --targets {d}/t.npy",
     "fastxent eval: error: --logits '{d}/z.npz': is an .npz archive; give a .npy file"),
    ("1-d logits", "--logits {d}/x1.npy --targets {d}/t.npy",
     "fastxent eval: error: --logits has shape (5,); logits need at least 2 dimensions, (..., seq, vocab) or "
     "(tokens, vocab)"),
    ("float targets", "--logits {d}/x.npy --targets {d}/tf.npy",
     "fastxent eval: error: --targets has dtype float64; targets must be integer class indices"),
    ("target shape", "--logits {d}/x.npy --targets {d}/t3.npy",
     "fastxent eval: error: --targets has shape (3,) but --logits has shape (4, 5); targets must have shape (4,)"),
    ("target out of range", "--logits {d}/x.npy --targets {d}/tbad.npy",
     "fastxent eval: error: --targets value 7 at position (2,) is out of range for 5 classes (valid: 0..4 or "
     "--ignore-index -100)"),
    ("reference vocab", "--logits {d}/x.npy --targets {d}/t.npy --ref-logits {d}/r6.npy",
     "fastxent eval: error: mismatched vocab: --logits has 5 classes, --ref-logits has 6"),
    ("--chunk-rows 0", "--logits {d}/x.npy --targets {d}/t.npy --chunk-rows 0",
     "fastxent eval: error: argument --chunk-rows: must be a positive integer, got 0"),
    ("--threads 0", "--logits {d}/x.npy --targets {d}/t.npy --threads 0",
     "fastxent eval: error: argument --threads: must be a non-zero integer (negative: count back from the CPUs)"),
    ("--json directory missing", "--logits {d}/x.npy --targets {d}/t.npy --json {d}/no/out.json",
     "fastxent eval: error: --json '{d}/no/out.json': directory '{d}/no' does not exist"),
]


class OnCUDA:
    def __dlpack__(self, **kw):  # pragma: no cover - must never be called
        raise AssertionError("__dlpack__ called for a non-CPU tensor")

    def __dlpack_device__(self):
        return (2, 0)


class Unexportable:
    def __dlpack__(self, **kw):
        raise BufferError("Can't export tensors with layout other than torch.strided")

    def __dlpack_device__(self):
        return (1, 0)


def namespace():
    buf = np.zeros(7)
    gF = np.full((2, 3), 7.0, order="F")
    ro = np.full((2, 3), 7.0)
    ro.flags.writeable = False
    ns = dict(np=np, logsumexp=logsumexp, softmax=softmax, log_softmax=log_softmax, cross_entropy=cross_entropy,
              perplexity=perplexity, set_num_threads=set_num_threads, set_isa=set_isa, token_stats=token_stats,
              kl_divergence=kl_divergence, Evaluator=Evaluator)
    ns.update(x=np.zeros((2, 3)), x32=np.zeros((2, 3), np.float32), t=np.array([0, 2]), p=np.full((2, 3), 1 / 3),
              g=np.full((2, 3), 7.0), g32=np.full((2, 3), 7.0, np.float32), ro=ro, gF=gF,
              xs=buf[:6].reshape(2, 3), gs=buf[1:].reshape(2, 3), ev=Evaluator(),
              gU=np.full(49, 7, np.uint8)[1:].view(np.float64).reshape(2, 3), gpu=OnCUDA(),
              sparse=Unexportable())
    assert not ns["gU"].flags.aligned
    return ns


def _bits(ns):
    return {k: v.tobytes() for k, v in ns.items() if isinstance(v, np.ndarray)}


@pytest.fixture
def restore_config():
    old_threads = fastxent.set_num_threads(None)
    fastxent.set_num_threads(old_threads)
    isa = fastxent.show_config(print_out=False)["isa"]
    yield
    fastxent.set_num_threads(old_threads)
    fastxent.set_isa(isa)


@pytest.mark.parametrize("row", range(len(ROWS)), ids=lambda i: f"{i + 1}-{ROWS[i][0]}")
def test_catalogue_row(row, restore_config):
    func, code, exc, message = ROWS[row]
    ns = namespace()
    before = _bits(ns)
    ev_before = repr(ns["ev"]), ns["ev"].tokens
    with pytest.raises(Exception) as info:
        eval(code, ns)
    assert type(info.value) is exc, f"{code}: raised {type(info.value).__name__}: {info.value}"
    assert str(info.value) == message
    after = _bits(ns)
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"{code}: wrote to {changed} before raising"
    assert (repr(ns["ev"]), ns["ev"].tokens) == ev_before, f"{code}: the Evaluator changed"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_unaligned_grad_out_names_grad_out(dtype, axis):
    """The row of `gU` for both gradient dtypes and both class axes: a grad_out that is
    C-contiguous but unaligned (a view at byte offset 1 of a uint8 buffer) was reported as a bad
    class axis; the message names `grad_out` and alignment, and nothing is written.  (The
    reference writes into any writeable array: only fastxent raises.)"""
    x = np.zeros((2, 3), dtype)
    t = np.array([0, 2])
    buf = np.full(x.nbytes + 1, 7, np.uint8)
    g = buf[1:].view(dtype).reshape(x.shape)
    assert not g.flags.aligned and g.flags.c_contiguous
    before = buf.copy()
    with pytest.raises(ValueError, match=r"^`grad_out` is not aligned") as err:
        fastxent.cross_entropy(x if axis == -1 else x.T, t, axis=axis, return_grad=True,
                               grad_out=g if axis == -1 else g.T)
    err.match(f"multiples of {np.dtype(dtype).itemsize} bytes")
    err.match("C-contiguous class axis")
    assert "class axis and rows" not in str(err.value)
    np.testing.assert_array_equal(buf, before)


@pytest.mark.parametrize("in_place", [False, True])
def test_grad_out_message_with_the_class_axis_not_last(in_place):
    """Found by tests/test_differential.py: with axis=1 a C-contiguous grad_out of the logits'
    shape (or the C-contiguous logits themselves, in place) was refused with "a C-contiguous array
    of the logits' shape always works"; the message now names the layout that does."""
    x = np.random.default_rng(0).standard_normal((3, 5, 4))
    t = np.zeros((3, 4), np.int64)
    g = x if in_place else np.zeros(x.shape)
    before = g.copy()
    with pytest.raises(ValueError, match=r"^`grad_out` must have a contiguous class axis") as err:
        fastxent.cross_entropy(x, t, axis=1, return_grad=True, grad_out=g)
    err.match(re.escape("a C-contiguous array of the logits' shape does not qualify; "
                        "np.moveaxis(np.empty((3, 4, 5), np.float64), -1, 1) always works"))
    np.testing.assert_array_equal(g, before)
    good = np.moveaxis(np.empty((3, 4, 5)), -1, 1)
    loss, grad = fastxent.cross_entropy(x, t, axis=1, return_grad=True, grad_out=good)
    assert grad is good
    np.testing.assert_array_equal(grad, fastxent.cross_entropy(x, t, axis=1, return_grad=True)[1])


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.standard_normal((4, 5)).astype(np.float32))
    np.save(d / "x1.npy", np.zeros(5, np.float32))
    np.save(d / "t.npy", np.array([0, 1, 2, 3]))
    np.save(d / "t3.npy", np.array([0, 1, 2]))
    np.save(d / "tf.npy", np.zeros(4))
    np.save(d / "tbad.npy", np.array([0, 1, 7, 3]))
    np.save(d / "r6.npy", np.zeros((4, 6), np.float32))
    np.savez(d / "z.npz", a=np.zeros((4, 5)))
    (d / "t.npy.txt").write_text("not an array\n")
    (d / "empty.npy").write_bytes(b"")
    whole = (d / "x.npy").read_bytes()
    (d / "xcut.npy").write_bytes(whole[:-40])
    (d / "hcut.npy").write_bytes(whole[:20])
    header = b"['not', 'a', 'dict']".ljust(117) + b"\n"
    (d / "hbad.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                                 + bytes(80))
    return d


@pytest.mark.parametrize("row", range(len(CLI_ROWS)), ids=lambda i: f"cli{i + 1}")
def test_catalogue_cli_row(row, cli_dir, capsys, restore_config):
    from fastxent.__main__ import main

    _, argv, message = CLI_ROWS[row]
    d = str(cli_dir)
    args = ["eval"] + argv.format(d=d).split()
    if "--json" not in args:
        args += ["--json", os.path.join(d, "out.json")]
    try:
        status = main(args)
    except SystemExit as e:  # argparse errors
        status = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    want = message.format(d=d)
    if "<NumPy's reason>" in want:  # the text of NumPy's own error varies between versions
        head, tail = want.split("<NumPy's reason>")
        assert err and err[-1].startswith(head) and err[-1].endswith(tail), err
    else:
        assert err and err[-1] == want
    assert not os.path.exists(os.path.join(d, "out.json")), "the --json report was written"


# --------------------------------------------------------------------------- the document
def render() -> str:
    def cell(s):
        s = s.replace("|", "\\|")
        return f"`` {s} ``" if "`" in s else f"`{s}`"

    lines = [
        "# Bad inputs: what each public function raises",
        "",
        "Generated from `tests/test_catalogue.py` (`python tests/test_catalogue.py --write`); every row is a",
        "test that checks the exception type, the exact message, and that nothing was written to any",
        "output (`grad_out`, logits used in place, an `Evaluator`) before the error.",
        "",
        "Names in the calls: `x = np.zeros((2, 3))` (float64 logits), `x32` (the same in float32),",
        "`t = np.array([0, 2])`, `p = np.full((2, 3), 1/3)` (probability targets), `g = np.full((2, 3), 7.0)`",
        "(a gradient buffer), `g32` (float32), `ro` (read-only), `gF` (Fortran order: class axis strided),",
        "`xs`/`gs` (two overlapping views of one buffer), `gU` (a float64 gradient buffer at byte offset 1",
        "of a uint8 buffer: unaligned), `ev = Evaluator()`, `gpu` (a DLPack producer on a CUDA device),",
        "`sparse` (a DLPack producer whose export fails, as a torch sparse tensor's does).",
        "",
        "| # | function | call | exception | message |",
        "|---|---|---|---|---|",
    ]
    for i, (func, code, exc, msg) in enumerate(ROWS, 1):
        name = "numpy.exceptions.AxisError" if exc is AxisError else exc.__name__
        lines.append(f"| {i} | `{func}` | {cell(code)} | `{name}` | {cell(msg)} |")
    lines += [
        "",
        "## `fastxent eval` (command line)",
        "",
        "Bad input exits with status 2 and one line on stderr (no traceback); the `--json` report is not",
        "written.  `<d>` is the directory of the files.",
        "",
        "| # | bad input | arguments after `fastxent eval` | stderr |",
        "|---|---|---|---|",
    ]
    for i, (what, argv, msg) in enumerate(CLI_ROWS, len(ROWS) + 1):
        lines.append(f"| {i} | {what} | {cell(argv.format(d='<d>'))} | {cell(msg.format(d='<d>'))} |")
    return "\n".join(lines) + "\n"


def test_document_is_up_to_date():
    with open(DOC) as f:
        assert f.read() == render(), "docs/bad_inputs.md is stale: run `python tests/test_catalogue.py --write`"


def test_catalogue_size():
    assert len(ROWS) + len(CLI_ROWS) >= 30
    assert {r[0] for r in ROWS} >= {"logsumexp", "softmax", "log_softmax", "cross_entropy", "perplexity",
                                    "token_stats", "kl_divergence", "Evaluator"}


if __name__ == "__main__":
    if "--write" in sys.argv:
        os.makedirs(os.path.dirname(DOC), exist_ok=True)
        with open(DOC, "w") as f:
            f.write(render())
        print(f"wrote {DOC}: {len(ROWS)} + {len(CLI_ROWS)} rows")
    else:
        sys.stdout.write(render())
