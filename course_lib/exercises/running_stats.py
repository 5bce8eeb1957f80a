"""Chapter 6 exercise: the running-statistics update of ``torch.nn.BatchNorm1d``.

- ``ema_update``: ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` for a
  batch ``x`` of shape ``(N, D)``, in PyTorch's convention: ``momentum`` is the weight of the
  NEW batch, and the running variance averages the *unbiased* batch variance.

The reference is :func:`course_lib.running_stats.update_running_stats` (one implementation of
the update), which reproduces ``torch.nn.BatchNorm1d``'s buffers exactly
(``tests/test_exercises_test_time.py`` checks that on the grader's runs). Grading has two stages:

1. Single steps, called directly, each taken from a long run of updates (so the
   running values are realistic, not just the initial zeros and ones). Every classic mistake
   shows here and is named.
2. Only if every single step is right: whole runs of 50 to 200 steps, each step fed with the
   learner's own previous output, compared with the reference at the end. A function
   that keeps state between calls (a global counter, a list of past batches) fails here.

The cases use few examples per batch (N = 5 makes the unbiased and biased variances differ by
25%), N != D (a wrong axis changes the shape), features with different means and scales
drifting over the run, and momenta 0.1, 0.3 and 0.05 (never 0.5, where the flipped
convention would be right by accident; not only 0.1, so a hard-coded momentum shows).

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..running_stats import update_running_stats
from ._core import Case, Feedback, Mistake, register, run_cases

ARG_NAMES = ("running_mean", "running_var", "x", "momentum")
OUTPUT_NAMES = ("new_mean", "new_var")
CHAIN_ARG_NAMES = ("running_mean", "running_var", "batches", "momentum")

# (seed, N, D, momentum, steps in the run, steps graded alone)
_RUNS = [
    (0, 16, 4, 0.1, 200, (1, 30)),
    (1, 5, 3, 0.3, 50, (10,)),
    (2, 40, 6, 0.05, 100, (60,)),
]


def _batches(seed: int, n: int, d: int, steps: int) -> np.ndarray:
    """(steps, N, D): features with their own mean and scale, drifting over the run."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-3.0, 3.0, size=d)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(3.0), size=d))
    drift = np.linspace(0.0, 1.0, steps)[:, None] * rng.uniform(-2.0, 2.0, size=d)
    return mean + drift[:, None, :] + scale * rng.standard_normal((steps, n, d))


@functools.lru_cache(maxsize=None)
def _reference_runs() -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """For each run: (batches, running_means, running_vars), the running statistics before
    step 1 (BatchNorm1d's start: zeros and ones) and after every step (``steps + 1`` rows).

    Cached: computed once per process; the arrays are never handed to a learner (the runner
    passes copies) and never modified.
    """
    runs = []
    for seed, n, d, momentum, steps, _ in _RUNS:
        xs = _batches(seed, n, d, steps)
        means, variances, t = [np.zeros(d)], [np.ones(d)], 0
        for x in xs:
            rm, rv, t = update_running_stats(means[-1], variances[-1], x, momentum, t)
            means.append(rm)
            variances.append(rv)
        runs.append((xs, np.stack(means), np.stack(variances)))
    return tuple(runs)


def _step_cases() -> list[Case]:
    cases = []
    for (seed, n, d, momentum, _, graded), (xs, means, variances) in zip(_RUNS, _reference_runs()):
        for t in graded:
            label = f"step {t} of a BatchNorm1d run: x {xs[t - 1].shape}, momentum={momentum}"
            args = (means[t - 1], variances[t - 1], xs[t - 1], momentum)
            cases.append(Case(label, args, (means[t], variances[t])))
    return cases


def _chain_cases() -> list[Case]:
    cases = []
    for (seed, n, d, momentum, steps, _), (xs, means, variances) in zip(_RUNS, _reference_runs()):
        label = (
            f"{steps} chained steps, batches x {xs.shape[1:]}, momentum={momentum}, from "
            f"BatchNorm1d's start (running_mean = 0, running_var = 1)"
        )
        cases.append(Case(label, (means[0], variances[0], xs, momentum), (means[-1], variances[-1])))
    return cases


def _chained(fn: Callable) -> Callable:
    """``fn`` applied step after step, each step fed with its own previous output."""

    def run(running_mean, running_var, batches, momentum):
        for x in batches:
            running_mean, running_var = fn(running_mean, running_var, x, momentum)
        return running_mean, running_var

    return run


