r"""The batch norm transform in numpy: forward pass, and the backward pass written twice.

Algorithm 1 of Ioffe & Szegedy (2015), per feature (channel) over a mini-batch of
:math:`m` values, in the lecture's notation:

.. math::

    \mu = \frac{1}{m}\sum_{i=1}^m z^{(i)}, \qquad
    \sigma^2 = \frac{1}{m}\sum_{i=1}^m (z^{(i)} - \mu)^2, \qquad
    z_{norm}^{(i)} = \frac{z^{(i)} - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
    \tilde z^{(i)} = \gamma z_{norm}^{(i)} + \beta .

The variance is the *biased* one (divide by :math:`m`).

Shapes: ``z`` is ``(N, D)`` for a dense layer or ``(N, C, *spatial)`` for a convolution
(``(N, C, L)``, ``(N, C, H, W)``, ``(N, C, D, H, W)``). There is one :math:`\gamma`, one
:math:`\beta` per channel (axis 1) and the statistics run over every other axis, so
:math:`m = N \cdot \prod \text{spatial}`.

Two layers, as everywhere in ``course_lib``:

- the teaching functions :func:`bn_forward`, :func:`bn_backward` and
  :func:`bn_backward_graph` hold the math and nothing else (what the pages show);
- the public API :func:`batchnorm_forward`, :func:`batchnorm_backward` and
  :func:`batchnorm_backward_graph` checks its input (:mod:`course_lib._checks`), then calls
  them. Same results; only the errors differ.

The functions follow CS231n: ``forward(z, ...) -> (z_tilde, cache)`` and
``backward(dz_tilde, cache) -> grads``, with no hidden state. They accept float32 and float64
and return the input's dtype. They are written to be read, not to be fast.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from course_lib import _checks
from course_lib.normalization import centered, normalize_over

__all__ = [
    "BatchNormCache",
    "reduce_axes",
    "per_channel",
    "values_per_channel",
    "bn_forward",
    "bn_backward",
    "bn_backward_graph",
    "batch_stats",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_graph",
]


class BatchNormCache(NamedTuple):
    r"""What the forward pass keeps for the backward pass.

    One array the size of ``z`` (:math:`z_{norm}`) and a few per-channel vectors: the
    backward pass needs no more.

    Attributes:
        x_hat: :math:`z_{norm}`, the normalized input, shape of ``z``.
        gamma: :math:`\gamma`, shape ``(C,)``.
        mu: :math:`\mu`, the batch mean, shape ``(C,)``.
        var: :math:`\sigma^2`, the biased batch variance, shape ``(C,)``.
        inv_std: :math:`1 / \sqrt{\sigma^2 + \epsilon}`, shape ``(C,)``.
        eps: :math:`\epsilon`.
    """

    x_hat: np.ndarray
    gamma: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    inv_std: np.ndarray
    eps: float


def reduce_axes(x: np.ndarray) -> tuple[int, ...]:
    r"""The axes batch norm averages over: every axis but the channel axis 1.

    .. math:: (N, C, d_2, \dots, d_k) \mapsto (0, 2, \dots, k)

    Works for numpy arrays and torch tensors alike (it only reads ``x.ndim``).

    Example:
        >>> reduce_axes(np.zeros((8, 3)))
        (0,)
        >>> reduce_axes(np.zeros((8, 3, 32, 32)))
        (0, 2, 3)
    """
    return (0, *range(2, x.ndim))


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    r"""Reshape a per-channel vector of shape ``(C,)`` to broadcast against ``(N, C, ...)``.

    .. math:: (C,) \mapsto (1, C, \underbrace{1, \dots, 1}_{ndim - 2})

    For ``ndim == 2`` it returns ``v`` itself: a ``(C,)`` vector already broadcasts along
    axis 1 of ``(N, C)``. Otherwise it returns a view. Works for numpy arrays and torch
    tensors alike.

    Example:
        >>> per_channel(np.arange(3.0), ndim=4).shape
        (1, 3, 1, 1)
        >>> per_channel(np.arange(3.0), ndim=2).shape
        (3,)
    """
    if ndim == 2:
        return v
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def values_per_channel(shape: tuple[int, ...]) -> int:
    r"""How many values each channel's statistics use: :math:`m = N \cdot \prod \text{spatial}`.

    Works for numpy shapes and ``torch.Size`` alike.

    Example:
        >>> values_per_channel((8, 3, 4, 4))
        128
    """
    return math.prod((shape[0], *shape[2:]))


# ---------------------------------------------------------------- teaching functions


# Works on numpy arrays and torch tensors alike: course_lib.nn's layers call it too, and
# autograd derives their backward pass. normalize_over computes the statistics so that
# float32 keeps its digits at any offset (course_lib.normalization.centered says how).
def bn_forward(
    z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, BatchNormCache]:
    """Batch norm in training mode: normalize each channel of z, scale and shift."""
    axes = reduce_axes(z)                      # every axis but the channel axis 1
    z_norm, mu, sigma2 = normalize_over(z, axes, eps)  # the first three steps
    z_tilde = per_channel(gamma, z.ndim) * z_norm + per_channel(beta, z.ndim)
    inv_std = (sigma2 + eps) ** -0.5           # for the backward pass
    mu, sigma2, inv_std = mu.ravel(), sigma2.ravel(), inv_std.ravel()  # shape (C,)
    return z_tilde, BatchNormCache(z_norm, gamma, mu, sigma2, inv_std, eps)


Grads = tuple[np.ndarray, np.ndarray, np.ndarray]


def bn_backward(dz_tilde: np.ndarray, cache: BatchNormCache) -> Grads:
    """Batch norm backward pass in closed form: (dz, dgamma, dbeta) from dL/dz_tilde."""
    z_norm, gamma, _, _, inv_std, _ = cache
    axes, m = reduce_axes(z_norm), values_per_channel(z_norm.shape)

    def c(v):  # a (C,) vector, shaped to broadcast against (N, C, ...)
        return per_channel(v, z_norm.ndim)

    dbeta = dz_tilde.sum(axis=axes)
    dgamma = (dz_tilde * z_norm).sum(axis=axes)
    dz = c(gamma * inv_std) * (dz_tilde - c(dbeta) / m - z_norm * c(dgamma) / m)
    return dz, dgamma, dbeta


def bn_backward_graph(dz_tilde: np.ndarray, cache: BatchNormCache) -> Grads:
    """Batch norm backward pass, one node of the graph at a time, from (7) to (1)."""
    z_norm, gamma, _, _, inv_std, _ = cache
    axes, m, nd = reduce_axes(z_norm), values_per_channel(z_norm.shape), z_norm.ndim

    def total(a):  # a per-channel node feeds all m positions: sum their gradients
        return a.sum(axis=axes, keepdims=True)

    gamma, inv_std = per_channel(gamma, nd), per_channel(inv_std, nd)
    std = 1 / inv_std                             # nodes (4) and (5) from the cache
    z_mu = z_norm * std                           # node (2), rebuilt from the cache
    dbeta, dgamma = total(dz_tilde), total(dz_tilde * z_norm)  # (7) gamma z_norm + beta
    dz_norm = dz_tilde * gamma
    dinv_std = total(dz_norm * z_mu)              # (6) z_norm = z_mu * inv_std
    dz_mu = dz_norm * inv_std                     #     z_mu's first path
    dstd = -dinv_std / std**2                     # (5) inv_std = 1 / std
    dsigma2 = dstd / (2 * std)                    # (4) std = sqrt(sigma2 + eps)
    dz_mu = dz_mu + dsigma2 * 2 * z_mu / m        # (3) sigma2 = mean(z_mu**2): 2nd path
    dmu = -total(dz_mu)                           # (2) z_mu = z - mu
    dz = dz_mu + dmu / m                          # (1) mu = mean(z): z's two paths
    return dz, dgamma.reshape(-1), dbeta.reshape(-1)


# ---------------------------------------------------------------- public API (checked)


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel batch mean and *biased* batch variance (Ioffe & Szegedy, Algorithm 1).

    .. math::

        \mu = \frac{1}{m}\sum_{i=1}^m x_i, \qquad
        \sigma^2 = \frac{1}{m}\sum_{i=1}^m (x_i - \mu)^2

    over every axis but 1, by :func:`course_lib.normalization.centered`, the statistics of
    every normalization: from centered values, so they stay accurate when
    :math:`|\mu| \gg \sigma`.

    Args:
        x: float32 or float64 array of shape ``(N, C, *spatial)``.

    Returns:
        ``(mu, var)``, each of shape ``(C,)`` and ``x``'s dtype.

    Example:
        >>> mu, var = batch_stats(np.array([[1.0, 10.0], [3.0, 10.0]]))
        >>> mu, var
        (array([ 2., 10.]), array([1., 0.]))
    """
    _checks.check_float_array(x)
    _checks.check_min_ndim(x.ndim)
    _, mu, sigma2 = centered(x, reduce_axes(x))
    return mu.ravel(), sigma2.ravel()


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
) -> tuple[np.ndarray, BatchNormCache]:
    r"""Batch norm forward pass in training mode (batch statistics): :func:`bn_forward`,
    with its input checked.

    .. math::

        \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
        y_i = \gamma \hat x_i + \beta

    with :math:`\mu, \sigma^2` the batch mean and biased variance, per channel.

    Args:
        x: input of shape ``(N, D)`` or ``(N, C, *spatial)``, float32 or float64.
        gamma: scale :math:`\gamma`, shape ``(C,)``, ``x``'s dtype.
        beta: shift :math:`\beta`, shape ``(C,)``, ``x``'s dtype.
        eps: :math:`\epsilon > 0`, keeps the division finite for a constant channel.

    Returns:
        ``(out, cache)``: ``out`` of ``x``'s shape and dtype, and the
        :class:`BatchNormCache` that :func:`batchnorm_backward` needs.

    Raises:
        TypeError: ``x``, ``gamma`` or ``beta`` not float32/float64 numpy arrays of one dtype,
            or ``eps`` not a number.
        ValueError: fewer than 2 dimensions, ``gamma``/``beta`` not of shape ``(C,)``, a
            single value per channel, ``eps`` not positive and finite, NaN/inf in ``x``, or
            a mean or variance that overflows ``x``'s dtype.

    Example:
        >>> x = np.random.default_rng(0).normal(5.0, 3.0, size=(64, 4))
        >>> out, cache = batchnorm_forward(x, np.ones(4), np.zeros(4))
        >>> np.allclose(out.mean(axis=0), 0.0), np.allclose(out.std(axis=0), 1.0, atol=1e-5)
        (True, True)
    """
    _checks.check_float_array(x)
    _checks.check_min_ndim(x.ndim)
    _checks.check_float_array(gamma, "gamma")
    _checks.check_float_array(beta, "beta")
    _checks.check_same_dtype(x, gamma=gamma, beta=beta)
    _checks.check_channel_vector(gamma, "gamma", x.shape[1])
    _checks.check_channel_vector(beta, "beta", x.shape[1])
    _checks.check_values_per_channel(x.shape)
    eps = _checks.check_eps(eps)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        out, cache = bn_forward(x, gamma, beta, eps)
    _checks.check_finite(x, channel_vars=cache.var)
    return out, cache


