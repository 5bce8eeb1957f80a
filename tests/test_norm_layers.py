"""Chapter 8's layers (course_lib.norm_layers) against torch: layer, group and instance norm,
batch renorm and ghost batch norm (forward, backward, state_dict, running statistics), and
what they refuse: bad input before any state changes, bad arguments at construction."""

from __future__ import annotations

import pytest
import torch

from course_lib import nn as cnn
from course_lib import norm_layers as norms

D64 = torch.float64


def _compare(mine, ref, x, steps=3, tol=1e-10):
    """Same outputs, input and parameter gradients, buffers; in training then in eval mode."""
    assert list(mine.state_dict()) == list(ref.state_dict())
    mine.load_state_dict(ref.state_dict())
    for mode in ("train", "eval"):
        getattr(mine, mode)(), getattr(ref, mode)()
        for step in range(steps):
            xs = (x * (1 + step)).detach().requires_grad_(True)
            xr = xs.detach().clone().requires_grad_(True)
            y, y_ref = mine(xs), ref(xr)
            g = torch.randn_like(y)
            (y * g).sum().backward()
            (y_ref * g).sum().backward()
            assert torch.allclose(y, y_ref, rtol=tol, atol=tol)
            assert torch.allclose(xs.grad, xr.grad, rtol=tol, atol=tol)
            for (name, p), p_ref in zip(mine.named_parameters(), ref.parameters()):
                assert torch.allclose(p.grad, p_ref.grad, rtol=tol, atol=tol), name
            for (name, b), b_ref in zip(mine.named_buffers(), ref.buffers()):
                assert torch.equal(b, b_ref) if b.dtype == torch.long else \
                    torch.allclose(b, b_ref, rtol=tol, atol=tol), name


@pytest.mark.parametrize("shape,normalized", [
    ((4, 10), (10,)), ((3, 5, 7), (7,)), ((3, 5, 7), (5, 7)), ((2, 3, 4, 4), (3, 4, 4)),
    ((2, 3, 4, 4), (4,)),
])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, True)])
def test_layer_norm_matches_torch(shape, normalized, affine, bias):
    torch.manual_seed(0)
    kw = dict(elementwise_affine=affine, bias=bias, eps=1e-3, dtype=D64)
    ref = torch.nn.LayerNorm(normalized, **kw)
    if affine:
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_()
    mine = norms.LayerNorm(normalized[0] if len(normalized) == 1 else normalized, **kw)
    _compare(mine, ref, 2 + 3 * torch.randn(shape, dtype=D64))


@pytest.mark.parametrize("G,C", [(1, 6), (2, 6), (3, 6), (6, 6), (4, 8)])
@pytest.mark.parametrize("spatial", [(), (5,), (3, 4), (2, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_matches_torch(G, C, spatial, affine):
    torch.manual_seed(1)
    ref = torch.nn.GroupNorm(G, C, eps=1e-4, affine=affine, dtype=D64)
    if affine:
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_()
    mine = norms.GroupNorm(G, C, eps=1e-4, affine=affine, dtype=D64)
    x = torch.randn(3, C, *spatial, dtype=D64) * torch.arange(1, C + 1).reshape(
        1, C, *([1] * len(spatial))) + 1
    _compare(mine, ref, x)


@pytest.mark.parametrize("affine,track,momentum", [
    (False, False, 0.1), (True, False, 0.1), (False, True, 0.1), (True, True, 0.3),
    (True, True, None),
])
@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 3, 2, 3), (3, 5, 5)])
def test_instance_norm_matches_torch(affine, track, momentum, shape):
    torch.manual_seed(2)
    kw = dict(eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track, dtype=D64)
    ref = torch.nn.InstanceNorm2d(3, **kw)
    if affine:
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_()
    mine = norms.InstanceNorm2d(3, **kw)
    _compare(mine, ref, 1 + 2 * torch.randn(shape, dtype=D64))


