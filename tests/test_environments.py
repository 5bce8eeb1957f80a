"""Every chapter runs where learners run it: a hosted runtime like Colab's, Binder, and the lowest
versions course_lib declares. (`make test-envs`; CI runs it after `make test`.)

Each environment is a fresh virtual environment built from one file of its own:

- **Colab-like** (``tests/envs/colab.txt``): the packages a hosted runtime already has, at its
  versions, and no course_lib. Every chapter runs as a learner downloads it from the built site
  (``_build/html/_sources``) into an empty folder; its first cell installs course_lib from a
  local copy of the repository (``COURSE_LIB_SOURCE``), as it installs it from the repository
  on Colab or in a learner's own Jupyter.
- **Binder** (``binder/requirements.txt`` and ``binder/runtime.txt``): built from those files
  alone, in a copy of the repository, as repo2docker builds it; then every chapter runs.
- **Floors** (``tests/envs/floors.txt``): the lowest versions ``pyproject.toml`` allows
  (checked by ``test_floors_are_what_pyproject_declares``, which runs in ``make test``); the
  library's fast tests and every chapter run there.

The one thing no test here can vary is PyTorch: this machine installs its CPU build of
2.13.0 only (any other release brings gigabytes of CUDA packages), so every environment has
torch 2.13.0 and pyproject declares that floor.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "tests" / "envs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SITE_SOURCES = ROOT / "_build" / "html" / "_sources" / "notebooks"

#: The binder/ folder names the CPU wheel index that Binder uses; this machine reaches only
#: the package registries, whose local copy holds the same torch 2.13.0+cpu wheel, so the test
#: drops that one line and builds from everything else in the folder.
_NO_NETWORK_LINES = re.compile(r"^--extra-index-url\s")

envs = pytest.mark.envs


def _python(version: str) -> str:
    """A Python interpreter of ``version`` ("3.11"): this one, or pyenv's."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        pytest.fail(f"no python{version} on this machine for the environment")
    return found


def _clean_env() -> dict[str, str]:
    # Nothing of the test's own environment may leak in: no PYTHONPATH to a checkout, no
    # virtualenv, no course settings.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("COURSE_")}


