"""Probes: measurements taken on a model during or after training (percentiles of a unit's
input, the loss landscape along the gradient, gradient-based internal covariate shift, noisy
batch norm, per-layer diagnostics, one example's output across batch-mates, predictions in
shuffled batches, the gap between running and population statistics). They import the lab and the core, never a chapter's
experiment.
"""
