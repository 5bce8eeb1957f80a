"""One citation style on every page: "[Ng, 2017]" in the text and in the reference list.

The text cites with ``bibtex_reference_style: author_year``; the reference list's labels
come from the pybtex style ``bibtex_default_style`` names, whose default labels are alpha
keys ("[IS15]"). This extension registers ``author_year``: pybtex's plain style with
labels built from the same authors and year the text shows.
"""

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle


def _label(entry) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    last = [" ".join(p.last_names) for p in people]
    if len(last) >= 3:
        names = f"{last[0]} et al."
    elif len(last) == 2:
        names = f"{last[0]} and {last[1]}"
    else:
        names = last[0] if last else entry.key
    return f"{names}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield _label(entry)


class AuthorYearStyle(PlainStyle):
    default_label_style = AuthorYearLabels


def setup(app):
    register_plugin("pybtex.style.formatting", "author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
