"""Tests for course_lib.experiments.probes: the percentile and landscape probes measure what they say,
leave the model exactly as it was, are deterministic on a fixed batch, and plug into train()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.experiments.data import load_digits_split
from course_lib.experiments.models import hidden_pre_activations, make_mlp
from course_lib.experiments.noisy_bn import noisy_bn
from course_lib.experiments.probes import (
    PERCENTILES,
    GradientDirectionProbe,
    activation_percentiles,
    landscape_recorder,
    percentile_drift,
    percentile_jitter,
    percentile_recorder,
    percentile_traces,
    probe_gradient_direction,
    unit_input_percentiles,
)
from course_lib.experiments.training import train
from course_lib.nn import as_found


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0, n_train=300)


def _model(kind: str, seed: int = 0) -> nn.Sequential:
    if kind == "no BN":
        return make_mlp(64, [30, 30, 30], 10, seed=seed)
    if kind == "BN":
        return make_mlp(64, [30, 30, 30], 10, bn="before", seed=seed)
    if kind == "noisy BN":
        return make_mlp(64, [30, 30, 30], 10, bn="before", bn_impl=noisy_bn(seed=seed), seed=seed)
    if kind == "dropout":
        return make_mlp(64, [30, 30, 30], 10, bn="before", dropout=0.3, seed=seed)
    raise ValueError(kind)


KINDS = ["no BN", "BN", "noisy BN", "dropout"]


def _trained(kind, data, steps=30):
    model = _model(kind)
    train(model, data, steps=steps, lr=0.5, eval_every=steps)
    model.linear1.weight.grad = torch.randn_like(model.linear1.weight)  # a stale gradient
    return model


def _state(model):
    """Everything a probe must leave alone, as plain copies."""
    gens = {}
    for m in model.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Generator):
                gens[id(v)] = v.get_state().clone()
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "modes": [m.training for m in model.modules()],
        "generators": gens,
        "global_rng": torch.random.get_rng_state(),
    }


def _assert_same_state(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before["params"], after["params"]))
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(before["buffers"], after["buffers"]))
    assert before["modes"] == after["modes"]
    assert before["generators"].keys() == after["generators"].keys()
    assert all(torch.equal(before["generators"][k], after["generators"][k]) for k in before["generators"])
    assert torch.equal(before["global_rng"], after["global_rng"])


# ---------------------------------------------------------------------------------------
# Percentiles
# ---------------------------------------------------------------------------------------


def test_activation_percentiles_matches_torch_quantile_and_a_hand_example():
    a = np.random.default_rng(0).standard_normal((7, 41))
    expected = torch.quantile(torch.from_numpy(a), torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64), dim=1).T
    np.testing.assert_allclose(activation_percentiles(a), expected.numpy(), rtol=1e-12, atol=1e-12)
    # Five sorted values 0..4: position 0.15 * 4 = 0.6 -> 0.6; 2; 3.4.
    np.testing.assert_allclose(activation_percentiles(np.array([[4.0, 0.0, 3.0, 1.0, 2.0]])), [[0.6, 2.0, 3.4]])
    assert activation_percentiles(a, q=(50,)).shape == (7, 1)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 0)), np.zeros((2, 3, 4))])
def test_activation_percentiles_refuses_bad_shapes(bad):
    with pytest.raises(ValueError, match="expected a 2D array"):
        activation_percentiles(bad)


def test_activation_percentiles_refuses_fractions_above_100():
    with pytest.raises(ValueError, match="between 0 and 100"):
        activation_percentiles(np.zeros((2, 3)), q=(15, 50, 150))


def test_unit_input_percentiles_eval_mode_matches_hidden_pre_activations(data):
    model = _trained("BN", data)
    X = data.X_train[:200]
    z3 = hidden_pre_activations(model, X)[-1].double()  # eval mode, running statistics
    got = unit_input_percentiles(model, X, "act3", units=[0, 4], mode="eval")
    expected = torch.quantile(z3[:, [0, 4]], torch.tensor([0.15, 0.5, 0.85], dtype=torch.float64), dim=0).T
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-6, atol=1e-6)
    single = unit_input_percentiles(model, X, "act3", units=4, mode="eval")
    np.testing.assert_array_equal(single, got[1])


def test_train_mode_uses_the_probe_batch_statistics(data):
    """In training mode a BN layer normalizes the probe batch with its own statistics: at
    initialization (gamma = 1, beta = 0) the sigmoid's input has mean 0 and std 1 exactly."""
    model = _model("BN")
    X = data.X_train[:200]
    captured = []
    h = model.act3.register_forward_hook(lambda m, a, o: captured.append(a[0].detach()))
    with as_found(model, state=True):
        model.train()
        model(X)
    h.remove()
    z = captured[0][:, 2].double()
    # (std slightly below 1: eps = 1e-5 against a small variance of z)
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.std(unbiased=False)) - 1) < 2e-3
    got = unit_input_percentiles(model, X, "act3", units=2, mode="train")
    np.testing.assert_allclose(got, np.percentile(z.numpy(), PERCENTILES), rtol=1e-6, atol=1e-6)


