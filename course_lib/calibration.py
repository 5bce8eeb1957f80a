r"""Recalibrating batch norm's running statistics after training (chapter 6).

During training each batch norm layer keeps an exponentially weighted average of its batch
statistics. That average is a compromise: it weights recent batches most, so it is noisy, and
it lags the weights below the layer, which kept changing while it averaged. Once training is
over the weights are fixed, and the statistics the test-time layer should use can simply be
*measured*: run the training set through the network once and compute each layer's mean and
variance over all of it (Ioffe & Szegedy call these the population statistics;
"precise BN" in later work).

:func:`recalibrate_bn` does that for every batch norm layer of any ``nn.Module`` (torch's or
:mod:`course_lib.nn`'s layers), without touching a single weight:

- ``method="exact"`` (default): the per-channel mean and variance of each layer's input over
  the whole pass, accumulated in float64 from per-batch statistics
  (:func:`course_lib.normalization.moments_over`) with Chan et al.'s pairwise update
  (:func:`course_lib.normalization.merge_moments`, the merge synchronized batch norm uses too)

  .. math::

      \begin{aligned}
      n &= n_a + n_b, \quad \delta = \mu_b - \mu_a,\\
      \mu &= \mu_a + \delta \frac{n_b}{n},\\
      M_2 &= M_{2,a} + M_{2,b} + \delta^2 \frac{n_a n_b}{n},
      \end{aligned}

  then ``running_mean`` :math:`= \mu` and ``running_var`` :math:`= M_2 / (n - 1)`, unbiased
  like PyTorch's stored variance.
- ``method="cumulative"``: reset the running statistics and let the layers average them
  with PyTorch's own ``momentum=None`` (cumulative average): the plain mean of the batches'
  means and unbiased variances. Same mean as "exact" when all batches have one size; the
  variance averages within-batch variances, an unbiased estimate rather than the exact one.

During the pass every batch norm layer is in training mode, so each layer's input is what it
was in training (normalized below it with batch statistics) and the running statistics are
updated; every other layer is in eval mode (no dropout). Afterwards each layer's momentum and
every module's train/eval mode are restored.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

import numpy as np
import torch
from torch import nn

from course_lib import _checks
from course_lib.batchnorm import reduce_axes
from course_lib.borrow import as_found, batchnorm_layers
from course_lib.normalization import Moments, merge_moments, moments_over
from course_lib.running_stats import unbiased_var

__all__ = ["recalibrate_bn", "population_stats"]


def _calibratable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    _checks.check_module(model)
    layers = [
        (name, m)
        for name, m in batchnorm_layers(model)
        if m.running_mean is not None and m.running_var is not None
    ]
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no batch norm layer with running statistics to "
            "recalibrate (layers built with track_running_stats=False have none: they use "
            "batch statistics even in eval mode)"
        )
    return layers


def _batches(data: Any, batch_size: int | None) -> Iterable[Any]:
    """Split a tensor into mini-batches, or pass an iterable of batches through."""
    if isinstance(data, np.ndarray):
        raise TypeError(
            "expected data to be a torch.Tensor or an iterable of batches (got a numpy "
            "array); convert with torch.as_tensor(X, dtype=torch.float32)"
        )
    if isinstance(data, torch.Tensor):
        size = 256 if batch_size is None else batch_size
        if not _checks.is_int(size) or size < 2:
            raise ValueError(
                f"expected batch_size >= 2 (got {size!r}): batch norm in training mode needs "
                "more than one value per channel"
            )
        if data.ndim < 2 or data.shape[0] < 2:
            raise ValueError(
                f"expected data of shape (N, ...) with N >= 2 examples (got shape "
                f"{tuple(data.shape)})"
            )
        chunks = list(torch.split(data, size))
        if len(chunks) > 1 and chunks[-1].shape[0] == 1:
            # A last batch of one example cannot be normalized in training mode: merge it.
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks
    if batch_size is not None:
        raise ValueError(
            "batch_size applies only when data is a tensor; an iterable (e.g. a DataLoader) "
            "already yields its batches, so leave batch_size out"
        )
    if not hasattr(data, "__iter__"):
        raise TypeError(
            "expected data to be a torch.Tensor (N, ...) or an iterable of batches, e.g. a "
            f"DataLoader (got {type(data).__name__})"
        )
    return data


def _inputs_of(batch: Any) -> torch.Tensor:
    """The input tensor of a batch: the batch itself, or the first item of (x, y, ...)."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    if not isinstance(batch, torch.Tensor):
        raise TypeError(
            "expected each batch to be a tensor or a tuple/list (x, y, ...) whose first item is "
            f"the input tensor (got {type(batch).__name__})"
        )
    return batch


