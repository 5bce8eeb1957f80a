"""Tests for course_lib.running_stats: EMA conventions and PyTorch's buffers."""

import numpy as np
import pytest
import torch

import course_lib.nn as cnn
from course_lib.running_stats import (
    ema,
    bias_correction,
    conventions_table,
    ema_update,
    new_value_weight,
    update_running_stats,
)

SEEDS = [0, 1, 2, 3, 4]


# ---- the conventions --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, weight",
    [
        (dict(convention="lecture"), 0.1),
        (dict(convention="lecture", beta=0.98), 0.02),
        (dict(convention="pytorch"), 0.1),
        (dict(convention="pytorch", momentum=0.3), 0.3),
        (dict(convention="pytorch", momentum=None, num_batches_tracked=4), 0.25),
        (dict(convention="keras"), 0.01),
        (dict(convention="keras", momentum=0.9), 0.1),
    ],
)
def test_new_value_weight(kwargs, weight):
    assert new_value_weight(**kwargs) == pytest.approx(weight, abs=1e-15)
    # ema_update from 0 towards 1 moves exactly by the weight on the new value.
    assert ema_update(0.0, 1.0, **kwargs) == pytest.approx(weight, abs=1e-15)


def test_ema_is_the_lecture_formula_and_matches_torch_buffers():
    """ema (what the page shows) = v = beta v + (1 - beta) theta = torch's running_mean."""
    assert ema(2.0, 10.0, beta=0.75) == 0.75 * 2.0 + 0.25 * 10.0
    gen = torch.Generator().manual_seed(0)
    bn, v = torch.nn.BatchNorm1d(3, momentum=0.2), torch.zeros(3)
    for _ in range(20):
        x = torch.randn(8, 3, generator=gen) * 2 + 3
        bn(x)
        v = ema(v, x.mean(dim=0), beta=1 - 0.2)
    torch.testing.assert_close(v, bn.running_mean)


def test_same_average_in_three_conventions():
    rng = np.random.default_rng(0)
    thetas = rng.normal(size=(50, 3))
    v = {"lecture": np.zeros(3), "pytorch": np.zeros(3), "keras": np.zeros(3)}
    for theta in thetas:
        v["lecture"] = ema_update(v["lecture"], theta, convention="lecture", beta=0.8)
        v["pytorch"] = ema_update(v["pytorch"], theta, convention="pytorch", momentum=0.2)
        v["keras"] = ema_update(v["keras"], theta, convention="keras", momentum=0.8)
    np.testing.assert_allclose(v["pytorch"], v["lecture"], rtol=1e-12)
    np.testing.assert_allclose(v["keras"], v["lecture"], rtol=1e-12)
    # The momentum convention flipped is a different average, not a rounding difference.
    flipped = np.zeros(3)
    for theta in thetas:
        flipped = ema_update(flipped, theta, convention="pytorch", momentum=0.8)
    assert np.abs(flipped - v["pytorch"]).max() > 0.1


def test_ema_update_types_and_no_mutation():
    running, theta = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out = ema_update(running, theta, convention="pytorch", momentum=0.5)
    np.testing.assert_array_equal(out, [2.0, 3.0])
    np.testing.assert_array_equal(running, [1.0, 2.0])
    t = ema_update(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), convention="keras",
                   momentum=0.5)
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.tensor([2.0, 3.0]))


def test_cumulative_average_is_plain_mean():
    rng = np.random.default_rng(1)
    thetas = rng.normal(size=(37, 4))
    v = np.full(4, 123.0)  # the start gets weight 0 after the first batch
    for t, theta in enumerate(thetas, start=1):
        v = ema_update(v, theta, convention="pytorch", momentum=None, num_batches_tracked=t)
    np.testing.assert_allclose(v, thetas.mean(axis=0), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(convention="tensorflow"), ValueError, "unknown convention"),
        (dict(convention="lecture", momentum=0.1), ValueError, "beta=1 - momentum"),
        (dict(convention="pytorch", beta=0.9), ValueError, "momentum=1 - beta"),
        (dict(convention="keras", beta=0.9), ValueError, "momentum=beta"),
        (dict(convention="keras", momentum=None), ValueError, "cumulative"),
        (dict(convention="pytorch", momentum=None), ValueError, "num_batches_tracked"),
        (dict(convention="pytorch", momentum=None, num_batches_tracked=0), ValueError, ">= 1"),
        (dict(convention="pytorch", momentum=1.5), ValueError, "[0, 1]"),
        (dict(convention="lecture", beta=-0.1), ValueError, "[0, 1]"),
        (dict(convention="pytorch", momentum="0.1"), ValueError, "number"),
        (dict(convention="pytorch", momentum=True), TypeError, "number"),
    ],
)
def test_convention_errors(kwargs, error, words):
    with pytest.raises(error, match=None) as info:
        ema_update(0.0, 1.0, **kwargs)
    assert words in str(info.value)


