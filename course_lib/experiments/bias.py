r"""Why a bias right before batch norm is redundant, measured.

A hidden layer computes :math:`z^{[l]} = W^{[l]} a^{[l-1]} + b^{[l]}` and batch norm
subtracts the mini-batch mean of each unit:

.. math::

    z^{(i)} - \mu = \bigl(W a^{(i)} + b\bigr) - \frac1m \sum_j \bigl(W a^{(j)} + b\bigr)
                  = W a^{(i)} - \frac1m \sum_j W a^{(j)},

so :math:`b^{[l]}` cancels: the network's output does not depend on it, and its gradient is
:math:`\partial J / \partial b = \sum_i dz^{(i)} = 0` (chapter 2: a unit's input gradients
sum to zero). Batch norm's :math:`\beta^{[l]}` takes over the job of the bias, which is why
:func:`course_lib.experiments.lab.models.make_mlp` builds ``Linear(..., bias=False)`` before batch norm.

This module puts the bias back (:func:`with_bias`) and measures both facts:
:func:`bias_gradients` (one backward pass) and :func:`bias_effect` (how much the output
moves when the biases change). With batch norm after the activation, or none, the same
biases matter, which the chapter shows side by side.

Example:
    >>> from course_lib.experiments.lab.data import load_digits_split
    >>> from course_lib.experiments.lab.models import make_mlp
    >>> data = load_digits_split(seed=0)
    >>> model = with_bias(make_mlp(64, [100, 100, 100], 10, bn="before", seed=0))
    >>> [g.max_abs_grad_bias < 1e-7 for g in bias_gradients(model, data.X_train[:60], data.y_train[:60])]
    [True, True, True]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.borrow import as_found

__all__ = ["LayerGradient", "bias_effect", "bias_gradients", "hidden_linears", "with_bias"]


@dataclass(frozen=True)
class LayerGradient:
    r"""The largest gradient entries of one hidden ``Linear`` layer after a backward pass.

    Attributes:
        layer: the module's name, e.g. ``"linear1"``.
        max_abs_grad_bias: :math:`\max_k |\partial J / \partial b_k|`.
        max_abs_grad_weight: :math:`\max_{k,j} |\partial J / \partial W_{kj}|`, for scale.
    """

    layer: str
    max_abs_grad_bias: float
    max_abs_grad_weight: float


def hidden_linears(model: nn.Sequential) -> list[str]:
    """Names of the hidden ``Linear`` layers of a :func:`~course_lib.experiments.lab.models.make_mlp` model
    (``linear1``, ``linear2``, ...; not ``output``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"hidden_linears: expected an nn.Module (got {type(model).__name__})")
    names = [
        name for name, m in model.named_children()
        if isinstance(m, nn.Linear) and name.startswith("linear") and name[6:].isdigit()
    ]
    if not names:
        raise ValueError(
            "hidden_linears: the model has no Linear layers named linear1, linear2, ...; build "
            "it with course_lib.experiments.lab.models.make_mlp"
        )
    return names


def with_bias(model: nn.Sequential, *, seed: int = 0, scale: float = 1.0) -> nn.Sequential:
    """A copy of ``model`` whose hidden ``Linear`` layers all have a bias ``b ~ N(0, scale^2)``.

    Weights, batch norm parameters and buffers, and the output layer are copied unchanged;
    a layer built with ``bias=False`` gets a bias added. ``model`` itself is not modified.

    Args:
        model: a :func:`~course_lib.experiments.lab.models.make_mlp` model.
        seed: seeds the biases (the global random state is not used).
        scale: standard deviation of the biases; large values make the point clearer.

    Returns:
        The new model, in the same mode, dtype and device as ``model``.
    """
    names = hidden_linears(model)
    if not _checks.is_real(scale) or not scale >= 0:
        raise ValueError(f"with_bias: scale must be a non-negative number (got {scale!r})")
    new = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    for name in names:
        old = getattr(new, name)
        layer = nn.Linear(old.in_features, old.out_features, bias=True,
                          device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(old.weight)
            b = scale * torch.randn(old.out_features, generator=gen, dtype=torch.float64)
            layer.bias.copy_(b)
        layer.train(old.training)
        setattr(new, name, layer)
    return new


def bias_gradients(model: nn.Sequential, X: Tensor, y: Tensor) -> list[LayerGradient]:
    """One training-mode backward pass of the mean cross-entropy on the mini-batch ``(X, y)``.

    ``model`` is left as it was found (:func:`course_lib.borrow.as_found`): its running
    statistics, ``.grad`` and modes are restored. The
    cross-entropy gives every output its own upstream gradient (a plain ``.sum()`` would
    have a zero gradient through batch norm for a different reason, see chapter 2).

    Args:
        model: a :func:`~course_lib.experiments.lab.models.make_mlp` model whose hidden layers have biases
            (see :func:`with_bias`).
        X: ``(m, in_features)`` inputs, cast to the model's dtype.
        y: ``(m,)`` int64 labels.

    Returns:
        One :class:`LayerGradient` per hidden ``Linear`` layer, in order.
    """
    names = hidden_linears(model)
    missing = [n for n in names if getattr(model, n).bias is None]
    if missing:
        raise ValueError(
            f"bias_gradients: {', '.join(missing)} has no bias; add one with with_bias(model)"
        )
    out = []
    with as_found(model, "train", state=True):  # running statistics and .grad come back
        param = getattr(model, names[0]).weight
        loss = F.cross_entropy(model(X.to(param.device, param.dtype)), y.to(param.device))
        model.zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            layer = getattr(model, name)
            out.append(LayerGradient(
                layer=name,
                max_abs_grad_bias=float(layer.bias.grad.abs().max()),
                max_abs_grad_weight=float(layer.weight.grad.abs().max()),
            ))
    return out


def bias_effect(model: nn.Sequential, X: Tensor, *, seed: int = 0, scale: float = 1.0) -> float:
    """How much the biases move the output: ``max |f(X; b) - f(X; b')|``.

    ``b`` and ``b'`` are two independent draws of :func:`with_bias` (``seed`` and
    ``seed + 1``) on the same weights; both forward passes run in training mode (batch
    statistics), on copies.

    Returns:
        The largest absolute difference between the two outputs (logits).
    """
    a = with_bias(model, seed=seed, scale=scale).train()
    b = with_bias(model, seed=seed + 1, scale=scale).train()
    param = getattr(a, hidden_linears(a)[0]).weight
    X = X.to(param.device, param.dtype)
    with torch.no_grad():
        return float((a(X) - b(X)).abs().max())
