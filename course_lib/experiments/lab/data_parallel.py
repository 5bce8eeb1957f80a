"""Data-parallel training of the digits network, with local or synchronized batch norm.

Run it on one process::

    python -m course_lib.experiments.lab.data_parallel --bn sync

or on several, one per CPU core (or GPU), with ``torchrun``::

    torchrun --nproc_per_node=4 -m course_lib.experiments.lab.data_parallel --bn sync --batch-size 8

Each process holds a full copy of the model (``DistributedDataParallel``) and, at every step,
its own slice of ``--batch-size`` examples of the global batch (``--batch-size`` times the
number of processes); DDP averages the gradients, so every copy takes the same step. ``--bn``
picks what the batch norm layers normalize with: ``local`` (each process its own slice's
statistics, plain ``BatchNorm1d``), ``sync`` (the whole global batch's,
:class:`course_lib.distributed.SyncBatchNorm`) or ``none`` (no batch norm).

Under ``torchrun`` the process group comes from the environment it sets (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); alone, the script starts a group of one
process on 127.0.0.1. The gloo backend runs on CPUs; ``--backend nccl`` needs one GPU per
process. Process 0 prints the result and, with ``--json PATH``, writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from course_lib.distributed import convert_sync_batchnorm, free_port
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import make_mlp

BN_CHOICES = ("local", "sync", "none")


@dataclass
class Result:
    """What process 0 reports after training."""

    world_size: int
    bn: str
    local_batch: int
    global_batch: int
    steps: int
    test_accuracy: float
    final_loss: float
    params_equal_on_all_ranks: bool
    running_stats_equal_on_all_ranks: bool | None
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.experiments.lab.data_parallel",
        description="Data-parallel training of the digits MLP with local or synchronized BN.",
    )
    parser.add_argument("--bn", choices=BN_CHOICES, default="sync",
                        help="batch norm statistics per process (local), over all "
                             "processes (sync), or no batch norm (none). Default: sync")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="examples per process per step (the local batch). Default: 8")
    parser.add_argument("--steps", type=int, default=200, help="training steps. Default: 200")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate. Default: 0.1")
    parser.add_argument("--seed", type=int, default=0, help="seed. Default: 0")
    parser.add_argument("--backend", default="gloo",
                        help="torch.distributed backend: gloo (CPU) or nccl (GPU). Default: gloo")
    parser.add_argument("--json", default=None, help="write process 0's result to this file")
    return parser.parse_args(argv)


def check_settings(args: argparse.Namespace, world_size: int) -> None:
    """Refuse settings that cannot work, with an error that says what to do instead."""
    if args.backend not in ("gloo", "nccl", "mpi"):
        raise SystemExit(f"error: unknown --backend {args.backend!r}; use gloo (CPU) or nccl (GPU)")
    if not dist.is_backend_available(args.backend):
        raise SystemExit(
            f"error: the {args.backend} backend is not available in this PyTorch build; "
            "use --backend gloo, which runs on CPUs"
        )
    if args.backend == "nccl" and torch.cuda.device_count() < world_size:
        raise SystemExit(
            f"error: --backend nccl needs one CUDA GPU per process ({world_size} processes, "
            f"{torch.cuda.device_count()} GPUs visible); on CPUs use --backend gloo"
        )
    if args.batch_size < 1 or args.steps < 1:
        raise SystemExit("error: --batch-size and --steps must be at least 1")
    if args.bn == "local" and args.batch_size == 1:
        raise SystemExit(
            "error: with --bn local each process normalizes its own batch, and a batch of one "
            "example cannot be batch-normalized in training (its variance is 0); use "
            "--batch-size 2 or more, or --bn sync to normalize over all processes' examples"
        )
    if args.bn == "sync" and args.batch_size * world_size == 1:
        raise SystemExit(
            "error: --bn sync with one process and --batch-size 1 normalizes a batch of one "
            "example, which has no variance; use --batch-size 2 or more, or more processes"
        )


def init_process_group(backend: str) -> tuple[int, int]:
    """Join the group torchrun describes in the environment, or start one of one process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group(backend, init_method="env://")
    else:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{free_port()}",
                                rank=0, world_size=1)
    return dist.get_rank(), dist.get_world_size()


def build_model(bn: str, seed: int) -> nn.Module:
    """The digits MLP (64 -> 100 -> 100 -> 10, ReLU), with the chosen batch norm."""
    model = make_mlp(64, [100, 100], 10, activation="relu",
                     bn=None if bn == "none" else "before", seed=seed)
    return convert_sync_batchnorm(model) if bn == "sync" else model


def _equal_on_all_ranks(tensors: list[torch.Tensor]) -> bool:
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def train(args: argparse.Namespace, rank: int, world_size: int) -> Result:
    """Train with DDP; every process draws the same global batch and takes its slice."""
    start = time.perf_counter()
    device = torch.device(f"cuda:{rank % max(1, torch.cuda.device_count())}"
                          if args.backend == "nccl" else "cpu")
    data = load_digits_split(seed=args.seed).to(device)
    model = DistributedDataParallel(build_model(args.bn, args.seed).to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)  # the same order everywhere
    global_batch = args.batch_size * world_size
    order = torch.randperm(data.n_train, generator=generator)
    position, loss = 0, torch.tensor(float("nan"))
    for _ in range(args.steps):
        if position + global_batch > data.n_train:
            order, position = torch.randperm(data.n_train, generator=generator), 0
        batch = order[position:position + global_batch]
        position += global_batch
        mine = batch[rank * args.batch_size:(rank + 1) * args.batch_size].to(device)
        loss = nn.functional.cross_entropy(model(data.X_train[mine]), data.y_train[mine])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net = model.module.eval()
    with torch.no_grad():
        accuracy = (net(data.X_test).argmax(dim=1) == data.y_test).double().mean().item()
    buffers = [b for name, b in net.named_buffers() if name.endswith(("mean", "var"))]
    return Result(
        world_size=world_size, bn=args.bn, local_batch=args.batch_size,
        global_batch=global_batch, steps=args.steps, test_accuracy=accuracy,
        final_loss=loss.item(), params_equal_on_all_ranks=_equal_on_all_ranks(
            list(net.parameters())),
        running_stats_equal_on_all_ranks=_equal_on_all_ranks(buffers) if buffers else None,
        seconds=time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    check_settings(args, world_size)
    torch.set_num_threads(1)  # one core per process; the network is small
    rank, world_size = init_process_group(args.backend)
    try:
        result = train(args, rank, world_size)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        print(f"{result.world_size} process(es), --bn {result.bn}, local batch "
              f"{result.local_batch} (global {result.global_batch}), {result.steps} steps: "
              f"test accuracy {result.test_accuracy:.3f}")
        print(f"parameters equal on all processes: {result.params_equal_on_all_ranks}; "
              f"running statistics equal: {result.running_stats_equal_on_all_ranks}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(asdict(result), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
