"""Tests for course_lib/experiments/deep.py: initializations, the scale-invariance tools
(exact identities, checked in float64), weight norms through the training loop, and the
residual MLP's mechanics. Chapter 7's claims themselves (training runs on the claim seeds) are
registry entries, run by tests/test_claims.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.deep import (
    CURES, bn_mlp, deep_mlp, hidden_weights, initialize, make_residual_mlp, scale_layer,
    scaled_gradients, sgd_factory, skip_every_block, weight_norms,
)


def probe(seed=0, n=300):
    data = load_digits_split(seed=seed)
    return data, data.X_train[:n].double(), data.y_train[:n]


def test_initializations_have_their_variance():
    for init, act, expected in (("kaiming", "relu", 2 / 100), ("xavier", "tanh",
                                                                (5 / 3) ** 2 * 2 / 200)):
        model = deep_mlp(3, activation=act, init=init, seed=0)
        W = model.linear2.weight.detach()
        assert abs(W.var().item() / expected - 1) < 0.05
        assert all(float(m.bias.detach().abs().max()) == 0 for m in model.modules()
                   if isinstance(m, nn.Linear))
    default = deep_mlp(3, seed=0).linear2.weight.detach()
    assert abs(default.std().item() * (3 * 100) ** 0.5 - 1) < 0.05
    with pytest.raises(ValueError, match="init must be"):
        initialize(deep_mlp(2), "he", "relu")


def test_careful_means_kaiming_for_relu_and_xavier_for_tanh():
    assert CURES["plain, careful init"] == (False, "careful")
    relu = deep_mlp(2, activation="relu", init="careful", seed=1).linear2.weight
    tanh = deep_mlp(2, activation="tanh", init="careful", seed=1).linear2.weight
    assert torch.equal(relu, deep_mlp(2, activation="relu", init="kaiming", seed=1).linear2.weight)
    assert torch.equal(tanh, deep_mlp(2, activation="tanh", init="xavier", seed=1).linear2.weight)


def test_without_bn_the_scale_matters():
    _, X, y = probe()
    plain = deep_mlp(5, activation="relu", seed=0).double()
    sg = scaled_gradients(plain, X, y, "linear3", [1.0, 3.0])
    assert sg.outputs_gap > 0.01 and abs(sg.cosines[0]) > 1e-6


def test_scale_layer_copies():
    net = bn_mlp(3, seed=0)
    scaled = scale_layer(net, "linear2", 2.0)
    assert torch.equal(scaled.linear2.weight, 2 * net.linear2.weight)
    assert scaled.linear2.weight.data_ptr() != net.linear2.weight.data_ptr()


def test_hidden_weights_are_the_hidden_layers():
    net = deep_mlp(4, seed=0)
    assert [tuple(W.shape) for W in hidden_weights(net)] == [(100, 64)] + [(100, 100)] * 3


def test_residual_mlp_with_course_lib_bn_matches_torch():
    X = torch.randn(30, 64, dtype=torch.float64)
    a = make_residual_mlp(3, zero_gamma=False, seed=2, bn_impl="course_lib").double()
    b = make_residual_mlp(3, zero_gamma=False, seed=2, bn_impl="torch").double()
    with torch.no_grad():
        assert torch.allclose(a(X), b(X), atol=1e-12)


def test_scaled_gradients_leaves_the_model_alone_and_reports_every_c():
    _, X, y = probe(n=100)
    net = bn_mlp(3, seed=0, eps=1e-12)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sg = scaled_gradients(net, X, y, "linear2", [0.5, 1.0, 4.0], lr=0.1)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert sg.grad_norms.shape == sg.cosines.shape == sg.update_ratios.shape == (3,)
    assert len(sg.logits) == 3 and sg.logits[0].shape == (100, 10)
    # The ratio of one SGD step is lr * std(g) / std(W): 1/c^2 from c = 1 to c = 4.
    assert sg.update_ratios[1] / sg.update_ratios[2] == pytest.approx(16, rel=1e-6)


def test_bn_mlp_sets_eps_and_dtype():
    net = bn_mlp(2, seed=0, eps=1e-3)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bns) == 2 and all(m.eps == 1e-3 for m in bns)
    assert all(p.dtype == torch.float64 for p in net.parameters())


def test_sgd_factory_gives_one_layer_its_own_rate_and_decays():
    net = bn_mlp(3, seed=0)
    opt = sgd_factory(0.5, weight_decay=0.01, layer_lr={net.linear2.weight: 4.5})(
        list(net.parameters()))
    rates = {id(g["params"][0]): g["lr"] for g in opt.param_groups}
    assert rates[id(net.linear2.weight)] == 4.5 and rates[id(net.linear1.weight)] == 0.5
    assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)


def test_weight_norms_records_every_step_and_trains_in_place():
    data = load_digits_split(seed=0)
    net = bn_mlp(3, seed=0)
    start = [float(W.detach().norm()) for W in hidden_weights(net)]
    norms = weight_norms(net, data, steps=5, lr=0.5)
    assert norms.shape == (6, 3)
    assert norms[0].tolist() == start
    assert norms[-1].tolist() == [float(W.detach().norm()) for W in hidden_weights(net)]


def test_skip_every_block_shares_the_stem_and_output():
    res = make_residual_mlp(2, seed=0)
    shallow = skip_every_block(res)
    assert shallow[0] is res.stem and shallow[-1] is res.output
    assert sum(1 for m in res.modules() if isinstance(m, nn.Linear)) == 2 * 2 + 2
    with pytest.raises(ValueError, match="blocks"):
        make_residual_mlp(-1)
    with pytest.raises(ValueError, match="bn_impl"):
        make_residual_mlp(2, bn_impl="keras")


def test_cures_are_the_chapters_three_contenders():
    assert list(CURES) == ["plain, default init", "plain, careful init", "BN, default init"]
