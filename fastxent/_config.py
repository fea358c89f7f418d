"""Run-time configuration: threads and instruction set.

One function, `resolve_n_threads`, turns every `n_threads` argument into a
thread count (scikit-learn's `_openmp_effective_n_threads` is the model).
"""
from __future__ import annotations

import os
import threading
import warnings

from . import _core
from .typing import ShowConfig

_ISA_NAMES = [_core.isa_name(i) for i in range(_core.ISA_COUNT)]
_lock = threading.Lock()
_default_threads: int | None = None


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def openmp_enabled() -> bool:
    """Whether this build of fastxent has OpenMP threads.

    Returns
    -------
    bool
        True when the extension was compiled with OpenMP; False for a serial
        build (no OpenMP found, or built with ``FASTXENT_NO_OPENMP=1``), where
        every ``n_threads`` resolves to 1.

    Examples
    --------
    >>> import fastxent
    >>> isinstance(fastxent.openmp_enabled(), bool)
    True
    """
    return _core.openmp_enabled()


def get_num_threads() -> int:
    """Number of threads a call with ``n_threads=None`` uses.

    Returns
    -------
    int
        The value given to `set_num_threads`, or else OpenMP's current
        maximum (which follows ``OMP_NUM_THREADS`` and
        ``threadpoolctl.threadpool_limits(user_api="openmp")``); 1 without
        OpenMP.

    Examples
    --------
    >>> import fastxent
    >>> fastxent.get_num_threads() >= 1
    True
    """
    return resolve_n_threads(None)


def set_num_threads(n_threads: int | None) -> int | None:
    """Set the default thread count of every fastxent function.

    Parameters
    ----------
    n_threads : int or None
        Threads for calls made with ``n_threads=None``.  Negative values count
        back from the number of CPUs (-1: all of them, -2: all but one).
        None restores the OpenMP default.

    Returns
    -------
    int or None
        The previous setting (None when none was set), so that a caller can
        restore it.

    Raises
    ------
    ValueError
        If `n_threads` is 0.
    TypeError
        If `n_threads` is not an integer or None.

    Examples
    --------
    >>> import fastxent
    >>> old = fastxent.set_num_threads(1)
    >>> fastxent.get_num_threads()
    1
    >>> _ = fastxent.set_num_threads(old)
    """
    global _default_threads
    if n_threads is not None:
        _check_threads_arg(n_threads)
    with _lock:
        old, _default_threads = _default_threads, n_threads
    return old


def _check_threads_arg(n_threads: int) -> None:
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not hasattr(n_threads, "__index__"):
        raise TypeError(f"`n_threads` must be an integer or None, got {n_threads!r}")
    if int(n_threads) == 0:
        raise ValueError("`n_threads` must be a non-zero integer or None, got 0")


#: most threads one call starts (a larger request is capped: libgomp aborts or crashes when
#: asked for tens of thousands of threads)
MAX_THREADS = 256

# GNU libgomp's thread pool does not survive fork(): a child that starts a parallel
# region after its parent used one hangs.  A forked child therefore runs serially.
_forked_child = False


def _after_fork_in_child() -> None:
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def resolve_n_threads(n_threads: int | None) -> int:
    """Thread count for one call: None -> default; -k -> cpus + 1 - k; capped at MAX_THREADS;
    1 without OpenMP and in a process forked from one that imported fastxent."""
    if n_threads is None:
        n_threads = _default_threads
        if n_threads is None:
            n_threads = max(1, _core.omp_max_threads())
    _check_threads_arg(n_threads)
    n = int(n_threads)
    if n < 0:
        n = max(1, _cpu_count() + 1 + n)
    if not _core.openmp_enabled() or _forked_child:
        return 1
    return min(n, MAX_THREADS)


def _isa_from_env() -> int:
    """The ISA cap named by ``FASTXENT_ISA`` (the best compiled one when it is unset or empty).

    An unknown name warns (RuntimeWarning) and falls back to automatic selection rather than
    making ``import fastxent`` fail: a typo in an environment variable should not break every
    program that imports the package.
    """
    raw = os.environ.get("FASTXENT_ISA", "")
    cap = raw.strip().lower()
    if not cap:
        return _core.ISA_COUNT - 1
    if cap not in _ISA_NAMES:
        warnings.warn(f"FASTXENT_ISA={raw!r} is not one of {', '.join(_ISA_NAMES)}; ignoring it "
                      "and choosing the best instruction set this CPU supports",
                      RuntimeWarning, stacklevel=2)
        return _core.ISA_COUNT - 1
    return _ISA_NAMES.index(cap)


def set_isa(isa: str | None) -> str:
    """Cap the instruction set the kernels use (testing and benchmarking).

    Parameters
    ----------
    isa : str or None
        One of ``"baseline"``, ``"avx2"``, ``"avx512"``; the best variant that
        is compiled, supported by this CPU and not above `isa` is chosen.
        None chooses the best available (the import-time default, unless the
        environment variable ``FASTXENT_ISA`` caps it; an unknown name there
        gives a RuntimeWarning at import and is ignored).

    Returns
    -------
    str
        The instruction set now in use.

    Raises
    ------
    ValueError
        If `isa` is not a known name.

    Examples
    --------
    >>> import fastxent
    >>> fastxent.set_isa("baseline")
    'baseline'
    >>> _ = fastxent.set_isa(None)
    """
    if isa is None:
        cap = _core.ISA_COUNT - 1
    elif isa in _ISA_NAMES:
        cap = _ISA_NAMES.index(isa)
    else:
        raise ValueError(f"`isa` must be one of {_ISA_NAMES} or None, got {isa!r}")
    return _ISA_NAMES[_core.isa_select(cap)]


def available_isas() -> list[str]:
    """Instruction sets this build and this CPU can run, best last.

    Returns
    -------
    list of str
        For example ``['baseline', 'avx2', 'avx512']`` on a recent x86-64 CPU.

    Examples
    --------
    >>> import fastxent
    >>> fastxent.available_isas()[0]
    'baseline'
    """
    return [n for i, n in enumerate(_ISA_NAMES) if _core.isa_supported(i)]


def show_config(print_out: bool = True) -> ShowConfig:
    """Report the build and run-time configuration.

    Parameters
    ----------
    print_out : bool, optional
        Print the report (default) as well as returning it.

    Returns
    -------
    dict
        ``isa`` (in use), ``isas_available``, ``isas_compiled``,
        ``isas_emulated`` (compiled variants whose intrinsics are emulated:
        ``['avx512']`` in a ``FASTXENT_SIMDE=1`` test build, where the AVX-512
        variant runs on AVX2 CPUs through SIMDe; else empty), ``openmp``,
        ``n_threads`` (what ``n_threads=None`` resolves to) and ``version``.

    Examples
    --------
    >>> import fastxent
    >>> cfg = fastxent.show_config(print_out=False)
    >>> sorted(cfg)
    ['isa', 'isas_available', 'isas_compiled', 'isas_emulated', 'n_threads', 'openmp', 'version']
    """
    from . import __version__

    cfg: ShowConfig = {
        "version": __version__,
        "isa": _ISA_NAMES[_core.isa_current()],
        "isas_available": available_isas(),
        "isas_compiled": [n for i, n in enumerate(_ISA_NAMES) if _core.isa_compiled(i)],
        "isas_emulated": [n for i, n in enumerate(_ISA_NAMES) if _core.isa_emulated(i)],
        "openmp": openmp_enabled(),
        "n_threads": get_num_threads(),
    }
    if print_out:
        for k, v in cfg.items():
            print(f"{k:>15}: {v}")
    return cfg


_core.isa_select(_isa_from_env())
