"""The sigmoid, and where its inputs land: its near-linear middle or its saturated tails.

Batch norm's output ``z_tilde = gamma * z_norm + beta`` feeds an activation. With
``gamma = 1, beta = 0`` a sigmoid sees inputs of mean 0 and variance 1, and there it is
nearly a straight line: its tangent at 0 is ``1/2 + z/4`` and, for ``|z| <= 1``, the sigmoid
stays within 8% of it. This module measures that, so a chapter can show what ``gamma`` and
``beta`` change:

- :func:`tangent_deviation` -- how far ``sigmoid(z)`` bends away from its tangent line at 0,
  relative to the tangent's own rise: ``1 - (sigmoid(z) - 1/2) / (z/4) = 1 - 2 tanh(z/2) / z``.
  It is 0 at ``z = 0``, grows with ``|z|`` and tends to 1 (flat tails).
- :func:`near_linear_fraction` / :func:`near_linear_bound` -- the share of inputs whose
  deviation is at most ``tol`` (10% by default), and the ``|z|`` where that region ends.
- :func:`saturated_fraction` / :func:`saturation_bound` -- the share of inputs whose output is
  within ``margin`` of 0 or 1 (where the gradient ``sigmoid'(z)`` almost vanishes), and the
  ``|z|`` where saturation starts.

Example:
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal(100_000)
    >>> round(near_linear_fraction(z), 2), round(saturated_fraction(z), 3)
    (0.76, 0.003)
    >>> round(near_linear_fraction(4 * z), 2), round(saturated_fraction(4 * z), 2)
    (0.23, 0.46)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from course_lib import _checks

__all__ = [
    "Regimes",
    "near_linear_bound",
    "near_linear_fraction",
    "saturated_fraction",
    "saturation_bound",
    "sigmoid",
    "sigmoid_grad",
    "sigmoid_regimes",
    "tangent_deviation",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic sigmoid ``1 / (1 + exp(-z))``, without overflow for large ``|z|``.

    Args:
        z: array of any shape (or a float).

    Returns:
        ``sigmoid(z)``, same shape, values in ``[0, 1]``.

    Example:
        >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]))
        array([0. , 0.5, 1. ])
    """
    z = _checks.as_float64_array(z, "z", where="sigmoid", finite=True)
    # exp of a non-positive number never overflows; pick the form that only needs that.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_grad(z: np.ndarray) -> np.ndarray:
    """The sigmoid's slope ``sigmoid'(z) = sigmoid(z) * (1 - sigmoid(z))``, at most 1/4 (at 0).

    Example:
        >>> sigmoid_grad(np.array([0.0]))
        array([0.25])
    """
    s = sigmoid(z)
    return s * (1.0 - s)


def tangent_deviation(z: np.ndarray) -> np.ndarray:
    """How far the sigmoid bends away from its tangent line at 0, relative to the tangent.

    .. math::

        d(z) = 1 - \\frac{\\sigma(z) - 1/2}{z/4} = 1 - \\frac{2 \\tanh(z/2)}{z},
        \\qquad d(0) = 0 .

    ``d`` is even, increases with ``|z|`` from 0 towards 1: ``d(1) = 0.076`` (the sigmoid is
    7.6% below its tangent), ``d(3) = 0.40``, ``d(10) = 0.8``.

    Args:
        z: array of any shape (or a float), finite.

    Returns:
        ``d(z)``, same shape, values in ``[0, 1)``.
    """
    z = _checks.as_float64_array(z, "z", where="tangent_deviation", finite=True)
    az = np.abs(z)
    ratio = np.ones_like(az)
    # tanh(u)/u -> 1 as u -> 0; for tiny u the division is exact enough, for u = 0 it is 1.
    np.divide(np.tanh(az / 2.0), az / 2.0, out=ratio, where=az > 0)
    return 1.0 - ratio


def near_linear_bound(tol: float = 0.1) -> float:
    """The ``|z|`` up to which the sigmoid is within ``tol`` of its tangent line at 0.

    Solves ``tangent_deviation(z) = tol`` by bisection (``d`` is increasing for ``z > 0``).

    Args:
        tol: allowed relative deviation, ``0 < tol < 1``.

    Returns:
        ``z_star > 0`` with ``tangent_deviation(z_star) = tol`` (to 1e-12); about 1.17 for
        the default ``tol = 0.1``.
    """
    tol = _checks.check_number(tol, "tol", above=0.0, below=1.0, where="near_linear_bound")
    # d(z) >= 1 - 2/z, so d(z) >= tol once z >= 2 / (1 - tol): the root lies below that.
    lo, hi = 0.0, 2.0 / (1.0 - tol)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(tangent_deviation(mid)) < tol:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13:
            break
    return 0.5 * (lo + hi)


def near_linear_fraction(z: np.ndarray, tol: float = 0.1) -> float:
    """The share of ``z`` where the sigmoid is within ``tol`` of its tangent line at 0.

    Args:
        z: inputs of the sigmoid, any shape, finite, at least one value.
        tol: allowed relative deviation ``tangent_deviation(z) <= tol``, ``0 < tol < 1``.

    Returns:
        A fraction in ``[0, 1]``. For ``z ~ N(0, 1)`` and ``tol = 0.1`` it is about 0.76.
    """
    z = _checks.as_float64_array(z, "z", where="near_linear_fraction", nonempty=True, finite=True)
    tol = _checks.check_number(tol, "tol", above=0.0, below=1.0, where="near_linear_fraction")
    return float(np.mean(tangent_deviation(z) <= tol))


def saturation_bound(margin: float = 0.05) -> float:
    """The ``|z|`` beyond which ``sigmoid(z)`` is within ``margin`` of 0 or 1.

    It is the logit of ``1 - margin``: ``log((1 - margin) / margin)``, about 2.94 for the
    default 0.05. There the slope ``sigmoid'(z)`` is below ``margin`` (less than a fifth of
    its maximum 1/4 for the default).

    Args:
        margin: distance from 0 or 1 that counts as saturated, ``0 < margin < 0.5``.
    """
    margin = _checks.check_number(margin, "margin", above=0.0, below=0.5, where="saturation_bound")
    return float(np.log((1.0 - margin) / margin))


def saturated_fraction(z: np.ndarray, margin: float = 0.05) -> float:
    """The share of ``z`` where ``sigmoid(z)`` is within ``margin`` of 0 or 1.

    Args:
        z: inputs of the sigmoid, any shape, finite, at least one value.
        margin: distance from 0 or 1 that counts as saturated, ``0 < margin < 0.5``.

    Returns:
        A fraction in ``[0, 1]``. For ``z ~ N(0, 1)`` and ``margin = 0.05`` it is about 0.003.
    """
    z = _checks.as_float64_array(z, "z", where="saturated_fraction", nonempty=True, finite=True)
    margin = _checks.check_number(margin, "margin", above=0.0, below=0.5, where="saturated_fraction")
    s = sigmoid(z)
    return float(np.mean((s <= margin) | (s >= 1.0 - margin)))


class Regimes(NamedTuple):
    """Shares of a sigmoid's inputs in each regime (they need not add up to 1: the rest is
    the curved, nonlinear part in between)."""

    near_linear: float
    saturated: float


def sigmoid_regimes(z: np.ndarray, tol: float = 0.1, margin: float = 0.05) -> Regimes:
    """``Regimes(near_linear_fraction(z, tol), saturated_fraction(z, margin))``."""
    return Regimes(near_linear_fraction(z, tol), saturated_fraction(z, margin))
