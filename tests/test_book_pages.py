"""The book's pages keep step with its chapters: the intro's chapter table and the glossary.

Every chapter in _toc.yml has a row in book/intro.md's table and at least one glossary term
that links to it; every glossary link points at a section (a heading's anchor or a MyST
target) that exists in the chapter it names; every term links to where it is taught and has
its Korean and Chinese names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INTRO = (ROOT / "book" / "intro.md").read_text()
GLOSSARY = (ROOT / "book" / "glossary.md").read_text()
LINK = re.compile(r"\]\(\.\./notebooks/([\w-]+)\.ipynb(?:#([\w-]+))?\)")


def chapters() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files if f.startswith("notebooks/")]


def slug(heading: str) -> str:
    """The anchor MyST gives a heading (myst_heading_anchors): its text without math and
    markup, lower case, spaces as hyphens, punctuation dropped."""
    text = re.sub(r"\$[^$]*\$", "", heading.lstrip("#").strip()).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower().replace(" ", "-"))


def anchors(stem: str) -> set[str]:
    """Heading anchors and MyST targets of a chapter's markdown cells."""
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if re.match(r"#{1,6} ", line):
                found.add(slug(line))
            target = re.fullmatch(r"\(([\w-]+)\)=", line.strip())
            if target:
                found.add(target.group(1))
    return found


def glossary_entries() -> list[tuple[str, str]]:
    """(term, definition) for every entry of the glossary's ```{glossary} blocks."""
    entries = []
    for block in re.findall(r"```\{glossary\}\n(.*?)```", GLOSSARY, re.S):
        for chunk in re.split(r"\n(?=\S)", block.strip()):
            if chunk.startswith(":"):
                chunk = chunk.split("\n", 1)[1] if "\n" in chunk else ""
            if chunk:
                term, _, body = chunk.partition("\n")
                entries.append((term, body))
    return entries


@pytest.mark.parametrize("stem", chapters())
def test_every_chapter_has_a_row_in_the_intro_table(stem):
    number = int(stem.split("_")[0])
    assert re.search(rf"^\| {number} \| \{{doc\}}`\.\./notebooks/{stem}` \|", INTRO, re.M), (
        f"book/intro.md's chapter table has no row '| {number} | {{doc}}`../notebooks/{stem}` |'")


@pytest.mark.parametrize("stem", chapters())
def test_every_chapter_is_linked_from_the_glossary(stem):
    linked = {m.group(1) for m in LINK.finditer(GLOSSARY)}
    assert stem in linked, f"no glossary term links to {stem}: add its terms to book/glossary.md"


def test_glossary_links_point_at_sections_that_exist():
    known = set(chapters())
    for m in LINK.finditer(GLOSSARY):
        stem, anchor = m.groups()
        assert stem in known, f"the glossary links to {stem}, which is not a chapter"
        if anchor:
            assert anchor in anchors(stem), f"{stem} has no section #{anchor}"


def test_every_term_links_to_where_it_is_taught_and_has_its_translations():
    entries = glossary_entries()
    assert len(entries) > 20
    for term, body in entries:
        assert LINK.search(body) or "{term}" in body, f"glossary: {term!r} links nowhere"
        if not body.strip().startswith("See {term}"):
            assert "한국어" in body and "中文" in body, f"glossary: {term!r} lacks its translations"


def test_slugs_follow_myst():
    assert slug("## A slight regularizer: the train/test gap") == (
        "a-slight-regularizer-the-traintest-gap")
    assert slug("## Forgetting `model.eval()`") == "forgetting-modeleval"
    assert slug(r"## Why $\gamma$ and $\beta$?") == "why--and-"
