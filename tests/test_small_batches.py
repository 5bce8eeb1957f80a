"""Chapter 8's small-batch claims, on seeds the notebook does not use (it uses seed 0).

The measured ranges in the comments are seeds 0-5; the tests run claim_seeds.CLAIM_SEEDS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.small_batches import (
    NORMS, batch_size_sweep, class_subset, finetune, norm_layer,
)

from claim_seeds import CLAIM_SEEDS  # noqa: E402

SEEDS = CLAIM_SEEDS


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_batch_norm_degrades_at_batch_2_group_norm_does_not(data, seed):
    sweep = batch_size_sweep(data, ["batch norm", "group norm", "batch renorm"], [2, 32],
                             seed=seed)
    bn, gn, brn = sweep["batch norm"], sweep["group norm"], sweep["batch renorm"]
    # The notebook (seed 0): bn 0.77 vs 0.96 at batch 2; seeds 0-2 gave 0.67-0.77 vs >= 0.95.
    assert bn[0] < gn[0] - 0.1, sweep
    assert bn[0] < bn[1] - 0.1, sweep
    assert abs(gn[0] - gn[1]) < 0.04, sweep
    # Batch renorm recovers part of the loss (seeds 0-2: 0.87-0.90), not all of it.
    assert bn[0] + 0.05 < brn[0] < gn[0], sweep


def test_sweep_shapes_and_same_start(data):
    small = class_subset(data, [0, 1])
    out = batch_size_sweep(small, ["layer norm"], [32, 64], seed=0, epochs=0.5)
    assert set(out) == {"layer norm"} and out["layer norm"].shape == (2,)
    assert np.all((out["layer norm"] >= 0) & (out["layer norm"] <= 1))


def test_norm_layers(data):
    for name in NORMS:
        layer = norm_layer(name, steps=100)(20)
        assert layer(torch.randn(4, 20)).shape == (4, 20)
    with pytest.raises(ValueError, match="unknown normalization"):
        norm_layer("weight norm")


def test_class_subset(data):
    sub = class_subset(data, [3, 7])
    assert set(sub.y_train.tolist()) == {3, 7} and set(sub.y_test.tolist()) == {3, 7}


def test_finetune_with_frozen_statistics_leaves_them_alone(data):
    from course_lib.experiments.lab.models import make_mlp
    from course_lib.experiments.lab.data import Split
    net = make_mlp(64, [20], 10, activation="relu", bn="before", seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    tiny = Split(data.X_train[:20], data.y_train[:20], data.X_test, data.y_test)
    finetune(net, tiny, steps=5, lr=0.01, batch_size=2, freeze_bn_stats=True)
    after = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    finetune(net, tiny, steps=5, lr=0.01, batch_size=2, freeze_bn_stats=False)
    assert not torch.equal(before["bn1.running_mean"], net.state_dict()["bn1.running_mean"])
