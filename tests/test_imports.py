"""The package's modules use each other's public names only (read from their source with ast).

A private name (``_x``) belongs to its module.  What several modules share lives in a private
module (``_validate``, ``_arrays``, ``_xent``, ...), whose names every module may import; a
public module (``losses``, ``evaluate``, ``dask``, ...) is used by its public names only, as a
user would use it.  So `fastxent.dask` cannot reach into `fastxent.losses` for a helper, and a
check or a constant has one home (the `REDUCTIONS` of the losses, `fastxent.evaluate`,
`fastxent.dask` and `fastxent.torch` is `_validate.REDUCTIONS`).
"""
import ast
import os

import pytest

import fastxent

PACKAGE = os.path.dirname(os.path.abspath(fastxent.__file__))
MODULES = sorted(f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f != "__init__.py")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations(module: str, source: str, modules) -> list:
    """The places where `source` (the text of fastxent.<module>) uses a private name of a public
    module of the package: ``from .losses import _check``, ``from . import _helper`` (a private
    name of the package's ``__init__``), or ``alias._check`` after ``from . import losses as
    alias`` / ``import fastxent.losses as alias``."""
    found = []
    aliases = {}      # local name -> public sibling module it is bound to

    def sibling(mod):  # "fastxent.x" / ".x" -> "x"; the package itself -> ""
        return mod.split(".", 1)[1] if mod.startswith("fastxent.") else ("" if mod == "fastxent" else None)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                target = node.module or ""
            elif node.level == 0 and node.module and sibling(node.module) is not None:
                target = sibling(node.module)
            else:
                continue
            for a in node.names:
                if target == "":           # from . import name: a submodule, or a name of __init__
                    if a.name in modules:
                        if not _private(a.name):
                            aliases[a.asname or a.name] = a.name
                    elif _private(a.name):
                        found.append(f"{module}:{node.lineno}: from . import {a.name} (private to fastxent)")
                elif not _private(target.split(".")[0]) and _private(a.name):
                    found.append(f"{module}:{node.lineno}: from .{target} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                sub = sibling(a.name)
                if sub and a.asname and not _private(sub):
                    aliases[a.asname] = sub
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            found.append(f"{module}:{node.lineno}: {node.value.id}.{node.attr} "
                         f"(a private name of fastxent.{aliases[node.value.id]})")
    return found


def test_the_checker_finds_each_kind_of_violation():
    src = ("from .losses import cross_entropy, _check_target\n"
           "from . import losses as _losses, _core\n"
           "from . import _secret\n"
           "from fastxent.evaluate import _ExactSum\n"
           "import fastxent.losses as fl\n"
           "from ._arrays import as_rows, _layout\n"        # a private module's names: fine
           "x = _losses._nll(1) + fl._reduce(2) + _losses.cross_entropy + _core._private\n")
    got = violations("m", src, {"losses", "evaluate", "_core", "_arrays"})
    assert got == ["m:1: from .losses import _check_target",
                   "m:3: from . import _secret (private to fastxent)",
                   "m:4: from .evaluate import _ExactSum",
                   "m:7: _losses._nll (a private name of fastxent.losses)",
                   "m:7: fl._reduce (a private name of fastxent.losses)"]


@pytest.mark.parametrize("module", MODULES + ["__init__"])
def test_modules_use_only_public_names_of_public_modules(module):
    with open(os.path.join(PACKAGE, module + ".py")) as f:
        source = f.read()
    assert violations(module, source, set(MODULES) | {"_core"}) == []


def test_reductions_defined_once():
    """One tuple of `reduction` values (the reference, the oracle, keeps its own on purpose)."""
    homes = []
    for module in MODULES:
        if module == "reference":
            continue
        with open(os.path.join(PACKAGE, module + ".py")) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
                values = [getattr(e, "value", None) for e in node.value.elts]
                if sorted(map(str, values)) == ["mean", "none", "sum"]:
                    homes.append(module)
    assert homes == ["_validate"]
