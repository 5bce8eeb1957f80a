r"""Predicting with a batch norm network: what changes between training and evaluation mode
(chapter 6).

In evaluation mode (``model.eval()``) every batch norm layer normalizes with its fixed running
statistics, so an example's prediction depends on that example only:

.. math:: z_{\text{norm}}^{(i)} = \frac{z^{(i)} - \mu}{\sqrt{\sigma^2 + \epsilon}} .

In training mode it normalizes with the statistics of the batch the example arrived in,

.. math:: z_{\text{norm}}^{(i)} = \frac{z^{(i)} - \mu^{\{t\}}}{\sqrt{\sigma^{2\{t\}} + \epsilon}},

so the same example can get a different prediction in a different batch, small batches give
noisy statistics (a batch of 2 normalizes every unit to :math:`\pm 1`), and a batch of one
cannot be normalized at all. :func:`predict_in_batches` predicts a data set in shuffled batches
of a given size, in whatever mode the model is in, and :func:`batch_dependence` turns that into
the two numbers chapter 6 reports per batch size: the accuracy, and the share of examples whose
prediction changes when the batches are reshuffled.

Both leave the model as they found it (:func:`course_lib.borrow.as_found`), so probing a model in
training mode does not move its running statistics. (A real forward pass in training mode does: that is the other half of a
forgotten ``model.eval()``, shown in the chapter.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from course_lib import _checks
from course_lib.borrow import as_found, batchnorm_layers

__all__ = ["predict_in_batches", "batch_dependence"]


def _in_training_mode(model: nn.Module) -> bool:
    return any(bn.training for _, bn in batchnorm_layers(model))


def predict_in_batches(
    model: nn.Module,
    X: Tensor,
    batch_size: int,
    n_shuffles: int = 1,
    seed: int = 0,
    shuffle: bool = True,
) -> Tensor:
    r"""Predicted classes for every row of ``X``, computed in shuffled batches of ``batch_size``.

    For each of ``n_shuffles`` random permutations of ``X``, the permuted rows are split into
    consecutive batches of ``batch_size`` (a last batch of a single example joins the batch
    before it, since training mode cannot normalize one example), the model runs on each batch
    *in its own mode*, and the predictions (``argmax`` of the outputs) are put back in ``X``'s
    row order. In evaluation mode every shuffle gives the same predictions; in training mode
    they depend on the batch-mates. With ``shuffle=False`` the batches are consecutive rows of
    ``X`` in its own order (e.g. a test set sorted by label), the same for every repetition.

    The model is left as it was found (:func:`course_lib.borrow.as_found`): running statistics
    and random states are put back afterwards. It runs under ``torch.no_grad()``.

    Args:
        model: a classifier returning ``(N, n_classes)`` scores, in training or eval mode.
        X: ``(N, ...)`` inputs, ``N >= 2``.
        batch_size: examples per batch, ``1 <= batch_size``; 1 only in evaluation mode.
        n_shuffles: how many random batchings.
        seed: seeds the permutations (``torch.Generator``).
        shuffle: ``False`` keeps ``X``'s order.

    Returns:
        int64 tensor ``(n_shuffles, N)``: row ``k`` holds the predictions of shuffle ``k``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``X`` not a tensor.
        ValueError: ``batch_size == 1`` with batch norm in training mode, ``X`` with fewer
            than 2 rows, or counts below their minimum.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        >>> X = torch.randn(100, 4)
        >>> p_eval = predict_in_batches(model.eval(), X, batch_size=10, n_shuffles=3)
        >>> bool((p_eval == p_eval[0]).all())                      # eval: batch-independent
        True
        >>> p_train = predict_in_batches(model.train(), X, batch_size=4, n_shuffles=3)
        >>> p_train.shape
        torch.Size([3, 100])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module (got {type(model).__name__})")
    if not isinstance(X, Tensor):
        raise TypeError(
            f"expected X to be a torch.Tensor (got {type(X).__name__}); convert with "
            "torch.as_tensor(X, dtype=torch.float32)"
        )
    batch_size = _checks.check_int(batch_size, "batch_size", 1)
    n_shuffles = _checks.check_int(n_shuffles, "n_shuffles", 1)
    n = X.shape[0] if X.ndim >= 1 else 0
    if n < 2:
        raise ValueError(f"expected X of shape (N, ...) with N >= 2 examples (got shape {tuple(X.shape)})")
    if batch_size == 1 and _in_training_mode(model):
        raise ValueError(
            "batch_size=1 with batch norm in training mode: a batch of one example has mean = "
            "the example and variance 0, so every unit would output beta whatever the input "
            "(PyTorch refuses it). Call model.eval() to predict single examples with the "
            "running statistics, or use batch_size >= 2"
        )
    gen = torch.Generator().manual_seed(int(seed))
    predictions = torch.empty((n_shuffles, n), dtype=torch.int64)
    with as_found(model, state=True), torch.no_grad():
        for k in range(n_shuffles):
            order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
            chunks = list(torch.split(order, batch_size))
            if len(chunks) > 1 and chunks[-1].numel() == 1:
                chunks[-2:] = [torch.cat(chunks[-2:])]
            for idx in chunks:
                predictions[k, idx] = model(X[idx]).argmax(dim=1).cpu()
    return predictions


