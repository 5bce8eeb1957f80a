"""Tests for the chapter 6 graders (course_lib.exercises.running_stats and .fold): correct
answers written many ways pass, each classic mistake is named, broken submissions become
feedback, and the references are torch.nn's own numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.exercises import EXERCISES, Feedback, grade
from course_lib.exercises import fold as fold_ex
from course_lib.exercises import running_stats as ema_ex
from course_lib.fold import fold
from course_lib.running_stats import update_running_stats


def test_registered():
    assert EXERCISES["update_running"].startswith(
        "fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)")
    assert EXERCISES["fold_bn"].startswith(
        "fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W_folded, b_folded)")


# ---------------------------------------------------------------------------------------
# The references are torch.nn's numbers
# ---------------------------------------------------------------------------------------


def test_ema_reference_is_batchnorm1d():
    """The grader's reference (course_lib.running_stats) equals torch.nn.BatchNorm1d's buffers."""
    for (seed, n, d, momentum, steps, _), (xs, means, variances) in zip(
        ema_ex._RUNS, ema_ex._reference_runs()
    ):
        assert xs.shape == (steps, n, d) and n != d
        bn = nn.BatchNorm1d(d, momentum=momentum, dtype=torch.float64)
        with torch.no_grad():
            for t, x in enumerate(xs, start=1):
                bn(torch.from_numpy(x))
                np.testing.assert_allclose(bn.running_mean.numpy(), means[t], rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(bn.running_var.numpy(), variances[t], rtol=1e-12,
                                           atol=1e-12)
    assert {r[3] for r in ema_ex._RUNS}.isdisjoint({0.5})  # flipped would be right at 0.5
    assert len({r[3] for r in ema_ex._RUNS}) > 1  # a hard-coded momentum shows


def test_fold_reference_reproduces_the_modules():
    for case in fold_ex._all_cases():
        W, b, gamma, beta, mu, var, eps = case.args
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
        bn = nn.BatchNorm1d(W.shape[0], eps=eps).double().eval()
        with torch.no_grad():
            for p, v in ((lin.weight, W), (lin.bias, b), (bn.weight, gamma), (bn.bias, beta),
                         (bn.running_mean, mu), (bn.running_var, var)):
                p.copy_(torch.from_numpy(v))
        folded = fold(lin, bn)
        np.testing.assert_allclose(folded.weight.detach().numpy(), case.expected[0], rtol=1e-14)
        np.testing.assert_allclose(folded.bias.detach().numpy(), case.expected[1], rtol=1e-14)
        x = torch.randn(7, W.shape[1], dtype=torch.float64)
        x_np = x.numpy()
        with torch.no_grad():
            np.testing.assert_allclose(x_np @ case.expected[0].T + case.expected[1],
                                       bn(lin(x)).numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Correct solutions, each written differently
# ---------------------------------------------------------------------------------------


def ema_numpy(running_mean, running_var, x, momentum):
    mu, var = x.mean(axis=0), x.var(axis=0, ddof=1)
    return (1 - momentum) * running_mean + momentum * mu, (1 - momentum) * running_var + momentum * var


def ema_loops(running_mean, running_var, x, momentum):
    n, d = x.shape
    new_mean, new_var = np.empty(d), np.empty(d)
    for j in range(d):
        mu = sum(x[:, j]) / n
        var = sum((v - mu) ** 2 for v in x[:, j]) / (n - 1)
        new_mean[j] = running_mean[j] + momentum * (mu - running_mean[j])
        new_var[j] = running_var[j] + momentum * (var - running_var[j])
    return new_mean, new_var


def ema_torch_var(running_mean, running_var, x, momentum):
    """torch.var's default is the unbiased variance: right here (wrong in chapter 2)."""
    t = torch.from_numpy(x)
    rm, rv = torch.from_numpy(running_mean), torch.from_numpy(running_var)
    return (torch.lerp(rm, t.mean(dim=0), momentum).numpy(),
            torch.lerp(rv, t.var(dim=0), momentum).numpy())


