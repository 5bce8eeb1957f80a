"""Every claim of the course, on the claim seeds: the same registry entries the notebooks run.

For each claim in :mod:`course_lib.experiments.claims` there is one test per claim seed (its
per-seed checks must hold there) and, for a claim stated as an aggregate, one test of its
checks across the seeds. A claim runs once per seed and process: the outcomes are cached, and
under pytest-xdist the tests of one experiment module's claims go to one worker
(``pytest_xdist_make_scheduler`` in tests/conftest.py), so the aggregate test reuses the
per-seed runs, and claims that read the same training runs (remembered per seed and settings)
share them.
"""

from __future__ import annotations

import pytest

from course_lib.experiments import claims

CLAIMS = claims.all_claims()
_OUTCOMES: dict[tuple[str, int], claims.Outcome] = {}


def outcome(c: claims.Claim, seed: int) -> claims.Outcome:
    key = (c.id, seed)
    if key not in _OUTCOMES:
        _OUTCOMES[key] = c.run(seed)
    return _OUTCOMES[key]


def _marks(c: claims.Claim) -> list:
    return [pytest.mark.slow] if c.slow else []


@pytest.mark.parametrize("c, seed", [
    pytest.param(c, seed, id=f"{c.id}-{seed}", marks=_marks(c))
    for c in CLAIMS for seed in c.seeds
])
def test_claim_holds_on_each_seed(c, seed):
    o = outcome(c, seed)
    assert o.holds, o.explain()


@pytest.mark.parametrize("c", [
    pytest.param(c, id=c.id, marks=_marks(c)) for c in CLAIMS if c.across_seeds is not None
])
def test_claim_holds_across_seeds(c):
    verdict = c.judge(outcome(c, seed) for seed in c.seeds)
    assert all(check.holds for check in verdict.aggregate), verdict.explain()


def test_every_claim_is_well_formed():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    for c in CLAIMS:
        assert 1 <= c.chapter <= 9, c.id
        assert c.statement.endswith("."), c.id


def test_a_failing_check_says_what_failed():
    check = claims.below("spread ratio", 2.6, 2.5)
    assert not check.holds
    assert "2.6 < 2.5" in str(check)
    assert claims.above("nan", float("nan"), 0).margin == float("-inf")
