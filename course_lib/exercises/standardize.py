"""Chapter 1 exercise: standardize training and test features.

The learner writes ``fn(X_train, X_test) -> (X_train_std, X_test_std)`` where both outputs
use the *training* set's per-feature mean and population standard deviation. The reference
is :class:`course_lib.normalize.Standardizer`.

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..normalize import Standardizer
from ._core import Case, Mistake, register_cases

ARG_NAMES = ("X_train", "X_test")
OUTPUT_NAMES = ("X_train_std", "X_test_std")

# Features on very different scales, as in the chapter: (mean, std) per column.
_HEIGHT_AGE_INCOME = [(170.0, 10.0), (40.0, 12.0), (50_000.0, 20_000.0)]
_MIXED = [(0.5, 0.2), (-20.0, 5.0), (1_000.0, 300.0), (7.0, 2.0)]


def _make_case(seed: int, n_train: int, n_test: int, features: list) -> Case:
    rng = np.random.default_rng(seed)
    mean = np.array([m for m, _ in features])
    std = np.array([s for _, s in features])
    X_train = mean + std * rng.standard_normal((n_train, len(features)))
    # The test set is drawn a little shifted, as real test data is, so refitting on it is
    # clearly different from reusing the training statistics.
    X_test = mean + 0.3 * std + 1.2 * std * rng.standard_normal((n_test, len(features)))
    scaler = Standardizer().fit(X_train)
    expected = (scaler.transform(X_train), scaler.transform(X_test))
    label = f"X_train {X_train.shape}, X_test {X_test.shape}"
    return Case(label, (X_train, X_test), expected)


def _cases() -> list[Case]:
    # n_train != n_test != D so a per-row statistic or swapped outputs cannot hide.
    return [
        _make_case(0, 12, 5, _HEIGHT_AGE_INCOME),
        _make_case(1, 12, 5, _HEIGHT_AGE_INCOME),  # case 1's shapes, other data: a cache shows
        _make_case(2, 20, 7, _MIXED),
    ]


# ---- classic mistakes: WRONG ON PURPOSE -------------------------------------------------


def _apply(X_train: np.ndarray, X_test: np.ndarray, mu: Any, sigma: Any) -> tuple:
    return (X_train - mu) / sigma, (X_test - mu) / sigma


def _wrong_test_refit(X_train, X_test):
    mu, sd = X_train.mean(axis=0), X_train.std(axis=0)
    return (X_train - mu) / sd, (X_test - X_test.mean(axis=0)) / X_test.std(axis=0)


def _wrong_fit_on_all(X_train, X_test):
    X_all = np.concatenate([X_train, X_test])
    return _apply(X_train, X_test, X_all.mean(axis=0), X_all.std(axis=0))


def _wrong_divides_by_variance(X_train, X_test):
    return _apply(X_train, X_test, X_train.mean(axis=0), X_train.var(axis=0))


def _wrong_unbiased_std(X_train, X_test):
    return _apply(X_train, X_test, X_train.mean(axis=0), X_train.std(axis=0, ddof=1))


def _wrong_not_centered(X_train, X_test):
    return _apply(X_train, X_test, 0.0, X_train.std(axis=0))


def _wrong_not_scaled(X_train, X_test):
    return _apply(X_train, X_test, X_train.mean(axis=0), 1.0)


def _wrong_axis(X_train, X_test):
    # Per-row statistics cannot carry over to other rows, so each set uses its own rows.
    def rows(X):
        return (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)

    return rows(X_train), rows(X_test)


def _wrong_missing_axis(X_train, X_test):
    return _apply(X_train, X_test, X_train.mean(), X_train.std())


FIX = (
    "mu = X_train.mean(axis=0) and sigma = X_train.std(axis=0), computed once, then "
    "return (X_train - mu) / sigma, (X_test - mu) / sigma."
)

MISTAKES = (
    Mistake(
        "test_refit",
        "Looks like you standardized X_test with its own mean and standard deviation. The "
        "test set must reuse the TRAINING statistics: the model learned on features "
        "shifted by mu_train and scaled by sigma_train, so test features must get exactly "
        "the same shift and scale. Refitting on test data is also a leak (the preprocessing "
        "peeks at the test set), and with a single test example it is impossible.",
        _wrong_test_refit,
    ),
    Mistake(
        "fit_on_all",
        "Looks like you computed mu and sigma on the training and test data together. That "
        "is a leak: the test set influences the preprocessing, so the test score is no "
        "longer an honest estimate. Compute the statistics from X_train only.",
        _wrong_fit_on_all,
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance sigma**2 instead of the standard deviation "
        "sigma. Then a feature with sigma = 10 ends with standard deviation 1/10 instead of "
        "1, and one with sigma = 20,000 with 1/20,000: the features end up on different scales "
        "again, just different ones. (A published formula makes this slip.) Divide by "
        "np.sqrt(var), i.e. X_train.std(axis=0).",
        _wrong_divides_by_variance,
    ),
    Mistake(
        "unbiased_std",
        "Looks like you used the sample standard deviation with ddof=1 (dividing by N - 1). "
        "This course, like sklearn's StandardScaler and batch norm itself, uses the "
        "population standard deviation: X_train.std(axis=0) with numpy's default ddof=0 "
        "(dividing by N). Watch out: pandas' .std() and torch.std() default to N - 1.\n"
       ,
        _wrong_unbiased_std,
    ),
    Mistake(
        "not_centered",
        "Looks like you divided by the standard deviation but did not subtract the mean. "
        "The features now have standard deviation 1 but are not centered at 0: subtract "
        "mu before dividing.",
        _wrong_not_centered,
    ),
    Mistake(
        "not_scaled",
        "Looks like you subtracted the mean but did not divide by the standard deviation. "
        "The features are centered but keep their very different scales, which is exactly "
        "what makes the loss contours elongated: divide by sigma too.",
        _wrong_not_scaled,
    ),
    Mistake(
        "wrong_axis",
        "Looks like you computed the mean and standard deviation per example (per row, "
        "axis=1) instead of per feature (per column, axis=0). Standardization gives each "
        "FEATURE zero mean and unit variance across the examples; for an (N, D) array the "
        "statistics have shape (D,).",
        _wrong_axis,
    ),
    Mistake(
        "missing_axis",
        "Looks like you computed one mean and one standard deviation over all entries "
        "(np.mean(X_train) without axis=...). Features on different scales each need their "
        "own statistics: pass axis=0 so mu and sigma have one value per feature.",
        _wrong_missing_axis,
    ),
)

HINT = (
    "Check one column by hand: its training mean should become 0 and its training standard "
    "deviation 1 (X_train_std.mean(axis=0), X_train_std.std(axis=0))."
)


def _diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    expected = dict(zip(OUTPUT_NAMES, case.expected))
    other = [o for o in OUTPUT_NAMES if o != name][0]
    if got == expected[other].shape and got != expected[name].shape:
        return (
            "wrong_shape",
            f"{name} has shape {got}, which is the shape of {other}: did you return the "
            f"two arrays in the wrong order? Return (X_train_std, X_test_std).",
        )
    return None


grade_standardize = register_cases(
    "standardize_train_test",
    "fn(X_train, X_test) -> (X_train_std, X_test_std): standardize both with the training "
    "mean and population std per feature (chapter 1)",
    _cases,
    arg_names=ARG_NAMES,
    output_names=OUTPUT_NAMES,
    mistakes=MISTAKES,
    fix=FIX,
    hint=HINT,
    diagnose_shape=_diagnose_shape,
)
