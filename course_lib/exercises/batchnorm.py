"""Chapter 2 exercises: the batch norm forward and backward passes for (N, D) inputs.

- ``bn_forward``: ``fn(x, gamma, beta, eps) -> out``
- ``bn_backward``: ``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)``

The references are :func:`course_lib.batchnorm.batchnorm_forward` and
:func:`course_lib.batchnorm.batchnorm_backward` (one implementation per formula).

The cases are chosen so every classic mistake shows: N != D (a wrong axis changes the values
or the shape), features with different means and scales, gamma != 1 and beta != 0 (ignoring
them shows), few examples (N - 1 vs N differs by several percent), and a feature with variance
~1e-3 next to eps = 1e-2 (a missing or misplaced eps shows).

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

import numpy as np

from ..batchnorm import batchnorm_backward, batchnorm_forward
from ._core import Case, Mistake, hard_coded_eps, register_cases

FORWARD_ARGS = ("x", "gamma", "beta", "eps")
BACKWARD_ARGS = ("dout", "x", "gamma", "eps")
BACKWARD_OUTPUTS = ("dx", "dgamma", "dbeta")

# (seed, N, D, eps, index of a feature with variance ~1e-3 or None)
_CASE_SPECS = [
    (0, 8, 5, 1e-5, None),
    (1, 6, 3, 1e-2, 1),
    (2, 8, 5, 1e-1, None),  # the shape of case 1, other data and eps: a cache shows
    (3, 5, 10, 1e-2, 4),
]


def _inputs(seed: int, n: int, d: int, small: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-3.0, 3.0, size=d)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(4.0), size=d))
    if small is not None:
        scale[small] = 0.03  # variance ~1e-3, comparable to eps = 1e-2
    x = mean + scale * rng.standard_normal((n, d))
    gamma = rng.uniform(0.5, 2.0, size=d) * rng.choice([-1.0, 1.0], size=d)
    beta = rng.uniform(-2.0, 2.0, size=d)
    dout = rng.standard_normal((n, d))  # random upstream gradient, never a plain sum
    return {"x": x, "gamma": gamma, "beta": beta, "dout": dout}


def _forward_cases() -> list[Case]:
    cases = []
    for seed, n, d, eps, small in _CASE_SPECS:
        v = _inputs(seed, n, d, small)
        out, _ = batchnorm_forward(v["x"], v["gamma"], v["beta"], eps)
        label = f"x {v['x'].shape}, eps={eps:g}"
        cases.append(Case(label, (v["x"], v["gamma"], v["beta"], eps), (out,)))
    return cases


def _backward_cases() -> list[Case]:
    cases = []
    for seed, n, d, eps, small in _CASE_SPECS:
        v = _inputs(seed, n, d, small)
        # beta does not enter the gradients; the reference forward just needs one.
        _, cache = batchnorm_forward(v["x"], v["gamma"], np.zeros_like(v["gamma"]), eps)
        dx, dgamma, dbeta = batchnorm_backward(v["dout"], cache)
        label = f"dout and x {v['x'].shape}, eps={eps:g}"
        cases.append(Case(label, (v["dout"], v["x"], v["gamma"], eps), (dx, dgamma, dbeta)))
    return cases


# ---- forward: classic mistakes, WRONG ON PURPOSE ----------------------------------------


def _normalize(x, eps, *, axis=0, ddof=0, eps_mode="inside", power=0.5):
    """x_hat with one thing changed: the axis, ddof, where eps goes, or the power of var."""
    mu = x.mean(axis=axis, keepdims=axis is not None)
    var = x.var(axis=axis, ddof=ddof, keepdims=axis is not None)
    if eps_mode == "inside":
        denom = (var + eps) ** power
    elif eps_mode == "none":
        denom = var**power
    else:  # "outside"
        denom = var**power + eps
    return (x - mu) / denom


def _fwd(fixed_eps=None, **kw):
    def wrong(x, gamma, beta, eps):
        eps = eps if fixed_eps is None else fixed_eps
        return (gamma * _normalize(x, eps, **kw) + beta,)

    return wrong


#: Fixed eps values learners write into the function (PyTorch's, Keras's, "a small number").
FIXED_EPS = (1e-5, 1e-3, 1e-8)
_CASE_EPS = [spec[3] for spec in _CASE_SPECS]


def _wrong_only_x_hat(x, gamma, beta, eps):
    return (_normalize(x, eps),)


def _wrong_no_beta(x, gamma, beta, eps):
    return (gamma * _normalize(x, eps),)


def _wrong_no_gamma(x, gamma, beta, eps):
    return (_normalize(x, eps) + beta,)


def _wrong_swapped_gamma_beta(x, gamma, beta, eps):
    return (beta * _normalize(x, eps) + gamma,)


FORWARD_FIX = (
    "mu = x.mean(axis=0); var = x.var(axis=0) (biased, divide by N); "
    "x_hat = (x - mu) / np.sqrt(var + eps); out = gamma * x_hat + beta "
    "(Algorithm 1 of Ioffe & Szegedy; x_hat is z_norm in the lecture notation)."
)

FORWARD_MISTAKES = (
    Mistake(
        "unbiased_variance",
        "Looks like you used the unbiased variance (dividing by N - 1, ddof=1). Batch norm "
        "normalizes with the biased mini-batch variance, (1/N) * sum((x - mu)**2), which is "
        "numpy's default x.var(axis=0). Watch out: torch.var and pandas' .var() default to "
        "N - 1 (in torch pass unbiased=False / correction=0). With small batches the "
        "difference is several percent.",
        _fwd(ddof=1),
    ),
    Mistake(
        "missing_eps",
        "Looks like you divided by np.sqrt(var) without eps. eps keeps the division safe "
        "when a feature barely varies in the batch; here a feature with variance ~1e-3 and "
        "eps=1e-2 shows the difference. Use the eps argument: np.sqrt(var + eps).",
        _fwd(eps_mode="none"),
    ),
    *(Mistake("hard_coded_eps", hard_coded_eps(e, _CASE_EPS), _fwd(fixed_eps=e))
      for e in FIXED_EPS),
    Mistake(
        "eps_outside_sqrt",
        "Looks like you added eps outside the square root: np.sqrt(var) + eps. The "
        "formula is sqrt(var + eps); the two agree only when var is much larger than eps "
        "(try the case with eps=1e-2 and a feature of variance ~1e-3).",
        _fwd(eps_mode="outside"),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance (var + eps) instead of the standard "
        "deviation np.sqrt(var + eps). Then x_hat does not have unit variance: a feature "
        "with standard deviation 3 ends with 1/3. (A published formula makes this slip.)",
        _fwd(power=1.0),
    ),
    Mistake(
        "divides_by_variance",
        "Looks like you divided by the variance var instead of the standard deviation "
        "np.sqrt(var + eps) (and left out eps). Then x_hat does not have unit variance: a "
        "feature with standard deviation 3 ends with 1/3.",
        _fwd(power=1.0, eps_mode="none"),
    ),
    Mistake(
        "wrong_axis",
        "Looks like you computed mu and var per example (per row, axis=1) instead of per "
        "feature over the batch (per column, axis=0). Batch norm normalizes each feature "
        "across the N examples of the mini-batch; for x of shape (N, D), mu and var have "
        "shape (D,). (Normalizing each example over its features is layer norm.)",
        _fwd(axis=1),
    ),
    Mistake(
        "missing_axis",
        "Looks like you computed one mean and one variance over all entries (x.mean() "
        "without axis=...). Each feature needs its own statistics over the batch: pass "
        "axis=0 so mu and var have shape (D,).",
        _fwd(axis=None),
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you returned x_hat, the normalized values, without the learnable scale "
        "and shift. Batch norm's output is gamma * x_hat + beta: gamma and beta let the "
        "network undo the normalization if that helps (with gamma = sqrt(var + eps) and "
        "beta = mu it is the identity).",
        _wrong_only_x_hat,
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you applied gamma but forgot beta: the output is gamma * x_hat + beta.",
        _wrong_no_beta,
    ),
    Mistake(
        "ignores_gamma_beta",
        "Looks like you added beta but forgot to multiply by gamma: the output is "
        "gamma * x_hat + beta.",
        _wrong_no_gamma,
    ),
    Mistake(
        "swapped_gamma_beta",
        "Looks like you swapped gamma and beta (beta * x_hat + gamma). gamma is the scale, "
        "beta the shift: out = gamma * x_hat + beta. Check the order of your parameters "
        "too: the grader calls fn(x, gamma, beta, eps).",
        _wrong_swapped_gamma_beta,
    ),
)

FORWARD_HINT = (
    "Check each step on one column of a small x: the output's per-feature mean should be "
    "beta and its standard deviation about |gamma|."
)


grade_bn_forward = register_cases(
    "bn_forward_pass",
    "fn(x, gamma, beta, eps) -> out: batch norm forward pass for x of shape (N, D), "
    "gamma and beta of shape (D,) (chapter 2)",
    _forward_cases,
    arg_names=FORWARD_ARGS,
    output_names=("out",),
    mistakes=FORWARD_MISTAKES,
    fix=FORWARD_FIX,
    hint=FORWARD_HINT,
)


# ---- backward: classic mistakes, WRONG ON PURPOSE ---------------------------------------


def _stats(x, eps, *, ddof=0, use_eps=True):
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=ddof)
    inv_std = 1.0 / np.sqrt(var + eps if use_eps else var)
    return (x - mu) * inv_std, inv_std


def _compact_dx(g, x_hat, inv_std, *, axis=0, n_minus_1=False):
    """dx = inv_std * (g - mean(g) - x_hat * sum(g * x_hat) / M), M = N (or N - 1)."""
    divisor = g.shape[axis] - 1 if n_minus_1 else g.shape[axis]
    return inv_std * (
        g
        - g.mean(axis=axis, keepdims=True)
        - x_hat * (g * x_hat).sum(axis=axis, keepdims=True) / divisor
    )


def _bwd(*, dx="right", dgamma="right", dbeta="right", ddof=0, use_eps=True, n_minus_1=False,
         fixed_eps=None):
    def wrong(dout, x, gamma, eps):
        eps = eps if fixed_eps is None else fixed_eps
        x_hat, inv_std = _stats(x, eps, ddof=ddof, use_eps=use_eps)
        g = dout * gamma
        d_x = {
            "right": lambda: _compact_dx(g, x_hat, inv_std, n_minus_1=n_minus_1),
            "no_mean_terms": lambda: g * inv_std,
            "no_var_term": lambda: inv_std * (g - g.mean(axis=0)),
            "no_gamma": lambda: _compact_dx(dout, x_hat, inv_std),
            "axis1": lambda: _compact_dx(g, x_hat, inv_std, axis=1),
        }[dx]()
        d_gamma = {
            "right": lambda: (dout * x_hat).sum(axis=0),
            "sum_dout": lambda: dout.sum(axis=0),
            "mean": lambda: (dout * x_hat).mean(axis=0),
        }[dgamma]()
        d_beta = {
            "right": lambda: dout.sum(axis=0),
            "sum_dout_x_hat": lambda: (dout * x_hat).sum(axis=0),
            "mean": lambda: dout.mean(axis=0),
        }[dbeta]()
        return d_x, d_gamma, d_beta

    return wrong


BACKWARD_FIX = (
    "With x_hat = (x - mu) / np.sqrt(var + eps) (z_norm in the lecture notation): dbeta = dout.sum(axis=0); "
    "dgamma = (dout * x_hat).sum(axis=0); dx = gamma / np.sqrt(var + eps) * (dout - "
    "dout.mean(axis=0) - x_hat * (dout * x_hat).mean(axis=0))."
)

BACKWARD_MISTAKES = (
    Mistake(
        "dx_ignores_mean_terms",
        "Looks like dx = dout * gamma / np.sqrt(var + eps), as if mu and var were "
        "constants. They are not: both are computed from x, so every x_i also moves the "
        "batch mean and variance. Those two paths add two terms inside the bracket, before "
        "the division by np.sqrt(var + eps): dx = (g - mean(g) - x_hat * mean(g * x_hat)) / "
        "np.sqrt(var + eps) with g = dout * gamma and means over the batch (axis 0). A "
        "check: with them, dx sums to 0 over the batch for each feature.",
        _bwd(dx="no_mean_terms"),
    ),
    Mistake(
        "dx_ignores_var_term",
        "Looks like dx includes the path through mu but not the path through var: "
        "dx = gamma * (dout - mean(dout)) / np.sqrt(var + eps). The variance also depends "
        "on x and contributes -x_hat * mean(dout * x_hat) inside the bracket; with it, "
        "sum(dx * x_hat) is 0 per feature.",
        _bwd(dx="no_var_term"),
    ),
    Mistake(
        "missing_gamma_in_dx",
        "Looks like dx is missing the factor gamma. The gradient reaching x_hat is "
        "dout * gamma (out = gamma * x_hat + beta), so gamma multiplies every term of dx.",
        _bwd(dx="no_gamma"),
    ),
    Mistake(
        "unbiased_variance",
        "Looks like you recomputed the variance with N - 1 (ddof=1). The forward pass uses "
        "the biased variance x.var(axis=0) (divide by N), so the backward pass must use the "
        "same x_hat and 1 / np.sqrt(var + eps). (torch.var defaults to N - 1.)",
        _bwd(ddof=1),
    ),
    Mistake(
        "unbiased_variance",
        "Looks like you differentiated batch norm with the unbiased variance (N - 1). The "
        "forward pass uses the biased variance (divide by N), so its gradient has N, not "
        "N - 1.",
        _bwd(ddof=1, n_minus_1=True),
    ),
    Mistake(
        "missing_eps",
        "Looks like you used 1 / np.sqrt(var) without eps. The forward pass divides by "
        "np.sqrt(var + eps), so x_hat and the gradient must use the same eps.",
        _bwd(use_eps=False),
    ),
    *(Mistake("hard_coded_eps", hard_coded_eps(e, _CASE_EPS, "1 / np.sqrt(var + eps)"),
              _bwd(fixed_eps=e)) for e in FIXED_EPS),
    Mistake(
        "wrong_axis",
        "Looks like the mean terms in dx are taken per example (axis=1) instead of over "
        "the batch (axis=0). mu and var are per-feature averages over the N examples, so "
        "their gradient terms are averages over axis 0 too.",
        _bwd(dx="axis1"),
    ),
    Mistake(
        "missing_xhat_in_dgamma",
        "Looks like dgamma = dout.sum(axis=0), which is dbeta. gamma multiplies x_hat "
        "(out = gamma * x_hat + beta), so its gradient is (dout * x_hat).sum(axis=0).",
        _bwd(dgamma="sum_dout"),
    ),
    Mistake(
        "dgamma_dbeta_swapped",
        "Looks like dgamma and dbeta are swapped: dgamma = (dout * x_hat).sum(axis=0) "
        "because gamma multiplies x_hat, and dbeta = dout.sum(axis=0). Return them in the "
        "order (dx, dgamma, dbeta).",
        _bwd(dgamma="sum_dout", dbeta="sum_dout_x_hat"),
    ),
    Mistake(
        "mean_instead_of_sum",
        "Looks like you averaged over the batch where the gradient needs a sum. gamma and "
        "beta are shared by all N examples, so their gradients add up the contributions: "
        "dgamma = (dout * x_hat).sum(axis=0), dbeta = dout.sum(axis=0).",
        _bwd(dgamma="mean", dbeta="mean"),
    ),
)

BACKWARD_HINT = (
    "Compare with a numerical gradient on one entry, and check the structure: per feature "
    "dx.sum(axis=0) is 0, and (dx * x_hat).sum(axis=0) is small (exactly 0 only when eps = 0)."
)


def _diagnose_backward_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    n, d = case.args[1].shape
    if name in ("dgamma", "dbeta") and got in ((n,), (n, 1)):
        return (
            "wrong_axis",
            f"{name} has shape {got}: one value per example, so you summed over the "
            f"features (axis=1). gamma and beta have one entry per feature, shape ({d},): sum "
            f"over the batch, axis=0.",
        )
    if name in ("dgamma", "dbeta") and got == (1, d):
        return (
            "wrong_shape",
            f"{name} has shape {got}, expected ({d},), the shape of gamma: drop "
            f"keepdims=True or reshape with .reshape(-1).",
        )
    return None


# Each of dx, dgamma and dbeta is compared on its own; the feedback says which are wrong.
grade_bn_backward = register_cases(
    "bn_backward_pass",
    "fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta): batch norm backward pass for x of "
    "shape (N, D) (chapter 2)",
    _backward_cases,
    arg_names=BACKWARD_ARGS,
    output_names=BACKWARD_OUTPUTS,
    mistakes=BACKWARD_MISTAKES,
    fix=BACKWARD_FIX,
    hint=BACKWARD_HINT,
    diagnose_shape=_diagnose_backward_shape,
)
