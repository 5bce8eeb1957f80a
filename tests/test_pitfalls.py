"""Tests for course_lib/experiments/pitfalls.py: the mechanics of chapter 8's gradient
accumulation and folding experiments. Their claims run in tests/test_claims.py."""

from __future__ import annotations

import math

import pytest

from course_lib.experiments.pitfalls import (
    AccumulationSettings, FoldSettings, accumulate_gradients, affine_fit_error,
)


def test_accumulation_without_micro_batches_is_the_batch():
    one = AccumulationSettings(micro_batches=1)
    assert accumulate_gradients("batch", one)["gradient"] == 0.0
    assert accumulate_gradients("batch", one)["running mean"] == 0.0


def test_accumulation_without_batch_norm_has_no_running_mean():
    assert math.isnan(accumulate_gradients("none", AccumulationSettings())["running mean"])


def test_accumulation_needs_whole_micro_batches():
    with pytest.raises(ValueError, match="multiple of"):
        accumulate_gradients("batch", AccumulationSettings(batch=30, micro_batches=4))


def test_fold_error_only_for_batch_norm():
    assert "fold" in affine_fit_error("batch", FoldSettings())
    assert "fold" not in affine_fit_error("layer", FoldSettings())


def test_group_norm_with_one_group_fits_no_better_than_layer_norm():
    # One group of all units is layer norm, so the best linear fit misses by the same amount.
    layer = affine_fit_error("layer", FoldSettings(), seed=3)["best linear fit"]
    group = affine_fit_error("group", FoldSettings(groups=1), seed=3)["best linear fit"]
    assert group == pytest.approx(layer, rel=1e-9)
