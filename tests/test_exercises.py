"""Tests for course_lib.exercises: graders accept correct answers written many ways, name each
classic mistake, and turn every broken submission into Feedback instead of raising."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import ipywidgets
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.exercises import EXERCISES, Feedback, check, feedback_html, grade, register
from course_lib.exercises import _core
from course_lib.exercises import batch_noise as noise_ex
from course_lib.exercises import batchnorm as bn_ex
from course_lib.exercises import batchnorm2d as bn2d_ex
from course_lib.exercises import diagnostics as diag_ex
from course_lib.exercises import fold as fold_ex
from course_lib.exercises import running_stats as ema_ex
from course_lib.exercises import small_batches as sb_ex
from course_lib.exercises import standardize as std_ex
from course_lib.exercises._compare import is_close

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------
# Correct solutions, each written differently from the library
# ---------------------------------------------------------------------------------------


def standardize_loops(X_train, X_test):
    """Feature by feature, with Python sums."""
    out_train, out_test = np.empty_like(X_train), np.empty_like(X_test)
    n = X_train.shape[0]
    for j in range(X_train.shape[1]):
        mu = sum(X_train[:, j]) / n
        sigma = math.sqrt(sum((v - mu) ** 2 for v in X_train[:, j]) / n)
        out_train[:, j] = (X_train[:, j] - mu) / sigma
        out_test[:, j] = (X_test[:, j] - mu) / sigma
    return out_train, out_test


def standardize_einsum(X_train, X_test):
    n = X_train.shape[0]
    mu = np.einsum("nd->d", X_train) / n
    centered = X_train - mu
    sigma = np.sqrt(np.einsum("nd,nd->d", centered, centered) / n)
    return [centered / sigma, (X_test - mu) / sigma]  # a list of two arrays is fine


def standardize_torch(X_train, X_test):
    tr, te = torch.from_numpy(X_train), torch.from_numpy(X_test)
    mu, sigma = tr.mean(dim=0), tr.std(dim=0, correction=0)
    return ((tr - mu) / sigma).numpy(), ((te - mu) / sigma).numpy()


def standardize_naive_moments(X_train, X_test):
    """var = E[x^2] - E[x]^2: numerically worse, still well inside the tolerance here."""
    mu = X_train.mean(axis=0)
    sigma = np.sqrt((X_train**2).mean(axis=0) - mu**2)
    return (X_train - mu) / sigma, (X_test - mu) / sigma


def bn_forward_loops(x, gamma, beta, eps):
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        col = x[:, j]
        mu = col.sum() / len(col)
        var = ((col - mu) ** 2).sum() / len(col)
        out[:, j] = gamma[j] * (col - mu) / math.sqrt(var + eps) + beta[j]
    return out


def bn_forward_einsum(x, gamma, beta, eps):
    n = x.shape[0]
    mu = np.einsum("nd->d", x) / n
    c = x - mu
    var = np.einsum("nd,nd->d", c, c) / n
    return np.einsum("d,nd->nd", gamma / np.sqrt(var + eps), c) + beta


def bn_forward_torch(x, gamma, beta, eps):
    out = F.batch_norm(
        torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta),
        training=True, eps=eps,
    )
    return out.numpy()


def bn_forward_torch_float32(x, gamma, beta, eps):
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return F.batch_norm(t(x), None, None, t(gamma), t(beta), training=True, eps=eps).numpy()


def bn_backward_staged(dout, x, gamma, eps):
    """CS231n's step-by-step computational graph, backpropagated node by node."""
    n = x.shape[0]
    mu = x.mean(axis=0)
    xmu = x - mu
    sq = xmu**2
    var = sq.sum(axis=0) / n
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    x_hat = xmu * ivar
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    divar = (dx_hat * xmu).sum(axis=0)
    dxmu1 = dx_hat * ivar
    dsqrtvar = -divar / sqrtvar**2
    dvar = 0.5 * dsqrtvar / sqrtvar
    dsq = np.ones_like(x) * dvar / n
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=0)
    dx = dx1 + dmu / n
    return dx, dgamma, dbeta


