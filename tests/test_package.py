"""course_lib installs on its own: what a learner's `pip install` gets imports nothing undeclared.

Learners install course_lib on Colab with pip, beside whatever Colab has; only the
dependencies in pyproject.toml come with it. These tests build the wheel, check that it holds
the package and nothing else (the maintainer tools in tools/ stay out), and import every one
of its modules in a fresh interpreter that can import only the standard library, the declared
dependencies and what they themselves require. A scan of every import statement, including
the ones inside functions, catches what importing the modules does not run.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "course_lib"


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]


def _declared() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [_requirement_name(r) for r in project["dependencies"]]


def _closure(names: list[str]) -> set[str]:
    """The declared distributions and everything they require (extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency that is not installed here
        todo += [_requirement_name(r) for r in requires if "extra ==" not in r]
    return seen


def _top_level_modules(distribution: str) -> set[str]:
    dist = metadata.distribution(distribution)
    top = dist.read_text("top_level.txt")
    if top:
        return set(top.split())
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".data", ".pth")) or first == "..":
            continue
        names.add(first.removesuffix(".py").split(".")[0])
    return names


def _allowed_modules() -> set[str]:
    allowed = set(sys.stdlib_module_names) | {"course_lib"}
    for dist in _closure(_declared()):
        try:
            allowed |= _top_level_modules(dist)
        except metadata.PackageNotFoundError:
            continue
    return allowed


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_in_the_package_is_declared():
    allowed = _allowed_modules()
    undeclared = {
        str(path.relative_to(ROOT)): sorted(_imported_top_levels(path) - allowed)
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    undeclared = {path: names for path, names in undeclared.items() if names}
    assert not undeclared, (
        f"course_lib imports modules that pyproject.toml does not declare: {undeclared}; "
        "declare them, or move the code to tools/ if learners never need it"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Build from a clean copy: setuptools reuses a build/ folder left in the checkout, which
    # would smuggle in modules that no longer exist.
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "course_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("course_lib-*.whl")
    return path


def test_the_wheel_holds_the_package_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        modules = {name for name in archive.namelist() if name.endswith(".py")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"course_lib"}, tops
    shipped = {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    assert modules == shipped, sorted(modules ^ shipped)


#: Run in a fresh interpreter without site (-S: no .pth files, so not the checkout's editable
#: install), with the unpacked wheel first on the path and a finder that refuses course_lib
#: every module outside the standard library and the declared dependencies' closure.
_IMPORT_EVERYTHING = """
import importlib, importlib.abc, pkgutil, sys
allowed = set(sys.argv[2].split(","))
class Refuse(importlib.abc.MetaPathFinder):
    # Refuses an undeclared module only when course_lib itself imports it: what the declared
    # dependencies import is theirs to declare (pip installs it with them).
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in allowed:
            return None
        frame = sys._getframe(1)
        while frame and frame.f_globals.get("__name__", "").startswith(("importlib", "_frozen")):
            frame = frame.f_back
        if frame and frame.f_globals.get("__name__", "").startswith("course_lib"):
            raise ModuleNotFoundError(f"course_lib imports {name!r}, not a declared dependency")
        return None
sys.meta_path.insert(0, Refuse())
sys.path[:0] = [sys.argv[1]] + sys.argv[3].split(",")
import course_lib
assert course_lib.__file__.startswith(sys.argv[1]), course_lib.__file__
names = [m.name for m in pkgutil.walk_packages(course_lib.__path__, "course_lib.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_module_imports_from_the_installed_wheel(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    site_packages = [p for p in sys.path if p.endswith("site-packages")]
    result = subprocess.run(
        [sys.executable, "-S", "-c", _IMPORT_EVERYTHING, str(tmp_path / "site"),
         ",".join(sorted(_allowed_modules())), ",".join(site_packages)],
        capture_output=True, text=True, cwd=tmp_path,
        env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout) >= 20, result.stdout
