"""Tests for course_lib.experiments.conditioning: the loss, its derivatives, gradient descent's behavior,
and the claims chapter 1 makes, repeated for seeds the notebook does not use.

The notebook uses seed 0 (training set) and seed 1 (test set); the claims here use SEEDS.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.experiments.conditioning import (
    TOL,
    LinearRegressionLoss,
    condition_number,
    contour_ellipse,
    convergence_rate,
    gradient_descent,
    loss_landscape,
    make_regression_data,
    max_stable_lr,
    optimal_lr,
    relative_excess_loss,
    steps_to_converge,
    theoretical_steps,
)
from course_lib.gradcheck import numerical_gradient, rel_error
from course_lib.normalize import Standardizer

#: Seeds for the chapter's claims: none of them is one the notebook uses (0 and 1).
SEEDS = [2, 3, 5, 8, 13, 21]
#: The scale ratio of the chapter's main example.
CHAPTER_RATIO = 10.0
#: 1-5 next to 1,000-99,999: the ratio of the standard deviations of the two uniform ranges.
EXTREME_RATIO = (99_999 - 1_000) / (5 - 1)


def problems(seed: int, scale_ratio: float = CHAPTER_RATIO):
    """The chapter's raw problem and its standardized twin (standardized by Standardizer)."""
    X, y = make_regression_data(scale_ratio=scale_ratio, seed=seed)
    X_std = Standardizer().fit(X).transform(X)
    return LinearRegressionLoss(X, y), LinearRegressionLoss(X_std, y)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

