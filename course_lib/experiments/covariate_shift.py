r"""Covariate shift and concept shift on a small 2D task (chapter 4).

A cat classifier trained on photos of black cats meets a photo of an orange cat. What makes
a cat a cat has not changed; only *where the inputs come from* has. In symbols, the
conditional distribution of the label, :math:`p(y \mid x)`, is the same, and the input
distribution :math:`p(x)` moved. That is **covariate shift**, and a model that only ever saw
one region of input space has no reason to be right in another.

:func:`covariate_shift_experiment` shows it on :func:`course_lib.experiments.lab.data.make_covariate_shift_task`:
2D points labeled by one fixed rule (:func:`course_lib.experiments.lab.data.covariate_shift_rule`: above the
wave :math:`x_2 = 1.5 \sin x_1` or not). A small MLP trained on points around the origin is
nearly perfect there and barely better than always answering "below" on points around
:math:`(3, 0)`, labeled by the very same rule. :func:`accuracy_vs_shift` moves the test cloud
step by step, and :func:`decision_grid` gives the learned boundary for a plot.

**Concept shift** is the other way round: the inputs keep their distribution and the rule
changes (:func:`concept_shift_rule` raises the wave). :func:`concept_shift_experiment` measures
the same classifier on fresh inputs from its training cloud under the new rule, as they are
and re-standardized with their own statistics (nothing to correct: their statistics did not
move), beside covariate shift's cure, a network trained on labeled data from both clouds.

The chapter's two claims are registered at the bottom of the module.

Example:
    >>> result = covariate_shift_experiment(seed=0)
    >>> result.in_dist_acc, result.shifted_acc
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from course_lib import _checks
from course_lib.experiments import claims
from course_lib.experiments.lab.data import (
    WAVE_AMPLITUDE,
    CovariateShiftTask,
    Split,
    covariate_shift_rule,
    make_covariate_shift_task,
)
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import History, evaluate, train
from course_lib.borrow import as_found

__all__ = [
    "ConceptShiftResult",
    "CovariateShiftResult",
    "ShiftSettings",
    "SETTINGS",
    "accuracy_vs_shift",
    "concept_shift_experiment",
    "concept_shift_rule",
    "covariate_shift_experiment",
    "decision_grid",
]


@dataclass(frozen=True)
class ShiftSettings:
    """The classifier and its training for the covariate-shift experiment.

    Attributes:
        widths: hidden layer sizes of the MLP.
        activation: its activation (sigmoid, as in the rest of the course).
        lr: SGD learning rate.
        steps: training steps (mini-batches of ``batch_size``).
        batch_size: mini-batch size.
        shift: how far the shifted test inputs move along :math:`x_1`.
        n_train, n_test: sizes of the training set and of each test set.
        concept_offset: concept shift: how far the new rule raises the wave
            (:func:`concept_shift_rule`).
        cure_steps, cure_optimizer, cure_lr: the training of the classifier trained on both
            clouds. The wave over both clouds is harder to fit than over one; SGD at ``lr``
            gets there on some seeds only, Adam on every seed the course checks.
        shifts: the positions of the moved test cloud that :func:`accuracy_vs_shift` measures
            for the claim.
    """

    widths: tuple[int, ...] = (32, 32)
    activation: str = "sigmoid"
    lr: float = 2.0
    steps: int = 1000
    batch_size: int = 60
    shift: float = 3.0
    n_train: int = 1000
    n_test: int = 1000
    concept_offset: float = 1.0
    cure_steps: int = 1500
    cure_optimizer: str = "adam"
    cure_lr: float = 0.01
    shifts: tuple[float, ...] = tuple(np.round(np.arange(0.0, 5.01, 0.25), 2).tolist())


#: The chapter's settings.
SETTINGS = ShiftSettings()


@dataclass(frozen=True)
class CovariateShiftResult:
    """A classifier trained on the source inputs, tested on both.

    Attributes:
        seed: seeds the point clouds, the weights and the mini-batch order.
        task: the :class:`course_lib.experiments.lab.data.CovariateShiftTask` (``source``, ``shifted``).
        model: the trained classifier (2 inputs, 2 logits).
        history: its training history.
        in_dist_acc: accuracy on fresh inputs from the training distribution.
        shifted_acc: accuracy on the shifted inputs (same rule).
        shifted_share_class0: share of the shifted inputs whose true label is 0; a model that
            answers 0 everywhere there scores exactly this.
        shifted_pred_class0: share of the shifted inputs the model calls class 0.
    """

    seed: int
    task: CovariateShiftTask
    model: nn.Module = field(repr=False)
    history: History = field(repr=False)
    in_dist_acc: float
    shifted_acc: float
    shifted_share_class0: float
    shifted_pred_class0: float


def _predict(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    with as_found(model, "eval"), torch.no_grad():
        return model(X).argmax(dim=1)


def covariate_shift_experiment(
    seed: int = 0, settings: ShiftSettings = SETTINGS
) -> CovariateShiftResult:
    """Train an MLP on the source inputs and measure its accuracy before and after the shift.

    Args:
        seed: seeds the data, the initial weights and the mini-batch order.
        settings: a :class:`ShiftSettings`.

    Returns:
        A :class:`CovariateShiftResult`. It is remembered for its seed and settings, so the
        covariate- and concept-shift claims train the classifier once; do not train its
        ``model`` further.
    """
    return _covariate_shift_experiment(seed, settings)


@functools.lru_cache(maxsize=16)
def _covariate_shift_experiment(seed: int, settings: ShiftSettings) -> CovariateShiftResult:
    task = make_covariate_shift_task(
        seed=seed, n_train=settings.n_train, n_test=settings.n_test, shift=settings.shift
    )
    model = make_mlp(2, list(settings.widths), 2, activation=settings.activation, seed=seed)
    history = train(
        model,
        task.source,
        steps=settings.steps,
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=seed,
        eval_every=settings.steps,
    )
    shifted = task.shifted
    return CovariateShiftResult(
        seed=seed,
        task=task,
        model=model,
        history=history,
        in_dist_acc=evaluate(model, task.source.X_test, task.source.y_test),
        shifted_acc=evaluate(model, shifted.X_test, shifted.y_test),
        shifted_share_class0=float((shifted.y_test == 0).double().mean()),
        shifted_pred_class0=float((_predict(model, shifted.X_test) == 0).double().mean()),
    )


def accuracy_vs_shift(
    model: nn.Module, seed: int, shifts: Sequence[float], settings: ShiftSettings = SETTINGS
) -> np.ndarray:
    """Accuracy of ``model`` on the test cloud moved by each shift (no retraining).

    For each ``shift``, the shifted test set of ``make_covariate_shift_task(seed, shift=...)``
    (with the sizes of ``settings``): the same random points as in the experiment, moved by
    ``(shift, 0)`` and labeled by the same rule. With ``shift = 0`` they are
    in-distribution.

    Returns:
        ``(len(shifts),)`` accuracies.

    Example:
        >>> accuracy_vs_shift(result.model, 0, [0.0, 1.0, 2.0, 3.0])
    """
    return np.array(
        [
            evaluate(model, t.X_test, t.y_test)
            for t in (
                make_covariate_shift_task(
                    seed=seed, n_train=settings.n_train, n_test=settings.n_test, shift=float(s)
                ).shifted
                for s in shifts
            )
        ]
    )


def decision_grid(
    model: nn.Module,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 120,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's probability of class 1 on an ``n x n`` grid, for contour plots.

    Returns:
        ``(x1, x2, p1)``: meshgrid arrays ``(n, n)`` and the softmax probability of class 1
        (eval mode, no gradients). The learned boundary is the contour ``p1 = 0.5``.

    Example:
        >>> x1, x2, p1 = decision_grid(result.model, (-2.5, 5.5), (-3, 3))
        >>> plt.contour(x1, x2, p1, levels=[0.5])
    """
    for name, lim in (("xlim", xlim), ("ylim", ylim)):
        if len(lim) != 2 or not all(np.isfinite(lim)) or not lim[0] < lim[1]:
            raise ValueError(f"decision_grid: {name} must be (low, high) with low < high (got {lim!r})")
    if not _checks.is_int(n) or n < 2:
        raise ValueError(f"decision_grid: n must be an int >= 2 (got {n!r})")
    x1, x2 = np.meshgrid(np.linspace(*xlim, n), np.linspace(*ylim, n))
    grid = torch.tensor(np.column_stack([x1.ravel(), x2.ravel()]), dtype=torch.float32)
    with as_found(model, "eval"), torch.no_grad():
        p1 = torch.softmax(model(grid), dim=1)[:, 1].double().numpy()
    return x1, x2, p1.reshape(n, n)


