r"""Batch norm across processes: synchronized batch norm written from scratch.

In data-parallel training each of :math:`P` processes holds a slice of the mini-batch. A
plain batch norm layer in each process normalizes with the statistics of its own slice only
("local BN"): with 8 examples per process it is batch-8 batch norm, however many processes
there are. :class:`SyncBatchNorm` makes the processes agree on the statistics of the whole
batch. Per channel, each process adds up three numbers over its slice,

.. math::

    s_p = \sum_i z^{(i)}, \qquad q_p = \sum_i \big(z^{(i)}\big)^2, \qquad m_p ,

and one ``all_reduce`` sums them over the processes; then :math:`\mu = s / m` and
:math:`\sigma^2 = q / m - \mu^2`, exactly the statistics of the concatenated batch (the count
makes unequal slices right). The backward pass needs two more sums over the whole batch,
:math:`\sum \partial y` and :math:`\sum \partial y\, \hat z` per channel: one more
``all_reduce``, inside an ``autograd.Function``.

It works on the CPU with the gloo backend (``torch.nn.SyncBatchNorm`` refuses CPU tensors)
and, unchanged, with NCCL on GPUs. When ``torch.distributed`` is not initialized, or the group has
one process, it is :class:`course_lib.nn.BatchNorm1d` (for any ``(N, C, *)`` input).

Public names: :class:`SyncBatchNorm`, :func:`convert_sync_batchnorm`,
:class:`SyncBatchNormFunction` (its forward and backward passes), :func:`sync_batch_stats`
(the formula above), :func:`local_sums`, :func:`sync_bn_backward` (the backward pass's sums),
:func:`count_traffic`, :func:`free_port`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from course_lib import _checks
from course_lib.batchnorm import per_channel, reduce_axes
from course_lib.nn import BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchRenorm1d, BatchRenorm2d
from course_lib.nn import update_running_buffers  # batch norm's own update, with the global m

__all__ = [
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "convert_sync_batchnorm",
    "count_traffic",
    "free_port",
    "local_sums",
    "sync_batch_stats",
    "sync_bn_backward",
]

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Values handed to all_reduce while count_traffic() is active (None when it is not).
_traffic: list[int] | None = None


@contextmanager
def count_traffic() -> Iterator[list[int]]:
    """Record the size in bytes of every tensor :class:`SyncBatchNorm` all-reduces.

    Yields a list that fills with one entry per ``all_reduce`` call (forward and backward).

    Example:
        >>> with count_traffic() as sent:
        ...     pass    # run training steps here
        >>> sum(sent)
        0
    """
    global _traffic
    previous, _traffic = _traffic, []
    try:
        yield _traffic
    finally:
        _traffic = previous


def _all_reduce(t: Tensor, group: Any) -> Tensor:
    if _traffic is not None:
        _traffic.append(t.numel() * t.element_size())
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def local_sums(z: Tensor) -> Tensor:
    r"""What one process contributes: per channel :math:`\sum z`, :math:`\sum z^2`,
    and the count.

    Returns a vector of length ``2C + 1``: ``C`` sums, ``C`` sums of squares, one
    count. Sums (not means) because sums of slices add up to the sum of the whole batch.
    """
    axes = reduce_axes(z)
    m = torch.tensor([z.numel() // z.shape[1]], dtype=z.dtype, device=z.device)
    return torch.cat([z.sum(dim=axes), (z * z).sum(dim=axes), m])


def sync_batch_stats(z: Tensor, group: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    r"""The mean and biased variance of each channel over the batch of *all* processes.

    One ``all_reduce`` of :func:`local_sums`; returns ``(mu, var, m)`` with ``m`` the
    total number of values per channel.
    """
    C = z.shape[1]
    sums = _all_reduce(local_sums(z), group)  # now the sums over every process's slice
    m = sums[2 * C]
    mu = sums[:C] / m
    var = (sums[C:2 * C] / m - mu * mu).clamp_min(0.0)  # E[z^2] - mu^2, never below 0
    return mu, var, m


def sync_bn_backward(
    dz_tilde: Tensor, z_norm: Tensor, gamma: Tensor, inv_std: Tensor, m: float,
    group: Any = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Chapter 2's compact backward pass with the sums over *all* processes' slices.

    One ``all_reduce`` of :math:`\sum \partial J/\partial \tilde z` and
    :math:`\sum (\partial J/\partial \tilde z)\, z_{\text{norm}}`; ``m`` counts
    the whole batch. Returns ``dz`` and this process's shares of ``dgamma`` and
    ``dbeta`` (DDP adds up the shares of all processes).
    """
    axes, nd, C = reduce_axes(dz_tilde), dz_tilde.dim(), dz_tilde.shape[1]
    dbeta_local = dz_tilde.sum(dim=axes)
    dgamma_local = (dz_tilde * z_norm).sum(dim=axes)
    sums = _all_reduce(torch.cat([dbeta_local, dgamma_local]), group)
    dbeta, dgamma = sums[:C], sums[C:]  # the sums over the whole batch
    scale = per_channel(gamma * inv_std / m, nd)
    dz = scale * (m * dz_tilde - per_channel(dbeta, nd)
                  - z_norm * per_channel(dgamma, nd))
    return dz, dgamma_local, dbeta_local