class TestMakeRegressionData:
    def test_shapes_dtype_and_determinism(self):
        X, y = make_regression_data(scale_ratio=7.0, n=50, seed=4)
        assert X.shape == (50, 2) and y.shape == (50,)
        assert X.dtype == np.float64 and y.dtype == np.float64
        X2, y2 = make_regression_data(scale_ratio=7.0, n=50, seed=4)
        np.testing.assert_array_equal(X, X2)
        np.testing.assert_array_equal(y, y2)

    def test_scale_ratio_changes_only_the_unit_of_the_second_feature(self):
        X1, y1 = make_regression_data(scale_ratio=1.0, seed=4)
        X9, y9 = make_regression_data(scale_ratio=9.0, seed=4)
        np.testing.assert_array_equal(X1[:, 0], X9[:, 0])
        np.testing.assert_allclose(X9[:, 1], 9.0 * X1[:, 1], rtol=1e-15)
        np.testing.assert_allclose(y1, y9, rtol=1e-14)

    def test_ranges_and_spread_ratio(self):
        X, _ = make_regression_data(scale_ratio=100.0, n=5000, seed=4)
        assert 1 <= X[:, 0].min() and X[:, 0].max() <= 5
        assert 100 <= X[:, 1].min() and X[:, 1].max() <= 500
        assert X[:, 1].std() / X[:, 0].std() == pytest.approx(100.0, rel=0.05)

    def test_shift_moves_features_by_that_many_standard_deviations_and_keeps_the_rule(self):
        X0, y0 = make_regression_data(scale_ratio=3.0, seed=4, noise=0.0)
        X1, y1 = make_regression_data(scale_ratio=3.0, seed=4, noise=0.0, shift=1.5)
        sigma_u = 4 / math.sqrt(12)
        np.testing.assert_allclose(X1 - X0, np.broadcast_to([1.5 * sigma_u, 3.0 * 1.5 * sigma_u], X0.shape))
        # The same rule y = x1 + 0.5 x2 / s holds on both.
        np.testing.assert_allclose(y0, X0[:, 0] + 0.5 * X0[:, 1] / 3.0)
        np.testing.assert_allclose(y1, X1[:, 0] + 0.5 * X1[:, 1] / 3.0)

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [
            ({"scale_ratio": 0.0}, ValueError, "scale_ratio must be > 0"),
            ({"scale_ratio": -2.0}, ValueError, "scale_ratio must be > 0"),
            ({"scale_ratio": float("inf")}, ValueError, "scale_ratio must be finite"),
            ({"scale_ratio": "10"}, TypeError, "scale_ratio must be a real number"),
            ({"n": 1}, ValueError, "n must be an integer >= 2"),
            ({"n": 10.5}, ValueError, "n must be an integer >= 2"),
            ({"noise": -0.1}, ValueError, "noise must be >= 0"),
            ({"shift": float("nan")}, ValueError, "shift must be finite"),
        ],
    )
    def test_bad_input(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            make_regression_data(**kwargs)


# --------------------------------------------------------------------------------------------
# The loss and its derivatives
# --------------------------------------------------------------------------------------------

@pytest.fixture
def small_problem():
    # Moderate scales so finite differences are accurate in every direction.
    X, y = make_regression_data(scale_ratio=3.0, n=40, seed=7)
    return LinearRegressionLoss(X, y)


class TestLinearRegressionLoss:
    def test_loss_is_the_mse_with_the_best_bias(self, small_problem):
        X, y = make_regression_data(scale_ratio=3.0, n=40, seed=7)
        rng = np.random.default_rng(0)
        for _ in range(5):
            w = rng.normal(size=2)
            b = small_problem.bias(w)
            mse = np.mean((X @ w + b - y) ** 2)
            assert small_problem.loss(w) == pytest.approx(mse, rel=1e-12)
            # Any other bias is worse: b(w) is the minimizer over b.
            for db in (-0.1, 0.1):
                assert np.mean((X @ w + b + db - y) ** 2) > mse

    def test_gradient_matches_central_differences(self, small_problem):
        rng = np.random.default_rng(1)
        for _ in range(5):
            w = rng.normal(size=2)
            numeric = numerical_gradient(lambda: small_problem.loss(w), w, 1.0, h=1e-6)
            assert rel_error(small_problem.gradient(w), numeric) < 1e-7

    def test_hessian_matches_finite_differences_of_the_gradient(self, small_problem):
        rng = np.random.default_rng(2)
        w = rng.normal(size=2)
        # Row k of the Hessian is the gradient of the k-th entry of the gradient.
        numeric = np.stack([
            numerical_gradient(lambda: small_problem.gradient(w), w, e) for e in np.eye(2)
        ])
        assert rel_error(small_problem.hessian, numeric) < 1e-8
        np.testing.assert_allclose(small_problem.hessian, small_problem.hessian.T, rtol=1e-14)

    def test_loss_gradient_and_hessian_match_torch(self, small_problem):
        X_c = torch.tensor(small_problem.X_c)
        y_c = torch.tensor(small_problem.y_c)

        def torch_loss(w):
            return torch.nn.functional.mse_loss(X_c @ w, y_c)

        w_np = np.random.default_rng(3).normal(size=2)
        w = torch.tensor(w_np, requires_grad=True)
        loss = torch_loss(w)
        loss.backward()
        assert small_problem.loss(w_np) == pytest.approx(loss.item(), rel=1e-12)
        np.testing.assert_allclose(small_problem.gradient(w_np), w.grad.numpy(), rtol=1e-10)
        hessian = torch.autograd.functional.hessian(torch_loss, torch.tensor(w_np))
        np.testing.assert_allclose(small_problem.hessian, hessian.numpy(), rtol=1e-10)

    def test_minimizer_matches_least_squares_with_an_intercept(self, small_problem):
        X, y = make_regression_data(scale_ratio=3.0, n=40, seed=7)
        A = np.column_stack([X, np.ones(len(X))])
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        w_star = small_problem.minimizer()
        np.testing.assert_allclose(w_star, coef[:2], rtol=1e-9)
        assert small_problem.bias(w_star) == pytest.approx(coef[2], rel=1e-9)
        np.testing.assert_allclose(small_problem.predict(X, w_star), A @ coef, rtol=1e-9)
        assert np.max(np.abs(small_problem.gradient(w_star))) < 1e-10
        assert small_problem.min_loss() == pytest.approx(np.mean((A @ coef - y) ** 2), rel=1e-9)

    def test_excess_loss_is_loss_minus_min_loss_and_batches_work(self, small_problem):
        grid = np.random.default_rng(4).normal(size=(3, 5, 2))
        loss = small_problem.loss(grid)
        excess = small_problem.excess_loss(grid)
        assert loss.shape == excess.shape == (3, 5)
        np.testing.assert_allclose(excess, loss - small_problem.min_loss(), rtol=1e-9, atol=1e-12)
        assert small_problem.loss(grid[1, 2]) == pytest.approx(loss[1, 2], rel=1e-14)
        assert small_problem.gradient(grid).shape == (3, 5, 2)

    def test_eigenvalues_and_condition_number(self, small_problem):
        lam = small_problem.eigenvalues()
        np.testing.assert_allclose(lam, np.linalg.eigvalsh(small_problem.hessian))
        assert lam[0] <= lam[1]
        assert small_problem.condition_number() == pytest.approx(lam[1] / lam[0], rel=1e-12)

    @pytest.mark.parametrize(
        "X, y, error, match",
        [
            (np.ones(5), np.ones(5), ValueError, r"expected 2D input of shape \(N, D\) \(got 1D input\)"),
            (np.ones((5, 2, 1)), np.ones(5), ValueError, "got 3D input"),
            (np.ones((5, 2)), np.ones((5, 1)), ValueError, r"y: expected 1D targets"),
            (np.ones((5, 2)), np.ones(4), ValueError, "same number of examples"),
            (np.ones((1, 2)), np.ones(1), ValueError, "at least 2 examples"),
            (np.array([[1.0, np.nan], [2.0, 3.0]]), np.ones(2), ValueError, "X contains NaN"),
            (np.ones((2, 2)), np.array([1.0, np.inf]), ValueError, "y contains NaN or infinite"),
            (np.array([["a", "b"], ["c", "d"]]), np.ones(2), TypeError, "expected X to be an integer or float array"),
        ],
    )
    def test_bad_data(self, X, y, error, match):
        with pytest.raises(error, match=match):
            LinearRegressionLoss(X, y)

    def test_bad_weights(self, small_problem):
        with pytest.raises(ValueError, match=r"w: expected shape \(2,\) or \(\.\.\., 2\)"):
            small_problem.loss(np.zeros(3))
        with pytest.raises(ValueError, match="w: expected shape"):
            small_problem.gradient(np.float64(1.0))
        with pytest.raises(ValueError, match=r"predict: expected X of shape \(M, 2\)"):
            small_problem.predict(np.ones((4, 3)), np.zeros(2))


class TestConditionNumber:
    def test_diagonal(self):
        assert condition_number(np.diag([2.0, 200.0])) == pytest.approx(100.0)
        assert condition_number(np.eye(3)) == pytest.approx(1.0)

    def test_invariant_to_rotation(self):
        c, s = math.cos(0.7), math.sin(0.7)
        Q = np.array([[c, -s], [s, c]])
        assert condition_number(Q @ np.diag([1.0, 50.0]) @ Q.T) == pytest.approx(50.0, rel=1e-10)

    def test_singular_is_infinite(self):
        assert condition_number(np.array([[1.0, 1.0], [1.0, 1.0]])) == math.inf

    @pytest.mark.parametrize(
        "H, match",
        [
            (np.ones(3), "square"),
            (np.ones((2, 3)), "square"),
            (np.array([[1.0, 2.0], [0.0, 1.0]]), "symmetric"),
            (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN or infinite"),
        ],
    )
    def test_bad_input(self, H, match):
        with pytest.raises(ValueError, match=match):
            condition_number(H)


# --------------------------------------------------------------------------------------------
# Gradient descent
# --------------------------------------------------------------------------------------------

class TestGradientDescent:
    @pytest.mark.parametrize("which", ["raw", "standardized"])
    def test_diverges_just_above_two_over_lambda_max_and_converges_just_below(self, which):
        raw, std = problems(seed=2)
        problem = raw if which == "raw" else std
        lr_max = max_stable_lr(problem)
        above = relative_excess_loss(problem, gradient_descent(problem, 1.01 * lr_max, 2000))
        below = relative_excess_loss(problem, gradient_descent(problem, 0.99 * lr_max, 2000))
        # Above: the steepest direction's error grows by |1 - 2.02| = 1.02 per step.
        assert above[-1] > 1e6
        assert np.all(np.isfinite(above))
        # Below: every step makes progress, and it gets there.
        assert np.all(np.diff(below) <= 1e-12)
        assert below[-1] < 1e-6

    def test_path_shape_start_and_first_step(self, small_problem):
        path = gradient_descent(small_problem, 0.01, 5)
        assert path.shape == (6, 2)
        np.testing.assert_array_equal(path[0], [0.0, 0.0])
        np.testing.assert_allclose(path[1], -0.01 * small_problem.gradient(np.zeros(2)))
        w0 = np.array([1.0, -2.0])
        np.testing.assert_array_equal(gradient_descent(small_problem, 0.01, 3, w0=w0)[0], w0)

    def test_stops_at_tol(self, small_problem):
        lr = optimal_lr(small_problem)
        path = gradient_descent(small_problem, lr, 10**6, tol=1e-4)
        rel = relative_excess_loss(small_problem, path)
        assert rel[-1] <= 1e-4 < rel[-2]

    def test_stops_once_diverged_without_overflow(self, small_problem):
        path = gradient_descent(small_problem, 3 * max_stable_lr(small_problem), 10**5)
        assert len(path) < 10**5 and np.all(np.isfinite(path))

    def test_optimal_lr_beats_nearby_learning_rates(self):
        raw, _ = problems(seed=3)
        best = steps_to_converge(raw, optimal_lr(raw))
        for factor in (0.5, 0.8, 0.95):
            assert steps_to_converge(raw, factor * optimal_lr(raw)) > best
        for lr in (0.5 * (optimal_lr(raw) + max_stable_lr(raw)), 0.999 * max_stable_lr(raw)):
            assert steps_to_converge(raw, lr) > best

    def test_optimal_lr_equalizes_the_extreme_directions(self, small_problem):
        lam = small_problem.eigenvalues()
        lr = optimal_lr(small_problem)
        rho = convergence_rate(small_problem.condition_number())
        assert abs(1 - lr * lam[0]) == pytest.approx(rho, rel=1e-12)
        assert abs(1 - lr * lam[1]) == pytest.approx(rho, rel=1e-12)
        assert optimal_lr(small_problem) < max_stable_lr(small_problem)

    @pytest.mark.parametrize("lr, error, match", [
        (0.0, ValueError, "lr must be > 0"),
        (-1e-3, ValueError, "lr must be > 0"),
        (float("nan"), ValueError, "lr must be finite"),
        (None, TypeError, "lr must be a real number"),
    ])
    def test_bad_learning_rate(self, small_problem, lr, error, match):
        with pytest.raises(error, match=match):
            gradient_descent(small_problem, lr, 10)
        with pytest.raises(error, match=match):
            steps_to_converge(small_problem, lr)

    def test_other_bad_input(self, small_problem):
        with pytest.raises(ValueError, match="n_steps must be an integer >= 0"):
            gradient_descent(small_problem, 0.01, -1)
        with pytest.raises(ValueError, match="expected 0 < tol < 1"):
            gradient_descent(small_problem, 0.01, 10, tol=2.0)
        with pytest.raises(ValueError, match=r"w0: expected shape \(2,\)"):
            gradient_descent(small_problem, 0.01, 10, w0=np.zeros((2, 2)))
        with pytest.raises(ValueError, match="w0 contains NaN"):
            gradient_descent(small_problem, 0.01, 10, w0=np.array([np.nan, 0.0]))
        with pytest.raises(TypeError, match="expected a LinearRegressionLoss"):
            gradient_descent(np.eye(2), 0.01, 10)


class TestStepsToConverge:
    @pytest.mark.parametrize("ratio", [1.0, 3.0, 10.0, 30.0])
    @pytest.mark.parametrize("lr_factor", [0.3, 1.0, 1.5])
    def test_closed_form_counts_the_steps_gradient_descent_takes(self, ratio, lr_factor):
        raw, _ = problems(seed=5, scale_ratio=ratio)
        # lr_factor * optimal_lr stays below 2 / lambda_max for these problems.
        lr = min(lr_factor * optimal_lr(raw), 0.99 * max_stable_lr(raw))
        simulated = len(gradient_descent(raw, lr, 10**6, tol=TOL)) - 1
        assert abs(steps_to_converge(raw, lr) - simulated) <= 1

    def test_raises_where_gradient_descent_does_not_converge(self, small_problem):
        with pytest.raises(ValueError, match="does not converge at lr=.* it needs lr < 2/lambda_max"):
            steps_to_converge(small_problem, 1.001 * max_stable_lr(small_problem))
        with pytest.raises(ValueError, match="does not converge"):
            steps_to_converge(small_problem, max_stable_lr(small_problem))

    def test_zero_steps_from_the_minimizer(self, small_problem):
        assert steps_to_converge(small_problem, 0.01, w0=small_problem.minimizer()) == 0

    def test_other_start(self, small_problem):
        w0 = np.array([2.0, -1.0])
        lr = optimal_lr(small_problem)
        simulated = len(gradient_descent(small_problem, lr, 10**5, w0=w0, tol=1e-3)) - 1
        assert abs(steps_to_converge(small_problem, lr, tol=1e-3, w0=w0) - simulated) <= 1


class TestTheory:
    def test_convergence_rate(self):
        assert convergence_rate(1.0) == 0.0
        assert convergence_rate(3.0) == pytest.approx(0.5)
        with pytest.raises(ValueError, match="kappa must be >= 1"):
            convergence_rate(0.5)

    def test_theoretical_steps_values(self):
        assert theoretical_steps(1.0) == 1
        assert theoretical_steps(100.0) == 346  # ceil(ln 1e-6 / (2 ln(99/101))) = ceil(345.4)
        assert theoretical_steps(3.0, tol=0.25) == 1  # rho^2 = 1/4
        with pytest.raises(ValueError, match="expected 0 < tol < 1"):
            theoretical_steps(10.0, tol=0.0)

    @pytest.mark.parametrize("seed", SEEDS)
    def test_two_features_attain_the_bound_exactly(self, seed):
        for ratio in (1.0, 3.0, 10.0, 30.0):
            raw, std = problems(seed, ratio)
            for problem in (raw, std):
                steps = steps_to_converge(problem, optimal_lr(problem))
                assert abs(steps - theoretical_steps(problem.condition_number())) <= 1
            # And the decay along the path is exactly rho^(2k).
            path = gradient_descent(raw, optimal_lr(raw), 50)
            rho = convergence_rate(raw.condition_number())
            np.testing.assert_allclose(
                relative_excess_loss(raw, path), rho ** (2 * np.arange(len(path))), rtol=1e-6, atol=1e-13
            )

    def test_more_features_stay_within_the_bound(self):
        rng = np.random.default_rng(9)
        X = rng.normal(size=(100, 3)) * np.array([1.0, 4.0, 10.0])
        problem = LinearRegressionLoss(X, X @ np.array([1.0, 1.0, 1.0]) + rng.normal(size=100))
        steps = steps_to_converge(problem, optimal_lr(problem))
        assert steps <= theoretical_steps(problem.condition_number())

    def test_steps_grow_with_kappa_like_the_theory(self):
        ratios = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 100.0, 1000.0]
        kappas, steps = [], []
        for ratio in ratios:
            raw, _ = problems(seed=8, scale_ratio=ratio)
            kappas.append(raw.condition_number())
            steps.append(steps_to_converge(raw, optimal_lr(raw)))
        assert all(np.diff(kappas) > 0) and all(np.diff(steps) > 0)
        for kappa, k in zip(kappas, steps):
            if kappa >= 10:  # the large-kappa approximation (kappa/4) ln(1/tol)
                assert k == pytest.approx(kappa / 4 * math.log(1 / TOL), rel=0.1)


# --------------------------------------------------------------------------------------------
# The landscape for contour plots
# --------------------------------------------------------------------------------------------

class TestLossLandscape:
    def test_grid_values_are_the_loss(self, small_problem):
        land = loss_landscape(small_problem, n=11)
        assert land.w1.shape == land.w2.shape == land.loss.shape == (11, 11)
        direct = small_problem.loss(np.stack([land.w1, land.w2], axis=-1))
        np.testing.assert_allclose(land.loss, direct, rtol=1e-9)
        np.testing.assert_allclose(land.w_star, small_problem.minimizer())

    def test_square_window_contains_the_start_and_every_stable_path(self):
        raw, std = problems(seed=13)
        for problem in (raw, std):
            land = loss_landscape(problem)
            width1 = np.ptp(land.w1)
            assert np.ptp(land.w2) == pytest.approx(width1)
            for lr in (optimal_lr(problem), 0.999 * max_stable_lr(problem)):
                path = gradient_descent(problem, lr, 500)
                assert np.all(path[:, 0] >= land.w1.min()) and np.all(path[:, 0] <= land.w1.max())
                assert np.all(path[:, 1] >= land.w2.min()) and np.all(path[:, 1] <= land.w2.max())

    def test_levels_halve_the_excess_loss(self, small_problem):
        land = loss_landscape(small_problem, n_levels=5)
        excess = land.levels - small_problem.min_loss()
        assert np.all(np.diff(land.levels) > 0)
        np.testing.assert_allclose(excess[1:] / excess[:-1], 2.0)
        assert excess[-1] == pytest.approx(small_problem.excess_loss(np.zeros(2)))

    def test_contours_lie_on_their_levels(self):
        for problem in problems(seed=13, scale_ratio=30.0):
            land = loss_landscape(problem, n_levels=4)
            assert len(land.contours) == 4
            for level, curve in zip(land.levels, land.contours):
                assert curve.shape == (181, 2)
                np.testing.assert_allclose(problem.loss(curve), level, rtol=1e-9)
                np.testing.assert_allclose(curve[0], curve[-1], atol=1e-12)
            # The outer contour passes through the start w = 0 (up to the sampling of t).
            outer = land.contours[-1]
            assert np.min(np.linalg.norm(outer, axis=1)) < 0.05 * np.ptp(outer[:, 0])

    def test_ellipse_axes_have_the_ratio_sqrt_kappa(self):
        raw, _ = problems(seed=13)
        curve = contour_ellipse(raw, raw.min_loss() + 1.0, n_points=2001)
        radius = np.linalg.norm(curve - raw.minimizer(), axis=1)
        assert radius.max() / radius.min() == pytest.approx(math.sqrt(raw.condition_number()), rel=1e-4)

    def test_contour_bad_input(self, small_problem):
        with pytest.raises(ValueError, match="level must be above the minimum loss"):
            contour_ellipse(small_problem, small_problem.min_loss())
        with pytest.raises(ValueError, match="n_points must be an integer >= 3"):
            contour_ellipse(small_problem, small_problem.min_loss() + 1, n_points=2)

    def test_bad_input(self, small_problem):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(10, 3))
        with pytest.raises(ValueError, match="two weights"):
            loss_landscape(LinearRegressionLoss(X, X[:, 0]))
        with pytest.raises(ValueError, match="margin must be >= 1"):
            loss_landscape(small_problem, margin=0.5)
        with pytest.raises(ValueError, match="w0 must differ from the minimizer"):
            loss_landscape(small_problem, w0=small_problem.minimizer())


