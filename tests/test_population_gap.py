"""Tests for course_lib.experiments.probes.population_gap: running vs population statistics."""

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn as cnn
from course_lib.calibration import recalibrate_bn
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.probes.population_gap import gap_recorder, population_gap
from course_lib.experiments.lab.training import train

from course_lib.experiments.claims import CLAIM_SEEDS

SEEDS = CLAIM_SEEDS


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, cnn.BatchNorm1d], ids=["torch", "course_lib"])
def test_gap_of_one_layer_by_hand(seed, bn_cls):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(400, 3, generator=gen) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([3.0, -1.0, 0.0])
    bn = bn_cls(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(3, generator=gen))
    X64 = X.double()
    z = (bn.running_mean.double() - X64.mean(dim=0)) / X64.var(dim=0).sqrt()  # unbiased var
    expected = float(z.pow(2).mean().sqrt())
    assert population_gap(bn, X, batch_size=100) == pytest.approx(expected, rel=1e-6)
    assert population_gap(recalibrate_bn(bn, X), X) < 1e-6


def test_gap_over_several_layers_and_a_constant_unit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2),
                          nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight[4].zero_()  # unit 4 of the first layer is constant: skipped
        model[0].bias[4] = 1.0
    X = torch.randn(300, 4)
    gap = population_gap(model, X)
    assert np.isfinite(gap) and gap > 0.1  # fresh buffers (0, 1) vs the real statistics
    assert population_gap(recalibrate_bn(model, X), X) < 1e-6


def test_recorder_in_training():
    data = load_digits_split(seed=0, n_train=300)
    model = make_mlp(64, [20, 20], 10, activation="relu", bn="before", bn_impl="torch", seed=0)
    history = train(model, data, steps=40, lr=0.2, batch_size=30, eval_every=20,
                    record=gap_recorder(data.X_train, layer="bn2", unit=3))
    assert sorted(history.records) == ["gap", "population_mean", "running_mean"]
    assert len(history.records["gap"]) == len(history.eval_steps) == 3
    assert history.records["running_mean"][0] == 0.0  # PyTorch's start
    assert history.records["running_mean"][-1] == pytest.approx(float(model.bn2.running_mean[3]))
    assert history.records["gap"][-1] == pytest.approx(population_gap(model, data.X_train))


def test_errors():
    X = torch.randn(50, 4)
    model = make_mlp(4, [6], 2, bn="before", seed=0)
    with pytest.raises(ValueError, match="no batch norm layer named 'bn9'"):
        gap_recorder(X, "bn9")(0, model)
    with pytest.raises(ValueError, match="out of range"):
        gap_recorder(X, "bn1", unit=6)(0, model)
    with pytest.raises(ValueError, match="no batch norm layer"):
        population_gap(nn.Linear(4, 2), X)
