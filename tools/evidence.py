"""Maintainer tool: run every claim on the claim seeds under several kernel settings and write
the book's evidence page (``make evidence``).

Each setting runs in its own process (PyTorch reads ``ATEN_CPU_CAPABILITY`` and friends when
it starts), writes its outcomes to ``_build/evidence/<setting>.json``, and ``page`` merges
them into ``book/evidence.json`` (the data) and ``book/evidence.md`` (the page). The tests
check that the page lists exactly the registry's claims with their current statements and
settings, and that the page is what ``page`` makes of the data, so a changed claim without a
new ``make evidence`` fails.

Usage::

    python -m tools.evidence run [--setting NAME ...] [--seeds N]   # default: all settings
    python -m tools.evidence page
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "book" / "evidence.json"
PAGE = ROOT / "book" / "evidence.md"
RUNS = ROOT / "_build" / "evidence"

#: The kernel settings every claim is run under: this machine's own kernels, and the
#: reference environment the stored outputs come from (the Makefile's REFERENCE_ENV).
SETTINGS: dict[str, dict[str, str]] = {
    "own kernels": {},
    "reference": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE",
                  "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}


def _slug(name: str) -> str:
    return name.replace(" ", "-")


def run_one(setting: str, n_seeds: int | None) -> None:
    """Run every claim on the claim seeds in this process and write the outcomes."""
    import platform

    import torch

    from course_lib.experiments import claims

    torch.set_num_threads(1)
    out = {"setting": setting, "env": SETTINGS[setting], "cpu": _cpu(), "torch": torch.__version__,
           "python": platform.python_version(), "claims": {}}
    for c in claims.all_claims():
        seeds = c.seeds[:n_seeds] if n_seeds else c.seeds
        start = time.perf_counter()
        outcomes = [c.run(seed) for seed in seeds]
        verdict = c.judge(outcomes)
        out["claims"][c.id] = {
            "fingerprint": c.fingerprint(),
            "seeds": list(seeds),
            "numbers": {o.seed: {k: float(v) for k, v in o.numbers.items()} for o in outcomes},
            "checks": {o.seed: [[k.name, k.value, k.bound, k.op] for k in o.checks]
                       for o in outcomes},
            "aggregate": [[k.name, k.value, k.bound, k.op] for k in verdict.aggregate],
            "seconds": time.perf_counter() - start,
        }
        print(f"[{setting}] {c.id}: {verdict.seeds_holding}/{len(outcomes)} seeds, "
              f"{'holds' if verdict.holds else 'FAILS'}", flush=True)
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / f"{_slug(setting)}.json").write_text(json.dumps(out, indent=1))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def run(settings: list[str], n_seeds: int | None) -> None:
    """Run the settings side by side (one thread each), each in a fresh interpreter."""
    procs = []
    for name in settings:
        env = {**os.environ, **SETTINGS[name]}
        cmd = [sys.executable, "-m", "tools.evidence", "_run-one", name]
        if n_seeds:
            cmd += ["--seeds", str(n_seeds)]
        procs.append((name, subprocess.Popen(cmd, env=env, cwd=ROOT)))
    failed = [name for name, p in procs if p.wait() != 0]
    if failed:
        raise SystemExit(f"the runs under {', '.join(failed)} failed")


def _margin(value: float, bound: float, op: str) -> float:
    m = value - bound if op == ">" else bound - value
    return m if m == m else float("-inf")


def merge() -> dict:
    """Merge the per-setting runs into one record per claim."""
    from course_lib.experiments import claims

    runs = [json.loads((RUNS / f"{_slug(s)}.json").read_text()) for s in SETTINGS
            if (RUNS / f"{_slug(s)}.json").exists()]
    if not runs:
        raise SystemExit("no runs in _build/evidence: run `python -m tools.evidence run` first")
    data = {"settings": [{"name": r["setting"], "env": r["env"], "cpu": r["cpu"],
                          "torch": r["torch"], "python": r["python"]} for r in runs],
            "claims": []}
    for c in claims.all_claims():
        per_run = [r["claims"].get(c.id) for r in runs]
        if any(p is None or p["fingerprint"] != c.fingerprint() for p in per_run):
            raise SystemExit(f"claim {c.id!r} changed since the runs: run them again")
        checks: dict[str, list[float]] = {}
        held = total = 0
        numbers: dict[str, list[float]] = {}
        for p in per_run:
            for seed, seed_checks in p["checks"].items():
                total += 1
                margins = [_margin(v, b, op) for _, v, b, op in seed_checks]
                held += all(m > 0 for m in margins)
                for (name, v, b, op), m in zip(seed_checks, margins):
                    checks.setdefault(f"{name} {op} {b:g}", []).append(m)
            for seed_numbers in p["numbers"].values():
                for k, v in seed_numbers.items():
                    numbers.setdefault(k, []).append(v)
        aggregate = {}
        for p in per_run:
            for name, v, b, op in p["aggregate"]:
                aggregate.setdefault(f"{name} {op} {b:g}", []).append(_margin(v, b, op))
        data["claims"].append({
            "id": c.id, "chapter": c.chapter, "section": c.section, "statement": c.statement,
            "fingerprint": c.fingerprint(), "seeds": per_run[0]["seeds"],
            "runs": total, "held": held,
            "checks": {k: {"min": min(v), "median": statistics.median(v)}
                       for k, v in checks.items()},
            "aggregate": {k: {"min": min(v), "median": statistics.median(v)}
                          for k, v in aggregate.items()},
            "numbers": {k: {"min": min(v), "median": statistics.median(v), "max": max(v)}
                        for k, v in numbers.items()},
        })
    return data


def render(data: dict) -> str:
    """The evidence page, from the merged data (deterministic: the tests re-render it)."""
    chapters = _chapter_files()
    lines = [
        "(evidence)=",
        "# The evidence behind every claim",
        "",
        "Every claim the chapters make is an experiment with an assert. This page lists each",
        "one with what its experiment measured on the claim seeds — seeds no page uses — under",
        "each kernel setting below. *Holds* counts the runs (seed × setting) on which every",
        "per-seed check held; a check's *margin* is how far its number stayed on the right side",
        "of its bound (the smallest margin shows how close a claim came to failing). A claim",
        "stated as an average over seeds has its aggregate checks listed too. The *range* of",
        "each printed number is what a learner may see on their own machine and seed.",
        "",
        "Kernel settings:",
        "",
    ]
    for s in data["settings"]:
        env = " ".join(f"`{k}={v}`" for k, v in s["env"].items()) or "the machine's defaults"
        lines.append(f"- **{s['name']}**: {env} (on {s['cpu']}, torch {s['torch']}, "
                     f"Python {s['python']})")
    lines.append("")
    by_chapter: dict[int, list[dict]] = {}
    for c in data["claims"]:
        by_chapter.setdefault(c["chapter"], []).append(c)
    for ch in sorted(by_chapter):
        target = chapters.get(ch, "")
        title = f"Chapter {ch}"
        lines += [f"## {title}", ""]
        for c in by_chapter[ch]:
            where = (f"{{ref}}`where the chapter says it <{c['section']}>`" if c["section"]
                     else f"{{doc}}`chapter {ch} <../{target}>`")
            seeds = f"{c['seeds'][0]}–{c['seeds'][-1]}" if len(c["seeds"]) > 1 else str(c["seeds"][0])
            lines += [
                f"### `{c['id']}`", "",
                f"> {c['statement']}", "",
                f"{where} · seeds {seeds} · "
                f"holds on {c['held']} of {c['runs']} runs", "",
                "| check | smallest margin | median margin |", "|---|---|---|",
            ]
            for name, m in c["checks"].items():
                lines.append(f"| {_md(name)} | {m['min']:.3g} | {m['median']:.3g} |")
            for name, m in c["aggregate"].items():
                lines.append(f"| across seeds: {_md(name)} | {m['min']:.3g} | {m['median']:.3g} |")
            lines += ["", "| printed number | smallest | median | largest |", "|---|---|---|---|"]
            for name, m in c["numbers"].items():
                lines.append(f"| {_md(name)} | {m['min']:.4g} | {m['median']:.4g} | "
                             f"{m['max']:.4g} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _chapter_files() -> dict[int, str]:
    """Chapter number -> notebook path (without the extension), from the notebooks' names."""
    out = {}
    for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        out[int(p.name[:2])] = f"notebooks/{p.stem}"
    return out


def page() -> None:
    data = merge()
    DATA.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    PAGE.write_text(render(data))
    print(f"wrote {PAGE.relative_to(ROOT)} and {DATA.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.evidence")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--setting", action="append", choices=list(SETTINGS))
    p_run.add_argument("--seeds", type=int, default=None)
    p_one = sub.add_parser("_run-one")
    p_one.add_argument("setting", choices=list(SETTINGS))
    p_one.add_argument("--seeds", type=int, default=None)
    sub.add_parser("page")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        run(args.setting or list(SETTINGS), args.seeds)
    elif args.cmd == "_run-one":
        run_one(args.setting, args.seeds)
    else:
        page()
    return 0


if __name__ == "__main__":
    sys.exit(main())
