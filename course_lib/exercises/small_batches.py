"""Chapter 8 exercises: group norm's forward pass, and what each process sends in SyncBN.

- ``group_norm``: ``fn(x, G, gamma, beta, eps) -> out`` for ``x`` of shape ``(N, C, H, W)``:
  each example's channels split into ``G`` groups of ``C // G`` consecutive channels, each
  group normalized over its channels and spatial positions, then ``gamma * z_norm + beta``
  per channel. The reference is :func:`course_lib.norm_layers.group_norm`.
- ``sync_bn_sums``: ``fn(x) -> (mu, M2)``: what one process contributes to synchronized
  batch norm's forward pass, per channel the mean of its slice ``x`` (shape ``(N, C)`` or
  ``(N, C, H, W)``) and ``M2``, the sum of squared deviations from that mean (with the count,
  what the processes merge exactly). The reference is
  :func:`course_lib.distributed.local_moments`.

The group norm cases have 2 <= G < C, channels with different means and scales inside each
group (so interleaved groups, layer norm (G = 1), instance norm (G = C) and batch norm all give
other values), few values per group (so the unbiased variance shows) and a large eps. The moments
cases have nonzero means (so sums differ from means, and raw sums of squares from ``M2``).
In both, the last case has the first one's shapes with other data (so a cache shows).

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..distributed import local_moments
from ..norm_layers import group_norm
from ._core import Case, Mistake, hard_coded_eps, register_cases
from .batchnorm2d import gamma_not_reshaped

GN_ARGS = ("x", "G", "gamma", "beta", "eps")

# (seed, N, C, H, W, G, eps)
_GN_SPECS = [
    (0, 3, 6, 2, 3, 3, 1e-5),
    (1, 2, 8, 2, 2, 2, 1e-1),
    (2, 4, 4, 3, 1, 2, 1e-2),
    (3, 1, 6, 2, 2, 2, 1e-5),
    (4, 3, 6, 2, 3, 2, 1e-3),  # case 1's shapes, other data, G and eps: a cache shows
]


def _gn_inputs(seed, n, c, h, w):
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-3.0, 3.0, size=(1, c, 1, 1))
    scale = np.exp(rng.uniform(np.log(0.3), np.log(3.0), size=(1, c, 1, 1)))
    x = mean + scale * rng.standard_normal((n, c, h, w))
    gamma = rng.uniform(0.5, 2.0, size=c) * rng.choice([-1.0, 1.0], size=c)
    beta = rng.uniform(-2.0, 2.0, size=c)
    return x, gamma, beta


def _gn_reference(x, G, gamma, beta, eps):
    x_t, gamma_t, beta_t = (torch.from_numpy(a) for a in (x, gamma, beta))
    return group_norm(x_t, G, gamma_t, beta_t, eps).numpy()


def _gn_cases() -> list[Case]:
    cases = []
    for seed, n, c, h, w, G, eps in _GN_SPECS:
        x, gamma, beta = _gn_inputs(seed, n, c, h, w)
        cases.append(Case(f"x {x.shape}, G={G}, eps={eps:g}", (x, G, gamma, beta, eps),
                          (_gn_reference(x, G, gamma, beta, eps),)))
    return cases


# ---- group norm: classic mistakes, WRONG ON PURPOSE --------------------------------------


def _affine(z_norm, gamma, beta):
    return z_norm * gamma[None, :, None, None] + beta[None, :, None, None]


def _norm_over(z, axes, eps, *, ddof=0, eps_mode="inside"):
    mu = z.mean(axis=axes, keepdims=True)
    var = z.var(axis=axes, keepdims=True, ddof=ddof)
    if eps_mode == "none":
        return (z - mu) / np.sqrt(var)
    if eps_mode == "outside":
        return (z - mu) / (np.sqrt(var) + eps)
    if eps_mode == "var":
        return (z - mu) / (var + eps)
    return (z - mu) / np.sqrt(var + eps)


def _wrong_grouped(*, fixed_G: int | None = None, fixed_eps: float | None = None,
                   affine: str = "both", **kw):
    """Group norm with one thing changed: G or eps fixed, the variance or eps's place (``kw``
    of ``_norm_over``), or which of gamma and beta is applied."""

    def wrong(x, G, gamma, beta, eps):
        G = G if fixed_G is None else fixed_G
        eps = eps if fixed_eps is None else fixed_eps
        n, c = x.shape[:2]
        z = x.reshape(n, G, c // G, *x.shape[2:])
        z_norm = _norm_over(z, (2, 3, 4), eps, **kw).reshape(x.shape)
        g, b = gamma[None, :, None, None], beta[None, :, None, None]
        return ({"both": g * z_norm + b, "none": z_norm, "no_beta": g * z_norm,
                 "no_gamma": z_norm + b}[affine],)

    return wrong


def _wrong_interleaved(x, G, gamma, beta, eps):
    # Channel c in group c % G: reshape (N, C // G, G, ...) and normalize over axis 1.
    n, c = x.shape[:2]
    z = x.reshape(n, c // G, G, *x.shape[2:])
    return (_affine(_norm_over(z, (1, 3, 4), eps).reshape(x.shape), gamma, beta),)


def _wrong_over(axes):
    def wrong(x, G, gamma, beta, eps):
        return (_affine(_norm_over(x, axes, eps), gamma, beta),)

    return wrong


def _wrong_with_batch(x, G, gamma, beta, eps):
    # Groups, but the statistics also over the batch axis.
    n, c = x.shape[:2]
    z = x.reshape(n, G, c // G, *x.shape[2:])
    return (_affine(_norm_over(z, (0, 2, 3, 4), eps).reshape(x.shape), gamma, beta),)


GN_FIX = (
    "N, C, H, W = x.shape; z = x.reshape(N, G, C // G, H, W); mu = z.mean(axis=(2, 3, 4), "
    "keepdims=True); var = z.var(axis=(2, 3, 4), keepdims=True); z_norm = ((z - mu) / "
    "np.sqrt(var + eps)).reshape(N, C, H, W); return gamma[None, :, None, None] * z_norm + "
    "beta[None, :, None, None]"
)

GN_MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "wrong_group_axis",
        "Looks like your groups interleave the channels: channel c went to group c % G "
        "(x.reshape(N, C // G, G, H, W), statistics over axis 1). Group norm's groups are "
        "consecutive channels: group g holds channels g * C/G to (g + 1) * C/G - 1, so reshape "
        "to (N, G, C // G, H, W) and take the statistics over axes (2, 3, 4).",
        _wrong_interleaved,
    ),
    Mistake(
        "layer_norm",
        "Looks like you normalized each example over all of its channels at once: that is "
        "group norm with G = 1, which is layer norm. Split the C channels into G groups first "
        "(x.reshape(N, G, C // G, H, W)) and normalize each group on its own.",
        _wrong_over((1, 2, 3)),
    ),
    Mistake(
        "instance_norm",
        "Looks like you normalized each channel of each example on its own (statistics over "
        "H and W only): that is group norm with G = C, which is instance norm. Put C // G "
        "channels together in each group: x.reshape(N, G, C // G, H, W), statistics over "
        "axes (2, 3, 4).",
        _wrong_over((2, 3)),
    ),
    Mistake(
        "batch_norm",
        "Looks like you normalized each channel over the batch and the spatial axes (axes "
        "0, 2, 3): that is batch norm. Group norm never averages over the batch: each "
        "example is normalized with its own statistics, so it works for any batch size.",
        _wrong_over((0, 2, 3)),
    ),
    Mistake(
        "over_batch",
        "Looks like your statistics also run over the batch axis 0. Group norm computes them "
        "for each example separately: over axes (2, 3, 4) of x.reshape(N, G, C // G, H, W), "
        "not (0, 2, 3, 4).",
        _wrong_with_batch,
    ),
    Mistake(
        "unbiased_variance",
        "Looks like you used the unbiased variance (dividing by n - 1, ddof=1). Normalization "
        "layers use the biased one: the mean of the squared deviations (np.var's default "
        "ddof=0).",
        _wrong_grouped(ddof=1),
    ),
    Mistake(
        "missing_eps",
        "Looks like eps is missing: divide by np.sqrt(var + eps). eps keeps the division "
        "finite for a constant group and is part of the definition.",
        _wrong_grouped(eps_mode="none"),
    ),
    Mistake(
        "eps_outside_sqrt",
        "Looks like eps is added outside the square root, np.sqrt(var) + eps. It goes "
        "inside: np.sqrt(var + eps), as in batch norm.",
        _wrong_grouped(eps_mode="outside"),
    ),
    Mistake(
        "divided_by_variance",
        "Looks like you divided by the variance instead of the standard deviation: use "
        "np.sqrt(var + eps).",
        _wrong_grouped(eps_mode="var"),
    ),
)


_GN_EPS = [spec[-1] for spec in _GN_SPECS]

GN_MISTAKES += (
    Mistake(
        "hard_coded_G",
        "Looks like you split the channels into a fixed number of groups, 2, instead of the "
        "G argument. The cases pass G = 2 and G = 3 (the paper's default is 32, which needs "
        "at least 32 channels): reshape with the argument, x.reshape(N, G, C // G, H, W).",
        _wrong_grouped(fixed_G=2),
    ),
    *(Mistake("hard_coded_eps", hard_coded_eps(e, _GN_EPS), _wrong_grouped(fixed_eps=e))
      for e in (1e-5, 1e-3)),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you returned the normalized values without the learned scale and shift. "
        "Group norm normalizes per group, but scales and shifts per CHANNEL: "
        "gamma[None, :, None, None] * z_norm + beta[None, :, None, None].",
        _wrong_grouped(affine="none"),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you applied gamma but forgot beta: the output is gamma * z_norm + beta, "
        "with beta[None, :, None, None].",
        _wrong_grouped(affine="no_beta"),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you added beta but forgot to multiply by gamma: the output is "
        "gamma * z_norm + beta, with gamma[None, :, None, None].",
        _wrong_grouped(affine="no_gamma"),
    ),
)


def _gn_diagnose_error(exc: BaseException, case: Case) -> tuple[str, str] | None:
    """gamma (C,) not reshaped, or a reshape into a number of groups other than G."""
    x, G = case.args[0], case.args[1]
    n, c = x.shape[:2]
    text = str(exc)
    if "broadcast" in text and f"({c},)" in text:
        return gamma_not_reshaped(x.shape)
    used = re.search(r"cannot reshape array of size \d+ into shape \((\d+), ?(\d+),", text)
    if used and int(used.group(1)) == n and int(used.group(2)) != G:
        return ("hard_coded_G",
                f"Your reshape asked for {used.group(2)} groups where this case passes "
                f"G={G}: did you write a fixed number of groups? Use the G argument, "
                f"x.reshape(N, G, C // G, H, W) (the paper's G = 32 needs at least 32 "
                f"channels; here C = {c}).")
    return None


def _gn_diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    x, G = case.args[0], case.args[1]
    n, c = x.shape[:2]
    if x.ndim == 4 and got == (n, c, x.shape[2], c):  # gamma (C,) broadcast over W = 1
        return gamma_not_reshaped(x.shape)
    if got == (n, G, c // G, *x.shape[2:]):
        return ("wrong_shape", f"out has shape {got}, the grouped view; reshape it back to "
                f"x's shape {x.shape} before applying gamma and beta.")
    return None


grade_group_norm = register_cases(
    "group_norm_forward",
    "fn(x, G, gamma, beta, eps) -> out: group norm of an (N, C, H, W) array with G groups of "
    "consecutive channels (chapter 8)",
    _gn_cases,
    arg_names=GN_ARGS,
    output_names=("out",),
    mistakes=GN_MISTAKES,
    fix=GN_FIX,
    hint="Check one group by hand: after normalizing, out[0, :C // G] (before gamma and "
         "beta) should have mean 0 and variance about 1.",
    diagnose_shape=_gn_diagnose_shape,
    diagnose_error=_gn_diagnose_error,
)


# ---- what each process sends in SyncBN --------------------------------------------------

# (seed, shape of x); the last case has the first one's shape with other data (a cache shows).
_SUM_SHAPES = [(0, (5, 3)), (1, (3, 4, 2, 2)), (2, (1, 2, 3, 3)), (3, (7, 6)), (4, (5, 3))]


def _sums_reference(x):
    sent = local_moments(torch.from_numpy(x)).numpy()  # (count, mean per channel, M2 per channel)
    c = x.shape[1]
    return sent[1:c + 1], sent[c + 1:]


def _sum_cases() -> list[Case]:
    cases = []
    for seed, shape in _SUM_SHAPES:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-2.0, 3.0, size=(1, shape[1]) + (1,) * (len(shape) - 2)) \
            + rng.uniform(0.5, 2.0) * rng.standard_normal(shape)
        cases.append(Case(f"x {x.shape}", (x,), _sums_reference(x)))
    return cases


def _axes(x):
    return (0, *range(2, x.ndim))


def _wrong_raw_squares(x):
    a = _axes(x)
    return x.mean(axis=a), (x ** 2).sum(axis=a)


def _wrong_sums(x):
    a = _axes(x)
    return x.sum(axis=a), x.var(axis=a) * (x.size // x.shape[1])


def _wrong_variance(x):
    a = _axes(x)
    return x.mean(axis=a), x.var(axis=a)


def _wrong_unbiased(x):
    a = _axes(x)
    return x.mean(axis=a), x.var(axis=a, ddof=1)


SUM_MISTAKES = (
    Mistake(
        "raw_sum_of_squares",
        "Looks like M2 is the raw sum of squares, (x ** 2).sum(...). That is the shortcut "
        "sigma2 = sum(z**2) / m - mu**2, which cancels in float32: with channel means of "
        "1e4 it loses every digit of a variance near 1. Send the squared deviations from "
        "the slice's own mean, ((x - mu) ** 2).sum(...): Chan's merge combines them exactly.",
        _wrong_raw_squares,
    ),
    Mistake(
        "sum_not_mean",
        "Looks like the first value is the sum of the slice, not its mean. Send the mean "
        "x.mean(...) over every axis but 1; the count says how much it weighs in the merge.",
        _wrong_sums,
    ),
    Mistake(
        "variance_not_m2",
        "Looks like M2 is the slice's variance, M2 / m. Send the sum of squared deviations "
        "itself, ((x - mu) ** 2).sum(...): sums of squared deviations add up (plus a term "
        "for how far the slices' means are apart), variances of slices of different sizes "
        "do not.",
        _wrong_variance,
    ),
    Mistake(
        "unbiased_variance",
        "Looks like M2 is the slice's unbiased variance, M2 / (m - 1). Send the sum of "
        "squared deviations itself, ((x - mu) ** 2).sum(...), with no division at all.",
        _wrong_unbiased,
    ),
)


def _sums_diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    x = case.args[0]
    c = x.shape[1]
    if x.ndim > 2 and got == x.shape[1:]:
        return ("spatial_axes", f"{name} has shape {got}, expected ({c},): reduce over the "
                f"spatial axes too, axis=(0, 2, 3): batch norm's statistics of a channel use "
                f"all N * H * W of its values.")
    if got in ((x.shape[0],), (x.shape[0], *x.shape[2:])):
        return ("wrong_axis", f"{name} has shape {got}, expected ({c},): one number per "
                "channel, over the batch (axis 0) and any spatial axes, not over the "
                "channels.")
    if got == ():
        return ("wrong_axis", f"{name} is a single number; expected one per channel, shape "
                f"({c},): reduce over every axis but 1.")
    return None


grade_sync_bn_sums = register_cases(
    "sync_bn_sums",
    "fn(x) -> (mu, M2): per-channel mean and sum of squared deviations from it of a "
    "process's slice x, what each process sends in SyncBN (chapter 8)",
    _sum_cases,
    arg_names=("x",),
    output_names=("mu", "M2"),
    mistakes=SUM_MISTAKES,
    fix="axes = (0, *range(2, x.ndim)); mu = x.mean(axis=axes, keepdims=True); "
        "return mu.ravel(), ((x - mu) ** 2).sum(axis=axes)",
    hint="Check: for a slice with values 1 and 3 in one channel, mu is 2 and M2 is "
         "(1 - 2)**2 + (3 - 2)**2 = 2.",
    diagnose_shape=_sums_diagnose_shape,
)
