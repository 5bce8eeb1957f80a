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

Also here, for every module of ``course_lib``: :func:`is_batchnorm`,
:func:`batchnorm_layers` and :func:`batchnorm_dim` (the one answer to "is this a batch norm
layer?") and :func:`as_found` (the one way to borrow a model and leave it as it was found).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import math

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from course_lib import _checks
from course_lib.batchnorm import bn_forward, per_channel, reduce_axes, values_per_channel
from course_lib.running_stats import new_value_weight, running_stats_step

__all__ = [
    "batch_norm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "is_batchnorm",
    "batchnorm_layers",
    "batchnorm_dim",
    "as_found",
    "Snapshot",
    # chapter 8
    "layer_norm", "group_norm", "instance_norm", "batch_renorm", "renorm_normalize",
    "ghost_batch_norm",
    "renorm_clips", "LayerNorm", "GroupNorm", "InstanceNorm2d", "BatchRenorm1d",
    "BatchRenorm2d",
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
    # Like torch, float16/bfloat16 is normalized in float32: (z - mu)**2 of values of a few
    # hundred already overflows float16 (largest value 65504).
    z = x.float() if x.dtype in _LOW_PRECISION else x
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
    # Test time: fixed statistics, so batch norm is a scale and a shift per channel.
    mu, sigma2 = (per_channel(t.to(z.dtype), nd) for t in (running_mean, running_var))
    z_norm = (z - mu) / (sigma2 + eps) ** 0.5
    y = z_norm if weight is None else z_norm * per_channel(weight, nd)
    y = y if bias is None else y + per_channel(bias, nd)
    return y.to(x.dtype)


_LOW_PRECISION = (torch.float16, torch.bfloat16)


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
    if not isinstance(model, Module):
        raise TypeError(
            f"expected model to be a torch.nn.Module (got {type(model).__qualname__})"
        )
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


@contextmanager
def as_found(
    model: Module, mode: str | None = None, *, state: bool = False
) -> Iterator[Snapshot]:
    """Run the ``with`` block, then leave ``model`` as it was found.

    Always restored: the train/eval mode of every submodule (nested ones included, each its
    own). With ``state=True`` also, bit for bit: parameter values and their ``.grad``,
    buffers (running statistics, ``num_batches_tracked``), the state of every
    ``torch.Generator`` a module holds, and the global CPU random state (forked). The one
    way ``course_lib`` borrows a model.

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
    if not isinstance(model, Module):
        raise TypeError(
            f"expected model to be a torch.nn.Module (got {type(model).__qualname__})"
        )
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
        with torch.random.fork_rng(devices=[], enabled=state):
            yield snap
    finally:
        snap.restore()


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
        own = _first_not_none(self.weight, self.bias, self.running_mean)
        _checks.check_float_tensor(x, None if own is None else own.dtype)
        self._check_input_dim(x)
        if own is not None:  # as in torch, a layer with no per-channel tensors takes any C
            if x.shape[1] != self.num_features:
                _checks.check_num_features(x.shape, self.num_features, type(self).__name__)

        training = self.training
        updating = training and self.track_running_stats
        counter = self.num_batches_tracked
        momentum = 0.0  # the weight of this batch in the running averages
        if updating and (self.momentum is not None or counter is not None):
            momentum = new_value_weight(
                "pytorch",
                momentum=self.momentum,
                # momentum=None is the plain average of all batches; this one is number n + 1
                num_batches_tracked=None if self.momentum is not None else int(counter) + 1,
            )
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
        if updating and counter is not None:  # after batch_norm accepted the input
            counter.add_(1)
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


# ---- Chapter 8: normalizations that do not average over the batch, and batch renorm ------
#
# Each formula is one plain function in the lecture's notation, beside batch_norm above; the
# modules below only do the bookkeeping (parameters, buffers, input checks), as in torch.
# Batch norm averages every channel over (N, H, W); the others average each example alone:
# layer norm over all of its (C, H, W), instance norm over each channel's (H, W), group norm
# over groups of C / G channels and their (H, W).


def layer_norm(
    x: Tensor,
    normalized_shape: tuple[int, ...],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Layer norm: each example normalized over its last ``len(normalized_shape)``
    axes.

    Same contract as ``torch.nn.functional.layer_norm``; ``weight`` and ``bias``
    have shape ``normalized_shape`` (one :math:`\gamma, \beta` per normalized value).

    Example:
        >>> y = layer_norm(torch.randn(4, 3, 5, 5), (3, 5, 5))
        >>> torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6)
        True
    """
    dims = tuple(range(-len(normalized_shape), 0))  # the trailing axes of one example
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)  # biased, as in batch norm
    z_norm = (x - mu) / torch.sqrt(var + eps)
    z_tilde = z_norm if weight is None else z_norm * weight
    return z_tilde if bias is None else z_tilde + bias


def group_norm(
    x: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Group norm: each example's channels split into ``num_groups`` groups of
    consecutive channels, each group normalized over its channels and spatial axes.

    Same contract as ``torch.nn.functional.group_norm``; ``weight`` and ``bias``
    have shape ``(C,)``. ``num_groups=1`` is layer norm over ``(C, *spatial)``;
    ``num_groups=C`` is instance norm.

    Example:
        >>> x = torch.randn(2, 6, 4, 4)
        >>> torch.allclose(group_norm(x, 1), layer_norm(x, (6, 4, 4)), atol=1e-6)
        True
    """
    N = x.shape[0]
    z = x.reshape(N, num_groups, -1)  # group g holds channels g*C/G ... (g+1)*C/G - 1
    mu = z.mean(dim=2, keepdim=True)
    var = ((z - mu) ** 2).mean(dim=2, keepdim=True)
    z_norm = ((z - mu) / torch.sqrt(var + eps)).reshape(x.shape)
    z_tilde = z_norm if weight is None else z_norm * per_channel(weight, x.ndim)
    return z_tilde if bias is None else z_tilde + per_channel(bias, x.ndim)


def instance_norm(
    x: Tensor,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    r"""Instance norm: each channel of each example normalized over its spatial axes.

    ``x`` is ``(N, C, *spatial)``; ``weight`` and ``bias`` have shape ``(C,)``.
    Batch norm's statistics per channel, but with a batch of one example.

    Example:
        >>> y = instance_norm(torch.randn(2, 3, 8, 8))
        >>> torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-6)
        True
    """
    dims = tuple(range(2, x.ndim))  # the spatial axes of one example's channel
    mu = x.mean(dim=dims, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)
    z_norm = (x - mu) / torch.sqrt(var + eps)
    z_tilde = z_norm if weight is None else z_norm * per_channel(weight, x.ndim)
    return z_tilde if bias is None else z_tilde + per_channel(bias, x.ndim)


def renorm_normalize(
    z: Tensor, mu: Tensor, sigma: Tensor, eps: float, r_max: float, d_max: float
) -> Tensor:
    r"""Batch renorm's normalization: the batch's, corrected by :math:`r` and :math:`d`
    towards the running :math:`\mu` and :math:`\sigma` (per channel, dim 1)."""
    axes, nd = reduce_axes(z), z.ndim
    mu_B = z.mean(dim=axes)
    sigma_B = torch.sqrt(((z - per_channel(mu_B, nd)) ** 2).mean(dim=axes) + eps)
    with torch.no_grad():  # r and d are constants in the backward pass
        r = (sigma_B / sigma).clamp(1.0 / r_max, r_max)
        d = ((mu_B - mu) / sigma).clamp(-d_max, d_max)
    z_norm = (z - per_channel(mu_B, nd)) / per_channel(sigma_B, nd)
    return z_norm * per_channel(r, nd) + per_channel(d, nd)


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
    batch norm updates them. Outside training it is batch norm with the running
    statistics.
    """
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum,
                          eps)
    nd, sigma = x.ndim, torch.sqrt(running_var + eps)
    z_hat = renorm_normalize(x, running_mean, sigma, eps, r_max, d_max)
    # The running statistics move as batch norm's do (this call only updates them).
    with torch.no_grad():
        batch_norm(x.detach(), running_mean, running_var, training=True,
                   momentum=momentum, eps=eps)
    z_tilde = z_hat if weight is None else z_hat * per_channel(weight, nd)
    return z_tilde if bias is None else z_tilde + per_channel(bias, nd)


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
    r"""Ghost batch norm (Hoffer et al., 2017): batch norm on chunks of ``ghost_size``.

    In training, a large batch is split into "ghost" batches of ``ghost_size`` examples
    (the last may be smaller), each normalized with its own statistics and each updating
    the running statistics, as if they had come one after the other. Outside training it
    is batch norm with the running statistics.
    """
    if not training:
        return batch_norm(x, running_mean, running_var, weight, bias, False, momentum,
                          eps)
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


