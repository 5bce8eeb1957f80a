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
    html_first, js_first, access_first, html_second, js_second, access_second = (
        getattr(o, "data", o) for o in shown)
    assert html_first == html_second and js_first == js_second
    assert access_first == access_second == selfcheck.ACCESS
    assert "The training set" in js_first


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.1 contrast ratio of two #rrggbb colors."""
    def luminance(color):
        channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
                   for c in channels]
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("background", ["--jq-multiple-choice-bg", "--jq-many-choice-bg",
                                        "--jq-numeric-bg", "--jq-correct-color",
                                        "--jq-incorrect-color"])
def test_quiz_text_has_aa_contrast_on_every_background(background):
    text = selfcheck.COLORS["--jq-text-color"]
    assert contrast(text, selfcheck.COLORS[background]) >= 4.5


@pytest.mark.parametrize("feedback", ["--jq-correct-color", "--jq-incorrect-color",
                                      "--jq-numeric-input-label"])
@pytest.mark.parametrize("page", ["#ffffff", "#ced6dd"])  # the output area, light and dark mode
def test_feedback_and_answer_label_have_aa_contrast_on_the_page(feedback, page):
    assert contrast(selfcheck.COLORS[feedback], page) >= 4.5


def test_numeric_answers_get_a_label_and_a_check_button():
    assert "label.htmlFor = input.id" in selfcheck.ACCESS
    assert 'check.textContent = "Check"' in selfcheck.ACCESS
    assert 'setAttribute("role", "status")' in selfcheck.ACCESS


def choice(text, n_options=4, n_right=1, kind="multiple_choice"):
    return {
        "question": text,
        "type": kind,
        "answers": [{"answer": f"option {i}", "correct": i < n_right, "feedback": f"why {i}"}
                    for i in range(n_options)],
    }


def right_places(q):
    return [i for i, a in enumerate(q["answers"]) if a["correct"]]


def test_arrange_puts_the_right_answer_at_every_position():
    # Written the way the issue found them: the right answer always first.
    questions = [choice(f"Question number {k}?") for k in range(8)]
    arranged = selfcheck.arrange(questions)
    places = [right_places(q)[0] for q in arranged]
    assert sorted(places) == [0, 0, 1, 1, 2, 2, 3, 3], places
    for before, after in zip(questions, arranged):
        assert sorted(a["answer"] for a in after["answers"]) == sorted(
            a["answer"] for a in before["answers"])
    assert questions[0]["answers"][0]["correct"], "the input is left as it was"
    assert selfcheck.arrange(questions) == arranged, "the same questions, the same order"


def test_arrange_spreads_positions_for_mixed_option_counts():
    questions = [choice(f"Three options {k}?", n_options=3) for k in range(3)]
    questions += [choice("Four options?")]
    places = [right_places(q)[0] for q in selfcheck.arrange(questions)]
    assert sorted(places[:3]) == [0, 1, 2]


def test_many_choice_right_answers_are_not_simply_the_first():
    for k in range(20):
        q = choice(f"Select all that apply {k}", n_options=4, n_right=2, kind="many_choice")
        assert right_places(selfcheck.arrange([q])[0]) != [0, 1]


def test_many_choice_right_answers_take_the_least_used_places():
    # A single-choice question put its answer first: the many-choice one that follows,
    # with 3 right of 4, leaves the first option wrong.
    single = choice("Only one?", n_options=3)
    many = choice("Select all three", n_options=4, n_right=3, kind="many_choice")
    arranged = selfcheck.arrange([single, many])
    if right_places(arranged[0]) == [0]:
        assert right_places(arranged[1]) == [1, 2, 3]
    assert 0 not in right_places(selfcheck.arrange(
        [choice(f"First {k}", n_options=2) for k in range(2)]
        + [choice("Many", n_options=4, n_right=2, kind="many_choice")])[2])


def test_numeric_questions_keep_their_answers():
    q = question(type="numeric", answers=[
        {"type": "value", "value": 4, "correct": True, "feedback": "Right"},
        {"type": "default", "correct": False, "feedback": "No"}])
    assert selfcheck.arrange([q]) == [q]


def test_code_spans_become_html_code(monkeypatch):
    shown = []
    import jupyterquiz.dynamic.display as jq

    monkeypatch.setattr(jq, "display", lambda obj: shown.append(obj))
    q = question(question="What does `model.eval()` do to `x < 1`?")
    q["answers"][1]["feedback"] = "No: `momentum=0.99` weights the new batch."
    selfcheck.show([q])
    script = shown[1].data
    assert "<code>model.eval()</code>" in script and "<code>x &lt; 1</code>" in script
    assert "<code>momentum=0.99</code>" in script
    assert "`" not in script.split("var questions", 1)[1].split("\n", 1)[0]
