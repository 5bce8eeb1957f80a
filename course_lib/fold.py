r"""Folding batch norm into the preceding layer for inference (chapter 6).

At test time batch norm uses fixed statistics, so it is an affine map per channel
:math:`c`, and so is the ``Linear`` or ``Conv`` layer before it. Two affine maps compose into
one: with :math:`z = W x + b` and

.. math::

    \tilde z = \gamma \frac{z - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta
    = \underbrace{\frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} W}_{W'} x
      + \underbrace{\frac{\gamma\,(b - \mu)}{\sqrt{\sigma^2 + \epsilon}} + \beta}_{b'}

where :math:`\mu, \sigma^2` are the *running* statistics, each output row (output channel)
of :math:`W` is scaled by its own :math:`\gamma_c / \sqrt{\sigma^2_c + \epsilon}`, and
:math:`b = 0` if the layer has no bias. The folded network computes the same function with
one layer fewer per block: less memory traffic and fewer kernel launches at inference.

Only an eval-mode batch norm can be folded. In training mode it normalizes each batch with
that batch's own mean and variance, which change from batch to batch; no fixed layer can
reproduce that. :func:`fold` therefore refuses a layer in training mode, and one without
running statistics (``track_running_stats=False``, which uses batch statistics even in eval).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from course_lib import _checks
from course_lib.borrow import batchnorm_dim, is_batchnorm

__all__ = ["fold_linear", "fold_params", "fold", "fold_model"]


def fold_linear(
    W: Any, b: Any, gamma: Any, beta: Any, mu: Any, sigma2: Any, eps: float
) -> tuple[Any, Any]:
    """W', b' of the one layer that computes eval-mode batch norm of z = W x + b."""
    s = gamma / (sigma2 + eps) ** 0.5                    # one factor per output unit c
    W_folded = s.reshape(-1, *[1] * (W.ndim - 1)) * W    # row c of W times s_c
    b_folded = s * (b - mu) + beta
    return W_folded, b_folded


def fold_params(
    W: Any, b: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, eps: float
) -> tuple[Any, Any]:
    r"""The folded weight and bias, for numpy arrays or torch tensors: :func:`fold_linear`,
    with its input checked.

    .. math::

        s = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}, \qquad
        W' = s \odot_{\text{rows}} W, \qquad
        b' = s\,(b - \mu) + \beta

    Args:
        W: weight of shape ``(C_out, ...)``: ``(C_out, C_in)`` for ``Linear``,
            ``(C_out, C_in / groups, kH, kW)`` for ``Conv2d``; row ``c`` feeds channel ``c``.
        b: bias ``(C_out,)`` (zeros if the layer has none).
        gamma, beta: :math:`\gamma, \beta`, ``(C_out,)`` (ones and zeros if ``affine=False``).
        running_mean, running_var: :math:`\mu, \sigma^2`, ``(C_out,)``, the running statistics.
        eps: :math:`\epsilon`, the batch norm layer's ``eps``.

    Returns:
        ``(W_folded, b_folded)``, shapes of ``W`` and ``b``.

    Example:
        >>> import numpy as np
        >>> W, b = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1.0, -1.0])
        >>> fold_params(W, b, np.array([2.0, 1.0]), np.array([0.5, 0.0]),
        ...             np.array([1.0, 0.0]), np.array([4.0, 1.0]), eps=0.0)
        (array([[1., 2.],
               [3., 4.]]), array([ 0.5, -1. ]))
    """
    n_out = W.shape[0]
    for name, value in (("b", b), ("gamma", gamma), ("beta", beta),
                        ("running_mean", running_mean), ("running_var", running_var)):
        _checks.check_channel_vector(value, name, n_out, source="W.shape[0]")
    eps = _checks.check_eps(eps, training=False)
    return fold_linear(W, b, gamma, beta, running_mean, running_var, eps)


# Which batch norm normalizes which layer's output: a Linear's (N, F) output or a Conv1d's
# (N, C, L) goes to a BatchNorm1d, a Conv2d's (N, C, H, W) to a BatchNorm2d, and so on.
_LAYER_DIMS = ((nn.Linear, 1), (nn.Conv1d, 1), (nn.Conv2d, 2), (nn.Conv3d, 3))


def _layer_dim(layer: Any) -> int | None:
    for cls, dim in _LAYER_DIMS:
        if isinstance(layer, cls):
            return dim
    return None


def _out_features(layer: Any) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def fold(layer: nn.Module, bn: nn.Module) -> nn.Module:
    r"""Fold an eval-mode batch norm into the ``Linear`` or ``Conv`` layer before it.

    Returns a new layer (a copy of ``layer`` with :func:`fold_params`' weight and a bias)
    such that ``folded(x) == bn(layer(x))`` for every ``x``, up to float rounding; the inputs
    are not modified. The arithmetic runs in float64 and is rounded once to the layer's dtype.

    Supported pairs: ``Linear`` + ``BatchNorm1d`` (on ``(N, features)`` inputs), ``Conv1d``
    + ``BatchNorm1d``, ``Conv2d`` + ``BatchNorm2d``, ``Conv3d`` + ``BatchNorm3d``, with any
    stride, padding, dilation and groups; torch's or :mod:`course_lib.nn`'s batch norm.
    ``affine=False`` folds with :math:`\gamma = 1, \beta = 0`; a layer without bias folds
    with :math:`b = 0` (and gains a bias).

    Args:
        layer: ``nn.Linear`` or ``nn.Conv1d/2d/3d``.
        bn: the batch norm applied to ``layer``'s output, in eval mode.

    Returns:
        A layer of ``layer``'s class, with a bias, same dtype and device.

    Raises:
        TypeError: ``layer`` is not Linear/Conv (transposed convolutions are not supported),
            ``bn`` is not a batch norm layer, or the two do not go together (e.g. Conv2d and
            BatchNorm1d).
        ValueError: ``bn`` is in training mode, has no running statistics
            (``track_running_stats=False``), or has ``num_features`` different from the
            layer's outputs.

    Example:
        >>> lin, bn = nn.Linear(4, 3), nn.BatchNorm1d(3)
        >>> _ = bn(lin(torch.randn(64, 4)))          # training: running statistics move
        >>> _ = bn.eval()                             # folding needs eval mode
        >>> folded = fold(lin, bn)
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(folded(x), bn(lin(x)), atol=1e-6)
        True
    """
    dim = _layer_dim(layer)
    if dim is None:
        raise TypeError(
            f"expected layer to be nn.Linear or nn.Conv1d/2d/3d (got {type(layer).__name__}); "
            "batch norm can only be folded into the linear layer right before it"
        )
    if not is_batchnorm(bn):
        raise TypeError(
            f"expected bn to be a batch norm layer, torch.nn.BatchNorm1d/2d/3d or "
            f"course_lib.nn.BatchNorm1d/2d/3d (got {type(bn).__name__})"
        )
    bn_dim = batchnorm_dim(bn)
    if bn_dim is not None and bn_dim != dim:
        want = "BatchNorm1d" if dim == 1 else f"BatchNorm{dim}d"
        raise TypeError(
            f"{type(layer).__name__} is followed by BatchNorm{dim}d, not {type(bn).__name__} "
            f"(got {type(layer).__name__} and {type(bn).__name__}); the batch norm must be "
            f"the one that normalizes this layer's output, a {want}"
        )
    n_out = _out_features(layer)
    if bn.num_features != n_out:
        raise ValueError(
            f"expected bn with num_features={n_out}, one per output of {type(layer).__name__} "
            f"(got num_features={bn.num_features}); fold each batch norm into the layer "
            "directly before it"
        )
    if bn.training:
        raise ValueError(
            "bn is in training mode: there it normalizes each batch with that batch's own "
            "mean and variance, which no fixed layer can reproduce. Folding bakes in the "
            "running statistics, the ones eval mode uses: call model.eval() (or bn.eval()) "
            "before folding"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(
            "bn has no running statistics (track_running_stats=False): it normalizes with "
            "batch statistics even in eval mode, so its output depends on the batch and "
            "cannot be folded into a fixed layer; train with track_running_stats=True, or "
            "estimate running statistics after training (course_lib.calibration)"
        )

    f64 = dict(dtype=torch.float64)
    with torch.no_grad():
        W = layer.weight.detach().to(**f64)
        b = layer.bias.detach().to(**f64) if layer.bias is not None else torch.zeros(n_out, **f64)
        gamma = bn.weight.detach().to(**f64) if bn.weight is not None else torch.ones(n_out, **f64)
        beta = bn.bias.detach().to(**f64) if bn.bias is not None else torch.zeros(n_out, **f64)
        W_folded, b_folded = fold_params(
            W, b, gamma, beta, bn.running_mean.to(**f64), bn.running_var.to(**f64), bn.eps
        )
        # A copy keeps every setting of the layer (stride, padding, dilation, groups,
        # padding_mode, dtype, device); only its parameters change.
        folded = copy.deepcopy(layer)
        like = dict(dtype=layer.weight.dtype, device=layer.weight.device)
        folded.weight = nn.Parameter(W_folded.to(**like))
        folded.bias = nn.Parameter(b_folded.to(**like))
    return folded


def fold_model(model: nn.Sequential) -> nn.Sequential:
    """Fold every ``Linear``/``Conv`` -> batch norm pair of a ``nn.Sequential`` (eval mode).

    Walks the layers in order (recursing into nested ``nn.Sequential`` blocks); wherever a
    ``Linear``/``Conv1d``/``Conv2d``/``Conv3d`` is directly followed by a batch norm, the pair
    becomes one :func:`fold`-ed layer, under the first layer's name. Everything else is
    copied unchanged, including a batch norm that does not directly follow such a layer
    (e.g. ``ReLU -> BatchNorm``), which has no preceding linear map to absorb it.

    The result is a new model (the input is not modified) that computes the same function as
    ``model`` in eval mode, with one layer fewer per folded pair.

    Args:
        model: an ``nn.Sequential`` whose batch norm layers are in eval mode.

    Returns:
        A new ``nn.Sequential``, in ``model``'s train/eval mode.

    Raises:
        TypeError: ``model`` is not an ``nn.Sequential``.
        ValueError: a batch norm to fold is in training mode (call ``model.eval()``), or see
            :func:`fold`.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = model(torch.randn(32, 4))
        >>> folded = fold_model(model.eval())
        >>> len(model), len(folded)
        (4, 3)
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(folded(x), model(x), atol=1e-6)
        True
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"expected model to be an nn.Sequential (got {type(model).__name__}); for another "
            "architecture fold each (layer, bn) pair with fold(layer, bn) and rebuild the model"
        )
    items = list(model.named_children())
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    i = 0
    while i < len(items):
        name, module = items[i]
        following = items[i + 1][1] if i + 1 < len(items) else None
        if _layer_dim(module) is not None and following is not None and is_batchnorm(following):
            layers[name] = fold(module, following)
            i += 2
            continue
        if isinstance(module, nn.Sequential):
            layers[name] = fold_model(module)
        else:
            layers[name] = copy.deepcopy(module)
        i += 1
    folded = nn.Sequential(layers)
    # Only the container's own flag: its children are copies that kept their modes.
    folded.training = model.training
    return folded
