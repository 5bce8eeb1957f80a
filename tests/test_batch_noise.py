"""Tests for course_lib.experiments.probes.batch_noise: one example across batch-mates, and noise vs batch size."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn as cnn
from course_lib.experiments.probes.batch_noise import (
    batch_mean_spread,
    batch_mean_std_theory,
    batch_var_spread,
    batch_var_std_theory,
    output_spread,
    outputs_across_batches,
)

from course_lib.experiments.claims import CLAIM_SEEDS

SEEDS = CLAIM_SEEDS
SIZES = [2, 4, 8, 16, 32, 64, 128, 256, 512]


def _modules(seed):
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(5, 6), cnn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    return {"torch": nn.BatchNorm1d(5), "course_lib": cnn.BatchNorm1d(5), "mlp": mlp}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["torch", "course_lib", "mlp"])
def test_train_mode_varies_eval_mode_identical(seed, kind):
    module = _modules(seed)[kind]
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(400, 5, generator=gen) * 2 + 1
    example = pool[0]
    before = {k: v.clone() for k, v in module.state_dict().items()}

    out_train = outputs_across_batches(module.train(), example, pool[1:], 16, 50, seed=seed)
    assert out_train.shape == (50, 3 if kind == "mlp" else 5)
    spread = out_train.std(dim=0)
    # Far above round-off (1e-7) for every output; seed 1001's smallest is 0.013.
    assert spread.min() > 0.005, f"train mode: the output should depend on the batch ({spread})"

    module.eval()
    out_eval = outputs_across_batches(module, example, pool[1:], 16, 50, seed=seed)
    assert torch.equal(out_eval, out_eval[:1].expand_as(out_eval)), "eval mode: identical"
    # ... and equal to the example on its own: in eval mode the batch does not matter.
    torch.testing.assert_close(out_eval[0], module(example[None])[0])

    # The probe ran on a copy: parameters and running statistics are untouched.
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_kept_row_is_the_example():
    bn = nn.BatchNorm1d(3)
    pool = torch.randn(50, 3)
    example = torch.tensor([100.0, -100.0, 0.0])  # far out: its normalized value is large
    out = outputs_across_batches(bn, example, pool, 8, 20, seed=0)
    assert (out[:, 0] > 2).all() and (out[:, 1] < -2).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_output_spread_falls_with_batch_size(seed):
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randn(600, 4, generator=gen)
    bn = nn.BatchNorm1d(4)
    spread = output_spread(bn, pool[0], pool[1:], [4, 16, 64, 256], 100, seed=seed)
    assert np.all(np.diff(spread) < 0), spread
    assert spread[0] > 5 * spread[-1], spread
    assert np.all(output_spread(bn.eval(), pool[0], pool[1:], [4, 64], 20, seed) == 0)


# ---- a batch of one -----------------------------------------------------------------------


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(3), cnn.BatchNorm1d(3)], ids=["torch", "course_lib"])
def test_batch_of_one_raises_in_training_works_in_eval(layer):
    x = torch.randn(1, 3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        layer.train()(x)
    out = layer.eval()(x)  # eval mode: running statistics, any batch size
    torch.testing.assert_close(out, (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps)
                               * layer.weight + layer.bias)
    pool = torch.randn(10, 3)
    with pytest.raises(ValueError, match="batch_size=1 in training mode"):
        outputs_across_batches(layer.train(), pool[0], pool, 1, 5)
    assert outputs_across_batches(layer.eval(), pool[0], pool, 1, 5).shape == (5, 3)


def test_outputs_across_batches_errors():
    bn, pool = nn.BatchNorm1d(3), torch.randn(10, 3)
    with pytest.raises(ValueError, match=r"pool.shape\[1:\] = \(3,\)"):
        outputs_across_batches(bn, pool[:1], pool, 4, 5)
    with pytest.raises(ValueError, match="too few"):
        outputs_across_batches(bn, pool[0], pool, 12, 5)
    with pytest.raises(TypeError, match="torch tensors"):
        outputs_across_batches(bn, pool[0].numpy(), pool.numpy(), 4, 5)
    with pytest.raises(ValueError, match="n_batches must be an int >= 1"):
        outputs_across_batches(bn, pool[0], pool, 4, 0)


# ---- spread of the batch statistics vs theory ----------------------------------------------


def _population(kind, seed):
    rng = np.random.default_rng(1000 + seed)
    return {
        "normal": lambda: rng.normal(3.0, 2.0, size=20_000),
        "exponential": lambda: rng.exponential(1.5, size=20_000),
        "uniform": lambda: rng.uniform(-1.0, 5.0, size=20_000),
    }[kind]()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["normal", "exponential", "uniform"])
def test_batch_mean_spread_matches_sigma_over_sqrt_m(seed, kind):
    pop = _population(kind, seed)
    measured, predicted = batch_mean_spread(pop, SIZES, n_draws=1000, seed=seed)
    np.testing.assert_allclose(predicted, pop.std() / np.sqrt(SIZES))
    ratio = measured / predicted
    assert np.all(np.abs(ratio - 1) < 0.15), f"measured/predicted = {np.round(ratio, 3)}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_batch_var_spread_matches_theory(seed, kind):
    pop = _population(kind, seed)
    measured, predicted = batch_var_spread(pop, SIZES, n_draws=1000, seed=seed)
    ratio = measured / predicted
    # The chapter's margin, 25%: at m = 2 a batch variance is a chi-square with one degree of
    # freedom, so heavy-tailed that 1,000 draws measure its spread only to about 6% (seed 1001:
    # 0.81, three standard errors); from m = 4 on the ratios stay within 0.93-1.07.
    assert np.all(np.abs(ratio - 1) < 0.25), f"measured/predicted = {np.round(ratio, 3)}"


def test_var_theory_normal_special_case():
    # Normal data: std of the biased variance = sigma^2 sqrt(2 (m - 1)) / m.
    pop = np.random.default_rng(0).normal(0.0, 1.5, size=2_000_000)
    m = np.array(SIZES)
    np.testing.assert_allclose(batch_var_std_theory(pop, SIZES), pop.var() * np.sqrt(2 * (m - 1)) / m,
                               rtol=0.01)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_var_theory_exact_by_enumeration(m):
    # Every one of the N^m equally likely batches of a small population, exactly.
    pop = np.array([0.0, 1.0, 1.0, 4.0, 7.5])
    batches = np.array(list(itertools.product(pop, repeat=m)))
    variances = batches.var(axis=1)
    means = batches.mean(axis=1)
    np.testing.assert_allclose(batch_var_std_theory(pop, [m])[0], variances.std(), atol=1e-12)
    np.testing.assert_allclose(batch_mean_std_theory(pop, [m])[0], means.std(), atol=1e-12)


def test_spread_errors():
    with pytest.raises(ValueError, match="1D array"):
        batch_mean_spread(np.zeros((10, 2)), [2])
    with pytest.raises(ValueError, match="ints >= 1"):
        batch_mean_spread(np.arange(10.0), [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        batch_var_spread(np.array([1.0, np.nan, 2.0]), [2])
    with pytest.raises(ValueError, match="n_draws must be an int >= 2"):
        batch_var_spread(np.arange(10.0), [2], n_draws=1)
