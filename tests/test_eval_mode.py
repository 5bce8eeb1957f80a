"""Tests for course_lib.experiments.eval_mode: chapter 6's three trainings and their probes.

The chapter's claims on them are registry entries, run on the claim seeds by
tests/test_claims.py; these tests check the mechanics on small runs.
"""

from dataclasses import replace

import numpy as np
import torch

from course_lib.experiments.eval_mode import (
    RUNS,
    default_network,
    inverted_scans,
    momentum_runs,
)
from course_lib.experiments.lab.data import load_digits_split
from course_lib.normalize import Standardizer

SMALL = replace(RUNS, steps=60, eval_every=30, widths=(20,), layer="bn1", final_evals=2)


def test_three_runs_differ_only_in_the_momentum():
    data, runs = momentum_runs(0, SMALL)
    assert list(runs) == [label for label, _ in SMALL.momenta]
    assert [r.model.bn1.momentum for r in runs.values()] == [w for _, w in SMALL.momenta]
    first = dict(next(iter(runs.values())).model.named_parameters())
    for run in runs.values():
        for name, p in run.model.named_parameters():
            assert torch.equal(p, first[name]), name
        assert run.history.eval_steps == [0, 30, 60]
        assert run.final_gap == np.mean(run.history.records["gap"][-2:])
    assert data.n_test == 450


def test_callers_get_copies():
    _, a = default_network(0, SMALL)
    _, b = default_network(0, SMALL)
    assert a is not b
    with torch.no_grad():
        a.bn1.running_mean.add_(1.0)
    assert not torch.equal(a.bn1.running_mean, b.bn1.running_mean)
    assert not a.training


def test_inverted_scans_are_standardized_like_the_training_set():
    raw = load_digits_split(seed=3, standardize=False)
    data = load_digits_split(seed=3)
    scaler = Standardizer().fit(raw.X_train.double().numpy())
    np.testing.assert_allclose(scaler.transform(raw.X_test.double().numpy()), data.X_test.numpy(),
                               atol=1e-5)
    X = inverted_scans(3)
    np.testing.assert_allclose(X.numpy(), scaler.transform(16.0 - raw.X_test.double().numpy()),
                               atol=1e-5)
    assert X.dtype == torch.float32
