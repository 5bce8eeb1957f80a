"""Tests for tools/benchmark.py: its pure parts, not the speed it measures.

Budgets, verdicts, the Markdown table, the merge of partial runs, the cache accounting and
reading a process's peak memory. Nothing is timed against a limit:
speed belongs in ``make bench``.
"""

import math

import os
import numpy as np
import pytest

from tools import benchmark as bench
from course_lib.batchnorm import batchnorm_forward


# ---- budgets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget, inside, edge, outside",
    [
        ("notebook", 59.99, 60.0, 61.0),          # strict: 60 s is a miss
        ("course_total", 239.0, 240.0, 300.0),
        ("tests", 599.0, 600.0, 700.0),
        ("book", 89.9, 90.0, 95.0),
        ("notebook_memory", 2047.0, 2048.0, 3000.0),
        ("train_step_vs_torch", 1.99, 2.0, 2.4),
    ],
)
def test_strict_upper_budgets(budget, inside, edge, outside):
    assert bench.within_budget(inside, budget) is True
    assert bench.within_budget(edge, budget) is False
    assert bench.within_budget(outside, budget) is False


def test_inclusive_and_lower_budgets(monkeypatch):
    assert bench.within_budget(2.0, "cache_vs_input") is True   # "at most 2x"
    assert bench.within_budget(2.01, "cache_vs_input") is False
    # No real budget is a lower bound any more; the comparison still works.
    monkeypatch.setitem(bench.BUDGETS, "at_least_2x", (">=", 2.0, "x"))
    assert bench.within_budget(2.0, "at_least_2x") is True
    assert bench.within_budget(1.99, "at_least_2x") is False
    assert bench.budget_text("at_least_2x") == ">= 2x"


def test_the_numpy_reference_has_no_speed_budget():
    assert "bn_vs_torch" not in bench.BUDGETS and "compact_vs_graph" not in bench.BUDGETS


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_a_failed_measurement_never_passes(value):
    assert bench.within_budget(value, "notebook") is False
    assert bench.within_budget(value, "cache_vs_input") is False


def test_every_budget_has_a_known_comparison_and_unit():
    for op, limit, unit in bench.BUDGETS.values():
        assert op in ("<", "<=", ">", ">=")
        assert limit > 0
        assert unit in ("s", "ms", "x", "MB")


def test_result_fills_in_the_verdict():
    assert bench.result("book", "build", 30.0, "s", "book").passed is True
    assert bench.result("book", "build", 95.0, "s", "book").passed is False
    assert bench.result("batchnorm", "info", 3.0, "x").passed is None  # reported only
    rows = [bench.result("book", "a", 95.0, "s", "book"),
            bench.result("book", "b", 5.0, "s", "book"),
            bench.result("book", "c", 5.0, "s")]
    assert [r.name for r in bench.misses(rows)] == ["a"]


# ---- formatting -----------------------------------------------------------------------------


def test_budget_text_and_values():
    assert bench.budget_text("notebook") == "< 60 s"
    assert bench.budget_text("cache_vs_input") == "<= 2x"
    assert bench.budget_text("train_step_vs_torch") == "< 2x"
    assert bench.budget_text(None) == ""
    assert bench.format_value(1.4234, "x") == "1.42x"
    assert bench.format_value(12.34, "s") == "12.3 s"
    assert bench.format_value(187.6, "s") == "188 s"
    assert bench.format_value(None, "ms") == "n/a"
    assert bench.format_value(math.nan, "ms") == "n/a"


def test_format_table_rows_verdicts_and_escaping():
    rows = [
        bench.result("notebooks", "01.ipynb", 12.34, "s", "notebook", "median of 3"),
        bench.result("memory", "02.ipynb", 2500.0, "MB", "notebook_memory", note="a | b"),
        bench.result("batchnorm", "traffic", 0.5, "x"),
    ]
    lines = bench.format_table(rows).splitlines()
    assert lines[0] == "| Section | Measurement | Value | Budget | Verdict | Note |"
    assert lines[1] == "|---|---|---:|---|---|---|"
    assert lines[2] == "| notebooks | 01.ipynb | 12.3 s | < 60 s | ok | median of 3 |"
    assert lines[3] == "| memory | 02.ipynb | 2500 MB | < 2048 MB | **MISS** | a \\| b |"
    assert lines[4] == "| batchnorm | traffic | 0.50x |  |  |  |"
    assert len(lines) == 5


def test_report_names_the_machine_and_the_misses():
    machine = {"date": "2026-01-01 00:00 UTC", "cpu": "Test CPU", "cores": 2}
    ok = bench.format_report([bench.result("book", "build", 1.0, "s", "book")], machine)
    assert "Test CPU, 2 cores" in ok and "All budgets met." in ok
    bad = bench.format_report([bench.result("book", "build", 99.0, "s", "book")], machine)
    assert "Missed budgets: book / build." in bad


def test_merge_keeps_the_sections_that_did_not_run():
    old = [bench.result("tests", "pytest", 300.0, "s", "tests"),
           bench.result("book", "build", 80.0, "s", "book")]
    new = [bench.result("book", "build", 40.0, "s", "book")]
    from dataclasses import asdict

    merged = bench._merge([asdict(r) for r in old], new, ran={"book"})
    assert [(r.section, r.value) for r in merged] == [("tests", 300.0), ("book", 40.0)]


# ---- measurements' pure parts ---------------------------------------------------------------


def test_cache_bytes_counts_each_buffer_once():
    base = np.zeros((10, 4), np.float32)
    assert bench.cache_bytes([base, base[:5], base.reshape(-1), np.zeros(4, np.float32), 1e-5]) \
        == base.nbytes + 16
    x = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
    _, cache = batchnorm_forward(x, np.ones(8, np.float32), np.zeros(8, np.float32))
    # x_hat plus five per-channel vectors (gamma, mu, var, inv_std) of 8 float32
    assert bench.cache_bytes(cache) == x.nbytes + 4 * 8 * 4


def test_notebooks_are_found_not_hard_coded(repo_root):
    found = bench.notebooks(repo_root)
    assert found == sorted((repo_root / "notebooks").glob("*.ipynb"))
    assert len(found) >= 1


def test_time_blocks_returns_one_number_per_block():
    calls = []
    times = bench.time_blocks(lambda: calls.append(1), repeats=4, target_s=0.001, warmup=2)
    assert len(times) == 4 and all(t > 0 for t in times)
    assert len(calls) >= 2 + 1 + 4


def test_cpu_model_and_cores():
    assert isinstance(bench.cpu_model(), str) and bench.cpu_model()
    assert bench.cores() >= 1


# ---- memory ---------------------------------------------------------------------------------


def test_peak_memory_of_this_process_is_read_from_proc():
    peak = bench._peak_rss_mb(os.getpid())
    if not os.path.exists("/proc/self/status"):
        assert peak is None
        return
    assert peak is not None and 10 < peak < 100_000
    assert bench._peak_rss_mb(None) is None and bench._peak_rss_mb(2**22 + 12345) is None