# ---- classic mistakes, WRONG ON PURPOSE ---------------------------------------------------


def _ema(*, weight_new: Any = "momentum", ddof: int = 1, stat: str = "var", axis: Any = 0):
    """The update with one thing changed: the weight (its convention or a fixed number), the
    variance, the axis."""

    def wrong(running_mean, running_var, x, momentum):
        w = {"momentum": momentum, "flipped": 1.0 - momentum}.get(weight_new, weight_new)
        mean = x.mean(axis=axis)
        batch = x.var(axis=axis, ddof=ddof) if stat == "var" else x.std(axis=axis, ddof=ddof)
        return (1 - w) * running_mean + w * mean, (1 - w) * running_var + w * batch

    return wrong


def _wrong_returns_batch_stats(ddof: int) -> Callable:
    def wrong(running_mean, running_var, x, momentum):
        return x.mean(axis=0), x.var(axis=0, ddof=ddof)

    return wrong


def _wrong_no_update(running_mean, running_var, x, momentum):
    return running_mean.copy(), running_var.copy()


FIX = (
    "mu = x.mean(axis=0); var = x.var(axis=0, ddof=1)  # unbiased, N - 1; then "
    "new_mean = (1 - momentum) * running_mean + momentum * mu and "
    "new_var = (1 - momentum) * running_var + momentum * var."
)

_FLIPPED = (
    "Looks like you weighted the OLD value by momentum: momentum * running + (1 - momentum) "
    "* batch. That is Keras's convention (momentum=0.99) and the lecture's beta (0.9). In "
    "PyTorch, momentum is the weight of the NEW batch: with the default 0.1 the update is "
    "0.9 * running + 0.1 * batch, the same average as the lecture's beta = 0.9. Same word, "
    "opposite meaning: always check a framework's formula."
)

MISTAKES = (
    Mistake("momentum_flipped", _FLIPPED, _ema(weight_new="flipped")),
    Mistake(
        "momentum_flipped",
        _FLIPPED + " (Your running variance also uses the biased batch variance; PyTorch "
        "stores the unbiased one, ddof=1.)",
        _ema(weight_new="flipped", ddof=0),
    ),
    Mistake(
        "biased_running_var",
        "Looks like the running variance averages the biased batch variance "
        "x.var(axis=0) (divide by N). PyTorch normalizes each batch with the biased variance, "
        "but the running_var it keeps for test time averages the UNBIASED one, "
        "x.var(axis=0, ddof=1) (divide by N - 1), a better estimate of the population's "
        "variance from a small batch. Yes, this is the opposite of the forward pass in "
        "chapter 2; with N = 5 the two differ by 25%.",
        _ema(ddof=0),
    ),
    Mistake(
        "returns_batch_stats",
        "Looks like you returned the batch's own mean and variance, forgetting the running "
        "average. The point of running statistics is to remember earlier batches: blend the "
        "old value and the batch's value with the weights (1 - momentum) and momentum.",
        _wrong_returns_batch_stats(ddof=1),
    ),
    Mistake(
        "returns_batch_stats",
        "Looks like you returned the batch's own mean and (biased) variance, forgetting the "
        "running average. Blend the old value and the batch's value with the weights "
        "(1 - momentum) and momentum, and average the unbiased variance (ddof=1).",
        _wrong_returns_batch_stats(ddof=0),
    ),
    Mistake(
        "no_update",
        "Looks like you returned running_mean and running_var unchanged. The batch x must "
        "move them: new = (1 - momentum) * running + momentum * batch statistic. (In a "
        "module this is the 'forgot to update the buffers' bug: eval mode then normalizes "
        "with the initial 0 and 1.)",
        _wrong_no_update,
    ),
    Mistake(
        "equal_weights",
        "Looks like you averaged the old value and the batch's value with equal weights, "
        "(running + batch) / 2, ignoring momentum. That is momentum = 0.5: batch t - k keeps "
        "weight 1/2^(k+1), so the running value mostly reflects the last few batches. It is "
        "not the mean of the whole history either (that is PyTorch's momentum=None, which "
        "needs the number of batches). Use the momentum argument.",
        _ema(weight_new=0.5),
    ),
    *(
        Mistake(
            "hard_coded_momentum",
            "Looks like you used a fixed weight (PyTorch's default momentum 0.1, which is "
            "the lecture's beta = 0.9 on the old value, or Keras's 0.99 turned into 0.01) "
            "instead of the momentum argument. A BatchNorm1d can have any momentum; the runs "
            "use 0.1, 0.3 and 0.05: blend with (1 - momentum) and momentum, the argument.",
            _ema(weight_new=w),
        )
        for w in (0.1, 0.01)
    ),
    Mistake(
        "beta_as_momentum",
        "Looks like you used 0.9 as PyTorch's momentum: new = 0.1 * running + 0.9 * batch. "
        "0.9 is the lecture's beta, the weight of the OLD value (v = beta * v + (1 - beta) * "
        "theta). PyTorch's momentum is the weight of the NEW batch, so beta = 0.9 is "
        "momentum = 0.1; and the grader passes momentum as an argument (0.1, 0.3, 0.05): "
        "new = (1 - momentum) * running + momentum * batch.",
        _ema(weight_new=0.9),
    ),
    Mistake(
        "std_instead_of_var",
        "Looks like your running_var averages the batch's standard deviation instead of its "
        "variance. The buffer holds a variance, sigma^2: average x.var(axis=0, ddof=1); the "
        "square root is taken later, in the normalization sqrt(running_var + eps).",
        _ema(stat="std"),
    ),
    Mistake(
        "std_instead_of_var",
        "Looks like your running_var averages the batch's (biased) standard deviation "
        "instead of its variance. The buffer holds a variance: average x.var(axis=0, ddof=1).",
        _ema(stat="std", ddof=0),
    ),
    Mistake(
        "missing_axis",
        "Looks like you computed one mean and one variance over all entries of x "
        "(x.mean() without axis=...). Each feature has its own running statistics: reduce "
        "over the batch only, x.mean(axis=0), so the batch statistics have shape (D,).",
        _ema(axis=None),
    ),
)

