"""Tests for course_lib.experiments.regularization, and chapter 5's claims on seeds the chapter does not show.

The notebook runs seeds 0-2; every claim it asserts is checked here on five other seeds with
the same settings (each run takes about half a second on one core).
"""

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pytest
import torch

from course_lib.experiments.probes.batch_noise import (
    batch_mean_spread,
    batch_var_spread,
    output_spread,
    outputs_across_batches,
)
from course_lib.nn import BatchNorm1d
from course_lib.experiments.regularization import (
    BATCH_OF_TWO,
    BATCH_OF_TWO_SETTINGS,
    CONFIGS,
    SETTINGS,
    GapConfig,
    GapResult,
    gap_data,
    gap_model,
    gap_table,
    train_test_gap,
)

from claim_seeds import CLAIM_SEEDS  # noqa: E402

SEEDS = CLAIM_SEEDS
SIZES = [2, 4, 8, 16, 32, 64, 128, 256, 512]


@lru_cache(maxsize=None)
def run(config: str, seed: int) -> GapResult:
    settings = BATCH_OF_TWO_SETTINGS if config in BATCH_OF_TWO else SETTINGS
    return train_test_gap(config, seed, settings)


@lru_cache(maxsize=None)
def least_sure_digit(seed: int):
    """The chapter's probe: the trained BN network, its least-sure training digit and the pool."""
    model = run("BN", seed).model
    data = gap_data(seed)
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(data.X_train), dim=1)
    p_right = probabilities[torch.arange(data.n_train), data.y_train]
    model.train()
    i = int(p_right.argmin())
    pool = torch.cat([data.X_train[:i], data.X_train[i + 1 :]])
    return model, data, i, pool


# ---------------------------------------------------------------------------------------------
# The API


def test_configs_are_the_chapters_rows():
    assert list(CONFIGS) == [
        "no BN", "BN", "dropout", "BN + dropout", "BN, batch 512", "no BN, batch 512",
    ]
    assert CONFIGS["BN, batch 512"].batch_size == SETTINGS.n_train == 512  # the whole training set
    assert all(c.batch_size == 2 for c in BATCH_OF_TWO.values())


def test_data_is_small_training_set_large_test_set():
    data = gap_data(0)
    assert (data.n_train, data.n_test, data.n_features, data.n_classes) == (512, 1258, 64, 10)
    np.testing.assert_allclose(data.X_train.mean(dim=0).numpy(), 0, atol=1e-5)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_model_has_the_rows_layers(config):
    cfg = CONFIGS[config]
    model = gap_model(config, seed=0)
    names = [name for name, _ in model.named_children()]
    assert ("bn1" in names) == cfg.bn
    assert ("dropout1" in names) == (cfg.dropout > 0)
    if cfg.dropout:
        assert model.dropout1.p == cfg.dropout
    assert model.linear1.in_features == 64 and model.output.out_features == 10
    assert [model.linear1.out_features, model.linear2.out_features] == list(SETTINGS.widths)


def test_result_is_deterministic_and_gap_is_train_minus_test():
    a = train_test_gap("BN", 0)
    b = train_test_gap("BN", 0)
    assert (a.train_acc, a.test_acc) == (b.train_acc, b.test_acc)
    assert a.gap == a.train_acc - a.test_acc
    assert a.history.final_test_acc == a.test_acc
    assert a.config == "BN" and a.seed == 0
    assert a.model.training, "the trained model is handed back in training mode"


def test_custom_config_and_settings():
    settings = replace(SETTINGS, steps=20, eval_every=10, widths=(16,))
    result = train_test_gap(GapConfig(bn=True, dropout=0.1, batch_size=32), 1, settings)
    assert result.config == "custom"
    assert result.history.eval_steps == [0, 10, 20]
    assert result.model.linear1.out_features == 16


def test_gap_table_shapes():
    settings = replace(SETTINGS, steps=10, eval_every=10)
    table = gap_table(["no BN", "BN"], seeds=[0, 1], settings=settings)
    assert list(table) == ["no BN", "BN"]
    assert all(v.shape == (2,) and v.dtype == np.float64 for v in table.values())
    with pytest.raises(TypeError, match="list of config names"):
        gap_table("BN", seeds=[0])


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"unknown config 'batchnorm'.*'no BN'"):
        train_test_gap("batchnorm", 0)
    with pytest.raises(TypeError, match="GapConfig"):
        train_test_gap(3, 0)
    with pytest.raises(TypeError, match="GapSettings"):
        train_test_gap("BN", 0, {"steps": 10})
    with pytest.raises(ValueError, match="larger than the training set"):
        train_test_gap(GapConfig(batch_size=1024), 0)


