"""Tests for the chapter 7 grader update_ratio (course_lib.exercises.diagnostics): correct
answers written several ways pass, each classic mistake is named, broken submissions become
feedback, and the reference is course_lib's update_to_data_ratio of an actual SGD step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.exercises import EXERCISES, grade
from course_lib.exercises import diagnostics as ex


def right(weights, grads, lr):
    return np.array([(lr * g).std() / W.std() for W, g in zip(weights, grads)])


def as_list(weights, grads, lr):
    return [float(np.std(lr * g) / np.std(W)) for W, g in zip(weights, grads)]


def by_torch_step(weights, grads, lr):
    ratios = []
    for W, g in zip(weights, grads):
        p = torch.nn.Parameter(torch.from_numpy(W.copy()))
        p.grad = torch.from_numpy(g)
        torch.optim.SGD([p], lr=lr).step()
        ratios.append(((p.detach() - torch.from_numpy(W)).std(unbiased=False)
                       / torch.from_numpy(W).std(unbiased=False)).item())
    return np.array(ratios)


def test_registered():
    assert EXERCISES["update_ratio"].startswith("fn(weights, grads, lr) -> ratios")


@pytest.mark.parametrize("fn", [right, as_list, by_torch_step])
def test_correct_answers_pass(fn):
    feedback = grade("update_ratio", fn)
    assert feedback.passed, feedback.message


@pytest.mark.parametrize("mistake", ex.MISTAKES, ids=lambda m: m.id)
def test_each_mistake_is_named(mistake):
    feedback = grade("update_ratio", lambda *args: mistake.compute(*args)[0])
    assert not feedback.passed and feedback.mistake == mistake.id, feedback.message
    assert feedback.solution


@pytest.mark.parametrize("fn, mistake", [
    (lambda w, g, lr: float(np.mean(right(w, g, lr))), "whole_network"),
    (lambda w, g, lr: None, "returned_none"),
    (lambda w, g: None, "wrong_signature"),
    (lambda w, g, lr: w[7], "exception"),
    (lambda w, g, lr: "fast", "wrong_type"),
    (42, "wrong_type"),
])
def test_broken_submissions_become_feedback(fn, mistake):
    feedback = grade("update_ratio", fn)
    assert not feedback.passed and feedback.mistake == mistake, feedback


def test_submissions_cannot_change_the_cases():
    def vandal(weights, grads, lr):
        out = right(weights, grads, lr)
        weights[0] *= 0
        grads.clear()
        return out

    fb = grade("update_ratio", vandal)
    assert fb.mistake == "mutates_input", fb.message
    assert "weights[0]" in fb.message
    assert "grads" in fb.message
    assert grade("update_ratio", right).passed
