"""Maintainer tool: the course's speed, measured against its budgets (``make bench``).

Learners never need this module. It measures, on the machine it runs on, what learners and CI
wait for, compares each number with its budget, writes ``_build/bench/results.md`` (a Markdown
table) and ``_build/bench/results.json``, and exits with status 1 when a budget is missed,
naming the misses. Sections (``--only`` picks some):

``notebooks``  each chapter's execution time from a fresh kernel, and the total
               (budget: < 60 s each, < 240 s in all).
``memory``     each chapter's peak resident memory, the kernel's high-water mark after a run
               from a fresh kernel (budget: < 2 GB each, what a free Binder session gives).
               The sliders need no row: they run no kernel code, a move only swaps a picture
               stored in the page (``course_lib.page.slider``), and the browser tests check it.
``tests``      the whole test command's wall time (budget: < 600 s). Run once: it takes
               minutes, and it is the number CI sees.
``book``       the book build with stored outputs (budget: < 90 s).
``batchnorm``  ``course_lib.batchnorm`` forward + backward (numpy) against
               ``torch.nn.BatchNorm1d/2d`` forward + backward on the same float32 data, as a
               ratio (reported, no budget: the numpy reference is written to be read), and each
               one's memory traffic against a plain copy;
               the note also counts both times in numpy passes and gives torch on 1 thread.
``backward``   the compact backward against the graph backward (reported, no budget) and the
               memory the forward cache holds relative to the input (budget: <= 2x).
``training``   a full SGD step of the chapter 3 network with ``course_lib.nn.BatchNorm1d``
               against ``torch.nn.BatchNorm1d`` (budget: < 2x).
``claims``     each registered claim (``course_lib.experiments.claims``) run for the first
               claim seed on one thread, as the tests run it (budget: < 10 s a seed; the
               tests run every claim on ten seeds, so this keeps them within CI's budget).

Statistics. Whole-program timings (notebooks, book) are medians over repeated runs:
they are what a learner waits for, noise included. Micro-benchmarks (batchnorm, backward,
training) report the *minimum* over repeated blocks as the budgeted number, because on a
shared machine the noise only ever adds time and the minimum is the best estimate of the code's
own cost; their medians are in the JSON too. ``--quick`` runs fewer repeats and the smaller
sizes, for a smoke test. A run keeps the earlier results of the sections it did not run (each
row says when it was measured), so ``--skip-tests`` then ``--only tests`` gives a full table.

Usage::

    python -m tools.benchmark                  # everything (~15 min on 2 cores)
    python -m tools.benchmark --skip-tests     # everything but the test command
    python -m tools.benchmark --only training --only batchnorm --quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

SECTIONS = ("notebooks", "memory", "tests", "book", "batchnorm", "backward", "training",
            "claims")

#: Budgets by name: (comparison, limit, unit). A value passes when ``value <op> limit``.
BUDGETS: dict[str, tuple[str, float, str]] = {
    "notebook": ("<", 60.0, "s"),
    "course_total": ("<", 240.0, "s"),
    "tests": ("<", 600.0, "s"),
    "book": ("<", 90.0, "s"),
    "cache_vs_input": ("<=", 2.0, "x"),
    "train_step_vs_torch": ("<", 2.0, "x"),
    "notebook_memory": ("<", 2048.0, "MB"),
    "claim_seed": ("<", 10.0, "s"),
}

#: Shapes of the batchnorm micro-benchmark: (N, D) for BatchNorm1d, (N, C, H, W) for 2d.
BN_SHAPES: tuple[tuple[int, ...], ...] = ((64, 64), (256, 1024), (4096, 1024), (32, 64, 32, 32))

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda v, b: v < b,
    "<=": lambda v, b: v <= b,
    ">": lambda v, b: v > b,
    ">=": lambda v, b: v >= b,
}


# --------------------------------------------------------------------------------------------
# Results, budgets and the table (pure; tested in tests/test_tools_benchmark.py)
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One measured number, with its budget (``budget=None``: reported, not budgeted)."""

    section: str
    name: str
    value: float | None
    unit: str
    budget: str | None = None
    stat: str = ""
    note: str = ""
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    measured_at: str = ""


