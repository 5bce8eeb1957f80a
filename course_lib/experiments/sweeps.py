r"""Experiments with the digits MLP of chapter 3: one run, and sweeps over a setting.

The network is Ioffe & Szegedy's MNIST network at CPU scale: 64 inputs (the bundled 8x8
digits), three hidden layers of 100 sigmoid units, 10 outputs, mini-batches of 60, plain SGD
unless said otherwise. Every function here is a pure function of its settings and a seed: it
builds a fresh network with :func:`course_lib.experiments.lab.models.make_mlp`, trains it with
:func:`course_lib.experiments.lab.training.train` on :func:`course_lib.experiments.lab.data.load_digits_split` and returns
what was measured, so a chapter can show one seed and ``tests/test_sweeps.py`` can check the
same claim for other seeds.

- :func:`digits_run` -- one training run; returns the :class:`~course_lib.experiments.lab.training.History`
  (:func:`bn_parameter_change` records how far :math:`\gamma` and :math:`\beta` moved,
  :func:`sigmoid_saturation` how many sigmoid inputs sit in the flat tails).
- :func:`compare_positions` -- the same run with batch norm before the activation, after it,
  or not at all (same seed, same learning rate, same mini-batches).
- :func:`lr_sweep`, :func:`init_scale_sweep` -- "does it reach the target accuracy within
  ``max_steps`` steps, and how fast?" over learning rates or initial weight scales; tidy
  results, one :class:`SweepRow` per run.
- :func:`trained_values`, :func:`span_decades`, :func:`steps_table` -- read the rows.

"Trains well" means: reaches ``target`` test accuracy (90% by default) within ``max_steps``
SGD steps. Runs stop at the first evaluation that reaches the target
(``stop_at_test_acc``), so a sweep costs little where training is fast.

Example:
    >>> rows = lr_sweep([0.1, 1.0, 10.0], seed=1)
    >>> trained_values(rows, "before"), trained_values(rows, None)
    ([0.1, 1.0, 10.0], [1.0])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from course_lib import _checks
from course_lib.activations import sigmoid_regimes
from course_lib.experiments.lab.data import load_digits_split
from course_lib.experiments.lab.models import DEFAULT_NORM_IMPL, hidden_pre_activations, make_mlp
from course_lib.borrow import batchnorm_layers
from course_lib.experiments.lab.training import History, Recorder, train

__all__ = [
    "BATCH_SIZE",
    "WIDTHS",
    "SweepRow",
    "bn_parameter_change",
    "compare_positions",
    "digits_network",
    "digits_run",
    "init_scale_sweep",
    "lr_sweep",
    "sigmoid_saturation",
    "span_decades",
    "steps_table",
    "trained_values",
]

#: Hidden-layer widths and mini-batch size of Ioffe & Szegedy's MNIST experiment.
WIDTHS: tuple[int, ...] = (100, 100, 100)
BATCH_SIZE = 60

_POSITIONS = ("before", "after", None)


def digits_network(
    bn: str | None,
    *,
    seed: int = 0,
    init_scale: float | None = None,
    bn_impl: str = DEFAULT_NORM_IMPL,
) -> nn.Sequential:
    """The chapter's network, ``64 -> 100 -> 100 -> 100 -> 10`` with sigmoid units.

    Args:
        bn: ``"before"`` the activation (the lecture's order, no bias in the ``Linear``
            layers it follows), ``"after"`` it, or ``None``.
        seed: seeds the initial weights.
        init_scale: weights ``~ N(0, init_scale^2)`` and biases 0; ``None`` keeps PyTorch's
            default initialization.
        bn_impl: ``"course_lib"`` or ``"torch"`` batch norm (they compute the same).

    Example:
        >>> digits_network("before").bn1
        BatchNorm1d(100, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
    """
    return make_mlp(64, list(WIDTHS), 10, activation="sigmoid", bn=bn, bn_impl=bn_impl,
                    init_scale=init_scale, seed=seed)


def digits_run(
    bn: str | None,
    *,
    lr: float,
    steps: int,
    seed: int = 0,
    init_scale: float | None = None,
    optimizer: str = "sgd",
    eval_every: int = 10,
    target: float | None = None,
    bn_impl: str = DEFAULT_NORM_IMPL,
    record: Recorder | Sequence[Recorder] | None = None,
) -> History:
    """Train a fresh :func:`digits_network` on the digits split ``seed``.

    The seed fixes everything: the train/test split, the initial weights and the order of
    the mini-batches. Two calls that differ only in ``bn`` see the same data in the same
    order, with weights drawn from the same distribution.

    Args:
        bn: ``"before"``, ``"after"`` or ``None`` (see :func:`digits_network`).
        lr: learning rate.
        steps: at most this many steps (mini-batches of :data:`BATCH_SIZE`).
        seed: the run's seed.
        init_scale: initial weight scale, or ``None`` for PyTorch's default.
        optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``; all update ``W``, ``gamma`` and
            ``beta`` alike.
        eval_every: evaluate train and test accuracy every this many steps.
        target: stop at the first evaluation with at least this test accuracy, or ``None``
            to run all ``steps``.
        bn_impl: ``"course_lib"`` or ``"torch"``.
        record: recorders for :func:`~course_lib.experiments.lab.training.train`, e.g.
            :func:`bn_parameter_change`.

    Returns:
        The run's :class:`~course_lib.experiments.lab.training.History`.

    Example:
        >>> history = digits_run("before", lr=2.0, steps=1000, target=0.9)
        >>> history.steps_to_reach(0.9)
        50
    """
    _check_position(bn, "digits_run")
    model = digits_network(bn, seed=seed, init_scale=init_scale, bn_impl=bn_impl)
    return train(model, load_digits_split(seed=seed), steps=steps, lr=lr,
                 batch_size=BATCH_SIZE, optimizer=optimizer, seed=seed,
                 eval_every=eval_every, stop_at_test_acc=target, record=record,
                 progress=False)


def sigmoid_saturation(X: Tensor) -> Recorder:
    """A recorder factory: the share of saturated sigmoid inputs of each hidden layer on ``X``.

    The returned ``record(step, model)`` gives ``{"saturated1": ..., "saturated2": ..., ...}``,
    the fraction of the inputs ``z_tilde[l]`` (or ``z[l]`` without BN) of layer ``l``'s
    activations whose sigmoid output is within 0.05 of 0 or 1
    (:func:`course_lib.activations.sigmoid_regimes`), measured with
    :func:`course_lib.experiments.lab.models.hidden_pre_activations` (eval mode, no gradient).

    Example:
        >>> data = load_digits_split(seed=0)
        >>> history = digits_run(None, lr=30.0, steps=100, record=sigmoid_saturation(data.X_train))
        >>> history.records["saturated3"][-1]
        1.0
    """
    def record(step: int, model: nn.Module) -> dict[str, float]:
        z_layers = hidden_pre_activations(model, X)
        return {
            f"saturated{l}": float(sigmoid_regimes(z.double().cpu().numpy()).saturated)
            for l, z in enumerate(z_layers, start=1)
        }

    return record


def bn_parameter_change(step: int, model: nn.Module) -> dict[str, float]:
    r"""A recorder: how far batch norm's :math:`\gamma` and :math:`\beta` have moved from
    their initial values 1 and 0, over all BN layers.

    Returns ``{"gamma_change": max |gamma - 1|, "beta_change": max |beta|}`` (both 0 for a
    model without batch norm). Use it as ``digits_run(..., record=bn_parameter_change)``.
    """
    gamma_change = beta_change = 0.0
    for _, bn in batchnorm_layers(model):
        if bn.weight is not None:
            gamma_change = max(gamma_change, float((bn.weight.detach() - 1.0).abs().max()))
        if bn.bias is not None:
            beta_change = max(beta_change, float(bn.bias.detach().abs().max()))
    return {"gamma_change": gamma_change, "beta_change": beta_change}


def compare_positions(
    positions: Sequence[str | None] = ("before", None),
    *,
    lr: float,
    steps: int,
    seed: int = 0,
    eval_every: int = 10,
    target: float | None = None,
    init_scale: float | None = None,
    optimizer: str = "sgd",
    bn_impl: str = DEFAULT_NORM_IMPL,
) -> dict[str | None, History]:
    """The same run for each batch norm position: ``{position: History}``.

    Same seed, learning rate, optimizer and mini-batches for every position, so the only
    difference is where (or whether) batch norm sits.

    Example:
        >>> runs = compare_positions(("before", None), lr=2.0, steps=1500, target=0.9)
        >>> runs[None].steps_to_reach(0.9) / runs["before"].steps_to_reach(0.9)
        10.4
    """
    positions = list(positions)
    if not positions:
        raise ValueError("compare_positions: give at least one position, e.g. ('before', None)")
    for p in positions:
        _check_position(p, "compare_positions")
    if len(set(positions)) != len(positions):
        raise ValueError(f"compare_positions: positions repeat ({positions!r})")
    return {
        p: digits_run(p, lr=lr, steps=steps, seed=seed, eval_every=eval_every, target=target,
                      init_scale=init_scale, optimizer=optimizer, bn_impl=bn_impl)
        for p in positions
    }


@dataclass(frozen=True)
class SweepRow:
    """One run of a sweep.

    Attributes:
        bn: ``"before"``, ``"after"`` or ``None``.
        lr: learning rate.
        init_scale: initial weight scale (``None``: PyTorch's default initialization).
        seed: the run's seed.
        target: the test accuracy that counts as "trained".
        max_steps: the step budget.
        steps_to_target: the first evaluation step with test accuracy >= ``target``, or
            ``None`` if the run did not get there within ``max_steps``.
        best_test_acc: the best test accuracy seen (the last one, if it stopped at the
            target).
        diverged: the loss became NaN or infinite.
    """

    bn: str | None
    lr: float
    init_scale: float | None
    seed: int
    target: float
    max_steps: int
    steps_to_target: int | None
    best_test_acc: float
    diverged: bool

    @property
    def trained(self) -> bool:
        """Whether the run reached the target accuracy within the step budget."""
        return self.steps_to_target is not None


def lr_sweep(
    lrs: Iterable[float],
    *,
    bn: Sequence[str | None] = ("before", None),
    seed: int = 0,
    target: float = 0.9,
    max_steps: int = 1000,
    eval_every: int = 20,
    init_scale: float | None = None,
    bn_impl: str = DEFAULT_NORM_IMPL,
) -> list[SweepRow]:
    """Steps to ``target`` test accuracy for each learning rate and batch norm position.

    Args:
        lrs: learning rates, e.g. ``[0.03, 0.1, 0.3, 1, 3, 10, 30]``.
        bn: positions to compare (``"before"``, ``"after"``, ``None``).
        seed: one seed for every run (same data, same mini-batches).
        target: test accuracy that counts as trained.
        max_steps: step budget per run.
        eval_every: evaluation interval, the resolution of ``steps_to_target``. 20 steps
            is fine on a log axis and keeps a sweep cheap: most of its cost is the runs
            that never reach the target and use the whole budget.
        init_scale: initial weight scale, ``None`` for PyTorch's default.
        bn_impl: ``"course_lib"`` or ``"torch"``.

    Returns:
        One :class:`SweepRow` per (position, learning rate), positions in the given order,
        learning rates ascending.

    Example:
        >>> rows = lr_sweep([1.0, 30.0], seed=0)
        >>> [(r.bn, r.lr, r.steps_to_target) for r in rows]
        [('before', 1.0, 60), ('before', 30.0, 700), (None, 1.0, 820), (None, 30.0, None)]
    """
    values = _positive_sorted(lrs, "lr_sweep", "lrs")
    return [
        _row(p, lr=lr, init_scale=init_scale, seed=seed, target=target, max_steps=max_steps,
             eval_every=eval_every, bn_impl=bn_impl)
        for p in _positions(bn, "lr_sweep") for lr in values
    ]


def init_scale_sweep(
    scales: Iterable[float],
    *,
    bn: Sequence[str | None] = ("before", None),
    lr: float = 1.0,
    seed: int = 0,
    target: float = 0.9,
    max_steps: int = 1000,
    eval_every: int = 20,
    bn_impl: str = DEFAULT_NORM_IMPL,
) -> list[SweepRow]:
    """Steps to ``target`` test accuracy for each initial weight scale and BN position.

    Every ``Linear`` weight is drawn from ``N(0, scale^2)`` and every bias starts at 0, in
    both networks; only the batch norm layers differ.

    Args:
        scales: standard deviations of the initial weights, e.g. ``[0.01, 0.1, 1, 10]``.
        bn, seed, target, max_steps, eval_every, bn_impl: as in :func:`lr_sweep`.
        lr: the learning rate of every run.

    Returns:
        One :class:`SweepRow` per (position, scale), scales ascending.

    Example:
        >>> rows = init_scale_sweep([0.01, 1.0, 10.0], seed=0)
        >>> trained_values(rows, "before", "init_scale"), trained_values(rows, None, "init_scale")
        ([0.01, 1.0, 10.0], [1.0])
    """
    values = _positive_sorted(scales, "init_scale_sweep", "scales")
    return [
        _row(p, lr=lr, init_scale=s, seed=seed, target=target, max_steps=max_steps,
             eval_every=eval_every, bn_impl=bn_impl)
        for p in _positions(bn, "init_scale_sweep") for s in values
    ]


def trained_values(rows: Iterable[SweepRow], bn: str | None, key: str = "lr") -> list[float]:
    """The values of ``key`` (``"lr"`` or ``"init_scale"``) at which position ``bn`` trained.

    Example:
        >>> trained_values(lr_sweep([0.1, 1.0, 10.0], seed=1), None)
        [1.0]
    """
    if key not in ("lr", "init_scale"):
        raise ValueError(f"trained_values: key must be 'lr' or 'init_scale' (got {key!r})")
    return sorted(getattr(r, key) for r in rows if r.bn == bn and r.trained)


def span_decades(values: Iterable[float]) -> float:
    r"""How many decades the values span: :math:`\log_{10}(\max / \min)`; 0 for fewer than two.

    Example:
        >>> span_decades([0.03, 0.1, 30.0])
        3.0
    """
    values = [float(v) for v in values]
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise ValueError(f"span_decades: values must be positive and finite (got {values})")
    if len(values) < 2:
        return 0.0
    return math.log10(max(values) / min(values))


def steps_table(
    rows: Iterable[SweepRow], key: str = "lr"
) -> dict[str | None, dict[float, int | None]]:
    """``{bn: {value: steps_to_target or None}}`` for plotting and printing a sweep.

    Example:
        >>> steps_table(lr_sweep([1.0, 30.0], seed=0))
        {'before': {1.0: 60, 30.0: 700}, None: {1.0: 820, 30.0: None}}
    """
    if key not in ("lr", "init_scale"):
        raise ValueError(f"steps_table: key must be 'lr' or 'init_scale' (got {key!r})")
    table: dict[str | None, dict[float, int | None]] = {}
    for r in rows:
        table.setdefault(r.bn, {})[getattr(r, key)] = r.steps_to_target
    return table


def _row(
    bn: str | None,
    *,
    lr: float,
    init_scale: float | None,
    seed: int,
    target: float,
    max_steps: int,
    eval_every: int,
    bn_impl: str,
) -> SweepRow:
    history = digits_run(bn, lr=lr, steps=max_steps, seed=seed, init_scale=init_scale,
                         eval_every=eval_every, target=target, bn_impl=bn_impl)
    return SweepRow(
        bn=bn,
        lr=lr,
        init_scale=init_scale,
        seed=seed,
        target=target,
        max_steps=max_steps,
        steps_to_target=history.steps_to_reach(target),
        best_test_acc=history.best_test_acc,
        diverged=history.diverged,
    )


def _check_position(bn: object, where: str) -> None:
    if bn not in _POSITIONS:
        raise ValueError(
            f"{where}: bn must be 'before' (Linear -> BN -> activation, the lecture's order), "
            f"'after' (Linear -> activation -> BN) or None (got {bn!r})"
        )


def _positions(bn: Sequence[str | None], where: str) -> list[str | None]:
    if isinstance(bn, str) or bn is None:
        raise TypeError(
            f"{where}: bn is a list of positions such as ('before', None) (got {bn!r}); "
            f"for one position write [{bn!r}]"
        )
    positions = list(bn)
    for p in positions:
        _check_position(p, where)
    return positions


def _positive_sorted(values: Iterable[float], where: str, name: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{where}: {name} must be a list of positive numbers (got {values!r})")
    out = []
    for v in values:
        if not _checks.is_real(v):
            raise TypeError(f"{where}: {name} must be numbers (got {type(v).__name__} {v!r})")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{where}: {name} must be positive and finite (got {v})")
        out.append(float(v))
    if not out:
        raise ValueError(f"{where}: {name} is empty; give at least one value")
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: {name} has repeated values ({out})")
    return sorted(out)
