r"""Gradient descent on a quadratic loss, and why the scale of the inputs matters.

The setting is linear regression with the mean squared error (MSE). For data
:math:`x^{(i)} \in \mathbb{R}^D`, targets :math:`y^{(i)}`, weights :math:`w` and a bias :math:`b`,

.. math::

    J(w, b) = \frac{1}{N} \sum_{i=1}^{N} \left(w^\top x^{(i)} + b - y^{(i)}\right)^2 .

For any :math:`w` the best bias is :math:`b(w) = \bar y - w^\top \bar x` (the means over the
data), and putting it back gives a loss of :math:`w` alone, written with the *centered* data
:math:`X_c = X - \bar x` and :math:`y_c = y - \bar y`:

.. math::

    L(w) = \min_b J(w, b) = \frac{1}{N} \lVert X_c w - y_c \rVert^2, \qquad
    \nabla L(w) = \frac{2}{N} X_c^\top (X_c w - y_c), \qquad
    H = \nabla^2 L = \frac{2}{N} X_c^\top X_c .

So with two features the loss is a quadratic bowl over the plane :math:`(w_1, w_2)` that we can
draw. Its Hessian :math:`H` is constant, with eigenvalues
:math:`\lambda_{\min} \le \lambda_{\max}` and condition number
:math:`\kappa = \lambda_{\max} / \lambda_{\min}`; the contours are ellipses whose axes have the
ratio :math:`\sqrt{\kappa}`.

Gradient descent :math:`w_{k+1} = w_k - \alpha \nabla L(w_k)` multiplies the error
:math:`w_k - w^*` along the eigenvector of :math:`\lambda_i` by :math:`1 - \alpha \lambda_i` per
step. Hence

- it converges for every start if and only if :math:`0 < \alpha < 2 / \lambda_{\max}`
  (:func:`max_stable_lr`);
- the slowest direction is fastest at :math:`\alpha^* = 2 / (\lambda_{\max} + \lambda_{\min})`
  (:func:`optimal_lr`), where every error shrinks by at least
  :math:`\rho = (\kappa - 1) / (\kappa + 1)` per step (:func:`convergence_rate`), and the excess
  loss :math:`L(w_k) - L(w^*)` by :math:`\rho^2`;
- reaching a fraction ``tol`` of the starting excess loss takes at most
  :math:`\lceil \ln(\text{tol}) / (2 \ln \rho) \rceil \approx \tfrac{\kappa}{4} \ln(1/\text{tol})`
  steps (:func:`theoretical_steps`); with two features the bound is attained exactly.

Standardizing the features (:class:`course_lib.normalize.Standardizer`) turns :math:`H` into
twice the features' correlation matrix, so :math:`\kappa = (1 + |r|) / (1 - |r|)` for two
features with correlation :math:`r`: close to 1 when they are nearly uncorrelated, whatever
their units were.

Example::

    >>> X, y = make_regression_data(scale_ratio=10.0, seed=0)
    >>> raw = LinearRegressionLoss(X, y)
    >>> lr = optimal_lr(raw)
    >>> steps_to_converge(raw, lr) == theoretical_steps(raw.condition_number())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from course_lib import _checks

__all__ = [
    "TOL",
    "LinearRegressionLoss",
    "Landscape",
    "make_regression_data",
    "condition_number",
    "max_stable_lr",
    "optimal_lr",
    "convergence_rate",
    "theoretical_steps",
    "gradient_descent",
    "relative_excess_loss",
    "steps_to_converge",
    "loss_landscape",
    "contour_ellipse",
]

#: Default convergence criterion: the excess loss has fallen to this fraction of its start.
TOL = 1e-6

# Standard deviation of U[1, 5], the spread of the unscaled features of make_regression_data.
_U_STD = 4.0 / math.sqrt(12.0)

# gradient_descent stops once the excess loss has grown by this factor: it has diverged, and
# going on would only overflow.
_DIVERGED = 1e20


def make_regression_data(
    scale_ratio: float = 10.0,
    n: int = 200,
    seed: int = 0,
    shift: float = 0.0,
    noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Two-feature regression data whose features differ in scale by ``scale_ratio``.

    With :math:`u_1, u_2 \sim U[1, 5]` independent, :math:`\sigma_u = 4/\sqrt{12}` their standard
    deviation and :math:`s` = ``scale_ratio``:

    .. math::

        x_1 = u_1 + \text{shift}\cdot\sigma_u, \qquad
        x_2 = s\,(u_2 + \text{shift}\cdot\sigma_u), \qquad
        y = x_1 + \tfrac{1}{2}\, x_2 / s + \text{noise}\cdot\epsilon,\ \ \epsilon \sim N(0, 1).

    Think of :math:`x_1` as a number of rooms (1 to 5) and :math:`x_2` as a floor area in a unit
    that makes it :math:`s` times more spread out. The rule from :math:`x` to :math:`y` does not
    depend on :math:`s`: changing ``scale_ratio`` only changes the unit of :math:`x_2`, and the
    same ``seed`` gives the same :math:`u` and :math:`\epsilon` for every ``scale_ratio``.
    ``shift`` moves both features up by that many of their standard deviations (a test set from
    a shifted distribution) and keeps the rule.

    Args:
        scale_ratio: :math:`s > 0`, the ratio of the standard deviations of :math:`x_2` and
            :math:`x_1` (in expectation).
        n: number of examples, ``>= 2``.
        seed: seed of ``np.random.default_rng``.
        shift: shift of both features, in units of their standard deviation.
        noise: standard deviation of the noise on :math:`y`, ``>= 0``.

    Returns:
        ``(X, y)`` with shapes ``(n, 2)`` and ``(n,)``, float64.

    Example::

        >>> X, y = make_regression_data(scale_ratio=100.0, n=5000, seed=1)
        >>> round(float(X[:, 1].std() / X[:, 0].std()), -1)
        100.0
    """
    scale_ratio = _checks.check_number(scale_ratio, "scale_ratio", above=0.0)
    if not _checks.is_int(n) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (got {n!r})")
    shift = _checks.check_number(shift, "shift")
    noise = _checks.check_number(noise, "noise")
    if noise < 0:
        raise ValueError(f"noise must be >= 0 (got {noise})")
    rng = np.random.default_rng(seed)
    u = rng.uniform(1.0, 5.0, size=(int(n), 2)) + shift * _U_STD
    eps = rng.standard_normal(int(n))
    X = u * np.array([1.0, scale_ratio])
    y = u[:, 0] + 0.5 * u[:, 1] + noise * eps
    return X, y


