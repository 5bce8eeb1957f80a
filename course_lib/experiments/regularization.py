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

Example:
    >>> result = train_test_gap("BN", seed=0)
    >>> result.train_acc, round(result.gap, 3)
    (1.0, 0.033)
    >>> gaps = gap_table(["no BN", "BN"], seeds=[0, 1])     # {config: array of gaps per seed}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import History, train

__all__ = [
    "BATCH_OF_TWO",
    "BATCH_OF_TWO_SETTINGS",
    "CONFIGS",
    "GapConfig",
    "GapResult",
    "GapSettings",
    "SETTINGS",
    "gap_data",
    "gap_model",
    "gap_table",
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
    training set), which takes about half a second per run on one CPU core (about one second
    with batches of 512).

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
    eval_every: int = 20
    # torch.nn.BatchNorm1d gives the same numbers as course_lib.nn.BatchNorm1d (tests/test_nn.py)
    # and runs about twice as fast on these tiny batches.
    bn_impl: str = "torch"


#: Chapter 5's settings.
SETTINGS = GapSettings()

#: Settings for :data:`BATCH_OF_TWO`: 512 steps (two passes over the training set) with a
#: smaller learning rate, since the gradient of a pair of examples is very noisy (with lr 0.02
#: the network without BN already fails).
BATCH_OF_TWO_SETTINGS = GapSettings(steps=512, lr=0.01, eval_every=32)


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


def gap_table(
    configs: Sequence[str], seeds: Sequence[int], settings: GapSettings | None = None
) -> dict[str, np.ndarray]:
    """The gap of every row in ``configs`` for every seed in ``seeds``.

    Returns:
        ``{config: float64 array of len(seeds)}``, in the order given.

    Example:
        >>> table = gap_table(["no BN", "BN"], seeds=[0, 1, 2])
        >>> bool(np.all(table["BN"] < table["no BN"]))
        True
    """
    if isinstance(configs, str):
        raise TypeError(f"expected a list of config names (got the string {configs!r})")
    return {
        c: np.array([train_test_gap(c, seed, settings).gap for seed in seeds]) for c in configs
    }