def ema_module(running_mean, running_var, x, momentum):
    """Let torch.nn.BatchNorm1d do it: load the buffers, one training forward pass."""
    bn = nn.BatchNorm1d(x.shape[1], momentum=momentum, dtype=torch.float64)
    bn.running_mean.copy_(torch.from_numpy(running_mean))
    bn.running_var.copy_(torch.from_numpy(running_var))
    bn(torch.from_numpy(x))
    return bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()


def ema_float32(running_mean, running_var, x, momentum):
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    t, rm, rv = f(x), f(running_mean), f(running_var)
    return ((1 - momentum) * rm + momentum * t.mean(0)).numpy(), (
        (1 - momentum) * rv + momentum * t.var(0)).numpy()


def fold_numpy(W, b, gamma, beta, running_mean, running_var, eps):
    scale = gamma / np.sqrt(running_var + eps)
    return W * scale[:, None], scale * (b - running_mean) + beta


def fold_loops(W, b, gamma, beta, running_mean, running_var, eps):
    W_f, b_f = np.empty_like(W), np.empty_like(b)
    for c in range(W.shape[0]):
        s = gamma[c] / math.sqrt(running_var[c] + eps)
        W_f[c] = [s * w for w in W[c]]
        b_f[c] = s * b[c] - s * running_mean[c] + beta[c]
    return W_f, b_f


def fold_diag(W, b, gamma, beta, running_mean, running_var, eps):
    D = np.diag(gamma / np.sqrt(running_var + eps))
    return D @ W, D @ (b - running_mean) + beta


def fold_transpose_twice(W, b, gamma, beta, running_mean, running_var, eps):
    scale = gamma / np.sqrt(running_var + eps)
    return (W.T * scale).T, (b - running_mean) * scale + beta


def fold_modules(W, b, gamma, beta, running_mean, running_var, eps):
    """Through torch.nn modules and the library's fold()."""
    lin = nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
    bn = nn.BatchNorm1d(W.shape[0], eps=eps, dtype=torch.float64).eval()
    with torch.no_grad():
        for p, v in ((lin.weight, W), (lin.bias, b), (bn.weight, gamma), (bn.bias, beta),
                     (bn.running_mean, running_mean), (bn.running_var, running_var)):
            p.copy_(torch.from_numpy(v))
    f = fold(lin, bn)
    return f.weight.detach().numpy(), f.bias.detach().numpy()


def fold_float32(W, b, gamma, beta, running_mean, running_var, eps):
    args = [torch.tensor(a, dtype=torch.float32) for a in (W, b, gamma, beta, running_mean,
                                                           running_var)]
    W_, b_, g, be, mu, var = args
    s = g * torch.rsqrt(var + eps)
    return (W_ * s[:, None]).numpy(), (s * (b_ - mu) + be).numpy()


CORRECT = {
    "update_running": [ema_numpy, ema_loops, ema_torch_var, ema_module, ema_float32],
    "fold_bn": [fold_numpy, fold_loops, fold_diag, fold_transpose_twice, fold_modules,
                fold_float32],
}


