"""Run a learner's code so that nothing it does can crash, hang or flood a grader.

:func:`session` opens one grading session (one :func:`course_lib.exercises.grade` call); inside
it, :func:`run` calls learner code:

- with a time limit, shared by all the learner's calls of the session. On the main thread a
  ``SIGALRM`` timer (``signal.setitimer``) raises a private :class:`TimeUp` into the running
  Python code, as Jupyter's Interrupt button does with ``KeyboardInterrupt``; elsewhere
  (another thread, Windows) a watchdog thread raises it with CPython's
  ``PyThreadState_SetAsyncExc``. Either way it repeats every 50 ms until the code stops, so
  a bare ``except:`` in a loop does not keep it running, and any earlier handler and timer
  are restored. Limits: a single C call (one numpy or torch operation, ``time.sleep`` off the
  main thread) is not interrupted mid-call; it returns first. A loop that spends all its time
  inside ``try: ... except BaseException: pass`` swallows every interrupt (as it swallows
  Jupyter's Interrupt button). Without signals and ctypes (not CPython) there is no limit.
- with ``sys.stdout`` and ``sys.stderr`` captured: the first ``max_output`` characters are
  kept for the feedback, the rest only counted.
- catching every exception, including ``SystemExit`` and ``GeneratorExit``; only a real
  ``KeyboardInterrupt`` (the Interrupt button) stops grading.

After every call, :func:`run` puts back what learner code may change for the whole
interpreter (:data:`SETTINGS`: the recursion limit, warning filters, numpy's error handling,
print options and random state, Python's random state, the working directory, and torch's
random state, default dtype, grad mode, number of threads, deterministic and anomaly modes)
and records which ones changed, so the feedback can say so (:func:`changed_settings_note`).
Random states are put back silently: seeding is normal.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import random
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Limits", "LIMITS", "TimeUp", "Outcome", "SETTINGS", "session", "run", "time_limit",
           "safe_str", "clean_text", "learner_frame", "changed_settings_note"]


@dataclass
class Limits:
    """Module-wide defaults; ``grade(..., timeout=...)`` overrides the time for one call.

    Attributes:
        timeout: seconds the learner's code may run in one grading, all calls together.
        max_output: characters of the learner's printed output kept for the feedback.
    """

    timeout: float = 10.0
    max_output: int = 2000


#: Change ``LIMITS.timeout`` to give every grader more (or less) time in this process.
LIMITS = Limits()

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPEAT = 0.05  # seconds between repeated interrupts once the time is up


class TimeUp(BaseException):
    """Raised into learner code whose time is up (a BaseException: ``except Exception`` in
    the learner's code does not catch it)."""


def safe_str(obj: Any, limit: int = 300) -> str:
    """``str(obj)``, cut to ``limit`` characters, never raising (an object's ``__str__`` is
    learner code too)."""
    try:
        text = str(obj)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - whatever the learner's __str__ raises
        try:
            text = f"<{type(obj).__name__} object whose str() failed>"
        except BaseException:  # noqa: BLE001
            text = "<an object whose str() failed>"
    # A str subclass could override slicing or encoding: copy it into a plain str.
    text = "".join([text]) if issubclass(type(text), str) else "<str() did not return a string>"
    text = clean_text(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clean_text(text: str) -> str:
    """``text`` made encodable as UTF-8: lone surrogates (a learner's ``'\\ud800'``, or bytes
    decoded with ``surrogateescape``) become visible escapes such as ``\\ud800``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def learner_frame(exc: BaseException) -> str:
    """``'\\n  in f, line 3: mu = x.mean(axis=1)'``: the innermost frame of the learner's code
    (outside the graders, numpy, torch and site-packages), or ``''``."""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
    except Exception:  # noqa: BLE001 - a traceback without readable source
        return ""
    for fr in reversed(frames):
        path = os.path.abspath(fr.filename)
        if "site-packages" in path or path.startswith(_HERE) or "/numpy/" in path:
            continue
        if os.path.basename(path) in ("contextlib.py", "threading.py"):
            continue
        code = f": {fr.line.strip()}" if fr.line else ""
        return f"\n  in {fr.name}, line {fr.lineno}{code}"
    return ""


class _CappedText(io.TextIOBase):
    """A text stream that keeps the first ``limit`` characters written and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.kept, self.total = limit, [], 0

    def writable(self) -> bool:
        return True

    def write(self, s: Any) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - sum(len(k) for k in self.kept) if self.total < self.limit else 0
        if room > 0:
            self.kept.append(s[:room])
        self.total += len(s)
        return len(s)

    def report(self) -> str:
        """What the learner's code printed, for the feedback: a few short lines, or ''."""
        if not self.total:
            return ""
        lines = "".join(self.kept).splitlines()
        shown = [ln if len(ln) <= 80 else ln[:77] + "..." for ln in lines[:8]]
        size = f"{self.total:,} characters" if self.total < 2**20 else f"{self.total / 2**20:.1f} MiB"
        more = "" if self.total <= self.limit and len(lines) <= 8 else "\n  ..."
        return (
            f"Your code printed {size} while it was graded; the beginning:\n"
            + "\n".join(f"  {ln}" for ln in shown)
            + more
        )


class _Session:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.remaining = timeout
        self.output = _CappedText(LIMITS.max_output)
        self.changed: set[str] = set()  # names of SETTINGS the learner's code changed


_CURRENT: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("session", default=None)


@contextlib.contextmanager
def session(timeout: float) -> Iterator[_Session]:
    """One grading: a time budget and an output buffer shared by its calls to :func:`run`,
    and global state restored afterwards."""
    s = _Session(timeout)
    token = _CURRENT.set(s)
    saved = _save_settings()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield s
    finally:
        _CURRENT.reset(token)
        _restore_settings(saved)


def time_limit() -> float:
    """The current session's time limit in seconds (``LIMITS.timeout`` outside a session)."""
    s = _CURRENT.get()
    return LIMITS.timeout if s is None else s.timeout


@dataclass
class Outcome:
    """What happened to one call: ``value`` if it returned, else ``error`` (the exception it
    raised) or ``timed_out``."""

    value: Any = None
    error: BaseException | None = None
    timed_out: BaseException | None = None


def run(thunk: Callable[[], Any]) -> Outcome:
    """Call ``thunk()`` (learner code) under the session's remaining time, output captured,
    and interpreter-wide settings put back afterwards (see :data:`SETTINGS`)."""
    s = _CURRENT.get()
    if s is None:  # called outside grade(): a session of its own
        with session(LIMITS.timeout):
            return run(thunk)
    if s.remaining <= 0:
        return Outcome(timed_out=TimeUp())
    alarm = _Alarm(s.remaining)
    saved = _save_settings()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(s.output), contextlib.redirect_stderr(s.output):
            value = alarm.call(thunk)
        if alarm.fired:  # the learner's code caught TimeUp and returned anyway
            return Outcome(timed_out=TimeUp())
        return Outcome(value=value)
    except TimeUp as exc:
        return Outcome(timed_out=exc)
    except KeyboardInterrupt:
        raise  # the Interrupt button: stop grading
    except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit... are the learner's
        return Outcome(timed_out=exc) if alarm.fired else Outcome(error=exc)
    finally:
        s.remaining -= time.monotonic() - start
        s.changed.update(_restore_settings(saved))


# ---- interpreter-wide settings a learner's code may change --------------------------------


def _set_warning_filters(filters: list) -> None:
    warnings.filters[:] = filters
    warnings._filters_mutated()  # so cached "already warned" decisions are recomputed


def _torch() -> Any:
    return sys.modules.get("torch")  # only if already imported: grading never imports torch


#: name (as the feedback says it) -> (read the setting, put it back). Restored after every call
#: of learner code, so a changed recursion limit or dtype cannot break the grader itself.
SETTINGS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
    "the recursion limit (sys.setrecursionlimit)": (sys.getrecursionlimit, sys.setrecursionlimit),
    "numpy's print options (np.set_printoptions)": (
        np.get_printoptions, lambda v: np.set_printoptions(**v)),
    "numpy's error handling (np.seterr)": (np.geterr, lambda v: np.seterr(**v)),
    "numpy's global random state (np.random.seed)": (
        np.random.get_state, np.random.set_state),
    "Python's random state (random.seed)": (random.getstate, random.setstate),
    "the working directory (os.chdir)": (os.getcwd, os.chdir),
    "the warnings filters (warnings.filterwarnings)": (
        lambda: list(warnings.filters), lambda v: _set_warning_filters(v)),
    "torch's random state (torch.manual_seed)": (
        lambda: _torch().random.get_rng_state(), lambda v: _torch().random.set_rng_state(v)),
    "torch's default dtype (torch.set_default_dtype)": (
        lambda: _torch().get_default_dtype(), lambda v: _torch().set_default_dtype(v)),
    "torch's grad mode (torch.set_grad_enabled)": (
        lambda: _torch().is_grad_enabled(), lambda v: _torch().set_grad_enabled(v)),
    "torch's number of threads (torch.set_num_threads)": (
        lambda: _torch().get_num_threads(), lambda v: _torch().set_num_threads(v)),
    "torch's deterministic mode (torch.use_deterministic_algorithms)": (
        lambda: (_torch().are_deterministic_algorithms_enabled(),
                 _torch().is_deterministic_algorithms_warn_only_enabled()),
        lambda v: _torch().use_deterministic_algorithms(v[0], warn_only=v[1])),
    "torch's anomaly detection (torch.autograd.set_detect_anomaly)": (
        lambda: _torch().is_anomaly_enabled(),
        lambda v: _torch().autograd.set_detect_anomaly(v)),
}
_TORCH_SETTINGS = {name for name in SETTINGS if name.startswith("torch")}


def _save_settings() -> dict[str, Any]:
    saved = {}
    for name, (read, _) in SETTINGS.items():
        if name in _TORCH_SETTINGS and _torch() is None:
            continue
        try:
            saved[name] = read()
        except Exception:  # noqa: BLE001 - e.g. the working directory was deleted
            pass
    return saved


def _same(a: Any, b: Any) -> bool:
    try:
        if isinstance(a, tuple) and len(a) and isinstance(a[1], np.ndarray):  # np random state
            return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]
        torch = _torch()
        if torch is not None and isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and torch.equal(a, b)
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a value that cannot be compared counts as changed
        return False


