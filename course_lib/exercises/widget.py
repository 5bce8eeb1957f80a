"""A thin notebook view of :func:`course_lib.exercises.grade`: formatting only, no grading.

In a notebook::

    from course_lib.exercises import check
    check("bn_forward_pass", my_bn_forward)      # last line of the cell: shows a green/red box
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ._core import EXERCISES, Feedback, grade
from ._sandbox import clean_text
from .launch import chapter_of, launch_links

if TYPE_CHECKING:  # ipywidgets is imported lazily so grading works without it
    import ipywidgets

__all__ = ["check", "feedback_html"]

_GREEN = ("#e6f4ea", "#1e7e34")  # (background, border/text)
_RED = ("#fdecea", "#b3261e")
_NEUTRAL = ("#eef3f8", "#2f5577")  # the "how to run this exercise" card: no verdict


def feedback_html(feedback: Feedback, exercise_id: str | None = None) -> str:
    """Render a :class:`Feedback` as an HTML box (pure; every learner-derived text escaped).

    A pass is a green box headed "✓ Correct"; a fail is a red box headed "✗ Not yet", with
    the recognized mistake as a sub-heading ("Looks like: unbiased variance"). The message
    keeps its line breaks and alignment (``white-space: pre-wrap``, monospace). A failed
    grade's ``solution`` comes last, folded in a ``<details>`` element ("Show a solution")
    that stays closed until the learner opens it.

    A function not filled in yet (``mistake == "not_implemented"``: the stub still raises
    NotImplementedError, or its body is empty) earns no verdict: it gets a neutral card
    "How to run this exercise", with links that open ``exercise_id``'s chapter in Colab and
    Binder. That card is what the static site shows under every exercise, where no kernel
    runs.

    Example::

        >>> feedback_html(Feedback(False, "out <wrong>", "missing_eps"))
        '<div ...>✗ Not yet</div><div ...>Looks like: missing eps</div>...&lt;wrong&gt;...'
    """
    if not feedback.passed and feedback.mistake == "not_implemented":
        return _how_to_run_html(exercise_id)
    background, color = _GREEN if feedback.passed else _RED
    title = "✓ Correct" if feedback.passed else "✗ Not yet"
    parts = [
        f'<div class="course-feedback" style="background:{background}; '
        f"border-left:6px solid {color}; padding:8px 12px; margin:4px 0; "
        f'border-radius:4px;">',
        f'<div style="font-weight:bold; color:{color}; font-size:1.1em;">{title}</div>',
    ]
    if not feedback.passed and feedback.mistake:
        pretty = html.escape(feedback.mistake.replace("_", " "))
        parts.append(
            f'<div style="font-weight:bold; color:{color}; margin-top:4px;">'
            f"Looks like: {pretty}</div>"
        )
    parts.append(
        '<pre style="white-space:pre-wrap; font-size:0.9em; margin:6px 0 0 0; '
        'background:transparent; border:none;">'
        f"{html.escape(_without_heading(feedback))}</pre>"
    )
    if not feedback.passed and feedback.solution:
        # Folded: the explanation above is usually enough; the recipe is there on request.
        parts.append(
            '<details style="margin-top:6px;"><summary style="cursor:pointer;">'
            "Show a solution</summary>"
            '<pre style="white-space:pre-wrap; font-size:0.9em; margin:4px 0 0 0; '
            'background:transparent; border:none;">'
            f"{html.escape(feedback.solution)}</pre></details>"
        )
    parts.append("</div>")
    return clean_text("".join(parts))


def _how_to_run_html(exercise_id: str | None) -> str:
    """The neutral card for an exercise not filled in yet: how to run it, no verdict."""
    description = EXERCISES.get(exercise_id, "") if isinstance(exercise_id, str) else ""
    chapter = chapter_of(description)
    links = launch_links(chapter)
    background, color = _NEUTRAL
    where = f"chapter {chapter}" if chapter is not None else "the chapter"
    link_style = f"color:{color}; font-weight:bold;"
    return (
        f'<div class="course-feedback course-exercise-card" role="note" '
        f'style="background:{background}; border-left:6px solid {color}; padding:8px 12px; '
        f'margin:4px 0; border-radius:4px;">'
        f'<div style="font-weight:bold; color:{color}; font-size:1.1em;">'
        f"How to run this exercise</div>"
        f'<p style="margin:6px 0 0 0;">Write your function in the cell above, in place of '
        f"the <code>raise NotImplementedError(...)</code> line, run that cell, then run this "
        f"one. The grader calls your function on several inputs, says what is right and what "
        f"is not, and names the classic mistake it recognizes.</p>"
        f'<p style="margin:6px 0 0 0;">On the course\'s website no Python runs: open '
        f'{where} in <a href="{html.escape(links.colab)}" target="_blank" rel="noopener" '
        f'aria-label="Open {where} in Colab (new tab)" style="{link_style}">Colab</a> or '
        f'<a href="{html.escape(links.binder)}" target="_blank" rel="noopener" '
        f'aria-label="Open {where} in Binder (new tab)" style="{link_style}">Binder</a>, '
        f"or on your own "
        f"machine in Jupyter (<code style=\"overflow-wrap:anywhere;\">jupyter lab "
        f"{html.escape(links.notebook)}</code> in a "
        f"clone of the course's repository).</p></div>"
    )


def _without_heading(feedback: Feedback) -> str:
    """The message without a leading "✓ Correct:", which the box's heading already says."""
    prefix = "✓ Correct:"
    if feedback.passed and feedback.message.startswith(prefix):
        rest = feedback.message[len(prefix):].lstrip()
        return rest[:1].upper() + rest[1:]
    return feedback.message


def check(exercise_id: str, submission: Any, *, timeout: float | None = None) -> "ipywidgets.HTML":
    """Grade ``submission`` and return an ``ipywidgets.HTML`` showing the feedback.

    Args:
        exercise_id: one of ``course_lib.exercises.EXERCISES``.
        submission: the learner's function (not its result).
        timeout: seconds the learner's code may run (default ``LIMITS.timeout``).

    Returns:
        ``ipywidgets.HTML`` whose ``value`` is :func:`feedback_html` of the grade: a verdict,
        or for a function not filled in yet the card that says how to run the exercise.

    Raises:
        ValueError: for an unknown exercise id (never because of the submission).
    """
    import ipywidgets

    feedback = grade(exercise_id, submission, timeout=timeout)
    return ipywidgets.HTML(value=feedback_html(feedback, exercise_id))
