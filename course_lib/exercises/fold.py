r"""Chapter 6 exercise: fold an eval-mode batch norm into the preceding ``Linear`` layer.

- ``fold_bn``: ``fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded,
  b_folded)``, numpy float64: ``W`` is ``(C_out, C_in)`` as in ``nn.Linear.weight``, the other
  vectors ``(C_out,)``; ``b`` is zeros for a layer without bias.

  .. math:: W' = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}} W \text{ (row-wise)}, \qquad
            b' = \frac{\gamma\,(b - \mu)}{\sqrt{\sigma^2 + \epsilon}} + \beta

The reference is :func:`course_lib.fold.fold_params` (one implementation per formula), which
``tests/test_fold.py`` checks against ``bn(linear(x))`` of ``torch.nn`` modules.

Design choices:

- The function receives only the running statistics, so "folding with batch statistics
  instead of running statistics" cannot happen here; :func:`course_lib.fold.fold` refuses a
  batch norm in training mode, and the chapter shows why.
- Grading has two stages. First square weights (C_out = C_in): there, scaling the columns
  (``W * scale``, which broadcasts over the LAST axis) gives wrong values that the grader can
  name instead of a shape error. Then, if those are right, non-square weights as well.
- A channel with variance ~1e-3 next to ``eps = 1e-2`` makes a missing eps show; gamma of
  both signs, beta != 0, b != 0 and running means far from 0 make every other slip show.

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Case, Feedback, Mistake, hard_coded_eps, register, run_cases

ARG_NAMES = ("W", "b", "gamma", "beta", "running_mean", "running_var", "eps")
OUTPUT_NAMES = ("W_folded", "b_folded")

# (seed, C_out, C_in, eps, index of a channel with variance ~1e-3 or None)
# Cases 1 and 3 share a shape (other data, other eps): a cache keyed by shape shows.
_SQUARE_SPECS = [(0, 4, 4, 1e-5, None), (1, 3, 3, 1e-2, 1), (2, 4, 4, 1e-1, None)]
_OTHER_SPECS = [(3, 3, 5, 1e-5, None), (4, 6, 2, 1e-2, 4)]


def _make_case(seed: int, c_out: int, c_in: int, eps: float, small: int | None) -> Case:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((c_out, c_in))
    b = rng.uniform(-2.0, 2.0, size=c_out)
    gamma = rng.uniform(0.5, 2.0, size=c_out) * rng.choice([-1.0, 1.0], size=c_out)
    beta = rng.uniform(-2.0, 2.0, size=c_out)
    running_mean = rng.uniform(-3.0, 3.0, size=c_out)
    running_var = np.exp(rng.uniform(np.log(0.2), np.log(5.0), size=c_out))
    if small is not None:
        running_var[small] = 1e-3  # comparable to eps = 1e-2: a missing eps shows
    args = (W, b, gamma, beta, running_mean, running_var, eps)
    from ..fold import fold_params  # here, so importing the graders does not import torch

    label = f"W {W.shape}, eps={eps:g}"
    return Case(label, args, tuple(fold_params(*args)))


def _square_cases() -> list[Case]:
    return [_make_case(*spec) for spec in _SQUARE_SPECS]


def _all_cases() -> list[Case]:
    return _square_cases() + [_make_case(*spec) for spec in _OTHER_SPECS]


# ---- classic mistakes, WRONG ON PURPOSE ---------------------------------------------------


def _fold(*, denom: str = "std", W_mode: str = "rows", b_mode: str = "right", fixed_eps=None,
          with_gamma: bool = True):
    """The fold with one thing changed: the denominator, gamma in the scale, how W is scaled,
    b', or eps."""

    def wrong(W, b, gamma, beta, running_mean, running_var, eps):
        eps = eps if fixed_eps is None else fixed_eps
        d = {
            "std": np.sqrt(running_var + eps),
            "no_eps": np.sqrt(running_var),
            "outside": np.sqrt(running_var) + eps,
            "var": running_var + eps,
            "var_no_eps": running_var,
        }[denom]
        s = (gamma if with_gamma else 1.0) / d
        if W_mode == "rows":
            W_f = W * s[:, None]
        elif W_mode == "columns":  # only for a square W: otherwise it does not broadcast
            W_f = W * s[None, :]
        elif W_mode == "transposed":
            W_f = (W * s[:, None]).T
        else:
            W_f = W
        b_f = {
            "right": s * (b - running_mean) + beta,
            "no_mean": s * b + beta,
            "no_beta": s * (b - running_mean),
            "not_scaled": b - running_mean + beta,
            "mean_not_scaled": s * b - running_mean + beta,
        }[b_mode]
        return W_f, b_f

    return wrong


FIX = (
    "scale = gamma / np.sqrt(running_var + eps)  # one factor per output channel; then "
    "W_folded = W * scale[:, None] (row c of W feeds channel c) and "
    "b_folded = scale * (b - running_mean) + beta."
)