def bn_backward_autograd(dout, x, gamma, eps):
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(gamma, requires_grad=True)
    bt = torch.zeros_like(gt, requires_grad=True)
    F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps).backward(torch.from_numpy(dout))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def bn_backward_autograd_float32(dout, x, gamma, eps):
    """torch's default dtype: float32 answers pass (with a note about the dtype)."""
    t = lambda a, grad=False: torch.tensor(a, dtype=torch.float32, requires_grad=grad)  # noqa
    xt, gt, bt = t(x, True), t(gamma, True), t(np.zeros_like(gamma), True)
    F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps).backward(t(dout))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def bn_backward_einsum(dout, x, gamma, eps):
    n = x.shape[0]
    c = x - np.einsum("nd->d", x) / n
    inv = 1.0 / np.sqrt(np.einsum("nd,nd->d", c, c) / n + eps)
    x_hat = c * inv
    dgamma = np.einsum("nd,nd->d", dout, x_hat)
    dbeta = np.einsum("nd->d", dout)
    dx = (gamma * inv / n) * (n * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


CORRECT = {
    "standardize_train_test": [standardize_loops, standardize_einsum, standardize_torch,
                    standardize_naive_moments],
    "bn_forward_pass": [bn_forward_loops, bn_forward_einsum, bn_forward_torch,
                   bn_forward_torch_float32],
    "bn_backward_pass": [bn_backward_staged, bn_backward_autograd, bn_backward_einsum,
                    bn_backward_autograd_float32],
}


@pytest.mark.parametrize(
    "exercise_id, fn",
    [(ex, fn) for ex, fns in CORRECT.items() for fn in fns],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_correct_solutions_pass(exercise_id, fn):
    fb = grade(exercise_id, fn)
    assert fb.passed, fb.message
    assert fb.mistake is None
    assert fb.message.startswith("✓ Correct: all")
    assert "largest difference" in fb.message


def test_float32_answer_passes_with_a_note():
    fb = grade("bn_forward_pass", bn_forward_torch_float32)
    assert fb.passed and "float32" in fb.message
    assert "largest difference" in fb.message and "in case" in fb.message


def test_pass_message_does_not_depend_on_round_off():
    """Stored notebook outputs must not change with the machine's summation order."""
    fb = grade("bn_forward_pass", bn_forward_einsum)
    assert fb.message == (
        "✓ Correct: all 4 cases match the reference; largest difference < 1e-12 (round-off)."
    )


# ---------------------------------------------------------------------------------------
# Classic mistakes, written the way a learner would write them
# ---------------------------------------------------------------------------------------


def _std(X_train, X_test, mu, sigma):
    return (X_train - mu) / sigma, (X_test - mu) / sigma


STANDARDIZE_MISTAKES = {
    "test_refit": (
        lambda tr, te: ((tr - tr.mean(0)) / tr.std(0), (te - te.mean(0)) / te.std(0)),
        ["own mean", "TRAINING statistics"],
    ),
    "fit_on_all": (
        lambda tr, te: _std(tr, te, np.vstack([tr, te]).mean(0), np.vstack([tr, te]).std(0)),
        ["together", "leak"],
    ),
    "divides_by_variance": (
        lambda tr, te: _std(tr, te, tr.mean(0), tr.std(0) ** 2),
        ["variance", "standard deviation"],
    ),
    "unbiased_std": (
        lambda tr, te: _std(tr, te, tr.mean(0), tr.std(0, ddof=1)),
        ["ddof=1", "N - 1", "population"],
    ),
    "not_centered": (lambda tr, te: (tr / tr.std(0), te / tr.std(0)), ["subtract the mean"]),
    "not_scaled": (lambda tr, te: (tr - tr.mean(0), te - tr.mean(0)), ["divide"]),
    "wrong_axis": (
        lambda tr, te: tuple(
            (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True) for a in (tr, te)
        ),
        ["per example", "axis=0"],
    ),
    "missing_axis": (lambda tr, te: _std(tr, te, np.mean(tr), np.std(tr)), ["axis=0"]),
}


def _bn(x, gamma, beta, mu, denom):
    return gamma * (x - mu) / denom + beta


BN_FORWARD_MISTAKES = {
    "unbiased_variance": (
        lambda x, g, b, eps: _bn(x, g, b, x.mean(0), np.sqrt(x.var(0, ddof=1) + eps)),
        ["unbiased", "N - 1"],
    ),
    "missing_eps": (
        lambda x, g, b, eps: _bn(x, g, b, x.mean(0), x.std(0)),
        ["without eps", "np.sqrt(var + eps)"],
    ),
    "eps_outside_sqrt": (
        lambda x, g, b, eps: _bn(x, g, b, x.mean(0), x.std(0) + eps),
        ["outside the square root"],
    ),
    "divides_by_variance": (
        lambda x, g, b, eps: _bn(x, g, b, x.mean(0), x.var(0) + eps),
        ["variance", "standard deviation"],
    ),
    "wrong_axis": (
        lambda x, g, b, eps: _bn(
            x, g, b, x.mean(1, keepdims=True), np.sqrt(x.var(1, keepdims=True) + eps)
        ),
        ["per example", "axis=0"],
    ),
    "missing_axis": (
        lambda x, g, b, eps: _bn(x, g, b, x.mean(), np.sqrt(x.var() + eps)),
        ["all entries", "axis=0"],
    ),
    "ignores_gamma_beta": (
        lambda x, g, b, eps: (x - x.mean(0)) / np.sqrt(x.var(0) + eps),
        ["gamma * x_hat + beta"],
    ),
    "swapped_gamma_beta": (
        lambda x, g, b, eps: _bn(x, b, g, x.mean(0), np.sqrt(x.var(0) + eps)),
        ["swapped"],
    ),
}


def _bn_grads(dout, x, gamma, eps, *, ddof=0, use_eps=True):
    mu = x.mean(0)
    var = x.var(0, ddof=ddof)
    inv = 1 / np.sqrt(var + eps) if use_eps else 1 / np.sqrt(var)
    x_hat = (x - mu) * inv
    g = dout * gamma
    dx = inv * (g - g.mean(0) - x_hat * (g * x_hat).mean(0))
    return dx, (dout * x_hat).sum(0), dout.sum(0), x_hat, inv


def _replace(i, fn):
    """A backward pass that is right except output i, computed by fn(dout, x, gamma, eps)."""

    def wrong(dout, x, gamma, eps):
        grads = list(_bn_grads(dout, x, gamma, eps)[:3])
        grads[i] = fn(dout, x, gamma, eps)
        return tuple(grads)

    return wrong


def _x_hat_inv(x, eps):
    return _bn_grads(np.zeros_like(x), x, np.ones(x.shape[1]), eps)[3:]


BN_BACKWARD_MISTAKES = {
    "dx_ignores_mean_terms": (
        _replace(0, lambda d, x, g, eps: d * g / np.sqrt(x.var(0) + eps)),
        ["constants", "dx"],
        "dx",
    ),
    "dx_ignores_var_term": (
        _replace(0, lambda d, x, g, eps: g * (d - d.mean(0)) / np.sqrt(x.var(0) + eps)),
        ["var"],
        "dx",
    ),
    "missing_gamma_in_dx": (
        _replace(0, lambda d, x, g, eps: _bn_grads(d, x, np.ones_like(g), eps)[0]),
        ["gamma"],
        "dx",
    ),
    "unbiased_variance": (
        lambda d, x, g, eps: _bn_grads(d, x, g, eps, ddof=1)[:3],
        ["N - 1"],
        "dx, dgamma",
    ),
    "missing_eps": (
        lambda d, x, g, eps: _bn_grads(d, x, g, eps, use_eps=False)[:3],
        ["eps"],
        "dx, dgamma",
    ),
    "wrong_axis": (
        _replace(0, lambda d, x, g, eps: (lambda xh, inv: inv * (
            d * g - (d * g).mean(1, keepdims=True)
            - xh * (d * g * xh).mean(1, keepdims=True)))(*_x_hat_inv(x, eps))),
        ["axis=1", "axis 0"],
        "dx",
    ),
    "missing_xhat_in_dgamma": (
        _replace(1, lambda d, x, g, eps: d.sum(0)),
        ["dgamma", "x_hat"],
        "dgamma",
    ),
    "dgamma_dbeta_swapped": (
        lambda d, x, g, eps: (lambda r: (r[0], r[2], r[1]))(_bn_grads(d, x, g, eps)),
        ["swapped"],
        "dgamma, dbeta",
    ),
    "mean_instead_of_sum": (
        _replace(2, lambda d, x, g, eps: d.mean(0)),
        ["sum"],
        "dbeta",
    ),
}


@pytest.mark.parametrize("mistake", sorted(STANDARDIZE_MISTAKES))
def test_standardize_mistakes_are_named(mistake):
    fn, words = STANDARDIZE_MISTAKES[mistake]
    fb = grade("standardize_train_test", fn)
    assert not fb.passed
    assert fb.mistake == mistake, fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
    assert "maxdiff" in fb.message and "case" in fb.message


@pytest.mark.parametrize("fixed", [1e-5, 1e-3, 1e-8])
def test_bn_forward_with_eps_written_in_is_named_with_its_value(fixed):
    def eps_written_in(x, gamma, beta, eps):
        return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + fixed) + beta

    fb = grade("bn_forward_pass", eps_written_in)
    assert fb.mistake == "hard_coded_eps", fb.message
    assert f"eps = {fixed:g}" in fb.message and "eps argument" in fb.message


@pytest.mark.parametrize("fixed", [1e-5, 1e-3, 1e-8])
def test_bn_backward_with_eps_written_in_is_named_with_its_value(fixed):
    def eps_written_in(dout, x, gamma, eps):
        n = x.shape[0]
        inv_std = 1.0 / np.sqrt(x.var(axis=0) + fixed)
        x_hat = (x - x.mean(axis=0)) * inv_std
        dbeta, dgamma = dout.sum(axis=0), (dout * x_hat).sum(axis=0)
        return gamma * inv_std / n * (n * dout - dbeta - x_hat * dgamma), dgamma, dbeta

    fb = grade("bn_backward_pass", eps_written_in)
    assert fb.mistake == "hard_coded_eps", fb.message
    assert f"eps = {fixed:g}" in fb.message


def test_test_refit_says_which_output_is_wrong():
    fb = grade("standardize_train_test", STANDARDIZE_MISTAKES["test_refit"][0])
    assert "Wrong: X_test_std. Right: X_train_std." in fb.message


@pytest.mark.parametrize("mistake", sorted(BN_FORWARD_MISTAKES))
def test_bn_forward_mistakes_are_named(mistake):
    fn, words = BN_FORWARD_MISTAKES[mistake]
    fb = grade("bn_forward_pass", fn)
    assert not fb.passed
    assert fb.mistake == mistake, fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
    assert "expected" in fb.message and "got" in fb.message and "maxdiff" in fb.message


@pytest.mark.parametrize("mistake", sorted(BN_BACKWARD_MISTAKES))
def test_bn_backward_mistakes_are_named(mistake):
    fn, words, wrong = BN_BACKWARD_MISTAKES[mistake]
    fb = grade("bn_backward_pass", fn)
    assert not fb.passed
    assert fb.mistake == mistake, fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)
    assert f"Wrong: {wrong}." in fb.message