class SyncBatchNormFunction(torch.autograd.Function):
    """Forward: normalize with the whole batch's statistics. Backward: two sums."""

    @staticmethod
    def forward(ctx, z, weight, bias, eps, group):  # type: ignore[override]
        nd = z.dim()
        mu, var, m = sync_batch_stats(z, group)
        if m.item() <= 1:
            _checks.check_values_per_channel((int(m.item()), z.shape[1]))
        inv_std = torch.rsqrt(var + eps)
        z_norm = (z - per_channel(mu, nd)) * per_channel(inv_std, nd)
        out = z_norm if weight is None else z_norm * per_channel(weight, nd)
        out = out if bias is None else out + per_channel(bias, nd)
        ctx.save_for_backward(z_norm, weight, inv_std)
        ctx.m, ctx.group = float(m), group
        ctx.mark_non_differentiable(mu, var, m)
        return out, mu, var, m

    @staticmethod
    def backward(ctx, dout, _dmu, _dvar, _dm):  # type: ignore[override]
        z_norm, weight, inv_std = ctx.saved_tensors
        gamma = torch.ones_like(inv_std) if weight is None else weight
        dz, dgamma_local, dbeta_local = sync_bn_backward(dout, z_norm, gamma, inv_std,
                                                         ctx.m, ctx.group)
        return (
            dz,
            dgamma_local if weight is not None and ctx.needs_input_grad[1] else None,
            dbeta_local if ctx.needs_input_grad[2] else None,
            None,
            None,
        )


class SyncBatchNorm(BatchNorm1d):
    r"""Batch norm whose training statistics are those of the batch of all processes.

    Same constructor, parameters, buffers and ``state_dict`` keys as
    :class:`torch.nn.SyncBatchNorm`. In training, with ``torch.distributed`` initialized and
    more than one process in ``process_group``, the output, the input gradient, the running
    statistics and the parameter gradients summed over the processes equal those of
    :class:`course_lib.nn.BatchNorm1d`/`2d` applied in one process to the concatenated
    batch, for any local batch sizes (a process may even hold none). Otherwise (one process,
    evaluation mode) it is batch norm. Input: ``(N, C, *)``.

    Args:
        num_features, eps, momentum, affine, track_running_stats: as in
            :class:`course_lib.nn.BatchNorm1d`.
        process_group: the group to synchronize over; ``None`` for all processes.
        device, dtype: where and in which dtype to create parameters and buffers.
        bias: learn :math:`\beta` (only with ``affine``). Default: True.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, bias=bias)
        self.process_group = process_group

    def _check_input_dim(self, x: Tensor) -> None:
        _checks.check_min_ndim(x.dim())

    def _world_size(self) -> int:
        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self._world_size() == 1:
            return super().forward(x)  # batch norm, exactly
        _checks.check_float_tensor(x, self.running_mean.dtype if self.running_mean is not None
                                   else None if self.weight is None else self.weight.dtype)
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            _checks.check_num_features(x.shape, self.num_features, "SyncBatchNorm")
        out, mu, var, m = SyncBatchNormFunction.apply(
            x, self.weight, self.bias, self.eps, self.process_group)
        if self.track_running_stats:
            with torch.no_grad():  # bookkeeping, as in batch norm, with the global m
                self.num_batches_tracked.add_(1)
                w = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                     else self.momentum)
                update_running_buffers(self.running_mean, self.running_var, mu, var, int(m), w)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Any = None) -> nn.Module:
        """See :func:`convert_sync_batchnorm`."""
        return convert_sync_batchnorm(module, process_group)


_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d)
_NOT_BATCH_NORM = (BatchRenorm1d, BatchRenorm2d, SyncBatchNorm)


def convert_sync_batchnorm(module: nn.Module, process_group: Any = None) -> nn.Module:
    """Replace every batch norm layer in ``module`` by a :class:`SyncBatchNorm`.

    Like ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: works on ``torch.nn`` and
    ``course_lib.nn`` batch norm layers, keeps their parameters, running statistics,
    ``requires_grad`` flags and training mode, and returns the converted module (a new
    object if ``module`` itself is a batch norm layer; otherwise ``module``, changed in place).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
        >>> type(convert_sync_batchnorm(net)[1]).__name__
        'SyncBatchNorm'
    """
    out = module
    if isinstance(module, _BATCH_NORMS) and not isinstance(module, _NOT_BATCH_NORM):
        ref = next((t for t in (module.weight, module.running_mean) if t is not None), None)
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group,
                            bias=module.bias is not None or not module.affine,
                            device=None if ref is None else ref.device,
                            dtype=None if ref is None else ref.dtype)
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.weight.requires_grad_(module.weight.requires_grad)
                if module.bias is not None:
                    out.bias.copy_(module.bias)
                    out.bias.requires_grad_(module.bias.requires_grad)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.train(module.training)
        if hasattr(module, "qconfig"):
            out.qconfig = module.qconfig
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, process_group))
    return out
