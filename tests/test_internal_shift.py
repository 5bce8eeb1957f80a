"""Tests for course_lib/experiments/internal_shift.py: the mechanics of the no BN / BN / noisy BN
runs (with tiny networks and short runs).

Chapter 4's claims about them (drift, noisy BN, landscape) are registry entries in the same
module; tests/test_claims.py runs them on the claim seeds with the chapter's settings.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from course_lib.experiments.internal_shift import CONFIGS, SETTINGS, ICSSettings, ics_model, run_all, run_ics
from course_lib.experiments.probes.noisy_bn import NoisyBatchNorm1d
from course_lib.nn import BatchNorm1d

#: A tiny version of the experiment: the mechanics, not the claims.
TINY = replace(SETTINGS, widths=(20, 20, 20), steps=100, eval_every=25, landscape_every=50,
               probe_size=100, units=(0, 1), drift_from=25)


@pytest.fixture(scope="module")
def runs():
    return run_all(7, TINY)


def test_runs_record_what_the_chapter_plots(runs):
    run = runs["BN"]
    n_eval = TINY.steps // TINY.eval_every + 1
    assert run.traces.shape == (n_eval, len(TINY.units), 3)
    assert np.all(run.traces[..., 0] <= run.traces[..., 1])
    assert np.all(run.traces[..., 1] <= run.traces[..., 2])
    steps, lv = run.landscape("loss_variation")
    assert list(steps) == list(range(0, TINY.steps + 1, TINY.landscape_every))
    assert np.all(lv >= 0)
    lo, hi = run.landscape("loss_min")[1], run.landscape("loss_max")[1]
    np.testing.assert_allclose(hi - lo, lv)


def test_bn_and_noisy_bn_start_from_the_same_weights():
    models = {c: ics_model(c, seed=3) for c in CONFIGS}
    assert isinstance(models["BN"].bn3, BatchNorm1d)
    assert isinstance(models["noisy BN"].bn3, NoisyBatchNorm1d)
    assert not hasattr(models["no BN"], "bn3")
    bn, noisy = dict(models["BN"].named_parameters()), dict(models["noisy BN"].named_parameters())
    assert bn.keys() == noisy.keys()
    assert all(torch.equal(bn[k], noisy[k]) for k in bn)
    # No BN: the same first layer; its biases take later draws, so the rest differs.
    assert torch.equal(models["no BN"].linear1.weight, models["BN"].linear1.weight)


def test_a_run_is_reproducible():
    tiny = replace(SETTINGS, widths=(20, 20, 20), steps=50, eval_every=25, landscape_every=50,
                   probe_size=100, units=(0, 1), drift_from=25, landscape_for=CONFIGS)
    a, b = run_ics("noisy BN", 7, tiny), run_ics("noisy BN", 7, tiny)
    assert a.history.loss == b.history.loss
    np.testing.assert_array_equal(a.traces, b.traces)
    assert a.history.records["loss_variation"][0] == b.history.records["loss_variation"][0]


def test_bad_config_and_settings_are_explained():
    with pytest.raises(ValueError, match="config must be one of"):
        ics_model("batch norm")
    with pytest.raises(ValueError, match="multiples of eval_every"):
        ICSSettings(steps=1010)
    with pytest.raises(ValueError, match="drift_from"):
        ICSSettings(drift_from=30)
    with pytest.raises(ValueError, match="landscape_for"):
        ICSSettings(landscape_for=("BN", "LayerNorm"))


def test_noisy_bn_skips_the_landscape_by_default_and_says_so(runs):
    run = runs["noisy BN"]
    assert "loss_variation" not in run.history.records
    with pytest.raises(ValueError, match="landscape_for"):
        run.landscape("loss_variation")


def test_run_all_is_remembered_for_its_seed_and_settings(runs):
    again = run_all(7, TINY)
    assert all(again[c] is runs[c] for c in CONFIGS)  # the three claims train once
    assert again is not run_all(7, TINY)  # a fresh dict each time, the same runs inside


def test_the_chapters_settings_are_valid_and_hashable():
    assert hash(SETTINGS) == hash(ICSSettings())
    assert SETTINGS.steps % SETTINGS.landscape_every == 0
