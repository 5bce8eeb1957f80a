"""A chapter with a live kernel: JupyterLab on 127.0.0.1, a real kernel, a real browser.

The static site (tests/test_site.py) shows widgets from their stored state; this file checks
what a learner gets on Binder or on their own machine, where the kernel runs:

- moving chapter 2's γ slider with the keyboard shows the picture of the new γ (a new PNG and
  a new alt text that names it): the slider is the kernel-free one of course_lib.page.slider,
  whose script must also run in JupyterLab's output area;
- chapter 2's bn_forward exercise, answered with the classic mistake (the unbiased variance),
  shows the grader's message for that mistake, with the recipe folded under "Show a solution"
  until clicked; answered correctly, it shows "✓ Correct".

How: a module-scoped JupyterLab (``python -m jupyterlab``, the pinned version) serves copies of
the notebook from a temporary folder, with its own empty Jupyter config, data, settings and
workspace folders so nothing of the person running the tests leaks in, and with every
outgoing check switched off (news, update checks, the PyPI extension manager). The copies have
their outputs and stored widget state removed, so every output on the page is the live
kernel's. The browser (conftest.py's headless Chromium) opens a copy, runs every cell from
JupyterLab's Run menu, waits until all of them have run, then acts as a learner does: the
keyboard on the slider handle; a changed exercise cell (written into the copy before it is
opened, which is what typing would produce, without the editor's flakiness). The browser aborts
every request to a host other than the server, so a green run also shows that JupyterLab, the
widgets and the grader work with no internet access.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "notebooks" / "02_batchnorm_transform.ipynb"
SCREENSHOTS = ROOT / "_build" / "screenshots"

SERVER_START_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 30_000
RUN_ALL_TIMEOUT_MS = 120_000  # one chapter runs in ~10 s alone; the machine is shared
WIDGET_TIMEOUT_MS = 20_000

# Requests to other hosts that are known and are not JupyterLab's: jupyterquiz (the self-check
# questions at the end of the chapter) loads MathJax from a CDN when the page has no global
# MathJax, and JupyterLab keeps its MathJax private. Offline, that request fails and the
# questions' math stays TeX in JupyterLab; the static site serves MathJax itself
# (tests/test_site.py). Any other outside request fails the tests.
KNOWN_OUTSIDE_REQUESTS = {"https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js"}

# JupyterLab settings for the test browser, not a learner's: "none" keeps every cell in the page
# (by default cells out of view are not rendered), and no toast asks whether to fetch news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                   "checkForUpdates": False},
}

STUB_CHECK = 'check("bn_forward_pass", bn_forward)'
UNBIASED_BN_FORWARD = '''\
def bn_forward(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)   # the classic slip: divides by N - 1
    return gamma * (x - mu) / np.sqrt(var + eps) + beta
'''
CORRECT_BN_FORWARD = '''\
def bn_forward(x, gamma, beta, eps):
    mu = x.mean(axis=0)
    var = x.var(axis=0)           # biased: divides by N
    return gamma * (x - mu) / np.sqrt(var + eps) + beta
'''


# --------------------------------------------------------------------------------------------
# The server


@dataclass
class Lab:
    url: str  # ends with "/"
    token: str
    served: Path  # the folder JupyterLab serves: put notebooks here

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


def _read_server_info(runtime: Path, pid: int) -> dict | None:
    info = runtime / f"jpserver-{pid}.json"
    try:
        return json.loads(info.read_text())
    except (OSError, ValueError):  # not written yet, or half written
        return None


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory) -> Lab:
    """JupyterLab on 127.0.0.1 with a random token, serving an empty temporary folder.

    Stopped at the end of the module whatever happens (terminate, then kill), with its kernels.
    """
    base = tmp_path_factory.mktemp("live_kernel")
    served, home = base / "served", base / "jupyter"
    served.mkdir()
    for name in ("config", "data", "runtime", "settings", "workspaces", "ipython"):
        (home / name).mkdir(parents=True)
    for plugin, settings in LAB_SETTINGS.items():
        target = home / "settings" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(settings))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    token = secrets.token_hex(24)
    command = [
        sys.executable, "-m", "jupyterlab",
        # Port 0: the system picks a free one; the server writes it to its runtime file.
        "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={served}",
        "--ServerApp.terminals_enabled=False",
        # Nothing that reaches the internet: news feed, update check, the PyPI-backed
        # extension manager.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    log = base / "server.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, env=env, cwd=served, stdout=log_file,
                                  stderr=subprocess.STDOUT)

    def log_tail() -> str:
        return log.read_text(errors="replace")[-4000:]

    try:
        lab = None
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while lab is None:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log_tail()}",
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n"
                            f"{log_tail()}", pytrace=False)
            info = _read_server_info(home / "runtime", server.pid)
            if info:
                candidate = Lab(url=f"http://127.0.0.1:{info['port']}/", token=token,
                                served=served)
                try:
                    candidate.api("GET", "api/status")
                    lab = candidate
                except (OSError, urllib.error.URLError):
                    pass
            if lab is None:
                time.sleep(0.2)
        yield lab
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Notebooks and pages


def chapter_copy(lab: Lab, name: str, bn_forward_source: str | None = None) -> str:
    """Copy chapter 2 into the served folder with outputs and widget state removed.

    With ``bn_forward_source``, that code replaces the exercise's stub cell (the one that
    raises NotImplementedError), as a learner's answer would. Returns the copy's file name.
    """
    notebook = json.loads(CHAPTER.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook["metadata"].pop("widgets", None)
    if bn_forward_source is not None:
        cells = notebook["cells"]
        stubs = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"
                 and "".join(cell["source"]).startswith("def bn_forward(")
                 and "NotImplementedError" in "".join(cell["source"])]
        assert len(stubs) == 1, f"expected one bn_forward stub cell in {CHAPTER.name}: {stubs}"
        following = "".join(cells[stubs[0] + 1]["source"]).strip()
        assert following == STUB_CHECK, f"the stub is followed by {following!r}, not the check"
        cells[stubs[0]]["source"] = bn_forward_source
    path = lab.served / f"{name}.ipynb"
    path.write_text(json.dumps(notebook))
    return path.name


@dataclass
class LabPage:
    page: object
    blocked: list[str] = field(default_factory=list)


@pytest.fixture
def open_notebook(browser, jupyterlab, offline_route):
    """open_notebook(file name) -> LabPage: the notebook in JupyterLab, its kernel idle.

    Each test gets a fresh offline browser context; at the end its kernels are shut down.
    """
    origin = jupyterlab.url.rstrip("/")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)

    def open_(name: str) -> LabPage:
        page = context.new_page()
        opened = LabPage(page=page)

        page.route("**/*", offline_route(origin, opened.blocked))
        # A workspace of its own, reset: JupyterLab would otherwise reopen (and start kernels
        # for) the notebooks of earlier tests, which it remembers on the server.
        workspace = Path(name).stem
        page.goto(f"{jupyterlab.url}lab/workspaces/{workspace}/tree/{name}"
                  f"?reset&token={jupyterlab.token}")
        n_cells = len(json.loads((jupyterlab.served / name).read_text())["cells"])
        # Loaded: every cell of the file is in the page, and the kernel has started.
        page.wait_for_function(
            "n => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length === n",
            arg=n_cells, timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(
            "() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar').textContent)",
            timeout=PAGE_TIMEOUT_MS)
        return opened

    yield open_
    context.close()
    for session in jupyterlab.api("GET", "api/sessions"):
        jupyterlab.api("DELETE", f"api/sessions/{session['id']}")


# Polled after Run All: false while a cell is queued or running (or none has run yet), then
# "done" if every code cell has an execution count, else "stopped" (a cell raised, and JupyterLab
# dropped the cells after it).
RUN_STATE_JS = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
                    .map(p => p.textContent.trim());
  const ran = prompts.filter(p => /^\[\d+\]:$/.test(p)).length;
  if (prompts.some(p => p.includes('*')) || ran === 0) return false;
  return ran === prompts.length ? 'done' : 'stopped';
}"""


