r"""Internal covariate shift measured on the gradient: Santurkar et al.'s definition.

Ioffe & Szegedy describe internal covariate shift by the *distribution of a layer's inputs*
(:mod:`course_lib.experiments.probes.percentiles` follows its percentiles). Santurkar et al. (2018,
Definition 2.1) measure it by what the shift does to *learning*: how much the gradient of
layer :math:`l`'s weights changes when the layers before it take their update. On one batch
:math:`(X, y)`, with all parameters at :math:`\theta`,

- :math:`G` is the gradient of the loss with respect to :math:`W^{[l]}`;
- :math:`G'` is the same gradient after the parameters of layers :math:`1, \dots, l-1` take
  one SGD step (learning rate :math:`\alpha`) and everything from layer :math:`l` on stays;

and the shift is :math:`\lVert G - G' \rVert_2` (large: layer :math:`l`'s gradient is stale
once the layers before it move) together with :math:`\cos(G, G')` (near 1: the direction
survives the update). :func:`gradient_ics` is that recipe; :func:`measure_gradient_ics` runs
it on a model (training mode by default, so batch norm uses the batch's statistics as in a
training step) and leaves the model exactly as it was; :func:`gradient_ics_recorder` plugs it
into :func:`course_lib.experiments.lab.training.train`'s ``record`` hook.

By this measure Santurkar et al. found that batch norm does *not* reduce internal covariate
shift (in their networks it often increased it), although it keeps each layer's input
distribution steady. Chapter 4 measures both definitions side by side.

Example:
    >>> from course_lib.experiments.lab.data import load_digits_split
    >>> from course_lib.experiments.lab.models import make_mlp
    >>> data = load_digits_split(seed=0)
    >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
    >>> shift = measure_gradient_ics(model, data.X_train[:500], data.y_train[:500],
    ...                              "linear3.weight", lr=2.0)
    >>> shift.cosine      # close to 1 when the earlier layers' step barely turns G
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

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

__all__ = ["GradientShift", "gradient_ics", "gradient_ics_recorder", "measure_gradient_ics"]

Params = Mapping[str, Tensor]


def gradient_ics(
    grad: Callable[[Params], Params],
    theta: Params,
    earlier: Sequence[str],
    W_l: str,
    lr: float,
) -> tuple[float, float, float]:
    """Santurkar et al.'s internal covariate shift of layer l, measured on its gradient.

    grad(theta) -> {name: dL/d(name)} on one fixed batch. G is the gradient of W[l] now;
    G_new (G' in the text) is the same after the layers `earlier` take one SGD step.
    Returns ||G - G'||, cos(G, G') and ||G||.
    """
    g = grad(theta)                                  # every parameter's gradient
    G = g[W_l]
    theta_new = {k: v - lr * g[k] if k in earlier else v for k, v in theta.items()}
    G_new = grad(theta_new)[W_l]                     # layer l itself has not moved
    norm = torch.linalg.vector_norm
    cos = (G * G_new).sum() / (norm(G) * norm(G_new))
    return float(norm(G - G_new)), float(cos), float(norm(G))


@dataclass(frozen=True)
class GradientShift:
    """What :func:`gradient_ics` measured for one layer.

    Attributes:
        l2: :math:`\\lVert G - G' \\rVert_2`.
        cosine: :math:`\\cos(G, G')` (``nan`` if either gradient is exactly zero).
        grad_norm: :math:`\\lVert G \\rVert_2`.
    """

    l2: float
    cosine: float
    grad_norm: float

    @property
    def relative(self) -> float:
        """:math:`\\lVert G - G' \\rVert / \\lVert G \\rVert`: the change in units of :math:`G`."""
        return self.l2 / self.grad_norm if self.grad_norm > 0 else math.nan

    def as_record(self, prefix: str = "") -> dict[str, float]:
        """Keys ``ics_l2``, ``ics_cosine``, ``ics_relative``, ``ics_grad_norm``, after ``prefix``."""
        return {
            f"{prefix}ics_l2": self.l2,
            f"{prefix}ics_cosine": self.cosine,
            f"{prefix}ics_relative": self.relative,
            f"{prefix}ics_grad_norm": self.grad_norm,
        }


def _check_weight(model: nn.Module, weight: object, where: str) -> list[str]:
    """The names of the trainable parameters before ``weight``, in the model's order."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not isinstance(weight, str) or weight not in names:
        raise ValueError(
            f"{where}: weight must name a trainable parameter of the model, such as "
            f"'linear3.weight' (got {weight!r}); the model has {names}"
        )
    earlier = names[: names.index(weight)]
    if not earlier:
        raise ValueError(
            f"{where}: {weight!r} is the model's first parameter; internal covariate shift "
            f"needs layers before it whose update can move its gradient"
        )
    return earlier


