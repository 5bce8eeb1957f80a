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


# ---- classic mistakes written as a learner would, not through the grader's table ----------


@pytest.mark.parametrize("fixed", [0.1, 0.01, 1e-3])
def test_a_fixed_learning_rate_is_named(fixed):
    def lr_written_in(weights, grads, lr):
        return np.array([(fixed * g).std() / W.std() for W, g in zip(weights, grads)])

    feedback = grade("update_ratio", lr_written_in)
    assert feedback.mistake == "hard_coded_lr", feedback.message
    assert f"learning rate, {fixed:g}" in feedback.message


def sgd_step_in_place(weights, grads, lr):
    ratios = right(weights, grads, lr)
    for W, g in zip(weights, grads):
        W -= lr * g  # the caller's arrays take the step
    return ratios


def zeroes_weights(weights, grads, lr):
    ratios = right(weights, grads, lr)
    for W in weights:
        W[...] = 0.0
    return ratios


def nan_in_first_layer(weights, grads, lr):
    ratios = right(weights, grads, lr)
    weights[0][0, 0] = np.nan
    return ratios


def reshapes_weights(weights, grads, lr):
    ratios = right(weights, grads, lr)
    weights[1].shape = (-1,)
    return ratios


def replaces_an_item(weights, grads, lr):
    ratios = right(weights, grads, lr)
    weights[2] = weights[2].reshape(-1)
    return ratios


@pytest.mark.parametrize("fn, where", [
    (sgd_step_in_place, "weights[0]"), (zeroes_weights, "weights[2]"),
    (nan_in_first_layer, "weights[0]"), (reshapes_weights, "weights[1]"),
    (replaces_an_item, "weights[2]"),
], ids=lambda v: v.__name__ if callable(v) else v)
def test_a_changed_list_of_arrays_is_named(fn, where):
    feedback = grade("update_ratio", fn)
    assert feedback.mistake == "mutates_input", feedback.message
    assert where in feedback.message


def test_wrong_values_and_a_changed_list_are_both_reported():
    def step_then_measure(weights, grads, lr):
        for W, g in zip(weights, grads):
            W -= lr * g
        return np.array([(lr * g).std() / W.std() for W, g in zip(weights, grads)])

    feedback = grade("update_ratio", step_then_measure)
    assert feedback.mistake == "weights_after_step", feedback.message
    assert "AFTER the step" in feedback.message
    assert "modified its input weights" in feedback.message
    assert "W -= lr * dW" in feedback.message
