"""The evidence page (book/evidence.md) is current: it lists exactly the registry's claims,
with their present statements and settings, and it is what tools/evidence.py makes of its
data (book/evidence.json). After changing a claim, run `make evidence`."""

from __future__ import annotations

import json

from course_lib.experiments import claims
from tools import evidence


def _data() -> dict:
    return json.loads(evidence.DATA.read_text())


def test_the_page_lists_every_claim_of_the_registry():
    listed = [c["id"] for c in _data()["claims"]]
    assert listed == [c.id for c in claims.all_claims()], "run `make evidence`"


def test_each_listed_claim_has_its_current_statement_and_settings():
    current = {c.id: c.fingerprint() for c in claims.all_claims()}
    for c in _data()["claims"]:
        assert c["fingerprint"] == current[c["id"]], f"{c['id']}: run `make evidence`"


def test_the_evidence_covers_two_kernel_settings_and_every_claim_seed():
    data = _data()
    assert len(data["settings"]) >= 2
    seeds = {c.id: list(c.seeds) for c in claims.all_claims()}
    for c in data["claims"]:
        assert c["seeds"] == seeds[c["id"]], c["id"]
        assert c["runs"] == len(c["seeds"]) * len(data["settings"]), c["id"]


def test_every_listed_claim_held_when_the_page_was_made():
    for c in _data()["claims"]:
        assert c["held"] == c["runs"], c["id"]
        assert all(m["min"] > 0 for m in c["aggregate"].values()), c["id"]


def test_the_page_is_rendered_from_the_data():
    assert evidence.PAGE.read_text() == evidence.render(_data()), "run `make evidence`"