class LinearRegressionLoss:
    r"""The MSE of a linear model as a function of its weights, with the bias at its best value.

    .. math::

        L(w) = \min_b \frac{1}{N}\sum_i \left(w^\top x^{(i)} + b - y^{(i)}\right)^2
             = \frac{1}{N}\lVert X_c w - y_c\rVert^2
             = L(w^*) + \tfrac12 (w - w^*)^\top H (w - w^*),

    with :math:`X_c = X - \bar x`, :math:`y_c = y - \bar y`, :math:`H = \frac{2}{N}X_c^\top X_c`
    and :math:`w^*` the least-squares weights. Profiling out the bias is what keeps the problem
    a :math:`D`-dimensional quadratic (a 2D picture for two features); it only centers the
    data, it does not rescale it, so the features keep their units.

    Args:
        X: ``(N, D)`` inputs, finite, ``N >= 2``.
        y: ``(N,)`` targets, finite.

    Shape:
        Weight arguments ``w`` are ``(D,)`` or a batch ``(..., D)`` (e.g. a grid of points); the
        loss of a batch has shape ``(...)``.

    Example::

        >>> X, y = make_regression_data(scale_ratio=10.0, seed=0)
        >>> problem = LinearRegressionLoss(X, y)
        >>> problem.hessian.shape, problem.condition_number() > 50
        ((2, 2), True)
    """

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        X = _checks.as_float64_array(X, "X")
        y = _checks.as_float64_array(y, "y")
        if X.ndim != 2:
            hint = " (for a single feature use X.reshape(-1, 1))" if X.ndim == 1 else ""
            raise ValueError(f"X: expected 2D input of shape (N, D) (got {X.ndim}D input){hint}")
        if y.ndim != 1:
            raise ValueError(
                f"y: expected 1D targets of shape (N,) (got {y.ndim}D input with shape "
                f"{y.shape}); use y.ravel() for a column of targets"
            )
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y must have the same number of examples (got {X.shape[0]} and "
                f"{y.shape[0]})"
            )
        if X.shape[0] < 2 or X.shape[1] < 1:
            raise ValueError(f"expected at least 2 examples and 1 feature (got X.shape={X.shape})")
        for name, a in (("X", X), ("y", y)):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains NaN or infinite values; clean them first")
        n = X.shape[0]
        self.x_mean: np.ndarray = X.mean(axis=0)
        self.y_mean: float = float(y.mean())
        self.X_c: np.ndarray = X - self.x_mean
        self.y_c: np.ndarray = y - self.y_mean
        self.hessian: np.ndarray = (2.0 / n) * self.X_c.T @ self.X_c
        # The gradient is H w - c; keeping c makes a step cost O(D^2) instead of O(N D).
        self._c = (2.0 / n) * self.X_c.T @ self.y_c
        self._eigenvalues, self._eigenvectors = np.linalg.eigh(self.hessian)
        self._w_star = np.linalg.lstsq(self.X_c, self.y_c, rcond=None)[0]
        self._min_loss = float(np.mean((self.X_c @ self._w_star - self.y_c) ** 2))

    @property
    def n_samples(self) -> int:
        """``N``, the number of examples."""
        return self.X_c.shape[0]

    @property
    def n_features(self) -> int:
        """``D``, the number of weights."""
        return self.X_c.shape[1]

    def loss(self, w: np.ndarray) -> np.ndarray | float:
        r""":math:`L(w) = \frac1N \lVert X_c w - y_c \rVert^2`, from the residuals.

        Returns a float for ``w`` of shape ``(D,)``, an array ``(...)`` for ``(..., D)``.
        """
        w = self._check_w(w)
        residual = w @ self.X_c.T - self.y_c
        out = np.mean(residual**2, axis=-1)
        return float(out) if w.ndim == 1 else out

    def excess_loss(self, w: np.ndarray) -> np.ndarray | float:
        r""":math:`L(w) - L(w^*) = \tfrac12 (w - w^*)^\top H (w - w^*)`, without cancellation."""
        w = self._check_w(w)
        e = w - self._w_star
        out = 0.5 * np.einsum("...i,ij,...j->...", e, self.hessian, e)
        return float(out) if w.ndim == 1 else out

    def gradient(self, w: np.ndarray) -> np.ndarray:
        r""":math:`\nabla L(w) = \frac2N X_c^\top (X_c w - y_c) = H w - \frac2N X_c^\top y_c`."""
        w = self._check_w(w)
        return w @ self.hessian - self._c

    def minimizer(self) -> np.ndarray:
        """The least-squares weights ``w*`` (``(D,)``), the bottom of the bowl."""
        return self._w_star.copy()

    def min_loss(self) -> float:
        """``L(w*)``, the smallest loss a linear model reaches on this data."""
        return self._min_loss

    def bias(self, w: np.ndarray) -> np.ndarray | float:
        r"""The best bias for weights ``w``: :math:`b(w) = \bar y - w^\top \bar x`."""
        w = self._check_w(w)
        out = self.y_mean - w @ self.x_mean
        return float(out) if w.ndim == 1 else out

    def predict(self, X: np.ndarray, w: np.ndarray) -> np.ndarray:
        r"""Predictions :math:`w^\top x + b(w)` for new inputs ``X`` of shape ``(M, D)``."""
        w = self._check_w(w)
        if w.ndim != 1:
            raise ValueError(f"predict: expected w of shape ({self.n_features},) (got {w.shape})")
        X = _checks.as_float64_array(X, "X")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"predict: expected X of shape (M, {self.n_features}) (got shape {X.shape})"
            )
        return X @ w + self.bias(w)

    def eigenvalues(self) -> np.ndarray:
        r"""Eigenvalues of the Hessian in ascending order, :math:`\lambda_{\min}` first."""
        return self._eigenvalues.copy()

    def condition_number(self) -> float:
        r""":math:`\kappa = \lambda_{\max} / \lambda_{\min}` of the Hessian (see :func:`condition_number`)."""
        return condition_number(self.hessian)

    def _check_w(self, w: np.ndarray) -> np.ndarray:
        w = _checks.as_float64_array(w, "w")
        if w.ndim == 0 or w.shape[-1] != self.n_features:
            raise ValueError(
                f"w: expected shape ({self.n_features},) or (..., {self.n_features}) for "
                f"{self.n_features} feature(s) (got shape {w.shape})"
            )
        return w

    def __repr__(self) -> str:
        return f"LinearRegressionLoss(n_samples={self.n_samples}, n_features={self.n_features})"