def test_bn_backward_reports_each_wrong_output():
    def two_mistakes(dout, x, gamma, eps):
        dx, dgamma, dbeta = bn_backward_einsum(dout, x, gamma, eps)
        return dout * gamma / np.sqrt(x.var(0) + eps), dout.sum(0), dbeta

    fb = grade("bn_backward_pass", two_mistakes)
    assert fb.mistake == "dx_ignores_mean_terms"
    assert "Wrong: dx, dgamma. Right: dbeta." in fb.message
    assert "[dx]" in fb.message and "[dgamma]" in fb.message
    assert "dgamma = dout.sum(axis=0), which is dbeta" in fb.message


def test_bn_backward_sum_over_wrong_axis_is_a_wrong_axis_shape():
    def axis1(dout, x, gamma, eps):
        dx, _, _ = bn_backward_einsum(dout, x, gamma, eps)
        x_hat = (x - x.mean(0)) / np.sqrt(x.var(0) + eps)
        return dx, (dout * x_hat).sum(axis=1), dout.sum(axis=1)

    fb = grade("bn_backward_pass", axis1)
    assert (fb.passed, fb.mistake) == (False, "wrong_axis")
    assert "axis=1" in fb.message and "axis=0" in fb.message


def test_keepdims_gradient_gets_a_shape_hint():
    def keepdims(dout, x, gamma, eps):
        dx, dgamma, dbeta = bn_backward_einsum(dout, x, gamma, eps)
        return dx, dgamma[None, :], dbeta

    fb = grade("bn_backward_pass", keepdims)
    assert fb.mistake == "wrong_shape" and "keepdims" in fb.message


