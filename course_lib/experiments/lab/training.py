"""Mini-batch training on a :class:`~course_lib.experiments.lab.data.Split`, recorded step by step.

:func:`train` runs mini-batch gradient descent on the cross-entropy loss and returns a
:class:`History`: the mini-batch loss of every step, train and test accuracy every
``eval_every`` steps, and whatever optional recorder callbacks measure at those steps. It is
deterministic (the same seed and the same initial model give a bit-identical history on the
same machine), fast (no ``DataLoader``: the data are a few tensors and batches are index
slices, so the 3 x 100 MLP of chapter 3 does about a thousand steps a second on one CPU
core), and robust: a run whose loss becomes NaN or
infinite stops cleanly with ``History.diverged = True``, so a learning-rate sweep never
crashes.

It is the course's one training loop. What the chapters vary is passed in, not copied:

- ``optimizer``: a name from :data:`OPTIMIZERS` (with ``lr``) or a factory
  ``params -> torch.optim.Optimizer`` for anything else (weight decay, a learning rate per
  layer);
- ``after_step``: a hook called with ``(step, model)`` at step 0 and after every update, whose
  numbers land in ``History.step_records`` (chapter 7 records weight norms with it);
- ``bn_mode="frozen"``: batch norm normalizes with its running statistics and leaves them
  alone while every parameter, ``gamma`` and ``beta`` included, still learns (fine-tuning).

Example:
    >>> from course_lib.experiments.lab.data import load_digits_split
    >>> from course_lib.experiments.lab.models import make_mlp
    >>> data = load_digits_split(seed=0)
    >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
    >>> history = train(model, data, steps=2000, lr=0.5, eval_every=20)
    >>> history
    History(2000 steps, final train acc 1.000, test acc 0.978)
    >>> history.steps_to_reach(0.9)     # first evaluation with >= 90% test accuracy
    60
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.experiments.lab.data import Split
from course_lib.borrow import as_found, batchnorm_layers

__all__ = [
    "BN_MODES",
    "History",
    "OPTIMIZERS",
    "OptimizerFactory",
    "PROGRESS_MIN_STEPS",
    "Recorder",
    "StepHook",
    "evaluate",
    "train",
]

#: ``record(step, model) -> {"name": value, ...}``, called at every evaluation step.
Recorder = Callable[[int, nn.Module], Mapping[str, float]]

#: ``after_step(step, model) -> {"name": value, ...} or None``, called at step 0 and after
#: every parameter update.
StepHook = Callable[[int, nn.Module], "Mapping[str, float] | None"]

#: ``factory(params) -> optimizer``: builds the optimizer over the model's parameters (a list),
#: e.g. ``lambda params: torch.optim.SGD(params, lr=0.5, weight_decay=0.01)``.
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]

#: What batch norm does during the training passes of :func:`train`: ``"train"`` normalizes
#: with each mini-batch's statistics and updates the running ones (``model.train()``);
#: ``"frozen"`` keeps every batch norm layer in evaluation mode, so it normalizes with its
#: running statistics and leaves them unchanged, while ``gamma`` and ``beta`` still learn.
BN_MODES = ("train", "frozen")

#: The optimizers :func:`train` knows, by name, and their settings besides the learning rate.
#: ``"momentum"`` is PyTorch's heavy ball: ``v = 0.9 v + g; w = w - lr v``. ``"adam"`` uses
#: PyTorch's defaults, ``betas=(0.9, 0.999)`` (Adam's betas, not batch norm's ``beta``).
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "adam": (torch.optim.Adam, {}),
}

#: With ``progress=None``, runs of at least this many steps show a progress bar.
PROGRESS_MIN_STEPS = 5000


@dataclass
class History:
    """What :func:`train` measured.

    Step ``t`` (1-based) is the ``t``-th parameter update; "at step ``t``" means after ``t``
    updates, so evaluation step 0 is the freshly initialized model.

    Attributes:
        steps: ``[1, 2, ..., T]``, the steps with a recorded loss.
        loss: ``loss[k]`` is the mini-batch cross-entropy at step ``steps[k]``, computed just
            before that step's update (so it is what the optimizer minimized).
        eval_steps: ``[0, eval_every, 2 * eval_every, ..., T]``, the evaluation steps.
        train_acc, test_acc: accuracy on the whole training / test set at each
            ``eval_steps`` entry, in eval mode (BN uses its running statistics).
        train_loss, test_loss: mean cross-entropy on the whole training / test set there.
        records: ``records[name][k]`` is what a recorder returned under ``name`` at
            ``eval_steps[k]``.
        step_records: ``step_records[name][t]`` is what the ``after_step`` hook returned
            under ``name`` after ``t`` updates, ``t = 0, 1, ...`` (``t = 0``: before
            training); one entry more than ``steps`` unless the run diverged.
        diverged: ``True`` if the loss became NaN or infinite; training stopped at that step
            (``steps[-1]``, whose loss is the non-finite value), and a last evaluation of the
            broken model was made there (a model with non-finite outputs scores 0; recorders
            are not called and their entries are NaN).
        config: the settings of the run (``lr``, ``batch_size``, ``optimizer``, ``seed``, ...).
    """

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    records: dict[str, list[float]] = field(default_factory=dict)
    step_records: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def steps_to_reach(self, acc: float, on: str = "test") -> int | None:
        """The first evaluation step at which the accuracy is at least ``acc``, or ``None``.

        Args:
            acc: target accuracy in ``[0, 1]``, e.g. ``0.9``.
            on: ``"test"`` or ``"train"``.

        The answer is only as fine as ``eval_every``: the true first step lies in
        ``(previous evaluation step, returned step]``.
        """
        if not 0.0 <= acc <= 1.0:
            raise ValueError(
                f"steps_to_reach: acc is an accuracy in [0, 1] (got {acc}); 90% is 0.9"
            )
        curve = self._accuracies(on, "steps_to_reach")
        for step, a in zip(self.eval_steps, curve):
            if a >= acc:
                return step
        return None

    @property
    def final_test_acc(self) -> float:
        """Test accuracy at the last evaluation; for a diverged run, the broken model's (NaN
        or infinite outputs count as wrong, so it is usually 0 or chance level)."""
        return self._last(self.test_acc)

    @property
    def final_train_acc(self) -> float:
        """Training accuracy at the last evaluation."""
        return self._last(self.train_acc)

    @property
    def best_test_acc(self) -> float:
        """The highest test accuracy over all evaluations."""
        self._last(self.test_acc)
        return max(self.test_acc)

    @property
    def diverged_at(self) -> int | None:
        """The step whose loss was NaN or infinite, or ``None`` if the run did not diverge."""
        return self.steps[-1] if self.diverged else None

    def _accuracies(self, on: str, where: str) -> list[float]:
        if on not in ("test", "train"):
            raise ValueError(f"{where}: on must be 'test' or 'train' (got {on!r})")
        return self.test_acc if on == "test" else self.train_acc

    @staticmethod
    def _last(values: list[float]) -> float:
        if not values:
            raise ValueError("this History has no evaluations yet")
        return values[-1]

    def __repr__(self) -> str:
        if not self.eval_steps:
            return "History(empty)"
        status = f", diverged at step {self.diverged_at}" if self.diverged else ""
        return (
            f"History({len(self.steps)} steps, final train acc {self.final_train_acc:.3f}, "
            f"test acc {self.final_test_acc:.3f}{status})"
        )


def evaluate(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """Accuracy of ``model`` on ``(X, y)`` in eval mode, on the whole tensor at once.

    Eval mode matters: batch norm then uses its running statistics, so each prediction
    depends on its own input only. The model's previous mode is restored afterwards.
    Examples whose logits are NaN or infinite count as wrong.

    Args:
        model: a classifier returning ``(N, n_classes)`` logits.
        X: ``(N, D)`` inputs.
        y: ``(N,)`` int64 labels.

    Returns:
        The fraction of correct predictions, in ``[0, 1]``.

    Example:
        >>> evaluate(model, data.X_test, data.y_test)     # the model of the module example
        0.9777777777777777
    """
    if len(X) != len(y):
        raise ValueError(f"evaluate: X has {len(X)} examples but y has {len(y)} labels")
    if len(X) == 0:
        raise ValueError("evaluate: X is empty")
    param = next(model.parameters(), None)
    if param is not None:  # follow the model to its device and dtype
        X, y = X.to(param.device, param.dtype), y.to(param.device)
    return _loss_and_accuracy(model, X, y)[1]


def _loss_and_accuracy(model: nn.Module, X: Tensor, y: Tensor) -> tuple[float, float]:
    with as_found(model, "eval"), torch.no_grad():
        logits = model(X)
        loss = float(F.cross_entropy(logits, y))
        finite = torch.isfinite(logits).all(dim=1)
        correct = (logits.argmax(dim=1) == y) & finite
        return loss, int(correct.sum()) / len(y)  # exact fraction, not a float32 mean


def train(
    model: nn.Module,
    data: Split,
    *,
    steps: int,
    lr: float | None = None,
    batch_size: int = 60,
    optimizer: str | OptimizerFactory = "sgd",
    seed: int = 0,
    eval_every: int | None = None,
    record: Recorder | Sequence[Recorder] | None = None,
    after_step: StepHook | None = None,
    bn_mode: str = "train",
    stop_at_test_acc: float | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` on ``data`` with mini-batch gradient descent on the cross-entropy loss.

    Each step ``t`` takes the next mini-batch ``{t}`` of ``batch_size`` training examples,
    computes the mean cross-entropy ``J{t}`` and updates every parameter (``W``, ``b``, and
    BN's ``gamma`` and ``beta``) with the optimizer (a name from :data:`OPTIMIZERS` with the
    learning rate ``lr``, or a factory that builds any ``torch.optim`` optimizer).
    Mini-batches walk through a fresh random permutation of the training set each epoch
    (sampling without replacement); a remainder smaller than ``batch_size`` is skipped, so
    every batch has exactly ``batch_size`` examples.

    Every ``eval_every`` steps (and at step 0 and at the last step) the whole training and
    test sets are evaluated in eval mode (then the model goes back to training mode), and
    each recorder is called as ``record(step, model)``. A recorder returns a dict of numbers,
    stored in ``History.records``; it runs with the model in eval mode (so a forward pass
    there uses the running statistics and leaves them alone) and with gradients enabled.

    The ``after_step`` hook is called as ``after_step(step, model)`` at step 0 and after each
    update, with the model as training uses it (training mode, or frozen batch norm); it
    should only read the model (a weight norm, say). If it returns a dict of numbers, they
    are stored in ``History.step_records``; ``None`` stores nothing.

    With ``bn_mode="frozen"`` every batch norm layer (:func:`course_lib.nn.batchnorm_layers`)
    stays in evaluation mode during training: it normalizes each mini-batch with its
    running statistics, which stay as they were, while ``gamma``, ``beta`` and all other
    parameters learn. That is how a pretrained network is fine-tuned on small batches
    (chapter 8). Dropout and the rest of the model still train as usual.

    If the loss becomes NaN or infinite (learning rate too large), training stops there and
    the history says so (``History.diverged``); no exception is raised. A layer that refuses
    non-finite input (``course_lib.nn.BatchNorm1d`` raises ``ValueError`` in training) counts
    as divergence too; any other error is raised as usual.

    The model is trained in place and left in training mode (every layer, batch norm
    included, whatever ``bn_mode``), on its own device (the data are moved there and cast to
    its floating dtype).

    Args:
        model: a classifier returning ``(N, n_classes)`` logits, e.g. from
            :func:`course_lib.experiments.lab.models.make_mlp`.
        data: a :class:`~course_lib.experiments.lab.data.Split`.
        steps: number of parameter updates.
        lr: learning rate, required with a named ``optimizer``; a factory sets its own (pass
            ``lr=None`` then).
        batch_size: mini-batch size ``m`` (60 as in Ioffe & Szegedy's MNIST experiment).
        optimizer: ``"sgd"``, ``"momentum"`` (SGD with momentum 0.9) or ``"adam"`` (see
            :data:`OPTIMIZERS`), or a factory ``params -> torch.optim.Optimizer`` called once
            with the list of the model's parameters, e.g. ``lambda params:
            torch.optim.SGD(params, lr=0.5, weight_decay=0.01)``.
        seed: seeds the order of the mini-batches and dropout's masks (without disturbing
            the global random state). It does not initialize the model: build a fresh model
            (``make_mlp(..., seed=...)``) for each run you want to compare.
        eval_every: evaluate every this many steps; ``None`` means ``max(1, steps // 100)``,
            about 100 evaluations.
        record: ``None``, a recorder ``record(step, model) -> dict[str, float]`` or a list of
            them.
        after_step: ``None`` or a hook ``after_step(step, model) -> dict[str, float] | None``
            called at step 0 and after every update (see above).
        bn_mode: ``"train"`` (the usual training mode) or ``"frozen"`` (batch norm uses and
            keeps its running statistics); see :data:`BN_MODES`.
        stop_at_test_acc: if given, stop at the first evaluation whose test accuracy is at
            least this (e.g. ``0.9``), so "steps to reach 90%" costs only those steps.
        progress: show a ``tqdm`` progress bar; ``None`` shows it for runs of at least
            :data:`PROGRESS_MIN_STEPS` steps.

    Returns:
        A :class:`History`.

    Example:
        >>> history = train(make_mlp(64, [100] * 3, 10, bn="before", seed=0),
        ...                 load_digits_split(seed=0), steps=1000, lr=0.5, eval_every=10)
        >>> history.steps_to_reach(0.9)
        50
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"train: model must be an nn.Module (got {type(model).__name__})")
    if not isinstance(data, Split):
        raise TypeError(
            f"train: data must be a course_lib.experiments.lab.data.Split (got {type(data).__name__}); "
            f"build one with load_digits_split() or Split(X_train, y_train, X_test, y_test)"
        )
    steps = _checks.check_int(steps, "steps", 1, where="train")
    batch_size = _checks.check_int(batch_size, "batch_size", 1, where="train")
    seed = _checks.check_int(seed, "seed", 0, where="train")
    if eval_every is None:
        eval_every = max(1, steps // 100)
    eval_every = _checks.check_int(eval_every, "eval_every", 1, where="train")
    if callable(optimizer):
        if lr is not None:
            raise ValueError(
                "train: an optimizer factory sets its own learning rate; pass lr=None (or "
                "a name such as optimizer='sgd' with lr)"
            )
    else:
        if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
            raise ValueError(
                f"train: unknown optimizer {optimizer!r}; use one of {sorted(OPTIMIZERS)} or "
                f"a factory params -> torch.optim.Optimizer"
            )
        if lr is None:
            raise TypeError(f"train: optimizer {optimizer!r} needs a learning rate lr")
        if not _checks.is_real(lr):
            raise TypeError(f"train: lr must be a positive number (got {type(lr).__name__})")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"train: lr must be positive and finite (got {lr})")
    if bn_mode not in BN_MODES:
        raise ValueError(f"train: bn_mode must be one of {BN_MODES} (got {bn_mode!r})")
    frozen_bn = [m for _, m in batchnorm_layers(model)] if bn_mode == "frozen" else []
    if bn_mode == "frozen" and not frozen_bn:
        raise ValueError(
            "train: bn_mode='frozen' but the model has no batch norm layer; use bn_mode='train'"
        )
    if after_step is not None and not callable(after_step):
        raise TypeError(
            f"train: after_step must be a callable after_step(step, model) -> dict or None "
            f"(got {type(after_step).__name__})"
        )
    if batch_size > data.n_train:
        raise ValueError(
            f"train: batch_size ({batch_size}) is larger than the training set "
            f"({data.n_train} examples); use a smaller batch_size"
        )
    recorders = _check_recorders(record)
    if stop_at_test_acc is not None and (
        not _checks.is_real(stop_at_test_acc) or not 0.0 <= stop_at_test_acc <= 1.0
    ):
        raise ValueError(
            f"train: stop_at_test_acc is an accuracy in [0, 1] or None (got "
            f"{stop_at_test_acc!r}); 90% is 0.9"
        )
    if progress is None:
        progress = steps >= PROGRESS_MIN_STEPS

    params = list(model.parameters())
    if not params:
        raise ValueError("train: the model has no parameters to train")
    device = params[0].device
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    data = data.to(device=device, dtype=dtype)
    X, y = data.X_train, data.y_train
    n = data.n_train
    batches_per_epoch = n // batch_size

    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"train: the optimizer factory must return a torch.optim.Optimizer (got "
                f"{type(opt).__name__}); e.g. lambda params: torch.optim.SGD(params, lr=0.1)"
            )
        lr = opt.param_groups[0]["lr"]
        optimizer_name = getattr(optimizer, "__name__", type(optimizer).__name__)
    else:
        optimizer_cls, optimizer_kwargs = OPTIMIZERS[optimizer]
        opt = optimizer_cls(params, lr=lr, **optimizer_kwargs)
        optimizer_name = optimizer
    history = History(
        config={
            "steps": steps,
            "lr": lr,
            "batch_size": batch_size,
            "optimizer": optimizer_name,
            "seed": seed,
            "eval_every": eval_every,
            "bn_mode": bn_mode,
            "stop_at_test_acc": stop_at_test_acc,
        }
    )
    order = torch.Generator(device="cpu").manual_seed(seed)

    def evaluation(step: int, call_recorders: bool = True) -> None:
        train_loss, train_acc = _loss_and_accuracy(model, X, y)
        test_loss, test_acc = _loss_and_accuracy(model, data.X_test, data.y_test)
        history.eval_steps.append(step)
        history.train_loss.append(train_loss)
        history.train_acc.append(train_acc)
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        if not call_recorders:  # a diverged model: keep the records aligned with eval_steps
            for values in history.records.values():
                values.append(math.nan)
            return
        values: dict[str, float] = {}
        for recorder in recorders:
            with as_found(model, "eval"):
                values.update(_call_recorder(recorder, step, model, values))
        if step > 0 and set(values) != set(history.records):
            raise ValueError(
                f"train: the recorders returned keys {sorted(values)} at step {step} but "
                f"{sorted(history.records)} at step 0; return the same keys every time"
            )
        for name, value in values.items():
            history.records.setdefault(name, []).append(value)

    def step_hook(step: int) -> None:
        if after_step is None:
            return
        result = after_step(step, model)
        if result is None:
            return
        values = _call_recorder(lambda *_: result, step, model, {}, "after_step")
        if step > 0 and set(values) != set(history.step_records):
            raise ValueError(
                f"train: after_step returned keys {sorted(values)} at step {step} but "
                f"{sorted(history.step_records)} at step 0; return the same keys every time"
            )
        for name, value in values.items():
            history.step_records.setdefault(name, []).append(value)

    def reached_target() -> bool:
        return stop_at_test_acc is not None and history.test_acc[-1] >= stop_at_test_acc

    # fork_rng: dropout draws from the global generator; seed it here for reproducible masks
    # and hand the caller's random state back untouched afterwards.
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed + 1)  # +1: not the same stream as the batch order
        model.train()
        for layer in frozen_bn:  # evaluation() restores each layer's own mode afterwards
            layer.eval()
        step = 0
        bar = _progress_bar(steps, progress)
        try:
            evaluation(0)
            step_hook(0)
            position = batches_per_epoch  # forces a new permutation at step 1
            while step < steps and not reached_target():
                step += 1
                if position == batches_per_epoch:
                    permutation = torch.randperm(n, generator=order).to(device)
                    position = 0
                idx = permutation[position * batch_size : (position + 1) * batch_size]
                position += 1
                X_batch = X[idx]
                try:
                    loss = F.cross_entropy(model(X_batch), y[idx])
                    loss_value = loss.item()
                except (ValueError, RuntimeError):
                    # A layer may refuse non-finite input (course_lib's BN does, in training)
                    # instead of passing NaN on: that is divergence too, any other error is not.
                    if not _blew_up(model, X_batch):
                        raise
                    loss_value = math.nan
                history.steps.append(step)
                history.loss.append(loss_value)
                if not math.isfinite(loss_value):
                    history.diverged = True
                    evaluation(step, call_recorders=False)
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step_hook(step)
                if step % eval_every == 0 or step == steps:
                    evaluation(step)
                    if bar is not None:
                        bar.set_postfix(test_acc=f"{history.test_acc[-1]:.3f}", refresh=False)
                if bar is not None and step % 100 == 0:
                    bar.update(step - bar.n)
        finally:
            if bar is not None:
                bar.update(step - bar.n)
                bar.close()
            model.train()
    return history


class _NonFinite(Exception):
    pass


def _blew_up(model: nn.Module, X_batch: Tensor) -> bool:
    """Whether the forward pass on ``X_batch`` meets NaN, inf or values near overflow.

    Only called after a forward pass raised, so its cost does not matter: it repeats the
    pass with a check in front of every leaf module, stopping at the first bad input.
    """
    if any(not bool(torch.isfinite(p).all()) for p in model.parameters()):
        return True
    # Close enough to overflow that a layer's statistics overflow: batch norm's variance
    # squares its inputs, so the limit is near the square root of the largest float.
    limit = math.sqrt(torch.finfo(X_batch.dtype).max) * 1e-3

    def check(module: nn.Module, args: tuple) -> None:
        for a in args:
            if not (isinstance(a, Tensor) and a.is_floating_point()):
                continue
            # "not < limit" also catches NaN, which compares False with everything.
            if not bool((a.abs() < limit).all()):
                raise _NonFinite

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(check) for m in leaves]
    try:
        with torch.no_grad():
            model(X_batch)
    except _NonFinite:
        return True
    except Exception:  # the original error again, with finite inputs: not divergence
        return False
    finally:
        for h in handles:
            h.remove()
    return False


def _progress_bar(steps: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="training", unit="step", leave=False)


def _call_recorder(
    recorder: Recorder, step: int, model: nn.Module, so_far: Mapping[str, float],
    name: str | None = None,
) -> dict[str, float]:
    name = name or f"recorder {getattr(recorder, '__name__', type(recorder).__name__)}"
    result = recorder(step, model)
    if not isinstance(result, Mapping):
        raise TypeError(
            f"train: {name} must return a dict of numbers such as {{'p50': 0.1}} "
            f"(got {type(result).__name__})"
        )
    values: dict[str, float] = {}
    for key, value in result.items():
        if not isinstance(key, str):
            raise TypeError(f"train: {name} returned a non-string key {key!r}")
        if key in so_far:
            raise ValueError(
                f"train: two recorders returned the key {key!r}; give each value its own name"
            )
        if isinstance(value, Tensor):
            value = value.detach()
        try:
            values[key] = float(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"train: {name} returned {key!r}: {type(value).__name__}, which is not "
                f"a single number; return floats (e.g. tensor.item())"
            ) from None
    return values


def _check_recorders(record: object) -> list[Recorder]:
    if record is None:
        return []
    recorders = list(record) if isinstance(record, (list, tuple)) else [record]
    for r in recorders:
        if not callable(r):
            raise TypeError(
                f"train: record must be a callable record(step, model) -> dict or a list of "
                f"them (got {type(r).__name__})"
            )
    return recorders
