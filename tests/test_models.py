"""Tests for course_lib/experiments/lab/models.py: the MLP builder, the one way to name a
normalization layer (norm_factory) and the helpers."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn
import course_lib.norm_layers
from course_lib.borrow import batchnorm_layers
from course_lib.experiments.lab.models import (
    DEFAULT_NORM_IMPL,
    NORM_KINDS,
    count_parameters,
    hidden_pre_activations,
    make_mlp,
    norm_factory,
)

SEEDS = [0, 1, 2, 3, 4]


def kinds(model: nn.Sequential) -> list[tuple[str, str]]:
    return [(name, type(m).__name__) for name, m in model.named_children()]


# ------------------------------------------------------------------------ structure


def test_order_bn_before():
    model = make_mlp(4, [5, 6], 3, bn="before", bn_impl="torch")
    assert kinds(model) == [
        ("linear1", "Linear"), ("bn1", "BatchNorm1d"), ("act1", "Sigmoid"),
        ("linear2", "Linear"), ("bn2", "BatchNorm1d"), ("act2", "Sigmoid"),
        ("output", "Linear"),
    ]


def test_order_bn_after():
    model = make_mlp(4, [5, 6], 3, bn="after", bn_impl="torch")
    assert kinds(model) == [
        ("linear1", "Linear"), ("act1", "Sigmoid"), ("bn1", "BatchNorm1d"),
        ("linear2", "Linear"), ("act2", "Sigmoid"), ("bn2", "BatchNorm1d"),
        ("output", "Linear"),
    ]


def test_order_no_bn_with_dropout_last_in_each_layer():
    model = make_mlp(4, [5, 6], 3, activation="relu", dropout=0.25)
    assert kinds(model) == [
        ("linear1", "Linear"), ("act1", "ReLU"), ("dropout1", "Dropout"),
        ("linear2", "Linear"), ("act2", "ReLU"), ("dropout2", "Dropout"),
        ("output", "Linear"),
    ]
    assert model.dropout1.p == 0.25
    after = make_mlp(4, [5], 3, bn="after", dropout=0.5)
    assert [name for name, _ in after.named_children()] == [
        "linear1", "act1", "bn1", "dropout1", "output"
    ]


def test_widths_and_shapes():
    model = make_mlp(64, [100, 50, 20], 10, bn="before")
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (64, 100), (100, 50), (50, 20), (20, 10)
    ]
    assert [m.num_features for m in _bn_modules(model)] == [100, 50, 20]
    assert model(torch.randn(7, 64)).shape == (7, 10)
    assert kinds(make_mlp(64, [], 10)) == [("output", "Linear")]
    assert make_mlp(64, np.array([30, 20]), 10).linear2.out_features == 20  # any iterable of ints


@pytest.mark.parametrize("bn", ["before", "after", None])
def test_bias_only_where_bn_does_not_follow(bn):
    model = make_mlp(64, [100, 100, 100], 10, bn=bn)
    for l in (1, 2, 3):
        has_bias = getattr(model, f"linear{l}").bias is not None
        assert has_bias == (bn != "before")
    assert model.output.bias is not None


@pytest.mark.parametrize(
    "bn, expected",
    [
        # weights 64*100 + 100*100 + 100*100 + 100*10 = 27400, output bias 10
        (None, 27400 + 3 * 100 + 10),  # + a bias per hidden unit
        ("before", 27400 + 3 * 2 * 100 + 10),  # + gamma and beta per hidden unit, no bias
        ("after", 27400 + 3 * 100 + 3 * 2 * 100 + 10),  # bias and gamma and beta
    ],
)
def test_parameter_counts(bn, expected):
    assert count_parameters(make_mlp(64, [100, 100, 100], 10, bn=bn)) == expected


def test_bn_before_has_the_same_count_as_no_bn_plus_gamma():
    # Dropping the bias and adding beta keeps the count; gamma is the only addition.
    no_bn = count_parameters(make_mlp(64, [100, 100, 100], 10))
    assert count_parameters(make_mlp(64, [100, 100, 100], 10, bn="before")) == no_bn + 300


def test_count_parameters_skips_frozen_and_buffers():
    model = make_mlp(3, [4], 2, bn="before")  # 12 + 4 + 4 + 8 + 2 = 30; buffers do not count
    assert count_parameters(model) == 30
    model.output.weight.requires_grad_(False)
    assert count_parameters(model) == 22
    assert count_parameters(model, trainable_only=False) == 30


# ------------------------------------------------------------------- implementations


def test_bn_impl_default_is_course_lib_and_torch_on_request():
    assert all(type(m) is course_lib.nn.BatchNorm1d for m in _bn_modules(make_mlp(4, [5, 6], 3, bn="before")))
    assert all(type(m) is nn.BatchNorm1d for m in _bn_modules(make_mlp(4, [5, 6], 3, bn="after", bn_impl="torch")))


@pytest.mark.parametrize("impl", ["course_lib", "torch"])
@pytest.mark.parametrize("kind, options, dense_type, conv_type", [
    ("batch", {}, "BatchNorm1d", "BatchNorm2d"),
    ("layer", {}, "LayerNorm", "GroupNorm"),
    ("group", {"groups": 2}, "GroupNorm", "GroupNorm"),
])
def test_norm_factory_names_kind_and_implementation(impl, kind, options, dense_type, conv_type):
    lib = course_lib.norm_layers if impl == "course_lib" else nn
    dense = norm_factory(kind, impl, **options)(6)
    conv = norm_factory(kind, impl, spatial=True, **options)(6)
    assert type(dense) is getattr(lib, dense_type)
    assert type(conv) is getattr(lib, conv_type)
    assert dense(torch.randn(4, 6)).shape == (4, 6)
    assert conv(torch.randn(4, 6, 3, 3)).shape == (4, 6, 3, 3)


def test_norm_factory_defaults_and_options():
    assert DEFAULT_NORM_IMPL == "course_lib"
    assert type(norm_factory()(5)) is course_lib.nn.BatchNorm1d
    assert norm_factory("batch", momentum=0.01)(5).momentum == 0.01
    assert type(norm_factory("renorm", warmup_steps=3)(5)) is course_lib.norm_layers.BatchRenorm1d
    assert norm_factory("renorm", warmup_steps=3)(5).warmup_steps == 3
    assert norm_factory("none") is None
    assert set(NORM_KINDS) == {"batch", "renorm", "layer", "group", "none"}


def test_norm_factory_layer_norm_of_conv_maps_is_layer_norm():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    conv_ln = norm_factory("layer", spatial=True)(4).double()
    assert torch.allclose(conv_ln(x), course_lib.norm_layers.layer_norm(x, (4, 5, 5)), atol=1e-12)


def test_make_mlp_takes_any_kind_from_norm_factory():
    model = make_mlp(4, [6], 3, bn="before", bn_impl=norm_factory("group", groups=3))
    assert type(model.bn1) is course_lib.norm_layers.GroupNorm


@pytest.mark.parametrize("args, error, match", [
    (("weight",), ValueError, "unknown kind"),
    (("batch", "keras"), ValueError, "impl must be 'course_lib'"),
    (("renorm", "torch"), ValueError, "no batch renormalization"),
    (("group",), ValueError, "needs groups="),
])
def test_norm_factory_refuses_what_it_cannot_build(args, error, match):
    with pytest.raises(error, match=match):
        norm_factory(*args)


def test_norm_factory_refuses_groups_for_other_kinds():
    with pytest.raises(ValueError, match="for kind='group' only"):
        norm_factory("batch", groups=2)


def test_bn_impl_callable():
    model = make_mlp(4, [5], 3, bn="before", bn_impl=functools.partial(nn.BatchNorm1d, momentum=None))
    assert model.bn1.momentum is None


# float64 shows the swap is exact math (1e-12); float32 differs only by round-off.
TOLERANCES = {torch.float64: {"rtol": 1e-10, "atol": 1e-12}, torch.float32: {"rtol": 1e-4, "atol": 3e-5}}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bn", ["before", "after"])
def test_course_lib_and_torch_bn_models_compute_the_same(seed, bn, dtype):
    tol = TOLERANCES[dtype]
    models = {impl: make_mlp(64, [100, 100, 100], 10, bn=bn, bn_impl=impl, seed=seed).to(dtype)
              for impl in ("course_lib", "torch")}
    ours, theirs = models["course_lib"], models["torch"]
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(p, q), name  # same seed, same weights, whichever BN
    x = torch.randn(60, 64, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    upstream = torch.randn(60, 10, generator=torch.Generator().manual_seed(seed + 100), dtype=dtype)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs, **tol)
    out_ours.backward(upstream)
    out_theirs.backward(upstream)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        scale = q.grad.abs().max()
        torch.testing.assert_close(p.grad / scale, q.grad / scale, **tol, msg=name)
    for a, b in zip(_bn_modules(ours), _bn_modules(theirs)):
        torch.testing.assert_close(a.running_mean, b.running_mean, **tol)
        torch.testing.assert_close(a.running_var, b.running_var, **tol)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x[:1]), theirs(x[:1]), **tol)


# ---------------------------------------------------------------------- initialization


@pytest.mark.parametrize("scale", [0.01, 0.1, 1.0, 5.0])
def test_init_scale_sets_the_weights_std(scale):
    model = make_mlp(100, [200, 200], 10, bn="before", init_scale=scale, seed=0)
    for name in ("linear1", "linear2"):
        w = getattr(model, name).weight  # 20,000 and 40,000 draws: std within 2%
        assert w.std().item() == pytest.approx(scale, rel=0.02)
        assert abs(w.mean().item()) < 0.03 * scale
    assert torch.all(model.output.bias == 0)


def test_default_init_is_pytorchs():
    model = make_mlp(64, [100], 10, seed=0)
    bound = 1 / 64**0.5  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = model.linear1.weight
    assert w.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)


def test_seed_reproducible_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = make_mlp(64, [100, 100], 10, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = make_mlp(64, [100, 100], 10, seed=5)
    c = make_mlp(64, [100, 100], 10, seed=6)
    assert torch.equal(a.linear1.weight, b.linear1.weight)
    assert torch.equal(a.output.bias, b.output.bias)
    assert not torch.equal(a.linear1.weight, c.linear1.weight)


def test_activations_by_name_and_class():
    assert isinstance(make_mlp(2, [3], 2, activation="tanh").act1, nn.Tanh)
    assert isinstance(make_mlp(2, [3], 2, activation="ReLU").act1, nn.ReLU)
    assert isinstance(make_mlp(2, [3], 2, activation=nn.GELU).act1, nn.GELU)
    model = make_mlp(2, [3, 3], 2, activation=nn.ELU)
    assert model.act1 is not model.act2  # a fresh module per layer


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"widths": 100}, TypeError, r"widths must be a list of hidden-layer sizes .*got int 100"),
        ({"widths": "100"}, TypeError, r"widths must be a list of hidden-layer sizes"),
        ({"widths": [100, 0]}, ValueError, r"make_mlp: widths\[1\] must be an int >= 1 \(got 0\)"),
        ({"widths": [100.0]}, TypeError, r"make_mlp: widths\[0\] must be an int \(got float"),
        ({"in_features": 0}, ValueError, "make_mlp: in_features must be an int >= 1"),
        ({"activation": "softplus"}, ValueError, r"unknown activation 'softplus'; use one of \['relu', 'sigmoid', 'tanh'\]"),
        ({"activation": nn.ReLU()}, TypeError, r"pass ReLU instead of ReLU\(\)"),
        ({"activation": 3}, TypeError, "activation must be"),
        ({"bn": True}, ValueError, "bn must be 'before'"),
        ({"bn": "middle"}, ValueError, r"bn must be 'before' .* \(got 'middle'\)"),
        ({"bn": "before", "bn_impl": "keras"}, ValueError, "bn_impl must be 'course_lib'"),
        ({"bn": None, "bn_impl": "Torch"}, ValueError, r"bn_impl must be .*\(got 'Torch'\)"),
        ({"bn": "before", "bn_impl": nn.BatchNorm1d(3)}, TypeError, "not a module instance"),
        ({"init_scale": 0.0}, ValueError, "init_scale .* must be positive"),
        ({"init_scale": "1"}, TypeError, "init_scale must be a positive number"),
        ({"dropout": 1.0}, ValueError, r"dropout .* must be in \[0, 1\) \(got 1.0\)"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
    ],
)
def test_bad_arguments_have_clear_errors(kwargs, error, match):
    args = {"in_features": 4, "widths": [5], "out_features": 3, **kwargs}
    with pytest.raises(error, match=match):
        make_mlp(**args)


# ---------------------------------------------------------------------------- helpers


def _bn_modules(model):
    return [m for _, m in batchnorm_layers(model)]


def test_bn_layers_in_order_for_both_implementations():
    for impl in ("course_lib", "torch"):
        model = make_mlp(4, [5, 6, 7], 3, bn="before", bn_impl=impl)
        assert _bn_modules(model) == [model.bn1, model.bn2, model.bn3]
    assert _bn_modules(make_mlp(4, [5], 3)) == []


@pytest.mark.parametrize("bn", ["before", "after", None])
def test_hidden_pre_activations(bn):
    model = make_mlp(8, [6, 5], 3, bn=bn, seed=0)
    model(torch.randn(32, 8))  # one training step's worth of running statistics
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(20, 8)
    z1, z2 = hidden_pre_activations(model, x)
    # By hand, in eval mode.
    model.eval()
    with torch.no_grad():
        h = model.linear1(x)
        if bn == "before":
            h = model.bn1(h)
        torch.testing.assert_close(z1, h)
        a1 = model.act1(h)
        if bn == "after":
            a1 = model.bn1(a1)
        h2 = model.linear2(a1)
        if bn == "before":
            h2 = model.bn2(h2)
        torch.testing.assert_close(z2, h2)
    model.train()
    for k, v in model.state_dict().items():  # running statistics untouched
        assert torch.equal(v, state[k]), k
    assert model.training and not z1.requires_grad


def test_hidden_pre_activations_needs_named_activations():
    with pytest.raises(ValueError, match="build it with course_lib.experiments.lab.models.make_mlp"):
        hidden_pre_activations(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(3, 2))