HINT = (
    "Check one step by hand on a small x: with running_mean = 0 and momentum = 0.1 the new "
    "mean is 0.1 * x.mean(axis=0); with running_var = 1 the new variance is "
    "0.9 + 0.1 * x.var(axis=0, ddof=1)."
)

STATEFUL = (
    "Every single step is right, but chaining the steps (each fed with your previous output) "
    "drifts away from torch.nn.BatchNorm1d's buffers. Does your function keep state between "
    "calls: a global counter, a list of past batches, a mutable default argument? The update "
    "must depend only on its four arguments; the running values themselves carry the memory."
)


def _diagnose_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    n, d = case.args[2].shape
    if got in ((n,), (n, 1)):
        return (
            "wrong_axis",
            f"{name} has shape {got}: one value per example, so the batch statistics were "
            f"taken over the features (axis=1). Running statistics are per feature, shape "
            f"({d},): reduce over the batch, x.mean(axis=0).",
        )
    if got == (1, d):
        return (
            "wrong_shape",
            f"{name} has shape {got}, expected ({d},), the shape of running_mean: drop "
            f"keepdims=True or reshape with .reshape(-1).",
        )
    return None


@register(
    "update_running",
    "fn(running_mean, running_var, x, momentum) -> (new_mean, new_var): one update of "
    "torch.nn.BatchNorm1d's running statistics from a batch x of shape (N, D) (chapter 6)",
)
def grade_ema_update(submission: Any) -> Feedback:
    """Grade ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)``.

    First single steps (classic mistakes named), then, if they are all right, whole runs of
    chained steps against the reference (equal to ``torch.nn.BatchNorm1d``'s buffers).
    """
    single = run_cases(
        submission,
        cases=_step_cases(),
        arg_names=ARG_NAMES,
        output_names=OUTPUT_NAMES,
        mistakes=MISTAKES,
        fix=FIX,
        hint=HINT,
        diagnose_shape=_diagnose_shape,
    )
    if not single.passed:
        return single
    chained = run_cases(
        _chained(submission),
        cases=_chain_cases(),
        arg_names=CHAIN_ARG_NAMES,
        output_names=OUTPUT_NAMES,
        success=f"{len(_step_cases())} single steps and all {{n}} runs of chained steps match "
        f"torch.nn.BatchNorm1d's buffers; largest difference {{diff}}{{where}}.",
    )
    if chained.mistake == "wrong_values":
        return Feedback(False, STATEFUL + "\n\n" + chained.message, "stateful")
    return chained
