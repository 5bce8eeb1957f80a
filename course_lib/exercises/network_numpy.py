r"""Chapter 9 exercises: a network with batch norm in numpy, layer by layer, then whole.

- ``affine_layer``: ``(affine_forward, affine_backward)``, a pair: ``forward(A, W, b) ->
  (Z, cache)`` with ``Z = A W^T + b``, ``backward(dZ, cache) -> (dA, dW, db)``
- ``relu_layer``: ``(relu_forward, relu_backward)``: ``forward(Z) -> (A, cache)``,
  ``backward(dA, cache) -> dZ``
- ``softmax_loss``: ``fn(scores, y) -> (loss, dscores)``, the mean cross-entropy
- ``bn_running``: ``fn(z, gamma, beta, running_mean, running_var, training, momentum, eps) ->
  (out, new_running_mean, new_running_var)``, batch norm in a network, in both modes
- ``network_loss``: ``fn(params, X, y) -> (loss, grads)``, the whole network in training mode
- ``central_difference``: ``fn(f, p, h) -> grad``, the numerical gradient of a scalar ``f(p)``
- ``momentum_update``: ``fn(params, grads, velocity, lr, beta_avg) -> (new_params,
  new_velocity)``, one step of gradient descent with momentum (lecture's form)
- ``train_one_epoch``: ``fn(params, velocity, running, X, y, order, batch_size, lr, beta_avg)
  -> (params, velocity, running, losses)``, one epoch of the training loop

A layer is graded as a pair, because its cache is the contract between its two halves: the
grader runs the learner's forward on a case, then the forward once more on other inputs of
the same shape (a decoy), then the backward with the first cache. A backward that reads a
global (the last input) instead of its cache answers for the decoy, and the feedback says so.

References are :mod:`course_lib.layers`, :mod:`course_lib.numpy_net`,
:mod:`course_lib.running_stats` and :mod:`course_lib.gradcheck`: one implementation per
formula. Functions prefixed ``_wrong_`` are WRONG ON PURPOSE (classic mistakes to recognize).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable

import numpy as np

from .. import numpy_net
from ..batchnorm import bn_backward
from ..gradcheck import centered_difference
from ..layers import (affine_backward, affine_forward, relu_backward, relu_forward,
                      softmax_cross_entropy)
from ..running_stats import running_stats_step
from ._compare import type_name
from ._core import (Case, Feedback, Mistake, Problem, _check_signature, read_outputs,
                    register, run_cases)

__all__ = ["grade_affine_layer", "grade_relu_layer", "grade_softmax_loss",
           "grade_bn_running", "grade_network_loss", "grade_central_difference",
           "grade_momentum_update", "grade_train_one_epoch"]


class _Refused:
    """What a wrapped submission returns instead of raising, for the read hook to explain."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _reader(output_names, diagnose_shape=None, prepare=None):
    """A read hook: a refusal becomes its Problem; ``prepare(value, case)`` may turn the
    value into a tuple of arrays (or a Problem); then the default reading."""
    default = read_outputs(output_names, diagnose_shape)

    def read(value: Any, case: Case):
        if isinstance(value, _Refused):
            return value.problem
        if prepare is not None:
            value = prepare(value, case)
            if isinstance(value, Problem):
                return value
        return default(value, case)

    return read


def _as_scalar_array(value: Any) -> Any:
    """A loss returned as a Python or numpy number, as a 0-d float array (else unchanged)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return np.array(float(value))
    if isinstance(value, np.ndarray) and value.shape in ((), (1,)) and value.dtype.kind == "f":
        return np.array(float(value.reshape(())))
    return value


def _pair_problem(submission: Any, names: tuple[str, str], arities: tuple[int, int]):
    """Why ``submission`` is not a ``(forward, backward)`` pair of functions, or None."""
    want = f"the pair ({names[0]}, {names[1]}), e.g. check(exercise, ({names[0]}, {names[1]}))"
    if not isinstance(submission, (tuple, list)) or len(submission) != 2:
        return Problem("wrong_type", f"This exercise grades a layer's two halves together: "
                       f"pass {want}, not a {type_name(submission)}.")
    for fn, name, arity in zip(submission, names, arities):
        if not callable(fn):
            return Problem("wrong_type", f"{name} should be a function, got "
                           f"{type_name(fn)}: pass {want}, without calling them.")
        try:
            inspect.signature(fn).bind(*range(arity))
        except TypeError:
            return Problem("wrong_signature", f"{name} must take {arity} positional "
                           f"argument{'s' if arity > 1 else ''}; check its definition.")
        except ValueError:  # no signature to read: just call it
            pass
    return None


def _split_forward(value: Any, name: str) -> tuple[Any, Any] | _Refused:
    if not isinstance(value, tuple) or len(value) != 2:
        return _Refused(Problem("wrong_type", f"{name} must return a pair (out, cache), got "
                                f"{type_name(value)}: the backward pass needs the cache."))
    return value


def _grade_pair(submission: Any, names: tuple[str, str], arities: tuple[int, int],
                combined: Callable, **options: Any) -> Feedback:
    """Grade a (forward, backward) pair: ``combined(fwd, bwd)`` is the function ``run_cases``
    calls; a submission that is no pair is refused with a message."""
    problem = _pair_problem(submission, names, arities)
    if problem is not None:
        return Feedback(False, problem.message, problem.mistake)
    fwd, bwd = submission
    return run_cases(combined(fwd, bwd), **options)


# ============================================================== affine layer


def _affine_inputs(seed: int, m: int, n_in: int, n_out: int):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(m, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out),
            rng.normal(size=(m, n_out)))


_AFFINE_SPECS = [(0, 6, 4, 3), (1, 5, 3, 7), (2, 6, 4, 3), (3, 2, 5, 4)]


def _affine_cases() -> list[Case]:
    cases = []
    for seed, m, n_in, n_out in _AFFINE_SPECS:
        A, W, b, dZ = _affine_inputs(seed, m, n_in, n_out)
        Z, cache = affine_forward(A, W, b)
        cases.append(Case(f"A {A.shape}, W {W.shape}", (A, W, b, dZ),
                          (Z, *affine_backward(dZ, cache))))
    return cases


def _decoy(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Other inputs of the same shapes (for the second, decoy forward pass)."""
    return tuple(1.5 * a[::-1].copy() - 0.25 for a in arrays)