# ---- update_running_stats == torch.nn.BatchNorm buffers ---------------------------------


def _torch_bn(shape, momentum, dtype):
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
           5: torch.nn.BatchNorm3d}[len(shape)]
    return cls(shape[1], momentum=momentum, dtype=dtype)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", [(16, 3), (8, 3, 5), (4, 3, 4, 4), (2, 3, 2, 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_update_running_stats_matches_torch(momentum, shape, dtype):
    gen = torch.Generator().manual_seed(0)
    bn = _torch_bn(shape, momentum, dtype)
    rm, rv, n = torch.zeros(shape[1], dtype=dtype), torch.ones(shape[1], dtype=dtype), 0
    for step in range(60):
        # The population drifts, so a wrong weight or variance shows in the buffers.
        x = (torch.randn(shape, generator=gen, dtype=dtype) * (1 + step / 20)
             + torch.linspace(-2, 3, shape[1], dtype=dtype).reshape(1, -1, *[1] * (len(shape) - 2))
             + step / 10)
        bn(x)
        rm, rv, n = update_running_stats(rm, rv, x, momentum=momentum, num_batches_tracked=n)
    assert n == int(bn.num_batches_tracked) == 60
    assert rm.dtype == dtype and rv.dtype == dtype
    if dtype == torch.float32:  # float32 round-off of torch's kernel
        torch.testing.assert_close(rm, bn.running_mean)
        torch.testing.assert_close(rv, bn.running_var)
    else:
        torch.testing.assert_close(rm, bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(rv, bn.running_var, rtol=1e-12, atol=1e-12)


def test_update_running_stats_matches_course_lib_nn():
    gen = torch.Generator().manual_seed(3)
    bn = cnn.BatchNorm1d(4, momentum=0.2)
    rm, rv, n = torch.zeros(4), torch.ones(4), 0
    for _ in range(30):
        x = torch.randn(10, 4, generator=gen) * 2 + 1
        bn(x)
        rm, rv, n = update_running_stats(rm, rv, x, momentum=0.2, num_batches_tracked=n)
    torch.testing.assert_close(rm, bn.running_mean)
    torch.testing.assert_close(rv, bn.running_var)


def test_running_var_is_unbiased_and_numpy_in_numpy_out():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    rm0, rv0 = np.zeros(3), np.ones(3)
    rm, rv, n = update_running_stats(rm0, rv0, x, momentum=1.0)
    assert isinstance(rm, np.ndarray) and rm.dtype == np.float64 and n == 1
    np.testing.assert_allclose(rm, x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(rv, x.var(axis=0, ddof=1), rtol=1e-14)
    assert np.abs(rv - x.var(axis=0)).min() > 1e-3  # not the biased one
    np.testing.assert_array_equal(rm0, 0.0)  # inputs untouched
    np.testing.assert_array_equal(rv0, 1.0)


@pytest.mark.parametrize(
    "x, words",
    [
        (np.zeros(3), "2D or higher"),
        (np.zeros((4, 2)), "running_mean of shape (C,) = (2,)"),
        (np.zeros((1, 3)), "more than 1 value per channel"),
        (np.array([[0.0, 1.0, np.nan], [1.0, 2.0, 3.0]]), "non-finite"),
    ],
)
def test_update_running_stats_errors(x, words):
    with pytest.raises(ValueError) as info:
        update_running_stats(np.zeros(3), np.ones(3), x)
    assert words in str(info.value)


# ---- bias correction ----------------------------------------------------------------------


def test_bias_correction_exact_for_constant_sequence():
    v = 0.0
    for t in range(1, 30):
        v = ema_update(v, 5.0, convention="lecture", beta=0.9)
        assert bias_correction(v, beta=0.9, t=t) == pytest.approx(5.0, rel=1e-12)
    assert v < 5.0 * (1 - 0.9**29) + 1e-12  # uncorrected: still short of 5


@pytest.mark.parametrize("seed", SEEDS)
def test_bias_correction_removes_startup_bias(seed):
    # An average started at 0 of values around 10: the first ten steps are far too small
    # without the correction and right on target with it.
    rng = np.random.default_rng(seed)
    thetas = 10.0 + 0.5 * rng.normal(size=10)
    v, raw_err, corrected_err = 0.0, [], []
    for t, theta in enumerate(thetas, start=1):
        v = ema_update(v, theta, beta=0.9)
        raw_err.append(abs(v - 10.0))
        corrected_err.append(abs(bias_correction(v, beta=0.9, t=t) - 10.0))
    assert max(corrected_err) < 2.0 < 3.0 < min(raw_err), (raw_err, corrected_err)


def test_bias_correction_errors():
    with pytest.raises(ValueError, match="t >= 1"):
        bias_correction(1.0, beta=0.9, t=0)
    with pytest.raises(ValueError, match="beta < 1"):
        bias_correction(1.0, beta=1.0, t=3)


# ---- the conventions table -----------------------------------------------------------------

_WEIGHT = {  # the table's formula for the weight on the new value, as code
    "1 - beta": lambda p, t: 1 - p,
    "momentum": lambda p, t: p,
    "1 / num_batches_tracked": lambda p, t: 1 / t,
    "1 - momentum": lambda p, t: 1 - p,
}


def test_table_rows_match_their_formula():
    table = conventions_table()
    assert [r["framework"] for r in table] == [
        "Lecture (Ng)", "PyTorch", "PyTorch, momentum=None", "Keras 3"]
    for row in table:
        for t in (1, 2, 7):
            w = ema_update(0.0, 1.0, convention=row["convention"], num_batches_tracked=t,
                           **row["kwargs"])
            assert w == pytest.approx(_WEIGHT[row["weight_on_new"]](row["default"], t)), row
        # The default of the row is the default of the code.
        defaults = {k: v for k, v in row["kwargs"].items()}
        param = "beta" if row["convention"] == "lecture" else "momentum"
        assert defaults[param] == row["default"]
        if row["default"] is not None:
            assert new_value_weight(row["convention"]) == pytest.approx(
                _WEIGHT[row["weight_on_new"]](row["default"], 1))


@pytest.mark.parametrize("row", [r for r in conventions_table() if r["framework"].startswith("PyTorch")],
                         ids=lambda r: r["framework"])
def test_table_pytorch_rows_match_torch(row):
    default_bn = torch.nn.BatchNorm1d(3)
    assert default_bn.momentum == conventions_table()[1]["default"]
    assert default_bn.eps == row["eps"]
    assert torch.equal(default_bn.running_mean, torch.zeros(3))  # "start" column
    assert torch.equal(default_bn.running_var, torch.ones(3))
    bn = torch.nn.BatchNorm1d(3, momentum=row["default"], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for t in range(1, 6):
        x = torch.randn(6, 3, generator=gen, dtype=torch.float64) + t
        bn(x)
        var = x.var(dim=0, unbiased=row["unbiased_running_var"])
        rm = ema_update(rm, x.mean(dim=0), convention="pytorch", num_batches_tracked=t,
                        **row["kwargs"])
        rv = ema_update(rv, var, convention="pytorch", num_batches_tracked=t, **row["kwargs"])
    torch.testing.assert_close(bn.running_mean, rm, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(bn.running_var, rv, rtol=1e-12, atol=1e-12)


def test_table_is_a_copy():
    table = conventions_table()
    table[0]["default"] = 0.5
    table[0]["kwargs"]["beta"] = 0.5
    assert conventions_table()[0]["default"] == 0.9
    assert conventions_table()[0]["kwargs"]["beta"] == 0.9