MISTAKES = (
    Mistake(
        "missing_eps",
        "Looks like you divided by np.sqrt(running_var) without eps. The batch norm layer "
        "divides by np.sqrt(running_var + eps) at test time, so the folded layer must too, or "
        "its outputs differ wherever a channel's variance is not much larger than eps (here "
        "a channel with variance 1e-3 and eps = 1e-2).",
        _fold(denom="no_eps"),
    ),
    *(
        Mistake(
            "hard_coded_eps",
            hard_coded_eps(e, [spec[3] for spec in _SQUARE_SPECS + _OTHER_SPECS],
                           "np.sqrt(running_var + eps)")
            + " The folded layer must divide by what the batch norm layer divides by.",
            _fold(fixed_eps=e),
        )
        for e in (1e-5, 1e-3)
    ),
    Mistake(
        "eps_outside_sqrt",
        "Looks like you added eps outside the square root: np.sqrt(running_var) + eps. Batch "
        "norm divides by np.sqrt(running_var + eps), so the folded scale is gamma / "
        "np.sqrt(running_var + eps); the two differ wherever a channel's variance is not much "
        "larger than eps (here a channel with variance 1e-3 and eps = 1e-2).",
        _fold(denom="outside"),
    ),
    Mistake(
        "gamma_not_in_scale",
        "Looks like your scale is 1 / np.sqrt(running_var + eps), without gamma. That folds "
        "only the normalization; batch norm then multiplies by its learned gamma, which the "
        "folded layer must include: scale = gamma / np.sqrt(running_var + eps), for W and for "
        "b - running_mean alike.",
        _fold(with_gamma=False),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance running_var + eps instead of the standard "
        "deviation np.sqrt(running_var + eps). Batch norm divides by the standard deviation, "
        "so the folded scale is gamma / np.sqrt(running_var + eps).",
        _fold(denom="var"),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance running_var instead of the standard "
        "deviation np.sqrt(running_var + eps) (and left out eps).",
        _fold(denom="var_no_eps"),
    ),
    Mistake(
        "scaled_columns",
        "Looks like you scaled the columns of W (W * scale broadcasts scale over the LAST "
        "axis, the inputs) instead of its rows. In nn.Linear, W has shape (C_out, C_in) and "
        "row c computes output channel c, which batch norm then scales by its own factor: "
        "W * scale[:, None]. (With a non-square W, W * scale fails with a broadcasting "
        "error.)",
        _fold(W_mode="columns"),
    ),
    Mistake(
        "transposed",
        "Looks like W_folded is transposed: (C_in, C_out) instead of nn.Linear's "
        "(C_out, C_in). (W.T * scale).T is right; W.T * scale alone is not. Keep W's layout "
        "and scale its rows: W * scale[:, None].",
        _fold(W_mode="transposed"),
    ),
    Mistake(
        "weight_not_scaled",
        "Looks like b_folded is right but W_folded = W, unscaled. Batch norm multiplies the "
        "whole output W x + b by gamma / np.sqrt(running_var + eps), so both W and b carry "
        "the factor.",
        _fold(W_mode="none"),
    ),
    Mistake(
        "bias_not_scaled",
        "Looks like b_folded = b - running_mean + beta, without the factor "
        "gamma / np.sqrt(running_var + eps). Batch norm scales (W x + b - mu) as a whole, so "
        "b - mu is scaled like W x: b_folded = scale * (b - running_mean) + beta.",
        _fold(b_mode="not_scaled"),
    ),
    Mistake(
        "mean_not_scaled",
        "Looks like you scaled b but subtracted running_mean after scaling: "
        "scale * b - running_mean + beta. Batch norm subtracts mu BEFORE it divides, so mu "
        "is scaled too: scale * (b - running_mean) + beta.",
        _fold(b_mode="mean_not_scaled"),
    ),
    Mistake(
        "forgot_mean",
        "Looks like b_folded = scale * b + beta, without subtracting running_mean. Batch "
        "norm first centers the layer's output, z - mu, then scales and shifts it; the mu "
        "ends up in the bias: b_folded = scale * (b - running_mean) + beta.",
        _fold(b_mode="no_mean"),
    ),
    Mistake(
        "forgot_beta",
        "Looks like b_folded = scale * (b - running_mean), without + beta. After "
        "normalizing, batch norm shifts by its learned beta, which the folded bias must "
        "include.",
        _fold(b_mode="no_beta"),
    ),
)

#: The mistakes that can be computed for any W (for the second stage, non-square weights).
ANY_SHAPE_MISTAKES = tuple(m for m in MISTAKES if m.id not in ("scaled_columns", "transposed"))

HINT = (
    "Check one output channel c by hand: the folded layer must give the same as batch norm "
    "applied to the layer, gamma[c] * (W[c] @ x + b[c] - running_mean[c]) / "
    "np.sqrt(running_var[c] + eps) + beta[c], for any x."
)


@register(
    "fold_bn",
    "fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded, b_folded): fold an "
    "eval-mode batch norm into the Linear layer before it, W of shape (C_out, C_in) "
    "(chapter 6)",
)
def grade_fold_bn(submission: Any) -> Feedback:
    """Grade ``fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded, b_folded)``.

    First square weights (so scaling the wrong axis is named, not a broadcasting error), then
    all cases, including non-square weights.
    """
    kwargs = dict(
        arg_names=ARG_NAMES,
        output_names=OUTPUT_NAMES,
        fix=FIX,
        hint=HINT,
    )
    square = run_cases(submission, cases=_square_cases(), mistakes=MISTAKES, **kwargs)
    if not square.passed:
        return square
    # Wrong-axis mistakes have no output (or the wrong shape) for a non-square W.
    return run_cases(submission, cases=_all_cases(), mistakes=ANY_SHAPE_MISTAKES, **kwargs)