def test_swapped_standardize_outputs_get_a_hint():
    fb = grade("standardize_train_test", lambda tr, te: standardize_einsum(tr, te)[::-1])
    assert fb.mistake == "wrong_shape" and "wrong order" in fb.message


def test_unrecognized_wrong_values_get_the_generic_hint():
    fb = grade("bn_forward_pass", lambda x, g, b, eps: bn_forward_einsum(x, g, b, eps) * 1.5)
    assert (fb.passed, fb.mistake) == (False, "wrong_values")
    assert "No classic mistake matches" in fb.message and "Algorithm 1" in fb.solution
    assert "Largest difference in case" in fb.message


# ---------------------------------------------------------------------------------------
# The cases can tell every mistake apart: a design check on the graders themselves
# ---------------------------------------------------------------------------------------

GRADER_MODULES = {
    "standardize_train_test": (std_ex.MISTAKES, std_ex._cases),
    "bn_forward_pass": (bn_ex.FORWARD_MISTAKES, bn_ex._forward_cases),
    "bn_backward_pass": (bn_ex.BACKWARD_MISTAKES, bn_ex._backward_cases),
}
# Graders built from Mistake lists and Case builders, for the design checks below (the test-time
# graders' naming tests live in test_exercises_test_time.py).
SEPARATION_CHECKS = {
    **GRADER_MODULES,
    "update_running": (ema_ex.MISTAKES, ema_ex._step_cases),
    "fold_bn": (fold_ex.MISTAKES, fold_ex._square_cases),
    "fold_bn (any shape)": (fold_ex.ANY_SHAPE_MISTAKES, fold_ex._all_cases),
    "normalize_in_batch": (noise_ex.MISTAKES, noise_ex._cases),
    "bn2d_forward": (bn2d_ex.MISTAKES, bn2d_ex._cases),
    "update_ratio": (diag_ex.MISTAKES, diag_ex._cases),
    "group_norm_forward": (sb_ex.GN_MISTAKES, sb_ex._gn_cases),
    "sync_bn_sums": (sb_ex.SUM_MISTAKES, sb_ex._sum_cases),
}


def _mistake_outputs(mistake, cases):
    return [tuple(np.asarray(a) for a in mistake.compute(*c.args)) for c in cases]


