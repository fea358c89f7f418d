"""`Evaluator`: a streaming accumulator of per-token statistics, mergeable across shards.

`update` runs the statistics kernel (`_per_token.compute`) on a batch and adds the counted
tokens' values, squares and cross products to exact totals (`_exact.ExactSum`), keeping the
per-token KL and delta-p values for exact percentiles; `merge`, `state_dict` and
`from_state_dict` combine and serialise those totals; `report` turns them into the statistics
llama.cpp's ``perplexity --kl-divergence`` prints (`_report.make_report`).  Re-exported by
`fastxent.evaluate`.
"""
from __future__ import annotations

import operator
from typing import Any, Dict, List, Mapping, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike

from ._exact import ExactSum
from ._per_token import compute
from ._report import make_report
from ._validate import check_bool, check_ignore_index, prepare
from .typing import EvaluatorReport

__all__ = ["Evaluator"]

#: the exact totals of every evaluator, and those of an evaluator with reference logits
SUMS = ("nll", "nll2", "entropy")
REF_SUMS = ("ref_nll", "ref_nll2", "nll_ref_nll", "dnll", "dnll2", "kl", "kl2",
             "dp", "dp2", "dp4")
STATE_VERSION = 1


class Evaluator:
    r"""Streaming accumulator of evaluation statistics, mergeable across shards.

    Feed batches with `update`; `report` gives perplexity with its error, accuracy,
    entropy and, with reference logits, the KL-divergence statistics of llama.cpp's
    ``perplexity --kl-divergence``.

    Parameters
    ----------
    ignore_index : int, optional
        Target value of positions that are not counted (default -100).
    keep_per_token : bool, optional
        Keep the per-token KL and delta-p values (float32, 8 bytes per counted token;
        only with reference logits) so that `report` gives their exact percentiles.
        Without them the percentiles are absent from the report.
    axis : int, optional
        The class axis of the logits passed to `update` (default: last).
    n_threads : int, optional
        Threads for `update` (None: `get_num_threads`).

    Notes
    -----
    Totals (sums of NLL, squares, cross products, KL, delta-p, ...) are kept exactly,
    as integer multiples of 2^-1074, and rounded once when the report is made: there is
    no drift over a billion tokens, and `merge` of shard accumulators gives bitwise the
    report of one pass over everything.  Standard errors are those of the mean,
    ``sqrt(sample variance / n)``; the perplexity error is ``PPL * se(NLL)`` and its 95%
    interval ``exp(mean NLL +- 1.96 se)``; ``ln(PPL / PPL_ref)`` takes its error from the
    per-token differences, which accounts for the correlation of the two models;
    proportions have the binomial error ``sqrt(p (1 - p) / (n - 1))``.  Percentiles are
    NumPy's (linear interpolation) over the kept per-token values.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import Evaluator
    >>> rng = np.random.default_rng(0)
    >>> ev = Evaluator()
    >>> for _ in range(3):
    ...     logits = rng.standard_normal((4, 16, 50), dtype=np.float32)
    ...     n = ev.update(logits, rng.integers(0, 50, size=(4, 16)), ref_logits=logits * 0.9)
    >>> rep = ev.report()
    >>> rep["tokens"], round(rep["ppl"], 2), rep["same_top"]
    (192, 85.91, 1.0)
    >>> a, b = Evaluator(), Evaluator()          # shards, merged
    >>> a.merge(b).report()["tokens"]
    0
    """

    def __init__(self, ignore_index: SupportsIndex = -100, keep_per_token: bool = True, *,
                 axis: SupportsIndex = -1, n_threads: int | None = None) -> None:
        self.ignore_index = check_ignore_index(ignore_index)
        self.keep_per_token = check_bool(keep_per_token, "keep_per_token")
        try:
            self.axis = operator.index(axis)
        except TypeError:
            raise TypeError(f"`axis` must be an integer, got {axis!r}") from None
        self.n_threads = n_threads
        self._has_ref: bool | None = None      # decided by the first update with tokens: True / False
        self.tokens = 0
        self.correct = 0
        self.same_top = 0
        self._sums = {k: ExactSum() for k in SUMS + REF_SUMS}
        self._kl: list[np.ndarray] = []
        self._dp: list[np.ndarray] = []

    def __repr__(self) -> str:
        ref = {None: "", True: ", with reference", False: ""}[self._has_ref]
        return f"<Evaluator: {self.tokens} tokens{ref}>"

    @property
    def has_ref(self) -> bool | None:
        """True / False once tokens with / without reference logits were added, else None.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> print(ev.has_ref)
        None
        >>> _ = ev.update(logits, np.array([0, 2, 1]), ref_logits=logits)
        >>> ev.has_ref
        True
        """
        return self._has_ref

    def update(self, logits: ArrayLike, target: ArrayLike, ref_logits: ArrayLike | None = None) -> int:
        """Add a batch.

        Parameters
        ----------
        logits : array_like
            Model logits, classes along the evaluator's `axis` (any layout and any
            supported dtype, as `token_stats`).
        target : array_like of int
            Class indices of the shape of `logits` without `axis`; `ignore_index`
            positions are skipped.
        ref_logits : array_like, optional
            Reference logits of the shape of `logits`, of any supported dtype (each side
            read in its own precision, as `token_stats`).  Either every batch that
            counts tokens has them or none does.

        Returns
        -------
        int
            The number of tokens counted from this batch.

        Raises
        ------
        ValueError
            If `ref_logits` is given now but not before (or the reverse), besides the
            errors of `token_stats`.  Nothing is added when an error is raised.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> ev.update(logits, np.array([0, 2, 1]))
        3
        >>> ev.update(logits, np.array([1, -100, -100]))   # -100 (ignore_index) is not counted
        1
        >>> ev
        <Evaluator: 4 tokens>
        """
        has_ref = ref_logits is not None
        self._check_ref(has_ref, "`ref_logits` was {} in earlier updates but {} in this one")
        want = ["nll", "entropy", "correct"]
        if has_ref:
            want += ["p_target", "kl", "same_top", "ref_nll", "ref_p_target"]
        p = prepare(logits, target, axis=self.axis, ignore_index=self.ignore_index,
                    n_threads=self.n_threads, ref_logits=ref_logits)
        v = compute(p, want)
        n = p.counted
        if n == 0:
            return 0
        if n != p.rows:  # keep the counted positions (a pass over the targets only then)
            mask = p.counted_mask()
            v = {k: a[mask] for k, a in v.items()}
        nll = v["nll"]
        add = self._sums
        add["nll"].add(nll)
        add["nll2"].add(nll * nll)
        add["entropy"].add(v["entropy"])
        self.correct += int(np.count_nonzero(v["correct"]))
        if has_ref:
            rnll, kl = v["ref_nll"], v["kl"]
            d = nll - rnll
            dp = v["p_target"] - v["ref_p_target"]
            dp2 = dp * dp
            for key, val in (("ref_nll", rnll), ("ref_nll2", rnll * rnll), ("nll_ref_nll", nll * rnll),
                             ("dnll", d), ("dnll2", d * d), ("kl", kl), ("kl2", kl * kl),
                             ("dp", dp), ("dp2", dp2), ("dp4", dp2 * dp2)):
                add[key].add(val)
            self.same_top += int(np.count_nonzero(v["same_top"]))
            if self.keep_per_token:
                self._kl.append(kl.astype(np.float32))
                self._dp.append(dp.astype(np.float32))
        self._has_ref = has_ref
        self.tokens += n
        return n

    def _check_ref(self, has_ref, msg):
        if self._has_ref is not None and self._has_ref != has_ref:
            words = ("given", "not given") if self._has_ref else ("not given", "given")
            raise ValueError(msg.format(*words))

    def merge(self, other: "Evaluator") -> "Evaluator":
        """Add the tokens of another evaluator (e.g. of another shard) to this one.

        The report afterwards is bitwise the one a single evaluator fed with both
        streams would give (percentiles included).

        Parameters
        ----------
        other : Evaluator
            Left unchanged.

        Returns
        -------
        Evaluator
            self.

        Raises
        ------
        TypeError
            If `other` is not an Evaluator.
        ValueError
            If one has reference statistics and the other not, or their
            `keep_per_token` differ.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> target = np.array([0, 2, 1])
        >>> a, b, whole = Evaluator(), Evaluator(), Evaluator()
        >>> _ = a.update(logits[:2], target[:2])            # one shard each
        >>> _ = b.update(logits[2:], target[2:])
        >>> _ = whole.update(logits, target)
        >>> a.merge(b) is a, a.report() == whole.report()  # bitwise the one-pass report
        (True, True)
        """
        if not isinstance(other, Evaluator):
            raise TypeError(f"`other` must be an Evaluator, got {type(other).__name__}")
        if other.keep_per_token != self.keep_per_token:
            raise ValueError(f"`other` has keep_per_token={other.keep_per_token} but this "
                             f"evaluator has keep_per_token={self.keep_per_token}")
        if other.tokens == 0:
            return self
        if self._has_ref is not None and self._has_ref != other._has_ref:
            raise ValueError("`other` was fed {} reference logits but this evaluator {}".format(
                *(("with", "without") if other._has_ref else ("without", "with"))))
        for k, s in self._sums.items():
            s.merge(other._sums[k])
        self.tokens += other.tokens
        self.correct += other.correct
        self.same_top += other.same_top
        self._kl.extend(a.copy() for a in other._kl)
        self._dp.extend(a.copy() for a in other._dp)
        self._has_ref = other._has_ref
        return self

    # ---- serialisation
    def state_dict(self) -> Dict[str, Any]:
        """Everything the evaluator holds, as plain NumPy arrays and numbers.

        The dict can be saved with ``np.savez`` (or pickled, or sent between
        processes) and given to `from_state_dict`.  Exact totals are int64 arrays;
        kept per-token values are float32 arrays.

        Returns
        -------
        dict
            Plain ints and bools (``version``, ``tokens``, ...) and NumPy arrays
            (``sum_*``: exact totals; ``kl_values``, ``delta_p_values``).

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]))
        >>> state = ev.state_dict()
        >>> state["tokens"], state["sum_nll"].dtype
        (3, dtype('int64'))
        """
        d: Dict[str, Any] = {
            "version": STATE_VERSION,
            "ignore_index": self.ignore_index,
            "keep_per_token": self.keep_per_token,
            "axis": self.axis,
            "has_ref": -1 if self._has_ref is None else int(self._has_ref),
            "tokens": self.tokens,
            "correct": self.correct,
            "same_top": self.same_top,
        }
        for k, s in self._sums.items():
            d["sum_" + k] = s.encode()
        d["kl_values"] = _cat(self._kl)
        d["delta_p_values"] = _cat(self._dp)
        return d

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], *, n_threads: int | None = None) -> "Evaluator":
        """An evaluator restored from `state_dict` (a dict or an ``np.load`` npz file).

        Parameters
        ----------
        state : dict or numpy.lib.npyio.NpzFile
            What `state_dict` returned, possibly saved with ``np.savez`` and loaded.
        n_threads : int, optional
            Threads for later `update` calls (not part of the state).

        Returns
        -------
        Evaluator
            Whose `report` is bitwise the saved evaluator's, and which can be
            updated and merged further.

        Raises
        ------
        ValueError
            If `state` misses entries or has an unknown version.

        Examples
        --------
        >>> import io
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]), ref_logits=logits[::-1])
        >>> buf = io.BytesIO()
        >>> np.savez(buf, **ev.state_dict())
        >>> _ = buf.seek(0)
        >>> back = Evaluator.from_state_dict(np.load(buf))
        >>> back, back.report() == ev.report()
        (<Evaluator: 3 tokens, with reference>, True)
        """
        try:
            version = int(state["version"])
            if version != STATE_VERSION:
                raise ValueError(f"`state` has version {version}; this fastxent reads version "
                                 f"{STATE_VERSION}")
            ev = cls(int(state["ignore_index"]), bool(state["keep_per_token"]),
                     axis=int(state["axis"]), n_threads=n_threads)
            has_ref = int(state["has_ref"])
            ev._has_ref = None if has_ref < 0 else bool(has_ref)
            ev.tokens, ev.correct, ev.same_top = (int(state[k]) for k in ("tokens", "correct", "same_top"))
            ev._sums = {k: ExactSum.decode(state["sum_" + k]) for k in SUMS + REF_SUMS}
            kl = np.asarray(state["kl_values"], dtype=np.float32)
            dp = np.asarray(state["delta_p_values"], dtype=np.float32)
        except KeyError as e:
            raise ValueError(f"`state` is not an Evaluator state: no entry {e}") from None
        ev._kl, ev._dp = ([kl.copy()], [dp.copy()]) if kl.size else ([], [])
        return ev

    # ---- report
    def report(self) -> EvaluatorReport:
        """The statistics of every token seen so far.

        Returns
        -------
        dict
            Plain floats and ints (NaN where undefined, e.g. no tokens):

            ``tokens``; ``nll_mean``, ``nll_err``; ``ppl``, ``ppl_err``, ``ppl_ci95``
            (a [low, high] list); ``bits_per_token``, ``bits_per_token_err``;
            ``top1_accuracy``, ``top1_accuracy_err``; ``entropy_mean``.
            With reference logits also: ``ref_nll_mean``, ``ref_ppl``, ``ref_ppl_err``;
            ``nll_correlation`` (of the per-token NLLs of the two models);
            ``ln_ppl_ratio``, ``ln_ppl_ratio_err`` (mean of ``nll - ref_nll``);
            ``ppl_ratio``, ``ppl_ratio_err``; ``kl_mean``, ``kl_err``; ``same_top``,
            ``same_top_err``; ``delta_p_mean``, ``delta_p_err``, ``delta_p_rms``,
            ``delta_p_rms_err`` (delta-p = model minus reference probability of the
            target); and, with `keep_per_token`, ``kl_percentiles`` and
            ``delta_p_percentiles``: dicts with keys ``max``, ``p99.9``, ``p99``,
            ``p95``, ``p90``, ``median``, ``p10``, ``p5``, ``p1``, ``p0.1``, ``min``.

        Examples
        --------
        >>> import numpy as np
        >>> from fastxent import Evaluator
        >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [0.1, 0.6, 0.3]]))
        >>> ev = Evaluator()
        >>> _ = ev.update(logits, np.array([0, 2, 1]))
        >>> _ = ev.update(logits[:1], np.array([1]))
        >>> rep = ev.report()        # target probabilities 0.7, 0.5, 0.6 and 0.2
        >>> rep["tokens"], rep["top1_accuracy"]
        (4, 0.75)
        >>> round(rep["ppl"], 6) == round(float(np.exp(-np.log([0.7, 0.5, 0.6, 0.2]).mean())), 6)
        True
        >>> Evaluator().report()["ppl"]             # no tokens yet
        nan
        """
        keep = self.keep_per_token and bool(self._has_ref) and self.tokens > 0
        return make_report(self.tokens, self.correct, self.same_top, self._sums, self._has_ref,
                           _cat(self._kl) if keep else None, _cat(self._dp) if keep else None)


def _cat(parts: List[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
