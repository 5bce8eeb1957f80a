"""Tests for course_lib.experiments.probes.inference: predictions in training vs evaluation mode."""

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn as cnn
from course_lib.experiments.probes.inference import batch_dependence, predict_in_batches

from course_lib.experiments.claims import CLAIM_SEEDS

SEEDS = CLAIM_SEEDS


def _model(seed, bn_cls=nn.BatchNorm1d):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), bn_cls(16), nn.ReLU(), nn.Linear(16, 3))
    with torch.no_grad():  # running statistics away from their (0, 1) start
        for _ in range(20):
            model(torch.randn(64, 5) * 2 + 1)
    return model


def _data(seed, n=101):
    gen = torch.Generator().manual_seed(seed + 100)
    X = torch.randn(n, 5, generator=gen) * 2 + 1
    return X, torch.randint(0, 3, (n,), generator=gen)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, cnn.BatchNorm1d], ids=["torch", "course_lib"])
def test_eval_mode_equals_one_pass_for_any_batching(seed, bn_cls):
    model = _model(seed, bn_cls).eval()
    X, _ = _data(seed)
    expected = model(X).argmax(dim=1)
    for batch_size in (1, 2, 7, 101, 500):
        preds = predict_in_batches(model, X, batch_size, n_shuffles=3, seed=seed)
        assert preds.shape == (3, 101) and preds.dtype == torch.int64
        assert torch.equal(preds, expected.expand(3, -1)), batch_size


@pytest.mark.parametrize("seed", SEEDS)
def test_train_mode_uses_each_batch_statistics_and_leaves_model_alone(seed):
    model = _model(seed).train()
    X, _ = _data(seed, n=40)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(40, generator=gen)  # the permutation predict_in_batches draws
    preds = predict_in_batches(model, X, 8, n_shuffles=1, seed=seed)[0]
    expected = torch.empty(40, dtype=torch.int64)
    with torch.no_grad():
        for idx in torch.split(order, 8):
            # Each batch normalized with its own statistics, by a fresh copy of the model.
            expected[idx] = nn.functional.batch_norm(
                model[0](X[idx]), None, None, model[1].weight, model[1].bias, training=True
            ).relu().matmul(model[3].weight.T).add(model[3].bias).argmax(dim=1)
    assert torch.equal(preds, expected)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed: the probe must run on a copy"
    assert model.training


def test_shuffle_false_keeps_order_and_last_single_example_is_merged():
    model = _model(0).train()
    X, _ = _data(0, n=21)  # batches of 10: 10, 10, 1 -> 10, 11
    preds = predict_in_batches(model, X, 10, n_shuffles=2, shuffle=False)
    with torch.no_grad():
        expected = torch.cat([model(X[:10]), model(X[10:])]).argmax(dim=1)
    # model(...) above moved the running statistics, but those do not enter training mode.
    assert torch.equal(preds, expected.expand(2, -1))


def test_batch_dependence_numbers():
    model = _model(1)
    X, y = _data(1, n=200)
    r_eval = batch_dependence(model.eval(), X, y, [1, 4, 200], n_shuffles=4, seed=0)
    acc = float((model(X).argmax(dim=1) == y).double().mean())
    np.testing.assert_allclose(r_eval["accuracy"], acc, rtol=1e-12)
    assert r_eval["changed"].tolist() == [0.0, 0.0, 0.0]
    assert r_eval["accuracy_spread"].tolist() == [0.0, 0.0, 0.0]
    r_train = batch_dependence(model.train(), X, y, [2, 200], n_shuffles=4, seed=0)
    assert r_train["changed"][0] > 0.3 and r_train["changed"][1] == 0.0  # one batch: no change
    assert r_train["accuracy_spread"][0] > 0
    assert r_train["batch_size"].tolist() == [2.0, 200.0]
    # By hand: share of examples with more than one distinct prediction over the shuffles.
    preds = predict_in_batches(model, X, 2, n_shuffles=4, seed=0)
    changed = np.mean([len(set(preds[:, i].tolist())) > 1 for i in range(200)])
    assert r_train["changed"][0] == pytest.approx(changed)


def test_errors():
    model = _model(0)
    X, y = _data(0)
    with pytest.raises(ValueError, match="model.eval()"):
        predict_in_batches(model.train(), X, 1)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        predict_in_batches(model.eval(), X, 0)
    with pytest.raises(TypeError, match="torch.as_tensor"):
        predict_in_batches(model, X.numpy(), 4)
    with pytest.raises(TypeError, match="nn.Module"):
        predict_in_batches("model", X, 4)
    with pytest.raises(ValueError, match="N >= 2"):
        predict_in_batches(model, X[:1], 4)
    with pytest.raises(TypeError, match="int"):
        predict_in_batches(model, X, 4.0)
    with pytest.raises(ValueError, match="one entry per row"):
        batch_dependence(model, X, y[:-1], [4])
