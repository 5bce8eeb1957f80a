"""Chapter 8 graders: group norm's forward pass and what each process sends in SyncBN."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.exercises import EXERCISES, grade
from course_lib.exercises import small_batches as sb


def group_norm_right(x, G, gamma, beta, eps):
    N, C, H, W = x.shape
    z = x.reshape(N, G, C // G, H, W)
    mu = z.mean(axis=(2, 3, 4), keepdims=True)
    var = z.var(axis=(2, 3, 4), keepdims=True)
    z_norm = ((z - mu) / np.sqrt(var + eps)).reshape(N, C, H, W)
    return gamma[None, :, None, None] * z_norm + beta[None, :, None, None]


def sums_right(x):
    axes = (0, *range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    return mu.ravel(), ((x - mu) ** 2).sum(axis=axes)


def test_each_classic_mistake_written_independently_is_named():
    # Written here, not through the grader's own mistake table.
    fb = grade("sync_bn_sums", lambda x: (x.mean(axis=(0, *range(2, x.ndim))),
                                          (x ** 2).sum(axis=(0, *range(2, x.ndim)))))
    assert fb.mistake == "raw_sum_of_squares", fb.message
    fb = grade("sync_bn_sums", lambda x: (x.mean(axis=(0, *range(2, x.ndim))),
                                          x.var(axis=(0, *range(2, x.ndim)))))
    assert fb.mistake == "variance_not_m2", fb.message


def test_registered():
    assert "group_norm_forward" in EXERCISES and "sync_bn_sums" in EXERCISES


def test_right_answers_pass():
    for exercise, fn in (("group_norm_forward", group_norm_right), ("sync_bn_sums", sums_right)):
        feedback = grade(exercise, fn)
        assert feedback.passed, feedback.message
        assert feedback.mistake is None


def test_float32_answers_pass():
    fb = grade("group_norm_forward", lambda *a: group_norm_right(a[0].astype(np.float32), *a[1:]))
    assert fb.passed, fb.message


@pytest.mark.parametrize("mistake", sb.GN_MISTAKES, ids=lambda m: m.id)
def test_each_group_norm_mistake_is_named(mistake):
    feedback = grade("group_norm_forward", lambda *args: mistake.compute(*args)[0])
    assert not feedback.passed
    assert feedback.mistake == mistake.id, feedback.message


@pytest.mark.parametrize("mistake", sb.SUM_MISTAKES, ids=lambda m: m.id)
def test_each_sums_mistake_is_named(mistake):
    feedback = grade("sync_bn_sums", mistake.compute)
    assert not feedback.passed
    assert feedback.mistake == mistake.id, feedback.message


def test_layer_and_instance_norm_are_the_special_cases():
    # The grader's layer/instance-norm mistakes ARE group norm with G = 1 and G = C.
    x, gamma, beta = sb._gn_inputs(0, 2, 6, 3, 3)
    ln = sb._wrong_over((1, 2, 3))(x, 3, gamma, beta, 1e-5)[0]
    inorm = sb._wrong_over((2, 3))(x, 3, gamma, beta, 1e-5)[0]
    assert np.allclose(ln, group_norm_right(x, 1, gamma, beta, 1e-5))
    assert np.allclose(inorm, group_norm_right(x, 6, gamma, beta, 1e-5))


def test_wrong_shapes_are_explained():
    fb = grade("sync_bn_sums", lambda x: (x.mean(axis=0), x.var(axis=0) * len(x)))
    assert fb.mistake == "spatial_axes", fb.message
    fb = grade("sync_bn_sums", lambda x: (x.mean(axis=1), x.var(axis=1)))
    assert fb.mistake == "wrong_axis", fb.message


def test_broken_submissions_never_crash_the_grader():
    def raises(*args):
        raise NotImplementedError

    for exercise in ("group_norm_forward", "sync_bn_sums"):
        assert grade(exercise, raises).mistake == "not_implemented"
        assert not grade(exercise, lambda *a: None).passed
        assert not grade(exercise, lambda *a: 1 / 0).passed


# ---- group norm's classic mistakes written as a learner would, not through the grader's table


def _normalize_groups(x, groups, eps):
    N, C, H, W = x.shape
    z = x.reshape(N, groups, C // groups, H, W)
    z_norm = (z - z.mean(axis=(2, 3, 4), keepdims=True)) / np.sqrt(
        z.var(axis=(2, 3, 4), keepdims=True) + eps)
    return z_norm.reshape(N, C, H, W)


def gn_two_groups(x, G, gamma, beta, eps):
    return gamma[None, :, None, None] * _normalize_groups(x, 2, eps) + beta[None, :, None, None]


def gn_paper_groups(x, G, gamma, beta, eps):
    G = 32  # the paper's default
    return gamma[None, :, None, None] * _normalize_groups(x, G, eps) + beta[None, :, None, None]


def gn_eps_pytorch(x, G, gamma, beta, eps):
    return gamma[None, :, None, None] * _normalize_groups(x, G, 1e-5) + beta[None, :, None, None]


def gn_eps_keras(x, G, gamma, beta, eps):
    return gamma[None, :, None, None] * _normalize_groups(x, G, 1e-3) + beta[None, :, None, None]


def gn_no_affine(x, G, gamma, beta, eps):
    return _normalize_groups(x, G, eps)


def gn_no_beta(x, G, gamma, beta, eps):
    return gamma[None, :, None, None] * _normalize_groups(x, G, eps)


def gn_no_gamma(x, G, gamma, beta, eps):
    return _normalize_groups(x, G, eps) + beta[None, :, None, None]


def gn_gamma_unreshaped(x, G, gamma, beta, eps):
    return gamma * _normalize_groups(x, G, eps) + beta


@pytest.mark.parametrize("fn, mistake, words", [
    (gn_two_groups, "hard_coded_G", ["G argument"]),
    (gn_paper_groups, "hard_coded_G", ["32 groups", "G argument"]),
    (gn_eps_pytorch, "hard_coded_eps", ["eps = 1e-05", "eps argument"]),
    (gn_eps_keras, "hard_coded_eps", ["eps = 0.001", "eps argument"]),
    (gn_no_affine, "ignores_gamma_beta", ["per CHANNEL"]),
    (gn_no_beta, "ignores_gamma_beta", ["forgot beta"]),
    (gn_no_gamma, "ignores_gamma_beta", ["forgot to multiply by gamma"]),
    (gn_gamma_unreshaped, "gamma_not_reshaped", ["last axis", "gamma[None, :, None, None]"]),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_group_norm_classic_mistakes_written_by_a_learner_are_named(fn, mistake, words):
    feedback = grade("group_norm_forward", fn)
    assert feedback.mistake == mistake, feedback.message
    for w in words:
        assert w in feedback.message, (w, feedback.message)
