r"""Running statistics for test time (chapter 6): exponentially weighted averages of the
batch mean and variance, in each framework's convention.

At test time there may be a single example, whose own mean and variance mean nothing. During
training batch norm therefore keeps an exponentially weighted average (EMA) of each
mini-batch's :math:`\mu^{\{t\}}` and :math:`\sigma^{2\{t\}}` and normalizes with those at test
time. The update is always "a weighted average of the old value and the new batch's value";
the frameworks disagree on which weight their parameter names:

.. math::

    \text{lecture:}\quad & v_t = \beta\, v_{t-1} + (1 - \beta)\, \theta_t
        && \beta = 0.9 \text{ weights the OLD value} \\
    \text{PyTorch:}\quad & r_t = (1 - m)\, r_{t-1} + m\, \theta_t
        && m = \texttt{momentum} = 0.1 \text{ weights the NEW batch} \\
    \text{PyTorch, momentum=None:}\quad & r_t = r_{t-1} + (\theta_t - r_{t-1}) / t
        && \text{the plain average of all } t \text{ batches so far} \\
    \text{Keras:}\quad & r_t = m\, r_{t-1} + (1 - m)\, \theta_t
        && m = \texttt{momentum} = 0.99 \text{ weights the OLD value}

So PyTorch's ``momentum=0.1`` is the lecture's :math:`\beta = 0.9` and Keras's
``momentum=0.9``. :func:`new_value_weight` is the one place that encodes the conventions,
:func:`ema_update` applies them, and :func:`conventions_table` lists them as data (each row is
checked against ``torch.nn.BatchNorm1d`` or the formula in ``tests/test_running_stats.py``).

A second difference: PyTorch normalizes each batch with the *biased* variance
(:math:`\frac1m \sum (z - \mu)^2`) but stores the *unbiased* one
(:math:`\frac1{m-1} \sum (z - \mu)^2`) in ``running_var``; Keras stores the biased one.
:func:`update_running_stats` reproduces ``torch.nn.BatchNorm1d``/``2d``'s buffers exactly.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, NamedTuple

import numpy as np

from course_lib import _checks
from course_lib.batchnorm import batch_stats, values_per_channel

__all__ = [
    "ema",
    "unbiased_var",
    "running_stats_step",
    "DEFAULT",
    "new_value_weight",
    "ema_update",
    "bias_correction",
    "RunningStats",
    "update_running_stats",
    "conventions_table",
]

#: Marker for "the framework's default momentum" (``None`` is a meaningful value in PyTorch).
DEFAULT = "default"

Convention = Literal["lecture", "pytorch", "keras"]
_CONVENTIONS = ("lecture", "pytorch", "keras")
_DEFAULT_BETA = 0.9  # the lecture's usual example: averages over roughly 1 / (1 - 0.9) = 10 batches
_DEFAULT_MOMENTUM = {"pytorch": 0.1, "keras": 0.99}


def ema(v: Any, theta: Any, beta: float) -> Any:
    """One step of the exponentially weighted average of theta, weighting v by beta."""
    return beta * v + (1 - beta) * theta


def unbiased_var(sigma2: Any, m: int) -> Any:
    """Bessel's correction: the unbiased variance of m values whose biased one is sigma2."""
    return sigma2 * (m / (m - 1))


def running_stats_step(
    running_mean: Any, running_var: Any, mu: Any, sigma2: Any, m: int, w: float
) -> tuple[Any, Any]:
    r"""The running statistics after one batch of ``m`` values per channel, as PyTorch
    stores them: EMAs of the batch mean ``mu`` and of the *unbiased* batch variance, with
    weight ``w`` on the batch (:func:`new_value_weight`). ``None`` stays ``None``.

    The one implementation of the update: :func:`update_running_stats` (numpy) and
    :mod:`course_lib.nn`'s layers (torch, in their buffers) call it.
    """
    beta = 1.0 - w
    new_mean = None if running_mean is None else ema(running_mean, mu, beta)
    new_var = None if running_var is None else ema(running_var, unbiased_var(sigma2, m), beta)
    return new_mean, new_var


