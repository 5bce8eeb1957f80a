r"""The layers of a fully connected network in numpy, each a forward and a backward pass
(chapter 9).

The form is CS231n's: ``forward(inputs) -> (out, cache)`` keeps what the backward pass needs,
and ``backward(dout, cache) -> grads`` uses only that, with no hidden state. Rows are
examples, as everywhere in the course: a mini-batch is ``(m, n)``, and a layer with
:math:`n^{[l-1]}` inputs and :math:`n^{[l]}` units has the lecture's weight
:math:`W^{[l]}` of shape ``(n[l], n[l-1])`` (``torch.nn.Linear``'s ``weight``), so

.. math::

    Z = A W^{T} + b, \qquad
    dA = dZ\, W, \quad dW = dZ^{T} A, \quad db = \textstyle\sum_i dZ_i .

- :func:`affine_forward`, :func:`affine_backward`: the linear layer;
- :func:`relu_forward`, :func:`relu_backward`: the activation :math:`\max(0, z)`;
- :func:`softmax_cross_entropy`: the mean cross-entropy of the softmax of the scores over the
  mini-batch, and its gradient :math:`(p - Y) / m`.

Batch norm's forward and backward are chapter 2's :func:`course_lib.batchnorm.bn_forward` and
:func:`course_lib.batchnorm.bn_backward`. The functions here are teaching functions: the math
and nothing else, float64 in and out; :mod:`course_lib.numpy_net` puts them together and
``tests/test_layers.py`` holds them to ``torch.nn`` and to numerical gradients.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "affine_forward",
    "affine_backward",
    "relu_forward",
    "relu_backward",
    "softmax_cross_entropy",
]


def affine_forward(
    A: np.ndarray, W: np.ndarray, b: np.ndarray | None
) -> tuple[np.ndarray, tuple]:
    """Z = A W^T + b for a mini-batch A of shape (m, n_in); no bias if b is None."""
    Z = A @ W.T
    if b is not None:
        Z = Z + b
    return Z, (A, W, b is not None)       # the input, not the output: dW needs A


def affine_backward(dZ: np.ndarray, cache: tuple) -> tuple:
    """(dA, dW, db) from dL/dZ; db is None for a layer without a bias."""
    A, W, has_bias = cache
    dA = dZ @ W                             # (m, n_out) @ (n_out, n_in)
    dW = dZ.T @ A                           # summed over the m examples
    db = dZ.sum(axis=0) if has_bias else None
    return dA, dW, db


def relu_forward(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A = max(0, Z), elementwise; the cache is Z."""
    return np.maximum(Z, 0.0), Z


def relu_backward(dA: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """dL/dZ: the gradient passes where Z > 0 and stops where Z <= 0."""
    return dA * (Z > 0)


def softmax_cross_entropy(
    scores: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) for labels y, and its gradient dscores."""
    m = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)   # exp never overflows
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(m), y].mean()
    dscores = np.exp(log_p)                                 # p, the softmax
    dscores[np.arange(m), y] -= 1.0                         # p - Y (one-hot)
    return float(loss), dscores / m                         # the mean over m
