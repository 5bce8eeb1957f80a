"""Tests for course_lib/experiments/data.py: the digits split and the covariate-shift task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from course_lib.experiments.lab.data import (
    CovariateShiftTask,
    Split,
    covariate_shift_rule,
    load_digits_split,
    make_covariate_shift_task,
)
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import evaluate, train

SEEDS = [0, 1, 2, 3, 4]


def sorted_rows(X: np.ndarray) -> np.ndarray:
    return X[np.lexsort(X.T[::-1])]


# --------------------------------------------------------------------------------- Split


def test_split_properties_and_repr():
    X = torch.randn(10, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    split = Split(X[:8], y[:8], X[8:], y[8:])
    assert (split.n_features, split.n_classes, split.n_train, split.n_test) == (3, 3, 8, 2)
    assert repr(split) == "Split(train: 8 x 3, test: 2 x 3, n_classes=3)"
    with pytest.raises(AttributeError):
        split.X_train = X  # frozen


def test_split_to_casts_inputs_not_labels():
    split = load_digits_split(seed=0).to(dtype=torch.float64)
    assert split.X_train.dtype == split.X_test.dtype == torch.float64
    assert split.y_train.dtype == split.y_test.dtype == torch.int64


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((np.zeros((4, 2)), torch.zeros(4).long(), torch.zeros(2, 2), torch.zeros(2).long()),
         TypeError, "X_train must be a torch.Tensor"),
        ((torch.zeros(4), torch.zeros(4).long(), torch.zeros(2, 2), torch.zeros(2).long()),
         ValueError, r"expected 2D X_train .* \(got 1D input"),
        ((torch.zeros(4, 2).long(), torch.zeros(4).long(), torch.zeros(2, 2), torch.zeros(2).long()),
         TypeError, "X_train must be a float tensor"),
        ((torch.zeros(4, 2), torch.zeros(4), torch.zeros(2, 2), torch.zeros(2).long()),
         TypeError, r"y_train must be a 1D int64 .*y_train.long\(\)"),
        ((torch.zeros(4, 2), torch.zeros(3).long(), torch.zeros(2, 2), torch.zeros(2).long()),
         ValueError, "4 examples but y_train has 3 labels"),
        ((torch.zeros(4, 2), torch.zeros(4).long(), torch.zeros(2, 3), torch.zeros(2).long()),
         ValueError, "X_train has 2 features but X_test has 3"),
        ((torch.zeros(0, 2), torch.zeros(0).long(), torch.zeros(2, 2), torch.zeros(2).long()),
         ValueError, "the train set is empty"),
    ],
)
def test_split_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        Split(*args)


# ------------------------------------------------------------------------------- digits


def test_digits_shapes_and_dtypes():
    data = load_digits_split()
    assert (data.n_train, data.n_test, data.n_features, data.n_classes) == (1347, 450, 64, 10)
    assert data.X_train.dtype == torch.float32 and data.y_train.dtype == torch.int64


def test_digits_same_seed_identical_different_seed_differs():
    a, b, c = load_digits_split(seed=3), load_digits_split(seed=3), load_digits_split(seed=4)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.y_train, c.y_train)


@pytest.mark.parametrize("seed", SEEDS)
def test_digits_split_partitions_the_data_set(seed):
    X, y = load_digits(return_X_y=True)
    data = load_digits_split(seed=seed, standardize=False)
    X_both = torch.cat([data.X_train, data.X_test]).numpy().astype(np.float64)
    y_both = torch.cat([data.y_train, data.y_test]).numpy()
    rows = np.column_stack([X_both, y_both])
    np.testing.assert_array_equal(sorted_rows(rows), sorted_rows(np.column_stack([X, y])))


@pytest.mark.parametrize("seed", SEEDS)
def test_digits_split_is_stratified(seed):
    _, y = load_digits(return_X_y=True)
    share = np.bincount(y) / len(y)
    data = load_digits_split(seed=seed)
    for labels in (data.y_train, data.y_test):
        counts = np.bincount(labels.numpy(), minlength=10)
        # Stratified: each class count is its share of the set, rounded (off by at most 1).
        assert np.abs(counts - share * len(labels)).max() <= 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_digits_standardized_with_training_statistics(seed):
    raw = load_digits_split(seed=seed, standardize=False)
    data = load_digits_split(seed=seed)
    Xtr = raw.X_train.numpy().astype(np.float64)
    mu, sigma = Xtr.mean(axis=0), Xtr.std(axis=0)
    constant = sigma == 0
    sigma[constant] = 1.0
    expected_test = (raw.X_test.numpy().astype(np.float64) - mu) / sigma
    np.testing.assert_allclose(data.X_test.numpy(), expected_test, rtol=1e-6, atol=1e-6)

    train_mean = data.X_train.double().mean(dim=0).numpy()
    train_std = data.X_train.double().std(dim=0, unbiased=False).numpy()
    np.testing.assert_allclose(train_mean, 0.0, atol=1e-6)
    np.testing.assert_allclose(train_std[~constant], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(train_std[constant], 0.0)  # constant pixels: only centered
    # The test set is transformed, not refit: its statistics are close to 0 and 1, not exact.
    test_mean = data.X_test.double().mean(dim=0).numpy()
    assert np.abs(test_mean).max() > 0.05


@pytest.mark.parametrize("seed", SEEDS)
def test_digits_small_training_set(seed):
    full = load_digits_split(seed=seed)
    small = load_digits_split(seed=seed, n_train=200)
    assert (small.n_train, small.n_test) == (200, 450)
    counts = np.bincount(small.y_train.numpy(), minlength=10)
    assert counts.min() >= 18 and counts.max() <= 22  # stratified: about 20 per digit
    assert torch.equal(small.y_test, full.y_test)  # same test images...
    assert not torch.allclose(small.X_test, full.X_test)  # ...standardized with the 200's stats
    np.testing.assert_allclose(small.X_train.double().mean(dim=0).numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"test_fraction": 0.0}, ValueError, "test_fraction must be between 0 and 1"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction must be between 0 and 1"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a number"),
        ({"n_train": 5}, ValueError, r"n_train must be between 10 .* and 1347 .*\(got 5\)"),
        ({"n_train": 2000}, ValueError, r"n_train must be between 10 .*\(got 2000\)"),
        ({"n_train": 100.0}, TypeError, "n_train must be an int"),
        ({"seed": -1}, ValueError, "seed must be between 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_digits_split(**kwargs)


# ---------------------------------------------------------------------- covariate shift


def test_rule_on_known_points_numpy_and_torch():
    points = [[0.0, 0.5], [0.0, -0.5], [np.pi / 2, 1.4], [np.pi / 2, 1.6], [3.0, 0.2], [3.0, 0.25]]
    expected = [1, 0, 0, 1, 0, 1]  # above 1.5 sin(x1) or not; 1.5 sin(3) = 0.212
    np.testing.assert_array_equal(covariate_shift_rule(np.array(points)), expected)
    assert covariate_shift_rule(torch.tensor(points)).tolist() == expected
    assert covariate_shift_rule(torch.tensor(points)).dtype == torch.int64


def test_rule_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"expected points of shape \(N, 2\) \(got shape \(5, 3\)\)"):
        covariate_shift_rule(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="expected numeric points"):
        covariate_shift_rule(np.array([["a", "b"]]))


def test_shift_task_is_deterministic():
    a = make_covariate_shift_task(seed=7)
    b = make_covariate_shift_task(seed=7)
    c = make_covariate_shift_task(seed=8)
    assert isinstance(a, CovariateShiftTask)
    for x, y in zip([*vars_of(a)], [*vars_of(b)]):
        assert torch.equal(x, y)
    assert not torch.equal(a.source.X_train, c.source.X_train)


def vars_of(task: CovariateShiftTask):
    for split in task:
        yield from (split.X_train, split.y_train, split.X_test, split.y_test)


@pytest.mark.parametrize("seed", SEEDS)
def test_shift_task_same_rule_different_inputs(seed):
    source, shifted = make_covariate_shift_task(seed=seed, shift=3.0)
    # Same labeling rule everywhere: p(y | x) does not move.
    for split in (source, shifted):
        assert torch.equal(split.y_train, covariate_shift_rule(split.X_train))
        assert torch.equal(split.y_test, covariate_shift_rule(split.X_test))
    # One training set for both views.
    assert shifted.X_train is source.X_train
    # The inputs moved: x1's mean by `shift`, x2's not; in-distribution test matches train.
    mean_train, mean_test = source.X_train.mean(0), source.X_test.mean(0)
    mean_shifted = shifted.X_test.mean(0)
    torch.testing.assert_close(mean_test, mean_train, atol=0.1, rtol=0)
    torch.testing.assert_close(mean_shifted - mean_train, torch.tensor([3.0, 0.0]), atol=0.1, rtol=0)
    torch.testing.assert_close(shifted.X_test.std(0), source.X_train.std(0), atol=0.05, rtol=0)
    # Both classes occur in every set.
    for labels in (source.y_train, source.y_test, shifted.y_test):
        assert 0.15 < labels.float().mean() < 0.85


def test_shift_moves_the_same_draws_and_leaves_training_data_alone():
    base = make_covariate_shift_task(seed=1, shift=0.0)
    moved = make_covariate_shift_task(seed=1, shift=2.5)
    assert torch.equal(base.source.X_train, moved.source.X_train)
    assert torch.equal(base.source.X_test, moved.source.X_test)
    torch.testing.assert_close(moved.shifted.X_test - base.shifted.X_test,
                               torch.tensor([2.5, 0.0]).expand(1000, 2))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_train": 0}, ValueError, "n_train must be at least 1"),
        ({"n_test": 10.0}, TypeError, "n_test must be an int"),
        ({"shift": float("nan")}, TypeError, "shift must be a finite number"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
    ],
)
def test_shift_task_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_covariate_shift_task(**kwargs)


@pytest.mark.parametrize("seed", SEEDS)
def test_covariate_shift_hurts_a_model_trained_on_the_source(seed):
    """Chapter 4's claim: high accuracy where the model was trained, far lower after the
    shift, although the labeling rule is the same; with no shift there is no drop."""
    accs = {}
    for shift in (0.0, 3.0):
        source, shifted = make_covariate_shift_task(seed=seed, shift=shift)
        model = make_mlp(2, [32, 32], 2, activation="relu", seed=seed)
        train(model, source, steps=800, lr=0.2, optimizer="momentum", seed=seed, eval_every=800)
        accs[shift] = (evaluate(model, source.X_test, source.y_test),
                       evaluate(model, shifted.X_test, shifted.y_test))
    in_dist, no_shift = accs[0.0]
    assert in_dist >= 0.95 and no_shift >= 0.95, accs
    in_dist, after_shift = accs[3.0]
    assert in_dist >= 0.95 and after_shift <= 0.7, accs