def test_the_special_cases_of_group_norm():
    x = torch.randn(4, 6, 3, 3, dtype=D64)
    assert torch.allclose(norms.group_norm(x, 1), norms.layer_norm(x, (6, 3, 3)))
    assert torch.allclose(norms.group_norm(x, 6), norms.instance_norm(x))


def test_no_batch_coupling_in_layer_group_instance_norm():
    # One example gives the same output alone as inside any batch: no statistics over N.
    x = torch.randn(8, 6, 4, 4, dtype=D64)
    for layer in (norms.LayerNorm((6, 4, 4), dtype=D64), norms.GroupNorm(3, 6, dtype=D64),
                  norms.InstanceNorm2d(6, dtype=D64)):
        assert torch.allclose(layer(x)[:1], layer(x[:1]))
        layer.eval()
        assert torch.allclose(layer(x)[:1], layer(x[:1]))


@pytest.mark.parametrize("cls,bn_cls,shape", [
    (norms.BatchRenorm1d, torch.nn.BatchNorm1d, (8, 5)),
    (norms.BatchRenorm1d, torch.nn.BatchNorm1d, (8, 5, 3)),
    (norms.BatchRenorm2d, torch.nn.BatchNorm2d, (4, 5, 3, 3)),
])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_renorm_with_clips_1_and_0_is_batch_norm(cls, bn_cls, shape, momentum):
    torch.manual_seed(3)
    ref = bn_cls(5, momentum=momentum, dtype=D64)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
    mine = cls(5, momentum=momentum, r_max=1.0, d_max=0.0, dtype=D64)
    _compare(mine, ref, 3 + 2 * torch.randn(shape, dtype=D64), steps=4)


def test_batch_renorm_follows_the_paper():
    # Ioffe (2017), Algorithm 1, written out independently, with clipping active.
    torch.manual_seed(4)
    layer = norms.BatchRenorm1d(3, dtype=D64, r_max=1.5, d_max=0.5, momentum=0.2)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.0, 1.0, 5.0]))
        layer.running_var.copy_(torch.tensor([1.0, 9.0, 0.25]))
        layer.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        layer.bias.copy_(torch.tensor([0.0, 0.5, 1.0]))
    x = (torch.randn(6, 3, dtype=D64) * 2 + 1).requires_grad_(True)
    mu_run, var_run = layer.running_mean.clone(), layer.running_var.clone()
    y = layer(x)
    mu_B, sigma_B = x.mean(0), torch.sqrt(x.var(0, unbiased=False) + layer.eps)
    sigma = torch.sqrt(var_run + layer.eps)
    r = (sigma_B / sigma).detach().clamp(1 / 1.5, 1.5)
    d = ((mu_B - mu_run) / sigma).detach().clamp(-0.5, 0.5)
    assert (r == 1.5).any() or (r == 1 / 1.5).any() or (d.abs() == 0.5).any(), "clip active"
    expected = ((x - mu_B) / sigma_B * r + d) * layer.weight + layer.bias
    assert torch.allclose(y, expected)
    g = torch.randn_like(y)
    gx, = torch.autograd.grad(y, x, g, retain_graph=True)
    gx_ref, = torch.autograd.grad(expected, x, g)
    assert torch.allclose(gx, gx_ref)
    assert torch.allclose(layer.running_mean, 0.8 * mu_run + 0.2 * mu_B.detach())
    assert torch.allclose(layer.running_var, 0.8 * var_run + 0.2 * x.detach().var(0))


def test_batch_renorm_without_clipping_normalizes_with_the_running_statistics():
    layer = norms.BatchRenorm1d(3, dtype=D64, r_max=1e6, d_max=1e6)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.running_var.copy_(torch.tensor([2.0, 0.5, 4.0]))
    mu, var = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.randn(16, 3, dtype=D64)
    assert torch.allclose(layer(x), (x - mu) / torch.sqrt(var + layer.eps))


