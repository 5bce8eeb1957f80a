"""course_lib.borrow: finding a model's batch norm layers, and borrowing a model (as_found)
so that it is left as it was found: modes, values, gradients, buffers and random states."""

from __future__ import annotations

import pytest
import torch

import course_lib.nn as cnn
from course_lib import borrow


def test_is_batchnorm_batchnorm_layers_and_dim():
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
        torch.nn.Sequential(cnn.BatchNorm1d(4)), torch.nn.LayerNorm(4),
    )
    assert [name for name, _ in borrow.batchnorm_layers(model)] == ["1", "2.0"]
    assert borrow.is_batchnorm(torch.nn.SyncBatchNorm(3))
    assert not borrow.is_batchnorm(torch.nn.GroupNorm(1, 4))
    assert not borrow.is_batchnorm(torch.nn.Linear(2, 2))
    dims = [borrow.batchnorm_dim(m) for m in (cnn.BatchNorm1d(2), torch.nn.BatchNorm2d(2),
                                           cnn.BatchNorm3d(2), torch.nn.SyncBatchNorm(2))]
    assert dims == [1, 2, 3, None]
    with pytest.raises(TypeError, match="expected model to be a torch.nn.Module"):
        borrow.batchnorm_layers([torch.nn.BatchNorm1d(2)])


def _nested_model():
    inner = torch.nn.Sequential(torch.nn.Linear(3, 4), cnn.BatchNorm1d(4), torch.nn.Dropout(0.5))
    model = torch.nn.Sequential(inner, torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    model(torch.randn(8, 3))
    inner[1].eval()  # a mixed state must come back exactly
    return model


@pytest.mark.parametrize("mode", ["eval", "train", None])
def test_as_found_restores_the_mode_of_every_submodule_of_a_nested_model(mode):
    model = _nested_model()
    before = [m.training for m in model.modules()]
    with borrow.as_found(model, mode):
        if mode is not None:
            assert all(m.training == (mode == "train") for m in model.modules())
        model.eval()
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError, match="restored even on error"), borrow.as_found(model, "eval"):
        raise RuntimeError("restored even on error")
    assert [m.training for m in model.modules()] == before


def test_as_found_with_state_restores_values_grads_buffers_and_randomness():
    model = _nested_model()
    model(torch.randn(8, 3)).sum().backward()
    gen = torch.Generator().manual_seed(5)
    model[0][1].gen = gen  # a generator held by a module, as noisy batch norm holds one
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    draw, gen_draw = torch.rand(3), None
    torch.manual_seed(0)
    expected_global = torch.rand(3)
    torch.manual_seed(0)
    with borrow.as_found(model, "train", state=True) as snap:
        model(torch.randn(8, 3)).sum().backward()  # moves buffers, grads, global RNG
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        gen_draw = torch.rand(2, generator=gen)
        snap.restore_randomness()
        assert torch.equal(torch.rand(2, generator=gen), gen_draw)
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert torch.equal(torch.rand(2, generator=gen), gen_draw)
    assert torch.equal(torch.rand(3), expected_global)
    assert draw.shape == (3,)


def test_as_found_keep_values_keeps_the_work_and_restores_the_modes():
    model = _nested_model()
    before = [m.training for m in model.modules()]
    with borrow.as_found(model, "train", state=True) as snap:
        model(torch.randn(8, 3) + 5)
        moved = model[1].running_mean.clone()
        snap.keep_values()
    assert torch.equal(model[1].running_mean, moved)
    assert [m.training for m in model.modules()] == before


def test_as_found_refuses_what_it_cannot_restore():
    with pytest.raises(TypeError, match="expected model to be a torch.nn.Module"):
        with borrow.as_found([torch.nn.Linear(2, 2)]):
            pass
    with pytest.raises(ValueError, match=r"as_found: mode must be 'train' .* or None to keep"):
        with borrow.as_found(torch.nn.Linear(2, 2), "test"):
            pass


def test_as_found_forks_the_random_state_of_every_cuda_device(monkeypatch):
    # torch.manual_seed reseeds every CUDA device too, so as_found must save all of them.
    seen = []
    real_fork = torch.random.fork_rng

    def spy(devices=None, enabled=True, **kw):
        seen.append((list(devices), enabled))
        return real_fork(devices=[], enabled=enabled, **kw)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.random, "fork_rng", spy)
    with borrow.as_found(torch.nn.Linear(2, 2), state=True):
        pass
    assert seen == [([0, 1], True)]


def test_as_found_forks_only_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert borrow._cuda_devices() == []
