"""Tests for course_lib.experiments.momentum: the momentum trade-off on a shifting stream.

The chapter's claims on it (noise and lag, the slider's catch-up) are registry entries, run on
the claim seeds by tests/test_claims.py; these tests check the mechanics.
"""

import numpy as np
import pytest

from course_lib.experiments.momentum import (
    CatchUpSettings,
    Stream,
    Tradeoff,
    TradeoffSettings,
    catch_up,
    ema_noise_theory,
    momentum_tradeoff,
    shifting_stream,
    trace_running_stats,
)


def test_shifting_stream():
    stream = Stream(n_steps=300, batch_size=64, n_features=4, change_at=100, shift=2.0, scale=3.0)
    batches, mean, var = shifting_stream(stream, seed=0)
    assert batches.shape == (300, 64, 4)
    assert (mean[:100] == 0).all() and (mean[100:] == 2).all()
    assert (var[:100] == 1).all() and (var[100:] == 9).all()
    assert abs(batches[:100].mean()) < 0.05 and abs(batches[100:].mean() - 2) < 0.1
    assert abs(batches[100:].std() - 3) < 0.1


def test_shifting_stream_refuses_bad_settings():
    with pytest.raises(ValueError, match="batch_size >= 2"):
        shifting_stream(Stream(batch_size=1))
    with pytest.raises(ValueError, match="change_at"):
        shifting_stream(Stream(change_at=700))
    with pytest.raises(TypeError, match="Stream"):
        shifting_stream({"n_steps": 10})


def test_trace_running_stats_cumulative_is_plain_mean():
    batches, _, _ = shifting_stream(Stream(n_steps=50, change_at=25), seed=1)
    mean_trace, var_trace = trace_running_stats(batches, momentum=None)
    np.testing.assert_allclose(mean_trace[-1], batches.mean(axis=(0, 1)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var_trace[-1], batches.var(axis=1, ddof=1).mean(axis=0),
                               rtol=1e-10)
    assert mean_trace.shape == var_trace.shape == (50, 8)


def test_momentum_tradeoff_measures_noise_and_lag_by_hand():
    settings = TradeoffSettings(momenta=(0.1, 0.5))
    r = momentum_tradeoff(settings, seed=3)
    assert isinstance(r, Tradeoff)
    assert r.momentum.tolist() == [0.1, 0.5]
    batches, true_mean, _ = shifting_stream(settings.stream, seed=3)
    err = trace_running_stats(batches, momentum=0.5)[0] - true_mean
    assert r.noise[1] == pytest.approx(np.sqrt(np.mean(err[100:400] ** 2)))
    assert r.lag[1] == pytest.approx(np.sqrt(np.mean(err[400:420] ** 2)))
    assert r.noise_theory[0] == pytest.approx(ema_noise_theory(0.1, 1 / np.sqrt(32)))


def test_catch_up_reads_the_error_after_the_jump():
    outcome = catch_up.run(seed=0, settings=CatchUpSettings(momenta=(0.01, 1.0)))
    r = outcome.result
    assert r.traces.shape == (2, 600)
    # Momentum 1 keeps only the last batch: its running mean is that batch's mean.
    batches, _, _ = shifting_stream(seed=0)
    assert r.traces[1, 419] == pytest.approx(batches[419, :, 0].mean())
    assert r.error[1] == pytest.approx(abs(batches[419, :, 0].mean() - 2.0))


def test_ema_noise_theory():
    assert ema_noise_theory(1.0, 2.0) == 2.0  # no averaging: the batch's own noise
    assert ema_noise_theory(0.1, 1.0) == pytest.approx(np.sqrt(0.1 / 1.9))
    assert ema_noise_theory(1.0, 1.0) / ema_noise_theory(0.01, 1.0) == pytest.approx(14.1, abs=0.05)


def test_momentum_tradeoff_refuses_bad_settings():
    with pytest.raises(ValueError, match="momentum=0"):
        momentum_tradeoff(TradeoffSettings(momenta=(0.0,)))
    with pytest.raises(ValueError, match="change_at"):
        momentum_tradeoff(TradeoffSettings(momenta=(0.1,), stream=Stream(change_at=590)))
    with pytest.raises(TypeError, match="TradeoffSettings"):
        momentum_tradeoff([0.1])