def new_value_weight(
    convention: Convention = "lecture",
    *,
    beta: float | None = None,
    momentum: float | None | str = DEFAULT,
    num_batches_tracked: int | None = None,
) -> float:
    r"""The weight :math:`w` an EMA update puts on the new batch's value, in one convention.

    Every convention computes :math:`\text{new} = (1 - w)\,\text{running} + w\,\theta`; they
    differ only in how :math:`w` is named:

    ============  ==========================  ===================================
    convention    parameter (default)         weight on the new value :math:`w`
    ============  ==========================  ===================================
    ``lecture``   ``beta`` (0.9)              :math:`1 - \beta`
    ``pytorch``   ``momentum`` (0.1)          ``momentum``
    ``pytorch``   ``momentum=None``           ``1 / num_batches_tracked``
    ``keras``     ``momentum`` (0.99)         ``1 - momentum``
    ============  ==========================  ===================================

    Args:
        convention: ``"lecture"``, ``"pytorch"`` or ``"keras"``.
        beta: the lecture's :math:`\beta` (weight on the old value); only for ``"lecture"``.
        momentum: PyTorch's or Keras's momentum; omit it for the framework's default.
            ``None`` (PyTorch only) means the cumulative average.
        num_batches_tracked: PyTorch, ``momentum=None`` only: how many batches have been
            averaged *including this one*, i.e. the module's ``num_batches_tracked`` buffer
            after the forward pass (PyTorch increments it before it computes the weight).

    Raises:
        ValueError: unknown convention, a parameter of another convention, a weight outside
            [0, 1], or ``momentum=None`` without ``num_batches_tracked >= 1``.

    Example:
        >>> new_value_weight("lecture", beta=0.9), new_value_weight("pytorch")
        (0.09999999999999998, 0.1)
        >>> new_value_weight("keras", momentum=0.9), new_value_weight(
        ...     "pytorch", momentum=None, num_batches_tracked=4)
        (0.09999999999999998, 0.25)
    """
    if convention not in _CONVENTIONS:
        raise ValueError(
            f"unknown convention {convention!r}; expected one of {', '.join(map(repr, _CONVENTIONS))}"
        )
    if convention == "lecture":
        if not (isinstance(momentum, str) and momentum == DEFAULT):
            raise ValueError(
                "the lecture's convention is parameterized by beta (the weight on the OLD "
                f"value), not momentum (got momentum={momentum!r}); pass beta=1 - momentum for "
                "PyTorch's momentum, or convention='pytorch'"
            )
        b = _DEFAULT_BETA if beta is None else _checks.check_unit_interval(beta, "beta")
        return 1.0 - b
    if beta is not None:
        framework = "PyTorch" if convention == "pytorch" else "Keras"
        equivalent = "momentum=1 - beta" if convention == "pytorch" else "momentum=beta"
        raise ValueError(
            f"{framework} has no beta parameter (got beta={beta!r}); the lecture's beta is "
            f"{framework}'s {equivalent}, or use convention='lecture'"
        )
    if isinstance(momentum, str):
        if momentum != DEFAULT:
            raise ValueError(f"expected momentum to be a number, None or omitted (got {momentum!r})")
        momentum = _DEFAULT_MOMENTUM[convention]
    if convention == "keras":
        if momentum is None:
            raise ValueError(
                "Keras has no momentum=None; that is PyTorch's cumulative average "
                "(use convention='pytorch')"
            )
        return 1.0 - _checks.check_unit_interval(momentum, "momentum")
    if momentum is not None:
        return _checks.check_unit_interval(momentum, "momentum")
    if num_batches_tracked is None or int(num_batches_tracked) < 1:
        raise ValueError(
            "momentum=None is PyTorch's cumulative average, whose weight on the new batch is "
            "1 / num_batches_tracked; pass num_batches_tracked >= 1, the number of batches "
            f"averaged including this one (got {num_batches_tracked!r})"
        )
    return 1.0 / float(int(num_batches_tracked))


def ema_update(
    running: Any,
    batch_value: Any,
    *,
    convention: Convention = "lecture",
    beta: float | None = None,
    momentum: float | None | str = DEFAULT,
    num_batches_tracked: int | None = None,
) -> Any:
    r"""One step of an exponentially weighted average, in the lecture's, PyTorch's or Keras's
    convention: :func:`ema` with :math:`\beta = 1 - w`.

    .. math:: \text{new} = (1 - w)\,\text{running} + w\,\theta,
              \qquad w = \texttt{new\_value\_weight(convention, ...)}

    i.e. :math:`v = \beta v + (1-\beta)\theta` (lecture), ``(1 - momentum) * running +
    momentum * batch`` (PyTorch), ``momentum * running + (1 - momentum) * batch`` (Keras).
    See :func:`new_value_weight` for the arguments.

    Args:
        running: the current average :math:`v` (float, numpy array or torch tensor).
        batch_value: the new batch's value :math:`\theta`, same shape as ``running``.

    Returns:
        The updated average, same type as the inputs (a new object; nothing is modified).

    Example:
        >>> round(ema_update(0.0, 10.0, convention="lecture", beta=0.9), 12)
        1.0
        >>> round(ema_update(0.0, 10.0, convention="pytorch"), 12)   # momentum=0.1
        1.0
        >>> round(ema_update(0.0, 10.0, convention="keras", momentum=0.9), 12)
        1.0
        >>> ema_update(4.0, 10.0, convention="pytorch", momentum=None, num_batches_tracked=2)
        7.0
    """
    w = new_value_weight(
        convention, beta=beta, momentum=momentum, num_batches_tracked=num_batches_tracked
    )
    return ema(running, batch_value, beta=1.0 - w)


