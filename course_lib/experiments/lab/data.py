"""Data sets for the experiments of chapters 3-6: bundled digits and a covariate-shift task.

Everything here is offline and deterministic: the same ``seed`` gives bit-identical tensors.

- :func:`load_digits_split` -- scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  64 pixel features, 10 classes; no download), split into training and test sets with a
  stratified, seeded split, standardized with the *training* set's statistics.
- :func:`make_covariate_shift_task` -- a 2D task whose labeling rule,
  :func:`covariate_shift_rule`, is the same everywhere while the inputs move: a model
  trained on one region of input space meets inputs from another (covariate shift).

Both return :class:`Split` objects, the unit that :func:`course_lib.experiments.lab.training.train` consumes.

Example:
    >>> data = load_digits_split(seed=0)
    >>> data
    Split(train: 1347 x 64, test: 450 x 64, n_classes=10)
    >>> source, shifted = make_covariate_shift_task(seed=0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, overload

import numpy as np
import torch
from torch import Tensor

from course_lib import _checks

__all__ = [
    "INPUT_STD",
    "WAVE_AMPLITUDE",
    "CovariateShiftTask",
    "Split",
    "covariate_shift_rule",
    "load_digits_split",
    "make_covariate_shift_task",
]


@dataclass(frozen=True, eq=False, repr=False)
class Split:
    """A training set and a test set as tensors: what :func:`course_lib.experiments.lab.training.train` needs.

    Attributes:
        X_train: ``(N_train, D)`` float inputs.
        y_train: ``(N_train,)`` int64 class labels in ``0 .. n_classes - 1``.
        X_test: ``(N_test, D)`` float inputs, same dtype as ``X_train``.
        y_test: ``(N_test,)`` int64 class labels.

    Properties ``n_features`` (``D``), ``n_classes`` (largest label + 1), ``n_train`` and
    ``n_test`` describe the shapes. The object is frozen: build a new one rather than
    changing it (the tensors themselves are not copied, so do not modify them in place).

    Example:
        >>> X = torch.randn(10, 3); y = torch.arange(10) % 2
        >>> Split(X[:8], y[:8], X[8:], y[8:])
        Split(train: 8 x 3, test: 2 x 3, n_classes=2)
    """

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor

    def __post_init__(self) -> None:
        for name in ("X_train", "y_train", "X_test", "y_test"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"Split: {name} must be a torch.Tensor (got {type(value).__name__}); "
                    f"convert with torch.as_tensor(...)"
                )
        for part in ("train", "test"):
            X, y = getattr(self, f"X_{part}"), getattr(self, f"y_{part}")
            if X.ndim != 2:
                raise ValueError(
                    f"Split: expected 2D X_{part} of shape (N, D) (got {X.ndim}D input with "
                    f"shape {tuple(X.shape)})"
                )
            if not X.is_floating_point():
                raise TypeError(
                    f"Split: X_{part} must be a float tensor (got {X.dtype}); use "
                    f"X_{part}.float()"
                )
            if y.ndim != 1 or y.dtype != torch.int64:
                raise TypeError(
                    f"Split: y_{part} must be a 1D int64 tensor of class labels (got "
                    f"{y.ndim}D {y.dtype}); use y_{part}.long()"
                )
            if len(X) != len(y):
                raise ValueError(
                    f"Split: X_{part} has {len(X)} examples but y_{part} has {len(y)} labels"
                )
            if len(X) == 0:
                raise ValueError(f"Split: the {part} set is empty")
            if int(y.min()) < 0:
                raise ValueError(f"Split: y_{part} has negative labels; use 0 .. n_classes - 1")
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ValueError(
                f"Split: X_train has {self.X_train.shape[1]} features but X_test has "
                f"{self.X_test.shape[1]}"
            )
        if self.X_train.dtype != self.X_test.dtype:
            raise TypeError(
                f"Split: X_train is {self.X_train.dtype} but X_test is {self.X_test.dtype}; "
                f"use the same dtype for both"
            )

    @property
    def n_features(self) -> int:
        """``D``, the number of input features."""
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        """The number of classes: the largest label in either set, plus one."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def n_train(self) -> int:
        return len(self.X_train)

    @property
    def n_test(self) -> int:
        return len(self.X_test)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Split:
        """A copy on ``device`` with inputs cast to ``dtype`` (labels stay int64)."""
        return Split(
            self.X_train.to(device=device, dtype=dtype),
            self.y_train.to(device=device),
            self.X_test.to(device=device, dtype=dtype),
            self.y_test.to(device=device),
        )

    def __repr__(self) -> str:
        return (
            f"Split(train: {self.n_train} x {self.n_features}, "
            f"test: {self.n_test} x {self.n_features}, n_classes={self.n_classes})"
        )


