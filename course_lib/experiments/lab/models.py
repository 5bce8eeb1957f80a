"""Multilayer perceptrons with or without batch norm, built the way the lecture writes them.

:func:`make_mlp` builds the networks of chapters 3-6. Each hidden layer ``l`` computes, in the
lecture's order (``bn="before"``)::

    z[l]       = W[l] a[l-1]                  no bias: BN's beta takes its place
    z_tilde[l] = gamma[l] * z_norm[l] + beta[l]    (batch norm of z[l])
    a[l]       = g(z_tilde[l])

The bias ``b[l]`` is left out when batch norm follows: BN subtracts the mini-batch mean, so
any constant ``b[l]`` cancels (its gradient is exactly zero) and ``beta[l]`` already shifts
the result. With ``bn="after"`` the order is ``Linear -> g -> BN`` (the alternative some
practitioners prefer), and with ``bn=None`` it is the plain ``a[l] = g(W[l] a[l-1] + b[l])``.
The output layer is a plain ``Linear`` producing logits for the cross-entropy loss.

Modules are named after the lecture's layer index, so a notebook can write ``model.bn2`` or
``model.act3``::

    Sequential(
      (linear1): Linear(in_features=64, out_features=100, bias=False)
      (bn1): BatchNorm1d(100, ...)
      (act1): Sigmoid()
      ...
      (output): Linear(in_features=100, out_features=10, bias=True)
    )

Normalization layers are named one way everywhere, by kind and implementation:
:func:`norm_factory` (``norm_factory("group", groups=10)``) returns ``width -> layer``, the
factory ``make_mlp(bn_impl=...)`` and :func:`course_lib.experiments.convnet.make_convnet`
accept; :data:`DEFAULT_NORM_IMPL` is the one default implementation.

Helpers: :func:`count_parameters` and :func:`hidden_pre_activations` (the inputs
``z_tilde[l]`` of each activation, e.g. for percentile plots). The batch norm layers of a
model are :func:`course_lib.borrow.batchnorm_layers`; :func:`course_lib.borrow.as_found` borrows a
model in eval mode and gives it back as it was.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from course_lib import _checks
from course_lib import nn as cnn
from course_lib import norm_layers
from course_lib.borrow import as_found

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_NORM_IMPL",
    "NORM_IMPLS",
    "NORM_KINDS",
    "count_parameters",
    "hidden_pre_activations",
    "make_mlp",
    "norm_factory",
]

#: Activations by name for ``make_mlp(activation=...)``.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}

_BN_POSITIONS = ("before", "after", None)

#: The normalizations :func:`norm_factory` builds: what a value is normalized with (chapter 8).
NORM_KINDS = ("batch", "renorm", "layer", "group", "none")
#: Who wrote the layer: ``"course_lib"`` (from scratch, :mod:`course_lib.nn`) or ``"torch"``
#: (:mod:`torch.nn`). The two compute the same thing (the tests hold them to each other).
NORM_IMPLS = ("course_lib", "torch")
#: The one default implementation, everywhere a model is built: the course's own layers.
DEFAULT_NORM_IMPL = "course_lib"


def norm_factory(
    kind: str = "batch",
    impl: str = DEFAULT_NORM_IMPL,
    *,
    spatial: bool = False,
    groups: int | None = None,
    **options: object,
) -> Callable[[int], nn.Module] | None:
    """The one way to name a normalization layer: its kind and its implementation.

    Returns a factory ``width -> layer`` (``width`` = features of a dense layer, channels of a
    convolutional one), or ``None`` for ``kind="none"`` (no layer at all).

    ==========  ==========================================  =============================
    ``kind``    normalizes each value with                  layer (``spatial=True``)
    ==========  ==========================================  =============================
    ``batch``   its unit, across the batch                  ``BatchNorm1d`` (``2d``)
    ``renorm``  the same, corrected towards the running     ``BatchRenorm1d`` (``2d``),
                statistics (batch renormalization)          ``course_lib`` only
    ``layer``   its example, across all its units           ``LayerNorm(width)``
                                                            (``GroupNorm(1, C)``)
    ``group``   its example, across its group of units      ``GroupNorm(groups, width)``
    ``none``    nothing                                     ``None``
    ==========  ==========================================  =============================

    Args:
        kind: one of :data:`NORM_KINDS`.
        impl: ``"course_lib"`` (the default, :data:`DEFAULT_NORM_IMPL`) or ``"torch"``.
        spatial: ``True`` for ``(N, C, H, W)`` inputs of a conv net (layer norm then
            normalizes each example over its channels and positions, with one ``gamma`` per
            channel: ``GroupNorm(1, C)``).
        groups: number of groups, required for ``kind="group"`` (it must divide ``width``).
        **options: passed to the layer, e.g. ``momentum=0.01`` for batch norm or
            ``warmup_steps=`` for batch renorm.

    Example:
        >>> norm_factory("group", groups=10)(100)
        GroupNorm(10, 100, eps=1e-05, affine=True)
        >>> type(norm_factory("batch", "torch")(100)).__name__
        'BatchNorm1d'
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"norm_factory: unknown kind {kind!r}; use one of {NORM_KINDS}")
    if impl not in NORM_IMPLS:
        raise ValueError(
            f"norm_factory: impl must be 'course_lib' (the course's from-scratch layers) or "
            f"'torch' (torch.nn's) (got {impl!r})"
        )
    if (groups is None) == (kind == "group"):
        raise ValueError(
            "norm_factory: group norm needs groups=G (a divisor of the width)"
            if kind == "group" else
            f"norm_factory: groups= is for kind='group' only (got kind={kind!r})"
        )
    if kind == "none":
        if options:
            raise ValueError(f"norm_factory: kind='none' takes no options (got {sorted(options)})")
        return None
    # The course's batch norm layers live in course_lib.nn, its other normalizations in
    # course_lib.norm_layers; torch.nn has both.
    bn_lib, lib = (cnn, norm_layers) if impl == "course_lib" else (nn, nn)
    if kind == "batch":
        layer = bn_lib.BatchNorm2d if spatial else bn_lib.BatchNorm1d
    elif kind == "renorm":
        if impl != "course_lib":
            raise ValueError(
                "norm_factory: torch.nn has no batch renormalization; use impl='course_lib'"
            )
        layer = norm_layers.BatchRenorm2d if spatial else norm_layers.BatchRenorm1d
    elif kind == "group":
        layer = functools.partial(lib.GroupNorm, groups)
    elif spatial:  # layer norm of a conv net's (C, H, W): one group of all channels
        layer = functools.partial(lib.GroupNorm, 1)
    else:
        layer = lib.LayerNorm
    return functools.partial(layer, **options) if options else layer


