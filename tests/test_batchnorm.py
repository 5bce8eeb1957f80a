"""Tests for course_lib.batchnorm: the numpy batch norm transform, forward and backward.

Checked against torch.nn.BatchNorm1d/2d/3d + autograd, against central-difference numerical
gradients, and against the transform's mathematical properties (hypothesis).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from course_lib.gradcheck import centered_difference, numerical_gradient, rel_error
from course_lib.batchnorm import (
    BatchNormCache,
    batch_stats,
    bn_backward,
    bn_backward_graph,
    bn_forward,
    batchnorm_backward,
    batchnorm_backward_graph,
    batchnorm_forward,
    per_channel,
    reduce_axes,
    values_per_channel,
)
from course_lib.normalization import stop_gradient

SEEDS = range(5)
DTYPES = [np.float32, np.float64]
# (N, C, *spatial) -> the torch module that takes it
SHAPES = {
    (16, 5): torch.nn.BatchNorm1d,
    (8, 5, 7): torch.nn.BatchNorm1d,
    (6, 5, 4, 3): torch.nn.BatchNorm2d,
    (4, 5, 2, 3, 3): torch.nn.BatchNorm3d,
}
# float32: a few ulps of O(1) values after sums of up to ~100 terms
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_problem(shape, dtype, seed):
    """x with a non-zero mean and non-unit spread, random gamma/beta and upstream gradient."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.normal(1.5, 3.0, size=shape).astype(dtype)
    gamma = rng.normal(1.0, 0.5, size=c).astype(dtype)
    beta = rng.normal(0.0, 1.0, size=c).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    return x, gamma, beta, dout


def torch_reference(x, gamma, beta, dout, eps=1e-5):
    """out, dx, dgamma, dbeta from torch.nn.BatchNorm*d in training mode and autograd."""
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    layer = SHAPES[x.shape](x.shape[1], eps=eps, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    xt = torch.tensor(x, requires_grad=True)
    out = layer(xt)
    out.backward(torch.from_numpy(dout))
    return (
        out.detach().numpy(),
        xt.grad.numpy(),
        layer.weight.grad.numpy(),
        layer.bias.grad.numpy(),
    )


# ---------------------------------------------------------------- helpers


def test_reduce_axes_per_channel_values_per_channel():
    assert reduce_axes(np.zeros((4, 3))) == (0,)
    assert reduce_axes(np.zeros((4, 3, 5))) == (0, 2)
    assert reduce_axes(np.zeros((4, 3, 5, 6))) == (0, 2, 3)
    assert reduce_axes(torch.zeros(4, 3, 5, 6, 7)) == (0, 2, 3, 4)
    v = np.arange(3.0)
    assert per_channel(v, 2) is v, "(C,) already broadcasts against (N, C)"
    assert (np.ones((4, 3)) * per_channel(v, 2)).tolist() == [[0.0, 1.0, 2.0]] * 4
    assert per_channel(np.arange(3.0), 4).shape == (1, 3, 1, 1)
    assert per_channel(torch.arange(3.0), 5).shape == (1, 3, 1, 1, 1)
    assert values_per_channel((4, 3)) == 4
    assert values_per_channel((4, 3, 5, 6)) == 120


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_batch_stats_biased_mean_and_variance(shape, dtype):
    x, *_ = random_problem(shape, dtype, seed=0)
    mu, var = batch_stats(x)
    axes = reduce_axes(x)
    x64 = x.astype(np.float64)
    assert mu.dtype == var.dtype == dtype
    np.testing.assert_allclose(mu, x64.mean(axis=axes), **TOL[dtype])
    np.testing.assert_allclose(var, x64.var(axis=axes, ddof=0), **TOL[dtype])  # biased


def test_batch_stats_constant_channel_has_exactly_zero_variance():
    x = np.array([[1.0, 0.1], [3.0, 0.1], [5.0, 0.1]])
    mu, var = batch_stats(x)
    np.testing.assert_array_equal(mu, [3.0, 0.1])
    np.testing.assert_allclose(var, [8.0 / 3.0, 0.0], rtol=1e-15)
    assert var[1] == 0.0


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(
    "forward, backward",
    [(bn_forward, bn_backward), (batchnorm_forward, batchnorm_backward)],
    ids=["teaching", "checked"],
)
def test_forward_backward_match_torch(forward, backward, shape, dtype, seed):
    """bn_forward and bn_backward (what the page shows), and the checked API, against torch."""
    x, gamma, beta, dout = random_problem(shape, dtype, seed)
    out, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    ref_out, ref_dx, ref_dgamma, ref_dbeta = torch_reference(x, gamma, beta, dout)

    for got, want in [(out, ref_out), (dx, ref_dx), (dgamma, ref_dgamma), (dbeta, ref_dbeta)]:
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_public_api_is_the_teaching_function_plus_checks(shape):
    """The checked API returns exactly what the teaching functions return."""
    x, gamma, beta, dout = random_problem(shape, np.float32, seed=0)
    out, cache = batchnorm_forward(x, gamma, beta)
    out_t, cache_t = bn_forward(x, gamma, beta)
    np.testing.assert_array_equal(out, out_t)
    for a, b in zip(cache, cache_t):
        np.testing.assert_array_equal(a, b)
    for api, teaching in ((batchnorm_backward, bn_backward),
                          (batchnorm_backward_graph, bn_backward_graph)):
        for a, b in zip(api(dout, cache), teaching(dout, cache)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_backward_graph_equals_backward(shape, dtype, seed):
    x, gamma, beta, dout = random_problem(shape, dtype, seed)
    _, cache = bn_forward(x, gamma, beta)
    for got, want in zip(bn_backward_graph(dout, cache), bn_backward(dout, cache)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 5), (3, 2, 3, 3)])
