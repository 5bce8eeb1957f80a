"""Tests for course_lib.fold: folding eval-mode batch norm into the preceding layer."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn as cnn
from course_lib.fold import fold, fold_linear, fold_model, fold_params

SEEDS = [0, 1, 2, 3, 4]


def _trained_bn(bn, layer, x_shape, gen):
    """Random gamma/beta and running statistics far from their (0, 1) start; then eval."""
    with torch.no_grad():
        if bn.weight is not None:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) * 2 + 0.2)
        if bn.bias is not None:
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
        bn.train()
        for _ in range(5):
            bn(layer(torch.randn(x_shape, generator=gen) * 3 + 1))
    return bn.eval()


def _bn_kinds(dim):
    torch_cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dim]
    course_cls = {1: cnn.BatchNorm1d, 2: cnn.BatchNorm2d, 3: cnn.BatchNorm3d}[dim]
    return {
        "torch": lambda c: torch_cls(c),
        "course_lib": lambda c: course_cls(c),
        "affine=False": lambda c: torch_cls(c, affine=False),
        "course_lib bias=False": lambda c: course_cls(c, bias=False),
        "momentum=None": lambda c: torch_cls(c, momentum=None),
    }


def test_fold_linear_is_batchnorm_of_the_layer_torch_and_numpy():
    """fold_linear (what the page shows) computes eval-mode torch BN of W x + b."""
    gen = torch.Generator().manual_seed(0)
    lin, bn = nn.Linear(4, 3).double(), _trained_bn_for_test(gen)
    W, b = lin.weight.detach(), lin.bias.detach()
    Wf, bf = fold_linear(W, b, bn.weight.detach(), bn.bias.detach(), bn.running_mean,
                         bn.running_var, bn.eps)
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(x @ Wf.T + bf, bn(lin(x)).detach(), rtol=1e-12, atol=1e-12)
    Wn, bn_ = fold_linear(*(t.numpy() for t in (W, b, bn.weight.detach(), bn.bias.detach(),
                                                bn.running_mean, bn.running_var)), bn.eps)
    np.testing.assert_allclose(Wn, Wf.numpy(), rtol=1e-15)
    np.testing.assert_allclose(bn_, bf.numpy(), rtol=1e-15)


def _trained_bn_for_test(gen):
    bn = nn.BatchNorm1d(3, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(3, generator=gen, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    for _ in range(3):
        bn(torch.randn(16, 3, generator=gen, dtype=torch.float64) * 2 + 1)
    return bn.eval()


def test_fold_params_checks_sizes_and_eps():
    W, v = np.ones((3, 4)), np.ones(3)
    with pytest.raises(ValueError, match=r"expected running_var of shape \(C,\) = \(3,\).*W.shape\[0\]"):
        fold_params(W, v, v, v, v, np.ones(4), 1e-5)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        fold_params(W, v, v, v, v, v, -1.0)
    with pytest.raises(TypeError, match="eps"):
        fold_params(W, v, v, v, v, v, None)


def test_fold_params_formula_numpy_and_torch():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 4)), rng.normal(size=3)
    gamma, beta = rng.uniform(0.5, 2, size=3), rng.normal(size=3)
    mu, var, eps = rng.normal(size=3), rng.uniform(0.1, 3, size=3), 1e-3
    Wf, bf = fold_params(W, b, gamma, beta, mu, var, eps)
    for c in range(3):  # row by row, spelled out
        s = gamma[c] / np.sqrt(var[c] + eps)
        np.testing.assert_allclose(Wf[c], s * W[c], rtol=1e-14)
        np.testing.assert_allclose(bf[c], s * (b[c] - mu[c]) + beta[c], rtol=1e-14)
    Wt, bt = fold_params(*(torch.from_numpy(a) for a in (W, b, gamma, beta, mu, var)), eps)
    np.testing.assert_allclose(Wt.numpy(), Wf, rtol=1e-15)
    np.testing.assert_allclose(bt.numpy(), bf, rtol=1e-15)
    # Conv weights: the scale goes along the output-channel axis 0.
    W4 = rng.normal(size=(3, 2, 3, 3))
    W4f, _ = fold_params(W4, b, gamma, beta, mu, var, eps)
    np.testing.assert_allclose(W4f, W4 * (gamma / np.sqrt(var + eps))[:, None, None, None])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(_bn_kinds(1)))
def test_fold_linear_bn1d(seed, bias, kind):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lin = nn.Linear(7, 5, bias=bias)
    bn = _trained_bn(_bn_kinds(1)[kind](5), lin, (32, 7), gen)
    lin_before, bn_before = copy.deepcopy(lin.state_dict()), copy.deepcopy(bn.state_dict())
    folded = fold(lin, bn)
    assert type(folded) is nn.Linear and folded.bias is not None
    x = torch.randn(64, 7, generator=gen) * 2
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(lin(x)))  # float32 tolerances
    # The inputs are not modified.
    for k, v in lin.state_dict().items():
        assert torch.equal(v, lin_before[k])
    for k, v in bn.state_dict().items():
        assert torch.equal(v, bn_before[k])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "conv_kwargs",
    [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2, groups=2),
     dict(stride=(2, 1), padding=(0, 1), padding_mode="reflect")],
    ids=["plain", "stride-padding", "dilation-groups", "reflect"],
)
@pytest.mark.parametrize("kind", ["torch", "course_lib", "affine=False"])
def test_fold_conv2d_bn2d(seed, bias, conv_kwargs, kind):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv = nn.Conv2d(4, 6, 3, bias=bias, **conv_kwargs)
    bn = _trained_bn(_bn_kinds(2)[kind](6), conv, (8, 4, 9, 9), gen)
    folded = fold(conv, bn)
    assert type(folded) is nn.Conv2d
    assert (folded.stride, folded.padding, folded.dilation, folded.groups, folded.padding_mode) == (
        conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode)
    x = torch.randn(3, 4, 9, 9, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(conv(x)))


@pytest.mark.parametrize(
    "layer, dim, x_shape",
    [(nn.Conv1d(3, 4, 3, padding=1), 1, (6, 3, 10)), (nn.Conv3d(2, 3, 2), 3, (4, 2, 4, 4, 4))],
    ids=["conv1d", "conv3d"],
)
def test_fold_conv1d_conv3d(layer, dim, x_shape):
    gen = torch.Generator().manual_seed(0)
    for kind in ("torch", "course_lib"):
        bn = _trained_bn(_bn_kinds(dim)[kind](layer.out_channels), layer, x_shape, gen)
        x = torch.randn(x_shape, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(fold(layer, bn)(x), bn(layer(x)))


def test_fold_float64_is_exact_to_round_off():
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(6, 4).double()
    bn = nn.BatchNorm1d(4).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0, generator=gen)
        bn(lin(torch.randn(50, 6, generator=gen, dtype=torch.float64)))
    bn.eval()
    folded = fold(lin, bn)
    assert folded.weight.dtype == torch.float64
    x = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), bn(lin(x)), rtol=1e-13, atol=1e-13)


def test_fold_errors():
    lin, bn = nn.Linear(3, 4), nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match=r"training mode.*model.eval\(\)"):
        fold(lin, bn)  # a fresh module is in training mode
    bn.eval()
    with pytest.raises(ValueError, match="num_features=4"):
        fold(nn.Linear(3, 5), bn)
    with pytest.raises(ValueError, match="track_running_stats=False"):
        fold(lin, nn.BatchNorm1d(4, track_running_stats=False).eval())
    with pytest.raises(TypeError, match="BatchNorm2d"):
        fold(nn.Conv2d(3, 4, 3), bn)
    with pytest.raises(TypeError, match="BatchNorm1d"):
        fold(lin, nn.BatchNorm2d(4).eval())
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv"):
        fold(nn.ConvTranspose2d(3, 4, 3), nn.BatchNorm2d(4).eval())
    with pytest.raises(TypeError, match="batch norm layer"):
        fold(lin, nn.LayerNorm(4))


# ---- fold_model ----------------------------------------------------------------------------


def _mlp(seed, bn_cls=nn.BatchNorm1d):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), bn_cls(16), nn.ReLU(),
        nn.Linear(16, 16, bias=False), bn_cls(16), nn.ReLU(),
        nn.Linear(16, 3),
    )


def _cnn(seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, stride=2), cnn.BatchNorm2d(8), nn.ReLU()),
        nn.BatchNorm2d(8),  # after a ReLU: nothing to fold it into, stays
        nn.Flatten(), nn.Linear(8 * 7 * 7, 4), nn.BatchNorm1d(4),
    )


def _train_a_little(model, x_shape, gen):
    model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, cnn._BatchNorm)):
                m.weight.uniform_(0.5, 2.0, generator=gen)
                m.bias.normal_(generator=gen)
        for _ in range(5):
            model(torch.randn(x_shape, generator=gen) * 2 + 0.5)
    return model.eval()


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


BN_TYPES = (nn.modules.batchnorm._BatchNorm, cnn._BatchNorm)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, cnn.BatchNorm1d], ids=["torch", "course_lib"])
def test_fold_model_mlp(seed, bn_cls):
    gen = torch.Generator().manual_seed(seed)
    model = _train_a_little(_mlp(seed, bn_cls), (32, 6), gen)
    state = copy.deepcopy(model.state_dict())
    folded = fold_model(model)
    assert len(model) == 7 and len(folded) == 5  # one layer fewer per block
    assert _count(folded, BN_TYPES) == 0
    assert [type(m) for m in folded] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert not folded.training
    x = torch.randn(100, 6, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))
    for k, v in model.state_dict().items():  # the original is untouched
        assert torch.equal(v, state[k])
    # The unfolded last layer is a copy, not shared with the original.
    assert folded[4] is not model[6]


@pytest.mark.parametrize("seed", SEEDS)
def test_fold_model_cnn_nested(seed):
    gen = torch.Generator().manual_seed(seed)
    model = _train_a_little(_cnn(seed), (8, 3, 16, 16), gen)
    folded = fold_model(model)
    assert _count(model, BN_TYPES) == 4 and _count(folded, BN_TYPES) == 1  # the one after ReLU
    assert len(folded) == len(model) - 2 and len(folded[2]) == 2
    x = torch.randn(5, 3, 16, 16, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_fold_model_errors():
    with pytest.raises(ValueError, match="training mode"):
        fold_model(_mlp(0))  # forgot model.eval()
    with pytest.raises(TypeError, match="nn.Sequential"):
        fold_model(nn.Linear(3, 3))
