"""Self-check questions that give feedback on the static website, without a kernel.

The questions are rendered by `jupyterquiz <https://pypi.org/project/jupyterquiz/>`_, which
writes the questions and its JavaScript into the cell's output. The output is stored in the
notebook, so the built page can check an answer in the reader's browser with no Python
running. This module only validates the questions (so a typo fails a test instead of silently
breaking a page) and makes the output reproducible (so nbval can compare it).

A question is a dict in jupyterquiz's format:

.. code-block:: python

    {
        "question": "Which statistics standardize the test set?",
        "type": "multiple_choice",          # one correct answer
        "answers": [
            {"answer": "The training set's", "correct": True, "feedback": "Yes: ..."},
            {"answer": "The test set's own", "correct": False, "feedback": "No: ..."},
        ],
    }

``"many_choice"`` allows several correct answers; ``"numeric"`` takes answers of the form
``{"type": "value", "value": 3, ...}`` or ``{"type": "range", "range": [2, 4], ...}``.
Every answer must carry feedback: a reader who picks a wrong option learns why it is wrong.

How a chapter writes its self-check (one ``show([...])`` call in a cell tagged
``remove-input``, near the end of the chapter):

- Write the right answer anywhere in the list: :func:`show` places the options itself, so the
  right one lands at every position across a chapter's questions (a fixed order derived from
  the questions' text: the stored output, and nbval's comparison of it, stay the same).
- Make every distractor a mistake a reader could really make, about as long and as specific
  as the right answer: a reader must not find the answer by its length.
- Text may hold TeX math (``$...$``) and Markdown code spans (`` `model.eval()` ``); nothing
  else of Markdown is rendered.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import re
from collections.abc import Sequence
from typing import Any

_TYPES = ("multiple_choice", "many_choice", "numeric")


def validate(questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check that ``questions`` is well formed and return it as a list.

    Raises:
        ValueError: naming the question (by number and start of its text) and what is wrong.
        TypeError: if ``questions`` is not a sequence of dicts.
    """
    if isinstance(questions, (str, bytes, dict)) or not isinstance(questions, Sequence):
        raise TypeError(f"expected a list of question dicts, got {type(questions).__name__}")
    if not questions:
        raise ValueError("expected at least one question, got an empty list")
    for number, q in enumerate(questions, start=1):
        if not isinstance(q, dict):
            raise TypeError(f"question {number}: expected a dict, got {type(q).__name__}")
        text = q.get("question")
        where = f"question {number} ({str(text)[:40]!r})"
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"question {number}: needs a non-empty 'question' text")
        kind = q.get("type")
        if kind not in _TYPES:
            raise ValueError(f"{where}: 'type' must be one of {_TYPES}, got {kind!r}")
        answers = q.get("answers")
        if not isinstance(answers, list) or not answers:
            raise ValueError(f"{where}: needs a non-empty list of 'answers'")
        for a_number, answer in enumerate(answers, start=1):
            if not isinstance(answer, dict):
                raise TypeError(f"{where}, answer {a_number}: expected a dict")
            if not str(answer.get("feedback", "")).strip():
                raise ValueError(
                    f"{where}, answer {a_number}: every answer needs 'feedback' that says "
                    "why it is right or wrong"
                )
            if not isinstance(answer.get("correct"), bool):
                raise ValueError(f"{where}, answer {a_number}: 'correct' must be True or False")
            if kind == "numeric":
                _validate_numeric_answer(answer, f"{where}, answer {a_number}")
            elif not str(answer.get("answer", "")).strip():
                raise ValueError(f"{where}, answer {a_number}: needs an 'answer' text")
        n_correct = sum(answer["correct"] for answer in answers)
        if kind == "multiple_choice" and n_correct != 1:
            raise ValueError(
                f"{where}: a multiple_choice question needs exactly one correct answer, "
                f"got {n_correct}; use type 'many_choice' for several"
            )
        if n_correct == 0:
            raise ValueError(f"{where}: no answer is marked correct")
    return list(questions)


def _validate_numeric_answer(answer: dict[str, Any], where: str) -> None:
    kind = answer.get("type")
    if kind == "value":
        if not isinstance(answer.get("value"), (int, float)):
            raise ValueError(f"{where}: a 'value' answer needs a number in 'value'")
    elif kind == "range":
        bounds = answer.get("range")
        if not (isinstance(bounds, list) and len(bounds) == 2 and bounds[0] <= bounds[1]):
            raise ValueError(f"{where}: a 'range' answer needs 'range': [low, high]")
    elif kind != "default":
        raise ValueError(f"{where}: a numeric answer's 'type' is 'value', 'range' or 'default'")


def show(questions: Sequence[dict[str, Any]]) -> None:
    """Validate ``questions`` and display them as an interactive quiz in the cell's output.

    The quiz's HTML id is derived from the questions' text instead of a random draw, so running
    the notebook again gives byte-identical output (and leaves Python's global ``random`` state
    as it was).
    """
    from jupyterquiz import display_quiz

    checked = [_render_code_spans(q) for q in arrange(validate(questions))]
    digest = hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()
    state = random.getstate()
    try:
        random.seed(digest)
        display_quiz(checked, shuffle_answers=False, colors="fdsp")
    finally:
        random.setstate(state)


def arrange(questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions with their options reordered so the right answer's place tells nothing.

    Each choice question gets a fixed order derived from its text (so output is reproducible):
    the wrong options in a shuffled order, and the right one at the position used least so
    far among the earlier questions (ties broken by the same draw), so across a set of
    questions the right answer visits every position about equally often. In a
    ``many_choice`` question the right ones are never simply the first options. Numeric
    questions are returned as they are. ``questions`` is not modified.
    """
    used: dict[int, int] = {}
    arranged = []
    for q in questions:
        if q["type"] not in ("multiple_choice", "many_choice"):
            arranged.append(q)
            continue
        rng = random.Random(hashlib.sha256(q["question"].encode()).hexdigest())
        right = [a for a in q["answers"] if a["correct"]]
        wrong = [a for a in q["answers"] if not a["correct"]]
        n = len(right) + len(wrong)
        rng.shuffle(wrong)
        rng.shuffle(right)
        if q["type"] == "multiple_choice":
            fewest = min(used.get(p, 0) for p in range(n))
            places = [rng.choice([p for p in range(n) if used.get(p, 0) == fewest])]
        else:
            prefix = list(range(len(right)))
            places = sorted(rng.sample(range(n), len(right)))
            while places == prefix and len(right) < n:
                places = sorted(rng.sample(range(n), len(right)))
        for p in places:
            used[p] = used.get(p, 0) + 1
        ordered, right_iter, wrong_iter = [], iter(right), iter(wrong)
        for p in range(n):
            ordered.append(next(right_iter) if p in places else next(wrong_iter))
        arranged.append({**q, "answers": ordered})
    return arranged


_CODE_SPAN = re.compile(r"`([^`]+)`")


def _code_spans_to_html(text: str) -> str:
    return _CODE_SPAN.sub(lambda m: f"<code>{html.escape(m.group(1))}</code>", text)


def _render_code_spans(question: dict[str, Any]) -> dict[str, Any]:
    # jupyterquiz shows its texts as HTML (with TeX math), not Markdown: a `span` would show
    # its backticks.
    out = {**question, "question": _code_spans_to_html(question["question"])}
    out["answers"] = [
        {key: (_code_spans_to_html(value) if key in ("answer", "feedback")
               and isinstance(value, str) else value) for key, value in answer.items()}
        for answer in question["answers"]
    ]
    return out
