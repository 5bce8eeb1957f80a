r"""Synchronized batch norm: the layer, its forward statistics and its backward sums.

Per channel, each process :math:`p` summarizes its slice by its count, mean and sum of squared
deviations, :math:`(m_p, \mu_p, M_{2,p})` (:func:`local_moments`, ``2C + 1`` values). One
``all_gather`` gives every process every summary, and each merges them in rank order with
Chan's formula (:func:`course_lib.normalization.merge_moments`, the package's one merge):
exactly the mean and biased variance :math:`M_2 / m` of the concatenated batch, also in
float32 at any offset, for slices of any sizes (:func:`sync_batch_stats`). The backward pass
all-reduces the two per-channel sums of chapter 2's compact formula
(:func:`sync_bn_backward`).

This is what ``torch.nn.SyncBatchNorm`` does too: its forward all-gathers each process's
(mean, invstd, count) and combines them (``batch_norm_gather_stats_with_counts``); its
backward all-reduces the same two sums. The course sends :math:`M_2` where torch sends
:math:`1/\sqrt{\sigma^2 + \epsilon}`: the same number of values, and merged exactly by the
formula the course already teaches. The shortcut of all-reducing :math:`\sum z` and
:math:`\sum z^2` (one sum instead of a gather) computes :math:`\sigma^2 = \overline{z^2} -
\mu^2`, which cancels in float32: for channel means of :math:`10^4` and spreads of 1 it
returns variances of 0 or 16 instead of 1.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from course_lib import _checks
from course_lib.batchnorm import per_channel, reduce_axes
from course_lib.distributed.collectives import all_gather, all_reduce
from course_lib.nn import BatchNorm1d, BatchNorm2d, BatchNorm3d, update_running_buffers
from course_lib.normalization import Moments, merge_moments, moments_over, scale_shift
from course_lib.normalization import working_dtype
from course_lib.normalize import standardize

__all__ = [
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "convert_sync_batchnorm",
    "local_moments",
    "sync_batch_stats",
    "sync_bn_backward",
]


def local_moments(z: Tensor) -> Tensor:
    """What one process sends: its count m_p, and per channel its mean and its M2,
    the sum of squared deviations from that mean (2C + 1 values)."""
    m_p, mu_p, M2_p = moments_over(z, reduce_axes(z))  # centered: exact at any offset
    count = torch.tensor([float(m_p)], dtype=z.dtype, device=z.device)
    return torch.cat([count, mu_p, M2_p])


def sync_batch_stats(z: Tensor, group: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """The mean and biased variance of each channel over the batch of all processes,
    and its count m: every process's local_moments, gathered and merged."""
    C = z.shape[1]
    sent = all_gather(local_moments(z), group)  # one row per process, in rank order
    parts = [Moments(p[0], p[1:C + 1], p[C + 1:]) for p in sent]
    m, mu, M2 = reduce(merge_moments, parts)    # Chan's merge, the same everywhere
    return mu, M2 / m, m


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
    sums = all_reduce(torch.cat([dbeta_local, dgamma_local]), group)
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
        # Every process sees the same m and statistics, so all refuse together (no hang).
        if m.item() <= 1:
            _checks.check_values_per_channel((int(m.item()), z.shape[1]))
        if not bool(torch.isfinite(var).all()):
            _checks.check_finite(z, channel_vars=var)
        sigma = (var + eps) ** 0.5
        z_norm = standardize(z, per_channel(mu, nd), per_channel(sigma, nd))
        out = scale_shift(z_norm, None if weight is None else per_channel(weight, nd),
                          None if bias is None else per_channel(bias, nd))
        ctx.save_for_backward(z_norm, weight, 1 / sigma)
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
        _checks.check_num_features(x.shape, self.num_features, "SyncBatchNorm")
        eps = _checks.check_eps(self.eps, where="SyncBatchNorm")
        w = self._new_batch_weight() if self.track_running_stats else 0.0
        out, mu, var, m = SyncBatchNormFunction.apply(
            working_dtype(x), self.weight, self.bias, eps, self.process_group)
        if self.track_running_stats:
            with torch.no_grad():  # bookkeeping, as in batch norm, with the global m
                update_running_buffers(self.running_mean, self.running_var, mu, var, int(m), w)
                self.num_batches_tracked.add_(1)
        return out.to(x.dtype)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Any = None) -> nn.Module:
        """See :func:`convert_sync_batchnorm`."""
        return convert_sync_batchnorm(module, process_group)


_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d)


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
    if isinstance(module, _BATCH_NORMS) and not isinstance(module, SyncBatchNorm):
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
