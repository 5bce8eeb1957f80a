r"""Batch norm with a random shift and scale added after it: Santurkar et al.'s "noisy BN".

Santurkar, Tsipras, Ilyas & Madry (2018) asked whether batch norm helps *because* it keeps
each layer's input distribution steady (reduced internal covariate shift). To test it they
took a BN network and, after every BN layer, injected noise that moves and stretches each
unit's distribution anew at every training step. If steady inputs were what mattered, this
network should train as badly as one without BN; it trains about as well as plain BN.

:class:`NoisyBatchNorm1d` is that layer for dense networks. In training mode, each forward
pass first computes ordinary batch norm, :math:`\tilde z = \gamma\, z_{\text{norm}} + \beta`
(:class:`course_lib.nn.BatchNorm1d`), then draws, for every unit :math:`j`, a scale and a
shift shared by the whole mini-batch,

.. math::

    s_j \sim \mathcal U(a, b), \qquad t_j \sim \mathcal N(\mu_t, \sigma_t^2), \qquad
    \text{out}_j = s_j\, \tilde z_j + t_j ,

independently across units and across forward passes (so every training step sees a new
draw). Within a step the unit's output over the batch therefore has mean
:math:`s_j \beta_j + t_j` and standard deviation about :math:`s_j |\gamma_j|` instead of BN's
:math:`\beta_j` and :math:`|\gamma_j|`: the next layer's input distribution jumps at every
step, by design. The defaults, :math:`s_j \sim \mathcal U(0.5, 1.5)` and
:math:`t_j \sim \mathcal N(0, 1)`, are strong: a typical step moves a unit's mean by
about 1 (the standard deviation BN gives each unit at the start) and changes its spread by up
to 50%.

(Santurkar et al. perturb every activation of every example with noise whose mean and
variance are redrawn each step; a scale and a shift per unit per step is the simplest version
of the same idea, and it is exactly a random change of the unit's distribution, with nothing
else: the transform stays affine within a batch.)

In eval mode there is no noise: the layer is plain batch norm with its running statistics.
The defaults are centered on the identity on average (:math:`\mathrm E[s_j] = 1`,
:math:`\mathrm E[t_j] = 0`), so eval mode matches what training saw on average; with other
settings an evaluation sees a systematically different layer than training did.

The noise comes from a ``torch.Generator``, never from the global random state, so it is
reproducible and does not disturb anything else (weight initialization, dropout masks).
Give all layers of a network one shared generator so that they draw different noise; the
helper :func:`noisy_bn` builds such a factory for :func:`course_lib.experiments.lab.models.make_mlp`.

Example:
    >>> from course_lib.experiments.lab.models import make_mlp
    >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", bn_impl=noisy_bn(seed=0), seed=0)
    >>> model.bn1
    NoisyBatchNorm1d(100, eps=1e-05, momentum=0.1, affine=True, bias=True,
    track_running_stats=True, scale=U(0.5, 1.5), shift=N(0, 1^2))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from course_lib import _checks
from course_lib.nn import BatchNorm1d

__all__ = ["NoisyBatchNorm1d", "noisy_bn"]


class NoisyBatchNorm1d(BatchNorm1d):
    r"""Batch norm followed, in training mode only, by a random per-unit scale and shift.

    .. math::

        \text{out}_j = s_j \left(\gamma_j\, z_{\text{norm}, j} + \beta_j\right) + t_j, \qquad
        s_j \sim \mathcal U(a, b), \quad t_j \sim \mathcal N(\mu_t, \sigma_t^2),

    with a new :math:`s, t \in \mathbb R^C` drawn at every forward pass in training mode
    (one value per unit, shared by the mini-batch). In eval mode the layer is exactly
    :class:`course_lib.nn.BatchNorm1d`. Parameters, buffers and running statistics are those
    of batch norm (the running statistics see :math:`z`, before the noise, as usual).

    Args:
        num_features: :math:`C`, the number of units.
        scale_range: ``(a, b)`` with ``0 <= a <= b``: the scale is uniform on it.
            Default ``(0.5, 1.5)``.
        shift_mean: :math:`\mu_t`. Default 0.
        shift_std: :math:`\sigma_t \ge 0`. Default 1.
        generator: the ``torch.Generator`` the noise is drawn from (on the layer's device).
            Share one between layers so that they draw different noise. ``None`` creates a
            private one seeded with ``seed``.
        seed: seed of the private generator when ``generator`` is None. Default 0.
        **kwargs: passed to :class:`course_lib.nn.BatchNorm1d` (``eps``, ``momentum``...).

    Shape:
        - Input: ``(N, C)`` or ``(N, C, L)`` (the noise is per channel).
        - Output: same shape as the input.

    Example:
        >>> torch.manual_seed(0)
        >>> layer = NoisyBatchNorm1d(3, seed=1)
        >>> z = torch.randn(500, 3)
        >>> out = layer(z)                        # training mode: noisy
        >>> out.mean(dim=0)                       # the shift t of this step, since beta = 0
        tensor([0.5636, 1.1431, 0.8590], grad_fn=<MeanBackward1>)
        >>> layer.last_scale                      # and its scale s
        tensor([0.5611, 0.7246, 0.7343])
        >>> plain = BatchNorm1d(3)
        >>> _ = plain.load_state_dict(layer.state_dict())
        >>> torch.equal(layer.eval()(z), plain.eval()(z))     # eval mode: no noise
        True
    """

    def __init__(
        self,
        num_features: int,
        *,
        scale_range: tuple[float, float] = (0.5, 1.5),
        shift_mean: float = 0.0,
        shift_std: float = 1.0,
        generator: torch.Generator | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, **kwargs)
        self.scale_range = _check_scale_range(scale_range)
        self.shift_mean = _checks.check_number(shift_mean, "shift_mean", where="NoisyBatchNorm1d")
        self.shift_std = _checks.check_number(shift_std, "shift_std", at_least=0.0, where="NoisyBatchNorm1d")
        if generator is None:
            if not _checks.is_int(seed):
                raise TypeError(
                    f"NoisyBatchNorm1d: seed must be an int (got {type(seed).__name__})"
                )
            generator = torch.Generator(device="cpu").manual_seed(seed)
        elif not isinstance(generator, torch.Generator):
            raise TypeError(
                f"NoisyBatchNorm1d: generator must be a torch.Generator or None (got "
                f"{type(generator).__name__}); e.g. torch.Generator().manual_seed(0)"
            )
        self.generator = generator
        # The noise of the latest training forward pass, for plots and tests.
        self.last_scale: Tensor | None = None
        self.last_shift: Tensor | None = None

    def sample_noise(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Draw one scale ``s`` and one shift ``t`` per unit, shape ``(C,)``, dtype of ``like``.

        Drawn on the generator's device, then moved to ``like``'s device.
        """
        a, b = self.scale_range
        g = self.generator
        c = self.num_features
        u = torch.rand(c, generator=g, device=g.device, dtype=torch.float64)
        n = torch.randn(c, generator=g, device=g.device, dtype=torch.float64)
        scale = a + (b - a) * u
        shift = self.shift_mean + self.shift_std * n
        return (
            scale.to(device=like.device, dtype=like.dtype),
            shift.to(device=like.device, dtype=like.dtype),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Batch norm's z_tilde; in training mode unit j's becomes s_j * z_tilde_j + t_j."""
        z_tilde = super().forward(z)       # gamma * z_norm + beta, plain batch norm
        if not self.training:
            return z_tilde                 # evaluation: plain batch norm, no noise
        s, t = self.sample_noise(z_tilde)  # per unit: s_j ~ U(a, b), t_j ~ N(mu_t, sd_t^2)
        self.last_scale, self.last_shift = s, t
        # One s_j and t_j for the whole mini-batch: a constant of the step, not learned.
        return per_unit(s, z_tilde) * z_tilde + per_unit(t, z_tilde)

    def extra_repr(self) -> str:
        a, b = self.scale_range
        return (
            f"{super().extra_repr()}, scale=U({a:g}, {b:g}), "
            f"shift=N({self.shift_mean:g}, {self.shift_std:g}^2)"
        )


def per_unit(v: Tensor, like: Tensor) -> Tensor:
    """``v`` of shape ``(C,)`` viewed to broadcast over ``like``'s batch (and length) axes."""
    return v.view((1, -1) + (1,) * (like.dim() - 2))


def noisy_bn(
    seed: int = 0,
    *,
    scale_range: tuple[float, float] = (0.5, 1.5),
    shift_mean: float = 0.0,
    shift_std: float = 1.0,
    **kwargs: Any,
) -> Callable[[int], NoisyBatchNorm1d]:
    """A ``bn_impl`` for :func:`course_lib.experiments.lab.models.make_mlp`: noisy BN layers sharing one generator.

    All layers built by the returned factory draw from one ``torch.Generator`` seeded with
    ``seed``, so each layer gets its own noise and the whole network's noise is reproducible.

    Args:
        seed: seed of the shared generator.
        scale_range, shift_mean, shift_std, **kwargs: as for :class:`NoisyBatchNorm1d`.

    Returns:
        ``factory(num_features) -> NoisyBatchNorm1d``.

    Example:
        >>> model = make_mlp(64, [100] * 3, 10, bn="before", bn_impl=noisy_bn(seed=0), seed=0)
        >>> model.bn1.generator is model.bn3.generator
        True
    """
    if not _checks.is_int(seed):
        raise TypeError(f"noisy_bn: seed must be an int (got {type(seed).__name__})")
    # Check the settings now, not at the first layer make_mlp builds.
    _check_scale_range(scale_range)
    _checks.check_number(shift_mean, "shift_mean", where="NoisyBatchNorm1d")
    _checks.check_number(shift_std, "shift_std", at_least=0.0, where="NoisyBatchNorm1d")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return functools.partial(
        NoisyBatchNorm1d,
        scale_range=scale_range,
        shift_mean=shift_mean,
        shift_std=shift_std,
        generator=generator,
        **kwargs,
    )


def _check_scale_range(scale_range: object) -> tuple[float, float]:
    if isinstance(scale_range, (str, bytes)) or not hasattr(scale_range, "__len__") or len(
        scale_range  # type: ignore[arg-type]
    ) != 2:
        raise TypeError(
            f"NoisyBatchNorm1d: scale_range must be a pair (a, b) such as (0.5, 1.5) (got "
            f"{scale_range!r})"
        )
    a, b = (_checks.check_number(v, "scale_range", at_least=0.0, where="NoisyBatchNorm1d") for v in scale_range)  # type: ignore[union-attr]
    if a > b:
        raise ValueError(
            f"NoisyBatchNorm1d: scale_range (a, b) needs a <= b (got ({a:g}, {b:g})); the "
            f"scale is drawn uniformly between them"
        )
    return a, b
