"""Tests for course_lib.experiments.lab.model_state: every probe leaves the model exactly as it
was (parameters, gradients, buffers, modes, random generators), so observing a training
run does not change it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe_helpers import KINDS, assert_same_state, model_of, small_digits, state, trained

from course_lib.experiments.probes.landscape import landscape_recorder, probe_gradient_direction
from course_lib.experiments.probes.gradient_ics import measure_gradient_ics
from course_lib.experiments.probes.percentiles import percentile_recorder, unit_input_percentiles
from course_lib.experiments.lab.training import train


@pytest.fixture(scope="module")
def data():
    return small_digits()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_percentiles_leave_the_model_exactly_as_it_was(kind, mode, data):
    model = trained(kind, data)
    model.bn2.eval() if hasattr(model, "bn2") else None  # a mixed-mode model
    before = state(model)
    unit_input_percentiles(model, data.X_train[:100], "act3", units=[0, 1], mode=mode)
    assert_same_state(before, state(model))


def test_recording_does_not_change_the_training_run(data):
    """Observing must not perturb: same losses and weights with and without the probes,
    also for noisy BN, whose probe in train mode draws noise from the shared generator."""
    X, y = data.X_train[:100], data.y_train[:100]
    results = []
    for record in (None, [percentile_recorder(X, units=[0, 1]), landscape_recorder(X, y, [0.5, 1.0])]):
        model = model_of("noisy BN")
        h = train(model, data, steps=30, lr=0.5, eval_every=10, record=record)
        results.append((h.loss, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.parametrize("kind", KINDS)
def test_probe_leaves_the_model_exactly_as_it_was_and_is_deterministic(kind, data):
    model = trained(kind, data)
    X, y = data.X_train[:100], data.y_train[:100]
    before = state(model)
    a = probe_gradient_direction(model, X, y, [0.25, 1.0, 4.0])
    assert_same_state(before, state(model))
    b = probe_gradient_direction(model, X, y, [0.25, 1.0, 4.0])
    assert a.loss0 == b.loss0 and a.grad_norm == b.grad_norm
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.grad_changes, b.grad_changes)


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_ics_leaves_the_model_exactly_as_it_was_and_is_deterministic(kind, data):
    model = trained(kind, data)
    X, y = data.X_train[:100], data.y_train[:100]
    before = state(model)
    a = measure_gradient_ics(model, X, y, "linear3.weight", lr=0.5)
    assert_same_state(before, state(model))
    assert a == measure_gradient_ics(model, X, y, "linear3.weight", lr=0.5)
