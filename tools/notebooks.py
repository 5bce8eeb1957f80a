"""Maintainer tools: regenerate the chapters' stored outputs (``make notebooks``).

Learners never need this module. It runs each notebook top to bottom in a fresh kernel, stores
the widgets' state (so the static site can draw them), and removes what differs from run to run
without meaning anything (execution timestamps), so that a regenerated notebook's diff shows
only real changes.

Usage::

    python -m tools.notebooks execute notebooks/*.ipynb
    python -m tools.notebooks install-cell    # print the install cell for _config.yml's repo
    python -m tools.notebooks write-install-cell notebooks/*.ipynb   # put it in every chapter
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

#: Marks the first cell of every chapter. Tests find the cell by this line.
INSTALL_MARKER = "# Install course_lib where it is missing"

# The first cell of every chapter. It does nothing where course_lib can be imported (a clone
# with `make setup`, Binder); elsewhere (Colab, a notebook downloaded from the site, a fresh
# Jupyter) it installs course_lib from the repository named in _config.yml.
# COURSE_LIB_SOURCE points it at another source (the tests use a local copy).
_INSTALL_CELL = '''\
{marker}: Colab, a downloaded notebook, a fresh Jupyter.
import importlib, importlib.util, os, subprocess, sys
if importlib.util.find_spec("course_lib") is None:
    source = os.environ.get("COURSE_LIB_SOURCE", "git+{url}@{branch}")
    print(f"Installing course_lib from {{source}} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    importlib.invalidate_caches()'''


def repository() -> tuple[str, str]:
    """Return ``(url, branch)`` from ``_config.yml``, the one place that names them."""
    import yaml

    config = yaml.safe_load((_repo_root() / "_config.yml").read_text())
    return config["repository"]["url"], config["repository"]["branch"]


def install_cell_source() -> str:
    """The source of the install cell that opens every chapter notebook."""
    url, branch = repository()
    return _INSTALL_CELL.format(marker=INSTALL_MARKER, url=url, branch=branch)


def write_install_cell(paths: list[Path]) -> None:
    """Make the first cell of each notebook the current install cell (sources only)."""
    import nbformat

    for path in paths:
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        if first.cell_type != "code" or not first.source.startswith("# "):
            raise SystemExit(f"{path}: the first cell is not the install cell")
        if first.source != install_cell_source():
            first.source = install_cell_source()
            nbformat.write(nb, path)
            print(f"{path}: install cell updated")


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def execute(paths: list[Path], timeout: int = 600) -> None:
    """Run each notebook in a fresh kernel and write it back with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
            store_widget_state=True,
        )
        client.execute()
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nb.metadata.pop("papermill", None)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"{path}: executed in {time.perf_counter() - start:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.notebooks")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("execute", help="execute notebooks in place, storing outputs")
    run.add_argument("paths", nargs="+", type=Path)
    commands.add_parser("install-cell", help="print the install cell")
    write = commands.add_parser("write-install-cell",
                                help="make the first cell of each notebook the install cell")
    write.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "execute":
        # Same hash seed on every machine, so set iteration order can't change an output.
        os.environ.setdefault("PYTHONHASHSEED", "0")
        execute(args.paths)
    elif args.command == "write-install-cell":
        write_install_cell(args.paths)
    else:
        print(install_cell_source())
    return 0


if __name__ == "__main__":
    sys.exit(main())
