r"""Chapter 8's normalizations: layer, group and instance norm, batch renorm, ghost batch norm.

Each is :func:`course_lib.normalization.normalize_over` over its own axes. Batch norm averages
every channel over ``(N, H, W)``; the others average each example alone: layer norm over all
of its ``(C, H, W)``, instance norm over each channel's ``(H, W)``, group norm over groups of
``C / G`` channels and their ``(H, W)``. Batch renorm corrects batch norm towards the running
statistics; ghost batch norm is batch norm on chunks of a large batch.

Each formula is one plain function in the lecture's notation; the modules
(:class:`LayerNorm`, :class:`GroupNorm`, :class:`InstanceNorm2d`, :class:`BatchRenorm1d`,
:class:`BatchRenorm2d`) are drop-in replacements for torch's and only do the bookkeeping:
parameters, buffers, and the checks (:mod:`course_lib._checks`), which refuse bad arguments
at construction and bad input before any state changes. Like torch, they compute the
statistics of float16/bfloat16 input in float32 and return the input's dtype.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from course_lib import _checks
from course_lib.batchnorm import per_channel, reduce_axes, values_per_channel
from course_lib.nn import BatchNorm1d, BatchNorm2d, _NormBase, batch_norm, update_running_buffers
from course_lib.normalization import normalize_over, scale_shift, working_dtype

__all__ = [
    "layer_norm",
    "group_norm",
    "instance_norm",
    "renorm_normalize",
    "batch_renorm",
    "ghost_batch_norm",
    "renorm_clips",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm2d",
    "BatchRenorm1d",
    "BatchRenorm2d",
]


def _c(v: Tensor | None, nd: int) -> Tensor | None:
    """A per-channel vector shaped to broadcast against ``(N, C, ...)``; None stays None."""
    return None if v is None else per_channel(v, nd)


def layer_norm(
    x: Tensor,
    normalized_shape: tuple[int, ...],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer norm: each example normalized over its last len(normalized_shape) axes."""
    dims = tuple(range(-len(normalized_shape), 0))  # the trailing axes of one example
    z_norm, _, _ = normalize_over(x, dims, eps)
    return scale_shift(z_norm, weight, bias)  # a gamma, beta per normalized value


def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Group norm: each example's channels in num_groups groups of consecutive channels,
    each group normalized over its channels and spatial axes."""
    N, C, G = x.shape[0], x.shape[1], num_groups
    z = x.reshape(N, G, C // G, *x.shape[2:])  # group g: channels g*C/G to (g+1)*C/G-1
    z_norm, _, _ = normalize_over(z, tuple(range(2, z.ndim)), eps)
    return scale_shift(z_norm.reshape(x.shape), _c(weight, x.ndim), _c(bias, x.ndim))


def instance_norm(
    x: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Instance norm: each channel of each example normalized over its spatial axes."""
    z_norm, _, sigma2 = normalize_over(x, tuple(range(2, x.ndim)), eps)
    # torch's rule for a constant channel with eps = 0: 0, not 0 / 0.
    z_norm = torch.where(sigma2 + eps > 0, z_norm, torch.zeros_like(z_norm))
    return scale_shift(z_norm, _c(weight, x.ndim), _c(bias, x.ndim))


def renorm_normalize(
    z: Tensor, mu: Tensor, sigma: Tensor, eps: float, r_max: float, d_max: float
) -> Tensor:
    """Batch renorm's normalization: the batch's, corrected by r and d towards the
    running mu and sigma (per channel, dim 1)."""
    nd = z.ndim
    z_norm, mu_B, sigma2_B = normalize_over(z, reduce_axes(z), eps)  # the batch's
    sigma_B = (sigma2_B + eps) ** 0.5
    with torch.no_grad():  # r and d are constants in the backward pass
        r = (sigma_B / per_channel(sigma, nd)).clamp(1.0 / r_max, r_max)
        d = ((mu_B - per_channel(mu, nd)) / per_channel(sigma, nd)).clamp(-d_max, d_max)
    return z_norm * r + d


