"""Tests for the chapter 5 grader (course_lib.exercises.batch_noise): correct answers written
many ways pass, each classic mistake is named, broken submissions become feedback, and the
reference is torch's own batch norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.exercises import EXERCISES, Feedback, grade
from course_lib.exercises import batch_noise as bn_ex
from course_lib.exercises._compare import is_close

EX = "normalize_in_batch"


def test_registered_with_its_signature():
    assert EXERCISES[EX].startswith("fn(z, mates, eps) -> z_norm")
    assert "(chapter 5)" in EXERCISES[EX]


def test_reference_is_torch_batch_norm():
    for case in bn_ex._cases():
        z, mates, eps = case.args
        batch = torch.from_numpy(np.vstack([z, mates]))
        out = F.batch_norm(batch, None, None, training=True, eps=eps)[0].numpy()
        np.testing.assert_allclose(case.expected[0], out, rtol=1e-10, atol=1e-12)


def test_cases_can_tell_the_mistakes_apart():
    shapes = [(c.args[0].shape, c.args[1].shape) for c in bn_ex._cases()]
    assert len(set(shapes)) < len(shapes), "two cases share a shape: a cache shows"
    for (d,), (mates, d2) in shapes:
        assert d == d2 and d not in (mates, mates + 1)
    assert {c.args[2] for c in bn_ex._cases()} - {1e-5, 1e-3}, "an eps no one hard-codes"
    mistakes, cases = bn_ex.MISTAKES, bn_ex._cases()
    outs = [[m.compute(*c.args) for c in cases] for m in mistakes]
    for m, out in zip(mistakes, outs):
        rel = max(float(np.max(np.abs(o[0] - c.expected[0]))) for o, c in zip(out, cases))
        assert rel > 1e-3, m.id
    for a in range(len(mistakes)):
        for b in range(a + 1, len(mistakes)):
            if mistakes[a].id != mistakes[b].id:
                assert not all(is_close(x[0], y[0]) for x, y in zip(outs[a], outs[b])), (
                    mistakes[a].id, mistakes[b].id)


def nb_vstack(z, mates, eps):
    batch = np.vstack([z, mates])
    return (z - batch.mean(axis=0)) / np.sqrt(batch.var(axis=0) + eps)


def nb_sums(z, mates, eps):
    """From sums: the batch-mates' sum plus z."""
    m = mates.shape[0] + 1
    mu = (mates.sum(axis=0) + z) / m
    var = (((mates - mu) ** 2).sum(axis=0) + (z - mu) ** 2) / m
    return (z - mu) / np.sqrt(var + eps)


def nb_torch(z, mates, eps):
    batch = torch.from_numpy(np.vstack([z, mates]))
    return F.batch_norm(batch, None, None, training=True, eps=eps)[0].numpy()


def nb_float32(z, mates, eps):
    return nb_vstack(z.astype(np.float32), mates.astype(np.float32), np.float32(eps))


@pytest.mark.parametrize("fn", [nb_vstack, nb_sums, nb_torch, nb_float32], ids=lambda f: f.__name__)
def test_correct_solutions_pass(fn):
    fb = grade(EX, fn)
    assert (fb.passed, fb.mistake) == (True, None), fb.message
    assert fb.message.startswith("✓ Correct: all 4 cases")
    assert ("float32" in fb.message) == (fn is nb_float32)


def _stats(batch, ddof=0):
    return batch.mean(axis=0), batch.var(axis=0, ddof=ddof)


MISTAKES = {
    "excludes_itself": (lambda z, mates, eps: (z - mates.mean(0)) / np.sqrt(mates.var(0) + eps),
                        ["batch-mates only", "z included"]),
    "unbiased_variance": (
        lambda z, mates, eps: (lambda mu, var: (z - mu) / np.sqrt(var + eps))(
            *_stats(np.vstack([z, mates]), ddof=1)),
        ["m - 1", "biased"]),
    "missing_eps": (lambda z, mates, eps: (lambda mu, var: (z - mu) / np.sqrt(var))(
        *_stats(np.vstack([z, mates]))), ["without eps"]),
    "hard_coded_eps": (lambda z, mates, eps: nb_vstack(z, mates, 1e-5), ["eps argument"]),
    "wrong_axis": (lambda z, mates, eps: (z - z.mean()) / np.sqrt(z.var() + eps),
                   ["layer norm", "axis=0"]),
    "whole_batch": (lambda z, mates, eps: np.vstack([nb_vstack(r, np.vstack([z, mates]), eps)
                                                      for r in np.vstack([z, mates])]),
                    ["whole batch", "row"]),
}


@pytest.mark.parametrize("fixed", [1e-5, 1e-3, 1e-8])
def test_a_fixed_eps_is_named_with_its_value(fixed):
    def eps_written_in(z, mates, eps):
        batch = np.vstack([z, mates])
        return (z - batch.mean(axis=0)) / np.sqrt(batch.var(axis=0) + fixed)

    fb = grade(EX, eps_written_in)
    assert fb.mistake == "hard_coded_eps", fb.message
    assert f"eps = {fixed:g}" in fb.message


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_mistakes_are_named(mistake):
    fn, words = MISTAKES[mistake]
    fb = grade(EX, fn)
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_each_built_in_mistake_is_named():
    for m in bn_ex.MISTAKES:
        fb = grade(EX, lambda *a, _m=m: _m.compute(*a)[0])
        assert (fb.passed, fb.mistake) == (False, m.id), fb.message
        assert m.explanation in fb.message and fb.solution == bn_ex.FIX


@pytest.mark.parametrize("fn, mistake", [
    (lambda z, mates, eps: None, "returned_none"),
    (lambda z, mates: None, "wrong_signature"),
    (lambda z, mates, eps: nb_vstack(z, mates, eps).tolist(), "wrong_type"),
    (lambda z, mates, eps: float(nb_vstack(z, mates, eps)[0]), "wrong_type"),
    (lambda z, mates, eps: 1 / (z - z), "not_finite"),
])
def test_broken_submissions_become_feedback(fn, mistake):
    fb = grade(EX, fn)
    assert isinstance(fb, Feedback) and (fb.passed, fb.mistake) == (False, mistake), fb.message
