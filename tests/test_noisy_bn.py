"""Tests for course_lib.experiments.probes.noisy_bn: noisy BN is batch norm plus a documented random per-unit
scale and shift in training, exactly batch norm in eval, reproducible from its generator."""

from __future__ import annotations

import functools

import pytest
import torch

from course_lib.experiments.lab.models import make_mlp
from course_lib.nn import BatchNorm1d
from course_lib.experiments.probes.noisy_bn import NoisyBatchNorm1d, noisy_bn


def _pair(c=5, **kw):
    """A noisy layer and a plain BN layer with the same random gamma and beta."""
    noisy, plain = NoisyBatchNorm1d(c, **kw), BatchNorm1d(c)
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for layer in (noisy, plain):
            layer.weight.copy_(torch.rand(c, generator=g) + 0.5)
            layer.bias.copy_(torch.randn(c, generator=g))
            g.manual_seed(123)
    return noisy, plain


def test_is_a_course_lib_batchnorm1d_with_the_same_state_dict_keys():
    layer = NoisyBatchNorm1d(4)
    assert isinstance(layer, BatchNorm1d)
    assert layer.state_dict().keys() == BatchNorm1d(4).state_dict().keys()
    assert "scale=U(0.5, 1.5)" in repr(layer) and "shift=N(0, 1^2)" in repr(layer)