def test_divergence_is_an_error_not_a_silent_result():
    with pytest.raises(RuntimeError, match="diverged"):
        train_test_gap("no BN", 0, replace(SETTINGS, steps=30, lr=1e6, optimizer="sgd"))


# ---------------------------------------------------------------------------------------------
# Claim 1: one example, different batch-mates, different outputs in train mode; not in eval mode


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_train_mode_output_depends_on_batch_mates(seed):
    model, data, i, pool = least_sure_digit(seed)
    example, label = data.X_train[i], int(data.y_train[i])
    out = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        z = outputs_across_batches(model[:2], example, pool, 16, 300, seed=seed)
        logits = outputs_across_batches(model, example, pool, 16, 300, seed=seed)
        out[mode] = z, torch.softmax(logits, dim=1)[:, label], logits.argmax(dim=1)
    model.train()
    z_train, p_train, pred_train = out["train"]
    z_eval, p_eval, pred_eval = out["eval"]
    assert z_train.std(dim=0).min() > 0.1
    assert torch.equal(z_eval, z_eval[:1].expand_as(z_eval))
    assert torch.equal(p_eval, p_eval[:1].expand_as(p_eval))
    assert p_train.max() - p_train.min() > 0.5, (float(p_train.min()), float(p_train.max()))
    assert int((pred_train != label).sum()) > 0
    assert int((pred_eval != label).sum()) == 0


# ---------------------------------------------------------------------------------------------
# Claim 2: the noise of the batch statistics is sigma / sqrt(m), measured from m = 2 to 512


@pytest.mark.parametrize("seed", SEEDS)
def test_batch_noise_follows_sigma_over_sqrt_m(seed):
    model, data, i, pool = least_sure_digit(seed)
    with torch.no_grad():
        z_pop = model.linear1(data.X_train)[:, 0].double().numpy()
    measured, predicted = batch_mean_spread(z_pop, SIZES, n_draws=1000, seed=seed)
    var_measured, var_predicted = batch_var_spread(z_pop, SIZES, n_draws=1000, seed=seed)
    assert np.all(np.abs(measured / predicted - 1) < 0.1), measured / predicted
    assert np.all(np.abs(var_measured / var_predicted - 1) < 0.25), var_measured / var_predicted
    slope = np.polyfit(np.log(SIZES), np.log(measured), 1)[0]
    assert abs(slope + 0.5) < 0.03, slope


@pytest.mark.parametrize("seed", SEEDS)
def test_output_noise_falls_with_batch_size_and_vanishes_for_the_whole_set(seed):
    model, data, i, pool = least_sure_digit(seed)
    spread = output_spread(model[:2], data.X_train[i], pool, SIZES, n_batches=200, seed=seed)
    # Between m = 16 and 64 it falls like 1/sqrt(m); for the smallest batches an unusual example
    # can fall more slowly (|z_norm| <= sqrt(m - 1) caps it), so they are left out of the fit.
    middle = (np.array(SIZES) >= 16) & (np.array(SIZES) <= 64)
    slope = np.polyfit(np.log(np.array(SIZES)[middle]), np.log(spread[middle]), 1)[0]
    assert abs(slope + 0.5) < 0.1, slope
    assert np.all(np.diff(spread) < 0), spread
    assert spread[SIZES.index(64)] > 2 * spread[SIZES.index(256)]
    assert spread[-1] < 1e-5, "a batch of 512 is the whole training set: no noise"


# ---------------------------------------------------------------------------------------------
# Claim 3: the train/test gap


@pytest.fixture(scope="module")
def gaps():
    return {row: np.array([run(row, seed).gap for seed in SEEDS]) for row in CONFIGS}


@pytest.mark.slow
def test_every_network_fits_its_training_set(gaps):
    assert all(run(row, seed).train_acc == 1.0 for row in CONFIGS for seed in SEEDS)


@pytest.mark.slow
def test_bn_narrows_the_gap_for_every_seed(gaps):
    assert np.all(gaps["BN"] < gaps["no BN"]), gaps


@pytest.mark.slow
def test_bn_without_batch_noise_still_narrows_the_gap(gaps):
    # On average, and on most seeds, not on every one (seed 1010: equal gaps).
    assert gaps["BN, batch 512"].mean() < gaps["no BN"].mean(), gaps
    assert np.mean(gaps["BN, batch 512"] < gaps["no BN"]) >= 0.7, gaps