def _affine_combined(fwd, bwd):
    def affine_layer(A, W, b, dZ):
        first = _split_forward(fwd(A, W, b), "affine_forward")
        if isinstance(first, _Refused):
            return first
        fwd(*_decoy(A, W, b))                       # a backward must use its own cache
        dA, dW, db = _three(bwd(dZ, first[1]), "affine_backward", "(dA, dW, db)")
        return first[0], dA, dW, db

    return affine_layer


def _three(value: Any, name: str, what: str) -> tuple:
    if not isinstance(value, tuple) or len(value) != 3:
        raise TypeError(f"{name} must return a tuple {what}, got {type_name(value)}")
    return value


def _wrong_affine(*, dW="right", db="right", decoy=False):
    def wrong(A, W, b, dZ):
        Z = A @ W.T + b
        A_used, W_used = _decoy(A, W, b)[:2] if decoy else (A, W)
        d_A = dZ @ W_used
        d_W = {"right": lambda: dZ.T @ A_used, "mean": lambda: dZ.T @ A_used / len(A)}[dW]()
        d_b = {"right": lambda: dZ.sum(axis=0), "mean": lambda: dZ.mean(axis=0)}[db]()
        return Z, d_A, d_W, d_b

    return wrong


AFFINE_MISTAKES = (
    Mistake(
        "cache_not_used",
        "Your backward pass answered for the last forward pass, not for the cache it was "
        "given: the grader ran affine_forward a second time on other inputs before calling "
        "affine_backward with the first cache. Read A and W from the cache argument, never "
        "from a global variable: in a network every layer, and every mini-batch, has its own.",
        _wrong_affine(decoy=True),
    ),
    Mistake(
        "mean_instead_of_sum",
        "Looks like dW and db are averaged over the mini-batch. The loss is already a mean "
        "(its gradient dZ carries the 1/m), so each parameter's gradient is the sum of the "
        "examples' contributions: dW = dZ.T @ A, db = dZ.sum(axis=0).",
        _wrong_affine(dW="mean", db="mean"),
    ),
)

AFFINE_FIX = ("forward: Z = A @ W.T + b, cache = (A, W); backward: dA = dZ @ W, "
              "dW = dZ.T @ A, db = dZ.sum(axis=0).")


def _diagnose_affine_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    A, W = case.args[0], case.args[1]
    m, (n_out, n_in) = A.shape[0], W.shape
    if name == "dW" and got == (n_in, n_out):
        return ("dW_transposed", f"dW has shape {got}, the transpose of W's {W.shape}: "
                "a gradient has the shape of its parameter. With Z = A @ W.T, dW = dZ.T @ A.")
    if name == "dW" and got == (n_out, n_out):
        return ("cache_holds_output", f"dW has shape {got}: it looks like the cache holds "
                "the layer's output Z where the backward pass needs its input A "
                "(dW = dZ.T @ A). Cache what the gradient formulas read: A and W.")
    if name == "dA" and got == (m, n_out):
        return ("cache_holds_output", f"dA has shape {got}, the shape of Z, not of A "
                f"{A.shape}: dA = dZ @ W (with W of shape (n_out, n_in)).")
    if name == "db" and got == (m,):
        return ("wrong_axis", f"db has shape {got}, one value per example: sum dZ over the "
                "examples, axis=0, for one value per unit.")
    return None


@register(
    "affine_layer",
    "(forward, backward): forward(A, W, b) -> (Z, cache) with Z = A W^T + b, "
    "backward(dZ, cache) -> (dA, dW, db) (chapter 9)",
)
def grade_affine_layer(submission: Any) -> Feedback:
    """Grade the pair ``(affine_forward, affine_backward)``."""
    names = ("Z", "dA", "dW", "db")
    return _grade_pair(
        submission, ("affine_forward", "affine_backward"), (3, 2), _affine_combined,
        cases=_affine_cases(), arg_names=("A", "W", "b", "dZ"), output_names=names,
        mistakes=AFFINE_MISTAKES, fix=AFFINE_FIX,
        hint="Check the shapes: dA like A (m, n_in), dW like W (n_out, n_in), db like b.",
        read=_reader(names, _diagnose_affine_shape))


# ============================================================== ReLU layer


def _relu_cases() -> list[Case]:
    cases = []
    for seed, shape in ((0, (5, 4)), (1, (3, 6)), (2, (5, 4))):
        rng = np.random.default_rng(seed)
        Z = np.round(rng.normal(size=shape), 1)      # rounding puts exact zeros in Z
        Z[0, 0] = 0.0
        dA = rng.normal(size=shape)
        A, cache = relu_forward(Z)
        cases.append(Case(f"Z {Z.shape}", (Z, dA), (A, relu_backward(dA, cache))))
    return cases


def _relu_combined(fwd, bwd):
    def relu_layer(Z, dA):
        first = _split_forward(fwd(Z), "relu_forward")
        if isinstance(first, _Refused):
            return first
        fwd(*_decoy(Z))
        return first[0], bwd(dA, first[1])

    return relu_layer


def _wrong_relu(mask):
    def wrong(Z, dA):
        return np.maximum(Z, 0.0), {
            "decoy": lambda: dA * (_decoy(Z)[0] > 0),
            "zero": lambda: dA * (Z >= 0),
            "gradient": lambda: dA * (dA > 0),
            "times_output": lambda: dA * np.maximum(Z, 0.0),
        }[mask]()

    return wrong


