r"""Batch norm's noise (chapter 5): each mini-batch's :math:`\mu` and :math:`\sigma^2` are
estimates, so in training one example's output depends on its batch-mates.

In training mode, batch norm normalizes example :math:`z^{(i)}` with the mean and variance of
its own mini-batch :math:`\{t\}`:

.. math:: z^{(i)}_{norm} = \frac{z^{(i)} - \mu^{\{t\}}}{\sqrt{\sigma^{2\{t\}} + \epsilon}}

and :math:`\mu^{\{t\}}, \sigma^{2\{t\}}` change with whoever else was drawn into the batch.
The same example therefore comes out slightly different in every batch: a small,
multiplicative and additive noise, which is where batch norm's slight regularizing effect
comes from. In eval mode the layer uses fixed running statistics and the noise is gone.

How large is the noise? For :math:`m` values drawn independently from a population with mean
:math:`\mu`, variance :math:`\sigma^2` and fourth central moment
:math:`\mu_4 = E[(z - \mu)^4]`:

.. math::

    \operatorname{std}(\mu^{\{t\}}) = \frac{\sigma}{\sqrt m}, \qquad
    \operatorname{Var}(\sigma^{2\{t\}}) = \frac{(m-1)^2}{m^3}\,\mu_4
        - \frac{(m-1)(m-3)}{m^3}\,\sigma^4

for the *biased* batch variance :math:`\sigma^{2\{t\}} = \frac1m\sum (z_i - \mu^{\{t\}})^2`
that batch norm uses. For normal data (:math:`\mu_4 = 3\sigma^4`) the second formula is
:math:`\operatorname{std}(\sigma^{2\{t\}}) = \sigma^2 \sqrt{2(m-1)}/m`. Both noises fall like
:math:`1/\sqrt m`: large batches normalize with nearly the population's statistics and
regularize less. :func:`batch_mean_spread` and :func:`batch_var_spread` measure both spreads
next to these formulas.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from course_lib import _checks
from course_lib.batchnorm import batch_stats
from course_lib.borrow import as_found, batchnorm_layers

__all__ = [
    "outputs_across_batches",
    "output_spread",
    "batch_mean_std_theory",
    "batch_var_std_theory",
    "batch_mean_spread",
    "batch_var_spread",
]


def outputs_across_batches(
    bn_or_model: Any,
    example: Any,
    pool: Any,
    batch_size: int,
    n_batches: int,
    seed: int = 0,
) -> Any:
    r"""The output for one fixed example, put into ``n_batches`` batches of random batch-mates.

    Each batch is ``example`` followed by ``batch_size - 1`` examples drawn from ``pool``
    without replacement; the module runs on the batch and the row of ``example`` is kept.
    The module runs in *its own* mode: in training mode (``.train()``) the rows differ from
    batch to batch because :math:`\mu^{\{t\}}` and :math:`\sigma^{2\{t\}}` do; in eval mode
    (``.eval()``) they are identical.

    The module is left as it was found (:func:`course_lib.borrow.as_found`): a probe in training
    mode does not move its running statistics (a real training-mode forward pass would, see
    chapter 6), nor the state of any random generator it holds.

    Args:
        bn_or_model: any ``torch.nn.Module`` whose first dimension is the batch, e.g. a
            ``torch.nn.BatchNorm1d``, a ``course_lib.nn.BatchNorm1d`` or a model with BN layers.
        example: one example, a tensor of shape ``pool.shape[1:]``.
        pool: ``(P, ...)`` tensor of candidate batch-mates, ``P >= batch_size - 1``.
        batch_size: :math:`m`, the batch size including ``example``.
        n_batches: how many random batches.
        seed: seeds the draws of batch-mates (``torch.Generator``).

    Returns:
        Tensor ``(n_batches, *out_shape)``: the module's output for ``example`` in each batch.

    Raises:
        ValueError: ``example``'s shape differs from ``pool``'s rows, ``pool`` is too small,
            or ``batch_size == 1`` in training mode (a batch of one has no variance; the
            layer could only output :math:`\beta`, so it cannot be normalized in training).

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(4)
        >>> pool = torch.randn(500, 4)
        >>> out = outputs_across_batches(bn, pool[0], pool[1:], batch_size=8, n_batches=100)
        >>> out.shape, bool(out.std(dim=0).min() > 0)               # train mode: it varies
        (torch.Size([100, 4]), True)
        >>> out = outputs_across_batches(bn.eval(), pool[0], pool[1:], 8, 100)
        >>> bool((out == out[0]).all())                            # eval mode: identical
        True
    """
    import torch

    batch_size = _checks.check_int(batch_size, "batch_size", 1)
    n_batches = _checks.check_int(n_batches, "n_batches", 1)
    if not isinstance(pool, torch.Tensor) or not isinstance(example, torch.Tensor):
        raise TypeError(
            "expected example and pool to be torch tensors; convert with "
            "torch.as_tensor(x, dtype=torch.float32)"
        )
    if tuple(example.shape) != tuple(pool.shape[1:]):
        raise ValueError(
            f"expected example of shape pool.shape[1:] = {tuple(pool.shape[1:])}, one example "
            f"like the rows of pool (got {tuple(example.shape)}); pass pool[i], not pool[i:i+1]"
        )
    if pool.shape[0] < batch_size - 1:
        raise ValueError(
            f"pool has {pool.shape[0]} examples, too few for batch_size={batch_size} "
            f"(needs batch_size - 1 = {batch_size - 1} batch-mates)"
        )
    training = any(m.training for _, m in batchnorm_layers(bn_or_model))
    if batch_size == 1 and training and pool.ndim == 2:
        raise ValueError(
            "batch_size=1 in training mode: a batch of one example has mean = the example and "
            "variance 0, so z - mu = 0 and the layer can only output beta; training-mode batch "
            "norm needs at least 2 examples. Use batch_size >= 2, or call .eval() to normalize "
            "one example with the running statistics"
        )
    gen = torch.Generator().manual_seed(int(seed))
    outputs = []
    with as_found(bn_or_model, state=True), torch.no_grad():
        for _ in range(n_batches):
            mates = pool[torch.randperm(pool.shape[0], generator=gen)[: batch_size - 1]]
            batch = torch.cat([example[None].to(pool.dtype), mates], dim=0)
            outputs.append(bn_or_model(batch)[0])
    return torch.stack(outputs)


def output_spread(
    bn_or_model: Any,
    example: Any,
    pool: Any,
    batch_sizes: Sequence[int],
    n_batches: int,
    seed: int = 0,
) -> np.ndarray:
    """Standard deviation, across batches, of one example's output, for each batch size.

    :func:`outputs_across_batches` for each ``m`` in ``batch_sizes``; the per-batch-size
    spread is the standard deviation over the batches (``ddof=1``), averaged over the output's
    entries. In training mode it falls roughly like :math:`1/\\sqrt m`.

    Returns:
        float64 array of ``len(batch_sizes)``.

    Example:
        >>> import torch
        >>> pool = torch.randn(600, 4)
        >>> s = output_spread(torch.nn.BatchNorm1d(4), pool[0], pool[1:], [4, 64], 200)
        >>> bool(s[0] > 3 * s[1])
        True
    """
    spreads = []
    for m in batch_sizes:
        out = outputs_across_batches(bn_or_model, example, pool, m, n_batches, seed)
        spreads.append(float(out.double().std(dim=0).mean()))
    return np.asarray(spreads)


def _population(population: Any) -> np.ndarray:
    pop = np.asarray(population, dtype=np.float64)
    if pop.ndim != 1 or pop.size < 2:
        raise ValueError(
            f"expected population to be a 1D array of at least 2 values, one feature's "
            f"values (got shape {pop.shape}); pass one column, e.g. X[:, 0]"
        )
    if not np.isfinite(pop).all():
        raise ValueError("population contains NaN or inf; drop or fix those values first")
    return pop


def _batch_sizes(batch_sizes: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(batch_sizes)
    if sizes.ndim != 1 or sizes.size == 0 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
        raise ValueError(f"expected batch_sizes to be a list of ints >= 1 (got {batch_sizes!r})")
    return sizes.astype(np.int64)


def batch_mean_std_theory(population: Any, batch_sizes: Sequence[int]) -> np.ndarray:
    r"""Predicted standard deviation of the batch mean: :math:`\sigma / \sqrt m`.

    :math:`\sigma` is the population's standard deviation (``ddof=0``); exact for batches of
    :math:`m` independent draws.

    Example:
        >>> batch_mean_std_theory([-1.0, 1.0], [1, 4, 100])
        array([1. , 0.5, 0.1])
    """
    pop = _population(population)
    return pop.std() / np.sqrt(_batch_sizes(batch_sizes))


def batch_var_std_theory(population: Any, batch_sizes: Sequence[int]) -> np.ndarray:
    r"""Predicted standard deviation of the *biased* batch variance for batches of size m.

    .. math::

        \operatorname{Var}(\sigma^{2\{t\}}) = \frac{(m-1)^2}{m^3}\,\mu_4
            - \frac{(m-1)(m-3)}{m^3}\,\sigma^4

    with the population's variance :math:`\sigma^2` and fourth central moment :math:`\mu_4`
    (exact for :math:`m` independent draws from any distribution with a finite fourth
    moment). For normal data it is :math:`\sigma^2\sqrt{2(m-1)}/m`; for :math:`m = 1` it is 0
    (the variance of one value is always 0).

    Example:
        >>> pop = np.random.default_rng(0).standard_normal(1_000_000)
        >>> np.round(batch_var_std_theory(pop, [2, 32]), 2)   # normal: sqrt(2(m-1))/m
        array([0.71, 0.25])
    """
    pop = _population(population)
    m = _batch_sizes(batch_sizes).astype(np.float64)
    centered = pop - pop.mean()
    var, mu4 = np.mean(centered**2), np.mean(centered**4)
    v = (m - 1) ** 2 / m**3 * mu4 - (m - 1) * (m - 3) / m**3 * var**2
    return np.sqrt(np.maximum(v, 0.0))


def _draw_batch_stats(
    population: np.ndarray, m: int, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance of ``n_draws`` batches of ``m`` independent draws."""
    draws = population[rng.integers(0, population.size, size=(m, n_draws))]
    # Lay the draws out as m examples of n_draws "features": batch_stats' per-channel mean and
    # variance are then exactly the per-batch statistics, with batch norm's own formula.
    return batch_stats(draws)


