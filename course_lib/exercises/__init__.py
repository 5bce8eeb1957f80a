"""Graders for the course's code exercises, and the widget that shows their feedback.

Public API (other code depends on these names):

- :class:`Feedback` -- ``passed``, ``message`` (plain text), ``mistake`` (a stable id or None).
- :func:`grade` -- ``grade(exercise_id, submission) -> Feedback``; pure, never raises because
  of the submission.
- :data:`EXERCISES` -- ``{exercise_id: one-line description with the call signature}``.
- :func:`register` -- decorator that adds a grader; see ``_core`` for how to write one.
- :func:`check` -- ``check(exercise_id, submission) -> ipywidgets.HTML``, for notebooks.
- :func:`feedback_html` -- the HTML that ``check`` shows (pure).

Registered exercises:

- ``"standardize"``: ``fn(X_train, X_test) -> (X_train_std, X_test_std)`` (chapter 1)
- ``"bn_forward"``: ``fn(x, gamma, beta, eps) -> out`` (chapter 2)
- ``"bn_backward"``: ``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` (chapter 2)
- ``"build_bn_net"``: ``build(in_features, widths, out_features) -> nn.Sequential`` (chapter 3)
- ``"percentiles"``: ``fn(activations) -> (steps, 3)`` array of 15th/50th/85th percentiles
  (chapter 4)
- ``"ema_update"``: ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)``
  (chapter 6)
- ``"fold_bn"``: ``fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W', b')``
  (chapter 6)
- ``"bn2d_forward"``: ``fn(x, gamma, beta, eps) -> out`` for ``(N, C, H, W)`` (chapter 7)
- ``"update_ratio"``: ``fn(weights, grads, lr) -> ratios``, one per layer (chapter 7)

To add exercises for a chapter, write ``course_lib/exercises/<idea>.py`` with ``@register``-ed
graders (most are a list of cases and a list of classic mistakes passed to
``_core.run_cases``) and import it below.

Example::

    >>> from course_lib.exercises import grade, check
    >>> grade("bn_forward", my_bn_forward).passed
    True
    >>> check("bn_forward", my_bn_forward)     # in a notebook: a green or red box
"""

from ._core import EXERCISES, Feedback, grade, register

# Importing a grader module registers its exercises (order = order in EXERCISES).
from . import standardize  # noqa: E402,F401  (chapter 1)
from . import batchnorm  # noqa: E402,F401  (chapter 2)
from . import network  # noqa: E402,F401  (chapter 3)
from . import percentiles  # noqa: E402,F401  (chapter 4)
from . import running_stats, fold  # noqa: E402,F401  (chapter 6)
from . import batchnorm2d, diagnostics  # noqa: E402,F401  (chapter 7)
from .widget import check, feedback_html  # noqa: E402

__all__ = ["EXERCISES", "Feedback", "check", "feedback_html", "grade", "register"]
