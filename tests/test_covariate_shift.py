"""Tests for course_lib/experiments/covariate_shift.py: the mechanics of the covariate- and
concept-shift experiments (with short runs).

Chapter 4's claims about them are registry entries in the same module; tests/test_claims.py
runs them on the claim seeds with the chapter's settings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib.experiments.covariate_shift import (
    SETTINGS,
    _restandardized,
    accuracy_vs_shift,
    concept_shift_experiment,
    concept_shift_rule,
    covariate_shift_experiment,
    decision_grid,
)
from course_lib.experiments.lab.data import covariate_shift_rule
from course_lib.experiments.lab.training import evaluate

#: Short runs: the mechanics do not need a trained classifier.
TINY = replace(SETTINGS, steps=20, cure_steps=20, n_train=200, n_test=200)


@pytest.fixture(scope="module")
def tiny():
    return covariate_shift_experiment(5, TINY)


def test_same_rule_in_both_sets(tiny):
    task = tiny.task
    for split in (task.source, task.shifted):
        assert torch.equal(covariate_shift_rule(split.X_test), split.y_test)
        assert torch.equal(covariate_shift_rule(split.X_train), split.y_train)
    # Only the inputs moved: the shifted cloud sits around (3, 0), the training cloud at 0.
    mean_src, mean_sh = task.source.X_test.mean(0), task.shifted.X_test.mean(0)
    assert abs(float(mean_src[0])) < 0.15 and abs(float(mean_sh[0]) - TINY.shift) < 0.15


def test_result_fields_are_what_they_say(tiny):
    shifted = tiny.task.shifted
    assert tiny.shifted_acc == evaluate(tiny.model, shifted.X_test, shifted.y_test)
    assert tiny.shifted_share_class0 == pytest.approx(float((shifted.y_test == 0).double().mean()))


def test_accuracy_vs_shift_moves_the_same_points(tiny):
    acc = accuracy_vs_shift(tiny.model, 5, [0.0, TINY.shift], TINY)
    # shift = 3 is exactly the experiment's shifted set ...
    assert acc[1] == pytest.approx(tiny.shifted_acc)
    # ... and shift = 0 the same points moved back, labeled by the rule where they now are.
    X_back = tiny.task.shifted.X_test - torch.tensor([TINY.shift, 0.0])
    assert acc[0] == pytest.approx(evaluate(tiny.model, X_back, covariate_shift_rule(X_back)))


def test_the_experiment_is_reproducible_and_remembered():
    a, b = covariate_shift_experiment(9, TINY), covariate_shift_experiment(9, TINY)
    assert a is b  # the claims that read it train it once
    c = covariate_shift_experiment(9, replace(TINY, lr=1.0))
    assert c is not a and c.history.loss != a.history.loss


def test_concept_shift_rule_raises_the_wave():
    X = torch.tensor([[0.0, 0.5], [0.0, 1.5], [np.pi / 2, 2.0], [np.pi / 2, 3.0]])
    assert covariate_shift_rule(X).tolist() == [1, 1, 1, 1]
    assert concept_shift_rule(X, 1.0).tolist() == [0, 1, 0, 1]
    assert torch.equal(concept_shift_rule(X, 0.0), covariate_shift_rule(X))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        concept_shift_rule(torch.zeros(3), 1.0)


def test_restandardizing_gives_the_reference_statistics():
    X = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 3 + 7
    ref = torch.randn(400, 2, generator=torch.Generator().manual_seed(1))
    out = _restandardized(X, ref)
    torch.testing.assert_close(out.mean(0), ref.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0), ref.std(0), atol=1e-5, rtol=0)


def test_concept_shift_experiment_keeps_the_inputs_and_changes_the_labels():
    r = concept_shift_experiment(5, TINY)
    assert r.covariate is covariate_shift_experiment(5, TINY)
    assert torch.equal(r.y_old, covariate_shift_rule(r.X_new))
    assert torch.equal(r.y_new, concept_shift_rule(r.X_new, TINY.concept_offset))
    assert r.agreement == pytest.approx(float((r.y_old == r.y_new).double().mean()))
    # Raising the wave only turns class-1 points into class 0.
    assert bool(((r.y_old == 0) <= (r.y_new == 0)).all())
    # The fresh inputs come from the training distribution, not from its training set.
    assert abs(float(r.X_new.mean(0)[0])) < 0.15
    assert not torch.equal(r.X_new, r.covariate.task.source.X_test)
    assert r.acc_new == evaluate(r.covariate.model, r.X_new, r.y_new)
    assert len(r.both_clouds_acc) == 2


def test_decision_grid_matches_the_model(tiny):
    x1, x2, p1 = decision_grid(tiny.model, (-2.0, 5.0), (-2.5, 2.5), n=30)
    assert x1.shape == x2.shape == p1.shape == (30, 30)
    assert np.all((p1 >= 0) & (p1 <= 1))
    grid = torch.tensor(np.column_stack([x1.ravel(), x2.ravel()]), dtype=torch.float32)
    tiny.model.eval()
    with torch.no_grad():
        pred = tiny.model(grid).argmax(1).numpy()
    tiny.model.train()
    np.testing.assert_array_equal(pred, (p1.ravel() > 0.5).astype(int))
    assert tiny.model.training  # left in training mode, as found


def test_decision_grid_explains_bad_limits(tiny):
    with pytest.raises(ValueError, match="low < high"):
        decision_grid(tiny.model, (5.0, -2.0), (-2.5, 2.5))
    with pytest.raises(ValueError, match="n must be"):
        decision_grid(tiny.model, (-2.0, 5.0), (-2.5, 2.5), n=1)


def test_decision_grid_restores_every_submodules_mode_of_a_nested_model():
    """A nested model with a submodule in its own mode comes back exactly: only restoring the
    top module's mode (model.train(was_training)) would switch the inner BN to train."""
    inner = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4))
    model = torch.nn.Sequential(inner, torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model(torch.randn(16, 2))          # some running statistics
    inner[1].eval()                    # the inner layer in eval mode, the rest training
    before = [m.training for m in model.modules()]
    buffers = [b.clone() for b in model.buffers()]
    decision_grid(model, (-1.0, 1.0), (-1.0, 1.0), n=5)
    assert [m.training for m in model.modules()] == before
    assert all(torch.equal(a, b) for a, b in zip(model.buffers(), buffers))
