"""Shared test settings.

Hypothesis profiles: "dev" (default) keeps property tests quick; CI=true selects "ci", which
tries more examples and prints statistics-friendly, reproducible failures.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from hypothesis import HealthCheck, settings

# Tests draw figures without a screen.
matplotlib.use("Agg")

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run torch on one thread for the whole session.

    The course's tensors and networks are tiny: intra-op threads gain nothing, and on a busy
    2-core machine idle-waiting workers triple the run time. Notebooks under nbval run in their
    own kernels and are not affected.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> Path:
    """The website, built once per test session as `make book` builds it, into a temporary folder.

    Shared by tests/test_book.py (what the build writes) and tests/test_site.py (what a browser
    shows); returns the folder that holds index.html.
    """
    out = tmp_path_factory.mktemp("site")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(REPO_ROOT), "--path-output", str(out),
         "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    assert "WARNING" not in log, f"the build printed warnings:\n{log[-6000:]}"
    yield out / "_build" / "html"
    shutil.rmtree(out, ignore_errors=True)
