"""Tests for course_lib.experiments.momentum: the momentum trade-off on a shifting stream."""

import numpy as np
import pytest

from course_lib.experiments.momentum import (
    ema_noise_theory,
    momentum_tradeoff,
    shifting_stream,
    trace_running_stats,
)

from claim_seeds import CLAIM_SEEDS  # noqa: E402

SEEDS = CLAIM_SEEDS



def test_shifting_stream():
    batches, mean, var = shifting_stream(n_steps=300, batch_size=64, n_features=4,
                                         change_at=100, shift=2.0, scale=3.0, seed=0)
    assert batches.shape == (300, 64, 4)
    assert (mean[:100] == 0).all() and (mean[100:] == 2).all()
    assert (var[:100] == 1).all() and (var[100:] == 9).all()
    assert abs(batches[:100].mean()) < 0.05 and abs(batches[100:].mean() - 2) < 0.1
    assert abs(batches[100:].std() - 3) < 0.1
    with pytest.raises(ValueError, match="batch_size >= 2"):
        shifting_stream(batch_size=1)


def test_trace_running_stats_cumulative_is_plain_mean():
    batches, _, _ = shifting_stream(n_steps=50, change_at=25, seed=1)
    mean_trace, var_trace = trace_running_stats(batches, momentum=None)
    np.testing.assert_allclose(mean_trace[-1], batches.mean(axis=(0, 1)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var_trace[-1], batches.var(axis=1, ddof=1).mean(axis=0),
                               rtol=1e-10)
    assert mean_trace.shape == var_trace.shape == (50, 8)


@pytest.mark.parametrize("seed", SEEDS)
def test_momentum_tradeoff(seed):
    """High momentum: noisier around the truth. Low momentum: lags after the change."""
    r = momentum_tradeoff([0.01, 0.1, 0.5], seed=seed)
    assert np.all(np.diff(r["noise"]) > 0), r  # noise grows with the weight on the new batch
    assert np.all(np.diff(r["lag"]) < 0), r  # lag shrinks with it
    # Clear margins, not a coin flip: x2 in noise, x1.5 in lag between neighbors.
    assert np.all(r["noise"][1:] > 2 * r["noise"][:-1]), r
    assert np.all(r["lag"][:-1] > 1.5 * r["lag"][1:]), r
    # The steady noise is what theory predicts (momentum 0.01 averages over ~100 steps, too
    # few independent samples in the window to pin it down as tightly).
    np.testing.assert_allclose(r["noise"][1:], r["noise_theory"][1:], rtol=0.2)
    np.testing.assert_allclose(r["noise"][0], r["noise_theory"][0], rtol=0.4)


def test_ema_noise_theory():
    assert ema_noise_theory(1.0, 2.0) == 2.0  # no averaging: the batch's own noise
    assert ema_noise_theory(0.1, 1.0) == pytest.approx(np.sqrt(0.1 / 1.9))
    with pytest.raises(ValueError):
        momentum_tradeoff([0.0])
    with pytest.raises(ValueError, match="change_at"):
        momentum_tradeoff([0.1], change_at=590, window=20)
