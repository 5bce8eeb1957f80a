"""Chapter 8's experiments on small batches: which normalization survives them.

- :func:`batch_size_sweep` trains the digits MLP with each normalization layer at each batch
  size and returns the test accuracies (Wu & He's Figure 1, at small scale); the claim
  ``small-batch-norms`` runs it.
- :func:`renorm_outputs`: one example's batch renorm output over many random small batches,
  for the chapter's slider over the clipping limits.
- :func:`finetune` fine-tunes a network with a small batch, with its batch norm layers either
  updating their statistics (training mode) or frozen (``train(bn_mode="frozen")``), with
  :func:`course_lib.experiments.lab.training.train`; the claim ``finetune-frozen-statistics``
  compares the two.
- :func:`class_subset` keeps the examples of some classes (pretraining on digits 0-4,
  fine-tuning on 5-9).

Every network is :func:`course_lib.experiments.lab.models.make_mlp` (64 -> 100 -> 100 -> 10,
ReLU, the normalization before each activation), its normalization named by
:func:`~course_lib.experiments.lab.models.norm_factory`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from course_lib import norm_layers as norms
from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp, norm_factory
from course_lib.experiments.lab.training import train

__all__ = [
    "LABELS",
    "FinetuneSettings",
    "SweepSettings",
    "batch_size_sweep",
    "class_subset",
    "finetune",
    "finetune_comparison",
    "renorm_outputs",
]

#: The page's names of the normalizations the chapter compares.
LABELS = {"batch": "batch norm", "group": "group norm", "layer": "layer norm",
          "renorm": "batch renorm"}


@dataclass(frozen=True)
class SweepSettings:
    """Chapter 8's batch-size sweep.

    Attributes:
        kinds: normalizations (:func:`~course_lib.experiments.lab.models.norm_factory`
            kinds) run at every batch size in ``batch_sizes``.
        batch_sizes: the batch sizes (the claim compares 2 and 32; the page's figure runs
            2 to 64 with the same settings otherwise).
        renorm_batch_sizes: the batch sizes batch renorm also runs at (the small ones).
        epochs: passes over the training set at every batch size (small batches take more,
            smaller steps).
        lr: learning rate at a batch of 16; at batch ``B`` it is ``lr * sqrt(B / 16)``.
        groups: group norm's groups (of the 100 hidden units).
        impl: the implementation of batch, group and layer norm (``"torch"``: the same
            numbers as the course's layers, and faster at a batch of 2); batch renorm is the
            course's own.
        renorm_momentum: batch renorm's running averages move slowly...
        renorm_warmup, renorm_ramp: ...with plain batch norm for this fraction of the steps,
            then the clipping limits opening to 3 and 5 over the next fraction.
    """

    kinds: tuple[str, ...] = ("batch", "group", "layer")
    batch_sizes: tuple[int, ...] = (2, 32)
    renorm_batch_sizes: tuple[int, ...] = (2,)
    epochs: float = 1.0
    lr: float = 0.05
    groups: int = 10
    impl: str = "torch"
    renorm_momentum: float = 0.01
    renorm_warmup: float = 0.1
    renorm_ramp: float = 0.2


def _network(data: Split, kind: str, steps: int, settings: SweepSettings,
             seed: int) -> nn.Module:
    s = settings
    if kind == "renorm":
        norm = norm_factory("renorm", momentum=s.renorm_momentum,
                            warmup_steps=int(s.renorm_warmup * steps),
                            ramp_steps=int(s.renorm_ramp * steps))
    else:
        norm = norm_factory(kind, s.impl, groups=s.groups if kind == "group" else None)
    return make_mlp(data.n_features, [100, 100], data.n_classes, activation="relu",
                    bn="before", bn_impl=norm, seed=seed)


def batch_size_sweep(data: Split, settings: SweepSettings, seed: int = 0) -> dict[str, np.ndarray]:
    """Test accuracy (evaluation mode) after ``settings.epochs`` epochs, per normalization and
    batch size.

    Returns ``{kind: array}``, aligned with ``settings.batch_sizes`` (and, for ``"renorm"``,
    with ``settings.renorm_batch_sizes``). Each run starts from the same weights (``seed``)
    and sees the examples in the same order for a given batch size.
    """
    s = settings
    runs = [(kind, s.batch_sizes) for kind in s.kinds]
    if s.renorm_batch_sizes:
        runs.append(("renorm", s.renorm_batch_sizes))
    results = {}
    for kind, sizes in runs:
        accs = []
        for b in sizes:
            steps = max(1, int(s.epochs * data.n_train / b))
            history = train(_network(data, kind, steps, s, seed), data, steps=steps,
                            lr=s.lr * (b / 16) ** 0.5, batch_size=b, seed=seed,
                            eval_every=steps, progress=False)
            accs.append(history.final_test_acc)
        results[kind] = np.array(accs)
    return results


@claims.claim(
    "small-batch-norms",
    chapter=8,
    statement="After one epoch at a batch of 2, batch norm ends more than 0.15 behind group "
              "and layer norm and behind itself at a batch of 32, while group and layer norm "
              "lose nothing (within 0.03 of their accuracy at 32); batch renorm recovers part "
              "of batch norm's loss at a batch of 2, not all.",
    settings=SweepSettings(),
    slow=True,
    section="small-batches",
)
def small_batch_norms(settings: SweepSettings, seed: int) -> claims.Evidence:
    """The sweep at ``settings``' batch sizes (they must include 2 and 32; the page runs more)."""
    sweep = batch_size_sweep(load_digits_split(seed=0), settings, seed=seed)
    numbers = {f"{LABELS[kind]} at {b}": float(acc[k])
               for kind, acc in sweep.items()
               for k, b in enumerate(settings.renorm_batch_sizes if kind == "renorm"
                                     else settings.batch_sizes)}
    n = numbers.__getitem__
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("group minus batch norm at 2",
                         n("group norm at 2") - n("batch norm at 2"), 0.15),
            claims.above("layer minus batch norm at 2",
                         n("layer norm at 2") - n("batch norm at 2"), 0.15),
            claims.above("batch norm at 32 minus at 2",
                         n("batch norm at 32") - n("batch norm at 2"), 0.15),
            claims.above("group norm at 2 minus at 32",
                         n("group norm at 2") - n("group norm at 32"), -0.03),
            claims.above("layer norm at 2 minus at 32",
                         n("layer norm at 2") - n("layer norm at 32"), -0.03),
            claims.above("batch renorm minus batch norm at 2",
                         n("batch renorm at 2") - n("batch norm at 2"), 0.05),
            claims.above("group norm minus batch renorm at 2",
                         n("group norm at 2") - n("batch renorm at 2"), 0.02),
        ],
        result=sweep,
    )