def condition_number(H: np.ndarray) -> float:
    r"""Condition number :math:`\kappa = \lambda_{\max} / \lambda_{\min}` of a symmetric matrix.

    For a Hessian, :math:`\kappa \ge 1` measures how elongated the loss contours are (their
    axes have the ratio :math:`\sqrt\kappa`). Returns ``inf`` when :math:`\lambda_{\min} \le 0`
    (a flat direction: the minimum is not unique).

    Args:
        H: ``(D, D)`` symmetric, finite matrix.

    Example::

        >>> condition_number(np.diag([2.0, 200.0]))
        100.0
    """
    H = _checks.as_float64_array(H, "H")
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] == 0:
        raise ValueError(f"H: expected a square (D, D) matrix (got shape {H.shape})")
    if not np.all(np.isfinite(H)):
        raise ValueError("H contains NaN or infinite values")
    if not np.allclose(H, H.T, rtol=1e-10, atol=0.0):
        raise ValueError("H must be symmetric, as a Hessian is")
    eigenvalues = np.linalg.eigvalsh(H)
    if eigenvalues[0] <= 0:
        return math.inf
    return float(eigenvalues[-1] / eigenvalues[0])


def max_stable_lr(problem: LinearRegressionLoss) -> float:
    r"""The learning rate at which gradient descent stops converging: :math:`2/\lambda_{\max}`.

    Along the steepest direction the error is multiplied by :math:`1 - \alpha\lambda_{\max}` per
    step; its size stays below 1 only for :math:`\alpha < 2/\lambda_{\max}`. Just above, the
    iterates zig-zag ever further out; just below, they converge (slowly: the factor is close
    to -1).
    """
    _check_problem(problem)
    return 2.0 / float(problem.eigenvalues()[-1])