def test_gradients_match_central_differences(shape, seed):
    """The teaching functions against the teaching numerical gradient."""
    x, gamma, beta, dout = random_problem(shape, np.float64, seed)
    _, cache = bn_forward(x, gamma, beta)

    def out():
        return bn_forward(x, gamma, beta)[0]

    numeric = [centered_difference(out, v, dout) for v in (x, gamma, beta)]
    for backward in (bn_backward, bn_backward_graph):
        for name, analytic, num in zip(("dx", "dgamma", "dbeta"), backward(dout, cache), numeric):
            err = rel_error(analytic, num)
            print(f"{backward.__name__} {name}: relative error {err:.1e} (expect < 1e-7)")
            assert err < 1e-7


def test_gradient_check_can_fail():
    """The numerical check notices a classic slip: dividing by the variance, not the std."""
    x, gamma, beta, dout = random_problem((6, 4), np.float64, seed=0)
    _, cache = batchnorm_forward(x, gamma, beta)
    wrong = cache._replace(inv_std=cache.inv_std**2)  # 1/(var + eps) instead of 1/std
    dx_wrong, _, _ = batchnorm_backward(dout, wrong)
    num = numerical_gradient(lambda: batchnorm_forward(x, gamma, beta)[0], x, dout)
    assert rel_error(dx_wrong, num) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_leaves_inputs_alone_and_keeps_a_small_cache(dtype):
    x, gamma, beta, dout = random_problem((64, 8, 3), dtype, seed=0)
    copies = [a.copy() for a in (x, gamma, beta, dout)]
    out, cache = batchnorm_forward(x, gamma, beta)
    batchnorm_backward(dout, cache)
    batchnorm_backward_graph(dout, cache)
    for original, copy in zip((x, gamma, beta, dout), copies):
        np.testing.assert_array_equal(original, copy)

    assert isinstance(cache, BatchNormCache)
    full_size = [a for a in cache if isinstance(a, np.ndarray) and a.size == x.size]
    assert len(full_size) == 1 and full_size[0] is cache.x_hat
    cache_bytes = sum(a.nbytes for a in cache if isinstance(a, np.ndarray))
    assert cache_bytes <= x.nbytes + 4 * 8 * x.shape[1]  # x_hat + four (C,) vectors
    assert not np.shares_memory(cache.x_hat, out)


# ---------------------------------------------------------------- properties (hypothesis)


def batches(min_n=2, max_n=24, max_d=4, elements=None):
    """float64 (N, D) arrays, N >= 2."""
    elements = elements or st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    shapes = st.tuples(st.integers(min_n, max_n), st.integers(1, max_d))
    return arrays(np.float64, shapes, elements=elements)


def well_spread(x: np.ndarray, min_std: float = 0.1) -> bool:
    """Every feature varies: var >> eps, and std well above the rounding of its magnitude."""
    std = x.std(axis=0)
    return bool(np.all(std > min_std) and np.all(std > 1e-4 * np.abs(x).max(axis=0)))


