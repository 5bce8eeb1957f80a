"""Tests for course_lib/experiments/sweeps.py, and chapter 3's claims checked for seeds the notebook does
not use (the notebook uses seed 0; these use claim_seeds.CLAIM_SEEDS).

The settings are the notebook's: the 64-100-100-100-10 sigmoid network on the digits,
mini-batches of 60, plain SGD, "trains well" = 90% test accuracy within 1,000 steps.
Measured over seeds 0-9 with torch's BatchNorm1d (eval every 10 steps unless said otherwise):

- lr 2.0: BN reaches 90% in 35-55 steps, no BN in 460-520 (ratio 9-14; eval every 5).
- learning rates 0.1 ... 30: BN reaches 90% at every rate (30: 170-560 steps); no BN only at
  1 and 3 (630-820 and 380-530 steps), at 10 on one seed in ten; never at 0.1, 0.3 (needs
  1,080-1,500 steps) or 30.
- initial weight scales 0.01 ... 10 at lr 1.0: BN reaches 90% at every scale (10: 70-360
  steps); no BN at 0.1, 0.3 and 1 only (0.03 needs 1,270 or more).
- before vs after the activation: both reach 90% at lr 0.5 (after 20-40 steps, before 30-60)
  and lr 2.0 (before 40-80, after 40-90; either can be faster); at lr 8 BN-after diverges on
  every seed while BN-before reaches 90% in 90-160 steps (seeds 1001-1009 included).
- without BN, lr 10 reaches 90% on some seeds (1002, 1008 of 1001-1009), lr 3 not on all.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.activations import sigmoid_regimes
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import hidden_pre_activations
from course_lib.experiments.sweeps import (
    SweepRow,
    bn_parameter_change,
    compare_positions,
    digits_network,
    digits_run,
    init_scale_sweep,
    lr_sweep,
    sigmoid_saturation,
    span_decades,
    steps_table,
    trained_values,
)
from course_lib.experiments.lab.training import train

from claim_seeds import CLAIM_SEEDS  # noqa: E402

SEEDS = CLAIM_SEEDS
TARGET, BUDGET = 0.9, 1000
LR_GRID = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
INIT_SCALES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
# The notebook's experiments 1 and 3-5 use torch's BatchNorm1d (same transform as course_lib's,
# faster); the bias, optimizer and exercise claims use course_lib's.
BN_IMPL = "torch"


# ----------------------------------------------------------------- the chapter's claims


@pytest.mark.parametrize("seed", SEEDS)
def test_bn_reaches_90_percent_at_least_4_times_faster(seed):
    """Experiment 1: same learning rate (2.0), same mini-batches; steps to 90% test accuracy."""
    runs = compare_positions(("before", None), lr=2.0, steps=1500, seed=seed, eval_every=5,
                             target=TARGET, bn_impl=BN_IMPL)
    steps = {bn: h.steps_to_reach(TARGET) for bn, h in runs.items()}
    assert None not in steps.values(), steps
    assert steps[None] >= 4 * steps["before"], steps


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_bn_trains_over_a_far_wider_range_of_learning_rates(seed):
    """Experiment 3: BN trains at every rate from 0.1 to 30 (2.5 decades); without BN nothing
    below 1 or above 10 trains, so its range is a strict subset, at least a decade narrower.

    The notebook runs the whole row without BN; its claim follows from the three rates
    checked here (whatever happens at 1, 3 and 10), which keeps this test cheap.
    """
    rows = lr_sweep(LR_GRID, bn=["before"], seed=seed, target=TARGET, max_steps=BUDGET,
                    bn_impl=BN_IMPL)
    with_bn = trained_values(rows, "before")
    assert with_bn == LR_GRID, steps_table(rows)
    outside = [0.1, 0.3, 30.0]
    rows_none = lr_sweep(outside, bn=[None], seed=seed, target=TARGET, max_steps=BUDGET)
    assert trained_values(rows_none, None) == [], steps_table(rows_none)
    # The exercise: at 30 the plain network does not blow up, it stays at chance level...
    at_30 = rows_none[-1]
    assert at_30.lr == 30.0 and not at_30.diverged and at_30.best_test_acc < 0.2, at_30
    # ... and with BN the largest rate is not the fastest.
    table = steps_table(rows)["before"]
    assert table[30.0] > table[1.0], table
    # So without BN at most {1, 3, 10} train: a strict subset spanning at most one decade.
    possible = sorted(set(LR_GRID) - set(outside))
    assert set(possible) < set(with_bn)
    assert span_decades(with_bn) >= span_decades(possible) + 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_bn_is_far_less_sensitive_to_the_initial_weight_scale(seed):
    """Experiment 4 (lr 1.0): BN reaches 90% at every scale from 0.01 to 10; without BN the
    extremes do not train. (The notebook shows the whole row without BN; only its extremes
    are claimed, so only they are run here.)"""
    with_bn = init_scale_sweep(INIT_SCALES, bn=["before"], lr=1.0, seed=seed, bn_impl=BN_IMPL)
    assert trained_values(with_bn, "before", "init_scale") == INIT_SCALES, steps_table(with_bn, "init_scale")
    extremes = init_scale_sweep([INIT_SCALES[0], INIT_SCALES[-1]], bn=[None], lr=1.0, seed=seed)
    assert trained_values(extremes, None, "init_scale") == [], steps_table(extremes, "init_scale")


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_what_goes_wrong_at_the_extremes_of_the_init_sweep(seed):
    """Without BN, tiny weights wash out the differences between examples and large weights
    saturate the sigmoids; at scale 1 neither happens."""
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


@pytest.mark.parametrize("seed", SEEDS)
def test_a_huge_learning_rate_saturates_the_plain_network_without_blowing_up(seed):
    history = digits_run(None, lr=30.0, steps=100, seed=seed, eval_every=50,
                         record=sigmoid_saturation(load_digits_split(seed=seed).X_train))
    assert not history.diverged and all(math.isfinite(v) for v in history.loss)
    assert max(history.loss) > 3
    assert history.records["saturated3"][0] < 0.01 and history.records["saturated3"][-1] > 0.99


@pytest.mark.parametrize("seed", SEEDS)
def test_the_exercise_network_trains(seed):
    from course_lib.exercises import grade
    from course_lib.nn import BatchNorm1d

    def build(in_features, widths, out_features):  # the exercise's solution
        layers, fan_in = [], in_features
        for w in widths:
            layers += [torch.nn.Linear(fan_in, w, bias=False), BatchNorm1d(w), torch.nn.Sigmoid()]
            fan_in = w
        return torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, out_features))

    assert grade("build_bn_net", build).passed
    torch.manual_seed(seed)
    history = train(build(64, [100, 100, 100], 10), load_digits_split(seed=seed), steps=500,
                    lr=2.0, eval_every=10, stop_at_test_acc=TARGET, seed=seed)
    assert history.steps_to_reach(TARGET) is not None and history.steps_to_reach(TARGET) <= 200


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_before_and_after_the_activation_both_train_and_neither_wins_everywhere(seed):
    """Experiment 5: both orders train at lr 0.5 and 2.0, and at 0.5 BN-after is at least as
    fast; at lr 8 BN-after diverges while BN-before still reaches 90%. (At lr 2.0 which order
    is faster depends on the seed: the chapter claims no order there.)"""
    steps = {}
    for lr in (0.5, 2.0, 8.0):
        runs = compare_positions(("before", "after"), lr=lr, steps=250, seed=seed,
                                 eval_every=10, target=TARGET, bn_impl=BN_IMPL)
        steps[lr] = {bn: h.steps_to_reach(TARGET) for bn, h in runs.items()}
        if lr == 8.0:
            assert runs["after"].diverged and not runs["before"].diverged, steps
    assert None not in (*steps[0.5].values(), *steps[2.0].values(), steps[8.0]["before"]), steps
    assert steps[0.5]["after"] <= steps[0.5]["before"], steps


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.5), ("momentum", 0.05), ("adam", 0.003)])
def test_every_optimizer_trains_gamma_and_beta(seed, optimizer, lr):
    """gamma and beta are parameters like W: SGD, momentum and Adam all update them."""
    history = digits_run("before", lr=lr, steps=300, seed=seed, optimizer=optimizer,
                         target=TARGET, record=bn_parameter_change)
    assert history.steps_to_reach(TARGET) is not None
    assert history.records["gamma_change"][0] == 0.0 and history.records["beta_change"][0] == 0.0
    assert history.records["gamma_change"][-1] > 0.01, history.records
    assert history.records["beta_change"][-1] > 0.01, history.records


# -------------------------------------------------------------------------- the API


def test_digits_run_is_deterministic_and_positions_share_the_data():
    a = digits_run("before", lr=0.5, steps=30, seed=3, eval_every=15)
    b = digits_run("before", lr=0.5, steps=30, seed=3, eval_every=15)
    assert a.loss == b.loss and a.test_acc == b.test_acc
    runs = compare_positions(("before", "after", None), lr=0.5, steps=1, seed=3, eval_every=1)
    # Step 1 is the first mini-batch, before any update: all three see the same labels, and
    # a fresh network's loss is close to log(10) whatever the position of BN.
    for h in runs.values():
        assert h.config["seed"] == 3 and h.config["batch_size"] == 60
        assert abs(h.loss[0] - math.log(10)) < 0.5


def test_digits_network_matches_the_lecture():
    model = digits_network("before", seed=0)
    names = [name for name, _ in model.named_children()]
    assert names[:3] == ["linear1", "bn1", "act1"] and names[-1] == "output"
    assert model.linear1.bias is None and isinstance(model.act1, torch.nn.Sigmoid)
    assert model.linear1.in_features == 64 and model.output.out_features == 10


def test_sweep_rows_and_readers():
    rows = lr_sweep([1.0, 0.5], bn=["before"], seed=0, max_steps=40, target=0.5, eval_every=20)
    assert [r.lr for r in rows] == [0.5, 1.0]  # sorted
    assert all(isinstance(r, SweepRow) and r.max_steps == 40 and r.target == 0.5 for r in rows)
    table = steps_table(rows)
    assert list(table) == ["before"] and set(table["before"]) == {0.5, 1.0}
    assert trained_values(rows, "before") == [r.lr for r in rows if r.trained]
    assert trained_values(rows, None) == []
    hopeless = init_scale_sweep([10.0], bn=[None], seed=0, max_steps=20, eval_every=20)
    assert hopeless[0].steps_to_target is None and not hopeless[0].trained
    assert hopeless[0].init_scale == 10.0 and hopeless[0].lr == 1.0


def test_bn_parameter_change():
    model = digits_network("before", seed=0)
    assert bn_parameter_change(0, model) == {"gamma_change": 0.0, "beta_change": 0.0}
    with torch.no_grad():
        model.bn2.weight[3] = 0.25
        model.bn3.bias[0] = -0.5
    assert bn_parameter_change(0, model) == {"gamma_change": 0.75, "beta_change": 0.5}
    assert bn_parameter_change(0, digits_network(None)) == {"gamma_change": 0.0, "beta_change": 0.0}


def test_span_decades():
    assert span_decades([0.1, 1.0, 10.0]) == pytest.approx(2.0)
    assert span_decades([30.0, 0.03]) == pytest.approx(3.0)
    assert span_decades([3.0]) == 0.0 and span_decades([]) == 0.0
    with pytest.raises(ValueError, match="positive and finite"):
        span_decades([0.0, 1.0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: lr_sweep([]), ValueError, "lrs is empty"),
        (lambda: lr_sweep([0.1, -1.0]), ValueError, "lrs must be positive and finite"),
        (lambda: lr_sweep([1.0, 1.0]), ValueError, "repeated"),
        (lambda: lr_sweep(0.1), TypeError, "list of positive numbers"),
        (lambda: lr_sweep(["0.1"]), TypeError, "must be numbers"),
        (lambda: lr_sweep([0.1], bn="before"), TypeError, r"for one position write \['before'\]"),
        (lambda: lr_sweep([0.1], bn=["inside"]), ValueError, "bn must be 'before'"),
        (lambda: init_scale_sweep([float("nan")]), ValueError, "scales must be positive"),
        (lambda: compare_positions((), lr=1.0, steps=1), ValueError, "at least one position"),
        (lambda: compare_positions(("before", "before"), lr=1.0, steps=1), ValueError, "repeat"),
        (lambda: digits_run("middle", lr=1.0, steps=1), ValueError, "bn must be 'before'"),
        (lambda: trained_values([], None, key="steps"), ValueError, "key must be 'lr'"),
        (lambda: steps_table([], key="seed"), ValueError, "key must be 'lr'"),
    ],
)
def test_bad_arguments_have_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
