"""The grading framework: feedback, the exercise registry, and a safe case runner.

A grader is a pure function ``submission -> Feedback`` registered under an exercise id::

    @register("bn_forward", "fn(x, gamma, beta, eps) -> out: batch norm forward pass")
    def grade_bn_forward(submission) -> Feedback:
        return run_cases(submission, cases=..., arg_names=..., output_names=...,
                         mistakes=...)

Most graders only build their cases (inputs plus the reference output from ``course_lib``)
and their list of classic mistakes, and let :func:`run_cases` do the rest: call the learner's
function on fresh copies of the inputs, report anything broken (exceptions, ``None``, wrong
type/shape, NaN), compare values, and name the mistake whose output the submission
reproduces. Nothing the learner's code does can make a grader raise.

A new chapter adds a module ``course_lib/exercises/<idea>.py`` with its ``@register``-ed
graders and imports it in ``course_lib/exercises/__init__.py``.
"""

from __future__ import annotations

import inspect
import os
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._compare import (
    check_array,
    cmp_line,
    fmt_diff,
    is_close,
    max_abs_diff,
    tolerances,
    type_name,
)

__all__ = [
    "Feedback",
    "EXERCISES",
    "register",
    "grade",
    "Case",
    "Mistake",
    "run_cases",
]


@dataclass(frozen=True)
class Feedback:
    """The result of grading one submission.

    Attributes:
        passed: True if the submission is correct on every case.
        message: plain text, possibly several lines: what was expected, what arrived, the
            maximum absolute difference and on which case; for a recognized mistake, what
            the learner did, why it is wrong and how to fix it.
        mistake: a stable id when the grader recognized the problem, else None (always None
            when ``passed``). Misconceptions are exercise-specific ids such as
            ``"unbiased_variance"``, ``"missing_eps"``, ``"test_refit"``; broken submissions
            get generic ids: ``"not_implemented"``, ``"exception"``, ``"wrong_signature"``,
            ``"returned_none"``, ``"wrong_type"``, ``"wrong_length"``, ``"wrong_shape"``,
            ``"not_finite"``, ``"mutates_input"``, ``"wrong_values"``; ``"grader_error"``
            means the grader itself failed (a course bug, not the learner's).
        solution: the correct recipe when the submission runs and returns something of the
            right kind but it is wrong (wrong values, or a network with wrong layers); else "".
            It is kept out of ``message`` on purpose: the message says what went wrong and
            why, which is usually enough to fix it, and the widget shows the solution folded
            away, for a learner who asks for it.
    """

    passed: bool
    message: str
    mistake: str | None = None
    solution: str = ""


# id -> one-line description ("fn(...) -> ...: what it computes"), in registration order.
EXERCISES: dict[str, str] = {}
_GRADERS: dict[str, Callable[[Any], Feedback]] = {}


