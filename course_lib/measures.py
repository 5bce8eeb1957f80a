r"""Measurements of a layer that graders and experiments share: the percentiles of a unit's
input over training (chapter 4) and the update-to-data ratio of a weight matrix (chapter 7).

Each is one short formula; the probes in :mod:`course_lib.experiments.probes` record them
during training, and the graders in :mod:`course_lib.exercises` compare a learner's version
with them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PERCENTILES", "activation_percentiles", "update_to_data_ratio"]

#: The percentiles of Ioffe & Szegedy's Fig. 1 (b-c).
PERCENTILES: tuple[float, ...] = (15.0, 50.0, 85.0)


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


def update_to_data_ratio(W_before, W_after) -> float:
    r"""How big a step was compared with the weights it changed.

    .. math:: r = \frac{\operatorname{std}(W_{\text{after}} - W_{\text{before}})}
                       {\operatorname{std}(W_{\text{before}})}

    For plain SGD the step is :math:`-\alpha\, dW`, so :math:`r = \alpha
    \operatorname{std}(dW) / \operatorname{std}(W)`. Numpy arrays or torch tensors.

    Example:
        >>> W = np.array([[1.0, -1.0], [2.0, -2.0]])
        >>> update_to_data_ratio(W, W + np.array([[0.01, -0.01], [0.01, -0.01]]))
        0.006324555320336764
    """
    update = W_after - W_before
    return float(update.std() / W_before.std())