def _check_num_groups(num_groups: int, num_channels: int) -> None:
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise ValueError(f"num_groups must be a positive int (got {num_groups!r})")
    if num_channels % num_groups != 0:
        raise ValueError(
            f"num_channels must be divisible by num_groups (got num_channels={num_channels}, "
            f"num_groups={num_groups}); pick num_groups among the divisors of {num_channels}"
        )


class LayerNorm(Module):
    r"""Layer normalization; drop-in replacement for :class:`torch.nn.LayerNorm`.

    Each example is normalized over its last ``len(normalized_shape)`` axes
    (:func:`layer_norm`), with one :math:`\gamma, \beta` per normalized value. The same
    computation in training and evaluation mode: no running statistics.

    Args:
        normalized_shape: the trailing shape to normalize over, e.g. ``D`` or ``(C, H, W)``.
        eps: :math:`\epsilon`. Default: 1e-5.
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
        self.eps = eps
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
        k = len(self.normalized_shape)
        if tuple(x.shape[x.dim() - k:]) != self.normalized_shape or x.dim() < k:
            raise ValueError(
                f"expected input with shape [*, {', '.join(map(str, self.normalized_shape))}] "
                f"(got input of size {list(x.shape)}); LayerNorm normalizes the trailing "
                f"axes, so build it as LayerNorm({tuple(x.shape[1:])}) or fix the input"
            )
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

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
    same computation in training and evaluation mode, for any batch size.

    Args:
        num_groups: :math:`G`, must divide ``num_channels``.
        num_channels: :math:`C`.
        eps: :math:`\epsilon`. Default: 1e-5.
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
        _check_num_groups(num_groups, num_channels)
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
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
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected input with num_channels={self.num_channels} channels in dim 1 "
                f"(got input of size {list(x.shape)}); build the layer as "
                f"GroupNorm({self.num_groups}, {x.shape[1]}) or fix the previous layer"
            )
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

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
    evaluation mode normalizes with them, as in torch.

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
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, None if self.weight is None else self.weight.dtype)
        if x.dim() not in (3, 4):
            raise ValueError(
                f"expected 3D or 4D input (got {x.dim()}D input); InstanceNorm2d takes "
                "(N, C, H, W) or (C, H, W)"
            )
        if x.dim() == 3:  # one unbatched image, as torch allows
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.shape[1] != self.num_features and (self.affine or self.track_running_stats):
            _checks.check_num_features(x.shape, self.num_features, "InstanceNorm2d")
        if self.training or not self.track_running_stats:
            if math.prod(x.shape[2:]) <= 1:
                raise ValueError(
                    f"Expected more than 1 spatial element when training, got input size "
                    f"{x.shape}; instance norm needs H * W > 1"
                )
            if self.training and self.track_running_stats:
                self._update_running_stats(x)
            return instance_norm(x, self.weight, self.bias, self.eps)
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                          False, 0.0, self.eps)

    @torch.no_grad()
    def _update_running_stats(self, x: Tensor) -> None:
        # torch treats each (example, channel) as its own batch-norm channel and averages
        # the N updates: the running averages move towards the instances' mean statistics.
        # Each instance's variance gets Bessel's correction over its m = H * W values.
        momentum = 0.0 if self.momentum is None else self.momentum  # torch's choice
        dims = tuple(range(2, x.dim()))
        mu = x.mean(dim=dims).mean(dim=0)
        var = x.var(dim=dims, unbiased=False).mean(dim=0)
        update_running_buffers(self.running_mean, self.running_var, mu, var,
                               values_per_channel((1, 1, *x.shape[2:])), momentum)

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
    see :func:`renorm_clips`). The step is ``num_batches_tracked``. Running statistics are
    required: they are what the batch is corrected towards. Parameters, buffers and
    ``state_dict`` keys are batch norm's, so a trained layer loads into a
    :class:`BatchNorm1d`/`2d` for inference, where the two compute the same thing.
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
        if not (r_max >= 1.0 and d_max >= 0.0):
            raise ValueError(f"need r_max >= 1 and d_max >= 0 (got r_max={r_max}, d_max={d_max})")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.ramp_steps = int(warmup_steps), int(ramp_steps)

    def clips(self) -> tuple[float, float]:
        """``(r_max, d_max)`` for the next training step, from the schedule."""
        return renorm_clips(int(self.num_batches_tracked), self.r_max, self.d_max,
                            self.warmup_steps, self.ramp_steps)

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_float_tensor(x, self.running_mean.dtype)
        self._check_input_dim(x)
        if x.shape[1] != self.num_features:
            _checks.check_num_features(x.shape, self.num_features, type(self).__name__)
        momentum = self.momentum
        r_max, d_max = self.clips()
        if self.training:
            _checks.check_values_per_channel(x.shape)
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return batch_renorm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, 0.0 if momentum is None else momentum, self.eps,
                            r_max, d_max)

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