class _Accumulator:
    """Per-channel moments of every batch a layer sees, in float64, merged as they come."""

    def __init__(self) -> None:
        self.total = Moments(0, 0.0, 0.0)

    def add(self, x: torch.Tensor) -> None:
        x64 = _checks.to_numpy64(x)
        if x64.size == 0:  # an empty batch says nothing (and numpy warns on its mean)
            return
        self.total = merge_moments(self.total, moments_over(x64, reduce_axes(x64)))


def recalibrate_bn(
    model: nn.Module,
    data: Any,
    batch_size: int | None = None,
    method: Literal["exact", "cumulative"] = "exact",
) -> nn.Module:
    r"""Replace every batch norm layer's running statistics by statistics of one pass over
    ``data`` (usually the training set), after training.

    See the module docstring for the two methods. Weights and biases are not changed (the
    pass runs under ``torch.no_grad()``); ``running_mean``, ``running_var`` and
    ``num_batches_tracked`` (set to the number of batches) are. Each layer's ``momentum``
    and every module's train/eval mode are restored afterwards, also if a batch fails.
    Layers with ``track_running_stats=False`` have no running statistics and are skipped.

    Args:
        model: any ``nn.Module`` containing batch norm layers (torch's or course_lib.nn's).
        data: a tensor ``(N, ...)`` of inputs, split into batches of ``batch_size``; or an
            iterable of batches (e.g. a ``DataLoader``), each a tensor or a tuple
            ``(x, y, ...)`` whose first item is the input. Batches are moved to the device
            of the batch norm buffers.
        batch_size: for a tensor ``data`` only, default 256, at least 2 (a final batch of a
            single example is merged into the one before). In training mode the layers below
            each batch norm normalize with batch statistics, so larger batches give inputs
            closer to what eval mode will see.
        method: ``"exact"`` or ``"cumulative"``.

    Returns:
        ``model`` itself (modified in place), for chaining.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``data`` is neither a tensor nor an
            iterable of batches.
        ValueError: no batch norm layer with running statistics, an unknown ``method``,
            ``batch_size < 2``, or no batches in ``data``.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        >>> X = torch.randn(1000, 4)
        >>> _ = recalibrate_bn(model, X, batch_size=100)
        >>> bn = model[1]
        >>> h = model[0](X).detach()
        >>> torch.allclose(bn.running_mean, h.mean(dim=0), atol=1e-6), int(bn.num_batches_tracked)
        (True, 10)
    """
    if method not in ("exact", "cumulative"):
        raise ValueError(f"unknown method {method!r}; expected 'exact' or 'cumulative'")
    layers = _calibratable(model)
    batches = _batches(data, batch_size)
    device = layers[0][1].running_mean.device

    momenta = [(bn, bn.momentum) for _, bn in layers]
    moments = {name: _Accumulator() for name, _ in layers}
    hooks = []
    if method == "exact":
        for name, bn in layers:
            hooks.append(
                bn.register_forward_pre_hook(lambda _m, args, acc=moments[name]: acc.add(args[0]))
            )
    try:
        # A failure leaves the model as it was rather than half recalibrated.
        with as_found(model, "eval", state=True) as snap:
            for _, bn in layers:
                bn.reset_running_stats()
                bn.momentum = None  # PyTorch's cumulative average: the plain mean of batches
                bn.train()
            n_batches = 0
            with torch.no_grad():
                for batch in batches:
                    model(_inputs_of(batch).to(device))
                    n_batches += 1
            if n_batches == 0:
                raise ValueError(
                    "data yielded no batches; pass the training set (N >= 2 examples)"
                )
            snap.keep_values()  # success: keep the new statistics; modes are still restored
    finally:
        for hook in hooks:
            hook.remove()
        for bn, momentum in momenta:
            bn.momentum = momentum
    if method == "exact":
        with torch.no_grad():
            for name, bn in layers:
                acc = moments[name].total
                var = unbiased_var(acc.m2 / acc.count, acc.count)  # as PyTorch stores it
                bn.running_mean.copy_(torch.from_numpy(acc.mean))
                bn.running_var.copy_(torch.from_numpy(var))
    return model


def population_stats(
    model: nn.Module, data: Any, batch_size: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each batch norm layer's exact mean and (unbiased) variance over ``data``; no side effects.

    What ``recalibrate_bn(method="exact")`` would store, computed on ``model`` and then undone
    (:func:`course_lib.borrow.as_found`), so the model's running statistics can be compared with
    them.

    Returns:
        ``{layer name: (mean, var)}``, float64 numpy arrays of shape ``(C,)``.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        >>> stats = population_stats(model, torch.randn(500, 4))
        >>> list(stats), stats["1"][0].shape
        (['1'], (8,))
    """
    with as_found(model, state=True):  # the model's own statistics come back afterwards
        recalibrate_bn(model, data, batch_size, method="exact")
        return {
            name: (
                _checks.to_numpy64(bn.running_mean).copy(),  # a copy: the buffers are restored
                _checks.to_numpy64(bn.running_var).copy(),
            )
            for name, bn in _calibratable(model)
        }
