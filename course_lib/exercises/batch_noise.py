"""Chapter 5 exercise: one example's batch norm output, given its batch-mates.

- ``normalize_in_batch``: ``fn(z, mates, eps) -> z_norm``: ``z`` of shape ``(D,)`` is one
  example's pre-activations, ``mates`` of shape ``(m - 1, D)`` the other examples of its
  mini-batch; ``z_norm`` of shape ``(D,)`` is what training-mode batch norm (``gamma = 1``,
  ``beta = 0``) outputs for ``z`` in that mini-batch:
  ``(z - mu) / sqrt(var + eps)`` with the mean and the biased variance of all ``m`` examples,
  ``z`` included.

The reference is :func:`course_lib.batchnorm.batchnorm_forward` on the stacked batch (row 0).

The cases have small batches (where leaving the example out of its own statistics changes
them a lot), ``m - 1 != D`` and ``m != D`` (a wrong axis or returning the whole batch shows
in the shape), a feature with variance ~1e-3 next to ``eps = 1e-2`` (eps shows), eps other
than 1e-5 (a hard-coded eps shows) and two cases of the same shape (a cache shows).

The functions built by ``_wrong`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import numpy as np

from ..batchnorm import batchnorm_forward
from ._core import Case, Mistake, hard_coded_eps, register_cases

ARG_NAMES = ("z", "mates", "eps")

# (seed, m, D, eps, index of a feature with variance ~1e-3 or None)
_CASE_SPECS = [
    (0, 8, 5, 1e-5, None),
    (1, 4, 6, 1e-2, 2),
    (2, 16, 3, 1e-1, None),
    (3, 8, 5, 1e-3, 0),  # case 1's shapes, other data and eps
]


def _cases() -> list[Case]:
    cases = []
    for seed, m, d, eps, small in _CASE_SPECS:
        rng = np.random.default_rng(seed)
        scale = np.exp(rng.uniform(np.log(0.5), np.log(3.0), size=d))
        if small is not None:
            scale[small] = 0.03
        batch = rng.uniform(-2.0, 2.0, size=d) + scale * rng.standard_normal((m, d))
        out, _ = batchnorm_forward(batch, np.ones(d), np.zeros(d), eps)
        label = f"z ({d},), mates {batch[1:].shape}: a batch of m = {m}, eps={eps:g}"
        cases.append(Case(label, (batch[0], batch[1:], eps), (out[0],)))
    return cases


# ---- classic mistakes, WRONG ON PURPOSE -------------------------------------------------


def _wrong(*, stats: str = "batch", ddof: int = 0, eps_mode: str = "inside",
           fixed_eps: float | None = None):
    """z_norm with one thing changed: whose statistics, the variance, or eps."""

    def wrong(z, mates, eps):
        eps = eps if fixed_eps is None else fixed_eps
        pool = {
            "batch": lambda: np.vstack([z, mates]),
            "mates": lambda: mates,
            "all_entries": lambda: np.vstack([z, mates]).reshape(-1, 1),
            "own_features": lambda: z.reshape(-1, 1),  # z's D values as one column
        }[stats]()
        mu, var = pool.mean(axis=0), pool.var(axis=0, ddof=ddof)
        denom = {"inside": np.sqrt(var + eps), "none": np.sqrt(var),
                 "outside": np.sqrt(var) + eps, "variance": var + eps}[eps_mode]
        return ((z - mu) / denom,)

    return wrong


_CASE_EPS = [spec[3] for spec in _CASE_SPECS]

FIX = (
    "batch = np.vstack([z, mates])  # the example belongs to its own mini-batch; then "
    "mu = batch.mean(axis=0), var = batch.var(axis=0) (biased, divide by m) and "
    "z_norm = (z - mu) / np.sqrt(var + eps)."
)

MISTAKES = (
    Mistake(
        "excludes_itself",
        "Looks like you computed mu and var from the batch-mates only. The example is part "
        "of its own mini-batch: mu and sigma^2 average over all m examples, z included "
        "(np.vstack([z, mates])). Leaving it out changes both, most in small batches; with "
        "m = 2 it would leave a single batch-mate and a variance of 0.",
        _wrong(stats="mates"),
    ),
    Mistake(
        "excludes_itself",
        "Looks like you computed mu and var from the batch-mates only (and with N - 1). The "
        "example is part of its own mini-batch: average over all m examples, z included, "
        "and use the biased variance (divide by m).",
        _wrong(stats="mates", ddof=1),
    ),
    Mistake(
        "unbiased_variance",
        "Looks like you used the unbiased variance (dividing by m - 1, ddof=1). Batch norm "
        "normalizes with the biased mini-batch variance, numpy's default x.var(axis=0) "
        "(torch.var and pandas default to m - 1). In a batch of 4 that is 15% off.",
        _wrong(ddof=1),
    ),
    Mistake(
        "missing_eps",
        "Looks like you divided by np.sqrt(var) without eps. Use the eps argument: "
        "np.sqrt(var + eps) (here a feature with variance ~1e-3 and eps = 1e-2 shows it).",
        _wrong(eps_mode="none"),
    ),
    *(Mistake("hard_coded_eps", hard_coded_eps(e, _CASE_EPS), _wrong(fixed_eps=e))
      for e in (1e-5, 1e-3, 1e-8)),
    Mistake(
        "eps_outside_sqrt",
        "Looks like you added eps outside the square root: np.sqrt(var) + eps. The formula "
        "is np.sqrt(var + eps).",
        _wrong(eps_mode="outside"),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance var + eps instead of the standard deviation "
        "np.sqrt(var + eps).",
        _wrong(eps_mode="variance"),
    ),
    Mistake(
        "wrong_axis",
        "Looks like you normalized z with the mean and variance of its own D features, "
        "without its batch-mates. That is layer norm, which does not depend on the batch "
        "at all. Batch norm takes each feature's statistics over the m examples of the "
        "batch: np.vstack([z, mates]).mean(axis=0), one value per feature.",
        _wrong(stats="own_features"),
    ),
    Mistake(
        "missing_axis",
        "Looks like you took one mean and one variance over all entries of the batch (no "
        "axis=...). Each feature has its own statistics over the batch: pass axis=0.",
        _wrong(stats="all_entries"),
    ),
)

HINT = (
    "Check by hand with m = 2: the batch is z and one batch-mate, mu is their average, and "
    "z_norm is close to +1 or -1 in every feature (the sign of z - mate)."
)


def _diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    m = case.args[1].shape[0] + 1
    d = case.args[0].shape[0]
    if got == (m, d):
        return (
            "whole_batch",
            f"z_norm has shape {got}: the output for the whole batch of {m}. Return only the "
            f"row of the example z, shape ({d},) (row 0 if you stacked z first).",
        )
    return None


grade_normalize_in_batch = register_cases(
    "normalize_in_batch",
    "fn(z, mates, eps) -> z_norm: batch norm's z_norm of one example z (D,) in the "
    "mini-batch made of it and its batch-mates mates (m - 1, D) (chapter 5)",
    _cases,
    arg_names=ARG_NAMES,
    output_names=("z_norm",),
    mistakes=MISTAKES,
    fix=FIX,
    hint=HINT,
    diagnose_shape=_diagnose_shape,
)