def within_budget(value: float | None, budget: str) -> bool:
    """Whether ``value`` meets the budget named ``budget`` in :data:`BUDGETS`.

    A missing or non-finite value (the measurement failed) never passes.

    Example:
        >>> within_budget(59.9, "notebook"), within_budget(60.0, "notebook")
        (True, False)
        >>> within_budget(2.0, "cache_vs_input")
        True
    """
    op, limit, _ = BUDGETS[budget]
    if value is None or not math.isfinite(value):
        return False
    return _OPS[op](value, limit)


def budget_text(budget: str | None) -> str:
    """How the table shows a budget: ``"< 60 s"``, ``"<= 2x"``; ``""`` for none."""
    if budget is None:
        return ""
    op, limit, unit = BUDGETS[budget]
    sep = "" if unit == "x" else " "
    return f"{op} {_fmt(limit)}{sep}{unit}"


def result(section: str, name: str, value: float | None, unit: str, budget: str | None = None,
           stat: str = "", note: str = "", **extra: Any) -> Result:
    """A :class:`Result`, with ``passed`` filled in from its budget."""
    passed = None if budget is None else within_budget(value, budget)
    return Result(section, name, value, unit, budget, stat, note, passed, extra,
                  _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def misses(results: Iterable[Result]) -> list[Result]:
    """The results that missed their budget."""
    return [r for r in results if r.passed is False]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_value(value: float | None, unit: str) -> str:
    """``"12.3 s"``, ``"1.42x"``, ``"n/a"`` for a failed measurement.

    Example:
        >>> format_value(1.4234, "x"), format_value(12.34, "s"), format_value(None, "ms")
        ('1.42x', '12.3 s', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{_fmt(value)}{'' if unit == 'x' else ' '}{unit}"


def format_table(results: Sequence[Result]) -> str:
    """The results as one Markdown table, in the order given.

    Columns: section, measurement, value, budget, verdict (``ok``, ``**MISS**``, or empty for
    a number reported without a budget), and a note (statistic and context).
    """
    lines = [
        "| Section | Measurement | Value | Budget | Verdict | Note |",
        "|---|---|---:|---|---|---|",
    ]
    for r in results:
        verdict = "" if r.passed is None else ("ok" if r.passed else "**MISS**")
        note = "; ".join(s for s in (r.stat, r.note) if s).replace("|", "\\|")
        lines.append(
            f"| {r.section} | {r.name} | {format_value(r.value, r.unit)} | "
            f"{budget_text(r.budget)} | {verdict} | {note} |"
        )
    return "\n".join(lines) + "\n"


def format_report(results: Sequence[Result], machine: dict[str, Any]) -> str:
    """The Markdown file: the machine, the table, and the misses."""
    head = [
        "# Benchmark results",
        "",
        f"Measured {machine.get('date', '?')} on {machine_line(machine)}.",
        "",
    ]
    missed = misses(results)
    tail = ["", "All budgets met." if not missed else
            "Missed budgets: " + "; ".join(f"{r.section} / {r.name}" for r in missed) + "."]
    return "\n".join(head) + "\n" + format_table(results) + "\n".join(tail) + "\n"


def machine_line(machine: dict[str, Any]) -> str:
    """One line naming the machine: CPU, cores, versions, threads, load."""
    return (
        f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"Python {machine.get('python', '?')}, torch {machine.get('torch', '?')} "
        f"({machine.get('torch_threads', '?')} threads), numpy {machine.get('numpy', '?')}; "
        f"load average {machine.get('load_start', '?')} at the start, "
        f"{machine.get('load_end', '?')} at the end"
    )


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------


def time_blocks(fn: Callable[[], Any], repeats: int, target_s: float = 0.05,
                warmup: int = 3) -> list[float]:
    """Seconds per call of ``fn``, one number per block of calls, ``repeats`` blocks.

    Calls ``fn`` ``warmup`` times, picks a block length so a block takes about ``target_s``,
    then times ``repeats`` blocks with :func:`time.perf_counter`.
    """
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    n = max(1, int(target_s / once))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - start) / n)
    return out


def settle_allocator(nbytes: int = 24 << 20) -> None:
    """Put the C allocator into the state a long-running notebook reaches, once per run.

    glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KB at start) with a fresh
    ``mmap``, whose pages the kernel faults in and zeroes on first touch, and raises that
    threshold to the size of the first such block that is freed (up to 32 MB). So before any
    large array has been freed, every full-size temporary costs page faults; after, it comes
    from the heap. Measured here: the graph backward at 256x1024 took 3.3 ms in a fresh
    process and 0.54 ms after one large free, so the results depended on which section ran
    first. Allocating, touching and freeing one ``nbytes`` block (above the largest array
    measured, below glibc's 32 MB cap) makes every section start from the same, steady state.
    Other allocators ignore it harmlessly.
    """
    import numpy as np

    block = np.ones(nbytes // 8)
    del block


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                 target_s: float = 0.05) -> dict[str, list[float]]:
    """:func:`time_blocks` for several functions, alternating blocks so load hits all alike."""
    blocks = {k: time_blocks(f, 1, target_s) for k, f in fns.items()}  # warm up, size blocks
    for _ in range(repeats - 1):
        for k, f in fns.items():
            blocks[k] += time_blocks(f, 1, target_s, warmup=0)
    return blocks


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    import numpy as np
    import torch

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                  "OPENBLAS_NUM_THREADS") if k in os.environ},
        "load_start": _load(),
    }


def _load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def _root() -> Path:
    return Path(__file__).resolve().parent.parent


def notebooks(root: Path | None = None) -> list[Path]:
    """Every chapter notebook, in order."""
    return sorted(((root or _root()) / "notebooks").glob("*.ipynb"))


# --------------------------------------------------------------------------------------------
# Notebooks (time and memory), test command and book
# --------------------------------------------------------------------------------------------


def _peak_rss_mb(pid: int | None) -> float | None:
    """A process's peak resident memory in MB (Linux's ``VmHWM``), or None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def run_notebook(path: Path, timeout: int = 600) -> dict[str, Any]:
    """Execute ``path`` in a fresh kernel (not written back); time it and take its peak memory.

    ``seconds`` runs from asking for the kernel to the last cell's reply: what "Restart and
    run all" costs a learner. ``kernel_s`` is the kernel start-up part of it; ``peak_mb`` the
    kernel's peak resident memory, read before it shuts down.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    out: dict[str, Any] = {"notebook": path.name, "error": None, "peak_mb": None}
    start = time.perf_counter()
    client.reset_execution_trackers()
    with client.setup_kernel():
        client.wait_for_reply(client.kc.kernel_info())
        out["kernel_s"] = time.perf_counter() - start
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]}"
        out["seconds"] = time.perf_counter() - start
        out["peak_mb"] = _peak_rss_mb(getattr(client.km.provisioner, "pid", None))
    return out


def bench_notebooks(paths: Sequence[Path], repeats: int, want_times: bool,
                    want_memory: bool) -> list[Result]:
    runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in paths}
    for _ in range(repeats if want_times else 1):
        for p in paths:
            run = run_notebook(p)
            runs[p.name].append(run)
            print(f"  {p.name}: {run['seconds']:.1f} s"
                  + (f" ERROR {run['error']}" if run["error"] else ""), flush=True)
    results: list[Result] = []
    if want_times:
        total = 0.0
        for name, rs in runs.items():
            secs = [x["seconds"] for x in rs]
            med = statistics.median(secs)
            total += med
            err = next((x["error"] for x in rs if x["error"]), None)
            results.append(result(
                "notebooks", name, None if err else med, "s", "notebook",
                f"median of {len(secs)}", f"FAILED: {err}" if err else
                f"runs {', '.join(f'{s:.1f}' for s in secs)} s; kernel start "
                f"{statistics.median(x['kernel_s'] for x in rs):.1f} s",
                runs=secs))
        failed = any(r.value is None for r in results)
        results.append(result("notebooks", "whole course (sum)", None if failed else total, "s",
                              "course_total", "sum of medians"))
    if want_memory:
        for name, rs in runs.items():
            peaks = [x["peak_mb"] for x in rs if x["peak_mb"] is not None]
            err = next((x["error"] for x in rs if x["error"]), None)
            note = ("kernel's peak resident memory (VmHWM)" if peaks
                    else "no /proc on this system")
            results.append(result(
                "memory", name, None if err or not peaks else max(peaks), "MB",
                "notebook_memory", f"max of {len(peaks)}", f"FAILED: {err}" if err else note))
    return results


def bench_tests(root: Path) -> list[Result]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    secs = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines() or ["?"]
    summary = lines[-1].strip("= ")[:160]
    failed = [l.split()[1] for l in lines if l.startswith(("FAILED ", "ERROR ")) and " " in l]
    note = f"exit {proc.returncode}: {summary}"
    if failed:
        note += " (" + ", ".join(failed[:4]) + (", ..." if len(failed) > 4 else "") + ")"
    return [result("tests", "`python -m pytest` (what `make test` runs)", secs, "s", "tests",
                   "one run", note, returncode=proc.returncode, failed=failed)]


def bench_book(root: Path, repeats: int) -> list[Result]:
    jb = Path(sys.executable).parent / "jupyter-book"
    secs, rc = [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            cmd = [str(jb), "build", str(root), "--path-output", out, "--warningiserror",
                   "--nitpick", "--keep-going"]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            secs.append(time.perf_counter() - start)
            rc = rc or proc.returncode
    return [result("book", "book build, stored outputs, from scratch",
                   statistics.median(secs), "s", "book", f"median of {len(secs)}",
                   f"runs {', '.join(f'{s:.1f}' for s in secs)} s"
                   + (f"; build FAILED (exit {rc})" if rc else ""), runs=secs)]


# --------------------------------------------------------------------------------------------
# Micro-benchmarks (batchnorm, backward, training)
# --------------------------------------------------------------------------------------------


def bench_batchnorm(shapes: Sequence[tuple[int, ...]], repeats: int) -> list[Result]:
    """numpy reference forward+backward vs torch's native BN, and both against a copy.

    Besides the budgeted ratio, each row reports what explains it: the cost of one numpy pass
    over the array (``np.multiply(x, dout, out=...)``, reading two arrays and writing one), so
    the time of each side can be read as a number of such passes, and torch's time on one
    thread, the same resources the (single-threaded) numpy code gets.
    """
    import numpy as np
    import torch

    from course_lib.batchnorm import batchnorm_backward, batchnorm_forward

    results = []
    for shape in shapes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape).astype(np.float32)
        dout = rng.normal(size=shape).astype(np.float32)
        c = shape[1]
        gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
        bn = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(c)
        xt = torch.from_numpy(x.copy()).requires_grad_()
        dt = torch.from_numpy(dout.copy())
        params = [xt, bn.weight, bn.bias]
        dst = np.empty_like(x)

        def ours():
            _, cache = batchnorm_forward(x, gamma, beta)
            batchnorm_backward(dout, cache)

        def theirs():
            torch.autograd.grad(bn(xt), params, dt)

        t = _interleaved({"ours": ours, "torch": theirs,
                          "copy": lambda: np.copyto(dst, x),
                          "pass": lambda: np.multiply(x, dout, out=dst)}, repeats)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            t["torch_1t"] = time_blocks(theirs, repeats)
        finally:
            torch.set_num_threads(threads)
        best = {k: min(v) for k, v in t.items()}
        med = {k: statistics.median(v) for k, v in t.items()}
        # Traffic model: the least any fwd+bwd must move is 5 arrays (fwd reads x, writes y;
        # bwd reads dout and x or x_hat, writes dx); a copy moves 2 (reads x, writes dst).
        nbytes = x.nbytes
        copy_bw = 2 * nbytes / best["copy"]
        frac = {k: 5 * nbytes / best[k] / copy_bw for k in ("ours", "torch")}
        passes = {k: best[k] / best["pass"] for k in ("ours", "torch")}
        label = "x".join(map(str, shape))
        results.append(result(
            "batchnorm", f"numpy fwd+bwd / torch fwd+bwd, {label}",
            best["ours"] / best["torch"], "x", None, f"min of {repeats}",
            f"{best['ours'] * 1e3:.3g} vs {best['torch'] * 1e3:.3g} ms "
            f"({threads} torch threads), = {passes['ours']:.1f} vs {passes['torch']:.1f} "
            f"numpy passes of {best['pass'] * 1e3:.3g} ms; vs torch on 1 thread "
            f"({best['torch_1t'] * 1e3:.3g} ms): {best['ours'] / best['torch_1t']:.2f}x; "
            f"traffic {frac['ours']:.0%} vs {frac['torch']:.0%} of copy bandwidth "
            f"({copy_bw / 1e9:.1f} GB/s)",
            ours_s=best["ours"], torch_s=best["torch"], torch_1thread_s=best["torch_1t"],
            copy_s=best["copy"], numpy_pass_s=best["pass"], torch_threads=threads,
            median_ratio=med["ours"] / med["torch"],
            ratio_vs_torch_1thread=best["ours"] / best["torch_1t"], copy_gbps=copy_bw / 1e9,
            traffic_fraction_ours=frac["ours"], traffic_fraction_torch=frac["torch"]))
    return results


def bench_backward(shapes: Sequence[tuple[int, ...]], repeats: int) -> list[Result]:
    """Compact vs graph backward, and the forward cache's memory relative to the input."""
    import numpy as np

    from course_lib.batchnorm import (batchnorm_backward, batchnorm_backward_graph,
                                      batchnorm_forward)

    results = []
    for shape in shapes:
        rng = np.random.default_rng(0)
        x = rng.normal(size=shape).astype(np.float32)
        dout = rng.normal(size=shape).astype(np.float32)
        c = shape[1]
        _, cache = batchnorm_forward(x, np.ones(c, np.float32), np.zeros(c, np.float32))
        t = _interleaved({"compact": lambda: batchnorm_backward(dout, cache),
                          "graph": lambda: batchnorm_backward_graph(dout, cache)}, repeats)
        best = {k: min(v) for k, v in t.items()}
        label = "x".join(map(str, shape))
        results.append(result(
            "backward", f"graph / compact backward time, {label}",
            best["graph"] / best["compact"], "x", None, f"min of {repeats}",
            f"{best['compact'] * 1e3:.3g} vs {best['graph'] * 1e3:.3g} ms",
            median_ratio=statistics.median(t["graph"]) / statistics.median(t["compact"])))
        held = cache_bytes(cache)
        results.append(result(
            "backward", f"forward cache / input bytes, {label}", held / x.nbytes, "x",
            "cache_vs_input", "exact", f"{held / 1e6:.3g} MB held for a {x.nbytes / 1e6:.3g} "
            "MB input"))
    return results


