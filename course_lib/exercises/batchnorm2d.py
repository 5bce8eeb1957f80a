"""Chapter 7 exercise: batch norm for convolutions, ``(N, C, H, W)``, by reshaping.

- ``bn2d_forward``: ``fn(x, gamma, beta, eps) -> out`` with ``x`` of shape ``(N, C, H, W)``
  and ``gamma``, ``beta`` of shape ``(C,)``; statistics per channel over the ``N * H * W``
  values of that channel (training mode).

The reference is :func:`course_lib.batchnorm.batchnorm_forward`, which handles any
``(N, C, *spatial)`` input (one implementation per formula).

The cases have N, C, H and W all different and channels with different means and scales,
so that every wrong set of axes gives different values (or a different shape), and a small
N so that the unbiased variance shows; the last case has the first one's shape with other
data and eps (so a cache shows).

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import numpy as np

from ..batchnorm import batchnorm_forward
from ._core import Case, Mistake, hard_coded_eps, register_cases

ARG_NAMES = ("x", "gamma", "beta", "eps")

# (seed, N, C, H, W, eps)
_SPECS = [
    (0, 4, 3, 5, 2, 1e-5),
    (1, 3, 5, 2, 4, 1e-2),
    (2, 6, 2, 3, 3, 1e-3),
    (3, 4, 3, 5, 2, 1e-1),  # case 1's shape, other data and eps: a cache shows
]


def _case(seed: int, n: int, c: int, h: int, w: int, eps: float) -> Case:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-3.0, 3.0, size=(1, c, 1, 1))
    scale = np.exp(rng.uniform(np.log(0.5), np.log(4.0), size=(1, c, 1, 1)))
    # Per-position offsets make per-position statistics differ from per-channel ones.
    x = mean + scale * (rng.standard_normal((n, c, h, w)) + rng.standard_normal((1, 1, h, w)))
    gamma = rng.uniform(0.5, 2.0, size=c) * rng.choice([-1.0, 1.0], size=c)
    beta = rng.uniform(-2.0, 2.0, size=c)
    out, _ = batchnorm_forward(x, gamma, beta, eps)
    return Case(f"x {x.shape}, eps={eps:g}", (x, gamma, beta, eps), (out,))


def _cases() -> list[Case]:
    return [_case(*spec) for spec in _SPECS]


# ---- classic mistakes, WRONG ON PURPOSE ---------------------------------------------------


def _wrong_axes(axes: tuple[int, ...], ddof: int = 0, eps_mode: str = "inside",
                fixed_eps: float | None = None, affine: str = "both"):
    """Batch norm over ``axes`` with one thing changed: the axes, the variance, where eps
    goes (or a fixed one), or which of gamma and beta is applied."""

    def wrong(x, gamma, beta, eps):
        eps = eps if fixed_eps is None else fixed_eps
        mu = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, ddof=ddof, keepdims=True)
        denom = {"inside": np.sqrt(var + eps), "none": np.sqrt(var),
                 "outside": np.sqrt(var) + eps, "variance": var + eps}[eps_mode]
        x_hat = (x - mu) / denom
        g, b = gamma[None, :, None, None], beta[None, :, None, None]
        return ({"both": g * x_hat + b, "none": x_hat, "no_beta": g * x_hat,
                 "no_gamma": x_hat + b}[affine],)

    return wrong


def _wrong_reshape_without_transpose(x, gamma, beta, eps):
    n, c, h, w = x.shape
    flat = x.reshape(-1, c)  # the slip: reshape mixes channels, transpose first
    x_hat = (flat - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + eps)
    return ((gamma * x_hat + beta).reshape(n, c, h, w),)


def _wrong_no_transpose_back(x, gamma, beta, eps):
    n, c, h, w = x.shape
    flat = x.transpose(0, 2, 3, 1).reshape(-1, c)
    x_hat = (flat - flat.mean(axis=0)) / np.sqrt(flat.var(axis=0) + eps)
    return ((gamma * x_hat + beta).reshape(n, c, h, w),)  # the slip: (N, H, W, C) order


FIX = (
    "flat = x.transpose(0, 2, 3, 1).reshape(-1, C)  # (N*H*W, C): one column per channel; "
    "normalize each column with its mean and biased variance (axis=0), apply gamma and beta, "
    "then out = result.reshape(N, H, W, C).transpose(0, 3, 1, 2)."
)

MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "per_example",
        "Looks like you normalized each example over its channels and positions (axes "
        "(1, 2, 3)): that is layer norm, not batch norm. Batch norm keeps one mean and one "
        "variance per CHANNEL, taken over the batch and all positions: axes (0, 2, 3).",
        _wrong_axes((1, 2, 3)),
    ),
    Mistake(
        "per_example",
        "Looks like you normalized each example's channel over its own H x W positions "
        "(axes (2, 3)): that is instance norm. Batch norm also averages over the batch: "
        "axes (0, 2, 3), N * H * W values per channel.",
        _wrong_axes((2, 3)),
    ),
    Mistake(
        "per_position",
        "Looks like you normalized every (channel, row, column) position separately over "
        "the batch (axis 0 only), as if each pixel were a feature of a dense layer. In a "
        "convolution every position of a channel comes from the same filter, so batch norm "
        "pools them: one mean and variance per channel over axes (0, 2, 3).",
        _wrong_axes((0,)),
    ),
    Mistake(
        "reshape_without_transpose",
        "Looks like you reshaped x to (N*H*W, C) directly. x.reshape(-1, C) reads the values "
        "in memory order (N, C, H, W), so each column mixes channels. Move the channel axis "
        "last first: x.transpose(0, 2, 3, 1).reshape(-1, C), and undo both at the end.",
        _wrong_reshape_without_transpose,
    ),
    Mistake(
        "no_transpose_back",
        "Looks like the statistics are right, but the output was reshaped straight back to "
        "(N, C, H, W) from the (N*H*W, C) matrix. Its rows are in (N, H, W) order: reshape "
        "to (N, H, W, C), then transpose(0, 3, 1, 2).",
        _wrong_no_transpose_back,
    ),
    Mistake(
        "all_axes",
        "Looks like you used one mean and one variance over the whole array. Each channel "
        "needs its own: axes (0, 2, 3), keepdims=True (or the (N*H*W, C) matrix, axis=0).",
        _wrong_axes((0, 1, 2, 3)),
    ),
    Mistake(
        "unbiased_variance",
        "Looks like you used the unbiased variance (ddof=1). Batch norm normalizes with the "
        "biased variance of the mini-batch, dividing by m = N*H*W.",
        _wrong_axes((0, 2, 3), ddof=1),
    ),
    Mistake(
        "missing_eps",
        "Looks like you divided by np.sqrt(var) without eps: the formula is "
        "np.sqrt(var + eps).",
        _wrong_axes((0, 2, 3), eps_mode="none"),
    ),
)

_CASE_EPS = [spec[-1] for spec in _SPECS]
_PER_CHANNEL = (0, 2, 3)

MISTAKES += (
    *(Mistake("hard_coded_eps", hard_coded_eps(e, _CASE_EPS),
              _wrong_axes(_PER_CHANNEL, fixed_eps=e)) for e in (1e-5, 1e-3)),
    Mistake(
        "eps_outside_sqrt",
        "Looks like you added eps outside the square root: np.sqrt(var) + eps. The formula "
        "is np.sqrt(var + eps), as in chapter 2; the two differ most for a channel whose "
        "variance is not much larger than eps (here eps goes up to 0.1).",
        _wrong_axes(_PER_CHANNEL, eps_mode="outside"),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance, var + eps, instead of the standard "
        "deviation np.sqrt(var + eps). Then a channel with standard deviation 3 ends with "
        "spread 1/3 instead of 1.",
        _wrong_axes(_PER_CHANNEL, eps_mode="variance"),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you returned the normalized values without the learned scale and shift. "
        "The output is gamma * x_hat + beta, one gamma and one beta per channel: "
        "gamma[None, :, None, None] * x_hat + beta[None, :, None, None].",
        _wrong_axes(_PER_CHANNEL, affine="none"),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you applied gamma but forgot beta: the output is gamma * x_hat + beta, "
        "with beta[None, :, None, None] for an (N, C, H, W) array.",
        _wrong_axes(_PER_CHANNEL, affine="no_beta"),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you added beta but forgot to multiply by gamma: the output is "
        "gamma * x_hat + beta, with gamma[None, :, None, None] for an (N, C, H, W) array.",
        _wrong_axes(_PER_CHANNEL, affine="no_gamma"),
    ),
)

HINT = (
    "Check one channel by hand: x[:, c] holds its N*H*W values; out[:, c] must be "
    "gamma[c] * (x[:, c] - x[:, c].mean()) / np.sqrt(x[:, c].var() + eps) + beta[c]."
)


def _diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    n, c, h, w = case.args[0].shape
    if got == (n * h * w, c):
        return (
            "not_reshaped_back",
            f"{name} has shape {got}: the (N*H*W, C) matrix. Turn it back into an image "
            f"batch: .reshape(N, H, W, C).transpose(0, 3, 1, 2) gives (N, C, H, W).",
        )
    return None


def _diagnose_error(exc: BaseException, case: Case) -> tuple[str, str] | None:
    """A per-channel vector of shape (C,) that meets the (N, C, H, W) array unreshaped."""
    x = case.args[0]
    c = x.shape[1]
    text = str(exc)
    if "broadcast" in text and f"({c},)" in text and str(x.shape).replace(" ", "") in \
            text.replace(" ", ""):
        return gamma_not_reshaped(x.shape)
    return None


def gamma_not_reshaped(shape: tuple[int, ...]) -> tuple[str, str]:
    """Why gamma of shape (C,) does not scale the channels of an (N, C, H, W) array."""
    n, c, h, w = shape
    return (
        "gamma_not_reshaped",
        f"gamma and beta have shape ({c},), one value per channel, and the array has shape "
        f"{tuple(shape)}, channels on axis 1. numpy lines shapes up from the RIGHT, so "
        f"gamma * x_hat pairs gamma with the last axis (W = {w}), not with the channels: it "
        f"fails here, and when W happens to equal C it silently scales the columns. Give "
        f"them the channel axis: gamma[None, :, None, None] (or gamma.reshape(1, {c}, 1, 1)), "
        f"and the same for beta. (With an (N, D) array in chapter 2, gamma of shape (D,) "
        f"lined up by itself.)",
    )


grade_bn2d_forward = register_cases(
    "bn2d_forward",
    "fn(x, gamma, beta, eps) -> out: batch norm of a conv layer's output x (N, C, H, W), "
    "statistics per channel over N*H*W values (chapter 7)",
    _cases,
    arg_names=ARG_NAMES,
    output_names=("out",),
    mistakes=MISTAKES,
    fix=FIX,
    hint=HINT,
    diagnose_shape=_diagnose_shape,
    diagnose_error=_diagnose_error,
)
