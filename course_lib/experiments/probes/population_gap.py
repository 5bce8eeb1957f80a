r"""How far a network's running statistics are from the population statistics they estimate
(chapter 6).

A batch norm layer's running mean is meant to be the mean of its input over the whole
training set, *for the current weights*: the population mean :math:`\mu_{\text{pop}}`. While
training, the weights below the layer move, so :math:`\mu_{\text{pop}}` moves too, and the
exponentially weighted average chases it: with too small a momentum it lags behind, with too
large a momentum it jumps around with every mini-batch. :func:`population_gap` measures the
distance after the fact, for every unit of every batch norm layer, in units of the population's
standard deviation :math:`\sigma_{\text{pop}}`:

.. math::

    \text{gap} = \sqrt{\frac{1}{U} \sum_{\text{units } u}
        \left(\frac{\text{running\_mean}_u - \mu_{\text{pop},u}}{\sigma_{\text{pop},u}}\right)^2}

where :math:`U` is the number of units and the population statistics come from
:func:`course_lib.calibration.population_stats` (one pass over the data, batch norm layers in
training mode as in training, nothing modified). A gap of 0.1 means the running mean is off by
a tenth of a standard deviation, typically; after :func:`course_lib.calibration.recalibrate_bn`
on the same data it is 0.

:func:`gap_recorder` packages the measurement as a recorder for
:func:`course_lib.experiments.lab.training.train`, so the gap can be followed over training, together with the
running and the population mean of one chosen unit.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from torch import Tensor, nn

from course_lib import _checks
from course_lib.calibration import population_stats
from course_lib.borrow import batchnorm_layers

__all__ = ["population_gap", "gap_recorder"]


def population_gap(model: nn.Module, X: Any, batch_size: int | None = None) -> float:
    """Root-mean-square gap between running and population means, in population std units.

    Args:
        model: a network with batch norm layers that keep running statistics.
        X: the data whose statistics the running averages should match (usually the training
            inputs), a tensor ``(N, ...)`` or an iterable of batches, as for
            :func:`course_lib.calibration.population_stats`.
        batch_size: batch size of the measuring pass (tensor ``X`` only; default 256).

    Returns:
        The gap over all units of all batch norm layers, a float ``>= 0``.

    Example:
        >>> import torch
        >>> from course_lib.calibration import recalibrate_bn
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        >>> X = torch.randn(500, 4) + 3
        >>> population_gap(model, X) > 1            # fresh buffers: running_mean = 0
        True
        >>> population_gap(recalibrate_bn(model, X), X) < 1e-6
        True
    """
    return _gap(model, population_stats(model, X, batch_size))


def _gap(model: nn.Module, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    layers = dict(batchnorm_layers(model))
    squares: list[np.ndarray] = []
    for name, (mean, var) in stats.items():
        running = _checks.to_numpy64(layers[name].running_mean)
        # A unit that never varies has no scale to measure the gap in: skip it.
        ok = var > 0
        squares.append(((running[ok] - mean[ok]) ** 2) / var[ok])
    values = np.concatenate(squares) if squares else np.zeros(0)
    if values.size == 0:
        raise ValueError(
            "no batch norm unit with a nonzero population variance to measure the gap on"
        )
    return float(np.sqrt(values.mean()))


def gap_recorder(
    X: Tensor, layer: str, unit: int = 0, batch_size: int | None = None
) -> Callable[[int, nn.Module], dict[str, float]]:
    """A recorder for :func:`course_lib.experiments.lab.training.train` that follows the running statistics.

    At each evaluation step it returns

    - ``"gap"``: :func:`population_gap` of the model on ``X``;
    - ``"running_mean"``: the running mean of unit ``unit`` of batch norm layer ``layer``;
    - ``"population_mean"``: that unit's population mean on ``X``.

    Args:
        X: the training inputs, ``(N, ...)``.
        layer: the name of a batch norm layer in ``model.named_modules()``, e.g. ``"bn2"``
            for a :func:`course_lib.experiments.lab.models.make_mlp` network.
        unit: which unit (channel) of that layer to follow.
        batch_size: batch size of the measuring pass (default 256).

    Returns:
        ``record(step, model) -> dict`` for ``train(..., record=...)``.

    Raises:
        ValueError: (when first called) ``layer`` is not a batch norm layer of the model, or
            ``unit`` is out of range.

    Example:
        >>> from course_lib.experiments.lab.data import load_digits_split
        >>> from course_lib.experiments.lab.models import make_mlp
        >>> from course_lib.experiments.lab.training import train
        >>> data = load_digits_split(seed=0)
        >>> model = make_mlp(64, [100, 100], 10, bn="before", seed=0)
        >>> history = train(model, data, steps=100, lr=0.2, eval_every=20,
        ...                 record=gap_recorder(data.X_train, "bn2"))
        >>> sorted(history.records)
        ['gap', 'population_mean', 'running_mean']
    """

    def record(step: int, model: nn.Module) -> dict[str, float]:
        layers = dict(batchnorm_layers(model))
        if layer not in layers:
            raise ValueError(
                f"gap_recorder: no batch norm layer named {layer!r} in the model; batch norm "
                f"layers are {sorted(layers)}"
            )
        bn = layers[layer]
        if not 0 <= unit < bn.num_features:
            raise ValueError(
                f"gap_recorder: unit {unit} is out of range for {layer!r} with "
                f"{bn.num_features} units"
            )
        stats = population_stats(model, X, batch_size)
        return {
            "gap": _gap(model, stats),
            "running_mean": float(bn.running_mean[unit]),
            "population_mean": float(stats[layer][0][unit]),
        }

    return record