def optimal_lr(problem: LinearRegressionLoss) -> float:
    r"""The best fixed learning rate :math:`\alpha^* = 2/(\lambda_{\max} + \lambda_{\min})`.

    It balances the two extreme directions: :math:`|1 - \alpha^*\lambda_{\min}| =
    |1 - \alpha^*\lambda_{\max}| = \rho = (\kappa-1)/(\kappa+1)`, and any other fixed
    :math:`\alpha` makes one of them larger. It is below :func:`max_stable_lr`, so it is
    stable.
    """
    _check_problem(problem)
    lam = problem.eigenvalues()
    return 2.0 / float(lam[-1] + max(lam[0], 0.0))


def convergence_rate(kappa: float) -> float:
    r"""Per-step contraction :math:`\rho = (\kappa-1)/(\kappa+1)` of the error at :func:`optimal_lr`.

    The excess loss shrinks by :math:`\rho^2` per step. :math:`\kappa = 1` gives 0 (one step
    suffices); a large :math:`\kappa` gives :math:`\rho \approx 1 - 2/\kappa`.

    Example::

        >>> convergence_rate(1.0), round(convergence_rate(99.0), 3)
        (0.0, 0.98)
    """
    kappa = _checks.check_number(kappa, "kappa")
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, as lambda_max >= lambda_min (got {kappa})")
    return (kappa - 1.0) / (kappa + 1.0)


def theoretical_steps(kappa: float, tol: float = TOL) -> int:
    r"""Steps at :func:`optimal_lr` for the excess loss to fall to ``tol`` of its start.

    .. math::

        k = \left\lceil \frac{\ln \text{tol}}{2 \ln \rho} \right\rceil
          \approx \frac{\kappa}{4}\,\ln\frac{1}{\text{tol}}
          \quad\text{for large } \kappa, \qquad \rho = \frac{\kappa-1}{\kappa+1}.

    An upper bound for any start; exact for two features (both directions then shrink by
    exactly :math:`\rho`). Grows linearly with :math:`\kappa`.

    Example::

        >>> theoretical_steps(1.0), theoretical_steps(100.0)
        (1, 346)
    """
    tol = _check_tol(tol)
    rho = convergence_rate(kappa)
    if rho == 0.0:
        return 1
    if rho >= 1.0:
        raise ValueError(f"kappa={kappa:.3g} is too large: rho rounds to 1 in floating point")
    return max(1, math.ceil(math.log(tol) / (2.0 * math.log(rho))))


