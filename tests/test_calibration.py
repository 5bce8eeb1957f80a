"""Tests for course_lib.calibration: recomputing running statistics after training."""

import numpy as np
import pytest
import torch
from torch import nn

import course_lib.nn as cnn
from course_lib.calibration import population_stats, recalibrate_bn

from course_lib.experiments.claims import CLAIM_SEEDS

SEEDS = CLAIM_SEEDS


def _snapshot(model):
    return {k: v.clone() for k, v in model.named_parameters()}


def _assert_same_params(model, before):
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), f"{k} changed"


@pytest.mark.parametrize("bn_cls", [nn.BatchNorm1d, cnn.BatchNorm1d], ids=["torch", "course_lib"])
@pytest.mark.parametrize("method", ["exact", "cumulative"])
def test_single_layer_gets_population_stats(bn_cls, method):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(1000, 5, generator=gen) * torch.arange(1, 6) + 3
    bn = bn_cls(5, momentum=0.3)
    bn(torch.randn(20, 5))  # some stale statistics to overwrite
    bn.eval()
    before = _snapshot(bn)
    out = recalibrate_bn(bn, X, batch_size=100, method=method)
    assert out is bn
    X64 = X.double()
    torch.testing.assert_close(bn.running_mean, X64.mean(dim=0).float())  # equal batch sizes
    if method == "exact":
        torch.testing.assert_close(bn.running_var, X64.var(dim=0).float())  # unbiased, all N
    else:  # PyTorch's momentum=None: the mean of the batches' unbiased variances
        per_batch = X64.reshape(10, 100, 5).var(dim=1).mean(dim=0)
        torch.testing.assert_close(bn.running_var, per_batch.float())
        assert (bn.running_var.double() - X64.var(dim=0)).abs().max() > 1e-4  # not the same
    assert int(bn.num_batches_tracked) == 10
    assert bn.momentum == 0.3 and not bn.training  # restored
    _assert_same_params(bn, before)


def test_exact_with_unequal_batches_and_a_dataloader():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(257, 3, generator=gen) * 2 - 1  # 257 = 2 * 128 + 1: the 1 is merged
    y = torch.zeros(257)
    bn = nn.BatchNorm1d(3)
    recalibrate_bn(bn, X, batch_size=128)
    assert int(bn.num_batches_tracked) == 2
    torch.testing.assert_close(bn.running_mean, X.double().mean(dim=0).float())
    torch.testing.assert_close(bn.running_var, X.double().var(dim=0).float())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:250], y[:250]),
                                         batch_size=60)  # batches of 60, 60, 60, 60, 10
    recalibrate_bn(bn, loader)
    assert int(bn.num_batches_tracked) == 5
    torch.testing.assert_close(bn.running_mean, X[:250].double().mean(dim=0).float())
    torch.testing.assert_close(bn.running_var, X[:250].double().var(dim=0).float())


def test_conv_model_modes_and_momenta_restored():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None), nn.ReLU(), nn.Dropout(0.5),
        nn.Sequential(nn.Conv2d(4, 4, 3), cnn.BatchNorm2d(4, momentum=0.05), nn.ReLU()),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 2),
        nn.BatchNorm1d(2, track_running_stats=False),  # no running stats: skipped
    )
    model.train()
    model[4].eval()  # a mixed state, restored exactly
    modes = [m.training for m in model.modules()]
    before = _snapshot(model)
    X = torch.randn(64, 3, 10, 10)
    recalibrate_bn(model, X, batch_size=16)
    assert [m.training for m in model.modules()] == modes
    assert model[1].momentum is None and model[4][1].momentum == 0.05
    _assert_same_params(model, before)
    # The first layer's statistics: per channel over N, H, W of the conv's output.
    h = model[0](X).detach().double()
    torch.testing.assert_close(model[1].running_mean, h.mean(dim=(0, 2, 3)).float())
    torch.testing.assert_close(model[1].running_var, h.transpose(0, 1).reshape(4, -1).var(dim=1).float())
    # The second layer sees the first normalized with batch statistics and dropout off.
    stats = population_stats(model, X, batch_size=16)
    assert list(stats) == ["1", "4.1"]
    np.testing.assert_allclose(stats["4.1"][0], model[4][1].running_mean.double().numpy(), rtol=1e-6)