@pytest.mark.parametrize("exercise_id", sorted(SEPARATION_CHECKS))
def test_every_mistake_is_far_from_the_reference(exercise_id):
    """Each mistake differs by >1e-3 (relative) somewhere: far outside even float32 tolerance."""
    mistakes, make_cases = SEPARATION_CHECKS[exercise_id]
    cases = make_cases()
    for m in mistakes:
        outs = _mistake_outputs(m, cases)
        rel = max(
            float(np.max(np.abs(o - e)) / max(1.0, float(np.max(np.abs(e)))))
            for out, c in zip(outs, cases)
            for o, e in zip(out, c.expected)
        )
        assert rel > 1e-3, (m.id, rel)


@pytest.mark.parametrize("exercise_id", sorted(SEPARATION_CHECKS))
def test_mistakes_with_different_ids_are_distinguishable(exercise_id):
    mistakes, make_cases = SEPARATION_CHECKS[exercise_id]
    cases = make_cases()
    outs = [_mistake_outputs(m, cases) for m in mistakes]
    for a in range(len(mistakes)):
        for b in range(a + 1, len(mistakes)):
            if mistakes[a].id == mistakes[b].id:
                continue
            same = all(
                is_close(oa, ob)
                for ca, cb in zip(outs[a], outs[b])
                for oa, ob in zip(ca, cb)
            )
            assert not same, (mistakes[a].id, mistakes[b].id)


@pytest.mark.parametrize("exercise_id", sorted(GRADER_MODULES))
def test_grading_each_built_in_mistake_names_it(exercise_id):
    mistakes, _ = GRADER_MODULES[exercise_id]
    single = exercise_id == "bn_forward_pass"
    for m in mistakes:
        fn = (lambda *a, _m=m: _m.compute(*a)[0]) if single else m.compute
        fb = grade(exercise_id, fn)
        assert (fb.passed, fb.mistake) == (False, m.id), fb.message
        assert m.explanation in fb.message


def test_cases_are_non_square_and_exercise_gamma_beta_eps():
    for case in bn_ex._forward_cases():
        x, gamma, beta, eps = case.args
        assert x.shape[0] != x.shape[1] and x.dtype == np.float64
        assert np.all(np.abs(gamma) != 1) and np.all(beta != 0)
    assert any(c.args[3] >= 1e-2 and np.min(c.args[0].var(0)) < 1e-2
               for c in bn_ex._forward_cases())


# ---------------------------------------------------------------------------------------
# Broken submissions are reported, never raised
# ---------------------------------------------------------------------------------------

CALL = {"standardize_train_test": standardize_einsum, "bn_forward_pass": bn_forward_einsum,
        "bn_backward_pass": bn_backward_einsum}


def _first_array(result):
    return result if isinstance(result, np.ndarray) else result[0]


def _broken(exercise_id):
    right = CALL[exercise_id]
    n_args = {"standardize_train_test": 2, "bn_forward_pass": 4, "bn_backward_pass": 4}[exercise_id]

    def raises_value_error(*a):
        raise ValueError("learner's own error message")

    def not_implemented(*a):
        raise NotImplementedError

    def returns_none(*a):
        result = right(*a)  # noqa: F841 - computed, then the `return` forgotten

    def wrong_shape(*a):
        r = right(*a)
        return r[:-1] if isinstance(r, np.ndarray) else (r[0][:-1],) + tuple(r[1:])

    def returns_nan(*a):
        r = right(*a)
        _first_array(r)[0, 0] = np.nan
        return r

    def returns_list(*a):
        r = right(*a)
        return r.tolist() if isinstance(r, np.ndarray) else [r[0].tolist(), *r[1:]]

    def wrong_length(*a):
        r = right(*a)
        return (r, {}) if isinstance(r, np.ndarray) else tuple(r)[:-1]

    def mutates_input(*a):
        r = right(*a)
        a[0][...] = 0.0
        return r

    def torch_tensor(*a):
        r = right(*a)
        t = torch.from_numpy(_first_array(r))
        return t if isinstance(r, np.ndarray) else (t, *r[1:])

    def int_dtype(*a):
        r = right(*a)
        i = _first_array(r).astype(np.int64)
        return i if isinstance(r, np.ndarray) else (i, *r[1:])

    def broadcast_error(*a):
        return a[0] - a[0].mean(axis=1)  # (N, D) - (N,) with N != D

    # A function with one parameter too few, as if eps (or X_test) were forgotten.
    params = ", ".join(f"a{i}" for i in range(n_args - 1))
    namespace: dict = {}
    exec(f"def too_few({params}):\n    return None", namespace)

    return {
        "raises_value_error": (raises_value_error, "exception", ["ValueError",
                                                                 "learner's own error message"]),
        "not_implemented": (not_implemented, "not_implemented", ["fill in the body"]),
        "returns_none": (returns_none, "returned_none", ["None", "return"]),
        "wrong_shape": (wrong_shape, "wrong_shape", ["shape"]),
        "returns_nan": (returns_nan, "not_finite", ["NaN"]),
        "returns_list": (returns_list, "wrong_type", ["list"]),
        "wrong_length": (wrong_length,
                         "wrong_type" if exercise_id == "bn_forward_pass" else "wrong_length",
                         ["tuple" if exercise_id == "bn_forward_pass" else "expected"]),
        "mutates_input": (mutates_input, "mutates_input", ["in place"]),
        "torch_tensor": (torch_tensor, "wrong_type", [".detach().numpy()"]),
        "int_dtype": (int_dtype, "wrong_type", ["dtype int64"]),
        "broadcast_error": (broadcast_error, "exception", ["broadcast", "axis"]),
        "too_few_args": (namespace["too_few"], "wrong_signature", [f"{n_args} positional"]),
        "not_callable": (np.zeros(3), "wrong_type", ["without calling it"]),
    }


