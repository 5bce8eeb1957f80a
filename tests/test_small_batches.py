"""Tests for course_lib/experiments/small_batches.py: the mechanics of chapter 8's small-batch
experiments. Their claims (small-batch-norms, finetune-frozen-statistics) run in
tests/test_claims.py, on the claim seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib import norm_layers as norms
from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.small_batches import (
    SweepSettings, batch_size_sweep, class_subset, finetune, renorm_outputs,
)


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


def test_sweep_returns_one_accuracy_per_kind_and_batch_size(data):
    small = class_subset(data, [0, 1])
    settings = SweepSettings(kinds=("layer", "group"), batch_sizes=(32, 64),
                             renorm_batch_sizes=(32,), epochs=0.5)
    out = batch_size_sweep(small, settings, seed=0)
    assert set(out) == {"layer", "group", "renorm"}
    assert out["layer"].shape == (2,)
    assert out["renorm"].shape == (1,)
    assert np.all((out["group"] >= 0) & (out["group"] <= 1))


def test_sweep_is_deterministic(data):
    small = class_subset(data, [3, 8])
    settings = SweepSettings(kinds=("batch",), batch_sizes=(32,), renorm_batch_sizes=(),
                             epochs=0.5)
    assert batch_size_sweep(small, settings, seed=1)["batch"] == batch_size_sweep(
        small, settings, seed=1)["batch"]


def test_class_subset(data):
    sub = class_subset(data, [3, 7])
    assert set(sub.y_train.tolist()) == {3, 7}
    assert set(sub.y_test.tolist()) == {3, 7}


def test_finetune_with_frozen_statistics_leaves_them_alone(data):
    net = make_mlp(64, [20], 10, activation="relu", bn="before", seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    gamma = net.bn1.weight.detach().clone()
    tiny = Split(data.X_train[:20], data.y_train[:20], data.X_test, data.y_test)
    finetune(net, tiny, steps=5, lr=0.01, batch_size=2, freeze_bn_stats=True)
    after = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(gamma, net.bn1.weight)          # gamma still learns
    finetune(net, tiny, steps=5, lr=0.01, batch_size=2, freeze_bn_stats=False)
    assert not torch.equal(before["bn1.running_mean"], net.state_dict()["bn1.running_mean"])


def test_renorm_outputs_span_batch_norm_to_the_running_statistics():
    # Plain batch norm of two values a, b: +-|a - b| / sqrt((a - b)^2 + 4 eps), +-1 up to eps.
    plain = renorm_outputs(0.5, 2, r_max=1.0, d_max=0.0, draws=500, seed=4)
    mate = torch.randn(2, 500, generator=torch.Generator().manual_seed(4), dtype=torch.float64)[1]
    gap = 0.5 - mate
    assert torch.allclose(plain, gap / torch.sqrt(gap ** 2 + 4e-5), atol=1e-12)
    wide = renorm_outputs(0.5, 2, r_max=1e6, d_max=1e6, draws=500)
    assert torch.allclose(wide, torch.full((500,), 0.5, dtype=torch.float64), atol=1e-9)


def test_renorm_outputs_equal_the_layer_in_training_mode():
    # renorm_outputs is batch_renorm with the population's running statistics, batch by batch.
    out = renorm_outputs(0.5, 4, r_max=2.0, d_max=1.0, draws=3, seed=2)
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z[0] = 0.5
    for k in range(3):
        layer = norms.BatchRenorm1d(1, affine=False, r_max=2.0, d_max=1.0, dtype=torch.float64)
        assert torch.allclose(layer(z[:, k:k + 1])[0, 0], out[k], atol=1e-12)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        SweepSettings().epochs = 2.0  # type: ignore[misc]
    assert replace(SweepSettings(), batch_sizes=(2, 4)).batch_sizes == (2, 4)
