"""Numerical gradient checks, as in CS231n: the ground truth an analytic backward is held to.

For a scalar loss :math:`L = \\sum f(v) \\odot d_{out}` (a *random* upstream gradient
:math:`d_{out}`: a plain sum through batch norm has zero gradient and proves nothing), the
centered difference

.. math::

    \\frac{\\partial L}{\\partial v_k} \\approx
    \\frac{L(v + h e_k) - L(v - h e_k)}{2h}

has error :math:`O(h^2)`. In float64 with :math:`h = 10^{-5}`, a correct backward pass agrees
to a relative error around :math:`10^{-8}` or better; above :math:`10^{-4}` something is wrong.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def centered_difference(
    f: Callable[[], np.ndarray], v: np.ndarray, dout: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """dL/dv for L = sum(f() * dout), nudging one entry of v at a time by +h and -h."""
    grad = np.zeros_like(v)
    for k in np.ndindex(v.shape):
        saved = v[k]
        v[k] = saved + h
        L_plus = np.sum(f() * dout)
        v[k] = saved - h
        L_minus = np.sum(f() * dout)
        v[k] = saved                                # restore v exactly
        grad[k] = (L_plus - L_minus) / (2 * h)
    return grad


def numerical_gradient(
    f: Callable[[], np.ndarray], v: np.ndarray, dout: np.ndarray, h: float = 1e-5
) -> np.ndarray:
    """Centered differences of ``sum(f() * dout)`` with respect to ``v``
    (:func:`centered_difference`, with ``v`` checked).

    Args:
        f: a function of no arguments that reads ``v`` (closed over) and returns an array of
            ``dout``'s shape.
        v: the float64 array to differentiate with respect to. It is perturbed in place, one
            entry at a time, and restored exactly.
        dout: the upstream gradient, same shape as ``f()``.
        h: the step.

    Returns:
        An array of ``v``'s shape.

    Example:
        >>> x = np.array([1.0, 2.0]); dout = np.array([1.0, -1.0])
        >>> numerical_gradient(lambda: x ** 2, x, dout)   # d/dx sum(x**2 * dout) = 2x * dout
        array([ 2., -4.])
    """
    if not isinstance(v, np.ndarray) or v.dtype != np.float64:
        raise TypeError(
            "numerical_gradient needs a float64 array to perturb (float32 rounding swamps the "
            f"difference); got {getattr(v, 'dtype', type(v).__name__)}; use v.astype(np.float64)"
        )
    return centered_difference(f, v, dout, h)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Norm-wise relative error :math:`\\|a - b\\| / (\\|a\\| + \\|b\\|)` (0 when both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denominator) if denominator > 0 else 0.0
