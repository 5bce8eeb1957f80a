"""Shared test settings.

Hypothesis profiles: "dev" (default) keeps property tests quick; CI=true selects "ci", which
tries more examples and prints statistics-friendly, reproducible failures.

The browser tests (tests/test_site.py: the static site; tests/test_live_kernel.py: a chapter in
JupyterLab with a running kernel) share one headless Chromium per session, the ``browser``
fixture: Debian's Chromium driven by Playwright for Python, which never downloads a browser of
its own here because it is always given ``executable_path``.
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


# --------------------------------------------------------------------------------------------
# The browser of the browser tests

# Chromium's own background traffic (updates, sync, field trials) is switched off: on a machine
# with no internet it would only fail, and those failures are not the pages'.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM_INSTALL_HINT = (
    "The browser tests need Debian's Chromium. Install it with\n"
    "    sudo apt-get install chromium\n"
    "(`make test` does this itself when run as root), or point CHROMIUM_PATH at a Chromium "
    "or Chrome binary."
)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """$CHROMIUM_PATH, else /usr/bin/chromium; missing, the test fails (never skips)."""
    path = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"no Chromium at {path}.\n{CHROMIUM_INSTALL_HINT}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def browser(chromium_executable):
    """One headless Chromium for the session; each test opens its own context in it."""
    from playwright.sync_api import sync_playwright  # only the browser tests need Playwright

    with sync_playwright() as playwright:
        # Playwright starts Chromium with a new, empty --user-data-dir of its own.
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_FLAGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def offline_route():
    """offline_route(origin, blocked) -> a Playwright route handler that keeps the browser offline.

    Requests to ``origin`` (the local server under test) go through; every other request is
    aborted as if the network were down, and its URL appended to ``blocked`` so the test can
    report it. Used by the static-site and live-kernel tests alike.
    """

    def make(origin: str, blocked: list[str]):
        origin = origin.rstrip("/")

        def route(route):
            url = route.request.url
            if url == origin or url.startswith(origin + "/"):
                route.continue_()
            else:
                blocked.append(url)
                route.abort("internetdisconnected")

        return route

    return make


def pytest_addoption(parser):
    parser.addoption("--envs", action="store_true",
                     help="run the environment tests (tests/test_environments.py; make test-envs)")


def pytest_collection_modifyitems(config, items):
    """The environment tests build virtual environments and run every chapter in each (minutes):
    they run only with ``--envs`` (``make test-envs``, which CI runs after ``make test``).
    The claim tests run first (see below)."""
    if not config.getoption("--envs"):
        skipped = [i for i in items if i.get_closest_marker("envs")]
        if skipped:
            config.hook.pytest_deselected(items=skipped)
            items[:] = [i for i in items if not i.get_closest_marker("envs")]
    # The claims first, slow ones leading: pytest-xdist hands out whole scopes in this order,
    # so the largest scopes start at once and the small files fill the end of the run.
    # (A stable sort: each claim's seeds still come before its aggregate test.)
    items.sort(key=lambda i: (not i.nodeid.startswith("tests/test_claims.py"),
                              i.get_closest_marker("slow") is None))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which a run may not load
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, keep every file's tests on one worker (a notebook's cells share one
    kernel, a module's fixtures are built once), except the environments of
    tests/test_environments.py, each on its own, and tests/test_claims.py, whose tests go
    to workers by the claim's experiment module: the claims of one module share its cached
    runs, and a claim's aggregate test reuses its seeds' runs, while different chapters'
    claims run side by side."""
    from xdist.scheduler import LoadScopeScheduling

    from course_lib.experiments import claims

    module_of = {c.id: c.experiment.__module__ for c in claims.all_claims()}

    class ByFileAndClaimModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, rest = nodeid.partition("::")
            if path.endswith("test_claims.py") and "[" in rest:
                param = rest[rest.index("[") + 1:]
                matches = [cid for cid in module_of if param.startswith(cid)]
                if matches:
                    return "claims:" + module_of[max(matches, key=len)]
            if path.endswith("test_environments.py"):
                return nodeid  # each environment is minutes of its own: side by side
            return path

    return ByFileAndClaimModule(config, log)
