"""Tests for course_lib/activations.py: the sigmoid and the share of inputs in each regime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from course_lib.activations import (
    Regimes,
    near_linear_bound,
    near_linear_fraction,
    saturated_fraction,
    saturation_bound,
    sigmoid,
    sigmoid_grad,
    sigmoid_regimes,
    tangent_deviation,
)

SEEDS = [0, 1, 2, 3, 4, 5, 6]
finite = st.floats(min_value=-700, max_value=700, allow_nan=False)


def test_sigmoid_matches_torch():
    z = np.linspace(-50, 50, 1001)
    np.testing.assert_allclose(sigmoid(z), torch.sigmoid(torch.from_numpy(z)).numpy(), rtol=1e-12, atol=0)


def test_sigmoid_does_not_overflow(recwarn):
    out = sigmoid(np.array([-1e4, -800.0, 0.0, 800.0, 1e4]))
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert not [w for w in recwarn if "overflow" in str(w.message)]


def test_sigmoid_grad_matches_autograd():
    z = torch.linspace(-8, 8, 161, dtype=torch.float64, requires_grad=True)
    torch.sigmoid(z).backward(torch.ones_like(z))
    np.testing.assert_allclose(sigmoid_grad(z.detach().numpy()), z.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert sigmoid_grad(0.0) == 0.25


@given(finite)
def test_tangent_deviation_matches_its_definition(z):
    # d(z) = 1 - (sigmoid(z) - 1/2) / (z/4), away from 0 where the quotient is well conditioned.
    if abs(z) < 1e-3:
        return
    expected = 1.0 - (sigmoid(z) - 0.5) / (z / 4.0)
    assert tangent_deviation(z) == pytest.approx(expected, abs=1e-12)


def test_tangent_deviation_values_and_shape():
    z = np.array([0.0, 1e-12, 1.0, -1.0, 3.0, 10.0])
    d = tangent_deviation(z)
    np.testing.assert_allclose(d[:2], 0.0, atol=1e-15)
    assert d[2] == pytest.approx(1 - 2 * np.tanh(0.5), rel=1e-12)
    assert d[2] == d[3], "d is even"
    assert d[4] == pytest.approx(0.3966, abs=1e-4)
    assert d[5] == pytest.approx(0.8, abs=1e-4)
    assert tangent_deviation(np.zeros((3, 2))).shape == (3, 2)


def test_tangent_deviation_is_increasing_in_abs_z():
    d = tangent_deviation(np.linspace(0, 50, 5001))
    assert np.all(np.diff(d) > 0)
    assert 0 <= d.min() and d.max() < 1


@pytest.mark.parametrize("tol", [0.01, 0.1, 0.5, 0.9])
def test_near_linear_bound_solves_the_deviation(tol):
    z_star = near_linear_bound(tol)
    assert tangent_deviation(z_star) == pytest.approx(tol, abs=1e-10)
    assert near_linear_bound(0.1) == pytest.approx(1.1676, abs=1e-4)


def test_near_linear_fraction_agrees_with_the_bound():
    z_star = near_linear_bound(0.1)
    z = np.array([-z_star * 1.001, -z_star * 0.999, 0.0, z_star * 0.999, z_star * 1.001])
    assert near_linear_fraction(z) == pytest.approx(3 / 5)


def test_saturation_bound_is_the_logit():
    z_sat = saturation_bound(0.05)
    assert sigmoid(z_sat) == pytest.approx(0.95, abs=1e-12)
    assert z_sat == pytest.approx(2.9444, abs=1e-4)
    z = np.array([-z_sat - 1e-6, -z_sat + 1e-6, 0.0, z_sat - 1e-6, z_sat + 1e-6])
    assert saturated_fraction(z) == pytest.approx(2 / 5)


@pytest.mark.parametrize("seed", SEEDS)
def test_standard_normal_inputs_mostly_near_linear(seed):
    # The chapter's claim: with gamma=1, beta=0 the sigmoid is used as an almost linear map.
    z = np.random.default_rng(seed).standard_normal(2000)
    regimes = sigmoid_regimes(z)
    assert isinstance(regimes, Regimes)
    assert regimes.near_linear > 0.7
    assert regimes.saturated < 0.01


@pytest.mark.parametrize("seed", SEEDS)
def test_gamma_and_beta_move_inputs_out_of_the_linear_regime(seed):
    z = np.random.default_rng(seed).standard_normal(2000)
    wide = sigmoid_regimes(4.0 * z)  # gamma = 4
    shifted = sigmoid_regimes(z + 3.0)  # beta = 3
    for regimes in (wide, shifted):
        assert regimes.near_linear < 0.3
        assert regimes.saturated > 0.4


@pytest.mark.parametrize("seed", SEEDS)
def test_slider_solution_numbers(seed):
    # Chapter 2's slider solution: gamma = 2.5 saturates about a quarter of N(0, 1) inputs,
    # beta = 3 pushes about half of the outputs above 0.95 and beta = 4 most of them, and
    # gamma = 0.25 keeps the sigmoid almost linear.
    z = np.random.default_rng(seed).standard_normal(2000)
    assert 0.2 < saturated_fraction(2.5 * z) < 0.3
    assert 0.35 < np.mean(sigmoid(z + 3.0) > 0.95) < 0.65
    assert np.mean(sigmoid(z + 4.0) > 0.95) > 0.8
    assert near_linear_fraction(0.25 * z) > 0.99


def test_expected_fraction_for_a_gaussian():
    # P(|Z| <= z_star) for Z ~ N(0, 1), from the error function.
    from math import erf, sqrt

    expected = erf(near_linear_bound(0.1) / sqrt(2))
    z = np.random.default_rng(0).standard_normal(200_000)
    assert near_linear_fraction(z) == pytest.approx(expected, abs=0.005)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: near_linear_fraction(np.array([])), ValueError, "at least one value"),
        (lambda: saturated_fraction(np.array([1.0, np.nan])), ValueError, "NaN or infinite"),
        (lambda: sigmoid(np.array(["a"])), TypeError, "integer or float array"),
        (lambda: near_linear_bound(1.0), ValueError, "tol must be between 0 and 1"),
        (lambda: near_linear_fraction(np.ones(3), tol=0), ValueError, "tol must be between"),
        (lambda: saturation_bound(0.5), ValueError, "margin must be between 0 and 0.5"),
        (lambda: saturated_fraction(np.ones(3), margin="x"), TypeError, "margin must be a real number"),
    ],
)
def test_bad_input_names_the_problem(call, error, match):
    with pytest.raises(error, match=match):
        call()