def bias_correction(running: Any, *, beta: float, t: int) -> Any:
    r"""Bias-corrected EMA for an average started at zero: :math:`v_t / (1 - \beta^t)`.

    Started at :math:`v_0 = 0`, the average :math:`v_t = \beta v_{t-1} + (1-\beta)\theta_t`
    puts total weight :math:`1 - \beta^t` on the data and the rest on the zero it started
    from, so early values are too small; dividing by :math:`1 - \beta^t` makes the weights
    sum to 1. (For a constant :math:`\theta` the corrected average is exactly :math:`\theta`
    from the first step.) In PyTorch's convention :math:`\beta = 1 - \text{momentum}`.

    This is only right for an average started at 0. PyTorch starts ``running_mean`` at 0 but
    ``running_var`` at 1 and applies no correction; its ``momentum=None`` (a plain average of
    all batches) has no start-up bias at all.

    Args:
        running: :math:`v_t`, float, numpy array or torch tensor.
        beta: the weight on the old value, in [0, 1).
        t: the number of updates made so far, ``t >= 1``.

    Example:
        >>> v = 0.0
        >>> for t in (1, 2, 3):
        ...     v = ema_update(v, 5.0, beta=0.9)
        >>> round(v, 4), round(bias_correction(v, beta=0.9, t=3), 4)
        (1.355, 5.0)
    """
    beta = _checks.check_unit_interval(beta, "beta")
    if beta == 1.0:
        raise ValueError("beta=1 never moves the average away from its start; use beta < 1")
    if not _checks.is_int(t) or t < 1:
        raise ValueError(f"expected t >= 1, the number of updates so far (got {t!r})")
    return running / (1.0 - beta ** int(t))


class RunningStats(NamedTuple):
    """The three buffers ``torch.nn.BatchNorm*d`` updates in a training-mode forward pass."""

    running_mean: Any
    running_var: Any
    num_batches_tracked: int


def _like(value: np.ndarray, template: Any) -> Any:
    """``value`` (float64 numpy) as the type, dtype and device of ``template``."""
    if _checks.is_torch(template):
        import torch

        return torch.from_numpy(value).to(dtype=template.dtype, device=template.device)
    if isinstance(template, np.ndarray):
        return value.astype(template.dtype)
    return value


def update_running_stats(
    running_mean: Any,
    running_var: Any,
    x: Any,
    momentum: float | None = 0.1,
    num_batches_tracked: int = 0,
) -> RunningStats:
    r"""Update ``(running_mean, running_var)`` from batch ``x`` exactly as
    ``torch.nn.BatchNorm1d``/``2d``/``3d`` do in training mode.

    .. math::

        \mu_B = \frac1m \sum_i x_i, \qquad
        s^2_B = \frac{1}{m - 1} \sum_i (x_i - \mu_B)^2 \quad\text{(unbiased!)}

        \text{running\_mean} \leftarrow (1 - w)\,\text{running\_mean} + w\,\mu_B, \qquad
        \text{running\_var} \leftarrow (1 - w)\,\text{running\_var} + w\,s^2_B

    per channel (axis 1) over the :math:`m = N \cdot \prod\text{spatial}` values of the
    batch, with :math:`w` = ``momentum``, or :math:`1/t` for ``momentum=None`` where
    :math:`t` = ``num_batches_tracked + 1``. The forward pass itself normalizes with the
    *biased* variance :math:`\frac{m-1}{m} s^2_B` (:func:`course_lib.batchnorm.batch_stats`);
    only the stored running variance is unbiased.

    Args:
        running_mean: ``(C,)`` current running mean (PyTorch starts it at zeros).
        running_var: ``(C,)`` current running variance (PyTorch starts it at ones).
        x: the batch, ``(N, C)`` or ``(N, C, *spatial)``; numpy array or torch tensor.
        momentum: weight on the new batch (PyTorch's convention), or ``None`` for the
            cumulative average.
        num_batches_tracked: the module's counter *before* this batch.

    Returns:
        :class:`RunningStats` ``(running_mean, running_var, num_batches_tracked + 1)``; the
        statistics have the type, dtype and device of ``running_mean`` (computed in float64,
        then rounded once, as torch's CPU kernel does). The inputs are not modified.

    Raises:
        ValueError: ``x`` with fewer than 2 dimensions, a channel count that does not match
            ``running_mean``, a single value per channel, NaN/inf in ``x``, or a momentum
            outside [0, 1].

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(3)
        >>> x = torch.randn(16, 3)
        >>> _ = bn(x)
        >>> rm, rv, n = update_running_stats(torch.zeros(3), torch.ones(3), x)
        >>> torch.allclose(rm, bn.running_mean), torch.allclose(rv, bn.running_var), n
        (True, True, 1)
    """
    rm64, rv64 = _checks.to_numpy64(running_mean), _checks.to_numpy64(running_var)
    shape = tuple(np.shape(x))
    _checks.check_min_ndim(len(shape))
    _checks.check_channel_vector(rm64, "running_mean", shape[1])
    _checks.check_channel_vector(rv64, "running_var", shape[1])
    _checks.check_values_per_channel(shape)
    t = int(num_batches_tracked) + 1
    x64 = _checks.to_numpy64(x)
    mu, var = batch_stats(x64)  # the biased variance: the one the forward pass normalizes with
    _checks.check_finite(x64, channel_vars=var)
    w = new_value_weight("pytorch", momentum=momentum, num_batches_tracked=t)
    m = values_per_channel(x64.shape)
    new_mean, new_var = running_stats_step(rm64, rv64, mu, var, m, w)
    return RunningStats(_like(new_mean, running_mean), _like(new_var, running_var), t)


