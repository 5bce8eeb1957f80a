r"""The distribution of one unit's input over training: Ioffe & Szegedy's Fig. 1 (b-c).

Ioffe & Szegedy (2015) follow the 15th, 50th and 85th percentiles of the input of one sigmoid
in the last hidden layer over training: without batch norm they wander, with it they stay
put. Here the input of module ``layer`` (e.g. ``"act3"``, the last hidden sigmoid of a
:func:`course_lib.experiments.lab.models.make_mlp` model) is captured with a forward hook while the
model runs on a fixed probe batch (:func:`unit_input_percentiles`, and
:func:`percentile_recorder` for :func:`course_lib.experiments.lab.training.train`'s ``record``
hook). :func:`drift` is the chapter's measure of how far such a distribution moved; the
public :func:`percentile_drift` and :func:`percentile_jitter` check their input and call it.

**Mode.** The probe runs the model in *training mode* by default, because that is what a
training step sees: batch norm normalizes with the probe batch's own statistics, and a noisy
layer (:class:`course_lib.experiments.probes.noisy_bn.NoisyBatchNorm1d`) adds its noise. (``train``
calls recorders in eval mode; in eval mode a noisy BN layer has no noise at all, which would
hide exactly what chapter 4 wants to show.) Everything a training-mode pass changes is put
back (:func:`course_lib.borrow.as_found`), so a probe does not change
the run it observes. ``mode="eval"`` uses the running statistics and no noise.

Example:
    >>> from course_lib.experiments.lab.data import load_digits_split
    >>> from course_lib.experiments.lab.models import make_mlp
    >>> from course_lib.experiments.lab.training import train
    >>> data = load_digits_split(seed=0)
    >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
    >>> history = train(model, data, steps=200, lr=1.0, eval_every=20,
    ...                 record=percentile_recorder(data.X_train[:500]))
    >>> percentile_traces(history).shape           # (evaluations, 3): p15, p50, p85
    (11, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from course_lib import _checks
from course_lib.measures import PERCENTILES, activation_percentiles
from course_lib.borrow import as_found
from course_lib.experiments.lab.model_state import (
    check_probe,
    check_probe_batch,
    on_model,
)

__all__ = [
    "PERCENTILES",
    "activation_percentiles",
    "drift",
    "percentile_drift",
    "percentile_jitter",
    "percentile_recorder",
    "percentile_traces",
    "unit_input_percentiles",
]

def unit_input_percentiles(
    model: nn.Module,
    X: Tensor,
    layer: str = "act3",
    units: int | Sequence[int] = 0,
    q: Sequence[float] = PERCENTILES,
    mode: str = "train",
) -> np.ndarray:
    """Percentiles of the input of some units of ``layer`` over the examples of ``X``.

    Runs ``model`` on ``X`` (in ``mode``, without gradients) with a forward hook on the
    submodule named ``layer`` and takes the percentiles of the columns ``units`` of what it
    receives, with linear interpolation (``np.percentile``'s default). The model is left
    exactly as it was (:func:`course_lib.borrow.as_found`).

    Args:
        model: e.g. a :func:`course_lib.experiments.lab.models.make_mlp` model.
        X: ``(N, features)`` probe batch; keep it fixed over training.
        layer: name of the submodule whose input is measured (``"act3"``: the last hidden
            sigmoid's input, :math:`\\tilde z^{[3]}` with BN before it, :math:`z^{[3]}` without).
        units: a column of that input, or a list of columns.
        q: percentiles in ``[0, 100]``.
        mode: ``"train"`` (batch statistics and noise, as in a training step) or ``"eval"``.

    Returns:
        float64 array ``(len(q),)`` for one unit, ``(len(units), len(q))`` for a list.

    Example:
        >>> unit_input_percentiles(model, data.X_train[:500])      # p15, p50, p85
        array([-0.93..., 0.02..., 1.01...])
    """
    where = "unit_input_percentiles"
    check_probe(model, X, where)
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        raise ValueError(f"{where}: the model has no submodule {layer!r}; it has {names}")
    q_arr = np.asarray(q, dtype=np.float64)
    if q_arr.ndim != 1 or q_arr.size == 0 or np.any(~np.isfinite(q_arr)) or np.any(
        (q_arr < 0) | (q_arr > 100)
    ):
        raise ValueError(
            f"{where}: q must be a list of percentiles between 0 and 100, such as (15, 50, 85) "
            f"(got {q!r}); note that 0.15 is the 0.15th percentile, not the 15th"
        )
    single = _checks.is_int(units)
    if not single and (isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or not units):
        raise TypeError(f"{where}: units must be an int or a non-empty list of ints (got {units!r})")
    columns_wanted = [units] if single else list(units)  # type: ignore[list-item]
    captured: list[Tensor] = []
    handle = modules[layer].register_forward_hook(
        lambda module, args, out: captured.append(args[0].detach())
    )
    try:
        with as_found(model, _checks.check_mode(mode, where), state=True), torch.no_grad():
            (X,) = on_model(model, X)
            model(X)
    finally:
        handle.remove()
    z = captured[0]
    if z.ndim != 2:
        raise ValueError(f"{where}: the input of {layer!r} is {z.ndim}D; expected (N, units)")
    for j in columns_wanted:
        if not _checks.is_int(j) or not 0 <= j < z.shape[1]:
            raise ValueError(
                f"{where}: each unit must be an int in 0..{z.shape[1] - 1}, the columns of "
                f"{layer!r}'s input (got {j!r})"
            )
    columns = z[:, [int(j) for j in columns_wanted]].double().cpu().numpy()
    result = activation_percentiles(columns.T, q_arr)  # (units, q)
    return result[0] if single else result


def _q_key(q: float) -> str:
    return f"p{q:g}"


def _unit_keys(units: int | Sequence[int] | None, q: Sequence[float], prefix: str) -> list[list[str]]:
    """Record keys, one row per unit: "p15" for a single unit, "u3:p15" for a list of units."""
    if units is None or _checks.is_int(units):
        return [[prefix + _q_key(v) for v in q]]
    return [[f"{prefix}u{int(j)}:{_q_key(v)}" for v in q] for j in units]


def percentile_recorder(
    X: Tensor,
    layer: str = "act3",
    units: int | Sequence[int] = 0,
    q: Sequence[float] = PERCENTILES,
    mode: str = "train",
    prefix: str = "",
) -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``record(step, model)`` for :func:`course_lib.experiments.lab.training.train`: percentiles of unit inputs.

    Calls :func:`unit_input_percentiles` on the fixed batch ``X`` (one forward pass for all
    units) and returns one number per unit and percentile: keys ``"p15"``, ``"p50"``,
    ``"p85"`` for a single unit (``units=0``), ``"u0:p15"``, ``"u0:p50"``, ... for a list of
    units, each with ``prefix`` in front. :func:`percentile_traces` turns the history's
    records back into an array.

    Example:
        >>> history = train(model, data, steps=500, lr=1.0,
        ...                 record=percentile_recorder(data.X_train[:500], "act3", units=0))
        >>> percentile_traces(history).shape        # (evaluations, 3)
        (101, 3)
    """
    # Fail now, not at step 0 inside train().
    check_probe_batch(X, "percentile_recorder")
    _checks.check_mode(mode, "percentile_recorder")
    single = _checks.is_int(units)
    if not single:
        if isinstance(units, (str, bytes)) or not isinstance(units, Sequence) or not units:
            raise TypeError(
                f"percentile_recorder: units must be an int or a non-empty list of ints "
                f"(got {units!r})"
            )
        units = [int(j) for j in units]
    q = tuple(float(v) for v in q)
    keys = _unit_keys(units, q, prefix)

    def record(step: int, model: nn.Module) -> dict[str, float]:
        values = np.atleast_2d(unit_input_percentiles(model, X, layer, units, q, mode))
        return {k: float(v) for row_keys, row in zip(keys, values) for k, v in zip(row_keys, row)}

    record.__name__ = f"percentile_recorder({layer!r})"
    return record


def percentile_traces(
    history,
    units: int | Sequence[int] | None = None,
    q: Sequence[float] = PERCENTILES,
    prefix: str = "",
) -> np.ndarray:
    """The recorded percentiles as an array, rows in the order of ``history.eval_steps``.

    Args:
        history: a :class:`course_lib.experiments.lab.training.History` recorded with
            :func:`percentile_recorder` (same ``q`` and ``prefix``).
        units: ``None`` or an int for a recorder of one unit: returns
            ``(evaluations, len(q))``; the list given to the recorder (or part of it):
            returns ``(evaluations, len(units), len(q))``.

    Example:
        >>> traces = percentile_traces(history)     # columns p15, p50, p85
        >>> steps = history.eval_steps
    """
    q = tuple(float(v) for v in q)
    single = units is None or _checks.is_int(units)
    keys = _unit_keys(None if single else units, q, prefix)
    missing = [k for row in keys for k in row if k not in history.records]
    if missing:
        raise ValueError(
            f"percentile_traces: the history has no records {missing[:3]}; record them with "
            f"train(..., record=percentile_recorder(X, units=..., q={q}, prefix={prefix!r})) "
            f"(it has {sorted(history.records)[:6]}...)"
        )
    arr = np.array(
        [[history.records[k] for k in row] for row in keys], dtype=np.float64
    )  # (units, q, evaluations)
    arr = arr.transpose(2, 0, 1)
    return arr[:, 0, :] if single else arr


def drift(p_early: np.ndarray, p_late: np.ndarray) -> np.ndarray:
    """How far a unit's input distribution moved: median's move plus spread's change.

    p_early, p_late: percentiles (p15, p50, p85) in the last axis, at two evaluations.
    """
    median_move = np.abs(p_late[..., 1] - p_early[..., 1])
    spread_early = p_early[..., 2] - p_early[..., 0]      # 15th to 85th percentile
    spread_late = p_late[..., 2] - p_late[..., 0]
    return median_move + np.abs(spread_late - spread_early)


def _check_traces(traces: object, where: str, min_evaluations: int = 1) -> np.ndarray:
    t = np.asarray(traces, dtype=np.float64)
    if t.ndim not in (2, 3) or t.shape[-1] != 3 or t.shape[0] < min_evaluations:
        at_least = f" and at least {min_evaluations} evaluations" if min_evaluations > 1 else ""
        raise ValueError(
            f"{where}: expected traces of shape (evaluations, 3) or (evaluations, units, 3) "
            f"with columns p15, p50, p85{at_least} (got shape {t.shape})"
        )
    return t


def percentile_drift(traces: np.ndarray, start: int = 0, end: int = -1) -> float:
    r""":func:`drift` between evaluations ``start`` and ``end``, averaged over units.

    .. math::

        \text{drift} = \left| p_{50}^{\text{end}} - p_{50}^{\text{start}} \right|
            + \left| (p_{85} - p_{15})^{\text{end}} - (p_{85} - p_{15})^{\text{start}} \right|

    It is in the units of the layer's input (a sigmoid's :math:`z`): a drift of 1 moves the
    middle of the distribution, or stretches it, by about one unit of the sigmoid's input.

    Args:
        traces: ``(evaluations, 3)`` percentiles p15, p50, p85 (:func:`percentile_traces`),
            or ``(evaluations, units, 3)`` to average the drift over several units.
        start, end: indices of the two evaluations (negative counts from the end).

    Returns:
        The drift, a float >= 0 (averaged over units for a 3D array).

    Example:
        >>> percentile_drift(np.array([[-1.0, 0.0, 1.0], [-1.0, 0.5, 2.0]]))   # 0.5 + 1.0
        1.5
    """
    t = _check_traces(traces, "percentile_drift")
    n = t.shape[0]
    for name, i in (("start", start), ("end", end)):
        if not _checks.is_int(i) or not -n <= i < n:
            raise ValueError(f"percentile_drift: {name} must index one of the {n} evaluations (got {i!r})")
    return float(np.mean(drift(t[start], t[end])))


def percentile_jitter(traces: np.ndarray) -> float:
    r"""The mean :func:`drift` between consecutive evaluations, averaged over units.

    .. math::

        \text{jitter} = \frac{1}{K - 1} \sum_{k=1}^{K-1}
            \left| \Delta p_{50} \right| + \left| \Delta (p_{85} - p_{15}) \right|

    A distribution that drifts slowly has a small jitter even if it travels far in total;
    one that jumps at every step (noisy BN) has a large jitter even if it ends where it
    started.

    Args:
        traces: ``(evaluations, 3)`` or ``(evaluations, units, 3)`` percentiles p15, p50, p85,
            at least two evaluations.

    Returns:
        The mean movement per evaluation interval (averaged over units for a 3D array).

    Example:
        >>> percentile_jitter(np.array([[-1.0, 0.0, 1.0], [-1.0, 1.0, 1.0], [-1.0, 0.0, 1.0]]))
        1.0
    """
    t = _check_traces(traces, "percentile_jitter", min_evaluations=2)
    return float(np.mean(drift(t[:-1], t[1:])))
