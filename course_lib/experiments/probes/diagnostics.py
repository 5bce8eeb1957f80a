r"""Per-layer diagnostics of a deep network: Karpathy's statistics, computed one way for all.

Three looks inside a network, the ones Karpathy uses in *makemore* part 3:

- **Activations** of every hidden layer on a batch: their spread, and the fraction of units
  in the flat part of the nonlinearity (:func:`saturated_fraction`), where almost no gradient
  gets through.
- **Gradients** of the loss with respect to those activations: if their spread shrinks
  layer by layer towards the input, the early layers hardly learn (vanishing gradients); if it
  grows, the steps blow up (exploding gradients).
- **The update-to-data ratio** of each weight matrix (:func:`update_to_data_ratio`): how big
  one step of the optimizer is compared with the weights it changes,

  .. math:: r^{[l]} = \frac{\operatorname{std}\bigl(W^{[l]}_{\text{after}} - W^{[l]}_{\text{before}}\bigr)}
                          {\operatorname{std}\bigl(W^{[l]}_{\text{before}}\bigr)} .

  A common rule of thumb puts a healthy :math:`r` near :math:`10^{-3}`: much smaller and the
  layer is frozen, much larger and each step rewrites it.

:func:`layer_statistics` takes the first two on one batch (one forward and one backward
pass, leaving the model exactly as it was, with
:func:`course_lib.borrow.as_found`); :func:`update_ratio_recorder`
records the third during :func:`course_lib.experiments.lab.training.train`.

Layers are the activation modules ``act1, act2, ...`` and the weight matrices of the
``Linear`` layers ``linear1, linear2, ...`` (and ``output``) of a
:func:`course_lib.experiments.lab.models.make_mlp` model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.measures import update_to_data_ratio
from course_lib.borrow import as_found

__all__ = [
    "LayerStatistics",
    "activation_modules",
    "layer_statistics",
    "saturated_fraction",
    "update_ratio_recorder",
    "update_to_data_ratio",
    "weight_layers",
]

#: How close to its flat part an activation must be to count as saturated.
SATURATION = {"tanh": 0.97, "sigmoid": 0.05}


def saturated_fraction(a: Tensor, activation: str) -> float:
    """The fraction of entries of ``a`` = g(z) in the flat part of ``g``.

    - ``"tanh"``: :math:`|a| > 0.97` (Karpathy's threshold: the slope
      :math:`1 - a^2` is below 0.06);
    - ``"sigmoid"``: within 0.05 of 0 or 1 (as :func:`course_lib.activations.sigmoid_regimes`);
    - ``"relu"``: exactly 0, a unit that passes no gradient for this example.
    """
    if activation == "tanh":
        flat = a.abs() > SATURATION["tanh"]
    elif activation == "sigmoid":
        flat = (a < SATURATION["sigmoid"]) | (a > 1 - SATURATION["sigmoid"])
    elif activation == "relu":
        flat = a == 0
    else:
        raise ValueError(
            f"saturated_fraction: activation must be 'tanh', 'sigmoid' or 'relu' (got "
            f"{activation!r})"
        )
    return float(flat.double().mean())


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the hidden activations ``act1, act2, ...``, in order."""
    found = [(n, m) for n, m in model.named_children() if n.startswith("act") and n[3:].isdigit()]
    if not found:
        raise ValueError(
            "the model has no modules named act1, act2, ...; build it with "
            "course_lib.experiments.lab.models.make_mlp"
        )
    return found


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every ``Linear`` or ``Conv2d`` child (hidden layers and output)."""
    return [(n, m) for n, m in model.named_children() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _activation_name(module: nn.Module) -> str:
    for name, cls in (("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("relu", nn.ReLU)):
        if isinstance(module, cls):
            return name
    raise ValueError(f"unknown activation module {type(module).__name__}")


@dataclass(frozen=True)
class LayerStatistics:
    """What one forward and backward pass on a batch shows about each hidden layer ``l``.

    Attributes:
        layers: ``["act1", "act2", ...]``.
        activations: the activations :math:`a^{[l]}`, one ``(N, width)`` tensor per layer.
        gradients: :math:`\\partial J / \\partial a^{[l]}`, same shapes.
        saturated: fraction of saturated units per layer (:func:`saturated_fraction`).
    """

    layers: list[str]
    activations: list[Tensor]
    gradients: list[Tensor]
    saturated: np.ndarray

    @property
    def activation_std(self) -> np.ndarray:
        """Standard deviation of each layer's activations (all entries)."""
        return np.array([float(a.std()) for a in self.activations])

    @property
    def example_spread(self) -> np.ndarray:
        """How much a unit's activation differs from example to example: the standard
        deviation over the batch, averaged over the layer's units. Near 0, the layer gives
        every example almost the same output and passes on almost nothing about the input."""
        return np.array([float(a.std(dim=0).mean()) for a in self.activations])

    @property
    def gradient_std(self) -> np.ndarray:
        """Standard deviation of each layer's activation gradients."""
        return np.array([float(g.std()) for g in self.gradients])