# ---------------------------------------------------------------------------------------------
# Handwritten digits


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    bunch = load_digits()
    X, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_digits_split(
    seed: int = 0,
    test_fraction: float = 0.25,
    n_train: int | None = None,
    standardize: bool = True,
) -> Split:
    """The bundled handwritten digits, split and standardized with training statistics.

    1,797 grayscale 8x8 images of the digits 0-9 (pixel values 0-16), flattened to 64
    features. The split is stratified (each digit keeps its share in both sets) and seeded.
    Each pixel is then standardized with the *training* set's mean ``mu_j`` and standard
    deviation ``sigma_j`` (:class:`course_lib.normalize.Standardizer`)::

        x_norm_ij = (x_ij - mu_j) / sigma_j        mu, sigma from X_train only

    so the training features have mean 0 and standard deviation 1 and the test features
    only approximately. Pixels that are constant on the training set (the image's corners)
    are only centered and become 0.

    Args:
        seed: seeds both the split and the ``n_train`` subsample.
        test_fraction: share of the 1,797 images held out for testing, ``0 < f < 1``.
        n_train: if given, keep only this many training images (a stratified subsample of
            the training part; the test set is unchanged). Chapter 5 uses a small training
            set to show a train/test gap. The statistics come from these ``n_train`` images.
        standardize: ``False`` returns the raw pixel values 0-16 (still float32).

    Returns:
        A :class:`Split` with float32 inputs ``(N, 64)`` and int64 labels in ``0..9``.

    Example:
        >>> data = load_digits_split(seed=0, n_train=200)
        >>> data.n_train, data.n_test, data.n_classes
        (200, 450, 10)
        >>> float(data.X_train.mean()), float(data.X_train[:, 20].std(unbiased=False))
        (0.0, 1.0)   # up to float32 round-off
    """
    from sklearn.model_selection import train_test_split

    from course_lib.normalize import Standardizer

    seed = _checks.check_int(seed, "seed", 0, 2**32 - 1, where="load_digits_split")
    if not _checks.is_real(test_fraction):
        raise TypeError(
            f"load_digits_split: test_fraction must be a number between 0 and 1 (got "
            f"{type(test_fraction).__name__})"
        )
    X, y = _digits()
    n_classes = int(y.max()) + 1
    n_test = math.ceil(test_fraction * len(y))  # how sklearn rounds test_size
    if not 0.0 < test_fraction < 1.0 or not n_classes <= n_test <= len(y) - n_classes:
        raise ValueError(
            f"load_digits_split: test_fraction must be between 0 and 1 and leave at least "
            f"{n_classes} images (one per class) in each set (got {test_fraction!r})"
        )
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    if n_train is not None:
        if not _checks.is_int(n_train):
            raise TypeError(
                f"load_digits_split: n_train must be an int or None (got "
                f"{type(n_train).__name__})"
            )
        if not n_classes <= n_train <= len(y_train):
            raise ValueError(
                f"load_digits_split: n_train must be between {n_classes} (one image per class) "
                f"and {len(y_train)} (the whole training part for test_fraction="
                f"{test_fraction}) (got {n_train})"
            )
        if n_train < len(y_train):
            X_train, _, y_train, _ = train_test_split(
                X_train, y_train, train_size=int(n_train), stratify=y_train, random_state=seed
            )
    if standardize:
        scaler = Standardizer().fit(X_train)  # training statistics only: no test leak
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return Split(
        torch.tensor(X_train, dtype=torch.float32),
        torch.tensor(y_train, dtype=torch.int64),
        torch.tensor(X_test, dtype=torch.float32),
        torch.tensor(y_test, dtype=torch.int64),
    )


# ---------------------------------------------------------------------------------------------
# Covariate shift

#: Amplitude of the wave in :func:`covariate_shift_rule`: the boundary is ``x_2 = 1.5 sin(x_1)``.
WAVE_AMPLITUDE = 1.5
#: Standard deviation of the inputs around their center, in both coordinates.
INPUT_STD = 0.6


@overload
def covariate_shift_rule(X: Tensor) -> Tensor: ...
@overload
def covariate_shift_rule(X: np.ndarray) -> np.ndarray: ...