def per_feature(draw_values, d):
    return arrays(np.float64, (d,), elements=draw_values)


@SETTINGS
@given(data=st.data(), x=batches())
def test_output_has_mean_beta_and_std_gamma(data, x):
    assume(well_spread(x))
    d = x.shape[1]
    gamma = data.draw(per_feature(st.floats(0.1, 10.0), d))
    beta = data.draw(per_feature(st.floats(-10.0, 10.0), d))
    eps = 1e-5
    out, _ = batchnorm_forward(x, gamma, beta, eps)
    var = x.var(axis=0)
    np.testing.assert_allclose(out.mean(axis=0), beta, rtol=0, atol=1e-9 * (1 + np.abs(x).max()))
    # std(out) = gamma * sqrt(var / (var + eps)) exactly; ~gamma since eps / var <= 1e-3 here
    np.testing.assert_allclose(out.std(axis=0), gamma * np.sqrt(var / (var + eps)), rtol=1e-8)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-3)


@SETTINGS
@given(data=st.data(), x=batches())
def test_output_invariant_to_shift_and_positive_scale_of_input(data, x):
    assume(well_spread(x, min_std=1.0))  # spread >> eps, so eps barely matters
    d = x.shape[1]
    scale = data.draw(per_feature(st.floats(0.5, 100.0), d))
    shift = data.draw(per_feature(st.floats(-1e3, 1e3), d))
    gamma, beta = np.full(d, 1.5), np.full(d, -0.5)
    out, _ = batchnorm_forward(x, gamma, beta)
    out_moved, _ = batchnorm_forward(x * scale + shift, gamma, beta)
    # Only eps breaks the invariance: eps / var changes by at most 1e-5 / 0.25, which moves
    # x_hat (|x_hat| <= sqrt(N) ~ 5) by at most 2e-5 relative, times gamma = 1.5: < 2e-4.
    np.testing.assert_allclose(out_moved, out, rtol=0, atol=2e-4)


@SETTINGS
@given(data=st.data(), x=batches())
def test_input_gradient_sums_to_zero_and_is_orthogonal_to_x_hat(data, x):
    assume(well_spread(x))
    d = x.shape[1]
    gamma = data.draw(per_feature(st.floats(0.1, 10.0), d))
    dout = data.draw(arrays(np.float64, x.shape, elements=st.floats(-10.0, 10.0)))
    eps = 1e-5
    _, cache = batchnorm_forward(x, gamma, np.zeros(d), eps)
    for backward in (batchnorm_backward, batchnorm_backward_graph):
        dx, dgamma, _ = backward(dout, cache)
        # size of the terms that cancel: |dx_i| <= gamma * inv_std * (|dout_i| + ...)
        scale = gamma * cache.inv_std * np.abs(dout).sum(axis=0) * (1 + np.abs(cache.x_hat).max())
        assert np.all(np.abs(dx.sum(axis=0)) <= 1e-12 * scale + 1e-300)
        # sum(dx * x_hat) is exactly gamma * inv_std * dgamma * eps / (var + eps): zero as eps -> 0
        eps_term = gamma * cache.inv_std * dgamma * eps / (cache.var + eps)
        assert np.all(np.abs((dx * cache.x_hat).sum(axis=0) - eps_term) <= 1e-12 * scale + 1e-300)


@SETTINGS
@given(x=batches())
def test_gamma_std_and_beta_mean_give_back_the_input(x):
    eps = 1e-5
    mu, var = batch_stats(x)
    out, _ = batchnorm_forward(x, np.sqrt(var + eps), mu, eps)
    np.testing.assert_allclose(out, x, rtol=0, atol=1e-12 * (1 + np.abs(x).max()))


def exact_reference(x: np.ndarray, eps: float) -> np.ndarray:
    """Batch norm of (N, D) float64 x with the mean and x - mean in exact rational arithmetic."""
    out = np.empty_like(x)
    for j, col in enumerate(x.T):
        exact = [Fraction(v) for v in col]
        mu = sum(exact) / len(exact)
        x_mu = np.array([float(v - mu) for v in exact])
        out[:, j] = x_mu / np.sqrt(np.mean(x_mu * x_mu) + eps)
    return out


