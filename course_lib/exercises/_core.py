"""The grading framework: feedback, the exercise registry, and the one case loop.

A grader is a pure function ``submission -> Feedback`` registered under an exercise id::

    @register("bn_forward_pass", "fn(x, gamma, beta, eps) -> out: batch norm forward pass")
    def grade_bn_forward(submission) -> Feedback:
        return run_cases(submission, cases=..., arg_names=..., output_names=...,
                         mistakes=...)

Most graders only build their cases (inputs plus the reference output from ``course_lib``)
and their list of classic mistakes, and let :func:`run_cases` do the rest: call the learner's
function on fresh copies of the inputs (through :mod:`._sandbox`: time limit, captured
output, every exception caught), read what it returned (exceptions, ``None``, wrong
type/shape/dtype, NaN; array-likes converted or refused), check that it keeps no state
(cases sharing a shape, one case run twice), compare values, and name the mistake whose output
the submission reproduces. Nothing the learner's code does can make a grader raise or hang.

A grader whose submission returns something other than arrays (a network, say) passes a
``read(value, case)`` hook that turns the returned value into arrays or a :class:`Problem`;
it runs under the same guard as the submission.
"""

from __future__ import annotations

import copy
import dis
import inspect
import math
import types
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from . import _sandbox
from ._compare import check_array, cmp_line, fmt_diff, is_close, max_abs_diff, tolerances, type_name

__all__ = ["Feedback", "EXERCISES", "register", "register_cases", "grade", "Case", "Mistake",
           "Problem", "run_cases", "read_outputs", "hard_coded_eps", "LIMITS"]

LIMITS = _sandbox.LIMITS