@pytest.mark.parametrize(
    "exercise_id, fn",
    [(ex, fn) for ex, fns in CORRECT.items() for fn in fns],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_correct_solutions_pass(exercise_id, fn):
    fb = grade(exercise_id, fn)
    assert fb.passed, fb.message
    assert fb.mistake is None and fb.message.startswith("✓ Correct:")
    assert "largest difference" in fb.message
    if "float32" in fn.__name__:
        assert "float32" in fb.message


def test_ema_pass_message_names_both_stages():
    fb = grade("update_running", ema_numpy)
    assert fb.message.startswith(
        "✓ Correct: 4 single steps and all 3 runs of chained steps match "
        "torch.nn.BatchNorm1d's buffers; largest difference")


# ---------------------------------------------------------------------------------------
# Classic mistakes, written the way a learner would write them
# ---------------------------------------------------------------------------------------

EMA_MISTAKES = {
    "momentum_flipped": (
        lambda rm, rv, x, m: (m * rm + (1 - m) * x.mean(0), m * rv + (1 - m) * x.var(0, ddof=1)),
        ["OLD value", "Keras", "NEW batch"], "new_mean, new_var"),
    "momentum_flipped ": (  # flipped and biased: still named by its first slip
        lambda rm, rv, x, m: (m * rm + (1 - m) * x.mean(0), m * rv + (1 - m) * x.var(0)),
        ["OLD value", "unbiased"], "new_mean, new_var"),
    "biased_running_var": (
        lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.var(0)),
        ["UNBIASED", "ddof=1", "N - 1"], "new_var"),
    "returns_batch_stats": (
        lambda rm, rv, x, m: (x.mean(0), x.var(0, ddof=1)),
        ["batch's own", "running average"], "new_mean, new_var"),
    "returns_batch_stats  ": (
        lambda rm, rv, x, m: (x.mean(0), x.var(0)),
        ["batch's own"], "new_mean, new_var"),
    "no_update": (lambda rm, rv, x, m: (rm + 0.0, rv + 0.0), ["unchanged"], "new_mean, new_var"),
    "equal_weights": (
        lambda rm, rv, x, m: ((rm + x.mean(0)) / 2, (rv + x.var(0, ddof=1)) / 2),
        ["equal weights", "momentum=None"], "new_mean, new_var"),
    "beta_as_momentum": (
        lambda rm, rv, x, m: (0.1 * rm + 0.9 * x.mean(0), 0.1 * rv + 0.9 * x.var(0, ddof=1)),
        ["lecture's beta", "momentum = 0.1"], "new_mean, new_var"),
    "hard_coded_momentum": (
        lambda rm, rv, x, m: (0.9 * rm + 0.1 * x.mean(0), 0.9 * rv + 0.1 * x.var(0, ddof=1)),
        ["beta = 0.9", "momentum argument"], "new_mean, new_var"),
    "std_instead_of_var": (
        lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(0), (1 - m) * rv + m * x.std(0, ddof=1)),
        ["standard deviation", "sigma^2"], "new_var"),
    "missing_axis": (
        lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(), (1 - m) * rv + m * x.var(ddof=1)),
        ["all entries", "axis=0"], "new_mean, new_var"),
}


@pytest.mark.parametrize("name", sorted(EMA_MISTAKES))
def test_ema_mistakes_are_named(name):
    fn, words, wrong = EMA_MISTAKES[name]
    fb = grade("update_running", fn)
    assert (fb.passed, fb.mistake) == (False, name.strip()), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
    assert f"Wrong: {wrong}." in fb.message
    assert "maxdiff" in fb.message
    assert fb.solution == ema_ex.FIX and fb.solution not in fb.message


def test_ema_wrong_axis():
    fb = grade("update_running", lambda rm, rv, x, m: (x.mean(1), x.var(1, ddof=1)))
    assert (fb.passed, fb.mistake) == (False, "wrong_axis")
    assert "axis=1" in fb.message and "axis=0" in fb.message
    fb = grade("update_running", lambda rm, rv, x, m: ((1 - m) * rm + m * x.mean(1), rv))
    assert (fb.passed, fb.mistake) == (False, "exception")
    assert "broadcast" in fb.message and "axis" in fb.message


def test_ema_stateful_function_fails_the_chained_runs():
    seen = []

    def history_counter(rm, rv, x, m):  # right for a while, then drifts: it keeps state
        seen.append(1)
        w = m if len(seen) <= 10 else m * 1.02
        return (1 - w) * rm + w * x.mean(0), (1 - w) * rv + w * x.var(0, ddof=1)

    fb = grade("update_running", history_counter)
    assert (fb.passed, fb.mistake) == (False, "stateful"), fb.message
    assert "keep state between calls" in fb.message and "chained steps" in fb.message


def test_ema_in_place_update_is_reported():
    def in_place(rm, rv, x, m):  # what torch does to its buffers, but the exercise returns
        rm *= 1 - m
        rm += m * x.mean(0)
        rv *= 1 - m
        rv += m * x.var(0, ddof=1)
        return rm, rv

    fb = grade("update_running", in_place)
    assert (fb.passed, fb.mistake) == (False, "mutates_input")


