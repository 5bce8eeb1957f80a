"""Tests for course_lib/experiments/lab/training.py: the training loop, its History, its
options (optimizer factory, after_step hook, frozen batch norm), and the headline claim."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.experiments.lab.data import Split, load_digits_split
from course_lib.experiments.lab.models import make_mlp
from course_lib.experiments.lab.training import PROGRESS_MIN_STEPS, History, evaluate, train
from course_lib.borrow import batchnorm_layers

SEEDS = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def digits() -> Split:
    return load_digits_split(seed=0)


def mlp(bn="before", seed=0, **kwargs) -> nn.Sequential:
    return make_mlp(64, [100, 100, 100], 10, bn=bn, seed=seed, **kwargs)


def assert_same_history(a: History, b: History) -> None:
    assert a.steps == b.steps
    assert a.loss == b.loss  # bit-identical, not just close
    assert a.eval_steps == b.eval_steps
    assert a.train_acc == b.train_acc and a.test_acc == b.test_acc
    assert a.train_loss == b.train_loss and a.test_loss == b.test_loss
    assert a.records == b.records and a.diverged == b.diverged


# ------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("bn", ["before", None])
def test_same_seed_gives_a_bit_identical_history(digits, bn):
    a = train(mlp(bn), digits, steps=120, lr=0.5, seed=3, eval_every=20)
    b = train(mlp(bn), digits, steps=120, lr=0.5, seed=3, eval_every=20)
    assert_same_history(a, b)


def test_different_seed_changes_the_batches(digits):
    a = train(mlp(), digits, steps=50, lr=0.5, seed=0, eval_every=25)
    b = train(mlp(), digits, steps=50, lr=0.5, seed=1, eval_every=25)
    assert a.loss[0] != b.loss[0] and a.loss[-1] != b.loss[-1]


def test_dropout_is_reproducible_and_global_rng_untouched(digits):
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    a = train(mlp(dropout=0.3), digits, steps=60, lr=0.5, seed=2, eval_every=30)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train(mlp(dropout=0.3), digits, steps=60, lr=0.5, seed=2, eval_every=30)
    assert_same_history(a, b)
    c = train(mlp(dropout=0.3), digits, steps=60, lr=0.5, seed=5, eval_every=30)
    assert c.loss != a.loss


# ---------------------------------------------------------------- what is recorded


def test_history_steps_and_first_loss(digits):
    model = mlp(seed=1)
    initial = make_mlp(64, [100, 100, 100], 10, bn="before", seed=1)
    history = train(model, digits, steps=45, lr=0.5, batch_size=60, seed=4, eval_every=20)
    assert history.steps == list(range(1, 46))
    assert len(history.loss) == 45
    assert history.eval_steps == [0, 20, 40, 45]  # step 0, every 20, and the last step
    for values in (history.train_acc, history.test_acc, history.train_loss, history.test_loss):
        assert len(values) == 4
    # Step 1's loss is the cross-entropy of the first batch of the seeded permutation,
    # computed by the untrained model in training mode.
    first = torch.randperm(digits.n_train, generator=torch.Generator().manual_seed(4))[:60]
    expected = F.cross_entropy(initial(digits.X_train[first]), digits.y_train[first])
    assert history.loss[0] == pytest.approx(expected.item(), rel=1e-6)
    # The accuracies at step 0 are the untrained model's, in eval mode.
    assert history.test_acc[0] == evaluate(initial, digits.X_test, digits.y_test)
    assert history.config["lr"] == 0.5 and history.config["seed"] == 4
    assert model.training  # left in training mode


def test_every_epoch_visits_each_example_once():
    # 10 examples, batches of 3: each epoch is 3 batches of one permutation (the 10th dropped).
    X = torch.arange(10.0).unsqueeze(1)
    data = Split(X, torch.zeros(10).long(), X, torch.zeros(10).long())
    seen = []
    model = nn.Linear(1, 2)
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].flatten().tolist()) if m.training else None)
    train(model, data, steps=6, lr=0.1, batch_size=3, seed=0, eval_every=6)
    for epoch in (seen[0:3], seen[3:6]):
        flat = sum(epoch, [])
        assert len(set(flat)) == 9 and all(len(b) == 3 for b in epoch)
    assert seen[0:3] != seen[3:6]


def test_eval_every_default_is_about_100_evaluations(digits):
    history = train(mlp(), digits, steps=300, lr=0.5)
    assert history.config["eval_every"] == 3 and len(history.eval_steps) == 101


def test_evaluate_uses_eval_mode_and_restores_the_mode(digits):
    model = mlp()
    train(model, digits, steps=30, lr=0.5, eval_every=30)
    with torch.no_grad():
        model.eval()
        expected = (model(digits.X_test).argmax(1) == digits.y_test).sum().item() / digits.n_test
        model.train()
    assert evaluate(model, digits.X_test, digits.y_test) == expected
    assert model.training
    # One example: impossible to batch-normalize in training mode, fine in eval mode.
    assert evaluate(model, digits.X_test[:1], digits.y_test[:1]) in (0.0, 1.0)


def test_evaluate_counts_non_finite_outputs_as_wrong():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    assert evaluate(model, torch.ones(4, 2), torch.zeros(4).long()) == 0.0


def test_recorders_are_called_at_every_evaluation_in_eval_mode(digits):
    calls = []

    def spread(step, model):
        calls.append((step, model.training))
        return {"gamma_mean": model.bn3.weight.mean()}  # a 0-d tensor is fine

    def step_twice(step, model):
        return {"twice": 2 * step}

    history = train(mlp(), digits, steps=50, lr=0.5, eval_every=25, record=[spread, step_twice])
    assert calls == [(0, False), (25, False), (50, False)]
    assert history.records["twice"] == [0.0, 50.0, 100.0]
    assert history.records["gamma_mean"][0] == 1.0  # gamma starts at 1
    assert history.records["gamma_mean"][-1] != 1.0


@pytest.mark.parametrize(
    "record, error, match",
    [
        (lambda step, model: [1.0], TypeError, "must return a dict of numbers"),
        (lambda step, model: {"p": torch.ones(3)}, TypeError, "not a single number"),
        ([lambda s, m: {"a": 1.0}, lambda s, m: {"a": 2.0}], ValueError, "two recorders returned the key 'a'"),
        (lambda step, model: {"a": 1.0} if step == 0 else {"b": 1.0}, ValueError, "return the same keys"),
        ("p50", TypeError, "record must be a callable"),
    ],
)
def test_bad_recorders_have_clear_errors(digits, record, error, match):
    with pytest.raises(error, match=match):
        train(mlp(), digits, steps=10, lr=0.5, eval_every=5, record=record)


# ------------------------------------------------------------- the swap changes nothing


def test_course_lib_and_torch_bn_train_the_same(digits):
    histories = {
        impl: train(make_mlp(64, [100, 100, 100], 10, bn="before", bn_impl=impl, seed=0),
                    digits, steps=300, lr=0.5, seed=0, eval_every=30)
        for impl in ("course_lib", "torch")
    }
    ours, theirs = histories["course_lib"], histories["torch"]
    # float32 round-off differs between the two and grows a little over 300 steps.
    torch.testing.assert_close(torch.tensor(ours.loss), torch.tensor(theirs.loss), rtol=1e-4, atol=1e-5)
    assert ours.test_acc == theirs.test_acc and ours.train_acc == theirs.train_acc


def test_course_lib_and_torch_bn_train_the_same_in_float64(digits):
    histories = {
        impl: train(make_mlp(64, [100, 100, 100], 10, bn="after", bn_impl=impl, seed=1).double(),
                    digits, steps=200, lr=0.5, seed=1, eval_every=50)
        for impl in ("course_lib", "torch")
    }
    ours, theirs = histories["course_lib"], histories["torch"]
    torch.testing.assert_close(torch.tensor(ours.loss), torch.tensor(theirs.loss), rtol=1e-10, atol=1e-12)
    assert ours.test_acc == theirs.test_acc


# ------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("bn_impl", ["course_lib", "torch"])
@pytest.mark.parametrize("bn, activation", [("after", "sigmoid"), ("before", "relu"), (None, "relu")])
def test_huge_learning_rate_diverges_cleanly(digits, bn, activation, bn_impl):
    model = make_mlp(64, [100, 100, 100], 10, bn=bn, activation=activation, bn_impl=bn_impl, seed=0)
    history = train(model, digits, steps=200, lr=1e6, eval_every=10)  # must not raise
    assert history.diverged
    assert history.diverged_at == history.steps[-1] < 200
    assert not math.isfinite(history.loss[-1])
    assert all(math.isfinite(v) for v in history.loss[:-1])
    assert history.eval_steps[-1] == history.diverged_at
    assert history.final_test_acc == 0.0  # non-finite outputs are never right
    assert history.steps_to_reach(0.5) is None


def test_divergence_when_bn_refuses_non_finite_input(digits):
    # course_lib's BN raises on inf/NaN input in training rather than passing NaN on;
    # train() must read that as divergence at step 1, with a NaN loss and no exception.
    model = make_mlp(64, [100], 10, bn="before", bn_impl="course_lib", seed=0)
    with torch.no_grad():
        model.linear1.weight[0, 0] = float("inf")
    history = train(model, digits, steps=20, lr=0.1, eval_every=5, record=lambda s, m: {"x": 1.0})
    assert history.diverged and history.steps == [1] and math.isnan(history.loss[0])
    assert history.eval_steps == [0, 1] and history.records["x"][0] == 1.0
    assert math.isnan(history.records["x"][1])  # recorders skip the broken model


def test_errors_that_are_not_divergence_propagate(digits):
    wrong_inputs = make_mlp(10, [20], 10, bn="before", bn_impl="course_lib")  # digits have 64
    with pytest.raises(RuntimeError):
        train(wrong_inputs, digits, steps=5, lr=0.1)


def test_a_batch_of_one_cannot_be_normalized_in_training(digits):
    with pytest.raises(ValueError):
        train(mlp(), digits, steps=5, lr=0.1, batch_size=1)


# ---------------------------------------------------------------- options and errors


def test_optimizers_differ(digits):
    losses = {
        opt: train(mlp(), digits, steps=30, lr=0.05, optimizer=opt, eval_every=30).loss
        for opt in ("sgd", "momentum", "adam")
    }
    assert losses["sgd"][0] == losses["momentum"][0] == losses["adam"][0]  # same first batch
    assert len({tuple(v[1:]) for v in losses.values()}) == 3


def test_stop_at_test_acc(digits):
    history = train(mlp(), digits, steps=1000, lr=0.5, eval_every=10, stop_at_test_acc=0.9)
    assert history.steps[-1] == history.eval_steps[-1] == history.steps_to_reach(0.9) < 1000
    assert history.test_acc[-1] >= 0.9 and max(history.test_acc[:-1]) < 0.9


def test_progress_bar(digits, capsys):
    train(mlp(), digits, steps=20, lr=0.1, progress=True)
    assert "training" in capsys.readouterr().err
    train(mlp(), digits, steps=20, lr=0.1)  # short run: no bar by default
    assert capsys.readouterr().err == ""
    assert PROGRESS_MIN_STEPS >= 1000


def test_float64_model_gets_float64_data(digits):
    model = mlp().double()
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    history = train(model, digits, steps=50, lr=0.5, eval_every=50)
    assert set(seen) == {torch.float64} and model.output.weight.dtype == torch.float64
    assert history.final_test_acc > 0.8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 0}, ValueError, "train: steps must be an int >= 1"),
        ({"steps": 10.0}, TypeError, "steps must be an int"),
        ({"lr": 0.0}, ValueError, "lr must be positive"),
        ({"lr": float("inf")}, ValueError, "lr must be positive and finite"),
        ({"lr": "0.1"}, TypeError, "lr must be a positive number"),
        ({"optimizer": "rmsprop"}, ValueError, r"unknown optimizer 'rmsprop'; use one of \['adam', 'momentum', 'sgd'\]"),
        ({"optimizer": lambda params: torch.optim.SGD(params, lr=0.1)}, ValueError,
         "an optimizer factory sets its own learning rate; pass lr=None"),
        ({"lr": None}, TypeError, "optimizer 'sgd' needs a learning rate lr"),
        ({"lr": None, "optimizer": lambda params: "sgd"}, TypeError,
         "the optimizer factory must return a torch.optim.Optimizer"),
        ({"bn_mode": "eval"}, ValueError, r"bn_mode must be one of \('train', 'frozen'\)"),
        ({"model": mlp(bn=None), "bn_mode": "frozen"}, ValueError,
         "the model has no batch norm layer; use bn_mode='train'"),
        ({"after_step": 3}, TypeError, "after_step must be a callable"),
        ({"batch_size": 2000}, ValueError, r"batch_size \(2000\) is larger than the training set \(1347"),
        ({"eval_every": 0}, ValueError, "train: eval_every must be an int >= 1"),
        ({"stop_at_test_acc": 90}, ValueError, "stop_at_test_acc is an accuracy in"),
        ({"data": (1, 2)}, TypeError, "data must be a course_lib.experiments.lab.data.Split"),
        ({"model": "mlp"}, TypeError, "model must be an nn.Module"),
    ],
)
def test_bad_arguments_have_clear_errors(digits, kwargs, error, match):
    args = {"model": mlp(), "data": digits, "steps": 10, "lr": 0.1, **kwargs}
    model, data = args.pop("model"), args.pop("data")
    with pytest.raises(error, match=match):
        train(model, data, **args)


def test_history_helpers():
    h = History(steps=[1, 2, 3, 4], loss=[2.0, 1.0, 0.5, 0.4], eval_steps=[0, 2, 4],
                train_acc=[0.1, 0.8, 0.95], test_acc=[0.1, 0.7, 0.92])
    assert h.steps_to_reach(0.7) == 2 and h.steps_to_reach(0.9) == 4
    assert h.steps_to_reach(0.93) is None and h.steps_to_reach(0.9, on="train") == 4
    assert h.final_test_acc == 0.92 and h.final_train_acc == 0.95 and h.best_test_acc == 0.92
    assert h.diverged_at is None
    with pytest.raises(ValueError, match=r"acc is an accuracy in \[0, 1\] \(got 90\); 90% is 0.9"):
        h.steps_to_reach(90)
    with pytest.raises(ValueError, match="on must be 'test' or 'train'"):
        h.steps_to_reach(0.5, on="val")
    with pytest.raises(ValueError, match="no evaluations"):
        History().final_test_acc


# ------------------------------------------------- optimizer factory, after_step, bn_mode


def test_optimizer_factory_is_the_named_optimizer_when_it_builds_the_same(digits):
    named = train(mlp(), digits, steps=40, lr=0.3, seed=1, eval_every=20)
    built = train(mlp(), digits, steps=40, lr=None, seed=1, eval_every=20,
                  optimizer=lambda params: torch.optim.SGD(params, lr=0.3))
    assert_same_history(named, built)
    assert built.config["lr"] == 0.3


def test_optimizer_factory_gets_every_parameter_and_its_settings_count(digits):
    seen = []

    def sgd_with_decay(params):
        seen.append(params)
        return torch.optim.SGD(params, lr=0.3, weight_decay=0.5)

    model = mlp()
    decayed = train(model, digits, steps=40, lr=None, seed=1, eval_every=20,
                    optimizer=sgd_with_decay)
    assert len(seen) == 1 and len(seen[0]) == len(list(model.parameters()))
    assert decayed.config["optimizer"] == "sgd_with_decay"
    plain = train(mlp(), digits, steps=40, lr=0.3, seed=1, eval_every=20)
    assert decayed.loss[-1] != plain.loss[-1]


def test_after_step_is_called_at_step_0_and_after_every_update(digits):
    calls = []

    def norm(step, model):
        calls.append((step, model.training))
        return {"norm": model[0].weight.norm()}  # a tensor is fine: stored as a float

    model = mlp(bn=None)
    w0 = float(model[0].weight.detach().norm())
    history = train(model, digits, steps=25, lr=0.5, eval_every=10, after_step=norm)
    assert [s for s, _ in calls] == list(range(26))
    assert all(training for _, training in calls)
    assert len(history.step_records["norm"]) == 26
    assert history.step_records["norm"][0] == w0
    assert history.step_records["norm"][-1] == float(model[0].weight.detach().norm())
    assert history.records == {}


def test_after_step_returning_none_records_nothing(digits):
    history = train(mlp(), digits, steps=5, lr=0.5, after_step=lambda step, model: None)
    assert history.step_records == {}


def test_after_step_keys_must_stay_the_same(digits):
    with pytest.raises(ValueError, match=r"after_step returned keys \['b'\] at step 1"):
        train(mlp(), digits, steps=5, lr=0.5,
              after_step=lambda step, model: {"a" if step == 0 else "b": 1.0})
    with pytest.raises(TypeError, match="after_step returned 'a': str, which is not"):
        train(mlp(), digits, steps=5, lr=0.5, after_step=lambda step, model: {"a": "x"})


def test_frozen_bn_keeps_its_running_statistics_and_learns_gamma_and_beta(digits):
    model = mlp()
    layers = [layer for _, layer in batchnorm_layers(model)]
    with torch.no_grad():  # running statistics that are not the initial 0 and 1
        for layer in layers:
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = []
    history = train(model, digits, steps=30, lr=0.3, eval_every=10, bn_mode="frozen",
                    after_step=lambda step, m: modes.append([l.training for l in layers]))
    after = model.state_dict()
    for key in before:
        if "running" in key or "num_batches" in key:
            assert torch.equal(before[key], after[key]), key
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    assert all(not any(m) for m in modes)  # eval mode at every step
    assert model.training and all(layer.training for layer in layers)  # left in training mode
    assert history.config["bn_mode"] == "frozen"


def test_frozen_bn_trains_differently_from_training_mode(digits):
    a = train(mlp(), digits, steps=10, lr=0.3, seed=2, eval_every=10)
    b = train(mlp(), digits, steps=10, lr=0.3, seed=2, eval_every=10, bn_mode="frozen")
    assert a.loss[0] != b.loss[0]


# ------------------------------------------------------------------- the headline claim

#: Same learning rate for both, near the best one for the network without BN; target 90%
#: test accuracy; "several times" = at least 4x (measured: 9.3x or more, see below).
CLAIM_LR, CLAIM_TARGET, CLAIM_MIN_RATIO = 2.0, 0.9, 4.0


@pytest.mark.parametrize("seed", SEEDS)
def test_bn_reaches_90_percent_several_times_faster(seed):
    """Ioffe & Szegedy's MNIST experiment at CPU scale: 3 x 100 sigmoid units, batch 60, SGD.

    With BN the network reaches 90% test accuracy on the digits in several times fewer steps
    than without, at the same learning rate. Measured over seeds 0-9 (eval every 5 steps):
    BN 35-55 steps, no BN 460-520 steps, ratio 9.3-14.4. The ratio is larger at smaller
    learning rates (16-27 at lr 1.0, 22-30 at lr 0.5); 2.0 is near the best learning rate
    without BN (at 4.0 it needs 330-630 steps; at 8.0 some seeds no longer train).
    """
    data = load_digits_split(seed=seed)
    steps = {}
    for bn in ("before", None):
        model = make_mlp(64, [100, 100, 100], 10, activation="sigmoid", bn=bn, seed=seed)
        history = train(model, data, steps=1500, lr=CLAIM_LR, batch_size=60, seed=seed,
                        eval_every=5, stop_at_test_acc=CLAIM_TARGET)
        steps[bn] = history.steps_to_reach(CLAIM_TARGET)
    assert steps["before"] is not None and steps[None] is not None, steps
    assert steps[None] >= CLAIM_MIN_RATIO * steps["before"], steps
