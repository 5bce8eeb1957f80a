r"""Batch norm layers for PyTorch, written from scratch.

Same API, parameter and buffer names, and semantics as ``torch.nn.BatchNorm1d/2d/3d``, so a
learner can swap one for the other and nothing changes: same outputs, same gradients, same
running statistics, interchangeable ``state_dict``\ s. The math is one plain function,
:func:`batch_norm`, in ordinary torch operations (autograd derives the backward pass); the
modules only do the bookkeeping, as in *Dive into Deep Learning*. The class hierarchy mirrors
``torch/nn/modules/batchnorm.py``:

- :class:`_NormBase` owns the parameters (``weight`` = :math:`\gamma`, ``bias`` =
  :math:`\beta`) and the buffers (``running_mean``, ``running_var``, ``num_batches_tracked``);
- :class:`_BatchNorm` owns ``forward``;
- :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d` differ only in the input
  dimensions they accept.

One course addition: in training, an input holding NaN or inf raises ``ValueError`` instead of
silently filling the output and, for good, the running statistics with NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from course_lib import _checks
from course_lib.batchnorm import per_channel, reduce_axes, values_per_channel

__all__ = ["batch_norm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d"]


def batch_norm(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    r"""Batch norm of ``x`` per channel (axis 1); same contract as ``torch.nn.functional.batch_norm``.

    .. math::

        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
        y = \gamma \hat x + \beta

    In training, :math:`\mu, \sigma^2` are the batch mean and *biased* batch variance over
    every axis but 1 (:math:`m` values per channel), and the running statistics, if given, are
    updated in place with ``momentum``, the weight of the new batch:

    .. math::

        \text{running\_mean} \leftarrow (1 - \text{momentum})\,\text{running\_mean}
            + \text{momentum}\,\mu, \qquad
        \text{running\_var} \leftarrow (1 - \text{momentum})\,\text{running\_var}
            + \text{momentum}\,\frac{m}{m - 1}\,\sigma^2 .

    The running variance gets the *unbiased* estimate (Bessel's correction), as in torch.
    Outside training, :math:`\mu, \sigma^2` are ``running_mean`` and ``running_var``.

    Args:
        x: input ``(N, C, *spatial)``, the lecture's :math:`z`.
        running_mean, running_var: buffers of shape ``(C,)``, or ``None``.
        weight, bias: :math:`\gamma, \beta` of shape ``(C,)``, or ``None`` for 1 and 0.
        training: use (and update) batch statistics rather than the running ones.
        momentum: weight of the new batch in the running averages.
        eps: :math:`\epsilon`, added to the variance.

    Returns:
        :math:`y`, the shape of ``x``.

    Raises:
        ValueError: in training, one value per channel, ``eps <= 0`` or NaN/inf in ``x``
            (the last is a course addition: torch would return NaN); outside training,
            missing running statistics.

    Example:
        >>> x = torch.randn(32, 4)
        >>> y = batch_norm(x, None, None, training=True)
        >>> torch.allclose(y.mean(dim=0), torch.zeros(4), atol=1e-6)
        True
    """
    # Hot path: this runs once per BN layer per step, so the checks below are written to cost
    # (almost) nothing when the input is fine, and each raises the same error as the shared
    # helper in course_lib._checks by calling it once something is wrong.
    if eps <= 0.0:
        _checks.check_eps(eps, training)
    axes, nd = reduce_axes(x), x.ndim
    # per_channel leaves a (C,) vector as it is for a 2D input: it broadcasts against (N, C)
    # as (1, C) does, with the same values and gradient reductions, and one graph node less.
    def pc(v: Tensor) -> Tensor:
        return per_channel(v, nd)

    if training:
        shape = x.shape
        m = values_per_channel(shape)
        if m <= 1:
            _checks.check_values_per_channel(x.size(), allow_empty=True)
        mean = x.mean(dim=axes)
        mean_c = pc(mean)  # one view feeds both centerings: its gradient is the same sum
        var = ((x - mean_c) ** 2).mean(dim=axes)  # biased: divide by m
        # Course addition: refuse NaN/inf rather than spread it. A non-finite value anywhere
        # in a channel makes that channel's mean non-finite, so one sum of the means proves a
        # finite input; only when it is not finite does the full check (and its message) run.
        if m > 0:
            with torch.no_grad():  # bookkeeping, not part of the model's gradient
                if not math.isfinite(mean.sum().item()):
                    _checks.check_finite(x, channel_means=mean.detach())
                _update_running_stats(running_mean, running_var, mean, var, momentum, m)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(
                "running_mean and running_var must be tensors when training=False (got None); "
                "pass training=True to normalize with the batch's own statistics"
            )
        mean, var = running_mean, running_var
        mean_c = pc(mean)

    x_hat = (x - mean_c) / torch.sqrt(pc(var) + eps)
    y = x_hat if weight is None else x_hat * pc(weight)
    return y if bias is None else y + pc(bias)


def _update_running_stats(
    running_mean: Tensor | None,
    running_var: Tensor | None,
    mean: Tensor,
    var: Tensor,
    momentum: float,
    m: int,
) -> None:
    """Exponential moving averages, in place, with the unbiased variance (torch's convention).

    ``m > 0`` values per channel (an empty batch leaves the buffers alone, as in torch); call
    it under ``torch.no_grad()``. Computes ``(1 - momentum) * running + momentum * new`` with
    the same roundings as that expression, but in the buffers themselves, without the
    temporaries and the copy back, and both buffers in one call per operation.
    """
    buffers, new = [], []
    if running_mean is not None:
        buffers.append(running_mean)
        new.append(momentum * mean)
    if running_var is not None:
        buffers.append(running_var)
        new.append((var * (m / (m - 1))).mul_(momentum))  # Bessel's correction, then weight
    if buffers:
        torch._foreach_mul_(buffers, 1 - momentum)
        torch._foreach_add_(buffers, new)


class _NormBase(Module):
    """Parameters, running buffers and their housekeeping; mirrors torch's ``_NormBase``."""

    # Version 2 added num_batches_tracked; torch's state_dicts carry the same number.
    _version = 2
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]
    num_features: int
    eps: float
    momentum: float | None
    affine: bool
    track_running_stats: bool

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
        bias: bool = True,
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        # Registered as None when absent, so the names exist and state_dict keys match torch.
        if self.affine:
            self.weight = Parameter(torch.empty(num_features, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(num_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            # Buffers, not plain attributes: they follow .to(device), .double() and state_dict.
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        r"""Reset the running statistics, and :math:`\gamma = 1`, :math:`\beta = 0`."""
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, x: Tensor) -> None:
        # Any (N, C, ...) input; BatchNorm1d/2d/3d narrow it to the shapes they take.
        _checks.check_min_ndim(x.dim())

    def extra_repr(self) -> str:
        return (
            "{num_features}, eps={eps}, momentum={momentum}, affine={affine}, "
            "bias={use_bias}, track_running_stats={track_running_stats}".format(
                **self.__dict__, use_bias=self.bias is not None
            )
        )

    def _load_from_state_dict(
        self,
        state_dict,
        prefix,
        local_metadata,
        strict,
        missing_keys,
        unexpected_keys,
        error_msgs,
    ) -> None:
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            # A state_dict saved before num_batches_tracked existed: keep ours (or 0) rather
            # than failing a strict load on the missing key, exactly as torch does.
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = (
                    self.num_batches_tracked
                    if self.num_batches_tracked is not None
                    and self.num_batches_tracked.device != torch.device("meta")
                    else torch.tensor(0, dtype=torch.long)
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class _BatchNorm(_NormBase):
    """Owns ``forward``: decides which statistics to use and which buffers to update."""

    def forward(self, x: Tensor) -> Tensor:
        # Read parameters and buffers from their dicts once: nn.Module's attribute lookup for
        # them is slow, and this runs once per layer per step.
        params, buffers = self._parameters, self._buffers
        try:
            weight, bias = params["weight"], params["bias"]
            running_mean, running_var = buffers["running_mean"], buffers["running_var"]
            num_batches_tracked = buffers["num_batches_tracked"]
        except KeyError:  # e.g. a parametrized weight lives elsewhere: ask nn.Module
            weight, bias = self.weight, self.bias
            running_mean, running_var = self.running_mean, self.running_var
            num_batches_tracked = self.num_batches_tracked
        own = _first_not_none(weight, bias, running_mean)
        _checks.check_float_tensor(x, None if own is None else own.dtype)
        self._check_input_dim(x)
        if own is not None:  # as in torch, a layer with no per-channel tensors takes any C
            shape = x.shape
            if shape[1] != self.num_features:
                _checks.check_num_features(shape, self.num_features, type(self).__name__)

        # The weight of the new batch in the running averages.
        training = self.training
        factor = 0.0 if self.momentum is None else self.momentum
        if training and self.track_running_stats and num_batches_tracked is not None:
            num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average: the plain mean of batches
                factor = 1.0 / float(num_batches_tracked)

        # Batch statistics in training, and in eval when there are no running ones to use.
        use_batch_stats = training or (running_mean is None and running_var is None)
        # Hand over the buffers only to be used (eval) or updated (training and tracking).
        hand_over = not training or self.track_running_stats

        # Like torch, a float16/bfloat16 input meets float32 parameters in float32.
        x_in = x if own is None or x.dtype == own.dtype else x.to(own.dtype)
        y = batch_norm(
            x_in,
            running_mean if hand_over else None,
            running_var if hand_over else None,
            weight,
            bias,
            use_batch_stats,
            factor,
            self.eps,
        )
        return y if y.dtype == x.dtype else y.to(x.dtype)

    def _a_per_channel_tensor(self) -> Tensor | None:
        """Any of weight, bias, running_mean: they fix the layer's dtype and channel count."""
        return _first_not_none(self.weight, self.bias, self.running_mean)


def _first_not_none(*tensors: Tensor | None) -> Tensor | None:
    for t in tensors:
        if t is not None:
            return t
    return None


class BatchNorm1d(_BatchNorm):
    r"""Batch normalization over a 2D input ``(N, C)`` or a 3D input ``(N, C, L)``.

    .. math::

        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, \gamma + \beta

    per feature or channel :math:`C`, over the batch (and length) axes; see
    :func:`batch_norm` for the statistics and their running averages. Drop-in replacement
    for :class:`torch.nn.BatchNorm1d`.

    Args:
        num_features: :math:`C`, the number of features or channels.
        eps: :math:`\epsilon`, added to the variance. Default: 1e-5.
        momentum: weight of the new batch in the running averages, or ``None`` for a
            cumulative moving average (the plain mean of all batches). Default: 0.1.
        affine: learn :math:`\gamma` (``weight``) and :math:`\beta` (``bias``). Default: True.
        track_running_stats: keep running averages for eval mode; if False, eval mode uses
            batch statistics too and the buffers are None. Default: True.
        device, dtype: where and in which dtype to create parameters and buffers.
        bias: learn :math:`\beta` (only with ``affine``). Default: True.

    Shape:
        - Input: ``(N, C)`` or ``(N, C, L)``.
        - Output: same shape as the input.

    Example:
        >>> bn = BatchNorm1d(100)
        >>> y = bn(torch.randn(20, 100))
        >>> y.shape, int(bn.num_batches_tracked)
        (torch.Size([20, 100]), 1)
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() != 2 and x.dim() != 3:
            raise ValueError(
                f"expected 2D or 3D input (got {x.dim()}D input); BatchNorm1d takes (N, C) or "
                "(N, C, L): use BatchNorm2d for (N, C, H, W), or x.unsqueeze(0) for a single "
                "example"
            )


class BatchNorm2d(_BatchNorm):
    r"""Batch normalization over a 4D input ``(N, C, H, W)``: one :math:`\gamma, \beta` per channel.

    .. math::

        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, \gamma + \beta

    with the statistics of each channel over :math:`N \cdot H \cdot W` values. Arguments as in
    :class:`BatchNorm1d`. Drop-in replacement for :class:`torch.nn.BatchNorm2d`.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: same shape as the input.

    Example:
        >>> bn = BatchNorm2d(3)
        >>> bn(torch.randn(8, 3, 32, 32)).shape
        torch.Size([8, 3, 32, 32])
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(
                f"expected 4D input (got {x.dim()}D input); BatchNorm2d takes (N, C, H, W): "
                "use BatchNorm1d for (N, C) or (N, C, L), or x.unsqueeze(0) for a single image"
            )


class BatchNorm3d(_BatchNorm):
    r"""Batch normalization over a 5D input ``(N, C, D, H, W)``: one :math:`\gamma, \beta` per channel.

    Arguments as in :class:`BatchNorm1d`. Drop-in replacement for :class:`torch.nn.BatchNorm3d`.

    Shape:
        - Input: ``(N, C, D, H, W)``.
        - Output: same shape as the input.

    Example:
        >>> BatchNorm3d(2)(torch.randn(4, 2, 3, 5, 5)).shape
        torch.Size([4, 2, 3, 5, 5])
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(
                f"expected 5D input (got {x.dim()}D input); BatchNorm3d takes (N, C, D, H, W)"
            )
