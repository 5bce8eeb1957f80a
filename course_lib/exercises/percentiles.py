"""Chapter 4 exercise: the 15th, 50th and 85th percentiles of recorded activations.

- ``percentiles``: ``fn(activations) -> out``: ``activations`` of shape ``(steps, n)`` holds
  one unit's input for ``n`` probe examples at each of ``steps`` evaluations; ``out`` of shape
  ``(steps, 3)`` holds, per row, the 15th, 50th and 85th percentiles in that order (what
  Ioffe & Szegedy plot in their Fig. 1 b-c).

The reference is :func:`course_lib.experiments.probes.percentiles.activation_percentiles` (numpy's default linear
interpolation between neighboring values).

The cases have ``steps != n`` (a wrong axis changes the shape), a square case (a wrong axis
with a transpose keeps the shape but not the values), skewed rows whose location and spread
change with the step (so a whole-array percentile, the mean in place of the median, or a
swapped order all show), and ``n`` such that no percentile falls exactly on a data point (so
skipping the interpolation shows).

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..measures import PERCENTILES, activation_percentiles
from ._core import Case, Feedback, Mistake, register, run_cases

ARG_NAMES = ("activations",)
OUTPUT_NAMES = ("out",)

# (seed, steps, n). n - 1 is odd and not a multiple of 20: 15, 50 and 85% of the way
# through the sorted values always fall between two of them.
# Cases 1 and 4 share a shape (other data): a cache keyed by shape shows.
_CASE_SPECS = [(0, 12, 50), (1, 7, 36), (2, 10, 10), (3, 12, 50)]


def _activations(seed: int, steps: int, n: int) -> np.ndarray:
    """A unit's input drifting over training: location and spread change with the step."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    location = 1.5 * np.sin(3.0 * t + seed) - 2.0 * t
    spread = 0.3 + 1.5 * t
    # Skewed (a centered exponential), so the mean and the median differ.
    skewed = rng.exponential(1.0, size=(steps, n)) - np.log(2.0)
    return location + spread * skewed


def _cases() -> list[Case]:
    cases = []
    for seed, steps, n in _CASE_SPECS:
        a = _activations(seed, steps, n)
        label = f"activations {a.shape} (steps, n)"
        cases.append(Case(label, (a,), (activation_percentiles(a, PERCENTILES),)))
    return cases


# ---- classic mistakes: WRONG ON PURPOSE -------------------------------------------------

_Q = np.array(PERCENTILES)


def _wrong_axis(a):
    # Percentiles over the steps, for each example. Only a square array gives the expected
    # shape; otherwise the shape check names the mistake, and NaN here matches nothing.
    if a.shape[0] != a.shape[1]:
        return (np.full((a.shape[0], len(_Q)), np.nan),)
    return (np.percentile(a, _Q, axis=0).T,)


def _wrong_fractions(a):
    return (np.percentile(a, _Q / 100.0, axis=1).T,)


def _wrong_order(order):
    def wrong(a):
        return (np.percentile(a, _Q[list(order)], axis=1).T,)

    return wrong


def _wrong_whole_array(a):
    return (np.tile(np.percentile(a, _Q), (a.shape[0], 1)),)


def _wrong_mean_for_median(a):
    out = np.percentile(a, _Q, axis=1).T
    out[:, 1] = a.mean(axis=1)
    return (out,)


def _wrong_method(method):
    def wrong(a):
        return (np.percentile(a, _Q, axis=1, method=method).T,)

    return wrong


def _wrong_sorted_index(a):
    # Sort each row and take the value at int(q / 100 * n): no interpolation.
    s = np.sort(a, axis=1)
    idx = np.minimum((_Q / 100.0 * a.shape[1]).astype(int), a.shape[1] - 1)
    return (s[:, idx],)


FIX = (
    "np.percentile(activations, [15, 50, 85], axis=1).T: the percentiles of each row "
    "(axis=1, over the n examples), given in percent (15, not 0.15), stacked as columns in "
    "the order 15th, 50th, 85th. Or np.quantile(activations, [0.15, 0.5, 0.85], axis=1).T."
)

_WHOLE_ARRAY = (
    "Looks like you took the percentiles of the whole array at once (no axis=...), so every "
    "step gets the same three numbers. The point of the plot is how the distribution "
    "CHANGES over training: compute the percentiles of each row separately with axis=1."
)

_WRONG_AXIS = (
    "Looks like you computed the percentiles over the steps (axis=0), for each example, "
    "instead of over the examples (axis=1), for each step. Each row of activations is one "
    "moment in training; its percentiles describe the distribution at that moment."
)