def _train(model, X, y, steps, gen, lr=0.1, batch_size=32):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _accuracy(model, X, y):
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(dim=1) == y).float().mean())


@pytest.mark.parametrize("seed", SEEDS)
def test_recalibration_repairs_corrupted_running_stats(seed):
    """Forgetting model.eval() on shifted data corrupts the running statistics; one pass over
    the training set puts them back, and the accuracy with them."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X = torch.randn(1000, 4, generator=gen) * 2 + 1
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 1).long()
    model = nn.Sequential(nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 32), cnn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))
    _train(model, X, y, 300, gen)
    acc_trained = _accuracy(model, X, y)
    before = _snapshot(model)

    model.train()  # the slip: predictions on other data without model.eval()
    with torch.no_grad():
        for _ in range(20):
            model(torch.randn(64, 4, generator=gen) * 5 - 3)
    acc_corrupted = _accuracy(model, X, y)

    recalibrate_bn(model, X, batch_size=200)
    acc_recalibrated = _accuracy(model, X, y)
    _assert_same_params(model, before)
    assert acc_trained > 0.85, acc_trained
    assert acc_corrupted < acc_trained - 0.1, (acc_corrupted, acc_trained)
    # Population statistics are not the running averages the network was used with: over seeds
    # 0-29 and 1001-1010 the accuracy moved by -0.023 to +0.012 (spread 0.007), so 0.03.
    assert acc_recalibrated > acc_trained - 0.03, (acc_recalibrated, acc_trained)
    for name, (mean, var) in population_stats(model, X, batch_size=200).items():
        bn = dict(model.named_modules())[name]
        np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)


def test_failure_leaves_model_unchanged():
    bn = nn.BatchNorm1d(3, momentum=0.2)
    bn(torch.randn(10, 3) + 5)
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    batches = [torch.randn(8, 3), torch.randn(1, 3)]  # a batch of one fails in training mode
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        recalibrate_bn(bn, batches)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert bn.momentum == 0.2 and bn.training


def test_errors():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="no batch norm layer with running statistics"):
        recalibrate_bn(nn.Sequential(nn.Linear(3, 3)), torch.randn(8, 3))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        recalibrate_bn(nn.BatchNorm1d(3, track_running_stats=False), torch.randn(8, 3))
    with pytest.raises(TypeError, match="torch.as_tensor"):
        recalibrate_bn(bn, np.zeros((8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="batch_size >= 2"):
        recalibrate_bn(bn, torch.randn(8, 3), batch_size=1)
    with pytest.raises(ValueError, match="leave batch_size out"):
        recalibrate_bn(bn, [torch.randn(8, 3)], batch_size=4)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(bn, [])
    with pytest.raises(ValueError, match="unknown method"):
        recalibrate_bn(bn, torch.randn(8, 3), method="ema")
    with pytest.raises(TypeError, match="nn.Module"):
        recalibrate_bn("model", torch.randn(8, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_population_stats_leaves_the_model_as_found(dtype):
    """population_stats borrows the model (course_lib.borrow.as_found) and hands it back: same
    buffers, modes and momentum; and its result does not change when the buffers are restored
    (float64 buffers would share memory with a numpy view)."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), cnn.BatchNorm1d(4, momentum=0.3), nn.Dropout(0.2)).to(dtype)
    model(torch.randn(16, 3, generator=gen, dtype=dtype))
    model[1].eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    X = torch.randn(200, 3, generator=gen, dtype=dtype) * 2 + 1
    mean, var = population_stats(model, X, batch_size=50)["1"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in model.modules()] == modes and model[1].momentum == 0.3
    h = model[0](X).detach().double()
    np.testing.assert_allclose(mean, h.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var, h.var(0).numpy(), rtol=1e-4)
