"""course_lib.layers: each layer against torch.nn and against numerical gradients, in float64."""

import numpy as np
import torch

from course_lib.gradcheck import numerical_gradient, rel_error
from course_lib.layers import (affine_backward, affine_forward, relu_backward, relu_forward,
                               softmax_cross_entropy)

RNG = np.random.default_rng(0)


def test_affine_matches_torch_linear():
    A, W, b = RNG.normal(size=(7, 5)), RNG.normal(size=(3, 5)), RNG.normal(size=3)
    dZ = RNG.normal(size=(7, 3))
    Z, cache = affine_forward(A, W, b)
    dA, dW, db = affine_backward(dZ, cache)
    layer = torch.nn.Linear(5, 3, dtype=torch.float64)
    layer.load_state_dict({"weight": torch.from_numpy(W), "bias": torch.from_numpy(b)})
    a = torch.from_numpy(A).requires_grad_(True)
    out = layer(a)
    (out * torch.from_numpy(dZ)).sum().backward()
    assert np.allclose(Z, out.detach().numpy(), atol=1e-13)
    assert np.allclose(dA, a.grad.numpy(), atol=1e-13)
    assert np.allclose(dW, layer.weight.grad.numpy(), atol=1e-13)
    assert np.allclose(db, layer.bias.grad.numpy(), atol=1e-13)


def test_affine_gradients_match_centered_differences():
    A, W, b = RNG.normal(size=(6, 4)), RNG.normal(size=(5, 4)), RNG.normal(size=5)
    dZ = RNG.normal(size=(6, 5))
    _, cache = affine_forward(A, W, b)
    dA, dW, db = affine_backward(dZ, cache)
    assert rel_error(dA, numerical_gradient(lambda: affine_forward(A, W, b)[0], A, dZ)) < 1e-8
    assert rel_error(dW, numerical_gradient(lambda: affine_forward(A, W, b)[0], W, dZ)) < 1e-8
    assert rel_error(db, numerical_gradient(lambda: affine_forward(A, W, b)[0], b, dZ)) < 1e-8


def test_affine_without_bias_has_no_bias_gradient():
    A, W = RNG.normal(size=(4, 3)), RNG.normal(size=(2, 3))
    Z, cache = affine_forward(A, W, None)
    assert np.allclose(Z, A @ W.T)
    assert affine_backward(RNG.normal(size=(4, 2)), cache)[2] is None


def test_relu_matches_torch_and_passes_gradient_only_where_positive():
    Z = RNG.normal(size=(5, 4))
    dA = RNG.normal(size=(5, 4))
    A, cache = relu_forward(Z)
    dZ = relu_backward(dA, cache)
    z = torch.from_numpy(Z).requires_grad_(True)
    out = torch.relu(z)
    (out * torch.from_numpy(dA)).sum().backward()
    assert np.array_equal(A, out.detach().numpy())
    assert np.array_equal(dZ, z.grad.numpy())
    assert rel_error(dZ, numerical_gradient(lambda: relu_forward(Z)[0], Z, dA)) < 1e-8


def test_softmax_cross_entropy_matches_torch():
    scores, y = RNG.normal(size=(9, 4)) * 3, RNG.integers(0, 4, size=9)
    loss, dscores = softmax_cross_entropy(scores, y)
    s = torch.from_numpy(scores).requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(s, torch.from_numpy(y))
    ref.backward()
    assert abs(loss - ref.item()) < 1e-13
    assert np.allclose(dscores, s.grad.numpy(), atol=1e-14)


def test_softmax_cross_entropy_gradient_matches_centered_differences():
    scores, y = RNG.normal(size=(6, 3)), RNG.integers(0, 3, size=6)
    _, dscores = softmax_cross_entropy(scores, y)
    numeric = numerical_gradient(lambda: np.array(softmax_cross_entropy(scores, y)[0]),
                                 scores, np.array(1.0))
    assert rel_error(dscores, numeric) < 1e-8


def test_softmax_cross_entropy_survives_large_scores():
    scores = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    loss, dscores = softmax_cross_entropy(scores, np.array([1, 0]))
    assert np.isfinite(loss)
    assert np.all(np.isfinite(dscores))
    assert abs(loss - 500.0) < 1e-9