@SETTINGS
@given(
    data=st.data(),
    mean=st.floats(1e4, 1e6),
    spread=st.floats(1e-3, 1.0),
    shape=st.tuples(st.integers(2, 64), st.integers(1, 3)),
)
def test_large_mean_small_spread_float64(data, mean, spread, shape):
    z = data.draw(arrays(np.float64, shape, elements=st.floats(-3.0, 3.0)))
    x = mean + spread * z
    assume(np.all(x.std(axis=0) > spread / 10))
    d = shape[1]
    out, _ = batchnorm_forward(x, np.ones(d), np.zeros(d), eps=1e-12)
    # A plain float64 mean of values near 1e6 is off by ~1e-9, i.e. 1e-5 of a 1e-4 spread.
    np.testing.assert_allclose(out, exact_reference(x, 1e-12), rtol=0, atol=1e-8)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    mean=st.floats(1e4, 1e6),
    spread=st.floats(1.0, 100.0),
    n=st.integers(16, 512),
)
def test_large_mean_float32_matches_float64(seed, mean, spread, n):
    rng = np.random.default_rng(seed)
    x32 = (mean + spread * rng.standard_normal((n, 3))).astype(np.float32)
    assume(np.all(x32.std(axis=0) > 0.5 * spread))  # not flattened by float32 rounding
    ones, zeros = np.ones(3), np.zeros(3)
    out32, _ = batchnorm_forward(x32, ones.astype(np.float32), zeros.astype(np.float32))
    out64, _ = batchnorm_forward(x32.astype(np.float64), ones, zeros)
    # out is O(1); float32 work on centered data leaves errors of a few 1e-7
    np.testing.assert_allclose(out32, out64, rtol=0, atol=1e-4)


def test_naive_variance_would_fail_the_large_mean_tests():
    """The two tests above can fail: E[x^2] - E[x]^2 and a plain float32 sum both break."""
    rng = np.random.default_rng(0)
    x = 1e6 + 1e-2 * rng.standard_normal((64, 3))
    naive_var = (x**2).mean(axis=0) - x.mean(axis=0) ** 2
    assert np.max(np.abs(naive_var - x.var(axis=0))) > 1e-3 * x.var(axis=0).max()

    x32 = (1e6 + rng.standard_normal((4096, 3))).astype(np.float32)
    plain_mean_error = np.abs(x32.mean(axis=0) - x32.astype(np.float64).mean(axis=0)).max()
    assert plain_mean_error > 1e-1  # off by more than a tenth of the spread
    mu, _ = batch_stats(x32)
    assert np.abs(mu - x32.astype(np.float64).mean(axis=0)).max() < 0.1  # ~ulp(1e6) = 0.06


def test_stop_gradient_and_the_shift_do_not_change_the_gradient():
    """K is a constant: the output does not depend on it, so its gradient is not needed.
    bn_forward on tensors (as course_lib.nn runs it) gives torch's gradients, shift or not."""
    a = np.ones(3)
    assert stop_gradient(a) is a
    t = torch.ones(3, requires_grad=True)
    assert not stop_gradient(t * 2).requires_grad
    x, gamma, beta, dout = random_problem((6, 5, 4, 3), np.float64, seed=0)
    z = torch.tensor(x + 1e3, requires_grad=True)  # a large mean, to make K matter
    g, b = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    z_tilde, _ = bn_forward(z, g, b)
    z_tilde.backward(torch.from_numpy(dout))
    _, ref_dx, ref_dgamma, ref_dbeta = torch_reference(x + 1e3, gamma, beta, dout)
    for got, want in ((z.grad, ref_dx), (g.grad, ref_dgamma), (b.grad, ref_dbeta)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-10)


def test_shift_is_needed_for_a_large_mean():
    """Why centered (which bn_forward calls) subtracts K first: without it float32 data near
    1e6 normalizes wrongly.

    The same formula without the shift (a plain float32 mean, then z - mu) is off by more
    than 0.1 in z_norm; with it, bn_forward agrees with float64 to 1e-4.
    """
    rng = np.random.default_rng(0)
    z = (1e6 + rng.standard_normal((4096, 3))).astype(np.float32)
    z64 = z.astype(np.float64)
    exact = (z64 - z64.mean(axis=0)) / np.sqrt(z64.var(axis=0) + 1e-5)
    mu = z.mean(axis=0)
    unshifted = (z - mu) / np.sqrt(((z - mu) ** 2).mean(axis=0) + np.float32(1e-5))
    assert np.abs(unshifted - exact).max() > 0.1
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    z_tilde, _ = bn_forward(z, ones, zeros)
    assert np.abs(z_tilde - exact).max() < 1e-4


