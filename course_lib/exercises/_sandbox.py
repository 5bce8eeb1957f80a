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

The session also restores what learner code may change globally: warning filters, numpy's
error state and global random state, and torch's random state, default dtype and grad mode.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["Limits", "LIMITS", "TimeUp", "Outcome", "session", "run", "time_limit", "safe_str",
           "learner_frame"]


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
    if not isinstance(text, str):
        text = "<str() did not return a string>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


_CURRENT: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("session", default=None)


@contextlib.contextmanager
def session(timeout: float) -> Iterator[_Session]:
    """One grading: a time budget and an output buffer shared by its calls to :func:`run`,
    and global state restored afterwards."""
    s = _Session(timeout)
    token = _CURRENT.set(s)
    np_state = np.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        t_state = (torch.random.get_rng_state(), torch.get_default_dtype(), torch.is_grad_enabled())
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            yield s
    finally:
        _CURRENT.reset(token)
        np.random.set_state(np_state)
        if torch is not None:
            torch.random.set_rng_state(t_state[0])
            torch.set_default_dtype(t_state[1])
            torch.set_grad_enabled(t_state[2])


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
    """Call ``thunk()`` (learner code) under the session's remaining time, output captured."""
    s = _CURRENT.get()
    if s is None:  # called outside grade(): a session of its own
        with session(LIMITS.timeout):
            return run(thunk)
    if s.remaining <= 0:
        return Outcome(timed_out=TimeUp())
    alarm = _Alarm(s.remaining)
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(s.output), contextlib.redirect_stderr(s.output):
            with alarm:
                value = thunk()
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


class _Alarm:
    """Raise :class:`TimeUp` in this thread after ``seconds`` (see the module docstring)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.fired, self.active = seconds, False, False
        self.mode = ""

    def __enter__(self) -> "_Alarm":
        main = threading.current_thread() is threading.main_thread()
        if main and hasattr(signal, "setitimer"):
            self.mode = "signal"
            self.old_handler = signal.getsignal(signal.SIGALRM)
            signal.signal(signal.SIGALRM, self._on_signal)
            self.old_timer = signal.setitimer(signal.ITIMER_REAL, 0)
            self.t0 = time.monotonic()
            self.active = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds, _REPEAT)
        elif _set_async_exc is not None:
            self.mode = "thread"
            self.tid = threading.get_ident()
            self.lock, self.done = threading.Lock(), threading.Event()
            self.active = True
            self.watcher = threading.Thread(target=self._watch, daemon=True)
            self.watcher.start()
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.active:
            self.fired = True
            raise TimeUp()

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

    def __exit__(self, *exc: Any) -> None:
        while True:  # a TimeUp may still land here; then simply try again
            try:
                self._stop()
                return
            except TimeUp:
                self.fired = True

    def _stop(self) -> None:
        if self.mode == "signal":
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old_handler if self.old_handler is not None
                          else signal.SIG_DFL)
            left, interval = self.old_timer
            if left > 0:  # someone else's timer: give it back what is left of it
                signal.setitimer(signal.ITIMER_REAL,
                                 max(left - (time.monotonic() - self.t0), 1e-3), interval)
            self.mode = ""
        elif self.mode == "thread":
            with self.lock:
                self.active = False
                _set_async_exc(self.tid, None)  # drop an interrupt not yet delivered
            self.done.set()
            self.watcher.join()
            self.mode = ""


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