def _venv(where: Path, python: str = sys.executable) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def _pip(python: Path, *args: str, cwd: Path | None = None) -> None:
    result = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *args],
                            cwd=cwd, env=_clean_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def _repo_copy(dest: Path) -> Path:
    """The repository's tracked files as they are in the work tree, without .git or builds."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _run_notebook(python: Path, notebook: Path, workdir: Path, env_extra: dict[str, str]) -> None:
    """Execute ``notebook`` top to bottom in a kernel of ``python``, in ``workdir``."""
    from nbclient import NotebookClient
    import nbformat

    spec_dir = workdir / "jupyter" / "kernels" / "env-under-test"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "environment under test", "language": "python",
    }))
    nb = nbformat.read(notebook, as_version=4)
    env = {**_clean_env(), **env_extra, "JUPYTER_PATH": str(workdir / "jupyter")}
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # where the client looks up the kernel
    try:
        client = NotebookClient(nb, timeout=300, kernel_name="env-under-test",
                                resources={"metadata": {"path": str(workdir)}})
        client.execute(env=env)
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved


def _run_chapters(python: Path, notebooks: list[Path], tmp: Path, env_extra: dict[str, str]):
    failures = []
    for nb in notebooks:
        workdir = tmp / nb.stem
        workdir.mkdir()
        shutil.copy2(nb, workdir / nb.name)   # alone in a folder, as downloaded
        try:
            _run_notebook(python, workdir / nb.name, workdir, env_extra)
        except Exception as e:  # report every chapter, not just the first that fails
            failures.append(f"{nb.name}: {type(e).__name__}: {str(e)[-1500:]}")
    assert not failures, "\n\n".join(failures)


def _requirements_without_network(src: Path, dest: Path) -> Path:
    lines = [ln for ln in src.read_text().splitlines() if not _NO_NETWORK_LINES.match(ln)]
    dest.write_text("\n".join(lines) + "\n")
    return dest


@envs
def test_every_chapter_downloaded_from_the_site_runs_in_a_colab_like_runtime(tmp_path):
    assert SITE_SOURCES.is_dir(), "build the book first (make book): the test runs its downloads"
    downloads = sorted(SITE_SOURCES.glob("[0-9][0-9]_*.ipynb"))
    assert [p.name for p in downloads] == [p.name for p in NOTEBOOKS]
    python = _venv(tmp_path / "venv")
    _pip(python, "-r", str(ENVS / "colab.txt"))
    source = _repo_copy(tmp_path / "repository")
    _run_chapters(python, downloads, tmp_path, {"COURSE_LIB_SOURCE": str(source)})
    shown = subprocess.run([str(python), "-m", "pip", "show", "course_lib"], capture_output=True,
                           text=True, env=_clean_env())
    assert shown.returncode == 0, "the first cell should have installed course_lib"


@envs
def test_every_chapter_runs_in_the_binder_environment(tmp_path):
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    version = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert version, f"binder/runtime.txt should read python-X.Y (got {runtime!r})"
    repo = _repo_copy(tmp_path / "repository")
    python = _venv(tmp_path / "venv", _python(version.group(1)))
    reqs = _requirements_without_network(repo / "binder" / "requirements.txt",
                                         tmp_path / "binder-requirements.txt")
    _pip(python, "-r", str(reqs), "ipykernel", cwd=repo)  # repo2docker adds its own kernel
    _run_chapters(python, NOTEBOOKS, tmp_path, {})


@envs
def test_the_library_and_every_chapter_run_on_the_declared_floors(tmp_path):
    python = _venv(tmp_path / "venv")
    _pip(python, "-r", str(ENVS / "floors.txt"))
    repo = _repo_copy(tmp_path / "repository")
    _pip(python, "--no-deps", str(repo))
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-m", "not slow", "-x", *[str(p) for p in FLOOR_TESTS]],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-2000:]
    _run_chapters(python, NOTEBOOKS, tmp_path, {})


#: The tests of the verified core, the page helpers and the graders (each ``course_lib`` module
#: has ``tests/test_<module>.py``): what a version of numpy, matplotlib, ipywidgets or
#: jupyterquiz can break. The experiments run in the chapters, which run here too.
FLOOR_TESTS = sorted(
    {ROOT / "tests" / f"test_{p.stem}.py"
     for p in [*(ROOT / "course_lib").glob("*.py"), *(ROOT / "course_lib" / "page").glob("*.py")]}
    | {ROOT / "tests" / "test_exercises.py"}
    , key=str)
FLOOR_TESTS = [p for p in FLOOR_TESTS if p.exists()]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_floors_are_what_pyproject_declares():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = _pins(ENVS / "floors.txt")
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([^,;\s]+)", dep)
        assert m, f"pyproject.toml: {dep!r} should be 'name>=floor'"
        name, floor = m.group(1).lower(), m.group(2)
        assert floors.get(name) == floor, (
            f"{name}: pyproject.toml declares >={floor}, tests/envs/floors.txt tests "
            f"{floors.get(name)}")


def test_binder_installs_what_the_chapters_import_and_no_maintainer_tools():
    pins = _pins(ROOT / "binder" / "requirements.txt")
    needed = {d.split(">=")[0].lower() for d in
              tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert needed <= set(pins), needed - set(pins)
    assert not {"jupyter-book", "pytest", "playwright", "nbval"} & set(pins)
    assert pins["torch"].endswith("+cpu"), "Binder has no GPU: torch's CPU build"
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    assert "." in lines, "binder/requirements.txt should install course_lib from the repository"
    assert _pins(ROOT / "requirements.txt")["torch"] == pins["torch"].split("+")[0]