# ---------------------------------------------------------------- validation


def valid(shape=(4, 3), dtype=np.float64):
    x, gamma, beta, _ = random_problem(shape, dtype, seed=0)
    return x, gamma, beta


def test_rejects_non_float_arrays():
    x, gamma, beta = valid()
    with pytest.raises(TypeError, match=r"expected a float32 or float64 array, got int64; convert with x.astype\(np.float32\)"):
        batchnorm_forward(x.astype(np.int64), gamma, beta)
    with pytest.raises(TypeError, match=r"float32 or float64 array, got float16; convert with x.astype"):
        batchnorm_forward(x.astype(np.float16), gamma, beta)
    with pytest.raises(TypeError, match=r"expected a numpy array, got list; convert with np.asarray\(x, dtype=np.float32\)"):
        batchnorm_forward(x.tolist(), gamma, beta)
    with pytest.raises(TypeError, match=r"numpy array, got torch.Tensor; convert with x.detach\(\).cpu\(\).numpy\(\)"):
        batchnorm_forward(torch.from_numpy(x), gamma, beta)
    with pytest.raises(TypeError, match=r"expected a numpy array, got list; convert with np.asarray\(gamma"):
        batchnorm_forward(x, list(gamma), beta)
    with pytest.raises(TypeError, match=r"expected a numpy array, got list; convert with np.asarray\(x"):
        batch_stats([1.0, 2.0])


def test_rejects_1d_input():
    x, gamma, beta = valid()
    with pytest.raises(ValueError, match=r"expected 2D or higher input \(N, C, \.\.\.\) \(got 1D input\)"):
        batchnorm_forward(x[:, 0], gamma, beta)
    with pytest.raises(ValueError, match=r"expected 2D or higher input .* \(got 1D input\)"):
        batch_stats(x[:, 0])


def test_rejects_gamma_beta_of_the_wrong_shape():
    x, gamma, beta = valid()
    with pytest.raises(ValueError, match=r"expected gamma of shape \(C,\) = \(3,\).*got gamma of shape \(4,\)"):
        batchnorm_forward(x, np.ones(4), beta)
    with pytest.raises(ValueError, match=r"expected beta of shape \(C,\) = \(3,\).*got beta of shape \(1, 3\)"):
        batchnorm_forward(x, gamma, beta[None, :])


def test_rejects_dtype_mismatch():
    x, gamma, beta = valid()
    with pytest.raises(TypeError, match=r"gamma has dtype float32 but x has dtype float64.*astype"):
        batchnorm_forward(x, gamma.astype(np.float32), beta)
    with pytest.raises(TypeError, match=r"beta has dtype float64 but x has dtype float32"):
        batchnorm_forward(x.astype(np.float32), gamma.astype(np.float32), beta)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1), (0, 3)])
def test_rejects_one_value_per_channel(shape):
    x = np.ones(shape)
    pattern = r"Expected more than 1 value per channel when training, got input size \(.*\).*batch of at least 2.*eval mode"
    with pytest.raises(ValueError, match=pattern):
        batchnorm_forward(x, np.ones(3), np.zeros(3))


