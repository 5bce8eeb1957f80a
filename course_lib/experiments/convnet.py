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

Chapter 7's claims about it are registered here (:mod:`course_lib.experiments.claims`): batch
norm per channel (:func:`channel_statistics`), the redundant conv bias
(:func:`conv_bias_gradients`), a few learning rates (:func:`lr_sweep`) and folding for
inference (:func:`fold_check`), each with a frozen settings dataclass.

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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.batchnorm import batchnorm_forward
from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import DEFAULT_NORM_IMPL, NORM_IMPLS, norm_factory
from course_lib.experiments.lab.training import History, train
from course_lib.fold import fold_model

__all__ = [
    "NORMS",
    "BiasSettings",
    "ChannelSettings",
    "ChannelStatistics",
    "FoldSettings",
    "SweepSettings",
    "channel_statistics",
    "conv_bias_gradients",
    "conv_layers",
    "fold_check",
    "lr_sweep",
    "make_convnet",
    "norm_layers",
]

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


# ---------------------------------------------------------------------------------------------
# Chapter 7's claims


@dataclass(frozen=True)
class ChannelSettings:
    """The first layer of a fresh ``make_convnet(channels, norm="batch")`` (the course's own
    ``BatchNorm2d``, float32) on the first ``batch`` training digits."""

    channels: tuple[int, ...] = (8, 16)
    batch: int = 60


@dataclass(frozen=True)
class ChannelStatistics:
    r"""What batch norm made of one conv layer's output ``z`` of shape ``(N, C, H, W)``.

    Attributes:
        z, z_tilde: the convolution's output and batch norm's.
        mean, var: per channel, the mean and (biased) variance of ``z_tilde`` over its
            :math:`N \cdot H \cdot W` values.
        sigma2: per channel, the variance :math:`\sigma_c^2` of ``z`` itself.
        expected_var: :math:`\sigma_c^2 / (\sigma_c^2 + \varepsilon)`, what ``var`` must be
            (1 only up to :math:`\varepsilon`: a channel with a small variance ends below 1).
        dense_gap: the largest difference from chapter 2's dense batch norm applied to the
            :math:`(N \cdot H \cdot W, C)` reshape, in float64.
    """

    z: Tensor
    z_tilde: Tensor
    mean: np.ndarray
    var: np.ndarray
    sigma2: np.ndarray
    expected_var: np.ndarray
    dense_gap: float


def channel_statistics(model: nn.Sequential, X: Tensor) -> ChannelStatistics:
    """Run ``model``'s first conv layer and batch norm (training mode) on ``X``."""
    norm = model.norm1
    with torch.no_grad():
        z = model.conv1(model.image(X))
        work = copy.deepcopy(norm).train()  # the model's running statistics stay as they are
        z_tilde = work(z)
    dims = (0, 2, 3)
    sigma2 = z.double().var(dim=dims, unbiased=False).numpy()
    z_np = z.double().numpy()
    N, C, H, W = z_np.shape
    flat = z_np.transpose(0, 2, 3, 1).reshape(-1, C)
    out, _ = batchnorm_forward(flat, np.ones(C), np.zeros(C), eps=norm.eps)
    out = out.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return ChannelStatistics(
        z=z, z_tilde=z_tilde,
        mean=z_tilde.double().mean(dim=dims).numpy(),
        var=z_tilde.double().var(dim=dims, unbiased=False).numpy(),
        sigma2=sigma2,
        expected_var=sigma2 / (sigma2 + norm.eps),
        dense_gap=float(np.abs(out - z_tilde.double().numpy()).max()),
    )