def _spread(
    population: Any, batch_sizes: Sequence[int], n_draws: int, seed: int, which: int
) -> np.ndarray:
    pop = _population(population)
    sizes = _batch_sizes(batch_sizes)
    n_draws = _checks.check_int(n_draws, "n_draws", 2)
    rng = np.random.default_rng(seed)
    return np.array(
        [_draw_batch_stats(pop, int(m), n_draws, rng)[which].std(ddof=1) for m in sizes]
    )


def batch_mean_spread(
    population: Any, batch_sizes: Sequence[int], n_draws: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    r"""Measured and predicted standard deviation of the batch mean :math:`\mu^{\{t\}}`.

    For each :math:`m` in ``batch_sizes``, draw ``n_draws`` batches of :math:`m` values from
    ``population`` independently (with replacement, so the draws are i.i.d. and the theory
    is exact), compute each batch's mean with :func:`course_lib.batchnorm.batch_stats`, and
    take the standard deviation over the batches.

    Args:
        population: 1D array, one feature's values (e.g. a pre-activation over the whole
            training set).
        batch_sizes: the :math:`m` to try, e.g. ``[2, 4, ..., 512]``.
        n_draws: batches per size; the measured std is within about
            :math:`\pm 1/\sqrt{2\,n\_draws}` (relative) of the truth.
        seed: for ``np.random.default_rng``.

    Returns:
        ``(measured, predicted)``, float64 arrays of ``len(batch_sizes)``; ``predicted`` is
        :func:`batch_mean_std_theory`, :math:`\sigma/\sqrt m`.

    Example:
        >>> pop = np.random.default_rng(0).exponential(size=10_000)
        >>> measured, predicted = batch_mean_spread(pop, [2, 32, 512], n_draws=2000)
        >>> bool(np.all(np.abs(measured / predicted - 1) < 0.15))
        True
    """
    return (
        _spread(population, batch_sizes, n_draws, seed, which=0),
        batch_mean_std_theory(population, batch_sizes),
    )


def batch_var_spread(
    population: Any, batch_sizes: Sequence[int], n_draws: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    r"""Measured and predicted standard deviation of the biased batch variance
    :math:`\sigma^{2\{t\}}`.

    As :func:`batch_mean_spread`, for the variance; ``predicted`` is
    :func:`batch_var_std_theory`. The measured spread of a variance converges more slowly
    than that of a mean, the more so for heavy-tailed populations (its own error depends on
    the eighth moment), so use more draws for those.

    Returns:
        ``(measured, predicted)``, float64 arrays of ``len(batch_sizes)``.

    Example:
        >>> pop = np.random.default_rng(0).standard_normal(10_000)
        >>> measured, predicted = batch_var_spread(pop, [2, 32, 512], n_draws=2000)
        >>> bool(np.all(np.abs(measured / predicted - 1) < 0.15))
        True
    """
    return (
        _spread(population, batch_sizes, n_draws, seed, which=1),
        batch_var_std_theory(population, batch_sizes),
    )
