r"""Deep networks with and without batch norm: depth, initialization, scale invariance, residuals.

The experiments behind chapter 7's claims, each with a frozen settings dataclass and each
registered as a claim (:mod:`course_lib.experiments.claims`):

- :func:`signal_through_depth` looks at the activations and gradients of deep tanh networks
  before training (:class:`DepthSettings`);
- :func:`update_ratios` records the update-to-data ratio of every layer of the chapter's three
  contenders during their first steps (:class:`UpdateRatioSettings`);
- :func:`compare_cures` trains the three contenders (plain with PyTorch's default
  initialization, plain with a careful one, batch norm with the default one) at two learning
  rates (:class:`CuresSettings`);
- :func:`scaled_gradients`, :func:`weight_norms` and :func:`effective_lr_twins` measure what
  batch norm's invariance to the scale of :math:`W^{[l]}` implies. For a layer followed by
  batch norm, :math:`\mathrm{BN}(c\,W a) = \mathrm{BN}(W a)` for every :math:`c > 0`, so the
  gradient at :math:`cW` is :math:`1/c` times the gradient at :math:`W` and orthogonal to
  :math:`W`; the norm of :math:`W` can only grow under plain SGD
  (:math:`\lVert W - \alpha g\rVert^2 = \lVert W\rVert^2 + \alpha^2 \lVert g\rVert^2`), and
  what matters is the direction :math:`W / \lVert W \rVert`, which moves with the effective
  learning rate :math:`\alpha / \lVert W \rVert^2`;
- :func:`make_residual_mlp` builds a residual MLP whose blocks end in batch norm, with the
  last :math:`\gamma` of each block initialized to 0 or 1 (:class:`ResidualSettings`).

Every training run goes through :func:`course_lib.experiments.lab.training.train`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.experiments import claims
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp, norm_factory
from course_lib.experiments.lab.training import History, OptimizerFactory, train
from course_lib.experiments.probes.diagnostics import (
    LayerStatistics, layer_statistics, update_ratio_recorder,
)
from course_lib.measures import update_to_data_ratio

__all__ = [
    "CURES",
    "INITS",
    "CuresSettings",
    "DepthSettings",
    "EffectiveLRSettings",
    "ResidualBlock",
    "ResidualSettings",
    "ScaleSettings",
    "ScaledGradients",
    "UpdateRatioSettings",
    "WeightNormSettings",
    "bn_mlp",
    "compare_cures",
    "deep_mlp",
    "effective_lr_twins",
    "hidden_weights",
    "initialize",
    "make_residual_mlp",
    "residual_runs",
    "scale_layer",
    "scaled_gradients",
    "signal_through_depth",
    "sgd_factory",
    "skip_every_block",
    "update_ratios",
    "weight_norms",
]

#: Initializations :func:`initialize` knows.
INITS = ("default", "xavier", "kaiming")

#: The chapter's three contenders: ``label -> (batch norm?, initialization)``; "careful" is
#: Kaiming for ReLU and Xavier for tanh or sigmoid.
CURES: dict[str, tuple[bool, str]] = {
    "plain, default init": (False, "default"),
    "plain, careful init": (False, "careful"),
    "BN, default init": (True, "default"),
}


def initialize(model: nn.Module, init: str, activation: str, seed: int = 0) -> nn.Module:
    r"""Draw every ``Linear`` weight of ``model`` again, in place; biases become 0.

    - ``"default"``: leave PyTorch's default, :math:`U(-1/\sqrt{n}, 1/\sqrt{n})` with
      :math:`n` the fan-in (a standard deviation of :math:`1/\sqrt{3n}`);
    - ``"xavier"``: :math:`N(0, g^2 \cdot 2 / (n_{in} + n_{out}))` with tanh's gain
      :math:`g = 5/3` (sigmoid's 1);
    - ``"kaiming"``: :math:`N(0, 2/n)`, which keeps the variance of ReLU activations from
      layer to layer.

    The output layer gets the same treatment. Returns ``model``.
    """
    if init not in INITS:
        raise ValueError(f"initialize: init must be one of {INITS} (got {init!r})")
    if init == "default":
        return model
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                n_out, n_in = m.weight.shape
                if init == "kaiming":
                    std = (2.0 / n_in) ** 0.5
                else:
                    std = nn.init.calculate_gain(activation) * (2.0 / (n_in + n_out)) ** 0.5
                m.weight.copy_(std * torch.randn(m.weight.shape, generator=gen,
                                                 dtype=torch.float64))
                if m.bias is not None:
                    m.bias.zero_()
    return model


def deep_mlp(
    depth: int,
    width: int = 100,
    activation: str = "relu",
    bn: bool = False,
    init: str = "default",
    seed: int = 0,
    bn_impl: str = "torch",
) -> nn.Sequential:
    """A digits MLP with ``depth`` hidden layers of ``width`` units (64 inputs, 10 classes).

    ``init="careful"`` means Kaiming for ReLU and Xavier for tanh or sigmoid. Batch norm, if
    any, goes in the lecture's order (``Linear`` without bias, BN, activation).
    """
    if init == "careful":
        init = "kaiming" if activation == "relu" else "xavier"
    model = make_mlp(64, [width] * depth, 10, activation=activation,
                     bn="before" if bn else None, bn_impl=bn_impl, seed=seed)
    return initialize(model, init, activation, seed=seed)


def hidden_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the hidden ``Linear`` layers ``linear1, linear2, ...``."""
    return [m.weight for n, m in model.named_children()
            if isinstance(m, nn.Linear) and n.startswith("linear")]


def _final(history: History) -> float:
    """Final test accuracy; a diverged run counts as 0."""
    return 0.0 if history.diverged else history.final_test_acc


# ---------------------------------------------------------------------------------------------
# Depth without batch norm: the signal before training


@dataclass(frozen=True)
class DepthSettings:
    """Three deep tanh networks looked at on a fixed batch, before any training.

    Attributes:
        depth, width: hidden layers and their units.
        large_init_scale: the standard deviation of the "weights too large" network's weights.
        n_probe: the first ``n_probe`` training digits form the batch.
    """

    depth: int = 15
    width: int = 100
    large_init_scale: float = 0.5
    n_probe: int = 500


def signal_through_depth(settings: DepthSettings, data: Split, seed: int = 0
                         ) -> dict[str, LayerStatistics]:
    """One forward and backward pass of each network on the probe batch.

    Returns:
        ``{"default init" | "weights too large" | "batch norm": LayerStatistics}``.
    """
    s = settings
    widths = [s.width] * s.depth
    nets = {
        "default init": make_mlp(64, widths, 10, activation="tanh", seed=seed),
        "weights too large": make_mlp(64, widths, 10, activation="tanh",
                                      init_scale=s.large_init_scale, seed=seed),
        "batch norm": make_mlp(64, widths, 10, activation="tanh", bn="before", seed=seed),
    }
    X, y = data.X_train[:s.n_probe], data.y_train[:s.n_probe]
    return {name: layer_statistics(net, X, y) for name, net in nets.items()}


@claims.claim(
    "deep-signal-without-bn",
    chapter=7,
    statement="In a plain 15-layer tanh network with PyTorch's default initialization the "
              "signal collapses and the gradients vanish on their way back; with weights that "
              "are too large most units saturate and the gradients explode; with batch norm "
              "every layer looks alike and the gradient gets through.",
    settings=DepthSettings(),
    section="depth-without-bn",
)
def deep_signal(settings: DepthSettings, seed: int) -> claims.Evidence:
    stats = signal_through_depth(settings, load_digits_split(seed=seed), seed=seed)
    default, large, bn = stats["default init"], stats["weights too large"], stats["batch norm"]
    n = {
        "default: spread last / first layer":
            default.example_spread[-1] / default.example_spread[0],
        "default: gradient first / last layer": default.gradient_std[0] / default.gradient_std[-1],
        "too large: least saturated fraction": float(large.saturated[1:].min()),
        "too large: gradient first / last layer": large.gradient_std[0] / large.gradient_std[-1],
        "BN: largest / smallest spread": bn.example_spread.max() / bn.example_spread.min(),
        "BN: most saturated fraction": float(bn.saturated.max()),
        "BN: gradient first / last layer": bn.gradient_std[0] / bn.gradient_std[-1],
    }
    n = {k: float(v) for k, v in n.items()}
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below("default: spread last / first layer",
                         n["default: spread last / first layer"], 1e-2),
            claims.below("default: gradient first / last layer",
                         n["default: gradient first / last layer"], 1e-2),
            claims.above("too large: least saturated fraction",
                         n["too large: least saturated fraction"], 0.5),
            claims.above("too large: gradient first / last layer",
                         n["too large: gradient first / last layer"], 100),
            claims.below("BN: largest / smallest spread", n["BN: largest / smallest spread"], 1.5),
            claims.below("BN: most saturated fraction", n["BN: most saturated fraction"], 0.1),
            claims.above("BN: gradient first / last layer",
                         n["BN: gradient first / last layer"], 0.1),
        ],
        result=stats,
    )