_TABLE: list[dict[str, Any]] = [
    {
        "framework": "Lecture (Ng)",
        "parameter": "beta",
        "default": 0.9,
        "weight_on_new": "1 - beta",
        "update": "v = beta * v + (1 - beta) * theta",
        "running_var": "biased (1/m), the sigma^2 the layer normalizes with",
        "unbiased_running_var": False,
        "eps": None,
        "start": "v = 0",
        "convention": "lecture",
        "kwargs": {"beta": 0.9},
    },
    {
        "framework": "PyTorch",
        "parameter": "momentum",
        "default": 0.1,
        "weight_on_new": "momentum",
        "update": "running = (1 - momentum) * running + momentum * batch",
        "running_var": "unbiased (1/(m-1)); normalizes with the biased (1/m) one",
        "unbiased_running_var": True,
        "eps": 1e-5,
        "start": "running_mean = 0, running_var = 1",
        "convention": "pytorch",
        "kwargs": {"momentum": 0.1},
    },
    {
        "framework": "PyTorch, momentum=None",
        "parameter": "momentum",
        "default": None,
        "weight_on_new": "1 / num_batches_tracked",
        "update": "running = running + (batch - running) / num_batches_tracked",
        "running_var": "unbiased (1/(m-1)); normalizes with the biased (1/m) one",
        "unbiased_running_var": True,
        "eps": 1e-5,
        "start": "running_mean = 0, running_var = 1 (weight 0 after the first batch)",
        "convention": "pytorch",
        "kwargs": {"momentum": None},
    },
    {
        "framework": "Keras 3",
        "parameter": "momentum",
        "default": 0.99,
        "weight_on_new": "1 - momentum",
        "update": "moving = momentum * moving + (1 - momentum) * batch",
        "running_var": "biased (1/m), the one it normalizes with",
        "unbiased_running_var": False,
        "eps": 1e-3,
        "start": "moving_mean = 0, moving_variance = 1",
        "convention": "keras",
        "kwargs": {"momentum": 0.99},
    },
]


def conventions_table() -> list[dict[str, Any]]:
    """The EMA conventions side by side, as data (one dict per row; a fresh copy each call).

    Keys of each row:

    - ``framework``, ``parameter``, ``default``: who, the parameter's name and its default.
    - ``weight_on_new``: the weight on the new batch's value, as a formula in the parameter.
    - ``update``: the update rule as code.
    - ``running_var``, ``unbiased_running_var``: which variance is averaged.
    - ``eps``: the framework's default epsilon (the lecture leaves it open: ``None``).
    - ``start``: the initial values of the averages.
    - ``convention``, ``kwargs``: the :func:`ema_update` call that reproduces the row
      (``ema_update(v, theta, convention=row["convention"], **row["kwargs"])``).

    ``tests/test_running_stats.py`` checks every row: the PyTorch rows against
    ``torch.nn.BatchNorm1d``'s defaults and buffers, the others against their formula.

    Example:
        >>> [(r["framework"], r["default"], r["weight_on_new"]) for r in conventions_table()]
        [('Lecture (Ng)', 0.9, '1 - beta'), ('PyTorch', 0.1, 'momentum'), ('PyTorch, momentum=None', None, '1 / num_batches_tracked'), ('Keras 3', 0.99, '1 - momentum')]
    """
    return copy.deepcopy(_TABLE)
