r"""A small convolutional network for the 8 x 8 digits, with or without a normalization layer.

:func:`make_convnet` builds the conv nets of chapters 7 and 8. Each conv block ``l`` computes,
in the lecture's order (``norm="batch"``)::

    z[l]       = W[l] * a[l-1]                 3 x 3 convolution, no bias before BN
    z_tilde[l] = gamma[l] * z_norm[l] + beta[l]     per channel, over N x H x W values
    a[l]       = ReLU(z_tilde[l])              then 2 x 2 max pooling while the map is >= 4 x 4

For a convolution there is one :math:`\gamma` and one :math:`\beta` per *channel* (not per
pixel), and the mean and variance of channel :math:`c` are taken over all
:math:`m = N \cdot H \cdot W` values of that channel in the mini-batch: every position of a
feature map is the same filter applied to a different patch, so it is normalized the same way.

The input is a flattened ``(N, 64)`` image (what :func:`course_lib.experiments.lab.data.load_digits_split`
returns and :func:`course_lib.experiments.lab.training.train` expects); the first module,
``image``, reshapes it to ``(N, 1, 8, 8)``. Modules are named ``conv1``, ``norm1``,
``act1``, ``pool1``, ..., ``flatten``, ``output``, so ``course_lib.fold.fold_model`` folds
every ``conv{l}`` -> ``norm{l}`` pair of a trained network.

Example:
    >>> model = make_convnet(channels=(8, 16), norm="batch", seed=0)
    >>> [name for name, _ in model.named_children()]   # doctest: +NORMALIZE_WHITESPACE
    ['image', 'conv1', 'norm1', 'act1', 'pool1', 'conv2', 'norm2', 'act2', 'pool2',
     'flatten', 'output']
    >>> model(torch.randn(5, 64)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.experiments.lab.models import DEFAULT_NORM_IMPL, NORM_IMPLS, norm_factory

__all__ = ["NORMS", "conv_bias_gradients", "conv_layers", "make_convnet", "norm_layers"]

#: The names ``make_convnet(norm=...)`` accepts, and what they build for ``C`` channels.
NORMS = ("batch", "none")


def make_convnet(
    channels: Sequence[int] = (8, 16),
    norm: str | Callable[[int], nn.Module] | None = "batch",
    *,
    bias: bool | None = None,
    bn_impl: str = DEFAULT_NORM_IMPL,
    in_channels: int = 1,
    image_size: int = 8,
    n_classes: int = 10,
    kernel_size: int = 3,
    seed: int | None = None,
) -> nn.Sequential:
    """A conv net: ``Conv -> norm -> ReLU [-> MaxPool]`` per entry of ``channels``, then a
    ``Linear`` output layer on the flattened feature maps.

    Args:
        channels: output channels of each conv layer, e.g. ``(8, 16)`` (2-4 layers suit
            8 x 8 images).
        norm: ``"batch"`` (batch norm per channel, :class:`course_lib.nn.BatchNorm2d` or
            torch's, see ``bn_impl``), ``"none"`` or ``None`` (no normalization), or a
            callable ``norm(C) -> nn.Module`` for any other layer (chapter 8 passes group and
            layer norm here).
        bias: whether the convolutions have a bias. ``None`` (default) means the usual
            choice: no bias when a normalization layer follows (it subtracts a per-channel
            mean, so a per-channel bias cancels), a bias otherwise.
        bn_impl: ``"course_lib"`` (:class:`course_lib.nn.BatchNorm2d`, written from scratch)
            or ``"torch"`` (:class:`torch.nn.BatchNorm2d`); only used for ``norm="batch"``.
        in_channels, image_size: the input is ``(N, in_channels * image_size**2)``, reshaped
            to ``(N, in_channels, image_size, image_size)``.
        n_classes: outputs (logits).
        kernel_size: odd size of the square filters; padding keeps the map's size.
        seed: if given, weights are drawn from ``torch.manual_seed(seed)`` without touching
            the global random state; same seed, same weights, whichever ``bn_impl``.

    Returns:
        An ``nn.Sequential`` in training mode, float32.

    Raises:
        ValueError, TypeError: a bad argument, named with what is expected.
    """
    channels = _check_channels(channels)
    for name, value in (("in_channels", in_channels), ("image_size", image_size),
                        ("n_classes", n_classes), ("kernel_size", kernel_size)):
        _checks.check_int(value, name, minimum=1, where="make_convnet")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"make_convnet: kernel_size must be odd so that padding keeps the image size "
            f"(got {kernel_size})"
        )
    make_norm = _norm_factory(norm, bn_impl)
    if bias is None:
        bias = make_norm is None
    if not isinstance(bias, bool):
        raise TypeError(f"make_convnet: bias must be True, False or None (got {bias!r})")
    if seed is not None:
        _checks.check_int(seed, "seed", where="make_convnet")

    def build() -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["image"] = nn.Unflatten(1, (in_channels, image_size, image_size))
        c_in, size = in_channels, image_size
        for l, c_out in enumerate(channels, start=1):
            layers[f"conv{l}"] = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2,
                                           bias=bias)
            if make_norm is not None:
                layers[f"norm{l}"] = make_norm(c_out)
            layers[f"act{l}"] = nn.ReLU()
            if size >= 4:  # 8 -> 4 -> 2, then the map keeps its size
                layers[f"pool{l}"] = nn.MaxPool2d(2)
                size //= 2
            c_in = c_out
        layers["flatten"] = nn.Flatten()
        layers["output"] = nn.Linear(c_in * size * size, n_classes)
        return nn.Sequential(layers)

    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """The ``Conv2d`` layers of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def norm_layers(model: nn.Sequential) -> list[nn.Module]:
    """The normalization layers of a :func:`make_convnet` model (``norm1``, ``norm2``, ...)."""
    return [m for name, m in model.named_children() if name.startswith("norm")]


def conv_bias_gradients(model: nn.Sequential, X: Tensor, y: Tensor) -> list[tuple[float, float]]:
    r"""``(max |dJ/db|, max |dJ/dW|)`` of every conv layer after one training-mode backward pass.

    The model is a :func:`make_convnet` model built with ``bias=True``; it runs on a copy,
    so its running statistics and ``.grad`` are left alone. When batch norm follows the
    convolution, :math:`\partial J / \partial b_c` is the sum of channel :math:`c`'s
    gradients :math:`dz` over all :math:`N \cdot H \cdot W` positions, which batch norm's
    backward pass makes exactly zero (up to round-off).
    """
    convs = conv_layers(model)
    if not convs or any(c.bias is None for c in convs):
        raise ValueError(
            "conv_bias_gradients: every conv layer needs a bias; build the model with "
            "make_convnet(..., bias=True)"
        )
    work = copy.deepcopy(model).train()
    p = convs[0].weight
    loss = F.cross_entropy(work(X.to(p.device, p.dtype)), y.to(p.device))
    loss.backward()
    return [(float(c.bias.grad.abs().max()), float(c.weight.grad.abs().max()))
            for c in conv_layers(work)]


def _norm_factory(norm: object, bn_impl: str) -> Callable[[int], nn.Module] | None:
    if norm is None or norm == "none":
        return None
    if norm == "batch":
        if bn_impl in NORM_IMPLS:
            return norm_factory("batch", bn_impl, spatial=True)
        raise ValueError(
            f"make_convnet: bn_impl must be 'course_lib' or 'torch' (got {bn_impl!r})"
        )
    if isinstance(norm, nn.Module):
        raise TypeError(
            "make_convnet: norm must be 'batch', 'none' or a callable norm(C) -> nn.Module, "
            f"not a module instance ({type(norm).__name__}); pass the class or a factory"
        )
    if callable(norm):
        return norm
    raise ValueError(
        f"make_convnet: norm must be 'batch', 'none' or a callable norm(C) -> nn.Module "
        f"(got {norm!r})"
    )


def _check_channels(channels: object) -> list[int]:
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise TypeError(
            f"make_convnet: channels must be a non-empty list of channel counts such as "
            f"(8, 16) (got {channels!r})"
        )
    return [_checks.check_int(c, f"channels[{i}]", minimum=1, where="make_convnet")
            for i, c in enumerate(channels)]
