"""Chapter 8's experiment on batch norm across processes: local BN against SyncBN.

:func:`run_split_batch_experiment` starts ``world`` processes on this machine (the ``spawn``
start method, so it works from a Jupyter kernel; gloo on 127.0.0.1, a free port), each with
``local_batch`` examples, and measures in them:

- ``noise``: over many mini-batches drawn from a population with mean 0 and variance 1, the
  standard deviation of the batch mean each process normalizes with, for local batch norm (its
  own slice) and for :class:`course_lib.distributed.SyncBatchNorm` (the whole batch);
- ``equal``: the largest difference between SyncBatchNorm on each process's slice and
  :class:`course_lib.nn.BatchNorm1d`/``2d`` on the concatenated batch in one process, for the
  output, the input gradient, the parameter gradients (summed over the processes, as DDP
  does) and the running statistics, over several training steps with unequal slices too;
- ``traffic``: the bytes each SyncBatchNorm layer sends per training step (all-gathered
  forward, with the bytes each process receives, and all-reduced backward), and the bytes
  of its input activations, for a dense ``(N, C)`` and a convolutional ``(N, C, H, W)`` layer.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from dataclasses import dataclass
import time
import traceback
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from course_lib import nn as cnn
from course_lib import norm_layers
from course_lib.distributed import SyncBatchNorm, count_traffic, free_port, sync_batch_stats
from course_lib.experiments import claims

__all__ = ["GhostSettings", "SplitSettings", "ghost_noise", "run_split_batch_experiment",
           "split_batches"]


def _noise(rank: int, world: int, local_batch: int, draws: int, channels: int,
           seed: int) -> dict:
    gen = torch.Generator().manual_seed(10_000 * seed + 100 + rank)  # each process its own examples
    z = torch.randn(draws, local_batch, channels, generator=gen, dtype=torch.float64)
    local_mu = z.mean(dim=1)  # what local BN normalizes with, one row per mini-batch
    # What SyncBN normalizes with: the statistics of every process's slice, merged.
    sync_mu = torch.stack([sync_batch_stats(batch)[0] for batch in z])
    gathered = [torch.zeros_like(local_mu) for _ in range(world)]
    dist.all_gather(gathered, local_mu)
    return {"local_std": torch.cat(gathered).std().item(), "sync_std": sync_mu.std().item()}


def _equality(rank: int, world: int, local_batch: int) -> float:
    """Largest difference between SyncBN on slices and BN on the concatenated batch."""
    worst = 0.0
    for shape, sizes in (((16,), [local_batch] * world),
                         ((4, 3, 3), [local_batch] * world),
                         ((16,), [1 + (k * 5) % 9 for k in range(world)])):  # unequal slices
        ref_cls = cnn.BatchNorm1d if len(shape) == 1 else cnn.BatchNorm2d
        sync = SyncBatchNorm(shape[0], dtype=torch.float64)
        ref = ref_cls(shape[0], dtype=torch.float64)
        start, n = sum(sizes[:rank]), sizes[rank]
        gen = torch.Generator().manual_seed(7)  # the same global batches everywhere
        for _ in range(5):
            X = 2.0 + 3.0 * torch.randn(sum(sizes), *shape, generator=gen, dtype=torch.float64)
            G = torch.randn(X.shape, generator=gen, dtype=torch.float64)
            x_all, x = X.clone().requires_grad_(True), X[start:start + n].clone().requires_grad_(True)
            y_all, y = ref(x_all), sync(x)
            (y_all * G).sum().backward()
            (y * G[start:start + n]).sum().backward()
            diffs = [(y - y_all[start:start + n]).abs().max(),
                     (x.grad - x_all.grad[start:start + n]).abs().max()]
            for name in ("weight", "bias"):
                grad = getattr(sync, name).grad.clone()
                dist.all_reduce(grad)
                diffs.append((grad - getattr(ref, name).grad).abs().max())
            with torch.no_grad():  # the same SGD step in both
                for name in ("weight", "bias"):
                    step = 0.1 * getattr(ref, name).grad
                    getattr(sync, name).sub_(step)
                    getattr(ref, name).sub_(step)
            sync.zero_grad(), ref.zero_grad()
            diffs += [(sync.running_mean - ref.running_mean).abs().max(),
                      (sync.running_var - ref.running_var).abs().max()]
            worst = max(worst, max(float(d.detach()) for d in diffs))
    return worst


def _traffic(local_batch: int) -> list[dict]:
    rows = []
    for shape in ((100,), (64, 16, 16)):
        layer = SyncBatchNorm(shape[0])
        x = torch.randn(local_batch, *shape, requires_grad=True)
        with count_traffic() as calls:
            layer(x).sum().backward()
        forward, backward = calls  # an all-gather, then an all-reduce
        rows.append({"shape": (local_batch, *shape), "channels": shape[0],
                     "forward_bytes": forward.sent,
                     "forward_received_bytes": forward.received,
                     "backward_bytes": backward.sent,
                     "activation_bytes": x.numel() * x.element_size()})
    return rows


def _worker(rank: int, world: int, port: int, local_batch: int, draws: int, seed: int,
            queue: Any) -> None:
    try:
        torch.set_num_threads(1)
        t0 = time.perf_counter()
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)
        result = {"noise": _noise(rank, world, local_batch, draws, channels=16, seed=seed),
                  "equal": _equality(rank, world, local_batch),
                  "traffic": _traffic(local_batch)}
        worst = torch.tensor([result["equal"]], dtype=torch.float64)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        result["equal"] = worst.item()
        result["seconds_in_worker"] = time.perf_counter() - t0
        dist.destroy_process_group()
        queue.put((rank, result))
    except Exception:  # noqa: BLE001 - hand the error to the parent instead of hanging it
        queue.put((rank, traceback.format_exc()))


def run_split_batch_experiment(
    world: int = 4,
    local_batch: int = 8,
    draws: int = 300,
    seed: int = 0,
    timeout: float = 120.0,
) -> dict:
    """Start ``world`` processes with ``local_batch`` examples each; return process 0's results.

    Returns ``{"noise": {"local_std", "sync_std"}, "equal": float, "traffic": [...]}`` (see
    the module docstring); ``noise`` also gets the theory, ``1 / sqrt(batch)`` for both.

    Raises:
        RuntimeError: if a process fails (with its traceback) or does not answer in time.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, local_batch, draws, seed, queue),
                         daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(results) < world:
            try:
                rank, value = queue.get(timeout=0.5)
                results[rank] = value
            except queue_module.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the {world} processes did not all report (exit codes "
                        f"{[p.exitcode for p in procs]}); in a script, start them under "
                        "`if __name__ == '__main__':`, as the spawn start method requires"
                    ) from None
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    failed = {r: v for r, v in results.items() if isinstance(v, str)}
    if failed:
        raise RuntimeError("a process failed:\n" + "\n".join(failed.values()))
    out = results[0]
    out["noise"]["local_theory"] = 1 / np.sqrt(local_batch)
    out["noise"]["sync_theory"] = 1 / np.sqrt(local_batch * world)
    out["world"], out["local_batch"] = world, local_batch
    return out