@claims.claim(
    "conv-bn-per-channel",
    chapter=7,
    statement="Batch norm in a conv net gives each channel, over its N*H*W values, mean 0 and "
              "variance sigma^2 / (sigma^2 + eps), 1 up to eps, and the same numbers as the "
              "dense batch norm of the (N*H*W, C) reshape.",
    settings=ChannelSettings(),
    section="bn-in-a-conv-net",
)
def per_channel(settings: ChannelSettings, seed: int) -> claims.Evidence:
    X = load_digits_split(seed=seed).X_train[:settings.batch]
    stats = channel_statistics(make_convnet(settings.channels, norm="batch", seed=seed), X)
    n = {
        "largest |mean|": float(np.abs(stats.mean).max()),
        "largest |variance / expected - 1|":
            float(np.abs(stats.var / stats.expected_var - 1).max()),
        "largest difference from the dense batch norm": stats.dense_gap,
        "smallest channel variance sigma^2": float(stats.sigma2.min()),
    }
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below("largest |mean|", n["largest |mean|"], 1e-6),
            claims.below("largest |variance / expected - 1|",
                         n["largest |variance / expected - 1|"], 1e-5),
            claims.below("largest difference from the dense batch norm",
                         n["largest difference from the dense batch norm"], 1e-5),
        ],
        result=stats,
    )


@dataclass(frozen=True)
class BiasSettings:
    """``make_convnet(channels, bias=True)`` with and without batch norm (float32), one
    gradient on the first ``batch`` training digits."""

    channels: tuple[int, ...] = (8, 16)
    batch: int = 60


@claims.claim(
    "conv-bias-redundant",
    chapter=7,
    statement="A conv bias followed by batch norm gets a zero gradient (below 1e-6 in float32, "
              "round-off), while without batch norm it gets an ordinary one (above 1e-4).",
    settings=BiasSettings(),
    section="bn-in-a-conv-net",
)
def bias_redundant(settings: BiasSettings, seed: int) -> claims.Evidence:
    data = load_digits_split(seed=seed)
    X, y = data.X_train[:settings.batch], data.y_train[:settings.batch]
    grads = {norm: conv_bias_gradients(make_convnet(settings.channels, norm=norm, bias=True,
                                                    seed=seed), X, y)
             for norm in ("batch", "none")}
    n = {"largest |dJ/db|, batch norm": max(b for b, _ in grads["batch"]),
         "smallest max |dJ/db| of a layer, no norm": min(b for b, _ in grads["none"])}
    return claims.Evidence(
        numbers=n,
        checks=[claims.below("largest |dJ/db|, batch norm", n["largest |dJ/db|, batch norm"], 1e-6),
                claims.above("smallest max |dJ/db| of a layer, no norm",
                             n["smallest max |dJ/db| of a layer, no norm"], 1e-4)],
        result=grads,
    )


@dataclass(frozen=True)
class SweepSettings:
    """The conv net with and without batch norm (``torch.nn.BatchNorm2d``), trained ``steps``
    steps of SGD at a small learning rate ``low``, a large one ``high``, and (batch norm only)
    one too large, ``too_high``; it "trains" where it ends with at least ``trains`` test
    accuracy."""

    channels: tuple[int, ...] = (8, 16)
    low: float = 0.01
    high: float = 1.0
    too_high: float = 3.0
    steps: int = 300
    eval_every: int = 50
    trains: float = 0.85

    @property
    def runs(self) -> tuple[tuple[str, float], ...]:
        """The ``(norm, lr)`` pairs trained: ``norm`` is ``"batch"`` or ``"none"``."""
        return (("batch", self.low), ("none", self.low), ("batch", self.high),
                ("none", self.high), ("batch", self.too_high))


def lr_sweep(settings: SweepSettings, data: Split, seed: int = 0
             ) -> dict[tuple[str, float], History]:
    """Train the conv net for each ``(norm, lr)`` of ``settings.runs``; returns
    ``{(norm, lr): History}``."""
    s = settings
    return {(norm, lr): train(make_convnet(s.channels, norm=norm, bn_impl="torch", seed=seed),
                              data, steps=s.steps, lr=lr, seed=seed, eval_every=s.eval_every,
                              progress=False)
            for norm, lr in s.runs}