RELU_MISTAKES = (
    Mistake("cache_not_used",
            "Your backward pass used the input of the last forward pass, not the cache it was "
            "given (the grader ran relu_forward again on other inputs in between). Keep Z in "
            "the cache and read it from there.", _wrong_relu("decoy")),
    Mistake("gradient_at_zero",
            "Where Z is exactly 0 your gradient passes (Z >= 0). ReLU's slope there is taken "
            "as 0, as in torch: use Z > 0. (Rare with real data, common after rounding.)",
            _wrong_relu("zero")),
    Mistake("mask_from_gradient",
            "Looks like the mask is dA > 0, the sign of the incoming gradient. What decides "
            "whether the gradient passes is the unit's input: dZ = dA * (Z > 0), with Z from "
            "the cache.", _wrong_relu("gradient")),
    Mistake("times_output",
            "Looks like dZ = dA * A (or dA * Z where positive): the gradient is multiplied by "
            "the activation. ReLU's slope is 1 where Z > 0 and 0 elsewhere: dZ = dA * (Z > 0).",
            _wrong_relu("times_output")),
)


@register(
    "relu_layer",
    "(forward, backward): forward(Z) -> (A, cache) with A = max(0, Z), "
    "backward(dA, cache) -> dZ (chapter 9)",
)
def grade_relu_layer(submission: Any) -> Feedback:
    """Grade the pair ``(relu_forward, relu_backward)``."""
    return _grade_pair(
        submission, ("relu_forward", "relu_backward"), (1, 2), _relu_combined,
        cases=_relu_cases(), arg_names=("Z", "dA"), output_names=("A", "dZ"),
        mistakes=RELU_MISTAKES, read=_reader(("A", "dZ")),
        fix="forward: A = np.maximum(Z, 0), cache = Z; backward: dZ = dA * (Z > 0).")


# ============================================================== softmax cross-entropy


def _softmax_cases() -> list[Case]:
    cases = []
    # The last case's scores are near 800: np.exp overflows unless the max is subtracted.
    for seed, m, k, offset in ((0, 6, 4, 0.0), (1, 5, 3, 1.0), (2, 6, 4, -2.0), (3, 4, 5, 800.0)):
        rng = np.random.default_rng(seed)
        scores, y = offset + 2 * rng.normal(size=(m, k)), rng.integers(0, k, size=m)
        loss, dscores = softmax_cross_entropy(scores, y)
        cases.append(Case(f"scores {scores.shape}" + (", near 800" if offset > 100 else ""),
                          (scores, y), (np.array(loss), dscores)))
    return cases


def _log_softmax(scores, axis=1):
    shifted = scores - scores.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _wrong_softmax(*, loss="mean", grad="right", axis=1):
    def wrong(scores, y):
        m = len(y)
        log_p = _log_softmax(scores, axis)
        one_hot = np.eye(scores.shape[1])[y]
        total = -log_p[np.arange(m), y].sum()
        d = np.exp(log_p) - (0 if grad == "no_one_hot" else one_hot)
        return (np.array(total / m if loss == "mean" else total),
                d if grad == "not_averaged" else d / m)

    return wrong


SOFTMAX_MISTAKES = (
    Mistake("not_averaged",
            "Looks like the loss and its gradient are sums over the mini-batch, not means. The "
            "cost J is the average of the examples' losses (1/m), so dscores = (p - Y) / m.",
            _wrong_softmax(loss="sum", grad="not_averaged")),
    Mistake("gradient_not_averaged",
            "The loss is right, but dscores is p - Y without the 1/m of the mean: "
            "dscores = (p - Y) / m.", _wrong_softmax(grad="not_averaged")),
    Mistake("loss_not_averaged",
            "dscores is right, but the loss is the sum of the examples' losses; J is their "
            "mean.", _wrong_softmax(loss="sum")),
    Mistake("missing_one_hot",
            "Looks like dscores = p / m, the softmax without subtracting the one-hot labels Y: "
            "the gradient of -log p_y with respect to the scores is p - Y.",
            _wrong_softmax(grad="no_one_hot")),
    Mistake("softmax_wrong_axis",
            "Looks like the softmax normalizes over the examples (axis 0) instead of over the "
            "classes of each example (axis 1, keepdims=True).", _wrong_softmax(axis=0)),
)


def _softmax_prepare(value: Any, case: Case) -> Any:
    if isinstance(value, tuple) and len(value) == 2:
        loss, d = _as_scalar_array(value[0]), value[1]
        large = np.abs(case.args[0]).max() > 100
        bad = [not np.all(np.isfinite(v)) for v in (loss, d) if isinstance(v, np.ndarray)
               and v.dtype.kind == "f"]
        if large and any(bad):
            return Problem("overflow", "With scores near 800 your result is inf or "
                           "NaN: np.exp(800) overflows. Subtract each row's largest score "
                           "first (scores - scores.max(axis=1, keepdims=True)): the softmax "
                           "does not change, and exp never exceeds 1.")
        return (loss, d)
    return value


@register(
    "softmax_loss",
    "fn(scores, y) -> (loss, dscores): mean softmax cross-entropy and its gradient (chapter 9)",
)
def grade_softmax_loss(submission: Any) -> Feedback:
    """Grade ``softmax_loss(scores, y) -> (loss, dscores)``."""
    return run_cases(submission, cases=_softmax_cases(), arg_names=("scores", "y"),
                     output_names=("loss", "dscores"), mistakes=SOFTMAX_MISTAKES,
                     fix="Subtract each row's max; log_p = shifted - log(sum(exp(shifted))); "
                         "loss = -log_p[range(m), y].mean(); dscores = (exp(log_p) - Y) / m.",
                     hint="Check one example by hand: the gradient row sums to 0.",
                     read=_reader(("loss", "dscores"), prepare=_softmax_prepare))