# --------------------------------------------------------------------------------------------
# The chapter's claims, for seeds the notebook does not use
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
class TestChapterClaims:
    def test_standardizer_gives_mean_zero_and_std_one(self, seed):
        _, std = problems(seed)
        X, _ = make_regression_data(scale_ratio=CHAPTER_RATIO, seed=seed)
        X_std = Standardizer().fit_transform(X)
        np.testing.assert_allclose(X_std.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(X_std.std(axis=0), 1.0, rtol=1e-12)

    def test_raw_condition_number_is_large(self, seed):
        # The Hessian's extreme eigenvalues enclose its diagonal entries, so
        # kappa >= (sigma_2 / sigma_1)^2, the squared ratio of the sample standard deviations,
        # which for N = 200 is within ~20% of the scale ratio s: kappa > s^2 / 2.
        for ratio in (CHAPTER_RATIO, EXTREME_RATIO):
            raw, _ = problems(seed, ratio)
            assert raw.condition_number() > ratio**2 / 2
        assert problems(seed, EXTREME_RATIO)[0].condition_number() > 1e8

    def test_standardized_condition_number_is_close_to_one(self, seed):
        # Standardized, H = 2 * (correlation matrix), so kappa = (1 + |r|) / (1 - |r|).
        # The features are independent: the sample correlation r has standard deviation about
        # 1 / sqrt(N) = 0.07 for N = 200, and kappa < 2 <=> |r| < 1/3, 4.7 standard deviations
        # away, so the bound fails with probability ~1e-6 per seed.
        X, y = make_regression_data(scale_ratio=CHAPTER_RATIO, seed=seed)
        _, std = problems(seed)
        r = abs(np.corrcoef(X.T)[0, 1])
        assert std.condition_number() == pytest.approx((1 + r) / (1 - r), rel=1e-9)
        assert std.condition_number() < 2.0
        # ...and it does not depend on the units: the same for every scale ratio.
        for ratio in (1.0, EXTREME_RATIO):
            assert problems(seed, ratio)[1].condition_number() == pytest.approx(
                std.condition_number(), rel=1e-6
            )

    def test_standardizing_cuts_the_steps_at_each_ones_best_learning_rate(self, seed):
        raw, std = problems(seed)
        steps_raw = steps_to_converge(raw, optimal_lr(raw))
        steps_std = steps_to_converge(std, optimal_lr(std))
        assert steps_std <= 5
        assert steps_std * 10 < steps_raw
        # Counting the steps by running them agrees.
        assert len(gradient_descent(raw, optimal_lr(raw), 10**5, tol=TOL)) - 1 == pytest.approx(steps_raw, abs=1)
        assert len(gradient_descent(std, optimal_lr(std), 100, tol=TOL)) - 1 == pytest.approx(steps_std, abs=1)

    def test_raw_path_zigzags_across_a_valley_along_w1(self, seed):
        raw, _ = problems(seed)
        _, vectors = np.linalg.eigh(raw.hessian)
        steep = vectors[:, -1]
        assert np.degrees(np.arccos(abs(steep[1]))) < 5  # the steep direction is ~ the w2 axis
        path = gradient_descent(raw, optimal_lr(raw), 50)
        side = np.sign((path - raw.minimizer()) @ steep)
        assert np.all(side[1:] == -side[:-1])

    def test_the_same_losses_in_other_units(self, seed):
        # Standardizing reparametrizes w (w_std = sigma * w_raw): same minimum loss, and the
        # start w = 0 predicts the mean target in both, so progress is comparable.
        raw, std = problems(seed)
        assert raw.min_loss() == pytest.approx(std.min_loss(), rel=1e-9)
        assert raw.loss(np.zeros(2)) == pytest.approx(std.loss(np.zeros(2)), rel=1e-12)

    def test_raw_diverges_at_the_standardized_learning_rate(self, seed):
        raw, std = problems(seed)
        assert optimal_lr(std) > 10 * max_stable_lr(raw)
        path = gradient_descent(raw, optimal_lr(std), 100)
        assert relative_excess_loss(raw, path)[-1] > 1e6

    def test_dividing_by_the_variance_keeps_the_mismatch(self, seed):
        X, y = make_regression_data(scale_ratio=CHAPTER_RATIO, seed=seed)
        scaler = Standardizer().fit(X)
        X_slip = (X - scaler.mean_) / scaler.std_**2
        # The spread of feature j becomes 1 / sigma_j instead of 1 ...
        np.testing.assert_allclose(X_slip.std(axis=0), 1 / scaler.std_, rtol=1e-12)
        assert X_slip.std(axis=0)[0] / X_slip.std(axis=0)[1] > CHAPTER_RATIO / 2
        # ... and with two features, kappa is exactly that of the raw data: the Hessian is
        # D^-1 R D^-1 instead of D R D, the same matrix up to a factor and a swap of the axes.
        raw = LinearRegressionLoss(X, y)
        slip = LinearRegressionLoss(X_slip, y)
        assert slip.condition_number() == pytest.approx(raw.condition_number(), rel=1e-8)

    def test_refitting_on_a_shifted_test_set_hides_the_shift_and_breaks_predictions(self, seed):
        X_train, y_train = make_regression_data(scale_ratio=CHAPTER_RATIO, seed=seed)
        X_test, y_test = make_regression_data(scale_ratio=CHAPTER_RATIO, seed=seed + 100, shift=1.0)
        scaler = Standardizer().fit(X_train)
        model = LinearRegressionLoss(scaler.transform(X_train), y_train)
        w = model.minimizer()
        right = scaler.transform(X_test)
        leaky = Standardizer().fit_transform(X_test)
        # With the training statistics the test set sits about one standard deviation higher
        # (each sample mean is off by ~1/sqrt(200) = 0.07 of a standard deviation) ...
        assert np.all((right.mean(axis=0) > 0.5) & (right.mean(axis=0) < 1.5))
        # ... refitting moves it back to 0: the shift disappears from the features.
        np.testing.assert_allclose(leaky.mean(axis=0), 0.0, atol=1e-12)
        mse_right = np.mean((model.predict(right, w) - y_test) ** 2)
        mse_leaky = np.mean((model.predict(leaky, w) - y_test) ** 2)
        assert mse_right < 2 * 0.1**2  # about the noise variance
        assert mse_leaky > 100 * mse_right