def renorm_outputs(
    value: float,
    m: int,
    r_max: float,
    d_max: float,
    draws: int = 2000,
    seed: int = 0,
) -> torch.Tensor:
    """Batch renorm's output for one example whose input is ``value``, over ``draws`` random
    batches of ``m`` (the example and ``m - 1`` batch-mates drawn from N(0, 1)).

    The running statistics are the population's (mean 0, variance 1), so the output the
    network meets at test time is ``value`` itself (up to ``eps``). With ``r_max=1, d_max=0``
    it is plain batch norm: the output depends on the batch-mates; as the limits open it
    approaches ``value``.
    """
    gen = torch.Generator().manual_seed(seed)
    # Column k is batch k (one feature, so renorm_normalize's per-channel axis runs over the
    # batches): all draws at once.
    z = torch.randn(m, draws, generator=gen, dtype=torch.float64)
    z[0] = value
    eps = 1e-5
    mean = torch.zeros(draws, dtype=torch.float64)
    sigma = torch.full((draws,), (1.0 + eps) ** 0.5, dtype=torch.float64)
    return norms.renorm_normalize(z, mean, sigma, eps, r_max, d_max)[0]


def class_subset(data: Split, classes: Sequence[int]) -> Split:
    """The examples of ``data`` whose label is in ``classes`` (training and test sets)."""
    keep = torch.tensor(list(classes))
    train_mask, test_mask = torch.isin(data.y_train, keep), torch.isin(data.y_test, keep)
    return Split(data.X_train[train_mask], data.y_train[train_mask],
                 data.X_test[test_mask], data.y_test[test_mask])