# ============================================================== batch norm with running stats

BN_RUNNING_ARGS = ("z", "gamma", "beta", "running_mean", "running_var", "training",
                   "momentum", "eps")
BN_RUNNING_OUTPUTS = ("out", "new_running_mean", "new_running_var")

# (seed, m, D, training, momentum, eps)
_BN_SPECS = [
    (0, 8, 5, True, 0.1, 1e-5),
    (1, 6, 3, False, 0.1, 1e-2),
    (2, 8, 5, True, 0.3, 1e-2),     # case 1's shapes, other data: a cache shows
    (3, 6, 3, False, 0.3, 1e-5),
    (4, 5, 4, True, 0.1, 1e-1),
]


def _bn_reference(z, gamma, beta, running_mean, running_var, training, momentum, eps):
    running = {"mean1": running_mean.copy(), "var1": running_var.copy()}
    out, _ = numpy_net.bn_layer(z, gamma, beta, running, 1, training, momentum, eps)
    return out, running["mean1"], running["var1"]


def _bn_cases() -> list[Case]:
    cases = []
    for seed, m, d, training, momentum, eps in _BN_SPECS:
        rng = np.random.default_rng(seed)
        z = rng.uniform(-3, 3, size=d) + rng.uniform(0.5, 3, size=d) * rng.normal(size=(m, d))
        gamma, beta = rng.uniform(0.5, 2, size=d), rng.uniform(-1, 1, size=d)
        rm, rv = rng.uniform(-2, 2, size=d), rng.uniform(0.5, 4, size=d)
        args = (z, gamma, beta, rm, rv, training, momentum, eps)
        label = (f"z {z.shape}, {'training' if training else 'evaluation'}, "
                 f"momentum={momentum}, eps={eps:g}")
        cases.append(Case(label, args, _bn_reference(*args)))
    return cases


def _wrong_bn(*, eval_stats="running", eval_update=False, train_stats="batch",
              train_update="right"):
    def wrong(z, gamma, beta, rm, rv, training, momentum, eps):
        mu, var, m = z.mean(axis=0), z.var(axis=0), z.shape[0]
        new = {"right": lambda: running_stats_step(rm, rv, mu, var, m, momentum),
               "biased": lambda: (rm + momentum * (mu - rm), rv + momentum * (var - rv)),
               "flipped": lambda: running_stats_step(rm, rv, mu, var, m, 1 - momentum),
               "none": lambda: (rm, rv)}
        if training:
            stats = (mu, var) if train_stats == "batch" else (rm, rv)
            mean, variance = new[train_update]()
        else:
            stats = (mu, var) if eval_stats == "batch" else (rm, rv)
            mean, variance = new["right"]() if eval_update else (rm, rv)
        out = gamma * (z - stats[0]) / np.sqrt(stats[1] + eps) + beta
        return out, mean, variance

    return wrong


BN_RUNNING_MISTAKES = (
    Mistake("ignores_training_flag",
            "Looks like your layer computes the training-mode result in evaluation too: it "
            "normalizes with the batch's statistics and updates the running averages. At test "
            "time (training=False) normalize with running_mean and running_var and return "
            "them unchanged; the prediction for an example must not depend on its batch.",
            _wrong_bn(eval_stats="batch", eval_update=True)),
    Mistake("batch_stats_at_test_time",
            "In evaluation (training=False) your layer normalizes with the batch's own mean "
            "and variance. At test time there may be one example, and its prediction must not "
            "depend on the others: use running_mean and running_var.",
            _wrong_bn(eval_stats="batch")),
    Mistake("updates_running_in_eval",
            "In evaluation (training=False) your layer updates the running statistics. "
            "Evaluation must change nothing: return running_mean and running_var as they "
            "came (the classic consequence of forgetting model.eval()).",
            _wrong_bn(eval_update=True)),
    Mistake("running_used_in_training",
            "In training your layer normalizes with the running statistics. Training mode "
            "normalizes each mini-batch with its own mean and biased variance (that is batch "
            "norm); the running averages are only updated.",
            _wrong_bn(train_stats="running")),
    Mistake("running_not_updated",
            "In training your layer returns the running statistics unchanged: update them "
            "with the batch's statistics, (1 - momentum) * running + momentum * batch.",
            _wrong_bn(train_update="none")),
    Mistake("momentum_flipped",
            "Looks like momentum weights the old value: momentum * running + (1 - momentum) * "
            "batch. In PyTorch's convention (this exercise's), momentum = 0.1 is the weight of "
            "the NEW batch: (1 - momentum) * running + momentum * batch (the lecture's beta = "
            "0.9 is 1 - momentum).", _wrong_bn(train_update="flipped")),
    Mistake("biased_running_var",
            "The running variance gets the biased batch variance. PyTorch's running_var (this "
            "exercise's convention) averages the unbiased one, var * m / (m - 1), while the "
            "normalization itself uses the biased one.", _wrong_bn(train_update="biased")),
)


@register(
    "bn_running",
    "fn(z, gamma, beta, running_mean, running_var, training, momentum, eps) -> (out, "
    "new_running_mean, new_running_var): batch norm in a network, both modes (chapter 9)",
)
def grade_bn_running(submission: Any) -> Feedback:
    """Grade batch norm with its running statistics, in training and evaluation mode."""
    return run_cases(
        submission, cases=_bn_cases(), arg_names=BN_RUNNING_ARGS,
        output_names=BN_RUNNING_OUTPUTS, mistakes=BN_RUNNING_MISTAKES,
        fix="training: out from the batch's mean and biased variance (chapter 2's forward); "
            "new_running_mean = (1 - momentum) * running_mean + momentum * mu, "
            "new_running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1). "
            "evaluation: out = gamma * (z - running_mean) / np.sqrt(running_var + eps) + beta, "
            "running statistics returned unchanged.",
        hint="Test both modes on a small z by hand; in evaluation, a batch of one example "
             "must give the same output for it as any larger batch.",
    )


