r"""The loss landscape along the gradient: Santurkar et al.'s Fig. 4.

Santurkar et al. (2018) stand at the current parameters :math:`\theta`, compute the gradient
:math:`g = \nabla L(\theta)` on a batch, and look at points :math:`\theta - \eta g` for a
range of step sizes :math:`\eta` (:func:`walk_along_gradient`). From that walk come three
numbers (:func:`smoothness`):

.. math::

    \text{loss variation} &= \max_\eta L(\theta - \eta g) - \min_\eta L(\theta - \eta g) \\
    \text{gradient change}(\eta) &= \lVert \nabla L(\theta - \eta g) - \nabla L(\theta)
        \rVert_2 \quad \text{(small: the gradient is predictive)} \\
    \text{effective } \beta\text{-smoothness} &= \max_\eta
        \frac{\lVert \nabla L(\theta - \eta g) - \nabla L(\theta) \rVert_2}
             {\lVert \eta g \rVert_2}

A small loss variation and gradient change mean that a gradient step lands where the gradient
said it would: the step size can be large without surprises.

:func:`probe_gradient_direction` runs the walk on a model (in training mode by default, as a
training step sees it: batch statistics and noisy BN's noise), with the same batch, running
statistics and noise at every point, and leaves the model exactly as it was
(:func:`course_lib.borrow.as_found`); :func:`landscape_recorder` plugs
it into :func:`course_lib.experiments.lab.training.train`'s ``record`` hook.

Example (``data``, ``model`` and ``train`` as in :mod:`course_lib.experiments.probes.percentiles`):
    >>> history = train(model, data, steps=200, lr=1.0, eval_every=20,
    ...                 record=landscape_recorder(data.X_train[:500], data.y_train[:500],
    ...                                           etas=np.linspace(0.2, 2, 10)))
    >>> sorted(history.records)[:3]
    ['beta_smoothness', 'grad_change_max', 'grad_change_min']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.borrow import as_found
from course_lib.experiments.lab.model_state import (
    batch_loss_and_grads,
    check_probe,
    check_probe_batch,
    on_model,
)

__all__ = [
    "GradientDirectionProbe",
    "landscape_recorder",
    "probe_gradient_direction",
    "smoothness",
    "walk_along_gradient",
]


def walk_along_gradient(
    loss_and_grad: Callable[[Tensor], tuple[float, Tensor]],
    theta: Tensor,
    etas: np.ndarray,
) -> tuple[float, Tensor, np.ndarray, np.ndarray]:
    """From the parameters theta (one vector), step to theta - eta * g for each eta.

    loss_and_grad(theta) -> (L(theta), gradient at theta), always on the same batch.
    Returns L(theta), g, and for each eta the loss and how far the gradient moved.
    """
    loss0, g = loss_and_grad(theta)
    losses, grad_changes = [], []
    for eta in etas:
        loss, grad = loss_and_grad(theta - float(eta) * g)
        losses.append(loss)
        grad_changes.append(float(torch.linalg.vector_norm((grad - g).double())))
    return loss0, g, np.array(losses), np.array(grad_changes)


def smoothness(
    etas: np.ndarray, g_norm: float, losses: np.ndarray, grad_changes: np.ndarray
) -> tuple[float, float, float]:
    """Santurkar et al.'s three numbers from one walk along the gradient g."""
    loss_variation = losses.max() - losses.min()
    grad_change = grad_changes.max()                        # small: g stays predictive
    step_lengths = etas * g_norm                            # ||eta g|| for each eta
    beta_smoothness = np.max(grad_changes / step_lengths)   # change per distance moved
    return float(loss_variation), float(grad_change), float(beta_smoothness)


@dataclass(frozen=True)
class GradientDirectionProbe:
    r"""What the loss and its gradient do along :math:`\theta - \eta g`, for each :math:`\eta`.

    Attributes:
        etas: ``(K,)`` step sizes :math:`\eta > 0`, increasing.
        loss0: :math:`L(\theta)`.
        grad_norm: :math:`\lVert g \rVert_2`, the gradient's norm at :math:`\theta`.
        losses: ``(K,)`` :math:`L(\theta - \eta g)`.
        grad_changes: ``(K,)`` :math:`\lVert \nabla L(\theta - \eta g) - g \rVert_2`.

    ``loss_variation``, ``grad_change`` and ``beta_smoothness`` are :func:`smoothness`'s
    numbers (``beta_smoothness`` is ``nan`` when the gradient is exactly zero: there is no
    direction to move in).
    """

    etas: np.ndarray
    loss0: float
    grad_norm: float
    losses: np.ndarray
    grad_changes: np.ndarray

    def _smoothness(self) -> tuple[float, float, float]:
        if self.grad_norm == 0.0:
            return float(self.losses.max() - self.losses.min()), 0.0, math.nan
        return smoothness(self.etas, self.grad_norm, self.losses, self.grad_changes)

    @property
    def loss_variation(self) -> float:
        """:math:`\\max_\\eta L - \\min_\\eta L` over the probed step sizes."""
        return self._smoothness()[0]

    @property
    def grad_change(self) -> float:
        """The largest gradient change, :math:`\\max_\\eta \\lVert \\nabla L(\\theta - \\eta g) - g\\rVert`."""
        return float(self.grad_changes.max())

    @property
    def beta_smoothness(self) -> float:
        """Effective :math:`\\beta`-smoothness: :math:`\\max_\\eta \\lVert\\Delta\\nabla L\\rVert / \\lVert \\eta g \\rVert`."""
        return self._smoothness()[2]

    @staticmethod
    def record_keys(prefix: str = "") -> list[str]:
        """The keys of :meth:`as_record`."""
        return [
            prefix + k
            for k in ("loss0", "loss_min", "loss_max", "loss_variation", "grad_norm",
                      "grad_change_min", "grad_change_max", "beta_smoothness")
        ]

    def as_record(self, prefix: str = "") -> dict[str, float]:
        """The summary numbers as a dict, for a recorder (keys: :meth:`record_keys`)."""
        return {
            f"{prefix}loss0": self.loss0,
            f"{prefix}loss_min": float(self.losses.min()),
            f"{prefix}loss_max": float(self.losses.max()),
            f"{prefix}loss_variation": self.loss_variation,
            f"{prefix}grad_norm": self.grad_norm,
            f"{prefix}grad_change_min": float(self.grad_changes.min()),
            f"{prefix}grad_change_max": self.grad_change,
            f"{prefix}beta_smoothness": self.beta_smoothness,
        }