def measure_gradient_ics(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    weight: str,
    lr: float,
    mode: str = "train",
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> GradientShift:
    """:func:`gradient_ics` of the layer whose weight is ``weight``, on ``model`` and one batch.

    "Earlier" are all trainable parameters that come before ``weight`` in
    ``model.named_parameters()`` (for a :func:`course_lib.experiments.lab.models.make_mlp` model and
    ``"linear3.weight"``: ``linear1``, ``bn1``, ``linear2``, ``bn2``). Both gradients see the
    same batch, running statistics and noise; afterwards the model is exactly as it was.

    Args:
        model: the network at the current training step.
        X, y: a fixed batch and its labels.
        weight: the name of :math:`W^{[l]}`, e.g. ``"linear3.weight"``.
        lr: the SGD learning rate of the earlier layers' step (the training run's).
        mode: ``"train"`` (batch statistics, as in a training step) or ``"eval"``.
        loss_fn: ``loss_fn(logits, y) -> scalar``; cross-entropy by default.

    Returns:
        A :class:`GradientShift` (``l2``, ``cosine``, ``relative``, ``grad_norm``).
    """
    where = "measure_gradient_ics"
    check_probe(model, X, where, y)
    earlier = _check_weight(model, weight, where)
    lr = _checks.check_number(lr, "lr", above=0.0, where=where)  # the earlier layers' SGD step
    X, y = on_model(model, X, y)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    with as_found(model, _checks.check_mode(mode, where), state=True) as snap:

        def grad(theta: Params) -> dict[str, Tensor]:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(theta[name])
            _, grads = batch_loss_and_grads(model, X, y, list(params.values()), snap, loss_fn)
            return dict(zip(params, grads))

        theta = {name: p.detach().clone() for name, p in params.items()}
        l2, cos, g_norm = gradient_ics(grad, theta, earlier, weight, lr)
    return GradientShift(l2=l2, cosine=cos, grad_norm=g_norm)


def gradient_ics_recorder(
    X: Tensor,
    y: Tensor,
    weight: str,
    lr: float,
    mode: str = "train",
    prefix: str = "",
    every: int = 1,
) -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``record(step, model)`` for :func:`course_lib.experiments.lab.training.train`.

    Calls :func:`measure_gradient_ics` on the fixed batch ``(X, y)`` and returns
    :meth:`GradientShift.as_record`. With ``every=k`` it measures only at steps that are
    multiples of ``k`` and records ``nan`` at the other evaluations.

    Example:
        >>> rec = gradient_ics_recorder(data.X_train[:500], data.y_train[:500],
        ...                             "linear3.weight", lr=2.0, every=50)
        >>> history = train(model, data, steps=500, lr=2.0, eval_every=25, record=rec)
    """
    where = "gradient_ics_recorder"
    check_probe_batch(X, where, y)
    _checks.check_mode(mode, where)
    _checks.check_int(every, "every", minimum=1, where=where)
    lr = _checks.check_number(lr, "lr", above=0.0, where=where)  # the earlier layers' SGD step
    if not isinstance(weight, str):
        raise ValueError(
            f"{where}: weight must be a parameter name such as 'linear3.weight' (got {weight!r})"
        )
    skipped = {k: math.nan for k in GradientShift(0.0, 0.0, 0.0).as_record(prefix)}

    def record(step: int, model: nn.Module) -> dict[str, float]:
        if step % every:
            return dict(skipped)
        return measure_gradient_ics(model, X, y, weight, lr, mode).as_record(prefix)

    record.__name__ = "gradient_ics_recorder"
    return record
