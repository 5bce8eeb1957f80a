r"""Leave a model exactly as you found it: what every probe in :mod:`course_lib.experiments`
relies on to observe a training run without changing it.

A probe runs the model on a fixed batch, often in *training mode* (batch statistics, noisy
BN's noise, dropout), which updates running statistics and advances random generators.
:func:`preserved_state` snapshots everything such a pass can touch and restores it bit for
bit; the helpers below put the model in the requested mode and move a batch onto it.

(If the core grows one "leave the model as you found it" guard, :func:`preserved_state`
becomes a thin alias of it; the probes only use this function.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Integral

import torch
from torch import Tensor, nn

__all__ = ["MODES", "check_every", "check_probe_batch", "check_probe_mode", "on_model", "preserved_state", "set_probe_mode"]

#: ``"train"``: batch statistics and noise, as in a training step; ``"eval"``: running
#: statistics, no noise.
MODES: tuple[str, ...] = ("train", "eval")

@dataclass
class _Snapshot:
    params: list[tuple[Tensor, Tensor]]
    grads: list[tuple[Tensor, Tensor | None]]
    buffers: list[tuple[Tensor, Tensor]]
    modes: list[tuple[nn.Module, bool]]
    generators: list[tuple[torch.Generator, Tensor]]

    def restore_randomness(self) -> None:
        for g, state in self.generators:
            g.set_state(state)

    def restore_buffers(self) -> None:
        with torch.no_grad():
            for b, saved in self.buffers:
                b.copy_(saved)


def _generators(model: nn.Module) -> list[torch.Generator]:
    """Every distinct ``torch.Generator`` held as an attribute by a module of ``model``."""
    found: dict[int, torch.Generator] = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Generator):
                found.setdefault(id(value), value)
    return list(found.values())


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[_Snapshot]:
    """Run the ``with`` block on ``model`` and put everything back afterwards.

    Restored on exit, exactly (bit for bit): parameter values, their ``.grad``, buffers
    (running statistics, ``num_batches_tracked``), each module's train/eval mode, the state
    of every ``torch.Generator`` a module holds, and the global CPU random state (forked).
    Inside the block the snapshot offers ``restore_randomness()`` and ``restore_buffers()``,
    so repeated forward passes can see the same noise and the same running statistics.

    Example:
        >>> with preserved_state(model):
        ...     model.train()(X)          # updates running statistics and draws noise...
        >>> # ...which are now undone
    """
    snap = _Snapshot(
        params=[(p, p.detach().clone()) for p in model.parameters()],
        grads=[(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
        buffers=[(b, b.detach().clone()) for b in model.buffers()],
        modes=[(m, m.training) for m in model.modules()],
        generators=[(g, g.get_state()) for g in _generators(model)],
    )
    try:
        with torch.random.fork_rng(devices=[]):
            yield snap
    finally:
        with torch.no_grad():
            for p, saved in snap.params:
                p.copy_(saved)
        for p, grad in snap.grads:
            p.grad = grad
        snap.restore_buffers()
        for m, training in snap.modes:
            m.training = training
        snap.restore_randomness()


def check_probe_mode(mode: object, where: str) -> None:
    """Refuse a mode other than ``"train"`` or ``"eval"``, saying what each one means."""
    if mode not in MODES:
        raise ValueError(
            f"{where}: mode must be 'train' (batch statistics and noise, as in a training "
            f"step) or 'eval' (running statistics, no noise) (got {mode!r})"
        )


def set_probe_mode(model: nn.Module, mode: str, where: str) -> None:
    """Put ``model`` in ``mode`` (checked first)."""
    check_probe_mode(mode, where)
    model.train(mode == "train")


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


def on_model(model: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
    """``tensors`` on the model's device, floating ones in its dtype."""
    p = next(model.parameters(), None)
    if p is None:
        return tensors
    return tuple(t.to(p.device, p.dtype) if t.is_floating_point() else t.to(p.device) for t in tensors)


def check_every(every: object, where: str) -> None:
    """Refuse anything but a positive int for a recorder's ``every``."""
    if isinstance(every, bool) or not isinstance(every, Integral) or every < 1:
        raise ValueError(f"{where}: every must be a positive int (got {every!r})")