def cache_bytes(cache: Iterable[Any]) -> int:
    """Bytes of the distinct numpy buffers a cache keeps alive (views count once)."""
    import numpy as np

    seen: dict[int, int] = {}
    for a in cache:
        if isinstance(a, np.ndarray):
            base = a
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen[id(base)] = base.nbytes
    return sum(seen.values())


def bench_training(repeats: int, steps_per_block_s: float = 0.1) -> list[Result]:
    """A full SGD step of the chapter 3 network, course_lib BN vs torch BN."""
    import torch

    from course_lib.experiments.lab.models import make_mlp

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(60, 64, generator=gen)
    y = torch.randint(0, 10, (60,), generator=gen)
    steps = {}
    for impl in ("course_lib", "torch"):
        model = make_mlp(64, [100, 100, 100], 10, activation="sigmoid", bn="before",
                         bn_impl=impl, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(model=model, opt=opt, loss_fn=loss_fn):
            opt.zero_grad()
            loss_fn(model(X), y).backward()
            opt.step()

        steps[impl] = step
    t = _interleaved(steps, repeats, steps_per_block_s)
    best = {k: min(v) for k, v in t.items()}
    return [result(
        "training", "chapter 3 SGD step, course_lib.nn / torch.nn BatchNorm1d",
        best["course_lib"] / best["torch"], "x", "train_step_vs_torch", f"min of {repeats}",
        f"{1 / best['course_lib']:.0f} vs {1 / best['torch']:.0f} steps/s "
        "(make_mlp(64, [100]*3, 10, sigmoid, BN before), batch 60)",
        course_lib_steps_per_s=1 / best["course_lib"], torch_steps_per_s=1 / best["torch"],
        median_ratio=statistics.median(t["course_lib"]) / statistics.median(t["torch"]))]


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def bench_claims() -> list[Result]:
    """Each claim's run for one seed, on one thread (as ``tests/test_claims.py`` runs it)."""
    import torch

    from course_lib.experiments import claims

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = []
    try:
        for c in claims.all_claims():
            start = time.perf_counter()
            outcome = c.run(c.seeds[0])
            secs = time.perf_counter() - start
            out.append(result("claims", f"chapter {c.chapter}: {c.id}", secs, "s", "claim_seed",
                              f"seed {outcome.seed}, one run",
                              "holds" if outcome.holds else "does NOT hold on this seed"))
    finally:
        torch.set_num_threads(before)
    return out


def _merge(old: list[dict[str, Any]], new: list[Result], ran: set[str]) -> list[Result]:
    """New results for the sections that ran; earlier ones, unchanged, for the rest."""
    kept = [Result(**d) for d in old if d.get("section") not in ran]
    merged = kept + new
    return sorted(merged, key=lambda r: SECTIONS.index(r.section)
                  if r.section in SECTIONS else len(SECTIONS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmark",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and the two smaller BN sizes: a smoke test")
    parser.add_argument("--skip-tests", action="store_true",
                        help="do not time the whole test command (it takes minutes)")
    parser.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections (repeatable): {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=_root() / "_build" / "bench")
    args = parser.parse_args(argv)

    ran = set(args.only or SECTIONS)
    if args.skip_tests:
        ran.discard("tests")
    os.environ.setdefault("PYTHONHASHSEED", "0")  # as devtools: same outputs everywhere

    import torch

    # The micro-benchmarks use every core this process may use, said out loud in the report.
    torch.set_num_threads(cores())
    machine = machine_info()
    quick = args.quick
    shapes = BN_SHAPES[:2] if quick else BN_SHAPES
    micro_repeats = 5 if quick else 15
    root = _root()
    new: list[Result] = []
    print(f"Benchmarking {', '.join(s for s in SECTIONS if s in ran)} on {machine['cpu']} "
          f"({machine['cores']} cores, torch threads {machine['torch_threads']})", flush=True)

    if ran & {"training", "batchnorm", "backward"}:
        settle_allocator()
    if "training" in ran:
        print("training step ...", flush=True)
        # Many short blocks: a 3-layer step is ~1 ms, so load spikes hit single blocks.
        new += bench_training(3 * micro_repeats, steps_per_block_s=0.05)
    if "batchnorm" in ran:
        print("batchnorm vs torch ...", flush=True)
        new += bench_batchnorm(shapes, micro_repeats)
    if "backward" in ran:
        print("compact vs graph backward ...", flush=True)
        new += bench_backward(shapes, micro_repeats)
    if "claims" in ran:
        print("claims ...", flush=True)
        new += bench_claims()
    if "notebooks" in ran or "memory" in ran:
        print("notebooks ...", flush=True)
        new += bench_notebooks(notebooks(root), 1 if quick else 3, "notebooks" in ran,
                               "memory" in ran)
    if "book" in ran:
        print("book build ...", flush=True)
        new += bench_book(root, 1 if quick else 3)
    if "tests" in ran:
        print("whole test command (once) ...", flush=True)
        new += bench_tests(root)

    machine["load_end"] = _load()
    machine["quick"] = quick
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "results.json", args.out / "results.md"
    old = json.loads(json_path.read_text()).get("results", []) if json_path.exists() else []
    results = _merge(old, new, ran)
    json_path.write_text(json.dumps(
        {"machine": machine, "sections_run": sorted(ran), "budgets": BUDGETS,
         "results": [asdict(r) for r in results]}, indent=1) + "\n")
    md_path.write_text(format_report(results, machine))
    print(format_table(results))
    print(f"Wrote {md_path} and {json_path}")
    missed = misses(results)
    if missed:
        print("Missed budgets:", file=sys.stderr)
        for r in missed:
            print(f"  {r.section} / {r.name}: {format_value(r.value, r.unit)} "
                  f"(budget {budget_text(r.budget)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
