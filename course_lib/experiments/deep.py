r"""Deep networks with and without batch norm: depth, initialization, scale invariance, residuals.

The experiments behind chapter 7's claims:

- :func:`deep_mlp` builds a plain or batch-normalized MLP of any depth on the digits with
  PyTorch's default initialization, Xavier/Glorot's or Kaiming/He's (:func:`initialize`).
- :func:`compare_cures` trains the three contenders of the chapter (plain with the default
  initialization, plain with a careful one, batch norm with the default one) at several
  learning rates.
- :func:`scale_layer`, :func:`scaled_gradients` and :func:`sgd_weight_norms` measure what
  batch norm's invariance to the scale of :math:`W^{[l]}` implies: for a layer followed by
  batch norm, :math:`\mathrm{BN}(c\,W a) = \mathrm{BN}(W a)` for every :math:`c > 0`, so

  .. math::

      \nabla_{W} J\big|_{cW} = \frac1c \nabla_{W} J\big|_{W}, \qquad
      \langle \nabla_W J, W \rangle = 0,

  the norm of :math:`W` can only grow under plain SGD
  (:math:`\lVert W - \alpha g\rVert^2 = \lVert W\rVert^2 + \alpha^2 \lVert g\rVert^2`), and
  what matters is the direction :math:`W / \lVert W \rVert`, which moves with the effective
  learning rate :math:`\alpha / \lVert W \rVert^2`.
- :func:`make_residual_mlp` builds a residual MLP whose blocks end in batch norm, with the
  last :math:`\gamma` of each block initialized to 0 or 1.
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

from course_lib.experiments.lab.data import Split
from course_lib.experiments.lab.models import make_mlp, norm_factory
from course_lib.experiments.lab.training import History, train

__all__ = [
    "CURES",
    "INITS",
    "ResidualBlock",
    "ScaledGradients",
    "compare_cures",
    "deep_mlp",
    "hidden_weights",
    "initialize",
    "make_residual_mlp",
    "scale_layer",
    "scaled_gradients",
    "sgd_weight_norms",
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


def compare_cures(
    data: Split,
    lrs: Sequence[float],
    *,
    depth: int = 15,
    activation: str = "relu",
    steps: int = 300,
    seed: int = 0,
    eval_every: int = 25,
) -> dict[tuple[str, float], History]:
    """Train each of :data:`CURES` at each learning rate (plain SGD, same mini-batches).

    Returns:
        ``{(label, lr): History}``.
    """
    runs = {}
    for lr in lrs:
        for label, (bn, init) in CURES.items():
            model = deep_mlp(depth, activation=activation, bn=bn, init=init, seed=seed)
            runs[label, lr] = train(model, data, steps=steps, lr=lr, seed=seed,
                                    eval_every=eval_every, progress=False)
    return runs


# ---------------------------------------------------------------------------------------------
# Scale invariance


def hidden_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights of the hidden ``Linear`` layers ``linear1, linear2, ...``."""
    return [m.weight for n, m in model.named_children()
            if isinstance(m, nn.Linear) and n.startswith("linear")]


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
        outputs_gap: the largest change of the logits over all :math:`c` against
            :math:`c = 1`.
    """

    cs: np.ndarray
    grad_norms: np.ndarray
    cosines: np.ndarray
    outputs_gap: float


def scaled_gradients(model: nn.Module, X: Tensor, y: Tensor, layer: str,
                     cs: Sequence[float]) -> ScaledGradients:
    """Scale ``layer``'s weight by each ``c`` and take one training-mode gradient on ``(X, y)``.

    Runs on copies: ``model`` is not changed.
    """
    norms, cosines, logits = [], [], []
    for c in cs:
        work = scale_layer(model, layer, c).train()
        p = getattr(work, layer).weight
        out = work(X.to(p.dtype))
        F.cross_entropy(out, y).backward()
        g, W = p.grad.flatten(), p.detach().flatten()
        norms.append(float(g.norm()))
        cosines.append(float(g @ W / (g.norm() * W.norm())))
        logits.append(out.detach())
    # Against c = 1 if it was tried, else against the first factor.
    reference = logits[list(cs).index(1.0)] if 1.0 in cs else logits[0]
    gap = max(float((o - reference).abs().max()) for o in logits)
    return ScaledGradients(np.asarray(cs, dtype=float), np.array(norms), np.array(cosines), gap)


def sgd_weight_norms(
    model: nn.Module,
    data: Split,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
    layer_lr: dict[str, float] | None = None,
    seed: int = 0,
    batch_size: int = 60,
) -> np.ndarray:
    r"""Plain SGD (optionally with weight decay), recording :math:`\lVert W^{[l]} \rVert`.

    Each step updates every parameter with ``w -= lr * (dJ/dw + weight_decay * w)``;
    ``layer_lr = {"linear3": lr3}`` gives one layer's weight its own learning rate. The
    mini-batches are drawn as in :func:`course_lib.experiments.lab.training.train` with the same
    ``seed``. Trains ``model`` in place.

    Returns:
        ``(steps + 1, L)`` norms of the hidden weights ``linear1 .. linearL``, from step 0.
    """
    layer_lr = layer_lr or {}
    special = {id(getattr(model, name).weight): value for name, value in layer_lr.items()}
    groups = [{"params": [p], "lr": special.get(id(p), lr)} for p in model.parameters()]
    opt = torch.optim.SGD(groups, lr=lr, weight_decay=weight_decay)
    p0 = next(model.parameters())
    X, y = data.X_train.to(p0.dtype), data.y_train
    order = torch.Generator().manual_seed(seed)
    per_epoch = len(X) // batch_size
    weights = hidden_weights(model)
    norms = [[float(W.detach().norm()) for W in weights]]
    model.train()
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(len(X), generator=order)
        idx = perm[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
        norms.append([float(W.detach().norm()) for W in weights])
    return np.array(norms)


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
