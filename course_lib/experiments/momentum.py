r"""The momentum trade-off of running statistics (chapter 6), measured.

The momentum trade-off: a large weight on the new batch follows the batches closely, noise
included; a small weight averages the noise away but lags when the distribution moves (in a
network it moves because the weights below the layer keep changing). :func:`shifting_stream`,
:func:`trace_running_stats` and :func:`momentum_tradeoff` measure both on a synthetic stream
whose population statistics jump at a known step. A :class:`Stream` (frozen settings) says
which stream; :class:`TradeoffSettings` adds the momenta and the windows measured, and the
chapter's two claims on the trade-off are registered here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from course_lib._checks import check_unit_interval, to_numpy64
from course_lib.experiments import claims
from course_lib.running_stats import update_running_stats

__all__ = [
    "CatchUpSettings",
    "Stream",
    "Tradeoff",
    "TradeoffSettings",
    "catch_up",
    "ema_noise_theory",
    "momentum_tradeoff",
    "noise_and_lag",
    "shifting_stream",
    "trace_running_stats",
]


@dataclass(frozen=True)
class Stream:
    """A stream of mini-batches whose population jumps once (:func:`shifting_stream`).

    Attributes:
        n_steps: number of mini-batches :math:`T`.
        batch_size: examples per mini-batch :math:`m`, at least 2.
        n_features: independent features (channels) :math:`D`.
        change_at: the first step drawn from the shifted population.
        shift, scale: the shifted population's mean and standard deviation.
    """

    n_steps: int = 600
    batch_size: int = 32
    n_features: int = 8
    change_at: int = 400
    shift: float = 2.0
    scale: float = 2.0


def shifting_stream(
    stream: Stream = Stream(), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""A stream of mini-batches whose population statistics jump once, at ``change_at``.

    Steps ``t < change_at`` draw from :math:`\mathcal N(0, 1)` (where PyTorch's running
    statistics start, so there is no start-up transient); steps ``t >= change_at`` from
    :math:`\mathcal N(\text{shift}, \text{scale}^2)`, standing in for a layer whose input
    distribution moved because the weights below it changed.

    Args:
        stream: the stream's settings (:class:`Stream`); more features average the measured
            errors over more independent copies.
        seed: for ``np.random.default_rng``.

    Returns:
        ``(batches, true_mean, true_var)`` of shapes ``(T, m, D)``, ``(T, D)``, ``(T, D)``:
        float64 mini-batches and the population mean and variance each was drawn from.

    Example:
        >>> batches, mean, var = shifting_stream(Stream(n_steps=10, change_at=5), seed=0)
        >>> batches.shape, float(mean[4, 0]), float(mean[5, 0]), float(var[5, 0])
        ((10, 32, 8), 0.0, 2.0, 4.0)
    """
    if not isinstance(stream, Stream):
        raise TypeError(f"expected stream to be a Stream (got {type(stream).__name__}); "
                        "build one with Stream(n_steps=600, batch_size=32)")
    n_steps, batch_size, n_features = stream.n_steps, stream.batch_size, stream.n_features
    change_at, shift, scale = stream.change_at, stream.shift, stream.scale
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


@dataclass(frozen=True)
class TradeoffSettings:
    """What :func:`momentum_tradeoff` measures.

    Attributes:
        momenta: the momenta compared, each in (0, 1] (PyTorch's: the weight of the new batch).
        stream: the stream they average.
        settle: first step of the noise window (the window ends at ``stream.change_at``).
        window: length of the lag window, right after the jump.
        measurable: the smallest momentum whose noise the steady steps can pin down: below
            it the average remembers more steps (about :math:`2/w`) than the window holds.
    """

    momenta: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    stream: Stream = Stream()
    settle: int = 100
    window: int = 20
    measurable: float = 0.05


@dataclass(frozen=True)
class Tradeoff:
    """Both sides of the trade-off, one entry per momentum (float64 arrays).

    Attributes:
        momentum: the momenta.
        noise: RMS error of the running mean over the steady steps.
        noise_theory: :func:`ema_noise_theory` for the batches' noise :math:`1/\\sqrt m`.
        lag: RMS error over the ``window`` steps after the jump.
    """

    momentum: np.ndarray
    noise: np.ndarray
    noise_theory: np.ndarray
    lag: np.ndarray


