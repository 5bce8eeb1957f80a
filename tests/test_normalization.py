"""course_lib.normalization: the statistics and the arithmetic every normalization shares, and
every normalization layer held to float32's resolution at large offsets, in float16 and on
edge inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import nn as cnn
from course_lib import norm_layers as norms
from course_lib.batchnorm import batchnorm_forward
from course_lib.distributed import SyncBatchNorm
from course_lib.normalization import (
    Moments, centered, merge_moments, moments_over, normalize_over, scale_shift, working_dtype,
)

EPS32 = float(np.finfo(np.float32).eps)  # 1.2e-7


# ---- the functions -------------------------------------------------------------------------

def test_centered_gives_deviations_mean_and_biased_variance():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(7, 3, 4))
    z_mu, mu, sigma2 = centered(x, (0, 2))
    np.testing.assert_allclose(mu.ravel(), x.mean(axis=(0, 2)))
    np.testing.assert_allclose(sigma2.ravel(), x.var(axis=(0, 2)))
    np.testing.assert_allclose(z_mu, x - x.mean(axis=(0, 2), keepdims=True), atol=1e-12)


def test_centered_accepts_negative_axes_and_tensors():
    x = torch.randn(4, 5, dtype=torch.float64) + 100
    _, mu, sigma2 = centered(x, (-1,))
    assert torch.allclose(mu.ravel(), x.mean(dim=-1))
    assert torch.allclose(sigma2.ravel(), x.var(dim=-1, unbiased=False))


def test_the_shift_carries_no_gradient_and_changes_none():
    x = (torch.randn(6, 3, dtype=torch.float64) * 2 + 1e3).requires_grad_(True)
    g = torch.randn(6, 3, dtype=torch.float64)
    z_norm, _, _ = normalize_over(x, (0,), 1e-5)
    grad, = torch.autograd.grad(z_norm, x, g)
    ref = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    ref_grad, = torch.autograd.grad(ref, x, g)
    assert torch.allclose(grad, ref_grad, atol=1e-10)


def test_normalize_over_gives_mean_0_and_variance_1():
    x = np.random.default_rng(1).normal(-4.0, 3.0, size=(5, 6))
    z_norm, _, _ = normalize_over(x, (1,), 0.0)
    np.testing.assert_allclose(z_norm.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z_norm.var(axis=1), 1.0, atol=1e-12)


def test_scale_shift_leaves_out_what_is_none():
    z = np.array([1.0, -2.0])
    assert np.array_equal(scale_shift(z), z)
    assert np.array_equal(scale_shift(z, 2.0), 2 * z)
    assert np.array_equal(scale_shift(z, None, 1.0), z + 1)


def test_merge_moments_is_the_moments_of_the_whole():
    x = np.random.default_rng(2).normal(5.0, 2.0, size=(17, 4))
    parts = [moments_over(p, (0,)) for p in np.split(x, [3, 11, 12])]
    merged = parts[0]
    for part in parts[1:]:
        merged = merge_moments(merged, part)
    whole = moments_over(x, (0,))
    assert merged.count == 17
    np.testing.assert_allclose(merged.mean, whole.mean)
    np.testing.assert_allclose(merged.m2, whole.m2)


def test_an_empty_part_is_the_identity_of_the_merge():
    a = Moments(3, np.array([1.0]), np.array([2.0]))
    empty = Moments(0, np.array([np.nan]), np.array([np.nan]))
    assert merge_moments(a, empty) is a
    assert merge_moments(empty, a) is a


def test_merge_moments_on_tensors():
    x = torch.randn(10, 3, dtype=torch.float64) + 7
    merged = merge_moments(moments_over(x[:4], (0,)), moments_over(x[4:], (0,)))
    assert torch.allclose(merged.mean, x.mean(dim=0))
    assert torch.allclose(merged.m2 / merged.count, x.var(dim=0, unbiased=False))


def test_working_dtype_is_float32_for_half_precision_only():
    assert working_dtype(torch.ones(2, dtype=torch.float16)).dtype == torch.float32
    assert working_dtype(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert working_dtype(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    a = np.ones(2, np.float32)
    assert working_dtype(a) is a


# ---- every normalization in float32 at large offsets ----------------------------------------
#
# The reference is the same float32 input, normalized in float64. In one process every
# normalization goes through centered(), whose shift makes z - mu exact at any offset, so what
# is left is a few float32 roundings of O(1) numbers: the tolerance is 32 * EPS32 (4e-6),
# whatever the offset. (Subtracting a float32 mean instead, as torch does, is only exact to
# half a unit in the mean's last place, EPS32 * |mu| / 2: 6e-4 of z_norm at mu = 1e4, sigma = 1.
# SyncBN across processes exchanges float32 means and is held to that bound, in
# tests/test_distributed.py.) The shortcut E[z^2] - mu^2 misses by orders of magnitude.

OFFSETS = [(0.0, 1.0), (1e4, 1.0), (1e3, 0.1), (10.0, 1e-3), (1.0, 1e-3)]


TOLERANCE = 32 * EPS32


def _data(mean: float, std: float, shape=(16, 4, 3, 3), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def _reference(x32: np.ndarray, dims: tuple[int, ...], eps: float) -> np.ndarray:
    x = x32.astype(np.float64)
    mu = x.mean(axis=dims, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=dims, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def _group_reference(x32, G, eps):
    N, C = x32.shape[:2]
    z = x32.reshape(N, G, C // G, *x32.shape[2:])
    return _reference(z, tuple(range(2, z.ndim)), eps).reshape(x32.shape)


def _renorm_reference(x32, eps, r_max, d_max):
    # Fresh running statistics (mean 0, variance 1): r and d from the float64 batch statistics.
    x = x32.astype(np.float64)
    mu_B, var_B = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    sigma = np.sqrt(1.0 + eps)
    r = np.clip(np.sqrt(var_B + eps) / sigma, 1 / r_max, r_max)
    d = np.clip(mu_B / sigma, -d_max, d_max)
    return _reference(x32, (0, 2, 3), eps) * r[:, None, None] + d[:, None, None]


def _ghost_reference(x32, ghost, eps):
    return np.concatenate([_reference(c, (0, 2, 3), eps)
                           for c in np.split(x32, range(ghost, len(x32), ghost))])


def _run(name: str, x32: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(output, float64 reference, how far beyond z_norm the output may reach)."""
    eps, C, t = 1e-5, x32.shape[1], torch.from_numpy(x32)
    if name == "batchnorm numpy":
        ones, zeros = np.ones(C, np.float32), np.zeros(C, np.float32)
        return batchnorm_forward(x32, ones, zeros, eps)[0], _reference(x32, (0, 2, 3), eps), 1
    if name == "BatchNorm1d":
        x2 = x32[:, :, 0, 0]
        return (cnn.BatchNorm1d(C)(torch.from_numpy(x2)).detach().numpy(),
                _reference(x2, (0,), eps), 1)
    if name == "BatchNorm2d":
        return cnn.BatchNorm2d(C)(t).detach().numpy(), _reference(x32, (0, 2, 3), eps), 1
    if name == "SyncBatchNorm, one process":
        return SyncBatchNorm(C)(t).detach().numpy(), _reference(x32, (0, 2, 3), eps), 1
    if name == "LayerNorm":
        layer = norms.LayerNorm(tuple(x32.shape[1:]))
        return layer(t).detach().numpy(), _reference(x32, (1, 2, 3), eps), 1
    if name == "GroupNorm":
        return norms.GroupNorm(2, C)(t).detach().numpy(), _group_reference(x32, 2, eps), 1
    if name == "InstanceNorm2d":
        return norms.InstanceNorm2d(C)(t).detach().numpy(), _reference(x32, (2, 3), eps), 1
    if name == "BatchRenorm2d":
        y = norms.BatchRenorm2d(C, r_max=3.0, d_max=5.0)(t).detach().numpy()
        return y, _renorm_reference(x32, eps, 3.0, 5.0), 3 + 5
    if name == "ghost_batch_norm":
        rm, rv = torch.zeros(C), torch.ones(C)
        y = norms.ghost_batch_norm(t, 5, rm, rv, training=True).numpy()
        return y, _ghost_reference(x32, 5, eps), 1
    raise AssertionError(name)


