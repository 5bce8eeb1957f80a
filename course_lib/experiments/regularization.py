r"""Batch norm as a (slight) regularizer (chapter 5): the train/test gap on a small training set.

In training mode batch norm normalizes every example with the mean :math:`\mu^{\{t\}}` and
variance :math:`\sigma^{2\{t\}}` of its own mini-batch, so each hidden value
:math:`\tilde z^{(i)}` carries a little noise that depends on the batch-mates
(:mod:`course_lib.experiments.probes.batch_noise`). Noise during training can act like a regularizer: the
network cannot rely on exact values, as with dropout. The lecture calls the effect *slight*,
and smaller for larger mini-batches, whose statistics are closer to the population's (the
noise of :math:`\mu^{\{t\}}` falls like :math:`\sigma/\sqrt m`).

:func:`train_test_gap` measures it. One seed fixes everything random: the digits split
(:func:`course_lib.experiments.lab.data.load_digits_split`, a small training set and a large test set), the
initial weights (:func:`course_lib.experiments.lab.models.make_mlp`) and the order of the mini-batches and
dropout's masks (:func:`course_lib.experiments.lab.training.train`). The configuration picks batch norm,
dropout and the batch size; everything else is the shared :class:`GapSettings`. The result is
the **train/test gap**

.. math:: \text{gap} = \text{train accuracy} - \text{test accuracy}

after training, both measured in eval mode. Every network fits the small training set
(training accuracy 1), so the gap is the test error; a regularizer shows up as a smaller gap.

:data:`CONFIGS` holds the chapter's rows: no BN, BN, dropout, BN + dropout, BN with batch 512
and no BN with batch 512. The training set has 512 examples, so a batch of 512 is the whole
set: every step normalizes with the same examples and BN's batch noise is gone (batch 64 has
noise :math:`\sigma/8`). "No BN, batch 512" is the control: without BN the batch size barely
changes the gap, so a difference between BN with 64 and BN with 512 is BN's own noise.
:data:`BATCH_OF_TWO` (with :data:`BATCH_OF_TWO_SETTINGS`) is the other end: batches of two,
where BN's outputs are :math:`\beta \pm \gamma` and training with BN fails.

The chapter's claims are registered here (:mod:`course_lib.experiments.claims`), each with
its frozen settings: the probes of one trained network's noise (``noise_probe``,
``batch_mean_noise``, ``output_noise``, ``one_unit_noise``, all on :func:`probe_network`),
the gap table (``gap_rows``), how soon batch norm fits the training set (``fits_sooner``)
and batches of two (``batches_of_two``).

Example:
    >>> result = train_test_gap("BN", seed=0)
    >>> result.train_acc
    1.0
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import History, train
from course_lib.experiments.probes.batch_noise import (
    batch_mean_spread,
    batch_var_spread,
    output_spread,
    outputs_across_batches,
)

__all__ = [
    "BATCH_OF_TWO",
    "BATCH_OF_TWO_SETTINGS",
    "BatchOfTwoSettings",
    "CONFIGS",
    "FitSettings",
    "GapConfig",
    "GapResult",
    "GapRowsSettings",
    "GapSettings",
    "ModeProbe",
    "NoiseProbe",
    "NoiseSettings",
    "ProbeSettings",
    "SETTINGS",
    "SIZES",
    "SpreadResult",
    "UnitNoiseSettings",
    "batch_mean_noise",
    "batches_of_two",
    "fits_sooner",
    "gap_data",
    "gap_model",
    "gap_rows",
    "noise_probe",
    "one_unit_noise",
    "output_noise",
    "probe_network",
    "train_test_gap",
]


@dataclass(frozen=True)
class GapConfig:
    """One row of the experiment: what differs between the networks compared.

    Attributes:
        bn: batch norm before each hidden activation (the lecture's order) or none.
        dropout: probability of dropping a hidden unit in training (0: no dropout).
        batch_size: mini-batch size :math:`m`; it sets the noise of BN's statistics.
    """

    bn: bool = False
    dropout: float = 0.0
    batch_size: int = 64


#: The rows of chapter 5's experiment, by name.
CONFIGS: dict[str, GapConfig] = {
    "no BN": GapConfig(bn=False),
    "BN": GapConfig(bn=True),
    "dropout": GapConfig(dropout=0.2),
    "BN + dropout": GapConfig(bn=True, dropout=0.2),
    "BN, batch 512": GapConfig(bn=True, batch_size=512),
    "no BN, batch 512": GapConfig(bn=False, batch_size=512),
}

#: The limit of tiny batches: BN and no BN with batches of two (run with
#: :data:`BATCH_OF_TWO_SETTINGS`).
BATCH_OF_TWO: dict[str, GapConfig] = {
    "BN, batch 2": GapConfig(bn=True, batch_size=2),
    "no BN, batch 2": GapConfig(bn=False, batch_size=2),
}


@dataclass(frozen=True)
class GapSettings:
    """What every row shares: the data, the network and the training run.

    The defaults are chapter 5's: 512 training digits (about 51 per class; 512 so that a
    batch of 512 is possible) and 70% of the 1,797 digits (1,258) as the test set, so that
    the test accuracy is precise to about half a point; a ReLU network with two hidden
    layers of 100 units; 400 steps of SGD with momentum (enough for every row to fit the
    training set), which takes about a third of a second per run on one CPU core (about
    0.8 s with batches of 512).

    Attributes:
        n_train, test_fraction: passed to :func:`course_lib.experiments.lab.data.load_digits_split`.
        widths, activation: the hidden layers of :func:`course_lib.experiments.lab.models.make_mlp`.
        steps, lr, optimizer, eval_every: passed to :func:`course_lib.experiments.lab.training.train`.
        bn_impl: ``"torch"`` or ``"course_lib"``, the batch norm layer's implementation.
    """

    n_train: int = 512
    test_fraction: float = 0.7
    widths: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    steps: int = 400
    lr: float = 0.05
    optimizer: str = "momentum"
    # The gap needs the final accuracies only; an evaluation of the whole training and test
    # sets costs as much as about thirty training steps, so evaluate once, at the end.
    eval_every: int = 400
    # torch.nn.BatchNorm1d gives the same numbers as course_lib.nn.BatchNorm1d (tests/test_nn.py)
    # and runs about twice as fast on these tiny batches.
    bn_impl: str = "torch"


#: Chapter 5's settings.
SETTINGS = GapSettings()

#: Settings for :data:`BATCH_OF_TWO`: 512 steps (two passes over the training set) with a
#: smaller learning rate, since the gradient of a pair of examples is very noisy (with lr 0.02
#: the network without BN already fails).
BATCH_OF_TWO_SETTINGS = GapSettings(steps=512, lr=0.01, eval_every=512)


@dataclass(frozen=True)
class GapResult:
    """The outcome of one run of :func:`train_test_gap`.

    Attributes:
        config: the row's name (or ``"custom"`` for a :class:`GapConfig` passed directly).
        seed: the seed of the run.
        train_acc, test_acc: final accuracies on the training and test set (eval mode).
        history: the full :class:`~course_lib.experiments.lab.training.History` of the run.
        model: the trained network (in training mode).
    """

    config: str
    seed: int
    train_acc: float
    test_acc: float
    history: History = field(repr=False, compare=False)
    model: nn.Module = field(repr=False, compare=False)

    @property
    def gap(self) -> float:
        """Train accuracy minus test accuracy: how much better the network does on the
        examples it was trained on."""
        return self.train_acc - self.test_acc


def _config(config: str | GapConfig) -> tuple[str, GapConfig]:
    if isinstance(config, GapConfig):
        return "custom", config
    if isinstance(config, str):
        known = {**CONFIGS, **BATCH_OF_TWO}
        try:
            return config, known[config]
        except KeyError:
            raise ValueError(
                f"unknown config {config!r}; use one of {list(known)} or a GapConfig(...)"
            ) from None
    raise TypeError(
        f"expected config to be a name from CONFIGS or a GapConfig (got {type(config).__name__})"
    )


def _settings(settings: GapSettings | None) -> GapSettings:
    if settings is None:
        return SETTINGS
    if not isinstance(settings, GapSettings):
        raise TypeError(
            f"expected settings to be a GapSettings (got {type(settings).__name__}); build one "
            f"with GapSettings(...) or dataclasses.replace(SETTINGS, steps=...)"
        )
    return settings


def gap_data(seed: int, settings: GapSettings | None = None) -> Split:
    """The digits split of run ``seed``: ``settings.n_train`` training images, standardized
    with their own statistics, and the test set.

    Example:
        >>> gap_data(0)
        Split(train: 512 x 64, test: 1258 x 64, n_classes=10)
    """
    s = _settings(settings)
    return load_digits_split(seed=seed, test_fraction=s.test_fraction, n_train=s.n_train)


def gap_model(
    config: str | GapConfig, seed: int, settings: GapSettings | None = None
) -> nn.Sequential:
    """The untrained network of row ``config`` for run ``seed``.

    Rows with and without BN start from the same random draws for their weights (same
    ``seed``), though a BN network's first layers have no bias (BN's :math:`\\beta` replaces it).

    Example:
        >>> gap_model("BN + dropout", seed=0)[:4]
        Sequential(
          (linear1): Linear(in_features=64, out_features=100, bias=False)
          (bn1): BatchNorm1d(100, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
          (act1): ReLU()
          (dropout1): Dropout(p=0.2, inplace=False)
        )
    """
    _, cfg = _config(config)
    s = _settings(settings)
    return make_mlp(
        64,
        list(s.widths),
        10,
        activation=s.activation,
        bn="before" if cfg.bn else None,
        dropout=cfg.dropout,
        bn_impl=s.bn_impl,
        seed=seed,
    )


def train_test_gap(
    config: str | GapConfig, seed: int, settings: GapSettings | None = None
) -> GapResult:
    """Train row ``config``'s network on run ``seed``'s small training set; return its gap.

    A pure function of ``(config, seed, settings)``: the same arguments give the same
    numbers (on the same machine), so a claim about the gap can be checked seed by seed.

    Args:
        config: a name from :data:`CONFIGS` (``"no BN"``, ``"BN"``, ``"dropout"``,
            ``"BN + dropout"``, ``"BN, batch 512"``, ``"no BN, batch 512"``) or
            :data:`BATCH_OF_TWO`, or a :class:`GapConfig`.
        seed: seeds the split, the initial weights, the batch order and dropout's masks.
        settings: the shared settings; ``None`` means :data:`SETTINGS`, chapter 5's.

    Returns:
        A :class:`GapResult` with the final train and test accuracy, ``gap``, the history
        and the trained model.

    Example:
        >>> r = train_test_gap("no BN", seed=0)
        >>> r.train_acc, round(r.test_acc, 3)
        (1.0, 0.963)
    """
    name, cfg = _config(config)
    s = _settings(settings)
    data = gap_data(seed, s)
    if cfg.batch_size > data.n_train:
        raise ValueError(
            f"batch_size {cfg.batch_size} is larger than the training set ({data.n_train} "
            f"examples); raise settings.n_train or use a smaller batch"
        )
    model = gap_model(cfg, seed, s)
    history = train(
        model,
        data,
        steps=s.steps,
        lr=s.lr,
        batch_size=cfg.batch_size,
        optimizer=s.optimizer,
        seed=seed,
        eval_every=s.eval_every,
        progress=False,
    )
    if history.diverged:
        raise RuntimeError(
            f"config {name!r}, seed {seed}: training diverged at step {history.diverged_at}; "
            f"lower settings.lr"
        )
    return GapResult(
        name, int(seed), history.final_train_acc, history.final_test_acc, history, model
    )


# 16: a network per claim seed and the page's, so every probe of a seed reuses it.
@functools.lru_cache(maxsize=16)
def _trained(config: str, seed: int, settings: GapSettings) -> GapResult:
    # Several claims probe the same trained network; train it once per process. Callers get
    # deep copies of the model, so no probe can change what another one sees.
    return train_test_gap(config, seed, settings)


# ---------------------------------------------------------------------------------------------
# The noise of one example's output: probes of the trained BN network


@dataclass(frozen=True)
class ProbeSettings:
    """The probe of one example across batch-mates (chapter 5's first section).

    Attributes:
        gap: how the probed network is trained (the "BN" row of the gap experiment).
        batch_size: :math:`m` of the random batches the example is put into.
        n_batches: how many random batches.
    """

    gap: GapSettings = SETTINGS
    batch_size: int = 16
    n_batches: int = 300


@dataclass(frozen=True)
class NoiseProbe:
    """The trained BN network of run ``seed`` and the training digit it is least sure about.

    Attributes:
        model: the trained network (a copy; in training mode).
        data: the run's digits split.
        index: the digit's row in ``data.X_train``.
        example, label: that digit and its class.
        pool: the other 511 training digits, its possible batch-mates.
    """

    model: nn.Sequential = field(repr=False)
    data: Split = field(repr=False)
    index: int
    example: torch.Tensor = field(repr=False)
    label: int
    pool: torch.Tensor = field(repr=False)


def probe_network(seed: int, settings: GapSettings = SETTINGS) -> NoiseProbe:
    """The "BN" network of run ``seed``, trained, and its least sure training digit.

    "Least sure" is the digit whose right class gets the smallest probability in eval mode:
    an unusual example, whose output the batch-mates move the most.
    """
    model = copy.deepcopy(_trained("BN", seed, settings).model)
    data = gap_data(seed, settings)
    model.eval()
    with torch.no_grad():
        p = torch.softmax(model(data.X_train), dim=1)[torch.arange(data.n_train), data.y_train]
    model.train()
    i = int(p.argmin())
    pool = torch.cat([data.X_train[:i], data.X_train[i + 1 :]])
    return NoiseProbe(model, data, i, data.X_train[i], int(data.y_train[i]), pool)


@dataclass(frozen=True)
class ModeProbe:
    """One example in random batches, in both modes (what :func:`noise_probe` measured).

    Attributes:
        probe: the network and the example.
        z_tilde: ``{"train": (n_batches, 100), "eval": ...}``, the first BN layer's output.
        p_right: ``{mode: (n_batches,)}``, the probability of the right class.
        predicted: ``{mode: (n_batches,)}``, the predicted class.
    """

    probe: NoiseProbe = field(repr=False)
    z_tilde: dict = field(repr=False)
    p_right: dict = field(repr=False)
    predicted: dict = field(repr=False)


@claims.claim(
    "batch-mates-move-the-output",
    chapter=5,
    statement="In training mode one training digit's batch norm output moves with its "
              "batch-mates: in random batches of 16 every first-layer unit varies, the "
              "probability of the right class swings by more than 0.3 and the network "
              "sometimes names another digit; in eval mode all outputs are identical.",
    settings=ProbeSettings(),
    section="ch5-batch-mates",
)
def noise_probe(settings: ProbeSettings, seed: int) -> claims.Evidence:
    s = settings
    probe = probe_network(seed, s.gap)
    model = probe.model
    z, p, pred = {}, {}, {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        z[mode] = outputs_across_batches(model[:2], probe.example, probe.pool, s.batch_size,
                                         s.n_batches, seed=seed)
        logits = outputs_across_batches(model, probe.example, probe.pool, s.batch_size,
                                        s.n_batches, seed=seed)
        p[mode] = torch.softmax(logits, dim=1)[:, probe.label]
        pred[mode] = logits.argmax(dim=1)
    model.train()
    unit_spread = z["train"].std(dim=0)
    eval_spread = float(z["eval"].std(dim=0).max())
    numbers = {
        "train mode: smallest unit spread": float(unit_spread.min()),
        "train mode: mean unit spread": float(unit_spread.mean()),
        "train mode: range of p(right class)": float(p["train"].max() - p["train"].min()),
        "train mode: batches calling it another digit": float((pred["train"] != probe.label).sum()),
        "eval mode: largest unit spread": eval_spread,
        "eval mode: batches calling it another digit": float((pred["eval"] != probe.label).sum()),
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("train mode: smallest unit spread",
                         numbers["train mode: smallest unit spread"], 0.05),
            claims.above("train mode: range of p(right class)",
                         numbers["train mode: range of p(right class)"], 0.3),
            claims.above("train mode: batches calling it another digit",
                         numbers["train mode: batches calling it another digit"], 0.5),
            # Eval mode normalizes with fixed statistics: the same numbers, bit for bit.
            claims.below("eval mode: largest unit spread", eval_spread, 1e-12),
            claims.below("eval mode: batches calling it another digit",
                         numbers["eval mode: batches calling it another digit"], 0.5),
        ],
        result=ModeProbe(probe, z, p, pred),
    )


#: The batch sizes of chapter 5's noise measurements, from 2 to the whole training set.
SIZES: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class NoiseSettings:
    """The noise of the batch statistics against the batch size.

    Attributes:
        gap: how the probed network is trained.
        sizes: the batch sizes :math:`m`.
        n_draws: batches drawn per size for the spread of :math:`\\mu^{\\{t\\}}` and
            :math:`\\sigma^{2\\{t\\}}` (the measured spread is uncertain by about
            :math:`1/\\sqrt{2\\,n\\_draws}`, 2%).
        n_batches: batches per size for the spread of the example's output.
        unit: the unit of the first layer whose statistics are measured.
    """

    gap: GapSettings = SETTINGS
    sizes: tuple[int, ...] = SIZES
    n_draws: int = 1000
    n_batches: int = 200
    unit: int = 0


@dataclass(frozen=True)
class SpreadResult:
    """Measured and predicted spreads, one entry per batch size.

    Attributes:
        sizes: the batch sizes.
        measured, predicted: for :func:`batch_mean_noise`, the mean's; for
            :func:`output_noise`, ``predicted`` is empty.
        var_measured, var_predicted: the variance's (:func:`batch_mean_noise` only).
        population: the unit's pre-activations over the training set.
    """

    sizes: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    var_measured: np.ndarray = field(default_factory=lambda: np.zeros(0))
    var_predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    population: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


@claims.claim(
    "batch-mean-noise-is-sigma-over-sqrt-m",
    chapter=5,
    statement="The spread of the mini-batch mean of a unit is sigma/sqrt(m) within 10% for "
              "every m from 2 to 512, and the spread of the batch variance matches its "
              "formula within 25%.",
    settings=NoiseSettings(),
    section="ch5-noise",
)
def batch_mean_noise(settings: NoiseSettings, seed: int) -> claims.Evidence:
    s = settings
    probe = probe_network(seed, s.gap)
    with torch.no_grad():
        z_pop = probe.model.linear1(probe.data.X_train)[:, s.unit].double().numpy()
    sizes = list(s.sizes)
    measured, predicted = batch_mean_spread(z_pop, sizes, n_draws=s.n_draws, seed=seed)
    var_measured, var_predicted = batch_var_spread(z_pop, sizes, n_draws=s.n_draws, seed=seed)
    mean_off = float(np.abs(measured / predicted - 1).max())
    var_off = float(np.abs(var_measured / var_predicted - 1).max())
    slope = _slope(np.array(sizes), measured)
    numbers = {
        "largest |measured / (sigma/sqrt(m)) - 1|": mean_off,
        "largest |measured / formula - 1| of the variance": var_off,
        "log-log slope of std(mu) against m": slope,
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.below("largest |measured / (sigma/sqrt(m)) - 1|", mean_off, 0.1),
            claims.below("largest |measured / formula - 1| of the variance", var_off, 0.25),
            claims.below("|slope + 0.5|", abs(slope + 0.5), 0.03),
        ],
        result=SpreadResult(np.array(sizes), measured, predicted, var_measured, var_predicted,
                            z_pop),
    )


@claims.claim(
    "output-noise-falls-like-one-over-sqrt-m",
    chapter=5,
    statement="The spread of one digit's batch norm output across batches falls with every "
              "doubling of m, like 1/sqrt(m) between m = 16 and 64 (log-log slope within 0.12 "
              "of -0.5), more than halves from "
              "m = 64 to 256, and vanishes at m = 512, the whole training set.",
    settings=NoiseSettings(),
    section="ch5-noise",
)
def output_noise(settings: NoiseSettings, seed: int) -> claims.Evidence:
    s = settings
    probe = probe_network(seed, s.gap)
    sizes = np.array(s.sizes)
    spread = output_spread(probe.model[:2], probe.example, probe.pool, list(s.sizes),
                           n_batches=s.n_batches, seed=seed)
    middle = (sizes >= 16) & (sizes <= 64)
    slope = _slope(sizes[middle], spread[middle])
    # The last step, 256 -> 512, ends at no noise at all: checked on its own below.
    fall = spread[:-2] / spread[1:-1]
    i64, i256 = list(s.sizes).index(64), list(s.sizes).index(256)
    numbers = {
        "smallest fall per doubling (ratio)": float(fall.min()),
        "log-log slope for m = 16 to 64": slope,
        "spread at m = 64 / spread at m = 256": float(spread[i64] / spread[i256]),
        "spread at m = 512": float(spread[-1]),
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("smallest fall per doubling (ratio)", fall.min(), 1.0),
            # A batch of 64 is an eighth of the training set, which steepens the slope a
            # little (to about -0.56): "like 1/sqrt(m)" means within 0.12 of -0.5.
            claims.below("|slope + 0.5| for m = 16 to 64", abs(slope + 0.5), 0.12),
            claims.above("spread at m = 64 / spread at m = 256",
                         numbers["spread at m = 64 / spread at m = 256"], 2.0),
            claims.below("spread at m = 512", spread[-1], 1e-5),
        ],
        result=SpreadResult(sizes, spread),
    )


@dataclass(frozen=True)
class UnitNoiseSettings:
    """One unit of the example's first BN output in random batches (the chapter's slider).

    Attributes:
        gap: how the probed network is trained.
        n_batches: random batches per batch size.
        unit: the unit shown.
        sizes: the batch sizes compared: the smallest, two in the middle, the whole set.
    """

    gap: GapSettings = SETTINGS
    n_batches: int = 300
    unit: int = 0
    sizes: tuple[int, ...] = (2, 16, 64, 512)


@claims.claim(
    "one-unit-noise-at-the-extremes",
    chapter=5,
    statement="For one unit of one digit's batch norm output, batches of 64 have about half "
              "the spread of batches of 16 (the median ratio over seeds is between 1.8 and "
              "2.5, and every seed's is above 1.2); with batches of 2 nearly every output is "
              "beta - gamma or beta + gamma; with batches of 512 every output is the same.",
    settings=UnitNoiseSettings(),
    section="ch5-exercises",
)
def one_unit_noise(settings: UnitNoiseSettings, seed: int) -> claims.Evidence:
    s = settings
    probe = probe_network(seed, s.gap)
    model = probe.model
    first_bn = model[:2]
    z = {m: outputs_across_batches(first_bn, probe.example, probe.pool, m, s.n_batches,
                                   seed=seed)[:, s.unit].numpy() for m in s.sizes}
    model.eval()
    z_eval = float(outputs_across_batches(first_bn, probe.example, probe.pool, 2, 1,
                                          seed=seed)[0, s.unit])
    model.train()
    gamma, beta = float(model.bn1.weight[s.unit].detach()), float(model.bn1.bias[s.unit].detach())
    spikes = np.sort([beta - gamma, beta + gamma])
    std = {m: float(v.std(ddof=1)) for m, v in z.items()}
    near_spike = float((np.abs(z[2][:, None] - spikes).min(axis=1) < 0.02).mean())
    beyond = float(max(spikes[0] - z[2].min(), z[2].max() - spikes[1]))
    numbers = {
        "spread at m = 16 / spread at m = 64": std[16] / std[64],
        "m = 2: share within 0.02 of beta -+ gamma": near_spike,
        "m = 2: farthest beyond beta -+ gamma": beyond,
        "m = 512: spread": std[512],
        "m = 512: distance to the eval-mode value": abs(float(z[512][0]) - z_eval),
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("spread at m = 16 / spread at m = 64", std[16] / std[64], 1.2),
            claims.above("m = 2: share within 0.02 of beta -+ gamma", near_spike, 0.8),
            claims.below("m = 2: farthest beyond beta -+ gamma", beyond, 1e-4),
            claims.below("m = 512: spread", std[512], 1e-5),
            claims.below("m = 512: distance to the eval-mode value",
                         numbers["m = 512: distance to the eval-mode value"], 0.2),
        ],
        result={"z": z, "z_eval": z_eval, "spikes": spikes},
    )


@one_unit_noise.aggregate
def _(seeds: list) -> list[claims.Check]:
    ratios = [n["spread at m = 16 / spread at m = 64"] for n in seeds]
    return [claims.above("median ratio m = 16 / m = 64", claims.median(ratios), 1.8),
            claims.below("median ratio m = 16 / m = 64", claims.median(ratios), 2.5)]


# ---------------------------------------------------------------------------------------------
# The train/test gap


@dataclass(frozen=True)
class GapRowsSettings:
    """The gap experiment: every row of :data:`CONFIGS`, trained with ``gap``.

    Attributes:
        gap: the shared data, network and training run.
        rows: the rows compared (names in :data:`CONFIGS`).
    """

    gap: GapSettings = SETTINGS
    rows: tuple[str, ...] = tuple(CONFIGS)


def _points(x: float) -> float:
    return 100.0 * x


@claims.claim(
    "bn-narrows-the-gap-slightly",
    chapter=5,
    statement="On 512 training digits every network fits its training set. Averaged over "
              "seeds, batch norm narrows the train/test gap, by more than 0.2 and less than "
              "1.5 points, and so do batch norm with batches of 512 (no batch noise) and "
              "batch norm with dropout (by more than 0.1); batch norm's noise, gap(BN, batch "
              "512) - gap(BN), stays within one point on every seed; without batch norm the "
              "batch size moves the gap by less than half a point on every seed; dropout "
              "alone does not narrow the gap on every seed.",
    settings=GapRowsSettings(),
    slow=True,
    section="ch5-gap",
)
def gap_rows(settings: GapRowsSettings, seed: int) -> claims.Evidence:
    runs = {row: train_test_gap(row, seed, settings.gap) for row in settings.rows}
    gaps = {row: _points(r.gap) for row, r in runs.items()}
    numbers = {f"gap {row} (points)": g for row, g in gaps.items()}
    for row in ("BN", "BN, batch 512", "dropout", "BN + dropout"):
        numbers[f"narrowing {row} (points)"] = gaps["no BN"] - gaps[row]
    noise = gaps["BN, batch 512"] - gaps["BN"]
    numbers["noise share: gap(BN, batch 512) - gap(BN) (points)"] = noise
    control = abs(gaps["no BN, batch 512"] - gaps["no BN"])
    numbers["control: |gap(no BN, 512) - gap(no BN)| (points)"] = control
    lowest_train = min(r.train_acc for r in runs.values())
    numbers["lowest training accuracy"] = lowest_train
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("lowest training accuracy", lowest_train, 0.999),
            claims.below("|noise share| (points)", abs(noise), 1.0),
            claims.below("control: |gap(no BN, 512) - gap(no BN)| (points)", control, 0.5),
        ],
        result=runs,
    )


@gap_rows.aggregate
def _(seeds: list) -> list[claims.Check]:
    def mean(key: str) -> float:
        return claims.mean(n[key] for n in seeds)

    not_narrowed = sum(n["narrowing dropout (points)"] <= 0 for n in seeds)
    return [
        claims.above("mean narrowing BN (points)", mean("narrowing BN (points)"), 0.2),
        claims.below("mean narrowing BN (points)", mean("narrowing BN (points)"), 1.5),
        claims.above("mean narrowing BN, batch 512 (points)",
                     mean("narrowing BN, batch 512 (points)"), 0.1),
        claims.above("mean narrowing BN + dropout (points)",
                     mean("narrowing BN + dropout (points)"), 0.1),
        claims.above("seeds on which dropout does not narrow the gap", not_narrowed, 0.5),
    ]


@dataclass(frozen=True)
class FitSettings:
    """How soon the networks with and without batch norm fit the training set.

    Attributes:
        gap: the training run (evaluated every 20 steps, so the step is known to 20).
        target: the training accuracy to reach.
    """

    gap: GapSettings = GapSettings(eval_every=20)
    target: float = 0.99


@claims.claim(
    "bn-fits-the-training-set-sooner",
    chapter=5,
    statement="At the same learning rate the network with batch norm reaches 99% training "
              "accuracy in fewer steps than the one without.",
    settings=FitSettings(),
    section="ch5-gap",
)
def fits_sooner(settings: FitSettings, seed: int) -> claims.Evidence:
    runs = {row: train_test_gap(row, seed, settings.gap) for row in ("no BN", "BN")}
    steps = {row: r.history.steps_to_reach(settings.target, on="train") for row, r in runs.items()}
    never = settings.gap.steps + settings.gap.eval_every  # a run that never gets there
    numbers = {f"steps to {settings.target:.0%}, {row}": float(never if v is None else v)
               for row, v in steps.items()}
    ratio = numbers[f"steps to {settings.target:.0%}, no BN"] / numbers[
        f"steps to {settings.target:.0%}, BN"]
    numbers["steps without BN / steps with BN"] = ratio
    return claims.Evidence(
        numbers=numbers,
        checks=[claims.above("steps without BN / steps with BN", ratio, 1.0)],
        result=runs,
    )


@dataclass(frozen=True)
class BatchOfTwoSettings:
    """Training with batches of two, with and without batch norm.

    Attributes:
        gap: the training run (:data:`BATCH_OF_TWO_SETTINGS`).
    """

    gap: GapSettings = BATCH_OF_TWO_SETTINGS


@claims.claim(
    "batches-of-two-break-bn",
    chapter=5,
    statement="Trained with batches of two, the network with batch norm ends below the same "
              "network without it on every seed, by more than 0.15 in test accuracy on "
              "average, and does not fit its own training digits in eval mode (below 90%).",
    settings=BatchOfTwoSettings(),
    section="ch5-limits",
)
def batches_of_two(settings: BatchOfTwoSettings, seed: int) -> claims.Evidence:
    runs = {row: train_test_gap(row, seed, settings.gap) for row in BATCH_OF_TWO}
    bn, plain = runs["BN, batch 2"], runs["no BN, batch 2"]
    numbers = {
        "no BN, batch 2: test accuracy": plain.test_acc,
        "BN, batch 2: test accuracy": bn.test_acc,
        "BN, batch 2: training accuracy": bn.train_acc,
        "no BN minus BN, test accuracy": plain.test_acc - bn.test_acc,
    }
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("no BN minus BN, test accuracy", numbers["no BN minus BN, test accuracy"],
                         0.05),
            claims.below("BN, batch 2: training accuracy", bn.train_acc, 0.9),
        ],
        result=runs,
    )


@batches_of_two.aggregate
def _(seeds: list) -> list[claims.Check]:
    return [claims.above("mean of no BN minus BN, test accuracy",
                         claims.mean(n["no BN minus BN, test accuracy"] for n in seeds), 0.15)]
