"""Tests for course_lib.experiments.probes.landscape: the walk along the gradient measures what it
says (closed form on a quadratic, by hand on a network) and plugs into train()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from probe_helpers import model_of, small_digits, trained

from course_lib.experiments.probes.landscape import (
    GradientDirectionProbe,
    landscape_recorder,
    probe_gradient_direction,
    smoothness,
    walk_along_gradient,
)
from course_lib.experiments.lab.training import train


@pytest.fixture(scope="module")
def data():
    return small_digits()


class _Quadratic(nn.Module):
    """L(w) = 0.5 * sum(h * w^2) through a 'model' whose output is the loss itself."""

    def __init__(self, w0, h):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
        self.register_buffer("h", torch.tensor(h, dtype=torch.float64))

    def forward(self, X):
        return (0.5 * (self.h * self.w**2).sum()).expand(len(X), 1)


def _loss_is_output(out, y):
    return out[0, 0]


def test_probe_on_a_quadratic_matches_closed_form():
    """L = 0.5 * sum(h_i w_i^2): g = h * w, L(w - eta g) = 0.5 sum h (w (1 - eta h))^2,
    grad change = ||h * eta * g||, beta-smoothness = max_i h_i (for the right direction)."""
    w0, h = [1.0, -2.0, 0.5], [1.0, 4.0, 0.25]
    model = _Quadratic(w0, h)
    etas = np.array([0.05, 0.1, 0.2, 0.3])
    X, y = torch.zeros(2, 1), torch.zeros(2, dtype=torch.int64)
    probe = probe_gradient_direction(model, X, y, etas, loss_fn=_loss_is_output)
    w, hh = np.array(w0), np.array(h)
    g = hh * w
    losses = [0.5 * np.sum(hh * (w - e * g) ** 2) for e in etas]
    changes = [np.linalg.norm(hh * e * g) for e in etas]
    assert probe.loss0 == pytest.approx(0.5 * np.sum(hh * w**2))
    assert probe.grad_norm == pytest.approx(np.linalg.norm(g))
    np.testing.assert_allclose(probe.losses, losses, rtol=1e-12)
    np.testing.assert_allclose(probe.grad_changes, changes, rtol=1e-12)
    assert probe.loss_variation == pytest.approx(max(losses) - min(losses))
    assert probe.grad_change == pytest.approx(max(changes))
    # ||H eta g|| / ||eta g|| = ||H g|| / ||g||, between the smallest and largest curvature.
    assert probe.beta_smoothness == pytest.approx(np.linalg.norm(hh * g) / np.linalg.norm(g))
    assert 0.25 <= probe.beta_smoothness <= 4.0
    assert torch.equal(model.w.detach(), torch.tensor(w0, dtype=torch.float64))


def test_probe_matches_a_manual_computation_on_a_network(data):
    model = trained("BN", data)
    X, y = data.X_train[:120], data.y_train[:120]
    etas = [0.5, 2.0]
    probe = probe_gradient_direction(model, X, y, etas)
    # By hand, on a copy, in training mode.
    import copy

    twin = copy.deepcopy(model).train()
    params = list(twin.parameters())
    loss = F.cross_entropy(twin(X), y)
    g = torch.autograd.grad(loss, params)
    assert probe.loss0 == pytest.approx(float(loss.detach()), rel=1e-6)
    for k, eta in enumerate(etas):
        moved = copy.deepcopy(model).train()
        with torch.no_grad():
            for p, gi in zip(moved.parameters(), g):
                p.sub_(eta * gi)
        loss_eta = F.cross_entropy(moved(X), y)
        g_eta = torch.autograd.grad(loss_eta, list(moved.parameters()))
        change = math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(g_eta, g)))
        assert probe.losses[k] == pytest.approx(float(loss_eta.detach()), rel=1e-5)
        assert probe.grad_changes[k] == pytest.approx(change, rel=1e-4)


def test_probe_uses_the_same_noise_at_every_point(data):
    """With noise redrawn per forward pass the gradient would change even for a tiny step;
    with the same noise it changes by O(eta)."""
    model = trained("noisy BN", data)
    X, y = data.X_train[:100], data.y_train[:100]
    probe = probe_gradient_direction(model, X, y, [1e-6, 1e-5])
    assert probe.grad_changes[0] < 1e-3 * probe.grad_norm
    assert abs(probe.losses[0] - probe.loss0) < 1e-4


def test_landscape_recorder_every_k_steps(data):
    X, y = data.X_train[:100], data.y_train[:100]
    rec = landscape_recorder(X, y, [0.5, 1.0, 2.0], every=20)
    history = train(model_of("BN"), data, steps=40, lr=0.5, eval_every=10, record=rec)
    assert set(GradientDirectionProbe.record_keys()) == set(history.records)
    lv = np.array(history.records["loss_variation"])
    assert history.eval_steps == [0, 10, 20, 30, 40]
    assert np.isnan(lv[[1, 3]]).all() and np.isfinite(lv[[0, 2, 4]]).all()
    r = history.records
    i = 2
    assert r["loss_variation"][i] == pytest.approx(r["loss_max"][i] - r["loss_min"][i])
    assert r["grad_change_min"][i] <= r["grad_change_max"][i]


def test_loss_variation_grows_with_the_range_of_step_sizes(data):
    model = trained("no BN", data)
    X, y = data.X_train[:100], data.y_train[:100]
    small = probe_gradient_direction(model, X, y, [0.1, 0.2])
    large = probe_gradient_direction(model, X, y, [0.1, 0.2, 4.0, 8.0])
    assert large.loss_variation >= small.loss_variation
    assert large.grad_change >= small.grad_change


@pytest.mark.parametrize("etas", [[], [0.0, 1.0], [-1.0], [[1.0]], [float("nan")]])
def test_probe_refuses_bad_step_sizes(etas, data):
    with pytest.raises(ValueError, match="positive step sizes"):
        probe_gradient_direction(model_of("BN"), data.X_train[:10], data.y_train[:10], etas)


def test_probe_refuses_mismatched_batch(data):
    with pytest.raises(ValueError, match="labels"):
        probe_gradient_direction(model_of("BN"), data.X_train[:10], data.y_train[:9], [1.0])
    with pytest.raises(TypeError, match="int64"):
        landscape_recorder(data.X_train[:10], data.y_train[:10].float(), [1.0])
    with pytest.raises(ValueError, match="every"):
        landscape_recorder(data.X_train[:10], data.y_train[:10], [1.0], every=0)


def test_walk_along_gradient_and_smoothness_on_a_quadratic():
    """The teaching functions chapter 4 shows, on L(theta) = 0.5 * sum(h * theta^2)."""
    h = torch.tensor([1.0, 4.0], dtype=torch.float64)
    theta = torch.tensor([1.0, -1.0], dtype=torch.float64)

    def loss_and_grad(t):
        return float(0.5 * (h * t**2).sum()), h * t

    etas = np.array([0.1, 0.2])
    loss0, g, losses, changes = walk_along_gradient(loss_and_grad, theta, etas)
    assert loss0 == pytest.approx(2.5)
    assert torch.equal(g, h * theta)
    np.testing.assert_allclose(losses, [0.5 * float((h * (theta - e * g) ** 2).sum()) for e in etas])
    np.testing.assert_allclose(changes, [float(torch.linalg.vector_norm(h * e * g)) for e in etas])
    g_norm = float(torch.linalg.vector_norm(g))
    variation, change, beta = smoothness(etas, g_norm, losses, changes)
    assert variation == pytest.approx(losses.max() - losses.min())
    assert change == pytest.approx(changes.max())
    # ||H eta g|| / ||eta g|| = ||H g|| / ||g||: the same for every eta, between 1 and 4.
    assert beta == pytest.approx(float(torch.linalg.vector_norm(h * g)) / g_norm)