# ------------------------------------------------------------------------------ concept shift


def concept_shift_rule(X: torch.Tensor, offset: float) -> torch.Tensor:
    r"""A changed rule for the same inputs: the wave of
    :func:`~course_lib.experiments.lab.data.covariate_shift_rule` raised by ``offset``,

    .. math::

        y = 1 \quad\text{if}\quad x_2 > 1.5 \sin x_1 + \text{offset}, \qquad 0 \text{ otherwise}.

    Under **concept shift** the inputs keep their distribution :math:`p(x)` and the rule
    :math:`p(y \mid x)` changes: points just above the old wave now belong to class 0.
    """
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"concept_shift_rule: X must have shape (N, 2) (got {tuple(X.shape)})")
    return (X[:, 1] > WAVE_AMPLITUDE * torch.sin(X[:, 0]) + offset).long()


@dataclass(frozen=True)
class ConceptShiftResult:
    """The classifier of :func:`covariate_shift_experiment` under concept shift, beside the
    cure that works for covariate shift.

    Attributes:
        covariate: the covariate-shift experiment (its ``model`` learned the old rule).
        X_new: fresh inputs from the training distribution, the concept-shift test set.
        y_old, y_new: their labels under the old and the new rule.
        agreement: share of ``X_new`` on which the two rules agree.
        acc_old, acc_new: the classifier's accuracy on ``X_new`` under each rule.
        acc_new_restandardized: its accuracy under the new rule after the inputs are
            standardized with their own mean and standard deviation and mapped back to the
            training inputs' (what refitting an input normalization on new data does).
        both_clouds: a classifier trained on the training cloud *and* on labeled points from
            the moved cloud, with the one unchanged rule.
        both_clouds_acc: its accuracy ``(training cloud, moved cloud)``.
    """

    covariate: CovariateShiftResult = field(repr=False)
    X_new: torch.Tensor = field(repr=False)
    y_old: torch.Tensor = field(repr=False)
    y_new: torch.Tensor = field(repr=False)
    agreement: float
    acc_old: float
    acc_new: float
    acc_new_restandardized: float
    both_clouds: nn.Module = field(repr=False)
    both_clouds_acc: tuple[float, float]


