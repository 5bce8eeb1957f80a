"""Tests for course_lib/experiments/sweeps.py: the mechanics of the runs and sweeps.

Chapter 3's claims themselves are registry entries in the same module; tests/test_claims.py
runs them on the claim seeds.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.activations import sigmoid_regimes
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import hidden_pre_activations
from course_lib.experiments.sweeps import (
    INIT_SWEEP,
    LR_SWEEP,
    Sweep,
    SweepRow,
    Training,
    bn_parameter_change,
    compare_positions,
    digits_network,
    digits_run,
    sigmoid_saturation,
    span_decades,
    steps_table,
    sweep,
    trained_values,
)


def test_digits_run_is_deterministic_and_positions_share_the_data():
    short = Training(lr=0.5, steps=30, eval_every=15)
    a = digits_run("before", short, seed=3)
    b = digits_run("before", short, seed=3)
    assert a.loss == b.loss and a.test_acc == b.test_acc
    runs = compare_positions(("before", "after", None), Training(lr=0.5, steps=1, eval_every=1),
                             seed=3)
    # Step 1 is the first mini-batch, before any update: all three see the same labels, and
    # a fresh network's loss is close to log(10) whatever the position of BN.
    for h in runs.values():
        assert h.config["seed"] == 3 and h.config["batch_size"] == 60
        assert abs(h.loss[0] - math.log(10)) < 0.5


def test_training_settings_reach_the_run():
    h = digits_run(None, Training(lr=0.25, steps=4, eval_every=2, optimizer="momentum"), seed=1)
    assert h.eval_steps == [0, 2, 4] and len(h.loss) == 4
    stopped = digits_run("before", Training(lr=1.0, steps=200, eval_every=10, target=0.5), seed=1)
    assert stopped.eval_steps[-1] < 200 and stopped.test_acc[-1] >= 0.5


def test_digits_network_matches_the_lecture():
    model = digits_network("before", seed=0)
    names = [name for name, _ in model.named_children()]
    assert names[:3] == ["linear1", "bn1", "act1"] and names[-1] == "output"
    assert model.linear1.bias is None and isinstance(model.act1, torch.nn.Sigmoid)
    assert model.linear1.in_features == 64 and model.output.out_features == 10


def test_sweep_rows_and_readers():
    settings = Sweep("lr", (1.0, 0.5), Training(steps=40, eval_every=20, target=0.5),
                     positions=("before",))
    rows = sweep(settings, seed=0)
    assert [r.lr for r in rows] == [0.5, 1.0]  # sorted
    assert all(isinstance(r, SweepRow) and r.max_steps == 40 and r.target == 0.5 for r in rows)
    table = steps_table(rows)
    assert list(table) == ["before"] and set(table["before"]) == {0.5, 1.0}
    assert trained_values(rows, "before") == [r.lr for r in rows if r.trained]
    assert trained_values(rows, None) == []
    hopeless = sweep(Sweep("init_scale", (10.0,), Training(steps=20, eval_every=20, target=0.9),
                           positions=(None,)), seed=0)
    assert hopeless[0].steps_to_target is None and not hopeless[0].trained
    assert hopeless[0].init_scale == 10.0 and hopeless[0].lr == 1.0


def test_a_sweep_returns_a_fresh_list_each_time():
    settings = Sweep("lr", (0.5,), Training(steps=10, eval_every=10, target=0.9),
                     positions=(None,))
    first = sweep(settings, seed=0)
    first.clear()
    assert len(sweep(settings, seed=0)) == 1


def test_the_chapters_sweeps():
    assert LR_SWEEP.over == "lr" and min(LR_SWEEP.values) == 0.1 and max(LR_SWEEP.values) == 30
    assert INIT_SWEEP.over == "init_scale" and INIT_SWEEP.training.lr == 1.0
    assert LR_SWEEP.training.steps == INIT_SWEEP.training.steps == 1000


def test_bn_parameter_change():
    model = digits_network("before", seed=0)
    assert bn_parameter_change(0, model) == {"gamma_change": 0.0, "beta_change": 0.0}
    with torch.no_grad():
        model.bn2.weight[3] = 0.25
        model.bn3.bias[0] = -0.5
    assert bn_parameter_change(0, model) == {"gamma_change": 0.75, "beta_change": 0.5}
    assert bn_parameter_change(0, digits_network(None)) == {"gamma_change": 0.0, "beta_change": 0.0}


def test_sigmoid_saturation_counts_the_flat_tails():
    X = load_digits_split(seed=0).X_train[:100]
    record = sigmoid_saturation(X)
    huge = digits_network(None, seed=0, init_scale=10.0)
    z = hidden_pre_activations(huge, X)
    out = record(0, huge)
    assert set(out) == {"saturated1", "saturated2", "saturated3"}
    assert out["saturated3"] == pytest.approx(sigmoid_regimes(z[-1].double().numpy()).saturated)


@pytest.mark.parametrize("seed", [0, 7])
def test_what_goes_wrong_at_the_extremes_of_the_init_sweep(seed):
    """Without BN, tiny weights wash out the differences between examples and large weights
    saturate the sigmoids; at scale 1 neither happens (forward passes only: no training)."""
    X = load_digits_split(seed=seed).X_train
    spread, saturated = {}, {}
    for s in (0.01, 1.0, 10.0):
        z_layers = hidden_pre_activations(digits_network(None, seed=seed, init_scale=s), X)
        spread[s] = [float(torch.sigmoid(z).std(dim=0).mean()) for z in z_layers]
        saturated[s] = [sigmoid_regimes(z.numpy()).saturated for z in z_layers]
    assert spread[0.01][-1] < 1e-3, spread
    assert min(saturated[10.0]) > 0.9, saturated
    assert spread[1.0][-1] > 0.1 and max(saturated[1.0]) < 0.8, (spread, saturated)
    default = digits_network(None, seed=seed)
    stds = [float(m.weight.detach().std()) for m in default if isinstance(m, torch.nn.Linear)]
    assert all(0.03 < v < 0.1 for v in stds), stds


def test_span_decades():
    assert span_decades([0.1, 1.0, 10.0]) == pytest.approx(2.0)
    assert span_decades([30.0, 0.03]) == pytest.approx(3.0)
    assert span_decades([3.0]) == 0.0 and span_decades([]) == 0.0
    with pytest.raises(ValueError, match="positive and finite"):
        span_decades([0.0, 1.0])


_T = Training(target=0.9)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: Sweep("lr", (), _T), ValueError, "values is empty"),
        (lambda: Sweep("lr", (0.1, -1.0), _T), ValueError, "values must be positive and finite"),
        (lambda: Sweep("lr", (1.0, 1.0), _T), ValueError, "repeated"),
        (lambda: Sweep("lr", 0.1, _T), TypeError, "tuple of positive numbers"),
        (lambda: Sweep("lr", ("0.1",), _T), TypeError, "must be numbers"),
        (lambda: Sweep("lr", (0.1,), _T, positions="before"), TypeError, r"write \('before',\)"),
        (lambda: Sweep("lr", (0.1,), _T, positions=("inside",)), ValueError, "bn must be 'before'"),
        (lambda: Sweep("seed", (1.0,), _T), ValueError, "over must be 'lr' or 'init_scale'"),
        (lambda: Sweep("lr", (1.0,), Training()), ValueError, "training.target must be set"),
        (lambda: Sweep("init_scale", (float("nan"),), _T), ValueError, "values must be positive"),
        (lambda: Training(lr=0.0), ValueError, "lr must be a positive number"),
        (lambda: Training(steps=0), ValueError, "steps must be an int >= 1"),
        (lambda: Training(optimizer="lbfgs"), ValueError, "optimizer must be one of"),
        (lambda: Training(bn_impl="keras"), ValueError, "bn_impl must be one of"),
        (lambda: sweep({"over": "lr"}), TypeError, "settings must be a Sweep"),
        (lambda: compare_positions((), _T), ValueError, "at least one position"),
        (lambda: compare_positions(("before", "before"), _T), ValueError, "repeat"),
        (lambda: digits_run("middle", _T), ValueError, "bn must be 'before'"),
        (lambda: digits_run("before", {"lr": 1.0}), TypeError, "training must be a Training"),
        (lambda: trained_values([], None, key="steps"), ValueError, "key must be 'lr'"),
        (lambda: steps_table([], key="seed"), ValueError, "key must be 'lr'"),
    ],
)
def test_bad_arguments_have_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
