r"""Internal covariate shift, measured (chapter 4): no BN, BN and noisy BN side by side.

From the point of view of hidden layer 3, its input :math:`a^{[2]}` is produced by layers 1
and 2, whose weights change at every step: the distribution of layer 3's input moves while
layer 3 tries to learn from it. Ioffe & Szegedy (2015) called this *internal
covariate shift* and built batch norm to reduce it. Santurkar et al. (2018)
asked whether stopping it is why batch norm helps.

:func:`run_ics` trains one network of the experiment and records, on a fixed probe batch:

- the 15th, 50th and 85th percentiles of the input of the last hidden layer's sigmoids
  (``act3``; Ioffe & Szegedy's Fig. 1 b-c), for a few units, at every evaluation
  (:func:`course_lib.experiments.probes.percentiles.percentile_recorder`, in training mode so that noisy BN's noise
  is seen);
- the landscape along the gradient (Santurkar et al.'s Fig. 4): loss variation, gradient
  change and effective :math:`\beta`-smoothness (:func:`course_lib.experiments.probes.landscape.landscape_recorder`),
  for the configurations in ``settings.landscape_for`` (no BN and BN);
- test accuracy (``train``'s own evaluation).

The three networks (:data:`CONFIGS`) are the same 3x100 sigmoid MLP on the digits with
PyTorch's default initialization (:func:`course_lib.experiments.lab.models.make_mlp` with the same seed; the
two BN networks start from identical weights), trained on the same mini-batches with plain
SGD at the same learning rate:

- ``"no BN"``: ``Linear -> sigmoid``;
- ``"BN"``: ``Linear -> BN -> sigmoid`` (:class:`course_lib.nn.BatchNorm1d`);
- ``"noisy BN"``: ``Linear -> BN -> random scale and shift -> sigmoid``
  (:class:`course_lib.experiments.probes.noisy_bn.NoisyBatchNorm1d`, new noise at every step).

One seed fixes everything random: the digits split, the initial weights, the mini-batch order
and the noise. The summary numbers the chapter asserts on are properties of :class:`ICSRun`:
``drift`` and ``jitter`` of the percentiles (:func:`course_lib.experiments.probes.percentiles.percentile_drift`,
:func:`course_lib.experiments.probes.percentiles.percentile_jitter`), ``mean_test_acc`` and ``steps_to_90``, and
the medians over training of the landscape measurements (``landscape_median``).

The chapter's three claims about these runs (drift, noisy BN, landscape) are registered at the
bottom of the module; they share one :func:`run_all` per seed, which takes about 4 s of CPU
time with :data:`SETTINGS` (600 steps at learning rate 2). What they measured on the claim
seeds is on the book's evidence page.

Example:
    >>> runs = run_all(seed=0)                 # {"no BN": ICSRun, "BN": ..., "noisy BN": ...}
    >>> runs["no BN"].drift / runs["BN"].drift     # several times larger without BN
    >>> runs["noisy BN"].steps_to_90, runs["BN"].steps_to_90, runs["no BN"].steps_to_90
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from course_lib.experiments import claims
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.probes.noisy_bn import noisy_bn
from course_lib.experiments.probes.landscape import GradientDirectionProbe, landscape_recorder
from course_lib.experiments.probes.percentiles import (
    percentile_drift,
    percentile_jitter,
    percentile_recorder,
    percentile_traces,
)
from course_lib.experiments.lab.training import History, train

__all__ = ["CONFIGS", "ICSRun", "ICSSettings", "SETTINGS", "ics_model", "run_all", "run_ics"]

#: The three networks of the experiment, in plotting order.
CONFIGS: tuple[str, ...] = ("no BN", "BN", "noisy BN")


@dataclass(frozen=True)
class ICSSettings:
    """Everything the three runs share.

    Attributes:
        widths: hidden layer sizes (Ioffe & Szegedy's MNIST net: 3 x 100 sigmoids).
        lr: SGD learning rate; 2.0 is large enough for BN to shine and small enough for
            the network without BN to train (after a long plateau).
        batch_size: mini-batch size :math:`m` (60, as in Ioffe & Szegedy).
        steps: training steps.
        eval_every: evaluate (accuracy and percentiles) every this many steps.
        probe_size: the first ``probe_size`` training examples form the fixed probe batch.
        layer: the module whose input is followed (``"act3"``: the last hidden sigmoid).
        units: the units of that layer whose percentiles are recorded; the first is plotted,
            ``drift`` and ``jitter`` average over all of them.
        drift_from: step where the drift's "early" reference is taken. Step 0 is skipped on
            purpose: in the first few dozen steps every network moves from its random start,
            and that first adjustment is not the shift the experiment is about.
        landscape_every: run the landscape probe every this many steps (it costs
            ``len(eta_factors) + 1`` forward and backward passes on the probe batch).
        landscape_for: the configurations that get the landscape probe (the chapter
            compares no BN with BN; skipping noisy BN saves time).
        eta_factors: step sizes of the landscape probe, as multiples of ``lr``.
        noise_scale: ``(a, b)``: noisy BN's scale is uniform on it.
        noise_shift_std: standard deviation of noisy BN's shift (mean 0).
    """

    widths: tuple[int, ...] = (100, 100, 100)
    lr: float = 2.0
    batch_size: int = 60
    steps: int = 600
    eval_every: int = 25
    probe_size: int = 300
    layer: str = "act3"
    units: tuple[int, ...] = tuple(range(10))
    drift_from: int = 50
    landscape_every: int = 100
    landscape_for: tuple[str, ...] = ("no BN", "BN")
    eta_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    noise_scale: tuple[float, float] = (0.5, 1.5)
    noise_shift_std: float = 1.0
    init_scale: float | None = None

    def __post_init__(self) -> None:
        if self.steps % self.eval_every or self.landscape_every % self.eval_every:
            raise ValueError(
                "ICSSettings: steps and landscape_every must be multiples of eval_every "
                f"(got steps={self.steps}, landscape_every={self.landscape_every}, "
                f"eval_every={self.eval_every})"
            )
        unknown = set(self.landscape_for) - set(CONFIGS)
        if unknown:
            raise ValueError(
                f"ICSSettings: landscape_for names unknown configurations {sorted(unknown)}; "
                f"use some of {CONFIGS}"
            )
        if self.drift_from % self.eval_every or not 0 <= self.drift_from < self.steps:
            raise ValueError(
                f"ICSSettings: drift_from must be a multiple of eval_every below steps (got "
                f"{self.drift_from})"
            )

    @property
    def etas(self) -> np.ndarray:
        """The landscape probe's step sizes :math:`\\eta`."""
        return self.lr * np.asarray(self.eta_factors, dtype=np.float64)


#: The chapter's settings.
SETTINGS = ICSSettings()


@dataclass(frozen=True)
class ICSRun:
    """One trained network and what was recorded along the way.

    Attributes:
        config: one of :data:`CONFIGS`.
        seed: the seed of the run.
        settings: the :class:`ICSSettings` used.
        history: the training history (``eval_steps``, ``test_acc``, ``records``...).
        traces: ``(evaluations, units, 3)`` percentiles p15, p50, p85 of each recorded unit's
            input, one row per entry of ``history.eval_steps``.
        model: the trained network.
    """

    config: str
    seed: int
    settings: ICSSettings
    history: History
    traces: np.ndarray
    model: nn.Module = field(repr=False)

    @property
    def eval_steps(self) -> np.ndarray:
        return np.asarray(self.history.eval_steps)

    @property
    def drift(self) -> float:
        """Percentile drift from step ``settings.drift_from`` to the end, averaged over units."""
        start = int(np.searchsorted(self.eval_steps, self.settings.drift_from))
        return percentile_drift(self.traces, start=start, end=-1)

    @property
    def jitter(self) -> float:
        """Mean movement of the percentiles between consecutive evaluations, over units."""
        return percentile_jitter(self.traces)

    @property
    def mean_test_acc(self) -> float:
        """Test accuracy averaged over all evaluations (equally spaced): the area under the
        accuracy curve divided by its length. It rewards reaching a high accuracy early."""
        return float(np.mean(self.history.test_acc))

    @property
    def steps_to_90(self) -> int | None:
        """First evaluated step with test accuracy >= 90% (None if never)."""
        return self.history.steps_to_reach(0.9)

    def landscape(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a landscape record (e.g. ``"loss_variation"``) where probed."""
        if key not in self.history.records:
            raise ValueError(
                f"ICSRun.landscape: no record {key!r} for {self.config!r}; the landscape is "
                f"probed for settings.landscape_for = {self.settings.landscape_for}, and its "
                f"records are {GradientDirectionProbe.record_keys()}"
            )
        values = np.asarray(self.history.records[key], dtype=np.float64)
        probed = ~np.isnan(values)
        return self.eval_steps[probed], values[probed]

    def landscape_median(self, key: str) -> float:
        """The median over training of a landscape record, e.g. ``"loss_variation"``."""
        return float(np.median(self.landscape(key)[1]))


def ics_model(config: str, seed: int = 0, settings: ICSSettings = SETTINGS) -> nn.Sequential:
    """The network of ``config`` with the initial weights of ``seed``.

    For the same seed, "BN" and "noisy BN" start from identical weights (and
    :math:`\\gamma = 1, \\beta = 0`); "no BN" has the same first-layer weights, but its
    ``Linear`` layers also draw biases, so its later layers get other draws from the same
    distribution.

    Example:
        >>> ics_model("noisy BN", seed=0).bn3
        NoisyBatchNorm1d(100, ..., scale=U(0.5, 1.5), shift=N(0, 1^2))
    """
    if config not in CONFIGS:
        raise ValueError(f"ics_model: config must be one of {CONFIGS} (got {config!r})")
    if config == "no BN":
        bn, bn_impl = None, "course_lib"
    elif config == "BN":
        bn, bn_impl = "before", "course_lib"
    else:
        bn = "before"
        bn_impl = noisy_bn(
            seed=seed, scale_range=settings.noise_scale, shift_std=settings.noise_shift_std
        )
    return make_mlp(
        64, list(settings.widths), 10, bn=bn, bn_impl=bn_impl, init_scale=settings.init_scale,
        seed=seed,
    )


def run_ics(config: str, seed: int = 0, settings: ICSSettings = SETTINGS) -> ICSRun:
    """Train the network of ``config`` and record percentiles, landscape and accuracy.

    Args:
        config: ``"no BN"``, ``"BN"`` or ``"noisy BN"``.
        seed: seeds the digits split, the weights, the mini-batch order and the noise.
        settings: an :class:`ICSSettings` (tests use shorter runs).

    Returns:
        An :class:`ICSRun`.

    Example:
        >>> run = run_ics("BN", seed=0)
        >>> run.traces.shape                 # 41 evaluations, 10 units, 3 percentiles
        (41, 10, 3)
    """
    data = load_digits_split(seed=seed)
    X_probe = data.X_train[: settings.probe_size]
    y_probe = data.y_train[: settings.probe_size]
    model = ics_model(config, seed, settings)
    recorders = [percentile_recorder(X_probe, settings.layer, list(settings.units))]
    if config in settings.landscape_for:
        recorders.append(
            landscape_recorder(X_probe, y_probe, settings.etas, every=settings.landscape_every)
        )
    history = train(
        model,
        data,
        steps=settings.steps,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=seed,
        eval_every=settings.eval_every,
        record=recorders,
    )
    traces = percentile_traces(history, units=list(settings.units))
    return ICSRun(config, seed, settings, history, traces, model)


def run_all(
    seed: int = 0, settings: ICSSettings = SETTINGS, configs: Sequence[str] = CONFIGS
) -> dict[str, ICSRun]:
    """:func:`run_ics` for each configuration with the same seed: ``{config: ICSRun}``.

    The runs are remembered for their seed, settings and configurations, so the chapter's
    three claims that read them (drift, noisy BN, landscape) train the networks once. The
    trained models are shared: probe them, do not train them further.
    """
    return dict(_run_all(seed, settings, tuple(configs)))


@functools.lru_cache(maxsize=16)
def _run_all(seed: int, settings: ICSSettings, configs: tuple[str, ...]) -> tuple:
    return tuple((config, run_ics(config, seed, settings)) for config in configs)


# ------------------------------------------------------------------------ the chapter's claims


@claims.claim(
    "ics-drift-less-with-bn",
    chapter=4,
    statement="The percentiles of a last-layer sigmoid's input drift more than three times as "
              "far without batch norm as with it.",
    settings=SETTINGS,
    slow=True,  # one run_all: about 4 s of CPU per seed, shared by the three claims
    section="ch4-internal-shift",
)
def drift_less_with_bn(settings: ICSSettings, seed: int) -> claims.Evidence:
    runs = run_all(seed, settings)
    drift = {c: runs[c].drift for c in ("no BN", "BN")}
    ratio = drift["no BN"] / drift["BN"]
    return claims.Evidence(
        {"drift, no BN": drift["no BN"], "drift, BN": drift["BN"], "no BN / BN": ratio},
        [claims.above("drift without BN / drift with BN", ratio, 3.0)],
        runs,
    )


def _steps_to_90(run: ICSRun) -> float:
    steps = run.steps_to_90
    return float("inf") if steps is None else float(steps)


@claims.claim(
    "noisy-bn-trains-like-bn",
    chapter=4,
    statement="Noisy BN's layer inputs move more than twice as much between evaluations as "
              "without batch norm and more than five times as much as with it, yet its mean "
              "test accuracy over training is within 0.03 of batch norm's, more than 0.2 above "
              "the plain network's, and it reaches 90% within 150 steps, at least four times "
              "sooner than without batch norm.",
    settings=SETTINGS,
    slow=True,  # one run_all: about 4 s of CPU per seed, shared by the three claims
    section="ch4-debate",
)
def noisy_bn_trains_like_bn(settings: ICSSettings, seed: int) -> claims.Evidence:
    runs = run_all(seed, settings)
    jitter = {c: runs[c].jitter for c in CONFIGS}
    acc = {c: runs[c].mean_test_acc for c in CONFIGS}
    to_90 = {c: _steps_to_90(runs[c]) for c in CONFIGS}
    # A plain run that never reached 90% took longer than the whole run: a lower bound.
    plain_90 = min(to_90["no BN"], float(settings.steps))
    numbers = {f"jitter, {c}": jitter[c] for c in CONFIGS}
    numbers |= {f"mean test accuracy, {c}": acc[c] for c in CONFIGS}
    numbers |= {f"steps to 90%, {c}": to_90[c] for c in CONFIGS}
    return claims.Evidence(numbers, [
        claims.above("jitter: noisy BN / no BN", jitter["noisy BN"] / jitter["no BN"], 2.0),
        claims.above("jitter: noisy BN / BN", jitter["noisy BN"] / jitter["BN"], 5.0),
        claims.below("|mean accuracy: noisy BN - BN|", abs(acc["noisy BN"] - acc["BN"]), 0.03),
        claims.above("mean accuracy: noisy BN - no BN", acc["noisy BN"] - acc["no BN"], 0.2),
        claims.below("steps to 90%, slower of BN and noisy BN",
                     max(to_90["BN"], to_90["noisy BN"]), 150.5),
        claims.above("steps to 90%: no BN / noisy BN", plain_90 / to_90["noisy BN"], 4.0),
    ], runs)


@claims.claim(
    "landscape-smoother-with-bn",
    chapter=4,
    statement="Along the gradient, the median loss variation and the median gradient change "
              "over training are each more than three times smaller with batch norm; the "
              "effective beta-smoothness is smaller too, by more than a fifth in the median "
              "over seeds, but not on every seed.",
    settings=SETTINGS,
    slow=True,  # one run_all: about 4 s of CPU per seed, shared by the three claims
    section="ch4-landscape",
)
def landscape_smoother_with_bn(settings: ICSSettings, seed: int) -> claims.Evidence:
    runs = run_all(seed, settings)
    ratio = {key: runs["no BN"].landscape_median(key) / runs["BN"].landscape_median(key)
             for key in ("loss_variation", "grad_change_max", "beta_smoothness")}
    numbers = {f"{key}: {c}": runs[c].landscape_median(key)
               for key in ratio for c in ("no BN", "BN")}
    numbers |= {f"{key}: no BN / BN": r for key, r in ratio.items()}
    return claims.Evidence(numbers, [
        claims.above("loss variation: no BN / BN", ratio["loss_variation"], 3.0),
        claims.above("gradient change: no BN / BN", ratio["grad_change_max"], 3.0),
    ], runs)


@landscape_smoother_with_bn.aggregate
def _(seeds: Sequence) -> list[claims.Check]:
    ratios = [n["beta_smoothness: no BN / BN"] for n in seeds]
    return [claims.above("median beta-smoothness ratio no BN / BN", claims.median(ratios), 1.2)]
