"""Tests for course_lib.normalize.Standardizer: agrees with sklearn, keeps dtypes, handles
constant features, and rejects bad input with messages that say what to do."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.preprocessing import StandardScaler

from course_lib.normalize import Standardizer, standardize

SEEDS = range(5)


def _data(seed: int, n: int = 30, d: int = 4, dtype=np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Features on very different scales, as in chapter 1.
    mean = rng.uniform(-100, 100, size=d) * 10.0 ** rng.integers(-2, 4, size=d)
    std = 10.0 ** rng.uniform(-2, 4, size=d)
    return (mean + std * rng.standard_normal((n, d))).astype(dtype)


@pytest.mark.parametrize("seed", SEEDS)
def test_matches_sklearn_standard_scaler(seed):
    X_train, X_test = _data(seed), _data(seed + 100, n=7)
    ours, ref = Standardizer().fit(X_train), StandardScaler().fit(X_train)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.std_, ref.scale_, rtol=1e-12)
    np.testing.assert_allclose(ours.std_**2, ref.var_, rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X_test), ref.transform(X_test), rtol=1e-10,
                               atol=1e-12)
    Z = ours.transform(X_test)
    np.testing.assert_allclose(ours.inverse_transform(Z), ref.inverse_transform(Z), rtol=1e-12)
    assert ours.n_features_in_ == ref.n_features_in_ == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_formula_population_std_and_training_statistics(seed):
    X_train, X_test = _data(seed), _data(seed + 100, n=7)
    scaler = Standardizer().fit(X_train)
    sigma = np.sqrt(((X_train - X_train.mean(0)) ** 2).sum(0) / len(X_train))  # ddof=0
    np.testing.assert_allclose(scaler.std_, sigma, rtol=1e-12)
    # The test set is transformed with the TRAINING mean and std, not its own.
    expected = (X_test - X_train.mean(0)) / sigma
    np.testing.assert_allclose(scaler.transform(X_test), expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(scaler.transform(X_test).mean(0), 0.0, atol=1e-3)


@pytest.mark.parametrize("seed", SEEDS)
def test_teaching_standardize_matches_sklearn(seed):
    """standardize (what the page shows) with the training statistics = sklearn's transform."""
    X_train, X_test = _data(seed), _data(seed + 100, n=7)
    ref = StandardScaler().fit(X_train)
    mu, sigma = X_train.mean(axis=0), X_train.std(axis=0)
    np.testing.assert_allclose(standardize(X_test, mu, sigma), ref.transform(X_test),
                               rtol=1e-10, atol=1e-12)
    scaler = Standardizer().fit(X_train)
    np.testing.assert_array_equal(
        scaler.transform(X_test), standardize(X_test, scaler.mean_, scaler.std_)
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip(seed):
    X = _data(seed)
    scaler = Standardizer().fit(X)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(X)), X, rtol=1e-12,
                               atol=1e-9 * np.abs(X).max())


def test_fit_returns_self_and_fit_transform_equals_fit_then_transform():
    X = _data(0)
    scaler = Standardizer()
    assert scaler.fit(X) is scaler
    np.testing.assert_array_equal(Standardizer().fit_transform(X), scaler.transform(X))


def test_inputs_are_not_modified_and_refit_replaces_statistics():
    X, Y = _data(0), _data(1, d=2)
    X_copy = X.copy()
    scaler = Standardizer()
    out = scaler.fit_transform(X)
    scaler.inverse_transform(out)
    np.testing.assert_array_equal(X, X_copy)
    assert out is not X
    scaler.fit(Y)
    assert scaler.n_features_in_ == 2 and scaler.mean_.shape == (2,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_dtypes_are_preserved(dtype):
    X = _data(0, dtype=dtype)
    scaler = Standardizer().fit(X)
    assert scaler.mean_.dtype == scaler.std_.dtype == dtype
    Z = scaler.transform(X)
    assert Z.dtype == dtype
    assert scaler.inverse_transform(Z).dtype == dtype
    ref = StandardScaler().fit(X)
    assert ref.transform(X).dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(Z, ref.transform(X), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16])
def test_integers_become_float64(dtype):
    X = np.array([[1, 10], [2, 20], [3, 60]], dtype=dtype)
    scaler = Standardizer().fit(X)
    Z = scaler.transform(X)
    assert Z.dtype == scaler.mean_.dtype == np.float64
    np.testing.assert_allclose(Z, StandardScaler().fit_transform(X.astype(np.float64)))