def test_train_mode_sees_the_noise_of_noisy_bn_and_eval_mode_does_not(data):
    noisy, plain = _model("noisy BN"), _model("BN")
    X = data.X_train[:200]
    np.testing.assert_allclose(
        unit_input_percentiles(noisy, X, units=0, mode="eval"),
        unit_input_percentiles(plain, X, units=0, mode="eval"),
        rtol=1e-6,
    )
    a = unit_input_percentiles(noisy, X, units=0, mode="train")
    b = unit_input_percentiles(plain, X, units=0, mode="train")
    assert np.max(np.abs(a - b)) > 0.05
    # The probe sees the noise the next training step will draw: same call, same answer.
    np.testing.assert_array_equal(a, unit_input_percentiles(noisy, X, units=0, mode="train"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_percentiles_leave_the_model_exactly_as_it_was(kind, mode, data):
    model = _trained(kind, data)
    model.bn2.eval() if hasattr(model, "bn2") else None  # a mixed-mode model
    before = _state(model)
    unit_input_percentiles(model, data.X_train[:100], "act3", units=[0, 1], mode=mode)
    _assert_same_state(before, _state(model))


def test_percentile_recorder_in_train_records_every_evaluation(data):
    model = _model("BN")
    X = data.X_train[:100]
    history = train(model, data, steps=40, lr=0.5, eval_every=10,
                    record=[percentile_recorder(X, units=1), percentile_recorder(X, units=[0, 3], prefix="all/")])
    assert {"p15", "p50", "p85", "all/u0:p15", "all/u3:p85"} <= set(history.records)
    traces = percentile_traces(history)
    assert traces.shape == (5, 3)
    assert np.all(traces[:, 0] <= traces[:, 1]) and np.all(traces[:, 1] <= traces[:, 2])
    both = percentile_traces(history, units=[0, 3], prefix="all/")
    assert both.shape == (5, 2, 3)
    # The last record is the trained model's percentiles, computed again now.
    np.testing.assert_allclose(traces[-1], unit_input_percentiles(model, X, "act3", 1), rtol=1e-12)


def test_recording_does_not_change_the_training_run(data):
    """Observing must not perturb: same losses and weights with and without the probes,
    also for noisy BN, whose probe in train mode draws noise from the shared generator."""
    X, y = data.X_train[:100], data.y_train[:100]
    results = []
    for record in (None, [percentile_recorder(X, units=[0, 1]), landscape_recorder(X, y, [0.5, 1.0])]):
        model = _model("noisy BN")
        h = train(model, data, steps=30, lr=0.5, eval_every=10, record=record)
        results.append((h.loss, [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def test_percentile_traces_names_missing_records(data):
    history = train(_model("no BN"), data, steps=10, lr=0.5, eval_every=10)
    with pytest.raises(ValueError, match="percentile_recorder"):
        percentile_traces(history)


def test_unit_input_percentiles_explains_bad_arguments(data):
    model, X = _model("BN"), data.X_train[:50]
    with pytest.raises(ValueError, match="no submodule 'act9'"):
        unit_input_percentiles(model, X, "act9")
    with pytest.raises(ValueError, match=r"0\.\.29"):
        unit_input_percentiles(model, X, "act3", units=30)
    with pytest.raises(ValueError, match="0.15th percentile"):
        unit_input_percentiles(model, X, q=(15, 50, 850))
    with pytest.raises(ValueError, match="mode must be 'train'"):
        unit_input_percentiles(model, X, mode="test")
    with pytest.raises(TypeError, match="2D float tensor"):
        unit_input_percentiles(model, X.numpy())
    with pytest.raises(TypeError, match="units must be"):
        percentile_recorder(X, units="0")


# ---------------------------------------------------------------------------------------
# Drift and jitter
# ---------------------------------------------------------------------------------------


def test_drift_is_median_change_plus_spread_change():
    traces = np.array([[-1.0, 0.0, 1.0], [-5.0, 3.0, 9.0], [-1.0, 0.5, 3.0]])
    assert percentile_drift(traces) == pytest.approx(0.5 + 2.0)
    assert percentile_drift(traces, start=1) == pytest.approx(2.5 + 10.0)
    # A pure shift of all three percentiles moves the median only; a pure stretch the spread.
    assert percentile_drift(np.array([[-1.0, 0.0, 1.0], [1.0, 2.0, 3.0]])) == pytest.approx(2.0)
    assert percentile_drift(np.array([[-1.0, 0.0, 1.0], [-3.0, 0.0, 3.0]])) == pytest.approx(4.0)
    # Averaged over units.
    units = np.stack([traces, traces + 1.0, np.zeros_like(traces)], axis=1)
    assert percentile_drift(units) == pytest.approx((2.5 + 2.5 + 0.0) / 3)


def test_jitter_is_the_mean_movement_between_evaluations():
    back_and_forth = np.array([[-1.0, 0.0, 1.0], [-1.0, 1.0, 1.0]] * 3)
    assert percentile_jitter(back_and_forth) == pytest.approx(1.0)
    assert percentile_drift(back_and_forth) == pytest.approx(1.0)
    steady_walk = np.column_stack([np.arange(6.0) - 1, np.arange(6.0), np.arange(6.0) + 1]) * 0.1
    assert percentile_jitter(steady_walk) == pytest.approx(0.1)
    assert percentile_drift(steady_walk) == pytest.approx(0.5)


@pytest.mark.parametrize("fn", [percentile_drift, percentile_jitter])
def test_drift_and_jitter_refuse_bad_shapes(fn):
    with pytest.raises(ValueError, match="p15, p50, p85"):
        fn(np.zeros((5, 2)))


def test_drift_refuses_out_of_range_indices():
    with pytest.raises(ValueError, match="start"):
        percentile_drift(np.zeros((3, 3)), start=3)


# ---------------------------------------------------------------------------------------
# The landscape along the gradient
# ---------------------------------------------------------------------------------------


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
    model = _trained("BN", data)
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


@pytest.mark.parametrize("kind", KINDS)
def test_probe_leaves_the_model_exactly_as_it_was_and_is_deterministic(kind, data):
    model = _trained(kind, data)
    X, y = data.X_train[:100], data.y_train[:100]
    before = _state(model)
    a = probe_gradient_direction(model, X, y, [0.25, 1.0, 4.0])
    _assert_same_state(before, _state(model))
    b = probe_gradient_direction(model, X, y, [0.25, 1.0, 4.0])
    assert a.loss0 == b.loss0 and a.grad_norm == b.grad_norm
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.grad_changes, b.grad_changes)


def test_probe_uses_the_same_noise_at_every_point(data):
    """With noise redrawn per forward pass the gradient would change even for a tiny step;
    with the same noise it changes by O(eta)."""
    model = _trained("noisy BN", data)
    X, y = data.X_train[:100], data.y_train[:100]
    probe = probe_gradient_direction(model, X, y, [1e-6, 1e-5])
    assert probe.grad_changes[0] < 1e-3 * probe.grad_norm
    assert abs(probe.losses[0] - probe.loss0) < 1e-4


def test_landscape_recorder_every_k_steps(data):
    X, y = data.X_train[:100], data.y_train[:100]
    rec = landscape_recorder(X, y, [0.5, 1.0, 2.0], every=20)
    history = train(_model("BN"), data, steps=40, lr=0.5, eval_every=10, record=rec)
    assert set(GradientDirectionProbe.record_keys()) == set(history.records)
    lv = np.array(history.records["loss_variation"])
    assert history.eval_steps == [0, 10, 20, 30, 40]
    assert np.isnan(lv[[1, 3]]).all() and np.isfinite(lv[[0, 2, 4]]).all()
    r = history.records
    i = 2
    assert r["loss_variation"][i] == pytest.approx(r["loss_max"][i] - r["loss_min"][i])
    assert r["grad_change_min"][i] <= r["grad_change_max"][i]


def test_loss_variation_grows_with_the_range_of_step_sizes(data):
    model = _trained("no BN", data)
    X, y = data.X_train[:100], data.y_train[:100]
    small = probe_gradient_direction(model, X, y, [0.1, 0.2])
    large = probe_gradient_direction(model, X, y, [0.1, 0.2, 4.0, 8.0])
    assert large.loss_variation >= small.loss_variation
    assert large.grad_change >= small.grad_change


@pytest.mark.parametrize("etas", [[], [0.0, 1.0], [-1.0], [[1.0]], [float("nan")]])
def test_probe_refuses_bad_step_sizes(etas, data):
    with pytest.raises(ValueError, match="positive step sizes"):
        probe_gradient_direction(_model("BN"), data.X_train[:10], data.y_train[:10], etas)


def test_probe_refuses_mismatched_batch(data):
    with pytest.raises(ValueError, match="labels"):
        probe_gradient_direction(_model("BN"), data.X_train[:10], data.y_train[:9], [1.0])
    with pytest.raises(TypeError, match="int64"):
        landscape_recorder(data.X_train[:10], data.y_train[:10].float(), [1.0])
    with pytest.raises(ValueError, match="every"):
        landscape_recorder(data.X_train[:10], data.y_train[:10], [1.0], every=0)
