"""Tests for course_lib.experiments.probes.gradient_ics: Santurkar et al.'s gradient definition of
internal covariate shift, by hand on a network and in closed form on a tiny linear model."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.experiments.probes.gradient_ics import (
    GradientShift,
    gradient_ics,
    gradient_ics_recorder,
    measure_gradient_ics,
)
from course_lib.experiments.lab.training import train
from probe_helpers import model_of, small_digits, trained


@pytest.fixture(scope="module")
def data():
    return small_digits()


def test_gradient_ics_on_a_two_layer_linear_model_matches_closed_form():
    """L(w1, w2) = 0.5 * (w2 * w1 * x - y)^2 with x = 1, y = 0: dL/dw2 = w2 w1^2, and after
    w1 takes its step w1' = w1 - lr * w2^2 w1, G' = w2 w1'^2."""
    x = torch.tensor(1.0, dtype=torch.float64)

    def grad(theta):
        r = theta["w2"] * theta["w1"] * x
        return {"w1": r * theta["w2"] * x, "w2": r * theta["w1"] * x}

    theta = {"w1": torch.tensor([0.8], dtype=torch.float64), "w2": torch.tensor([1.5], dtype=torch.float64)}
    lr = 0.1
    l2, cos, g_norm = gradient_ics(grad, theta, ["w1"], "w2", lr)
    w1, w2 = 0.8, 1.5
    G = w2 * w1**2
    w1_new = w1 - lr * w2**2 * w1
    G_new = w2 * w1_new**2
    assert l2 == pytest.approx(abs(G - G_new))
    assert cos == pytest.approx(1.0)           # a scalar keeps its sign here
    assert g_norm == pytest.approx(abs(G))
    # Layers after W_l do not move: only `earlier` takes the step.
    assert gradient_ics(grad, theta, [], "w2", lr)[0] == 0.0


def test_measure_gradient_ics_matches_a_manual_computation_on_a_network(data):
    model = trained("BN", data)
    X, y = data.X_train[:120], data.y_train[:120]
    lr = 0.7
    shift = measure_gradient_ics(model, X, y, "linear3.weight", lr)
    twin = copy.deepcopy(model).train()
    names = [n for n, _ in twin.named_parameters()]
    earlier = names[: names.index("linear3.weight")]
    grads = dict(zip(names, torch.autograd.grad(F.cross_entropy(twin(X), y), list(twin.parameters()))))
    G = grads["linear3.weight"]
    moved = copy.deepcopy(model).train()
    with torch.no_grad():
        for n, p in moved.named_parameters():
            if n in earlier:
                p.sub_(lr * grads[n])
    G_new = torch.autograd.grad(F.cross_entropy(moved(X), y), [moved.linear3.weight])[0]
    assert shift.l2 == pytest.approx(float((G - G_new).norm()), rel=1e-4)
    assert shift.cosine == pytest.approx(float(F.cosine_similarity(G.flatten(), G_new.flatten(), dim=0)), rel=1e-5)
    assert shift.grad_norm == pytest.approx(float(G.norm()), rel=1e-5)
    assert shift.relative == pytest.approx(shift.l2 / shift.grad_norm)


def test_recorder_every_k_steps(data):
    X, y = data.X_train[:100], data.y_train[:100]
    rec = gradient_ics_recorder(X, y, "linear2.weight", lr=0.5, prefix="W2/", every=20)
    history = train(model_of("no BN"), data, steps=40, lr=0.5, eval_every=10, record=rec)
    assert set(history.records) == set(GradientShift(0, 0, 0).as_record("W2/"))
    cos = np.array(history.records["W2/ics_cosine"])
    assert np.isnan(cos[[1, 3]]).all() and np.all((cos[[0, 2, 4]] > -1) & (cos[[0, 2, 4]] <= 1 + 1e-6))


def test_bad_arguments_are_explained(data):
    model, X, y = model_of("BN"), data.X_train[:20], data.y_train[:20]
    with pytest.raises(ValueError, match="'linear3.weight'"):
        measure_gradient_ics(model, X, y, "layer3", lr=0.5)
    with pytest.raises(ValueError, match="first parameter"):
        measure_gradient_ics(model, X, y, "linear1.weight", lr=0.5)
    with pytest.raises(ValueError, match="lr must be > 0"):
        measure_gradient_ics(model, X, y, "linear3.weight", lr=0.0)
    with pytest.raises(ValueError, match="labels"):
        measure_gradient_ics(model, X, y[:19], "linear3.weight", lr=0.5)
    with pytest.raises(ValueError, match="mode must be 'train'"):
        gradient_ics_recorder(X, y, "linear3.weight", 0.5, mode="test")
    with pytest.raises(ValueError, match="every"):
        gradient_ics_recorder(X, y, "linear3.weight", 0.5, every=0)
