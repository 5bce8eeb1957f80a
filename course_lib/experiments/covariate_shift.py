r"""Covariate shift on a small 2D task (chapter 4): the rule stays, the inputs move.

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

Example:
    >>> result = covariate_shift_experiment(seed=0)
    >>> result.in_dist_acc, result.shifted_acc        # about 0.99 and 0.59
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from course_lib import _checks
from course_lib.experiments.lab.data import CovariateShiftTask, make_covariate_shift_task
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import History, evaluate, train
from course_lib.borrow import as_found

__all__ = [
    "CovariateShiftResult",
    "ShiftSettings",
    "SETTINGS",
    "accuracy_vs_shift",
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
    """

    widths: tuple[int, ...] = (32, 32)
    activation: str = "sigmoid"
    lr: float = 2.0
    steps: int = 1000
    batch_size: int = 60
    shift: float = 3.0
    n_train: int = 1000
    n_test: int = 1000


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
        A :class:`CovariateShiftResult`.

    Example:
        >>> r = covariate_shift_experiment(seed=0)
        >>> r.in_dist_acc > 0.96, r.shifted_acc < 0.65
        (True, True)
    """
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