def test_lists_are_accepted_like_arrays():
    Z = Standardizer().fit_transform([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_array_equal(Z, [[-1.0, -1.0], [1.0, 1.0]])


def test_constant_features_get_std_one_and_become_zero():
    X = np.column_stack([np.full(6, 5.0), np.arange(6.0), np.full(6, 0.1), np.zeros(6)])
    scaler = Standardizer().fit(X)
    np.testing.assert_array_equal(scaler.std_[[0, 2, 3]], 1.0)
    Z = scaler.transform(X)
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z[:, [0, 2, 3]], 0.0)
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(scaler.std_, ref.scale_)
    np.testing.assert_allclose(Z, ref.transform(X), atol=1e-15)
    # New data is only shifted on a constant feature.
    np.testing.assert_allclose(scaler.transform(np.array([[7.0, 2.5, 0.1, -1.0]]))[0, [0, 3]],
                               [2.0, -1.0])


def test_single_example_is_all_constant():
    scaler = Standardizer().fit(np.array([[3.0, -2.0]]))
    np.testing.assert_array_equal(scaler.std_, [1.0, 1.0])
    np.testing.assert_array_equal(scaler.transform(np.array([[3.0, -2.0]])), [[0.0, 0.0]])


@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 30), st.integers(1, 5)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    )
)
def test_transformed_training_data_has_mean_0_std_1(X):
    Z = Standardizer().fit_transform(X)
    assert np.all(np.isfinite(Z))
    spread = np.ptp(X, axis=0)
    magnitude = np.maximum(1.0, np.abs(X).max(axis=0))
    varies = spread > 1e-6 * magnitude  # well above round-off: genuinely non-constant
    np.testing.assert_allclose(Z[:, varies].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z[:, varies].std(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(Z[:, spread == 0], 0.0)


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_use_before_fit(method):
    with pytest.raises(RuntimeError, match=r"not fitted yet: call fit\(X_train\) first"):
        getattr(Standardizer(), method)(np.ones((2, 2)))


@pytest.mark.parametrize(
    "X, got",
    [(np.ones(5), "1D"), (np.ones((2, 3, 4)), "3D"), (np.float64(1.0), "0D")],
)
def test_wrong_ndim(X, got):
    with pytest.raises(ValueError, match=rf"expected 2D input of shape \(N, D\) \(got {got}"):
        Standardizer().fit(X)


def test_one_d_input_suggests_reshape():
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        Standardizer().fit(np.arange(4.0))
    scaler = Standardizer().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="got 1D"):
        scaler.transform(np.ones(2))


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_empty_input(shape):
    with pytest.raises(ValueError, match="at least 1 example and 1 feature"):
        Standardizer().fit(np.ones(shape))


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_feature_count_mismatch_names_both_numbers(method):
    scaler = Standardizer().fit(_data(0, d=3))
    with pytest.raises(ValueError, match="X has 4 features, but this Standardizer was fitted "
                                         "with 3 features"):
        getattr(scaler, method)(_data(1, d=4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("method", ["fit", "transform", "inverse_transform"])
def test_non_finite_values(bad, method):
    X = _data(0, d=3)
    scaler = Standardizer().fit(X)
    X_bad = X.copy()
    X_bad[2, 1] = bad
    with pytest.raises(ValueError, match=r"contains 1 NaN or infinite value"):
        getattr(scaler, method)(X_bad)


@pytest.mark.parametrize(
    "X",
    [
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[1.0, None], [2.0, 3.0]], dtype=object),
        np.array([[True, False], [False, True]]),
        np.array([[1 + 2j, 3.0], [0.0, 1j]]),
    ],
    ids=["str", "object", "bool", "complex"],
)
def test_non_numeric_dtype_is_a_type_error(X):
    with pytest.raises(TypeError, match=rf"expected an integer or float array \(got dtype "):
        Standardizer().fit(X)
    scaler = Standardizer().fit(np.ones((2, 2)))
    with pytest.raises(TypeError, match="got dtype"):
        scaler.transform(X)


def test_docstring_states_the_formula_and_warnings():
    doc = Standardizer.__doc__
    assert "x_{norm} = \\frac{x - \\mu}{\\sigma}" in doc
    assert "standard deviation, not the variance" in doc
    assert "Reuse the training statistics on the test set" in doc
    assert "ddof=0" in doc