def test_training_output_is_scale_times_bn_plus_shift_per_unit():
    noisy, plain = _pair(6, seed=3)
    z = torch.randn(40, 6, generator=torch.Generator().manual_seed(0)) * 3 + 1
    out = noisy.forward(z)  # the method chapter 4 shows
    s, t = noisy.last_scale, noisy.last_shift
    torch.testing.assert_close(out, plain(z) * s + t, rtol=1e-6, atol=1e-6)
    # The draw is the documented one: scale ~ U(0.5, 1.5) from torch.rand, shift ~ N(0, 1)
    # from torch.randn, on the layer's generator, in that order.
    g = torch.Generator().manual_seed(3)
    u = torch.rand(6, generator=g, dtype=torch.float64)
    n = torch.randn(6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(s, (0.5 + u).float())
    torch.testing.assert_close(t, n.float())
    # Running statistics see z, before the noise: the same as plain BN's.
    torch.testing.assert_close(noisy.running_mean, plain.running_mean)
    torch.testing.assert_close(noisy.running_var, plain.running_var)


def test_each_training_step_draws_new_noise_that_moves_the_units_distribution():
    noisy, _ = _pair(100, seed=0)
    z = torch.randn(200, 100)
    means = []
    for _ in range(3):
        out = noisy(z)
        means.append(out.mean(dim=0))
    assert not torch.allclose(means[0], means[1]) and not torch.allclose(means[1], means[2])
    # Within a step, a unit's output has mean s * beta + t and std s * |gamma|: not BN's.
    s, t = noisy.last_scale, noisy.last_shift
    torch.testing.assert_close(out.mean(0), s * noisy.bias.detach() + t, rtol=1e-4, atol=1e-4)
    std = out.std(0, unbiased=False)
    torch.testing.assert_close(std, s * noisy.weight.detach().abs(), rtol=1e-3, atol=1e-4)


def test_noise_statistics_match_the_documented_distribution():
    layer = NoisyBatchNorm1d(20_000, scale_range=(0.2, 3.0), shift_mean=0.7, shift_std=2.0, seed=5)
    s, t = layer.sample_noise(torch.zeros(1))
    assert 0.2 <= float(s.min()) and float(s.max()) <= 3.0
    assert abs(float(s.mean()) - 1.6) < 0.03 and abs(float(s.var()) - 2.8**2 / 12) < 0.03
    assert abs(float(t.mean()) - 0.7) < 0.05 and abs(float(t.std()) - 2.0) < 0.05


def test_eval_mode_is_exactly_batch_norm_and_draws_nothing():
    noisy, plain = _pair(5, seed=1)
    z = torch.randn(30, 5)
    for _ in range(3):  # some running statistics
        noisy(z * 2 + 1), plain(z * 2 + 1)
    noisy.eval(), plain.eval()
    state = noisy.generator.get_state()
    assert torch.equal(noisy(z), plain(z))
    assert torch.equal(noisy(z[:1]), plain(z[:1]))  # one example is fine in eval mode
    assert torch.equal(noisy.generator.get_state(), state)


def test_same_seed_same_noise_and_global_rng_untouched():
    z = torch.randn(16, 8)
    before = torch.random.get_rng_state()
    a = NoisyBatchNorm1d(8, seed=7)(z)
    b = NoisyBatchNorm1d(8, seed=7)(z)
    c = NoisyBatchNorm1d(8, seed=8)(z)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_gradients_flow_through_the_noise_to_gamma_beta_and_input():
    noisy, plain = _pair(4, seed=2)
    z = torch.randn(10, 4, dtype=torch.float32, requires_grad=True)
    upstream = torch.randn(10, 4)  # a random upstream gradient, never a plain sum
    noisy(z).backward(upstream)
    s = noisy.last_scale
    z2 = z.detach().clone().requires_grad_(True)
    plain(z2).backward(upstream * s)  # d(out)/d(bn) = s: the noise scales the gradient
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(noisy.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(noisy.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-6)


def test_three_dimensional_input_gets_one_noise_per_channel():
    layer = NoisyBatchNorm1d(3, seed=0)
    z = torch.randn(4, 3, 5)
    out = layer(z)
    plain = BatchNorm1d(3)(z)
    expected = plain * layer.last_scale.view(1, 3, 1) + layer.last_shift.view(1, 3, 1)
    torch.testing.assert_close(out, expected)


def test_float64_layer_keeps_float64():
    layer = NoisyBatchNorm1d(3, seed=0, dtype=torch.float64)
    assert layer(torch.randn(6, 3, dtype=torch.float64)).dtype == torch.float64


def test_usable_in_make_mlp_with_a_shared_generator_or_a_partial():
    model = make_mlp(64, [100, 100, 100], 10, bn="before", bn_impl=noisy_bn(seed=0), seed=0)
    layers = [model.bn1, model.bn2, model.bn3]
    assert all(isinstance(m, NoisyBatchNorm1d) for m in layers)
    assert layers[0].generator is layers[2].generator
    model(torch.randn(60, 64))
    assert not torch.allclose(layers[0].last_shift, layers[1].last_shift)  # shared stream
    # Same initial weights as the plain BN model with the same seed: only the noise differs.
    plain = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert torch.equal(p, q), name
    partial = functools.partial(NoisyBatchNorm1d, scale_range=(1.0, 2.0), seed=4)
    other = make_mlp(8, [5], 2, bn="before", bn_impl=partial)
    assert other.bn1.scale_range == (1.0, 2.0)


def test_zero_noise_is_plain_batch_norm():
    noisy, plain = _pair(5, scale_range=(1.0, 1.0), shift_std=0.0)
    z = torch.randn(12, 5)
    torch.testing.assert_close(noisy(z), plain(z))


def test_reproducible_training_run():
    from course_lib.experiments.lab.data import load_digits_split
    from course_lib.experiments.lab.training import train

    data = load_digits_split(seed=0, n_train=300)
    losses = []
    for _ in range(2):
        model = make_mlp(64, [20, 20], 10, bn="before", bn_impl=noisy_bn(seed=1), seed=0)
        losses.append(train(model, data, steps=20, lr=0.5, eval_every=20).loss)
    assert losses[0] == losses[1]
    model = make_mlp(64, [20, 20], 10, bn="before", bn_impl=noisy_bn(seed=2), seed=0)
    assert train(model, data, steps=20, lr=0.5, eval_every=20).loss != losses[0]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"scale_range": (2.0, 1.0)}, ValueError, ["a <= b"]),
        ({"scale_range": (-1.0, 1.0)}, ValueError, [">= 0"]),
        ({"scale_range": 1.5}, TypeError, ["pair"]),
        ({"shift_std": -1.0}, ValueError, ["shift_std", ">= 0"]),
        ({"shift_mean": float("nan")}, ValueError, ["shift_mean", "finite"]),
        ({"shift_mean": "0"}, TypeError, ["shift_mean", "number"]),
        ({"generator": 3}, TypeError, ["torch.Generator"]),
        ({"seed": 1.5}, TypeError, ["seed"]),
    ],
)
def test_bad_settings_are_explained(kwargs, error, words):
    with pytest.raises(error) as info:
        NoisyBatchNorm1d(4, **kwargs)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_noisy_bn_factory_checks_settings_up_front():
    with pytest.raises(ValueError, match="a <= b"):
        noisy_bn(scale_range=(3.0, 1.0))
    with pytest.raises(TypeError, match="seed"):
        noisy_bn(seed="0")


def test_bad_input_is_refused_like_batch_norm():
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        NoisyBatchNorm1d(4)(torch.randn(2, 4, 3, 3))


def test_default_noise_is_the_identity_on_average_so_eval_matches_training_on_average():
    s, t = NoisyBatchNorm1d(50_000, seed=0).sample_noise(torch.zeros(1))
    assert abs(float(s.mean()) - 1.0) < 0.01 and abs(float(t.mean())) < 0.02
    assert float((s - 1).abs().mean()) > 0.2 and float(t.abs().mean()) > 0.7  # but not per step