BROKEN_KINDS = sorted(_broken("bn_forward_pass"))


@pytest.mark.parametrize("kind", BROKEN_KINDS)
@pytest.mark.parametrize("exercise_id", sorted(CALL))
def test_broken_submissions_become_feedback(exercise_id, kind):
    fn, mistake, words = _broken(exercise_id)[kind]
    fb = grade(exercise_id, fn)
    assert isinstance(fb, Feedback)
    assert (fb.passed, fb.mistake) == (False, mistake), fb.message
    for w in words:
        assert w in fb.message, (w, fb.message)


def test_bn_backward_two_tuple_where_three_expected():
    fb = grade("bn_backward_pass", lambda d, x, g, eps: bn_backward_einsum(d, x, g, eps)[:2])
    assert (fb.passed, fb.mistake) == (False, "wrong_length")
    assert "returned 2 values, expected 3" in fb.message


def test_forward_returning_out_and_cache_is_explained():
    fb = grade("bn_forward_pass", lambda x, g, b, eps: (bn_forward_einsum(x, g, b, eps), None))
    assert fb.mistake == "wrong_type" and "(out, cache)" in fb.message


def test_exception_message_points_at_the_learners_line():
    def fails(x, gamma, beta, eps):
        mu = x.mean(axis=0)
        return (x - mu) / undefined_name  # noqa: F821

    fb = grade("bn_forward_pass", fails)
    assert fb.mistake == "exception"
    assert "NameError" in fb.message and "in fails, line" in fb.message
    assert "undefined_name" in fb.message and "case 1 of 4" in fb.message


def test_mutating_submission_cannot_corrupt_the_grader():
    def mutating(x, gamma, beta, eps):
        x -= x.mean(0)
        x /= np.sqrt(x.var(0) + eps)
        scale = gamma.copy()
        gamma[...] = 7.0
        return scale * x + beta

    fb = grade("bn_forward_pass", mutating)
    assert (fb.passed, fb.mistake) == (False, "mutates_input")
    assert "gamma" in fb.message and "x" in fb.message
    assert grade("bn_forward_pass", bn_forward_loops).passed


def test_system_exit_and_learner_warnings_do_not_escape():
    def exits(*a):
        raise SystemExit(1)

    assert grade("standardize_train_test", exits).mistake == "exception"

    def warns(X_train, X_test):
        with np.errstate(all="warn"):
            np.float64(1.0) / np.float64(0.0)
        return standardize_einsum(X_train, X_test)

    assert grade("standardize_train_test", warns).passed


def test_varargs_and_defaults_are_accepted():
    assert grade("bn_forward_pass", lambda *a: bn_forward_einsum(*a)).passed
    assert grade("bn_forward_pass", lambda x, g, b, eps=1e-5: bn_forward_einsum(x, g, b, eps)).passed


def test_grading_is_deterministic():
    fn = BN_FORWARD_MISTAKES["missing_eps"][0]
    assert grade("bn_forward_pass", fn) == grade("bn_forward_pass", fn)


# ---------------------------------------------------------------------------------------
# Registry and grade()
# ---------------------------------------------------------------------------------------


def test_exercises_lists_the_three_exercises_with_their_signatures():
    assert {"standardize_train_test", "bn_forward_pass", "bn_backward_pass"} <= set(EXERCISES)
    assert EXERCISES["bn_forward_pass"].startswith("fn(x, gamma, beta, eps) -> out")
    assert EXERCISES["bn_backward_pass"].startswith("fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)")
    assert EXERCISES["standardize_train_test"].startswith("fn(X_train, X_test) -> (X_train_std, X_test_std)")
    assert all("\n" not in d for d in EXERCISES.values())


@pytest.mark.parametrize("bad_id", ["bn_forwrd", "", None, 3])
def test_unknown_id_raises_value_error_naming_valid_ids(bad_id):
    with pytest.raises(ValueError, match="valid ids") as info:
        grade(bad_id, bn_forward_einsum)
    for ex in ("standardize_train_test", "bn_forward_pass", "bn_backward_pass"):
        assert repr(ex) in str(info.value)


