r"""A fully connected network with batch norm, in numpy, from the layers up (chapter 9).

Each hidden layer :math:`l = 1, \dots, L-1` is the lecture's
:math:`Z^{[l]} = A^{[l-1]} W^{[l]T}` (no bias: batch norm's :math:`\beta` replaces it), then
batch norm :math:`\tilde Z^{[l]} = \gamma^{[l]} Z_{norm}^{[l]} + \beta^{[l]}`, then
:math:`A^{[l]} = \max(0, \tilde Z^{[l]})`; the output layer :math:`L` is affine with a bias and
gives the scores of a softmax cross-entropy. Without batch norm the hidden layers keep their
bias and go straight to the ReLU.

The parameters are a dict of float64 arrays named ``W1, gamma1, beta1, ..., WL, bL`` (``b1``
... instead of ``gamma``/``beta`` without batch norm); the running statistics a dict
``mean1, var1, ...``. The names follow ``course_lib.experiments.lab.models.make_mlp``'s
layers (``linear1.weight``, ``bn1.weight``, ...), so the weights load into the course's torch
model one to one.

- :func:`init_params`, :func:`init_running`: a network and its running statistics;
- :func:`bn_layer`: batch norm inside the network, batch statistics and the running-average
  update in training, the running averages in evaluation;
- :func:`net_forward`, :func:`net_backward`, :func:`net_loss`: the whole network;
- :func:`momentum_step`: one step of gradient descent with momentum (plain SGD for
  :math:`\beta_{avg} = 0`);
- :func:`train_epoch`, :func:`accuracy`: the training loop (one epoch, in a given order of
  the examples) and the evaluation;
- :func:`net_gradient_check`: relative errors of every parameter's gradient against centered
  differences;
- :func:`fold_net`: the trained network with each batch norm folded into the weights before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from course_lib.batchnorm import bn_backward, bn_forward
from course_lib.fold import fold_linear
from course_lib.gradcheck import numerical_gradient, rel_error
from course_lib.layers import (affine_backward, affine_forward, relu_backward, relu_forward,
                               softmax_cross_entropy)
from course_lib.running_stats import ema, running_stats_step

__all__ = [
    "init_params",
    "init_running",
    "n_layers",
    "bn_layer",
    "net_forward",
    "net_backward",
    "net_loss",
    "momentum_step",
    "train_epoch",
    "accuracy",
    "net_gradient_check",
    "fold_net",
]

Params = dict[str, np.ndarray]


def init_params(sizes: list[int], bn: bool = True, seed: int = 0) -> Params:
    """Weights drawn with Kaiming's variance :math:`2 / n^{[l-1]}`, zero biases, and
    :math:`\\gamma = 1`, :math:`\\beta = 0`.

    Args:
        sizes: ``[n_in, n_1, ..., n_out]``, e.g. ``[64, 100, 100, 10]``.
        bn: batch norm after every hidden affine layer (whose bias is then left out).
        seed: seeds the weights.
    """
    if len(sizes) < 2 or any(int(n) != n or n < 1 for n in sizes):
        raise ValueError(f"init_params: sizes must list at least 2 positive layer sizes, "
                         f"e.g. [64, 100, 10] (got {sizes!r})")
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    params: Params = {}
    for l in range(1, L + 1):
        n_in, n_out = sizes[l - 1], sizes[l]
        params[f"W{l}"] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in))
        if bn and l < L:
            params[f"gamma{l}"], params[f"beta{l}"] = np.ones(n_out), np.zeros(n_out)
        else:
            params[f"b{l}"] = np.zeros(n_out)
    return params


def init_running(params: Params) -> dict[str, np.ndarray]:
    """Running mean 0 and running variance 1 for every batch norm layer (as torch starts)."""
    return {k: (np.zeros_like(v) if k.startswith("mean") else np.ones_like(v))
            for key, v in params.items() if key.startswith("gamma")
            for k in (f"mean{key[5:]}", f"var{key[5:]}")}


def n_layers(params: Params) -> int:
    """L, the number of affine layers."""
    return sum(1 for k in params if k.startswith("W"))


# ---------------------------------------------------------------- teaching functions


def bn_layer(
    Z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running: dict | None, l: int,
    training: bool, momentum: float = 0.1, eps: float = 1e-5,
) -> tuple[np.ndarray, Any]:
    """Batch norm of layer l: batch statistics in training, running ones at test."""
    if training:
        Z_tilde, cache = bn_forward(Z, gamma, beta, eps)      # chapter 2
        if running is not None:                                # torch's convention
            running[f"mean{l}"], running[f"var{l}"] = running_stats_step(
                running[f"mean{l}"], running[f"var{l}"], cache.mu, cache.var,
                Z.shape[0], momentum)
        return Z_tilde, cache
    # Evaluation: fixed statistics, and nothing is updated.
    Z_norm = (Z - running[f"mean{l}"]) / np.sqrt(running[f"var{l}"] + eps)
    return gamma * Z_norm + beta, None


def net_forward(
    params: Params, X: np.ndarray, running: dict | None, training: bool
) -> tuple[np.ndarray, list]:
    """Scores of the network for a mini-batch X, and the caches of every layer."""
    A, caches, L = X, [], n_layers(params)
    for l in range(1, L):
        Z, affine_cache = affine_forward(A, params[f"W{l}"], params.get(f"b{l}"))
        bn_cache = None
        if f"gamma{l}" in params:
            Z, bn_cache = bn_layer(Z, params[f"gamma{l}"], params[f"beta{l}"],
                                   running, l, training)
        A, relu_cache = relu_forward(Z)
        caches.append((affine_cache, bn_cache, relu_cache))
    scores, output_cache = affine_forward(A, params[f"W{L}"], params[f"b{L}"])
    return scores, caches + [output_cache]


def net_backward(
    dscores: np.ndarray, caches: list, bn_grad: Any = bn_backward
) -> Params:
    """Every parameter's gradient from dL/dscores, layer by layer from the output."""
    grads, L = {}, len(caches)
    dA, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, caches[-1])
    for l in range(L - 1, 0, -1):
        affine_cache, bn_cache, relu_cache = caches[l - 1]
        dZ = relu_backward(dA, relu_cache)
        if bn_cache is not None:
            dZ, grads[f"gamma{l}"], grads[f"beta{l}"] = bn_grad(dZ, bn_cache)
        dA, grads[f"W{l}"], db = affine_backward(dZ, affine_cache)
        if db is not None:
            grads[f"b{l}"] = db
    return grads