def test_renorm_normalize_is_the_papers_correction():
    # The teaching function called directly: without clipping it normalizes with mu and
    # sigma; with clips of 1 and 0 it is the batch's normalization; r, d carry no gradient.
    torch.manual_seed(5)
    z = (torch.randn(10, 3, 4, dtype=D64) * 3 + 2).requires_grad_(True)
    mu, sigma = torch.tensor([1.0, 2.0, 3.0], dtype=D64), torch.tensor([0.5, 2.0, 4.0],
                                                                       dtype=D64)
    free = norms.renorm_normalize(z, mu, sigma, 0.0, 1e9, 1e9)
    assert torch.allclose(free, (z - mu[:, None]) / sigma[:, None])
    plain = norms.renorm_normalize(z, mu, sigma, 1e-5, 1.0, 0.0)
    ref = torch.nn.functional.batch_norm(z, None, None, training=True, eps=1e-5)
    assert torch.allclose(plain, ref)
    g = torch.randn_like(z)
    gx, = torch.autograd.grad(free, z, g)
    assert not torch.allclose(gx, g / sigma[:, None]), "the gradient flows through mu_B"


def test_renorm_schedule():
    layer = norms.BatchRenorm1d(2, r_max=3.0, d_max=5.0, warmup_steps=2, ramp_steps=4)
    seen = []
    for _ in range(8):
        seen.append(layer.clips())
        layer(torch.randn(4, 2))
    assert seen[:2] == [(1.0, 0.0)] * 2
    assert seen[4] == (2.0, 2.5) and seen[-1] == (3.0, 5.0)
    state = layer.state_dict()
    bn = cnn.BatchNorm1d(2)
    bn.load_state_dict(state)  # the same keys: a trained renorm layer loads into BN
    layer.eval(), bn.eval()
    x = torch.randn(5, 2)
    assert torch.allclose(layer(x), bn(x))


def test_ghost_batch_norm_is_batch_norm_per_chunk():
    x = torch.randn(20, 4, dtype=D64)
    rm, rv = torch.zeros(4, dtype=D64), torch.ones(4, dtype=D64)
    rm2, rv2 = rm.clone(), rv.clone()
    y = norms.ghost_batch_norm(x, 8, rm, rv, training=True)
    expected = torch.cat([cnn.batch_norm(c, rm2, rv2, training=True) for c in x.split(8)])
    assert torch.allclose(y, expected) and torch.allclose(rm, rm2) and torch.allclose(rv, rv2)
    assert torch.allclose(norms.ghost_batch_norm(x, 8, rm, rv), cnn.batch_norm(x, rm, rv))


@pytest.mark.parametrize("make,x,match", [
    (lambda: norms.GroupNorm(4, 6), None, "divisible"),
    (lambda: norms.GroupNorm(2, 6), torch.randn(2, 4, 3), "num_channels=6"),
    (lambda: norms.LayerNorm(5), torch.randn(2, 4), r"\[\*, 5\]"),
    (lambda: norms.InstanceNorm2d(3), torch.randn(2, 3), "3D or 4D"),
    (lambda: norms.InstanceNorm2d(3), torch.randn(2, 3, 1, 1), "spatial"),
    (lambda: norms.InstanceNorm2d(3, affine=True), torch.randn(2, 4, 3, 3), "num_features=3"),
    (lambda: norms.BatchRenorm1d(3, track_running_stats=False), None, "track_running_stats"),
    (lambda: norms.BatchRenorm1d(3), torch.randn(1, 3), "more than 1 value"),
    (lambda: norms.BatchRenorm2d(3), torch.randn(4, 3), "4D"),
])
def test_bad_input_errors(make, x, match):
    with pytest.raises(ValueError, match=match):
        layer = make()
        layer(x)


def test_torch_rejects_what_we_reject():
    with pytest.raises(ValueError):
        torch.nn.GroupNorm(4, 6)
    with pytest.raises(ValueError):
        torch.nn.InstanceNorm2d(3)(torch.randn(2, 3, 1, 1))


