"""course_lib.distributed.SyncBatchNorm against batch norm on the concatenated batch.

Multi-process checks run in spawned gloo processes on 127.0.0.1: one process group per world
size (1 to 4), and every configuration is checked inside it, so the test pays the start-up of
each process once. Every process draws the same global batch (same seed), runs SyncBatchNorm on
its own slice and course_lib.nn's batch norm on the whole batch, and compares its slice.
"""

from __future__ import annotations

import itertools
import multiprocessing
import traceback

import pytest
import torch
import torch.distributed as dist
from torch import nn

from course_lib import nn as cnn
from course_lib import norm_layers as norms
from course_lib.distributed import (
    Exchange, SyncBatchNorm, convert_sync_batchnorm, count_traffic, free_port, local_moments,
    sync_batch_stats, sync_bn_backward,
)

TOL = dict(rtol=1e-9, atol=1e-9)  # float64 throughout: sums vs two-pass statistics


# Local batch sizes per world size: equal, unequal, and one process with a single example
# (fine for SyncBN: the statistics are those of the whole batch).
SIZES = {
    1: [[6]],
    2: [[4, 4], [3, 7], [1, 5]],
    3: [[4, 4, 4], [2, 5, 3], [1, 1, 6]],
    4: [[8, 8, 8, 8], [1, 3, 2, 6], [5, 0, 2, 3]],
}


def _configs():
    shapes = [(4,), (3, 5), (2, 3, 3)]   # (C,), (C, L), (C, H, W)
    for shape, affine, momentum, track in itertools.product(
        shapes, (True, False), (0.1, None), (True, False)
    ):
        if not track and momentum is None:
            continue
        yield shape, affine, momentum, track


def _reference_layer(shape, **kw):
    return (cnn.BatchNorm1d if len(shape) <= 2 else cnn.BatchNorm2d)(shape[0], **kw)