def test_feedback_is_frozen():
    fb = Feedback(True, "ok")
    assert fb.mistake is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        fb.passed = False  # type: ignore[misc]


@pytest.fixture
def scratch_registry():
    before = (dict(_core._GRADERS), dict(EXERCISES))
    yield
    _core._GRADERS.clear()
    _core._GRADERS.update(before[0])
    EXERCISES.clear()
    EXERCISES.update(before[1])


def test_register_adds_an_exercise_and_rejects_a_duplicate(scratch_registry):
    @register("scratch_double", "fn(x) -> 2 * x: a scratch exercise for this test")
    def grade_double(submission):
        return _core.run_cases(
            submission,
            cases=[_core.Case("x (3,)", (np.arange(3.0),), (2 * np.arange(3.0),))],
            arg_names=("x",),
            output_names=("out",),
        )

    assert EXERCISES["scratch_double"].startswith("fn(x)")
    assert grade("scratch_double", lambda x: x + x).passed
    assert grade("scratch_double", lambda x: x * 3).mistake == "wrong_values"

    with pytest.raises(ValueError, match="already registered"):

        @register("scratch_double", "another grader under the same id")
        def other(submission):
            return Feedback(True, "")

    with pytest.raises(ValueError, match="snake_case"):
        register("not an id", "x")
    with pytest.raises(ValueError, match="one non-empty line"):
        register("scratch_lines", "two\nlines")


def test_grader_bug_is_reported_as_grader_error(scratch_registry):
    @register("scratch_buggy", "a grader that fails by itself")
    def buggy(submission):
        raise KeyError("internal")

    fb = grade("scratch_buggy", bn_forward_einsum)
    assert (fb.passed, fb.mistake) == (False, "grader_error")
    assert "bug in the course" in fb.message and "KeyError" in fb.message


# ---------------------------------------------------------------------------------------
# Widget: formatting only
# ---------------------------------------------------------------------------------------


def test_feedback_html_pass():
    html = feedback_html(Feedback(True, "✓ Correct: all 4 cases match."))
    assert "✓ Correct" in html and "#1e7e34" in html
    assert "Looks like" not in html
    assert html.count("✓ Correct") == 1, "the heading says it; the message must not repeat it"
    assert "All 4 cases match." in html


def test_feedback_html_fail_shows_mistake_heading_and_escapes():
    html = feedback_html(Feedback(False, "x < 0 & <script>alert(1)</script>", "unbiased_variance"))
    assert "✗ Not yet" in html and "#b3261e" in html
    assert "Looks like: unbiased variance" in html
    assert "x &lt; 0 &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html


def test_feedback_html_fail_without_mistake_has_no_heading():
    assert "Looks like" not in feedback_html(Feedback(False, "oops", None))


def test_check_returns_an_html_widget_with_the_escaped_message():
    fn = BN_FORWARD_MISTAKES["unbiased_variance"][0]
    widget = check("bn_forward_pass", fn)
    assert isinstance(widget, ipywidgets.HTML)
    fb = grade("bn_forward_pass", fn)
    assert widget.value == feedback_html(fb)
    assert "Looks like: unbiased variance" in widget.value
    assert "N - 1" in widget.value
    passed = check("standardize_train_test", standardize_loops)
    assert "✓ Correct" in passed.value


def test_solution_is_folded_away_and_escaped():
    fb = Feedback(False, "dx is off", "missing_eps", solution="dx = a < b & c")
    html = feedback_html(fb)
    assert html.index("dx is off") < html.index("<details")
    assert "<details " in html and "<details open" not in html, "closed until the learner asks"
    assert "<summary" in html and "Show a solution" in html
    assert "dx = a &lt; b &amp; c" in html
    assert "<details" not in feedback_html(Feedback(False, "oops", None)), "no solution, no fold"
    assert "<details" not in feedback_html(Feedback(True, "✓ Correct: yes.", None, "x"))


@pytest.mark.parametrize("exercise_id, fn", [
    ("bn_forward_pass", lambda: BN_FORWARD_MISTAKES["unbiased_variance"][0]),
    ("standardize_train_test", lambda: STANDARDIZE_MISTAKES["divides_by_variance"][0]),
])
def test_wrong_values_carry_the_recipe_as_a_solution_not_in_the_message(exercise_id, fn):
    fb = grade(exercise_id, fn())
    assert not fb.passed and fb.solution, fb
    assert fb.solution not in fb.message and "Fix:" not in fb.message
    assert "Show a solution" in check(exercise_id, fn()).value


def test_a_pass_or_a_broken_submission_has_no_solution():
    assert grade("standardize_train_test", standardize_loops).solution == ""
    assert grade("bn_forward_pass", lambda x, gamma, beta, eps: None).solution == ""


def test_check_raises_only_for_an_unknown_id():
    with pytest.raises(ValueError, match="valid ids"):
        check("nope", bn_forward_einsum)


