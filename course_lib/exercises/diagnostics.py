r"""Chapter 7 exercise: the update-to-data ratio of each layer, the diagnostic of a deep net.

- ``update_ratio``: ``fn(weights, grads, lr) -> ratios``. ``weights`` and ``grads`` are
  lists with one numpy array per layer (shapes differ from layer to layer); one plain SGD step
  ``W - lr * dW`` changes each layer, and ``ratios[l]`` is

  .. math:: r^{[l]} = \frac{\operatorname{std}(\alpha\, dW^{[l]})}{\operatorname{std}(W^{[l]})}

  a float array of shape ``(L,)``.

The reference is :func:`course_lib.experiments.probes.diagnostics.update_to_data_ratio` applied to
``W`` and ``W - lr * dW`` (one implementation per formula). The cases mix layers whose
gradients have a clear mean (so a ratio of norms differs from one of standard deviations)
and one with a large step (so dividing by the weights after the step shows); the last case
has the first one's layer shapes with other data and lr (so a cache shows). A list of
numbers is read as an array, and one number for all layers is named ``whole_network``.

The functions prefixed ``_wrong_`` are WRONG ON PURPOSE: each reproduces one classic mistake
so the grader can recognize it in a submission. Never use them as a reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core import Case, Mistake, Problem, read_outputs, register_cases

ARG_NAMES = ("weights", "grads", "lr")

# (seed, layer shapes, lr). Three layers each; the last case has the first one's shapes with
# other data and lr (so a cache shows).
_SPECS = [
    (0, [(6, 4), (5, 6), (3, 5)], 0.1),
    (1, [(8, 3), (2, 8), (4, 2)], 0.5),
    (2, [(4, 4), (7, 4), (4, 7)], 2.0),
    (3, [(6, 4), (5, 6), (3, 5)], 0.03),
]


def _reference(weights, grads, lr) -> np.ndarray:
    from ..measures import update_to_data_ratio

    return np.array([update_to_data_ratio(W, W - lr * g) for W, g in zip(weights, grads)])


def _case(seed: int, shapes: list[tuple[int, int]], lr: float) -> Case:
    rng = np.random.default_rng(seed)
    weights, grads = [], []
    for shape in shapes:
        weights.append(rng.uniform(0.2, 2.0) * rng.standard_normal(shape) + rng.uniform(-1, 1))
        scale = 10.0 ** rng.uniform(-3, -1)
        grads.append(scale * (rng.standard_normal(shape) + rng.uniform(1.0, 3.0)))
    label = f"{len(shapes)} layers, lr={lr:g}"
    return Case(label, (weights, grads, lr), (_reference(weights, grads, lr),))


def _cases() -> list[Case]:
    return [_case(*spec) for spec in _SPECS]


# ---- classic mistakes, WRONG ON PURPOSE ---------------------------------------------------


def _per_layer(f):
    def wrong(weights, grads, lr):
        return (np.array([f(W, g, lr) for W, g in zip(weights, grads)]),)

    return wrong


FIX = (
    "ratios = np.array([(lr * dW).std() / W.std() for W, dW in zip(weights, grads)]): "
    "one number per layer, the spread of the step over the spread of the weights it changes."
)

MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "forgot_lr",
        "Looks like you divided std(dW) by std(W) without the learning rate. The step SGD "
        "takes is lr * dW, and that is what the ratio compares with the weights: "
        "(lr * dW).std() / W.std().",
        _per_layer(lambda W, g, lr: g.std() / W.std()),
    ),
    Mistake(
        "inverted",
        "Looks like the ratio is upside down: std(W) / std(lr * dW). The statistic is the "
        "size of the update relative to the data: (lr * dW).std() / W.std(), a small number "
        "(Karpathy's rule of thumb for a plain network is about 1e-3).",
        _per_layer(lambda W, g, lr: W.std() / (lr * g).std()),
    ),
    Mistake(
        "log10",
        "Looks like you returned log10 of the ratio. Plots show it on a log scale (Karpathy "
        "plots log10, where -3 is the healthy level), but the function should return the "
        "ratio itself.",
        _per_layer(lambda W, g, lr: np.log10((lr * g).std() / W.std())),
    ),
    Mistake(
        "variance_ratio",
        "Looks like you divided variances: var(lr * dW) / var(W), the square of the "
        "statistic. Use standard deviations: .std(), not .var().",
        _per_layer(lambda W, g, lr: (lr * g).var() / W.var()),
    ),
    Mistake(
        "norm_ratio",
        "Looks like you divided norms, ||lr * dW|| / ||W||. A norm also counts the mean of "
        "the entries; the statistic compares spreads: (lr * dW).std() / W.std(). The two "
        "agree only when both have mean 0 (here the gradients do not).",
        _per_layer(lambda W, g, lr: np.linalg.norm(lr * g) / np.linalg.norm(W)),
    ),
    Mistake(
        "weights_after_step",
        "Looks like you divided by the spread of the weights AFTER the step, "
        "std(W - lr * dW). For the small steps of a healthy layer it makes no difference "
        "(Karpathy's code does this), but the exercise asks for the weights the step starts "
        "from: (lr * dW).std() / W.std(). The difference shows here at lr = 2.",
        _per_layer(lambda W, g, lr: (lr * g).std() / (W - lr * g).std()),
    ),
)

_CASE_LR = sorted({spec[2] for spec in _SPECS})

MISTAKES += tuple(
    Mistake(
        "hard_coded_lr",
        f"Looks like you used a fixed learning rate, {lr:g}, instead of the lr argument. The "
        f"ratio measures the step this optimizer takes, lr * dW, so it depends on the "
        f"learning rate you train with (the cases pass lr = "
        f"{', '.join(f'{v:g}' for v in _CASE_LR)}): (lr * dW).std() / W.std() with the "
        f"argument. That dependence is the point of the diagnostic: it says how far one step "
        f"of THIS training run moves each layer's weights.",
        _per_layer(lambda W, g, lr, _fixed=lr: (_fixed * g).std() / W.std()),
    )
    for lr in (0.1, 0.01, 1e-3)
)

HINT = (
    "Check one layer by hand: with W = weights[0] and dW = grads[0], the step is lr * dW, "
    "and ratios[0] = (lr * dW).std() / W.std()."
)


_READ = read_outputs(("ratios",))
_NUMBER = (int, float, np.integer, np.floating)


def _read(value: Any, case: Case) -> tuple[np.ndarray, ...] | Problem:
    """A list or tuple of numbers becomes an array; one number for several layers is named
    ``whole_network`` when it lies among the layers' ratios (an average of them)."""
    # Only type() and plain ndarray attributes: nothing a learner's class can override.
    if type(value) in (list, tuple) and value and all(
        issubclass(type(v), _NUMBER) or (issubclass(type(v), np.ndarray) and v.ndim == 0)
        for v in value
    ):
        value = np.array([np.asarray(v) for v in value])
    single = issubclass(type(value), (float, np.floating)) or (
        type(value) is np.ndarray and value.size == 1 and value.dtype.kind == "f")
    n_layers = len(case.args[0])
    if not single or n_layers == 1:
        return _READ(value, case)
    number, ratios = float(np.ravel(value)[0]), case.expected[0]
    averaged = ratios.min() * (1 - 1e-6) <= number <= ratios.max() * (1 + 1e-6)
    return Problem(
        "whole_network" if averaged else "wrong_shape",
        f"You returned one number for {n_layers} layers. The update-to-data ratio is a "
        f"per-layer diagnostic: a layer that learns 1000 times slower than the others hides "
        f"in an average over the network. Return one ratio per layer.",
    )


grade_update_ratio = register_cases(
    "update_ratio",
    "fn(weights, grads, lr) -> ratios: the update-to-data ratio std(lr * dW) / std(W) of "
    "each layer for one SGD step, shape (L,) (chapter 7)",
    _cases,
    arg_names=ARG_NAMES,
    output_names=("ratios",),
    mistakes=MISTAKES,
    fix=FIX,
    hint=HINT,
    read=_read,
)