def finetune(
    model: nn.Module,
    data: Split,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    freeze_bn_stats: bool,
    seed: int = 0,
) -> float:
    """Fine-tune ``model`` in place with SGD (:func:`~course_lib.experiments.lab.training.train`);
    return its test accuracy in evaluation mode.

    ``freeze_bn_stats=True`` trains with ``bn_mode="frozen"``: every batch norm layer
    normalizes with its running statistics and leaves them alone, while its :math:`\\gamma`
    and :math:`\\beta` and the weights still learn. ``False`` is the default behaviour of
    ``model.train()``: each small batch is normalized with its own statistics, which also
    overwrite the running averages.
    """
    history = train(model, data, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                    eval_every=steps, progress=False,
                    bn_mode="frozen" if freeze_bn_stats else "train")
    return history.final_test_acc


@dataclass(frozen=True)
class FinetuneSettings:
    """Pretrain on digits 0-4, then fine-tune on a few examples of digits 5-9.

    Attributes:
        pretrain_steps, pretrain_lr, pretrain_batch: the pretraining (SGD).
        n_examples: examples of digits 5-9 the fine-tuning sees.
        batch_sizes: the fine-tuning's (small) batches, each a separate fine-tuning.
        steps, lr: the fine-tuning (SGD).
    """

    pretrain_steps: int = 300
    pretrain_lr: float = 0.1
    pretrain_batch: int = 32
    n_examples: int = 50
    batch_sizes: tuple[int, ...] = (2, 4)
    steps: int = 100
    lr: float = 0.05


def finetune_comparison(data: Split, settings: FinetuneSettings, seed: int = 0) -> dict[str, float]:
    """Pretrain on digits 0-4, fine-tune on ``n_examples`` of digits 5-9 with small batches.

    Returns the test accuracy on 0-4 after pretraining (``"pretrained"``), and on 5-9 after
    fine-tuning with batches of ``B`` with batch norm in training mode
    (``"training mode, batch B"``) and with its statistics frozen (``"frozen, batch B"``).
    Both fine-tunings start from the same network and see the same batches.
    """
    s = settings
    pre = class_subset(data, range(5))
    net = make_mlp(data.n_features, [100, 100], data.n_classes, activation="relu",
                   bn="before", seed=seed)
    history = train(net, pre, steps=s.pretrain_steps, lr=s.pretrain_lr,
                    batch_size=s.pretrain_batch, seed=seed, eval_every=s.pretrain_steps,
                    progress=False)
    new = class_subset(data, range(5, 10))
    pick = torch.randperm(new.n_train, generator=torch.Generator().manual_seed(seed))
    pick = pick[:s.n_examples]
    small = Split(new.X_train[pick], new.y_train[pick], new.X_test, new.y_test)
    out = {"pretrained": history.final_test_acc}
    for b in s.batch_sizes:
        for label, freeze in (("training mode", False), ("frozen", True)):
            out[f"{label}, batch {b}"] = finetune(
                copy.deepcopy(net), small, steps=s.steps, lr=s.lr, batch_size=b,
                freeze_bn_stats=freeze, seed=seed)
    return out


@claims.claim(
    "finetune-frozen-statistics",
    chapter=8,
    statement="Fine-tuning with batches of 2, batch norm with frozen statistics ends ahead of "
              "batch norm in training mode on average, by more than 0.15 in accuracy; with "
              "batches of 4 neither is ahead on average by more than 0.05.",
    settings=FinetuneSettings(),
    section="pitfalls",
)
def frozen_statistics_win(settings: FinetuneSettings, seed: int) -> claims.Evidence:
    ft = finetune_comparison(load_digits_split(seed=0), settings, seed=seed)
    return claims.Evidence(
        numbers=ft,
        checks=[claims.above("pretrained accuracy on digits 0-4", ft["pretrained"], 0.9)],
        result=ft,
    )


def _gains(seeds: list, b: int) -> list[float]:
    return [n[f"frozen, batch {b}"] - n[f"training mode, batch {b}"] for n in seeds]


@frozen_statistics_win.aggregate
def _(seeds: list) -> list[claims.Check]:
    gain_4 = claims.mean(_gains(seeds, 4))
    return [claims.above("mean gain of frozen statistics, batch 2",
                         claims.mean(_gains(seeds, 2)), 0.15),
            claims.below("mean gain of frozen statistics, batch 4", gain_4, 0.05),
            claims.above("mean gain of frozen statistics, batch 4", gain_4, -0.05)]
