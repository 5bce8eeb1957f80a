r"""Probes that look inside a network during training, for :func:`course_lib.experiments.training.train`'s
``record`` hook: the distribution of one unit's input, and the loss landscape along the
gradient.

Two kinds of measurement, both pure (the model's parameters, buffers, gradients, modes and
random generators are exactly as before the call) and deterministic on a fixed batch:

- **Percentiles of a unit's input** (:func:`unit_input_percentiles`,
  :func:`percentile_recorder`). Ioffe & Szegedy (2015, Fig. 1 b-c) follow the
  15th, 50th and 85th percentiles of the input of one sigmoid in the last hidden layer over
  training: without batch norm they wander, with it they stay put. Here the input of module
  ``layer`` (e.g. ``"act3"``, the last hidden sigmoid of a :func:`course_lib.experiments.models.make_mlp`
  model) is captured with a forward hook while the model runs on a fixed probe batch.

- **The landscape along the gradient** (:func:`probe_gradient_direction`,
  :func:`landscape_recorder`). Santurkar et al. (2018, Fig. 4) stand at the current
  parameters :math:`\theta`, compute the gradient :math:`g = \nabla L(\theta)` on a batch, and
  look at points :math:`\theta - \eta g` for a range of step sizes :math:`\eta`:

  .. math::

      \text{loss variation} &= \max_\eta L(\theta - \eta g) - \min_\eta L(\theta - \eta g) \\
      \text{gradient change}(\eta) &= \lVert \nabla L(\theta - \eta g) - \nabla L(\theta)
          \rVert_2 \quad \text{(small: the gradient is predictive)} \\
      \text{effective } \beta\text{-smoothness} &= \max_\eta
          \frac{\lVert \nabla L(\theta - \eta g) - \nabla L(\theta) \rVert_2}
               {\lVert \eta g \rVert_2}

  A small loss variation and gradient change mean that a gradient step lands where the
  gradient said it would: the step size can be large without surprises.

**Mode.** Both probes run the model in *training mode* by default, because that is what a
training step sees: batch norm normalizes with the probe batch's own statistics, and a noisy
layer (:class:`course_lib.experiments.noisy_bn.NoisyBatchNorm1d`) adds its noise. (``train`` calls
recorders in eval mode; in eval mode a noisy BN layer has no noise at all, which would hide
exactly what chapter 4 wants to show.) The running statistics that a training-mode forward
pass updates are restored afterwards, and every random generator the model uses (the global
one for dropout, a ``generator`` attribute of any module) is put back where it was, so a
probe does not change the training run it observes. ``mode="eval"`` uses the running
statistics and no noise.

Example:
    >>> from course_lib.experiments.data import load_digits_split
    >>> from course_lib.experiments.models import make_mlp
    >>> from course_lib.experiments.training import train
    >>> data = load_digits_split(seed=0)
    >>> model = make_mlp(64, [100, 100, 100], 10, bn="before", seed=0)
    >>> history = train(model, data, steps=200, lr=1.0, eval_every=20,
    ...                 record=[percentile_recorder(data.X_train[:500]),
    ...                         landscape_recorder(data.X_train[:500], data.y_train[:500])])
    >>> sorted(history.records)[:3]
    ['beta_smoothness', 'grad_change_max', 'grad_change_min']
    >>> percentile_traces(history).shape           # (evaluations, 3): p15, p50, p85
    (11, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import _checks
from course_lib.nn import as_found

__all__ = [
    "PERCENTILES",
    "activation_percentiles",
    "GradientDirectionProbe",
    "landscape_recorder",
    "percentile_drift",
    "percentile_jitter",
    "percentile_recorder",
    "percentile_traces",
    "probe_gradient_direction",
    "unit_input_percentiles",
]

#: The percentiles of Ioffe & Szegedy's Fig. 1 (b-c).
PERCENTILES: tuple[float, ...] = (15.0, 50.0, 85.0)

def _check_batch(X: object, where: str, y: object = None) -> None:
    if not isinstance(X, Tensor) or not X.is_floating_point() or X.ndim != 2:
        raise TypeError(
            f"{where}: X must be a 2D float tensor (N, features) (got "
            f"{type(X).__name__}{'' if not isinstance(X, Tensor) else f' {X.dtype} {X.ndim}D'})"
        )
    if len(X) < 2:
        raise ValueError(f"{where}: X needs at least 2 examples (got {len(X)})")
    if y is not None:
        if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
            raise TypeError(f"{where}: y must be a 1D int64 tensor of class labels")
        if len(y) != len(X):
            raise ValueError(f"{where}: X has {len(X)} examples but y has {len(y)} labels")


def _on_model(model: nn.Module, *tensors: Tensor) -> tuple[Tensor, ...]:
    p = next(model.parameters(), None)
    if p is None:
        return tensors
    return tuple(t.to(p.device, p.dtype) if t.is_floating_point() else t.to(p.device) for t in tensors)


# ---------------------------------------------------------------------------------------------
# Percentiles of one unit's input


def activation_percentiles(activations: np.ndarray, q: Sequence[float] = PERCENTILES) -> np.ndarray:
    r"""Percentiles of each row: ``(steps, n)`` recorded values -> ``(steps, len(q))``.

    Row :math:`t` holds one unit's input for the :math:`n` examples of the probe batch at
    evaluation :math:`t`; the result's row :math:`t` holds its percentiles, in the order of
    ``q``. Percentile :math:`q` of :math:`n` sorted values :math:`v_{(0)} \le \dots \le
    v_{(n-1)}` interpolates linearly between neighbors at position :math:`h = (n-1)\,q/100`:

    .. math::

        P_q = v_{(\lfloor h 
floor)} + (h - \lfloor h 
floor)
              \left(v_{(\lfloor h 
floor + 1)} - v_{(\lfloor h 
floor)}
ight)

    (numpy's default, ``np.percentile(..., method="linear")``, and ``torch.quantile``'s).

    Args:
        activations: ``(steps, n)`` array, ``n >= 1``.
        q: percentiles in ``[0, 100]`` (15 means the 15th percentile, not 0.15).

    Returns:
        float64 array ``(steps, len(q))``.

    Example:
        >>> activation_percentiles(np.array([[0.0, 1.0, 2.0, 3.0, 4.0]]))
        array([[0.6, 2. , 3.4]])
    """
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(
            f"activation_percentiles: expected a 2D array (steps, n) with n >= 1 (got shape "
            f"{a.shape})"
        )
    q_arr = np.asarray(q, dtype=np.float64)
    if q_arr.ndim != 1 or np.any(~np.isfinite(q_arr)) or np.any((q_arr < 0) | (q_arr > 100)):
        raise ValueError(
            f"activation_percentiles: q must be percentiles between 0 and 100, such as "
            f"(15, 50, 85) (got {q!r})"
        )
    # Percentiles of each row (axis=1), stacked as columns: (len(q), steps) -> (steps, len(q)).
    return np.percentile(a, q_arr, axis=1).T


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
    exactly as it was (:func:`course_lib.nn.as_found`).

    Args:
        model: e.g. a :func:`course_lib.experiments.models.make_mlp` model.
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module (got {type(model).__name__})")
    _check_batch(X, where)
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
            (X,) = _on_model(model, X)
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
    if units is None or (_checks.is_int(units)):
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
    """A ``record(step, model)`` for :func:`course_lib.experiments.training.train`: percentiles of unit inputs.

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
    _check_batch(X, "percentile_recorder")
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
        history: a :class:`course_lib.experiments.training.History` recorded with
            :func:`percentile_recorder` (same ``q`` and ``prefix``).
        units: ``None`` or an int for a recorder of one unit: returns
            ``(evaluations, len(q))``; the list given to the recorder (or part of it):
            returns ``(evaluations, len(units), len(q))``.

    Example:
        >>> traces = percentile_traces(history)     # columns p15, p50, p85
        >>> steps = history.eval_steps
    """
    q = tuple(float(v) for v in q)
    single = units is None or (_checks.is_int(units))
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


def percentile_drift(traces: np.ndarray, start: int = 0, end: int = -1) -> float:
    r"""How far a unit's input distribution moved between two evaluations.

    With the 15th, 50th and 85th percentiles :math:`p_{15}, p_{50}, p_{85}` at evaluations
    ``start`` and ``end``, the drift is the change of the median plus the change of the
    spread between the outer percentiles:

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
    t = np.asarray(traces, dtype=np.float64)
    if t.ndim not in (2, 3) or t.shape[-1] != 3:
        raise ValueError(
            f"percentile_drift: expected traces of shape (evaluations, 3) or (evaluations, "
            f"units, 3) with columns p15, p50, p85 (got shape {t.shape})"
        )
    n = t.shape[0]
    for name, i in (("start", start), ("end", end)):
        if not _checks.is_int(i) or not -n <= i < n:
            raise ValueError(f"percentile_drift: {name} must index one of the {n} evaluations (got {i!r})")
    a, b = t[start], t[end]
    median = np.abs(b[..., 1] - a[..., 1])
    spread = np.abs((b[..., 2] - b[..., 0]) - (a[..., 2] - a[..., 0]))
    return float(np.mean(median + spread))


