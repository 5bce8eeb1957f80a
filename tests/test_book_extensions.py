"""The book's own Sphinx extensions (book/_ext): chapter numbering and HTML fixes."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))

import accessible_html  # noqa: E402
import chapter_numbers  # noqa: E402


def test_chapter_of_reads_the_notebook_prefix():
    assert chapter_numbers.chapter_of("notebooks/07_deep_and_conv_nets") == 7
    assert chapter_numbers.chapter_of("notebooks/10_next") == 10
    assert chapter_numbers.chapter_of("book/lecture") is None


def test_figures_and_exercises_are_numbered_within_their_chapter():
    numbers = {
        "notebooks/07_deep": {"figure": {"a": (28,), "b": (29,), "c": (30,)},
                              "exercise": {"x": (17,), "y": (18,)}},
        "book/lecture": {"figure": {"f": (31,)}},
    }
    changed = chapter_numbers.renumber(numbers)
    assert numbers["notebooks/07_deep"]["figure"] == {"a": (7, 1), "b": (7, 2), "c": (7, 3)}
    assert numbers["notebooks/07_deep"]["exercise"] == {"x": (7, 1), "y": (7, 2)}
    assert numbers["book/lecture"]["figure"] == {"f": (1,)}
    assert sorted(changed) == ["book/lecture", "notebooks/07_deep"]


def test_renumbering_keeps_reading_order():
    numbers = {"notebooks/03_x": {"figure": {"late": (12,), "early": (4,)}}}
    chapter_numbers.renumber(numbers)
    assert numbers["notebooks/03_x"]["figure"] == {"late": (3, 2), "early": (3, 1)}


def test_renumbering_twice_changes_nothing():
    numbers = {"notebooks/03_x": {"figure": {"a": (3, 1)}}}
    assert chapter_numbers.renumber(numbers) == []


def test_reference_entries_become_list_items():
    body = '<div role="list"><div class="citation" role="doc-biblioentry">x</div></div>'
    fixed = accessible_html.fix_body(body)
    assert 'role="listitem"' in fixed
    assert "doc-biblioentry" not in fixed


def test_folded_code_toggles_are_named_by_their_visible_words():
    body = '<summary aria-label="Toggle hidden content">\n<p>Show code cell source</p>'
    assert "aria-label" not in accessible_html.fix_body(body)