def make_mlp(
    in_features: int,
    widths: Sequence[int],
    out_features: int,
    activation: str | Callable[[], nn.Module] = "sigmoid",
    bn: str | None = None,
    bn_impl: str | Callable[[int], nn.Module] = DEFAULT_NORM_IMPL,
    init_scale: float | None = None,
    dropout: float = 0.0,
    seed: int | None = None,
) -> nn.Sequential:
    """A multilayer perceptron with hidden layers of the given widths, optionally with BN.

    Per hidden layer ``l`` (named ``linear{l}``, ``bn{l}``, ``act{l}``, ``dropout{l}``):

    ============  ==============================================  =====================
    ``bn``        modules                                          ``linear{l}`` bias
    ============  ==============================================  =====================
    ``"before"``  ``Linear -> BN -> activation [-> Dropout]``     no (BN's beta)
    ``"after"``   ``Linear -> activation -> BN [-> Dropout]``     yes
    ``None``      ``Linear -> activation [-> Dropout]``           yes
    ============  ==============================================  =====================

    then ``output``: ``Linear(widths[-1], out_features)`` with bias, producing logits. Dropout
    comes last in each hidden layer, after the activation (and, for ``"after"``, after the
    BN, so the BN statistics are not computed on dropped-out units that are not dropped at
    test time).

    Args:
        in_features: number of input features (64 for the digits).
        widths: sizes of the hidden layers, e.g. ``[100, 100, 100]``; may be empty
            (then the model is a single ``output`` layer: softmax regression).
        out_features: number of classes.
        activation: ``"sigmoid"``, ``"relu"`` or ``"tanh"``, or a module class such as
            ``nn.GELU`` (any callable that returns a new module when called with no
            arguments).
        bn: ``"before"`` the activation (the lecture's order), ``"after"`` it, or ``None``.
        bn_impl: the batch norm layer's implementation, ``"course_lib"`` (the default,
            :class:`course_lib.nn.BatchNorm1d`, written from scratch) or ``"torch"``
            (:class:`torch.nn.BatchNorm1d`): ``norm_factory("batch", bn_impl)``. They are
            drop-in replacements for each other. For another normalization pass its factory,
            ``norm_factory("group", groups=10)``, or any callable
            ``bn_impl(num_features) -> nn.Module`` (e.g. ``functools.partial(BatchNorm1d,
            momentum=None)``).
        init_scale: if given, every ``Linear`` weight is drawn from ``N(0, init_scale^2)``
            and every bias is set to 0 (for the weight-initialization sweep). ``None`` keeps
            PyTorch's default initialization.
        dropout: probability of dropping a hidden unit in training, ``0 <= p < 1``.
        seed: if given, the weights are drawn from ``torch.manual_seed(seed)`` without
            disturbing the global random state; the same seed gives the same weights,
            whichever ``bn_impl`` is used. ``None`` draws from the global random state.

    Returns:
        An ``nn.Sequential`` in training mode, float32, on the CPU.

    Example:
        >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
        >>> model.linear1.bias is None, count_parameters(model)
        (True, 28010)
        >>> model(torch.randn(60, 64)).shape
        torch.Size([60, 10])
    """
    in_features = _checks.check_int(in_features, "in_features", 1, where="make_mlp")
    out_features = _checks.check_int(out_features, "out_features", 1, where="make_mlp")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
        raise TypeError(
            f"make_mlp: widths must be a list of hidden-layer sizes such as [100, 100, 100] "
            f"(got {type(widths).__name__} {widths!r})"
        )
    widths = [_checks.check_int(w, f"widths[{i}]", 1, where="make_mlp") for i, w in enumerate(widths)]
    make_activation = _activation_factory(activation)
    if bn not in _BN_POSITIONS:
        raise ValueError(
            f"make_mlp: bn must be 'before' (Linear -> BN -> activation, the lecture's order), "
            f"'after' (Linear -> activation -> BN) or None (got {bn!r})"
        )
    _check_bn_impl(bn_impl)
    make_bn = norm_factory("batch", bn_impl) if isinstance(bn_impl, str) else bn_impl
    if init_scale is not None:
        if not _checks.is_real(init_scale):
            raise TypeError(
                f"make_mlp: init_scale must be a positive number or None (got "
                f"{type(init_scale).__name__})"
            )
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(
                f"make_mlp: init_scale is the standard deviation of the initial weights and "
                f"must be positive and finite (got {init_scale})"
            )
    if not _checks.is_real(dropout):
        raise TypeError(
            f"make_mlp: dropout must be a number in [0, 1) (got {type(dropout).__name__})"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(
            f"make_mlp: dropout is the probability of dropping a unit and must be in [0, 1) "
            f"(got {dropout})"
        )
    if seed is not None and (not _checks.is_int(seed)):
        raise TypeError(f"make_mlp: seed must be an int or None (got {type(seed).__name__})")

    def build() -> nn.Sequential:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        fan_in = in_features
        for l, width in enumerate(widths, start=1):
            # A bias right before BN is cancelled by BN's mean subtraction: leave it out.
            layers[f"linear{l}"] = nn.Linear(fan_in, width, bias=bn != "before")
            if bn == "before":
                layers[f"bn{l}"] = make_bn(width)
                layers[f"act{l}"] = make_activation()
            else:
                layers[f"act{l}"] = make_activation()
                if bn == "after":
                    layers[f"bn{l}"] = make_bn(width)
            if dropout > 0:
                layers[f"dropout{l}"] = nn.Dropout(dropout)
            fan_in = width
        layers["output"] = nn.Linear(fan_in, out_features)
        if init_scale is not None:
            for module in layers.values():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=float(init_scale))
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
        return nn.Sequential(layers)

    if seed is None:
        return build()
    # fork_rng restores the global random state afterwards: building a model does not change
    # what later code draws.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of (trainable) parameters: weights, biases, and BN's ``gamma`` and ``beta``.

    Running statistics are buffers, not parameters, so they do not count.

    Example:
        >>> count_parameters(nn.Linear(64, 100))    # 64 * 100 weights + 100 biases
        6500
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters: expected an nn.Module (got {type(model).__name__})")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def hidden_pre_activations(model: nn.Sequential, X: Tensor) -> list[Tensor]:
    """The input of every hidden activation, ``z_tilde[l]`` (or ``z[l]`` without BN).

    Runs ``model`` on ``X`` in eval mode (running statistics are used and left unchanged)
    without gradients, and records what each ``act{l}`` module of a :func:`make_mlp` model
    receives. For ``bn="before"`` that is the BN output ``z_tilde[l]``; for ``bn="after"`` or
    no BN it is ``z[l] = W[l] a[l-1] + b[l]``.

    Args:
        model: a model from :func:`make_mlp` (its activations are named ``act1``, ``act2``...).
        X: ``(N, in_features)`` inputs.

    Returns:
        A list with one ``(N, widths[l-1])`` tensor per hidden layer, ``l = 1 .. L-1``.

    Example:
        >>> from course_lib.experiments.lab.data import load_digits_split
        >>> data = load_digits_split(seed=0)
        >>> model = make_mlp(64, [100, 100, 100], 10, seed=0)
        >>> z_last = hidden_pre_activations(model, data.X_test)[-1]     # (450, 100)
        >>> torch.quantile(z_last[:, 0], torch.tensor([0.15, 0.5, 0.85]))  # one unit
        tensor([0.9006, 0.9110, 0.9213])
    """
    acts = [
        m for name, m in model.named_children() if name.startswith("act") and name[3:].isdigit()
    ]
    if not acts:
        raise ValueError(
            "hidden_pre_activations: the model has no modules named act1, act2, ...; build it "
            "with course_lib.experiments.lab.models.make_mlp"
        )
    inputs: list[Tensor] = []
    handles = [
        m.register_forward_hook(lambda module, args, out: inputs.append(args[0].detach()))
        for m in acts
    ]
    try:
        with as_found(model, "eval"), torch.no_grad():
            model(X)
    finally:
        for h in handles:
            h.remove()
    return inputs


