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

Helpers: :func:`count_parameters` and :func:`hidden_pre_activations` (the inputs
``z_tilde[l]`` of each activation, e.g. for percentile plots). The batch norm layers of a
model are :func:`course_lib.borrow.batchnorm_layers`; :func:`course_lib.borrow.as_found` borrows a
model in eval mode and gives it back as it was.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from course_lib import _checks
from course_lib.nn import BatchNorm1d
from course_lib.borrow import as_found

__all__ = [
    "ACTIVATIONS",
    "count_parameters",
    "hidden_pre_activations",
    "bn_factory",
    "make_mlp",
]

#: Activations by name for ``make_mlp(activation=...)``.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
}

_BN_POSITIONS = ("before", "after", None)
_BN_IMPLS = ("course_lib", "torch")


def make_mlp(
    in_features: int,
    widths: Sequence[int],
    out_features: int,
    activation: str | Callable[[], nn.Module] = "sigmoid",
    bn: str | None = None,
    bn_impl: str | Callable[[int], nn.Module] = "course_lib",
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
        bn_impl: ``"course_lib"`` uses :class:`course_lib.nn.BatchNorm1d` (written from
            scratch), ``"torch"`` uses :class:`torch.nn.BatchNorm1d`; they are drop-in
            replacements for each other. A callable ``bn_impl(num_features) -> nn.Module``
            builds any other normalization layer (e.g. ``functools.partial(BatchNorm1d,
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
    make_bn = bn_factory(bn_impl) if bn is not None else None
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
        if bn_impl in _BN_IMPLS:
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


def bn_factory(bn_impl: str | Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
    """The batch norm layer class for ``bn_impl``: ``"course_lib"``, ``"torch"`` or a callable
    ``num_features -> module`` (returned as it is)."""
    if bn_impl == "course_lib":
        return BatchNorm1d
    if bn_impl == "torch":
        return nn.BatchNorm1d
    return bn_impl  # a callable, checked by _check_bn_impl