def batch_renorm(
    x: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    r_max: float = 3.0,
    d_max: float = 5.0,
) -> Tensor:
    r"""Batch renormalization (Ioffe, 2017): batch norm corrected towards the running
    statistics.

    .. math::

        r = \operatorname{clip}_{[1/r_{\max}, r_{\max}]}(\sigma_B / \sigma), \quad
        d = \operatorname{clip}_{[-d_{\max}, d_{\max}]}((\mu_B - \mu) / \sigma), \quad
        \hat z = \frac{z - \mu_B}{\sigma_B}\, r + d

    with :math:`\sigma_B = \sqrt{\sigma_B^2 + \epsilon}` of the batch and :math:`\mu`,
    :math:`\sigma = \sqrt{\text{running\_var} + \epsilon}` the running statistics.
    :math:`r` and :math:`d` are constants for the backward pass. Without clipping,
    :math:`\hat z` is the normalization with the running statistics; with
    ``r_max=1, d_max=0`` it is batch norm. The running statistics are then updated as
    batch norm updates them (:func:`course_lib.nn.batch_norm`, which checks the batch
    before it changes them). Outside training it is batch norm with the running
    statistics.
    """
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False,
                          momentum, eps)
    z = working_dtype(x)
    sigma = (running_var.to(z.dtype) + eps) ** 0.5
    z_hat = renorm_normalize(z, running_mean.to(z.dtype), sigma, eps, r_max, d_max)
    # The running statistics move as batch norm's do (this call only updates them).
    with torch.no_grad():
        batch_norm(x.detach(), running_mean, running_var, training=True,
                   momentum=momentum, eps=eps)
    nd = z.ndim
    return scale_shift(z_hat, _c(weight, nd), _c(bias, nd)).to(x.dtype)


def ghost_batch_norm(
    x: Tensor,
    ghost_size: int,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Ghost batch norm (Hoffer et al., 2017): in training, batch norm on each chunk
    ("ghost batch") of ghost_size examples, one after the other."""
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False,
                          momentum, eps)
    _checks.check_ghost_batches(x, ghost_size, eps, momentum)  # before any update
    ghosts = [batch_norm(chunk, running_mean, running_var, weight, bias, True, momentum,
                         eps)
              for chunk in x.split(ghost_size)]
    return torch.cat(ghosts)


def renorm_clips(
    step: int, r_max: float, d_max: float, warmup_steps: int, ramp_steps: int
) -> tuple[float, float]:
    """Batch renorm's clipping schedule: ``(r_max, d_max)`` to use at training step ``step``.

    Plain batch norm (``1, 0``) for the first ``warmup_steps`` steps, then both limits grow
    linearly to ``r_max`` and ``d_max`` over ``ramp_steps`` steps, as in Ioffe (2017), who
    keeps batch norm for the first 5,000 steps and relaxes the limits over the next tens of
    thousands.

    Example:
        >>> renorm_clips(0, 3.0, 5.0, warmup_steps=10, ramp_steps=10)
        (1.0, 0.0)
        >>> renorm_clips(15, 3.0, 5.0, warmup_steps=10, ramp_steps=10)
        (2.0, 2.5)
    """
    if step < warmup_steps:
        return 1.0, 0.0
    progress = 1.0 if ramp_steps <= 0 else min(1.0, (step - warmup_steps) / ramp_steps)
    return 1.0 + progress * (r_max - 1.0), progress * d_max


class LayerNorm(Module):
    r"""Layer normalization; drop-in replacement for :class:`torch.nn.LayerNorm`.

    Each example is normalized over its last ``len(normalized_shape)`` axes
    (:func:`layer_norm`), with one :math:`\gamma, \beta` per normalized value. The same
    computation in training and evaluation mode: no running statistics.

    Args:
        normalized_shape: the trailing shape to normalize over, e.g. ``D`` or ``(C, H, W)``.
        eps: :math:`\epsilon \ge 0`. Default: 1e-5.
        elementwise_affine: learn ``weight`` (:math:`\gamma`) and ``bias`` (:math:`\beta`).
        bias: learn ``bias`` (only with ``elementwise_affine``). Default: True.
        device, dtype: where and in which dtype to create the parameters.

    Example:
        >>> LayerNorm(10)(torch.randn(4, 10)).shape
        torch.Size([4, 10])
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(normalized_shape)
        self.eps = _checks.check_eps(eps, training=False, where="LayerNorm")
        self.elementwise_affine = elementwise_affine
        kw = {"device": device, "dtype": dtype}
        # Registered as None when absent, so the names and state_dict keys match torch.
        if elementwise_affine:
            self.weight = Parameter(torch.empty(self.normalized_shape, **kw))
        else:
            self.register_parameter("weight", None)
        if elementwise_affine and bias:
            self.bias = Parameter(torch.empty(self.normalized_shape, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r""":math:`\gamma = 1`, :math:`\beta = 0`."""
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, None if self.weight is None else self.weight.dtype)
        _checks.check_trailing_shape(x.shape, self.normalized_shape)
        z = working_dtype(x)
        return layer_norm(z, self.normalized_shape, self.weight, self.bias,
                          self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}".format(
                **self.__dict__
            )
        )


