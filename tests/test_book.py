"""The book builds from the repository root with no warnings, as `make book` does.

The build itself is the `built_site` fixture in tests/conftest.py, shared with tests/test_site.py.
"""

import re
from pathlib import Path

import yaml

from tools.notebooks import repository

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_toc_entry_exists():
    for entry in toc_files():
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


def test_every_notebook_is_in_the_toc():
    listed = set(toc_files())
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{path.stem}" in listed, f"{path.name} is not in _toc.yml"


def test_book_builds_every_page(built_site):
    for entry in toc_files():
        page = built_site / f"{entry}.html"
        assert page.exists(), f"the build did not produce {page.name}"


def test_chapter_pages_have_launch_buttons_for_this_repository(built_site):
    url, branch = repository()
    slug = url.removeprefix("https://github.com/")
    for entry in toc_files():
        if not entry.startswith("notebooks/"):
            continue
        html = (built_site / f"{entry}.html").read_text()
        assert f"colab.research.google.com/github/{slug}/blob/{branch}/{entry}.ipynb" in html
        assert f"mybinder.org/v2/gh/{slug}/{branch}?urlpath=" in html
        assert entry.split("/")[-1] + ".ipynb" in html


def test_citations_resolve(built_site):
    html = (built_site / "book" / "references.html").read_text()
    for author in ("Ioffe", "Santurkar", "Ng"):
        assert author in html


def test_reference_list_labels_match_the_text_citations(built_site):
    """One style: the text cites "[Ng, 2017]" and the reference list is labeled the same way,
    not with alpha keys such as "[IS15]" (book/_ext/author_year_labels.py)."""
    text = re.sub(r"<[^>]+>", "", (built_site / "book" / "references.html").read_text())
    for label in ("Ng, 2017", "Ioffe and Szegedy, 2015", "Santurkar et al., 2018"):
        assert f"[{label}]" in re.sub(r"\s+", " ", text), label
    assert not re.search(r"\[[A-Z][a-z]?[A-Z]?\d\d\]", text), "alpha labels such as [IS15] remain"
    intro = (built_site / "book" / "intro.html").read_text()
    assert ">Ng, 2017</a>" in intro


def test_reference_pages_are_in_the_toc():
    files = toc_files()
    assert files.index("book/notation") < files.index("book/lecture")
    assert "book/verified" in files and "book/glossary" in files


def test_figures_and_exercises_are_numbered_by_chapter(built_site):
    """"Fig. 7.3" and "Exercise 7.1" in chapter 7, not a count across the book
    (book/_ext/chapter_numbers.py)."""
    numbered = 0
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*_*.ipynb")):
        chapter = int(notebook.stem.split("_")[0])
        html = (built_site / "notebooks" / f"{notebook.stem}.html").read_text()
        # The course's own numbers (captions, exercise titles), not "their Fig. 4" in a paper.
        numbers = re.findall(
            r'<span class="caption-number">(?:Fig\.|Exercise|Table)\s+(\d+(?:\.\d+)*)', html)
        wrong = sorted({n for n in numbers if not n.startswith(f"{chapter}.")})
        assert not wrong, f"{notebook.stem}: numbers not of chapter {chapter}: {wrong}"
        numbered += len(numbers)
    assert numbered > 0, "no numbered figure or exercise in any chapter"