def _activation_factory(activation: object) -> Callable[[], nn.Module]:
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation.lower()]
        except KeyError:
            raise ValueError(
                f"make_mlp: unknown activation {activation!r}; use one of "
                f"{sorted(ACTIVATIONS)} or a module class such as nn.GELU"
            ) from None
    if isinstance(activation, nn.Module):
        raise TypeError(
            f"make_mlp: activation must be a name or a module class, not a module instance; "
            f"pass {type(activation).__name__} instead of {type(activation).__name__}()"
        )
    if callable(activation):
        return activation
    raise TypeError(
        f"make_mlp: activation must be 'sigmoid', 'relu', 'tanh' or a module class (got "
        f"{type(activation).__name__})"
    )


def _check_bn_impl(bn_impl: object) -> None:
    if isinstance(bn_impl, str):
        if bn_impl in NORM_IMPLS:
            return
    elif isinstance(bn_impl, nn.Module):
        raise TypeError(
            "make_mlp: bn_impl must be 'course_lib', 'torch' or a class/callable "
            "bn_impl(num_features) -> nn.Module, not a module instance"
        )
    elif callable(bn_impl):
        return
    raise ValueError(
        f"make_mlp: bn_impl must be 'course_lib' (from-scratch course_lib.nn.BatchNorm1d), "
        f"'torch' (torch.nn.BatchNorm1d) or a callable bn_impl(num_features) (got {bn_impl!r})"
    )