def momentum_tradeoff(settings: TradeoffSettings = TradeoffSettings(), seed: int = 0) -> Tradeoff:
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
        settings: the momenta, the stream and the windows (:class:`TradeoffSettings`).
        seed: the stream's seed (:func:`shifting_stream`).

    Returns:
        A :class:`Tradeoff`.

    Example:
        >>> r = momentum_tradeoff(TradeoffSettings(momenta=(0.01, 0.1, 0.5)), seed=0)
        >>> bool(np.all(np.diff(r.noise) > 0)), bool(np.all(np.diff(r.lag) < 0))
        (True, True)
    """
    if not isinstance(settings, TradeoffSettings):
        raise TypeError(
            f"expected settings to be a TradeoffSettings (got {type(settings).__name__}); "
            "build one with TradeoffSettings(momenta=(0.01, 0.1))"
        )
    st = settings.stream
    n_steps, batch_size, change_at = st.n_steps, st.batch_size, st.change_at
    settle, window = settings.settle, settings.window
    if not 0 <= settle < change_at or change_at + window > n_steps or window < 1:
        raise ValueError(
            f"expected 0 <= settle < change_at and change_at + window <= n_steps (got "
            f"settle={settle}, change_at={change_at}, window={window}, n_steps={n_steps})"
        )
    batches, true_mean, _ = shifting_stream(st, seed)
    noise, lag, theory = [], [], []
    for momentum in settings.momenta:
        w = check_unit_interval(momentum, "momentum")
        if w == 0.0:
            raise ValueError("momentum=0 never updates the running statistics; use momentum > 0")
        mean_trace, _ = trace_running_stats(batches, momentum=w)
        err = mean_trace - true_mean
        noise.append(float(np.sqrt(np.mean(err[settle:change_at] ** 2))))
        lag.append(float(np.sqrt(np.mean(err[change_at : change_at + window] ** 2))))
        theory.append(ema_noise_theory(w, 1.0 / np.sqrt(batch_size)))
    return Tradeoff(np.asarray(settings.momenta, dtype=np.float64), np.asarray(noise),
                    np.asarray(theory), np.asarray(lag))


@claims.claim(
    "momentum-noise-and-lag",
    chapter=6,
    statement="On a stream whose population jumps, a larger momentum makes the running mean "
              "noisier and a smaller one makes it lag more, at every step of the grid from "
              "0.005 to 0.5; for momenta of 0.05 and more the measured noise is the theory's "
              "sqrt(w / (2 - w)) / sqrt(m) within 20%.",
    settings=TradeoffSettings(),
    section="ch6-momentum",
)
def noise_and_lag(settings: TradeoffSettings, seed: int) -> claims.Evidence:
    r = momentum_tradeoff(settings, seed)
    ratio = r.noise / r.noise_theory
    ok = r.momentum >= settings.measurable
    numbers = {
        "smallest noise ratio of neighbors": float((r.noise[1:] / r.noise[:-1]).min()),
        "smallest lag ratio of neighbors": float((r.lag[:-1] / r.lag[1:]).min()),
        f"largest |noise / theory - 1|, momentum >= {settings.measurable:g}":
            float(np.abs(ratio[ok] - 1).max()),
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("smallest noise ratio of neighbors",
                         numbers["smallest noise ratio of neighbors"], 1.0),
            claims.above("smallest lag ratio of neighbors",
                         numbers["smallest lag ratio of neighbors"], 1.0),
            claims.below(f"largest |noise / theory - 1|, momentum >= {settings.measurable:g}",
                         numbers[f"largest |noise / theory - 1|, momentum >= "
                                 f"{settings.measurable:g}"], 0.2),
        ],
        result=r,
    )


@dataclass(frozen=True)
class CatchUpSettings:
    """The chapter's momentum slider: one unit's running mean after the jump.

    Attributes:
        momenta: the slider's stops, 10^-2.5 to 1 in steps of 10^0.25.
        stream: the stream (one unit of it is followed).
        after: steps after the jump at which the error is read.
        close: the error that counts as caught up.
    """

    momenta: tuple[float, ...] = tuple(float(w) for w in 10.0 ** np.arange(-2.5, 0.01, 0.25))
    stream: Stream = Stream()
    after: int = 20
    close: float = 0.2


@dataclass(frozen=True)
class CatchUp:
    """What the slider shows, per stop (float64 arrays).

    Attributes:
        momentum: the stops.
        traces: ``(len(momentum), T)``, the running mean of unit 0 at every step.
        error: ``|running mean - new population mean|`` ``after`` steps after the jump.
        tradeoff: the noise and lag of each stop (:func:`momentum_tradeoff`).
    """

    momentum: np.ndarray
    traces: np.ndarray = field(repr=False)
    error: np.ndarray
    tradeoff: Tradeoff


@claims.claim(
    "momentum-catch-up",
    chapter=6,
    statement="Twenty steps after a jump of 2, the running mean of one unit is within 0.2 of "
              "the new mean from a momentum between 0.1 and 0.2 on (theory: w > 0.11), and the "
              "noise at momentum 1 is 9 to 20 times that at 0.01 (theory: 14).",
    settings=CatchUpSettings(),
    section="ch6-exercises",
)
def catch_up(settings: CatchUpSettings, seed: int) -> claims.Evidence:
    st = settings.stream
    batches, true_mean, _ = shifting_stream(st, seed)
    momenta = np.asarray(settings.momenta)
    traces = np.stack([trace_running_stats(batches[:, :, :1], momentum=w)[0][:, 0]
                       for w in momenta])
    t = st.change_at + settings.after - 1
    error = np.abs(traces[:, t] - true_mean[t, 0])
    first_close = float(momenta[np.argmax(error < settings.close)])
    tradeoff = momentum_tradeoff(TradeoffSettings(momenta=settings.momenta, stream=st), seed)
    k01 = int(np.argmin(np.abs(momenta - 0.01)))
    noise_ratio = float(tradeoff.noise[-1] / tradeoff.noise[k01])
    numbers = {"smallest momentum within 0.2": first_close,
               "noise at momentum 1 / noise at 0.01": noise_ratio}
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("smallest momentum within 0.2", first_close, 0.09),
            claims.below("smallest momentum within 0.2", first_close, 0.2),
            claims.above("noise at momentum 1 / noise at 0.01", noise_ratio, 9),
            claims.below("noise at momentum 1 / noise at 0.01", noise_ratio, 20),
        ],
        result=CatchUp(momenta, traces, error, tradeoff),
    )