@dataclass(frozen=True)
class Feedback:
    """The result of grading one submission.

    Attributes:
        passed: True if the submission is correct on every case.
        message: plain text, possibly several lines: what was expected, what arrived, the
            maximum absolute difference and on which case; for a recognized mistake, what
            the learner did, why it is wrong and how to fix it; at the end, the beginning of
            anything the learner's code printed.
        mistake: a stable id when the grader recognized the problem, else None (always None
            when ``passed``). Misconceptions are exercise-specific ids such as
            ``"unbiased_variance"``, ``"missing_eps"``, ``"hard_coded_eps"``; broken
            submissions get generic ids: ``"not_implemented"``, ``"exception"``,
            ``"timeout"``, ``"wrong_signature"``, ``"returned_none"``, ``"wrong_type"``,
            ``"wrong_dtype"``, ``"wrong_length"``, ``"wrong_shape"``, ``"not_finite"``,
            ``"mutates_input"``, ``"stateful"``, ``"wrong_values"``; ``"grader_error"``
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


class Problem(NamedTuple):
    """Something wrong with a submission, found by a hook: ``(mistake id, message)`` and,
    when the learner may want it, the correct recipe."""

    mistake: str
    message: str
    solution: str = ""


# id -> one-line description ("fn(...) -> ...: what it computes"), in registration order.
EXERCISES: dict[str, str] = {}
_GRADERS: dict[str, Callable[[Any], Feedback]] = {}


def register(exercise_id: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator that registers ``grader(submission) -> Feedback`` under ``exercise_id``.

    Args:
        exercise_id: short snake_case id used in notebooks, e.g. ``"bn_forward_pass"``.
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


def register_cases(
    exercise_id: str, description: str, cases: Callable[[], Sequence[Case]], **options: Any
) -> Callable[[Any], Feedback]:
    """Register the usual grader, :func:`run_cases` on ``cases()`` with ``options`` (its
    keyword arguments: ``arg_names``, ``output_names``, ``mistakes``...), and return it."""

    def grader(submission: Any) -> Feedback:
        return run_cases(submission, cases=cases(), **options)

    grader.__module__, grader.__qualname__ = cases.__module__, f"grade_{exercise_id}"
    grader.__doc__ = f"Grade ``{description.split(':')[0]}``."
    return register(exercise_id, description)(grader)


def grade(exercise_id: str, submission: Any, *, timeout: float | None = None) -> Feedback:
    """Grade ``submission`` (the learner's function) for exercise ``exercise_id``.

    Pure: no printing, no state kept. Never raises or hangs because of the submission: the
    learner's code gets ``timeout`` seconds in all (default ``LIMITS.timeout``, 10 s), its
    printed output is captured and its beginning shown in the message, and every exception
    it raises becomes feedback. An unexpected failure of the grader itself comes back as
    ``Feedback(mistake="grader_error")``.

    Args:
        exercise_id: one of ``EXERCISES``.
        submission: the learner's function, e.g. ``grade("bn_forward_pass", my_bn_forward)``.
        timeout: seconds for the learner's code, e.g. ``timeout=60`` for a slow machine.

    Returns:
        A :class:`Feedback`.

    Raises:
        ValueError: if ``exercise_id`` is not registered (the message lists valid ids) or
            ``timeout`` is not a positive number.

    Example::

        >>> fb = grade("bn_forward_pass", my_bn_forward)
        >>> fb.passed, fb.mistake
        (False, 'unbiased_variance')
    """
    grader = _GRADERS.get(exercise_id) if isinstance(exercise_id, str) else None
    if grader is None:
        valid = ", ".join(repr(k) for k in _GRADERS) or "(none registered)"
        raise ValueError(f"unknown exercise id {exercise_id!r}; valid ids are: {valid}")
    seconds = LIMITS.timeout if timeout is None else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
        math.isfinite(seconds) and seconds > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds (got {seconds!r})")
    with _sandbox.session(float(seconds)) as s:
        try:
            feedback = grader(submission)
        except Exception as exc:  # a bug in the grader must not look like the learner's fault
            feedback = Feedback(
                passed=False,
                message=(
                    f"The grader for {exercise_id!r} failed with an internal error: "
                    f"{type(exc).__name__}: {_sandbox.safe_str(exc)}\n"
                    f"This is a bug in the course, not necessarily in your code. Please "
                    f"report it together with your solution."
                ),
                mistake="grader_error",
            )
    notes = [feedback.message, _sandbox.changed_settings_note(s.changed), s.output.report()]
    return replace(feedback, message=_sandbox.clean_text("\n\n".join(n for n in notes if n)),
                   solution=_sandbox.clean_text(feedback.solution))


@dataclass(frozen=True)
class Case:
    """One input for the submission and the reference answer.

    Attributes:
        label: what the learner sees, e.g. ``"x (8, 5), eps=1e-05"``.
        args: positional arguments for the submission (never handed over directly: the
            runner passes deep copies).
        expected: the reference outputs, one float array per output name.
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


#: Where a fixed eps a learner writes into a function usually comes from.
_EPS_ORIGINS = {1e-5: "PyTorch's default", 1e-3: "Keras's default",
                1e-8: "a common 'small number', Adam's default eps"}


def hard_coded_eps(value: float, used: Sequence[float], formula: str = "np.sqrt(var + eps)") -> str:
    """The explanation of the mistake "eps written into the function as ``value``", for a
    grader whose cases pass the eps values ``used``."""
    origin = _EPS_ORIGINS.get(value)
    return (
        f"Looks like you used a fixed eps = {value:g}"
        + (f" ({origin})" if origin else "")
        + " instead of the eps argument. A layer can be built with any eps, and the cases pass "
        f"eps = {', '.join(f'{e:g}' for e in sorted(set(used)))}: use the argument, "
        f"{formula}, never a number written into the function."
    )


def _timeout_problem(exc: BaseException) -> Problem:
    limit, where = _sandbox.time_limit(), _sandbox.learner_frame(exc)
    return Problem(
        "timeout",
        f"Your code was stopped: it ran longer than the grader's limit of {limit:g} s."
        + (f" It was running{where}" if where else "")
        + "\nIs there a loop that never ends (a `while` whose condition never becomes false, "
        "a loop that never reaches its `break`)? If your code is only slow, use numpy "
        "operations on whole arrays instead of Python loops over entries, or allow more "
        "time: check(exercise_id, fn, timeout=60).",
    )


def _error_problem(exc: BaseException, what: str, generic_hints: bool = True) -> Problem:
    if isinstance(exc, NotImplementedError) and what == "Your function":
        return Problem(
            "not_implemented",
            "Your function still raises NotImplementedError: fill in the body (replace the "
            "`raise NotImplementedError` line with your code), run the cell, and check again.",
        )
    safe = _sandbox.safe_str(exc)
    text = f"{what} raised {type(exc).__name__}: {safe}{_sandbox.learner_frame(exc)}"
    if isinstance(exc, (SystemExit, GeneratorExit)):
        text += (f"\n{type(exc).__name__} ends a program or a generator; a function that "
                 f"fails should raise an Exception (or, better, return its result).")
    if isinstance(exc, ValueError) and "too large to be a matrix" in safe:
        # np.matrix is always 2-D: turning an (N, C, H, W) result into one fails here.
        return Problem("wrong_type", f"{text}\nnp.matrix (np.asmatrix, np.mat) is always "
                       f"2-D, so it cannot hold this array: return plain numpy arrays.")
    if "broadcast" in safe and generic_hints:
        text += (
            "\nA shape mismatch like this usually means a statistic was reduced over the "
            "wrong axis, or lost the axis it needs (keepdims=True keeps it). numpy lines "
            "shapes up from the RIGHT: a vector of shape (D,) pairs with the last axis of "
            "the array it meets."
        )
    return Problem("exception", text)


def _guarded(thunk: Callable[[], Any], what: str,
             diagnose: Callable[[BaseException], tuple[str, str] | None] | None = None,
             ) -> tuple[Any, Problem | None]:
    """Run learner-facing ``thunk`` in the sandbox: ``(value, None)`` or ``(None, problem)``;
    ``diagnose`` may explain an exception the learner's code raised."""
    out = _sandbox.run(thunk)
    if out.timed_out is not None:
        return None, _timeout_problem(out.timed_out)
    if out.error is not None:
        problem = _error_problem(out.error, what)
        if diagnose is not None and problem.mistake == "exception":
            found, failed = _guarded(lambda: diagnose(out.error), "The grader's diagnosis")
            if failed is None and found is not None:
                plain = _error_problem(out.error, what, generic_hints=False)
                return None, Problem(found[0], f"{plain.message}\n{found[1]}")
        return None, problem
    return out.value, None


def _is_empty_stub(fn: Any) -> bool:
    """Whether ``fn`` is a Python function whose body does nothing (``...``, ``pass`` or a
    docstring): an exercise stub not filled in yet."""
    code = fn.__code__ if type(fn) is types.FunctionType else None
    if code is None or code.co_name == "<lambda>":  # `lambda *a: None` is an answer, not a stub
        return False
    try:
        ops = [(i.opname, i.argval) for i in dis.get_instructions(code)]
    except Exception:  # noqa: BLE001
        return False
    doc = fn.__doc__
    def does_nothing(op: str, arg: Any) -> bool:
        if op in ("RESUME", "NOP", "RETURN_VALUE"):
            return True
        return op in ("LOAD_CONST", "RETURN_CONST") and (
            arg is None or arg is Ellipsis or (type(arg) is str and arg is doc))

    return all(does_nothing(op, arg) for op, arg in ops)


_EMPTY_STUB = Problem(
    "not_implemented",
    "Your function does nothing yet: its body is empty (only `...`, `pass` or `return None`). "
    "Write your code in it, run the cell, and check again.",
)


def _check_signature(fn: Any, args: tuple[Any, ...], call: str) -> Problem | None:
    if not callable(fn):
        return Problem(
            "wrong_type",
            f"Expected your function itself, e.g. grade(exercise_id, my_function), but got "
            f"{type_name(fn)}. Pass the function without calling it (no parentheses).",
        )
    try:
        sig = inspect.signature(fn)
    except Exception:  # noqa: BLE001 - no signature to read (some C callables): just call it
        return None
    try:
        sig.bind(*args)
    except TypeError as exc:
        name = _sandbox.safe_str(getattr(fn, "__name__", "your function"), 60)
        return Problem(
            "wrong_signature",
            f"The grader calls your function as {call} ({len(args)} positional arguments), "
            f"but it is defined as {name}{sig} ({exc}). Give it exactly the parameters of "
            f"the exercise statement.",
        )
    return None


def read_outputs(
    output_names: Sequence[str], diagnose_shape: Callable | None = None
) -> Callable[[Any, Case], tuple[np.ndarray, ...] | Problem]:
    """The default ``read`` hook: split the value into one float array per output (a hook
    that only prepares the value, e.g. a list of numbers into an array, ends with it)."""

    def read(value: Any, case: Case) -> tuple[np.ndarray, ...] | Problem:
        want = "(" + ", ".join(output_names) + ")"
        if len(output_names) == 1:
            if type(value) is tuple and value and isinstance(value[0], np.ndarray):
                return Problem(
                    "wrong_type",
                    f"Your function returned a tuple of {len(value)} items; expected only "
                    f"the array {output_names[0]}. (CS231n's layers return (out, cache); "
                    f"this exercise asks for {output_names[0]} alone.)",
                )
            items: tuple = (value,)
        elif value is None:
            return Problem(
                "returned_none",
                f"Your function returned None, expected a tuple {want}. Did you forget the "
                f"`return` statement?",
            )
        elif not isinstance(value, (tuple, list)):
            return Problem(
                "wrong_type",
                f"Your function returned a {type_name(value)}, expected a tuple {want} of "
                f"{len(output_names)} arrays: return {', '.join(output_names)}.",
            )
        else:
            items = tuple(list.__iter__(value) if isinstance(value, list)
                          else tuple.__iter__(value))
            if len(items) != len(output_names):
                return Problem(
                    "wrong_length",
                    f"Your function returned {len(items)} values, expected "
                    f"{len(output_names)}: {want}.",
                )
        arrays = []
        for name, got, exp in zip(output_names, items, case.expected):
            matrix = isinstance(got, np.matrix)
            got, problem = check_array(name, got, exp)
            if problem is not None and problem[0] == "wrong_shape" and diagnose_shape:
                problem = diagnose_shape(name, got.shape, case) or problem
            if problem is not None and matrix:
                problem = (problem[0], f"{problem[1]} (np.matrix is always 2-D: return plain "
                           f"numpy arrays.)")
            if problem is not None:
                return Problem(*problem)
            arrays.append(got)
        return tuple(arrays)

    return read


def _changes(original: Any, passed: Any, path: str) -> list[tuple[str, str]]:
    """Where the learner's copy ``passed`` of a case argument no longer equals the grader's
    ``original``: ``[]``, or ``[(path, kind)]`` like ``("weights[0]", "array")`` or
    ``("widths", "list")``. Arrays are compared by shape, dtype and values (NaN equal to
    NaN); lists, tuples and dicts item by item (so ``W -= lr * dW`` over a list, an item
    replaced, appended or removed all show); numbers and strings by value. Only ``type()``
    and plain reads of the copy: it may hold learner objects."""
    if isinstance(original, np.ndarray):
        if type(passed) is not np.ndarray or passed.shape != original.shape \
                or passed.dtype != original.dtype:
            return [(path, "array")]
        try:
            same = np.array_equal(original, passed, equal_nan=original.dtype.kind in "fc")
        except Exception:  # noqa: BLE001
            same = False
        return [] if same else [(path, "array")]
    if isinstance(original, (list, tuple, dict)):
        kind = type(original).__name__
        if type(passed) is not type(original) or len(passed) != len(original):
            return [(path, kind)]
        if isinstance(original, dict):
            if set(dict.keys(passed)) != set(original):
                return [(path, kind)]
            pairs = [(f"{path}[{k!r}]", o, dict.__getitem__(passed, k))
                     for k, o in original.items()]
        else:
            items = list(list.__iter__(passed) if kind == "list" else tuple.__iter__(passed))
            pairs = [(f"{path}[{k}]", o, c) for k, (o, c) in enumerate(zip(original, items))]
        return [found for p, o, c in pairs for found in _changes(o, c, p)]
    if isinstance(original, (bool, int, float, str, np.generic)):
        same = type(passed) is type(original) and (
            passed == original or (passed != passed and original != original))
        return [] if same else [(path, "value")]
    return []  # anything else (a torch module, say) is the grader's to check


def _mutation_text(found: list[tuple[str, str]]) -> str:
    """The changed inputs for a message: ``"weights (weights[0], weights[1])"``."""
    paths = [p for p, _ in found]
    names = sorted({p.split("[")[0] for p in paths})
    inner = [p for p in paths if "[" in p]
    where = f" ({', '.join(inner[:3])}{', ...' if len(inner) > 3 else ''})" if inner else ""
    return " and ".join(names) + where


def _mutation_fix(found: list[tuple[str, str]]) -> str:
    """How to avoid the kind of in-place change that was found."""
    if any(kind in ("list", "dict") for _, kind in found):
        return ("Your function changed the container itself (append, pop, clear, item "
                "assignment): the caller holds the same object, so its list changes too. "
                "Build a new one instead, or work on a copy: list(widths).")
    if any("[" in p for p, _ in found):
        return ("An augmented assignment on an item of a list, as in `for W, dW in "
                "zip(weights, grads): W -= lr * dW`, changes the caller's array itself (the "
                "list holds the arrays, not copies). Compute with new arrays instead: "
                "`step = lr * dW`.")
    return "Work on new arrays instead: x_centered = x - mu, not x -= mu."


def _same_object(a: Any, b: Any) -> bool:
    """Whether a call returned (in part) the very object an earlier call returned (learner
    values: only ``type()`` and ``is``, nothing their classes can override)."""
    items = {tuple: tuple.__iter__, list: list.__iter__}
    ta, tb = type(a), type(b)
    if issubclass(ta, (tuple, list)) and issubclass(tb, (tuple, list)):
        it_a = items[tuple if issubclass(ta, tuple) else list](a)
        it_b = items[tuple if issubclass(tb, tuple) else list](b)
        return any(_same_object(x, y) for x, y in zip(it_a, it_b))
    return a is b and not issubclass(ta, (type(None), bool, int, float, complex, str, bytes))


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
    diagnose_error: Callable[[BaseException, Case], tuple[str, str] | None] | None = None,
    read: Callable[[Any, Case], tuple[np.ndarray, ...] | Problem] | None = None,
    success: str = "all {n} cases match the reference; largest difference {diff}{where}.",
    updates_in_place: Sequence[str] = (),
) -> Feedback:
    """Run ``submission`` on every case and turn what happens into :class:`Feedback`.

    Order of checks: the signature; then per case: the call (time limit, exceptions), then
    reading the returned value (structure, type, dtype, shape, finiteness); then state (a
    case answered with an earlier case's answer, or case 1 answered differently when asked
    again); then values on all cases; then whether the inputs were modified in place. Wrong
    values are matched against ``mistakes`` (first the mistake that explains every output on
    every case, then output by output); a match names the mistake, otherwise the feedback
    is ``wrong_values`` with ``hint``.

    Args:
        submission: the learner's function.
        cases: inputs and reference outputs; several shapes/seeds so every mistake in
            ``mistakes`` differs from the reference on at least one case, and at least two
            cases with inputs of the same shape (so a cache keyed by shape shows).
        arg_names: names of the positional arguments, for messages (``("x", "gamma", ...)``).
        output_names: names of the outputs; one name means the function returns one array,
            several mean it returns a tuple.
        mistakes: classic mistakes in priority order.
        fix: the correct recipe: the feedback's ``solution`` when values are wrong.
        hint: what to check when the values are wrong and no classic mistake matches.
        diagnose_shape: optional ``(output_name, got_shape, case) -> (mistake_id, message)``
            that explains a wrong shape (e.g. a sum over the wrong axis).
        diagnose_error: optional ``(exception, case) -> (mistake_id, message)`` that
            explains an exception the submission raised (e.g. a broadcasting error that a
            per-channel vector not reshaped causes); the message is added to the error's.
        read: optional ``(value, case) -> arrays or Problem`` replacing the default reading
            of the returned value (for submissions that return e.g. a network, or a list of
            numbers: such a hook can end with :func:`read_outputs`); it runs under the same
            time limit and guard as the submission.
        success: the pass message after "✓ Correct: ", with ``{n}``, ``{diff}`` and
            ``{where}`` (the largest difference and the case where it occurs).
        updates_in_place: names of arguments the exercise's contract updates in place (the
            running statistics a training step keeps); every other argument must come back
            unchanged.
    """
    call = f"fn({', '.join(arg_names)})"
    n = len(cases)
    problem, failed = _guarded(lambda: _check_signature(submission, cases[0].args, call),
                               "Reading your function's signature")
    if problem is not None or failed is not None:
        problem = problem or failed
        return Feedback(False, problem.message, problem.mistake)
    if _is_empty_stub(submission):
        return Feedback(False, _EMPTY_STUB.message, _EMPTY_STUB.mistake)
    reader = read or read_outputs(output_names, diagnose_shape)

    def attempt(case: Case) -> tuple[Any, tuple[np.ndarray, ...] | None, Problem | None, tuple]:
        copies = copy.deepcopy(case.args)
        diagnose = None if diagnose_error is None else (lambda exc: diagnose_error(exc, case))
        value, problem = _guarded(lambda: submission(*copies), "Your function", diagnose)
        if problem is not None:
            return None, None, problem, ()
        mutated = tuple(p for name, orig, seen in zip(arg_names, case.args, copies)
                        if name not in updates_in_place for p in _changes(orig, seen, name))
        outputs, problem = _guarded(
            lambda: reader(value, case), f"Using what your function returned (a {type_name(value)})")
        if problem is None and isinstance(outputs, Problem):
            problem, outputs = outputs, None
        if problem is not None and problem.mistake == "exception" and read is None:
            problem = Problem("wrong_type", f"{problem.message}\nReturn plain numpy arrays (in "
                              f"a plain tuple).")
        return value, outputs, problem, mutated

    values, results, mutated = [], [], []
    for k, case in enumerate(cases):
        value, outputs, problem, changed = attempt(case)
        if problem is not None:
            where = f"\n(case {k + 1} of {n}: {case.label})"
            return Feedback(False, problem.message + where, problem.mistake, problem.solution)
        values.append(value)
        results.append(outputs)
        mutated += [found for found in changed if found not in mutated]

    stateful = _state_problem(attempt, values, results, cases)
    if stateful is not None:
        return Feedback(False, stateful, "stateful")

    ok = [[is_close(g, e) for g, e in zip(got, case.expected)] for got, case in zip(results, cases)]
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
    note = _dtype_note(results, cases)
    if not wrong_outputs:
        if mutated:
            return Feedback(
                False,
                f"Your results are right, but your function modified its input "
                f"{_mutation_text(mutated)} in place (for example with x -= mu, x /= std or "
                f"x[...] = 0). The caller's data is now changed, so the next cell that uses "
                f"it silently gets different data. {_mutation_fix(mutated)}",
                "mutates_input",
            )
        largest = max(
            max_abs_diff(g, e)[0] for res, c in zip(results, cases) for g, e in zip(res, c.expected)
        )
        where = "" if largest < 1e-12 else f" in case {worst + 1} of {n}: {cases[worst].label}"
        text = success.format(n=n, diff=fmt_diff(largest), where=where)
        return Feedback(True, f"✓ Correct: {text}{note}", None)

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
        parts.append(f"Also: your function modified its input {_mutation_text(mutated)} in "
                     f"place. {_mutation_fix(mutated)}")
    parts.append(note.strip())
    parts.append(report(worst, "Largest difference in"))
    mistake_id = found[0][0].id if found else "wrong_values"
    return Feedback(False, "\n\n".join(p for p in parts if p), mistake_id, solution=fix)


