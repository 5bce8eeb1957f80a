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
"""

from __future__ import annotations

import hashlib
import json
import random
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

    checked = validate(questions)
    digest = hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()
    state = random.getstate()
    try:
        random.seed(digest)
        display_quiz(checked, shuffle_answers=False, colors="fdsp")
    finally:
        random.setstate(state)
