r"""The momentum trade-off of running statistics (chapter 6), measured.

The momentum trade-off: a large weight on the new batch follows the batches closely, noise
included; a small weight averages the noise away but lags when the distribution moves (in a
network it moves because the weights below the layer keep changing). :func:`shifting_stream`,
:func:`trace_running_stats` and :func:`momentum_tradeoff` measure both on a synthetic stream
whose population statistics jump at a known step.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from course_lib._checks import check_unit_interval, to_numpy64
from course_lib.running_stats import update_running_stats

__all__ = ["shifting_stream", "trace_running_stats", "ema_noise_theory", "momentum_tradeoff"]


def shifting_stream(
    n_steps: int = 600,
    batch_size: int = 32,
    n_features: int = 8,
    change_at: int = 400,
    shift: float = 2.0,
    scale: float = 2.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""A stream of mini-batches whose population statistics jump once, at ``change_at``.

    Steps ``t < change_at`` draw from :math:`\mathcal N(0, 1)` (where PyTorch's running
    statistics start, so there is no start-up transient); steps ``t >= change_at`` from
    :math:`\mathcal N(\text{shift}, \text{scale}^2)`, standing in for a layer whose input
    distribution moved because the weights below it changed.

    Args:
        n_steps: number of mini-batches :math:`T`.
        batch_size: examples per mini-batch :math:`m`, at least 2.
        n_features: independent features (channels) :math:`D`; more features average the
            measured errors over more independent copies.
        change_at: the first step drawn from the shifted population.
        shift, scale: the shifted population's mean and standard deviation.
        seed: for ``np.random.default_rng``.

    Returns:
        ``(batches, true_mean, true_var)`` of shapes ``(T, m, D)``, ``(T, D)``, ``(T, D)``:
        float64 mini-batches and the population mean and variance each was drawn from.

    Example:
        >>> batches, mean, var = shifting_stream(n_steps=10, change_at=5, seed=0)
        >>> batches.shape, float(mean[4, 0]), float(mean[5, 0]), float(var[5, 0])
        ((10, 32, 8), 0.0, 2.0, 4.0)
    """
    if batch_size < 2:
        raise ValueError(f"expected batch_size >= 2 (got {batch_size}): training needs m > 1")
    if not 0 <= change_at <= n_steps:
        raise ValueError(f"expected 0 <= change_at <= n_steps = {n_steps} (got {change_at})")
    rng = np.random.default_rng(seed)
    after = np.arange(n_steps) >= change_at
    true_mean = np.where(after, shift, 0.0)[:, None] * np.ones((1, n_features))
    true_std = np.where(after, scale, 1.0)[:, None] * np.ones((1, n_features))
    noise = rng.standard_normal((n_steps, batch_size, n_features))
    batches = true_mean[:, None, :] + true_std[:, None, :] * noise
    return batches, true_mean, true_std**2


