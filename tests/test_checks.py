"""Tests for course_lib._checks: every check passes good input through and names the problem
and the fix for bad input, for numpy arrays and torch tensors alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import _checks


# ---------------------------------------------------------------- predicates and conversions


@pytest.mark.parametrize("value", [0, 3, -2, np.int64(5), np.int32(1)])
def test_is_int_accepts_python_and_numpy_integers(value):
    assert _checks.is_int(value)


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, np.float64(1.0)])
def test_is_int_refuses_bools_floats_and_strings(value):
    assert not _checks.is_int(value)


@pytest.mark.parametrize("value", [0, 1.5, -2.0, np.float32(0.5), np.int64(3), math.inf])
def test_is_real_accepts_numbers(value):
    assert _checks.is_real(value)


@pytest.mark.parametrize("value", [True, "0.5", None, [1.0], 1j])
def test_is_real_refuses_bools_strings_and_containers(value):
    assert not _checks.is_real(value)


def test_is_torch_and_to_numpy64():
    t = torch.tensor([1.0, 2.0], dtype=torch.float32, requires_grad=True)
    assert _checks.is_torch(t) and not _checks.is_torch(np.zeros(2))
    for value in (t, np.array([1, 2], dtype=np.int32), [1.0, 2.0]):
        out = _checks.to_numpy64(value)
        assert isinstance(out, np.ndarray) and out.dtype == np.float64
        np.testing.assert_array_equal(out, [1.0, 2.0])


# ---------------------------------------------------------------- numbers


def test_check_int():
    assert _checks.check_int(np.int64(3), "n", 1) == 3 and type(_checks.check_int(3, "n")) is int
    assert _checks.check_int(5, "n", 0, 5) == 5
    with pytest.raises(TypeError, match=r"f: n must be an int \(got float 2.0\); pass a whole"):
        _checks.check_int(2.0, "n", 1, where="f")
    with pytest.raises(TypeError, match="n must be an int"):
        _checks.check_int(True, "n")
    with pytest.raises(ValueError, match=r"n must be an int >= 2 \(got 1\)"):
        _checks.check_int(1, "n", 2)
    with pytest.raises(ValueError, match=r"seed must be between 0 and 9 \(got 10\)"):
        _checks.check_int(10, "seed", 0, 9)
    with pytest.raises(ValueError, match=r"n must be an int <= 3 \(got 4\)"):
        _checks.check_int(4, "n", maximum=3)


def test_check_number():
    assert _checks.check_number(np.float32(0.5), "lr", above=0.0) == 0.5
    assert _checks.check_number(0, "shift", at_least=0.0) == 0.0
    with pytest.raises(TypeError, match=r"g: lr must be a real number \(got str '0.1'\)"):
        _checks.check_number("0.1", "lr", where="g")
    with pytest.raises(ValueError, match=r"lr must be finite \(got nan\)"):
        _checks.check_number(math.nan, "lr")
    with pytest.raises(ValueError, match=r"lr must be > 0 \(got 0\)"):
        _checks.check_number(0.0, "lr", above=0.0)
    with pytest.raises(ValueError, match=r"tol must be between 0 and 1 \(got 1\)"):
        _checks.check_number(1.0, "tol", above=0.0, below=1.0)
    with pytest.raises(ValueError, match=r"x must be < 2 \(got 2\)"):
        _checks.check_number(2.0, "x", below=2.0)
    with pytest.raises(ValueError, match=r"std must be >= 0 \(got -1\)"):
        _checks.check_number(-1.0, "std", at_least=0.0)


def test_check_unit_interval():
    assert _checks.check_unit_interval(1, "momentum") == 1.0
    with pytest.raises(TypeError, match=r"expected momentum to be a number in \[0, 1\]"):
        _checks.check_unit_interval(None, "momentum")
    with pytest.raises(ValueError, match=r"expected beta in \[0, 1\] \(got 1.5\)"):
        _checks.check_unit_interval(1.5, "beta")


@pytest.mark.parametrize(
    "eps, training, error, words",
    [
        (None, True, TypeError, "expected eps to be a positive number, got NoneType"),
        ("1e-5", True, TypeError, "got str ('1e-5'); pass a float such as eps=1e-5"),
        (True, True, TypeError, "got bool"),
        (math.nan, True, ValueError, "eps must be a finite number, but got nan"),
        (math.inf, False, ValueError, "eps must be a finite number, but got inf"),
        (0.0, True, ValueError, "eps must be positive during training, but got 0.0"),
        (-1e-5, False, ValueError, "eps must be non-negative, but got -1e-05"),
    ],
)
def test_check_eps_refuses(eps, training, error, words):
    with pytest.raises(error) as info:
        _checks.check_eps(eps, training)
    assert words in str(info.value)


def test_check_eps_accepts_and_converts():
    assert _checks.check_eps(np.float32(1e-3)) == pytest.approx(1e-3)
    assert type(_checks.check_eps(1)) is float
    assert _checks.check_eps(0.0, training=False) == 0.0  # torch allows eps=0 outside training


# ---------------------------------------------------------------- arrays and tensors


def test_check_float_array():
    _checks.check_float_array(np.zeros(2, np.float32))
    with pytest.raises(TypeError, match=r"got torch.Tensor; convert with x.detach\(\).cpu\(\)"):
        _checks.check_float_array(torch.zeros(2))
    with pytest.raises(TypeError, match=r"got list; convert with np.asarray\(g, dtype"):
        _checks.check_float_array([1.0], "g")
    with pytest.raises(TypeError, match=r"got int64; convert with x.astype\(np.float32\)"):
        _checks.check_float_array(np.zeros(2, np.int64))


def test_as_float64_array():
    out = _checks.as_float64_array([1, 2], "z")
    assert out.dtype == np.float64
    with pytest.raises(TypeError, match=r"f: expected z to be an integer or float array"):
        _checks.as_float64_array(np.array(["a"]), "z", where="f")
    with pytest.raises(ValueError, match="expected at least one value in z"):
        _checks.as_float64_array([], "z", nonempty=True)
    with pytest.raises(ValueError, match=r"z contains 2 NaN or infinite value\(s\)"):
        _checks.as_float64_array([np.nan, 1.0, np.inf], "z", finite=True)
    _checks.as_float64_array([np.nan], "z")  # finiteness only when asked


def test_check_min_ndim():
    _checks.check_min_ndim(2)
    for ndim in (0, 1):
        with pytest.raises(ValueError, match=rf"expected 2D or higher input .*\(got {ndim}D input\)"):
            _checks.check_min_ndim(ndim)


def test_check_same_dtype():
    x = np.zeros(2, np.float32)
    _checks.check_same_dtype(x, gamma=np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"gamma has dtype float64 but x has dtype float32.*astype"):
        _checks.check_same_dtype(x, gamma=np.ones(2))
    with pytest.raises(TypeError, match=r"beta.to\(x.dtype\)"):
        _checks.check_same_dtype(torch.zeros(2), beta=torch.zeros(2, dtype=torch.float64))


def test_check_channel_vector_and_count():
    _checks.check_channel_vector(np.ones(3), "gamma", 3)
    with pytest.raises(ValueError, match=r"expected gamma of shape \(C,\) = \(3,\).*of W.shape\[0\]"):
        _checks.check_channel_vector(np.ones(4), "gamma", 3, source="W.shape[0]")
    _checks.check_channel_count(torch.ones(4), "weight", 4)
    with pytest.raises(ValueError, match=r"^weight should contain 4 elements not 5"):
        _checks.check_channel_count(torch.ones(5), "weight", 4)
    with pytest.raises(ValueError, match=r"running_mean should be a vector, not of shape \(2, 2\)"):
        _checks.check_channel_count(torch.ones(2, 2), "running_mean", 4)


def test_check_values_per_channel():
    _checks.check_values_per_channel((2, 3))
    _checks.check_values_per_channel((1, 3, 2))
    _checks.check_values_per_channel((0, 3), allow_empty=True)
    for size in ((1, 3), (0, 3), (1, 3, 1, 1)):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            _checks.check_values_per_channel(size)


def test_check_finite_finds_non_finite_values_and_overflow():
    x = np.ones((3, 2))
    _checks.check_finite(x)
    _checks.check_finite(x, channel_means=x.mean(0), channel_vars=x.var(0))
    x[1, 1] = np.inf
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value \(0 NaN, 1 inf\) in channel \[1\], the first at index \(1, 1\)"):
        _checks.check_finite(x, channel_means=x.mean(0))
    t = torch.ones(3, 2)
    t[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"1 NaN.*torch.argwhere"):
        _checks.check_finite(t)
    # finite values whose variance overflowed
    big = np.array([[1e200, 1.0], [-1e200, 2.0]])
    with np.errstate(over="ignore"):
        var = big.var(axis=0)
    with pytest.raises(ValueError, match="mean or variance of x overflowed float64.*Rescale"):
        _checks.check_finite(big, channel_means=big.mean(0), channel_vars=var)


def test_check_same_shape_and_num_features():
    _checks.check_same_shape(np.zeros((2, 3)), (2, 3))
    with pytest.raises(ValueError, match=r"expected dout of the forward input's shape \(2, 3\) \(got \(3, 2\)\)"):
        _checks.check_same_shape(np.zeros((3, 2)), (2, 3))
    _checks.check_num_features((4, 5), 5)
    with pytest.raises(ValueError, match=r"num_features=5 .*got 4 channels.*BatchNorm2d\(4\)"):
        _checks.check_num_features((2, 4, 3, 3), 5, "BatchNorm2d")


def test_check_float_tensor():
    _checks.check_float_tensor(torch.zeros(2), torch.float32)
    _checks.check_float_tensor(torch.zeros(2).half(), torch.float32)  # mixed precision
    with pytest.raises(TypeError, match=r"expected input to be a torch.Tensor, got ndarray"):
        _checks.check_float_tensor(np.zeros(2))
    with pytest.raises(TypeError, match=r"expected a floating point input, got torch.int64"):
        _checks.check_float_tensor(torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"expected input of dtype torch.float32 .*got torch.float64"):
        _checks.check_float_tensor(torch.zeros(2, dtype=torch.float64), torch.float32)


def test_check_mode():
    assert _checks.check_mode("train") == "train" and _checks.check_mode(None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"probe: mode must be 'train' .* or 'eval' .*\(got 'test'\)"):
        _checks.check_mode("test", "probe")
    with pytest.raises(ValueError, match="got None"):
        _checks.check_mode(None)