def _restore_settings(saved: dict[str, Any]) -> list[str]:
    """Put back every setting that differs from ``saved``; return the names of those."""
    changed = []
    for name, before in saved.items():
        read, write = SETTINGS[name]
        try:
            if _same(read(), before):
                continue
        except Exception:  # noqa: BLE001
            pass
        changed.append(name)
        try:
            write(before)
        except Exception:  # noqa: BLE001 - e.g. torch refuses set_num_threads once busy
            pass
    return changed


def changed_settings_note(names: Any) -> str:
    """The feedback's note about settings the learner's code changed (and the grader put
    back), or ''. Random states are left out: seeding is a normal thing to do."""
    shown = [n for n in SETTINGS if n in names and "random" not in n]
    if not shown:
        return ""
    return (
        "Note: your code changed " + ", ".join(shown) + ". The grader put "
        + ("it" if len(shown) == 1 else "them") + " back, but wherever else your function "
        "runs, the change stays and affects all the code that runs after it. A function "
        "should compute its result without changing the interpreter's settings."
    )


# ---- the time limit -----------------------------------------------------------------------


class _Alarm:
    """Raise :class:`TimeUp` in this thread after ``seconds`` (see the module docstring).

    Why it cannot leak: everything that arms and disarms the timer happens in :meth:`call`,
    and the signal handler never raises into :meth:`call`'s own frame (nor once the alarm is
    inactive). So an alarm that arrives while the timer is being armed or disarmed (a tiny
    timeout, or a learner's ``finally:`` block that runs a long C call) is recorded, not
    raised, and the ``finally`` that disarms always runs to its end. A signal already
    delivered reaches the quiet handler, which ``signal.signal`` runs before it puts the old
    handler back; one generated but not yet delivered is taken with ``sigtimedwait`` while
    the signal is blocked in this thread. (Blocking alone, around arming and disarming, would
    not be enough: the kernel then delivers the process's SIGALRM to another thread, whose C
    handler still schedules the Python handler on the main thread.)
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.fired, self.active = seconds, False, False

    def call(self, thunk: Callable[[], Any]) -> Any:
        """``thunk()`` under the time limit; the timer and handler are put back on every path."""
        main = threading.current_thread() is threading.main_thread()
        if main and hasattr(signal, "setitimer"):
            old_handler = signal.getsignal(signal.SIGALRM)
            old_timer = signal.setitimer(signal.ITIMER_REAL, 0)
            t0 = time.monotonic()
            signal.signal(signal.SIGALRM, self._on_signal)
            try:
                self.active = True
                signal.setitimer(signal.ITIMER_REAL, self.seconds, _REPEAT)
                return thunk()
            finally:
                self.active = False  # from here on the handler is quiet
                mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                signal.setitimer(signal.ITIMER_REAL, 0)
                # A SIGALRM of ours not yet delivered would reach the old handler (or, with
                # SIG_DFL, end the process): take it while it is blocked here.
                if hasattr(signal, "sigtimedwait") and signal.SIGALRM in signal.sigpending():
                    signal.sigtimedwait({signal.SIGALRM}, 0)  # (not on macOS: none there)
                signal.signal(signal.SIGALRM,
                              old_handler if old_handler is not None else signal.SIG_DFL)
                left, interval = old_timer
                if left > 0:  # someone else's timer: give it back what is left of it
                    signal.setitimer(signal.ITIMER_REAL,
                                     max(left - (time.monotonic() - t0), 1e-3), interval)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if _set_async_exc is None:  # not CPython: no way to interrupt, no limit
            return thunk()
        self.tid = threading.get_ident()
        self.lock, self.done = threading.Lock(), threading.Event()
        watcher = threading.Thread(target=self._watch, daemon=True)
        self.active = True
        watcher.start()
        try:
            return thunk()
        finally:
            while True:  # a TimeUp may still land here; then simply try again
                try:
                    with self.lock:
                        self.active = False
                        _set_async_exc(self.tid, None)  # drop an interrupt not yet delivered
                    break
                except TimeUp:
                    self.fired = True
            self.done.set()
            watcher.join()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.active:
            return  # a signal left over from a disarmed timer
        self.fired = True
        if frame is None or frame.f_code is not _CALL_CODE:
            raise TimeUp()
        # Landed in call() itself, between arming and the learner's first line: recorded, and
        # the next interrupt comes at once (not after the 50 ms repeat) to stop that code.
        signal.setitimer(signal.ITIMER_REAL, 1e-4, _REPEAT)

    def _watch(self) -> None:
        if self.done.wait(self.seconds):
            return
        while True:
            with self.lock:
                if not self.active:
                    return
                self.fired = True
                _set_async_exc(self.tid, TimeUp)
            if self.done.wait(_REPEAT):
                return


_CALL_CODE = _Alarm.call.__code__


def _async_exc_setter() -> Callable[[int, Any], None] | None:
    try:
        import ctypes

        api = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (ImportError, AttributeError):
        return None

    def set_exc(tid: int, exc_type: Any) -> None:
        api(ctypes.c_ulong(tid), None if exc_type is None else ctypes.py_object(exc_type))

    return set_exc


_set_async_exc = _async_exc_setter()
