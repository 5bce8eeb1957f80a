"""Tests for course_lib/experiments/convnet.py: the conv net's structure, the tools behind
chapter 7's claims (per-channel statistics, the conv bias gradient, folding) and the course's
BatchNorm2d training exactly like torch's. The claims themselves, on the claim seeds, are
registry entries run by tests/test_claims.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.experiments.convnet import (
    SweepSettings, channel_statistics, conv_bias_gradients, conv_layers, fold_check,
    make_convnet, norm_layers,
)
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.training import train
from course_lib.nn import BatchNorm2d


def test_structure_and_parameters():
    model = make_convnet(channels=(8, 16), norm="batch", seed=0)
    names = [n for n, _ in model.named_children()]
    assert names == ["image", "conv1", "norm1", "act1", "pool1", "conv2", "norm2", "act2",
                     "pool2", "flatten", "output"]
    assert all(c.bias is None for c in conv_layers(model))
    assert all(isinstance(m, BatchNorm2d) for m in norm_layers(model))
    assert [m.weight.numel() for m in norm_layers(model)] == [8, 16]
    assert model(torch.randn(5, 64)).shape == (5, 10)
    plain = make_convnet(channels=(8, 16), norm="none", seed=0)
    assert all(c.bias is not None for c in conv_layers(plain)) and not norm_layers(plain)


def test_deeper_nets_keep_a_2x2_map():
    model = make_convnet(channels=(4, 8, 8, 16), norm="batch", seed=0)
    assert model.output.in_features == 16 * 2 * 2
    assert model(torch.randn(3, 64)).shape == (3, 10)


def test_norm_callable_and_impls():
    gn = make_convnet(norm=lambda c: nn.GroupNorm(2, c), seed=0)
    assert isinstance(gn.norm1, nn.GroupNorm) and gn.conv1.bias is None
    assert isinstance(make_convnet(bn_impl="torch").norm1, nn.BatchNorm2d)
    assert make_convnet(norm="batch", bias=True).conv1.bias is not None


def test_seed_gives_same_weights_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b = make_convnet(seed=3), make_convnet(seed=3, bn_impl="torch")
    assert torch.equal(torch.get_rng_state(), state)
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(channels=()), TypeError, "channels"),
    (dict(channels=(8, 0)), ValueError, "channels[1]"),
    (dict(norm="layer"), ValueError, "norm must be"),
    (dict(norm=nn.BatchNorm2d(8)), TypeError, "module instance"),
    (dict(bn_impl="keras"), ValueError, "bn_impl"),
    (dict(kernel_size=2), ValueError, "odd"),
    (dict(bias="yes"), TypeError, "bias"),
    (dict(seed=1.5), TypeError, "seed"),
])
def test_bad_arguments_are_named(kwargs, error, text):
    with pytest.raises(error, match=None) as info:
        make_convnet(**kwargs)
    assert text in str(info.value)


def test_course_batchnorm2d_trains_like_torch():
    # Same seed, float64, same mini-batches: the from-scratch layer and torch's give the same
    # weights, gammas, betas and running statistics after training.
    data = load_digits_split(seed=1)
    models = {}
    for impl in ("course_lib", "torch"):
        model = make_convnet(channels=(8, 16), norm="batch", bn_impl=impl, seed=1).double()
        train(model, data, steps=100, lr=0.1, seed=1, eval_every=50)
        models[impl] = model.state_dict()
    assert models["course_lib"].keys() == models["torch"].keys()
    for key, value in models["course_lib"].items():
        ref = models["torch"][key]
        if value.is_floating_point():
            np.testing.assert_allclose(value.numpy(), ref.numpy(), rtol=1e-9, atol=1e-11,
                                       err_msg=key)
        else:
            assert torch.equal(value, ref), key


def test_channel_statistics_in_float64_are_exact_and_leave_the_model_alone():
    X = load_digits_split(seed=0).X_train[:60].double()
    model = make_convnet(norm="batch", seed=0).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = channel_statistics(model, X)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert np.abs(stats.mean).max() < 1e-12
    np.testing.assert_allclose(stats.var, stats.expected_var, rtol=1e-10)
    assert (stats.expected_var < 1).all()  # sigma^2 / (sigma^2 + eps): 1 only up to eps
    assert stats.dense_gap < 1e-12


def test_conv_bias_gradient_is_zero_in_float64_and_needs_a_bias():
    data = load_digits_split(seed=0)
    X, y = data.X_train[:60], data.y_train[:60]
    model = make_convnet(norm="batch", bias=True, seed=0).double()
    assert all(db < 1e-14 for db, _ in conv_bias_gradients(model, X, y))
    with pytest.raises(ValueError, match="bias=True"):
        conv_bias_gradients(make_convnet(norm="batch", seed=0), X, y)


def test_folding_the_course_batchnorm2d_keeps_every_prediction():
    data = load_digits_split(seed=0)
    model = make_convnet(norm="batch", bn_impl="course_lib", seed=0)
    train(model, data, steps=30, lr=0.1, seed=0, eval_every=30)
    folded, gap, changed = fold_check(model, data.X_test)
    assert not norm_layers(folded) and len(folded) == len(model) - 2
    assert gap < 1e-4 and changed == 0


def test_sweep_runs_cover_both_norms_at_the_small_and_large_rate():
    s = SweepSettings()
    assert s.runs == (("batch", 0.01), ("none", 0.01), ("batch", 1.0), ("none", 1.0),
                      ("batch", 3.0))