@claims.claim(
    "conv-bn-wider-lr-range",
    chapter=7,
    statement="Trained 300 steps, the conv net with batch norm ends well ahead of the plain one "
              "at learning rate 0.01 (by more than 0.1 on every seed, the plain one below 80%, "
              "batch norm above 85% on average) and at 1.0 (above 85% itself, ahead on every "
              "seed, by more than 0.2 on average); at 3.0 batch norm fails too (below 50%).",
    settings=SweepSettings(),
    slow=True,
    section="lr-sweep",
)
def wider_lr_range(settings: SweepSettings, seed: int) -> claims.Evidence:
    s = settings
    runs = lr_sweep(s, load_digits_split(seed=seed), seed=seed)
    final = {key: 0.0 if h.diverged else h.final_test_acc for key, h in runs.items()}
    n = {f"{'BN' if norm == 'batch' else 'plain'}, lr {lr:g}": final[norm, lr]
         for norm, lr in s.runs}
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.above(f"BN minus plain, lr {s.low:g}",
                         final["batch", s.low] - final["none", s.low], 0.1),
            claims.below(f"plain, lr {s.low:g}", final["none", s.low], 0.8),
            claims.above(f"BN, lr {s.high:g}", final["batch", s.high], s.trains),
            claims.above(f"BN minus plain, lr {s.high:g}",
                         final["batch", s.high] - final["none", s.high], 0.0),
            claims.below(f"BN, lr {s.too_high:g}", final["batch", s.too_high], 0.5),
        ],
        result=runs,
    )


@wider_lr_range.aggregate
def _(seeds: list) -> list[claims.Check]:
    s = SweepSettings()
    gap = [n[f"BN, lr {s.high:g}"] - n[f"plain, lr {s.high:g}"] for n in seeds]
    return [claims.above(f"mean BN accuracy, lr {s.low:g}",
                         claims.mean(n[f"BN, lr {s.low:g}"] for n in seeds), s.trains),
            claims.above(f"mean BN minus plain, lr {s.high:g}", claims.mean(gap), 0.2)]


@dataclass(frozen=True)
class FoldSettings:
    """The batch-normalized conv net (``torch.nn.BatchNorm2d``) trained ``steps`` steps at
    ``lr``, then folded for inference."""

    channels: tuple[int, ...] = (8, 16)
    steps: int = 100
    lr: float = 0.1


def fold_check(model: nn.Sequential, X: Tensor) -> tuple[nn.Sequential, float, int]:
    """Fold ``model`` (in eval mode) and compare on ``X``: ``(folded model, largest logit
    difference, number of changed predictions)``."""
    model.eval()
    folded = fold_model(model)
    with torch.no_grad():
        a, b = model(X), folded(X)
    return folded, float((a - b).abs().max()), int((a.argmax(1) != b.argmax(1)).sum())


@claims.claim(
    "conv-bn-folds",
    chapter=7,
    statement="Folding a trained conv net's batch norm layers into its convolutions changes "
              "no test prediction (logits within 1e-4).",
    settings=FoldSettings(),
    section="folding-conv",
)
def folds(settings: FoldSettings, seed: int) -> claims.Evidence:
    data = load_digits_split(seed=seed)
    net = make_convnet(settings.channels, norm="batch", bn_impl="torch", seed=seed)
    train(net, data, steps=settings.steps, lr=settings.lr, seed=seed,
          eval_every=settings.steps, progress=False)
    folded, gap, changed = fold_check(net, data.X_test)
    n = {"norm layers left": float(len(norm_layers(folded))),
         "largest logit difference": gap, "changed predictions": float(changed)}
    return claims.Evidence(
        numbers=n,
        checks=[claims.below("norm layers left", n["norm layers left"], 0.5),
                claims.below("largest logit difference", gap, 1e-4),
                claims.below("changed predictions", n["changed predictions"], 0.5)],
        result=(net, folded),
    )
