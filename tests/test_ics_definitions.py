"""Tests for course_lib/experiments/ics_definitions.py: its settings and one short run.

Chapter 4's claim about the two definitions is a registry entry in the same module;
tests/test_claims.py runs it on the claim seeds with the chapter's settings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from course_lib.experiments.ics_definitions import SETTINGS, DefinitionsSettings, compare_definitions


def test_settings_are_checked():
    with pytest.raises(ValueError, match="multiples of eval_every"):
        DefinitionsSettings(steps=410)
    assert SETTINGS.weight == f"linear{SETTINGS.depth}.weight"


def test_a_short_run_records_both_definitions():
    tiny = replace(SETTINGS, depth=3, width=20, steps=50, eval_every=25, probe_size=60,
                   units=(0, 1), drift_from=25)
    runs = compare_definitions(3, tiny)
    assert list(runs) == ["no BN", "BN"]
    for r in runs.values():
        assert r.traces.shape == (3, 2, 3)
        assert len(r.gradient_record("relative")) == 3
        assert np.isfinite(r.drift) and np.isfinite(r.gradient_change)
        assert -1.0 <= r.gradient_cosine <= 1.0