# ============================================================== the whole network

_NET_SIZES = [(0, [6, 5, 4, 3], 8), (1, [4, 7, 3, 5], 6), (2, [6, 5, 4, 3], 8)]
_NET_PARAM_NAMES = ("W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3")
NET_OUTPUTS = ("loss",) + tuple(f"d{name}" for name in _NET_PARAM_NAMES)


def _net_cases() -> list[Case]:
    cases = []
    for seed, sizes, m in _NET_SIZES:
        rng = np.random.default_rng(seed)
        params = {k: v + 0.3 * rng.normal(size=v.shape)
                  for k, v in numpy_net.init_params(sizes, bn=True, seed=seed).items()}
        X = rng.normal(1.0, 2.0, size=(m, sizes[0]))
        y = rng.integers(0, sizes[-1], size=m)
        loss, grads = numpy_net.net_loss(params, X, y)
        cases.append(Case(f"sizes {sizes}, X {X.shape}", (params, X, y),
                          (np.array(loss), *(grads[k] for k in _NET_PARAM_NAMES))))
    return cases


def _bn_backward_constant_stats(dz_tilde, cache):
    _, dgamma, dbeta = bn_backward(dz_tilde, cache)
    return dz_tilde * cache.gamma * cache.inv_std, dgamma, dbeta


def _bn_backward_skipped(dz_tilde, cache):
    _, dgamma, dbeta = bn_backward(dz_tilde, cache)
    return dz_tilde, dgamma, dbeta


def _wrong_net(*, bn_grad=bn_backward, summed=False):
    def wrong(params, X, y):
        scores, caches = numpy_net.net_forward(params, X, None, training=True)
        loss, dscores = softmax_cross_entropy(scores, y)
        m = len(y) if summed else 1
        grads = numpy_net.net_backward(dscores * m, caches, bn_grad)
        return (np.array(loss * m), *(grads[k] for k in _NET_PARAM_NAMES))

    return wrong


NET_MISTAKES = (
    Mistake("bn_backward_ignores_batch_stats",
            "The gradients of the layers below batch norm are off: it looks like batch norm's "
            "backward treats mu and sigma^2 as constants (dz = dz_tilde * gamma / sqrt(var + "
            "eps)). They are computed from the mini-batch, so every z also moves them: use "
            "chapter 2's backward, course_lib.batchnorm.bn_backward (or your own from "
            "chapter 2).", _wrong_net(bn_grad=_bn_backward_constant_stats)),
    Mistake("bn_backward_skipped",
            "The gradients of the layers below batch norm are off: it looks like the gradient "
            "passes batch norm unchanged (dz = dz_tilde). Run batch norm's backward pass on "
            "the way down: dz, dgamma, dbeta = bn_backward(dz_tilde, bn_cache).",
            _wrong_net(bn_grad=_bn_backward_skipped)),
    Mistake("not_averaged",
            "The loss and every gradient are m times too large: the cost is the mean of the "
            "examples' losses, so dscores carries a 1/m.", _wrong_net(summed=True)),
)


def _net_prepare(value: Any, case: Case) -> Any:
    if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[1], dict):
        return Problem("wrong_type", f"Return a pair (loss, grads) with grads a dict of the "
                       f"parameters' gradients by name; got {type_name(value)}.")
    loss, grads = value
    params = case.args[0]
    extra_bias = sorted(k for k in grads if k.startswith("b") and k[1:].isdigit()
                        and f"gamma{k[1:]}" in params)
    if extra_bias:
        return Problem("bias_before_bn", f"Your grads has {', '.join(extra_bias)}: a bias in "
                       "a layer followed by batch norm. Batch norm subtracts the batch mean, "
                       "which cancels any constant b (its gradient is exactly 0), and beta "
                       "takes its place: leave the bias out of every layer before batch norm "
                       "(affine_forward(A, W, None)).")
    missing = [k for k in _NET_PARAM_NAMES if k not in grads]
    if missing:
        return Problem("missing_gradient", f"grads has no {', '.join(missing)}: every "
                       "parameter gets a gradient, gamma and beta included (from batch "
                       "norm's backward pass).")
    return (_as_scalar_array(loss), *(grads[k] for k in _NET_PARAM_NAMES))


def _missing_bias_guard(submission: Callable) -> Callable:
    """The submission, with a KeyError for a bias before batch norm turned into feedback."""

    def network_loss(params, X, y):
        try:
            return submission(params, X, y)
        except KeyError as exc:
            key = exc.args[0] if exc.args else None
            if isinstance(key, str) and key.startswith("b") and key[1:].isdigit():
                return _Refused(Problem(
                    "bias_before_bn", f"Your network looked up params[{key!r}], a bias for "
                    f"layer {key[1:]}, which is followed by batch norm: the grader's network "
                    "has none. Batch norm subtracts the batch mean and cancels the bias, and "
                    f"beta{key[1:]} takes its place: call affine_forward(A, W, None) there."))
            raise

    return network_loss


@register(
    "network_loss",
    "fn(params, X, y) -> (loss, grads): the network's loss in training mode and the dict of "
    "every parameter's gradient (chapter 9)",
)
def grade_network_loss(submission: Any) -> Feedback:
    """Grade the whole network: forward with batch norm, loss, and backward."""
    problem = _check_signature(submission, (None, None, None), "fn(params, X, y)")
    if problem is not None:
        return Feedback(False, problem.message, problem.mistake)
    return run_cases(
        _missing_bias_guard(submission), cases=_net_cases(), arg_names=("params", "X", "y"),
        output_names=NET_OUTPUTS, mistakes=NET_MISTAKES,
        read=_reader(NET_OUTPUTS, prepare=_net_prepare),
        fix="Forward: for l < L, Z = A W^T, batch norm (training mode), ReLU, caching each; "
            "the output layer Z = A W^T + b; loss and dscores from softmax_loss. Backward in "
            "reverse: affine, then for each hidden layer ReLU, batch norm, affine.",
        hint="Run the whole-network gradient check on it: the parameter with the largest "
             "relative error points at the layer to fix.",
    )


