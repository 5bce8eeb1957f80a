"""The claim registry: every claim the course makes, written once, as data.

A claim is a sentence a chapter states ("frozen statistics win when fine-tuning with batches
of 2") and the experiment that backs it. It is written once, here, and called by everyone:

- the chapter's notebook runs it for the page's seed, prints its numbers and asserts it;
- the tests run the very same claim on the claim seeds (:data:`CLAIM_SEEDS`, which no page
  uses) and assert every per-seed check on each and the aggregate checks across them;
- ``tools/evidence.py`` runs every claim on the claim seeds under several kernel settings and
  writes the evidence page of the book (each check's smallest and median margin);
- the benchmark times each claim's run for one seed.

A claim is a function of ``(settings, seed)`` decorated with :func:`claim`. Its settings are
a frozen dataclass (the experiment's knobs, training settings included), and it returns an
:class:`Evidence`: the result for the page to plot, the numbers the page prints, and the
per-seed :class:`Check` s. Where single seeds disagree, the claim is an aggregate instead: an
``across_seeds`` function turns the numbers of all seeds into checks on a mean, a median or a
count ("k of n seeds").

Example:
    >>> from course_lib.experiments import claims
    >>> c = claims.get("digits-mlp-bn-trains-faster")          # doctest: +SKIP
    >>> outcome = c.run(seed=0)                                # doctest: +SKIP
    >>> print(outcome)                                         # doctest: +SKIP
    >>> assert outcome.holds, outcome.explain()                # doctest: +SKIP

A check is a number that must stay on one side of a bound: ``above("gain", g, 0.05)`` holds
when ``g > 0.05``, and its *margin* ``g - 0.05`` says by how much. The evidence page shows
the margins, so a claim whose margin is thin on some seed is visible before it fails.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLAIM_SEEDS",
    "Check",
    "Claim",
    "Evidence",
    "Outcome",
    "Verdict",
    "above",
    "all_claims",
    "below",
    "claim",
    "get",
]

#: The seeds on which the tests and the evidence page check every claim. The notebooks use
#: seed 0 (a few chapters 0-2), so a claim must hold on seeds no page shows.
CLAIM_SEEDS: tuple[int, ...] = tuple(range(1001, 1011))


@dataclass(frozen=True)
class Check:
    """One fact: ``value`` is above (or below) ``bound``.

    Attributes:
        name: what the value is, in the page's words ("frozen minus training-mode accuracy").
        value: the measured number.
        bound: the number it must stay above (``op=">"``) or below (``op="<"``).
        op: ``">"`` or ``"<"``.
    """

    name: str
    value: float
    bound: float
    op: str = ">"

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise ValueError(f"Check.op must be '>' or '<' (got {self.op!r})")

    @property
    def margin(self) -> float:
        """How far the value is on the right side of the bound (negative: the check fails;
        NaN counts as failing)."""
        m = self.value - self.bound if self.op == ">" else self.bound - self.value
        return m if math.isfinite(m) else -math.inf

    @property
    def holds(self) -> bool:
        return self.margin > 0

    def __str__(self) -> str:
        mark = "✓" if self.holds else "✗"
        return (f"{mark} {self.name}: {self.value:.4g} {self.op} {self.bound:.4g} "
                f"(margin {self.margin:.3g})")


def above(name: str, value: float, bound: float) -> Check:
    """A check that holds when ``value > bound``."""
    return Check(name, float(value), float(bound), ">")


def below(name: str, value: float, bound: float) -> Check:
    """A check that holds when ``value < bound``."""
    return Check(name, float(value), float(bound), "<")


@dataclass(frozen=True)
class Evidence:
    """What one run of a claim's experiment returns.

    Attributes:
        numbers: the numbers the page prints, by name (the evidence page shows their spread
            over seeds and kernel settings).
        checks: the per-seed checks; the claim holds on this seed when all of them hold.
        result: the experiment's own result (histories, arrays), for the page's figures.
    """

    numbers: Mapping[str, float]
    checks: Sequence[Check] = ()
    result: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Outcome:
    """A claim run on one seed: its :class:`Evidence` and whether its checks hold."""

    claim: Claim
    seed: int
    evidence: Evidence

    @property
    def numbers(self) -> Mapping[str, float]:
        return self.evidence.numbers

    @property
    def checks(self) -> Sequence[Check]:
        return self.evidence.checks

    @property
    def result(self) -> Any:
        return self.evidence.result

    @property
    def holds(self) -> bool:
        return all(c.holds for c in self.checks)

    def explain(self) -> str:
        """The claim, the seed, and every check with its margin: what a failed assert says."""
        lines = [f"{self.claim.statement} (claim {self.claim.id!r}, seed {self.seed})"]
        lines += [f"  {c}" for c in self.checks]
        return "\n".join(lines)

    def __str__(self) -> str:
        width = max((len(k) for k in self.numbers), default=0)
        lines = [f"{k:<{width}}  {_fmt(v)}" for k, v in self.numbers.items()]
        lines += [str(c) for c in self.checks]
        return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """A claim judged over several seeds: every per-seed check on every seed, and the
    aggregate checks across them."""

    claim: Claim
    outcomes: tuple[Outcome, ...]
    aggregate: tuple[Check, ...]

    @property
    def seeds_holding(self) -> int:
        return sum(o.holds for o in self.outcomes)

    @property
    def holds(self) -> bool:
        return self.seeds_holding == len(self.outcomes) and all(c.holds for c in self.aggregate)

    def explain(self) -> str:
        lines = [f"{self.claim.statement} (claim {self.claim.id!r}): "
                 f"{self.seeds_holding} of {len(self.outcomes)} seeds hold"]
        lines += [f"  seed {o.seed}: {c}" for o in self.outcomes for c in o.checks if not c.holds]
        lines += [f"  across seeds: {c}" for c in self.aggregate]
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Claim:
    """A sentence of the course and the experiment that backs it.

    Attributes:
        id: a short, stable name (``"finetune-frozen-statistics"``).
        chapter: the chapter that states it.
        statement: the sentence, as the page states it.
        settings: the experiment's frozen settings dataclass.
        experiment: ``(settings, seed) -> Evidence``.
        across_seeds: ``[numbers of each seed] -> [Check]``, for a claim stated as an aggregate
            (a mean, a median, "k of n seeds"); ``None`` for a claim that holds per seed.
        slow: its run takes more than a few seconds (the tests mark it ``slow``).
        section: the anchor of the section that states it (for links from the evidence page).
        seeds: the claim seeds it is checked on: :data:`CLAIM_SEEDS`, or the first few of them
            for an experiment whose seeds change only its sampling noise and which takes
            seconds a seed (the reason stands beside the claim).
    """

    id: str
    chapter: int
    statement: str
    settings: Any
    experiment: Callable[[Any, int], Evidence] = field(repr=False)
    across_seeds: Callable[[Sequence[Mapping[str, float]]], Sequence[Check]] | None = field(
        default=None, repr=False)
    slow: bool = False
    section: str = ""
    seeds: tuple[int, ...] = CLAIM_SEEDS

    def run(self, seed: int = 0, settings: Any = None) -> Outcome:
        """Run the experiment for ``seed`` (with the claim's settings unless others are given)."""
        evidence = self.experiment(self.settings if settings is None else settings, seed)
        if not isinstance(evidence, Evidence):
            raise TypeError(f"claim {self.id!r}: its experiment must return an Evidence "
                            f"(got {type(evidence).__name__})")
        return Outcome(self, seed, evidence)

    def judge(self, outcomes: Iterable[Outcome]) -> Verdict:
        """Judge the claim over the outcomes of several seeds."""
        outcomes = tuple(outcomes)
        agg = () if self.across_seeds is None else tuple(
            self.across_seeds([o.numbers for o in outcomes]))
        return Verdict(self, outcomes, agg)

    def fingerprint(self) -> str:
        """What the evidence page was made from: the statement, the settings and the seeds. A
        change to any makes the page stale."""
        return f"{self.statement} | {_settings_repr(self.settings)} | seeds {list(self.seeds)}"


_REGISTRY: dict[str, Claim] = {}


def claim(
    id: str,
    *,
    chapter: int,
    statement: str,
    settings: Any,
    slow: bool = False,
    section: str = "",
    seeds: Sequence[int] = CLAIM_SEEDS,
) -> Callable[[Callable[[Any, int], Evidence]], Claim]:
    """Register the decorated ``(settings, seed) -> Evidence`` function as a claim.

    The returned :class:`Claim` has an ``across_seeds`` decorator of its own in
    :meth:`_with_aggregate`: write ``@that_claim.aggregate`` above a function of the list of
    the seeds' numbers that returns the aggregate checks.
    """
    if not dataclasses.is_dataclass(settings) or not settings.__dataclass_params__.frozen:
        raise TypeError(f"claim {id!r}: settings must be a frozen dataclass instance")

    def register(fn: Callable[[Any, int], Evidence]) -> Claim:
        if id in _REGISTRY:
            raise ValueError(f"claim {id!r} is registered twice")
        if not set(seeds) <= set(CLAIM_SEEDS) or len(seeds) < 3:
            raise ValueError(f"claim {id!r}: seeds must be at least three of CLAIM_SEEDS")
        c = _AggregatingClaim(id, chapter, statement, settings, fn, None, slow, section,
                              tuple(seeds))
        _REGISTRY[id] = c
        return c

    return register


class _AggregatingClaim(Claim):
    """A :class:`Claim` whose aggregate checks are attached with ``@c.aggregate``."""

    def aggregate(self, fn: Callable[[Sequence[Mapping[str, float]]], Sequence[Check]]) -> Claim:
        object.__setattr__(self, "across_seeds", fn)
        return self


def _load_all() -> None:
    """Import every chapter experiment module, so their claims register (the lab and the
    probes hold no claims)."""
    import course_lib.experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.ispkg and info.name != "claims":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def all_claims() -> list[Claim]:
    """Every registered claim, by chapter, then id."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda c: (c.chapter, c.id))


def get(id: str) -> Claim:
    """The claim named ``id``."""
    if id not in _REGISTRY:
        _load_all()
    try:
        return _REGISTRY[id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"no claim {id!r}; the registry has: {known}") from None


def mean(values: Iterable[float]) -> float:
    """The mean of the seeds' values (for ``across_seeds`` functions)."""
    return statistics.fmean(values)


def median(values: Iterable[float]) -> float:
    """The median of the seeds' values (for ``across_seeds`` functions)."""
    return statistics.median(values)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _settings_repr(settings: Any) -> str:
    return repr(settings)