def _shape(arg: Any) -> Any:
    """The shape of a case's argument (the grader's own): an array's shape, a list's or
    tuple's items' shapes, another value's type."""
    if isinstance(arg, (list, tuple)):
        return tuple(_shape(a) for a in arg)
    return arg.shape if isinstance(arg, np.ndarray) else type(arg)


def _state_problem(attempt: Callable, values: list, results: list, cases: Sequence[Case]) -> str | None:
    """Why the submission looks stateful (it caches, or it answers differently when asked
    the same thing again), or None."""
    shapes = [_shape(c.args) for c in cases]
    for k in range(len(cases)):
        for j in range(k):
            if shapes[j] != shapes[k] or all(
                is_close(a, b) for a, b in zip(cases[j].expected, cases[k].expected)
            ):
                continue
            if _same_object(values[k], values[j]) or all(
                np.array_equal(a, b) and is_close(a, e)
                for a, b, e in zip(results[k], results[j], cases[j].expected)
            ):
                return (
                    f"For case {k + 1} ({cases[k].label}) your function returned the answer "
                    f"to case {j + 1} ({cases[j].label}): the same result for different inputs "
                    f"of the same shape. Does it cache results (a dict keyed by the shape, "
                    f"functools.lru_cache, a global variable)? Every call must compute its "
                    f"result from its own arguments."
                )
    value, outputs, problem, _ = attempt(cases[0])
    same = problem is None and not _same_object(value, values[0]) and all(
        is_close(a, b) and is_close(b, a) for a, b in zip(outputs, results[0])
    )
    if same:
        return None
    what = (
        "the very same object as the first time" if problem is None and _same_object(value, values[0])
        else f"something else ({problem.mistake.replace('_', ' ')})" if problem is not None
        else "a different result"
    )
    return (
        f"Called a second time with the inputs of case 1 ({cases[0].label}), your function "
        f"returned {what}. Does it keep state between calls (a global counter or cache, a "
        f"mutable default argument, a model built once and reused)? Each call must depend "
        f"only on its arguments and return new objects."
    )


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


def _dtype_note(results: list[tuple[np.ndarray, ...]], cases: Sequence[Case]) -> str:
    low = sorted({str(a.dtype) for r, c in zip(results, cases) for a, e in zip(r, c.expected)
                  if tolerances(a.dtype)[0] > tolerances(e.dtype)[0]})
    if not low:
        return ""
    return (
        f"\nNote: your result has dtype {', '.join(low)} while the inputs are float64; it was "
        f"compared with a looser tolerance. Keep float64 (torch.from_numpy keeps it; "
        f"torch.tensor(..., dtype=torch.float32) or .float() drops it)."
    )