LAYERS = ["batchnorm numpy", "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm, one process",
          "LayerNorm", "GroupNorm", "InstanceNorm2d", "BatchRenorm2d", "ghost_batch_norm"]


@pytest.mark.parametrize("mean,std", OFFSETS)
@pytest.mark.parametrize("name", LAYERS)
def test_every_normalization_is_exact_to_float32_at_large_offsets(name, mean, std):
    y, ref, reach = _run(name, _data(mean, std))
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() <= reach * TOLERANCE


def test_naive_variance_would_fail_the_large_offset_tests():
    """E[z^2] - mu^2 in float32, what SyncBN all-reduced before: far outside the tolerance."""
    x32 = _data(1e4, 1.0, shape=(64, 4))
    m = np.float32(len(x32))
    mu = x32.sum(axis=0) / m
    naive_var = np.maximum(np.sum(x32 * x32, axis=0) / m - mu * mu, 0)
    naive = (x32 - mu) / np.sqrt(naive_var + np.float32(1e-5))
    error = np.abs(naive - _reference(x32, (0,), 1e-5)).max()
    assert error > 0.1  # beyond even the bound for exchanged float32 means, 6e-4


# ---- float16: statistics in float32, output in the input's dtype, as torch ------------------

HALF_LAYERS = {
    "LayerNorm": (lambda: norms.LayerNorm((4, 3, 3)), lambda: torch.nn.LayerNorm((4, 3, 3))),
    "GroupNorm": (lambda: norms.GroupNorm(2, 4), lambda: torch.nn.GroupNorm(2, 4)),
    "InstanceNorm2d": (lambda: norms.InstanceNorm2d(4), lambda: torch.nn.InstanceNorm2d(4)),
    "BatchRenorm2d": (lambda: norms.BatchRenorm2d(4, r_max=1.0, d_max=0.0),
                      lambda: torch.nn.BatchNorm2d(4)),
    "BatchNorm2d": (lambda: cnn.BatchNorm2d(4), lambda: torch.nn.BatchNorm2d(4)),
}


