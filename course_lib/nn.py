r"""Batch norm layers for PyTorch, written from scratch.

Same API, parameter and buffer names, and semantics as ``torch.nn.BatchNorm1d/2d/3d``, so a
learner can swap one for the other and nothing changes: same outputs, same gradients, same
running statistics, interchangeable ``state_dict``\ s. The math is the numpy reference's own
teaching function, :func:`course_lib.batchnorm.bn_forward`, which works on tensors too
(autograd derives the backward pass); :func:`batch_norm` checks the input and updates the
running statistics (:func:`course_lib.running_stats.running_stats_step`), and the modules
only do the bookkeeping, as in *Dive into Deep Learning*. The class hierarchy mirrors
``torch/nn/modules/batchnorm.py``:

- :class:`_NormBase` owns the parameters (``weight`` = :math:`\gamma`, ``bias`` =
  :math:`\beta`) and the buffers (``running_mean``, ``running_var``, ``num_batches_tracked``);
- :class:`_BatchNorm` owns ``forward``;
- :class:`BatchNorm1d`, :class:`BatchNorm2d`, :class:`BatchNorm3d` differ only in the input
  dimensions they accept.

One course addition: in training, an input holding NaN or inf (or so large that its variance
overflows) raises ``ValueError`` instead of silently filling the output and, for good, the
running statistics with NaN. A refused input changes no state.

Elsewhere: chapter 8's other normalizations in :mod:`course_lib.norm_layers`; finding the
batch norm layers of a model and borrowing it in :mod:`course_lib.borrow`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from course_lib import _checks
from course_lib.batchnorm import bn_forward, per_channel, values_per_channel
from course_lib.normalize import standardize
from course_lib.normalization import working_dtype
from course_lib.running_stats import new_value_weight, running_stats_step

__all__ = [
    "batch_norm",
    "update_running_buffers",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
]


@torch.no_grad()
def update_running_buffers(
    running_mean: Tensor | None, running_var: Tensor | None, mu: Tensor, sigma2: Tensor,
    m: int, w: float,
) -> None:
    """Update running-statistics buffers in place (``None`` ones are skipped) with
    :func:`course_lib.running_stats.running_stats_step`: the one update every layer uses."""
    new_mean, new_var = running_stats_step(running_mean, running_var, mu, sigma2, m, w)
    for buffer, new in ((running_mean, new_mean), (running_var, new_var)):
        if buffer is not None:
            buffer.copy_(new)


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

    Every check runs before anything is computed or changed, so a refused call leaves the
    running statistics as they were. float16/bfloat16 input is normalized in float32, as in
    torch, and returned in its own dtype.

    Raises:
        TypeError: ``x`` not a floating point tensor, or of another dtype than the
            per-channel tensors (float16/bfloat16 with float32 is fine); ``eps`` not a number.
        ValueError: ``x`` with fewer than 2 dimensions; a per-channel tensor without one value
            per channel (torch's words: "weight should contain 4 elements not 5"); ``eps``
            not finite, or ``<= 0`` in training; in training, one value per channel, or
            NaN/inf in ``x`` or a variance that overflows (a course addition: torch would
            return NaN); outside training, missing running statistics.

    Example:
        >>> x = torch.randn(32, 4)
        >>> y = batch_norm(x, None, None, training=True)
        >>> torch.allclose(y.mean(dim=0), torch.zeros(4), atol=1e-6)
        True
    """
    _check_batch_norm_input(x, running_mean, running_var, weight, bias, training)
    eps = _checks.check_eps(eps, training)
    z = working_dtype(x)  # float16/bfloat16 in float32, as torch does
    weight, bias = (None if p is None else p.to(z.dtype) for p in (weight, bias))
    C, nd = z.shape[1], z.ndim
    if training:
        m = values_per_channel(z.shape)
        gamma = torch.ones(C, dtype=z.dtype, device=z.device) if weight is None else weight
        beta = torch.zeros(C, dtype=z.dtype, device=z.device) if bias is None else bias
        z_tilde, cache = bn_forward(z, gamma, beta, eps)  # the one implementation
        if m > 0:  # an empty batch leaves the running statistics alone, as in torch
            with torch.no_grad():  # bookkeeping, not part of the model's gradient
                # Course addition: refuse NaN/inf (and overflow) before any state changes.
                _checks.check_finite(x, channel_vars=cache.var)
                update_running_buffers(running_mean, running_var, cache.mu, cache.var, m, momentum)
        return z_tilde.to(x.dtype)
    # Test time: fixed statistics, so batch norm is chapter 1's standardization, a scale and
    # a shift per channel.
    mu, sigma2 = (per_channel(t.to(z.dtype), nd) for t in (running_mean, running_var))
    z_norm = standardize(z, mu, (sigma2 + eps) ** 0.5)
    y = z_norm if weight is None else z_norm * per_channel(weight, nd)
    y = y if bias is None else y + per_channel(bias, nd)
    return y.to(x.dtype)


def _check_batch_norm_input(
    x: Any,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
) -> None:
    """Every check of :func:`batch_norm`, before anything is computed or changed."""
    own = _first_not_none(weight, bias, running_mean, running_var)
    _checks.check_float_tensor(x, None if own is None else own.dtype)
    _checks.check_min_ndim(x.dim())
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None:
            _checks.check_channel_count(t, name, x.shape[1])
    if training:
        _checks.check_values_per_channel(x.size(), allow_empty=True)
    elif running_mean is None or running_var is None:
        raise ValueError(
            "running_mean and running_var must be tensors when training=False (got None); "
            "pass training=True to normalize with the batch's own statistics"
        )


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

    def _new_batch_weight(self) -> float:
        """The weight of the next training batch in the running averages
        (:func:`course_lib.running_stats.new_value_weight`, PyTorch's convention): the
        ``momentum``, or with ``momentum=None`` 1 / n for the n-th batch (the plain mean)."""
        return new_value_weight(
            "pytorch",
            momentum=self.momentum,
            num_batches_tracked=None if self.momentum is not None
            else int(self.num_batches_tracked) + 1,
        )

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
        own = _first_not_none(self.weight, self.bias, self.running_mean)
        _checks.check_float_tensor(x, None if own is None else own.dtype)
        self._check_input_dim(x)
        if own is not None:  # as in torch, a layer with no per-channel tensors takes any C
            if x.shape[1] != self.num_features:
                _checks.check_num_features(x.shape, self.num_features, type(self).__name__)

        training = self.training
        updating = training and self.track_running_stats
        momentum = self._new_batch_weight() if updating else 0.0
        # Batch statistics in training, and in eval when there are no running ones to use.
        use_batch_stats = training or (self.running_mean is None and self.running_var is None)
        # Hand over the buffers only to be used (eval) or updated (training and tracking).
        hand_over = not training or self.track_running_stats
        y = batch_norm(
            x,
            self.running_mean if hand_over else None,
            self.running_var if hand_over else None,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )
        if updating:  # after batch_norm accepted the input
            self.num_batches_tracked.add_(1)
        return y


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
