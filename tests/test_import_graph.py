"""The package's layers: no import points up a layer.

The verified core (``course_lib/*.py`` and ``course_lib/distributed/``) <- ``experiments/lab``
<- ``experiments/probes`` <- the chapter experiments (``experiments/*.py``); ``exercises/`` and
``page/`` use the core only (and themselves). Every import statement of every module counts,
the ones inside functions too, so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "course_lib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    """core, lab, probes, chapters, exercises or page."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ("exercises", "page"):
        return parts[1]
    if len(parts) >= 2 and parts[1] == "experiments":
        if len(parts) >= 3 and parts[2] in ("lab", "probes"):
            return parts[2]
        return "chapters"
    return "core"


#: What each layer may import (besides itself): the layers below it.
ALLOWED = {
    "core": {"core"},
    "lab": {"core", "lab"},
    "probes": {"core", "lab", "probes"},
    "chapters": {"core", "lab", "probes", "chapters"},
    "exercises": {"core", "exercises"},
    "page": {"core", "page"},
}


def _imports(path: Path) -> list[str]:
    """Every course_lib module ``path`` imports, relative imports resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            # "from course_lib import nn" imports the module course_lib.nn
            found += [f"{target}.{alias.name}" for alias in node.names]
    return [name for name in found if name.split(".")[0] == "course_lib"]


MODULES = sorted(PACKAGE.rglob("*.py"))

#: Upward imports still to be moved, each with who moves it. Strict: once one is gone the test
#: passes unexpectedly and fails, so the entry cannot outlive the import.
KNOWN: dict[str, str] = {}


def test_every_layer_holds_modules():
    layers = {_layer(_module_name(p)) for p in MODULES}
    assert layers == set(ALLOWED)


def test_the_layer_rule_itself():
    assert _layer("course_lib.normalization") == "core"
    assert _layer("course_lib.distributed.sync_bn") == "core"
    assert _layer("course_lib.experiments.lab.models") == "lab"
    assert _layer("course_lib.experiments.probes.noisy_bn") == "probes"
    assert _layer("course_lib.experiments.small_batches") == "chapters"
    assert _layer("course_lib.page.display") == "page"


def _marks(path: Path) -> list:
    reason = KNOWN.get(_module_name(path))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.mark.parametrize("path", [pytest.param(p, marks=_marks(p)) for p in MODULES],
                         ids=lambda p: _module_name(p))
def test_no_import_points_up_a_layer(path):
    layer = _layer(_module_name(path))
    upward = sorted({name for name in _imports(path)
                     if name not in ("course_lib",) and _layer(name) not in ALLOWED[layer]
                     and not _is_package_root(name)})
    assert not upward, (
        f"{_module_name(path)} ({layer}) imports {upward}; it may use only "
        f"{sorted(ALLOWED[layer])}: move what it needs down a layer")


def _is_package_root(name: str) -> bool:
    # "from course_lib.experiments import claims" names the package on its way to claims.
    return name in ("course_lib.experiments", "course_lib.exercises", "course_lib.page")
