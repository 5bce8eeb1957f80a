"""Borrowing a model and finding its batch norm layers.

- :func:`is_batchnorm`, :func:`batchnorm_layers` and :func:`batchnorm_dim`: the one answer to
  "is this a batch norm layer?" in ``course_lib`` (``torch.nn``'s layers and
  :mod:`course_lib.nn`'s);
- :func:`as_found` and its :class:`Snapshot`: the one way to borrow a model (run it in
  another mode, or let it change its values and random state) and leave it as it was found.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.nn import Module

from course_lib import _checks
from course_lib.nn import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm

__all__ = [
    "is_batchnorm",
    "batchnorm_layers",
    "batchnorm_dim",
    "as_found",
    "Snapshot",
]


def is_batchnorm(module: Any) -> bool:
    """True for a batch norm layer: ``torch.nn``'s (``BatchNorm1d/2d/3d``, ``SyncBatchNorm``,
    lazy variants) or this module's (and subclasses, e.g. the course's noisy batch norm).

    The one answer to "is this a batch norm layer?" in ``course_lib``.

    Example:
        >>> is_batchnorm(torch.nn.BatchNorm1d(3)), is_batchnorm(torch.nn.LayerNorm(3))
        (True, False)
    """
    return isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, _BatchNorm))


def batchnorm_layers(model: Module) -> list[tuple[str, Module]]:
    """``(name, layer)`` for every batch norm layer in ``model`` (``model`` itself included),
    in ``named_modules()`` order.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), BatchNorm1d(3), torch.nn.ReLU())
        >>> [name for name, _ in batchnorm_layers(model)]
        ['1']
    """
    _checks.check_module(model)
    return [(name, m) for name, m in model.named_modules() if is_batchnorm(m)]


def batchnorm_dim(module: Any) -> int | None:
    """1, 2 or 3 for a BatchNorm1d/2d/3d (``torch.nn``'s or this module's); ``None`` for a
    batch norm layer that takes any input dimension (e.g. ``torch.nn.SyncBatchNorm``).

    Example:
        >>> batchnorm_dim(BatchNorm2d(3)), batchnorm_dim(torch.nn.SyncBatchNorm(3))
        (2, None)
    """
    for dim, classes in (
        (1, (torch.nn.BatchNorm1d, torch.nn.LazyBatchNorm1d, BatchNorm1d)),
        (2, (torch.nn.BatchNorm2d, torch.nn.LazyBatchNorm2d, BatchNorm2d)),
        (3, (torch.nn.BatchNorm3d, torch.nn.LazyBatchNorm3d, BatchNorm3d)),
    ):
        if isinstance(module, classes):
            return dim
    return None


@dataclass
class Snapshot:
    """What :func:`as_found` saved; inside the ``with`` block it can put some of it back."""

    modes: list[tuple[Module, bool]]
    params: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    grads: list[tuple[Tensor, Tensor | None]] = field(default_factory=list)
    buffers: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    generators: list[tuple[torch.Generator, Tensor]] = field(default_factory=list)
    kept: bool = False

    def keep_values(self) -> None:
        """On exit, restore only the modes: keep what the block did to values and randomness."""
        self.kept = True

    def restore_randomness(self) -> None:
        """Rewind every ``torch.Generator`` a module holds to its saved state."""
        for g, state in self.generators:
            g.set_state(state)

    def restore_buffers(self) -> None:
        """Put back the saved buffers (running statistics, ``num_batches_tracked``)."""
        with torch.no_grad():
            for b, saved in self.buffers:
                b.copy_(saved)

    def restore(self) -> None:
        """Put everything saved back (only the modes after :meth:`keep_values`)."""
        for m, training in self.modes:
            m.training = training
        if self.kept:
            return
        with torch.no_grad():
            for p, saved in self.params:
                p.copy_(saved)
        for p, grad in self.grads:
            p.grad = grad
        self.restore_buffers()
        self.restore_randomness()


def _generators(model: Module) -> list[torch.Generator]:
    """Every distinct ``torch.Generator`` held as an attribute by a module of ``model``."""
    found: dict[int, torch.Generator] = {}
    for m in model.modules():
        for value in vars(m).values():
            if isinstance(value, torch.Generator):
                found.setdefault(id(value), value)
    return list(found.values())


def _cuda_devices() -> list[int]:
    """Every CUDA device whose random state a model could change (none without CUDA).

    ``torch.manual_seed`` (which experiments call) reseeds all of them, so all are saved.
    """
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextmanager
def as_found(
    model: Module, mode: str | None = None, *, state: bool = False
) -> Iterator[Snapshot]:
    """Run the ``with`` block, then leave ``model`` as it was found.

    Always restored: the train/eval mode of every submodule (nested ones included, each its
    own). With ``state=True`` also, bit for bit: parameter values and their ``.grad``,
    buffers (running statistics, ``num_batches_tracked``), the state of every
    ``torch.Generator`` a module holds, and the global random state of every device a
    model could draw from (the CPU and, when there is one, every CUDA device; forked). The
    one way ``course_lib`` borrows a model.

    Args:
        model: any ``torch.nn.Module``.
        mode: ``"eval"`` or ``"train"`` to put the whole model in that mode for the block,
            ``None`` to leave the modes as they are.
        state: also save and restore values and random states (see above).

    Yields:
        A :class:`Snapshot`, whose ``restore_buffers()`` and ``restore_randomness()`` let
        repeated passes inside the block see the same running statistics and noise.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), BatchNorm1d(3))
        >>> with as_found(model, "eval"):
        ...     y = model(torch.randn(1, 4))          # one example is fine in eval mode
        >>> model.training, model[1].training
        (True, True)
    """
    _checks.check_module(model)
    _checks.check_mode(mode, "as_found", allow_none=True)
    snap = Snapshot(modes=[(m, m.training) for m in model.modules()])
    if state:
        snap.params = [(p, p.detach().clone()) for p in model.parameters()]
        snap.grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
        snap.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        snap.generators = [(g, g.get_state()) for g in _generators(model)]
    try:
        if mode is not None:
            model.train(mode == "train")
        with torch.random.fork_rng(devices=_cuda_devices(), enabled=state):
            yield snap
    finally:
        snap.restore()