def batch_dependence(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    batch_sizes: Sequence[int],
    n_shuffles: int = 10,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    r"""How much a model's predictions depend on the batch, for each batch size.

    Runs :func:`predict_in_batches` with ``n_shuffles`` random batchings per batch size (the
    model in its own mode, left as found) and measures:

    - ``accuracy``: mean accuracy over the shuffles;
    - ``accuracy_spread``: the standard deviation of the accuracy across shuffles (0 in eval
      mode);
    - ``changed``: the share of examples that received more than one distinct prediction
      across the shuffles (0 in eval mode: each prediction depends on its example only).

    Args:
        model: a classifier in training or evaluation mode.
        X: ``(N, ...)`` inputs; y: ``(N,)`` int labels.
        batch_sizes: the batch sizes to compare (1 only in evaluation mode).
        n_shuffles: random batchings per batch size, at least 2 for ``changed`` to mean
            anything.
        seed: seeds the batchings; every batch size uses the same seed.

    Returns:
        ``{"batch_size", "accuracy", "accuracy_spread", "changed"}``, float64 arrays of
        ``len(batch_sizes)``.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        >>> X, y = torch.randn(60, 4), torch.randint(0, 3, (60,))
        >>> r = batch_dependence(model.eval(), X, y, [1, 60], n_shuffles=2)
        >>> r["changed"].tolist(), bool(r["accuracy"][0] == r["accuracy"][1])
        ([0.0, 0.0], True)
    """
    if not isinstance(y, Tensor) or y.ndim != 1 or y.shape[0] != getattr(X, "shape", (None,))[0]:
        raise ValueError(
            "expected y to be a 1D tensor of labels with one entry per row of X (got "
            f"{type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))})"
        )
    n_shuffles = _checks.check_int(n_shuffles, "n_shuffles", 1)
    accuracy, spread, changed = [], [], []
    labels = y.cpu()
    for m in batch_sizes:
        preds = predict_in_batches(model, X, m, n_shuffles=n_shuffles, seed=seed)
        acc = (preds == labels).double().mean(dim=1)
        accuracy.append(float(acc.mean()))
        spread.append(float(acc.std(unbiased=False)))
        changed.append(float((preds != preds[0]).any(dim=0).double().mean()))
    return {
        "batch_size": np.asarray(batch_sizes, dtype=np.float64),
        "accuracy": np.asarray(accuracy),
        "accuracy_spread": np.asarray(spread),
        "changed": np.asarray(changed),
    }
