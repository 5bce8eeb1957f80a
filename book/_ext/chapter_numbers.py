"""Figures, tables and exercises numbered by chapter: "Fig. 7.3", "Exercise 7.1".

Sphinx numbers them across the whole book when the table of contents is not numbered
("Fig. 28" in chapter 7). After Sphinx has assigned its numbers (the ``env-get-updated``
event), this extension renumbers each page's own: on a chapter page, whose file is
``notebooks/NN_*``, as (NN, 1), (NN, 2), ... per kind; on any other page from 1. The
numbers live in ``env.toc_fignumbers``, from which captions, ``{numref}`` references and
sphinx-exercise's titles all read them.
"""

from __future__ import annotations

import re

_CHAPTER = re.compile(r"(?:^|/)notebooks/(\d+)_[^/]*$")


def chapter_of(docname: str) -> int | None:
    """The chapter number of a page (``notebooks/07_deep`` -> 7), or None for other pages."""
    match = _CHAPTER.search(docname)
    return int(match.group(1)) if match else None


def renumber(fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]]) -> list[str]:
    """Renumber ``fignumbers`` (``env.toc_fignumbers``) in place; return the pages changed."""
    changed = []
    for docname, kinds in fignumbers.items():
        chapter = chapter_of(docname)
        prefix = (chapter,) if chapter is not None else ()
        before = {kind: dict(ids) for kind, ids in kinds.items()}
        for ids in kinds.values():
            # Sphinx assigned increasing numbers in the page's reading order.
            for k, figure_id in enumerate(sorted(ids, key=ids.get), start=1):
                ids[figure_id] = (*prefix, k)
        if before != kinds:
            changed.append(docname)
    return changed


def _renumber(app, env) -> list[str]:
    return renumber(env.toc_fignumbers)


def setup(app):
    # After Sphinx's own TocTreeCollector (priority 500) has assigned the book-wide numbers.
    app.connect("env-get-updated", _renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