def gradient_descent(
    problem: LinearRegressionLoss,
    lr: float,
    n_steps: int,
    w0: np.ndarray | None = None,
    tol: float | None = None,
) -> np.ndarray:
    r"""Run :math:`w_{k+1} = w_k - \alpha \nabla L(w_k)` and return the path.

    Args:
        problem: the loss.
        lr: learning rate :math:`\alpha > 0`.
        n_steps: the most steps to take, ``>= 0``.
        w0: start, ``(D,)``; default zeros (the model predicts the mean target).
        tol: if given, stop as soon as the excess loss is at most ``tol`` times its starting
            value; ``len(path) - 1`` is then the number of steps it took.

    Returns:
        ``(K + 1, D)`` array of :math:`w_0, \dots, w_K`, with ``K <= n_steps``. The run also
        stops early, with finite values, once the excess loss has grown by a factor
        :math:`10^{20}` (it has diverged).

    Example::

        >>> X, y = make_regression_data(seed=0)
        >>> problem = LinearRegressionLoss(X, y)
        >>> path = gradient_descent(problem, optimal_lr(problem), 10_000, tol=1e-6)
        >>> len(path) - 1 == steps_to_converge(problem, optimal_lr(problem))
        True
    """
    _check_problem(problem)
    lr = _checks.check_number(lr, "lr", above=0.0)
    if not _checks.is_int(n_steps) or n_steps < 0:
        raise ValueError(f"n_steps must be an integer >= 0 (got {n_steps!r})")
    if tol is not None:
        tol = _check_tol(tol)
    w = _start(problem, w0)
    # The loop inlines problem.gradient (H w - c) and problem.excess_loss without their input
    # checks: thousands of steps then take milliseconds, fast enough for a slider.
    H, c, w_star = problem.hessian, problem._c, problem._w_star
    e = w - w_star
    excess0 = 0.5 * float(e @ H @ e)
    limit = _DIVERGED * max(excess0, np.finfo(float).tiny)
    path = [w]
    for _ in range(int(n_steps)):
        w = w - lr * (H @ w - c)
        path.append(w)
        e = w - w_star
        excess = 0.5 * float(e @ H @ e)
        if tol is not None and excess <= tol * excess0:
            break
        if excess > limit:
            break
    return np.array(path)


def relative_excess_loss(problem: LinearRegressionLoss, path: np.ndarray) -> np.ndarray:
    r""":math:`(L(w_k) - L^*) / (L(w_0) - L^*)` along a path ``(K + 1, D)``: 1 at the start.

    A measure of progress that does not depend on the features' units: standardizing changes
    the weights but not the predictions a given model makes, so raw and standardized runs can
    be compared on it.
    """
    _check_problem(problem)
    path = problem._check_w(path)
    if path.ndim != 2:
        raise ValueError(f"path: expected shape (K + 1, {problem.n_features}) (got {path.shape})")
    excess = np.asarray(problem.excess_loss(path))
    if excess[0] <= 0:
        raise ValueError("the path starts at the minimum: there is no excess loss to reduce")
    return excess / excess[0]