def net_loss(
    params: Params, X: np.ndarray, y: np.ndarray, running: dict | None = None
) -> tuple[float, Params]:
    """The training-mode loss of a mini-batch and every parameter's gradient."""
    scores, caches = net_forward(params, X, running, training=True)
    loss, dscores = softmax_cross_entropy(scores, y)
    return loss, net_backward(dscores, caches)


def momentum_step(
    params: Params, grads: Params, velocity: Params, lr: float, beta_avg: float = 0.9
) -> tuple[Params, Params]:
    """One step of gradient descent with momentum, for W, b, gamma and beta alike."""
    new_params, new_velocity = {}, {}
    for name, p in params.items():
        v = ema(velocity.get(name, np.zeros_like(p)), grads[name], beta_avg)
        new_params[name], new_velocity[name] = p - lr * v, v
    return new_params, new_velocity


def train_epoch(
    params: Params, velocity: Params, running: dict, X: np.ndarray, y: np.ndarray,
    order: np.ndarray, batch_size: int, lr: float, beta_avg: float = 0.9,
) -> tuple[Params, Params, list[float]]:
    """One pass over X[order] in mini-batches X{t}: forward, backward, step."""
    losses = []
    for t in range(len(X) // batch_size):          # the last partial batch is dropped
        batch = order[t * batch_size:(t + 1) * batch_size]
        loss, grads = net_loss(params, X[batch], y[batch], running)   # updates running
        params, velocity = momentum_step(params, grads, velocity, lr, beta_avg)
        losses.append(loss)
    return params, velocity, losses


# ---------------------------------------------------------------- around the network


def accuracy(params: Params, running: dict, X: np.ndarray, y: np.ndarray) -> float:
    """Fraction of X classified right, in evaluation mode (running statistics)."""
    scores, _ = net_forward(params, X, running, training=False)
    return float((scores.argmax(axis=1) == y).mean())


def net_gradient_check(
    params: Params, X: np.ndarray, y: np.ndarray, bn_grad: Any = bn_backward,
    h: float = 1e-5,
) -> dict[str, float]:
    """Relative error of every parameter's analytic gradient against centered differences
    of the training-mode loss, in float64.

    ``bn_grad(dz_tilde, cache) -> (dz, dgamma, dbeta)`` is the batch norm backward pass the
    analytic gradient uses (chapter 2's :func:`course_lib.batchnorm.bn_backward`; another one,
    a learner's or a broken one, plugs in here). The parameters are perturbed one entry at a time and restored exactly; no running statistics
    are touched.
    """
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    scores, caches = net_forward(params, X, None, training=True)
    _, dscores = softmax_cross_entropy(scores, y)
    analytic = net_backward(dscores, caches, bn_grad)

    def loss() -> np.ndarray:
        return np.array(softmax_cross_entropy(net_forward(params, X, None, True)[0], y)[0])

    one = np.array(1.0)
    return {name: rel_error(analytic[name], numerical_gradient(loss, p, one, h))
            for name, p in params.items()}


def fold_net(params: Params, running: dict, eps: float = 1e-5) -> Params:
    """The inference network: each batch norm folded into the affine layer before it."""
    folded: Params = {}
    for l in range(1, n_layers(params) + 1):
        W, b = params[f"W{l}"], params.get(f"b{l}")
        if f"gamma{l}" in params:
            W, b = fold_linear(W, np.zeros(W.shape[0]),            # no bias before BN
                               params[f"gamma{l}"], params[f"beta{l}"],
                               running[f"mean{l}"], running[f"var{l}"], eps)
        folded[f"W{l}"], folded[f"b{l}"] = W, b
    return folded