# ---------------------------------------------------------------------------------------
# A function not filled in yet: a neutral card that says how to run the exercise
# ---------------------------------------------------------------------------------------


def _stub(x, gamma, beta, eps):
    # YOUR CODE HERE
    raise NotImplementedError("Replace this line with your code.")


def _empty(x, gamma, beta, eps):
    ...


@pytest.mark.parametrize("stub", [_stub, _empty], ids=["raises", "ellipsis"])
def test_an_unfilled_stub_shows_how_to_run_the_exercise_not_a_verdict(stub):
    card = check("bn2d_forward", stub).value
    assert "How to run this exercise" in card
    assert "Not yet" not in card
    assert "Looks like" not in card
    assert _RED_BORDER not in card


def test_the_card_links_to_this_chapters_notebook_on_colab_and_binder():
    card = check("bn2d_forward", _stub).value
    notebook = "notebooks/07_deep_and_conv_nets.ipynb"
    assert (f'href="https://colab.research.google.com/github/batchnorm-course/batchnorm-course/'
            f'blob/main/{notebook}"') in card
    assert (f'href="https://mybinder.org/v2/gh/batchnorm-course/batchnorm-course/main?'
            f'urlpath=lab/tree/{notebook}"') in card
    assert f"jupyter lab {notebook}" in card


def test_a_real_attempt_is_still_graded():
    assert "✗ Not yet" in check("bn_forward_pass", BN_FORWARD_MISTAKES["missing_eps"][0]).value
    assert grade("bn_forward_pass", _stub).mistake == "not_implemented"


_RED_BORDER = "#b3261e"


def test_launch_links_name_the_repository_and_branch_of_config_yml():
    import yaml

    from course_lib.exercises import launch

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert launch.REPOSITORY == config["repository"]["url"]
    assert launch.BRANCH == config["repository"]["branch"]


def test_every_exercise_names_a_chapter_whose_notebook_exists():
    from course_lib.exercises import launch

    for exercise_id, description in EXERCISES.items():
        chapter = launch.chapter_of(description)
        assert chapter in launch.NOTEBOOKS, exercise_id
        assert (ROOT / launch.NOTEBOOKS[chapter]).is_file(), exercise_id


def test_exercise_ids_are_not_names_of_the_library():
    """An id that is also a course_lib name with another contract invites passing the
    library's function (issue 19): ids and public names never coincide."""
    import importlib
    import pkgutil

    import course_lib

    public = set()
    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        if ".exercises" in info.name:
            continue
        module = importlib.import_module(info.name)
        public |= {n for n in dir(module) if not n.startswith("_")}
    assert not set(EXERCISES) & public


def test_notebooks_grade_only_registered_exercises():
    import json
    import re

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for cell in cells:
            for exercise_id in re.findall(r"\b(?:grade|check)\(\"(\w+)\"", "".join(cell["source"])):
                assert exercise_id in EXERCISES, (path.name, exercise_id)


def test_stored_exercise_outputs_show_how_to_run_never_an_unearned_verdict():
    """The static site shows the stored output: under a stub, the card, never "✗ Not yet".
    (Holds for notebooks executed with this code: `make notebooks`.)"""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        state = nb["metadata"].get("widgets", {}).get(
            "application/vnd.jupyter.widget-state+json", {}).get("state", {})
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        for before, cell in zip(code, code[1:]):
            if "raise NotImplementedError" not in "".join(before["source"]):
                continue
            if "check(" not in "".join(cell["source"]):
                continue
            views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
                     for o in cell.get("outputs", []) if "application/vnd.jupyter.widget-view+json"
                     in o.get("data", {})]
            assert views, f"{path.name}: an exercise's check cell has no stored output"
            for model_id in views:
                value = state[model_id]["state"]["value"]
                assert "How to run this exercise" in value, (path.name, value[:200])
                assert "Not yet" not in value, (path.name, value[:200])


def test_changes_are_found_inside_lists_tuples_and_dicts():
    a = np.arange(3.0)
    original = {"w": [a, (a, 2.0)], "n": 3}
    same = {"w": [a.copy(), (a.copy(), 2.0)], "n": 3}
    assert _core._changes(original, same, "arg") == []
    nan_inside = {"w": [a.copy(), (np.array([0.0, np.nan, 2.0]), 2.0)], "n": 3}
    assert _core._changes(original, nan_inside, "arg") == [("arg['w'][1][0]", "array")]
    key_added = {"w": [a.copy(), (a.copy(), 2.0)], "n": 3, "extra": 1}
    assert _core._changes(original, key_added, "arg") == [("arg", "dict")]
    number_changed = {"w": [a.copy(), (a.copy(), 2.5)], "n": 3}
    assert _core._changes(original, number_changed, "arg") == [("arg['w'][1][1]", "value")]
    recast = {"w": [a.astype(np.float32), (a.copy(), 2.0)], "n": 3}
    assert _core._changes(original, recast, "arg") == [("arg['w'][0]", "array")]
