"""Chapter 8's practical pitfalls of batch norm, each an experiment.

- :func:`accumulate_gradients`: gradient accumulation (several micro-batches, one update)
  gives the gradient of the whole batch to a network without batch norm or with layer norm,
  but not to one with batch norm: each micro-batch is normalized with its own statistics, and
  the running averages move once per micro-batch. Claim ``accumulation-not-a-larger-batch``.
- :func:`affine_fit_error`: at inference batch norm is a fixed affine map per unit, so it
  folds into the layer before it (:func:`course_lib.fold.fold`); layer and group norm divide
  by each example's own standard deviation, which no fixed layer can do. Claim
  ``only-batch-norm-folds``.

Both run in float64, so "equal" means equal up to round-off, and they take well under a
second.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.experiments import claims
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import DEFAULT_NORM_IMPL, make_mlp, norm_factory
from course_lib.fold import fold
from course_lib.borrow import batchnorm_layers

__all__ = [
    "AccumulationSettings",
    "FoldSettings",
    "accumulate_gradients",
    "affine_fit_error",
]


@dataclass(frozen=True)
class AccumulationSettings:
    """One batch of ``batch`` digits, against ``micro_batches`` accumulated micro-batches.

    Attributes:
        batch: the batch the accumulation is meant to stand in for.
        micro_batches: how many micro-batches it is split into (``batch // micro_batches``
            examples each).
        widths: the hidden layers of the network (ReLU, the normalization before each).
        kinds: the normalizations compared (:func:`~course_lib.experiments.lab.models.norm_factory`
            kinds).
    """

    batch: int = 32
    micro_batches: int = 4
    widths: tuple[int, ...] = (32, 32)
    kinds: tuple[str, ...] = ("batch", "layer", "none")


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def accumulate_gradients(
    kind: str, settings: AccumulationSettings, seed: int = 0
) -> dict[str, float]:
    """One training step on a batch, two ways, from the same network: the whole batch at once,
    and the batch split into micro-batches whose gradients are accumulated (each micro-batch
    loss divided by their number, the usual recipe).

    Returns ``{"gradient": ..., "running mean": ...}``: the relative difference
    ``||a - b|| / ||b||`` of all parameter gradients, and of the first layer's running mean
    after the step (``nan`` without batch norm).
    """
    s = settings
    if s.batch % s.micro_batches:
        raise ValueError(f"accumulate_gradients: batch ({s.batch}) must be a multiple of "
                         f"micro_batches ({s.micro_batches})")
    data = load_digits_split(seed=0)
    pick = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(seed))[:s.batch]
    X, y = data.X_train[pick].double(), data.y_train[pick]
    norm = norm_factory(kind)
    net = make_mlp(64, list(s.widths), 10, activation="relu",
                   bn=None if norm is None else "before", bn_impl=norm or DEFAULT_NORM_IMPL,
                   seed=seed).double()
    whole, accumulated = net, copy.deepcopy(net)

    F.cross_entropy(whole(X), y).backward()
    for Xm, ym in zip(X.chunk(s.micro_batches), y.chunk(s.micro_batches)):
        (F.cross_entropy(accumulated(Xm), ym) / s.micro_batches).backward()

    grads = [torch.cat([p.grad.flatten() for p in m.parameters()]) for m in (accumulated, whole)]
    out = {"gradient": _relative(*grads), "running mean": float("nan")}
    bns = [dict(batchnorm_layers(m)) for m in (accumulated, whole)]
    if bns[0]:
        first = next(iter(bns[0]))
        out["running mean"] = _relative(bns[0][first].running_mean, bns[1][first].running_mean)
    return out


@claims.claim(
    "accumulation-not-a-larger-batch",
    chapter=8,
    statement="Accumulating the gradients of 4 micro-batches of 8 gives the gradient of the "
              "batch of 32 to a network with layer norm or without normalization (up to "
              "round-off), but not to one with batch norm, whose running statistics also "
              "differ.",
    settings=AccumulationSettings(),
    section="pitfalls",
)
def accumulation_is_not_a_larger_batch(
    settings: AccumulationSettings, seed: int
) -> claims.Evidence:
    runs = {kind: accumulate_gradients(kind, settings, seed) for kind in settings.kinds}
    numbers = {f"{kind}: {what}": v for kind, r in runs.items() for what, v in r.items()
               if not (kind != "batch" and what == "running mean")}
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.above("batch norm: gradient difference", runs["batch"]["gradient"], 0.01),
            claims.above("batch norm: running mean difference", runs["batch"]["running mean"],
                         0.01),
            claims.below("layer norm: gradient difference", runs["layer"]["gradient"], 1e-10),
            claims.below("no normalization: gradient difference", runs["none"]["gradient"],
                         1e-10),
        ],
        result=runs,
    )


@dataclass(frozen=True)
class FoldSettings:
    """``Linear(64, width) -> normalization`` on the digits, in evaluation mode.

    Attributes:
        width: the layer's outputs.
        groups: group norm's groups.
        warmup_batches: training-mode batches of 64 that set batch norm's running statistics.
    """

    width: int = 16
    groups: int = 4
    warmup_batches: int = 20


def affine_fit_error(kind: str, settings: FoldSettings, seed: int = 0) -> dict[str, float]:
    """How well one ``Linear`` layer can stand in for ``Linear -> norm`` at inference.

    ``norm`` (``kind`` ``"batch"``, ``"layer"`` or ``"group"``, with random ``gamma`` and
    ``beta``) is put in evaluation mode; the best affine map from the digits to its outputs is
    found by least squares over all 1,797 digits. Returns ``{"best linear fit": ...}``, the
    relative error ``||fit - out|| / ||out - mean(out)||`` of that map, and for batch norm
    also ``{"fold": ...}``, the largest difference between :func:`course_lib.fold.fold`'s one
    layer and the pair.
    """
    s = settings
    data = load_digits_split(seed=0)
    X = torch.cat([data.X_train, data.X_test]).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        linear = nn.Linear(64, s.width).double()
        norm = norm_factory(kind, groups=s.groups if kind == "group" else None)(s.width).double()
    with torch.no_grad():
        norm.weight.copy_(1 + 0.5 * torch.randn(s.width, generator=gen, dtype=torch.float64))
        norm.bias.copy_(torch.randn(s.width, generator=gen, dtype=torch.float64))
        for _ in range(s.warmup_batches):  # batch norm's running statistics, from training
            idx = torch.randint(len(X), (64,), generator=gen)
            norm(linear(X[idx]))
        norm.eval()
        out = norm(linear(X))
        design = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
        # gelsd: some pixels are 0 in every digit, so the design is rank-deficient.
        coef = torch.linalg.lstsq(design, out, driver="gelsd").solution
        fit = design @ coef
        result = {"best linear fit": float((fit - out).norm() / (out - out.mean(dim=0)).norm())}
        if kind == "batch":
            result["fold"] = float((fold(linear, norm)(X) - out).abs().max())
    return result


@claims.claim(
    "only-batch-norm-folds",
    chapter=8,
    statement="At inference, Linear followed by batch norm folds into one Linear layer exactly; "
              "followed by layer or group norm, even the best single Linear layer misses its "
              "outputs by more than 5%.",
    settings=FoldSettings(),
    section="pitfalls",
)
def only_batch_norm_folds(settings: FoldSettings, seed: int) -> claims.Evidence:
    runs = {kind: affine_fit_error(kind, settings, seed) for kind in ("batch", "layer", "group")}
    numbers = {f"{kind} norm: {what}": v for kind, r in runs.items() for what, v in r.items()}
    return claims.Evidence(
        numbers=numbers,
        checks=[
            claims.below("batch norm: fold error", runs["batch"]["fold"], 1e-10),
            claims.below("batch norm: best linear fit error", runs["batch"]["best linear fit"],
                         1e-10),
            claims.above("layer norm: best linear fit error", runs["layer"]["best linear fit"],
                         0.05),
            claims.above("group norm: best linear fit error", runs["group"]["best linear fit"],
                         0.05),
        ],
        result=runs,
    )
