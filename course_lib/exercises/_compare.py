"""Compare a learner's arrays with reference arrays and describe the difference.

Everything here is plain text in the spirit of Karpathy's ``cmp(name, mine, reference)``:
say what was expected, what arrived and how far apart they are, so the learner can act on it.
Functions return a problem ``(mistake_id, message)`` or ``None``; they never raise on odd
learner values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "tolerances",
    "is_close",
    "max_abs_diff",
    "cmp_line",
    "fmt_diff",
    "check_array",
    "type_name",
]

# (rtol, atol) by the precision of the learner's array. atol is scaled by max(1, max|ref|).
# float64 answers computed another way (np.var vs explicit sums vs einsum) agree to ~1e-13;
# float32 answers (torch's default dtype) to ~1e-6. The classic mistakes differ by >= 1e-2 on
# the graders' cases (tests/test_exercises.py checks that), far outside both.
_TOL_FLOAT64 = (1e-5, 1e-7)
_TOL_FLOAT32 = (1e-4, 1e-5)


def tolerances(dtype: np.dtype) -> tuple[float, float]:
    """Return ``(rtol, atol)`` for comparing an array of ``dtype`` with a float64 reference."""
    if np.dtype(dtype).kind == "f" and np.finfo(dtype).eps <= np.finfo(np.float64).eps:
        return _TOL_FLOAT64
    return _TOL_FLOAT32


def is_close(got: np.ndarray, expected: np.ndarray) -> bool:
    """True if ``got`` matches ``expected`` (same shape, |got - exp| <= atol + rtol * |exp|)."""
    if got.shape != expected.shape:
        return False
    rtol, atol = tolerances(got.dtype)
    exp = expected.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(exp), initial=0.0)))
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - exp)
        ok = diff <= atol * scale + rtol * np.abs(exp)
    return bool(np.all(ok))


def max_abs_diff(got: np.ndarray, expected: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Largest ``|got - expected|`` and the index where it occurs (shapes must match)."""
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    if diff.size == 0:
        return 0.0, ()
    diff = np.where(np.isnan(diff), np.inf, diff)
    flat = int(np.argmax(diff))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    return float(diff[idx]), idx


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def fmt_diff(d: float) -> str:
    """A difference for messages, e.g. '0.205'; round-off is shown as '< 1e-12 (round-off)'."""
    # Round-off differences depend on the machine's summation order; printing them would
    # make stored notebook outputs differ between machines, so they are bucketed.
    if 0.0 < d < 1e-12:
        return "< 1e-12 (round-off)"
    return f"{d:.3g}"


def cmp_line(name: str, got: np.ndarray, expected: np.ndarray, width: int = 0) -> str:
    """One line like Karpathy's ``cmp``: exact / approximate / maxdiff, plus the worst entry.

    Example::

        >>> cmp_line("dx", np.array([1.0, 2.5]), np.array([1.0, 2.0]))
        'dx | exact: False | approximate: False | maxdiff: 0.5 at [1]: expected 2, got 2.5'
    """
    exact = bool(np.array_equal(got, expected))
    approx = is_close(got, expected)
    maxdiff, idx = max_abs_diff(got, expected)
    line = (
        f"{name:<{width}} | exact: {exact!s:<5} | approximate: {approx!s:<5} "
        f"| maxdiff: {fmt_diff(maxdiff)}"
    )
    if not approx:
        line += (
            f" at {_fmt_index(idx)}: expected {float(expected[idx]):.6g}, "
            f"got {float(got[idx]):.6g}"
        )
    return line


def type_name(value: Any) -> str:
    """``'numpy.ndarray'``, ``'torch.Tensor'``, ``'list'``... for messages."""
    cls = type(value)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module.split('.')[0]}.{cls.__qualname__}"


def check_array(name: str, value: Any, expected: np.ndarray) -> tuple[Any, tuple[str, str] | None]:
    """Check that ``value`` is a finite float array shaped like ``expected``.

    ndarray subclasses (``np.matrix``, masked arrays without masked entries, memmaps...) are
    converted to plain arrays; anything else that is not an ndarray (lists, torch tensors,
    other objects with ``__array__``) is refused with a message saying how to convert it.

    Returns:
        ``(array, None)`` if it is fine, else ``(value, (mistake_id, message))`` with
        mistake_id one of ``returned_none``, ``wrong_type``, ``wrong_dtype``,
        ``wrong_shape``, ``not_finite``.
    """
    want = f"a numpy float array of shape {expected.shape}"
    if value is None:
        return value, (
            "returned_none",
            f"{name} is None, expected {want}. Did you forget a `return` statement "
            f"(or return before computing {name})?",
        )
    if not isinstance(value, np.ndarray):
        tname = type_name(value)
        if tname.startswith("torch."):
            fix = f"convert it back with {name}.detach().numpy() before returning"
        elif isinstance(value, (list, tuple)):
            fix = "build it with numpy operations, or convert with np.asarray(...)"
        elif isinstance(value, (int, float, np.generic)):
            fix = (
                "a single number means the result was reduced over every axis; "
                "pass axis=0 to reduce over the batch only"
            )
        elif hasattr(value, "__array__"):
            fix = f"convert it with np.asarray({name}) before returning"
        else:
            fix = "return a numpy array"
        return value, ("wrong_type", f"{name} is a {tname}, expected {want}: {fix}.")
    if type(value) is not np.ndarray:
        if np.ma.isMaskedArray(value) and np.ma.getmaskarray(value).any():
            return value, (
                "wrong_type",
                f"{name} is a masked array with masked entries, expected {want}: every "
                f"entry needs a value. Compute with plain numpy arrays.",
            )
        value = np.array(value, copy=True, subok=False)
    if value.dtype.kind != "f":
        return value, (
            "wrong_type",
            f"{name} has dtype {value.dtype}, expected a float array (float64 inputs give "
            f"float64 outputs). Did an integer division or a cast creep in?",
        )
    if value.dtype.itemsize < 4:
        return value, (
            "wrong_dtype",
            f"{name} has dtype {value.dtype}, which keeps only about 3 significant digits: "
            f"too few to check the result (or to train with). Keep the inputs' float64; "
            f"drop the .astype({value.dtype}) / .half() / torch.float16.",
        )
    if value.shape != expected.shape:
        return value, ("wrong_shape",
                       f"{name} has shape {value.shape}, expected {expected.shape}.")
    finite = np.isfinite(value)
    if not finite.all():
        n_nan = int(np.isnan(value).sum())
        n_inf = int(value.size - finite.sum()) - n_nan
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        return value, (
            "not_finite",
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s) (first at "
            f"{_fmt_index(first)}). NaN and inf usually come from dividing by zero or taking "
            f"the square root of a negative number: is eps added inside the square root, and "
            f"is the variance a mean of squares?",
        )
    return value, None