def covariate_shift_rule(X):
    """The ground-truth labeling rule of the covariate-shift task: above a sine wave or not.

    .. math::

        y = \\begin{cases} 1 & \\text{if } x_2 > 1.5 \\sin(x_1) \\\\
            0 & \\text{otherwise} \\end{cases}

    The rule is fixed: it does not depend on the seed or on where the inputs come from. That
    is what "covariate shift" means: ``p(y | x)`` stays the same, only ``p(x)`` moves.

    Args:
        X: ``(N, 2)`` points ``(x_1, x_2)``, a tensor or a numpy array.

    Returns:
        ``(N,)`` labels 0/1: an int64 tensor for a tensor input, an int64 array for an array.

    Example:
        >>> covariate_shift_rule(torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
        tensor([1, 0])
    """
    if isinstance(X, Tensor):
        _check_points(X.shape, "covariate_shift_rule")
        return (X[:, 1] > WAVE_AMPLITUDE * torch.sin(X[:, 0])).long()
    X = np.asarray(X)
    if X.dtype.kind not in "iuf":
        raise TypeError(
            f"covariate_shift_rule: expected numeric points (got dtype {X.dtype}); pass a "
            f"float tensor or array of shape (N, 2)"
        )
    _check_points(X.shape, "covariate_shift_rule")
    return (X[:, 1] > WAVE_AMPLITUDE * np.sin(X[:, 0])).astype(np.int64)


class CovariateShiftTask(NamedTuple):
    """The two views of :func:`make_covariate_shift_task` (unpack: ``source, shifted = ...``).

    Both share the same training set, drawn around the origin. They differ in the test set:

    - ``source.X_test`` comes from the training distribution (in-distribution test);
    - ``shifted.X_test`` comes from the moved distribution (center ``(shift, 0)``).

    So ``train(model, source, ...)`` reports in-distribution test accuracy and
    ``train(model, shifted, ...)`` would train on exactly the same data but report the
    accuracy on the shifted inputs.
    """

    source: Split
    shifted: Split


def make_covariate_shift_task(
    seed: int = 0,
    n_train: int = 1000,
    n_test: int = 1000,
    shift: float = 3.0,
) -> CovariateShiftTask:
    """A 2D task with covariate shift: same labeling rule, inputs from a different region.

    Training and in-distribution test inputs are ``x ~ N((0, 0), s^2 I)``; shifted inputs are
    ``x ~ N((shift, 0), s^2 I)``, with ``s = INPUT_STD = 0.6``. Every label is
    ``covariate_shift_rule(x)``: 1 above the wave ``x_2 = 1.5 sin(x_1)``, 0 below. Near the
    origin the wave is almost the rising line ``x_2 = 1.5 x_1``, and that is what a model
    trained there learns. Around ``x_1 = 3`` the wave is back near 0 and falling, but the
    learned line is far above every shifted point: the model calls them all "below" and is
    right only for the points that really are, about 55-60% (the small MLPs we tried all
    behave so), although the labeling rule did not change at all.

    The shifted points are the same random draws as for ``shift = 0``, moved by
    ``(shift, 0)``; so for a given seed a slider over ``shift`` moves one cloud smoothly, and
    the training set does not depend on ``shift`` at all. With ``shift = 0`` the shifted set
    is just a second in-distribution test set.

    Inputs are not standardized: they are already on a unit scale.

    Args:
        seed: seeds all three point clouds.
        n_train: number of training points.
        n_test: number of points in each test set (in-distribution and shifted).
        shift: how far the shifted inputs move along ``x_1``.

    Returns:
        :class:`CovariateShiftTask` ``(source, shifted)``, two :class:`Split` objects with
        float32 inputs ``(N, 2)`` and int64 labels 0/1 that share their training set.

    Example:
        >>> source, shifted = make_covariate_shift_task(seed=0, shift=3.0)
        >>> bool((covariate_shift_rule(shifted.X_test) == shifted.y_test).all())
        True
    """
    seed = _checks.check_int(seed, "seed", 0, 2**32 - 1, where="make_covariate_shift_task")
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if not _checks.is_int(value):
            raise TypeError(
                f"make_covariate_shift_task: {name} must be an int (got {type(value).__name__})"
            )
        if value < 1:
            raise ValueError(f"make_covariate_shift_task: {name} must be at least 1 (got {value})")
    if not _checks.is_real(shift) or not math.isfinite(shift):
        raise TypeError(
            f"make_covariate_shift_task: shift must be a finite number (got {shift!r})"
        )
    g = torch.Generator().manual_seed(seed)
    # Draw in a fixed order and with sizes independent of shift, so each cloud is reproducible.
    X_train = INPUT_STD * torch.randn(n_train, 2, generator=g)
    X_test = INPUT_STD * torch.randn(n_test, 2, generator=g)
    X_shifted = INPUT_STD * torch.randn(n_test, 2, generator=g)
    X_shifted[:, 0] += float(shift)
    y_train = covariate_shift_rule(X_train)
    source = Split(X_train, y_train, X_test, covariate_shift_rule(X_test))
    shifted = Split(X_train, y_train, X_shifted, covariate_shift_rule(X_shifted))
    return CovariateShiftTask(source, shifted)


def _check_points(shape: tuple[int, ...], where: str) -> None:
    if len(shape) != 2 or shape[1] != 2:
        raise ValueError(
            f"{where}: expected points of shape (N, 2) (got shape {tuple(shape)})"
        )