# ============================================================== numerical gradient


def _f_cubic(p: np.ndarray) -> float:
    return float(np.sum(p**3) / 3 + np.sum(np.sin(2 * p)))


def _f_products(p: np.ndarray) -> float:
    flat = p.ravel()
    return float(np.sum(flat[:-1] * flat[1:]) + np.sum(np.exp(0.5 * flat)))


def _cd_reference(f, p, h):
    p = p.copy()
    return centered_difference(lambda: np.array(f(p)), p, np.array(1.0), h)


_CD_SPECS = [(0, (3, 4), _f_cubic, 1e-5), (1, (5,), _f_products, 1e-3),
             (2, (3, 4), _f_cubic, 1e-2), (3, (2, 3), _f_products, 1e-2)]


def _cd_cases() -> list[Case]:
    cases = []
    for seed, shape, f, h in _CD_SPECS:
        p = np.random.default_rng(seed).normal(size=shape)
        cases.append(Case(f"p {p.shape}, h={h:g}", (f, p, h), (_cd_reference(f, p, h),)))
    return cases


def _wrong_cd(kind):
    def wrong(f, p, h):
        p = p.copy()
        grad = np.zeros_like(p)
        if kind == "all_at_once":
            return (np.full_like(p, (f(p + h) - f(p - h)) / (2 * h)),)
        for k in np.ndindex(p.shape):
            saved = p[k]
            p[k] = saved + h
            plus = f(p)
            p[k] = saved - h
            minus = f(p)
            p[k] = saved
            base = f(p)
            grad[k] = {"one_sided": (plus - base) / h, "missing_2": (plus - minus) / h}[kind]
        return (grad,)

    return wrong


CD_MISTAKES = (
    Mistake("one_sided",
            "Looks like a one-sided difference, (f(p + h) - f(p)) / h. Its error shrinks only "
            "like h; the centered one, (f(p + h) - f(p - h)) / (2h), like h^2, which is what "
            "makes a gradient check in float64 reach relative errors of 1e-8.",
            _wrong_cd("one_sided")),
    Mistake("missing_2",
            "Your numbers are twice the gradient: the two points p + h and p - h are 2h apart, "
            "so divide by 2 * h.", _wrong_cd("missing_2")),
    Mistake("all_at_once",
            "Every entry of your gradient is the same number: it looks like you moved all of p "
            "at once (p + h). Nudge one entry at a time (np.ndindex(p.shape)), so each entry "
            "of the gradient measures that entry's effect alone.", _wrong_cd("all_at_once")),
)


def _restore_guard(submission: Callable) -> Callable:
    """The submission, with a p left perturbed turned into feedback (round-off is allowed)."""

    def central_difference(f, p, h):
        saved = p.copy()
        grad = submission(f, p, h)
        same = (isinstance(p, np.ndarray) and p.shape == saved.shape
                and np.allclose(p, saved, rtol=1e-12, atol=1e-14))
        if not same:
            return _Refused(Problem(
                "p_not_restored", "After your function, p is not what it was: an entry was "
                "left nudged. Keep the entry's value (saved = p[k]) and put it back "
                "(p[k] = saved) after the two evaluations; otherwise every later entry, and "
                "the caller, sees a perturbed p."))
        p[...] = saved       # undo round-off, so the grader's own check sees p unchanged
        return grad

    return central_difference


@register(
    "central_difference",
    "fn(f, p, h) -> grad: centered differences of the scalar f(p), one entry of p at a time "
    "(chapter 9)",
)
def grade_central_difference(submission: Any) -> Feedback:
    """Grade the numerical gradient by centered differences."""
    problem = _check_signature(submission, (None, None, None), "fn(f, p, h)")
    if problem is not None:
        return Feedback(False, problem.message, problem.mistake)
    return run_cases(
        _restore_guard(submission), cases=_cd_cases(), arg_names=("f", "p", "h"),
        output_names=("grad",), mistakes=CD_MISTAKES, read=_reader(("grad",)),
        fix="grad = np.zeros_like(p); for k in np.ndindex(p.shape): saved = p[k]; "
            "p[k] = saved + h; plus = f(p); p[k] = saved - h; minus = f(p); p[k] = saved; "
            "grad[k] = (plus - minus) / (2 * h).",
        hint="Try f(p) = np.sum(p**2), whose gradient is 2p.",
    )


# ============================================================== the optimizer step

_STEP_NAMES = ("W1", "gamma1", "beta1", "W2", "b2")
STEP_OUTPUTS = _STEP_NAMES + tuple(f"v_{k}" for k in _STEP_NAMES)


def _step_cases() -> list[Case]:
    cases = []
    for seed, n_in, d, n_out, lr, beta_avg, first in ((0, 5, 4, 3, 0.1, 0.9, True),
                                                      (1, 3, 6, 2, 0.5, 0.8, False),
                                                      (2, 5, 4, 3, 0.2, 0.9, False)):
        rng = np.random.default_rng(seed)
        params = {k: v + 0.3 * rng.normal(size=v.shape) for k, v in
                  numpy_net.init_params([n_in, d, n_out], bn=True, seed=seed).items()}
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        velocity = {k: (np.zeros_like(v) if first else rng.normal(size=v.shape))
                    for k, v in params.items()}
        new_p, new_v = numpy_net.momentum_step(params, grads, velocity, lr, beta_avg)
        label = (f"{'first step' if first else 'later step'}, lr={lr}, "
                 f"beta_avg={beta_avg}, hidden width {d}")
        cases.append(Case(label, (params, grads, velocity, lr, beta_avg),
                          tuple(new_p[k] for k in _STEP_NAMES)
                          + tuple(new_v[k] for k in _STEP_NAMES)))
    return cases


