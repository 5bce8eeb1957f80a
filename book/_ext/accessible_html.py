"""Fixes to the HTML that Sphinx writes, for screen readers (checked by axe-core in
tests/test_site.py).

Docutils marks each entry of the reference list ``role="doc-biblioentry"`` inside a
``role="list"``: that role is deprecated (ARIA DPUB 1.1), so assistive technology sees a list
whose children are not list items (axe's aria-required-children, critical). Each entry
becomes a ``listitem``, which is what it is.

myst-nb names the toggle of folded code "Toggle hidden content" while it shows "Show code
cell source": a speech-input user who says what they see would not find it (WCAG 2.5.3). The
visible words become its name.
"""

from __future__ import annotations

_FIXES = (
    ('role="doc-biblioentry"', 'role="listitem"'),
    ('<summary aria-label="Toggle hidden content">', "<summary>"),
)


def fix_body(body: str) -> str:
    """``body`` (a page's HTML) with the roles above corrected."""
    for wrong, right in _FIXES:
        body = body.replace(wrong, right)
    return body


def _fix_page(app, pagename, templatename, context, doctree) -> None:
    if "body" in context:
        context["body"] = fix_body(context["body"])


def setup(app):
    app.connect("html-page-context", _fix_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
