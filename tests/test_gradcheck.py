import numpy as np
import pytest

from course_lib.gradcheck import centered_difference, numerical_gradient, rel_error


def test_matches_a_known_gradient_and_restores_the_input():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(4, 3))
    before = v.copy()
    dout = rng.normal(size=(4, 3))
    grad = numerical_gradient(lambda: np.sin(v) * v, v, dout)
    exact = (np.cos(v) * v + np.sin(v)) * dout
    assert rel_error(grad, exact) < 1e-9
    assert np.array_equal(v, before)


def test_teaching_form_is_the_checked_one():
    rng = np.random.default_rng(1)
    v, dout = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    before = v.copy()
    grad = centered_difference(lambda: v**2, v, dout)
    assert rel_error(grad, 2 * v * dout) < 1e-9
    assert np.array_equal(v, before)
    assert np.array_equal(grad, numerical_gradient(lambda: v**2, v, dout))


def test_detects_a_wrong_gradient():
    v = np.linspace(-1, 1, 5)
    dout = np.ones(5)
    assert rel_error(numerical_gradient(lambda: v ** 3, v, dout), 2 * v ** 2) > 1e-2


def test_rel_error_of_zeros_is_zero_and_symmetric():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    a, b = np.array([1.0, 2.0]), np.array([1.5, 2.0])
    assert rel_error(a, b) == rel_error(b, a)


def test_float32_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="astype\\(np.float64\\)"):
        numerical_gradient(lambda: np.ones(2), np.ones(2, dtype=np.float32), np.ones(2))
