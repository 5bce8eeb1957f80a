"""Tests for course_lib.experiments.probes.percentiles: the percentile probe measures what it says,
its recorder plugs into train(), and drift and jitter are the chapter's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe_helpers import model_of, small_digits, trained

from course_lib.experiments.lab.models import hidden_pre_activations
from course_lib.borrow import as_found
from course_lib.experiments.probes.percentiles import (
    PERCENTILES,
    activation_percentiles,
    drift,
    percentile_drift,
    percentile_jitter,
    percentile_recorder,
    percentile_traces,
    unit_input_percentiles,
)
from course_lib.experiments.lab.training import train


@pytest.fixture(scope="module")
def data():
    return small_digits()


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
    model = trained("BN", data)
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
    model = model_of("BN")
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
    noisy, plain = model_of("noisy BN"), model_of("BN")
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


def test_percentile_recorder_in_train_records_every_evaluation(data):
    model = model_of("BN")
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


def test_percentile_traces_names_missing_records(data):
    history = train(model_of("no BN"), data, steps=10, lr=0.5, eval_every=10)
    with pytest.raises(ValueError, match="percentile_recorder"):
        percentile_traces(history)


def test_unit_input_percentiles_explains_bad_arguments(data):
    model, X = model_of("BN"), data.X_train[:50]
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


def test_drift_the_teaching_function_is_what_percentile_drift_averages():
    early = np.array([[-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])      # two units
    late = np.array([[-2.0, 0.5, 3.0], [0.0, 1.0, 2.0]])
    np.testing.assert_allclose(drift(early, late), [0.5 + 3.0, 0.0])
    traces = np.stack([early, late])
    assert percentile_drift(traces) == pytest.approx(np.mean(drift(early, late)))
    assert percentile_jitter(traces) == pytest.approx(np.mean(drift(early, late)))
