"""fastxent: fast, numerically stable log-sum-exp, softmax, cross-entropy and
perplexity over NumPy arrays, in hand-written C with OpenMP threads.

The plain NumPy meaning of every function is in `fastxent.reference`.
"""
import os as _os
import sys as _sys

__version__ = "0.1.0"


def _compiled_here() -> bool:
    here = _os.path.dirname(_os.path.abspath(__file__))
    return any(f.startswith("_core.") and f.endswith((".so", ".pyd")) for f in _os.listdir(here))


if not _compiled_here():
    # This is the source folder of a checkout (no compiled extension), found
    # first because the current directory is on sys.path: load the installed
    # fastxent instead, so that `python -m fastxent` and `pytest` work from
    # the repository root after `pip install .`.
    import importlib.machinery as _machinery
    import importlib.util as _util

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _path = [p for p in _sys.path if _os.path.abspath(p or _os.getcwd()) != _root]
    _spec = _machinery.PathFinder.find_spec("fastxent", _path)
    if _spec is None or _spec.loader is None or _spec.origin == _os.path.abspath(__file__):
        raise ImportError(
            "fastxent's compiled extension is missing: install the package with "
            "`pip install .` (or build in place with `python setup.py build_ext --inplace`)")
    _module = _util.module_from_spec(_spec)
    _sys.modules["fastxent"] = _module
    _spec.loader.exec_module(_module)
else:
    from ._config import (available_isas, get_num_threads, openmp_enabled, set_isa,
                          set_num_threads, show_config)
    from .losses import cross_entropy, perplexity
    from .special import log_softmax, logsumexp, softmax
    from .evaluate import Evaluator, kl_divergence, token_stats
    from . import reference

    __all__ = [
        "logsumexp", "softmax", "log_softmax", "cross_entropy", "perplexity",
        "openmp_enabled", "get_num_threads", "set_num_threads", "show_config",
        "set_isa", "available_isas", "reference", "__version__",
        "token_stats", "kl_divergence", "Evaluator",
    ]