def _wrong_step(kind):
    def wrong(params, grads, velocity, lr, beta_avg):
        new_p, new_v = {}, {}
        for k, p in params.items():
            g, v = grads[k], velocity[k]
            v_new = {"torch": beta_avg * v + g, "none": g}.get(
                kind, beta_avg * v + (1 - beta_avg) * g)
            step = {"sign": p + lr * v_new, "none": p - lr * g}.get(kind, p - lr * v_new)
            if kind == "bn_frozen" and k.startswith(("gamma", "beta")):
                step = p
            new_p[k], new_v[k] = step, v_new
        return tuple(new_p[k] for k in _STEP_NAMES) + tuple(new_v[k] for k in _STEP_NAMES)

    return wrong


STEP_MISTAKES = (
    Mistake("wrong_sign",
            "Your step goes uphill: p + lr * v. Gradient descent moves against the gradient, "
            "p - lr * v, for W, b, gamma and beta alike.", _wrong_step("sign")),
    Mistake("bn_params_not_updated",
            "W and b move but gamma and beta come back unchanged. Batch norm's gamma and beta "
            "are parameters like W: they have gradients (dgamma, dbeta) and take the same "
            "step.", _wrong_step("bn_frozen")),
    Mistake("momentum_convention",
            "Looks like v = beta_avg * v + grad, PyTorch's SGD momentum (no 1 - beta_avg on "
            "the gradient). It works too, with a learning rate 1 / (1 - beta_avg) times "
            "smaller; this exercise follows the lecture: v = beta_avg * v + (1 - beta_avg) * "
            "grad.", _wrong_step("torch")),
    Mistake("velocity_ignored",
            "Looks like plain gradient descent, p - lr * grad, with the gradient as the new "
            "velocity: the velocity is the exponentially weighted average of the gradients, "
            "v = beta_avg * v + (1 - beta_avg) * grad, and the step is p - lr * v.",
            _wrong_step("none")),
)


def _step_prepare(value: Any, case: Case) -> Any:
    if (not isinstance(value, tuple) or len(value) != 2
            or not all(isinstance(d, dict) for d in value)):
        return Problem("wrong_type", "Return a pair (new_params, new_velocity) of dicts "
                       f"with the same names as params; got {type_name(value)}.")
    new_p, new_v = value
    for label, d in (("new_params", new_p), ("new_velocity", new_v)):
        missing = [k for k in _STEP_NAMES if k not in d]
        if missing:
            return Problem("missing_parameter", f"{label} has no {', '.join(missing)}: every "
                           "parameter, gamma and beta included, takes a step and keeps a "
                           "velocity.")
    params = case.args[0]
    for k in _STEP_NAMES:
        got = getattr(new_p[k], "shape", None)
        if got is not None and got != params[k].shape:
            return Problem("wrong_param_shape", f"new_params[{k!r}] has shape {got}, but "
                           f"{k} has shape {params[k].shape}. A step must keep each "
                           "parameter's shape: a gamma or beta of shape (1, D) broadcasts "
                           "silently (a keepdims=True in a gradient, or a (D, 1) velocity) "
                           "and changes the network.")
    return tuple(new_p[k] for k in _STEP_NAMES) + tuple(new_v[k] for k in _STEP_NAMES)


@register(
    "momentum_update",
    "fn(params, grads, velocity, lr, beta_avg) -> (new_params, new_velocity): one step of "
    "gradient descent with momentum, lecture's form (chapter 9)",
)
def grade_momentum_update(submission: Any) -> Feedback:
    """Grade one momentum step for every parameter of the network."""
    return run_cases(
        submission, cases=_step_cases(),
        arg_names=("params", "grads", "velocity", "lr", "beta_avg"),
        output_names=STEP_OUTPUTS, mistakes=STEP_MISTAKES,
        read=_reader(STEP_OUTPUTS, prepare=_step_prepare),
        fix="for each name: v = beta_avg * velocity[name] + (1 - beta_avg) * grads[name]; "
            "new_params[name] = params[name] - lr * v; new_velocity[name] = v.",
        hint="Check one parameter by hand on the first step (velocity all zeros): "
             "v = (1 - beta_avg) * grad.",
    )


# ============================================================== one epoch of training

EPOCH_ARGS = ("params", "velocity", "running", "X", "y", "order", "batch_size", "lr",
              "beta_avg")
_EPOCH_PARAMS = ("W1", "gamma1", "beta1", "W2", "b2")
EPOCH_OUTPUTS = (_EPOCH_PARAMS + tuple(f"v_{k}" for k in _EPOCH_PARAMS)
                 + ("running mean1", "running var1", "losses"))


def _epoch_cases() -> list[Case]:
    cases = []
    # (seed, sizes, m, batch_size, lr, beta_avg): m % batch_size >= 2, so a kept partial
    # batch shows and never has one example
    for seed, sizes, m, batch, lr, beta_avg in ((0, [5, 4, 3], 10, 4, 0.3, 0.9),
                                                 (1, [3, 6, 4], 14, 4, 0.5, 0.8),
                                                 (2, [5, 4, 3], 10, 4, 0.2, 0.9)):
        rng = np.random.default_rng(seed)
        params = {k: v + 0.3 * rng.normal(size=v.shape)
                  for k, v in numpy_net.init_params(sizes, bn=True, seed=seed).items()}
        velocity = {k: 0.1 * rng.normal(size=v.shape) for k, v in params.items()}
        running = {k: v + 0.2 * rng.normal(size=v.shape)
                   for k, v in numpy_net.init_running(params).items()}
        X = rng.normal(1.0, 2.0, size=(m, sizes[0]))
        y = rng.integers(0, sizes[-1], size=m)
        order = rng.permutation(m)
        args = (params, velocity, running, X, y, order, batch, lr, beta_avg)
        cases.append(Case(f"X {X.shape}, batch_size={batch}, lr={lr}", args,
                          _epoch_outputs(*_epoch_run(*args))))
    return cases


