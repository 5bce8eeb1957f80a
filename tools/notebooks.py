"""Maintainer tools: regenerate the chapters' stored outputs (``make notebooks``).

Learners never need this module. It runs each notebook top to bottom in a fresh kernel, stores
the widgets' state (so the static site can draw them), and removes what differs from run to run
without meaning anything (execution timestamps), so that a regenerated notebook's diff shows
only real changes.

Usage::

    python -m tools.notebooks execute notebooks/*.ipynb
    python -m tools.notebooks colab-cell      # print the install cell for _config.yml's repo
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

#: Marks the first cell of every chapter. Tests find the cell by this line.
COLAB_MARKER = "# Colab only: install course_lib"

_COLAB_CELL = '''\
{marker} (on Binder and locally it is already installed).
import os, sys
if "google.colab" in sys.modules or os.environ.get("COURSE_FORCE_COLAB_INSTALL"):
    import subprocess
    source = os.environ.get("COURSE_LIB_SOURCE", "git+{url}@{branch}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)'''


def repository() -> tuple[str, str]:
    """Return ``(url, branch)`` from ``_config.yml``, the one place that names them."""
    import yaml

    config = yaml.safe_load((_repo_root() / "_config.yml").read_text())
    return config["repository"]["url"], config["repository"]["branch"]


def colab_cell_source() -> str:
    """The source of the Colab install cell that opens every chapter notebook."""
    url, branch = repository()
    return _COLAB_CELL.format(marker=COLAB_MARKER, url=url, branch=branch)


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
    commands.add_parser("colab-cell", help="print the Colab install cell")
    args = parser.parse_args(argv)
    if args.command == "execute":
        # Same hash seed on every machine, so set iteration order can't change an output.
        os.environ.setdefault("PYTHONHASHSEED", "0")
        execute(args.paths)
    else:
        print(colab_cell_source())
    return 0


if __name__ == "__main__":
    sys.exit(main())