def steps_to_converge(
    problem: LinearRegressionLoss,
    lr: float,
    tol: float = TOL,
    w0: np.ndarray | None = None,
    max_steps: int = 10**15,
) -> int:
    r"""Number of gradient descent steps until the excess loss is at most ``tol`` of its start.

    Computed in closed form instead of by running the steps, so it is instant even when
    billions of steps are needed. In the Hessian's eigenbasis, with
    :math:`c = Q^\top (w_0 - w^*)` and :math:`r_i = 1 - \alpha\lambda_i`,

    .. math::

        \frac{L(w_k) - L^*}{L(w_0) - L^*} =
        \frac{\sum_i \lambda_i c_i^2 r_i^{2k}}{\sum_i \lambda_i c_i^2},

    which decreases with :math:`k` when every :math:`|r_i| < 1`; the smallest :math:`k` with a
    value :math:`\le` ``tol`` is found by bisection. Agrees with counting the steps of
    :func:`gradient_descent` (up to one step of rounding at the boundary).

    Args:
        problem: the loss.
        lr: learning rate :math:`\alpha`, with :math:`0 < \alpha < 2/\lambda_{\max}`.
        tol: target fraction of the starting excess loss, in ``(0, 1)``.
        w0: start, ``(D,)``; default zeros.
        max_steps: give up (``ValueError``) beyond this many steps.

    Returns:
        The number of steps (0 if ``w0`` is already the minimizer).

    Raises:
        ValueError: if ``lr >= 2 / lambda_max``, where gradient descent does not converge.
    """
    _check_problem(problem)
    lr = _checks.check_number(lr, "lr", above=0.0)
    tol = _check_tol(tol)
    w = _start(problem, w0)
    lam = np.clip(problem.eigenvalues(), 0.0, None)
    coords = problem._eigenvectors.T @ (w - problem.minimizer())
    weight = lam * coords**2
    total = weight.sum()
    if total <= 0:
        return 0
    active = weight > 0
    r = np.abs(1.0 - lr * lam[active])
    weight = weight[active] / total
    if np.any(r >= 1.0):
        raise ValueError(
            f"gradient descent does not converge at lr={lr:.4g}: it needs "
            f"lr < 2/lambda_max = {max_stable_lr(problem):.4g}"
        )
    with np.errstate(divide="ignore"):
        log_r = np.log(r)  # -inf where r == 0: that direction is solved in one step

    def remaining(k: int) -> float:
        with np.errstate(invalid="ignore"):
            terms = np.where(np.isneginf(log_r), 0.0, np.exp(2.0 * k * log_r))
        return float(np.sum(weight * terms))

    hi = 1
    while remaining(hi) > tol:
        hi *= 2
        if hi > max_steps:
            raise ValueError(f"more than max_steps={max_steps} steps would be needed")
    lo = hi // 2  # remaining(lo) > tol (or lo == 0, the start)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if remaining(mid) > tol:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class Landscape:
    """What a contour plot of a two-weight loss needs (see :func:`loss_landscape`).

    Attributes:
        w1, w2: ``(n, n)`` grid coordinates (as from ``np.meshgrid``).
        loss: ``(n, n)`` loss values on the grid (for ``contourf`` or ``pcolormesh``).
        levels: ``(n_levels,)`` increasing loss values for the contour lines.
        contours: one ``(n_points, 2)`` closed curve per level, computed exactly with
            :func:`contour_ellipse`. Prefer them to contouring the grid: an elongated ellipse
            is only a few grid cells wide, and its grid contour comes out jagged.
        w_star: ``(2,)`` the minimizer, at the center of the grid.
    """

    w1: np.ndarray
    w2: np.ndarray
    loss: np.ndarray
    levels: np.ndarray
    contours: tuple[np.ndarray, ...]
    w_star: np.ndarray


def loss_landscape(
    problem: LinearRegressionLoss,
    w0: np.ndarray | None = None,
    n: int = 61,
    margin: float = 1.15,
    n_levels: int = 8,
) -> Landscape:
    r"""Loss values on a square grid around :math:`w^*` that contains the contour through ``w0``.

    The grid is square in weight units (so drawn with equal axis scales, round contours look
    round and elongated ones elongated). Its half-width is ``margin`` times the longest
    semi-axis of the contour through ``w0``, :math:`\sqrt{2 (L(w_0) - L^*) / \lambda_{\min}}`,
    so every stable gradient descent path from ``w0`` (whose loss only decreases) stays inside.
    The levels are :math:`L^* + (L(w_0) - L^*)\,2^{-j}`, :math:`j = 0, \dots,` ``n_levels - 1``:
    each contour is :math:`\sqrt2` times smaller than the previous one.

    A 61 x 61 grid costs well under a millisecond, so a slider can redraw it freely.

    Args:
        problem: a loss with exactly two weights.
        w0: start, ``(2,)``; default zeros.
        n: grid points per axis, ``>= 2``.
        margin: ``>= 1``.
        n_levels: number of contour levels, ``>= 1``.
    """
    _check_problem(problem)
    if problem.n_features != 2:
        raise ValueError(
            f"loss_landscape draws two weights (got a problem with {problem.n_features} features)"
        )
    if not _checks.is_int(n) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (got {n!r})")
    if not _checks.is_int(n_levels) or n_levels < 1:
        raise ValueError(f"n_levels must be an integer >= 1 (got {n_levels!r})")
    margin = _checks.check_number(margin, "margin", above=0.0)
    if margin < 1:
        raise ValueError(f"margin must be >= 1 so the start is on the grid (got {margin})")
    w = _start(problem, w0)
    excess0 = problem.excess_loss(w)
    lam_min = float(problem.eigenvalues()[0])
    if excess0 <= 0 or lam_min <= 0:
        raise ValueError("w0 must differ from the minimizer, and the Hessian must be invertible")
    w_star = problem.minimizer()
    half = margin * math.sqrt(2.0 * excess0 / lam_min)
    t = np.linspace(-half, half, int(n))
    w1, w2 = np.meshgrid(w_star[0] + t, w_star[1] + t)
    grid = np.stack([w1, w2], axis=-1)
    # The exact quadratic form: same values as problem.loss, without an O(N) sum per point.
    loss = problem.min_loss() + np.asarray(problem.excess_loss(grid))
    levels = problem.min_loss() + excess0 * 2.0 ** -np.arange(int(n_levels))[::-1]
    contours = tuple(contour_ellipse(problem, level) for level in levels)
    return Landscape(w1=w1, w2=w2, loss=loss, levels=levels, contours=contours, w_star=w_star)


