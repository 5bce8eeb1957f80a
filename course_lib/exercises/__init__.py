"""Graders for the course's code exercises, and the widget that shows their feedback.

Public API (other code depends on these names):

- :class:`Feedback` -- ``passed``, ``message`` (plain text), ``mistake`` (a stable id or
  None), ``solution`` (the recipe, shown folded away).
- :func:`grade` -- ``grade(exercise_id, submission, timeout=None) -> Feedback``; pure, never
  raises or hangs because of the submission.
- :func:`check` -- ``check(exercise_id, submission, timeout=None) -> ipywidgets.HTML``, for
  notebooks; :func:`feedback_html` -- the HTML it shows (pure): a verdict, or for a function
  not filled in yet (the stub's NotImplementedError, an empty body) a neutral card that says
  how to run the exercise, with the chapter's Colab and Binder links (:mod:`.launch`). That
  card is what the static site stores under every exercise.
- :data:`EXERCISES` -- ``{exercise_id: one-line description with the call signature}``.
- :data:`LIMITS` -- ``LIMITS.timeout`` (seconds of learner code per grading, default 10) and
  ``LIMITS.max_output`` (characters of printed output kept for the feedback).
- For writing graders: :func:`register`, :func:`register_cases`, :class:`Case`,
  :class:`Mistake`, :class:`Problem`, :func:`run_cases`, :func:`read_outputs`,
  :func:`hard_coded_eps` (below).

Exercise ids never coincide with a public name of ``course_lib`` (a test checks it): a
learner who passes the library's ``bn_forward`` (which returns ``(out, cache)``) to the
exercise ``"bn_forward_pass"`` is told what is wrong by the ordinary checks.

Registered exercises:

- ``"standardize_train_test"``: ``fn(X_train, X_test) -> (X_train_std, X_test_std)`` (chapter 1)
- ``"bn_forward_pass"``: ``fn(x, gamma, beta, eps) -> out`` (chapter 2)
- ``"bn_backward_pass"``: ``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` (chapter 2)
- ``"build_bn_net"``: ``build(in_features, widths, out_features) -> nn.Sequential`` (chapter 3)
- ``"percentiles_per_step"``: ``fn(activations) -> (steps, 3)`` array of 15th/50th/85th percentiles
  (chapter 4)
- ``"normalize_in_batch"``: ``fn(z, mates, eps) -> z_norm`` of one example in its mini-batch
  (chapter 5)
- ``"update_running"``: ``fn(running_mean, running_var, x, momentum) -> (new_mean, new_var)``
  (chapter 6)
- ``"fold_bn"``: ``fn(W, b, gamma, beta, running_mean, running_var, eps) -> (W', b')``
  (chapter 6)
- ``"bn2d_forward"``: ``fn(x, gamma, beta, eps) -> out`` for ``(N, C, H, W)`` (chapter 7)
- ``"update_ratio"``: ``fn(weights, grads, lr) -> ratios``, one per layer (chapter 7)
- ``"group_norm_forward"``: ``fn(x, G, gamma, beta, eps) -> out`` (chapter 8)
- ``"sync_bn_sums"``: ``fn(x) -> (mu, M2)``, what each process sends in SyncBN (chapter 8)

Writing a grader (chapters 7, 8, ...): add ``course_lib/exercises/<idea>.py`` and import it
below. A grader is ``@register(id, "fn(args) -> outputs: what it computes (chapter N)")`` on
a function ``submission -> Feedback`` that builds:

- its **cases**: ``Case(label, args, expected)``, inputs and the reference outputs computed
  by ``course_lib``'s own implementation (never a second copy of the formula). Choose them so
  that every classic mistake differs from the reference on some case, with shapes where
  ``N != D``, non-default ``eps``/``momentum``/``lr``/``G`` (so a hard-coded one shows; name
  it with its value, :func:`hard_coded_eps`), and at least two
  cases whose inputs share a shape but not their data (so a cache shows);
- its **mistakes**: ``Mistake(id, explanation, compute)``, each ``compute`` WRONG on
  purpose, in priority order; the explanation says what the learner did, why it is wrong
  and how to fix it;

and returns ``run_cases(submission, cases=..., arg_names=..., output_names=...,
mistakes=..., fix=..., hint=...)``; ``register_cases(id, description, make_cases,
**options)`` registers exactly that grader in one call. ``run_cases`` is the one case loop
of every grader: it checks the signature, calls the submission on deep copies of each case's
inputs in a sandbox (time limit, captured output, every exception caught, interpreter
settings put back and named), checks that no argument was changed in place (arrays, and
lists, tuples and dicts of them, item by item), reads what it returned (converting ndarray
subclasses, refusing lists, tensors and other array-likes with a message), checks for state
(a case answered with another case's answer, case 1 answered differently when asked again),
compares values and names the mistake. Optional hooks: ``diagnose_shape`` explains a wrong
shape; ``diagnose_error`` explains an exception (a per-channel vector not reshaped, a fixed
number of groups); ``read(value, case)`` turns a returned value that is not arrays (a
network) into arrays or a ``Problem``, under the same guard (a hook that only prepares the
value, e.g. a list of numbers into an array, ends with the default
``read_outputs(output_names, diagnose_shape)``); ``success`` words the pass message.
Tests for a grader go in
``tests/test_exercises_<idea>.py`` (right answers written several ways pass, each mistake is
named) and the grader joins ``tests/test_exercises_fuzz.py``'s tables.

Example::

    >>> from course_lib.exercises import grade, check
    >>> grade("bn_forward_pass", my_bn_forward).passed
    True
    >>> check("bn_forward_pass", my_bn_forward, timeout=60)   # a notebook: a green or red box
"""

from ._core import (EXERCISES, LIMITS, Case, Feedback, Mistake, Problem, grade, hard_coded_eps,
                    read_outputs, register, register_cases, run_cases)

# Importing a grader module registers its exercises (order = order in EXERCISES).
from . import standardize  # noqa: E402,F401  (chapter 1)
from . import batchnorm  # noqa: E402,F401  (chapter 2)
from . import network  # noqa: E402,F401  (chapter 3)
from . import percentiles  # noqa: E402,F401  (chapter 4)
from . import batch_noise  # noqa: E402,F401  (chapter 5)
from . import running_stats, fold  # noqa: E402,F401  (chapter 6)
from . import batchnorm2d, diagnostics  # noqa: E402,F401  (chapter 7)
from . import small_batches  # noqa: E402,F401  (chapter 8)
from . import network_numpy  # noqa: E402,F401  (chapter 9)
from .widget import check, feedback_html  # noqa: E402

__all__ = ["EXERCISES", "LIMITS", "Case", "Feedback", "Mistake", "Problem", "check",
           "feedback_html", "grade", "hard_coded_eps", "read_outputs", "register",
           "register_cases", "run_cases"]
