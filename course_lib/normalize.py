"""Input standardization (chapter 1: normalizing inputs).

Each feature ``j`` (a column of an ``(N, D)`` array) is shifted and scaled with statistics
of the *training* set::

    mu_j    = (1/N) * sum_i x_ij
    sigma_j = sqrt((1/N) * sum_i (x_ij - mu_j)**2)      # population std, ddof=0
    x_norm_ij = (x_ij - mu_j) / sigma_j

``sigma`` is the standard deviation, not the variance ``sigma**2``: dividing by the variance
(a slip that appears in at least one published formula) leaves the features on different
scales again, just different ones.

The test set must be transformed with the training set's ``mu`` and ``sigma``. Refitting on
test data leaks information about the test set into the preprocessing and makes train and
test features disagree; fit once on ``X_train``, then ``transform`` everything else.
"""

from __future__ import annotations

import numpy as np

__all__ = ["standardize", "Standardizer"]


def standardize(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per feature: how many standard deviations sigma x lies from the mean mu."""
    x_norm = (x - mu) / sigma
    return x_norm


class Standardizer:
    """Standardize features to zero mean and unit variance, like sklearn's ``StandardScaler``.

    .. math::

        x_{norm} = \\frac{x - \\mu}{\\sigma}, \\qquad
        \\mu = \\frac{1}{N}\\sum_i x^{(i)}, \\qquad
        \\sigma = \\sqrt{\\frac{1}{N}\\sum_i (x^{(i)} - \\mu)^2}

    ``mu`` and ``sigma`` are per feature (per column) and are computed by :meth:`fit` on the
    training set only. ``sigma`` is the population standard deviation (``ddof=0``, as in
    sklearn and in batch norm), and it is the standard deviation, not the variance.

    Warning:
        Reuse the training statistics on the test set: ``fit(X_train)`` once, then
        ``transform(X_test)``. Calling ``fit`` (or ``fit_transform``) on test data is a leak.

    Constant features: a feature whose standard deviation is 0 cannot be scaled. As sklearn
    does, its ``std_`` is set to 1, so it is only centered (and becomes all zeros). A feature
    counts as constant when its variance is below the round-off error of computing it
    (sklearn's rule), so ``[0.1, 0.1, 0.1]`` is constant even if the float mean is not
    exactly 0.1.

    Dtypes: float32 and float64 inputs are preserved; any other integer or float input is
    converted to float64. The statistics are accumulated in float64 and stored in the
    working dtype (float32 or float64).

    Attributes:
        mean_: ``(D,)`` per-feature training mean ``mu``.
        std_: ``(D,)`` per-feature training standard deviation ``sigma`` (1 for constant
            features).
        n_features_in_: ``D``, the number of features seen by :meth:`fit`.

    Shape:
        - Input: ``(N, D)``, N examples and D features, N >= 1, D >= 1.
        - Output: ``(N, D)``, same dtype as the (converted) input.

    Example::

        >>> X_train = np.array([[150.0, 20.0], [170.0, 40.0], [190.0, 60.0]])
        >>> scaler = Standardizer().fit(X_train)
        >>> scaler.mean_, scaler.std_
        (array([170.,  40.]), array([16.32993162, 16.32993162]))
        >>> scaler.transform(np.array([[170.0, 60.0]]))   # test data: training statistics
        array([[0.        , 1.22474487]])
    """

    mean_: np.ndarray
    std_: np.ndarray
    n_features_in_: int

    def fit(self, X: np.ndarray) -> "Standardizer":
        """Compute the per-feature mean ``mu`` and standard deviation ``sigma`` of ``X``.

        Args:
            X: training data, ``(N, D)``, integer or float, all values finite.

        Returns:
            ``self``, fitted (so ``Standardizer().fit(X).transform(X)`` works).
        """
        X = _check_input(X, "fit")
        X64 = X.astype(np.float64, copy=False)
        n = X64.shape[0]
        mean = X64.mean(axis=0)
        var = X64.var(axis=0)  # ddof=0: population variance
        # sklearn's bound on the round-off error of the variance: anything below it is 0.
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        std = np.sqrt(var)
        std[constant] = 1.0
        # For a truly constant column center on the exact value, so it maps to exact zeros.
        exact = constant & (X64.max(axis=0) == X64.min(axis=0))
        mean[exact] = X64[0, exact]
        self.mean_ = mean.astype(X.dtype)
        self.std_ = std.astype(X.dtype)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Return ``(X - mean_) / std_`` using the statistics from :meth:`fit`
        (:func:`standardize`, with the input checked).

        Args:
            X: ``(M, D)`` data with the same D as the training data (M may differ).

        Returns:
            ``(M, D)`` standardized copy of ``X``; ``X`` is not modified.
        """
        X = self._check_fitted_input(X, "transform")
        return standardize(X, self.mean_.astype(X.dtype), self.std_.astype(X.dtype))

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``. Use it on training data only."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Undo :meth:`transform`: return ``X * std_ + mean_``.

        Args:
            X: ``(M, D)`` standardized data.

        Returns:
            ``(M, D)`` data on the original scale.
        """
        X = self._check_fitted_input(X, "inverse_transform")
        return X * self.std_.astype(X.dtype) + self.mean_.astype(X.dtype)

    def _check_fitted_input(self, X: np.ndarray, method: str) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise RuntimeError(
                f"this Standardizer is not fitted yet: call fit(X_train) first, then "
                f"{method}(X). Fit on the training set only and reuse it for the test set."
            )
        X = _check_input(X, method)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{method}: X has {X.shape[1]} features, but this Standardizer was fitted "
                f"with {self.n_features_in_} features; pass data with the same columns as "
                f"X_train"
            )
        return X

    def __repr__(self) -> str:
        if hasattr(self, "mean_"):
            return f"Standardizer(n_features_in_={self.n_features_in_})"
        return "Standardizer(not fitted)"


def _check_input(X: object, method: str) -> np.ndarray:
    """Validate ``X`` and convert it to the working dtype (float32 or float64)."""
    X = np.asarray(X)
    if X.dtype.kind not in "iuf":
        raise TypeError(
            f"{method}: expected an integer or float array (got dtype {X.dtype}); "
            f"convert with np.asarray(X, dtype=np.float64)"
        )
    if X.ndim != 2:
        hint = " (for a single feature use X.reshape(-1, 1))" if X.ndim == 1 else ""
        raise ValueError(
            f"{method}: expected 2D input of shape (N, D) (got {X.ndim}D input with shape "
            f"{X.shape}){hint}"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{method}: expected at least 1 example and 1 feature (got shape {X.shape})"
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        n_bad = int(np.size(X) - np.count_nonzero(np.isfinite(X)))
        raise ValueError(
            f"{method}: X contains {n_bad} NaN or infinite value(s); clean or impute them "
            f"before standardizing"
        )
    return X
