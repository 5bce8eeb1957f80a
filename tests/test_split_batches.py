"""Chapter 8's experiment across processes, on a seed and sizes the notebook does not use."""

from __future__ import annotations

import pytest

from course_lib.experiments.split_batches import run_split_batch_experiment


@pytest.mark.slow
def test_local_bn_is_small_batch_bn_and_sync_bn_is_whole_batch_bn():
    # The notebook runs 4 processes x 8 examples with seed 0; here 3 x 6 with seed 1.
    out = run_split_batch_experiment(world=3, local_batch=6, draws=400, seed=1)
    noise = out["noise"]
    assert abs(noise["local_std"] / noise["local_theory"] - 1) < 0.1, noise
    assert abs(noise["sync_std"] / noise["sync_theory"] - 1) < 0.1, noise
    assert out["equal"] < 1e-10
    for row in out["traffic"]:
        C = row["channels"]
        assert row["forward_bytes"] == (2 * C + 1) * 4 and row["backward_bytes"] == 2 * C * 4
        assert row["activation_bytes"] == 4 * 6 * (row["shape"][1] * (
            row["shape"][2] * row["shape"][3] if len(row["shape"]) == 4 else 1))
