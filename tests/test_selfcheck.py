import random

import pytest

from course_lib.page import selfcheck


def question(**changes):
    q = {
        "question": "Which statistics standardize the test set?",
        "type": "multiple_choice",
        "answers": [
            {"answer": "The training set's", "correct": True, "feedback": "Right: ..."},
            {"answer": "The test set's own", "correct": False, "feedback": "No: that leaks ..."},
        ],
    }
    q.update(changes)
    return q


def test_valid_questions_pass_through():
    assert selfcheck.validate([question()]) == [question()]


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "at least one question"),
        ([question(question="")], "non-empty 'question'"),
        ([question(type="essay")], "'type' must be one of"),
        ([question(answers=[])], "non-empty list of 'answers'"),
        ([question(answers=[{"answer": "a", "correct": True}])], "needs 'feedback'"),
        ([question(answers=[{"answer": "a", "correct": "yes", "feedback": "f"}])], "True or False"),
        (
            [question(answers=[{"answer": "a", "correct": True, "feedback": "f"},
                               {"answer": "b", "correct": True, "feedback": "f"}])],
            "exactly one correct answer",
        ),
        ([question(type="many_choice", answers=[{"answer": "a", "correct": False, "feedback": "f"}])],
         "no answer is marked correct"),
        ([question(type="numeric", answers=[{"type": "range", "range": [3, 1], "correct": True,
                                            "feedback": "f"}])], r"\[low, high\]"),
    ],
)
def test_malformed_questions_name_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        selfcheck.validate(bad)


def test_not_a_list_is_a_type_error():
    with pytest.raises(TypeError, match="list of question dicts"):
        selfcheck.validate(question())


def test_show_is_reproducible_and_keeps_global_random_state(capsys, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    import jupyterquiz.dynamic.display as jq

    monkeypatch.setattr(jq, "display", lambda obj: shown.append(obj))
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    selfcheck.show([question()])
    selfcheck.show([question()])
    assert random.random() == expected_next
    html_first, js_first, html_second, js_second = (getattr(o, "data", o) for o in shown)
    assert html_first == html_second and js_first == js_second
    assert "The training set" in js_first