def _check_backward_input(dout: np.ndarray, cache: BatchNormCache) -> None:
    if not isinstance(cache, BatchNormCache):
        raise TypeError(
            f"expected cache to be a BatchNormCache, got {type(cache).__qualname__}; pass the "
            "second value returned by batchnorm_forward"
        )
    _checks.check_float_array(dout, "dout")
    _checks.check_same_shape(dout, cache.x_hat.shape)
    _checks.check_same_dtype(cache.x_hat, dout=dout)


def batchnorm_backward(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Batch norm backward pass, compact closed form: :func:`bn_backward`, input checked.

    With :math:`g_i = \partial L / \partial y_i` (``dout``), per channel:

    .. math::

        \frac{\partial L}{\partial \beta} = \sum_i g_i, \qquad
        \frac{\partial L}{\partial \gamma} = \sum_i g_i \hat x_i,

        \frac{\partial L}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}
        \Big( g_i - \frac{1}{m}\frac{\partial L}{\partial \beta}
                  - \hat x_i \, \frac{1}{m}\frac{\partial L}{\partial \gamma} \Big).

    Consequences worth seeing, per channel: :math:`\sum_i \partial L / \partial x_i = 0`, and
    :math:`\sum_i \hat x_i \, \partial L / \partial x_i
    = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}} \frac{\partial L}{\partial \gamma}
    \frac{\epsilon}{\sigma^2+\epsilon} \approx 0` (exactly 0 as :math:`\epsilon \to 0`):
    the gradient cannot move the batch's mean or scale, which the normalization would undo.
    :func:`batchnorm_backward_graph` derives the same result one node at a time.

    Args:
        dout: upstream gradient :math:`\partial L / \partial y`, shape and dtype of ``x``.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes ``x.shape``, ``(C,)``, ``(C,)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x, dout = rng.normal(size=(16, 3)), rng.normal(size=(16, 3))
        >>> _, cache = batchnorm_forward(x, np.ones(3), np.zeros(3))
        >>> dx, dgamma, dbeta = batchnorm_backward(dout, cache)
        >>> np.allclose(dx.sum(axis=0), 0.0)
        True
    """
    _check_backward_input(dout, cache)
    return bn_backward(dout, cache)


def batchnorm_backward_graph(
    dout: np.ndarray, cache: BatchNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Batch norm backward pass, one node of the computational graph at a time:
    :func:`bn_backward_graph`, input checked.

    The forward pass as a graph, per channel, over the :math:`m` values of the batch:

    .. code-block:: text

        (1) mu      = mean(z)                 mu      = 1/m sum_i z_i
        (2) z_mu    = z - mu
        (3) sigma2  = mean(z_mu ** 2)         biased: divide by m
        (4) std     = sqrt(sigma2 + eps)
        (5) inv_std = 1 / std
        (6) z_norm  = z_mu * inv_std
        (7) z_tilde = gamma * z_norm + beta

    Walking it from (7) back to (1), each node's gradient is its output's gradient times its
    local derivative. A node used twice (``z_mu`` feeds (3) and (6), ``z`` feeds (1) and
    (2)) sums the gradients of both paths. A per-channel node (``mu``, ``sigma2``, ``std``,
    ``inv_std``, ``gamma``, ``beta``) is broadcast to all :math:`m` positions, so its
    gradient sums over them (``total``). Same result as :func:`batchnorm_backward`.

    Args:
        dout: upstream gradient :math:`\partial L / \partial y`, shape and dtype of ``x``.
        cache: from :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` of shapes ``x.shape``, ``(C,)``, ``(C,)``.
    """
    _check_backward_input(dout, cache)
    return bn_backward_graph(dout, cache)