_NO_INTERPOLATION = (
    "Looks like you picked one of the sorted values instead of interpolating between the "
    "two neighbors. The 15th percentile of n values sits at position (n - 1) * 0.15 in the "
    "sorted row, usually between two values; np.percentile's default (method='linear') "
    "interpolates linearly there, as torch.quantile does. Use the default method."
)

MISTAKES = (
    Mistake("whole_array", _WHOLE_ARRAY, _wrong_whole_array),
    Mistake("wrong_axis", _WRONG_AXIS, _wrong_axis),
    Mistake(
        "percent_vs_fraction",
        "Looks like you passed fractions (0.15, 0.5, 0.85) to np.percentile, which expects "
        "percent (15, 50, 85): you got the 0.15th, 0.5th and 0.85th percentiles, all next to "
        "the minimum. np.percentile takes 0-100; np.quantile and torch.quantile take 0-1. "
        "Use np.percentile(activations, [15, 50, 85], axis=1) or np.quantile(activations, "
        "[0.15, 0.5, 0.85], axis=1).",
        _wrong_fractions,
    ),
    *(
        Mistake(
            "wrong_order",
            "Looks like the three columns are in the wrong order. The grader expects the "
            "15th, 50th and 85th percentiles, in that order, as columns 0, 1 and 2 "
            "(the plot draws the median between the other two).",
            _wrong_order(order),
        )
        for order in [(2, 1, 0), (1, 0, 2), (0, 2, 1), (1, 2, 0), (2, 0, 1)]
    ),
    Mistake(
        "mean_for_median",
        "Looks like the middle column is the mean of each row, not its median. The 50th "
        "percentile is the median: the value with half of the examples below it. The two "
        "differ for a skewed distribution such as a sigmoid's input late in training.",
        _wrong_mean_for_median,
    ),
    *(
        Mistake("no_interpolation", _NO_INTERPOLATION, fn)
        for fn in (
            _wrong_sorted_index,
            _wrong_method("lower"),
            _wrong_method("higher"),
            _wrong_method("nearest"),
        )
    ),
)

HINT = (
    "Check one row by hand: out[t, 1] should be np.median(activations[t]), and about 15% of "
    "the row should lie below out[t, 0] and 15% above out[t, 2]."
)

_QUANTILE_PERCENT = (
    "Looks like you passed percent (15, 50, 85) to a function that takes fractions: "
    "np.quantile and torch.quantile expect q between 0 and 1, which is why it raised. Use "
    "np.quantile(activations, [0.15, 0.5, 0.85], axis=1), or np.percentile with [15, 50, 85]."
)


def _diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    steps, n = case.args[0].shape
    k = len(PERCENTILES)
    if got == (k,):
        return "whole_array", f"out has shape {got}, expected ({steps}, {k}). " + _WHOLE_ARRAY
    if got in ((k, n), (n, k)) and n != steps:
        return (
            "wrong_axis",
            f"out has shape {got}, expected ({steps}, {k}): one row per step. " + _WRONG_AXIS,
        )
    if got == (k, steps):
        return (
            "transposed",
            f"out has shape {got}, expected ({steps}, {k}): the three percentiles are rows "
            f"instead of columns. np.percentile(a, q, axis=1) puts the q axis first; "
            f"transpose it with .T to get one row per step.",
        )
    return None


@register(
    "percentiles_per_step",
    "fn(activations) -> out: the 15th, 50th and 85th percentiles of each row of an (steps, n) "
    "array, as an (steps, 3) array (chapter 4)",
)
def grade_percentiles(submission: Any) -> Feedback:
    """Grade ``fn(activations) -> out`` against :func:`course_lib.experiments.probes.percentiles.activation_percentiles`."""
    feedback = run_cases(
        submission,
        cases=_cases(),
        arg_names=ARG_NAMES,
        output_names=OUTPUT_NAMES,
        mistakes=MISTAKES,
        fix=FIX,
        hint=HINT,
        diagnose_shape=_diagnose_shape,
    )
    # np.quantile / torch.quantile refuse q outside [0, 1]: the submission raised, and the
    # error message names the confusion between percent and fractions.
    if feedback.mistake == "exception" and re.search(
        r"range \[0, ?1\]|in \[0, ?1\]", feedback.message
    ):
        return Feedback(
            False, _QUANTILE_PERCENT + "\n\n" + feedback.message, "percent_vs_fraction"
        )
    return feedback
