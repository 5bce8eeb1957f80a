"""Every chapter notebook has the course's skeleton and stored outputs fit to publish.

nbval (run by the same pytest command) re-executes the notebooks and compares outputs; these
tests check what nbval does not: the shared chapter skeleton, the Colab install cell, that the
stored outputs come from one top-to-bottom run, and that figures have captions and alt text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tools.notebooks import install_cell_source

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def source(cell: dict) -> str:
    return "".join(cell["source"])


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_every_chapter_is_in_the_table_of_contents_and_nothing_else():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    chapters = [f for f in listed if f.startswith("notebooks/")]
    assert chapters == [f"notebooks/{p.stem}" for p in NOTEBOOKS], (chapters, NOTEBOOKS)
    numbers = [int(Path(f).name.split("_")[0]) for f in chapters]
    assert numbers == list(range(1, len(numbers) + 1)), f"chapters must be numbered 1..n: {numbers}"


#: The nbval tag of cells whose printed numbers come from training runs or long float
#: reductions: nbval runs them and their asserts, but does not compare what they print.
MACHINE_DEPENDENT = "nbval-ignore-output"
#: Tags that would let a cell escape the test: never used.
ESCAPES = {"nbval-skip", "skip-execution", "raises-exception", "nbval-raises-exception"}
YOUR_NUMBERS_NOTE = "Your numbers may differ slightly"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestPortableOutputs:
    """Two tiers of output checking (see the README): exact by default; cells tagged
    machine-dependent are still run, and must assert the claim their numbers support."""

    def test_no_cell_escapes_the_test(self, path):
        for cell in code_cells(load(path)):
            tags = set(cell["metadata"].get("tags", []))
            assert not tags & ESCAPES, f"{path.name}: never skip a cell ({source(cell)[:60]!r})"

    def test_machine_dependent_cells_assert_their_claim(self, path):
        for cell in code_cells(load(path)):
            if MACHINE_DEPENDENT in cell["metadata"].get("tags", []):
                assert re.search(r"^\s*assert ", source(cell), re.M), (
                    f"{path.name}: a cell whose printed numbers are not compared must assert "
                    f"its claim itself ({source(cell)[:60]!r})"
                )

    def test_most_cells_are_compared_exactly(self, path):
        cells = code_cells(load(path))
        ignored = [c for c in cells if MACHINE_DEPENDENT in c["metadata"].get("tags", [])]
        assert len(ignored) < len(cells) / 3, (
            f"{path.name}: {len(ignored)} of {len(cells)} code cells ignore their output"
        )

    def test_the_chapter_says_where_numbers_may_differ(self, path):
        nb = load(path)
        if any(MACHINE_DEPENDENT in c["metadata"].get("tags", []) for c in code_cells(nb)):
            assert YOUR_NUMBERS_NOTE in source(nb["cells"][1]), (
                f"{path.name}: has machine-dependent cells, so its introduction must say so"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestChapterSkeleton:
    def test_opens_with_the_install_cell(self, path):
        first = load(path)["cells"][0]
        assert first["cell_type"] == "code"
        assert source(first) == install_cell_source(), (
            f"{path.name}: the first cell must be the install cell; "
            "write it with `python -m tools.notebooks write-install-cell notebooks/*.ipynb`"
        )
        assert "remove-cell" in first["metadata"].get("tags", [])

    def test_title_then_learning_objectives(self, path):
        cells = load(path)["cells"]
        title = source(cells[1])
        assert cells[1]["cell_type"] == "markdown"
        number = int(path.stem.split("_")[0])
        assert re.match(rf"# {number}\. \S", title), f"{path.name}: title must start '# {number}. '"
        assert "Learning objectives" in title

    def test_closes_with_summary_and_exercises(self, path):
        headings = [
            line for c in load(path)["cells"] if c["cell_type"] == "markdown"
            for line in source(c).splitlines() if line.startswith("## ")
        ]
        assert "## Summary" in headings, f"{path.name} has no '## Summary' section"
        assert "## Exercises" in headings, f"{path.name} has no '## Exercises' section"
        assert headings.index("## Summary") < headings.index("## Exercises")

    def test_outputs_come_from_one_top_to_bottom_run(self, path):
        counts = [c["execution_count"] for c in code_cells(load(path)) if source(c).strip()]
        assert counts == list(range(1, len(counts) + 1)), (
            f"{path.name}: stored outputs are not from one fresh run; run `make notebooks`"
        )

    def test_no_errors_warnings_or_skipped_cells(self, path):
        for cell in code_cells(load(path)):
            assert "NBVAL_SKIP" not in source(cell)
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error", f"{path.name}: stored error output"
                if out.get("name") == "stderr":
                    assert "Warning" not in "".join(out["text"]), f"{path.name}: warning shown"

    def test_figures_have_captions_and_alt_text(self, path):
        for cell in code_cells(load(path)):
            has_image = any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
            if not has_image:
                continue
            mystnb = cell["metadata"].get("mystnb", {})
            assert mystnb.get("figure", {}).get("caption"), f"figure without caption:\n{source(cell)[:200]}"
            assert mystnb.get("image", {}).get("alt"), f"figure without alt text:\n{source(cell)[:200]}"

    def test_only_drawing_code_is_folded_away(self, path):
        # hide-input folds a cell's code on the site (a "Show code cell source" toggle). It is
        # for code that only draws a figure or wires a slider: a cell whose code is folded
        # must show a picture or a widget, and never hold an assert, so every claim's check
        # stays in view.
        folded = [c for c in code_cells(load(path)) if "hide-input" in c["metadata"].get("tags", [])]
        for cell in folded:
            kinds = {k for out in cell.get("outputs", []) for k in out.get("data", {})}
            sliders = any('class="course-slider"' in "".join(out.get("data", {}).get("text/html", ""))
                          for out in cell.get("outputs", []))
            assert sliders or kinds & {"image/png", "application/vnd.jupyter.widget-view+json"}, (
                f"{path.name}: folded code that draws nothing:\n{source(cell)[:200]}")
            assert not re.search(r"^\s*assert\b", source(cell), re.M), (
                f"{path.name}: an assert in folded code:\n{source(cell)[:200]}")

    def test_widgets_have_stored_state(self, path):
        nb = load(path)
        uses_widgets = any(
            "application/vnd.jupyter.widget-view+json" in out.get("data", {})
            for cell in code_cells(nb) for out in cell.get("outputs", [])
        )
        if uses_widgets:
            state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
            assert state and state["state"], f"{path.name}: widgets without stored state"


def _run_install_cell(python: str, env_extra: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSE_") and k != "PYTHONPATH"}
    env.update(env_extra)
    return subprocess.run(
        [python, "-c", install_cell_source()], env=env, capture_output=True, text=True,
        timeout=600, cwd=cwd,
    )


def test_install_cell_does_nothing_where_course_lib_is_installed(tmp_path):
    # A pip that would fail proves pip is never called: course_lib is importable here.
    result = _run_install_cell(sys.executable, {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/nonexistent"},
                               cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_install_cell_installs_course_lib_where_it_is_missing(tmp_path):
    # A fresh environment that sees the test environment's packages (torch, numpy, ...) but not
    # course_lib, as a downloaded notebook meets a learner's own Jupyter; the cell must
    # install course_lib into it from a local path.
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(system_site_packages=False, with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    pth = next((env_dir / "lib").glob("python3*/site-packages"))
    # Expose the outer site-packages without its editable course_lib finder.
    (pth / "outer.pth").write_text(site + "\n")
    result = _run_install_cell(
        python, {"COURSE_LIB_SOURCE": str(ROOT), "PIP_NO_BUILD_ISOLATION": "1"}, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Installing course_lib from" in result.stdout
    where = subprocess.run(
        [python, "-c", "import course_lib, course_lib.batchnorm; print(course_lib.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert str(env_dir) in where.stdout, f"course_lib imported from {where.stdout}, not the new env"
