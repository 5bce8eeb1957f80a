r"""Batch norm across processes: synchronized batch norm written from scratch.

In data-parallel training each of :math:`P` processes holds a slice of the mini-batch. A
plain batch norm layer in each process normalizes with the statistics of its own slice only
("local BN"): with 8 examples per process it is batch-8 batch norm, however many processes
there are. :class:`SyncBatchNorm` makes the processes agree on the statistics of the whole
batch: each sends its slice's count, mean and sum of squared deviations per channel, and
every process merges them exactly (:mod:`course_lib.distributed.sync_bn` says how, and how it
compares with ``torch.nn.SyncBatchNorm``).

It works on the CPU with the gloo backend (``torch.nn.SyncBatchNorm`` refuses CPU tensors)
and, unchanged, with NCCL on GPUs. When ``torch.distributed`` is not initialized, or the group
has one process, it is :class:`course_lib.nn.BatchNorm1d` (for any ``(N, C, *)`` input).

Modules: :mod:`~course_lib.distributed.sync_bn` (the layer, :func:`sync_batch_stats`,
:func:`local_moments`, :func:`sync_bn_backward`, :func:`convert_sync_batchnorm`) and
:mod:`~course_lib.distributed.collectives` (the collectives, :func:`count_traffic`,
:func:`free_port`). The data-parallel training script that uses them is an experiment:
``python -m course_lib.experiments.lab.data_parallel``.
"""

from course_lib.distributed.collectives import Exchange, count_traffic, free_port
from course_lib.distributed.sync_bn import (
    SyncBatchNorm,
    SyncBatchNormFunction,
    convert_sync_batchnorm,
    local_moments,
    sync_batch_stats,
    sync_bn_backward,
)

__all__ = [
    "Exchange",
    "SyncBatchNorm",
    "SyncBatchNormFunction",
    "convert_sync_batchnorm",
    "count_traffic",
    "free_port",
    "local_moments",
    "sync_batch_stats",
    "sync_bn_backward",
]
