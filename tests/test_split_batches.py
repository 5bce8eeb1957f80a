"""Chapter 8's experiment across processes: its claims run from the registry
(tests/test_claims.py); here, the mechanics of a smaller run."""

from __future__ import annotations

import pytest

from course_lib.experiments.split_batches import GhostSettings, ghost_noise, run_split_batch_experiment


@pytest.mark.slow
def test_three_processes_report_noise_equality_and_traffic():
    out = run_split_batch_experiment(world=3, local_batch=6, draws=50, seed=1)
    assert set(out["noise"]) >= {"local_std", "sync_std", "local_theory", "sync_theory"}
    assert out["equal"] < 1e-10
    assert out["world"] == 3
    assert out["local_batch"] == 6
    for row in out["traffic"]:
        C = row["channels"]
        assert row["forward_bytes"] == (2 * C + 1) * 4           # count, mean, M2 in float32
        assert row["forward_received_bytes"] == 3 * (2 * C + 1) * 4
        assert row["backward_bytes"] == 2 * C * 4
        assert row["activation_bytes"] == 4 * 6 * (row["shape"][1] * (
            row["shape"][2] * row["shape"][3] if len(row["shape"]) == 4 else 1))


def test_ghost_noise_is_batch_norm_per_ghost_batch():
    out = ghost_noise(GhostSettings(draws=20), seed=3)
    assert out["same as batch norm per ghost batch"]
    assert out["ghost"] > out["whole"]