def run_all(lab_page: LabPage) -> None:
    """Run every cell from the Run menu and wait until all have run; fail on an error."""
    page = lab_page.page
    page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    state = page.wait_for_function(RUN_STATE_JS, polling=200, timeout=RUN_ALL_TIMEOUT_MS)
    if state.json_value() != "done":
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        texts = [errors.nth(i).inner_text()[-1500:] for i in range(errors.count())]
        prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt")
        pytest.fail("Run All stopped before the last cell. Prompts: "
                    f"{' '.join(prompts.all_text_contents())}\nError output:\n"
                    + "\n---\n".join(texts), pytrace=False)


def code_cell(page, fragment: str, *, whole: bool = False):
    """The chapter's one code cell whose source contains ``fragment`` (or is it, ``whole``).

    Found in the file, by its source, then taken from the page by its position among the code
    cells (every cell is in the page: windowingMode "none"), and checked against the page's
    editor, whose first line must be the file's.
    """
    sources = ["".join(cell["source"]).strip()
               for cell in json.loads(CHAPTER.read_text())["cells"] if cell["cell_type"] == "code"]
    found = [i for i, source in enumerate(sources)
             if (source == fragment.strip() if whole else fragment in source)]
    assert len(found) == 1, f"expected one code cell of {CHAPTER.name} with {fragment!r}: {found}"
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell").nth(found[0])
    first_line = cell.locator(".cm-content .cm-line").first.text_content()
    assert first_line == sources[found[0]].splitlines()[0], (
        f"the page's code cell {found[0]} starts with {first_line!r}, not as the file's")
    return cell


def screenshot(locator, name: str) -> None:
    # For a person to look at, next to test_site.py's.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SCREENSHOTS / f"live-kernel__{name}.png"))


