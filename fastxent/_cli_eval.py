"""``fastxent eval``: evaluate saved logits against targets (and reference logits).

Files are memory-mapped (``np.load(mmap_mode="r")``) and processed in chunks of rows,
so memory stays bounded whatever the file sizes: about ``chunk_rows * vocab * itemsize``
bytes of mapped logits per input at a time (pages of finished chunks are released with
``madvise(MADV_DONTNEED)`` where available), plus a widened copy of a block of rows of
the narrower side when the two dtypes differ (each side is read in its own precision, as
`fastxent.token_stats`; the wider one is never rounded) or a copy when a layout needs one,
plus the targets of one chunk during the up-front range check, plus 8 bytes per counted
token for the exact KL and delta-p percentiles when reference logits are given.
"""
from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import sys
import tempfile
import time

import numpy as np

PROG = "fastxent eval"
CHUNK_BYTES = 64 << 20  # default chunk: 64 MiB of model logits


class InputError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {n}")
    return n


def _nonzero_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-zero integer, got {text!r}") from None
    if n == 0:
        raise argparse.ArgumentTypeError("must be a non-zero integer (negative: count back from the CPUs)")
    return n


def add_eval_parser(subparsers):
    """Add the ``eval`` command to an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval", help="perplexity, accuracy and KL statistics of saved logits",
        description="Evaluate model logits (a .npy file, classes on the last axis) against integer "
                    "targets: perplexity with its error and 95% interval, bits per token, top-1 "
                    "accuracy, mean entropy; with --ref-logits also the reference perplexity, "
                    "ln(PPL/PPL_ref), KL(ref || model) with percentiles, same-top rate and "
                    "delta-p (as llama.cpp's perplexity --kl-divergence). Files are memory-mapped "
                    "and read in chunks of rows, so they may be larger than RAM: memory is about "
                    "chunk-rows x vocab x itemsize per input, plus 8 bytes per token with "
                    "--ref-logits (exact percentiles).")
    p.add_argument("--logits", required=True, metavar="L.npy",
                   help="model logits, shape (tokens, vocab), (seq, vocab) or (batch, seq, vocab); "
                        "float32, float64, float16 or bfloat16 (a 2-byte raw 'V2' array, as NumPy "
                        "saves ml_dtypes.bfloat16, is read as bfloat16)")
    p.add_argument("--targets", required=True, metavar="T.npy",
                   help="integer class indices, the shape of the logits without the vocab axis")
    p.add_argument("--ref-logits", metavar="R.npy",
                   help="reference logits of the same shape, any logits dtype (each file is read in "
                        "its own precision: the narrower one is widened, never the wider rounded)")
    p.add_argument("--ignore-index", type=int, default=-100, metavar="N",
                   help="target value of positions not counted (default -100)")
    p.add_argument("--shift", action="store_true",
                   help="causal LM alignment: logits at position t predict target t+1 "
                        "(logits[..., :-1, :] against targets[..., 1:], views, no copies)")
    p.add_argument("--chunk-rows", type=_positive_int, metavar="N",
                   help="rows (positions) per chunk (default: 64 MiB of model logits)")
    p.add_argument("--threads", type=_nonzero_int, metavar="N",
                   help="kernel threads (default: fastxent.get_num_threads(); -1: all CPUs)")
    p.add_argument("--json", metavar="OUT",
                   help="also write the report, input names, shapes and dtypes to OUT (atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress and no printed report")
    p.set_defaults(func=run_eval)
    return p


# --------------------------------------------------------------------------- loading
def _load(path: str, flag: str) -> np.ndarray:
    if not os.path.exists(path):
        raise InputError(f"{flag} {path!r}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{flag} {path!r}: is a directory")
    _check_npy_file(path, flag)
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 -- any reason a file is not a readable .npy
        raise InputError(f"{flag} {path!r}: cannot be read as a .npy file ({_one_line(e)})") from None
    if not isinstance(a, np.ndarray):
        close = getattr(a, "close", None)
        if close:
            close()
        raise InputError(f"{flag} {path!r}: is an .npz archive; give a .npy file")
    if a.dtype.kind == "V" and a.dtype.itemsize == 2 and a.dtype.names is None:
        try:
            import ml_dtypes
        except ImportError:
            raise InputError(f"{flag} {path!r}: raw 2-byte dtype {a.dtype.str} (bfloat16?) needs "
                             "ml_dtypes to be installed") from None
        a = a.view(ml_dtypes.bfloat16)
    return a


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"    # .npz archives are zip files: np.load reports them below


def _check_npy_file(path: str, flag: str) -> None:
    """Tell a file that is not .npy at all, or a truncated one, from the reasons NumPy gives
    (which are "contains pickled (object) data ... allow_pickle" for any file without the .npy
    magic string, and "mmap length is greater than file size" for a short one)."""
    from numpy.lib import format as npy_format

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head[:len(_ZIP_MAGIC)] == _ZIP_MAGIC:
                return
            if head != _NPY_MAGIC:
                if size == 0:
                    raise InputError(f"{flag} {path!r}: is not a .npy file (it is empty)")
                if _NPY_MAGIC.startswith(head):
                    raise InputError(f"{flag} {path!r}: is truncated ({size} bytes: the .npy "
                                     "header is incomplete)")
                raise InputError(f"{flag} {path!r}: is not a .npy file (it does not start with "
                                 "the signature \\x93NUMPY that numpy.save writes)")
            f.seek(0)
            try:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(f)
                else:
                    return          # a newer format: np.load judges it
            except (ValueError, EOFError, OSError) as e:
                if "EOF" in str(e) or isinstance(e, EOFError):
                    raise InputError(f"{flag} {path!r}: is truncated ({size} bytes: the .npy "
                                     "header is incomplete)") from None
                return              # a malformed header: np.load's reason is reported below
            offset = f.tell()
    except OSError as e:
        raise InputError(f"{flag} {path!r}: cannot be read ({_one_line(e)})") from None
    if dtype.hasobject:
        return
    need = math.prod(shape) * dtype.itemsize
    if size - offset < need:
        raise InputError(f"{flag} {path!r}: is truncated: its header says shape {tuple(shape)}, "
                         f"dtype {dtype} ({need} bytes of data) but the file holds "
                         f"{size - offset} bytes after the header")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _describe(a) -> str:
    return f"shape {tuple(a.shape)}, dtype {a.dtype}"


class _Plan:
    """Validated inputs and their chunks."""

    def __init__(self, args):
        from ._arrays import float_dtype

        self.logits_file, self.targets_file, self.ref_file = args.logits, args.targets, args.ref_logits
        self.x = _load(args.logits, "--logits")
        self.t = _load(args.targets, "--targets")
        self.r = _load(args.ref_logits, "--ref-logits") if args.ref_logits else None
        x, t, r = self.x, self.t, self.r
        for a, flag in ((x, "--logits"), (r, "--ref-logits")):
            if a is None:
                continue
            try:
                float_dtype(a.dtype, "logits", promote_int=False)
            except TypeError:
                raise InputError(f"{flag} has dtype {a.dtype}; logits must be float32, float64, "
                                 "float16 or bfloat16") from None
            if a.ndim < 2:
                raise InputError(f"{flag} has shape {tuple(a.shape)}; logits need at least 2 "
                                 "dimensions, (..., seq, vocab) or (tokens, vocab)")
        if t.dtype.kind not in "iu":
            raise InputError(f"--targets has dtype {t.dtype}; targets must be integer class indices")
        if t.shape != x.shape[:-1]:
            raise InputError(f"--targets has shape {tuple(t.shape)} but --logits has shape "
                             f"{tuple(x.shape)}; targets must have shape {tuple(x.shape[:-1])}")
        if r is not None and r.shape != x.shape:
            if r.ndim == x.ndim and r.shape[:-1] == x.shape[:-1]:
                raise InputError(f"mismatched vocab: --logits has {x.shape[-1]} classes, "
                                 f"--ref-logits has {r.shape[-1]}")
            raise InputError(f"--ref-logits has shape {tuple(r.shape)} but --logits has shape "
                             f"{tuple(x.shape)}; they must be equal")
        self.shift = bool(args.shift)
        if self.shift and x.shape[-2] < 1:
            raise InputError(f"--shift needs a sequence axis of length >= 1, --logits has shape "
                             f"{tuple(x.shape)}")
        self.ignore_index = args.ignore_index
        self.vocab = x.shape[-1]
        row_bytes = max(1, self.vocab * x.dtype.itemsize)
        self.chunk_rows = args.chunk_rows or max(1, CHUNK_BYTES // row_bytes)
        self.groups = self._groups()
        self.chunks = self._chunks()
        self._check_targets()

    def _groups(self):
        """(N, S, ...) views of logits, targets, ref: one group, or one per leading index
        when the leading axes do not merge without a copy."""
        x, t, r = self.x, self.t, self.r
        lead = x.shape[:-2]
        if not lead:
            return [(x[None], t[None], None if r is None else r[None])]
        merged = [_merge_lead(a, len(lead)) for a in (x, t, r) if a is not None]
        if all(m is not None for m in merged):
            return [(merged[0], merged[1], merged[2] if r is not None else None)]
        return [(x[i], t[i], None if r is None else r[i]) for i in np.ndindex(*lead)]

    def _chunks(self):
        """(group, n0, n1, s0, s1): sequences n0..n1 (positions s0..s1) of a group's (N, S) rows."""
        out = []
        k = self.chunk_rows
        for g, (x3, _, _) in enumerate(self.groups):
            n, s = x3.shape[0], x3.shape[1] - self.shift
            if s <= 0:
                continue
            if s <= k:
                step = k // s
                out += [(g, i, min(i + step, n), 0, s) for i in range(0, n, step)]
            else:
                out += [(g, i, i + 1, j, min(j + k, s)) for i in range(n) for j in range(0, s, k)]
        return out

    def positions(self) -> int:
        """Target positions evaluated (counted or ignored): all of them, or all but the first of
        each sequence with --shift."""
        t = self.t
        return int(t[..., 1:].size if self.shift else t.size)

    def views(self, chunk):
        g, n0, n1, s0, s1 = chunk
        x3, t3, r3 = self.groups[g]
        sh = int(self.shift)
        x, t = x3[n0:n1, s0:s1], t3[n0:n1, s0 + sh:s1 + sh]  # views of the memmaps
        return x, t, (None if r3 is None else r3[n0:n1, s0:s1])

    def _check_targets(self):
        """Out-of-range targets (not ignore_index): the first one, in file coordinates.

        The check of every fastxent function (`_validate.first_bad_target`), run over the whole
        file before the first chunk is evaluated, a block of rows at a time."""
        from ._validate import first_bad_target

        t, v, ig = self.t, self.vocab, self.ignore_index
        used = t[..., 1:] if self.shift else t
        if used.size == 0:
            return
        step = max(1, (1 << 22) // max(1, used.size // max(1, used.shape[0])))
        for i in range(0, used.shape[0], step):
            part = np.asarray(used[i:i + step])
            if -2**63 <= ig < 2**63:
                _, bad, _ = first_bad_target(part, v, ig)
            else:  # beyond int64: the Evaluator refuses it, after this check (as it always did)
                out = ((part != ig) & ((part < 0) | (part >= v))).reshape(-1)
                bad = int(np.argmax(out)) if out.any() else -1
            if bad >= 0:
                pos = list(np.unravel_index(bad, part.shape))
                pos[0] += i
                if self.shift:
                    pos[-1] += 1
                pos = tuple(int(p) for p in pos)
                raise InputError(f"--targets value {t[pos]} at position {pos} is out of range for "
                                 f"{v} classes (valid: 0..{v - 1} or --ignore-index {ig})")


def _merge_lead(a, n_lead):
    """`a` with its first n_lead axes merged into one, as a view, or None if that needs a copy."""
    shape = (-1,) + a.shape[n_lead:]
    try:
        return np.reshape(a, shape, copy=False)
    except TypeError:  # NumPy < 2.1: no `copy` argument
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v
    except ValueError:
        return None


def _release(view, top):
    """Drop the pages of `view` (a slice of the memmap `top`) from this process (best effort)."""
    mm = getattr(top, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or view.size == 0:
        return
    try:
        from ._compat import byte_bounds

        lo, hi = byte_bounds(view)
        base = top.ctypes.data - top.offset % mmap.ALLOCATIONGRANULARITY
        start = lo - base
        start -= start % mmap.PAGESIZE
        length = min(hi - base, len(mm)) - start
        if start >= 0 and length > 0:
            mm.madvise(mmap.MADV_DONTNEED, start, length)
    except (AttributeError, OSError, ValueError, TypeError):
        pass


# --------------------------------------------------------------------------- progress
class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.bar, self.enabled = total, 0, None, enabled and total > 0
        self._last = 0.0
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit="chunk", file=sys.stderr, desc=PROG, leave=False)

    def step(self):
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self._last >= 0.2 or self.done == self.total:
            self._last = now
            sys.stderr.write(f"\r{PROG}: {self.done}/{self.total} chunks "
                             f"({100 * self.done // self.total}%)")
            sys.stderr.flush()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


# --------------------------------------------------------------------------- output
def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _check_json_dest(path: str):
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise InputError(f"--json {path!r}: directory {d!r} does not exist")
    if os.path.isdir(path):
        raise InputError(f"--json {path!r}: is a directory")
    if not os.access(d, os.W_OK):
        raise InputError(f"--json {path!r}: directory {d!r} is not writable")


def _write_json_atomic(path: str, payload: dict):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _inputs(plan) -> dict:
    def info(path, a):
        return None if a is None else {"file": path, "shape": list(a.shape), "dtype": str(a.dtype)}
    return {"logits": info(plan.logits_file, plan.x), "targets": info(plan.targets_file, plan.t),
            "ref_logits": info(plan.ref_file, plan.r)}


# --------------------------------------------------------------------------- command
def run_eval(args) -> int:
    """Run ``fastxent eval``; returns the exit status (0, 1 internal error, 2 bad input,
    130 interrupted)."""
    done = total = 0
    try:
        from . import __version__
        from .evaluate import Evaluator, format_report

        if args.json:
            _check_json_dest(args.json)
        plan = _Plan(args)
        if args.quiet and not args.json:
            print(f"{PROG}: warning: --quiet without --json: the report is neither printed nor "
                  "written (only the exit status tells the result)", file=sys.stderr)
        ev = Evaluator(ignore_index=plan.ignore_index, keep_per_token=True, n_threads=args.threads)
        total = len(plan.chunks)
        show = not args.quiet and sys.stderr.isatty()
        progress = _Progress(total, show)
        try:
            for chunk in plan.chunks:
                x, t, r = plan.views(chunk)
                ev.update(x, t, r)
                _release(x, plan.x)
                if r is not None:
                    _release(r, plan.r)
                done += 1
                progress.step()
        finally:
            progress.close()
        rep = ev.report()
        positions = plan.positions()
        ignored = positions - rep["tokens"]
        if not args.quiet:
            shift = ", shifted (logits[..., :-1, :] vs targets[..., 1:])" if plan.shift else ""
            print(f"logits  {plan.logits_file}: {_describe(plan.x)}{shift}")
            print(f"targets {plan.targets_file}: {_describe(plan.t)}")
            if plan.r is not None:
                print(f"ref     {plan.ref_file}: {_describe(plan.r)}")
            lines = format_report(rep).split("\n")
            lines.insert(1, f"{'ignored positions':<28}: {ignored} of {positions} "
                            f"(target == {plan.ignore_index})")
            print("\n".join(lines))
        if args.json:
            payload = {"fastxent_version": __version__, "inputs": _inputs(plan),
                       "options": {"shift": plan.shift, "ignore_index": plan.ignore_index,
                                   "chunk_rows": plan.chunk_rows, "threads": args.threads},
                       "positions": {"total": positions, "counted": rep["tokens"],
                                     "ignored": ignored},
                       "report": _json_safe(rep)}
            _write_json_atomic(args.json, payload)
            if not args.quiet:
                print(f"wrote {args.json}")
        return 0
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted after {done} of {total} chunks; no report written",
              file=sys.stderr)
        return 130
    except InputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (TypeError, ValueError, IndexError) as e:  # raised by the checks of fastxent itself
        print(f"{PROG}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory (try a smaller --chunk-rows)", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 -- one line, never a traceback
        print(f"{PROG}: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 1