def contour_ellipse(problem: LinearRegressionLoss, level: float, n_points: int = 181) -> np.ndarray:
    r"""The contour :math:`L(w) = \text{level}` of a two-weight loss, as a closed curve.

    With :math:`H = Q \operatorname{diag}(\lambda_1, \lambda_2) Q^\top`, the contour is the
    ellipse

    .. math::

        w(t) = w^* + Q \begin{pmatrix} a_1 \cos t \\ a_2 \sin t \end{pmatrix}, \qquad
        a_i = \sqrt{2(\text{level} - L^*) / \lambda_i}, \quad t \in [0, 2\pi],

    whose semi-axes have the ratio :math:`a_1 / a_2 = \sqrt{\kappa}`.

    Args:
        problem: a loss with exactly two weights and an invertible Hessian.
        level: a loss value above the minimum ``problem.min_loss()``.
        n_points: points on the curve, ``>= 3``; the first and the last coincide.

    Returns:
        ``(n_points, 2)`` points on the contour.
    """
    _check_problem(problem)
    if problem.n_features != 2:
        raise ValueError(
            f"contour_ellipse draws two weights (got a problem with {problem.n_features} features)"
        )
    level = _checks.check_number(level, "level")
    if not _checks.is_int(n_points) or n_points < 3:
        raise ValueError(f"n_points must be an integer >= 3 (got {n_points!r})")
    excess = level - problem.min_loss()
    if excess <= 0:
        raise ValueError(
            f"level must be above the minimum loss {problem.min_loss():.6g} (got {level:.6g})"
        )
    lam = problem.eigenvalues()
    if lam[0] <= 0:
        raise ValueError("the Hessian is singular: the contours are not ellipses")
    t = np.linspace(0.0, 2.0 * np.pi, int(n_points))
    semi_axes = np.sqrt(2.0 * excess / lam)
    circle = np.stack([semi_axes[0] * np.cos(t), semi_axes[1] * np.sin(t)], axis=-1)
    return problem.minimizer() + circle @ problem._eigenvectors.T


def _start(problem: LinearRegressionLoss, w0: np.ndarray | None) -> np.ndarray:
    if w0 is None:
        return np.zeros(problem.n_features)
    w0 = problem._check_w(w0)
    if w0.ndim != 1:
        raise ValueError(f"w0: expected shape ({problem.n_features},) (got {w0.shape})")
    if not np.all(np.isfinite(w0)):
        raise ValueError("w0 contains NaN or infinite values")
    return w0.copy()


def _check_problem(problem: object) -> None:
    if not isinstance(problem, LinearRegressionLoss):
        raise TypeError(
            f"expected a LinearRegressionLoss (got {type(problem).__name__}); build one with "
            "LinearRegressionLoss(X, y)"
        )


def _check_tol(tol: object) -> float:
    tol = _checks.check_number(tol, "tol")
    if not 0 < tol < 1:
        raise ValueError(f"tol is a fraction of the starting excess loss: expected 0 < tol < 1 (got {tol})")
    return tol
