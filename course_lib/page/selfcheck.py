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

For every reader: :data:`COLORS` gives every text AA contrast, and :data:`ACCESS` (shown after
each quiz) labels the numeric answer box, adds a Check button beside it, groups the options
under their question and announces the feedback; the options are radio buttons, so Tab,
Space and the arrow keys answer them (tests/test_site.py drives them by keyboard only).
"""

from __future__ import annotations

import hashlib
import itertools
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

    from IPython.display import HTML, display

    checked = [_render_code_spans(q) for q in arrange(validate(questions))]
    digest = hashlib.sha256(json.dumps(checked, sort_keys=True).encode()).hexdigest()
    state = random.getstate()
    try:
        random.seed(digest)
        display_quiz(checked, shuffle_answers=False, colors=COLORS)
    finally:
        random.setstate(state)
    display(HTML(ACCESS))


#: jupyterquiz's color variables: white text on every background at a contrast of at least
#: 4.5:1 (WCAG AA; its "fdsp" palette had 1.97:1 on the numeric questions' sky blue), and a
#: white answer box with dark text.
COLORS: dict[str, str] = {
    "--jq-multiple-choice-bg": "#345995",   # 6.7:1 with the text
    "--jq-many-choice-bg": "#a63d2a",       # 6.1:1
    "--jq-numeric-bg": "#1d6a8a",           # 5.8:1
    "--jq-string-bg": "#861657",
    "--jq-mc-button-bg": "#fafafa",
    "--jq-mc-button-border": "#e0e0e0",
    "--jq-mc-button-inset-shadow": "#555555",
    "--jq-numeric-input-bg": "#fafafa",
    "--jq-numeric-input-label": "#1a1a1a",  # on the page (light in both modes)
    "--jq-numeric-input-shadow": "#999999",
    # An answered option's background, and the feedback's text on the page: AA with white
    # text, and on the light output area that dark mode puts behind a quiz (#ced6dd).
    "--jq-correct-color": "#1f5a22",
    "--jq-incorrect-color": "#555555",
    "--jq-text-color": "#fafafa",
    "--jq-link-color": "#cfe0ff",
}

# Shown after every quiz (jupyterquiz draws its questions with plain <div>s and no labels):
# the numeric answer box gets a label and a Check button (jupyterquiz checks only on Enter),
# the options are grouped under their question, the feedback is announced to screen readers
# (role=status), and the option that has keyboard focus is outlined. Idempotent: every quiz
# output carries it, the first one installs it for the page, later quizzes are picked up by
# the observer (jupyterquiz draws a quiz after its script runs).
ACCESS = r"""<style>
.Quiz .Input-text { color: #1a1a1a; }
.Quiz .course-answer-row { display: flex; flex-wrap: wrap; align-items: center; }
.Quiz .MCButton:focus-within, .Quiz .Input-text:focus-visible,
.Quiz .course-quiz-check:focus-visible {
  outline: 3px solid #ffbf47; outline-offset: 2px; }
.Quiz .course-quiz-check { margin: 10px; padding: 0.3em 1.2em; font-size: 18px;
  color: #1a1a1a; background: #fafafa; border: 1px solid #555555; border-radius: 0.2rem;
  cursor: pointer; }
</style>
<script>
(function () {
  if (window.courseQuizAccess) { window.courseQuizAccess(); return; }
  function enhance(quiz) {
    var feedback = quiz.querySelector(".Feedback"), options = quiz.querySelector(".Answer");
    if (quiz.getAttribute("data-course-ready") || !feedback || !options) return;
    quiz.setAttribute("data-course-ready", "1");
    var question = quiz.querySelector("[id^='quizQn']");
    feedback.setAttribute("role", "status");
    feedback.setAttribute("aria-live", "polite");
    if (question) {
      options.setAttribute("role", "group");
      options.setAttribute("aria-labelledby", question.id);
    }
    var input = options.querySelector("input.Input-text");
    if (!input) return;
    var label = options.querySelector("label.InpLabel");
    if (label) { label.htmlFor = input.id; label.textContent = "Your answer (a number):"; }
    else { input.setAttribute("aria-label", "Your answer (a number)"); }
    if (question) input.setAttribute("aria-describedby", question.id);
    input.setAttribute("inputmode", "decimal");
    var check = document.createElement("button");
    check.type = "button";
    check.className = "course-quiz-check";
    check.textContent = "Check";
    // jupyterquiz checks a numeric answer in its Enter handler: the button calls it.
    check.addEventListener("click", function () {
      if (input.onkeypress) input.onkeypress.call(input, {which: 13, keyCode: 13});
    });
    var row = document.createElement("div");
    row.className = "course-answer-row";
    input.insertAdjacentElement("beforebegin", row);
    row.appendChild(input);
    row.appendChild(check);
  }
  // An option that is only math has no text for an accessibility tree that skips MathML:
  // name its radio button with the math's text (MathJax's assistive MathML) once typeset.
  function nameMathOptions() {
    document.querySelectorAll(".Quiz .MCButton input[type='radio']:not([aria-label])")
      .forEach(function (radio) {
        var option = radio.parentElement, math = option.querySelectorAll("mjx-container");
        if (!math.length) return;
        var words = Array.prototype.map.call(option.childNodes, function part(node) {
          if (node.nodeType === 3) return node.textContent;
          if (node.nodeType !== 1 || node === radio) return "";
          if (node.tagName === "MJX-CONTAINER") {
            var mml = node.querySelector("mjx-assistive-mml");
            return mml ? " " + mml.textContent + " " : "";
          }
          return Array.prototype.map.call(node.childNodes, part).join("");
        }).join("").replace(/\s+/g, " ").trim();
        if (words) radio.setAttribute("aria-label", words);
      });
  }
  function enhanceAll() {
    document.querySelectorAll(".Quiz").forEach(enhance);
    nameMathOptions();
  }
  window.courseQuizAccess = enhanceAll;
  enhanceAll();
  new MutationObserver(enhanceAll).observe(document.body, {childList: true, subtree: true});
})();
</script>"""


def arrange(questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The questions with their options reordered so the right answer's place tells nothing.

    Each choice question gets a fixed order derived from its text (so output is reproducible):
    the wrong options in a shuffled order, and the right one at the position used least so
    far among the earlier questions (ties broken by the same draw), so across a set of
    questions the right answer visits every position about equally often. In a
    ``many_choice`` question the right ones take the least used places too, and are never
    simply the first options. Numeric
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
            # The least used places, never simply the first options (ties: the same draw).
            prefix = tuple(range(len(right)))
            choices = [c for c in itertools.combinations(range(n), len(right))
                       if c != prefix or len(right) == n]
            rng.shuffle(choices)
            # Among equals, leave the first option wrong: that is where authors put the answer.
            places = list(min(choices, key=lambda c: (sum(used.get(p, 0) for p in c), 0 in c)))
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
