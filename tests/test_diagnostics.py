"""Tests for course_lib/experiments/probes/diagnostics.py: the statistics are what their
formulas say, measuring leaves the model untouched, and the update-ratio recorder works both
as an evaluation recorder and as train()'s after_step hook. Chapter 7's diagnosis of deep
plain networks is a claim of the registry (deep.py), run by tests/test_claims.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.probes.diagnostics import (
    activation_modules, layer_statistics, saturated_fraction, update_ratio_recorder,
    update_to_data_ratio, weight_layers,
)
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import train


def test_update_to_data_ratio_formula():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 4)) + 1.0
    step = 0.01 * rng.standard_normal((5, 4))
    expected = np.sqrt(np.mean((step - step.mean()) ** 2)) / np.sqrt(np.mean((W - W.mean()) ** 2))
    assert math.isclose(update_to_data_ratio(W, W + step), expected, rel_tol=1e-12)
    assert math.isclose(update_to_data_ratio(W, W - step), expected, rel_tol=1e-12)
    Wt = torch.from_numpy(W)
    assert math.isclose(update_to_data_ratio(Wt, Wt + torch.from_numpy(step)), expected,
                        rel_tol=1e-12)


def test_saturated_fraction():
    a = torch.tensor([-0.99, -0.5, 0.0, 0.98, 0.96])
    assert saturated_fraction(a, "tanh") == pytest.approx(0.4)
    assert saturated_fraction(torch.tensor([0.01, 0.5, 0.97, 0.9]), "sigmoid") == 0.5
    assert saturated_fraction(torch.tensor([0.0, 0.0, 1.0, 2.0]), "relu") == 0.5
    with pytest.raises(ValueError, match="activation"):
        saturated_fraction(a, "gelu")


def test_layer_statistics_shapes_and_purity():
    data = load_digits_split(seed=1)
    X, y = data.X_train[:100], data.y_train[:100]
    model = make_mlp(64, [20, 30], 10, activation="tanh", bn="before", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    stats = layer_statistics(model, X, y)
    assert stats.layers == ["act1", "act2"]
    assert [tuple(a.shape) for a in stats.activations] == [(100, 20), (100, 30)]
    assert [tuple(g.shape) for g in stats.gradients] == [(100, 20), (100, 30)]
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # The gradients are dJ/da: check one against autograd by hand.
    model.train()
    out = []

    def keep(module, args, o):
        o.retain_grad()
        out.append(o)

    h = model.act2.register_forward_hook(keep)
    nn.functional.cross_entropy(model(X), y).backward()
    h.remove()
    assert torch.allclose(out[0].grad, stats.gradients[1])
    with pytest.raises(ValueError, match="mode"):
        layer_statistics(model, X, y, mode="test")
    with pytest.raises(ValueError, match="act1"):
        activation_modules(nn.Sequential(nn.Linear(2, 2)))


def test_update_ratio_recorder_matches_the_steps():
    data = load_digits_split(seed=2)
    model = make_mlp(64, [16, 16], 10, seed=2)
    snapshots = []
    record = update_ratio_recorder()

    def snap(step, m):
        snapshots.append({n: l.weight.detach().double().clone() for n, l in weight_layers(m)})
        return {}

    history = train(model, data, steps=5, lr=0.5, eval_every=1, record=[record, snap])
    assert set(history.records) == {"ud:linear1", "ud:linear2", "ud:output"}
    assert all(math.isnan(v[0]) for v in history.records.values())
    for t in range(1, 6):
        for name in ("linear1", "output"):
            expected = update_to_data_ratio(snapshots[t - 1][name], snapshots[t][name])
            assert history.records[f"ud:{name}"][t] == pytest.approx(expected, rel=1e-12)


def test_update_ratio_recorder_as_after_step_hook_records_every_step():
    data = load_digits_split(seed=2)
    model = make_mlp(64, [16, 16], 10, seed=2)
    history = train(model, data, steps=5, lr=0.5, eval_every=5, after_step=update_ratio_recorder())
    assert set(history.step_records) == {"ud:linear1", "ud:linear2", "ud:output"}
    assert all(len(v) == 6 and math.isnan(v[0]) for v in history.step_records.values())
    assert all(v[t] > 0 for v in history.step_records.values() for t in range(1, 6))
