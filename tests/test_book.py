"""The book builds from the repository root with no warnings, as `make book` does.

The build itself is the `built_site` fixture in tests/conftest.py, shared with tests/test_site.py.
"""

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
