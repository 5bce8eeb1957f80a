"""Tests for course_lib.exercises._sandbox: the time limit leaves nothing armed on any path
(thousands of tight-timeout and finally-block submissions, then no alarm pending), settings a
submission changes are put back and named, and feedback text always encodes as UTF-8."""

from __future__ import annotations

import signal
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from course_lib.exercises import EXERCISES, feedback_html, grade
from course_lib.exercises import _sandbox
from tests import test_exercises as T
from tests.test_exercises_network_numpy import PAIR_IDS

BIG = np.ones((400, 400))


def _forever(*a):
    while True:
        pass


def _finally_block(*a):
    try:
        while True:
            pass
    finally:
        BIG * 1.0001  # a C call of ~1 ms: the alarm lands in it or right after it


@pytest.fixture
def recording_alarm_handler():
    """A handler of our own for SIGALRM, so a leaked or stray alarm is seen, not fatal."""
    fired = []

    def handler(signum, frame):
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        yield handler, fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _assert_nothing_armed(handler, fired):
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler
    time.sleep(0.2)  # a leaked repeating alarm would fire (or raise TimeUp) here
    assert fired == []


def test_thousands_of_tight_timeouts_leave_no_alarm_armed(recording_alarm_handler):
    handler, fired = recording_alarm_handler
    outcomes = set()
    for k in range(1200):  # the path every grader takes: a session, then run()
        seconds = (1e-6, 1e-5, 1e-4, 1e-3)[k % 4]
        with _sandbox.session(seconds):
            out = _sandbox.run(_finally_block if k % 2 else _forever)
        outcomes.add(out.timed_out is not None)
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0), k
        assert signal.getsignal(signal.SIGALRM) is handler, k
    assert outcomes == {True}
    for k, exercise_id in enumerate(sorted(EXERCISES) * 4):  # and whole gradings
        fn = _finally_block if k % 2 else _forever
        submission = (fn, fn) if exercise_id in PAIR_IDS else fn  # a layer's two halves
        fb = grade(exercise_id, submission, timeout=1e-6 if k % 3 else 1e-3)
        assert fb.mistake == "timeout", (exercise_id, fb.message)
    _assert_nothing_armed(handler, fired)


def test_an_alarm_raised_by_the_submission_itself_does_not_leak(recording_alarm_handler):
    handler, fired = recording_alarm_handler

    def rearms(*a):  # a submission that sets its own timer and handler
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
        return T.bn_forward_einsum(*a)

    grade("bn_forward_pass", rearms)
    _assert_nothing_armed(handler, fired)


def test_someone_elses_timer_keeps_running(recording_alarm_handler):
    handler, fired = recording_alarm_handler
    signal.setitimer(signal.ITIMER_REAL, 30.0)
    grade("bn_forward_pass", _forever, timeout=1e-3)
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert 25 < left <= 30
    assert fired == []


def _meddles(x, gamma, beta, eps):
    sys.setrecursionlimit(123)
    np.set_printoptions(precision=2)
    np.seterr(all="raise")
    warnings.simplefilter("error")
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.set_num_threads(torch.get_num_threads() + 1)
    return T.bn_forward_einsum(x, gamma, beta, eps)


def test_interpreter_settings_a_submission_changes_are_put_back():
    before = (sys.getrecursionlimit(), np.get_printoptions(), np.geterr(), list(warnings.filters),
              torch.get_default_dtype(), torch.is_grad_enabled(), torch.get_num_threads())
    grade("bn_forward_pass", _meddles)
    assert sys.getrecursionlimit() == before[0]
    assert np.get_printoptions() == before[1]
    assert np.geterr() == before[2]
    assert warnings.filters == before[3]
    assert torch.get_default_dtype() == before[4]
    assert torch.is_grad_enabled() == before[5]
    assert torch.get_num_threads() == before[6]


def test_changed_settings_are_named_in_the_feedback():
    fb = grade("bn_forward_pass", _meddles)
    assert fb.passed, fb.message
    for name in ("sys.setrecursionlimit", "np.set_printoptions", "torch.set_default_dtype",
                 "torch.set_grad_enabled", "torch.set_num_threads", "warnings.filterwarnings"):
        assert name in fb.message, (name, fb.message)
    assert "put them back" in fb.message


def test_seeding_is_put_back_silently():
    def seeds(x, gamma, beta, eps):
        np.random.seed(0)
        torch.manual_seed(0)
        return T.bn_forward_einsum(x, gamma, beta, eps)

    state = np.random.get_state()[1].copy()
    fb = grade("bn_forward_pass", seeds)
    assert "Note:" not in fb.message
    assert np.array_equal(np.random.get_state()[1], state)


def test_a_low_recursion_limit_cannot_break_the_grader():
    def limits(x, gamma, beta, eps):
        sys.setrecursionlimit(60)
        return T.bn_forward_einsum(x, gamma, beta, eps)

    fb = grade("bn_forward_pass", limits)
    assert fb.passed, fb.message


LONE = "bad \ud800 value \udcff"


def test_lone_surrogates_in_an_exception_become_utf8_feedback():
    def raises(*a):
        raise ValueError(LONE)

    fb = grade("bn_forward_pass", raises)
    assert fb.mistake == "exception"
    fb.message.encode("utf-8")
    feedback_html(fb).encode("utf-8")
    assert "\\ud800" in fb.message


def test_lone_surrogates_printed_become_utf8_feedback():
    def prints(*a):
        print(LONE)
        return T.bn_forward_einsum(*a)

    fb = grade("bn_forward_pass", prints)
    fb.message.encode("utf-8")
    feedback_html(fb).encode("utf-8")


def test_safe_str_returns_a_plain_str_for_a_str_subclass():
    class Loud(str):
        def __str__(self):
            return self

    class Obj:
        def __str__(self):
            return Loud("hello")

    assert type(_sandbox.safe_str(Obj())) is str