def assert_offline(lab_page: LabPage) -> None:
    unexpected = sorted(set(lab_page.blocked) - KNOWN_OUTSIDE_REQUESTS)
    assert not unexpected, (
        "requests to another host (JupyterLab and the chapter must work offline):\n  "
        + "\n  ".join(unexpected))


# --------------------------------------------------------------------------------------------
# Item 3: a live kernel


def test_gamma_slider_redraws_its_picture(jupyterlab, open_notebook):
    lab_page = open_notebook(chapter_copy(jupyterlab, "02_slider"))
    page = lab_page.page
    run_all(lab_page)

    # The slider the kernel just made (course_lib.page.slider): its pictures are in the
    # output, and the output's own script swaps them, in JupyterLab as on the static site.
    cell = code_cell(page, "gamma_slider = picture_slider(")
    slider = cell.locator(".course-slider", has=page.locator("label", has_text=re.compile("^γ$")))
    control = slider.locator("input[type='range']")
    readout = slider.locator("output")
    image = slider.locator("img")
    control.wait_for(timeout=WIDGET_TIMEOUT_MS)
    image.wait_for(timeout=WIDGET_TIMEOUT_MS)
    assert readout.inner_text() == "1.00", f"the γ slider starts at {readout.inner_text()!r}"
    before = {"src": image.get_attribute("src"), "alt": image.get_attribute("alt")}
    assert before["src"].startswith("data:image/png;base64,"), before["src"][:60]
    assert "gamma = 1," in before["alt"], before["alt"]

    # A learner's keyboard: focus the slider, three steps right (step 0.25: 1.00 -> 1.75).
    control.focus()
    for _ in range(3):
        control.press("ArrowRight")
    try:
        page.wait_for_function(
            """cell => cell.querySelector('.course-slider output').textContent.trim() === '1.75'
                       && cell.querySelector('.course-slider img').alt.includes('gamma = 1.75,')""",
            arg=cell.element_handle(), timeout=WIDGET_TIMEOUT_MS)
    except PlaywrightTimeout:
        pytest.fail(f"the picture did not follow the slider to γ = 1.75; readout "
                    f"{readout.inner_text()!r}, alt text {image.get_attribute('alt')!r}",
                    pytrace=False)
    after = {"src": image.get_attribute("src"), "alt": image.get_attribute("alt")}
    assert after["src"].startswith("data:image/png;base64,"), after["src"][:60]
    assert after["src"] != before["src"], "the slider moved but the picture is the same PNG"
    assert after["alt"] != before["alt"]
    # The keys moved the slider, not JupyterLab's cell selection.
    assert control.evaluate("e => e === document.activeElement"), "the slider lost the focus"
    screenshot(cell, "gamma-slider")
    assert_offline(lab_page)


@pytest.mark.parametrize(
    ("answer", "source", "expected", "not_expected"),
    [
        pytest.param("unbiased-variance", UNBIASED_BN_FORWARD,
                     ["✗ Not yet", "Looks like: unbiased variance"], ["✓ Correct"],
                     id="unbiased-variance"),
        pytest.param("correct", CORRECT_BN_FORWARD, ["✓ Correct"], ["✗ Not yet", "Looks like"],
                     id="correct"),
    ],
)
def test_bn_forward_grader_answers_in_the_page(jupyterlab, open_notebook, answer, source,
                                               expected, not_expected):
    lab_page = open_notebook(chapter_copy(jupyterlab, f"02_{answer}", bn_forward_source=source))
    page = lab_page.page
    run_all(lab_page)

    # The check right after the answer (the solution further down has its own check).
    cell = code_cell(page, STUB_CHECK, whole=True)
    feedback = cell.locator(".jp-OutputArea .course-feedback")
    try:
        feedback.wait_for(timeout=WIDGET_TIMEOUT_MS)
    except PlaywrightTimeout:
        pytest.fail(f"no grader feedback under {STUB_CHECK}; the output shows: "
                    f"{cell.locator('.jp-OutputArea').inner_text()!r}", pytrace=False)
    text = feedback.inner_text()
    for phrase in expected:
        assert phrase in text, f"{answer}: {phrase!r} not in the grader's box:\n{text}"
    for phrase in not_expected:
        assert phrase not in text, f"{answer}: {phrase!r} in the grader's box:\n{text}"
    # A wrong answer's recipe is folded away until the learner asks for it.
    details = feedback.locator("details")
    if answer == "correct":
        assert details.count() == 0, "a pass has no solution to show"
    else:
        assert details.count() == 1 and details.get_attribute("open") is None
        recipe = details.locator("pre")
        assert not recipe.is_visible(), "the solution must stay folded until asked for"
        assert "Algorithm 1" not in text
        details.locator("summary", has_text="Show a solution").click()
        recipe.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
        assert "Algorithm 1" in recipe.inner_text()
    screenshot(cell, f"bn-forward-{answer}")
    assert_offline(lab_page)

