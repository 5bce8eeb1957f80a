"""What the processes exchange, and how much: the collectives :mod:`course_lib.distributed`
uses, with their bytes counted, and a free port for a process group on this machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Exchange", "all_gather", "all_reduce", "count_traffic", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exchange(NamedTuple):
    """One collective call, seen from one process.

    Attributes:
        op: ``"all_gather"`` or ``"all_reduce"``.
        sent: bytes this process hands to the collective.
        received: bytes of the result it gets back (``P`` times ``sent`` for an all-gather of
            ``P`` processes, ``sent`` for an all-reduce). What travels on the wire depends
            on the backend's algorithm (a ring all-reduce moves about twice ``sent``).
    """

    op: str
    sent: int
    received: int


# Exchanges recorded while count_traffic() is active (None when it is not).
_traffic: list[Exchange] | None = None


@contextmanager
def count_traffic() -> Iterator[list[Exchange]]:
    """Record every collective :class:`~course_lib.distributed.SyncBatchNorm` calls.

    Yields a list that fills with one :class:`Exchange` per call (forward and backward).

    Example:
        >>> with count_traffic() as calls:
        ...     pass    # run training steps here
        >>> sum(c.sent for c in calls)
        0
    """
    global _traffic
    previous, _traffic = _traffic, []
    try:
        yield _traffic
    finally:
        _traffic = previous


def _record(op: str, t: Tensor, received_numel: int) -> None:
    if _traffic is not None:
        size = t.element_size()
        _traffic.append(Exchange(op, t.numel() * size, received_numel * size))


def all_reduce(t: Tensor, group: Any = None) -> Tensor:
    """Sum ``t`` over the processes of ``group``, in place; returns ``t``."""
    _record("all_reduce", t, t.numel())
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def all_gather(t: Tensor, group: Any = None) -> list[Tensor]:
    """Every process's ``t`` (one shape everywhere), in rank order."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    _record("all_gather", t, t.numel() * len(parts))
    dist.all_gather(parts, t.contiguous(), group=group)
    return parts