def test_one_example_with_spatial_extent_is_enough():
    x = np.array([[[0.0, 2.0], [1.0, 5.0], [-3.0, 3.0]]])  # (1, 3, 2): 2 values per channel
    out, _ = batchnorm_forward(x, np.ones(3), np.zeros(3))
    var = np.array([1.0, 4.0, 9.0])
    np.testing.assert_allclose(out, [[[-1, 1]] * 3] / np.sqrt(1 + 1e-5 / var)[:, None], rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_input(bad):
    x, gamma, beta = valid((5, 3))
    x[1, 2] = bad
    x[3, 2] = np.nan
    pattern = r"x contains 2 non-finite values .* in channel \[2\], the first at index \(1, 2\).*np.argwhere"
    with pytest.raises(ValueError, match=pattern):
        batchnorm_forward(x, gamma, beta)


def test_rejects_bad_eps():
    x, gamma, beta = valid()
    with pytest.raises(ValueError, match=r"eps must be positive during training, but got 0"):
        batchnorm_forward(x, gamma, beta, eps=0.0)


def test_backward_rejects_wrong_dout_and_cache():
    x, gamma, beta = valid((4, 3))
    _, cache = batchnorm_forward(x, gamma, beta)
    for backward in (batchnorm_backward, batchnorm_backward_graph):
        with pytest.raises(ValueError, match=r"expected dout of the forward input's shape \(4, 3\) \(got \(4, 2\)\)"):
            backward(np.ones((4, 2)), cache)
        with pytest.raises(TypeError, match=r"dout has dtype float32 but x has dtype float64"):
            backward(np.ones((4, 3), np.float32), cache)
        with pytest.raises(TypeError, match=r"expected a float32 or float64 array, got int64; convert with dout.astype"):
            backward(np.ones((4, 3), np.int64), cache)
        with pytest.raises(TypeError, match=r"expected cache to be a BatchNormCache, got tuple"):
            backward(np.ones((4, 3)), tuple(cache))


# ---------------------------------------------------------------- robustness


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e20), (np.float64, 1e200)])
def test_overflowing_variance_is_refused_not_turned_into_beta(dtype, big):
    x = np.array([[big, 1.0], [-big, 2.0], [big, 3.0]], dtype=dtype)
    with pytest.raises(ValueError, match=r"mean or variance of x overflowed .*Rescale the input"):
        batchnorm_forward(x, np.ones(2, dtype), np.full(2, 7.0, dtype))


@pytest.mark.parametrize("eps, error, words", [
    (None, TypeError, "expected eps to be a positive number, got NoneType"),
    ("1e-5", TypeError, "got str"),
    (np.nan, ValueError, "eps must be a finite number, but got nan"),
    (np.inf, ValueError, "eps must be a finite number, but got inf"),
    (-1e-3, ValueError, "eps must be positive during training"),
])
def test_eps_must_be_a_positive_finite_number(eps, error, words):
    x, gamma, beta = valid()
    with pytest.raises(error) as info:
        batchnorm_forward(x, gamma, beta, eps=eps)
    assert words in str(info.value)


@SETTINGS
@given(
    shape=st.sampled_from(list(SHAPES)),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
    eps=st.sampled_from([1e-5, 1e-2, 1.0]),
)
def test_valid_inputs_match_torch_property(shape, dtype, seed, eps):
    x, gamma, beta, dout = random_problem(shape, dtype, seed)
    x = x * np.asarray(10.0 ** (seed % 5 - 2), dtype)  # scales from 1e-2 to 1e2
    out, cache = batchnorm_forward(x, gamma, beta, eps)
    ref = torch_reference(x, gamma, beta, dout, eps)
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    for got, want in zip((out, *batchnorm_backward(dout, cache)), ref):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got / scale, want / scale, **tol)


@SETTINGS
@given(
    shape=st.sampled_from(list(SHAPES)),
    dtype=st.sampled_from(DTYPES),
    bad=st.sampled_from(["nan", "inf", "gamma", "beta", "dtype", "eps", "overflow", "1d"]),
    seed=st.integers(0, 2**16),
)
def test_a_refused_input_is_left_untouched(shape, dtype, bad, seed):
    x, gamma, beta, _ = random_problem(shape, dtype, seed)
    eps = 1e-5
    if bad in ("nan", "inf"):
        x.reshape(-1)[seed % x.size] = float(bad)
    elif bad == "gamma":
        gamma = np.ones(shape[1] + 1, dtype)
    elif bad == "beta":
        beta = beta.astype(np.float64 if dtype == np.float32 else np.float32)
    elif bad == "dtype":
        x = x.astype(np.float16)
    elif bad == "eps":
        eps = [None, "1e-5", np.nan, np.inf, 0.0, -1.0][seed % 6]
    elif bad == "overflow":
        big = 1e20 if dtype == np.float32 else 1e200
        x[0, 0], x[1, 0] = big, -big
    else:
        x = x.reshape(-1)
    copies = [a.copy() for a in (x, gamma, beta)]
    with pytest.raises((ValueError, TypeError)):
        batchnorm_forward(x, gamma, beta, eps)
    for original, copy in zip((x, gamma, beta), copies):
        np.testing.assert_array_equal(original, copy)
