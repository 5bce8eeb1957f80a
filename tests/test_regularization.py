"""Tests for course_lib.experiments.regularization: the gap experiment's settings, networks and
probes.

Chapter 5's claims (the noise probes, the gap table, batches of two) are registry entries in
the module, run on the claim seeds by tests/test_claims.py; these tests check the mechanics.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib.experiments.probes.batch_noise import outputs_across_batches
from course_lib.nn import BatchNorm1d
from course_lib.experiments.regularization import (
    BATCH_OF_TWO,
    CONFIGS,
    SETTINGS,
    GapConfig,
    gap_data,
    gap_model,
    probe_network,
    train_test_gap,
)


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
# The probes and the limits


def test_a_batch_of_one_fails_in_training_and_works_in_eval_mode():
    model = gap_model("BN", seed=0)
    x = gap_data(0).X_train[:1]
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model(x)
    model.eval()
    assert model(x).shape == (1, 10)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(100)(torch.randn(1, 100))


def test_probe_network_picks_the_least_sure_training_digit():
    probe = probe_network(0)
    with torch.no_grad():
        p = torch.softmax(probe.model.eval()(probe.data.X_train), dim=1)
    right = p[torch.arange(probe.data.n_train), probe.data.y_train]
    assert probe.index == int(right.argmin())
    assert torch.equal(probe.example, probe.data.X_train[probe.index])
    assert probe.pool.shape == (probe.data.n_train - 1, 64)
    assert probe_network(0).model is not probe.model, "each caller gets its own copy"


def test_a_batch_of_two_outputs_plus_minus_one():
    z = torch.randn(200, generator=torch.Generator().manual_seed(0))
    bn = BatchNorm1d(1)
    with torch.no_grad():
        out = torch.stack([bn(torch.stack([z[0], mate])[:, None])[0, 0] for mate in z[1:]])
    d = z[0] - z[1:]
    assert torch.equal(torch.sign(out), torch.sign(d))
    assert out.abs().max() <= 1.0
    # |d| > 0.05: |z_norm| = 1 / sqrt(1 + 4 eps / d^2) > 0.99
    assert out[d.abs() > 0.05].abs().min() > 0.99


def test_a_batch_of_three_never_exceeds_sqrt_two():
    z = torch.randn(500, 1, generator=torch.Generator().manual_seed(1))
    three = outputs_across_batches(BatchNorm1d(1), z[0], z[1:], 3, 2000, seed=1)[:, 0]
    assert three.abs().max() <= math.sqrt(2) + 1e-6
    assert three.abs().max() > 1.3