@pytest.mark.parametrize("name", list(HALF_LAYERS))
def test_half_precision_input_is_normalized_in_float32(name):
    torch.manual_seed(0)
    x = (300 * torch.randn(8, 4, 3, 3)).half()
    ours, theirs = (make()(x) for make in HALF_LAYERS[name])
    assert ours.dtype == torch.float16
    # One float16 rounding of an O(1) output: at most 2 ** -11 * 4 away from torch's.
    assert (ours.float() - theirs.float()).abs().max() <= 2e-3


def test_half_precision_layer_returns_half():
    layer = norms.LayerNorm(6).half()
    assert layer(torch.randn(3, 6).half()).dtype == torch.float16


# ---- edge inputs -----------------------------------------------------------------------------

def test_instance_norm_of_a_constant_channel_with_eps_0_is_0_as_in_torch():
    x = torch.ones(2, 3, 4, 4)
    ours = norms.InstanceNorm2d(3, eps=0.0)(x)
    assert torch.equal(ours, torch.nn.InstanceNorm2d(3, eps=0.0)(x))
    assert torch.equal(ours, torch.zeros_like(x))


def test_group_norm_of_an_empty_batch_is_empty_as_in_torch():
    y = norms.GroupNorm(2, 6)(torch.zeros(0, 6, 4))
    assert y.shape == (0, 6, 4)


@pytest.mark.parametrize("make", [
    lambda eps: norms.LayerNorm(4, eps=eps),
    lambda eps: norms.GroupNorm(2, 4, eps=eps),
    lambda eps: norms.InstanceNorm2d(4, eps=eps),
    lambda eps: norms.BatchRenorm1d(4, eps=eps),
])
@pytest.mark.parametrize("eps,error", [("1e-5", TypeError), (None, TypeError),
                                       (float("nan"), ValueError), (-1.0, ValueError)])
def test_eps_is_refused_at_construction(make, eps, error):
    with pytest.raises(error, match="eps"):
        make(eps)