def layer_statistics(model: nn.Module, X: Tensor, y: Tensor, mode: str = "train") -> LayerStatistics:
    """Activations, their gradients and saturation per hidden layer, on one batch.

    Runs the mean cross-entropy of ``model(X)`` against ``y`` forward and backward (in
    training mode by default: batch statistics, as in a training step), catching each
    activation's output. The model is left exactly as it was (parameters, ``.grad``, running
    statistics, modes).

    Args:
        model: a :func:`course_lib.experiments.lab.models.make_mlp` model.
        X: ``(N, features)`` inputs; y: ``(N,)`` int64 labels.
        mode: ``"train"`` or ``"eval"``.

    Returns:
        A :class:`LayerStatistics`.
    """
    acts = activation_modules(model)
    if mode not in ("train", "eval"):
        raise ValueError(f"layer_statistics: mode must be 'train' or 'eval' (got {mode!r})")
    outputs: list[Tensor] = []

    def keep(module: nn.Module, args: tuple, out: Tensor) -> None:
        out.retain_grad()
        outputs.append(out)

    p = next(model.parameters())
    with as_found(model, mode, state=True):
        handles = [m.register_forward_hook(keep) for _, m in acts]
        try:
            with torch.enable_grad():
                loss = F.cross_entropy(model(X.to(p.device, p.dtype)), y.to(p.device))
                loss.backward()
        finally:
            for h in handles:
                h.remove()
        activations = [o.detach().clone() for o in outputs]
        gradients = [o.grad.detach().clone() for o in outputs]
    saturated = np.array([
        saturated_fraction(a, _activation_name(m)) for a, (_, m) in zip(activations, acts)
    ])
    return LayerStatistics([n for n, _ in acts], activations, gradients, saturated)


def update_ratio_recorder() -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``record(step, model)`` for :func:`course_lib.experiments.lab.training.train`: the
    update-to-data ratio of every weight matrix since the previous call.

    Keys ``"ud:linear1"``, ``"ud:linear2"``, ..., ``"ud:output"``; at the first call (step
    0) there is no update yet and the values are NaN. Passed as ``train(...,
    after_step=update_ratio_recorder())`` it is called after every step, so each value is the
    ratio of one step (in ``History.step_records``); as ``record=`` it measures the change
    since the previous evaluation. A fresh recorder for each run: it remembers the weights of
    its last call.
    """
    previous: dict[str, Tensor] = {}

    def record(step: int, model: nn.Module) -> dict[str, float]:
        values = {}
        for name, layer in weight_layers(model):
            W = layer.weight.detach().double().clone()
            before = previous.get(name)
            values[f"ud:{name}"] = (
                float("nan") if before is None else update_to_data_ratio(before, W)
            )
            previous[name] = W
        return values

    record.__name__ = "update_ratio_recorder"
    return record