class GroupNorm(Module):
    r"""Group normalization (Wu & He, 2018); drop-in replacement for :class:`torch.nn.GroupNorm`.

    The ``num_channels`` channels of each example are split into ``num_groups`` groups of
    consecutive channels, each normalized over its channels and spatial axes
    (:func:`group_norm`), then scaled and shifted per channel. No running statistics: the
    same computation in training and evaluation mode, for any batch size (an empty batch
    gives an empty output, as in torch).

    Args:
        num_groups: :math:`G`, must divide ``num_channels``.
        num_channels: :math:`C`.
        eps: :math:`\epsilon \ge 0`. Default: 1e-5.
        affine: learn ``weight`` (:math:`\gamma`) and ``bias`` (:math:`\beta`), shape ``(C,)``.
        device, dtype: where and in which dtype to create the parameters.

    Shape:
        - Input: ``(N, C, *)``; output: the same shape.

    Example:
        >>> GroupNorm(2, 6)(torch.randn(1, 6, 4, 4)).shape
        torch.Size([1, 6, 4, 4])
    """

    __constants__ = ["num_groups", "num_channels", "eps", "affine"]

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        _checks.check_num_groups(num_groups, num_channels)
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = _checks.check_eps(eps, training=False, where="GroupNorm")
        self.affine = affine
        kw = {"device": device, "dtype": dtype}
        if affine:
            self.weight = Parameter(torch.empty(num_channels, **kw))
            self.bias = Parameter(torch.empty(num_channels, **kw))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r""":math:`\gamma = 1`, :math:`\beta = 0`."""
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, None if self.weight is None else self.weight.dtype)
        _checks.check_min_ndim(x.dim())
        _checks.check_num_features(x.shape, self.num_channels, "GroupNorm",
                                   rebuild=f"GroupNorm({self.num_groups}, {x.shape[1]})",
                                   name="num_channels")
        z = working_dtype(x)
        return group_norm(z, self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return "{num_groups}, {num_channels}, eps={eps}, affine={affine}".format(**self.__dict__)


class InstanceNorm2d(_NormBase):
    r"""Instance normalization over ``(N, C, H, W)``; drop-in replacement for
    :class:`torch.nn.InstanceNorm2d`.

    Each channel of each example is normalized over its ``H x W`` values
    (:func:`instance_norm`). Defaults as in torch: no :math:`\gamma, \beta`
    (``affine=False``) and no running statistics (``track_running_stats=False``). With
    ``track_running_stats=True``, training updates running averages of the instances'
    statistics (their mean over the batch; the variance unbiased over ``H x W``) and
    evaluation mode normalizes with them, as in torch. A constant channel with ``eps=0``
    normalizes to 0, as in torch.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; output: the same shape.

    Example:
        >>> InstanceNorm2d(3)(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        eps = _checks.check_eps(eps, training=False, where="InstanceNorm2d")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, None if self.weight is None else self.weight.dtype)
        _checks.check_ndim(x.dim(), (3, 4), "InstanceNorm2d", "(N, C, H, W) or (C, H, W)")
        if x.dim() == 3:  # one unbatched image, as torch allows
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if self.affine or self.track_running_stats:
            _checks.check_num_features(x.shape, self.num_features, "InstanceNorm2d")
        z = working_dtype(x)
        if self.training or not self.track_running_stats:
            _checks.check_spatial_values(x.shape, "instance norm")
            if self.training and self.track_running_stats:
                self._update_running_stats(z)
            return instance_norm(z, self.weight, self.bias, self.eps).to(x.dtype)
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          False, 0.0, self.eps)

    @torch.no_grad()
    def _update_running_stats(self, z: Tensor) -> None:
        # torch treats each (example, channel) as its own batch-norm channel and averages
        # the N updates: the running averages move towards the instances' mean statistics.
        # Each instance's variance gets Bessel's correction over its m = H * W values.
        _checks.check_finite(z)  # before the buffers change
        momentum = 0.0 if self.momentum is None else self.momentum  # torch's choice
        _, mu, sigma2 = normalize_over(z, tuple(range(2, z.dim())), self.eps)
        update_running_buffers(self.running_mean, self.running_var,
                               mu.flatten(1).mean(dim=0), sigma2.flatten(1).mean(dim=0),
                               values_per_channel((1, 1, *z.shape[2:])), momentum)

    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "track_running_stats={track_running_stats}".format(**self.__dict__)
        )


class _BatchRenorm(_NormBase):
    r"""Batch renormalization (:func:`batch_renorm`) with its clipping schedule.

    Arguments of :class:`BatchNorm1d`, plus ``r_max``, ``d_max`` (the final clipping limits,
    3 and 5 in Ioffe, 2017), ``warmup_steps`` (steps of plain batch norm first) and
    ``ramp_steps`` (steps over which the limits grow from 1 and 0 to ``r_max``, ``d_max``;
    see :func:`renorm_clips`). The step is ``num_batches_tracked``, which counts only the
    batches the layer accepted. Running statistics are required: they are what the batch
    is corrected towards. Parameters, buffers and ``state_dict`` keys are batch norm's, so
    a trained layer loads into a :class:`BatchNorm1d`/`2d` for inference, where the two
    compute the same thing.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 0,
        ramp_steps: int = 0,
    ) -> None:
        if not track_running_stats:
            raise ValueError(
                "batch renorm corrects each batch towards the running statistics, so it needs "
                "track_running_stats=True; use BatchNorm without running statistics instead"
            )
        where = type(self).__name__
        eps = _checks.check_eps(eps, where=where)
        if momentum is not None:
            _checks.check_unit_interval(momentum, "momentum")
        r_max = _checks.check_number(r_max, "r_max", at_least=1.0, where=where)
        d_max = _checks.check_number(d_max, "d_max", at_least=0.0, where=where)
        warmup_steps = _checks.check_int(warmup_steps, "warmup_steps", 0, where=where)
        ramp_steps = _checks.check_int(ramp_steps, "ramp_steps", 0, where=where)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.r_max, self.d_max = r_max, d_max
        self.warmup_steps, self.ramp_steps = warmup_steps, ramp_steps

    def clips(self) -> tuple[float, float]:
        """``(r_max, d_max)`` for the next training step, from the schedule."""
        return renorm_clips(int(self.num_batches_tracked), self.r_max, self.d_max,
                            self.warmup_steps, self.ramp_steps)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, self.running_mean.dtype)
        self._check_input_dim(x)
        _checks.check_num_features(x.shape, self.num_features, type(self).__name__)
        if not self.training:
            return batch_renorm(x, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps)
        # Every check before any state changes: a refused batch is not counted.
        _checks.check_values_per_channel(x.shape)
        eps = _checks.check_eps(self.eps)
        _checks.check_finite(x)
        momentum = self._new_batch_weight()
        r_max, d_max = self.clips()
        y = batch_renorm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         True, momentum, eps, r_max, d_max)
        self.num_batches_tracked.add_(1)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + (
            f", r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
            f"ramp_steps={self.ramp_steps}"
        )


class BatchRenorm1d(_BatchRenorm):
    """Batch renormalization over ``(N, C)`` or ``(N, C, L)``; see :class:`_BatchRenorm`.

    Example:
        >>> layer = BatchRenorm1d(4, r_max=1.0, d_max=0.0)   # plain batch norm
        >>> layer(torch.randn(8, 4)).shape
        torch.Size([8, 4])
    """

    _check_input_dim = BatchNorm1d._check_input_dim


class BatchRenorm2d(_BatchRenorm):
    """Batch renormalization over ``(N, C, H, W)``; see :class:`_BatchRenorm`."""

    _check_input_dim = BatchNorm2d._check_input_dim