def test_all_public():
    for name in ("LayerNorm", "GroupNorm", "InstanceNorm2d", "BatchRenorm1d", "BatchRenorm2d",
                 "layer_norm", "group_norm", "instance_norm", "batch_renorm",
                 "ghost_batch_norm"):
        assert name in norms.__all__


# ---- refused before any state changes -------------------------------------------------------

def _bad_batches():
    nan = torch.randn(6, 3)
    nan[2, 1] = float("nan")
    inf = torch.randn(6, 3)
    inf[0, 0] = float("inf")
    return [nan, inf, torch.randn(1, 3), torch.randn(6, 4)]


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("bad", range(4))
def test_batch_renorm_refuses_without_changing_state(momentum, bad):
    layer = norms.BatchRenorm1d(3, momentum=momentum, warmup_steps=3)
    layer(torch.randn(6, 3))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError):
        layer(_bad_batches()[bad])
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_refused_batches_do_not_use_up_the_warmup():
    layer = norms.BatchRenorm1d(3, warmup_steps=2)
    layer(torch.randn(6, 3))
    for bad in _bad_batches():
        with pytest.raises(ValueError):
            layer(bad)
    assert layer.clips() == (1.0, 0.0)


def test_a_good_batch_after_a_refused_one_gets_its_weight():
    layer = norms.BatchRenorm1d(3, momentum=None, r_max=1.0, d_max=0.0)
    ref = cnn.BatchNorm1d(3, momentum=None)
    x1, x2 = torch.randn(6, 3), torch.randn(6, 3) + 5
    layer(x1), ref(x1)
    with pytest.raises(ValueError):
        layer(_bad_batches()[0])
    layer(x2), ref(x2)
    assert torch.allclose(layer.running_mean, ref.running_mean)


@pytest.mark.parametrize("momentum", [2.0, -0.5, float("nan"), "0.1"])
def test_batch_renorm_validates_momentum_like_batch_norm(momentum):
    with pytest.raises((TypeError, ValueError), match="momentum"):
        norms.BatchRenorm1d(3, momentum=momentum)


@pytest.mark.parametrize("kw", [dict(r_max=0.5), dict(d_max=-1.0), dict(warmup_steps=-1),
                                dict(ramp_steps=2.5), dict(r_max=float("nan"))])
def test_batch_renorm_validates_its_schedule_at_construction(kw):
    with pytest.raises((TypeError, ValueError)):
        norms.BatchRenorm1d(3, **kw)


def test_ghost_batch_norm_refuses_before_updating_the_buffers():
    x = torch.randn(9, 4)  # ghost batches of 4, 4 and 1: the last cannot be normalized
    rm, rv = torch.zeros(4), torch.ones(4)
    with pytest.raises(ValueError, match="ghost size"):
        norms.ghost_batch_norm(x, 4, rm, rv, training=True)
    assert torch.equal(rm, torch.zeros(4))
    assert torch.equal(rv, torch.ones(4))


def test_ghost_batch_norm_refuses_nan_before_updating_the_buffers():
    x = torch.randn(8, 4)
    x[7, 0] = float("nan")  # in the second ghost batch
    rm, rv = torch.zeros(4), torch.ones(4)
    with pytest.raises(ValueError, match="non-finite"):
        norms.ghost_batch_norm(x, 4, rm, rv, training=True)
    assert torch.equal(rm, torch.zeros(4))


@pytest.mark.parametrize("ghost_size", [0, -1, 2.5, None])
def test_ghost_batch_norm_names_a_bad_ghost_size(ghost_size):
    with pytest.raises(ValueError, match="ghost size"):
        norms.ghost_batch_norm(torch.randn(8, 4), ghost_size, None, None, training=True)


def test_instance_norm_refuses_nan_before_updating_its_running_statistics():
    layer = norms.InstanceNorm2d(3, track_running_stats=True)
    x = torch.randn(2, 3, 4, 4)
    x[0, 1, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer(x)
    assert torch.equal(layer.running_mean, torch.zeros(3))
    assert int(layer.num_batches_tracked) == 0

