"""Tests for course_lib/experiments/bias.py: a bias right before batch norm has no effect and a zero
gradient (chapter 3's claim, for seeds the notebook does not use), while the same bias matters
with batch norm after the activation or without it.

Measured on the digits (mini-batches of 60, seeds 0-5): with BN before the activation the
bias gradients are 1e-9 to 6e-9 in float32 (the weight gradients ~2e-2) and below 1e-16 in
float64; changing every bias moves the logits by ~6e-7 (float32) or ~3e-15 (float64). With
BN after the activation or none, bias gradients are 6e-5 to 5e-3 and the logits move by 0.3-0.9.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.experiments.bias import bias_effect, bias_gradients, hidden_linears, with_bias
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import count_parameters, make_mlp

from course_lib.experiments.claims import CLAIM_SEEDS

SEEDS = CLAIM_SEEDS


def network(bn, seed, dtype=torch.float32, bn_impl="course_lib"):
    return make_mlp(64, [100, 100, 100], 10, bn=bn, bn_impl=bn_impl, seed=seed).to(dtype)


def batch(seed, m=60):
    data = load_digits_split(seed=seed)
    idx = torch.randperm(data.n_train, generator=torch.Generator().manual_seed(seed))[:m]
    return data.X_train[idx], data.y_train[idx]


@pytest.mark.parametrize("bn_impl", ["course_lib", "torch"])
@pytest.mark.parametrize("seed", SEEDS)
def test_bias_before_bn_has_zero_gradient(seed, bn_impl):
    X, y = batch(seed)
    # Zero up to round-off: float32 sums of ~60 cancelling terms leave ~1e-7 (it depends on the
    # kernel's summation order, e.g. the thread count), four orders below the weight gradients.
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-15)):
        grads = bias_gradients(with_bias(network("before", seed, dtype, bn_impl), seed=seed), X, y)
        assert [g.layer for g in grads] == ["linear1", "linear2", "linear3"]
        for g in grads:
            assert g.max_abs_grad_bias < tol, (dtype, g)
            assert g.max_abs_grad_weight > 1e-3, (dtype, g)  # the weights do learn


@pytest.mark.parametrize("bn", ["after", None])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_same_bias_matters_without_bn_right_after_it(seed, bn):
    X, y = batch(seed)
    grads = bias_gradients(with_bias(network(bn, seed), seed=seed), X, y)
    assert all(g.max_abs_grad_bias > 1e-6 for g in grads), grads
    assert bias_effect(network(bn, seed), X, seed=seed) > 1e-2


@pytest.mark.parametrize("seed", SEEDS)
def test_bias_before_bn_does_not_change_the_output(seed):
    X, _ = batch(seed)
    assert bias_effect(network("before", seed), X, seed=seed) < 1e-5
    assert bias_effect(network("before", seed, torch.float64), X, seed=seed) < 1e-12


def test_parameter_counts():
    before = network("before", 0)
    assert count_parameters(before) == 28_010
    assert count_parameters(with_bias(before)) == 28_310  # 300 redundant biases
    assert count_parameters(network(None, 0)) == 27_710


def test_with_bias_copies_and_leaves_the_model_alone():
    model = network("before", 0).eval()
    new = with_bias(model, seed=3, scale=2.0)
    assert model.linear1.bias is None and new.linear1.bias is not None
    assert torch.equal(new.linear2.weight, model.linear2.weight)
    assert new.linear2.weight.data_ptr() != model.linear2.weight.data_ptr()
    assert not new.training and not new.linear1.training
    assert torch.equal(with_bias(model, seed=3, scale=2.0).linear1.bias, new.linear1.bias)
    assert not torch.equal(with_bias(model, seed=4).linear1.bias, new.linear1.bias)
    assert 1.0 < float(new.linear1.bias.detach().std()) < 3.0
    assert new.linear1.bias.dtype == torch.float32


def test_bias_gradients_leaves_running_statistics_and_grads_alone():
    model = with_bias(network("before", 0))
    X, y = batch(0)
    bias_gradients(model, X, y)
    assert int(model.bn1.num_batches_tracked) == 0 and model.linear1.weight.grad is None


def test_errors():
    with pytest.raises(ValueError, match=r"linear1, linear2, linear3 has no bias; add one with with_bias"):
        bias_gradients(network("before", 0), *batch(0))
    with pytest.raises(ValueError, match="no Linear layers named linear1"):
        hidden_linears(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="expected an nn.Module"):
        hidden_linears("model")
    with pytest.raises(ValueError, match="scale must be a non-negative number"):
        with_bias(network(None, 0), scale=-1.0)