def _check_all(rank: int, world: int) -> list[str]:
    """Every configuration and batch split for this world size; returns failure messages."""
    failures = []
    # Every configuration once per world size, spread over the batch splits (which cycle
    # through the shapes), so each process group runs ~20 short checks, not 60.
    configs = list(_configs())
    splits = SIZES[world]
    plan = [(splits[k % len(splits)], config) for k, config in enumerate(configs)]
    for sizes, (shape, affine, momentum, track) in plan:
        label = f"world {world}, sizes {sizes}, shape {shape}, affine {affine}, " \
                f"momentum {momentum}, track {track}"
        kw = dict(momentum=momentum, affine=affine, track_running_stats=track,
                  dtype=torch.float64)
        sync = SyncBatchNorm(shape[0], **kw)
        ref = _reference_layer(shape, **kw)
        if affine:  # parameters away from 1 and 0, the same in every process
            g = torch.Generator().manual_seed(7)
            w = torch.rand(shape[0], generator=g, dtype=torch.float64) + 0.5
            b = torch.randn(shape[0], generator=g, dtype=torch.float64)
            for layer in (sync, ref):
                with torch.no_grad():
                    layer.weight.copy_(w)
                    layer.bias.copy_(b)
        start = sum(sizes[:rank])
        gen = torch.Generator().manual_seed(1234 + world)
        try:
            for step in range(4):  # several steps: the running statistics accumulate
                X = 3.0 + 2.0 * torch.randn(sum(sizes), *shape, generator=gen, dtype=torch.float64)
                G = torch.randn(X.shape, generator=gen, dtype=torch.float64)
                x_all = X.clone().requires_grad_(True)
                y_all = ref(x_all)
                (y_all * G).sum().backward()
                x = X[start:start + sizes[rank]].clone().requires_grad_(True)
                y = sync(x)
                (y * G[start:start + sizes[rank]]).sum().backward()
                assert torch.allclose(y, y_all[start:start + sizes[rank]], **TOL), "forward"
                assert torch.allclose(x.grad, x_all.grad[start:start + sizes[rank]], **TOL), \
                    "input gradient"
                if affine:
                    for name in ("weight", "bias"):
                        grad = getattr(sync, name).grad.clone()
                        dist.all_reduce(grad)  # what DDP does (it then divides by world)
                        assert torch.allclose(grad, getattr(ref, name).grad, **TOL), name
                    with torch.no_grad():  # one SGD step with the global gradient, everywhere
                        for name in ("weight", "bias"):
                            step_ = 0.1 * getattr(ref, name).grad
                            getattr(sync, name).sub_(step_)
                            getattr(ref, name).sub_(step_)
                    for layer in (sync, ref):
                        layer.zero_grad()
                for name, buf in ref.named_buffers():
                    assert torch.allclose(getattr(sync, name).to(buf.dtype), buf, **TOL), name
            sync.eval(), ref.eval()
            X = torch.randn(5, *shape, generator=gen, dtype=torch.float64)
            if track:
                assert torch.allclose(sync(X), ref(X), **TOL), "eval mode"
        except AssertionError as err:
            failures.append(f"{label}: {err}")
        except Exception:  # noqa: BLE001 - report, do not hang the other processes
            failures.append(f"{label}:\n{traceback.format_exc()}")
    # The teaching function of the backward pass, called directly on this process's slice of
    # a batch split unequally: its dz is autograd's through batch norm on the whole batch.
    gen = torch.Generator().manual_seed(99)
    sizes = [2 + 3 * r for r in range(world)]
    start, C = sum(sizes[:rank]), 3
    X = 1.0 + 2.0 * torch.randn(sum(sizes), C, 2, generator=gen, dtype=torch.float64)
    G = torch.randn(X.shape, generator=gen, dtype=torch.float64)
    gamma = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
    x_all = X.clone().requires_grad_(True)
    mu, var = X.mean(dim=(0, 2)), X.var(dim=(0, 2), unbiased=False)
    z_norm_all = (x_all - x_all.mean(dim=(0, 2))[:, None]) / torch.sqrt(
        x_all.var(dim=(0, 2), unbiased=False) + 1e-5)[:, None]
    ((z_norm_all * gamma[:, None]) * G).sum().backward()
    inv_std = torch.rsqrt(var + 1e-5)
    z_norm = ((X - mu[:, None]) * inv_std[:, None])[start:start + sizes[rank]]
    dz_tilde = G[start:start + sizes[rank]]
    dz, dgamma_local, dbeta_local = sync_bn_backward(
        dz_tilde, z_norm, gamma, inv_std, float(X.numel() // C))
    if not torch.allclose(dz, x_all.grad[start:start + sizes[rank]], **TOL):
        failures.append("sync_bn_backward: dz differs from autograd on the whole batch")
    if not torch.allclose(dbeta_local, dz_tilde.sum(dim=(0, 2)), **TOL) or not torch.allclose(
            dgamma_local, (dz_tilde * z_norm).sum(dim=(0, 2)), **TOL):
        failures.append("sync_bn_backward: the local shares of dgamma, dbeta are wrong")
    # The traffic each training step sends: 2C + 1 values all-gathered forward (each process
    # receives everyone's), 2C all-reduced backward.
    C = 6
    layer = SyncBatchNorm(C, dtype=torch.float64)
    with count_traffic() as calls:
        layer(torch.randn(3, C, 4, 4, dtype=torch.float64, requires_grad=True)).sum().backward()
    expected = [Exchange("all_gather", (2 * C + 1) * 8, world * (2 * C + 1) * 8),
                Exchange("all_reduce", 2 * C * 8, 2 * C * 8)] if world > 1 else []
    if calls != expected:
        failures.append(f"traffic: {calls}, expected {expected}")
    failures += _check_float32_offsets(rank, world)
    # A group of one process is batch norm, exactly (no all_reduce at all).
    return failures


# float32 at large offsets: what each process sends is exact (centered statistics, Chan's
# merge), but the means it sends are float32 numbers, exact only to half a unit in their last
# place, EPS32 * |mu| / 2; normalizing with the merged mean moves z_norm by up to that over
# sigma. Hence 8 * EPS32 * (1 + |mu| / sigma): 5e-3 at mu = 1e4, sigma = 1 (the error is
# about 5e-4 there). E[z^2] - mu^2, which this layer all-reduced before, is off by more than
# 0.1 there (tests/test_normalization.py::test_naive_variance_would_fail_...).
EPS32 = float(torch.finfo(torch.float32).eps)
OFFSETS = [(0.0, 1.0), (1e4, 1.0), (1e3, 0.1), (10.0, 1e-3)]


def _check_float32_offsets(rank: int, world: int) -> list[str]:
    failures = []
    sizes = [3 + 2 * r for r in range(world)]
    start = sum(sizes[:rank])
    for mean, std in OFFSETS:
        gen = torch.Generator().manual_seed(11)
        X = (mean + std * torch.randn(sum(sizes), 4, 3, generator=gen)).float()
        X64 = X.double()
        ref = ((X64 - X64.mean(dim=(0, 2), keepdim=True))
               / torch.sqrt(X64.var(dim=(0, 2), unbiased=False, keepdim=True) + 1e-5))
        layer = SyncBatchNorm(4)
        y = layer(X[start:start + sizes[rank]])
        error = (y.double() - ref[start:start + sizes[rank]]).abs().max().item()
        if y.dtype != torch.float32 or error > 8 * EPS32 * (1 + mean / std):
            failures.append(f"float32, mean {mean}, std {std}: error {error:.2e}")
        running = layer.running_var.double()
        expected = 0.9 + 0.1 * X64.var(dim=(0, 2), unbiased=True)
        # The merged variance inherits the means' error through delta ** 2: the same bound,
        # in units of sigma ** 2, plus float32's storage of a number near 1.
        bound = 0.1 * 8 * EPS32 * (1 + mean / std) * std ** 2 + 4 * EPS32
        if (running - expected).abs().max() > bound:
            failures.append(f"float32, mean {mean}, std {std}: running_var {running}")
    return failures


def _worker(rank: int, world: int, port: int, queue) -> None:
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
        torch.set_num_threads(1)
        failures = _check_all(rank, world)
        dist.barrier()
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        failures = [traceback.format_exc()]
    queue.put((rank, failures))


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_sync_batchnorm_equals_batchnorm_on_the_concatenated_batch(world):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    failures = [f"rank {r}: {msg}" for r in sorted(results) for msg in results[r]]
    assert not failures, "\n".join(failures[:10])


# ---- one process, no process group ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 4), (8, 4, 5), (8, 4, 3, 3)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_without_distributed_it_is_batch_norm(shape, momentum):
    assert not dist.is_initialized()
    torch.manual_seed(0)
    sync = SyncBatchNorm(4, momentum=momentum)
    ref = (torch.nn.BatchNorm1d if len(shape) <= 3 else torch.nn.BatchNorm2d)(4, momentum=momentum)
    assert list(sync.state_dict()) == list(ref.state_dict())
    assert list(sync.state_dict()) == list(torch.nn.SyncBatchNorm(4).state_dict())
    for _ in range(3):
        x = torch.randn(shape, requires_grad=True)
        y, y_ref = sync(x), ref(x)
        g = torch.randn_like(y)
        gx, = torch.autograd.grad(y, x, g)
        gx_ref, = torch.autograd.grad(y_ref, x, g)
        assert torch.allclose(y, y_ref, atol=1e-5) and torch.allclose(gx, gx_ref, atol=1e-5)
    for a, b in zip(sync.state_dict().values(), ref.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_same_constructor_as_torch():
    import inspect
    ours = list(inspect.signature(SyncBatchNorm).parameters)
    theirs = list(inspect.signature(torch.nn.SyncBatchNorm).parameters)
    assert ours == theirs


def test_local_moments_are_count_mean_and_m2():
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64) + 4
    sent = local_moments(x)
    assert sent.shape == (7,)
    assert sent[0] == 20
    assert torch.allclose(sent[1:4], x.mean(dim=(0, 2, 3)))
    assert torch.allclose(sent[4:], x.var(dim=(0, 2, 3), unbiased=False) * 20)


def test_a_refused_batch_changes_no_state():
    layer = SyncBatchNorm(3, momentum=None)
    layer(torch.randn(4, 3))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    bad = torch.randn(4, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        layer(bad)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_convert_sync_batchnorm_swaps_every_batch_norm():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                        nn.Sequential(nn.Linear(6, 5, bias=False), cnn.BatchNorm1d(5, momentum=None)),
                        norms.GroupNorm(1, 5), nn.Linear(5, 2))
    for _ in range(3):
        net(torch.randn(16, 4))
    net[1].weight.requires_grad_(False)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(7, 4)
    y_before = net(x)
    converted = convert_sync_batchnorm(net)
    assert converted is net
    kinds = [type(m).__name__ for m in converted.modules()]
    assert kinds.count("SyncBatchNorm") == 2 and "BatchNorm1d" not in kinds
    assert isinstance(converted[4], norms.GroupNorm)
    assert converted[3][1].momentum is None
    assert not converted[1].weight.requires_grad and not converted[1].training
    for k, v in converted.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.allclose(converted(x), y_before)
    single = convert_sync_batchnorm(torch.nn.BatchNorm2d(3))
    assert isinstance(single, SyncBatchNorm)
    assert SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(2)).num_features == 2


def test_batch_renorm_is_not_converted():
    layer = norms.BatchRenorm1d(3)
    assert convert_sync_batchnorm(layer) is layer


def test_bad_input_errors():
    layer = SyncBatchNorm(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 3))
    with pytest.raises(ValueError, match="num_features=3"):
        layer(torch.randn(4, 5))
    with pytest.raises(ValueError, match="2D"):
        layer(torch.randn(3))


def test_sync_batch_stats_needs_a_process_group():
    with pytest.raises((RuntimeError, ValueError)):
        sync_batch_stats(torch.randn(4, 3))
