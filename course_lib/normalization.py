r"""Normalizing over chosen axes: the arithmetic every normalization in the course shares.

Batch, layer, instance and group norm, batch renorm, ghost and synchronized batch norm all
compute the same thing and differ only in the axes they average over (chapter 8):

.. math::

    \mu = \frac{1}{m}\sum_{i=1}^m z^{(i)}, \qquad
    \sigma^2 = \frac{1}{m}\sum_{i=1}^m (z^{(i)} - \mu)^2, \qquad
    z_{norm}^{(i)} = \frac{z^{(i)} - \mu}{\sqrt{\sigma^2 + \epsilon}}

over the :math:`m` values that share one :math:`\mu` and :math:`\sigma^2`. Here it is written
once:

- :func:`centered` -- the statistics: :math:`z - \mu`, :math:`\mu` and :math:`\sigma^2` over
  the axes ``dims``, computed so that float32 keeps its digits at any offset;
- :func:`normalize_over` -- the teaching function every normalization calls, and
  :func:`scale_shift`, the learned :math:`\gamma z_{norm} + \beta` after it;
- :class:`Moments` and :func:`merge_moments` -- count, mean and :math:`M_2 = m\sigma^2` of a
  part of the data, and Chan et al.'s exact merge of two parts: how recalibration adds up
  batches and synchronized batch norm adds up processes;
- :func:`working_dtype` -- float16/bfloat16 statistics are computed in float32, as torch does.

Everything works on numpy arrays and torch tensors alike (autograd derives the backward
pass of the torch layers).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "stop_gradient",
    "centered",
    "normalize_over",
    "Moments",
    "moments_over",
    "merge_moments",
    "scale_shift",
    "working_dtype",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def stop_gradient(a: Any) -> Any:
    """``a`` as a constant: a torch tensor detached from autograd's graph, numpy as it is."""
    return a.detach() if _is_torch(a) else a


def _dims(z: Any, dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d % z.ndim for d in dims)


def _first_values(z: Any, dims: tuple[int, ...]) -> Any:
    """The first value of each group (index 0 along ``dims``), kept; 0 for empty groups."""
    if any(z.shape[d] == 0 for d in dims):
        return 0.0
    return z[tuple(slice(0, 1) if d in dims else slice(None) for d in range(z.ndim))]


def centered(z: Any, dims: tuple[int, ...]) -> tuple[Any, Any, Any]:
    r"""``(z - mu, mu, sigma2)`` over the axes ``dims`` (kept, size 1), exact at any offset.

    :math:`\sigma^2` is the biased variance (divide by :math:`m`). The one place where the
    statistics of every normalization are computed.

    Why the detour through ``K``: a float32 mean of values near :math:`10^4` is only exact to
    about :math:`10^{-3}`, and near :math:`10^6` to about 0.1, so ``z - mu`` and everything
    after it would inherit that error, however small the spread; the textbook shortcut
    :math:`\overline{z^2} - \mu^2` cancels every digit of a small variance. Subtracting one of
    the values, ``K``, first is exact for values near it, and leaves small numbers whose
    mean and squares keep their digits. ``K`` is a constant (no gradient): the statistics do
    not depend on it.

    Example:
        >>> import numpy as np
        >>> z_mu, mu, sigma2 = centered(np.array([[1.0], [3.0]]), dims=(0,))
        >>> z_mu.ravel(), mu.ravel(), sigma2.ravel()
        (array([-1.,  1.]), array([2.]), array([1.]))
    """
    dims = _dims(z, dims)
    K = stop_gradient(_first_values(z, dims))        # one value per group
    z_K = z - K                                      # exact for values near K
    mu_K = z_K.mean(axis=dims, keepdims=True)        # the mean, relative to K
    z_mu = z_K - mu_K                                # z - mu, with its digits
    sigma2 = (z_mu**2).mean(axis=dims, keepdims=True)
    return z_mu, K + mu_K, sigma2


def normalize_over(z: Any, dims: tuple[int, ...], eps: float) -> tuple[Any, Any, Any]:
    """z normalized over the axes dims (mean 0, variance 1); also mu and sigma2."""
    z_mu, mu, sigma2 = centered(z, dims)     # z - mu, mean, biased variance (over m)
    z_norm = z_mu / (sigma2 + eps) ** 0.5
    return z_norm, mu, sigma2


def scale_shift(z_norm: Any, gamma: Any = None, beta: Any = None) -> Any:
    """gamma * z_norm + beta, the learned scale and shift; None leaves that part out."""
    z_tilde = z_norm if gamma is None else gamma * z_norm
    return z_tilde if beta is None else z_tilde + beta


class Moments(NamedTuple):
    r"""What a part of the data says about its statistics: enough to merge parts exactly.

    Attributes:
        count: :math:`m`, the number of values (per group).
        mean: :math:`\mu`, their mean.
        m2: :math:`M_2 = \sum (z - \mu)^2 = m\,\sigma^2`, the sum of squared deviations.
    """

    count: Any
    mean: Any
    m2: Any


def moments_over(z: Any, dims: tuple[int, ...]) -> Moments:
    """The :class:`Moments` of ``z`` over the axes ``dims`` (dropped), from :func:`centered`.

    Example:
        >>> import numpy as np
        >>> moments_over(np.array([[1.0, 5.0], [3.0, 5.0]]), dims=(0,))
        Moments(count=2, mean=array([2., 5.]), m2=array([2., 0.]))
    """
    dims = _dims(z, dims)
    count = 1
    for d in dims:
        count *= z.shape[d]
    _, mu, sigma2 = centered(z, dims)
    return Moments(count, mu.squeeze(dims), sigma2.squeeze(dims) * count)


def merge_moments(a: Moments, b: Moments) -> Moments:
    r"""The :class:`Moments` of two parts together (Chan, Golub & LeVeque, 1979).

    .. math::

        \begin{aligned}
        m &= m_a + m_b, \quad \delta = \mu_b - \mu_a,\\
        \mu &= \mu_a + \delta\,\frac{m_b}{m},\\
        M_2 &= M_{2,a} + M_{2,b} + \delta^2\,\frac{m_a m_b}{m}
        \end{aligned}

    Exact, and it never forms :math:`\sum z^2`, so no digit of a small variance cancels.
    A part with no values is the identity.

    Example:
        >>> import numpy as np
        >>> a = moments_over(np.array([[1.0], [3.0]]), (0,))
        >>> b = moments_over(np.array([[8.0]]), (0,))
        >>> merge_moments(a, b)
        Moments(count=3, mean=array([4.]), m2=array([26.]))
    """
    if float(b.count) == 0:
        return a
    if float(a.count) == 0:
        return b
    m = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / m)
    m2 = a.m2 + b.m2 + delta**2 * (a.count * b.count / m)
    return Moments(m, mean, m2)


def working_dtype(x: Any) -> Any:
    """``x`` in the dtype its statistics are computed in: float16 and bfloat16 as float32.

    As torch does: ``(z - mu) ** 2`` of values of a few hundred already overflows float16
    (largest value 65504), and a float16 mean of many values keeps three digits. The layers
    return the input's own dtype.
    """
    if _is_torch(x):
        import torch

        if x.dtype in (torch.float16, torch.bfloat16):
            return x.float()
    return x