@pytest.mark.slow
def test_bn_plus_dropout_narrows_the_gap(gaps):
    assert np.all(gaps["BN + dropout"] < gaps["no BN"]), gaps


@pytest.mark.slow
def test_without_bn_the_batch_size_leaves_the_gap_alone(gaps):
    assert np.all(np.abs(gaps["no BN, batch 512"] - gaps["no BN"]) <= 0.005), gaps


@pytest.mark.slow
def test_the_effects_are_slight(gaps):
    # The chapter's reading: BN narrows the gap by at most a couple of points, and its noise's
    # share (batch 64 vs the whole set) is a few tenths of a point, in either direction.
    assert np.all(gaps["no BN"] - gaps["BN"] < 0.02), gaps
    assert np.all(np.abs(gaps["BN, batch 512"] - gaps["BN"]) < 0.01), gaps


@pytest.mark.slow
def test_dropout_does_not_narrow_the_gap_for_every_seed(gaps):
    # Kept on purpose: the chapter says dropout's effect here is not consistent. If this starts
    # failing, dropout narrows the gap on every seed and the chapter's text must change.
    assert np.any(gaps["dropout"] >= gaps["no BN"]), gaps


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_bn_fits_the_training_set_sooner(seed):
    bn = run("BN", seed).history.steps_to_reach(0.99, on="train")
    plain = run("no BN", seed).history.steps_to_reach(0.99, on="train")
    assert bn is not None and plain is not None and bn < plain, (bn, plain)


# ---------------------------------------------------------------------------------------------
# Claim 4: batches of one and two


def test_a_batch_of_one_fails_in_training_and_works_in_eval_mode():
    model = gap_model("BN", seed=0)
    x = gap_data(0).X_train[:1]
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(x)
    model.eval()
    assert model(x).shape == (1, 10)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(100)(torch.randn(1, 100))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_batch_of_two_outputs_plus_minus_one(seed):
    model, data, i, pool = least_sure_digit(seed)
    with torch.no_grad():
        z = model.linear1(data.X_train)[:, 0]
    z_example, z_mates = z[i], torch.cat([z[:i], z[i + 1 :]])
    bn = BatchNorm1d(1)
    with torch.no_grad():
        out = torch.stack([bn(torch.stack([z_example, mate])[:, None])[0, 0] for mate in z_mates])
    d = z_example - z_mates
    assert torch.equal(torch.sign(out), torch.sign(d))
    assert out.abs().max() <= 1.0
    assert out[d.abs() > 0.05].abs().min() > 0.99


@pytest.mark.parametrize("seed", SEEDS)
def test_slider_numbers(seed):
    model, data, i, pool = least_sure_digit(seed)
    example = data.X_train[i]
    z = {
        m: outputs_across_batches(model[:2], example, pool, m, 300, seed=seed)[:, 0].numpy()
        for m in (2, 16, 64, 512)
    }
    model.eval()
    z_eval = float(outputs_across_batches(model[:2], example, pool, 16, 1, seed=seed)[0, 0])
    model.train()
    gamma, beta = model.bn1.weight.detach()[0].item(), model.bn1.bias.detach()[0].item()
    spikes = np.sort([beta - gamma, beta + gamma])
    std = {m: v.std(ddof=1) for m, v in z.items()}
    assert 1.8 < std[16] / std[64] < 2.5, std
    assert (np.abs(z[2][:, None] - spikes).min(axis=1) < 0.02).mean() > 0.9
    assert spikes[0] - 1e-4 <= z[2].min() and z[2].max() <= spikes[1] + 1e-4
    assert std[512] < 1e-5 and abs(z[512][0] - z_eval) < 0.2


@pytest.mark.parametrize("seed", SEEDS)
def test_a_batch_of_three_never_exceeds_sqrt_two(seed):
    model, data, i, pool = least_sure_digit(seed)
    with torch.no_grad():
        z = model.linear1(data.X_train)[:, 0]
    mates = torch.cat([z[:i], z[i + 1 :]])[:, None]
    three = outputs_across_batches(BatchNorm1d(1), z[i].reshape(1), mates, 3, 2000, seed=seed)[:, 0]
    assert three.abs().max() <= math.sqrt(2) + 1e-6
    assert three.abs().max() > 1.3


@pytest.mark.parametrize("seed", SEEDS)
def test_training_with_batches_of_two_hurts_with_bn(seed):
    bn, plain = run("BN, batch 2", seed), run("no BN, batch 2", seed)
    assert bn.test_acc < plain.test_acc - 0.1, (bn.test_acc, plain.test_acc)
    assert bn.train_acc < 0.9, bn.train_acc