def percentile_jitter(traces: np.ndarray) -> float:
    r"""How much a unit's input distribution moves from one evaluation to the next, on average.

    The same two ingredients as :func:`percentile_drift` (median and outer spread), but
    between consecutive evaluations :math:`k` and :math:`k+1`, averaged over all of them:

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
    t = np.asarray(traces, dtype=np.float64)
    if t.ndim not in (2, 3) or t.shape[-1] != 3 or t.shape[0] < 2:
        raise ValueError(
            f"percentile_jitter: expected traces of shape (evaluations, 3) or (evaluations, "
            f"units, 3) with columns p15, p50, p85 and at least 2 evaluations (got shape {t.shape})"
        )
    median = np.abs(np.diff(t[..., 1], axis=0))
    spread = np.abs(np.diff(t[..., 2] - t[..., 0], axis=0))
    return float(np.mean(median + spread))


# ---------------------------------------------------------------------------------------------
# The landscape along the gradient


@dataclass(frozen=True)
class GradientDirectionProbe:
    r"""What the loss and its gradient do along :math:`\theta - \eta g`, for each :math:`\eta`.

    Attributes:
        etas: ``(K,)`` step sizes :math:`\eta > 0`, increasing.
        loss0: :math:`L(\theta)`.
        grad_norm: :math:`\lVert g \rVert_2`, the gradient's norm at :math:`\theta`.
        losses: ``(K,)`` :math:`L(\theta - \eta g)`.
        grad_changes: ``(K,)`` :math:`\lVert \nabla L(\theta - \eta g) - g \rVert_2`.
    """

    etas: np.ndarray
    loss0: float
    grad_norm: float
    losses: np.ndarray
    grad_changes: np.ndarray

    @property
    def loss_variation(self) -> float:
        """:math:`\\max_\\eta L - \\min_\\eta L` over the probed step sizes."""
        return float(self.losses.max() - self.losses.min())

    @property
    def grad_change(self) -> float:
        """The largest gradient change, :math:`\\max_\\eta \\lVert \\nabla L(\\theta - \\eta g) - g\\rVert`."""
        return float(self.grad_changes.max())

    @property
    def beta_smoothness(self) -> float:
        """Effective :math:`\\beta`-smoothness: :math:`\\max_\\eta \\lVert\\Delta\\nabla L\\rVert / \\lVert \\eta g \\rVert`.

        ``nan`` if the gradient is exactly zero (no direction to move in).
        """
        if self.grad_norm == 0.0:
            return math.nan
        return float(np.max(self.grad_changes / (self.etas * self.grad_norm)))

    @staticmethod
    def record_keys(prefix: str = "") -> list[str]:
        """The keys of :meth:`as_record`."""
        return [
            prefix + k
            for k in ("loss0", "loss_min", "loss_max", "loss_variation", "grad_norm",
                      "grad_change_min", "grad_change_max", "beta_smoothness")
        ]

    def as_record(self, prefix: str = "") -> dict[str, float]:
        """The summary numbers as a dict, for a recorder (keys: :meth:`record_keys`)."""
        return {
            f"{prefix}loss0": self.loss0,
            f"{prefix}loss_min": float(self.losses.min()),
            f"{prefix}loss_max": float(self.losses.max()),
            f"{prefix}loss_variation": self.loss_variation,
            f"{prefix}grad_norm": self.grad_norm,
            f"{prefix}grad_change_min": float(self.grad_changes.min()),
            f"{prefix}grad_change_max": self.grad_change,
            f"{prefix}beta_smoothness": self.beta_smoothness,
        }


def _check_etas(etas: object, where: str) -> np.ndarray:
    e = np.asarray(etas, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(
            f"{where}: etas must be a non-empty 1D list of positive step sizes, e.g. "
            f"np.linspace(0.25, 2, 8) (got {etas!r})"
        )
    return np.sort(e)


def probe_gradient_direction(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    etas: Sequence[float] | np.ndarray,
    mode: str = "train",
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> GradientDirectionProbe:
    r"""Walk from :math:`\theta` along :math:`-g` and measure the loss and the gradient.

    :math:`g = \nabla_\theta L(\theta)` is the gradient of ``loss_fn(model(X), y)`` with
    respect to all trainable parameters (one long vector); for each :math:`\eta` in ``etas``
    the parameters are set to :math:`\theta - \eta g` and the loss and gradient are computed
    again on the same batch. Every forward pass sees the same batch, the same running
    statistics and the same noise (random generators are reset before each), so the only
    thing that changes is :math:`\theta`. Afterwards the model is exactly as before
    (:func:`course_lib.nn.as_found`): parameters, ``.grad``, buffers, modes, random states.

    Args:
        model: the network at the current training step.
        X, y: a fixed batch (e.g. a few hundred training examples) and its labels.
        etas: step sizes :math:`\eta > 0` (Santurkar et al. use a range around the learning
            rate).
        mode: ``"train"`` (batch statistics, as the training loss) or ``"eval"``.
        loss_fn: ``loss_fn(logits, y) -> scalar``; cross-entropy by default.

    Returns:
        A :class:`GradientDirectionProbe` (``loss_variation``, ``grad_change``,
        ``beta_smoothness`` and the curves behind them).

    Example:
        >>> probe = probe_gradient_direction(model, data.X_train[:500], data.y_train[:500],
        ...                                  etas=np.linspace(0.2, 2.0, 10))
        >>> probe.loss_variation, probe.grad_change, probe.beta_smoothness
    """
    where = "probe_gradient_direction"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module (got {type(model).__name__})")
    _check_batch(X, where, y)
    eta_arr = _check_etas(etas, where)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{where}: the model has no trainable parameters")
    X, y = _on_model(model, X, y)

    with as_found(model, _checks.check_mode(mode, where), state=True) as snap:
        start = [p.detach().clone() for p in params]

        def loss_and_grad() -> tuple[float, list[Tensor]]:
            # Same noise, same running statistics, same dropout mask for every point.
            snap.restore_randomness()
            snap.restore_buffers()
            torch.manual_seed(0)
            with torch.enable_grad():
                loss = loss_fn(model(X), y)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
            return float(loss.detach()), [g.detach() for g in grads]

        loss0, g0 = loss_and_grad()
        g_norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g0))
        losses, changes = [], []
        for eta in eta_arr:
            with torch.no_grad():
                for p, p0, g in zip(params, start, g0):
                    p.copy_(p0 - float(eta) * g)
            loss, grads = loss_and_grad()
            losses.append(loss)
            changes.append(
                math.sqrt(sum(float(((g - h).double() ** 2).sum()) for g, h in zip(grads, g0)))
            )
    return GradientDirectionProbe(
        etas=eta_arr,
        loss0=loss0,
        grad_norm=g_norm,
        losses=np.asarray(losses),
        grad_changes=np.asarray(changes),
    )


def landscape_recorder(
    X: Tensor,
    y: Tensor,
    etas: Sequence[float] | np.ndarray,
    mode: str = "train",
    prefix: str = "",
    every: int = 1,
) -> Callable[[int, nn.Module], dict[str, float]]:
    """A ``record(step, model)`` for :func:`course_lib.experiments.training.train`: the landscape probe.

    Calls :func:`probe_gradient_direction` on the fixed batch ``(X, y)`` and returns
    :meth:`GradientDirectionProbe.as_record`: ``loss0``, ``loss_min``, ``loss_max``,
    ``loss_variation``, ``grad_norm``, ``grad_change_min``, ``grad_change_max``,
    ``beta_smoothness`` (each with ``prefix``).

    A probe costs ``len(etas) + 1`` forward and backward passes on ``X``. With ``every=k``
    it runs only at steps that are multiples of ``k`` and records ``nan`` at the other
    evaluations (so other recorders can be called more often); summarize with
    ``np.nanmedian``.

    Example:
        >>> rec = landscape_recorder(data.X_train[:500], data.y_train[:500], np.linspace(0.2, 2, 10))
        >>> history = train(model, data, steps=500, lr=1.0, eval_every=25, record=rec)
        >>> np.median(history.records["loss_variation"])
    """
    _check_batch(X, "landscape_recorder", y)
    eta_arr = _check_etas(etas, "landscape_recorder")
    _checks.check_mode(mode, "landscape_recorder")
    if not _checks.is_int(every) or every < 1:
        raise ValueError(f"landscape_recorder: every must be a positive int (got {every!r})")
    skipped = {k: math.nan for k in GradientDirectionProbe.record_keys(prefix)}

    def record(step: int, model: nn.Module) -> dict[str, float]:
        if step % every:
            return dict(skipped)
        return probe_gradient_direction(model, X, y, eta_arr, mode).as_record(prefix)

    record.__name__ = "landscape_recorder"
    return record