def _epoch_run(params, velocity, running, X, y, order, batch_size, lr, beta_avg):
    running = {k: v.copy() for k, v in running.items()}
    params, velocity, losses = numpy_net.train_epoch(params, velocity, running, X, y, order,
                                                     batch_size, lr, beta_avg)
    return params, velocity, running, losses


def _epoch_outputs(params, velocity, running, losses) -> tuple[np.ndarray, ...]:
    return (tuple(params[k] for k in _EPOCH_PARAMS) + tuple(velocity[k] for k in _EPOCH_PARAMS)
            + (running["mean1"], running["var1"], np.array(losses, dtype=np.float64)))


def _wrong_epoch(kind):
    def wrong(params, velocity, running, X, y, order, batch_size, lr, beta_avg):
        running = {k: v.copy() for k, v in running.items()}
        n_batches = len(X) // batch_size + (kind == "partial")
        order = np.arange(len(X)) if kind == "order" else order
        batches = [order[t * batch_size:(t + 1) * batch_size] for t in range(n_batches)]
        losses, first = [], params
        for batch in batches:
            at = first if kind == "stale" else params
            loss, grads = numpy_net.net_loss(at, X[batch], y[batch],
                                             None if kind == "no_running" else running)
            if kind == "reset":
                velocity = {k: np.zeros_like(v) for k, v in velocity.items()}
            params, velocity = numpy_net.momentum_step(params, grads, velocity, lr, beta_avg)
            losses.append(loss)
        return _epoch_outputs(params, velocity, running, losses)

    return wrong


EPOCH_MISTAKES = (
    Mistake("ignores_order",
            "Your mini-batches take the examples in their stored order. The epoch must visit "
            "them in the shuffled order it is given: batch t is X[order[t * batch_size:(t + "
            "1) * batch_size]], and the same for y.", _wrong_epoch("order")),
    Mistake("running_not_updated",
            "The running statistics come back unchanged: the forward pass of every training "
            "step must update them (pass running to the loss: net_loss(params, X_t, y_t, "
            "running)). Without them the network cannot be evaluated.",
            _wrong_epoch("no_running")),
    Mistake("stale_parameters",
            "Looks like every mini-batch's gradient is computed at the parameters the epoch "
            "started with. Each step must start from the parameters the previous step "
            "returned: params, velocity = momentum_update(params, grads, ...).",
            _wrong_epoch("stale")),
    Mistake("velocity_reset",
            "Looks like the velocity starts from zero at every step. It is carried from step "
            "to step (and from epoch to epoch): that memory is what momentum is.",
            _wrong_epoch("reset")),
)


def _diagnose_epoch_shape(name: str, got: tuple, case: Case) -> tuple[str, str] | None:
    X, batch = case.args[3], case.args[6]
    if name == "losses" and got == (len(X) // batch + 1,):
        return ("keeps_partial_batch", f"losses has {got[0]} entries: your epoch also trains "
                f"on the last, partial batch of {len(X) % batch} examples. Drop it: range(len(X) "
                "// batch_size) batches. A batch norm layer fed a tiny batch normalizes with "
                "very noisy statistics (with one example, it divides 0 by 0).")
    return None


def _epoch_prepare(value: Any, case: Case) -> Any:
    if (not isinstance(value, tuple) or len(value) != 4
            or not all(isinstance(d, dict) for d in value[:3])):
        return Problem("wrong_type", "Return a tuple (params, velocity, running, losses): "
                       f"three dicts and the list of the losses; got {type_name(value)}.")
    params, velocity, running, losses = value
    for label, d, names in (("params", params, _EPOCH_PARAMS),
                            ("velocity", velocity, _EPOCH_PARAMS),
                            ("running", running, ("mean1", "var1"))):
        missing = [k for k in names if k not in d]
        if missing:
            return Problem("missing_parameter", f"{label} has no {', '.join(missing)}: return "
                           "every entry, those of batch norm included.")
    if isinstance(losses, (list, tuple)):
        losses = np.array([float(v) if isinstance(v, numbers.Real) else np.nan for v in losses])
    return _epoch_outputs(params, velocity, running, losses)


@register(
    "train_one_epoch",
    "fn(params, velocity, running, X, y, order, batch_size, lr, beta_avg) -> (params, "
    "velocity, running, losses): one epoch of the training loop (chapter 9)",
)
def grade_train_one_epoch(submission: Any) -> Feedback:
    """Grade one epoch of mini-batch training with momentum and running statistics."""
    return run_cases(
        submission, cases=_epoch_cases(), arg_names=EPOCH_ARGS, output_names=EPOCH_OUTPUTS,
        mistakes=EPOCH_MISTAKES, read=_reader(EPOCH_OUTPUTS, _diagnose_epoch_shape,
                                              prepare=_epoch_prepare),
        fix="losses = []; for t in range(len(X) // batch_size): batch = order[t * batch_size:"
            "(t + 1) * batch_size]; loss, grads = net_loss(params, X[batch], y[batch], "
            "running); params, velocity = momentum_update(params, grads, velocity, lr, "
            "beta_avg); losses.append(loss). Return params, velocity, running, losses.",
        hint="Print the indices of each batch on a small case: there are len(X) // batch_size "
             "batches, in the given order.",
        updates_in_place=("running",),
    )