# ---------------------------------------------------------------------------------------------
# The update-to-data ratio of each layer during the first steps


@dataclass(frozen=True)
class UpdateRatioSettings:
    """The three contenders of :data:`CURES`, ``depth`` ReLU layers, trained ``steps`` steps
    at learning rate ``lr`` while every layer's update-to-data ratio is recorded."""

    depth: int = 15
    steps: int = 30
    lr: float = 0.05


def update_ratios(settings: UpdateRatioSettings, data: Split, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """The update-to-data ratio of every weight matrix at every step.

    Returns:
        ``{label: r}`` for each of :data:`CURES`, ``r[l, t]`` the ratio of layer ``l``
        (``linear1 .. linear{depth}``, then ``output``) at step ``t + 1``.
    """
    s = settings
    out = {}
    for label, (bn, init) in CURES.items():
        model = deep_mlp(s.depth, activation="relu", bn=bn, init=init, seed=seed)
        h = train(model, data, steps=s.steps, lr=s.lr, seed=seed, eval_every=s.steps,
                  after_step=update_ratio_recorder(), progress=False)
        out[label] = np.array([values[1:] for values in h.step_records.values()])
    return out


@claims.claim(
    "update-ratio-by-layer",
    chapter=7,
    statement="During the first 30 steps at learning rate 0.05, the first layer of the plain "
              "15-layer ReLU network with the default initialization is frozen (update-to-data "
              "ratio below 1e-5, over a hundred times below layer 15's), while with Kaiming "
              "initialization or with batch norm every hidden layer moves at about the same "
              "relative rate (within a factor of 10), and batch norm's rate is above 1e-2.5.",
    settings=UpdateRatioSettings(),
    section="update-to-data-ratio",
)
def update_ratio_claim(settings: UpdateRatioSettings, seed: int) -> claims.Evidence:
    ud = update_ratios(settings, load_digits_split(seed=seed), seed=seed)
    d = settings.depth
    med = {label: np.median(r, axis=1) for label, r in ud.items()}
    default = med["plain, default init"]
    n = {
        "default: layer 1 ratio": float(default[0]),
        "default: layer 1 / layer 15": float(default[0] / default[d - 1]),
    }
    checks = [
        claims.below("default: layer 1 ratio", n["default: layer 1 ratio"], 1e-5),
        claims.below("default: layer 1 / layer 15", n["default: layer 1 / layer 15"], 1e-2),
    ]
    for label in ("plain, careful init", "BN, default init"):
        hidden = med[label][:d]
        short = "careful" if label.startswith("plain") else "BN"
        n[f"{short}: largest / smallest hidden ratio"] = float(hidden.max() / hidden.min())
        n[f"{short}: smallest hidden ratio"] = float(hidden.min())
        checks += [
            claims.below(f"{short}: largest / smallest hidden ratio",
                         n[f"{short}: largest / smallest hidden ratio"], 10),
            claims.above(f"{short}: smallest hidden ratio",
                         n[f"{short}: smallest hidden ratio"], 1e-4),
        ]
    n["BN: median hidden ratio"] = float(np.median(ud["BN, default init"][:d]))
    checks.append(claims.above("BN: median hidden ratio", n["BN: median hidden ratio"],
                               10 ** -2.5))
    return claims.Evidence(numbers=n, checks=checks, result=ud)


# ---------------------------------------------------------------------------------------------
# The two cures


@dataclass(frozen=True)
class CuresSettings:
    """The three contenders of :data:`CURES` (``depth`` ReLU layers of ``width``), trained
    with plain SGD on the same mini-batches for ``steps`` steps at each of ``lrs``.

    ``ratio_window``: the batch-normalized runs also record the update-to-data ratio of every
    hidden layer; its median over the first and the last ``ratio_window`` steps is reported.
    """

    depth: int = 15
    width: int = 100
    lrs: tuple[float, ...] = (0.05, 0.5)
    steps: int = 300
    eval_every: int = 50
    ratio_window: int = 30


def compare_cures(settings: CuresSettings, data: Split, seed: int = 0
                  ) -> dict[tuple[str, float], History]:
    """Train each of :data:`CURES` at each learning rate (plain SGD, same mini-batches).

    The batch-normalized runs record every layer's update-to-data ratio at every step in
    ``History.step_records`` (``"ud:linear1"``, ...).

    Returns:
        ``{(label, lr): History}``.
    """
    s = settings
    runs = {}
    for lr in s.lrs:
        for label, (bn, init) in CURES.items():
            model = deep_mlp(s.depth, s.width, activation="relu", bn=bn, init=init, seed=seed)
            runs[label, lr] = train(
                model, data, steps=s.steps, lr=lr, seed=seed, eval_every=s.eval_every,
                after_step=update_ratio_recorder() if bn else None, progress=False)
    return runs


def _hidden_ratios(history: History, depth: int) -> np.ndarray:
    """``r[l, t]``: the update-to-data ratio of hidden layer ``l`` at step ``t + 1``."""
    return np.array([history.step_records[f"ud:linear{l}"][1:] for l in range(1, depth + 1)])


@claims.claim(
    "two-cures",
    chapter=7,
    statement="Trained 300 steps, the plain 15-layer ReLU network with the default "
              "initialization stays at chance at learning rates 0.05 and 0.5; with Kaiming "
              "initialization it trains at 0.05 (above 70% on every seed, above 85% on "
              "average) but fails at 0.5; with batch norm it trains at both (above 85% at "
              "0.05 and above 70% at 0.5 on every seed, above 85% on average), although at "
              "0.5 its update-to-data ratio starts above 1e-2 and falls by half or more on "
              "its own during training.",
    settings=CuresSettings(),
    slow=True,
    section="two-cures",
)
def two_cures(settings: CuresSettings, seed: int) -> claims.Evidence:
    runs = compare_cures(settings, load_digits_split(seed=seed), seed=seed)
    lo, hi = settings.lrs
    acc = {key: _final(h) for key, h in runs.items()}
    w = settings.ratio_window
    r = _hidden_ratios(runs["BN, default init", hi], settings.depth)
    first, last = float(np.median(r[:, :w])), float(np.median(r[:, -w:]))
    n = {
        f"default init, lr {lo}": acc["plain, default init", lo],
        f"default init, lr {hi}": acc["plain, default init", hi],
        f"careful init, lr {lo}": acc["plain, careful init", lo],
        f"careful init, lr {hi}": acc["plain, careful init", hi],
        f"BN, lr {lo}": acc["BN, default init", lo],
        f"BN, lr {hi}": acc["BN, default init", hi],
        f"BN, lr {hi}: ratio, first {w} steps": first,
        f"BN, lr {hi}: ratio, last {w} steps": last,
    }
    checks = [
        claims.below(f"default init, best of lr {lo} and {hi}",
                     max(n[f"default init, lr {lo}"], n[f"default init, lr {hi}"]), 0.3),
        claims.above(f"careful init, lr {lo}", n[f"careful init, lr {lo}"], 0.7),
        claims.below(f"careful init, lr {hi}", n[f"careful init, lr {hi}"], 0.5),
        claims.above(f"BN, lr {lo}", n[f"BN, lr {lo}"], 0.85),
        claims.above(f"BN, lr {hi}", n[f"BN, lr {hi}"], 0.7),
        claims.above(f"BN minus careful init, lr {hi}",
                     n[f"BN, lr {hi}"] - n[f"careful init, lr {hi}"], 0.2),
        claims.above(f"BN, lr {hi}: ratio, first {w} steps", first, 1e-2),
        claims.above(f"BN, lr {hi}: ratio falls, first / last {w} steps", first / last, 2.0),
    ]
    return claims.Evidence(numbers=n, checks=checks, result=runs)


@two_cures.aggregate
def _(seeds: list) -> list[claims.Check]:
    lo, hi = CuresSettings().lrs
    return [claims.above(f"mean careful init accuracy, lr {lo}",
                         claims.mean(s[f"careful init, lr {lo}"] for s in seeds), 0.85),
            claims.above(f"mean BN accuracy, lr {hi}",
                         claims.mean(s[f"BN, lr {hi}"] for s in seeds), 0.85)]


# ---------------------------------------------------------------------------------------------
# Scale invariance


def bn_mlp(depth: int, seed: int, eps: float = 1e-5) -> nn.Sequential:
    """A ``depth``-layer batch-normalized ReLU MLP in float64 with batch norm's ``eps`` set."""
    net = deep_mlp(depth, activation="relu", bn=True, seed=seed).double()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.eps = eps
    return net


def scale_layer(model: nn.Module, layer: str, c: float) -> nn.Module:
    """A copy of ``model`` with ``layer``'s weight multiplied by ``c``."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        getattr(new, layer).weight.mul_(c)
    return new


@dataclass(frozen=True)
class ScaledGradients:
    r"""The gradient of :math:`W^{[l]}` when :math:`W^{[l]}` is scaled by each :math:`c`.

    Attributes:
        cs: the factors :math:`c`.
        grad_norms: :math:`\lVert \nabla_W J \rVert` at :math:`c W` for each :math:`c`.
        cosines: :math:`\cos\angle(\nabla_W J, W)`, one per :math:`c`.
        update_ratios: the update-to-data ratio of one SGD step at learning rate ``lr``,
            one per :math:`c`.
        logits: the network's outputs on the batch, one ``(N, classes)`` array per :math:`c`.
        outputs_gap: the largest change of the logits over all :math:`c` against
            :math:`c = 1`.
    """

    cs: np.ndarray
    grad_norms: np.ndarray
    cosines: np.ndarray
    update_ratios: np.ndarray
    logits: list[np.ndarray]
    outputs_gap: float


def scaled_gradients(model: nn.Module, X: Tensor, y: Tensor, layer: str,
                     cs: Sequence[float], lr: float = 0.05) -> ScaledGradients:
    """Scale ``layer``'s weight by each ``c`` and take one training-mode gradient on ``(X, y)``.

    Runs on copies: ``model`` is not changed.
    """
    norms, cosines, ratios, logits = [], [], [], []
    for c in cs:
        work = scale_layer(model, layer, c).train()
        p = getattr(work, layer).weight
        out = work(X.to(p.dtype))
        F.cross_entropy(out, y).backward()
        g, W = p.grad.flatten(), p.detach().flatten()
        norms.append(float(g.norm()))
        cosines.append(float(g @ W / (g.norm() * W.norm())))
        ratios.append(update_to_data_ratio(W, W - lr * g))
        logits.append(out.detach().numpy())
    # Against c = 1 if it was tried, else against the first factor.
    reference = logits[list(cs).index(1.0)] if 1.0 in cs else logits[0]
    gap = max(float(np.abs(o - reference).max()) for o in logits)
    return ScaledGradients(np.asarray(cs, dtype=float), np.array(norms), np.array(cosines),
                           np.array(ratios), logits, gap)


@dataclass(frozen=True)
class ScaleSettings:
    """Scale layer ``layer`` of a ``depth``-layer batch-normalized network (float64) by each
    of ``cs`` and take one gradient on the first ``n_probe`` training digits, with batch
    norm's ``eps`` at PyTorch's default and at a tiny value; ``lr`` is the learning rate of
    the SGD step whose update-to-data ratio is measured."""

    depth: int = 5
    layer: str = "linear3"
    cs: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 10.0, 100.0)
    n_probe: int = 500
    eps: float = 1e-5
    tiny_eps: float = 1e-12
    lr: float = 0.05


@claims.claim(
    "bn-scale-invariance",
    chapter=7,
    statement="Scaling the weights of a layer followed by batch norm by c from 0.1 to 100 "
              "leaves the logits unchanged up to eps (by less than 1e-8 with eps = 1e-12, "
              "less than 0.05 with eps = 1e-5); the gradient scales like 1/c and is "
              "orthogonal to the weights, and the update-to-data ratio of an SGD step "
              "scales like 1/c^2.",
    settings=ScaleSettings(),
    section="scale-invariance",
)
def scale_invariance(settings: ScaleSettings, seed: int) -> claims.Evidence:
    s = settings
    data = load_digits_split(seed=seed)
    X, y = data.X_train[:s.n_probe].double(), data.y_train[:s.n_probe]
    scaled = {eps: scaled_gradients(bn_mlp(s.depth, seed, eps), X, y, s.layer, s.cs, lr=s.lr)
              for eps in (s.eps, s.tiny_eps)}
    tiny = scaled[s.tiny_eps]
    product = tiny.cs * tiny.grad_norms
    ratio_c2 = tiny.cs**2 * tiny.update_ratios
    n = {
        f"logit change, eps {s.eps:g}": scaled[s.eps].outputs_gap,
        f"logit change, eps {s.tiny_eps:g}": tiny.outputs_gap,
        "c * gradient norm, relative spread": float(np.ptp(product) / product.mean()),
        "largest |cos(gradient, W)|": float(np.abs(tiny.cosines).max()),
        "c^2 * update ratio, relative spread": float(np.ptp(ratio_c2) / ratio_c2.mean()),
    }
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below(f"logit change, eps {s.eps:g}", n[f"logit change, eps {s.eps:g}"], 0.05),
            claims.below(f"logit change, eps {s.tiny_eps:g}",
                         n[f"logit change, eps {s.tiny_eps:g}"], 1e-8),
            claims.below("c * gradient norm, relative spread",
                         n["c * gradient norm, relative spread"], 1e-6),
            claims.below("largest |cos(gradient, W)|", n["largest |cos(gradient, W)|"], 1e-9),
            claims.below("c^2 * update ratio, relative spread",
                         n["c^2 * update ratio, relative spread"], 1e-6),
        ],
        result=scaled,
    )


def sgd_factory(lr: float, weight_decay: float = 0.0,
                layer_lr: dict[nn.Parameter, float] | None = None) -> OptimizerFactory:
    """An optimizer factory for :func:`~course_lib.experiments.lab.training.train`: plain SGD,
    ``w -= lr * (dJ/dw + weight_decay * w)``, with ``layer_lr[p]`` as the learning rate of
    parameter ``p`` where given."""
    special = {id(p): value for p, value in (layer_lr or {}).items()}

    def sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        groups = [{"params": [p], "lr": special.get(id(p), lr)} for p in params]
        return torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay)

    return sgd


def weight_norms(model: nn.Module, data: Split, *, steps: int, lr: float,
                 weight_decay: float = 0.0, seed: int = 0) -> np.ndarray:
    r"""Train ``model`` in place with plain SGD (and weight decay), recording
    :math:`\lVert W^{[l]} \rVert` of every hidden layer after every step.

    Returns:
        ``(steps + 1, L)`` norms of the hidden weights ``linear1 .. linearL``, from step 0.
    """
    weights = hidden_weights(model)

    def norms(step: int, model: nn.Module) -> dict[str, float]:
        return {f"linear{l}": float(W.detach().norm()) for l, W in enumerate(weights, start=1)}

    h = train(model, data, steps=steps, lr=None, optimizer=sgd_factory(lr, weight_decay),
              seed=seed, eval_every=steps, after_step=norms, progress=False)
    return np.array(list(h.step_records.values())).T


@dataclass(frozen=True)
class WeightNormSettings:
    """A ``depth``-layer batch-normalized network (float64, PyTorch's ``eps``) trained
    ``steps`` steps of plain SGD at ``lr``, without and with weight decay ``weight_decay``."""

    depth: int = 5
    steps: int = 200
    lr: float = 0.5
    weight_decay: float = 0.01


@claims.claim(
    "bn-weight-norms",
    chapter=7,
    statement="Under plain SGD, the norm of every weight matrix followed by batch norm grows "
              "at every step (by more than 5% in 200 steps); with weight decay 0.01 the norms "
              "end smaller than where they started.",
    settings=WeightNormSettings(),
    section="effective-learning-rate",
)
def weight_norm_claim(settings: WeightNormSettings, seed: int) -> claims.Evidence:
    s = settings
    data = load_digits_split(seed=seed)
    norms = {wd: weight_norms(bn_mlp(s.depth, seed), data, steps=s.steps, lr=s.lr,
                              weight_decay=wd, seed=seed)
             for wd in (0.0, s.weight_decay)}
    free, decayed = norms[0.0], norms[s.weight_decay]
    n = {
        "steps at which some norm decreased (no decay)": float((np.diff(free, axis=0) < 0).sum()),
        "smallest growth of a norm (no decay)": float((free[-1] / free[0]).min()),
        "largest end / start norm (decay)": float((decayed[-1] / decayed[0]).max()),
    }
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below("steps at which some norm decreased (no decay)",
                         n["steps at which some norm decreased (no decay)"], 0.5),
            claims.above("smallest growth of a norm (no decay)",
                         n["smallest growth of a norm (no decay)"], 1.05),
            claims.below("largest end / start norm (decay)",
                         n["largest end / start norm (decay)"], 1.0),
        ],
        result=norms,
    )


@dataclass(frozen=True)
class EffectiveLRSettings:
    """Two copies of a ``depth``-layer batch-normalized network (float64, ``eps`` tiny): the
    second with ``layer``'s initial weights times ``c`` and that layer's learning rate times
    ``c**2``; both trained ``steps`` steps of plain SGD at ``lr`` on the same mini-batches."""

    depth: int = 5
    layer: str = "linear3"
    c: float = 3.0
    steps: int = 100
    lr: float = 0.5
    eps: float = 1e-12


def effective_lr_twins(settings: EffectiveLRSettings, data: Split, seed: int = 0
                       ) -> tuple[nn.Module, nn.Module]:
    """Train the two networks of :class:`EffectiveLRSettings`; returns ``(a, b)``, trained."""
    s = settings
    a = bn_mlp(s.depth, seed, s.eps)
    b = scale_layer(a, s.layer, s.c)
    train(a, data, steps=s.steps, lr=None, optimizer=sgd_factory(s.lr), seed=seed,
          eval_every=s.steps, progress=False)
    layer_lr = {getattr(b, s.layer).weight: s.lr * s.c**2}
    train(b, data, steps=s.steps, lr=None, optimizer=sgd_factory(s.lr, layer_lr=layer_lr),
          seed=seed, eval_every=s.steps, progress=False)
    return a, b


@claims.claim(
    "effective-learning-rate",
    chapter=7,
    statement="A batch-normalized network whose layer 3 starts with weights 3 times larger "
              "and trains with a learning rate 9 times larger computes the same function at "
              "every step (logits within 1e-6 after 100 steps), its weights still 3 times "
              "larger.",
    settings=EffectiveLRSettings(),
    section="effective-learning-rate",
)
def effective_lr_claim(settings: EffectiveLRSettings, seed: int) -> claims.Evidence:
    data = load_digits_split(seed=seed)
    a, b = effective_lr_twins(settings, data, seed=seed)
    with torch.no_grad():
        X = data.X_test.double()
        gap = float((a(X) - b(X)).abs().max())
    wa, wb = getattr(a, settings.layer).weight, getattr(b, settings.layer).weight
    ratio = float(wb.detach().norm() / wa.detach().norm())
    n = {"largest logit difference": gap, "norm ratio of the scaled layer": ratio}
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below("largest logit difference", gap, 1e-6),
            claims.below("|norm ratio - c|", abs(ratio - settings.c), 1e-6),
        ],
        result=(a, b),
    )


# ---------------------------------------------------------------------------------------------
# Residual networks


class ResidualBlock(nn.Module):
    r"""``a -> ReLU(a + BN(W2 ReLU(BN(W1 a))))``: two batch-normalized layers and a skip.

    With ``zero_gamma`` the second batch norm's :math:`\gamma` starts at 0, so the branch
    outputs :math:`\beta = 0` and the block is ``ReLU(a) = a`` for the block's non-negative
    inputs: the block starts as the identity (Goyal et al., 2017).
    """

    def __init__(self, width: int, zero_gamma: bool, bn_impl: str = "torch") -> None:
        super().__init__()
        bn = norm_factory("batch", bn_impl)
        self.linear1 = nn.Linear(width, width, bias=False)
        self.bn1 = bn(width)
        self.linear2 = nn.Linear(width, width, bias=False)
        self.bn2 = bn(width)
        if zero_gamma:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, a: Tensor) -> Tensor:
        branch = self.bn2(self.linear2(torch.relu(self.bn1(self.linear1(a)))))
        return torch.relu(a + branch)


def make_residual_mlp(
    blocks: int,
    width: int = 64,
    zero_gamma: bool = True,
    seed: int = 0,
    bn_impl: str = "torch",
) -> nn.Sequential:
    """``Linear -> BN -> ReLU`` (the stem), ``blocks`` :class:`ResidualBlock`, ``Linear``.

    ``2 * blocks + 2`` weight layers deep, for the 64-pixel digits and 10 classes.
    """
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
        raise ValueError(f"make_residual_mlp: blocks must be an int >= 0 (got {blocks!r})")
    if bn_impl not in ("course_lib", "torch"):
        raise ValueError(
            f"make_residual_mlp: bn_impl must be 'course_lib' or 'torch' (got {bn_impl!r})"
        )
    bn = norm_factory("batch", bn_impl)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            stem=nn.Linear(64, width, bias=False), bn0=bn(width), act0=nn.ReLU())
        for b in range(1, blocks + 1):
            layers[f"block{b}"] = ResidualBlock(width, zero_gamma, bn_impl)
        layers["output"] = nn.Linear(width, 10)
        return nn.Sequential(layers)


def skip_every_block(model: nn.Sequential) -> nn.Sequential:
    """The blocks-free network of a :func:`make_residual_mlp` model: stem and output only
    (sharing their modules)."""
    return nn.Sequential(model.stem, model.bn0, model.act0, model.output)


@dataclass(frozen=True)
class ResidualSettings:
    """A residual MLP of ``blocks`` blocks built with the last gamma of each block at 0 and
    at 1, trained ``steps`` steps at learning rate ``lr`` (evaluated every ``eval_every``)
    until ``target`` test accuracy; ``n_probe`` training digits check the identity."""

    blocks: int = 10
    steps: int = 200
    lr: float = 1.0
    eval_every: int = 10
    target: float = 0.9
    n_probe: int = 60


@claims.claim(
    "residual-starts-as-identity",
    chapter=7,
    statement="With the last gamma of every block at 0, a residual MLP computes exactly what "
              "its blocks-free network computes; with gamma = 1 its output differs by more "
              "than 1.",
    settings=ResidualSettings(),
    section="residual-networks",
)
def residual_identity(settings: ResidualSettings, seed: int) -> claims.Evidence:
    X = load_digits_split(seed=seed).X_train[:settings.n_probe]
    gaps = {}
    for zero_gamma in (True, False):
        net = make_residual_mlp(settings.blocks, zero_gamma=zero_gamma, seed=seed)
        with torch.no_grad():
            gaps[zero_gamma] = float((net(X) - skip_every_block(net)(X)).abs().max())
    n = {"gamma = 0: largest output difference": gaps[True],
         "gamma = 1: largest output difference": gaps[False]}
    return claims.Evidence(
        numbers=n,
        checks=[claims.below("gamma = 0: largest output difference", gaps[True], 1e-30),
                claims.above("gamma = 1: largest output difference", gaps[False], 1.0)],
    )


def residual_runs(settings: ResidualSettings, data: Split, seed: int = 0) -> dict[bool, History]:
    """Train the residual MLP with the last gamma at 0 (``True``) and 1 (``False``) until the
    target accuracy; returns ``{zero_gamma: History}``."""
    s = settings
    return {z: train(make_residual_mlp(s.blocks, zero_gamma=z, seed=seed), data, steps=s.steps,
                     lr=s.lr, seed=seed, eval_every=s.eval_every, stop_at_test_acc=s.target,
                     progress=False)
            for z in (True, False)}


@claims.claim(
    "zero-gamma-trains-faster",
    chapter=7,
    statement="At learning rate 1.0 the 10-block residual MLP whose blocks start as the "
              "identity (last gamma 0) reaches 90% test accuracy at least twice as fast as "
              "with gamma = 1, from a lower first loss.",
    settings=ResidualSettings(),
    section="residual-networks",
)
def zero_gamma_faster(settings: ResidualSettings, seed: int) -> claims.Evidence:
    runs = residual_runs(settings, load_digits_split(seed=seed), seed=seed)
    reached = {z: h.steps_to_reach(settings.target) for z, h in runs.items()}
    # A run that never reaches the target counts as the first evaluation after the budget.
    s0 = reached[True] if reached[True] is not None else settings.steps + settings.eval_every
    s1 = reached[False] if reached[False] is not None else settings.steps + settings.eval_every
    n = {"gamma = 0: steps to 90%": float(s0), "gamma = 1: steps to 90%": float(s1),
         "gamma = 0: first loss": runs[True].loss[0], "gamma = 1: first loss": runs[False].loss[0]}
    return claims.Evidence(
        numbers=n,
        checks=[
            claims.below("gamma = 0: steps to 90%", s0, settings.steps + 1),
            claims.above("steps to 90%, gamma = 1 / gamma = 0", s1 / s0, 2.0),
            claims.above("first loss, gamma = 1 minus gamma = 0",
                         runs[False].loss[0] - runs[True].loss[0], 0.0),
        ],
        result=runs,
    )