def register(exercise_id: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator that registers ``grader(submission) -> Feedback`` under ``exercise_id``.

    Args:
        exercise_id: short snake_case id used in notebooks, e.g. ``"bn_forward"``.
        description: one line: the call signature the grader uses and what it computes.

    Raises:
        ValueError: if the id is malformed or already taken by a different grader.
    """
    if not isinstance(exercise_id, str) or not exercise_id.isidentifier():
        raise ValueError(f"exercise id must be a snake_case identifier (got {exercise_id!r})")
    if not isinstance(description, str) or not description or "\n" in description:
        raise ValueError(f"description of {exercise_id!r} must be one non-empty line")

    def decorator(grader: Callable[[Any], Feedback]) -> Callable[[Any], Feedback]:
        old = _GRADERS.get(exercise_id)
        # Re-registering the same function (importlib.reload) is fine; two graders are not.
        if old is not None and (old.__module__, old.__qualname__) != (
            grader.__module__,
            grader.__qualname__,
        ):
            raise ValueError(
                f"exercise id {exercise_id!r} is already registered by "
                f"{old.__module__}.{old.__qualname__}"
            )
        _GRADERS[exercise_id] = grader
        EXERCISES[exercise_id] = description
        return grader

    return decorator


def grade(exercise_id: str, submission: Any) -> Feedback:
    """Grade ``submission`` (the learner's function) for exercise ``exercise_id``.

    Pure: no printing, no state. Never raises because of the submission; an unexpected
    failure of the grader itself comes back as ``Feedback(mistake="grader_error")``.

    Args:
        exercise_id: one of ``EXERCISES``.
        submission: the learner's function, e.g. ``grade("bn_forward", my_bn_forward)``.

    Returns:
        A :class:`Feedback`.

    Raises:
        ValueError: if ``exercise_id`` is not registered (the message lists valid ids).

    Example::

        >>> fb = grade("bn_forward", my_bn_forward)
        >>> fb.passed, fb.mistake
        (False, 'unbiased_variance')
    """
    grader = _GRADERS.get(exercise_id) if isinstance(exercise_id, str) else None
    if grader is None:
        valid = ", ".join(repr(k) for k in _GRADERS) or "(none registered)"
        raise ValueError(f"unknown exercise id {exercise_id!r}; valid ids are: {valid}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return grader(submission)
    except Exception as exc:  # a bug in the grader must not look like the learner's fault
        return Feedback(
            passed=False,
            message=(
                f"The grader for {exercise_id!r} failed with an internal error: "
                f"{type(exc).__name__}: {exc}\n"
                f"This is a bug in the course, not necessarily in your code. Please report "
                f"it together with your solution."
            ),
            mistake="grader_error",
        )


@dataclass(frozen=True)
class Case:
    """One input for the submission and the reference answer.

    Attributes:
        label: what the learner sees, e.g. ``"x (8, 5), eps=1e-05"``.
        args: positional arguments for the submission (never handed over directly: the
            runner passes copies).
        expected: the reference outputs, one float64 array per output name.
    """

    label: str
    args: tuple[Any, ...]
    expected: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Mistake:
    """A classic mistake, computed on purpose so a submission can be matched against it.

    Attributes:
        id: stable mistake id reported in ``Feedback.mistake``.
        explanation: what the learner did, why it is wrong, how to fix it (plain text).
        compute: the WRONG computation; same positional arguments as the submission,
            returns a tuple with one array per output name.
    """

    id: str
    explanation: str
    compute: Callable[..., tuple[np.ndarray, ...]]


@dataclass
class _Call:
    value: Any = None
    problem: tuple[str, str] | None = None
    mutated: tuple[str, ...] = ()


def _copy(arg: Any) -> Any:
    return arg.copy() if isinstance(arg, np.ndarray) else arg


def _learner_frame(exc: BaseException) -> str:
    """'in f, line 3: mu = x.mean(axis=1)' for the innermost frame outside numpy/torch."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # [0] is _call_submission
    here = os.path.dirname(os.path.abspath(__file__))
    for fr in reversed(frames):
        path = os.path.abspath(fr.filename)
        if "site-packages" in path or path.startswith(here) or "/numpy/" in path:
            continue
        code = f": {fr.line.strip()}" if fr.line else ""
        return f"\n  in {fr.name}, line {fr.lineno}{code}"
    return ""


def _call_submission(fn: Callable, args: tuple[Any, ...], arg_names: Sequence[str]) -> _Call:
    copies = tuple(_copy(a) for a in args)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = fn(*copies)
    except NotImplementedError:
        return _Call(
            problem=(
                "not_implemented",
                "Your function still raises NotImplementedError: fill in the body (replace "
                "the `raise NotImplementedError` line with your code), run the cell, and "
                "check again.",
            )
        )
    except (Exception, SystemExit) as exc:
        text = f"Your function raised {type(exc).__name__}: {exc}{_learner_frame(exc)}"
        if "broadcast" in str(exc):
            text += (
                "\nA shape mismatch like this usually means a statistic was reduced over the "
                "wrong axis or lost the axis it needs: per-feature statistics of an (N, D) "
                "array are x.mean(axis=0), of shape (D,), and broadcast against x."
            )
        return _Call(problem=("exception", text))
    mutated = tuple(
        name
        for name, orig, seen in zip(arg_names, args, copies)
        if isinstance(orig, np.ndarray) and not np.array_equal(orig, seen, equal_nan=True)
    )
    return _Call(value=value, mutated=mutated)


def _check_signature(fn: Any, args: tuple[Any, ...], call: str) -> tuple[str, str] | None:
    if not callable(fn):
        return (
            "wrong_type",
            f"Expected your function itself, e.g. grade(exercise_id, my_function), but got "
            f"{type_name(fn)}. Pass the function without calling it (no parentheses).",
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and some C callables: just try calling
        return None
    try:
        sig.bind(*args)
    except TypeError as exc:
        name = getattr(fn, "__name__", "your function")
        return (
            "wrong_signature",
            f"The grader calls your function as {call} ({len(args)} positional arguments), "
            f"but it is defined as {name}{sig} ({exc}). Give it exactly the parameters of "
            f"the exercise statement.",
        )
    return None


def _as_outputs(
    value: Any, expected: tuple[np.ndarray, ...], output_names: Sequence[str]
) -> tuple[tuple[Any, ...] | None, tuple[str, str] | None]:
    """Split the returned value into one item per output, or report a structural problem."""
    if len(output_names) == 1:
        name = output_names[0]
        if isinstance(value, tuple) and value and isinstance(value[0], np.ndarray):
            return None, (
                "wrong_type",
                f"Your function returned a tuple of {len(value)} items; expected only the "
                f"array {name}. (The CS231n-style forward(x) -> (out, cache) is what the "
                f"library does; here return just {name}.)",
            )
        return (value,), None
    want = "(" + ", ".join(output_names) + ")"
    if value is None:
        return None, (
            "returned_none",
            f"Your function returned None, expected a tuple {want}. Did you forget the "
            f"`return` statement?",
        )
    if not isinstance(value, (tuple, list)):
        return None, (
            "wrong_type",
            f"Your function returned a {type_name(value)}, expected a tuple {want} of "
            f"{len(output_names)} arrays: return {', '.join(output_names)}.",
        )
    if len(value) != len(output_names):
        return None, (
            "wrong_length",
            f"Your function returned {len(value)} values, expected {len(output_names)}: "
            f"{want}.",
        )
    return tuple(value), None


def _closes(got: tuple[np.ndarray, ...], ref: tuple[np.ndarray, ...]) -> list[bool]:
    return [is_close(g, r) for g, r in zip(got, ref)]


def run_cases(
    submission: Any,
    *,
    cases: Sequence[Case],
    arg_names: Sequence[str],
    output_names: Sequence[str],
    mistakes: Sequence[Mistake] = (),
    fix: str = "",
    hint: str = "",
    diagnose_shape: Callable[[str, tuple, Case], tuple[str, str] | None] | None = None,
) -> Feedback:
    """Run ``submission`` on every case and turn what happens into :class:`Feedback`.

    Order of checks: the signature; then per case: exceptions, the returned structure,
    type, dtype, shape, finiteness; then values on all cases; then whether the inputs were
    modified in place. Wrong values are matched against ``mistakes`` (first the mistake
    that explains every output on every case, then output by output); a match names the
    mistake, otherwise the feedback is ``wrong_values`` with ``hint``.

    Args:
        submission: the learner's function.
        cases: inputs and reference outputs; several shapes/seeds so every mistake in
            ``mistakes`` differs from the reference on at least one case.
        arg_names: names of the positional arguments, for messages (``("x", "gamma", ...)``).
        output_names: names of the outputs; one name means the function returns one array,
            several mean it returns a tuple.
        mistakes: classic mistakes in priority order.
        fix: the correct recipe: the feedback's ``solution`` when values are wrong.
        hint: what to check when the values are wrong and no classic mistake matches.
        diagnose_shape: optional ``(output_name, got_shape, case) -> (mistake_id, message)``
            that explains a wrong shape (e.g. a sum over the wrong axis).
    """
    call = f"fn({', '.join(arg_names)})"
    n = len(cases)
    problem = _check_signature(submission, cases[0].args, call)
    if problem is not None:
        return Feedback(False, problem[1], problem[0])

    results: list[tuple[np.ndarray, ...]] = []
    mutated: set[str] = set()
    for k, case in enumerate(cases):
        where = f"\n(case {k + 1} of {n}: {case.label})"
        res = _call_submission(submission, case.args, arg_names)
        if res.problem is not None:
            return Feedback(False, res.problem[1] + where, res.problem[0])
        mutated.update(res.mutated)
        outputs, problem = _as_outputs(res.value, case.expected, output_names)
        if problem is not None:
            return Feedback(False, problem[1] + where, problem[0])
        assert outputs is not None
        for name, got, exp in zip(output_names, outputs, case.expected):
            problem = check_array(name, got, exp)
            if problem is not None and problem[0] == "wrong_shape" and diagnose_shape:
                problem = diagnose_shape(name, got.shape, case) or problem
            if problem is not None:
                return Feedback(False, problem[1] + where, problem[0])
        results.append(outputs)

    ok = [_closes(got, case.expected) for got, case in zip(results, cases)]
    wrong_outputs = [j for j in range(len(output_names)) if not all(o[j] for o in ok)]

    def report(k: int, title: str) -> str:
        width = max(len(s) for s in output_names)
        lines = [
            cmp_line(name, got, exp, width)
            for name, got, exp in zip(output_names, results[k], cases[k].expected)
        ]
        return f"{title} case {k + 1} of {n}: {cases[k].label}\n" + "\n".join(lines)

    # The case where the answer is furthest off: it illustrates a mistake best.
    worst = max(range(n), key=lambda k: _worst_diff(results[k], cases[k].expected))
    if not wrong_outputs:
        if mutated:
            names = " and ".join(sorted(mutated))
            return Feedback(
                False,
                f"Your results are right, but your function modified its input {names} in "
                f"place (for example with x -= mu or x /= std). The caller's array is now "
                f"changed, so the next cell that uses it silently gets different data. Work "
                f"on new arrays instead: x_centered = x - mu.",
                "mutates_input",
            )
        largest = max(
            max_abs_diff(g, e)[0] for res, c in zip(results, cases) for g, e in zip(res, c.expected)
        )
        where = "" if largest < 1e-12 else f" in case {worst + 1} of {n}: {cases[worst].label}"
        return Feedback(
            True,
            f"✓ Correct: all {n} cases match the reference; largest difference "
            f"{fmt_diff(largest)}{where}.{_dtype_note(results)}",
            None,
        )

    found = _identify(results, cases, mistakes, wrong_outputs)

    names = [output_names[j] for j in wrong_outputs]
    right = [s for j, s in enumerate(output_names) if j not in wrong_outputs]
    if len(output_names) == 1:
        head = f"{names[0]} does not match the reference."
    else:
        head = f"Wrong: {', '.join(names)}." + (f" Right: {', '.join(right)}." if right else "")
    parts = [head]
    unexplained = [j for j in wrong_outputs if not any(j in js for _, js in found)]
    groups = [(m.explanation, js) for m, js in found]
    if unexplained and hint:
        groups.append(("No classic mistake matches. " + hint, unexplained))
    for text, js in groups:
        # Say which outputs a paragraph is about only when it is not all of the wrong ones.
        which = ", ".join(output_names[j] for j in js)
        parts.append(text if len(groups) == 1 else f"[{which}] {text}")
    if mutated:
        parts.append(f"Also: your function modified its input {' and '.join(sorted(mutated))} "
                     f"in place; work on new arrays instead (x = x - mu, not x -= mu).")
    parts.append(_dtype_note(results).strip())
    parts.append(report(worst, "Largest difference in"))
    mistake_id = found[0][0].id if found else "wrong_values"
    return Feedback(False, "\n\n".join(p for p in parts if p), mistake_id, solution=fix)


def _identify(
    results: list[tuple[np.ndarray, ...]],
    cases: Sequence[Case],
    mistakes: Sequence[Mistake],
    wrong_outputs: list[int],
) -> list[tuple[Mistake, list[int]]]:
    """Which mistakes explain the wrong outputs: ``[(mistake, output indices)]``.

    A mistake explains an output if the submission matches the mistake's output on every
    case. First look for one mistake that explains all outputs at once (so that e.g. swapped
    dgamma/dbeta is one mistake, not two); failing that, explain each wrong output on its own.
    """
    n_out = len(cases[0].expected)
    wrong = [_compute_mistake(m, cases) for m in mistakes]

    def matches(mi: int, j: int) -> bool:
        return all(is_close(res[j], w[j]) for res, w in zip(results, wrong[mi]))

    for mi, mistake in enumerate(mistakes):
        if all(matches(mi, j) for j in range(n_out)):
            return [(mistake, list(wrong_outputs))]
    found: list[tuple[Mistake, list[int]]] = []
    for j in wrong_outputs:
        mi = next((mi for mi in range(len(mistakes)) if matches(mi, j)), None)
        if mi is None:
            continue
        same = [f for f in found if f[0].id == mistakes[mi].id]
        if same:
            same[0][1].append(j)
        else:
            found.append((mistakes[mi], [j]))
    return found


def _compute_mistake(mistake: Mistake, cases: Sequence[Case]) -> list[tuple[np.ndarray, ...]]:
    out = []
    with np.errstate(all="ignore"):
        for case in cases:
            wrong = tuple(np.asarray(a, dtype=np.float64) for a in mistake.compute(*case.args))
            if len(wrong) != len(case.expected) or any(
                w.shape != e.shape for w, e in zip(wrong, case.expected)
            ):
                raise RuntimeError(f"mistake {mistake.id!r} returned the wrong structure")
            out.append(wrong)
    return out


def _worst_diff(got: tuple[np.ndarray, ...], exp: tuple[np.ndarray, ...]) -> float:
    """Largest |got - exp| relative to the size of exp, over all outputs."""
    return max(
        float(np.max(np.abs(g - e), initial=0.0)) / max(1.0, float(np.max(np.abs(e), initial=0.0)))
        for g, e in zip(got, exp)
    )


def _dtype_note(results: list[tuple[np.ndarray, ...]]) -> str:
    low = sorted({str(a.dtype) for r in results for a in r if tolerances(a.dtype)[0] > 1e-5})
    if not low:
        return ""
    return (
        f"\nNote: your result has dtype {', '.join(low)} while the inputs are float64; it was "
        f"compared with a looser tolerance. Keep float64 (torch.from_numpy keeps it; "
        f"torch.tensor(..., dtype=torch.float32) or .float() drops it)."
    )
