"""Tests for the chapter 7 grader bn2d_forward (course_lib.exercises.batchnorm2d): correct
answers written several ways pass, each classic mistake is named, broken submissions become
feedback, and the reference is torch.nn.BatchNorm2d's own output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.exercises import EXERCISES, grade
from course_lib.exercises import batchnorm2d as ex


def by_reshape(x, gamma, beta, eps):
    N, C, H, W = x.shape
    flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
    z = (flat - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + eps)
    return (gamma * z + beta).reshape(N, H, W, C).transpose(0, 3, 1, 2)


def by_axes(x, gamma, beta, eps):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return gamma[None, :, None, None] * (x - mu) / np.sqrt(var + eps) + beta[None, :, None, None]


def by_torch(x, gamma, beta, eps):
    out = torch.nn.functional.batch_norm(torch.from_numpy(x), None, None,
                                         torch.from_numpy(gamma), torch.from_numpy(beta),
                                         training=True, eps=eps)
    return out.numpy()


def test_registered():
    assert EXERCISES["bn2d_forward"].startswith("fn(x, gamma, beta, eps) -> out")


def test_reference_is_torch_batchnorm2d():
    for case in ex._cases():
        x, gamma, beta, eps = case.args
        bn = torch.nn.BatchNorm2d(x.shape[1], eps=eps).double().train()
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(gamma))
            bn.bias.copy_(torch.from_numpy(beta))
            out = bn(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(case.expected[0], out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [by_reshape, by_axes, by_torch])
def test_correct_answers_pass(fn):
    feedback = grade("bn2d_forward", fn)
    assert feedback.passed and feedback.mistake is None, feedback.message


@pytest.mark.parametrize("mistake", ex.MISTAKES, ids=lambda m: m.compute.__name__ + m.id)
def test_each_mistake_is_named(mistake):
    feedback = grade("bn2d_forward", lambda *args: mistake.compute(*args)[0])
    assert not feedback.passed
    assert feedback.mistake == mistake.id, feedback.message
    assert feedback.solution


def test_mistakes_differ_from_the_reference_on_some_case():
    for mistake in ex.MISTAKES:
        assert any(not np.allclose(mistake.compute(*c.args)[0], c.expected[0])
                   for c in ex._cases()), mistake.id


def test_matrix_not_reshaped_back_is_named():
    def flat_only(x, gamma, beta, eps):
        N, C, H, W = x.shape
        flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
        return gamma * (flat - flat.mean(0)) / np.sqrt(flat.var(0) + eps) + beta

    feedback = grade("bn2d_forward", flat_only)
    assert feedback.mistake == "not_reshaped_back"
    assert "transpose(0, 3, 1, 2)" in feedback.message


@pytest.mark.parametrize("fn, mistake", [
    (lambda x, gamma, beta, eps: None, "returned_none"),
    (lambda x, gamma, beta: x, "wrong_signature"),
    (lambda x, gamma, beta, eps: 1 / 0, "exception"),
    (lambda x, gamma, beta, eps: x.astype(int), "wrong_type"),
    ("not a function", "wrong_type"),
])
def test_broken_submissions_become_feedback(fn, mistake):
    feedback = grade("bn2d_forward", fn)
    assert not feedback.passed and feedback.mistake == mistake, feedback


def test_in_place_changes_are_reported():
    def in_place(x, gamma, beta, eps):
        out = by_axes(x, gamma, beta, eps)
        x -= x.mean()
        return out

    assert grade("bn2d_forward", in_place).mistake == "mutates_input"


# ---- classic mistakes written as a learner would, not through the grader's table ----------


def _per_channel(x):
    return x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)


def _channel(v):
    return v[None, :, None, None]


def eps_fixed_pytorch(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return _channel(gamma) * (x - mu) / np.sqrt(var + 1e-5) + _channel(beta)


def eps_fixed_keras(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return _channel(gamma) * (x - mu) / np.sqrt(var + 0.001) + _channel(beta)


def eps_outside(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return _channel(gamma) * (x - mu) / (np.sqrt(var) + eps) + _channel(beta)


def by_variance(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return _channel(gamma) * (x - mu) / (var + eps) + _channel(beta)


def no_gamma_beta(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return (x - mu) / np.sqrt(var + eps)


def no_beta(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return _channel(gamma) * (x - mu) / np.sqrt(var + eps)


def no_gamma(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return (x - mu) / np.sqrt(var + eps) + _channel(beta)


def gamma_unreshaped(x, gamma, beta, eps):
    mu, var = _per_channel(x)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta  # (C,) meets (N, C, H, W)


@pytest.mark.parametrize("fn, mistake, words", [
    (eps_fixed_pytorch, "hard_coded_eps", ["eps = 1e-05", "eps argument"]),
    (eps_fixed_keras, "hard_coded_eps", ["eps = 0.001", "eps argument"]),
    (eps_outside, "eps_outside_sqrt", ["outside the square root"]),
    (by_variance, "divides_by_variance", ["standard deviation"]),
    (no_gamma_beta, "ignores_gamma_beta", ["gamma * x_hat + beta"]),
    (no_beta, "ignores_gamma_beta", ["forgot beta"]),
    (no_gamma, "ignores_gamma_beta", ["forgot to multiply by gamma"]),
    (gamma_unreshaped, "gamma_not_reshaped", ["channel axis", "gamma[None, :, None, None]"]),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_classic_mistakes_written_by_a_learner_are_named(fn, mistake, words):
    feedback = grade("bn2d_forward", fn)
    assert feedback.mistake == mistake, feedback.message
    for w in words:
        assert w in feedback.message, (w, feedback.message)


def test_an_unreshaped_gamma_hint_speaks_of_channels_not_of_an_n_by_d_array():
    feedback = grade("bn2d_forward", gamma_unreshaped)
    assert "(D,), and broadcast against x" not in feedback.message
    assert "last axis" in feedback.message
