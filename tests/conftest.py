"""Shared test settings.

Hypothesis profiles: "dev" (default) keeps property tests quick; CI=true selects "ci", which
tries more examples and prints statistics-friendly, reproducible failures.
"""

import os
from pathlib import Path

import matplotlib
import pytest
from hypothesis import HealthCheck, settings

# Tests draw figures without a screen.
matplotlib.use("Agg")

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
