r"""What every probe in :mod:`course_lib.experiments` shares to observe a training run
without changing it.

A probe runs the model on a fixed batch, often in *training mode* (batch statistics, noisy
BN's noise, dropout), which updates running statistics and advances random generators. It
does so inside the core's one guard, ``course_lib.borrow.as_found(model, mode, state=True)``,
which restores everything such a pass can touch bit for bit; the helpers here check a
probe's input, move a batch onto the model and take the loss and gradients on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from course_lib import _checks
from course_lib.borrow import Snapshot

__all__ = [
    "batch_loss_and_grads",
    "check_probe",
    "check_probe_batch",
    "on_model",
]

def check_probe_batch(X: object, where: str, y: object = None) -> None:
    """Refuse anything but a 2D float batch ``X`` of >= 2 examples (and int64 labels ``y``)."""
    if not isinstance(X, Tensor) or not X.is_floating_point() or X.ndim != 2:
        raise TypeError(
            f"{where}: X must be a 2D float tensor (N, features) (got "
            f"{type(X).__name__}{'' if not isinstance(X, Tensor) else f' {X.dtype} {X.ndim}D'})"
        )
    if len(X) < 2:
        raise ValueError(f"{where}: X needs at least 2 examples (got {len(X)})")
    if y is not None:
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
            raise TypeError(f"{where}: y must be a 1D int64 tensor of class labels")
        if len(y) != len(X):
            raise ValueError(f"{where}: X has {len(X)} examples but y has {len(y)} labels")


def check_probe(model: object, X: object, where: str, y: object = None) -> None:
    """:func:`check_probe_batch`, and refuse a ``model`` that is not an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module (got {type(model).__name__})")
    check_probe_batch(X, where, y)


def on_model(model: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
    """``tensors`` on the model's device, floating ones in its dtype."""
    p = next(model.parameters(), None)
    if p is None:
        return tensors
    return tuple(t.to(p.device, p.dtype) if t.is_floating_point() else t.to(p.device) for t in tensors)


def batch_loss_and_grads(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    params: Sequence[Tensor],
    snap: Snapshot,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> tuple[float, list[Tensor]]:
    """The loss on ``(X, y)`` and its gradient for each of ``params`` (zeros where unused).

    Inside ``as_found(model, mode, state=True)``: the noise, running statistics and global
    random state are put back first, so every call sees the same batch statistics, noise and dropout masks,
    and only the parameter values can change the answer.
    """
    snap.restore_randomness()
    snap.restore_buffers()
    torch.manual_seed(0)
    with torch.enable_grad():
        loss = loss_fn(model(X), y)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return float(loss.detach()), [
        torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)
    ]