def _fold_with(W_f=None, b_f=None):
    """A fold that is right except for one output."""

    def wrong(W, b, g, be, mu, var, eps):
        right = fold_numpy(W, b, g, be, mu, var, eps)
        s = g / np.sqrt(var + eps)
        return (right[0] if W_f is None else W_f(W, s),
                right[1] if b_f is None else b_f(b, g, be, mu, var, eps, s))

    return wrong


FOLD_MISTAKES = {
    "missing_eps": (
        lambda W, b, g, be, mu, var, eps: fold_numpy(W, b, g, be, mu, var, 0.0),
        ["without eps"], "W_folded, b_folded"),
    "divides_by_variance": (
        lambda W, b, g, be, mu, var, eps: (W * (g / (var + eps))[:, None],
                                           g / (var + eps) * (b - mu) + be),
        ["variance", "standard deviation"], "W_folded, b_folded"),
    "eps_outside_sqrt": (
        lambda W, b, g, be, mu, var, eps: (W * (g / (np.sqrt(var) + eps))[:, None],
                                           g / (np.sqrt(var) + eps) * (b - mu) + be),
        ["outside the square root"], "W_folded, b_folded"),
    "gamma_not_in_scale": (
        lambda W, b, g, be, mu, var, eps: (W / np.sqrt(var + eps)[:, None],
                                           (b - mu) / np.sqrt(var + eps) + be),
        ["without gamma", "gamma / np.sqrt(running_var + eps)"], "W_folded, b_folded"),
    "hard_coded_eps": (
        lambda W, b, g, be, mu, var, eps: fold_numpy(W, b, g, be, mu, var, 1e-5),
        ["eps = 1e-05", "eps argument"], "W_folded, b_folded"),
    "scaled_columns": (_fold_with(W_f=lambda W, s: W * s), ["columns", "scale[:, None]"],
                       "W_folded"),
    "transposed": (_fold_with(W_f=lambda W, s: W.T * s), ["transposed"], "W_folded"),
    "weight_not_scaled": (_fold_with(W_f=lambda W, s: W.copy()), ["W_folded = W"], "W_folded"),
    "bias_not_scaled": (_fold_with(b_f=lambda b, g, be, mu, var, eps, s: b - mu + be),
                        ["without the factor"], "b_folded"),
    "mean_not_scaled": (_fold_with(b_f=lambda b, g, be, mu, var, eps, s: s * b - mu + be),
                        ["BEFORE"], "b_folded"),
    "forgot_mean": (_fold_with(b_f=lambda b, g, be, mu, var, eps, s: s * b + be),
                    ["without subtracting running_mean"], "b_folded"),
    "forgot_beta": (_fold_with(b_f=lambda b, g, be, mu, var, eps, s: s * (b - mu)),
                    ["+ beta"], "b_folded"),
}


@pytest.mark.parametrize("name", sorted(FOLD_MISTAKES))
def test_fold_mistakes_are_named(name):
    fn, words, wrong = FOLD_MISTAKES[name]
    fb = grade("fold_bn", fn)
    assert (fb.passed, fb.mistake) == (False, name), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
    assert f"Wrong: {wrong}." in fb.message
    if wrong != "W_folded, b_folded":
        right = "b_folded" if wrong == "W_folded" else "W_folded"
        assert f"Right: {right}." in fb.message


def test_fold_non_square_only_failure_is_reported_on_all_cases():
    """Right for square W, wrong otherwise: the second stage catches it."""

    def only_square(W, b, g, be, mu, var, eps):
        W_f, b_f = fold_numpy(W, b, g, be, mu, var, eps)
        return (W_f if W.shape[0] == W.shape[1] else W_f * 1.1), b_f

    fb = grade("fold_bn", only_square)
    assert (fb.passed, fb.mistake) == (False, "wrong_values")
    assert "No classic mistake matches" in fb.message and "W (6, 2)" in fb.message  # worst case