@dataclass(frozen=True)
class SplitSettings:
    """``world`` processes with ``local_batch`` examples each, ``draws`` mini-batches for the
    noise of the batch mean."""

    world: int = 4
    local_batch: int = 8
    draws: int = 300


@claims.claim(
    "sync-bn-is-whole-batch-bn",
    chapter=8,
    statement="Across 4 processes of 8 examples, local batch norm normalizes with the noise of "
              "a batch of 8 and SyncBN with that of the whole batch of 32 (the batch mean's "
              "spread within 15% of 1/sqrt(8) and 1/sqrt(32)), and SyncBN on the slices "
              "equals batch norm on the concatenated batch.",
    settings=SplitSettings(),
    slow=True,
    section="sync-bn",
    # Four processes start per seed (seconds each); the seeds change only the sampling noise
    # that the 15% bound is made for, so three claim seeds suffice.
    seeds=claims.CLAIM_SEEDS[:3],
)
def split_batches(settings: SplitSettings, seed: int) -> claims.Evidence:
    # 300 draws estimate a standard deviation to about 1/sqrt(2 * 300) = 4%: 15% is over
    # three of those, for every seed and both layers.
    out = run_split_batch_experiment(world=settings.world, local_batch=settings.local_batch,
                                     draws=settings.draws, seed=seed)
    noise = out["noise"]
    n = {"local BN: batch mean's spread / 1/sqrt(8)":
         float(noise["local_std"] / noise["local_theory"]),
         "SyncBN: batch mean's spread / 1/sqrt(32)":
         float(noise["sync_std"] / noise["sync_theory"]),
         "largest difference, SyncBN vs whole-batch BN": out["equal"]}
    ratios = list(n)[:2]
    return claims.Evidence(
        numbers=n,
        checks=[*(claims.below(f"|{k} - 1|", abs(n[k] - 1), 0.15) for k in ratios),
                claims.below("largest difference, SyncBN vs whole-batch BN", out["equal"], 1e-10)],
        result=out,
    )


@dataclass(frozen=True)
class GhostSettings:
    """``draws`` batches of ``batch`` examples of ``channels`` standard-normal values, split
    into ghost batches of ``ghost``."""

    draws: int = 500
    batch: int = 32
    ghost: int = 8
    channels: int = 4


def ghost_noise(settings: GhostSettings, seed: int) -> dict[str, Any]:
    """Ghost batch norm on one batch against batch norm per ghost batch, and the spread of
    the means the whole batch and its ghost batches normalize with."""
    s = settings
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(s.draws, s.batch, s.channels, generator=gen, dtype=torch.float64)
    ghost_out = norm_layers.ghost_batch_norm(z[0], s.ghost, None, None, training=True)
    per_chunk = torch.cat([cnn.batch_norm(chunk, None, None, training=True)
                           for chunk in z[0].split(s.ghost)])
    ghost_means = z.reshape(s.draws, s.batch // s.ghost, s.ghost, s.channels).mean(dim=2)
    return {"same as batch norm per ghost batch": bool(torch.equal(ghost_out, per_chunk)),
            "whole": float(z.mean(dim=1).std()), "ghost": float(ghost_means.std())}


@claims.claim(
    "ghost-bn-is-small-batch-bn",
    chapter=8,
    statement="Ghost batch norm is batch norm per ghost batch, so it normalizes with the noise "
              "of the ghost batch: the spread of the means it uses is within 5% of "
              "1/sqrt(ghost size).",
    settings=GhostSettings(),
    section="ghost-bn",
)
def ghost_batches(settings: GhostSettings, seed: int) -> claims.Evidence:
    # 500 x 4 x 4 ghost means estimate their spread to about 1/sqrt(2 * 8000) = 0.8%.
    out = ghost_noise(settings, seed)
    n = {"spread of the whole batch's mean": out["whole"],
         "spread of the ghost batches' means": out["ghost"],
         "ghost spread / 1/sqrt(ghost)": out["ghost"] * settings.ghost ** 0.5}
    return claims.Evidence(
        numbers=n,
        checks=[claims.above("ghost BN equals batch norm per ghost batch",
                             float(out["same as batch norm per ghost batch"]), 0.5),
                claims.below("|ghost spread / 1/sqrt(ghost) - 1|",
                             abs(n["ghost spread / 1/sqrt(ghost)"] - 1), 0.05)],
        result=out,
    )