def trace_running_stats(
    batches: Any,
    momentum: float | None = 0.1,
    running_mean: Any = None,
    running_var: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run :func:`update_running_stats` over a stream and record the averages after each step.

    Args:
        batches: ``(T, m, D)`` (or ``(T, m, C, *spatial)``): ``T`` mini-batches in order.
        momentum: PyTorch's momentum, or ``None`` for the cumulative average.
        running_mean, running_var: starting values, default PyTorch's zeros and ones.

    Returns:
        ``(mean_trace, var_trace)``, each ``(T, C)`` float64: the running statistics after
        steps 1..T.

    Example:
        >>> batches, true_mean, _ = shifting_stream(seed=0)
        >>> mean_trace, var_trace = trace_running_stats(batches, momentum=0.1)
        >>> mean_trace.shape
        (600, 8)
    """
    batches = np.asarray(batches, dtype=np.float64)
    if batches.ndim < 3:
        raise ValueError(
            f"expected batches of shape (T, m, C, ...) (got {batches.ndim}D input); "
            "stack the mini-batches along a new first axis"
        )
    c = batches.shape[2]
    rm = np.zeros(c) if running_mean is None else to_numpy64(running_mean)
    rv = np.ones(c) if running_var is None else to_numpy64(running_var)
    means, variances, n = [], [], 0
    for x in batches:
        rm, rv, n = update_running_stats(rm, rv, x, momentum=momentum, num_batches_tracked=n)
        means.append(rm)
        variances.append(rv)
    return np.stack(means), np.stack(variances)


def ema_noise_theory(momentum: float, batch_std: float) -> float:
    r"""Steady-state standard deviation of an EMA of independent noisy values.

    If each batch's value is the truth plus independent noise of standard deviation
    :math:`s`, then :math:`r_t = (1-w) r_{t-1} + w\,\theta_t` settles to
    :math:`\operatorname{Var} r = w^2 s^2 \sum_k (1-w)^{2k} = \frac{w}{2 - w} s^2`, so

    .. math:: \operatorname{std}(r) = s\,\sqrt{\frac{w}{2 - w}}

    with :math:`w` = PyTorch's momentum. For the batch mean, :math:`s = \sigma / \sqrt{m}`.

    Example:
        >>> round(ema_noise_theory(0.1, 1.0), 4), round(ema_noise_theory(1.0, 1.0), 4)
        (0.2294, 1.0)
    """
    w = check_unit_interval(momentum, "momentum")
    return float(batch_std) * float(np.sqrt(w / (2.0 - w)))


def momentum_tradeoff(
    momenta: Sequence[float],
    *,
    n_steps: int = 600,
    batch_size: int = 32,
    n_features: int = 8,
    change_at: int = 400,
    shift: float = 2.0,
    scale: float = 2.0,
    settle: int = 100,
    window: int = 20,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    r"""Measure both sides of the momentum trade-off on one :func:`shifting_stream`.

    For each momentum (PyTorch's convention: the weight on the new batch) the running mean
    is tracked over the same stream and compared with the true population mean:

    - ``noise``: root-mean-square error over the steady steps ``[settle, change_at)``, before
      the jump. Only the batches' sampling noise is left, so it grows with the momentum;
      theory: :func:`ema_noise_theory` with :math:`s = 1/\sqrt{m}`, returned as
      ``noise_theory``.
    - ``lag``: root-mean-square error over the ``window`` steps right after the jump,
      ``[change_at, change_at + window)``. It is dominated by the part of the jump not yet
      averaged in, :math:`\text{shift}\,(1-w)^k` after :math:`k` steps, so it shrinks as the
      momentum grows.

    Errors are in units of the first population's standard deviation (1).

    Args:
        momenta: the momenta to compare, each in (0, 1].
        n_steps, batch_size, n_features, change_at, shift, scale, seed: the stream, see
            :func:`shifting_stream`.
        settle: first step of the noise window.
        window: length of the lag window.

    Returns:
        ``{"momentum", "noise", "noise_theory", "lag"}``, arrays of ``len(momenta)``.

    Example:
        >>> r = momentum_tradeoff([0.01, 0.1, 0.5], seed=0)
        >>> bool(np.all(np.diff(r["noise"]) > 0)), bool(np.all(np.diff(r["lag"]) < 0))
        (True, True)
    """
    if not 0 <= settle < change_at or change_at + window > n_steps or window < 1:
        raise ValueError(
            f"expected 0 <= settle < change_at and change_at + window <= n_steps (got "
            f"settle={settle}, change_at={change_at}, window={window}, n_steps={n_steps})"
        )
    batches, true_mean, _ = shifting_stream(
        n_steps, batch_size, n_features, change_at, shift, scale, seed
    )
    noise, lag, theory = [], [], []
    for momentum in momenta:
        w = check_unit_interval(momentum, "momentum")
        if w == 0.0:
            raise ValueError("momentum=0 never updates the running statistics; use momentum > 0")
        mean_trace, _ = trace_running_stats(batches, momentum=w)
        err = mean_trace - true_mean
        noise.append(float(np.sqrt(np.mean(err[settle:change_at] ** 2))))
        lag.append(float(np.sqrt(np.mean(err[change_at : change_at + window] ** 2))))
        theory.append(ema_noise_theory(w, 1.0 / np.sqrt(batch_size)))
    return {
        "momentum": np.asarray(momenta, dtype=np.float64),
        "noise": np.asarray(noise),
        "noise_theory": np.asarray(theory),
        "lag": np.asarray(lag),
    }
