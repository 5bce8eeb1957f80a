"""Tests for the chapter 4 grader (course_lib.exercises.percentiles): correct answers written
many ways pass, each classic mistake is named, broken submissions become feedback, and the
reference is numpy's and torch's own percentile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.exercises import EXERCISES, Feedback, grade
from course_lib.exercises import percentiles as pct_ex
from course_lib.exercises._compare import is_close
from course_lib.experiments.probes.percentiles import activation_percentiles


def test_registered_with_its_signature():
    assert EXERCISES["percentiles_per_step"].startswith("fn(activations) -> out")
    assert "(chapter 4)" in EXERCISES["percentiles_per_step"]


def test_reference_is_numpy_and_torch():
    for case in pct_ex._cases():
        (a,) = case.args
        np.testing.assert_allclose(case.expected[0], np.percentile(a, [15, 50, 85], axis=1).T, rtol=0, atol=0)
        q = torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64)
        np.testing.assert_allclose(case.expected[0], torch.quantile(torch.from_numpy(a), q, dim=1).T.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(case.expected[0], activation_percentiles(a))


def test_cases_can_tell_the_mistakes_apart():
    shapes = [c.args[0].shape for c in pct_ex._cases()]
    assert any(s[0] != s[1] for s in shapes) and any(s[0] == s[1] for s in shapes)
    assert all(3 not in s for s in shapes)  # a (3, n) or (steps, 3) answer cannot be ambiguous
    for case in pct_ex._cases():
        a = case.args[0]
        n = a.shape[1]
        h = (n - 1) * np.array([0.15, 0.5, 0.85])
        assert np.all(h != np.round(h)), "every percentile must need interpolation"
        assert np.max(np.abs(a.mean(axis=1) - np.median(a, axis=1))) > 0.05  # skewed rows


# ---------------------------------------------------------------------------------------
# Correct solutions, each written differently from the library
# ---------------------------------------------------------------------------------------


def pct_numpy(activations):
    return np.percentile(activations, [15, 50, 85], axis=1).T


def pct_quantile(activations):
    return np.quantile(activations, [0.15, 0.5, 0.85], axis=1).T


def pct_columns(activations):
    return np.column_stack([np.percentile(activations, q, axis=1) for q in (15, 50, 85)])


def pct_loops(activations):
    """Sort each row and interpolate by hand."""
    steps, n = activations.shape
    out = np.empty((steps, 3))
    for t in range(steps):
        v = sorted(activations[t])
        for k, q in enumerate((0.15, 0.5, 0.85)):
            h = (n - 1) * q
            lo = int(np.floor(h))
            hi = min(lo + 1, n - 1)
            out[t, k] = v[lo] + (h - lo) * (v[hi] - v[lo])
    return out


def pct_interp(activations):
    s = np.sort(activations, axis=1)
    pos = np.linspace(0, 100, activations.shape[1])
    return np.array([np.interp([15, 50, 85], pos, row) for row in s])


def pct_torch(activations):
    q = torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64)
    return torch.quantile(torch.from_numpy(activations), q, dim=1).T.numpy()


def pct_torch_float32(activations):
    t = torch.tensor(activations, dtype=torch.float32)
    return torch.quantile(t, torch.tensor([0.15, 0.5, 0.85]), dim=1).T.numpy()


def pct_median_function(activations):
    lo, hi = np.percentile(activations, [15, 85], axis=1)
    return np.stack([lo, np.median(activations, axis=1), hi], axis=1)


CORRECT = [pct_numpy, pct_quantile, pct_columns, pct_loops, pct_interp, pct_torch,
           pct_torch_float32, pct_median_function]


@pytest.mark.parametrize("fn", CORRECT, ids=lambda f: f.__name__)
def test_correct_solutions_pass(fn):
    fb = grade("percentiles_per_step", fn)
    assert fb.passed, fb.message
    assert fb.mistake is None
    assert fb.message.startswith("✓ Correct: all 4 cases")


def test_float32_answer_passes_with_a_note():
    fb = grade("percentiles_per_step", pct_torch_float32)
    assert fb.passed and "float32" in fb.message


def test_pass_message_does_not_depend_on_round_off():
    assert grade("percentiles_per_step", pct_loops).message in (
        "✓ Correct: all 4 cases match the reference; largest difference 0.",
        "✓ Correct: all 4 cases match the reference; largest difference < 1e-12 (round-off).",
    )


# ---------------------------------------------------------------------------------------
# Classic mistakes, written the way a learner would write them
# ---------------------------------------------------------------------------------------

MISTAKES = {
    "wrong_axis": [
        (lambda a: np.percentile(a, [15, 50, 85], axis=0).T, ["axis=1", "over the steps"]),
        (lambda a: np.percentile(a, [15, 50, 85], axis=0), ["axis=1"]),
        (lambda a: np.quantile(a.T, [0.15, 0.5, 0.85], axis=1).T, ["axis=1"]),
    ],
    "percent_vs_fraction": [
        (lambda a: np.percentile(a, [0.15, 0.5, 0.85], axis=1).T, ["0.15th", "0-100"]),
        (lambda a: np.quantile(a, [15, 50, 85], axis=1).T, ["between 0 and 1", "np.percentile"]),
        (lambda a: torch.quantile(torch.from_numpy(a), torch.tensor([15.0, 50.0, 85.0], dtype=torch.float64), dim=1).T.numpy(),
         ["between 0 and 1", "RuntimeError"]),
    ],
    "wrong_order": [
        (lambda a: np.percentile(a, [85, 50, 15], axis=1).T, ["wrong order", "15th, 50th and 85th"]),
        (lambda a: np.percentile(a, [50, 15, 85], axis=1).T, ["wrong order"]),
        (lambda a: np.percentile(a, [15, 85, 50], axis=1).T, ["wrong order"]),
    ],
    "whole_array": [
        (lambda a: np.percentile(a, [15, 50, 85]), ["whole array", "axis=1"]),
        (lambda a: np.tile(np.percentile(a, [15, 50, 85]), (a.shape[0], 1)), ["same three numbers"]),
        (lambda a: np.zeros((a.shape[0], 3)) + np.quantile(a, [0.15, 0.5, 0.85]), ["whole array"]),
    ],
    "transposed": [
        (lambda a: np.percentile(a, [15, 50, 85], axis=1), [".T", "rows instead of columns"]),
    ],
    "mean_for_median": [
        (lambda a: np.column_stack([np.percentile(a, 15, axis=1), a.mean(axis=1),
                                    np.percentile(a, 85, axis=1)]), ["median", "mean"]),
    ],
    "no_interpolation": [
        (lambda a: np.sort(a, axis=1)[:, [int(0.15 * a.shape[1]), int(0.5 * a.shape[1]),
                                          int(0.85 * a.shape[1])]], ["interpolat"]),
        (lambda a: np.percentile(a, [15, 50, 85], axis=1, method="nearest").T, ["method='linear'"]),
        (lambda a: np.percentile(a, [15, 50, 85], axis=1, method="lower").T, ["interpolat"]),
    ],
}


@pytest.mark.parametrize(
    "mistake, k",
    [(m, k) for m, variants in MISTAKES.items() for k in range(len(variants))],
)
def test_mistakes_are_named(mistake, k):
    fn, words = MISTAKES[mistake][k]
    fb = grade("percentiles_per_step", fn)
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_unrecognized_wrong_values_get_the_generic_hint():
    fb = grade("percentiles_per_step", lambda a: 2.0 * pct_numpy(a))
    assert (fb.passed, fb.mistake) == (False, "wrong_values")
    assert "No classic mistake matches" in fb.message and "np.median" in fb.message
    assert "Largest difference in case" in fb.message and "maxdiff" in fb.message


def test_every_built_in_mistake_is_named_and_far_from_the_reference():
    cases = pct_ex._cases()
    for m in pct_ex.MISTAKES:
        outs = [m.compute(*c.args)[0] for c in cases]
        finite = [(o, c.expected[0]) for o, c in zip(outs, cases) if np.isfinite(o).all()]
        assert finite, m.id
        rel = max(float(np.max(np.abs(o - e)) / max(1.0, float(np.max(np.abs(e))))) for o, e in finite)
        assert rel > 1e-3, (m.id, rel)
        if len(finite) < len(cases):
            continue  # wrong_axis on a non-square case: a shape, named by the shape check
        fb = grade("percentiles_per_step", lambda a, _m=m: _m.compute(a)[0])
        assert (fb.passed, fb.mistake) == (False, m.id), fb.message
        assert m.explanation in fb.message


def test_mistakes_with_different_ids_are_distinguishable():
    cases = pct_ex._cases()
    outs = [[m.compute(*c.args)[0] for c in cases] for m in pct_ex.MISTAKES]
    ms = pct_ex.MISTAKES
    for i in range(len(ms)):
        for j in range(i + 1, len(ms)):
            if ms[i].id != ms[j].id:
                assert not all(is_close(a, b) for a, b in zip(outs[i], outs[j])), (ms[i].id, ms[j].id)


# ---------------------------------------------------------------------------------------
# Broken submissions are reported, never raised
# ---------------------------------------------------------------------------------------


def _not_implemented(activations):
    raise NotImplementedError("Replace this line with your code.")


def _returns_none(activations):
    np.percentile(activations, [15, 50, 85], axis=1)


def _mutates(activations):
    activations.sort(axis=1)  # sorts the caller's array in place
    return pct_numpy(activations)


def _nan(activations):
    out = pct_numpy(activations)
    out[0, 0] = np.nan
    return out


BROKEN = {
    "not_implemented": (_not_implemented, ["fill in the body"]),
    "returned_none": (_returns_none, ["None", "return"]),
    "mutates_input": (_mutates, ["in place"]),
    "not_finite": (_nan, ["NaN"]),
    "wrong_type": (lambda a: pct_numpy(a).tolist(), ["list"]),
    "exception": (lambda a: a.percentile(15), ["AttributeError"]),
    "wrong_signature": (lambda a, q: pct_numpy(a), ["1 positional"]),
    "wrong_shape": (lambda a: pct_numpy(a)[:, :2], ["shape"]),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_submissions_become_feedback(kind):
    fn, words = BROKEN[kind]
    fb = grade("percentiles_per_step", fn)
    assert isinstance(fb, Feedback)
    assert (fb.passed, fb.mistake) == (False, kind), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_torch_tensor_answer_is_explained():
    fb = grade("percentiles_per_step", lambda a: torch.from_numpy(pct_numpy(a)))
    assert fb.mistake == "wrong_type" and ".detach().numpy()" in fb.message


def test_mutating_submission_cannot_corrupt_the_grader():
    assert grade("percentiles_per_step", _mutates).mistake == "mutates_input"
    assert grade("percentiles_per_step", pct_numpy).passed


def test_grading_is_deterministic():
    fn = MISTAKES["wrong_order"][0][0]
    assert grade("percentiles_per_step", fn) == grade("percentiles_per_step", fn)
