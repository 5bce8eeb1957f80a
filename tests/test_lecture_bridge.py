"""book/lecture.md's worked example: the lecture's (n[l], m) column layout and the course's
(m, D) row layout give the same numbers, and those are the numbers the page prints."""

from pathlib import Path

import numpy as np

from course_lib.batchnorm import batchnorm_forward, bn_forward

PAGE = Path(__file__).resolve().parent.parent / "book" / "lecture.md"

Z = np.array([[1.0, 3.0, 1.0, 3.0], [10.0, 10.0, 30.0, 30.0]])  # lecture: (n[l], m)
GAMMA = np.array([[2.0], [0.5]])                                   # lecture: (n[l], 1)
BETA = np.array([[0.0], [1.0]])
Z_TILDE = np.array([[-2.0, 2.0, -2.0, 2.0], [0.5, 0.5, 1.5, 1.5]])


def _lecture_layout(Z, gamma, beta, eps):
    """The lecture's formulas with examples as columns: statistics along axis 1."""
    mu = Z.mean(axis=1, keepdims=True)
    sigma2 = ((Z - mu) ** 2).mean(axis=1, keepdims=True)
    return gamma * (Z - mu) / np.sqrt(sigma2 + eps) + beta, mu, sigma2


def test_both_layouts_give_the_pages_numbers():
    lecture, mu, sigma2 = _lecture_layout(Z, GAMMA, BETA, eps=0.0)
    np.testing.assert_array_equal(mu.ravel(), [2.0, 20.0])
    np.testing.assert_array_equal(sigma2.ravel(), [1.0, 100.0])
    np.testing.assert_array_equal(lecture, Z_TILDE)
    course, cache = bn_forward(Z.T, GAMMA.ravel(), BETA.ravel(), eps=0.0)  # (m, D) rows
    np.testing.assert_array_equal(course, Z_TILDE.T)
    np.testing.assert_array_equal(cache.mu, [2.0, 20.0])


def test_with_the_default_eps_the_numbers_change_only_in_the_sixth_digit():
    out, _ = batchnorm_forward(Z.T, GAMMA.ravel(), BETA.ravel())
    np.testing.assert_allclose(out, Z_TILDE.T, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(out, Z_TILDE.T)
    np.testing.assert_allclose(out, _lecture_layout(Z, GAMMA, BETA, eps=1e-5)[0].T, rtol=1e-12)


def test_the_page_prints_these_matrices():
    text = PAGE.read_text()
    assert r"1 & 3 & 1 & 3 \\ 10 & 10 & 30 & 30" in text
    assert r"-2 & 2 & -2 & 2 \\ 0.5 & 0.5 & 1.5 & 1.5" in text
    assert r"-2 & 0.5 \\ 2 & 0.5 \\ -2 & 1.5 \\ 2 & 1.5" in text
    assert r"\mu = (2,\ 20), \quad \sigma^2 = (1,\ 100)" in text