def _restandardized(X: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``X`` standardized with its own statistics, then given ``reference``'s mean and std."""
    z = (X - X.mean(0)) / X.std(0)
    return z * reference.std(0) + reference.mean(0)


def concept_shift_experiment(seed: int = 0, settings: ShiftSettings = SETTINGS) -> ConceptShiftResult:
    """Concept shift and covariate shift side by side, on the chapter's 2D task.

    - Concept shift: fresh inputs from the training cloud (``p(x)`` unchanged), labeled by
      :func:`concept_shift_rule`; the classifier of :func:`covariate_shift_experiment` is
      measured on them as they are and after re-standardizing them with their own statistics.
    - Covariate shift's cure: the same classifier architecture, trained on the training cloud
      plus labeled points from the moved cloud (one rule), measured on both clouds.
    """
    cov = covariate_shift_experiment(seed, settings)
    source = cov.task.source
    # Another draw of the same task: fresh points from the same clouds, never trained on.
    fresh = make_covariate_shift_task(seed=seed + 1, n_train=settings.n_train,
                                      n_test=settings.n_test, shift=settings.shift)
    X_new = fresh.source.X_test
    y_old, y_new = covariate_shift_rule(X_new), concept_shift_rule(X_new, settings.concept_offset)
    acc_new = evaluate(cov.model, X_new, y_new)
    acc_re = evaluate(cov.model, _restandardized(X_new, source.X_train), y_new)

    both = Split(torch.cat([source.X_train, fresh.shifted.X_test]),
                 torch.cat([source.y_train, fresh.shifted.y_test]),
                 source.X_test, source.y_test)
    model = make_mlp(2, list(settings.widths), 2, activation=settings.activation, seed=seed)
    train(model, both, steps=settings.cure_steps, lr=settings.cure_lr,
          optimizer=settings.cure_optimizer, batch_size=settings.batch_size, seed=seed,
          eval_every=settings.cure_steps)
    shifted = cov.task.shifted
    both_acc = (evaluate(model, source.X_test, source.y_test),
                evaluate(model, shifted.X_test, shifted.y_test))
    return ConceptShiftResult(
        covariate=cov, X_new=X_new, y_old=y_old, y_new=y_new,
        agreement=float((y_old == y_new).double().mean()),
        acc_old=evaluate(cov.model, X_new, y_old), acc_new=acc_new,
        acc_new_restandardized=acc_re, both_clouds=model, both_clouds_acc=both_acc,
    )


# ------------------------------------------------------------------------ the chapter's claims


@claims.claim(
    "covariate-shift-breaks-classifier",
    chapter=4,
    statement="A classifier above 96% accurate on its training distribution drops below 65% on "
              "the inputs moved by 3 units, calling almost every one of them class 0, and "
              "below 30% at a shift of 4, although the rule is the same everywhere.",
    settings=SETTINGS,
    section="ch4-covariate-shift",
)
def covariate_shift_breaks(settings: ShiftSettings, seed: int) -> claims.Evidence:
    r = covariate_shift_experiment(seed, settings)
    acc = dict(zip(settings.shifts, accuracy_vs_shift(r.model, seed, settings.shifts, settings)))
    first_below_90 = next((s for s in settings.shifts if acc[s] < 0.9), float("inf"))
    numbers = {
        "accuracy, training distribution": r.in_dist_acc,
        f"accuracy, moved by {settings.shift:g}": r.shifted_acc,
        "share of class 0 among the moved inputs": r.shifted_share_class0,
        "share of moved inputs called class 0": r.shifted_pred_class0,
    }
    numbers |= {f"accuracy at shift {s:g}": acc[s] for s in (1.0, 2.0, 4.0)}
    numbers["first shift with accuracy below 90%"] = first_below_90
    return claims.Evidence(numbers, [
        claims.above("accuracy, training distribution", r.in_dist_acc, 0.96),
        claims.below(f"accuracy, moved by {settings.shift:g}", r.shifted_acc, 0.65),
        claims.above("share of moved inputs called class 0", r.shifted_pred_class0, 0.95),
        claims.above("accuracy at shift 1", acc[1.0], 0.96),
        claims.below("accuracy at shift 4", acc[4.0], 0.3),
        claims.above("first shift with accuracy below 90%", first_below_90, 1.5 - 1e-9),
        claims.below("first shift with accuracy below 90%", first_below_90, 3.0 + 1e-9),
    ], {"result": r, "accuracy_by_shift": acc})


@claims.claim(
    "concept-shift-normalization-cannot-help",
    chapter=4,
    statement="When the rule changes and the inputs do not (concept shift), the classifier's "
              "accuracy falls to the share of inputs on which the two rules agree (within "
              "0.05), and re-standardizing the inputs moves it by less than 0.05; when the "
              "inputs move and the rule does not (covariate shift), a network trained on "
              "labeled data from both regions is above 90% on both.",
    settings=SETTINGS,
    section="ch4-concept-shift",
)
def concept_shift_cannot_be_normalized_away(settings: ShiftSettings, seed: int) -> claims.Evidence:
    r = concept_shift_experiment(seed, settings)
    numbers = {
        "share of inputs where the rules agree": r.agreement,
        "accuracy, old rule": r.acc_old,
        "accuracy, new rule": r.acc_new,
        "accuracy, new rule, inputs re-standardized": r.acc_new_restandardized,
        "trained on both clouds: accuracy, training cloud": r.both_clouds_acc[0],
        "trained on both clouds: accuracy, moved cloud": r.both_clouds_acc[1],
    }
    return claims.Evidence(numbers, [
        claims.above("accuracy drop from old to new rule", r.acc_old - r.acc_new, 0.1),
        claims.below("|accuracy, new rule - share where the rules agree|",
                     abs(r.acc_new - r.agreement), 0.05),
        claims.below("|change from re-standardizing|",
                     abs(r.acc_new_restandardized - r.acc_new), 0.05),
        claims.above("trained on both clouds: accuracy, training cloud", r.both_clouds_acc[0], 0.9),
        claims.above("trained on both clouds: accuracy, moved cloud", r.both_clouds_acc[1], 0.9),
    ], r)