# ---------------------------------------------------------------------------------------
# Every built-in mistake is named (that the cases tell the mistakes apart is checked for all
# graders in test_exercises.py)
# ---------------------------------------------------------------------------------------

MISTAKES = {"update_running": ema_ex.MISTAKES, "fold_bn": fold_ex.MISTAKES}


@pytest.mark.parametrize("exercise_id", ["update_running", "fold_bn"])
def test_grading_each_built_in_mistake_names_it(exercise_id):
    mistakes = MISTAKES[exercise_id]
    for m in mistakes:
        fb = grade(exercise_id, m.compute)
        assert (fb.passed, fb.mistake) == (False, m.id), fb.message
        assert m.explanation in fb.message


def test_ema_cases_show_the_unbiased_variance():
    for case in ema_ex._step_cases():
        rm, rv, x, m = case.args
        n, d = x.shape
        assert n != d and m != 0.5
    assert min(c.args[2].shape[0] for c in ema_ex._step_cases()) <= 5  # N/(N-1) >= 1.25
    assert any(np.any(c.args[0] != 0) for c in ema_ex._step_cases())  # not only the start


# ---------------------------------------------------------------------------------------
# Broken submissions are reported, never raised
# ---------------------------------------------------------------------------------------

RIGHT = {"update_running": ema_numpy, "fold_bn": fold_numpy}
N_ARGS = {"update_running": 4, "fold_bn": 7}


def _broken(exercise_id):
    right = RIGHT[exercise_id]

    def raises(*a):
        raise ValueError("learner's own error message")

    def not_implemented(*a):
        raise NotImplementedError

    def returns_none(*a):
        result = right(*a)  # noqa: F841 - computed, then the `return` forgotten

    def one_output(*a):
        return right(*a)[0]

    def wrong_shape(*a):
        r = right(*a)
        return r[0][:-1], r[1]

    def returns_nan(*a):
        r = right(*a)
        r[1][0] = np.nan
        return r

    def returns_tensor(*a):
        r = right(*a)
        return torch.from_numpy(r[0]), r[1]

    def returns_list(*a):
        r = right(*a)
        return r[0].tolist(), r[1]

    def int_dtype(*a):
        r = right(*a)
        return r[0].astype(np.int64), r[1]

    def mutates(*a):
        r = right(*a)
        a[0][...] = 0.0
        return r

    params = ", ".join(f"a{i}" for i in range(N_ARGS[exercise_id] - 1))
    namespace: dict = {}
    exec(f"def too_few({params}):\n    return None", namespace)

    return {
        "raises": (raises, "exception", ["ValueError", "learner's own error message"]),
        "not_implemented": (not_implemented, "not_implemented", ["fill in the body"]),
        "returns_none": (returns_none, "returned_none", ["None", "return"]),
        "one_output": (one_output, "wrong_type", ["expected a tuple"]),
        "wrong_shape": (wrong_shape, "wrong_shape", ["shape"]),
        "returns_nan": (returns_nan, "not_finite", ["NaN"]),
        "returns_tensor": (returns_tensor, "wrong_type", [".detach().numpy()"]),
        "returns_list": (returns_list, "wrong_type", ["list"]),
        "int_dtype": (int_dtype, "wrong_type", ["dtype int64"]),
        "mutates": (mutates, "mutates_input", ["in place"]),
        "too_few_args": (namespace["too_few"], "wrong_signature",
                         [f"{N_ARGS[exercise_id]} positional"]),
        "not_callable": (np.zeros(3), "wrong_type", ["without calling it"]),
    }


@pytest.mark.parametrize("kind", sorted(_broken("fold_bn")))
@pytest.mark.parametrize("exercise_id", ["update_running", "fold_bn"])
def test_broken_submissions_become_feedback(exercise_id, kind):
    fn, mistake, words = _broken(exercise_id)[kind]
    fb = grade(exercise_id, fn)
    assert isinstance(fb, Feedback)
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