def _check_etas(etas: object, where: str) -> np.ndarray:
    e = np.asarray(etas, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(
            f"{where}: etas must be a non-empty 1D list of positive step sizes, e.g. "
            f"np.linspace(0.25, 2, 8) (got {etas!r})"
        )
    return np.sort(e)


def probe_gradient_direction(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    etas: Sequence[float] | np.ndarray,
    mode: str = "train",
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> GradientDirectionProbe:
    r""":func:`walk_along_gradient` on a model: from :math:`\theta` along :math:`-g`.

    :math:`g = \nabla_\theta L(\theta)` is the gradient of ``loss_fn(model(X), y)`` with
    respect to all trainable parameters (one long vector); for each :math:`\eta` in ``etas``
    the parameters are set to :math:`\theta - \eta g` and the loss and gradient are computed
    again on the same batch. Every forward pass sees the same batch, the same running
    statistics and the same noise (random generators are reset before each), so the only
    thing that changes is :math:`\theta`. Afterwards the model is exactly as before
    (:func:`course_lib.borrow.as_found`): parameters, ``.grad``,
    buffers, modes, random states.

    Args:
        model: the network at the current training step.
        X, y: a fixed batch (e.g. a few hundred training examples) and its labels.
        etas: step sizes :math:`\eta > 0` (Santurkar et al. use a range around the learning
            rate).
        mode: ``"train"`` (batch statistics, as the training loss) or ``"eval"``.
        loss_fn: ``loss_fn(logits, y) -> scalar``; cross-entropy by default.

    Returns:
        A :class:`GradientDirectionProbe` (``loss_variation``, ``grad_change``,
        ``beta_smoothness`` and the curves behind them).

    Example:
        >>> probe = probe_gradient_direction(model, data.X_train[:500], data.y_train[:500],
        ...                                  etas=np.linspace(0.2, 2.0, 10))
        >>> probe.loss_variation, probe.grad_change, probe.beta_smoothness
    """
    where = "probe_gradient_direction"
    check_probe(model, X, where, y)
    eta_arr = _check_etas(etas, where)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{where}: the model has no trainable parameters")
    X, y = on_model(model, X, y)

    with as_found(model, _checks.check_mode(mode, where), state=True) as snap:

        def loss_and_grad(theta: Tensor) -> tuple[float, Tensor]:
            load_vector(theta, params)
            loss, grads = batch_loss_and_grads(model, X, y, params, snap, loss_fn)
            return loss, torch.cat([g.reshape(-1) for g in grads])

        theta = torch.cat([p.detach().reshape(-1) for p in params]).clone()
        loss0, g, losses, changes = walk_along_gradient(loss_and_grad, theta, eta_arr)
    return GradientDirectionProbe(
        etas=eta_arr,
        loss0=loss0,
        grad_norm=float(torch.linalg.vector_norm(g.double())),
        losses=losses,
        grad_changes=changes,
    )


def load_vector(theta: Tensor, params: Sequence[Tensor]) -> None:
    """Copy the long vector ``theta`` into ``params``, in order (no gradient recorded)."""
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(theta[offset : offset + p.numel()].view_as(p))
            offset += p.numel()


def landscape_recorder(
    X: Tensor,
    y: Tensor,
    etas: Sequence[float] | np.ndarray,
    mode: str = "train",
    prefix: str = "",
    every: int = 1,
) -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``record(step, model)`` for :func:`course_lib.experiments.lab.training.train`: the landscape probe.

    Calls :func:`probe_gradient_direction` on the fixed batch ``(X, y)`` and returns
    :meth:`GradientDirectionProbe.as_record`: ``loss0``, ``loss_min``, ``loss_max``,
    ``loss_variation``, ``grad_norm``, ``grad_change_min``, ``grad_change_max``,
    ``beta_smoothness`` (each with ``prefix``).

    A probe costs ``len(etas) + 1`` forward and backward passes on ``X``. With ``every=k``
    it runs only at steps that are multiples of ``k`` and records ``nan`` at the other
    evaluations (so other recorders can be called more often); summarize with
    ``np.nanmedian``.

    Example:
        >>> rec = landscape_recorder(data.X_train[:500], data.y_train[:500], np.linspace(0.2, 2, 10))
        >>> history = train(model, data, steps=500, lr=1.0, eval_every=25, record=rec)
        >>> np.median(history.records["loss_variation"])
    """
    check_probe_batch(X, "landscape_recorder", y)
    eta_arr = _check_etas(etas, "landscape_recorder")
    _checks.check_mode(mode, "landscape_recorder")
    _checks.check_int(every, "every", minimum=1, where="landscape_recorder")
    skipped = {k: math.nan for k in GradientDirectionProbe.record_keys(prefix)}

    def record(step: int, model: nn.Module) -> dict[str, float]:
        if step % every:
            return dict(skipped)
        return probe_gradient_direction(model, X, y, eta_arr, mode).as_record(prefix)

    record.__name__ = "landscape_recorder"
    return record
