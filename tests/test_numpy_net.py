"""course_lib.numpy_net: the numpy network equals the course's torch model and torch.nn's
BatchNorm1d in float64 (outputs, gradients, running statistics), passes a whole-network
gradient check, and folds for inference."""

import numpy as np
import pytest
import torch

from course_lib import numpy_net
from course_lib.batchnorm import bn_backward
from course_lib.experiments.capstone import to_torch
from course_lib.layers import softmax_cross_entropy
from course_lib.numpy_net import (accuracy, bn_layer, fold_net, init_params, init_running,
                                  momentum_step, net_backward, net_forward, net_gradient_check,
                                  net_loss, train_epoch)

SIZES = [6, 5, 4, 3]


def _batch(seed=0, m=8):
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 2.0, size=(m, SIZES[0])), rng.integers(0, SIZES[-1], size=m)


def _perturbed(params, seed=1):
    rng = np.random.default_rng(seed)
    return {k: v + 0.3 * rng.normal(size=v.shape) for k, v in params.items()}


def test_parameters_have_no_bias_before_batch_norm():
    params = init_params(SIZES, bn=True)
    assert "b1" not in params and "b2" not in params
    assert "b3" in params
    assert set(init_params(SIZES, bn=False)) == {"W1", "b1", "W2", "b2", "W3", "b3"}


@pytest.mark.parametrize("bn_impl", ["torch", "course_lib"])
def test_equals_the_torch_model_in_training_mode(bn_impl):
    params = _perturbed(init_params(SIZES, bn=True, seed=0))
    running = init_running(params)
    X, y = _batch()
    model = to_torch(params, running, bn_impl=bn_impl)
    model.train()
    out = model(torch.from_numpy(X))
    loss_t = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss_t.backward()
    loss, grads = net_loss(params, X, y, running)
    torch_grads = {"W1": model.linear1.weight, "gamma1": model.bn1.weight,
                   "beta1": model.bn1.bias, "W2": model.linear2.weight,
                   "gamma2": model.bn2.weight, "beta2": model.bn2.bias,
                   "W3": model.output.weight, "b3": model.output.bias}
    assert abs(loss - loss_t.item()) < 1e-12
    for name, p in torch_grads.items():
        assert np.allclose(grads[name], p.grad.numpy(), atol=1e-12), name
    assert np.allclose(running["mean1"], model.bn1.running_mean.numpy(), atol=1e-12)
    assert np.allclose(running["var2"], model.bn2.running_var.numpy(), atol=1e-12)


def test_equals_the_torch_model_in_evaluation_mode():
    params = _perturbed(init_params(SIZES, bn=True, seed=0))
    running = init_running(params)
    for seed in range(3):                     # a few training batches move the running stats
        net_loss(params, *_batch(seed), running)
    X, _ = _batch(5, m=3)
    model = to_torch(params, running).eval()
    scores, _ = net_forward(params, X, running, training=False)
    assert np.allclose(scores, model(torch.from_numpy(X)).detach().numpy(), atol=1e-12)


def test_plain_network_equals_the_torch_model():
    params = _perturbed(init_params(SIZES, bn=False, seed=0))
    X, _ = _batch()
    scores, _ = net_forward(params, X, None, training=True)
    assert np.allclose(scores, to_torch(params)(torch.from_numpy(X)).detach().numpy(), atol=1e-12)


def test_evaluation_mode_leaves_the_running_statistics_alone():
    params = init_params(SIZES, bn=True)
    running = init_running(params)
    before = {k: v.copy() for k, v in running.items()}
    net_forward(params, _batch()[0], running, training=False)
    assert all(np.array_equal(running[k], before[k]) for k in before)


def test_bn_layer_uses_running_statistics_at_test_time():
    rng = np.random.default_rng(0)
    Z = rng.normal(3.0, 2.0, size=(6, 4))
    running = {"mean1": np.full(4, 3.0), "var1": np.full(4, 4.0)}
    out, cache = bn_layer(Z, np.ones(4), np.zeros(4), running, 1, training=False, eps=0.0)
    assert cache is None
    assert np.allclose(out, (Z - 3.0) / 2.0)


def test_whole_network_gradient_check_passes_and_catches_a_broken_layer():
    params = _perturbed(init_params(SIZES, bn=True, seed=0))
    X, y = _batch()
    errors = net_gradient_check(params, X, y)
    assert max(errors.values()) < 1e-7

    def bn_backward_constant_stats(dz_tilde, cache):   # as if mu and var were constants
        dz, dgamma, dbeta = bn_backward(dz_tilde, cache)
        return dz_tilde * cache.gamma * cache.inv_std, dgamma, dbeta

    bad = net_gradient_check(params, X, y, bn_grad=bn_backward_constant_stats)
    assert bad["W1"] > 1e-3
    assert bad["b3"] < 1e-7


def test_gradient_check_restores_the_parameters():
    params = init_params(SIZES, bn=True)
    before = {k: v.copy() for k, v in params.items()}
    net_gradient_check(params, *_batch())
    assert all(np.array_equal(params[k], before[k]) for k in before)


def test_momentum_step_is_the_lecture_ema_and_sgd_for_beta_zero():
    params, grads = {"W1": np.ones(3)}, {"W1": np.array([1.0, 2.0, 3.0])}
    new, v = momentum_step(params, grads, {}, lr=0.5, beta_avg=0.0)
    assert np.allclose(new["W1"], 1 - 0.5 * grads["W1"])
    new, v = momentum_step(params, grads, {"W1": np.ones(3)}, lr=0.5, beta_avg=0.9)
    assert np.allclose(v["W1"], 0.9 + 0.1 * grads["W1"])
    assert np.allclose(new["W1"], 1 - 0.5 * v["W1"])
    assert np.array_equal(params["W1"], np.ones(3))


def test_training_lowers_the_loss_and_folding_keeps_the_predictions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, SIZES[0]))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    params = init_params(SIZES, bn=True, seed=0)
    running, velocity = init_running(params), {}
    params, velocity, first = train_epoch(params, velocity, running, X, y,
                                          rng.permutation(96), 16, 0.3)
    for _ in range(5):
        params, velocity, losses = train_epoch(params, velocity, running, X, y,
                                               rng.permutation(96), 16, 0.3)
    assert len(first) == 6
    assert np.mean(losses) < np.mean(first)
    folded = fold_net(params, running)
    assert "gamma1" not in folded
    eval_scores, _ = net_forward(params, X, running, training=False)
    folded_scores, _ = net_forward(folded, X, None, training=False)
    assert np.allclose(eval_scores, folded_scores, atol=1e-10)
    assert accuracy(params, running, X, y) == accuracy(folded, {}, X, y)


def test_init_params_refuses_too_few_sizes():
    with pytest.raises(ValueError, match="at least 2"):
        numpy_net.init_params([64])


def test_backward_takes_any_batch_norm_backward_pass():
    params = _perturbed(init_params(SIZES, bn=True, seed=0))
    X, y = _batch()
    scores, caches = net_forward(params, X, None, training=True)
    _, grads = net_loss(params, X, y)
    dscores = softmax_cross_entropy(scores, y)[1]
    same = net_backward(dscores, caches, bn_grad=bn_backward)
    assert all(np.array_equal(same[k], grads[k]) for k in grads)
    skipped = net_backward(dscores, caches, bn_grad=lambda d, c: (d,) + bn_backward(d, c)[1:])
    assert np.array_equal(skipped["W3"], grads["W3"])
    assert not np.allclose(skipped["W1"], grads["W1"])
